"""Load one Hugging Face (transformers or diffusers) model folder, or refuse it in one line.

`from_pretrained` alone loads a folder that holds another model (a BLIP folder into DINOv2, a
plain ViT where DINOv2 should be) with random weights and a warning, and raises tracebacks of many
types for a truncated safetensors file or a pickled `.bin` that the safe loader refuses. Here each
of those ends in a CheckpointFormatError naming the folder, and weights that leave any layer at
its random initial value (transformers' and diffusers' missing keys) are refused, never used.
Imports the model libraries only when called.
"""
from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterable
from pathlib import Path

from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError

log = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                 "diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin")


def read_config(folder: Path) -> dict:
    """A local model folder's config.json (CheckpointFormatError when it is not JSON)."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointFormatError(
            f"{folder}: config.json is unreadable ({type(exc).__name__}); fetch the model again "
            f"({named(Program.FETCH)})") from exc
    if not isinstance(config, dict):
        raise CheckpointFormatError(f"{folder}: config.json holds no model configuration")
    return config


def _kind(config: dict) -> str:
    """What the config says the folder holds: transformers' model_type or diffusers' class name."""
    return str(config.get("model_type") or config.get("_class_name") or "unknown")


def _damaged(exc: BaseException) -> bool:
    try:
        from safetensors import SafetensorError
    except ImportError:  # older safetensors
        SafetensorError = ()  # noqa: N806
    return isinstance(exc, (pickle.UnpicklingError, EOFError, RuntimeError, ValueError, KeyError,
                            OSError, *((SafetensorError,) if SafetensorError else ())))


def _reason(exc: BaseException) -> str:
    if isinstance(exc, pickle.UnpicklingError):
        return ("its weights are a pickle that the safe loader refuses (it could run code); "
                "replace it with the model's model.safetensors")
    first = (str(exc).splitlines() or [""])[0].strip()[:120]
    if type(exc).__name__ == "SafetensorError" or isinstance(exc, EOFError):
        return f"its weight file is truncated or damaged ({first}); fetch it again ({named(Program.FETCH)})"
    return (f"its files cannot be loaded ({type(exc).__name__}: {first}); fetch the model again "
            f"({named(Program.FETCH)})")


def check_model_folder(source: str | Path, what: str, kinds: Iterable[str],
                       subfolder: str = "") -> Path | None:
    """Before any weights are read: a local folder must hold a config of one of `kinds` and a
    weight file. Returns the folder (None for a hub id, checked once loaded)."""
    if _is_hub_id(source):
        return None
    kinds = tuple(kinds)
    folder = Path(source).expanduser() / subfolder
    if not (folder / "config.json").is_file():
        raise MissingCheckpointError(
            f"{folder}: no {what} model here (config.json is missing); fetch the models with "
            f"`{named(Program.FETCH)}` or pass --checkpoints DIR")
    kind = _kind(read_config(folder))
    if kinds and kind not in kinds:
        raise CheckpointFormatError(
            f"{folder}: holds a {kind} model, not {what} ({' or '.join(kinds)}); put the right "
            f"model there ({named(Program.FETCH)}) or point --checkpoints elsewhere")
    if not any((folder / name).is_file() for name in _WEIGHT_FILES):
        raise MissingCheckpointError(
            f"{folder}: {what} has no weight file (model.safetensors); fetch it with "
            f"`{named(Program.FETCH)}`")
    return folder


def load_model_folder(cls, source: str | Path, what: str, kinds: Iterable[str], subfolder: str = "",
                      allowed_missing: Iterable[str] = (), **kwargs):
    """`cls.from_pretrained(source, ...)`, checked.

    `what`: the model's name for messages ("DINOv2"); `kinds`: the model_type (transformers) or
    `_class_name` (diffusers) values the folder's config may hold; `allowed_missing`: key suffixes
    that may be absent because inference never reads them. A hub id (--online) is loaded as it is,
    its weights checked the same way.
    """
    kinds = tuple(kinds)
    folder = check_model_folder(source, what, kinds, subfolder)
    shown = str(folder) if folder is not None else f"{source}{'/' + subfolder if subfolder else ''}"
    extra = {"subfolder": subfolder} if subfolder else {}
    try:
        model, info = cls.from_pretrained(str(source), output_loading_info=True, **extra, **kwargs)
    except Exception as exc:  # the libraries raise many types for a damaged or foreign file
        if folder is None and isinstance(exc, OSError):
            raise MissingCheckpointError(
                f"cannot load {what} from {shown} ({str(exc).splitlines()[0][:120]}); download it "
                f"with `{named(Program.FETCH)}` or pass --checkpoints DIR") from exc
        if not _damaged(exc):
            raise
        raise CheckpointFormatError(f"{shown}: {what} not loaded: {_reason(exc)}") from exc
    if folder is None:
        kind = getattr(model.config, "model_type", None) or type(model).__name__
        if kinds and kind not in kinds and type(model).__name__ not in kinds:
            raise CheckpointFormatError(f"{shown}: holds a {kind} model, not {what}")
    allowed = tuple(allowed_missing)
    missing = [k for k in info.get("missing_keys", ()) if not (allowed and k.endswith(allowed))]
    mismatched = list(info.get("mismatched_keys", ()))
    if missing or mismatched:
        example = missing[0] if missing else mismatched[0][0]
        raise CheckpointFormatError(
            f"{shown}: {what}'s weights leave {len(missing) + len(mismatched)} tensors at random "
            f"(e.g. {example!r} {'missing' if missing else 'of another shape'}); the folder holds "
            f"another or an incomplete model: fetch it again ({named(Program.FETCH)})")
    unexpected = list(info.get("unexpected_keys", ()))
    if unexpected:
        log.info("%s: %d weights that %s does not use (e.g. %s)", shown, len(unexpected), what, unexpected[0])
    return model


def _is_hub_id(source: str | Path) -> bool:
    """An `org/name` that is not a local path (what --online passes)."""
    text = str(source)
    return not Path(text).expanduser().exists() and text.count("/") == 1 and not text.startswith((".", "/", "~"))
