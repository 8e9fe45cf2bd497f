"""The search thread of the air canvas: carries out what `SearchScheduler` decides.

One thread, one model call at a time: it loads the models, then asks the scheduler for the next
job (index, save, preview, run ahead, warm-up, refresh) and runs it; every call into the
scheduler, and every field the window reads, is under one lock. `Presenter` makes what the
window shows; `SaveAnswers` writes a save's files and its events (--events).
Canvases are told apart by their exported pixels (`image_key`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from sketch import overlay
from sketch_search.app import search_scheduler as jobs
from sketch_search.app.events import EventLog
from sketch_search.app.outputs import png_bytes
from sketch_search.app.search_answers import Answer, Finished, SaveAnswers, SearchOutcome, listed
from sketch_search.app.search_presenter import Presenter, found_line, ready_line
from sketch_search.app.search_scheduler import IndexState, Run, Save, SearchScheduler
from sketch_search.app.time_left import TimeLeft
from sketch_search.common.cancel import CancelCheck, Cancelled
from sketch_search.common.errors import BlankSketchError, SketchSearchError

log = logging.getLogger(__name__)

IDLE_POLL_SECONDS = 0.5    # with a phone sync, how often an idle worker looks for new photos
SLICE_SECONDS = 1.0        # indexing between jobs, in slices this long (a job waits for one at most)
STOP_SECONDS = 3.0         # at exit, how long the worker gets to stop (its query is cancelled)


def image_key(image: Image.Image) -> str:
    """What tells two canvases apart: a hash of the exported pixels."""
    return hashlib.blake2b(image.tobytes(), digest_size=16).hexdigest()


class SearchBackend(Protocol):
    """What the worker needs of the pipeline (sketch_search.app.sketch_search.SketchSearch), without torch."""

    @property
    def gallery_size(self) -> int: ...

    def load(self, status: Callable[[str], None] | None = None) -> None: ...

    def warmup(self, status: Callable[[str], None] | None = None,
               cancelled: CancelCheck | None = None) -> dict[str, float]: ...

    def start_index(self, gallery: Path) -> None: ...

    def index_slice(self, seconds: float = 1.0, cancelled: CancelCheck | None = None) -> Any: ...

    def query(self, image: Image.Image, stage: Callable[[str], None] | None = None,
              cancelled: CancelCheck | None = None) -> Any: ...

    def preview(self, image: Image.Image) -> Any: ...

    def rank(self, vector: Any, k: int | None = None) -> list[tuple[Path, float]]: ...


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
        self.time_left = TimeLeft()
        self.loaded = threading.Event()
        self._lock = threading.Condition()
        # Under the lock: the scheduler, what is posted for the window, the status line.
        self._scheduler = SearchScheduler(indexing=gallery is not None)
        self._done: deque[SearchOutcome] = deque()
        self._status: str | None = "starting"    # None: the ready line, from the index's state
        self._status_error = False
        self._stage: str | None = None           # the running query's stage (with time left)
        self._found: str | None = None           # the status line of the latest save's answer
        self._failures = 0
        self._cancelled_runs = 0
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
                self._status, self._status_error = None, False
            self._scheduler.canvas_changed(time.monotonic())

    @property
    def status(self) -> tuple[str, bool]:
        """The status line and whether it reports an error."""
        with self._lock:
            run = self._scheduler.run_now
            if self._stage is not None and run is not None:
                prefix = "ahead: " if run.ahead else ""
                return prefix + self.time_left.status(self._stage, time.monotonic()), False
            if self._status is None:
                return ready_line(self._scheduler.index, self.gallery is not None), False
            return self._status, self._status_error

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
            return self._failures

    @property
    def cancelled_runs(self) -> int:
        with self._lock:
            return self._cancelled_runs

    def finished(self) -> list[SearchOutcome]:
        """What was posted since the last call, oldest first."""
        with self._lock:
            outcomes = list(self._done)
            self._done.clear()
        return outcomes

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
    def _say(self, text: str | None, error: bool = False) -> None:
        with self._lock:
            self._status, self._status_error = text, error
        if text is not None:
            log.info("search: %s", text)

    def _stopping(self) -> bool:
        return self._scheduler.stopping  # one bool read: no lock needed

    def _check_stop(self, *args) -> None:
        if self._stopping():
            raise Cancelled()

    def _post(self, outcome: SearchOutcome, answers: Save | None = None) -> None:
        """Post for the window; `answers`: the save this answers (no longer pending)."""
        with self._lock:
            self._done.append(outcome)
            if answers is not None:
                self._scheduler.answered(answers)
            self._lock.notify_all()

    def _run(self) -> None:
        error = None
        try:
            self._say("loading models")
            self.search.load(status=lambda text: (self._check_stop(), self._say(f"loading models: {text}")))
        except Cancelled:
            log.info("search: stopped while loading")
            self.loaded.set()
            return
        except SketchSearchError as exc:
            error = str(exc)
            log.error("search unavailable: %s", exc)
        except Exception as exc:  # a bug: keep its traceback in the log, keep the window alive
            error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")
        with self._lock:
            self._scheduler.models_loaded(error)
            self._status, self._status_error = (f"error: {error}", True) if error else (None, False)
            self._lock.notify_all()
        self.loaded.set()
        try:
            while (job := self._next_job()) is not None:
                self._carry_out(job)
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

    def _carry_out(self, job: jobs.Job) -> None:
        if isinstance(job, jobs.StartIndex):
            self._start_index()
        elif isinstance(job, jobs.IndexSlice):
            self._index_slice()
        elif isinstance(job, jobs.Warmup):
            self._warm_up(job)
        elif isinstance(job, jobs.FullRun):
            self._full_run(job.run)
        elif isinstance(job, jobs.Deliver):
            self._deliver(job.save, job.finished)
        elif isinstance(job, jobs.Refuse):
            log.error("%s: not searched: %s", job.save.path.name, job.reason)
            with self._lock:
                self._failures += 1
            self._post(SearchOutcome(job.save.path, error=job.reason), answers=job.save)
        elif isinstance(job, jobs.Preview):
            self._preview(job)
        elif isinstance(job, jobs.Refresh):
            self._refresh(job.target)

    # -- indexing -------------------------------------------------------------------------------
    def _start_index(self) -> None:
        """Walk the gallery: what is indexed is searchable at once, the rest queued newest first."""
        with self._lock:
            self._scheduler.index_started()
        self._say("indexing gallery: looking for photos")
        try:
            self.search.start_index(self.gallery)
        except SketchSearchError as exc:
            self._index_failed(exc)
            return
        self._say(None)

    def _index_slice(self) -> None:
        """About `slice_seconds` of indexing; it ends after the batch in progress when a job waits."""
        try:
            progress = self.search.index_slice(
                self.slice_seconds, cancelled=lambda: self._stopping() or self._scheduler.jobs_waiting)
        except SketchSearchError as exc:
            self._index_failed(exc)
            return
        with self._lock:
            self._scheduler.sliced(IndexState(progress.searched, progress.total, progress.done))
        if progress.done:
            log.info("search: gallery indexed: %d photos", progress.searched)

    def _index_failed(self, exc: SketchSearchError) -> None:
        with self._lock:
            self._scheduler.index_failed()
        log.error("indexing stopped: %s", exc)
        self._say(f"error: {exc}", error=True)

    def _coverage(self) -> tuple[IndexState | None, int]:
        """The index's state and the photos a ranking now covers (read between jobs, on this thread)."""
        with self._lock:
            return self._scheduler.index, self.search.gallery_size

    # -- models ---------------------------------------------------------------------------------
    def _warm_up(self, job: jobs.Warmup) -> None:
        """One pass through every model while the user draws, so the first query is not the slow
        one (kernel selection, memory set-up); a save cancels it."""
        try:
            self.time_left.learn(self.search.warmup(
                status=self._say, cancelled=lambda: job.cancelled or self._stopping()))
        except Cancelled:
            log.info("search: warm-up skipped: a save is waiting")
        except Exception as exc:  # noqa: BLE001 (the queries will say what is wrong)
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)
        finally:
            with self._lock:
                self._scheduler.warmup_ended()
        self._say(None)

    def _full_run(self, run: Run) -> None:
        started, started_cpu = time.monotonic(), time.process_time()
        if run.speculative:
            self.events.write("speculate", at=started)

        def stage(name: str) -> None:
            with self._lock:
                self._stage = name
                self.time_left.start(name, time.monotonic())
            log.info("search: %s...", name)
        try:
            result = self.search.query(run.image, stage=stage, cancelled=lambda: run.cancelled)
        except Cancelled:
            self._cancelled(run, started, started_cpu)
            return
        except Exception as exc:
            self._failed(run, exc)
            return
        finally:
            with self._lock:
                self._stage = None
        self.time_left.learn(result.timings)
        index, searched = self._coverage()
        view = self.presenter.query_view(run.image, result, index, searched)
        finished = Finished(result, png_bytes(result.generated), view, run.speculative, searched)
        with self._lock:  # from here a save of this canvas finds it finished, not in flight
            saves = self._scheduler.run_finished(run, finished)
        for save in saves:
            self._deliver(save, finished)
        if not saves:
            if self.live == "full":  # the live route: shown as it is, marked live
                self._post(SearchOutcome(None, view=dataclasses.replace(view, label=overlay.LIVE_LABEL), live=True))
            then = "keep them" if self.live == "full" else "see them"
            self._say(f"results ready ahead ({view.seconds:.1f} s): hold the save gesture to {then}")

    def _cancelled(self, run: Run, started: float, started_cpu: float) -> None:
        now = time.monotonic()
        with self._lock:
            saves = self._scheduler.run_ended(run)
            self._cancelled_runs += 1
        latency = now - run.cancel_asked if run.cancel_asked is not None else None
        self.events.write("cancel", at=now, latency=None if latency is None else round(latency, 4),
                          seconds=round(now - started, 4),
                          cpu_seconds=round(time.process_time() - started_cpu, 4))
        log.info("search: run %s cancelled after %.2f s", "ahead" if run.speculative else "for a save",
                 now - started)
        if not self._stopping():
            self._say(None)
        for save in saves:  # only when stopping
            self._post(SearchOutcome(save.path, error="cancelled: the program is ending"), answers=save)

    def _failed(self, run: Run, exc: Exception) -> None:
        with self._lock:
            saves = self._scheduler.run_ended(run)
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
            with self._lock:
                self._failures += 1
            self._post(SearchOutcome(save.path, error=message), answers=save)

    # -- answers --------------------------------------------------------------------------------
    def _deliver(self, save: Save, finished: Finished) -> None:
        """Write a save's files from a finished run and post its results."""
        index, searched = self._coverage()
        try:
            answer, outcome = self.answers.answer(save, finished, index, searched)
        except SketchSearchError as exc:
            with self._lock:
                self._failures += 1
            self._say(f"search failed: {exc}", error=True)
            self._post(SearchOutcome(save.path, error=str(exc)), answers=save)
            return
        log.info("%s: results in %s", save.path.name, answer.json_path)
        line = found_line(outcome.view, outcome.speculative, index)
        log.info("search: %s", line)
        with self._lock:
            self._status, self._status_error, self._found = line, False, line
            self._scheduler.delivered(answer, searched, time.monotonic())
        self._post(outcome, answers=save)

    def _refresh(self, answer: Answer) -> None:
        """The most recent save ranked again over the larger index: its JSON and panel follow."""
        index, searched = self._coverage()
        try:
            outcome = self.answers.refresh(answer, index, searched)
        except SketchSearchError as exc:  # the answer before stays, and so does its file
            log.warning("%s: not refreshed: %s", answer.save.path.name, exc)
            outcome = None
        with self._lock:
            self._scheduler.refreshed(searched, time.monotonic())
            if outcome is not None and self._status == self._found:  # on show: say what it covers now
                self._status = self._found = found_line(outcome.view, outcome.speculative, index)
        if outcome is not None:
            self._post(outcome)

    def _preview(self, job: jobs.Preview) -> None:
        try:
            preview = self.search.preview(job.image)
        except BlankSketchError:
            return
        except Exception as exc:  # a preview is never worth stopping for; say it once in the log
            log.warning("preview failed: %s: %s", type(exc).__name__, exc)
            return
        ranked = time.monotonic()
        latency = ranked - job.changed_at
        index, searched = self._coverage()
        self.events.write("preview", at=ranked, latency=round(latency, 4), results=listed(preview.results))
        view = self.presenter.preview_view(job.image, preview.results, index, searched, latency)
        self._post(SearchOutcome(None, view=view, live=True))


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
