"""The search thread of the air canvas: carries out what `SearchScheduler` decides.

One thread, one model call at a time: it has `JobRunner` load the models, then asks the
scheduler for the next job (index, save, preview, run ahead, warm-up, refresh) and has the
runner carry it out; every call into the scheduler, and every field the window reads, is under
one lock. `Presenter` makes what the window shows; `SaveAnswers` writes a save's files and its
events (--events). Canvases are told apart by their exported pixels (`image_key`).
"""
from __future__ import annotations

import hashlib
import logging
import threading
import time
from pathlib import Path

from PIL import Image

from sketch_search.app import search_scheduler as jobs
from sketch_search.app.events import EventLog
from sketch_search.app.search_answers import SaveAnswers, SearchOutcome
from sketch_search.app.search_board import SearchBoard
from sketch_search.app.search_jobs import JobRunner, SearchBackend
from sketch_search.app.search_presenter import Presenter
from sketch_search.app.search_scheduler import IndexState, Save, SearchScheduler
from sketch_search.common.cancel import Cancelled

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5    # with a phone sync, how often an idle worker looks for new photos
SLICE_SECONDS = 1.0        # indexing between jobs, in slices this long (a job waits for one at most)
STOP_SECONDS = 3.0         # at exit, how long the worker gets to stop (its query is cancelled)


def image_key(image: Image.Image) -> str:
    """What tells two canvases apart: a hash of the exported pixels."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


class SearchWorker:
    """One thread: loads the models, then indexes the gallery and answers saves, previews and
    runs ahead as `SearchScheduler` orders them.

    `live`: "off" (saves only), "preview" (previews, and full runs ahead after a pause) or "full"
    (the full route as the live route). `events`: where to record what happens. `slice_seconds`:
    the length of an indexing slice between jobs (0: one batch).
    """

    def __init__(self, search: SearchBackend, gallery: Path | None = None,
                 gallery_changed: threading.Event | None = None, live: str = "preview",
                 events: EventLog | None = None, slice_seconds: float = SLICE_SECONDS):
        self.search = search
        self.slice_seconds = slice_seconds
        self.gallery = gallery
        # Set by the phone sync when photos arrive: they join the indexing queue.
        self.gallery_changed = gallery_changed
        self.live = live
        self.events = events or EventLog()
        self.presenter = Presenter()
        self.answers = SaveAnswers(search, self.presenter, self.events)
        self.loaded = threading.Event()
        self._lock = threading.Condition()
        # Under the lock: the scheduler, and the board of what the window reads.
        self._scheduler = SearchScheduler(indexing=gallery is not None)
        self._board = SearchBoard(self._scheduler, gallery is not None, self._lock)
        self._jobs = JobRunner(search, self._scheduler, self._board, self.presenter, self.answers,
                               self.events, gallery, live, slice_seconds)
        self.time_left = self._board.time_left
        self._thread = threading.Thread(target=self._run, name="sketch-search", daemon=True)

    # -- the loop's side ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, sketch: Image.Image, sketch_path: Path, saved_at: float | None = None,
               key: str | None = None) -> None:
        """A save: answered before any preview or run ahead."""
        save = Save(sketch, sketch_path, key or image_key(sketch),
                    time.monotonic() if saved_at is None else saved_at)
        with self._lock:
            self._scheduler.submit(save)
            self._lock.notify_all()

    def preview(self, sketch: Image.Image, key: str, changed_at: float) -> None:
        """Show matches for this canvas soon (replaces any preview not started yet)."""
        with self._lock:
            self._scheduler.preview(sketch, key, changed_at)
            self._lock.notify_all()

    def speculate(self, sketch: Image.Image, key: str) -> bool:
        """Run the full route on this canvas ahead of a save; False when it is run or done already."""
        with self._lock:
            asked = self._scheduler.speculate(sketch, key)
            self._lock.notify_all()
            return asked

    def canvas_changed(self) -> None:
        """The drawing changed: drop the run ahead (at its next check) and any not started."""
        with self._lock:
            if self._scheduler.ahead_done:  # the results waiting are for the drawing before
                self._board.say(None)
            self._scheduler.canvas_changed(time.monotonic())

    @property
    def status(self) -> tuple[str, bool]:
        """The status line and whether it reports an error."""
        with self._lock:
            return self._board.status_line(time.monotonic())

    @property
    def running(self) -> bool:
        """A full query (for a save, or ahead of one) is running."""
        with self._lock:
            return self._scheduler.run_now is not None

    @property
    def busy(self) -> bool:
        """A save's query is queued or running."""
        with self._lock:
            return self._scheduler.pending > 0

    @property
    def idle(self) -> bool:
        """No save, preview or run ahead is waiting or running (indexing may go on)."""
        with self._lock:
            return self._scheduler.idle

    @property
    def index(self) -> IndexState | None:
        """How much of the gallery is searched (None before the first indexing slice)."""
        with self._lock:
            return self._scheduler.index

    @property
    def load_error(self) -> str | None:
        with self._lock:
            return self._scheduler.load_error

    @property
    def failures(self) -> int:
        """Saves that got an error instead of results."""
        with self._lock:
            return self._board.failures

    @property
    def cancelled_runs(self) -> int:
        with self._lock:
            return self._board.cancelled_runs

    def finished(self) -> list[SearchOutcome]:
        """What was posted since the last call, oldest first."""
        return self._board.take()

    def wait(self, timeout: float | None = None) -> bool:
        """Until no save is queued or running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self._scheduler.pending == 0, timeout)

    def stop(self) -> None:
        """Stop soon: the query running is cancelled, queued work dropped (see `join`)."""
        with self._lock:
            self._scheduler.stop(time.monotonic())
            self._lock.notify_all()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after `stop`); True when it has (or never started)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        loaded = self._jobs.load_models()
        self.loaded.set()
        if not loaded:   # stopped while loading
            return
        try:
            while (job := self._next_job()) is not None:
                self._jobs.carry_out(job)
        except Cancelled:  # stopping in the middle of a job
            pass

    def _next_job(self) -> jobs.Job | None:
        """The scheduler's next job, waiting for one; None when stopping."""
        changed = self.gallery_changed
        with self._lock:
            while not self._scheduler.stopping:
                if changed is not None and changed.is_set():
                    changed.clear()
                    self._scheduler.gallery_changed()
                job = self._scheduler.next_job(time.monotonic())
                if job is not None:
                    return job
                self._lock.wait(IDLE_POLL_SECONDS if changed is not None else None)
        return None


class WorkerOwner:
    """The one owner of a worker's thread: `with WorkerOwner(worker):` starts it; leaving the
    block, however it is left, cancels what runs and joins the thread once, for at most
    `stop_seconds`. `hard_exit_needed` then says whether the thread is still alive (a model
    still loading cannot be interrupted), so the process must end with os._exit.
    """

    def __init__(self, worker: SearchWorker, stop_seconds: float = STOP_SECONDS):
        self.worker = worker
        self.stop_seconds = stop_seconds
        self.hard_exit_needed = False

    def __enter__(self) -> WorkerOwner:
        self.worker.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.worker.stop()
        try:
            ended = self.worker.join(self.stop_seconds)
        except (KeyboardInterrupt, SystemExit):  # a second Ctrl+C or SIGTERM: stop waiting
            ended = self.worker.join(0)
        if not ended:
            log.info("the search worker is still busy (loading a model)")
        self.hard_exit_needed = not ended
