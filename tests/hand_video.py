"""Hand videos for the air canvas tests: real hand photos from ../shared pasted on a plain
background and moved along a circle, then held; and running main.py as a child process."""
from __future__ import annotations

import math
import os
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from tests.conftest import ROOT, shared_path

VIEW = (640, 480)
FPS = 30.0
HAND_SIDE = 250                 # the 100 px photos, upscaled
CIRCLE_CENTER = (320.0, 240.0)  # of the pasted photo's centre
CIRCLE_RADIUS = 90.0
PEN_PHOTO = "2/asl2_IMG_1120.JPG"    # index and middle finger: black pen
SAVE_PHOTO = "1/asl1_IMG_1119.JPG"   # index finger: save (same person, same session)


def hand_photo(name: str) -> np.ndarray:
    image = cv2.imread(str(shared_path("data", "hand-counts", name)))
    assert image is not None, name
    return cv2.resize(image, (HAND_SIDE, HAND_SIDE), interpolation=cv2.INTER_CUBIC)


def background_colour(photo: np.ndarray) -> tuple[int, int, int]:
    edges = np.concatenate([photo[0], photo[-1], photo[:, 0], photo[:, -1]])
    return tuple(int(c) for c in np.median(edges, axis=0))


def paste(background, photo: np.ndarray | None, center) -> np.ndarray:
    frame = np.full((VIEW[1], VIEW[0], 3), background, np.uint8)
    if photo is not None:
        x = int(round(center[0] - HAND_SIDE / 2))
        y = int(round(center[1] - HAND_SIDE / 2))
        frame[y:y + HAND_SIDE, x:x + HAND_SIDE] = photo
    return frame


def circle_point(fraction: float) -> tuple[float, float]:
    angle = 2 * math.pi * fraction
    return (CIRCLE_CENTER[0] + CIRCLE_RADIUS * math.cos(angle),
            CIRCLE_CENTER[1] + CIRCLE_RADIUS * math.sin(angle))


def hand_video_frames(lead_in: int = 12, circle: int = 100, hold: int = 45, tail: int = 8,
                      turns: float = 1.08, draw: bool = True):
    """(frame, label) pairs: pen hand still, pen hand round the circle, save hand held, nothing."""
    pen, save = hand_photo(PEN_PHOTO), hand_photo(SAVE_PHOTO)
    background = background_colour(pen)
    end = circle_point(turns if draw else 0.0)
    if draw:
        for _ in range(lead_in):
            yield paste(background, pen, circle_point(0.0)), "lead-in"
        for i in range(circle):
            yield paste(background, pen, circle_point(turns * (i + 1) / circle)), "circle"
    for _ in range(hold):
        yield paste(background, save, end), "hold"
    for _ in range(tail):
        yield paste(background, None, end), "empty"


def write_video(path: Path, frames) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), FPS, VIEW)
    assert writer.isOpened(), "OpenCV cannot write MJPG .avi here"
    for frame, _ in frames:
        writer.write(frame)
    writer.release()
    return path


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
