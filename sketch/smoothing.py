"""Fingertip smoothing: the One Euro filter, and filling the gap between two frames' points.

The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a low-pass filter whose cut-off
rises with speed: a finger held still is smoothed hard (no jitter), a fast stroke barely
(little lag). Parameters are in the units of the signal: pixels and seconds here.
"""
from __future__ import annotations

import math

import numpy as np

# Tuned for a fingertip in pixels of a 640-pixel-wide view at 15-60 frames per second.
DEFAULT_MIN_CUTOFF = 1.5   # Hz: smoothing of a still finger (lower = steadier, more lag)
DEFAULT_BETA = 0.02        # how fast the cut-off rises with speed (higher = less lag when moving)
DEFAULT_D_CUTOFF = 1.0     # Hz: smoothing of the speed estimate itself


def _alpha(cutoff: float, dt: float) -> float:
    """Weight of the new sample in an exponential filter with this cut-off frequency."""
    tau = 1.0 / (2.0 * math.pi * cutoff)
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """Filters a vector (e.g. an (x, y) point) sampled at irregular times."""

    def __init__(self, min_cutoff: float = DEFAULT_MIN_CUTOFF, beta: float = DEFAULT_BETA,
                 d_cutoff: float = DEFAULT_D_CUTOFF):
        if min_cutoff <= 0 or d_cutoff <= 0 or beta < 0:
            raise ValueError("min_cutoff and d_cutoff must be > 0 and beta >= 0")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.reset()

    def reset(self) -> None:
        """Forget the past: the next sample is passed through as it is (a new stroke)."""
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def __call__(self, value, t: float) -> np.ndarray:
        """The filtered value of a sample taken at time `t` (seconds, increasing)."""
        x = np.asarray(value, dtype=np.float64)
        if self._x is None or self._t is None:
            self._x, self._dx, self._t = x, np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt <= 0:  # a repeated timestamp: nothing new to learn about speed
            dt = 1e-3
        self._t = t
        dx = (x - self._x) / dt
        a_d = _alpha(self.d_cutoff, dt)
        self._dx = a_d * dx + (1.0 - a_d) * self._dx
        # One cut-off from the speed of the point as a whole, so x and y lag alike.
        speed = float(np.linalg.norm(self._dx))
        a = _alpha(self.min_cutoff + self.beta * speed, dt)
        self._x = a * x + (1.0 - a) * self._x
        return self._x.copy()


def fill_gap(start, end, step: float) -> list[tuple[float, float]]:
    """Points every `step` pixels from `start` (excluded) to `end` (included).

    A fast finger moves tens of pixels between two frames; the canvas adds the points in
    between so that a stroke stays one connected line and the eraser leaves no islands.
    """
    if step <= 0:
        raise ValueError("step must be > 0")
    x0, y0 = float(start[0]), float(start[1])
    x1, y1 = float(end[0]), float(end[1])
    n = max(1, int(math.ceil(math.hypot(x1 - x0, y1 - y0) / step)))
    return [(x0 + (x1 - x0) * i / n, y0 + (y1 - y0) * i / n) for i in range(1, n + 1)]
