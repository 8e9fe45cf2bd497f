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
from sketch.air_pen import DRAWING_TOOLS, Action, AirPen
from sketch.camera import FrameSource
from sketch.canvas import Canvas
from sketch.pointer import HOLD_RADIUS, HoldToPress
from sketch.screen import Command, Mode, Screen
from sketch.tracker import TwoHandTracker
from sketch_search.app.events import EventLog
from sketch_search.app.first_start import first_start, remember_help_shown
from sketch_search.app.photo_view import OpenedPhoto, PhoneCheck, PhoneShown, PhotoViewer
from sketch_search.app.search_worker import SearchWorker, WorkerOwner, image_key
from sketch_search.common.errors import BlankSketchError, CameraError, SketchSearchError
from sketch_search.common.files import write_atomically
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

TITLE = "Sketch search"
TOAST_SECONDS = 3.0
NOTE_SECONDS = 6.0
# Keys that press a control (or fire its action); Esc, Q and S are handled on their own.
KEY_CONTROLS = {"r": "clear", "z": "undo", "y": "redo", "h": "help", "b": "back", "n": "next",
                "p": "previous", "m": "show-on-phone"}
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
    adb_port: int = 5037             # the phone, for "show on phone"
    serial: str | None = None


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
        self.tracker: TwoHandTracker | None = None
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
        # Touchless controls: the screen's state, the pointer's holds, the open photo's jobs.
        self.screen: Screen | None = None
        self.presser = HoldToPress()
        self.viewer = PhotoViewer(options.gallery, options.adb_port, options.serial)
        self._browse_pen: AirPen | None = None   # over a scratch canvas: a photo is never drawn on
        self._opened: OpenedPhoto | None = None
        self._controls_sent: list[dict] | None = None
        self._note: tuple[str, bool, float] | None = None    # a status-bar line, until (monotonic)
        self._photo_cache: tuple[tuple, np.ndarray] | None = None
        self._tiles: dict[tuple[int, int], tuple[np.ndarray, np.ndarray]] = {}   # fitted thumbnails

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
        """Keys are shortcuts for the gestures and controls."""
        if key < 0 or key > 0xFF:  # none, or a special key (arrows, F-keys)
            return
        char = chr(key).lower()
        if key == 27 and self.screen.mode is not Mode.DRAWING:
            self.press("back")      # Esc closes the photo, the help or the quit question
        elif key == 27 or char == "q":
            self.carry_out(Command("quit"))
        elif char == "s":
            self.save()
        elif char in KEY_CONTROLS:
            self.press(KEY_CONTROLS[char])
        elif char in "12345":
            self.press(f"result-{char}")

    def press(self, name: str) -> None:
        """A control pressed (by the pointer's hold or its key): the screen decides, we act."""
        command = self.screen.press(name)
        if command is not None:
            self.carry_out(command)

    def carry_out(self, command: Command) -> None:
        """Do what a command asks; every command but show_on_phone is logged as it fires
        (show_on_phone when the phone has answered, with the answer)."""
        action = command.action
        if action != "show_on_phone":
            self.events.write("command", action=action, **command.fields)
        if action == "clear":
            self.toast("cleared (undo brings it back)" if self.canvas.clear() else "nothing to clear")
        elif action == "undo":
            self.toast("undone" if self.canvas.undo() else "nothing to undo")
        elif action == "redo":
            self.toast("redone" if self.canvas.redo() else "nothing to redo")
        elif action in ("open", "next", "previous"):
            self._opened = None
            self.viewer.open(Path(command.fields["path"]), (self.canvas.width, self.canvas.height))
        elif action == "close":
            self.viewer.close()
            self._opened = None
        elif action == "show_on_phone":
            self.viewer.show_on_phone(Path(command.fields["path"]))
            self.note("showing the photo on the phone ...")
        elif action == "quit":
            self._quit = True

    def note(self, message: str, error: bool = False) -> None:
        """One line in the status bar for a while (e.g. the phone's answer)."""
        self._note = (message, error, time.monotonic() + NOTE_SECONDS)

    # -- one frame ------------------------------------------------------------------------------
    def step(self, frame: np.ndarray, t: float) -> None:
        """Track, draw and (maybe) save for one BGR frame taken at `t` seconds."""
        if self.canvas is None:
            h, w = frame.shape[:2]
            self.canvas = Canvas(w, h)
            self.pen = AirPen(self.canvas)
            self._browse_pen = AirPen(Canvas(w, h))
            self.tracker = TwoHandTracker()
            # The help card at the very first start, where there is a window to show it in.
            show_help = self.options.window and first_start()
            self.screen = Screen(w, h, show_help=show_help)
            if show_help:
                remember_help_shown()
            self.presser = HoldToPress(radius=HOLD_RADIUS * self.screen.scale)
        screen = self.screen
        pen = self._browse_pen if screen.mode is Mode.PHOTO else self.pen
        hands = self.tracker.process_all(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB),
                                         eager=pen.expects_second_hand)
        if pen is self._browse_pen:   # gestures only point: nothing is drawn on the photo
            pen.update(hands, t)        # a save or clear means nothing over a photo
            pen.canvas.cancel()
        else:
            fired = pen.update(hands, t)
            if fired is Action.SAVE:
                self.save()
            elif fired is Action.CLEAR:
                self.carry_out(Command("clear"))
            if pen.gesture in DRAWING_TOOLS:
                screen.drawing_started()   # the help card or the quit question steps aside
        pressed = self.presser.update(pen.pointer, t, screen.controls())
        if pressed is not None:
            self.press(pressed.name)
        self._follow_drawing(t)
        self._last_frame = frame
        self.collect_results()
        self._collect_photo_jobs()
        screen.settle(self.presser.holding)
        self._send_controls()

    def _send_controls(self) -> None:
        """A `controls` event whenever the pressable controls or their places change."""
        controls = [c.as_event() for c in self.screen.controls()]
        if controls != self._controls_sent:
            self._controls_sent = controls
            self.events.write("controls", controls=controls)

    def _collect_photo_jobs(self) -> None:
        for result in self.viewer.results():
            if isinstance(result, OpenedPhoto):
                if self.screen.photo is not None and Path(self.screen.photo.path) == result.path:
                    self._opened = result
            elif isinstance(result, PhoneCheck):
                self.screen.phone_checked(result.path, result.available, result.reason)
            elif isinstance(result, PhoneShown):
                self.screen.phone_done(result.path)
                fields = {"path": str(result.path), "ok": result.ok}
                if not result.ok:
                    fields["reason"] = result.reason or "refused"
                self.events.write("command", action="show_on_phone", **fields)
                self.note(display_name(result.message) or ("shown on the phone" if result.ok else
                                                           f"not shown on the phone: {fields.get('reason')}"),
                          error=not result.ok)

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
            # The matches become tiles (not while one is held: see Screen.offer_results).
            if self.screen is not None:   # None: the video ended before its first frame
                self.screen.offer_results(view.photos if view is not None else [], self.presser.holding)

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
        screen = self.screen
        font = max(0.5, 0.9 * screen.scale)
        if screen.mode is Mode.PHOTO:
            view, pen = self._photo_picture(font), self._browse_pen
        else:
            view, pen = self.canvas.render(self._last_frame.copy()), self.pen
        if screen.mode is Mode.HELP:
            overlay.draw_card(view, overlay.HELP_CARD, font, bottom=screen.controls()[0].rect[1])
        elif screen.mode is Mode.CONFIRM_QUIT:
            overlay.draw_confirm_quit(view, font)
        over = self.presser.over.name if self.presser.over is not None else None
        for control in screen.controls():
            if control.name.startswith("result-"):
                rank = int(control.name.removeprefix("result-"))
                photo = screen.results[rank - 1] if rank <= len(screen.results) else None
                overlay.draw_tile(view, control, photo, font, control.name == over,
                                  self._tile_picture(photo, control.rect[2]))
            else:
                progress = self.presser.progress if control.name == self.presser.holding else None
                overlay.draw_button(view, control, font, control.name == over, progress)
        if pen is self.pen:   # over a photo only the pointer shows
            self._draw_pen(view)
        if pen.pointer is not None:
            overlay.draw_pointer(view, pen.pointer, self.presser.progress, int(24 * screen.scale))
        if self._toast and time.monotonic() < self._toast[2]:
            overlay.draw_toast(view, self._toast[0], self._toast[1])
        if self._note and time.monotonic() < self._note[2]:
            status, status_error = self._note[0], self._note[1]
        elif self.worker is not None:
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

    def _tile_picture(self, photo: overlay.ResultPhoto | None, side: int) -> np.ndarray | None:
        """The match's thumbnail fitted to its tile, made once per thumbnail and size."""
        if photo is None or photo.thumbnail is None:
            return None
        key = (id(photo.thumbnail), side)
        cached = self._tiles.get(key)
        if cached is None or cached[0] is not photo.thumbnail:
            if len(self._tiles) > 4 * 5:   # a few searches' worth
                self._tiles.clear()
            cached = (photo.thumbnail, overlay.fit_image(photo.thumbnail, side, (0, 0, 0)))
            self._tiles[key] = cached
        return cached[1]

    def _draw_pen(self, view: np.ndarray) -> None:
        """The pen's cursor, or the ring of the save or the clear gesture being held."""
        pen = self.pen
        if pen.clear_points is not None and pen.clear_progress is not None:
            for point in pen.clear_points:
                overlay.draw_hold_ring(view, point, pen.clear_progress)
        elif pen.cursor is not None:
            progress = pen.hold_progress
            if progress is not None:
                overlay.draw_hold_ring(view, pen.cursor, progress)
            elif pen.gesture in DRAWING_TOOLS:
                radius = max(4, pen.tool.width // 2) if pen.tool.erase else pen.tool.width
                overlay.draw_cursor(view, pen.cursor, pen.tool.color, radius)

    def _photo_picture(self, font: float) -> np.ndarray:
        """The open photo fitted to the view, with its rank, name, date and score."""
        screen, opened = self.screen, self._opened
        photo = screen.photo
        lines = [f"{screen.rank} of {len(screen.browsing)}:  {photo.name}"]
        details = f"score {photo.score:.3f}"
        if opened is not None and opened.date is not None:
            when = "taken" if opened.date_source == "taken" else "file date"
            details = f"{when} {opened.date:%Y-%m-%d %H:%M}    {details}"
        lines.append(details)
        key = (id(opened), screen.rank, details)
        if self._photo_cache is None or self._photo_cache[0] != key:
            image = opened.image if opened is not None else None
            error = display_name(opened.error) if opened is not None and opened.error else None
            picture = overlay.render_photo((self.canvas.width, self.canvas.height), image, lines,
                                           font, error)
            self._photo_cache = (key, picture)
        return self._photo_cache[1].copy()

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
