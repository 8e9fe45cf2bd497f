"""Where each model lives under a checkpoints folder, and the check that they are all there.

One place for folder names so that `fetch.py`, the loaders and the error messages agree.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from common.errors import MissingCheckpointError

FETCH_COMMAND = "python -m checkpoints.fetch"
# The one default models folder: this package's own folder, wherever the program is run from.
DEFAULT_CHECKPOINTS = Path(__file__).resolve().parent

# Hub ids that `fetch.py` downloads into the folder names below.
BLIP_BASE = ("Salesforce/blip-image-captioning-base", "blip-image-captioning-base")
BLIP_SKETCH_DIR = "blip-sketch"          # a fine-tuned HF folder (tools.finetune_captioner writes it)
BLIP_SEED_FILE = "blip_sketch.pt"        # the seed project's torch file with `model_state_dict`
SD_TURBO = ("stabilityai/sd-turbo", "sd-turbo")
LORA_FILE = "sketch_to_image_stochastic.pkl"
LORA_URL = "https://www.cs.cmu.edu/~img2img-turbo/models/sketch_to_image_stochastic.pkl"

# DINOv2 sizes offered by --embedder. There is no ViT-H/16 DINOv2 (see README).
DINOV2 = {
    "small": "facebook/dinov2-small",
    "base": "facebook/dinov2-base",
    "large": "facebook/dinov2-large",
    "giant": "facebook/dinov2-giant",
}
DEFAULT_EMBEDDER = "base"

# Files whose presence makes a Hugging Face folder loadable (any one weight file will do).
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def dinov2_dir_name(size: str) -> str:
    return DINOV2[size].split("/")[1]


@dataclass(frozen=True)
class ModelSource:
    """A model to load: a local folder/file, or a hub id to resolve when online."""

    name: str              # what the user reads in messages, e.g. "DINOv2 base"
    local: Path            # where it is expected under --checkpoints
    hub_id: str | None     # what fetch downloads into `local`

    def missing_files(self) -> list[Path]:
        return _missing(self.local)


def _missing(path: Path) -> list[Path]:
    """Files that must exist for `path` (a file, an HF folder or a diffusers folder)."""
    if path.suffix in (".pkl", ".pt", ".pth", ".bin"):
        return [] if path.is_file() else [path]
    if (path / "model_index.json").is_file():  # a diffusers pipeline folder
        missing = []
        for sub in ("text_encoder", "tokenizer", "unet", "vae", "scheduler"):
            if sub == "tokenizer":
                need = [path / sub / "vocab.json", path / sub / "merges.txt"]
                missing += [p for p in need if not p.is_file()]
            elif sub == "scheduler":
                if not (path / sub / "scheduler_config.json").is_file():
                    missing.append(path / sub / "scheduler_config.json")
            else:
                if not (path / sub / "config.json").is_file():
                    missing.append(path / sub / "config.json")
                weights = _HF_WEIGHTS if sub == "text_encoder" else _DIFFUSERS_WEIGHTS
                if not any((path / sub / w).is_file() for w in weights):
                    missing.append(path / sub / weights[0])
        return missing
    if not path.is_dir():
        return [path]
    missing = [] if (path / "config.json").is_file() else [path / "config.json"]
    if not any((path / w).is_file() for w in _HF_WEIGHTS):
        missing.append(path / _HF_WEIGHTS[0])
    return missing


def captioner_source(checkpoints: Path) -> ModelSource:
    """The captioner's base folder (always needed: it holds the processor and config)."""
    return ModelSource("BLIP captioner", checkpoints / BLIP_BASE[1], BLIP_BASE[0])


def fine_tuned_captioner(checkpoints: Path) -> Path | None:
    """A sketch-tuned captioner if one is present: an HF folder first, then the seed's file."""
    folder = checkpoints / BLIP_SKETCH_DIR
    if not _missing(folder):
        return folder
    seed_file = checkpoints / BLIP_SEED_FILE
    return seed_file if seed_file.is_file() else None


def generator_sources(checkpoints: Path) -> list[ModelSource]:
    return [
        ModelSource("SD-Turbo", checkpoints / SD_TURBO[1], SD_TURBO[0]),
        ModelSource("pix2pix-turbo sketch LoRA", checkpoints / LORA_FILE, None),
    ]


def embedder_source(checkpoints: Path, size: str) -> ModelSource:
    if size not in DINOV2:
        raise MissingCheckpointError(
            f"unknown embedder size {size!r}: choose one of {', '.join(DINOV2)}")
    return ModelSource(f"DINOv2 {size}", checkpoints / dinov2_dir_name(size), DINOV2[size])


def require(sources: list[ModelSource]) -> None:
    """Stop before any work when a model is missing, naming the files and the fetch command."""
    missing = [p for s in sources for p in s.missing_files()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:4])
        more = f" (and {len(missing) - 4} more)" if len(missing) > 4 else ""
        raise MissingCheckpointError(
            f"model files missing: {shown}{more}; download them with `{FETCH_COMMAND}`"
            f" (or pass --checkpoints DIR)")
