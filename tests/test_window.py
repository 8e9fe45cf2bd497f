"""The window itself, on a virtual X display (Xvfb): a real X window appears with the live view,
the canvas, the tool and the status line; after a search, the results panel.

main.py runs with a hand video as its camera and `--screenshot`, which saves the window's last
picture at exit; the X server is asked (xdotool, xwininfo) whether the window really exists.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.conftest import ROOT
from tests.hand_video import HAND_SIDE, VIEW, child_env, circle_point, hand_video_frames, write_video

TITLE = "Sketch search"


def _need(tool: str) -> str:
    path = shutil.which(tool)
    if path is None:
        message = f"{tool} is not installed (apt-get install xvfb xdotool x11-utils)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="module")
def display():
    """A private Xvfb display; its number comes back on a pipe (-displayfd), so no clashes."""
    xvfb = _need("Xvfb")
    _need("xdotool")
    _need("xwininfo")
    read_fd, write_fd = os.pipe()
    server = subprocess.Popen([xvfb, "-displayfd", str(write_fd), "-screen", "0", "1400x900x24",
                               "-nolisten", "tcp"], pass_fds=(write_fd,),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    with os.fdopen(read_fd) as pipe:
        number = pipe.readline().strip()
    if not number:
        server.kill()
        pytest.fail("Xvfb did not start")
    yield f":{number}"
    server.terminate()
    server.wait(timeout=10)


def start_main(display: str, *args: str) -> subprocess.Popen:
    env = child_env(drop=("WAYLAND_DISPLAY",), DISPLAY=display, QT_QPA_PLATFORM="xcb")
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def find_window(display: str, proc: subprocess.Popen, expect: tuple[int, int],
                timeout: float = 60) -> tuple[int, int]:
    """Poll the X server until the program's window is mapped at the size `expect` (it first
    maps small, then takes the size of the first picture); returns the last size seen."""
    env = dict(os.environ, DISPLAY=display)
    deadline = time.monotonic() + timeout
    size = None
    while time.monotonic() < deadline and proc.poll() is None:
        found = subprocess.run(["xdotool", "search", "--onlyvisible", "--name", TITLE], env=env,
                               capture_output=True, text=True)
        for window in found.stdout.split():
            info = subprocess.run(["xwininfo", "-id", window], env=env, capture_output=True,
                                  text=True).stdout
            fields = dict(line.strip().split(":", 1) for line in info.splitlines() if ":" in line)
            if "Width" in fields:
                size = (int(fields["Width"]), int(fields["Height"]))
                if size == expect:
                    return size
        time.sleep(0.2)
    if size is None:
        err = proc.communicate(timeout=120)[1] if proc.poll() is not None else ""
        pytest.fail(f"no X window named {TITLE!r} appeared\n{err}")
    return size


def last_frame(video: Path) -> np.ndarray:
    capture = cv2.VideoCapture(str(video))
    frame = None
    while True:
        ok, image = capture.read()
        if not ok:
            return frame
        frame = image


def hand_box(center) -> tuple[slice, slice]:
    x = int(round(center[0] - HAND_SIDE / 2))
    y = int(round(center[1] - HAND_SIDE / 2))
    return slice(y + 10, y + HAND_SIDE - 10), slice(x + 10, x + HAND_SIDE - 10)


def check_live_view_canvas_tool_and_status(shot: np.ndarray, video: Path) -> None:
    from sketch import overlay

    w, h = VIEW
    assert shot.shape == (h + overlay.BAR_HEIGHT, w + overlay.PANEL_WIDTH, 3)
    view, bar = shot[:h, :w].astype(int), shot[h:, :w].astype(int)
    frame = last_frame(video).astype(int)
    # Live view: the video's last frame (the held save hand), not mirrored, with the canvas over
    # it: the black circle that was drawn (strokes are left out of the comparison).
    box = hand_box(circle_point(1.08))
    ink = view[box].max(axis=2) < 60
    straight = (np.abs(view[box] - frame[box]).max(axis=2) > 40) & ~ink
    mirrored = (np.abs(view[box] - frame[:, ::-1][box]).max(axis=2) > 40) & ~ink
    assert straight.mean() < 0.05 and mirrored.mean() > 3 * straight.mean() + 0.05
    dark = view[50:].max(axis=2) < 60   # below the message band at the top
    assert dark.sum() > 1500
    ys, xs = np.nonzero(dark)
    assert xs.max() - xs.min() > 120 and ys.max() - ys.min() > 120  # a large round stroke
    # Status bar: the tool's swatch (pen up: grey, no hand at the end or the save hand: amber)
    # and the status line's text in amber.
    swatch = bar[overlay.GAP + 4:overlay.BAR_HEIGHT - overlay.GAP - 4, overlay.GAP + 4:overlay.BAR_HEIGHT - overlay.GAP - 4]
    swatch_colour = swatch.reshape(-1, 3).mean(axis=0)
    assert np.abs(swatch_colour - np.array(overlay.BAR_BG)).sum() > 60
    status = bar[:, 200:w - 80]
    amber = (np.abs(status - np.array(overlay.ACCENT)).sum(axis=2) < 90).sum()
    assert amber > 100, "no status text"


@pytest.fixture(scope="module")
def hold_video(tmp_path_factory) -> Path:
    # The video ends on the held save hand (no empty tail) so the last frame shows a hand.
    return write_video(tmp_path_factory.mktemp("video") / "circle_hold.avi", hand_video_frames(tail=0))


def test_window_shows_live_view_canvas_tool_and_status(display, hold_video, tmp_path):
    shot_path = tmp_path / "window.png"
    proc = start_main(display, "--source", str(hold_video), "--no-search", "--sketch-dir",
                      str(tmp_path / "sketches"), "--screenshot", str(shot_path))
    from sketch import overlay
    window_size = (VIEW[0] + overlay.PANEL_WIDTH, VIEW[1] + overlay.BAR_HEIGHT)
    try:
        size = find_window(display, proc, window_size)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert size == window_size
    assert len(list((tmp_path / "sketches").glob("sketch-*.png"))) == 1
    shot = cv2.imread(str(shot_path))
    check_live_view_canvas_tool_and_status(shot, hold_video)
    # No search yet: the panel shows the help (light text on the dark panel).
    panel = shot[:, VIEW[0]:]
    assert (panel.min(axis=2) > 180).sum() > 500


def test_window_shows_results_after_a_search(display, hold_video, tiny_checkpoints, gallery, tmp_path):
    from sketch import overlay

    shot_path = tmp_path / "window.png"
    sketches = tmp_path / "sketches"
    proc = start_main(display, "--source", str(hold_video), "--sketch-dir", str(sketches),
                      "--checkpoints", str(tiny_checkpoints), "--gallery", str(gallery),
                      "--top_k", "3", "--no-sync", "--screenshot", str(shot_path))
    window_size = (VIEW[0] + overlay.PANEL_WIDTH, VIEW[1] + overlay.BAR_HEIGHT)
    try:
        assert find_window(display, proc, window_size) == window_size
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    [sketch] = sorted(sketches.glob("sketch-*[0-9].png"))
    data = json.loads(sketch.with_suffix(".json").read_text())
    assert set(data) >= {"caption", "prompt", "generated_image", "results", "timings", "searched", "total"}
    # Indexed in slices while the window runs: the answer says what it covered (all 4 photos here).
    assert len(data["results"]) == 3 and data["searched"] == data["total"] == 4
    assert Path(data["generated_image"]).is_file()

    shot = cv2.imread(str(shot_path))
    check_live_view_canvas_tool_and_status(shot, hold_video)
    panel = shot[:, VIEW[0]:]
    g, big = overlay.GAP, overlay.BIG_TILE
    # The sketch and the generated image, as saved, in the first row ...
    saved_sketch = overlay.fit_image(cv2.imread(str(sketch)), big)
    assert np.abs(panel[g:g + big, g:g + big].astype(int) - saved_sketch).mean() < 4
    generated = overlay.fit_image(cv2.imread(data["generated_image"]), big)
    x = g + big + g
    assert np.abs(panel[g:g + big, x:x + big].astype(int) - generated).mean() < 4
    # ... and the best gallery photo in the first results tile (below its name, above its score).
    from retrieval.images import load_image
    best = cv2.cvtColor(np.asarray(load_image(data["results"][0]["path"], min_side=overlay.TILE)),
                        cv2.COLOR_RGB2BGR)
    tile = overlay.fit_image(best, overlay.TILE, (0, 0, 0))
    top, t = overlay.RESULTS_TOP, overlay.TILE
    region = (slice(top + 20, top + t - 24), slice(g, g + t))
    assert np.abs(panel[region].astype(int) - tile[20:t - 24]).mean() < 6
    # The other tiles hold the other photos: the first tile is not what the second shows.
    x2 = g + t + g
    assert np.abs(panel[top + 20:top + t - 24, x2:x2 + t].astype(int) - tile[20:t - 24]).mean() > 10


def test_window_shows_a_marked_preview_while_drawing(display, tiny_checkpoints, gallery, tmp_path):
    """A stroke and no save: the panel shows the preview's matches under the preview banner."""
    from sketch import overlay
    from tests.hand_video import PEN_PHOTO, background_colour, hand_photo, paste

    frames = list(hand_video_frames(hold=0, tail=0))  # lead-in and the circle
    pen = hand_photo(PEN_PHOTO)
    end = circle_point(1.08)
    # Pen up for 10 s (the models load meanwhile; the stroke's preview waits for them).
    frames += [(paste(background_colour(pen), None, end), "rest")] * 300
    video = write_video(tmp_path / "draw.avi", frames)
    shot_path = tmp_path / "window.png"
    events = tmp_path / "events.jsonl"
    proc = start_main(display, "--source", str(video), "--sketch-dir", str(tmp_path / "sketches"),
                      "--checkpoints", str(tiny_checkpoints), "--gallery", str(gallery), "--top_k", "3",
                      "--no-sync", "--screenshot", str(shot_path), "--events", str(events))
    try:
        out, err = proc.communicate(timeout=300)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert not list((tmp_path / "sketches").glob("sketch-*"))  # nothing saved
    kinds = [json.loads(line)["event"] for line in events.read_text().splitlines()]
    assert "preview" in kinds and "save" not in kinds, kinds
    panel = cv2.imread(str(shot_path))[:, VIEW[0]:].astype(int)
    top = overlay.RESULTS_TOP
    banner = panel[top - 22:top - 4].reshape(-1, 3)
    assert (np.abs(banner - np.array(overlay.PREVIEW_BG)).sum(axis=1) < 30).mean() > 0.5
    # The first match's tile holds a gallery photo (not the panel's grey), the generated tile waits.
    g, t = overlay.GAP, overlay.TILE
    assert panel[top + 20:top + t - 24, g:g + t].std() > 10
    x = g + overlay.BIG_TILE + g
    generated = panel[g:g + overlay.BIG_TILE, x:x + overlay.BIG_TILE]
    assert (np.abs(generated - 70).max(axis=2) < 5).mean() > 0.8
