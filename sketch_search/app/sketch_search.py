"""The query pipeline: every model loaded once, then many queries, all by one route.

`SketchSearch` is the model pipeline (model_pipeline.py: sketch -> caption -> prompt -> image
-> vector, `encode`, `warmup`) with a live gallery (live_gallery.py: the indexed photos in
memory, growing slice by slice, and `rank` over them). `query` is the two: encode, then rank.
`preview` is the quick "sketch" route (the prepared sketch itself through DINOv2, no caption, no
generation) that the air canvas shows while a person draws. main.py (webcam) and main2.py
(headless) both drive this object; neither knows about torch.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from generation.preprocess import PreparedSketch, prepare_sketch
from retrieval.index import IndexProgress, IndexReport
from sketch_search.app.live_gallery import LiveGallery, ProgressFn
from sketch_search.app.model_pipeline import Encoded, ModelPipeline, StatusFn, made_up_sketch
from sketch_search.app.settings import Settings
from sketch_search.common.cancel import CancelCheck

__all__ = ["Encoded", "PreviewResult", "QueryResult", "SketchSearch", "made_up_sketch"]


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


class SketchSearch(ModelPipeline):
    """Loads the captioner, generator and embedder once; indexes a gallery; answers queries."""

    def __init__(self, settings: Settings):
        super().__init__(settings)
        self.live_gallery = LiveGallery(settings, self.loaded_embedder, self.lock)

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

    def preview(self, image: Image.Image | PreparedSketch) -> PreviewResult:
        """The "sketch" route: the prepared sketch's preview image through the embedder, ranked.

        What tools/evaluate_retrieval.py --modes sketch measures; one DINOv2 pass, no caption and
        no generation, so it follows a drawing as it grows. Raises BlankSketchError on an empty one.
        """
        start = time.perf_counter()
        sketch = image if isinstance(image, PreparedSketch) else prepare_sketch(image)
        embedder = self.loaded_embedder()
        with self.lock:
            embedding = time.perf_counter()
            vector = embedder.embed_images([sketch.preview])[0]
            self.synchronize()
            embedded = time.perf_counter()
            results = self.live_gallery.ranked(vector, self.settings.top_k)
        end = time.perf_counter()
        return PreviewResult(sketch, results, {"preprocess": embedding - start, "embedding": embedded - embedding,
                                               "ranking": end - embedded, "total": end - start})

    # -- the live gallery -----------------------------------------------------------------------
    def rank(self, vector: np.ndarray, k: int | None = None) -> list[tuple[Path, float]]:
        """The indexed photos most like `vector`, best first, with cosine scores."""
        return self.live_gallery.rank(vector, k)

    def index_path(self, gallery: Path) -> Path:
        return self.live_gallery.index_path(gallery)

    def index_gallery(self, gallery: Path, progress: ProgressFn | None = None) -> IndexReport:
        """The gallery's index brought up to date, all of it searched (LiveGallery.index_gallery)."""
        return self.live_gallery.index_gallery(gallery, progress)

    def start_index(self, gallery: Path) -> None:
        """Walk the gallery; what is indexed is searchable at once (LiveGallery.start_index)."""
        self.live_gallery.start_index(gallery)

    def index_slice(self, seconds: float = 1.0, cancelled: CancelCheck | None = None) -> IndexProgress:
        """About `seconds` of queued photos indexed and searched (LiveGallery.index_slice)."""
        return self.live_gallery.index_slice(seconds, cancelled)

    @property
    def gallery_size(self) -> int:
        """Photos searched: those in the in-memory search."""
        return self.live_gallery.gallery_size

    @property
    def gallery_total(self) -> int:
        """Photos known that will be searched, indexed or not (skipped files not counted)."""
        return self.live_gallery.gallery_total
