"""The air canvas's frames, run: the window opened and closed, frames read, stepped and shown at
the video's own pace, the search thread and the phone sync started and ended, and every way out
(the video's end, quit, Ctrl+C, SIGTERM, a camera failure) taken the same way.

AirCanvasApp (air_canvas.py) does one frame; this runs them. No torch here either.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import cv2

from sketch.camera import FrameSource
from sketch_search.app.window_picture import write_picture
from sketch_search.common.errors import CameraError

if TYPE_CHECKING:  # only for type hints: air_canvas imports this module
    from sketch_search.app.air_canvas import AirCanvasApp

log = logging.getLogger(__name__)

TITLE = "Sketch search"


@dataclass
class LoopStats:
    frames: int = 0
    seconds: float = 0.0                                     # wall time of the frame loop
    shown_fps: float = 0.0                                   # the window's smoothed frame rate
    # Latest frames, for benchmarks: (wall seconds, CPU seconds of the whole process, worker busy)
    frame_seconds: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=100_000))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    def tick(self, wall: float, cpu: float, busy: bool) -> None:
        """One frame done, `wall` and `cpu` seconds after the last one."""
        self.frame_seconds.append((wall, cpu, busy))
        rate = 1.0 / max(wall, 1e-6)
        self.shown_fps = 0.9 * self.shown_fps + 0.1 * rate if self.shown_fps else rate
        self.frames += 1


class FrameLoop:
    """Runs `app`'s frames from a source until it ends, the person quits or --max-frames."""

    def __init__(self, app: AirCanvasApp):
        self.app = app
        self.options = app.options

    def run(self, source: FrameSource) -> int:
        """0 when every search worked. Raises CameraError when the camera fails, after saving the
        sketch so far."""
        app = self.app
        self.options.sketch_dir.mkdir(parents=True, exist_ok=True)
        try:
            # Started here, cancelled and joined once on the way out, whichever way it is.
            with self._fast_switching(), app.worker_owner or contextlib.nullcontext(), \
                    self._phone_sync(), self._window():
                try:
                    self._loop(source)
                    self._finish_searches()
                    if self.options.screenshot and app.last_frame is not None:
                        write_picture(self.options.screenshot, app.compose())
                except (KeyboardInterrupt, SystemExit):  # Ctrl+C, SIGTERM: keep the drawing
                    app.saver.save_on_interrupt(app.canvas)
                    raise
                finally:
                    source.close()
                    if app.tracker is not None:
                        app.tracker.close()
        finally:
            app.events.close()
        return 1 if app.worker is not None and app.worker.failures else 0

    @contextlib.contextmanager
    def _fast_switching(self) -> Iterator[None]:
        """With a search thread: a 1 ms switch interval while the loop runs. The worker runs
        Python between torch calls; at the default 5 ms the loop can wait that long for the GIL
        each time it gets it back from OpenCV or MediaPipe, many times a frame (the convoy
        effect). 1 ms keeps frames on time."""
        switch_interval = sys.getswitchinterval()
        if self.app.worker is not None:
            sys.setswitchinterval(min(switch_interval, 0.001))
        try:
            yield
        finally:
            sys.setswitchinterval(switch_interval)

    @contextlib.contextmanager
    def _phone_sync(self) -> Iterator[None]:
        """The phone sync looks while the frames run, and no more after (it never delays the end)."""
        sync = self.app.phone_sync
        if sync is not None:
            sync.start()
        try:
            yield
        finally:
            if sync is not None:
                sync.stop()

    @contextlib.contextmanager
    def _window(self) -> Iterator[None]:
        if self.options.window:
            # GUI_NORMAL: no Qt toolbar or status line around the picture (it has its own)
            cv2.namedWindow(TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
        try:
            yield
        finally:
            if self.options.window:
                cv2.destroyAllWindows()

    def _loop(self, source: FrameSource) -> None:
        app, options, stats = self.app, self.options, self.app.stats
        pace = options.window and not source.live  # show a video file at its own speed
        start = last = time.perf_counter()
        last_cpu = time.process_time()
        while not app.quit_requested:
            try:
                item = source.read()
            except CameraError as exc:
                raise app.saver.saved_on_failure(app.canvas, exc) from None
            if item is None:
                break
            busy = app.worker.busy if app.worker is not None else False
            app.step(*item)
            if options.window:
                app.show()
            if pace:
                delay = last + 1.0 / source.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            now, now_cpu = time.perf_counter(), time.process_time()
            stats.tick(now - last, now_cpu - last_cpu, busy)
            last, last_cpu = now, now_cpu
            if options.max_frames and stats.frames >= options.max_frames:
                break
        stats.seconds = time.perf_counter() - start

    def _finish_searches(self) -> None:
        """Wait for queued searches (a video's last save), keeping the window alive meanwhile."""
        app = self.app
        if app.worker is None:
            return
        if app.worker.busy:
            log.info("waiting for the search to finish")
        while app.worker.busy and not app.quit_requested:
            if self.options.window:
                app.collect_results()
                app.show()
            app.worker.wait(timeout=0.05)
        app.collect_results()
