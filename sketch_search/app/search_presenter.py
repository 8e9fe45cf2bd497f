"""What the window shows of the search thread's work: results views and status lines.

Turns a query's or a preview's answer into `sketch.overlay.ResultsView` (BGR arrays, thumbnails
of the matches kept in a small cache) and says in one line what the worker is doing (an index
error in the command line's words included). No
decisions and no threads: the worker calls it, tests call it directly.
"""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from retrieval.index_errors import IndexFileError
from sketch import overlay
from sketch_search.app.cli import index_error_with_flags
from sketch_search.app.search_scheduler import IndexState
from sketch_search.common.names import display_name

THUMBNAILS_KEPT = 256      # gallery thumbnails kept for the results panel


def bgr(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def coverage(index: IndexState | None) -> str:
    """"searched 1,240 of 10,312 photos" while indexing goes on; "" once all are searched."""
    if index is None or index.searched >= index.total:
        return ""
    return f"searched {index.searched:,} of {index.total:,} photos"


def ready_line(index: IndexState | None, gallery: bool) -> str:
    """The status line when no query runs."""
    if not gallery:
        return "ready (no --gallery: caption and image only)"
    if index is None:
        return "indexing gallery"
    if not index.done:
        return f"indexing gallery: {coverage(index) or f'{index.searched:,} photos'}"
    return f"ready: {index.searched:,} photos indexed"


def found_line(view: overlay.ResultsView, ahead: bool, index: IndexState | None) -> str:
    """The status line after a save's answer."""
    best = f", best {view.photos[0].score:.3f}" if view.photos else ""
    ready = ", ready ahead" if ahead else ""
    covered = f"; {coverage(index)}" if coverage(index) else ""
    return f"found {len(view.photos)} photos{best} ({view.seconds:.1f} s{ready}){covered}"


def index_error_text(error: Exception) -> str:
    """Why the gallery cannot be indexed; an unusable index names its ways out as the programs'
    flags (--rebuild-index, --index), as main2's command line does."""
    if isinstance(error, IndexFileError):
        error = index_error_with_flags(error)
    return str(error)


class Presenter:
    """Results views for the panel, with the matches' thumbnails cached by path and file time."""

    def __init__(self, thumbnails_kept: int = THUMBNAILS_KEPT):
        self.thumbnails_kept = thumbnails_kept
        self._thumbnails: OrderedDict[tuple[str, float], np.ndarray | None] = OrderedDict()

    def query_view(self, sketch: Image.Image, result, index: IndexState | None,
                   gallery_size: int) -> overlay.ResultsView:
        """A full run's answer: sketch, generated image, caption and the matches."""
        return overlay.ResultsView(
            sketch=bgr(sketch), generated=bgr(result.generated), caption=result.caption,
            photos=self.photos(result.results), gallery_size=gallery_size,
            seconds=result.timings.get("total", 0.0), total=_total(index, gallery_size))

    def preview_view(self, sketch: Image.Image, results, index: IndexState | None, gallery_size: int,
                     seconds: float) -> overlay.ResultsView:
        return overlay.ResultsView(
            sketch=bgr(sketch), generated=None, caption="", photos=self.photos(results),
            gallery_size=gallery_size, seconds=seconds, label=overlay.PREVIEW_LABEL,
            total=_total(index, gallery_size))

    def refreshed(self, view: overlay.ResultsView, results, index: IndexState | None,
                  gallery_size: int) -> overlay.ResultsView:
        """The same answer ranked over a larger index."""
        return dataclasses.replace(view, photos=self.photos(results), gallery_size=gallery_size,
                                   total=_total(index, gallery_size))

    def photos(self, results) -> list[overlay.ResultPhoto]:
        return [overlay.ResultPhoto(Path(path), display_name(Path(path).name), float(score), self.thumbnail(path))
                for path, score in results]

    def thumbnail(self, path) -> np.ndarray | None:
        try:
            key = (str(path), Path(path).stat().st_mtime)
        except OSError:
            return None
        if key in self._thumbnails:
            self._thumbnails.move_to_end(key)
            return self._thumbnails[key]
        from retrieval.images import load_thumbnail  # Pillow only; the loop never calls this
        image = load_thumbnail(path, min_side=overlay.TILE)
        self._thumbnails[key] = thumbnail = bgr(image) if image is not None else None
        while len(self._thumbnails) > self.thumbnails_kept:
            self._thumbnails.popitem(last=False)
        return thumbnail


def _total(index: IndexState | None, gallery_size: int) -> int:
    return max(index.total, gallery_size) if index is not None else gallery_size
