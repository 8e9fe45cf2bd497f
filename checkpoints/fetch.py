"""Download every model into the checkpoints folder, once: `python -m checkpoints.fetch`.

BLIP, SD-Turbo and DINOv2 come from the Hugging Face hub (resumable, size and hash checked by
huggingface_hub); the pix2pix-turbo sketch LoRA file from its authors' site, resumed with HTTP
ranges and checked by loading it before it takes its final name. Re-running skips what is there.
DINOv3 (`--embedder dinov3-vith16plus`) is gated: the hub serves it only to an account that
accepted its licence, with that account's token.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import urllib.request
from pathlib import Path

from checkpoints import layout
from sketch_search.common.command import exit_status, run_command, setup_logging
from sketch_search.common.commands_named import Program, usage_name
from sketch_search.common.errors import SketchSearchError

log = logging.getLogger(__name__)

# Only what the program loads: full-precision weights in safetensors, configs, tokenizers.
HF_FILES = {
    layout.BLIP_BASE[0]: ["*.json", "*.txt", "model.safetensors"],
    layout.SD_TURBO[0]: ["model_index.json", "scheduler/*", "tokenizer/*", "text_encoder/config.json",
                         "text_encoder/model.safetensors", "unet/config.json",
                         "unet/diffusion_pytorch_model.safetensors", "vae/config.json",
                         "vae/diffusion_pytorch_model.safetensors"],
    **{hub_id: ["*.json", "model.safetensors"] for hub_id in layout.DINOV2.values()},
    # ViT-H+/16 may come in shards (model-0000N-of-0000M.safetensors + model.safetensors.index.json).
    **{hub_id: ["*.json", "model*.safetensors"] for hub_id in layout.DINOV3.values()},
}


def _refused_access(exc: BaseException) -> bool:
    """The hub said no to this account (gated repo, no or bad token): 401/403 or GatedRepoError,
    anywhere in the chain (snapshot_download re-raises some errors wrapped)."""
    from huggingface_hub.errors import GatedRepoError, HfHubHTTPError
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, GatedRepoError):
            return True
        response = getattr(exc, "response", None) if isinstance(exc, HfHubHTTPError) else None
        if response is not None and response.status_code in (401, 403):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def fetch_hub_model(hub_id: str, folder: Path, endpoint: str | None = None) -> None:
    """`endpoint`: another hub than huggingface.co (default: huggingface_hub's, HF_ENDPOINT)."""
    from huggingface_hub import snapshot_download
    try:
        snapshot_download(hub_id, local_dir=folder, allow_patterns=HF_FILES[hub_id], endpoint=endpoint)
    except Exception as exc:  # network and hub errors come in many types
        if _refused_access(exc):
            gated = "is gated" if hub_id in layout.GATED_HUB_IDS else "refused this download"
            raise SketchSearchError(
                f"{hub_id} {gated}: accept its licence at https://huggingface.co/{hub_id} with your "
                f"Hugging Face account, log in here with `hf auth login` (or set HF_TOKEN to a token "
                f"of that account), then run the command again") from exc
        raise SketchSearchError(
            f"could not download {hub_id} ({type(exc).__name__}: {str(exc).splitlines()[0][:120]}); "
            f"check the network and run the command again: it resumes") from exc


def fetch_url(url: str, path: Path, verify) -> None:
    """Download `url` to `path` via `path.part`, resuming a partial download; `verify` the result."""
    from tqdm import tqdm
    part = path.with_name(path.name + ".part")
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            if done and response.status != 206:  # the server ignored the range: start over
                done = 0
            total = done + int(response.headers.get("Content-Length", 0))
            with open(part, "ab" if done else "wb") as out, tqdm(
                    total=total, initial=done, unit="B", unit_scale=True, desc=path.name) as bar:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
                    bar.update(len(chunk))
    except OSError as exc:
        raise SketchSearchError(
            f"could not download {url} ({exc}); run the command again to resume") from exc
    try:
        verify(part)
    except SketchSearchError:
        part.unlink()
        raise
    os.replace(part, path)


def _verify_lora(path: Path) -> None:
    from generation.lora_file import load_lora_file
    load_lora_file(path)


def fetch_all(checkpoints: Path, embedders: list[str]) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    wanted = [layout.captioner_source(checkpoints), *layout.generator_sources(checkpoints),
              *(layout.embedder_source(checkpoints, size) for size in embedders)]
    for source in wanted:
        if not source.missing_files():
            print(f"{source.name}: already in {source.local}")
            continue
        print(f"{source.name}: downloading into {source.local}")
        if source.hub_id:
            fetch_hub_model(source.hub_id, source.local)
        else:
            fetch_url(layout.LORA_URL, source.local, _verify_lora)
        missing = source.missing_files()
        if missing:
            raise SketchSearchError(f"{source.name}: still missing {missing[0]} after download")
    print(f"all models are in {checkpoints}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=usage_name(Program.FETCH),
                                     description="Download the models sketch search needs.")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help=f"where to put them (default: {layout.models_folder_rule()})")
    parser.add_argument("--embedder", nargs="+", choices=[*layout.EMBEDDER_MODELS, "all"],
                        default=[layout.DEFAULT_EMBEDDER],
                        help=f"embedders to fetch (default {layout.DEFAULT_EMBEDDER}; all: every "
                             "DINOv2 size; dinov3-vith16plus is gated: accept its licence on the "
                             "hub and log in first)")
    args = parser.parse_args(argv)
    setup_logging()
    sizes = list(layout.DINOV2) if "all" in args.embedder else []
    sizes += [choice for choice in args.embedder if choice != "all" and choice not in sizes]
    fetch_all(layout.models_folder(args.checkpoints), sizes)
    return 0


def cli(argv: list[str] | None = None) -> None:
    """`python -m checkpoints.fetch` and `sketch-search fetch`."""
    run_command(lambda: main(argv), interrupted="interrupted: run the same command again to resume the downloads")


if __name__ == "__main__":
    cli()
