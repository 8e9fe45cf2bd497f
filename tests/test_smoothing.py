"""One Euro filter and gap filling: the fingertip path the canvas draws."""
from __future__ import annotations

import numpy as np
import pytest

from sketch.smoothing import OneEuroFilter, fill_gap

FPS = 30.0


def test_first_sample_passes_through_and_reset_forgets():
    f = OneEuroFilter()
    assert np.allclose(f((100.0, 50.0), 0.0), (100.0, 50.0))
    f((110.0, 50.0), 1 / FPS)
    f.reset()
    assert np.allclose(f((300.0, 200.0), 1.0), (300.0, 200.0))


def test_still_finger_jitter_is_reduced():
    rng = np.random.default_rng(0)
    truth = np.array([320.0, 240.0])
    noisy = truth + rng.normal(0, 3.0, size=(300, 2))
    f = OneEuroFilter()
    out = np.array([f(p, i / FPS) for i, p in enumerate(noisy)])[30:]
    error_raw = np.linalg.norm(noisy[30:] - truth, axis=1).mean()
    error_filtered = np.linalg.norm(out - truth, axis=1).mean()
    assert error_filtered < 0.5 * error_raw


def test_fast_motion_lags_less_than_a_fixed_low_pass():
    # A finger moving at 600 px/s: the speed-adaptive cut-off must follow it closely ...
    t = np.arange(60) / FPS
    path = np.stack([100 + 600 * t, np.full_like(t, 240.0)], axis=1)
    adaptive = OneEuroFilter(min_cutoff=1.0, beta=0.02)
    fixed = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    lag_adaptive = [np.linalg.norm(adaptive(p, s) - p) for p, s in zip(path, t)][-1]
    lag_fixed = [np.linalg.norm(fixed(p, s) - p) for p, s in zip(path, t)][-1]
    assert lag_adaptive < 0.5 * lag_fixed
    assert lag_adaptive < 15.0  # pixels, at 30 fps


def test_converges_to_a_step():
    f = OneEuroFilter()
    f((0.0, 0.0), 0.0)
    out = [f((100.0, 0.0), (i + 1) / FPS) for i in range(60)]
    assert out[0][0] < 100.0                      # smoothed, not a jump ...
    assert abs(out[-1][0] - 100.0) < 1.0          # ... but it gets there within 2 s


def test_repeated_timestamp_does_not_divide_by_zero():
    f = OneEuroFilter()
    f((0.0, 0.0), 1.0)
    out = f((10.0, 0.0), 1.0)
    assert np.all(np.isfinite(out))


def test_bad_parameters_rejected():
    with pytest.raises(ValueError):
        OneEuroFilter(min_cutoff=0)
    with pytest.raises(ValueError):
        OneEuroFilter(beta=-1)


def test_fill_gap_spacing_and_end():
    pts = fill_gap((0, 0), (30, 40), 5.0)
    assert pts[-1] == (30.0, 40.0)
    assert len(pts) == 10  # 50 px / 5
    steps = np.diff(np.array([(0.0, 0.0)] + pts), axis=0)
    assert np.allclose(np.linalg.norm(steps, axis=1), 5.0)


def test_fill_gap_short_segment_is_just_the_end():
    assert fill_gap((1, 1), (2, 1), 5.0) == [(2.0, 1.0)]
    with pytest.raises(ValueError):
        fill_gap((0, 0), (1, 1), 0)
