"""The query pipeline: every model loaded once, then many queries.

sketch -> prepare (crop, square, binarise) -> BLIP caption -> prompt -> pix2pix-turbo image
-> DINOv2 vector -> cosine top-k over the gallery index (exact up to 200k photos). main.py
(webcam) and main2.py (headless) both drive this object; neither knows about torch.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from captioning.blip import BlipCaptioner
from captioning.prompt import build_prompt
from checkpoints import layout
from errors import GalleryError, MissingCheckpointError
from generation.pix2pix_turbo import Pix2PixTurbo
from generation.preprocess import PreparedSketch, prepare_sketch
from retrieval.embedder import DinoEmbedder
from retrieval.index import GalleryIndex, IndexReport, default_index_path
from retrieval.search import VectorSearch
from settings import Settings

log = logging.getLogger(__name__)

StatusFn = Callable[[str], None]
ProgressFn = Callable[[int, int], None]
# The models a SketchSearch holds, by the stage that uses them.
MODEL_STAGES = ("captioner", "generator", "embedder")


def pick_device(name: str) -> tuple[torch.device, torch.dtype]:
    """auto: CUDA, then Apple's MPS, then CPU. Half precision on CUDA only."""
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise MissingCheckpointError("--device cuda: no CUDA GPU is visible; use --device auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise MissingCheckpointError("--device mps: Apple's MPS is not available; use --device auto or cpu")
    return torch.device(name), (torch.float16 if name == "cuda" else torch.float32)


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX); emulated it is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class ModelPrecision:
    """The dtypes each model runs in on a device (measured in BENCHMARKS.md)."""

    captioner: torch.dtype
    generator: torch.dtype      # text encoder and UNet
    vae: torch.dtype            # SD's VAE
    embedder: torch.dtype
    channels_last: bool         # UNet/VAE memory format


def model_precision(device: torch.device, dtype: torch.dtype, precision: str = "auto") -> ModelPrecision:
    """CUDA: float16, but SD's VAE in float32 (it can overflow in float16). A CPU with native
    bfloat16: the generator in bfloat16 and channels-last (about 3x faster than float32, images
    within a few grey levels of it) and DINOv2 in bfloat16 (about 1.8x faster, vectors within
    1e-4 cosine of float32); BLIP stays float32 (its greedy caption can change with precision).
    Elsewhere, or with precision "float32": the pipeline's dtype throughout.
    """
    if precision == "float32":
        return ModelPrecision(*(torch.float32,) * 4, channels_last=False)
    if device.type == "cuda" and dtype == torch.float16:
        return ModelPrecision(dtype, dtype, torch.float32, dtype, channels_last=False)
    if device.type == "cpu" and dtype == torch.float32 and cpu_has_native_bfloat16():
        fast = torch.bfloat16
        return ModelPrecision(torch.float32, fast, fast, fast, channels_last=True)
    return ModelPrecision(*(dtype,) * 4, channels_last=False)


@dataclass
class QueryResult:
    caption: str
    prompt: str
    sketch: PreparedSketch
    generated: Image.Image
    results: list[tuple[Path, float]]
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self, generated_image_path: Path | str | None,
                index_report: IndexReport | None = None) -> dict:
        return {
            "caption": self.caption,
            "prompt": self.prompt,
            "generated_image": str(generated_image_path) if generated_image_path else None,
            "results": [{"path": str(p), "score": round(float(s), 6)} for p, s in self.results],
            "timings": {k: round(v, 4) for k, v in self.timings.items()},
            "index": index_report.to_dict() if index_report else None,
        }


class SketchSearch:
    """Loads the captioner, generator and embedder once; indexes a gallery; answers queries."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.device, self.dtype = pick_device(settings.device)
        self.captioner: BlipCaptioner | None = None
        self.generator: Pix2PixTurbo | None = None
        self.embedder: DinoEmbedder | None = None
        self._paths: list[Path] = []
        self._search = VectorSearch(np.zeros((0, 0), np.float32))
        self._lock = threading.Lock()  # one query or index update at a time

    # -- models -------------------------------------------------------------------------------
    def _fine_tuned_captioner(self) -> Path | None:
        choice = self.settings.captioner
        if choice == "stock":
            return None
        if choice == "auto":
            return layout.fine_tuned_captioner(self.settings.checkpoints)
        path = Path(choice).expanduser()
        if not path.exists():
            raise MissingCheckpointError(f"--captioner {choice}: no such file or folder")
        return path

    def model_sources(self, stages: Sequence[str] = MODEL_STAGES) -> list[layout.ModelSource]:
        """The model files the given stages need (default: all of them)."""
        ckpt = self.settings.checkpoints
        sources = []
        if "captioner" in stages:
            sources.append(layout.captioner_source(ckpt))
        if "generator" in stages:
            sources.extend(layout.generator_sources(ckpt))
        if "embedder" in stages:
            sources.append(layout.embedder_source(ckpt, self.settings.embedder))
        return sources

    def _where(self, source: layout.ModelSource) -> str | Path:
        """A local folder when present, else (with --online) the hub id to download."""
        if not source.missing_files() or not (self.settings.online and source.hub_id):
            return source.local
        return source.hub_id

    def check_models(self, stages: Sequence[str] = MODEL_STAGES) -> None:
        """Raise MissingCheckpointError (one line, with the fetch command) before any work."""
        unknown = set(stages) - set(MODEL_STAGES)
        if unknown:
            raise ValueError(f"unknown model stages {sorted(unknown)}; choose from {MODEL_STAGES}")
        if "captioner" in stages:
            self._fine_tuned_captioner()
        sources = self.model_sources(stages)
        if self.settings.online:
            sources = [s for s in sources if s.hub_id is None]
        layout.require(sources)

    def load(self, status: StatusFn | None = None, stages: Sequence[str] = MODEL_STAGES) -> None:
        """Load the stages' models (default: every one) once; later calls return at once.

        A tool that needs only some stages (e.g. evaluating raw sketches: the embedder) loads
        only those, and only their files must exist.
        """
        say = status or (lambda text: None)
        with self._lock:
            self.check_models(stages)
            ckpt = self.settings.checkpoints
            precision = model_precision(self.device, self.dtype, self.settings.precision)
            if "captioner" in stages and self.captioner is None:
                say("loading captioner")
                self.captioner = BlipCaptioner.from_pretrained(
                    self._where(layout.captioner_source(ckpt)), self._fine_tuned_captioner(), self.device,
                    precision.captioner)
            if "generator" in stages and self.generator is None:
                sd_turbo_src, lora_src = layout.generator_sources(ckpt)
                say("loading generator")
                # Merged for the configured gamma: a query at another gamma re-merges (seconds).
                self.generator = Pix2PixTurbo.from_pretrained(
                    self._where(sd_turbo_src), lora_src.local, self.device, precision.generator,
                    gamma=self.settings.gamma, vae_dtype=precision.vae, channels_last=precision.channels_last)
            if "embedder" in stages and self.embedder is None:
                say("loading embedder")
                source = layout.embedder_source(ckpt, self.settings.embedder)
                self.embedder = DinoEmbedder.from_pretrained(
                    self._where(source), self.device, precision.embedder,
                    name=layout.dinov2_dir_name(self.settings.embedder))
            say("models loaded")

    def warmup(self, status: StatusFn | None = None) -> dict[str, float]:
        """Run every model once on a made-up sketch so that the first real query is not the slow one.

        A first pass pays for kernel selection and memory set-up (most on CUDA; see
        BENCHMARKS.md for the CPU). Worth it where the user draws while it runs (the air canvas);
        a one-shot search (main2.py) gains nothing. Returns the seconds per stage.
        """
        if self.captioner is None or self.generator is None or self.embedder is None:
            self.load(status)
        (status or (lambda text: None))("warming up")
        paper = Image.new("RGB", (512, 512), "white")
        ImageDraw.Draw(paper).ellipse((96, 96, 416, 416), outline="black", width=12)
        sketch = prepare_sketch(paper)
        timings: dict[str, float] = {}
        with self._lock:
            with self._timed(timings, "captioning", None):
                caption = self.captioner.caption(sketch.preview)
            with self._timed(timings, "generating", None):
                generated = self.generator.generate(
                    sketch.mask, build_prompt(caption, self.settings.prompt_template),
                    gamma=self.settings.gamma, seed=self.settings.seed)
            with self._timed(timings, "searching", None):
                self.embedder.embed_images([generated])
        log.info("warm-up: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        return timings

    # -- gallery ------------------------------------------------------------------------------
    def index_path(self, gallery: Path) -> Path:
        return self.settings.index_path or default_index_path(
            gallery, layout.dinov2_dir_name(self.settings.embedder))

    def index_gallery(self, gallery: Path, progress: ProgressFn | None = None) -> IndexReport:
        """Bring the gallery's index up to date (new/changed photos only) and hold its vectors."""
        if self.embedder is None:
            self.load()
        gallery = Path(gallery).expanduser()
        if not gallery.is_dir():
            raise GalleryError(f"--gallery {gallery}: not a folder; pass the folder of your photos")
        with self._lock, GalleryIndex(self.index_path(gallery)) as index:
            report = index.update(gallery, self.embedder, batch_size=self.settings.batch_size,
                                  progress=progress, show_progress=self.settings.show_progress)
            self._paths, vectors = index.load_vectors()
            self._search = VectorSearch(vectors)  # exact unless the gallery is huge
        log.info("gallery %s: %d photos indexed", gallery, len(self._paths))
        return report

    @property
    def gallery_size(self) -> int:
        return len(self._paths)

    # -- queries ------------------------------------------------------------------------------
    @contextmanager
    def _timed(self, timings: dict[str, float], name: str, stage: StatusFn | None):
        if stage:
            stage(name)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":  # kernels are asynchronous: time their end, not their launch
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - start

    def query(self, image: Image.Image, top_k: int | None = None, seed: int | None = None,
              gamma: float | None = None, stage: StatusFn | None = None) -> QueryResult:
        """Search the indexed gallery with a sketch. Raises BlankSketchError on an empty one."""
        settings = self.settings
        k = settings.top_k if top_k is None else top_k
        timings: dict[str, float] = {}
        total = time.perf_counter()
        with self._timed(timings, "preprocess", stage):
            sketch = prepare_sketch(image)
        if self.captioner is None or self.generator is None or self.embedder is None:
            self.load()
        with self._lock:
            with self._timed(timings, "captioning", stage):
                caption = self.captioner.caption(sketch.preview)
                prompt = build_prompt(caption, settings.prompt_template)
            with self._timed(timings, "generating", stage):
                generated = self.generator.generate(
                    sketch.mask, prompt, gamma=settings.gamma if gamma is None else gamma,
                    seed=settings.seed if seed is None else seed)
            with self._timed(timings, "searching", stage):
                vector = self.embedder.embed_images([generated])[0]
                hits = self._search.top_k(vector, k) if len(self._paths) else []
                results = [(self._paths[i], float(score)) for i, score in hits]
        timings["total"] = time.perf_counter() - total
        return QueryResult(caption, prompt, sketch, generated, results, timings)
