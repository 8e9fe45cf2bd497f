"""The search thread of the air canvas, and the one owner of the search state.

One thread, one model call at a time, one straight line per job: the worker asks the
`SearchScheduler` (thread-free decisions) for the next job, has `JobRunner` carry it out, and
applies the outcome the runner returns to the shared state (the scheduler and the `SearchBoard`
the window reads) under its one lock; only the worker writes that state, and only the worker
knows the window's live mode. Canvases are told apart by their exported pixels (`image_key`).
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
from sketch_search.app.live_mode import LiveMode
from sketch_search.app.search_answers import SearchOutcome
from sketch_search.app.search_jobs import JobRunner, SearchBackend
from sketch_search.app.search_scheduler import IndexState, Save
from sketch_search.app.search_state import SearchState
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

    `live`: the window's LiveMode: OFF (saves only), PREVIEW (previews, and full runs ahead after
    a pause) or FULL (the full route as the live route). `events`: where to record what happens. `slice_seconds`:
    the length of an indexing slice between jobs (0: one batch).
    """

    def __init__(self, search: SearchBackend, gallery: Path | None = None,
                 gallery_changed: threading.Event | None = None, live: LiveMode | str = LiveMode.PREVIEW,
                 events: EventLog | None = None, slice_seconds: float = SLICE_SECONDS):
        # Set by the phone sync when photos arrive: they join the indexing queue.
        self.gallery_changed = gallery_changed
        self.events = events or EventLog()
        self.loaded = threading.Event()
        self._lock = threading.Condition()
        # Under the lock: the scheduler and the board of what the window reads, written by
        # this worker only (what the loop tells, and what its jobs did).
        self._state = SearchState(gallery is not None, live)
        self.scheduler = self._state.scheduler
        self.time_left = self._state.board.time_left
        self.runner = JobRunner(search, _Progress(self._lock, self._state), self.events, gallery, slice_seconds)
        self._thread = threading.Thread(target=self._run, name="sketch-search", daemon=True)

    # -- the loop's side ------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def submit(self, sketch: Image.Image, sketch_path: Path, saved_at: float | None = None,
               key: str | None = None) -> None:
        """A save: answered before any preview or run ahead."""
        save = Save(sketch, sketch_path, key or image_key(sketch),
                    time.monotonic() if saved_at is None else saved_at)
        self._tell(lambda: self.scheduler.submit(save))

    def preview(self, sketch: Image.Image, key: str, changed_at: float) -> None:
        """Show matches for this canvas soon (replaces any preview not started yet)."""
        self._tell(lambda: self.scheduler.preview(sketch, key, changed_at))

    def speculate(self, sketch: Image.Image, key: str) -> bool:
        """Run the full route on this canvas ahead of a save; False when it is run or done already."""
        return self._tell(lambda: self.scheduler.speculate(sketch, key))

    def canvas_changed(self) -> None:
        """The drawing changed: drop the run ahead (at its next check) and any not started."""
        with self._lock:
            if self.scheduler.ahead_done:  # the results waiting are for the drawing before
                self._state.board.say(None)
            self.scheduler.canvas_changed(time.monotonic())

    def stop(self) -> None:
        """Stop soon: the query running is cancelled, queued work dropped (see `join`)."""
        self._tell(lambda: self.scheduler.stop(time.monotonic()))

    def _tell(self, change):
        """Change the state under the lock, and wake whoever waits on it."""
        with self._lock:
            result = change()
            self._lock.notify_all()
            return result

    def _read(self, read):
        with self._lock:
            return read()

    @property
    def status(self) -> tuple[str, bool]:
        """The status line and whether it reports an error."""
        return self._read(lambda: self._state.status_line(time.monotonic()))

    @property
    def running(self) -> bool:
        """A full query (for a save, or ahead of one) is running."""
        return self._read(lambda: self.scheduler.run_now is not None)

    @property
    def busy(self) -> bool:
        """A save's query is queued or running."""
        return self._read(lambda: self.scheduler.pending > 0)

    @property
    def idle(self) -> bool:
        """No save, preview or run ahead is waiting or running (indexing may go on)."""
        return self._read(lambda: self.scheduler.idle)

    @property
    def index(self) -> IndexState | None:
        """How much of the gallery is searched (None before the first indexing slice)."""
        return self._read(lambda: self.scheduler.index)

    @property
    def load_error(self) -> str | None:
        return self._read(lambda: self.scheduler.load_error)

    @property
    def failures(self) -> int:
        """Saves that got an error instead of results."""
        return self._read(lambda: self._state.board.failures)

    @property
    def cancelled_runs(self) -> int:
        return self._read(lambda: self._state.board.cancelled_runs)

    def finished(self) -> list[SearchOutcome]:
        """What was posted since the last call, oldest first."""
        return self._read(self._state.board.take)

    def wait(self, timeout: float | None = None) -> bool:
        """Until no save is queued or running; False on timeout."""
        with self._lock:
            return self._lock.wait_for(lambda: self.scheduler.pending == 0, timeout)

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end (after `stop`); True when it has (or never started)."""
        if self._thread.ident is not None:
            self._thread.join(timeout)
        return not self._thread.is_alive()

    # -- the thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        loaded = self.load_models()
        self.loaded.set()
        if not loaded:   # stopped while loading
            return
        try:
            while (job := self._next_job()) is not None:
                self.carry_out(job)
        except Cancelled:  # stopping in the middle of a job
            pass

    def load_models(self) -> bool:
        """Load the models (a failure is kept as the scheduler's load error); False when
        stopped while loading."""
        loaded = self.runner.load_models()
        if loaded is not None:
            self._tell(lambda: self._state.apply(loaded))
        return loaded is not None

    def carry_out(self, job: jobs.Job) -> None:
        """One job, and the jobs its outcome brings (the saves a finished run answers)."""
        follow = [job]
        while follow:
            outcome = self.runner.carry_out(follow.pop(0))
            follow += self._tell(lambda: self._state.apply(outcome))

    def _next_job(self) -> jobs.Job | None:
        """The scheduler's next job, waiting for one; None when stopping."""
        changed = self.gallery_changed
        with self._lock:
            while not self.scheduler.stopping:
                if changed is not None and changed.is_set():
                    changed.clear()
                    self.scheduler.gallery_changed()
                job = self.scheduler.next_job(time.monotonic())
                if job is not None:
                    return job
                self._lock.wait(IDLE_POLL_SECONDS if changed is not None else None)
        return None


class _Progress:
    """What a running job tells the worker's state, and asks it: each under the worker's lock."""

    def __init__(self, lock: threading.Condition, state: SearchState):
        self._lock, self._state = lock, state

    def say(self, text: str | None) -> None:
        with self._lock:
            self._state.say(text)

    def stage(self, name: str | None) -> None:
        with self._lock:
            self._state.board.stage(name, time.monotonic())

    def stopping(self) -> bool:
        return self._state.scheduler.stopping  # one bool read: no lock needed

    def jobs_waiting(self) -> bool:
        return self._state.scheduler.jobs_waiting  # read between batches: a hint, no lock needed

    def index(self) -> IndexState | None:
        with self._lock:
            return self._state.scheduler.index


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
