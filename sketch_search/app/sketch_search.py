"""The query pipeline: every model loaded once, then many queries, all by one route.

sketch -> prepare (crop, square, binarise) -> BLIP caption -> prompt -> pix2pix-turbo image
-> DINOv2 vector (`encode`) -> cosine top-k over the gallery index (`rank`). `query` is the two;
`warmup` encodes a made-up sketch; the retrieval evaluation calls `encode`. `preview` is the quick
"sketch" route (the prepared sketch itself through DINOv2, no caption, no generation) that the air
canvas shows while a person draws. A query can be cancelled in the middle (`cancelled`, checked
between the models' blocks). main.py (webcam) and main2.py (headless) both drive this object;
neither knows about torch.
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
from generation.pix2pix_turbo import Pix2PixTurbo
from generation.preprocess import PreparedSketch, prepare_sketch
from retrieval.embedder import DinoEmbedder
from retrieval.gallery import gallery_folder
from retrieval.index import GalleryIndex, IndexProgress, IndexReport, IndexRun, default_index_path
from retrieval.search import VectorSearch
from sketch_search.app.model_plan import MODEL_STAGES, plan_models
from sketch_search.app.precision import placement
from sketch_search.app.settings import Settings
from sketch_search.common.cancel import CancelCheck, check, checked_modules

log = logging.getLogger(__name__)

StatusFn = Callable[[str], None]
ProgressFn = Callable[[int, int], None]
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


@dataclass
class QueryResult(Encoded):
    """A sketch's route (its `vector` kept, so the answer can be ranked again over a grown index)
    and the ranked photos."""

    results: list[tuple[Path, float]] = field(default_factory=list)

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


@dataclass
class PreviewResult:
    """The sketch route's answer: the prepared sketch's own DINOv2 vector, ranked."""

    sketch: PreparedSketch
    results: list[tuple[Path, float]]
    timings: dict[str, float] = field(default_factory=dict)


def made_up_sketch() -> Image.Image:
    """A circle: what the warm-up runs through every model."""
    paper = Image.new("RGB", (512, 512), "white")
    ImageDraw.Draw(paper).ellipse((96, 96, 416, 416), outline="black", width=12)
    return paper


class SketchSearch:
    """Loads the captioner, generator and embedder once; indexes a gallery; answers queries."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.placement = placement(settings.device, settings.precision)
        self.device = self.placement.device
        self.captioner: BlipCaptioner | None = None
        self.generator: Pix2PixTurbo | None = None
        self.embedder: DinoEmbedder | None = None
        # The in-memory search over what is indexed so far: vectors by id, an id per photo.
        self._search = VectorSearch(np.zeros((0, 0), np.float32))
        self._id_of: dict[str, int] = {}      # relative path -> id
        self._path_of: dict[int, Path] = {}   # id -> absolute path
        self._next_id = 0
        self._gallery: Path | None = None
        self._run: IndexRun | None = None    # indexing in progress (None: nothing queued)
        self._report = IndexReport()          # what the last finished run did
        self._lock = threading.Lock()  # one query or index update at a time
        self._rebuild_index = settings.rebuild_index  # the first index opened is rebuilt, no later one

    # -- models -------------------------------------------------------------------------------
    def load(self, status: StatusFn | None = None, stages: Sequence[str] = MODEL_STAGES) -> None:
        """Load the stages' models (default: every one) once; later calls return at once.

        A tool that needs only some stages (e.g. evaluating raw sketches: the embedder) loads
        only those, and only their files must exist.
        """
        say = status or (lambda text: None)
        with self._lock:
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

    # -- the route ----------------------------------------------------------------------------
    @contextmanager
    def _timed(self, timings: dict[str, float], name: str, stage: StatusFn | None):
        if stage:
            stage(name)
        start = time.perf_counter()
        yield
        if self.device.type == "cuda":  # kernels are asynchronous: time their end, not their launch
            torch.cuda.synchronize()
        timings[name] = time.perf_counter() - start

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
        with self._lock:
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

    def preview(self, image: Image.Image | PreparedSketch) -> PreviewResult:
        """The "sketch" route: the prepared sketch's preview image through the embedder, ranked.

        What tools/evaluate_retrieval.py --modes sketch measures; one DINOv2 pass, no caption and
        no generation, so it follows a drawing as it grows. Raises BlankSketchError on an empty one.
        """
        start = time.perf_counter()
        sketch = image if isinstance(image, PreparedSketch) else prepare_sketch(image)
        if self.embedder is None:
            self.load(stages=("embedder",))
        with self._lock:
            embedding = time.perf_counter()
            vector = self.embedder.embed_images([sketch.preview])[0]
            if self.device.type == "cuda":
                torch.cuda.synchronize()
            embedded = time.perf_counter()
            results = self._ranked(vector, self.settings.top_k)
        end = time.perf_counter()
        return PreviewResult(sketch, results, {"preprocess": embedding - start, "embedding": embedded - embedding,
                                               "ranking": end - embedded, "total": end - start})

    def rank(self, vector: np.ndarray, k: int | None = None) -> list[tuple[Path, float]]:
        """The indexed photos most like `vector`, best first, with cosine scores."""
        with self._lock:
            return self._ranked(vector, self.settings.top_k if k is None else k)

    def _ranked(self, vector: np.ndarray, k: int) -> list[tuple[Path, float]]:
        """rank() for a caller that already holds the lock."""
        hits = self._search.top_k(vector, k) if len(self._search) else []
        return [(self._path_of[i], float(score)) for i, score in hits]

    def query(self, image: Image.Image, stage: StatusFn | None = None,
              cancelled: CancelCheck | None = None) -> QueryResult:
        """Search the indexed gallery with a sketch. Raises BlankSketchError on an empty one and
        sketch_search.common.cancel.Cancelled when `cancelled()` turns True while it runs."""
        start = time.perf_counter()
        encoded = self.encode(image, stage, cancelled)
        timings = dict(encoded.timings)
        ranking = time.perf_counter()
        results = self.rank(encoded.vector)
        timings["searching"] += time.perf_counter() - ranking
        timings["total"] = time.perf_counter() - start
        return QueryResult(encoded.caption, encoded.prompt, encoded.sketch, encoded.generated,
                           encoded.vector, timings, results)

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

    # -- gallery ------------------------------------------------------------------------------
    def index_path(self, gallery: Path) -> Path:
        return self.settings.index_path or default_index_path(
            gallery, layout.embedder_dir_name(self.settings.embedder))

    def index_gallery(self, gallery: Path, progress: ProgressFn | None = None) -> IndexReport:
        """Bring the gallery's index up to date and search all of it (main2: the complete index
        before the first answer). `progress(done, total)` after each batch, counting the photos
        decoded of those to embed."""
        self.start_index(gallery)
        todo = self.gallery_total - self.gallery_size
        while True:
            state = self.index_slice(0.0)  # one batch at a time
            if progress and todo:
                progress(todo - (state.total - state.searched), todo)
            if state.done:
                return self._report

    def start_index(self, gallery: Path) -> None:
        """Walk the gallery and compare it with its index; make the photos already indexed
        searchable at once (only those not yet in memory are read); queue the new and changed
        ones, newest first, for `index_slice`. Called again (the phone brought photos), new
        photos join the queue by their time; deleted and changed ones leave the search."""
        if self.embedder is None:
            self.load(stages=("embedder",))
        gallery = gallery_folder(gallery).absolute()
        with self._lock:
            if self._run is None or self._run.gallery != gallery:
                self._open_run(gallery)
            changes = self._run.rescan()
            keep = set(changes.keep)
            stale = [rel for rel in self._id_of if rel not in keep]
            self._search.remove([self._id_of[rel] for rel in stale])
            for rel in stale:
                del self._path_of[self._id_of.pop(rel)]
            missing = [rel for rel in changes.keep if rel not in self._id_of]
            if missing:
                paths, vectors = self._run.index.load_vectors(only=set(missing))
                self._remember([(path.relative_to(gallery).as_posix(), path) for path in paths], vectors)
            log.info("gallery %s: %d photos searchable, %d to index", gallery, len(self._search),
                     self._run.pending)

    def _open_run(self, gallery: Path) -> None:
        self._close_run()
        if self._gallery != gallery:  # another gallery: nothing in memory belongs to it
            self._id_of, self._path_of = {}, {}
            self._search = VectorSearch(np.zeros((0, 0), np.float32))
        rebuild, self._rebuild_index = self._rebuild_index, False  # once, not per call
        index = GalleryIndex(self.index_path(gallery), rebuild=rebuild)
        self._run = IndexRun(index, gallery, self.embedder, self.settings.batch_size)
        self._gallery = gallery

    def _close_run(self) -> None:
        if self._run is not None:
            self._report = self._run.report
            self._run.close()
            self._run.index.close()
            self._run = None

    def _remember(self, photos: list[tuple[str, Path]], vectors: np.ndarray) -> None:
        """Append vectors to the in-memory search, under new ids; nothing else is re-read."""
        ids = np.arange(self._next_id, self._next_id + len(photos), dtype=np.int64)
        self._next_id += len(photos)
        again = [self._id_of[rel] for rel, _ in photos if rel in self._id_of]
        self._search.remove(again)  # a photo re-embedded: its new vector replaces the old
        for old in again:
            del self._path_of[old]
        for new_id, (rel, path) in zip(ids.tolist(), photos):
            self._id_of[rel], self._path_of[new_id] = new_id, path
        self._search.add(vectors, ids)

    def index_slice(self, seconds: float = 1.0, cancelled: CancelCheck | None = None) -> IndexProgress:
        """Decode, embed and commit about `seconds` of queued photos (at least one batch), newest
        first, and add them to the search. Stops after the batch in progress when `cancelled()`
        turns True; what was committed stays (the next slice, or the next run, goes on)."""
        with self._lock:
            run = self._run
            if run is not None:
                deadline = time.perf_counter() + seconds
                while run.pending:
                    added = run.step()
                    if added:
                        self._remember([(rel, run.gallery / rel) for rel, _ in added],
                                       np.stack([vector for _, vector in added]))
                    if time.perf_counter() >= deadline or (cancelled is not None and cancelled()):
                        break
                if not run.pending:
                    self._close_run()
            return self._progress()

    def _progress(self) -> IndexProgress:
        pending = self._run.pending if self._run is not None else 0
        return IndexProgress(len(self._search), len(self._search) + pending, pending == 0)

    @property
    def gallery_size(self) -> int:
        """Photos searched: those in the in-memory search."""
        return len(self._search)

    @property
    def gallery_total(self) -> int:
        """Photos known that will be searched, indexed or not (skipped files not counted)."""
        return self._progress().total
