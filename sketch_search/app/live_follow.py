"""Following the drawing: the newest canvas handed to the search worker while a person draws, a
preview when it changed and a full run ahead after the pen rested; and the canvas's export, made
once per version and shared with the save.

No thread: the loop calls `follow` once a frame. Versions are the canvas's own counter.
"""
from __future__ import annotations

import time

from sketch.canvas import Canvas
from sketch_search.app.live_mode import LiveMode
from sketch_search.app.search_worker import SearchWorker, image_key

PREVIEW_SECONDS = 0.5      # during a long stroke, a preview of the drawing so far this often


class LiveFollow:
    """`live`: the window's LiveMode (what follows the drawing); `pause`: pen-up seconds
    before the run ahead (preview); `worker`: None without a search."""

    def __init__(self, worker: SearchWorker | None, live: LiveMode, pause: float):
        self.worker = worker
        self.live = live
        self.pause = pause
        # The canvas version last seen, last asked about, last sent ahead and last saved; the
        # frame time of the last change and of the last live request.
        self._seen_version = self._asked_version = self._ahead_version = 0
        self.saved_version: int | None = None
        self._changed_t = self._asked_t = 0.0
        self._export: tuple[int, object, str] | None = None   # version, image, key

    def exported(self, canvas: Canvas):
        """(image, key) of the canvas as it is now; exported once per canvas version."""
        version = canvas.version
        if self._export is None or self._export[0] != version:
            image = canvas.export()  # BlankSketchError when blank
            self._export = (version, image, image_key(image))
        return self._export[1], self._export[2]

    def saved(self, canvas: Canvas) -> None:
        """The canvas was saved as it is: nothing to follow until it changes."""
        self.saved_version = canvas.version

    def follow(self, canvas: Canvas, t: float) -> bool:
        """Hand the worker the newest canvas: a preview when it changed, a run ahead after a pause.
        True when the canvas was cleared or erased: the window goes back to the last save's results.

        `t` is the frame's time (the pen's clock); a preview's latency is measured from now.
        """
        worker, live = self.worker, self.live
        if worker is None or live is LiveMode.OFF:
            return False
        version = canvas.version
        if version != self._seen_version:   # ink changed: a run ahead is for an old drawing
            self._seen_version, self._changed_t = version, t
            worker.canvas_changed()
        if version == self.saved_version:  # saved as it is: nothing to follow
            self._asked_version = self._ahead_version = version
            return False
        stroke_over = not canvas.drawing
        if version != self._asked_version and (
                stroke_over or (live is LiveMode.PREVIEW and t - self._asked_t >= PREVIEW_SECONDS)):
            self._asked_version, self._asked_t = version, t
            if canvas.is_blank():   # cleared or erased: back to the last save's results
                self._ahead_version = version
                return True
            image, key = self.exported(canvas)
            if live is LiveMode.PREVIEW:
                worker.preview(image, key, time.monotonic())
            else:  # full: the whole route on every finished stroke, cancelled by the next change
                worker.speculate(image, key)
                self._ahead_version = version
        if (live is LiveMode.PREVIEW and stroke_over and version != self._ahead_version
                and t - self._changed_t >= self.pause and not canvas.is_blank()):
            self._ahead_version = version
            worker.speculate(*self.exported(canvas))
        return False
