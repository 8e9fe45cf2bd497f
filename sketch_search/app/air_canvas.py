"""The air canvas program behind main.py: camera loop, gestures to tools, drawing, and searches.

The loop reads a frame, tracks the hand, updates the canvas and draws the window; it never waits
for a model. A save hands the exported sketch to `SearchWorker`, one thread that loads the
models (and indexes the gallery) in the background at start-up and then answers saves, writing
their files and posting what the window shows. While a person draws (`--live preview`, the
default) the loop also hands the worker the newest canvas whenever it changes (a stroke ends, an
erase, undo, clear; every PREVIEW_SECONDS during a long stroke) for a quick preview of the
matches, and after the pen has rested `pause` seconds it asks for the full search ahead of the
save; any change cancels that. The loop talks to the search object only through that worker and
never imports torch.
"""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np

from sketch import overlay
from sketch.air_pen import DRAWING_TOOLS, AirPen
from sketch.camera import FrameSource
from sketch.canvas import Canvas
from sketch.tracker import HandTracker
from sketch_search.app.events import EventLog
from sketch_search.app.search_worker import SearchWorker, WorkerOwner, image_key
from sketch_search.common.errors import BlankSketchError, CameraError, SketchSearchError
from sketch_search.common.files import write_atomically
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

TITLE = "Sketch search"
TOAST_SECONDS = 3.0
LIVE_MODES = ("off", "preview", "full")
PREVIEW_SECONDS = 0.5      # during a long stroke, a preview of the drawing so far this often
PAUSE_SECONDS = 1.0        # pen up this long on a changed canvas: search ahead of the save


@dataclass
class AppOptions:
    source: int | Path = 0
    sketch_dir: Path = Path("sketches")
    gallery: Path | None = None
    window: bool = True
    max_frames: int | None = None
    screenshot: Path | None = None   # the last window picture, written at exit
    live: str = "preview"            # LIVE_MODES: what follows the drawing
    pause: float = PAUSE_SECONDS     # pen-up seconds before the search ahead (--live preview)
    events: Path | None = None       # JSON lines of what happened (--events)


@dataclass
class LoopStats:
    frames: int = 0
    seconds: float = 0.0                                     # wall time of the frame loop
    # Latest frames, for benchmarks: (wall seconds, CPU seconds of the whole process, worker busy)
    frame_seconds: deque[tuple[float, float, bool]] = field(default_factory=lambda: deque(maxlen=100_000))

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


class AirCanvasApp:
    def __init__(self, options: AppOptions, search=None, phone_sync=None):
        """`phone_sync`: a device.background_sync.BackgroundSync filling the gallery, or None."""
        self.options = options
        self.phone_sync = phone_sync
        changed = phone_sync.gallery_changed if phone_sync is not None else None
        if options.live not in LIVE_MODES:
            raise ValueError(f"live must be one of {LIVE_MODES}, got {options.live!r}")
        self.events = EventLog(options.events)
        self.worker = (SearchWorker(search, options.gallery, changed, options.live, self.events)
                       if search is not None else None)
        self._worker_owner = WorkerOwner(self.worker) if self.worker is not None else None
        self.canvas: Canvas | None = None
        self.pen: AirPen | None = None
        self.tracker: HandTracker | None = None
        self.saved: list[Path] = []
        self.stats = LoopStats()
        self._panel_view: overlay.ResultsView | None = None
        self._panel: np.ndarray | None = None
        self._toast: tuple[str, bool, float] | None = None   # text, is error, until (monotonic)
        self._fps = 0.0
        self._quit = False
        self._last_frame: np.ndarray | None = None
        self.window_image: np.ndarray | None = None
        self._final_view: overlay.ResultsView | None = None   # the last save's results
        # Following the drawing: the canvas version last seen, last asked about, last sent ahead
        # and last saved; the frame time of the last change and of the last live request.
        self._seen_version = self._asked_version = self._ahead_version = 0
        self._saved_version: int | None = None
        self._changed_t = self._asked_t = 0.0
        self._export: tuple[int, object, str] | None = None   # version, image, key

    @property
    def quit_requested(self) -> bool:
        return self._quit

    # -- actions --------------------------------------------------------------------------------
    def toast(self, message: str, error: bool = False) -> None:
        self._toast = (message, error, time.monotonic() + TOAST_SECONDS)

    def save(self, search: bool = True) -> Path | None:
        """Export the sketch, write it, and (with a worker) queue a search. None when blank."""
        saved_at = time.monotonic()
        try:
            image, key = self._exported()
        except BlankSketchError as exc:
            self.toast(str(exc), error=True)
            log.warning("not saved: %s", exc)
            return None
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        path = self.options.sketch_dir / f"sketch-{stamp}.png"
        write_atomically(path, lambda p: image.save(p, format="PNG"))
        self.saved.append(path)
        self._saved_version = self.canvas.version
        log.info("sketch saved: %s", path)
        if search and self.worker is not None:
            self.events.write("save", at=saved_at, sketch=str(path))
            self.worker.submit(image, path, saved_at, key)
            waiting = "" if self.worker.loaded.is_set() else " (after the models load)"
            self.toast(f"saved {path.name}: searching{waiting}")
        else:
            self.toast(f"saved {path.name}")
        return path

    def handle_key(self, key: int) -> None:
        if key < 0 or key > 0xFF:  # none, or a special key (arrows, F-keys)
            return
        char = chr(key).lower()
        if key == 27 or char == "q":
            self._quit = True
        elif char == "r":
            self.canvas.clear()
            self.toast("cleared")
        elif char == "z":
            self.toast("undone" if self.canvas.undo() else "nothing to undo")
        elif char == "s":
            self.save()

    # -- one frame ------------------------------------------------------------------------------
    def step(self, frame: np.ndarray, t: float) -> None:
        """Track, draw and (maybe) save for one BGR frame taken at `t` seconds."""
        if self.canvas is None:
            h, w = frame.shape[:2]
            self.canvas = Canvas(w, h)
            self.pen = AirPen(self.canvas)
            self.tracker = HandTracker()
        hand = self.tracker.process(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if self.pen.update(hand, t):
            self.save()
        self._follow_drawing(t)
        self._last_frame = frame
        self.collect_results()

    def _exported(self):
        """(image, key) of the canvas as it is now; exported once per canvas version."""
        version = self.canvas.version
        if self._export is None or self._export[0] != version:
            image = self.canvas.export()  # BlankSketchError when blank
            self._export = (version, image, image_key(image))
        return self._export[1], self._export[2]

    def _follow_drawing(self, t: float) -> None:
        """Hand the worker the newest canvas: a preview when it changed, a run ahead after a pause.

        `t` is the frame's time (the pen's clock); a preview's latency is measured from now.
        """
        worker, live = self.worker, self.options.live
        if worker is None or live == "off":
            return
        canvas = self.canvas
        version = canvas.version
        if version != self._seen_version:   # ink changed: a run ahead is for an old drawing
            self._seen_version, self._changed_t = version, t
            worker.canvas_changed()
        if version == self._saved_version:  # saved as it is: nothing to follow
            self._asked_version = self._ahead_version = version
            return
        stroke_over = not canvas.drawing
        if version != self._asked_version and (
                stroke_over or (live == "preview" and t - self._asked_t >= PREVIEW_SECONDS)):
            self._asked_version, self._asked_t = version, t
            if canvas.is_blank():   # cleared or erased: back to the last save's results
                self._show_view(self._final_view)
                self._ahead_version = version
                return
            image, key = self._exported()
            if live == "preview":
                worker.preview(image, key, time.monotonic())
            else:  # full: the whole route on every finished stroke, cancelled by the next change
                worker.speculate(image, key)
                self._ahead_version = version
        if (live == "preview" and stroke_over and version != self._ahead_version
                and t - self._changed_t >= self.options.pause and not canvas.is_blank()):
            self._ahead_version = version
            worker.speculate(*self._exported())

    def _show_view(self, view: overlay.ResultsView | None) -> None:
        if view is not self._panel_view:
            self._panel_view, self._panel = view, None

    @property
    def results_view(self) -> overlay.ResultsView | None:
        """What the results panel shows (None: the help)."""
        return self._panel_view

    def collect_results(self) -> None:
        """Take what the search worker posted: previews, a save's results (or its error), and a
        save's answer ranked again over a larger index (shown if its results are on show)."""
        if self.worker is None:
            return
        for outcome in self.worker.finished():
            if outcome.live:  # matches for the drawing so far, until a save's results
                self._show_view(outcome.view)
            elif outcome.refresh:
                if self._panel_view is self._final_view:
                    self._show_view(outcome.view)
                self._final_view = outcome.view
            elif outcome.view is not None:
                self._final_view = outcome.view
                self._show_view(outcome.view)
                self._toast = None  # "searching ..." is over
            else:
                self.toast(display_name(f"{outcome.sketch_path.name}: {outcome.error}"), error=True)

    def compose(self) -> np.ndarray:
        """The window's picture for the last frame."""
        view = self.canvas.render(self._last_frame.copy())
        pen = self.pen
        if pen.cursor is not None:
            progress = pen.hold_progress
            if progress is not None:
                overlay.draw_hold_ring(view, pen.cursor, progress)
            elif pen.gesture in DRAWING_TOOLS:
                radius = max(4, pen.tool.width // 2) if pen.tool.erase else pen.tool.width
                overlay.draw_cursor(view, pen.cursor, pen.tool.color, radius)
        if self._toast and time.monotonic() < self._toast[2]:
            overlay.draw_toast(view, self._toast[0], self._toast[1])
        if self.worker is not None:
            status, status_error = self.worker.status
        else:
            status, status_error = "search off (--no-search)", False
        if self.phone_sync is not None:
            status = f"{self.phone_sync.status} | {status}"
        bar = overlay.render_bar(view.shape[1], pen.tool.name, pen.tool.color, status, self._fps,
                                 status_error)
        height = view.shape[0] + overlay.BAR_HEIGHT
        if self._panel is None or self._panel.shape[0] != height:
            self._panel = overlay.render_panel(height, self._panel_view)
        self.window_image = overlay.compose(view, self._panel, bar)
        return self.window_image

    def write_screenshot(self, path: Path) -> None:
        image = self.compose()
        if path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".bmp"):
            raise SketchSearchError(f"--screenshot {path}: use a .png or .jpg file name")

        def write(tmp: Path) -> None:
            if not cv2.imwrite(str(tmp), image):
                raise SketchSearchError(f"--screenshot {path}: could not write the picture")
        write_atomically(path, write)
        log.info("window picture saved: %s", path)

    def _show(self) -> None:
        cv2.imshow(TITLE, self.compose())
        self.handle_key(cv2.waitKeyEx(1))
        if cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1:  # closed with the mouse
            self._quit = True

    # -- the loop -------------------------------------------------------------------------------
    def run(self, source: FrameSource | None = None) -> int:
        """Run until the video ends, the user quits or --max-frames; 0 when every search worked.

        `source`: an opened FrameSource (default: open options.source). Raises CameraError when
        the camera fails, after saving the sketch so far.
        """
        options = self.options
        source = source or FrameSource(options.source)
        options.sketch_dir.mkdir(parents=True, exist_ok=True)
        switch_interval = sys.getswitchinterval()
        if self.worker is not None:
            # The worker runs Python between torch calls; at the default 5 ms switch interval the
            # loop can wait that long for the GIL each time it gets it back from OpenCV or
            # MediaPipe, many times a frame (the convoy effect). 1 ms keeps frames on time.
            sys.setswitchinterval(min(switch_interval, 0.001))
        try:
            # Started here, cancelled and joined once on the way out, whichever way it is.
            with self._worker_owner or contextlib.nullcontext():
                if self.phone_sync is not None:
                    self.phone_sync.start()
                if options.window:
                    # GUI_NORMAL: no Qt toolbar or status line around the picture (it has its own)
                    cv2.namedWindow(TITLE, cv2.WINDOW_AUTOSIZE | cv2.WINDOW_GUI_NORMAL)
                try:
                    self._loop(source)
                    self._finish_searches()
                    if options.screenshot and self._last_frame is not None:
                        self.write_screenshot(options.screenshot)
                except (KeyboardInterrupt, SystemExit):  # Ctrl+C, SIGTERM: keep the drawing
                    self._save_on_interrupt()
                    raise
                finally:
                    source.close()
                    if self.tracker is not None:
                        self.tracker.close()
        finally:
            if options.window:
                cv2.destroyAllWindows()
            sys.setswitchinterval(switch_interval)
            self.events.close()
        return 1 if self.worker is not None and self.worker.failures else 0

    @property
    def hard_exit_needed(self) -> bool:
        """The search thread did not stop in time (a model still loading): the process must end
        with os._exit, or torch aborts it as the interpreter tears the thread down."""
        return self._worker_owner is not None and self._worker_owner.hard_exit_needed

    def _save_on_interrupt(self) -> None:
        """Ctrl+C or SIGTERM: save the drawing (not searched) unless it is saved as it is."""
        if (self.canvas is None or self.canvas.is_blank()
                or self._saved_version == self.canvas.version):
            return
        try:
            path = self.save(search=False)
        except (OSError, SketchSearchError) as exc:
            log.error("the sketch could not be saved: %s", exc)
            return
        if path is not None:
            log.warning("interrupted: the sketch so far is saved as %s", path)

    def _loop(self, source: FrameSource) -> None:
        options = self.options
        pace = options.window and not source.live  # show a video file at its own speed
        start = last = time.perf_counter()
        last_cpu = time.process_time()
        while not self._quit:
            try:
                item = source.read()
            except CameraError as exc:
                raise self._saved_on_failure(exc) from None
            if item is None:
                break
            frame, t = item
            busy = self.worker.busy if self.worker is not None else False
            self.step(frame, t)
            if options.window:
                self._show()
            if pace:
                delay = last + 1.0 / source.fps - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            now, now_cpu = time.perf_counter(), time.process_time()
            self.stats.frame_seconds.append((now - last, now_cpu - last_cpu, busy))
            rate = 1.0 / max(now - last, 1e-6)
            self._fps = 0.9 * self._fps + 0.1 * rate if self._fps else rate
            last, last_cpu = now, now_cpu
            self.stats.frames += 1
            if options.max_frames and self.stats.frames >= options.max_frames:
                break
        self.stats.seconds = time.perf_counter() - start

    def _saved_on_failure(self, exc: CameraError) -> CameraError:
        """Save the sketch so far; the error to raise, naming the file."""
        if self.canvas is not None and not self.canvas.is_blank():
            path = self.save(search=False)
            return CameraError(f"{exc}; the sketch so far is saved as {path}")
        return exc

    def _finish_searches(self) -> None:
        """Wait for queued searches (a video's last save), keeping the window alive meanwhile."""
        if self.worker is None:
            return
        if self.worker.busy:
            log.info("waiting for the search to finish")
        while self.worker.busy and not self._quit:
            if self.options.window:
                self.collect_results()
                self._show()
            self.worker.wait(timeout=0.05)
        self.collect_results()
