"""The air canvas end to end with no webcam: a video of a real hand photo moved along a circle.

The video is made from ../shared hand photos pasted on a plain background: a two-finger hand
(black pen) goes once round a circle, then a one-finger hand (save) is held still for 1.5 s.
`main.py --source video --no-window --no-search` must save exactly one sketch, and its strokes
must follow the circle. Also: the gesture state machine fed with real landmarks, and the
one-line errors for a missing camera or video.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.hand_video import (
    CIRCLE_CENTER,
    FPS,
    PEN_PHOTO,
    SAVE_PHOTO,
    VIEW,
    background_colour,
    child_env,
    circle_point,
    hand_photo,
    hand_video_frames,
    paste,
    run_main,
    write_video,
)


@pytest.fixture(scope="module")
def circle_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "circle.avi", hand_video_frames())


def camera_unplugged_after(frames: int, video: Path):
    """The video as a camera that fails, as an unplugged webcam does, after `frames` frames."""
    from sketch.camera import FrameSource
    from sketch_search.common.errors import CameraError

    class UnpluggedCamera(FrameSource):
        def read(self):
            if self.frames_read == frames:
                raise CameraError("the camera stopped sending frames")
            return super().read()

    return UnpluggedCamera(video)


def ink_mask(image: np.ndarray) -> np.ndarray:
    return image.min(axis=2) < 160


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max(1, (a | b).sum()))


# -- end to end -----------------------------------------------------------------------------------
def test_video_circle_then_hold_saves_one_sketch_that_follows_the_circle(circle_video, tmp_path):
    from sketch.canvas import BLACK, Canvas

    out = tmp_path / "sketches"
    proc = run_main("--source", str(circle_video), "--no-window", "--no-search", "--sketch-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    saved = sorted(out.glob("sketch-*.png"))
    assert len(saved) == 1, (saved, proc.stderr)
    assert not list(out.glob("*.json"))  # --no-search writes the sketch only

    drawn = cv2.imread(str(saved[0]))
    assert drawn.shape == (512, 512, 3)
    # The expected sketch: the circle the fingertip went round (the hand moves rigidly, so its
    # fingertip's path is the pasted photo's path, shifted), exported the same way.
    expected_canvas = Canvas(*VIEW)
    expected_canvas.begin(BLACK)
    for i in range(361):
        expected_canvas.add(circle_point(i / 360))
    expected_canvas.end()
    expected = cv2.cvtColor(np.asarray(expected_canvas.export()), cv2.COLOR_RGB2BGR)

    got_mask, expected_mask = ink_mask(drawn), ink_mask(expected)
    kernel = np.ones((25, 25), np.uint8)
    near_expected = cv2.dilate(expected_mask.astype(np.uint8), kernel).astype(bool)
    near_got = cv2.dilate(got_mask.astype(np.uint8), kernel).astype(bool)
    # Nearly all ink lies on the circle, and the circle is nearly all drawn.
    assert (got_mask & near_expected).sum() / got_mask.sum() > 0.9
    assert (expected_mask & near_got).sum() / expected_mask.sum() > 0.9
    assert iou(cv2.dilate(got_mask.astype(np.uint8), kernel).astype(bool), near_expected) > 0.6
    # A ring, not a blob: the middle is paper.
    assert not got_mask[206:306, 206:306].any()


def test_hold_without_drawing_is_refused_as_blank(tmp_path):
    video = write_video(tmp_path / "hold.avi", hand_video_frames(draw=False))
    out = tmp_path / "sketches"
    proc = run_main("--source", str(video), "--no-window", "--no-search", "--sketch-dir", str(out))
    assert proc.returncode == 0, proc.stderr
    assert not list(out.glob("sketch-*"))
    assert "blank" in proc.stderr  # logged


def test_max_frames_stops_early(circle_video, tmp_path):
    out = tmp_path / "sketches"
    # 60 frames: the circle is half drawn and never saved.
    proc = run_main("--source", str(circle_video), "--no-window", "--no-search", "--sketch-dir", str(out),
                    "--max-frames", "60")
    assert proc.returncode == 0, proc.stderr
    assert not list(out.glob("sketch-*"))


def test_missing_video_is_a_one_line_error(tmp_path):
    proc = run_main("--source", str(tmp_path / "nope.mp4"), "--no-window", "--no-search")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "nope.mp4" in lines[0]


def test_not_a_video_is_a_one_line_error(tmp_path):
    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    proc = run_main("--source", str(bad), "--no-window", "--no-search")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:"), proc.stderr


@pytest.mark.skipif(any(Path("/dev").glob("video*")), reason="this machine has a camera")
def test_no_camera_is_a_one_line_error(tmp_path):
    proc = run_main("--source", "0", "--no-window", "--no-search", "--sketch-dir", str(tmp_path),
                    "--max-frames", "1")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no camera" in lines[0], proc.stderr


def test_window_without_display_is_a_one_line_error(tmp_path, circle_video):
    proc = run_main("--source", str(circle_video), "--no-search", "--sketch-dir", str(tmp_path),
                    env=child_env(drop=("DISPLAY", "WAYLAND_DISPLAY")))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()] and "--no-window" in proc.stderr


def test_missing_models_is_a_one_line_error_before_the_camera_opens(circle_video, tmp_path):
    proc = run_main("--source", str(circle_video), "--no-window", "--checkpoints", str(tmp_path / "none"),
                    "--sketch-dir", str(tmp_path / "sketches"))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "checkpoints" in lines[0], proc.stderr
    assert not (tmp_path / "sketches").exists()


def test_keys_undo_save_clear_and_a_blank_save_shown_on_screen(circle_video, tmp_path):
    from sketch import overlay
    from sketch.camera import FrameSource
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions

    app = AirCanvasApp(AppOptions(source=circle_video, sketch_dir=tmp_path, window=False))
    source = FrameSource(circle_video)
    for _ in range(60):  # lead-in and half the circle
        app.step(*source.read())
    assert len(app.canvas.strokes) == 1 and not app.canvas.is_blank()
    for _ in range(50):  # the rest of the circle
        app.step(*source.read())
    app.handle_key(ord("z"))  # undo: the only stroke goes
    assert app.canvas.is_blank()
    app.handle_key(ord("S"))  # save a blank canvas: refused, said on screen
    assert app.saved == [] and not list(tmp_path.glob("*.png"))
    band = app.compose()[8:48, :VIEW[0]].astype(int)
    assert (np.abs(band - np.array(overlay.ERROR)).sum(axis=2) < 60).sum() > 100
    app.step(*source.read())
    app.canvas.begin((0, 0, 255))
    app.canvas.add((100, 100))
    app.canvas.add((200, 150))
    app.handle_key(ord("s"))
    assert len(app.saved) == 1 and app.saved[0].is_file()
    app.handle_key(ord("r"))
    assert app.canvas.is_blank() and app.canvas.strokes == []
    app.handle_key(0x1000051)  # an arrow key: ignored
    assert not app.quit_requested
    app.handle_key(ord("q"))
    assert app.quit_requested
    source.close()
    app.tracker.close()


def test_camera_failing_mid_run_saves_the_sketch_so_far(circle_video, tmp_path):
    """A webcam unplugged while drawing: stand in for it with the video, cut off mid-circle."""
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
    from sketch_search.common.errors import CameraError, SketchSearchError

    out = tmp_path / "sketches"
    app = AirCanvasApp(AppOptions(source=circle_video, sketch_dir=out, window=False))
    with pytest.raises(CameraError, match="sketch so far is saved") as caught:
        app.run(camera_unplugged_after(80, circle_video))  # the circle is half drawn
    assert isinstance(caught.value, SketchSearchError)  # main.py: one line, exit 2
    [saved] = out.glob("sketch-*.png")
    assert str(saved) in str(caught.value)
    ink = ink_mask(cv2.imread(str(saved)))
    assert ink.sum() > 2000 and not ink[206:306, 206:306].all()


def test_camera_failing_before_any_drawing_saves_nothing(circle_video, tmp_path):
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
    from sketch_search.common.errors import CameraError

    out = tmp_path / "sketches"
    app = AirCanvasApp(AppOptions(source=circle_video, sketch_dir=out, window=False))
    with pytest.raises(CameraError, match="stopped") as caught:
        app.run(camera_unplugged_after(2, circle_video))
    assert "saved" not in str(caught.value) and not list(out.glob("sketch-*"))


# -- the gesture state machine with real landmarks ------------------------------------------------
@pytest.fixture(scope="module")
def landmarks():
    """Real MediaPipe landmarks of the pen and save photos, in view coordinates of a frame."""
    from sketch.tracker import HandTracker

    found = {}
    with HandTracker() as tracker:
        pen, save = hand_photo(PEN_PHOTO), hand_photo(SAVE_PHOTO)
        background = background_colour(pen)
        for name, photo in (("pen", pen), ("save", save)):
            hand = None
            for _ in range(3):  # tracking mode settles in a frame or two
                hand = tracker.process(cv2.cvtColor(paste(background, photo, CIRCLE_CENTER), cv2.COLOR_BGR2RGB))
            assert hand is not None, name
            found[name] = hand
    return found


def shifted(hand, dx: float, dy: float):
    from dataclasses import replace
    lm = hand.landmarks.copy()
    lm[:, 0] += dx / VIEW[0]
    lm[:, 1] += dy / VIEW[1]
    return replace(hand, landmarks=lm)


def test_pen_draws_and_save_fires_once_after_the_hold(landmarks):
    from sketch.air_pen import HOLD_SECONDS, Action, AirPen
    from sketch.canvas import BLACK, Canvas
    from sketch.gestures import Gesture

    canvas = Canvas(*VIEW)
    pen = AirPen(canvas)
    t = 0.0
    for i in range(30):  # one second of drawing to the right
        assert pen.update([shifted(landmarks["pen"], 3 * i, 0)], t) is None
        t += 1 / FPS
    assert pen.gesture is Gesture.PEN_BLACK
    assert len(canvas.strokes) == 1 and canvas.strokes[0].color == BLACK
    xs = [p[0] for p in canvas.strokes[0].points]
    assert max(xs) - min(xs) > 60
    fired = []
    for i in range(int(2 * FPS)):  # hold the save hand for two seconds
        fired.append(pen.update([landmarks["save"]], t))
        t += 1 / FPS
    assert [f for f in fired if f] == [Action.SAVE]            # once, not every frame
    first = fired.index(Action.SAVE) / FPS
    assert HOLD_SECONDS <= first <= HOLD_SECONDS + 0.3         # plus the few frames of stabilising
    assert not canvas.drawing                                  # the pen is up while saving
    assert len(canvas.strokes) == 1


def test_releasing_early_cancels_and_the_ring_fills(landmarks):
    from sketch.air_pen import AirPen
    from sketch.canvas import Canvas

    pen = AirPen(Canvas(*VIEW))
    t, progress = 0.0, []
    for _ in range(12):  # 0.4 s: not long enough
        assert pen.update([landmarks["save"]], t) is None
        progress.append(pen.hold_progress)
        t += 1 / FPS
    filled = [p for p in progress if p is not None]
    assert filled and filled == sorted(filled) and filled[-1] < 1.0
    for _ in range(10):  # hand away
        assert pen.update([], t) is None
        t += 1 / FPS
    assert pen.hold_progress is None
    fired = []
    for _ in range(12):  # again 0.4 s: the earlier 0.4 s does not count
        fired.append(pen.update([landmarks["save"]], t))
        t += 1 / FPS
    assert not any(fired)


def test_no_hand_lifts_the_pen_and_a_new_stroke_starts(landmarks):
    from sketch.air_pen import AirPen
    from sketch.canvas import Canvas

    canvas = Canvas(*VIEW)
    pen = AirPen(canvas)
    t = 0.0
    for i in range(15):
        pen.update([shifted(landmarks["pen"], 2 * i, -100)], t)
        t += 1 / FPS
    for _ in range(10):
        pen.update([], t)
        t += 1 / FPS
    assert not canvas.drawing
    for i in range(15):
        pen.update([shifted(landmarks["pen"], 2 * i, 100)], t)
        t += 1 / FPS
    assert len(canvas.strokes) == 2
    first_y = np.mean([p[1] for p in canvas.strokes[0].points])
    second_y = np.mean([p[1] for p in canvas.strokes[1].points])
    assert second_y - first_y > 150  # the second stroke is where the hand came back, not joined


# -- the worker's thread budget -------------------------------------------------------------------
@pytest.mark.parametrize("cores, threads", [(1, 1), (2, 2), (3, 2), (4, 3), (16, 15)])
def test_worker_leaves_the_loop_a_core_except_where_that_would_halve_it(cores, threads):
    from sketch_search.app.bootstrap import worker_threads
    assert worker_threads(cores) == threads


def test_worker_thread_cap_is_set_unless_the_user_chose(monkeypatch):
    import os

    from sketch_search.app.bootstrap import cap_worker_threads
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    cap_worker_threads()
    assert os.environ["OMP_NUM_THREADS"] == "7"
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    cap_worker_threads()
    assert os.environ["OMP_NUM_THREADS"] == "3"


def test_frame_source_says_what_is_wrong_in_its_own_terms_not_the_command_line_flag(tmp_path):
    from sketch.camera import FrameSource
    from sketch_search.common.errors import CameraError

    bad = tmp_path / "notes.mp4"
    bad.write_text("not a video")
    for path in (tmp_path / "nope.mp4", bad):
        with pytest.raises(CameraError) as caught:
            FrameSource(path)
        assert str(path) in str(caught.value) and "--" not in str(caught.value)
