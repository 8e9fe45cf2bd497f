"""pix2pix-turbo's LoRA file: read, check, write, and map its keys onto the model's own.

The authors' file is a torch.save'd dict:
    rank_unet, unet_lora_target_modules, rank_vae, vae_lora_target_modules,
    state_dict_unet (keys holding "lora" or "conv_in"), state_dict_vae ("lora" or "skip").
Its key names depend on the peft version that wrote it: ".base_layer." (peft >= 0.7) or not,
the adapter's name after lora_A/lora_B (".lora_A.default.weight") or not, and sometimes a
wrapper prefix ("base_model.model.", "unet.", "vae."). All of them are reduced to one
canonical name (the oldest form: no base_layer, no adapter name, no prefix) on both sides.

Two kinds of file have this layout. The stochastic sketch model's (the authors' download) has
the twin first conv (`conv_in.conv_in_pretrained`, `conv_in.conv_in_curr`) and mixes noise by r;
the deterministic model that their train_pix2pix_turbo.py writes has a plain `conv_in` and no
noise mix (their loader's `pretrained_path` branch). `LoraFile.deterministic` tells them apart.

As the authors' loader does, the model is built first (with its initial values) and the file's
tensors are copied over it: a weight the file lacks keeps its initial value (named in one
warning); a tensor that fits no weight of the model, or one of another shape, refuses the file.
"""
from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch

from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError

log = logging.getLogger(__name__)

TOP_LEVEL_KEYS = ("rank_unet", "unet_lora_target_modules", "rank_vae", "vae_lora_target_modules",
                  "state_dict_unet", "state_dict_vae")
WRAPPER_PREFIXES = ("base_model.model.", "unet.", "vae.")
_ADAPTER_NAME = re.compile(r"\.(lora_A|lora_B|lora_embedding_A|lora_embedding_B)\.(?:[^.]+\.)?(weight|bias)$")


@dataclass
class LoraFile:
    rank_unet: int
    unet_target_modules: list[str]
    rank_vae: int
    vae_target_modules: list[str]
    state_dict_unet: dict[str, torch.Tensor]
    state_dict_vae: dict[str, torch.Tensor]
    path: Path | None = field(default=None, compare=False)

    @property
    def name(self) -> str:
        return str(self.path) if self.path else "the LoRA file"

    @property
    def deterministic(self) -> bool:
        """A train_pix2pix_turbo.py file: a plain first conv and no twin (no noise mix)."""
        keys = {canonical_key(k) for k in self.state_dict_unet}
        twin = any(k.startswith(("conv_in.conv_in_pretrained.", "conv_in.conv_in_curr.")) for k in keys)
        return not twin and bool(keys & {"conv_in.weight", "conv_in.bias"})


def canonical_key(key: str) -> str:
    """One name for a parameter whatever peft version or wrapper wrote it."""
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    key = key.replace(".base_layer.", ".")
    return _ADAPTER_NAME.sub(r".\1.\2", key)


def unet_file_key(key: str) -> bool:
    """Keys the authors save for the UNet: LoRA weights and the twin first conv."""
    return "lora" in key or "conv_in" in key


def vae_file_key(key: str) -> bool:
    """Keys the authors save for the VAE: LoRA weights and the decoder's skip convs."""
    return "lora" in key or "skip" in key


def map_state_dict(file_state: Mapping[str, torch.Tensor], model_state: Mapping[str, torch.Tensor],
                   selects: Callable[[str], bool], source: str,
                   part: str) -> tuple[dict[str, torch.Tensor], list[str]]:
    """The file's tensors under the model's own key names, and the model keys that `selects`
    picks which the file lacks (they keep the model's initial values, as in the authors' loader).

    Every file key must name a model parameter of the same shape, else CheckpointFormatError.
    """
    by_canonical: dict[str, str] = {}
    for key in model_state:
        by_canonical.setdefault(canonical_key(key), key)
    mapped: dict[str, torch.Tensor] = {}
    unknown: list[str] = []
    for key, tensor in file_state.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointFormatError(
                f"{source}: {part} entry {key!r} is not a tensor; is this pix2pix-turbo's LoRA file?")
        model_key = by_canonical.get(canonical_key(key))
        if model_key is None:
            unknown.append(key)
            continue
        expected = tuple(model_state[model_key].shape)
        if tuple(tensor.shape) != expected:
            raise CheckpointFormatError(
                f"{source}: {part} {key!r} has shape {tuple(tensor.shape)} but the model expects "
                f"{expected}; the LoRA file was made for another base model")
        mapped[model_key] = tensor
    if unknown:
        raise CheckpointFormatError(
            f"{source}: {len(unknown)} {part} keys fit no layer of the model (e.g. {unknown[0]!r}); "
            f"the LoRA file was made for another model")
    missing = [k for k in model_state if selects(k) and k not in mapped]
    return mapped, missing


def _check_targets(value: object, key: str, source: str) -> list[str]:
    if isinstance(value, (list, tuple, set)) and value and all(isinstance(v, str) for v in value):
        return list(value)
    raise CheckpointFormatError(f"{source}: {key} should be a list of layer names, got {type(value).__name__}")


def _check_rank(value: object, key: str, source: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    raise CheckpointFormatError(f"{source}: {key} should be a positive integer, got {value!r}")


def load_lora_file(path: str | Path) -> LoraFile:
    """Read and check the top level of the authors' file (keys are checked when applied)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingCheckpointError(
            f"{path}: the pix2pix-turbo LoRA file is missing; fetch it with `{named(Program.FETCH)}`")
    try:
        # The authors' file holds only ints, lists of str and dicts of tensors: the safe loader reads it.
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or damaged file
        raise CheckpointFormatError(
            f"{path}: not a readable torch file ({type(exc).__name__}); "
            f"download pix2pix-turbo's sketch_to_image_stochastic LoRA file again") from exc
    if not isinstance(data, dict):
        raise CheckpointFormatError(
            f"{path}: holds a {type(data).__name__}, not pix2pix-turbo's dict of LoRA weights")
    missing = [k for k in TOP_LEVEL_KEYS if k not in data]
    if missing:
        raise CheckpointFormatError(
            f"{path}: lacks {', '.join(missing)}; expected pix2pix-turbo's LoRA file "
            f"(sketch_to_image_stochastic_lora.pkl, or a file of train_pix2pix_turbo.py)")
    source = str(path)
    for key in ("state_dict_unet", "state_dict_vae"):
        if not isinstance(data[key], Mapping) or not data[key]:
            raise CheckpointFormatError(f"{path}: {key} should be a non-empty dict of tensors")
    lora = LoraFile(
        rank_unet=_check_rank(data["rank_unet"], "rank_unet", source),
        unet_target_modules=_check_targets(data["unet_lora_target_modules"], "unet_lora_target_modules", source),
        rank_vae=_check_rank(data["rank_vae"], "rank_vae", source),
        vae_target_modules=_check_targets(data["vae_lora_target_modules"], "vae_lora_target_modules", source),
        state_dict_unet=dict(data["state_dict_unet"]),
        state_dict_vae=dict(data["state_dict_vae"]),
        path=path,
    )
    log.info("LoRA file %s: unet rank %d (%d tensors), vae rank %d (%d tensors)", path, lora.rank_unet,
             len(lora.state_dict_unet), lora.rank_vae, len(lora.state_dict_vae))
    return lora


def save_lora_file(lora: LoraFile, path: str | Path) -> Path:
    """Write `lora` in the authors' layout (their key names are kept as they are)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({
        "rank_unet": lora.rank_unet,
        "unet_lora_target_modules": list(lora.unet_target_modules),
        "rank_vae": lora.rank_vae,
        "vae_lora_target_modules": list(lora.vae_target_modules),
        "state_dict_unet": dict(lora.state_dict_unet),
        "state_dict_vae": dict(lora.state_dict_vae),
    }, path)
    return path
