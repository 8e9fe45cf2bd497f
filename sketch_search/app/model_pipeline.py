"""The model pipeline: every model loaded once, then one sketch after another through them.

sketch -> prepare (crop, square, binarise) -> BLIP caption -> prompt -> pix2pix-turbo image
-> DINOv2 vector (`encode`). `warmup` encodes a made-up sketch; the retrieval evaluation calls
`encode`. A sketch can be cancelled in the middle (`cancelled`, checked between the models'
blocks). Knows nothing of a gallery: `SketchSearch` (sketch_search.py) ranks the vectors over
the live gallery (live_gallery.py).
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageDraw

from captioning.blip import BlipCaptioner
from captioning.prompt import build_prompt
from generation.pix2pix_turbo import Pix2PixTurbo
from generation.preprocess import PreparedSketch, prepare_sketch
from retrieval.embedder import DinoEmbedder
from sketch_search.app.model_plan import MODEL_STAGES, plan_models
from sketch_search.app.precision import placement
from sketch_search.app.settings import Settings
from sketch_search.common.cancel import CancelCheck, check, checked_modules

log = logging.getLogger(__name__)

StatusFn = Callable[[str], None]
# The captioner's and embedder's transformer layers check for cancellation before they run.
CHECKED_LAYERS = ("BlipEncoderLayer", "BlipTextLayer", "Dinov2Layer")


def _checked_layers(model) -> list:
    return [module for module in model.modules() if type(module).__name__ in CHECKED_LAYERS]


@dataclass
class Encoded:
    """What the route makes of one sketch, before ranking."""

    caption: str
    prompt: str
    sketch: PreparedSketch
    generated: Image.Image
    vector: np.ndarray
    timings: dict[str, float] = field(default_factory=dict)


def made_up_sketch() -> Image.Image:
    """A circle: what the warm-up runs through every model."""
    paper = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(paper).ellipse((96, 96, 416, 416), outline="black", width=12)
    return paper


class ModelPipeline:
    """Loads the captioner, generator and embedder once; encodes sketches.

    `lock`: one model call (or index update, see LiveGallery) at a time.
    """

    def __init__(self, settings: Settings):
        self.settings = settings
        self.placement = placement(settings.device, settings.precision)
        self.device = self.placement.device
        self.captioner: BlipCaptioner | None = None
        self.generator: Pix2PixTurbo | None = None
        self.embedder: DinoEmbedder | None = None
        self.lock = threading.Lock()

    def load(self, status: StatusFn | None = None, stages: Sequence[str] = MODEL_STAGES) -> None:
        """Load the stages' models (default: every one) once; later calls return at once.

        A tool that needs only some stages (e.g. evaluating raw sketches: the embedder) loads
        only those, and only their files must exist.
        """
        say = status or (lambda text: None)
        with self.lock:
            plan = plan_models(self.settings, stages)
            dtypes = self.placement.dtypes
            if "captioner" in stages and self.captioner is None:
                say("loading captioner")
                self.captioner = BlipCaptioner.from_pretrained(
                    plan.captioner, plan.fine_tuned_captioner, self.device, dtypes.captioner)
            if "generator" in stages and self.generator is None:
                say("loading generator")
                # Merged for the configured gamma, the only one queries use.
                self.generator = Pix2PixTurbo.from_pretrained(
                    plan.sd_turbo, plan.lora, self.device, dtypes.generator, gamma=self.settings.gamma,
                    vae_dtype=dtypes.vae, channels_last=dtypes.channels_last)
            if "embedder" in stages and self.embedder is None:
                say("loading embedder")
                self.embedder = DinoEmbedder.from_pretrained(
                    plan.embedder, self.device, dtypes.embedder, name=plan.embedder_name)
            say("models loaded")

    def _require_loaded(self) -> None:
        if self.captioner is None or self.generator is None or self.embedder is None:
            self.load()

    def loaded_embedder(self) -> DinoEmbedder:
        """The embedder, loaded first if it is not (the only model indexing and previews need)."""
        if self.embedder is None:
            self.load(stages=("embedder",))
        return self.embedder

    @contextmanager
    def _timed(self, timings: dict[str, float], name: str, stage: StatusFn | None):
        if stage:
            stage(name)
        start = time.perf_counter()
        yield
        self.synchronize()
        timings[name] = time.perf_counter() - start

    def synchronize(self) -> None:
        """Kernels are asynchronous: wait for their end (to time it, not their launch)."""
        if self.device.type == "cuda":
            torch.cuda.synchronize()

    def caption(self, sketch: PreparedSketch) -> tuple[str, str]:
        """(caption, the generator's prompt built from it)."""
        caption = self.captioner.caption(sketch.preview)
        return caption, build_prompt(caption, self.settings.prompt_template, sketch.colour if self.settings.colour_hints else None)

    def encode(self, image: Image.Image | PreparedSketch, stage: StatusFn | None = None,
               cancelled: CancelCheck | None = None) -> Encoded:
        """Sketch -> caption, prompt, generated image and its vector, with seconds per stage.

        Raises BlankSketchError on an empty sketch, before any model runs, and
        sketch_search.common.cancel.Cancelled soon after `cancelled()` turns True (each model checks it
        between its blocks).
        """
        timings: dict[str, float] = {}
        with self._timed(timings, "preprocess", stage):
            sketch = image if isinstance(image, PreparedSketch) else prepare_sketch(image)
        self._require_loaded()
        with self.lock:
            check(cancelled)
            with self._timed(timings, "captioning", stage), \
                    checked_modules(_checked_layers(self.captioner.model) if cancelled else (), cancelled):
                caption, prompt = self.caption(sketch)
            check(cancelled)
            with self._timed(timings, "generating", stage):
                generated = self.generator.generate(sketch.mask, prompt, seed=self.settings.seed,
                                                    cancelled=cancelled)
            check(cancelled)
            # "searching" starts with the embedding: the status line names one stage for both.
            with self._timed(timings, "searching", stage):
                vector = self.embedder.embed_images([generated])[0]
        return Encoded(caption, prompt, sketch, generated, vector, timings)

    def warmup(self, status: StatusFn | None = None, cancelled: CancelCheck | None = None) -> dict[str, float]:
        """Run every model once on a made-up sketch so that the first real query is not the slow one.

        A first pass pays for kernel selection and memory set-up (most on CUDA; see
        BENCHMARKS.md for the CPU). Worth it where the user draws while it runs (the air canvas);
        a one-shot search (main2.py) gains nothing. Returns the seconds per stage.
        """
        self._require_loaded()
        (status or (lambda text: None))("warming up")
        timings = {k: v for k, v in self.encode(made_up_sketch(), cancelled=cancelled).timings.items()
                   if k != "preprocess"}
        log.info("warm-up: %s", ", ".join(f"{k} {v:.2f} s" for k, v in timings.items()))
        return timings
