"""The status line's time-left estimate, replayed against the timings recorded in BENCHMARKS.md."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from sketch_search.app.time_left import TimeLeft
from tests.conftest import ROOT

STAGES = TimeLeft.STAGES

# BENCHMARKS.md section 1, warm medians per stage (s). "generating" is text encoder + VAE encode +
# UNet + VAE decode; "searching" is the DINOv2 embedding plus the top-k.
IDLE = {"preprocess": 0.014, "captioning": 2.38, "generating": 13.3, "searching": 0.16}     # 15.9 s
BUSIER = {"preprocess": 0.019, "captioning": 2.71, "generating": 14.4, "searching": 0.33}   # 17.4 s, load 1.8-2.8
LOADED = {"preprocess": 0.022, "captioning": 23.5, "generating": 36.2, "searching": 2.02}   # 61.7 s, load 5.1-5.2
# Whole-run figures recorded there, spread over the stages in the idle proportions: the warm-up
# (17.6 s, section 2's idle run; SketchSearch.warmup reports no preprocess) and a first query
# without warm-up (16.3 s).
WARMUP = {k: v * 17.6 / 15.9 for k, v in IDLE.items() if k != "preprocess"}
FIRST_QUERY = {k: v * 16.3 / 15.9 for k, v in IDLE.items()}


def scaled(run: dict[str, float], factor: float) -> dict[str, float]:
    return {k: v * factor for k, v in run.items()}


def replay(time_left: TimeLeft, run: dict[str, float], start: float = 1000.0,
           fractions=(0.0, 0.1, 0.25, 0.5, 0.75, 0.85, 0.9, 0.95, 0.99)):
    """Play `run` through start() and yield (stage, now, estimate, true seconds left)."""
    total = sum(run[s] for s in STAGES)
    begun = 0.0
    for stage in STAGES:
        time_left.start(stage, start + begun)
        for fraction in fractions:
            elapsed = begun + fraction * run[stage]
            now = start + elapsed
            yield stage, now, time_left.seconds_left(now), total - elapsed
        begun += run[stage]


def learnt(*runs: dict[str, float]) -> TimeLeft:
    time_left = TimeLeft()
    for run in runs:
        time_left.learn({**run, "total": sum(run.values())})  # as SketchSearch reports them
    return time_left


def check_replay(time_left: TimeLeft, run: dict[str, float], tolerance: float = 0.25,
                 from_left: float = 2.0, tail_s: float | None = 0.5) -> int:
    """Within `tolerance` of the truth at every moment with `from_left` seconds or more to go;
    in the last `from_left` seconds, where any error is a large share, within `tail_s` seconds.
    Returns how many moments were held to `tolerance`."""
    checked = 0
    for stage, now, estimate, truth in replay(time_left, run):
        if truth >= from_left:
            assert abs(estimate - truth) <= tolerance * truth, (stage, now, estimate, truth)
            checked += 1
        elif tail_s is not None:
            assert abs(estimate - truth) <= tail_s, (stage, now, estimate, truth)
    return checked


def test_nothing_known_until_a_run_is_learnt():
    time_left = TimeLeft()
    time_left.start("captioning", 5.0)
    assert time_left.seconds_left(6.0) is None
    assert time_left.status("captioning", 6.0) == "captioning"
    time_left.learn({"total": 3.0})  # no stage in it: still nothing known
    assert time_left.seconds_left(6.0) is None


def test_second_and_third_queries_after_the_warm_up_and_the_first():
    time_left = learnt(WARMUP, FIRST_QUERY)
    # The second query: 24 of its 36 moments have 2 s or more to go (all but generating's last
    # 15 % and the embedding).
    assert check_replay(time_left, IDLE) == 24
    time_left.learn(IDLE)
    assert check_replay(time_left, IDLE, tolerance=0.10) == 24  # the third is closer still
    time_left.learn(IDLE)
    # A busier moment (load 1.8-2.8, 10 % slower): within 25 % while 5 s or more are left (the
    # first 70 % of the wait); after that it says too little by up to 1.3 s ("almost done").
    assert check_replay(time_left, BUSIER, from_left=5.0, tail_s=1.3) >= 15


def test_the_status_line():
    time_left = learnt(WARMUP, FIRST_QUERY)
    time_left.start("generating", 100.0)
    assert time_left.status("generating", 100.0) == "generating - about 14 s left"
    assert time_left.status("generating", 107.0) == "generating - about 7 s left"
    assert time_left.status("generating", 114.0) == "generating - almost done"  # overrun: the floor
    time_left.start("searching", 114.0)
    assert time_left.status("searching", 114.05) == "searching - almost done"
    # Not a query stage: the text as it is.
    assert time_left.status("loading models: loading captioner", 115.0) == "loading models: loading captioner"
    # A stage shown before its start() reached the estimator is taken to begin now.
    time_left.learn(IDLE)
    assert time_left.status("captioning", 200.0) == "captioning - about 16 s left"
    # Long waits in minutes.
    assert learnt(scaled(IDLE, 10)).status("preprocess", 0.0) == "preprocess - about 3 min left"


def test_an_overrunning_stage_never_reaches_zero():
    time_left = learnt(IDLE)
    time_left.start("generating", 0.0)
    assert time_left.seconds_left(30.0) == pytest.approx(0.3 + IDLE["searching"])
    time_left.start("searching", 30.0)
    assert time_left.seconds_left(31.0) == pytest.approx(IDLE["searching"])


def test_no_stage_running_gives_a_whole_query():
    time_left = learnt(IDLE)
    assert time_left.seconds_left(0.0) == pytest.approx(sum(IDLE.values()))
    time_left.start("captioning", 0.0)
    time_left.learn(IDLE)  # the run ended
    assert time_left.seconds_left(50.0) == pytest.approx(sum(IDLE.values()))


def test_a_slow_warm_up_counts_for_little():
    # A warm-up twice as slow as later runs (kernel selection, as on CUDA): after one real query
    # the estimate is within 25 % again. An even average of the two would be 50 % off.
    time_left = learnt(scaled(WARMUP, 2.0), FIRST_QUERY)
    check_replay(time_left, IDLE)
    mean = {s: (2.0 * WARMUP.get(s, 0.0) + FIRST_QUERY[s]) / 2 for s in STAGES}
    assert sum(mean.values()) > 1.25 * sum(IDLE.values())


def test_a_slower_machine_moves_the_estimate():
    time_left = learnt(WARMUP, FIRST_QUERY, IDLE, IDLE)
    before = time_left.seconds_left(0.0)
    time_left.learn(scaled(IDLE, 2.0))  # one run twice as slow
    after = time_left.seconds_left(0.0)
    assert after > 1.4 * before
    time_left.learn(IDLE)  # and back
    assert time_left.seconds_left(0.0) < after
    # The machine gets loaded (BENCHMARKS.md's load 5.1-5.2 column, 3.9x the idle time, captioning
    # 10x): after one such run the estimate is within 25 % for the first three quarters of the next
    # wait; after three, everywhere but the last 2 s.
    time_left = learnt(WARMUP, FIRST_QUERY, IDLE, IDLE, LOADED)
    check_replay(time_left, LOADED, from_left=0.25 * sum(LOADED.values()), tail_s=None)
    time_left.learn(LOADED)
    time_left.learn(LOADED)
    check_replay(time_left, LOADED, tail_s=None)


def test_the_module_is_torch_free():
    code = "import sys\nimport sketch_search.app.time_left\nprint('torch' in sys.modules)"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.stdout.strip() == "False", done.stderr
