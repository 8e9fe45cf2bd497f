"""The search state and how what a job did changes it: the one place the air canvas's search
state is written.

`SearchState` holds the scheduler (what runs next) and the board (what the window reads). The
search thread (`SearchWorker`) carries a job out with `JobRunner`, which returns an outcome, and
then `apply`s the outcome here under its one lock; the window's reads and the loop's news go
through the same lock. Thread-free: tests apply outcomes directly. The window's live mode is
known here and in the worker only.
"""
from __future__ import annotations

import dataclasses
import logging
import time

from sketch import overlay
from sketch_search.app import search_jobs as done
from sketch_search.app import search_scheduler as jobs
from sketch_search.app.live_mode import LiveMode
from sketch_search.app.search_answers import Finished, SearchOutcome
from sketch_search.app.search_board import SearchBoard
from sketch_search.app.search_presenter import index_error_text
from sketch_search.app.search_scheduler import IndexState, Save, SearchScheduler

log = logging.getLogger(__name__)


class SearchState:
    """The scheduler and the window's board; `gallery`: whether there is one to index; `live`:
    the window's LiveMode (FULL: a run ahead is then shown as it is)."""

    def __init__(self, gallery: bool, live: LiveMode | str = LiveMode.PREVIEW):
        self.scheduler = SearchScheduler(indexing=gallery)
        self.board = SearchBoard(gallery)
        self.live = LiveMode(live)

    def status_line(self, now: float) -> tuple[str, bool]:
        """The status line and whether it reports an error."""
        return self.board.status_line(now, self.scheduler.run_now, self.scheduler.index)

    def apply(self, outcome: done.Outcome) -> list[jobs.Job]:
        """Apply a job's outcome to the shared state; returns the jobs it brings."""
        scheduler, board = self.scheduler, self.board
        if isinstance(outcome, done.Loaded):
            scheduler.models_loaded(outcome.error)
            board.say(f"error: {outcome.error}" if outcome.error else None, bool(outcome.error))
        elif isinstance(outcome, done.IndexStarted):
            board.say(None)
        elif isinstance(outcome, done.Sliced):
            self._sliced(outcome.state)
        elif isinstance(outcome, done.IndexFailed):
            scheduler.index_failed()
            text = index_error_text(outcome.error)
            log.error("indexing stopped: %s", text)
            board.say(f"error: {text}", error=True)
        elif isinstance(outcome, done.WarmedUp):
            self._warmed_up(outcome.timings)
        elif isinstance(outcome, done.RunFinished):
            return self._run_finished(outcome.run, outcome.finished)
        elif isinstance(outcome, (done.RunCancelled, done.RunFailed)):
            self._run_ended(outcome)
        elif isinstance(outcome, done.Answered):
            self._answered(outcome)
        elif isinstance(outcome, done.SaveFailed):
            self._save_failed(outcome)
        elif isinstance(outcome, done.Previewed):
            if outcome.outcome is not None:
                board.post(outcome.outcome)
        elif isinstance(outcome, done.Refreshed):
            self._refreshed(outcome)
        return []

    def _sliced(self, state: IndexState) -> None:
        self.scheduler.sliced(state)
        if state.done:
            log.info("search: gallery indexed: %d photos", state.searched)

    def _warmed_up(self, timings: dict[str, float] | None) -> None:
        if timings is not None:
            self.board.time_left.learn(timings)
        self.scheduler.warmup_ended()
        self.board.say(None)

    def _run_finished(self, run: jobs.Run, finished: Finished) -> list[jobs.Job]:
        """From here a save of this canvas finds the run finished, not in flight."""
        self.board.time_left.learn(finished.result.timings)
        saves = self.scheduler.run_finished(run, finished)
        if saves:
            return [jobs.Deliver(save, finished) for save in saves]
        view = finished.view
        if self.live is LiveMode.FULL:  # the live route: shown as it is, marked live
            self.board.post(SearchOutcome(None, view=dataclasses.replace(view, label=overlay.LIVE_LABEL),
                                           live=True))
        then = "keep them" if self.live is LiveMode.FULL else "see them"
        self.say(f"results ready ahead ({view.seconds:.1f} s): hold the save gesture to {then}")
        return []

    def _run_ended(self, outcome: done.RunCancelled | done.RunFailed) -> None:
        """A run cancelled (its saves only when stopping) or failed: its saves get the error."""
        saves = self.scheduler.run_ended(outcome.run)
        if isinstance(outcome, done.RunCancelled):
            self.board.cancelled_runs += 1
            if not self.scheduler.stopping:
                self.say(None)
            for save in saves:                    # there are saves only when stopping
                self._post(SearchOutcome(save.path, error="cancelled: the program is ending"), answers=save)
            return
        if not saves:
            log.info("search ahead failed: %s", outcome.message)
            return
        self.say(f"search failed: {outcome.message}", error=True)
        for save in saves:
            log.error("%s: search failed: %s", save.path.name, outcome.message)
            self._save_failed(done.SaveFailed(save, outcome.message))

    def _answered(self, answered: done.Answered) -> None:
        self.board.found(answered.line)
        self.scheduler.delivered(answered.answer, answered.searched, time.monotonic())
        self._post(answered.outcome, answers=answered.save)

    def _save_failed(self, failed: done.SaveFailed) -> None:
        self.board.failures += 1
        if failed.status is not None:
            self.say(failed.status, error=True)
        self._post(SearchOutcome(failed.save.path, error=failed.message), answers=failed.save)

    def _refreshed(self, refreshed: done.Refreshed) -> None:
        self.scheduler.refreshed(refreshed.searched, time.monotonic())
        if refreshed.outcome is not None:  # on show: say what it covers now
            self.board.refound(refreshed.line)
            self.board.post(refreshed.outcome)

    def say(self, text: str | None, error: bool = False) -> None:
        """The status line's search part (None: none), also kept in the log."""
        self.board.say(text, error)
        if text is not None:
            log.info("search: %s", text)

    def _post(self, outcome: SearchOutcome, answers: Save) -> None:
        """Post for the window the answer to `answers`, no longer pending."""
        self.board.post(outcome)
        self.scheduler.answered(answers)
