"""The fine-tuning run's resume state: written atomically, read back only by a matching run.

One torch file (`OUT/.resume/state.pt`) holds the trainable weights, the optimizer, scheduler
and gradient-scaler states, the random generators and where the run stood (epoch, batches done
in it, optimizer steps); `progress.json` beside it says the same for people. Each is written to
a temporary name and renamed, so an interrupt during a save leaves the previous state whole.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from sketch_search.common.errors import CheckpointFormatError
from sketch_search.common.files import write_atomically

log = logging.getLogger(__name__)

STATE_DIR = ".resume"
STATE_FILE = "state.pt"
PROGRESS_FILE = "progress.json"
FORMAT_VERSION = 1


@dataclass
class Progress:
    """Where a run stands; `batches_done` counts micro-batches of the current epoch."""

    epoch: int = 0
    batches_done: int = 0
    global_step: int = 0
    history: list[dict] = field(default_factory=list)  # one entry per finished epoch


def state_dir(out: Path) -> Path:
    return Path(out) / STATE_DIR


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def trainable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: p.detach().cpu().clone() for name, p in model.named_parameters() if p.requires_grad}


def save_state(out: Path, identity: dict, progress: Progress, model: torch.nn.Module,
               optimizer: torch.optim.Optimizer, scheduler, scaler) -> Path:
    """Write the resume state; returns the state file."""
    folder = state_dir(out)
    path = folder / STATE_FILE
    data = {"format": FORMAT_VERSION, "identity": identity, "progress": asdict(progress),
            "model": trainable_state(model), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(), "rng": _rng_state()}
    write_atomically(path, lambda tmp: torch.save(data, tmp))
    summary = {**asdict(progress), "identity": identity}
    write_atomically(folder / PROGRESS_FILE,
                  lambda tmp: Path(tmp).write_text(json.dumps(summary, indent=2)))
    log.info("resume state saved at step %d (%d epochs and %d batches done) in %s",
             progress.global_step, progress.epoch, progress.batches_done, path)
    return path


def read_progress(out: Path) -> Progress | None:
    """The saved progress (None when there is no state), without loading the weights."""
    path = state_dir(out) / PROGRESS_FILE
    if not (state_dir(out) / STATE_FILE).is_file() or not path.is_file():
        return None
    data = json.loads(path.read_text())
    return Progress(data["epoch"], data["batches_done"], data["global_step"], data["history"])


def _differences(saved: dict, current: dict) -> list[str]:
    keys = sorted(set(saved) | set(current))
    return [f"{k} {saved.get(k)!r} (now {current.get(k)!r})" for k in keys if saved.get(k) != current.get(k)]


def load_state(out: Path, identity: dict, model: torch.nn.Module, optimizer: torch.optim.Optimizer,
               scheduler, scaler) -> Progress | None:
    """Restore a saved run into the given objects; None when there is no state.

    Refuses (one line) a state saved by a run with other data or options: continuing it would
    silently mix two trainings.
    """
    path = state_dir(out) / STATE_FILE
    if not path.is_file():
        return None
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged file
        raise CheckpointFormatError(f"{path}: unreadable resume state ({type(exc).__name__}); "
                                    f"delete it or pass --restart to start over") from exc
    if not isinstance(data, dict) or data.get("format") != FORMAT_VERSION:
        raise CheckpointFormatError(f"{path}: not a resume state of this version; "
                                    f"delete it or pass --restart to start over")
    differences = _differences(data["identity"], identity)
    if differences:
        raise CheckpointFormatError(
            f"{path} was saved by a run with other settings: {'; '.join(differences[:3])}; run with "
            f"the same settings to continue it, or pass --restart to start over")
    parameters = dict(model.named_parameters())
    saved = data["model"]
    if set(saved) != {n for n, p in parameters.items() if p.requires_grad}:
        raise CheckpointFormatError(f"{path}: its weights do not fit this model; pass --restart")
    with torch.no_grad():
        for name, value in saved.items():
            parameters[name].copy_(value)
    optimizer.load_state_dict(data["optimizer"])
    scheduler.load_state_dict(data["scheduler"])
    scaler.load_state_dict(data["scaler"])
    _set_rng_state(data["rng"])
    progress = Progress(**data["progress"])
    log.info("resuming from step %d (epoch %d, %d batches into it) saved in %s",
             progress.global_step, progress.epoch + 1, progress.batches_done, path)
    return progress
