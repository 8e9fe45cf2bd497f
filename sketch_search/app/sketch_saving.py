"""Saving the sketch: written to the sketch folder under a time-stamped name and (with a search
worker) queued for a search; on Ctrl+C, SIGTERM or a failing camera, the drawing so far is saved
unsearched so it is never lost.
"""
from __future__ import annotations

import logging
import time
from datetime import datetime
from pathlib import Path

from sketch.canvas import Canvas
from sketch_search.app.events import EventLog
from sketch_search.app.live_follow import LiveFollow
from sketch_search.app.search_worker import SearchWorker
from sketch_search.app.timed_line import TimedLine
from sketch_search.common.errors import BlankSketchError, CameraError, SketchSearchError
from sketch_search.common.files import write_atomically

log = logging.getLogger(__name__)


class SketchSaver:
    """Saves into `sketch_dir`; `follow` exports the canvas (once per version) and learns what was
    saved; `toasts` says what happened; `saved`: the files written, oldest first."""

    def __init__(self, sketch_dir: Path, worker: SearchWorker | None, follow: LiveFollow,
                 events: EventLog, toasts: TimedLine):
        self.sketch_dir = sketch_dir
        self.worker = worker
        self.follow = follow
        self.events = events
        self.toasts = toasts
        self.saved: list[Path] = []

    def save(self, canvas: Canvas, search: bool = True) -> Path | None:
        """Export the sketch, write it, and (with a worker) queue a search. None when blank."""
        saved_at = time.monotonic()
        try:
            image, key = self.follow.exported(canvas)
        except BlankSketchError as exc:
            self.toasts.show(str(exc), error=True)
            log.warning("not saved: %s", exc)
            return None
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        path = self.sketch_dir / f"sketch-{stamp}.png"
        write_atomically(path, lambda p: image.save(p, format="PNG"))
        self.saved.append(path)
        self.follow.saved(canvas)
        log.info("sketch saved: %s", path)
        if search and self.worker is not None:
            self.events.write("save", at=saved_at, sketch=str(path))
            self.worker.submit(image, path, saved_at, key)
            waiting = "" if self.worker.loaded.is_set() else " (after the models load)"
            self.toasts.show(f"saved {path.name}: searching{waiting}")
        else:
            self.toasts.show(f"saved {path.name}")
        return path

    def save_on_interrupt(self, canvas: Canvas | None) -> None:
        """Ctrl+C or SIGTERM: save the drawing (not searched) unless it is saved as it is."""
        if canvas is None or canvas.is_blank() or self.follow.saved_version == canvas.version:
            return
        try:
            path = self.save(canvas, search=False)
        except (OSError, SketchSearchError) as exc:
            log.error("the sketch could not be saved: %s", exc)
            return
        if path is not None:
            log.warning("interrupted: the sketch so far is saved as %s", path)

    def saved_on_failure(self, canvas: Canvas | None, exc: CameraError) -> CameraError:
        """Save the sketch so far; the error to raise, naming the file."""
        if canvas is not None and not canvas.is_blank():
            path = self.save(canvas, search=False)
            return CameraError(f"{exc}; the sketch so far is saved as {path}")
        return exc
