"""Search as you draw, end to end with tiny real models and scripted hand videos.

The air canvas (AirCanvasApp with a real SketchSearch on tiny random checkpoints) is fed frames of
real hand photos moved along a circle (tests/hand_video.py), frame by frame at a webcam's 30 fps
clock: previews follow the strokes, a pause runs the full search ahead of the save, a change
cancels it, and `--live off` does none of that. Also: the generator stops in the middle when
cancelled, and main.py ends cleanly (no abort) on SIGINT/SIGTERM while loading and during a query.
"""
from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import ROOT
from tests.hand_video import (
    FPS,
    PEN_PHOTO,
    SAVE_PHOTO,
    background_colour,
    child_env,
    circle_point,
    hand_photo,
    hand_video_frames,
    paste,
    write_video,
)

DT = 1.0 / FPS


@pytest.fixture(scope="module")
def search(tiny_checkpoints):
    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch
    return SketchSearch(Settings(checkpoints=tiny_checkpoints, show_progress=False, top_k=3))


class Hand:
    """The scripted hand: frames of the fixture's photos, stepped through the app at 30 fps."""

    def __init__(self, app):
        hand_video_frames(circle=1, hold=0, tail=0)  # skips without ../shared
        self.app = app
        self.pen, self.save = hand_photo(PEN_PHOTO), hand_photo(SAVE_PHOTO)
        self.background = background_colour(self.pen)
        self.t = 0.0
        self.at = circle_point(0.0)

    def frame(self, photo) -> None:
        self.app.step(paste(self.background, photo, self.at), self.t)
        self.t += DT

    def draw(self, start: float, end: float, frames: int) -> None:
        """The pen hand from `start` to `end` (fractions of the circle), after a short lead-in."""
        self.at = circle_point(start)
        for _ in range(6):
            self.frame(self.pen)
        for i in range(frames):
            self.at = circle_point(start + (end - start) * (i + 1) / frames)
            self.frame(self.pen)

    def away(self, frames: int = 1) -> None:
        for _ in range(frames):
            self.frame(None)

    def away_until(self, condition, timeout: float = 30.0) -> None:
        """No hand, frame after frame (paced like a webcam), until `condition()`."""
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            self.frame(None)
            time.sleep(DT)

    def hold_save(self, frames: int = 30) -> None:
        for _ in range(frames):
            self.frame(self.save)


def start_app(search, gallery, tmp_path, live="preview", pause=1.0):
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
    app = AirCanvasApp(AppOptions(source=0, sketch_dir=tmp_path / "sketches", gallery=gallery,
                                  window=False, live=live, pause=pause,
                                  events=tmp_path / "events.jsonl"), search)
    app.options.sketch_dir.mkdir(parents=True, exist_ok=True)
    app.worker.start()
    assert app.worker.loaded.wait(120) and not app.worker.load_error
    return app


def finish(app) -> list[dict]:
    """Wait for the saves, end the worker; the events as written to the file."""
    assert app.worker.wait(60)
    app.collect_results()
    app.worker.stop()
    assert app.worker.join(10)
    if app.tracker is not None:
        app.tracker.close()
    app.events.close()
    return [json.loads(line) for line in app.options.events.read_text().splitlines()]


def kinds(events) -> list[str]:
    """The search's events in order (the window's `controls` events left out)."""
    return [e["event"] for e in events if e["event"] != "controls"]


def idle(app) -> bool:
    return app.worker.idle


def test_previews_follow_the_strokes_and_are_marked_as_previews(search, gallery, tmp_path):
    from sketch import overlay

    app = start_app(search, gallery, tmp_path)
    hand = Hand(app)
    hand.draw(0.0, 0.6, 40)          # a long stroke: previews during it, every ~0.5 s
    during = len([e for e in app.events.events if e["event"] == "preview"])
    hand.away(3)                     # the stroke ends: a preview of all of it
    hand.away_until(lambda: idle(app) and len(app.events.events) > during)
    app.collect_results()
    view = app.results_view
    assert view is not None and view.label == overlay.PREVIEW_LABEL and view.generated is None
    assert len(view.photos) == 3
    # The panel says "preview" on its banner, in the banner's colour.
    app.compose()
    panel = app.window_image[:, app.window_image.shape[1] - overlay.PANEL_WIDTH:]
    banner = panel[overlay.RESULTS_TOP - 22:overlay.RESULTS_TOP - 4].reshape(-1, 3).astype(int)
    assert (np.abs(banner - np.array(overlay.PREVIEW_BG)).sum(axis=1) < 30).mean() > 0.5
    events = finish(app)
    previews = [e for e in events if e["event"] == "preview"]
    assert len(previews) >= 2, kinds(events)
    for event in previews:
        assert 0 <= event["latency"] < 5 and len(event["results"]) == 3
        assert {Path(r["path"]).parent for r in event["results"]} == {gallery}
    assert not app.saved


def test_a_long_pause_then_save_is_answered_by_the_run_ahead(search, gallery, tmp_path):
    app = start_app(search, gallery, tmp_path, pause=0.5)
    hand = Hand(app)
    hand.draw(0.0, 1.05, 50)
    # Pen up longer than the pause and one query: the run ahead starts and finishes.
    hand.away_until(lambda: "speculate" in kinds(app.events.events) and idle(app))
    hand.hold_save()
    events = finish(app)
    names = kinds(events)
    assert names.count("speculate") == 1 and "cancel" not in names, names
    [result] = [e for e in events if e["event"] == "results"]
    assert result["speculative"] is True and result["save_to_results"] < 0.3
    [sketch] = app.saved
    data = json.loads(sketch.with_suffix(".json").read_text())
    assert data["speculative"] is True and data["save_to_results"] == result["save_to_results"]
    assert len(data["results"]) == 3 and Path(data["generated_image"]).is_file()
    # The results are the full route's for the saved sketch (the same image a fresh query makes).
    fresh = search.query(Image.open(sketch).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(data["generated_image"])), np.asarray(fresh.generated))
    assert app.results_view.label is None and app.results_view.caption == data["caption"]


def test_a_change_cancels_the_run_ahead_and_the_save_gets_the_final_canvas(search, gallery, tmp_path):
    app = start_app(search, gallery, tmp_path, pause=0.3)
    hand = Hand(app)
    hand.draw(0.0, 0.5, 30)
    # Pen up until the run ahead is under way, then draw on: the run must stop.
    hand.away_until(lambda: app.worker.running, timeout=60)
    hand.draw(0.5, 0.9, 20)
    hand.away(2)
    hand.hold_save()
    events = finish(app)
    names = kinds(events)
    assert "cancel" in names and names.index("speculate") < names.index("cancel"), names
    cancel = next(e for e in events if e["event"] == "cancel")
    assert cancel["latency"] < 1.0 and cancel["seconds"] > 0
    [sketch] = app.saved
    data = json.loads(sketch.with_suffix(".json").read_text())
    # Whichever run answered the save (its own, or one ahead on the final canvas during the hold),
    # the results are the final canvas's: the generated image is the one a fresh query makes.
    fresh = search.query(Image.open(sketch).convert("RGB"))
    assert np.array_equal(np.asarray(Image.open(data["generated_image"])), np.asarray(fresh.generated))
    assert data["caption"] == fresh.caption


def test_a_save_with_no_pause_runs_normally(search, gallery, tmp_path):
    app = start_app(search, gallery, tmp_path)
    hand = Hand(app)
    hand.draw(0.0, 1.05, 50)
    hand.hold_save()                 # straight from drawing to the save gesture
    events = finish(app)
    names = kinds(events)
    assert "speculate" not in names and "cancel" not in names and "preview" in names
    assert names.count("save") == 1 and names.count("results") == 1
    [result] = [e for e in events if e["event"] == "results"]
    assert result["speculative"] is False and result["save_to_results"] > 0
    data = json.loads(app.saved[0].with_suffix(".json").read_text())
    assert data["speculative"] is False and len(data["results"]) == 3


def test_live_off_only_answers_saves(search, gallery, tmp_path):
    app = start_app(search, gallery, tmp_path, live="off", pause=0.2)
    hand = Hand(app)
    hand.draw(0.0, 1.05, 50)
    hand.away(45)                    # 1.5 s pen up: with live search on, previews and a run ahead
    time.sleep(0.5)
    assert kinds(app.events.events) == [] and app.results_view is None
    hand.hold_save()
    events = finish(app)
    assert kinds(events) == ["save", "results"]
    assert next(e for e in events if e["event"] == "results")["speculative"] is False


def test_live_full_runs_the_whole_route_after_each_stroke(search, gallery, tmp_path):
    from sketch import overlay

    app = start_app(search, gallery, tmp_path, live="full")
    hand = Hand(app)
    hand.draw(0.0, 1.05, 50)
    hand.away_until(lambda: "speculate" in kinds(app.events.events) and idle(app))
    app.collect_results()
    assert app.results_view.label == overlay.LIVE_LABEL and app.results_view.generated is not None
    hand.hold_save()
    events = finish(app)
    names = kinds(events)
    assert "preview" not in names and names.count("speculate") == 1
    last = [e for e in events if e["event"] != "controls"][-1]
    assert last["event"] == "results" and last["speculative"] is True


def test_status_line_shows_the_stage_and_the_time_left(search, gallery, tmp_path):
    app = start_app(search, gallery, tmp_path, live="off")
    worker = app.worker
    cat = Image.open(ROOT / "examples" / "sketches" / "cat.png").convert("RGB")
    # The first save cancels the warm-up (if it still runs) and teaches the estimate.
    worker.submit(cat, app.options.sketch_dir / "sketch-cat-1.png")
    assert worker.wait(60)
    worker.submit(cat.rotate(90), app.options.sketch_dir / "sketch-cat-2.png")
    seen = set()
    while worker.busy:
        seen.add(worker.status[0])
        time.sleep(0.002)
    finish(app)
    # Tiny models answer in well under a second: the estimate reads "almost done" then.
    timed = [s for s in seen if " s left" in s or s.endswith(" - almost done")]
    assert timed and all(s.split(" - ")[0] in ("preprocess", "captioning", "generating", "searching")
                         for s in timed), seen


# -- cancellation inside the models -----------------------------------------------------------------
def test_generator_stops_between_blocks_when_cancelled(search):
    from generation.preprocess import prepare_sketch
    from sketch_search.common.cancel import Cancelled

    search.load()
    sketch = prepare_sketch(Image.open(ROOT / "examples" / "sketches" / "cat.png"))
    checks = []

    def never() -> bool:
        checks.append(1)
        return False
    search.generator.generate(sketch.mask, "a cat", cancelled=never)
    total = len(checks)
    assert total > 20  # checked throughout the UNet and the VAE, not once per call
    checks.clear()
    with pytest.raises(Cancelled):
        search.generator.generate(sketch.mask, "a cat", cancelled=lambda: never() or len(checks) > total // 2)
    assert len(checks) == total // 2 + 1  # stopped at the first check after the request
    # And the whole route: the captioner's layers check too, so a query cancelled while
    # captioning stops there.
    stages = []
    with pytest.raises(Cancelled):
        search.query(sketch.preview, stage=stages.append, cancelled=lambda: stages[-1:] == ["captioning"])
    assert stages == ["preprocess", "captioning"]


# -- ways out of main.py --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def short_video(tmp_path_factory) -> Path:
    return write_video(tmp_path_factory.mktemp("video") / "short.avi", hand_video_frames(circle=60, hold=40))


def start_main(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=ROOT, env=child_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def signal_when(proc: subprocess.Popen, text: str, signum: int, timeout: float = 120) -> list[str]:
    """Read the child's log until a line contains `text`, then send `signum`; the lines read."""
    lines = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if text in line:
            proc.send_signal(signum)
            return lines
    proc.kill()
    pytest.fail(f"{text!r} never appeared:\n{''.join(lines)}")


@pytest.mark.parametrize("moment, signum, code", [
    ("loading generator", signal.SIGINT, 130),
    ("warming up", signal.SIGTERM, 143),
    ("search: generating...", signal.SIGINT, 130),
])
def test_signals_while_loading_or_searching_end_cleanly(moment, signum, code, tiny_checkpoints, gallery,
                                                        short_video, tmp_path):
    sketches = tmp_path / "sketches"
    args = ["--source", str(short_video), "--no-window", "--checkpoints", str(tiny_checkpoints),
            "--gallery", str(gallery), "--no-sync", "--sketch-dir", str(sketches), "--live", "off", "-v"]
    # "search: ...": the video's save, searched while the loop waits for it at the video's end
    proc = start_main(*args)
    lines = signal_when(proc, moment, signum)
    _, err = proc.communicate(timeout=60)
    err = "".join(lines) + err
    assert proc.returncode == code, err[-3000:]
    assert "terminate called" not in err and "Traceback" not in err, err[-3000:]
    if "search:" in moment:  # the query was stopped in the middle, not waited for
        assert "run for a save cancelled" in err, err[-3000:]


def test_ctrl_c_while_drawing_saves_the_sketch(tiny_checkpoints, gallery, tmp_path):
    """Ctrl+C mid-stroke (a video that never ends the stroke): the drawing is kept."""
    pen = hand_photo(PEN_PHOTO)
    background = background_colour(pen)

    def frames():
        for i in range(3000):  # round and round: 100 s of drawing
            yield paste(background, pen, circle_point(i / 100)), "circle"
    video = write_video(tmp_path / "long.avi", frames())
    sketches = tmp_path / "sketches"
    proc = start_main("--source", str(video), "--no-window", "--no-search", "--sketch-dir", str(sketches), "-v")
    lines = signal_when(proc, "XNNPACK delegate", signal.SIGCONT)  # the hand tracker is running
    time.sleep(2.0)                   # well into the drawing
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = "".join(lines) + err
    assert proc.returncode == 130, err
    [saved] = sketches.glob("sketch-*.png")
    assert str(saved) in err and "terminate called" not in err
    assert (np.asarray(Image.open(saved).convert("L")) < 160).sum() > 1000


def test_video_ending_while_the_models_load_ends_cleanly(tiny_checkpoints, gallery, short_video, tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "main.py"), "--source", str(short_video), "--no-window",
                           "--checkpoints", str(tiny_checkpoints), "--gallery", str(gallery), "--no-sync",
                           "--sketch-dir", str(tmp_path), "--max-frames", "2"],
                          cwd=ROOT, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "terminate called" not in proc.stderr


def test_canvas_version_changes_with_the_ink_only():
    from sketch.canvas import BLACK, Canvas

    canvas = Canvas(200, 100)
    seen = [canvas.version]
    canvas.begin(BLACK)
    seen.append(canvas.version)        # a pen down draws nothing yet
    canvas.add((10, 10))
    canvas.add((50, 40))
    seen.append(canvas.version)
    canvas.add((50, 40))               # the same point again: nothing new
    canvas.end()
    seen.append(canvas.version)
    assert canvas.undo()
    seen.append(canvas.version)
    canvas.clear()                     # already blank
    seen.append(canvas.version)
    assert seen[0] == seen[1] < seen[2] == seen[3] < seen[4] == seen[5]
