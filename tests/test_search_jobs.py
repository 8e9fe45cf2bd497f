"""The search thread's job handlers, driven directly: no thread, no sleep; the pipeline stands
in as a backend whose query fails or is cancelled, which is what the handlers decide about."""
from __future__ import annotations

from pathlib import Path

from retrieval.index_errors import IndexFileError
from sketch_search.app.events import EventLog
from sketch_search.app.search_answers import SaveAnswers
from sketch_search.app.search_board import SearchBoard
from sketch_search.app.search_jobs import JobRunner
from sketch_search.app.search_presenter import Presenter
from sketch_search.app.search_scheduler import FullRun, Refuse, Save, SearchScheduler, StartIndex, Warmup
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


def runner(backend: _Backend) -> tuple[JobRunner, SearchScheduler, SearchBoard, EventLog]:
    scheduler = SearchScheduler(indexing=False)
    board = SearchBoard(scheduler, gallery=False)
    events = EventLog()
    presenter = Presenter()
    jobs = JobRunner(backend, scheduler, board, presenter, SaveAnswers(backend, presenter, events), events)
    return jobs, scheduler, board, events


def test_a_failed_query_answers_its_save_with_the_error_and_counts_it():
    jobs, scheduler, board, _ = runner(_Backend(SketchSearchError("the caption model broke")))
    assert jobs.load_models()
    assert board.status_line(0.0) == ("ready (no --gallery: caption and image only)", False)
    scheduler.submit(Save("image", Path("sketch-a.png"), "a", 0.0))
    job = scheduler.next_job(0.0)
    assert isinstance(job, FullRun)
    jobs.carry_out(job)
    outcomes = board.take()
    assert [(o.sketch_path, o.error) for o in outcomes] == [(Path("sketch-a.png"), "the caption model broke")]
    assert board.failures == 1 and scheduler.pending == 0 and scheduler.run_now is None
    assert board.status_line(0.0) == ("search failed: the caption model broke", True)
    assert board.take() == []


def test_a_cancelled_run_ahead_posts_nothing_and_records_the_cancel():
    jobs, scheduler, board, events = runner(_Backend(Cancelled()))
    jobs.load_models()
    assert isinstance(scheduler.next_job(0.0), Warmup)
    scheduler.warmup_ended()
    assert scheduler.speculate("image", "a")
    job = scheduler.next_job(0.0)
    scheduler.canvas_changed(1.0)
    jobs.carry_out(job)
    assert board.take() == [] and board.failures == 0 and board.cancelled_runs == 1
    assert [e["event"] for e in events.events] == ["speculate", "cancel"]
    assert board.status_line(2.0) == ("ready (no --gallery: caption and image only)", False)


def test_without_models_the_status_says_why_and_a_save_is_refused():
    jobs, scheduler, board, _ = runner(_Backend(AssertionError("never queried"),
                                                MissingCheckpointError("model files missing")))
    assert jobs.load_models()
    assert board.status_line(0.0) == ("error: model files missing", True)
    scheduler.submit(Save("image", Path("sketch-a.png"), "a", 0.0))
    job = scheduler.next_job(0.0)
    assert isinstance(job, Refuse)
    jobs.carry_out(job)
    assert [o.error for o in board.take()] == ["model files missing"] and board.failures == 1


class _BrokenIndex(_Backend):
    """A gallery whose index file cannot be used (damaged, say)."""

    def start_index(self, gallery):
        raise IndexFileError("the gallery index /g/.sketch-search/index.sqlite is damaged", ("rebuild", "elsewhere"))


def test_an_unusable_index_says_its_ways_out_as_the_window_programs_flags():
    backend = _BrokenIndex(SketchSearchError("unused"))
    scheduler = SearchScheduler(indexing=True)
    board = SearchBoard(scheduler, gallery=True)
    events, presenter = EventLog(), Presenter()
    jobs = JobRunner(backend, scheduler, board, presenter, SaveAnswers(backend, presenter, events), events,
                     gallery=Path("/g"))
    assert jobs.load_models()
    job = scheduler.next_job(0.0)
    assert isinstance(job, StartIndex)
    jobs.carry_out(job)
    line, error = board.status_line(0.0)
    assert error and "is damaged" in line
    assert "--rebuild-index" in line and "--index" in line
