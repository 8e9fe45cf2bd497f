"""The environment MediaPipe's native libraries read once, when they are first loaded.

glog (MediaPipe's C++) and TensorFlow Lite read their log levels at load; both entries that
load them go through `quiet_native_logs()`: the program's `bootstrap()` and, for tools, tests
and benches, `HandTracker` itself, just before it imports MediaPipe. A value the user set wins.
"""
from __future__ import annotations

import os

NATIVE_LOG_LEVELS = {"GLOG_minloglevel": "2", "TF_CPP_MIN_LOG_LEVEL": "2"}


def quiet_native_logs() -> None:
    """Quiet MediaPipe's and TFLite's start-up chatter (warnings and info); errors still show."""
    for name, value in NATIVE_LOG_LEVELS.items():
        os.environ.setdefault(name, value)
