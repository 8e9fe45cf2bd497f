"""The search thread of the air canvas: loads the models once, indexes the gallery, answers saves,
and follows the drawing while the camera loop keeps running.

What the worker does, most urgent first (one thread, one model call at a time):
1. saves: a save on a canvas that a finished run already answered is answered at once from it; a
   save on the canvas a run in flight is working on waits for that run (`submit` attaches it);
   any other save starts a full run.
2. previews: the newest canvas only (a slot, not a queue), through the quick "sketch" route
   (`SketchSearch.preview`: the sketch itself through DINOv2, ranked).
3. runs ahead: the full route on the newest canvas after the pen has rested (`speculate`); a canvas
   change cancels it (`canvas_changed`), also in the middle of the generator.
Canvases are told apart by their exported pixels (`image_key`). Status text is read by the loop
every frame; `EventLog` writes what happened as JSON lines (--events).
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np
from PIL import Image

from sketch import overlay
from sketch_search.app.events import EventLog
from sketch_search.app.outputs import save_query_files
from sketch_search.app.time_left import TimeLeft
from sketch_search.common.cancel import CancelCheck, Cancelled
from sketch_search.common.errors import BlankSketchError, SketchSearchError
from sketch_search.common.files import write_text_atomically
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

FINISHED_KEPT = 4          # finished full runs kept for saves of the same canvas
THUMBNAILS_KEPT = 256      # gallery thumbnails kept for the results panel


def image_key(image: Image.Image) -> str:
    """What tells two canvases apart: a hash of the exported pixels."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


@dataclass
class SearchOutcome:
    sketch_path: Path | None
    json_path: Path | None = None
    view: overlay.ResultsView | None = None
    error: str | None = None
    live: bool = False              # a preview (or --live full run), not a save's results
    speculative: bool = False       # a save answered by a run started ahead of it
    save_to_results: float | None = None


class SearchBackend(Protocol):
    """What the worker needs of the pipeline (sketch_search.app.sketch_search.SketchSearch), without torch."""

    @property
    def gallery_size(self) -> int: ...

    def load(self, status: Callable[[str], None] | None = None) -> None: ...

    def warmup(self, status: Callable[[str], None] | None = None,
               cancelled: CancelCheck | None = None) -> dict[str, float]: ...

    def index_gallery(self, gallery: Path, progress: Callable[[int, int], None] | None = None) -> Any: ...

    def query(self, image: Image.Image, stage: Callable[[str], None] | None = None,
              cancelled: CancelCheck | None = None) -> Any: ...

    def preview(self, image: Image.Image) -> Any: ...




@dataclass
class _Save:
    image: Image.Image
    path: Path
    key: str
    saved_at: float                 # monotonic: when the save gesture completed


@dataclass
class _Run:
    """A full query in flight: for saves, or ahead of one (speculative)."""
    image: Image.Image
    key: str
    speculative: bool
    saves: list[_Save] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    cancel_asked: float | None = None
    started: float = 0.0
    started_cpu: float = 0.0


@dataclass
class _Finished:
    result: Any                     # its `generated` already PNG-encoded (_EncodedImage)
    view: overlay.ResultsView
    speculative: bool


class _EncodedImage:
    """A generated image encoded to PNG when its run ends, so a save only writes the bytes."""

    def __init__(self, image: Image.Image):
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        self.data = buffer.getvalue()

    def save(self, path, format: str = "PNG") -> None:  # noqa: A002 (Pillow's name)
        Path(path).write_bytes(self.data)


_started: set[SearchWorker] = set()   # workers whose thread may still run (for stop_all)


def stop_all(timeout: float) -> bool:
    """Stop every started worker and wait up to `timeout` s in all; True when all have ended."""
    deadline = time.monotonic() + timeout
    for worker in list(_started):
        worker.stop()
    for worker in list(_started):
        if not worker.join(max(0.0, deadline - time.monotonic())):
            return False
    return True


class SearchWorker:
    """One thread: loads the models and indexes the gallery once, then saves, previews, runs ahead.

    `live`: "off" (saves only), "preview" (previews, and full runs ahead after a pause) or "full"
    (the full route as the live route). `events`: where to record what happens.
    """

    def __init__(self, search: SearchBackend, gallery: Path | None = None,
                 gallery_changed: threading.Event | None = None, live: str = "preview",
                 events: EventLog | None = None):
        self.search = search
        self.gallery = gallery
        # Set by the phone sync when photos arrive: the index catches up between queries.
        self.gallery_changed = gallery_changed
        self.live = live
        self.events = events or EventLog()
        self._done: deque[SearchOutcome] = deque()
        self._lock = threading.Condition()
        self._saves: deque[_Save] = deque()
        self._preview: tuple[Image.Image, str, float] | None = None
        self._ahead: tuple[Image.Image, str] | None = None
        self._run_now: _Run | None = None
        self._finished: OrderedDict[str, _Finished] = OrderedDict()
        self._stopping = False
        self._status, self._status_error = "starting", False
        self._ready = "ready"                     # the status line when nothing runs
        self._ahead_done = False                  # the status line says results wait for a save
        self._stage: str | None = None           # the running query's stage (with time left)
        self._pending = 0                         # saves not answered yet
        self._index_report = None
        self._thumbnails: OrderedDict[tuple[str, float], np.ndarray | None] = OrderedDict()
        self.time_left = TimeLeft()
        self.load_error: str | None = None
        self.loaded = threading.Event()
        self.failures = 0
        self.cancelled_runs = 0
        self._thread = threading.Thread(target=self._run, name="sketch-search", daemon=True)

    # -- loop side ------------------------------------------------------------------------------
    def start(self) -> None:
        _started.add(self)
        self._thread.start()

    def submit(self, sketch: Image.Image, sketch_path: Path, saved_at: float | None = None,
               key: str | None = None) -> None:
        """A save: answer it from a finished run of the same canvas, the run in flight on it, or a
        new run; it goes before any preview or run ahead."""
        save = _Save(sketch, sketch_path, key or image_key(sketch),
                     time.monotonic() if saved_at is None else saved_at)
        with self._lock:
            self._pending += 1
            self._preview = self._ahead = None  # older than the save, and the save goes first
            running = self._run_now
            if running is not None and running.key == save.key and not running.cancel.is_set():
                running.saves.append(save)      # that run answers it: no second start
            else:
                if running is not None and running.speculative and not running.saves:
                    self._cancel(running)       # ahead on another canvas
                self._saves.append(save)
            self._lock.notify_all()

    def preview(self, sketch: Image.Image, key: str, changed_at: float) -> None:
        """Show matches for this canvas soon (replaces any preview not started yet)."""
        with self._lock:
            self._preview = (sketch, key, changed_at)
            self._lock.notify_all()

    def speculate(self, sketch: Image.Image, key: str) -> bool:
        """Run the full route on this canvas ahead of a save; False when it is run or done already."""
        with self._lock:
            running = self._run_now
            if key in self._finished or (running is not None and running.key == key
                                         and not running.cancel.is_set()):
                return False
            self._ahead = (sketch, key)
            self._lock.notify_all()
            return True

    def canvas_changed(self) -> None:
        """The drawing changed: drop the run ahead (at its next check) and any not started."""
        with self._lock:
            self._ahead = None
            running = self._run_now
            if running is not None and running.speculative and not running.saves:
                self._cancel(running)
            if self._ahead_done:  # the results waiting are for the drawing before
                self._ahead_done = False
                self._status, self._status_error = self._ready, False

    def _cancel(self, run: _Run) -> None:
        if not run.cancel.is_set():
            run.cancel_asked = time.monotonic()
            run.cancel.set()

    @property
    def status(self) -> tuple[str, bool]:
        with self._lock:
            if self._stage is not None and self._run_now is not None:
                prefix = "ahead: " if self._run_now.speculative and not self._run_now.saves else ""
                return prefix + self.time_left.status(self._stage, time.monotonic()), False
            return self._status, self._status_error

    @property
    def running(self) -> bool:
        """A full query (for a save, or ahead of one) is running."""
        with self._lock:
            return self._run_now is not None

    @property
    def busy(self) -> bool:
        """A save's query is queued or running."""
        with self._lock:
            return self._pending > 0

    def finished(self) -> list[SearchOutcome]:
        with self._lock:
            outcomes = list(self._done)
            self._done.clear()
        return outcomes

    def wait(self, timeout: float | None = None) -> bool:
        """Until no save is queued or running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._pending == 0, timeout)

    def stop(self) -> None:
        """Stop soon: the query running is cancelled, queued work dropped (see `join`)."""
        with self._lock:
            self._stopping = True
            if self._run_now is not None:
                self._cancel(self._run_now)
            self._lock.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after `stop`); True when it has (or never started)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        ended = not self._thread.is_alive()
        if ended:
            _started.discard(self)
        return ended

    # -- worker side ----------------------------------------------------------------------------
    def _say(self, text: str, error: bool = False) -> None:
        with self._lock:
            self._status, self._status_error = text, error
        log.info("search: %s", text)

    def _check_stop(self, *args) -> None:
        if self._stopping:
            raise Cancelled()

    def _post(self, outcome: SearchOutcome, save: bool = True) -> None:
        with self._lock:
            self._done.append(outcome)
            if save:
                self._pending -= 1
            self._lock.notify_all()

    def _run(self) -> None:
        try:
            self._say("loading models")
            self.search.load(status=lambda text: (self._check_stop(), self._say(f"loading models: {text}")))
            # One pass through every model now, while the user draws, so the first query is not
            # the slow one (kernel selection, memory set-up).
            self._check_stop()
            warmup = self.search.warmup(status=lambda text: self._say(text),
                                        cancelled=lambda: self._stopping)
            self.time_left.learn(warmup)
            if self.gallery is not None:
                self._index()
            else:
                self._ready = "ready (no --gallery: caption and image only)"
                self._say(self._ready)
        except Cancelled:
            log.info("search: stopped while loading")
            self.loaded.set()
            return
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
        try:
            while (job := self._next_job()) is not None:
                kind, item = job
                if kind == "save":
                    self._answer_save(item)
                elif kind == "preview":
                    self._answer_preview(*item)
                else:
                    self._full_run(item)
        except Cancelled:  # stopping while indexing
            pass
        with self._lock:  # saves left unanswered when stopping
            while self._saves:
                self._saves.popleft()
                self._pending -= 1
            self._lock.notify_all()

    def _index(self) -> None:
        if self.gallery_changed is not None:
            self.gallery_changed.clear()
        self._say("indexing gallery")

        def progress(done: int, total: int) -> None:
            self._check_stop()
            self._say(f"indexing gallery {done}/{total}")
        self._index_report = self.search.index_gallery(self.gallery, progress=progress)
        self._ready = f"ready: {self.search.gallery_size} photos indexed"
        self._say(self._ready)

    def _next_job(self):
        """The next job (None to stop): a save, else a preview, else a run ahead; while idle, index
        photos that arrived meanwhile."""
        while True:
            if (self.gallery_changed is not None and self.gallery_changed.is_set()
                    and self.gallery is not None and not self.load_error):
                try:
                    self._index()
                except SketchSearchError as exc:
                    self._say(f"error: {exc}", error=True)
            with self._lock:
                self._lock.wait_for(lambda: self._stopping or self._saves or self._preview or self._ahead,
                                    timeout=0.5 if self.gallery_changed is not None else None)
                if self._stopping:
                    return None
                if self._saves:
                    return "save", self._saves.popleft()
                if self.load_error:  # no previews or runs ahead without models
                    self._preview = self._ahead = None
                    continue
                if self._preview is not None:
                    job, self._preview = self._preview, None
                    return "preview", job
                if self._ahead is not None:
                    (image, key), self._ahead = self._ahead, None
                    self._run_now = _Run(image, key, speculative=True)
                    return "run", self._run_now

    def _answer_save(self, save: _Save) -> None:
        if self.load_error:
            log.error("%s: not searched: %s", save.path.name, self.load_error)
            self.failures += 1
            self._post(SearchOutcome(save.path, error=self.load_error))
            return
        with self._lock:
            done = self._finished.get(save.key)
            if done is None:
                self._run_now = _Run(save.image, save.key, speculative=False, saves=[save])
        if done is not None:
            self._deliver(save, done)
        else:
            self._full_run(self._run_now)

    def _full_run(self, run: _Run) -> None:
        run.started, run.started_cpu = time.monotonic(), time.process_time()
        if run.speculative:
            self.events.write("speculate", at=run.started)

        def stage(name: str) -> None:
            now = time.monotonic()
            with self._lock:
                self._stage = name
                self.time_left.start(name, now)
            log.info("search: %s...", name)
        try:
            result = self.search.query(run.image, stage=stage, cancelled=run.cancel.is_set)
        except Cancelled:
            self._cancelled(run)
            return
        except Exception as exc:
            self._failed(run, exc)
            return
        finally:
            with self._lock:
                self._stage = None
        self.time_left.learn(result.timings)
        view = overlay.ResultsView(
            sketch=_bgr(run.image), generated=_bgr(result.generated), caption=result.caption,
            photos=self._photos(result.results), gallery_size=self.search.gallery_size,
            seconds=result.timings.get("total", 0.0))
        finished = _Finished(dataclasses.replace(result, generated=_EncodedImage(result.generated)),
                             view, run.speculative)
        with self._lock:  # from here a save of this canvas finds it finished, not in flight
            self._finished[run.key] = finished
            while len(self._finished) > FINISHED_KEPT:
                self._finished.popitem(last=False)
            saves, self._run_now = list(run.saves), None
        for save in saves:
            self._deliver(save, finished)
        if not saves:
            if self.live == "full":  # the live route: shown as it is, marked live
                live_view = dataclasses.replace(view, label=overlay.LIVE_LABEL)
                self._post(SearchOutcome(None, view=live_view, live=True), save=False)
            then = "keep them" if self.live == "full" else "see them"
            self._say(f"results ready ahead ({view.seconds:.1f} s): hold the save gesture to {then}")
            with self._lock:
                self._ahead_done = True

    def _cancelled(self, run: _Run) -> None:
        now = time.monotonic()
        with self._lock:
            saves, self._run_now = list(run.saves), None
            self.cancelled_runs += 1
        latency = now - run.cancel_asked if run.cancel_asked is not None else None
        self.events.write("cancel", at=now, latency=None if latency is None else round(latency, 4),
                          seconds=round(now - run.started, 4),
                          cpu_seconds=round(time.process_time() - run.started_cpu, 4))
        log.info("search: run %s cancelled after %.2f s", "ahead" if run.speculative else "for a save",
                 now - run.started)
        if not self._stopping:
            self._say(self._ready)
        for save in saves:  # only when stopping
            self._post(SearchOutcome(save.path, error="cancelled: the program is ending"))

    def _failed(self, run: _Run, exc: Exception) -> None:
        with self._lock:
            saves, self._run_now = list(run.saves), None
        if isinstance(exc, SketchSearchError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
            log.error("search failed", exc_info=exc)
        if not saves:
            log.info("search ahead failed: %s", message)
            return
        self._say(f"search failed: {message}", error=True)
        for save in saves:
            log.error("%s: search failed: %s", save.path.name, message)
            self.failures += 1
            self._post(SearchOutcome(save.path, error=message))

    def _deliver(self, save: _Save, finished: _Finished) -> None:
        """Write a save's files from a finished run and post its results."""
        try:
            speculative = finished.speculative
            generated_path = save.path.with_name(f"{save.path.stem}-generated.png")
            json_path = save.path.with_suffix(".json")
            data = save_query_files(finished.result, self._index_report, generated_path, None)
            # Ready: the image is on disk, the JSON (with this number in it) follows in a moment.
            save_to_results = time.monotonic() - save.saved_at
            data.update(speculative=speculative, save_to_results=round(save_to_results, 4))
            write_text_atomically(json_path, json.dumps(data, indent=2))
            self.events.write("results", sketch=str(save.path), speculative=speculative,
                              save_to_results=round(save_to_results, 4))
            view = finished.view
            best = f", best {view.photos[0].score:.3f}" if view.photos else ""
            ahead = ", ready ahead" if speculative else ""
            self._say(f"found {len(view.photos)} photos{best} ({view.seconds:.1f} s{ahead})")
            log.info("%s: results in %s", save.path.name, json_path)
            self._post(SearchOutcome(save.path, json_path, view, speculative=speculative,
                                     save_to_results=save_to_results))
        except SketchSearchError as exc:
            self.failures += 1
            self._say(f"search failed: {exc}", error=True)
            self._post(SearchOutcome(save.path, error=str(exc)))

    def _answer_preview(self, sketch: Image.Image, key: str, changed_at: float) -> None:
        try:
            preview = self.search.preview(sketch)
        except BlankSketchError:
            return
        except Exception as exc:  # a preview is never worth stopping for; say it once in the log
            log.warning("preview failed: %s: %s", type(exc).__name__, exc)
            return
        ranked = time.monotonic()
        latency = ranked - changed_at
        self.events.write("preview", at=ranked, latency=round(latency, 4),
                          results=[{"path": str(p), "score": round(float(s), 6)} for p, s in preview.results])
        view = overlay.ResultsView(
            sketch=_bgr(sketch), generated=None, caption="", photos=self._photos(preview.results),
            gallery_size=self.search.gallery_size, seconds=latency, label=overlay.PREVIEW_LABEL)
        self._post(SearchOutcome(None, view=view, live=True), save=False)

    def _photos(self, results) -> list[overlay.ResultPhoto]:
        return [overlay.ResultPhoto(Path(path), display_name(Path(path).name), float(score), self._thumbnail(path))
                for path, score in results]

    def _thumbnail(self, path) -> np.ndarray | None:
        try:
            key = (str(path), Path(path).stat().st_mtime)
        except OSError:
            return None
        if key in self._thumbnails:
            self._thumbnails.move_to_end(key)
            return self._thumbnails[key]
        thumbnail = _thumbnail(path)
        self._thumbnails[key] = thumbnail
        while len(self._thumbnails) > THUMBNAILS_KEPT:
            self._thumbnails.popitem(last=False)
        return thumbnail


def _bgr(image: Image.Image) -> np.ndarray:
    return cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR)


def _thumbnail(path) -> np.ndarray | None:
    from retrieval.images import load_image  # Pillow only; the loop never calls this
    try:
        return _bgr(load_image(path, min_side=overlay.TILE))
    except SketchSearchError:  # deleted or damaged since indexing: shown grey
        return None
