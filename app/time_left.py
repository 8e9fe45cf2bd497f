"""A minimal stand-in (the live-search helper's, for its tests): how long the running query has
left, learnt from the stage timings of the warm-up and of each finished query. Another helper
writes the real one with this API; keep theirs at merge."""
from __future__ import annotations

STAGES = ("preprocess", "captioning", "generating", "searching")


class TimeLeft:
    def __init__(self, stages: tuple[str, ...] = STAGES):
        self.stages = stages
        self._seconds: dict[str, float] = {}
        self._stage: str | None = None
        self._since = 0.0

    def learn(self, timings: dict) -> None:
        """Take one run's seconds per stage (a running average; the newest counts most)."""
        for stage, seconds in timings.items():
            if stage in self.stages:
                old = self._seconds.get(stage)
                self._seconds[stage] = float(seconds) if old is None else 0.5 * old + 0.5 * float(seconds)

    def start(self, stage: str, now: float) -> None:
        self._stage, self._since = stage, now

    def seconds_left(self, now: float) -> float | None:
        if self._stage not in self.stages or not self._seconds:
            return None
        later = self.stages[self.stages.index(self._stage) + 1:]
        current = max(0.0, self._seconds.get(self._stage, 0.0) - (now - self._since))
        return current + sum(self._seconds.get(stage, 0.0) for stage in later)

    def status(self, stage: str, now: float) -> str:
        if stage != self._stage:
            self.start(stage, now)
        left = self.seconds_left(now)
        return stage if left is None else f"{stage} - about {max(1, round(left))} s left"
