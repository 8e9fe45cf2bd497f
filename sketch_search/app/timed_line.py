"""A line of text the window shows for a while (a toast over the view, a note in the status bar)."""
from __future__ import annotations

import time


class TimedLine:
    """`show` a line for `seconds`; `current` is (text, is error) until then, else None."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self._line: tuple[str, bool, float] | None = None   # text, is error, until (monotonic)

    def show(self, text: str, error: bool = False) -> None:
        self._line = (text, error, time.monotonic() + self.seconds)

    def clear(self) -> None:
        self._line = None

    @property
    def current(self) -> tuple[str, bool] | None:
        if self._line and time.monotonic() < self._line[2]:
            return self._line[0], self._line[1]
        return None
