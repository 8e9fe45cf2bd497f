"""Settings shared by main.py, main2.py and the pipeline, with their defaults.

Plain data only: the UI imports this without importing torch.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from captioning.prompt import DEFAULT_TEMPLATE
from checkpoints.layout import DEFAULT_EMBEDDER, EMBEDDER_MODELS, models_folder
from generation import DEFAULT_GAMMA

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "float32")
EMBEDDERS = tuple(EMBEDDER_MODELS)  # DINOv2 sizes, then DINOv3 ViT-H+/16


@dataclass(frozen=True)
class Settings:
    checkpoints: Path = field(default_factory=models_folder)  # checkpoints.layout.models_folder's choice
    device: str = "auto"               # auto: CUDA, then Apple's MPS, then CPU
    embedder: str = DEFAULT_EMBEDDER   # DINOv2 size (small, base, large, giant) or dinov3-vith16plus
    captioner: str = "auto"            # auto (fine-tuned if present), stock, or a folder/file path
    generator: str | None = None       # a pix2pix-turbo file of one's own (train_pix2pix_turbo.py); None: the sketch LoRA
    top_k: int = 5
    gamma: float = DEFAULT_GAMMA              # pix2pix-turbo's r: how closely the image follows the strokes
    seed: int = 0
    prompt_template: str = DEFAULT_TEMPLATE
    index_path: Path | None = None     # default: <gallery>/.sketch-search/index-<embedder>.sqlite
    rebuild_index: bool = False        # move the index aside (damaged, newer schema) and build it anew
    online: bool = False               # resolve missing models from the Hugging Face hub
    batch_size: int = 16               # photos embedded per batch while indexing
    show_progress: bool = True         # progress bars on the terminal (the command line draws them)
    precision: str = "auto"            # auto: see app/precision.py; float32: float32 everywhere
    colour_hints: bool = True          # red/green pens named in the prompt ("a red apple")

    def __post_init__(self) -> None:
        object.__setattr__(self, "checkpoints", Path(self.checkpoints).expanduser())
        if self.index_path is not None:
            object.__setattr__(self, "index_path", Path(self.index_path).expanduser())
