"""The search thread's job handlers, driven directly: no thread, no sleep; the pipeline stands
in as a backend whose query fails or is cancelled, which is what the handlers decide about.
The worker (not started) carries each job out with its runner and applies the outcome."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np

from retrieval.index_errors import IndexFileError
from sketch.overlay import LIVE_LABEL, ResultsView
from sketch_search.app.events import EventLog
from sketch_search.app.search_answers import Finished
from sketch_search.app.search_jobs import IndexFailed, Loaded, RunFailed, RunFinished, WarmedUp
from sketch_search.app.search_scheduler import (
    FullRun,
    IndexState,
    Refuse,
    Save,
    SearchScheduler,
    StartIndex,
    Warmup,
)
from sketch_search.app.search_state import SearchState
from sketch_search.app.search_worker import SearchWorker
from sketch_search.common.cancel import Cancelled
from sketch_search.common.errors import MissingCheckpointError, SketchSearchError


class _Backend:
    """Loads (or fails to), and answers every query with `failure` (an exception to raise)."""

    gallery_size = 0

    def __init__(self, failure: BaseException, load_error: SketchSearchError | None = None):
        self.failure, self.load_error = failure, load_error

    def load(self, status=None):
        if self.load_error is not None:
            raise self.load_error

    def warmup(self, status=None, cancelled=None):
        return {}

    def query(self, image, stage=None, cancelled=None):
        stage("captioning")
        raise self.failure


def runner(backend: _Backend, gallery: Path | None = None) -> tuple[SearchWorker, SearchScheduler, EventLog]:
    events = EventLog()
    worker = SearchWorker(backend, gallery, events=events)
    return worker, worker.scheduler, events


def test_a_failed_query_answers_its_save_with_the_error_and_counts_it():
    worker, scheduler, _ = runner(_Backend(SketchSearchError("the caption model broke")))
    assert worker.load_models()
    assert worker.status == ("ready (no --gallery: caption and image only)", False)
    scheduler.submit(Save("image", Path("sketch-a.png"), "a", 0.0))
    job = scheduler.next_job(0.0)
    assert isinstance(job, FullRun)
    worker.carry_out(job)
    outcomes = worker.finished()
    assert [(o.sketch_path, o.error) for o in outcomes] == [(Path("sketch-a.png"), "the caption model broke")]
    assert worker.failures == 1 and scheduler.pending == 0 and scheduler.run_now is None
    assert worker.status == ("search failed: the caption model broke", True)
    assert worker.finished() == []


def test_a_cancelled_run_ahead_posts_nothing_and_records_the_cancel():
    worker, scheduler, events = runner(_Backend(Cancelled()))
    worker.load_models()
    assert isinstance(scheduler.next_job(0.0), Warmup)
    scheduler.warmup_ended()
    assert scheduler.speculate("image", "a")
    job = scheduler.next_job(0.0)
    scheduler.canvas_changed(1.0)
    worker.carry_out(job)
    assert worker.finished() == [] and worker.failures == 0 and worker.cancelled_runs == 1
    assert [e["event"] for e in events.events] == ["speculate", "cancel"]
    assert worker.status == ("ready (no --gallery: caption and image only)", False)


def test_without_models_the_status_says_why_and_a_save_is_refused():
    worker, scheduler, _ = runner(_Backend(AssertionError("never queried"),
                                           MissingCheckpointError("model files missing")))
    assert worker.load_models()
    assert worker.status == ("error: model files missing", True)
    scheduler.submit(Save("image", Path("sketch-a.png"), "a", 0.0))
    job = scheduler.next_job(0.0)
    assert isinstance(job, Refuse)
    worker.carry_out(job)
    assert [o.error for o in worker.finished()] == ["model files missing"] and worker.failures == 1


class _BrokenIndex(_Backend):
    """A gallery whose index file cannot be used (damaged, say)."""

    def start_index(self, gallery):
        raise IndexFileError("the gallery index /g/.sketch-search/index.sqlite is damaged", ("rebuild", "elsewhere"))


def test_an_unusable_index_says_its_ways_out_as_the_window_programs_flags():
    worker, scheduler, _ = runner(_BrokenIndex(SketchSearchError("unused")), gallery=Path("/g"))
    assert worker.load_models()
    job = scheduler.next_job(0.0)
    assert isinstance(job, StartIndex)
    worker.carry_out(job)
    line, error = worker.status
    assert error and "is damaged" in line
    assert "--rebuild-index" in line and "--index" in line


def test_the_runner_returns_what_happened_and_changes_no_shared_state():
    """Below the worker nothing is written: the runner's outcome carries the index's own error
    (no command-line flags in it) and a failed run's message; the worker has not applied them."""
    worker, scheduler, _ = runner(_BrokenIndex(SketchSearchError("the caption model broke")), gallery=Path("/g"))
    assert worker.load_models()
    outcome = worker.runner.carry_out(scheduler.next_job(0.0))
    assert isinstance(outcome, IndexFailed) and isinstance(outcome.error, IndexFileError)
    assert "--rebuild-index" not in str(outcome.error)
    assert worker.status == ("indexing gallery: looking for photos", False)  # not applied yet
    scheduler.submit(Save("image", Path("sketch-a.png"), "a", 0.0))
    scheduler.sliced(IndexState(0, 0, True))
    job = scheduler.next_job(0.0)
    outcome = worker.runner.carry_out(job)
    assert outcome == RunFailed(job.run, "the caption model broke")
    assert scheduler.pending == 1 and worker.failures == 0 and worker.finished() == []


def test_a_run_ahead_is_shown_live_only_in_the_full_live_mode_and_the_status_says_what_to_do():
    """Applying a finished run ahead (no save yet) is the worker's state's decision: with --live
    full it is posted as the live route, marked live; with previews it only waits for a save."""
    view = ResultsView(sketch=np.zeros((4, 4, 3), np.uint8), generated=None, caption="a cat", seconds=2.5)
    shown = {}
    for live in ("full", "preview"):
        state = SearchState(gallery=False, live=live)
        assert state.apply(Loaded(None)) == []
        assert isinstance(state.scheduler.next_job(0.0), Warmup)
        state.apply(WarmedUp({"captioning": 1.0}))
        assert state.scheduler.speculate("image", "a")
        run = state.scheduler.next_job(0.0).run
        finished = Finished(SimpleNamespace(timings={"generating": 2.0}), b"png", view, True, 0)
        assert state.apply(RunFinished(run, finished)) == []   # no save to deliver to
        assert state.scheduler.run_now is None and state.scheduler.ahead_done
        shown[live] = (state.board.take(), state.status_line(0.0))
    [outcome] = shown["full"][0]
    assert outcome.live and outcome.sketch_path is None and outcome.view.label == LIVE_LABEL
    assert shown["full"][1] == ("results ready ahead (2.5 s): hold the save gesture to keep them", False)
    assert shown["preview"] == ([], ("results ready ahead (2.5 s): hold the save gesture to see them", False))
