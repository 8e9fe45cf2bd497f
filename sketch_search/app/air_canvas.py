"""The air canvas program behind main.py: camera loop, gestures to tools, drawing, and searches.

The loop reads a frame, tracks the hand, updates the canvas and draws the window; it never waits
for a model. A save hands the exported sketch to `SearchWorker`, one thread that loads the
models (and indexes the gallery) in the background at start-up and then answers saves, writing
their files and posting what the window shows. While a person draws (`--live preview`, the
default) the loop also hands the worker the newest canvas whenever it changes (a stroke ends, an
erase, undo, clear; every live_follow.PREVIEW_SECONDS during a long stroke) for a quick preview of the
matches, and after the pen has rested `pause` seconds it asks for the full search ahead of the
save; any change cancels that. The loop talks to the search object only through that worker and
never imports torch.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from device.originals_cache import DEFAULT_CACHE_BYTES, OriginalsCache
from sketch import overlay
from sketch.air_pen import DRAWING_TOOLS, Action, AirPen
from sketch.camera import FrameSource
from sketch.canvas import Canvas
from sketch.controls import CommandAction, ControlId, ControlKind, tile
from sketch.screen import Command, Mode, Screen
from sketch.tracker import TwoHandTracker
from sketch_search.app.commands import Commands
from sketch_search.app.events import EventLog
from sketch_search.app.first_start import first_start, remember_help_shown
from sketch_search.app.frame_loop import TITLE, FrameLoop, LoopStats
from sketch_search.app.live_follow import LiveFollow
from sketch_search.app.live_mode import LIVE_MODES, LiveMode
from sketch_search.app.photo_view import PhotoViewer
from sketch_search.app.results_panel import ResultsPanel
from sketch_search.app.search_worker import SearchWorker, WorkerOwner
from sketch_search.app.sketch_saving import SketchSaver
from sketch_search.app.timed_line import TimedLine
from sketch_search.app.window_picture import WindowPicture

log = logging.getLogger(__name__)

TOAST_SECONDS = 3.0
# Keys that press a control (or fire its action); Esc, Q and S are handled on their own.
KEY_CONTROLS = {"r": ControlKind.CLEAR, "z": ControlKind.UNDO, "y": ControlKind.REDO, "h": ControlKind.HELP,
                "b": ControlKind.BACK, "n": ControlKind.NEXT, "p": ControlKind.PREVIOUS,
                "m": ControlKind.SHOW_ON_PHONE}
PAUSE_SECONDS = 1.0        # pen up this long on a changed canvas: search ahead of the save


@dataclass
class AppOptions:
    source: int | Path = 0
    sketch_dir: Path = Path("sketches")
    gallery: Path | None = None
    window: bool = True
    max_frames: int | None = None
    screenshot: Path | None = None   # the last window picture, written at exit
    live: LiveMode | str = LiveMode.PREVIEW   # what follows the drawing (a LiveMode once made)
    pause: float = PAUSE_SECONDS     # pen-up seconds before the search ahead (--live preview)
    events: Path | None = None       # JSON lines of what happened (--events)
    adb_port: int = 5037             # the phone, for "show on phone"
    serial: str | None = None
    originals_cache: int = DEFAULT_CACHE_BYTES   # bytes of lean photos' pulled originals (0: none)

    def __post_init__(self) -> None:
        if self.live not in LIVE_MODES:
            raise ValueError(f"live must be one of {LIVE_MODES}, got {self.live!r}")
        self.live = LiveMode(self.live)    # once, for the worker and what follows the drawing


class AirCanvasApp:
    def __init__(self, options: AppOptions, search=None, phone_sync=None):
        """`phone_sync`: a device.background_sync.BackgroundSync filling the gallery, or None."""
        self.options = options
        self.phone_sync = phone_sync
        changed = phone_sync.gallery_changed if phone_sync is not None else None
        self.events = EventLog(options.events)
        self.worker = (SearchWorker(search, options.gallery, changed, options.live, self.events)
                       if search is not None else None)
        self.worker_owner = WorkerOwner(self.worker) if self.worker is not None else None
        self.canvas: Canvas | None = None
        self.pen: AirPen | None = None
        self.tracker: TwoHandTracker | None = None
        self.stats = LoopStats()
        self.last_frame: np.ndarray | None = None
        self.window_image: np.ndarray | None = None
        self.toasts = TimedLine(TOAST_SECONDS)
        self.following = LiveFollow(self.worker, options.live, options.pause)
        self.saver = SketchSaver(options.sketch_dir, self.worker, self.following, self.events, self.toasts)
        # Touchless controls: the screen, the pointer's holds, the open photo's jobs.
        viewer = PhotoViewer(options.gallery, options.adb_port, options.serial,
                             OriginalsCache.in_home(options.originals_cache))
        self.commands = Commands(self.events, viewer, self.toasts.show)
        self.panel = ResultsPanel(self.commands, self.toasts)
        self.picture = WindowPicture(self.commands)
        self._browse_pen: AirPen | None = None   # over a scratch canvas: a photo is never drawn on

    @property
    def quit_requested(self) -> bool:
        return self.commands.quit_requested

    @property
    def screen(self) -> Screen | None:
        """The touchless screen (None before the first frame)."""
        return self.commands.screen

    @property
    def saved(self) -> list[Path]:
        """The sketches written, oldest first."""
        return self.saver.saved

    # -- actions --------------------------------------------------------------------------------
    def toast(self, message: str, error: bool = False) -> None:
        self.toasts.show(message, error)

    def save(self, search: bool = True) -> Path | None:
        """Export the sketch, write it, and (with a worker) queue a search. None when blank."""
        return self.saver.save(self.canvas, search)

    def handle_key(self, key: int) -> None:
        """Keys are shortcuts for the gestures and controls."""
        if key < 0 or key > 0xFF:  # none, or a special key (arrows, F-keys)
            return
        char = chr(key).lower()
        if key == 27 and self.screen.mode is not Mode.DRAWING:
            self.press(ControlId(ControlKind.BACK))   # Esc closes the photo, the help or the quit question
        elif key == 27 or char == "q":
            self.carry_out(Command(CommandAction.QUIT))
        elif char == "s":
            self.save()
        elif char in KEY_CONTROLS:
            self.press(ControlId(KEY_CONTROLS[char]))
        elif char in "12345":
            self.press(tile(int(char)))

    def press(self, control: str | ControlId) -> None:
        """A control (or its wire name) pressed by the pointer's hold or a key: `Commands.press`."""
        self.commands.press(control)

    def carry_out(self, command: Command) -> None:
        """Do what a command asks: see `Commands.carry_out`."""
        self.commands.carry_out(command)

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
            self.commands.start(self.canvas, show_help)
            if show_help:
                remember_help_shown()
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
                self.carry_out(Command(CommandAction.CLEAR))
            if pen.gesture in DRAWING_TOOLS:
                screen.drawing_started()   # the help card or the quit question steps aside
        self.commands.point(pen.pointer, t)
        if self.following.follow(self.canvas, t):   # cleared or erased: back to the last save's results
            self.panel.back_to_saved()
        self.last_frame = frame
        self.collect_results()
        self.commands.collect_photo_jobs()
        self.commands.settle()

    @property
    def results_view(self) -> overlay.ResultsView | None:
        """What the results panel shows (None: the help)."""
        return self.panel.view

    def collect_results(self) -> None:
        """Take what the search worker posted (see `ResultsPanel.collect`)."""
        if self.worker is not None:
            self.panel.collect(self.worker.finished())

    def compose(self) -> np.ndarray:
        """The window's picture for the last frame."""
        photo = self.screen.mode is Mode.PHOTO
        self.window_image = self.picture.compose(
            self.last_frame, self._browse_pen if photo else self.pen, not photo, self.toasts.current,
            self._status_line(), self.stats.shown_fps, self.panel.view)
        return self.window_image

    def _status_line(self) -> tuple[str, bool]:
        """The note on show, else the search's state; the phone sync's before it."""
        note = self.commands.notes.current
        if note is not None:
            status, status_error = note
        elif self.worker is not None:
            status, status_error = self.worker.status
        else:
            status, status_error = "search off (--no-search)", False
        if self.phone_sync is not None:
            status = f"{self.phone_sync.status} | {status}"
        return status, status_error

    # -- the loop -------------------------------------------------------------------------------
    def show(self) -> None:
        """Put the picture in the window and take its key and close button."""
        cv2.imshow(TITLE, self.compose())
        self.handle_key(cv2.waitKeyEx(1))
        if cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1:  # closed with the mouse
            self.commands.quit_requested = True

    def run(self, source: FrameSource | None = None) -> int:
        """Run until the video ends, the user quits or --max-frames; 0 when every search worked.

        `source`: an opened FrameSource (default: open options.source). Raises CameraError when
        the camera fails, after saving the sketch so far. The frames are run by FrameLoop.
        """
        return FrameLoop(self).run(source or FrameSource(self.options.source))

    @property
    def hard_exit_needed(self) -> bool:
        """The search thread did not stop in time (a model still loading): the process must end
        with os._exit, or torch aborts it as the interpreter tears the thread down."""
        return self.worker_owner is not None and self.worker_owner.hard_exit_needed
