"""Carrying out the search scheduler's jobs: model loading, indexing, full runs, previews,
answers and refreshes.

No thread of its own: the search thread (search_worker.py) calls `load_models` once and then
`carry_out` for each job the scheduler hands it; tests can call them directly. Every change to
the scheduler is made under the board's lock (`SearchBoard`: what the window reads, which the
runner writes); model calls run outside it.
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from retrieval.index_errors import IndexFileError
from sketch import overlay
from sketch_search.app import search_scheduler as jobs
from sketch_search.app.cli import index_error_with_flags
from sketch_search.app.events import EventLog
from sketch_search.app.outputs import png_bytes
from sketch_search.app.search_answers import Answer, Finished, SaveAnswers, SearchOutcome, listed
from sketch_search.app.search_board import SearchBoard
from sketch_search.app.search_presenter import Presenter, found_line
from sketch_search.app.search_scheduler import IndexState, Run, Save, SearchScheduler
from sketch_search.common.cancel import CancelCheck, Cancelled
from sketch_search.common.errors import BlankSketchError, SketchSearchError

log = logging.getLogger(__name__)


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


class JobRunner:
    """Runs one job at a time and leaves what the window reads on `board`.

    `live`: "off", "preview" or "full" (a full run ahead is then shown as it is, marked live).
    `slice_seconds`: the length of an indexing slice (0: one batch).
    """

    def __init__(self, search: SearchBackend, scheduler: SearchScheduler, board: SearchBoard,
                 presenter: Presenter, answers: SaveAnswers, events: EventLog,
                 gallery: Path | None = None, live: str = "preview", slice_seconds: float = 1.0):
        self.search = search
        self.scheduler = scheduler
        self.board = board
        self.lock = board.lock
        self.presenter = presenter
        self.answers = answers
        self.events = events
        self.gallery = gallery
        self.live = live
        self.slice_seconds = slice_seconds
        self.time_left = board.time_left

    def load_models(self) -> bool:
        """Load the models (a failure is kept as the scheduler's load error); False when
        stopped while loading."""
        error = None
        try:
            self.say("loading models")
            self.search.load(status=lambda text: (self._check_stop(), self.say(f"loading models: {text}")))
        except Cancelled:
            log.info("search: stopped while loading")
            return False
        except SketchSearchError as exc:
            error = str(exc)
            log.error("search unavailable: %s", exc)
        except Exception as exc:  # a bug: keep its traceback in the log, keep the window alive
            error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")
        with self.lock:
            self.scheduler.models_loaded(error)
            self.board.say(f"error: {error}" if error else None, bool(error))
            self.lock.notify_all()
        return True

    def carry_out(self, job: jobs.Job) -> None:
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
            self.board.failed()
            self.board.post(SearchOutcome(job.save.path, error=job.reason), answers=job.save)
        elif isinstance(job, jobs.Preview):
            self._preview(job)
        elif isinstance(job, jobs.Refresh):
            self._refresh(job.target)

    def say(self, text: str | None, error: bool = False) -> None:
        self.board.say(text, error)
        if text is not None:
            log.info("search: %s", text)

    def _stopping(self) -> bool:
        return self.scheduler.stopping  # one bool read: no lock needed

    def _check_stop(self, *args) -> None:
        if self._stopping():
            raise Cancelled()

    # -- indexing -------------------------------------------------------------------------------
    def _start_index(self) -> None:
        """Walk the gallery: what is indexed is searchable at once, the rest queued newest first."""
        with self.lock:
            self.scheduler.index_started()
        self.say("indexing gallery: looking for photos")
        try:
            self.search.start_index(self.gallery)
        except SketchSearchError as exc:
            self._index_failed(exc)
            return
        self.say(None)

    def _index_slice(self) -> None:
        """About `slice_seconds` of indexing; it ends after the batch in progress when a job waits."""
        try:
            progress = self.search.index_slice(
                self.slice_seconds, cancelled=lambda: self._stopping() or self.scheduler.jobs_waiting)
        except SketchSearchError as exc:
            self._index_failed(exc)
            return
        with self.lock:
            self.scheduler.sliced(IndexState(progress.searched, progress.total, progress.done))
        if progress.done:
            log.info("search: gallery indexed: %d photos", progress.searched)

    def _index_failed(self, exc: SketchSearchError) -> None:
        if isinstance(exc, IndexFileError):  # the window's way out is main.py's flags, as main2's
            exc = index_error_with_flags(exc)
        with self.lock:
            self.scheduler.index_failed()
        log.error("indexing stopped: %s", exc)
        self.say(f"error: {exc}", error=True)

    def _coverage(self) -> tuple[IndexState | None, int]:
        """The index's state and the photos a ranking now covers (read between jobs, on this thread)."""
        with self.lock:
            return self.scheduler.index, self.search.gallery_size

    # -- models ---------------------------------------------------------------------------------
    def _warm_up(self, job: jobs.Warmup) -> None:
        """One pass through every model while the user draws, so the first query is not the slow
        one (kernel selection, memory set-up); a save cancels it."""
        try:
            self.time_left.learn(self.search.warmup(
                status=self.say, cancelled=lambda: job.cancelled or self._stopping()))
        except Cancelled:
            log.info("search: warm-up skipped: a save is waiting")
        except Exception as exc:  # noqa: BLE001 (the queries will say what is wrong)
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)
        finally:
            with self.lock:
                self.scheduler.warmup_ended()
        self.say(None)

    def _full_run(self, run: Run) -> None:
        started, started_cpu = time.monotonic(), time.process_time()
        if run.speculative:
            self.events.write("speculate", at=started)

        def stage(name: str) -> None:
            self.board.stage(name, time.monotonic())
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
            self.board.stage(None, time.monotonic())
        self.time_left.learn(result.timings)
        index, searched = self._coverage()
        view = self.presenter.query_view(run.image, result, index, searched)
        finished = Finished(result, png_bytes(result.generated), view, run.speculative, searched)
        with self.lock:  # from here a save of this canvas finds it finished, not in flight
            saves = self.scheduler.run_finished(run, finished)
        for save in saves:
            self._deliver(save, finished)
        if not saves:
            if self.live == "full":  # the live route: shown as it is, marked live
                self.board.post(SearchOutcome(None, view=dataclasses.replace(view, label=overlay.LIVE_LABEL), live=True))
            then = "keep them" if self.live == "full" else "see them"
            self.say(f"results ready ahead ({view.seconds:.1f} s): hold the save gesture to {then}")

    def _cancelled(self, run: Run, started: float, started_cpu: float) -> None:
        now = time.monotonic()
        with self.lock:
            saves = self.scheduler.run_ended(run)
            self.board.cancelled_runs += 1
        latency = now - run.cancel_asked if run.cancel_asked is not None else None
        self.events.write("cancel", at=now, latency=None if latency is None else round(latency, 4),
                          seconds=round(now - started, 4),
                          cpu_seconds=round(time.process_time() - started_cpu, 4))
        log.info("search: run %s cancelled after %.2f s", "ahead" if run.speculative else "for a save",
                 now - started)
        if not self._stopping():
            self.say(None)
        for save in saves:  # only when stopping
            self.board.post(SearchOutcome(save.path, error="cancelled: the program is ending"), answers=save)

    def _failed(self, run: Run, exc: Exception) -> None:
        with self.lock:
            saves = self.scheduler.run_ended(run)
        if isinstance(exc, SketchSearchError):
            message = str(exc)
        else:
            message = f"{type(exc).__name__}: {exc}"
            log.error("search failed", exc_info=exc)
        if not saves:
            log.info("search ahead failed: %s", message)
            return
        self.say(f"search failed: {message}", error=True)
        for save in saves:
            log.error("%s: search failed: %s", save.path.name, message)
            self.board.failed()
            self.board.post(SearchOutcome(save.path, error=message), answers=save)

    # -- answers --------------------------------------------------------------------------------
    def _deliver(self, save: Save, finished: Finished) -> None:
        """Write a save's files from a finished run and post its results."""
        index, searched = self._coverage()
        try:
            answer, outcome = self.answers.answer(save, finished, index, searched)
        except SketchSearchError as exc:
            self.board.failed()
            self.say(f"search failed: {exc}", error=True)
            self.board.post(SearchOutcome(save.path, error=str(exc)), answers=save)
            return
        log.info("%s: results in %s", save.path.name, answer.json_path)
        line = found_line(outcome.view, outcome.speculative, index)
        log.info("search: %s", line)
        with self.lock:
            self.board.found(line)
            self.scheduler.delivered(answer, searched, time.monotonic())
        self.board.post(outcome, answers=save)

    def _refresh(self, answer: Answer) -> None:
        """The most recent save ranked again over the larger index: its JSON and panel follow."""
        index, searched = self._coverage()
        try:
            outcome = self.answers.refresh(answer, index, searched)
        except SketchSearchError as exc:  # the answer before stays, and so does its file
            log.warning("%s: not refreshed: %s", answer.save.path.name, exc)
            outcome = None
        with self.lock:
            self.scheduler.refreshed(searched, time.monotonic())
            if outcome is not None:  # on show: say what it covers now
                self.board.refound(found_line(outcome.view, outcome.speculative, index))
        if outcome is not None:
            self.board.post(outcome)

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
        self.board.post(SearchOutcome(None, view=view, live=True))
