"""The libraries' start-up chatter stays off the terminal unless -v: MediaPipe/TFLite/absl's
native lines (XNNPACK delegate, feedback manager, EGL, landmark projection) and transformers'
torchvision advice from the tiny-checkpoints tool."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, shared_path

TRACK = """
import logging, sys
import numpy as np
from PIL import Image
if "-v" in sys.argv[2:]:
    logging.basicConfig(level=logging.INFO)
from sketch.photo_detection import detect_in_photo
from sketch.tracker import HandTracker
from sketch.views import PhotoView
photo = np.asarray(Image.open(sys.argv[1]).convert("RGB"))
with HandTracker() as tracker:
    assert tracker.process(np.zeros((240, 320, 3), np.uint8)) is None
    view, _ = PhotoView().render(photo)
    assert all(tracker.process(view) is not None for _ in range(3))
assert detect_in_photo(photo) is not None
print("after start-up", file=sys.stderr)
"""


def run_python(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=ROOT, timeout=300)


def test_mediapipe_start_up_is_silent_unless_verbose():
    photo = sorted(shared_path("data", "hand-counts", "3").iterdir())[0]
    quiet = run_python("-c", TRACK, str(photo))
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == "after start-up\n"  # our own later line still comes through
    verbose = run_python("-c", TRACK, str(photo), "-v")
    assert verbose.returncode == 0, verbose.stderr
    assert "XNNPACK" in verbose.stderr and "eedback manager" in verbose.stderr


def test_tiny_checkpoints_tool_prints_no_library_advice(tmp_path):
    done = run_python("-m", "tools.fixtures.tiny_checkpoints", str(tmp_path / "tiny"))
    assert done.returncode == 0, done.stderr
    assert "torchvision" not in done.stderr and done.stderr == "", done.stderr
    assert done.stdout.strip() == f"tiny checkpoints written to {tmp_path / 'tiny'}"
