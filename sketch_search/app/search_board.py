"""What the window reads of the search thread's work: the outcomes posted, the status line and
the counts of failed saves and cancelled runs.

A plain record with no lock and no thread: `SearchWorker` alone writes it (applying what its
jobs returned) and reads it for the window, always under its one lock.
"""
from __future__ import annotations

from collections import deque

from sketch_search.app.search_answers import SearchOutcome
from sketch_search.app.search_presenter import ready_line
from sketch_search.app.search_scheduler import IndexState, Run
from sketch_search.app.time_left import TimeLeft


class SearchBoard:
    """Posted outcomes and the status line; `gallery`: whether there is a gallery to index."""

    def __init__(self, gallery: bool):
        self.gallery = gallery
        self.time_left = TimeLeft()
        self.done: deque[SearchOutcome] = deque()
        self.failures = 0                        # saves that got an error instead of results
        self.cancelled_runs = 0
        self._status: str | None = "starting"    # None: the ready line, from the index's state
        self._status_error = False
        self._stage: str | None = None           # the running query's stage (with time left)
        self._found: str | None = None           # the status line of the latest save's answer

    def status_line(self, now: float, run: Run | None, index: IndexState | None) -> tuple[str, bool]:
        """The status line and whether it reports an error; `run`: the full run in flight."""
        if self._stage is not None and run is not None:
            prefix = "ahead: " if run.ahead else ""
            return prefix + self.time_left.status(self._stage, now), False
        if self._status is None:
            return ready_line(index, self.gallery), False
        return self._status, self._status_error

    def say(self, text: str | None, error: bool = False) -> None:
        """The status line from now on (None: the ready line)."""
        self._status, self._status_error = text, error

    def stage(self, name: str | None, now: float) -> None:
        """The running query's stage (None: no query runs)."""
        self._stage = name
        if name is not None:
            self.time_left.start(name, now)

    def found(self, line: str) -> None:
        """A save's answer: its line is shown until something else is said."""
        self._status, self._status_error, self._found = line, False, line

    def refound(self, line: str) -> None:
        """The save's answer ranked again: its line follows, if it is still on show."""
        if self._status == self._found:
            self._status = self._found = line

    def post(self, outcome: SearchOutcome) -> None:
        """Post for the window."""
        self.done.append(outcome)

    def take(self) -> list[SearchOutcome]:
        """What was posted since the last call, oldest first."""
        outcomes = list(self.done)
        self.done.clear()
        return outcomes
