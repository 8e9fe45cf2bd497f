"""Where each model lives under a checkpoints folder, and the check that they are all there.

One place for folder names so that `fetch.py`, the loaders and the error messages agree.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError
from sketch_search.common.home import HOME_VARIABLE, user_home

# This package's own folder: the models folder of a checkout that holds models (the seed's way).
CHECKOUT_CHECKPOINTS = Path(__file__).resolve().parent

# Hub ids that `fetch.py` downloads into the folder names below.
BLIP_BASE = ("Salesforce/blip-image-captioning-base", "blip-image-captioning-base")
BLIP_SKETCH_DIR = "blip-sketch"          # a fine-tuned HF folder (tools.finetune_captioner writes it)
BLIP_SEED_FILE = "blip_sketch.pt"        # the seed project's torch file with `model_state_dict`
# Every name the seed's file is found under, in the order looked for: the seed's main.py loads
# `blip_fine_tuning.pth`; earlier versions of this program wrote `blip_sketch.pt`.
BLIP_SEED_FILES = (BLIP_SEED_FILE, "blip_fine_tuning.pth")
SD_TURBO = ("stabilityai/sd-turbo", "sd-turbo")
# The authors' URL and file name (GaParmar/img2img-turbo src/pix2pix_turbo.py).
LORA_FILE = "sketch_to_image_stochastic_lora.pkl"
LORA_URL = "https://www.cs.cmu.edu/~img2img-turbo/models/sketch_to_image_stochastic_lora.pkl"
LORA_OLD_FILES = ("sketch_to_image_stochastic.pkl",)  # what earlier versions saved; still accepted

# DINOv2 sizes offered by --embedder. There is no ViT-H/16 DINOv2 (see docs/models.md).
DINOV2 = {
    "small": "facebook/dinov2-small",
    "base": "facebook/dinov2-base",
    "large": "facebook/dinov2-large",
    "giant": "facebook/dinov2-giant",
}
# DINOv3's ViT-H+/16: the only DINO ViT-H/16. Gated on the hub (accept the licence, use a token).
DINOV3 = {
    "dinov3-vith16plus": "facebook/dinov3-vith16plus-pretrain-lvd1689m",
}
EMBEDDER_MODELS = {**DINOV2, **DINOV3}
GATED_HUB_IDS = frozenset(DINOV3.values())
DEFAULT_EMBEDDER = "base"
# transformers' model_type of each family (config.json): what an embedder folder must hold.
DINOV2_TYPE, DINOV3_TYPE = "dinov2", "dinov3_vit"

# Files whose presence makes a Hugging Face folder loadable (any one weight file will do).
_HF_WEIGHTS = ("model.safetensors", "pytorch_model.bin", "model.safetensors.index.json")
_DIFFUSERS_WEIGHTS = ("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def _is_checkout(folder: Path) -> bool:
    """A source checkout (its project file or git beside the package), never an installed copy."""
    return (folder.parent / "pyproject.toml").is_file() or (folder.parent / ".git").exists()


def _holds_models(folder: Path) -> bool:
    names = (BLIP_BASE[1], BLIP_SKETCH_DIR, *BLIP_SEED_FILES, SD_TURBO[1], LORA_FILE, *LORA_OLD_FILES,
             *(embedder_dir_name(choice) for choice in EMBEDDER_MODELS))
    return any((folder / name).exists() for name in names)


def models_folder(given: Path | str | None = None) -> Path:
    """The models folder, in this order: `given` (--checkpoints); $SKETCH_SEARCH_HOME/models when
    that is set; the checkout's checkpoints/ when it holds models; the per-user home's models/.
    An installed program never reads or writes models inside its own install folder."""
    if given is not None:
        return Path(given).expanduser()
    if not os.environ.get(HOME_VARIABLE) and _is_checkout(CHECKOUT_CHECKPOINTS) and _holds_models(
            CHECKOUT_CHECKPOINTS):
        return CHECKOUT_CHECKPOINTS
    return user_home() / "models"


def models_folder_rule() -> str:
    """How `models_folder` chooses, for help texts."""
    return (f"${HOME_VARIABLE}/models when that is set, else a checkout's checkpoints/ when it holds "
            f"models, else the per-user {user_home() / 'models'}; now {models_folder()}")


def embedder_dir_name(choice: str) -> str:
    """The folder under --checkpoints (and the index's name part) of an --embedder choice."""
    return EMBEDDER_MODELS[choice].split("/")[1]


def embedder_family(choice: str) -> str:
    """transformers' model_type the --embedder choice's folder must hold."""
    return DINOV3_TYPE if choice in DINOV3 else DINOV2_TYPE


def family_of_dir_name(name: str) -> str | None:
    """The model_type expected in a folder named as `embedder_dir_name` names them, else None."""
    for choice in EMBEDDER_MODELS:
        if embedder_dir_name(choice) == name:
            return embedder_family(choice)
    return None


@dataclass(frozen=True)
class ModelSource:
    """A model to load: a local folder/file, or a hub id to resolve when online."""

    name: str              # what the user reads in messages, e.g. "DINOv2 base"
    local: Path            # where it is expected under --checkpoints
    hub_id: str | None     # what fetch downloads into `local`
    single_file: bool = False  # `local` is one file whatever its name (--generator)
    model_type: str | None = None  # what an HF folder's config.json must say it holds

    def wrong_model(self) -> str | None:
        """What another model's folder holds instead (read off its config.json), else None."""
        if self.model_type is None or not (self.local / "config.json").is_file():
            return None
        try:
            kind = json.loads((self.local / "config.json").read_text()).get("model_type")
        except (OSError, UnicodeDecodeError, ValueError, AttributeError):
            return "an unreadable config.json"
        return None if kind == self.model_type else f"a {kind} model"

    def missing_files(self) -> list[Path]:
        if self.single_file:
            return [] if self.local.is_file() else [self.local]
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
    return ModelSource("BLIP captioner", checkpoints / BLIP_BASE[1], BLIP_BASE[0], model_type="blip")


def fine_tuned_captioner(checkpoints: Path) -> Path | None:
    """A sketch-tuned captioner if one is present: an HF folder first, then the seed's file
    under any of its names."""
    folder = checkpoints / BLIP_SKETCH_DIR
    if not _missing(folder):
        return folder
    for name in BLIP_SEED_FILES:
        if (checkpoints / name).is_file():
            return checkpoints / name
    return None


def lora_path(checkpoints: Path) -> Path:
    """The sketch LoRA file: the authors' name, else a file saved under an older name."""
    for name in (LORA_FILE, *LORA_OLD_FILES):
        if (checkpoints / name).is_file():
            return checkpoints / name
    return checkpoints / LORA_FILE


def generator_sources(checkpoints: Path, generator: str | Path | None = None) -> list[ModelSource]:
    """SD-Turbo and the pix2pix-turbo file: the sketch LoRA file, or `generator` (--generator)."""
    if generator is not None:
        weights = ModelSource("--generator file", Path(generator).expanduser(), None, single_file=True)
    else:
        weights = ModelSource("pix2pix-turbo sketch LoRA", lora_path(checkpoints), None)
    return [ModelSource("SD-Turbo", checkpoints / SD_TURBO[1], SD_TURBO[0]), weights]


def embedder_source(checkpoints: Path, choice: str) -> ModelSource:
    if choice not in EMBEDDER_MODELS:
        raise MissingCheckpointError(
            f"unknown embedder {choice!r}: choose one of {', '.join(EMBEDDER_MODELS)}")
    name = f"DINOv3 ViT-H+/16 ({choice})" if choice in DINOV3 else f"DINOv2 {choice}"
    return ModelSource(name, checkpoints / embedder_dir_name(choice), EMBEDDER_MODELS[choice],
                       model_type=embedder_family(choice))


def require(sources: list[ModelSource]) -> None:
    """Stop before any work when a model is missing, naming the files and the fetch command, or
    when a folder holds another model (DINOv2 and BLIP swapped), naming the folder."""
    for source in sources:
        wrong = source.wrong_model()
        if wrong:
            raise CheckpointFormatError(
                f"{source.local}: holds {wrong}, not the {source.name} ({source.model_type}); put the "
                f"right model there (`{named(Program.FETCH)}`) or pass --checkpoints DIR")
    missing = [p for s in sources for p in s.missing_files()]
    if missing:
        shown = ", ".join(str(p) for p in missing[:4])
        more = f" (and {len(missing) - 4} more)" if len(missing) > 4 else ""
        raise MissingCheckpointError(
            f"model files missing: {shown}{more}; download them with `{named(Program.FETCH)}`"
            f" (or pass --checkpoints DIR)")
