"""The search thread of the air canvas: loads the models once, indexes the gallery, answers
queries in order and writes their files, while the camera loop keeps drawing."""
from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from app.outputs import save_query_files
from common.errors import SketchSearchError
from sketch import overlay

log = logging.getLogger(__name__)


@dataclass
class SearchOutcome:
    sketch_path: Path
    json_path: Path | None = None
    view: overlay.ResultsView | None = None
    error: str | None = None


class SearchBackend(Protocol):
    """What the worker needs of the pipeline (app.sketch_search.SketchSearch), without torch."""

    @property
    def gallery_size(self) -> int: ...

    def load(self, status: Callable[[str], None] | None = None) -> None: ...

    def warmup(self, status: Callable[[str], None] | None = None) -> dict[str, float]: ...

    def index_gallery(self, gallery: Path, progress: Callable[[int, int], None] | None = None) -> Any: ...

    def query(self, image: Image.Image, stage: Callable[[str], None] | None = None) -> Any: ...


class SearchWorker:
    """One thread: loads the models and indexes the gallery once, then answers queries in order.

    Status text is read by the loop every frame.
    """

    def __init__(self, search: SearchBackend, gallery: Path | None = None,
                 gallery_changed: threading.Event | None = None):
        self.search = search
        self.gallery = gallery
        # Set by the phone sync when photos arrive: the index catches up between queries.
        self.gallery_changed = gallery_changed
        self._jobs: queue.Queue = queue.Queue()
        self._done: queue.Queue = queue.Queue()
        self._lock = threading.Condition()
        self._status, self._status_error = "starting", False
        self._pending = 0
        self._index_report = None
        self.load_error: str | None = None
        self.loaded = threading.Event()
        self.failures = 0
        self._thread = threading.Thread(target=self._run, name="sketch-search", daemon=True)

    # -- loop side ------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, sketch: Image.Image, sketch_path: Path) -> None:
        with self._lock:
            self._pending += 1
        self._jobs.put((sketch, sketch_path))

    @property
    def status(self) -> tuple[str, bool]:
        with self._lock:
            return self._status, self._status_error

    @property
    def busy(self) -> bool:
        """A query is queued or running."""
        with self._lock:
            return self._pending > 0

    def finished(self) -> list[SearchOutcome]:
        outcomes = []
        while True:
            try:
                outcomes.append(self._done.get_nowait())
            except queue.Empty:
                return outcomes

    def wait(self, timeout: float | None = None) -> bool:
        """Until no query is queued or running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        self._jobs.put(None)

    # -- worker side ----------------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        with self._lock:
            self._status, self._status_error = text, error
        log.info("search: %s", text)

    def _run(self) -> None:
        try:
            self._say("loading models")
            self.search.load(status=lambda text: self._say(f"loading models: {text}"))
            # One pass through every model now, while the user draws, so the first query is not
            # the slow one (kernel selection, memory set-up).
            self.search.warmup(status=lambda text: self._say(text))
            if self.gallery is not None:
                self._index()
            else:
                self._say("ready (no --gallery: caption and image only)")
        except SketchSearchError as exc:
            self.load_error = str(exc)
            self._say(f"error: {exc}", error=True)
            log.error("search unavailable: %s", exc)
        except Exception as exc:  # a bug: keep its traceback in the log, keep the window alive
            self.load_error = f"{type(exc).__name__}: {exc}"
            self._say(f"error: {self.load_error}", error=True)
            log.exception("loading the models failed")
        finally:
            self.loaded.set()
        while (job := self._next_job()) is not None:
            outcome = self._answer(*job)
            if outcome.error:
                self.failures += 1
            self._done.put(outcome)
            with self._lock:
                self._pending -= 1
                self._lock.notify_all()

    def _index(self) -> None:
        if self.gallery_changed is not None:
            self.gallery_changed.clear()
        self._say("indexing gallery")
        self._index_report = self.search.index_gallery(
            self.gallery, progress=lambda done, total: self._say(f"indexing gallery {done}/{total}"))
        self._say(f"ready: {self.search.gallery_size} photos indexed")

    def _next_job(self):
        """The next query (None to stop); while idle, index photos that arrived meanwhile."""
        while True:
            if (self.gallery_changed is not None and self.gallery_changed.is_set()
                    and self.gallery is not None and not self.load_error):
                try:
                    self._index()
                except SketchSearchError as exc:
                    self._say(f"error: {exc}", error=True)
            try:
                return self._jobs.get(timeout=0.5 if self.gallery_changed is not None else None)
            except queue.Empty:
                continue

    def _answer(self, sketch: Image.Image, sketch_path: Path) -> SearchOutcome:
        if self.load_error:
            log.error("%s: not searched: %s", sketch_path.name, self.load_error)
            return SearchOutcome(sketch_path, error=self.load_error)
        try:
            result = self.search.query(sketch, stage=lambda name: self._say(f"{name}..."))
            generated_path = sketch_path.with_name(f"{sketch_path.stem}-generated.png")
            json_path = sketch_path.with_suffix(".json")
            save_query_files(result, self._index_report, generated_path, json_path)
            view = overlay.ResultsView(
                sketch=_bgr(sketch), generated=_bgr(result.generated), caption=result.caption,
                photos=[(Path(path).name, score, _thumbnail(path)) for path, score in result.results],
                gallery_size=self.search.gallery_size, seconds=result.timings.get("total", 0.0))
            best = f", best {result.results[0][1]:.3f}" if result.results else ""
            self._say(f"found {len(result.results)} photos{best} ({view.seconds:.1f} s)")
            log.info("%s: results in %s", sketch_path.name, json_path)
            return SearchOutcome(sketch_path, json_path, view)
        except SketchSearchError as exc:
            self._say(f"search failed: {exc}", error=True)
            log.error("%s: search failed: %s", sketch_path.name, exc)
            return SearchOutcome(sketch_path, error=str(exc))
        except Exception as exc:
            self._say(f"search failed: {type(exc).__name__}: {exc}", error=True)
            log.exception("%s: search failed", sketch_path.name)
            return SearchOutcome(sketch_path, error=f"{type(exc).__name__}: {exc}")


def _bgr(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def _thumbnail(path) -> np.ndarray | None:
    from retrieval.images import load_image  # Pillow only; the loop never calls this
    try:
        return _bgr(load_image(path, min_side=overlay.TILE))
    except SketchSearchError:  # deleted or damaged since indexing: shown grey
        return None


# -- the program ----------------------------------------------------------------------------------
