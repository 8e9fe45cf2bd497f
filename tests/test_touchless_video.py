"""The touchless controls end to end: videos of a real fist photo (../shared hand-counts) through
the real MediaPipe, run by main.py --no-window --events. A fist held on a control presses it, a
fist resting away from the controls presses nothing, the drawing videos press nothing, and quit
needs a second, confirming hold."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from sketch.screen import Screen
from tests.hand_video import VIEW, hand_video_frames, run_main, write_video
from tools.fixtures.hand_video import two_open_hands_frames
from tools.fixtures.pointer_video import Pointing, centre


def pointing() -> Pointing:
    hand_video_frames(circle=1, hold=0, tail=0)  # skips without ../shared
    return Pointing()


def controls_of(screen: Screen) -> dict:
    return {c.name: c.rect for c in screen.controls()}


def run_events(video: Path, tmp_path: Path, *extra: str) -> tuple[list[dict], str]:
    events = tmp_path / "events.jsonl"
    proc = run_main("--source", str(video), "--no-window", "--no-search", "--sketch-dir",
                    str(tmp_path / "sketches"), "--events", str(events), *extra)
    assert proc.returncode == 0, proc.stderr
    return [json.loads(line) for line in events.read_text().splitlines()], proc.stderr


def commands(events: list[dict]) -> list[dict]:
    return [{k: v for k, v in e.items() if k not in ("t", "event")} for e in events if e["event"] == "command"]


def test_a_fist_held_on_undo_presses_it_once_and_resting_elsewhere_presses_nothing(tmp_path):
    undo = controls_of(Screen(*VIEW))["undo"]
    hand = pointing().rest(0.5).rest(3.0)               # resting on the canvas, away from the controls
    hand.glide(centre(undo)).rest(2.5)                  # onto Undo, held: one press, however long
    hand.glide((320, 300)).rest(1.5).away(0.3)
    video = write_video(tmp_path / "undo.avi", hand.frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == [{"action": "undo"}]
    first = next(e for e in events if e["event"] == "controls")
    assert {c["name"]: c["rect"] for c in first["controls"]}["undo"] == list(undo)
    for control in first["controls"]:   # inside the view, big enough to hit
        x, y, w, h = control["rect"]
        assert x >= 0 and y >= 0 and x + w <= VIEW[0] and y + h <= VIEW[1] and min(w, h) >= 80


def test_a_fist_resting_away_from_the_controls_presses_nothing(tmp_path):
    hand = pointing()
    for point in [(320, 240), (200, 300), (450, 330)]:
        hand.glide(point).rest(2.5)
    video = write_video(tmp_path / "rest.avi", hand.frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == []


def test_passing_over_a_control_without_stopping_presses_nothing(tmp_path):
    screen = Screen(*VIEW)
    hand = pointing()
    for name in ("undo", "redo", "help", "quit"):   # a sweep across the top row
        hand.glide(centre(controls_of(screen)[name]), seconds=0.3)
    hand.glide((320, 300), seconds=0.3).rest(0.5)
    video = write_video(tmp_path / "sweep.avi", hand.frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == []


@pytest.mark.parametrize("draw", [True, False])
def test_the_drawing_videos_fire_no_command(draw, tmp_path):
    video = write_video(tmp_path / "draw.avi", hand_video_frames(draw=draw))
    events, _ = run_events(video, tmp_path)
    assert commands(events) == []


def test_quit_needs_a_second_confirming_hold(tmp_path):
    screen = Screen(*VIEW)
    quit_button = controls_of(screen)["quit"]
    screen.press("quit")
    confirm = controls_of(screen)
    hand = pointing().glide(centre(quit_button)).rest(1.6)     # first hold: asks
    hand.glide((320, 320)).rest(1.0)                           # thinks it over
    hand.glide(centre(confirm["quit"])).rest(1.6)              # confirming hold: quits
    hand.glide((320, 320)).rest(3.0)                           # never reached
    video = write_video(tmp_path / "quit.avi", hand.frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == [{"action": "quit"}]
    shown = [e["controls"] for e in events if e["event"] == "controls"]
    assert [c["name"] for c in shown[1]] == ["quit", "back"]           # the question
    assert {c["name"]: c["rect"] for c in shown[1]}["quit"] == list(confirm["quit"])
    quit_at = next(e["t"] for e in events if e["event"] == "command")
    assert not [e for e in events if e["t"] > quit_at]    # the program ended there


def test_one_hold_on_quit_then_stay_keeps_going(tmp_path):
    screen = Screen(*VIEW)
    quit_button = controls_of(screen)["quit"]
    screen.press("quit")
    stay = controls_of(screen)["back"]
    hand = pointing().glide(centre(quit_button)).rest(1.6)
    hand.glide(centre(stay)).rest(1.6)
    hand.glide((320, 320)).rest(1.0)
    video = write_video(tmp_path / "stay.avi", hand.frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == [{"action": "close"}]
    assert [c["name"] for c in events[-1]["controls"]][:4] == ["undo", "redo", "help", "quit"]


def test_help_opens_on_its_control_and_closes_on_its_own(tmp_path):
    screen = Screen(*VIEW)
    help_button = controls_of(screen)["help"]
    screen.press("help")
    close = controls_of(screen)["back"]
    hand = pointing().glide(centre(help_button)).rest(1.6).glide(centre(close)).rest(1.6)
    hand.glide((320, 300)).rest(0.5)
    video = write_video(tmp_path / "help.avi", hand.frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == [{"action": "help"}, {"action": "close"}]


def test_the_clear_gesture_is_the_clear_command(tmp_path):
    frames = [*hand_video_frames(hold=0, tail=0), *two_open_hands_frames()]
    video = write_video(tmp_path / "clear.avi", frames)
    events, _ = run_events(video, tmp_path)
    assert commands(events) == [{"action": "clear"}]


def test_keys_are_shortcuts_that_fire_the_same_commands(tmp_path):
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions

    hand_video_frames(circle=1, hold=0, tail=0)  # skips without ../shared
    app = AirCanvasApp(AppOptions(source=0, sketch_dir=tmp_path, window=False,
                                  events=tmp_path / "events.jsonl"))
    t = 0.0
    for frame, _ in hand_video_frames(hold=0, tail=0):
        app.step(frame, t)
        t += 1 / 30
    try:
        drawn = app.canvas.strokes[:]
        assert drawn
        for key in "rzy":
            app.handle_key(ord(key))
        assert app.canvas.strokes == []          # cleared, undone, redone: clear again
        app.handle_key(ord("z"))
        assert app.canvas.strokes == drawn
        app.handle_key(ord("h"))
        app.handle_key(27)                        # Esc closes the help, and does not quit
        assert not app.quit_requested
        app.handle_key(ord("1"))                  # no matches: nothing to open
        app.handle_key(ord("q"))
        assert app.quit_requested
    finally:
        app.tracker.close()
        app.events.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e["action"] for e in events if e["event"] == "command"] == [
        "clear", "undo", "redo", "undo", "help", "close", "quit"]
