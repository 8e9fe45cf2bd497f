"""The air canvas program behind main.py: camera loop, gestures to tools, drawing, and searches.

The loop reads a frame, tracks the hand, updates the canvas and draws the window; it never waits
for a model. A save hands the exported sketch to `SearchWorker`, one thread that loads the
models (and indexes the gallery) in the background at start-up and then runs queries in order,
writing their files and posting what the window shows. The loop talks to the search object only
through that worker and never imports torch.
"""
from __future__ import annotations

import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from errors import BlankSketchError, CameraError, SketchSearchError
from result_files import save_query_files, write_atomically
from sketch import overlay
from sketch.canvas import BLACK, ERASER_WIDTH, GREEN, PEN_WIDTH, RED, Canvas
from sketch.gestures import Gesture, GestureStabilizer, gesture_for_hand
from sketch.smoothing import OneEuroFilter
from sketch.tracker import Hand, HandTracker

log = logging.getLogger(__name__)

TITLE = "Sketch search"
VIEW_WIDTH = 640            # frames are scaled to this width; the canvas lives in these pixels
HOLD_SECONDS = 0.6          # how long the save gesture is held before it fires
STABLE_FRAMES = 3           # frames a gesture must persist before the tool changes
TOAST_SECONDS = 3.0
CAMERA_GRACE_SECONDS = 2.0  # a webcam that gives no frame for this long has failed
INDEX_FINGERTIP = 8


@dataclass(frozen=True)
class Tool:
    name: str
    color: tuple[int, int, int]   # BGR; also the status bar's swatch
    width: int = PEN_WIDTH
    erase: bool = False


DRAWING_TOOLS = {
    Gesture.PEN_BLACK: Tool("black pen", BLACK),
    Gesture.PEN_GREEN: Tool("green pen", GREEN),
    Gesture.PEN_RED: Tool("red pen", RED),
    Gesture.ERASER: Tool("eraser", (255, 255, 255), ERASER_WIDTH, erase=True),
}
OTHER_TOOLS = {
    Gesture.PEN_UP: Tool("pen up", (110, 110, 110)),
    Gesture.SAVE: Tool("save (hold)", overlay.ACCENT),
}


def tool_for(gesture: Gesture) -> Tool:
    return DRAWING_TOOLS.get(gesture) or OTHER_TOOLS[gesture]


def reserve_core_for_loop() -> None:
    """Leave one CPU core to the camera loop: cap the model libraries' thread pools.

    Must run before torch is imported (it reads OMP_NUM_THREADS once); a value the user set wins.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 2) - 1)))


# -- frames ---------------------------------------------------------------------------------------
class FrameSource:
    """A webcam (mirrored, so moving right draws right; wall-clock time) or a video file (frames
    as they are, timed by the file's own frame rate so gestures behave the same however fast the
    frames are processed). Frames come out VIEW_WIDTH pixels wide."""

    def __init__(self, source: int | str | Path, view_width: int = VIEW_WIDTH):
        # A missing camera or a broken file is reported in our own one line: keep OpenCV's and
        # FFmpeg's messages about it off the terminal (FFmpeg reads this at its first use).
        os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
        self.live = isinstance(source, int)
        self.view_width = view_width
        if self.live:
            level = cv2.getLogLevel()
            cv2.setLogLevel(0)  # each camera backend OpenCV tries logs its own failure
            try:
                self._capture = cv2.VideoCapture(source)
            finally:
                cv2.setLogLevel(level)
            if not self._capture.isOpened():
                raise CameraError(f"no camera at index {source} (none connected, or in use by another "
                                  "program): connect a webcam or pass --source VIDEO_FILE")
            # 640 x 480 is all the loop uses; a one-frame buffer keeps the view current when a
            # frame takes longer than the camera's frame interval. Cameras may ignore either.
            self._capture.set(cv2.CAP_PROP_FRAME_WIDTH, 640)
            self._capture.set(cv2.CAP_PROP_FRAME_HEIGHT, 480)
            self._capture.set(cv2.CAP_PROP_BUFFERSIZE, 1)
            self.fps = 0.0
        else:
            path = Path(source).expanduser()
            if not path.is_file():
                raise CameraError(f"--source {path}: no such video file; pass a camera index (0) "
                                  "or a video file")
            self._capture = cv2.VideoCapture(str(path))
            if not self._capture.isOpened():
                raise CameraError(f"--source {path}: cannot be read as a video (OpenCV/FFmpeg "
                                  "does not know its format)")
            self.fps = self._capture.get(cv2.CAP_PROP_FPS) or 30.0
        self.frames_read = 0

    def read(self) -> tuple[np.ndarray, float] | None:
        """(BGR frame, seconds) or None at the end of a video file. Raises CameraError when a
        webcam stops giving frames."""
        if self.live:
            deadline = time.monotonic() + CAMERA_GRACE_SECONDS
            while True:
                ok, frame = self._capture.read()
                if ok and frame is not None:
                    break
                if time.monotonic() > deadline:
                    raise CameraError("the camera stopped sending frames (unplugged, or taken by "
                                      "another program)")
                time.sleep(0.02)
            frame = cv2.flip(frame, 1)
            t = time.monotonic()
        else:
            ok, frame = self._capture.read()
            if not ok or frame is None:
                return None
            t = self.frames_read / self.fps
        self.frames_read += 1
        h, w = frame.shape[:2]
        if w != self.view_width:
            height = max(1, round(h * self.view_width / w))
            frame = cv2.resize(frame, (self.view_width, height),
                               interpolation=cv2.INTER_AREA if w > self.view_width else cv2.INTER_LINEAR)
        return frame, t

    def close(self) -> None:
        self._capture.release()


# -- gestures to strokes --------------------------------------------------------------------------
class AirPen:
    """Turns the tracked hand, frame by frame, into strokes on the canvas and save requests."""

    def __init__(self, canvas: Canvas, hold_seconds: float = HOLD_SECONDS,
                 stable_frames: int = STABLE_FRAMES):
        self.canvas = canvas
        self.hold_seconds = hold_seconds
        self.stabilizer = GestureStabilizer(frames=stable_frames)
        self.smoother = OneEuroFilter()
        self.gesture = Gesture.PEN_UP
        self.cursor: tuple[float, float] | None = None   # smoothed index fingertip, view pixels
        self._hold_start: float | None = None
        self._hold_fired = False
        self._last_t: float | None = None

    @property
    def tool(self) -> Tool:
        return tool_for(self.gesture)

    @property
    def hold_progress(self) -> float | None:
        """0..1 while the save gesture is held, else None."""
        if self._hold_start is None or self._hold_fired or self._last_t is None:
            return None
        return min(1.0, (self._last_t - self._hold_start) / self.hold_seconds)

    def update(self, hand: Hand | None, t: float) -> bool:
        """Take one frame's hand (or None) at time `t`; True when the save gesture completes."""
        self._last_t = t
        raw = gesture_for_hand(hand) if hand is not None else None
        self.gesture = self.stabilizer.update(raw)
        tool = DRAWING_TOOLS.get(self.gesture)

        if tool is None:
            self.canvas.end()
        elif not self.canvas.drawing or not _same_tool(self.canvas.strokes[-1], tool):
            self.canvas.begin(tool.color, tool.width, tool.erase)
            self.smoother.reset()  # a new stroke starts where the finger is, not where it was

        if hand is None:
            self.cursor = None
            self.smoother.reset()  # the hand may come back anywhere
        else:
            x, y = hand.landmarks[INDEX_FINGERTIP, :2] * (self.canvas.width, self.canvas.height)
            self.cursor = tuple(float(v) for v in self.smoother((x, y), t))
            # While fingers are changing (raw differs from the held tool) the pen pauses, so
            # curling a finger does not leave a hook at the end of a stroke.
            if tool is not None and raw == self.gesture:
                self.canvas.add(self.cursor)

        if self.gesture is Gesture.SAVE:
            if self._hold_start is None:
                self._hold_start = t
            if not self._hold_fired and t - self._hold_start >= self.hold_seconds:
                self._hold_fired = True
                return True
        else:
            self._hold_start, self._hold_fired = None, False
        return False


def _same_tool(stroke, tool: Tool) -> bool:
    return stroke.erase == tool.erase and stroke.color == tool.color and stroke.width == tool.width


# -- the search worker ----------------------------------------------------------------------------
@dataclass
class SearchOutcome:
    sketch_path: Path
    json_path: Path | None = None
    view: overlay.ResultsView | None = None
    error: str | None = None


class SearchWorker:
    """One thread: loads the models and indexes the gallery once, then answers queries in order.

    `search` is the pipeline object (SketchSearch): load(status), index_gallery(path, progress),
    query(image, stage) and a `gallery_size`. Status text is read by the loop every frame.
    """

    def __init__(self, search, gallery: Path | None = None,
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
@dataclass
class AppOptions:
    source: int | Path = 0
    sketch_dir: Path = Path("sketches")
    gallery: Path | None = None
    window: bool = True
    max_frames: int | None = None
    screenshot: Path | None = None   # the last window picture, written at exit


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
        self.worker = SearchWorker(search, options.gallery, changed) if search is not None else None
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

    @property
    def quit_requested(self) -> bool:
        return self._quit

    # -- actions --------------------------------------------------------------------------------
    def toast(self, message: str, error: bool = False) -> None:
        self._toast = (message, error, time.monotonic() + TOAST_SECONDS)

    def save(self, search: bool = True) -> Path | None:
        """Export the sketch, write it, and (with a worker) queue a search. None when blank."""
        try:
            image = self.canvas.export()
        except BlankSketchError as exc:
            self.toast(str(exc), error=True)
            log.warning("not saved: %s", exc)
            return None
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S-%f")[:-3]
        path = self.options.sketch_dir / f"sketch-{stamp}.png"
        write_atomically(path, lambda p: image.save(p, format="PNG"))
        self.saved.append(path)
        log.info("sketch saved: %s", path)
        if search and self.worker is not None:
            self.worker.submit(image, path)
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
        self._last_frame = frame
        self._collect_results()

    def _collect_results(self) -> None:
        if self.worker is None:
            return
        for outcome in self.worker.finished():
            if outcome.view is not None:
                self._panel_view, self._panel = outcome.view, None
                self._toast = None  # "searching ..." is over
            else:
                self.toast(f"{outcome.sketch_path.name}: {outcome.error}", error=True)

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
            self.worker.start()
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
        finally:
            source.close()
            if self.tracker is not None:
                self.tracker.close()
            if self.worker is not None:
                self.worker.stop()
            if options.window:
                cv2.destroyAllWindows()
            sys.setswitchinterval(switch_interval)
        return 1 if self.worker is not None and self.worker.failures else 0

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
        if self.worker is None or not self.worker.busy:
            return
        log.info("waiting for the search to finish")
        while self.worker.busy and not self._quit:
            if self.options.window:
                self._collect_results()
                self._show()
            self.worker.wait(timeout=0.05)
        self._collect_results()
