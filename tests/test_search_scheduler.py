"""The search thread's decisions, driven directly: no thread, no model, no sleep."""
from __future__ import annotations

from pathlib import Path

from sketch_search.app.search_scheduler import (
    Deliver,
    FullRun,
    IndexSlice,
    IndexState,
    Preview,
    Refresh,
    Refuse,
    Save,
    SearchScheduler,
    StartIndex,
    Warmup,
)


def save(key: str = "a", at: float = 0.0) -> Save:
    return Save(f"image-{key}", Path(f"sketch-{key}.png"), key, at)


def ready(indexing: bool = True, state: IndexState | None = IndexState(10, 100, False),
          warmed: bool = True) -> SearchScheduler:
    """Models loaded, the index started and sliced once (state), the warm-up over (warmed)."""
    scheduler = SearchScheduler(indexing=indexing)
    scheduler.models_loaded()
    if indexing:
        assert scheduler.next_job(0.0) == StartIndex()
        scheduler.index_started()
        if state is not None:
            scheduler.sliced(state)
    if warmed:
        job = scheduler.next_job(0.0)
        assert isinstance(job, Warmup)
        scheduler.warmup_ended()
    return scheduler


def test_nothing_runs_before_the_models_load_and_a_save_then_waits_for_the_first_slice():
    scheduler = SearchScheduler(indexing=True)
    scheduler.submit(save())
    assert scheduler.next_job(0.0) is None and scheduler.pending == 1
    scheduler.models_loaded()
    assert scheduler.next_job(0.0) == StartIndex()
    scheduler.index_started()
    assert scheduler.next_job(0.0) == IndexSlice()      # nothing is searchable yet
    scheduler.sliced(IndexState(5, 500, False))
    job = scheduler.next_job(0.0)
    assert isinstance(job, FullRun) and job.run.saves == [job.run.saves[0]] and not job.run.speculative


def test_a_waiting_save_skips_the_warm_up_and_one_arriving_cancels_it():
    scheduler = ready(warmed=False, state=IndexState(5, 500, False))
    scheduler.submit(save())
    assert isinstance(scheduler.next_job(0.0), FullRun)  # no warm-up first
    scheduler = ready(warmed=False)
    warmup = scheduler.next_job(0.0)
    assert isinstance(warmup, Warmup) and not warmup.cancelled
    scheduler.submit(save())
    assert warmup.cancelled
    scheduler.warmup_ended()
    assert isinstance(scheduler.next_job(0.0), FullRun)


def test_jobs_go_before_slices_in_order_save_preview_run_ahead():
    scheduler = ready()
    assert scheduler.next_job(0.0) == IndexSlice()      # nothing else to do: index
    scheduler.speculate("image-b", "b")
    scheduler.preview("image-p", "p", 1.0)
    assert scheduler.next_job(0.0) == Preview("image-p", "p", 1.0)
    run_ahead = scheduler.next_job(0.0)
    assert isinstance(run_ahead, FullRun) and run_ahead.run.ahead
    scheduler.run_finished(run_ahead.run, "answer-b")
    assert scheduler.next_job(0.0) == IndexSlice()
    # A save drops the preview and the run ahead asked before it: both are older than the save.
    scheduler.preview("image-q", "q", 2.0)
    scheduler.speculate("image-c", "c")
    scheduler.submit(save("d"))
    job = scheduler.next_job(0.0)
    assert isinstance(job, FullRun) and job.run.key == "d"
    assert scheduler.next_job(0.0) == IndexSlice()


def test_a_save_of_a_canvas_answered_ahead_is_delivered_from_it():
    scheduler = ready()
    assert scheduler.speculate("image-a", "a")
    job = scheduler.next_job(0.0)
    assert scheduler.run_finished(job.run, "answer-a") == []
    assert scheduler.ahead_done and not scheduler.speculate("image-a", "a")
    mine = save("a")
    scheduler.submit(mine)
    assert scheduler.next_job(0.0) == Deliver(mine, "answer-a")
    scheduler.canvas_changed(1.0)
    assert not scheduler.ahead_done


def test_a_save_joins_the_run_in_flight_on_its_canvas_and_cancels_one_on_another():
    scheduler = ready()
    scheduler.speculate("image-a", "a")
    run = scheduler.next_job(0.0).run
    mine = save("a", 5.0)
    scheduler.submit(mine)
    assert not run.cancelled and run.saves == [mine] and not run.ahead
    assert scheduler.next_job(0.0) == IndexSlice()      # no second run for the same canvas
    assert scheduler.run_finished(run, "answer-a") == [mine]
    scheduler.speculate("image-b", "b")
    other = scheduler.next_job(0.0).run
    scheduler.submit(save("c", 7.0))
    assert other.cancelled and other.cancel_asked == 7.0
    assert scheduler.run_ended(other) == []
    assert isinstance(scheduler.next_job(0.0), FullRun)


def test_a_change_cancels_the_run_ahead_but_not_a_run_for_a_save():
    scheduler = ready()
    scheduler.speculate("image-a", "a")
    ahead = scheduler.next_job(0.0).run
    scheduler.canvas_changed(3.0)
    assert ahead.cancelled and ahead.cancel_asked == 3.0
    scheduler.run_ended(ahead)
    scheduler.submit(save("b"))
    for_save = scheduler.next_job(0.0).run
    scheduler.canvas_changed(4.0)
    assert not for_save.cancelled


def test_refresh_ranks_the_latest_save_again_every_few_seconds_and_when_indexing_ends():
    scheduler = ready(state=IndexState(10, 100, False))
    scheduler.submit(save("a"))
    run = scheduler.next_job(0.0).run
    [answered] = scheduler.run_finished(run, "answer-a")
    scheduler.delivered("latest-a", 10, now=10.0)
    scheduler.answered(answered)
    assert scheduler.pending == 0
    scheduler.sliced(IndexState(20, 100, False))
    assert scheduler.next_job(11.0) == IndexSlice()     # refreshed at most every REFRESH_SECONDS
    assert scheduler.next_job(10.0 + scheduler.refresh_seconds) == Refresh("latest-a")
    scheduler.refreshed(20, 13.0)
    assert scheduler.next_job(20.0) == IndexSlice()     # nothing new since
    scheduler.sliced(IndexState(100, 100, True))
    assert scheduler.next_job(13.5) == Refresh("latest-a")  # indexing ended: at once
    scheduler.refreshed(100, 13.5)
    assert scheduler.next_job(14.0) is None and not scheduler.indexing


def test_a_newer_save_takes_the_refresh_and_the_earlier_keeps_its_answer():
    scheduler = ready(state=IndexState(10, 100, False))
    scheduler.delivered("first", 10, now=0.0)
    scheduler.delivered("second", 10, now=1.0)
    scheduler.sliced(IndexState(100, 100, True))
    assert scheduler.next_job(2.0) == Refresh("second")


def test_new_photos_from_the_phone_start_the_index_again():
    scheduler = ready(state=IndexState(100, 100, True))
    assert scheduler.next_job(0.0) is None
    scheduler.gallery_changed()
    assert scheduler.next_job(0.0) == StartIndex()
    scheduler.index_started()
    assert scheduler.next_job(0.0) == IndexSlice()


def test_no_gallery_means_no_indexing_and_saves_run_at_once():
    scheduler = ready(indexing=False, state=None)
    assert scheduler.next_job(0.0) is None
    scheduler.gallery_changed()
    scheduler.submit(save())
    assert isinstance(scheduler.next_job(0.0), FullRun)


def test_without_models_saves_are_refused_and_nothing_else_runs():
    scheduler = SearchScheduler(indexing=True)
    scheduler.models_loaded(error="no models")
    scheduler.preview("image", "p", 0.0)
    scheduler.speculate("image", "q")
    assert scheduler.next_job(0.0) is None
    mine = save()
    scheduler.submit(mine)
    assert scheduler.next_job(0.0) == Refuse(mine, "no models")


def test_stop_cancels_the_run_and_drops_the_saves_not_started():
    scheduler = ready()
    scheduler.submit(save("a"))
    run = scheduler.next_job(0.0).run
    waiting = save("b")
    scheduler.submit(waiting)
    assert scheduler.pending == 2
    assert scheduler.stop(9.0) == [waiting]
    assert run.cancelled and scheduler.pending == 1 and scheduler.next_job(9.0) is None
    assert scheduler.run_ended(run) == run.saves


# -- the worker's one owner ------------------------------------------------------------------------
class _Loading:
    """A pipeline whose model load takes `seconds` and checks for a stop only when `checks`."""

    gallery_size = 0

    def __init__(self, seconds: float, checks: bool):
        import threading
        self.release = threading.Event()
        self.seconds, self.checks = seconds, checks

    def load(self, status=None):
        import time
        deadline = time.monotonic() + self.seconds
        while time.monotonic() < deadline and not self.release.is_set():
            if self.checks and status is not None:
                status("loading captioner")   # the worker's stop check runs here
            time.sleep(0.01)


def test_the_owner_joins_once_and_asks_for_a_hard_exit_only_when_the_thread_is_stuck():
    from sketch_search.app.search_worker import SearchWorker, WorkerOwner

    stoppable = SearchWorker(_Loading(30, checks=True))
    with WorkerOwner(stoppable, stop_seconds=5) as owner:
        pass
    assert not owner.hard_exit_needed and stoppable.join(0)
    stuck = _Loading(30, checks=False)        # a model load that cannot be interrupted
    worker = SearchWorker(stuck)
    with WorkerOwner(worker, stop_seconds=0.2) as owner:
        pass
    assert owner.hard_exit_needed and not worker.join(0)
    stuck.release.set()
    assert worker.join(10)
