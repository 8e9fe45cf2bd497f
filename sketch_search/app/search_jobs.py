"""Carrying out the search scheduler's jobs: model loading, indexing, full runs, previews,
answers and refreshes. Each returns what happened, as one small outcome below.

No thread, no lock and no shared state of its own: the search thread (search_worker.py) calls
`load_models` once and then `carry_out` for each job the scheduler hands it, and applies the
outcome returned to the shared state itself; tests can call them directly. While a job runs the
runner tells its progress (status text, a query's stage) and asks whether to stop through
`JobProgress`. The runner knows nothing of the window's modes or of any command line's flags.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from sketch_search.app import search_scheduler as jobs
from sketch_search.app.events import EventLog
from sketch_search.app.outputs import png_bytes
from sketch_search.app.search_answers import Answer, Finished, SaveAnswers, SearchOutcome, listed
from sketch_search.app.search_presenter import Presenter, found_line
from sketch_search.app.search_scheduler import IndexState, Run, Save
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


class JobProgress(Protocol):
    """What a job tells while it runs, and asks (SearchWorker answers each under its lock)."""

    def say(self, text: str | None) -> None: ...          # the status line (None: the ready line)

    def stage(self, name: str | None) -> None: ...        # the running query's stage (None: over)

    def stopping(self) -> bool: ...

    def jobs_waiting(self) -> bool: ...                   # an indexing slice then ends early

    def index(self) -> IndexState | None: ...             # the index's state as the window knows it


# -- outcomes: what a job returns ------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """The models loaded (`error`: why not)."""
    error: str | None


@dataclass(frozen=True)
class IndexStarted:
    """The gallery walked: what is indexed is searchable."""


@dataclass(frozen=True)
class Sliced:
    state: IndexState


@dataclass(frozen=True)
class IndexFailed:
    """The gallery cannot be indexed; `error` as the index said it (the worker words it)."""
    error: SketchSearchError


@dataclass(frozen=True)
class WarmedUp:
    timings: dict[str, float] | None     # None: skipped or failed


@dataclass(frozen=True)
class RunFinished:
    run: Run
    finished: Finished


@dataclass(frozen=True)
class RunCancelled:
    run: Run


@dataclass(frozen=True)
class RunFailed:
    run: Run
    message: str


@dataclass(frozen=True)
class Answered:
    """A save's files written and its results ready; `line`: the status line that says so."""
    save: Save
    answer: Answer
    outcome: SearchOutcome
    line: str
    searched: int


@dataclass(frozen=True)
class SaveFailed:
    """A save answered with an error; `status`: what the status line says then (None: unchanged)."""
    save: Save
    message: str
    status: str | None = None


@dataclass(frozen=True)
class Previewed:
    outcome: SearchOutcome | None        # None: a blank sketch, or a failure (logged)


@dataclass(frozen=True)
class Refreshed:
    searched: int
    outcome: SearchOutcome | None        # None: not rewritten (the answer before stays)
    line: str | None = None


Outcome = (Loaded | IndexStarted | Sliced | IndexFailed | WarmedUp | RunFinished | RunCancelled | RunFailed
           | Answered | SaveFailed | Previewed | Refreshed)


class JobRunner:
    """Carries out one job at a time and returns its outcome.

    `gallery`: the folder to index (None: none). `slice_seconds`: the length of an indexing slice
    (0: one batch).
    """

    def __init__(self, search: SearchBackend, progress: JobProgress, events: EventLog,
                 gallery: Path | None = None, slice_seconds: float = 1.0):
        self.search = search
        self.progress = progress
        self.events = events
        self.gallery = gallery
        self.slice_seconds = slice_seconds
        self.presenter = Presenter()
        self.answers = SaveAnswers(search, self.presenter, events)

    def load_models(self) -> Loaded | None:
        """Load the models; None when stopped while loading."""
        error = None
        try:
            self.progress.say("loading models")
            self.search.load(status=lambda text: (self._check_stop(), self.progress.say(f"loading models: {text}")))
        except Cancelled:
            log.info("search: stopped while loading")
            return None
        except SketchSearchError as exc:
            error = str(exc)
            log.error("search unavailable: %s", exc)
        except Exception as exc:  # a bug: keep its traceback in the log, keep the window alive
            error = f"{type(exc).__name__}: {exc}"
            log.exception("loading the models failed")
        return Loaded(error)

    def carry_out(self, job: jobs.Job) -> Outcome:
        if isinstance(job, jobs.StartIndex):
            return self._start_index()
        if isinstance(job, jobs.IndexSlice):
            return self._index_slice()
        if isinstance(job, jobs.Warmup):
            return self._warm_up(job)
        if isinstance(job, jobs.FullRun):
            return self._full_run(job.run)
        if isinstance(job, jobs.Deliver):
            return self.deliver(job.save, job.finished)
        if isinstance(job, jobs.Refuse):
            log.error("%s: not searched: %s", job.save.path.name, job.reason)
            return SaveFailed(job.save, job.reason)
        if isinstance(job, jobs.Preview):
            return self._preview(job)
        return self._refresh(job.target)

    def _check_stop(self, *args) -> None:
        if self.progress.stopping():
            raise Cancelled()

    def _coverage(self) -> tuple[IndexState | None, int]:
        """The index's state and the photos a ranking now covers."""
        return self.progress.index(), self.search.gallery_size

    # -- indexing -------------------------------------------------------------------------------
    def _start_index(self) -> IndexStarted | IndexFailed:
        """Walk the gallery: what is indexed is searchable at once, the rest queued newest first."""
        self.progress.say("indexing gallery: looking for photos")
        try:
            self.search.start_index(self.gallery)
        except SketchSearchError as exc:
            return IndexFailed(exc)
        return IndexStarted()

    def _index_slice(self) -> Sliced | IndexFailed:
        """About `slice_seconds` of indexing; it ends after the batch in progress when a job waits."""
        progress = self.progress
        try:
            done = self.search.index_slice(
                self.slice_seconds, cancelled=lambda: progress.stopping() or progress.jobs_waiting())
        except SketchSearchError as exc:
            return IndexFailed(exc)
        return Sliced(IndexState(done.searched, done.total, done.done))

    # -- models ---------------------------------------------------------------------------------
    def _warm_up(self, job: jobs.Warmup) -> WarmedUp:
        """One pass through every model while the user draws, so the first query is not the slow
        one (kernel selection, memory set-up); a save cancels it."""
        try:
            return WarmedUp(self.search.warmup(
                status=self.progress.say, cancelled=lambda: job.cancelled or self.progress.stopping()))
        except Cancelled:
            log.info("search: warm-up skipped: a save is waiting")
        except Exception as exc:  # noqa: BLE001 (the queries will say what is wrong)
            log.warning("warm-up failed: %s: %s", type(exc).__name__, exc)
        return WarmedUp(None)

    def _full_run(self, run: Run) -> RunFinished | RunCancelled | RunFailed:
        started, started_cpu = time.monotonic(), time.process_time()
        if run.speculative:
            self.events.write("speculate", at=started)

        def stage(name: str) -> None:
            self.progress.stage(name)
            log.info("search: %s...", name)
        try:
            result = self.search.query(run.image, stage=stage, cancelled=lambda: run.cancelled)
        except Cancelled:
            return self._cancelled(run, started, started_cpu)
        except Exception as exc:
            return RunFailed(run, self._message(exc))
        finally:
            self.progress.stage(None)
        index, searched = self._coverage()
        view = self.presenter.query_view(run.image, result, index, searched)
        return RunFinished(run, Finished(result, png_bytes(result.generated), view, run.speculative, searched))

    def _cancelled(self, run: Run, started: float, started_cpu: float) -> RunCancelled:
        now = time.monotonic()
        latency = now - run.cancel_asked if run.cancel_asked is not None else None
        self.events.write("cancel", at=now, latency=None if latency is None else round(latency, 4),
                          seconds=round(now - started, 4),
                          cpu_seconds=round(time.process_time() - started_cpu, 4))
        log.info("search: run %s cancelled after %.2f s", "ahead" if run.speculative else "for a save",
                 now - started)
        return RunCancelled(run)

    @staticmethod
    def _message(exc: Exception) -> str:
        if isinstance(exc, SketchSearchError):
            return str(exc)
        log.error("search failed", exc_info=exc)
        return f"{type(exc).__name__}: {exc}"

    # -- answers --------------------------------------------------------------------------------
    def deliver(self, save: Save, finished: Finished) -> Answered | SaveFailed:
        """Write a save's files from a finished run."""
        index, searched = self._coverage()
        try:
            answer, outcome = self.answers.answer(save, finished, index, searched)
        except SketchSearchError as exc:
            return SaveFailed(save, str(exc), status=f"search failed: {exc}")
        log.info("%s: results in %s", save.path.name, answer.json_path)
        line = found_line(outcome.view, outcome.speculative, index)
        log.info("search: %s", line)
        return Answered(save, answer, outcome, line, searched)

    def _refresh(self, answer: Answer) -> Refreshed:
        """The most recent save ranked again over the larger index: its JSON and panel follow."""
        index, searched = self._coverage()
        try:
            outcome = self.answers.refresh(answer, index, searched)
        except SketchSearchError as exc:  # the answer before stays, and so does its file
            log.warning("%s: not refreshed: %s", answer.save.path.name, exc)
            return Refreshed(searched, None)
        return Refreshed(searched, outcome, found_line(outcome.view, outcome.speculative, index))

    def _preview(self, job: jobs.Preview) -> Previewed:
        try:
            preview = self.search.preview(job.image)
        except BlankSketchError:
            return Previewed(None)
        except Exception as exc:  # a preview is never worth stopping for; say it once in the log
            log.warning("preview failed: %s: %s", type(exc).__name__, exc)
            return Previewed(None)
        ranked = time.monotonic()
        latency = ranked - job.changed_at
        index, searched = self._coverage()
        self.events.write("preview", at=ranked, latency=round(latency, 4), results=listed(preview.results))
        view = self.presenter.preview_view(job.image, preview.results, index, searched, latency)
        return Previewed(SearchOutcome(None, view=view, live=True))
