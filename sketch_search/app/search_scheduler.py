"""What the search thread does next, and what a change cancels: plain, thread-free decisions.

The search thread (search_worker.py) asks `next_job`, has `JobRunner` (search_jobs.py) carry the
job out and tells the scheduler what came of it; the window's loop tells it what happened (a save,
a new canvas, a change). Both go through the worker, which holds one lock around every call.
Nothing here sleeps, starts a thread or touches a model, so tests drive it directly.

Order, most urgent first (one model call at a time):
1. indexing set-up: `start_index` once the models are loaded, and again when the phone sync
   brought photos; until the first slice has run, a waiting job runs that slice first (a save
   made before any photo is indexed waits for it).
2. saves: answered from a finished run of the same canvas, by the run in flight on it (the save
   joins it), or by a new full run.
3. previews: the newest canvas only (a slot, not a queue).
4. runs ahead: the full route on the newest canvas after the pen rested; a change cancels it.
5. the warm-up, once, when nothing waits; a save cancels it (its own query warms the models).
6. a refresh: the most recent save ranked again over the larger index (no model work), every
   REFRESH_SECONDS at most and when indexing ends.
7. an indexing slice (about a second of work), so a job waits at most for the slice running.
"""
from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FINISHED_KEPT = 4          # finished full runs kept for saves of the same canvas
REFRESH_SECONDS = 3.0      # the most recent save is ranked again at most this often while indexing


@dataclass(frozen=True)
class IndexState:
    """How much of the gallery a ranking covers: `searched` of `total` photos; `done` when all."""
    searched: int
    total: int
    done: bool


@dataclass(frozen=True, eq=False)
class Save:
    """A save gesture: the exported canvas, where it was written, its key and when (monotonic)."""
    image: Any
    path: Path
    key: str
    saved_at: float


@dataclass(eq=False)
class Run:
    """A full query in flight: for saves, or ahead of one (speculative, no saves yet)."""
    image: Any
    key: str
    speculative: bool
    saves: list[Save] = field(default_factory=list)
    cancelled: bool = False            # read by the query's cancellation checks
    cancel_asked: float | None = None  # monotonic: when the cancel was asked (for its latency)

    @property
    def ahead(self) -> bool:
        """Ahead of any save: what the status line marks "ahead"."""
        return self.speculative and not self.saves


# -- jobs: what the thread carries out ------------------------------------------------------------
@dataclass(frozen=True)
class StartIndex:
    """Walk the gallery, load what is indexed, queue the rest."""


@dataclass(frozen=True)
class IndexSlice:
    """About a second of indexing."""


@dataclass(eq=False)
class Warmup:
    cancelled: bool = False


@dataclass(frozen=True)
class FullRun:
    run: Run


@dataclass(frozen=True)
class Deliver:
    """A save answered from a run that finished on the same canvas."""
    save: Save
    finished: Any


@dataclass(frozen=True)
class Refuse:
    """A save that cannot be searched (no models): `reason` says why."""
    save: Save
    reason: str


@dataclass(frozen=True)
class Preview:
    image: Any
    key: str
    changed_at: float


@dataclass(frozen=True)
class Refresh:
    """Rank the most recent save again over the larger index."""
    target: Any


Job = StartIndex | IndexSlice | Warmup | FullRun | Deliver | Refuse | Preview | Refresh


class SearchScheduler:
    """Decides the search thread's next job; told what happened by the loop and the thread."""

    def __init__(self, indexing: bool, finished_kept: int = FINISHED_KEPT,
                 refresh_seconds: float = REFRESH_SECONDS):
        self.finished_kept = finished_kept
        self.refresh_seconds = refresh_seconds
        self.loaded = False
        self.load_error: str | None = None
        self.stopping = False
        self.pending = 0                          # saves not answered yet
        self.run_now: Run | None = None
        self.index: IndexState | None = None      # None until the first slice reported
        self._index_wanted = indexing
        self._index_started = False
        self._rescan = False                      # new photos arrived: start_index again
        self._saves: deque[Save] = deque()
        self._preview: Preview | None = None
        self._ahead: tuple[Any, str] | None = None
        self._warmup_wanted = True
        self._warmup: Warmup | None = None
        self._finished: OrderedDict[str, Any] = OrderedDict()
        self._target: Any = None                  # the most recent save's answer, for refreshes
        self._target_searched = 0
        self._refreshed_at = float("-inf")
        self.ahead_done = False                   # results are waiting for a save of this canvas

    # -- told by the loop ---------------------------------------------------------------------
    def submit(self, save: Save) -> None:
        """A save goes before any preview or run ahead (both dropped: older than the save)."""
        self.pending += 1
        self._preview = self._ahead = None
        if self._warmup is not None:
            self._warmup.cancelled = True         # the save's own query warms the models
        self._warmup_wanted = False
        running = self.run_now
        if running is not None and running.key == save.key and not running.cancelled:
            running.saves.append(save)            # that run answers it: no second start
            return
        if running is not None and running.ahead:
            self._cancel(running, save.saved_at)  # ahead on another canvas
        self._saves.append(save)

    def preview(self, image: Any, key: str, changed_at: float) -> None:
        """Matches for this canvas soon (replaces a preview not started yet)."""
        self._preview = Preview(image, key, changed_at)

    def speculate(self, image: Any, key: str) -> bool:
        """The full route on this canvas ahead of a save; False when it is run or done already."""
        running = self.run_now
        if key in self._finished or (running is not None and running.key == key and not running.cancelled):
            return False
        self._ahead = (image, key)
        return True

    def canvas_changed(self, now: float) -> None:
        """The drawing changed: the run ahead is for an old drawing (cancelled, or dropped)."""
        self._ahead = None
        if self.run_now is not None and self.run_now.ahead:
            self._cancel(self.run_now, now)
        self.ahead_done = False

    def gallery_changed(self) -> None:
        """New photos arrived: they join the indexing queue."""
        if self._index_wanted and self._index_started:
            self._rescan = True

    def stop(self, now: float) -> list[Save]:
        """Stop soon: the run in flight is cancelled; the saves never started are returned."""
        self.stopping = True
        if self.run_now is not None:
            self._cancel(self.run_now, now)
        if self._warmup is not None:
            self._warmup.cancelled = True
        dropped = list(self._saves)
        self._saves.clear()
        self.pending -= len(dropped)
        return dropped

    # -- told by the thread -------------------------------------------------------------------
    def models_loaded(self, error: str | None = None) -> None:
        self.loaded = True
        self.load_error = error
        if error is not None:
            self._index_wanted = self._warmup_wanted = False

    def index_started(self) -> None:
        """The gallery's walk is handed out (next_job does it; saying it again changes nothing)."""
        self._index_started, self._rescan = True, False
        if self.index is not None:  # new photos may be queued: not done until a slice says so
            self.index = IndexState(self.index.searched, self.index.total, False)

    def index_failed(self) -> None:
        """The gallery cannot be indexed (gone, unreadable): answers cover what is indexed."""
        self._index_wanted = False

    def sliced(self, state: IndexState) -> None:
        self.index = state

    def warmup_ended(self) -> None:
        self._warmup = None

    def run_finished(self, run: Run, finished: Any) -> list[Save]:
        """The run's answer is kept for later saves of its canvas; the saves it answers now."""
        self._finished[run.key] = finished
        while len(self._finished) > self.finished_kept:
            self._finished.popitem(last=False)
        self.run_now = None
        self._warmup_wanted = False               # a full run warmed every model
        if run.ahead:
            self.ahead_done = True
        return list(run.saves)

    def run_ended(self, run: Run) -> list[Save]:
        """The run was cancelled or failed: the saves it held (answered with an error)."""
        self.run_now = None
        return list(run.saves)

    def answered(self, save: Save) -> None:
        """A save got its answer (or its error)."""
        self.pending -= 1

    def delivered(self, target: Any, searched: int, now: float) -> None:
        """The most recent save's answer, ranked over `searched` photos at `now`: ranked again
        as the index grows (earlier saves keep their answers)."""
        self._target, self._target_searched, self._refreshed_at = target, searched, now

    def refreshed(self, searched: int, now: float) -> None:
        self._target_searched, self._refreshed_at = searched, now

    # -- what next ----------------------------------------------------------------------------
    @property
    def indexing(self) -> bool:
        """Photos are still waiting to be indexed (or the first slice has not run)."""
        return self._index_wanted and (not self._index_started or self._rescan or self.index is None
                                       or not self.index.done)

    @property
    def jobs_waiting(self) -> bool:
        """A save, preview or run ahead waits: an indexing slice ends after its batch."""
        return bool(self._saves) or self._preview is not None or self._ahead is not None

    @property
    def idle(self) -> bool:
        """No save, preview or run ahead waits or runs (indexing may go on)."""
        return (self.pending == 0 and self._preview is None and self._ahead is None
                and self.run_now is None)

    def next_job(self, now: float) -> Job | None:
        """The job to run now; None when there is nothing (or the worker is stopping)."""
        if self.stopping or not self.loaded:
            return None
        if self._index_wanted and (not self._index_started or self._rescan):
            self.index_started()                  # photos arriving from now on: another walk
            return StartIndex()
        if self.jobs_waiting and self._index_wanted and self.index is None:
            return IndexSlice()                   # nothing is searchable before the first slice
        if self._saves:
            return self._save_job(self._saves.popleft())
        if self.load_error is not None:           # no previews or runs ahead without models
            self._preview = self._ahead = None
            return None
        if self._preview is not None:
            job, self._preview = self._preview, None
            return job
        if self._ahead is not None:
            (image, key), self._ahead = self._ahead, None
            self.run_now = Run(image, key, speculative=True)
            return FullRun(self.run_now)
        if self._warmup_wanted:
            self._warmup_wanted = False
            self._warmup = Warmup()
            return self._warmup
        if self._refresh_due(now):
            return Refresh(self._target)
        if self.indexing:
            return IndexSlice()
        return None

    def _save_job(self, save: Save) -> Job:
        if self.load_error is not None:
            return Refuse(save, self.load_error)
        finished = self._finished.get(save.key)
        if finished is not None:
            return Deliver(save, finished)
        self.run_now = Run(save.image, save.key, speculative=False, saves=[save])
        return FullRun(self.run_now)

    def _refresh_due(self, now: float) -> bool:
        if self._target is None or self.index is None or self.index.searched <= self._target_searched:
            return False
        return self.index.done or now - self._refreshed_at >= self.refresh_seconds

    @staticmethod
    def _cancel(run: Run, now: float) -> None:
        if not run.cancelled:  # when first, so that a run seeing `cancelled` finds it
            run.cancel_asked, run.cancelled = now, True
