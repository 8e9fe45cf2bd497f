"""The air canvas tests' hand videos (tools/fixtures/hand_video.py, which needs ../shared) and
running main.py as a child process."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT, shared_path
from tools.fixtures import hand_video as _videos
from tools.fixtures.hand_video import (  # noqa: F401 (the tests' names for the fixture's parts)
    CIRCLE_CENTER,
    CIRCLE_RADIUS,
    FPS,
    HAND_SIDE,
    PEN_PHOTO,
    SAVE_PHOTO,
    VIEW,
    background_colour,
    circle_point,
    hand_photo,
    paste,
    write_video,
)


def hand_video_frames(*args, **kwargs):
    """The fixture's frames; skips the test (fails under CI) when ../shared is missing."""
    shared_path("data", "hand-counts")
    return _videos.hand_video_frames(*args, **kwargs)


def child_env(drop: tuple[str, ...] = (), **extra: str) -> dict[str, str]:
    """The environment for main.py as a child process: this one, the repo root on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    env.update(extra)
    return env


def run_main(*args: str, env: dict[str, str] | None = None,
             timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT,
                          env=env or child_env(), capture_output=True, text=True, timeout=timeout)
