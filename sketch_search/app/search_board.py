"""What the window reads of the search thread's work: the outcomes posted, the status line and
the counts of failed saves and cancelled runs. No thread: the search thread writes it through
`JobRunner`, the window reads it through `SearchWorker`, both under `lock` (the worker's
Condition, notified whenever something is posted).
"""
from __future__ import annotations

import threading
from collections import deque

from sketch_search.app.search_answers import SearchOutcome
from sketch_search.app.search_presenter import ready_line
from sketch_search.app.search_scheduler import Save, SearchScheduler
from sketch_search.app.time_left import TimeLeft


class SearchBoard:
    """Posted outcomes and the status line; `gallery`: whether there is a gallery to index."""

    def __init__(self, scheduler: SearchScheduler, gallery: bool,
                 lock: threading.Condition | None = None):
        self.scheduler = scheduler
        self.gallery = gallery
        self.lock = lock if lock is not None else threading.Condition()
        self.time_left = TimeLeft()
        self.done: deque[SearchOutcome] = deque()
        self.failures = 0                        # saves that got an error instead of results
        self.cancelled_runs = 0
        self._status: str | None = "starting"    # None: the ready line, from the index's state
        self._status_error = False
        self._stage: str | None = None           # the running query's stage (with time left)
        self._found: str | None = None           # the status line of the latest save's answer

    def status_line(self, now: float) -> tuple[str, bool]:
        """The status line and whether it reports an error."""
        with self.lock:
            run = self.scheduler.run_now
            if self._stage is not None and run is not None:
                prefix = "ahead: " if run.ahead else ""
                return prefix + self.time_left.status(self._stage, now), False
            if self._status is None:
                return ready_line(self.scheduler.index, self.gallery), False
            return self._status, self._status_error

    def say(self, text: str | None, error: bool = False) -> None:
        """The status line from now on (None: the ready line)."""
        with self.lock:
            self._status, self._status_error = text, error

    def stage(self, name: str | None, now: float) -> None:
        """The running query's stage (None: no query runs)."""
        with self.lock:
            self._stage = name
            if name is not None:
                self.time_left.start(name, now)

    def found(self, line: str) -> None:
        """A save's answer: its line is shown until something else is said."""
        with self.lock:
            self._status, self._status_error, self._found = line, False, line

    def refound(self, line: str) -> None:
        """The save's answer ranked again: its line follows, if it is still on show."""
        with self.lock:
            if self._status == self._found:
                self._status = self._found = line

    def post(self, outcome: SearchOutcome, answers: Save | None = None) -> None:
        """Post for the window; `answers`: the save this answers (no longer pending)."""
        with self.lock:
            self.done.append(outcome)
            if answers is not None:
                self.scheduler.answered(answers)
            self.lock.notify_all()

    def failed(self) -> None:
        """A save got an error instead of results."""
        with self.lock:
            self.failures += 1

    def take(self) -> list[SearchOutcome]:
        """What was posted since the last call, oldest first."""
        with self.lock:
            outcomes = list(self.done)
            self.done.clear()
        return outcomes
