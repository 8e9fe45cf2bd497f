"""How long the running query has left, learnt from the stage times of earlier runs.

Pure and torch-free: the search thread tells it when a stage begins (`start`) and what a
finished run took (`learn`, the warm-up included); the window asks it for the status line
("generating - about 15 s left") every frame. Each stage's expected length is a weighted
exponential moving average of its past lengths, so a machine that gets slower (or faster)
moves the estimate within a run or two. The first run learnt (the warm-up, or a first query
without one) pays for kernel selection and memory set-up and is usually slower than what
follows, so it counts for little once a later run is known.
"""
from __future__ import annotations

import threading

# At every run learnt, the older runs' weights are multiplied by DECAY: the latest run counts
# about as much as all earlier ones together.
DECAY = 0.5
# A run whose stage took this many times more (or less) than expected is a changed machine (load,
# power saving): the older runs then keep only SHIFT_DECAY of their weight, so the estimate
# follows within a run or two instead of lagging for several.
SHIFT_RATIO = 1.5
SHIFT_DECAY = 0.1
# The first run learnt (the warm-up) weighs this much against a later run.
FIRST_RUN_WEIGHT = 0.02
# A stage that runs over its expected length is given this much more (seconds; or its own
# expected length, when that is shorter): how much more it needs is not known.
FLOOR_S = 0.3
ALMOST_DONE_S = 1.0


class TimeLeft:
    """Expected seconds per stage from earlier runs; seconds left in the running query."""

    STAGES = ("preprocess", "captioning", "generating", "searching")

    def __init__(self) -> None:
        self._weighted: dict[str, float] = {}  # decayed sum of weight * seconds, per stage
        self._weights: dict[str, float] = {}   # decayed sum of weights, per stage
        self._runs = 0
        self._stage: str | None = None
        self._started = 0.0
        self._lock = threading.Lock()  # learnt on the search thread, read by the window loop

    # -- the search thread ----------------------------------------------------------------------
    def learn(self, timings: dict[str, float]) -> None:
        """A finished run's (or the warm-up's) seconds per stage; other keys ("total") are ignored.

        The running stage, if any, is over.
        """
        stages = {k: float(v) for k, v in timings.items() if k in self.STAGES and v is not None and v >= 0}
        with self._lock:
            weight = FIRST_RUN_WEIGHT if self._runs == 0 else 1.0
            for stage, seconds in stages.items():
                expected = self._expected(stage)
                decay = DECAY
                if expected is not None and not expected / SHIFT_RATIO <= seconds <= expected * SHIFT_RATIO:
                    decay = SHIFT_DECAY
                self._weighted[stage] = decay * self._weighted.get(stage, 0.0) + weight * seconds
                self._weights[stage] = decay * self._weights.get(stage, 0.0) + weight
            if stages:
                self._runs += 1
            self._stage = None

    def start(self, stage: str, now: float) -> None:
        """`stage` began at `now` (monotonic seconds)."""
        with self._lock:
            self._stage, self._started = stage, float(now)

    # -- the window -----------------------------------------------------------------------------
    def seconds_left(self, now: float) -> float | None:
        """Seconds until the running query ends; None until anything was learnt.

        The running stage's expected length less the time it has run (never below a small
        floor), plus the expected lengths of the stages after it. With no stage running: a whole
        query's expected length.
        """
        with self._lock:
            return self._left(self._stage, self._started, now)

    def status(self, stage: str, now: float) -> str:
        """The status line: "generating - about 15 s left", "searching - almost done", or the
        stage name alone when nothing is known (no run learnt yet, or a stage outside a query
        such as "loading models")."""
        with self._lock:
            if stage not in self.STAGES:
                return stage
            # The stage shown may have begun before the search thread's start() was seen.
            started = self._started if stage == self._stage else now
            left = self._left(stage, started, now)
        if left is None:
            return stage
        return f"{stage} - {describe(left)}"

    # -- inside the lock ------------------------------------------------------------------------
    def _expected(self, stage: str) -> float | None:
        weight = self._weights.get(stage, 0.0)
        return self._weighted[stage] / weight if weight > 0 else None

    def _left(self, stage: str | None, started: float, now: float) -> float | None:
        if not self._runs:
            return None
        expected = {s: self._expected(s) or 0.0 for s in self.STAGES}  # never timed: no time
        if stage not in self.STAGES:
            return sum(expected.values())
        at = self.STAGES.index(stage)
        current = expected[stage]
        remaining = max(current - (now - started), min(FLOOR_S, current))
        return remaining + sum(expected[s] for s in self.STAGES[at + 1:])


def describe(seconds: float) -> str:
    """"about 15 s left", "about 2 min left", "almost done"."""
    if seconds < ALMOST_DONE_S:
        return "almost done"
    if seconds < 100:
        return f"about {round(seconds)} s left"
    return f"about {round(seconds / 60)} min left"
