"""The process's set-up before any heavy import: what the native libraries read once at load.

MediaPipe (glog) and TensorFlow Lite read their log levels, and torch its thread count
(OMP_NUM_THREADS), when they are first imported, so `bootstrap()` runs first in the air canvas
command, before anything imports them. A value the user set wins. Imports nothing heavy itself.
"""
from __future__ import annotations

import os

from sketch_search.common.native_env import quiet_native_logs


def worker_threads(cores: int) -> int:
    """Torch threads for the search worker on a machine with `cores` CPU cores.

    All but one, so the camera loop keeps a core, but two where there are two: a 30 fps webcam
    needs only ~40 % of a core for tracking (14 ms a frame), and on 2 cores a second worker thread
    made a full-size query 1.4x faster (31 -> 22 s) with the loop still at 30 fps (BENCHMARKS.md,
    table 6).
    """
    return max(1, min(cores, max(2, cores - 1)))


def cap_worker_threads() -> None:
    """Cap the model libraries' thread pools at worker_threads(cores), leaving the loop its share.

    Must run before torch is imported (it reads OMP_NUM_THREADS once); a value the user set wins.
    """
    os.environ.setdefault("OMP_NUM_THREADS", str(worker_threads(os.cpu_count() or 2)))


def bootstrap() -> None:
    """Quiet MediaPipe's native start-up chatter (the program reports what matters itself) and
    cap the worker's threads; before MediaPipe or torch is imported."""
    quiet_native_logs()
    cap_worker_threads()
