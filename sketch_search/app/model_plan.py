"""Which model files the chosen stages need, decided and checked without importing torch.

`main2.py` with a missing model answers in about a second: this runs before the 15-20 s of
torch/transformers/diffusers imports that loading needs.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from checkpoints import layout
from sketch_search.app.settings import Settings
from sketch_search.common.errors import MissingCheckpointError

# The models a SketchSearch holds, by the stage that uses them.
MODEL_STAGES = ("captioner", "generator", "embedder")


@dataclass(frozen=True)
class ModelPlan:
    """Where each chosen stage's model is loaded from: a local path, or a hub id (--online)."""

    captioner: str | Path | None = None
    fine_tuned_captioner: Path | None = None  # weights over the captioner's base (seed file or folder)
    sd_turbo: str | Path | None = None
    lora: Path | None = None                  # the sketch LoRA file, or --generator's file
    embedder: str | Path | None = None
    embedder_name: str = ""                   # the index fingerprint's family/size name


def _fine_tuned_captioner(settings: Settings) -> Path | None:
    choice = settings.captioner
    if choice == "stock":
        return None
    if choice == "auto":
        return layout.fine_tuned_captioner(settings.checkpoints)
    path = Path(choice).expanduser()
    if not path.exists():
        raise MissingCheckpointError(f"--captioner {choice}: no such file or folder")
    return path


def model_sources(settings: Settings, stages: Sequence[str] = MODEL_STAGES) -> list[layout.ModelSource]:
    """The model files the given stages need (default: all of them)."""
    unknown = set(stages) - set(MODEL_STAGES)
    if unknown:
        raise ValueError(f"unknown model stages {sorted(unknown)}; choose from {MODEL_STAGES}")
    ckpt = settings.checkpoints
    sources = []
    if "captioner" in stages:
        sources.append(layout.captioner_source(ckpt))
    if "generator" in stages:
        sources.extend(layout.generator_sources(ckpt, settings.generator))
    if "embedder" in stages:
        sources.append(layout.embedder_source(ckpt, settings.embedder))
    return sources


def _where(source: layout.ModelSource, online: bool) -> str | Path:
    """A local folder when present, else (with --online) the hub id to download."""
    if not source.missing_files() or not (online and source.hub_id):
        return source.local
    return source.hub_id


def plan_models(settings: Settings, stages: Sequence[str] = MODEL_STAGES) -> ModelPlan:
    """Check that the stages' files are there (one line naming them and the fetch command if
    not) and say where each model loads from. Nothing here imports torch."""
    sources = model_sources(settings, stages)
    if "generator" in stages and settings.generator is not None:
        own = Path(settings.generator).expanduser()
        if not own.is_file():
            raise MissingCheckpointError(
                f"--generator {settings.generator}: no such file; pass the .pkl that "
                f"train_pix2pix_turbo.py wrote, or leave --generator out for the sketch model")
    fine_tuned = _fine_tuned_captioner(settings) if "captioner" in stages else None
    layout.require([s for s in sources if not (settings.online and s.hub_id)])
    online, ckpt = settings.online, settings.checkpoints
    plan: dict = {}
    if "captioner" in stages:
        plan["captioner"] = _where(layout.captioner_source(ckpt), online)
        plan["fine_tuned_captioner"] = fine_tuned
    if "generator" in stages:
        sd_turbo, lora = layout.generator_sources(ckpt, settings.generator)
        plan["sd_turbo"], plan["lora"] = _where(sd_turbo, online), lora.local
    if "embedder" in stages:
        plan["embedder"] = _where(layout.embedder_source(ckpt, settings.embedder), online)
        plan["embedder_name"] = layout.embedder_dir_name(settings.embedder)
    return ModelPlan(**plan)
