"""A photo taken while main.py runs is searched: main.py's own wiring (build: the background
sync it starts, lean by default), a real adb server and the stand-in phone, tiny real models,
a real hand drawing and saving twice; a photo added to the phone between the saves is counted
in the later save's `results` event."""
from __future__ import annotations

import json
import os
import time

import cv2
import pytest
from skimage import data

from tests.hand_video import FPS, hand_video_frames
from tools.fixtures.fake_phone import FakePhone
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints

DT = 1.0 / FPS
CAMERA = "DCIM/Camera"


def events(path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def phone(adb, tmp_path):
    root = tmp_path / "sdcard"
    (root / CAMERA).mkdir(parents=True)
    for name in ("astronaut", "chelsea", "coffee"):
        cv2.imwrite(str(root / CAMERA / f"{name}.jpg"),
                    cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    fake = FakePhone(root).start()
    adb.connect(fake)
    yield fake
    adb.disconnect(fake)
    fake.stop()


def test_a_photo_taken_while_main_py_runs_is_searched(adb, phone, tmp_path):
    from sketch_search.app import draw as main

    log = tmp_path / "events.jsonl"
    frames = list(hand_video_frames())                # draw a circle, hold to save, let go
    app = main.build(["--source", "0", "--no-window", "--sketch-dir", str(tmp_path / "sketches"),
                      "--checkpoints", str(write_tiny_checkpoints(tmp_path / "ckpt")),
                      "--gallery", str(tmp_path / "gallery"), "--adb-port", str(adb.port),
                      "--events", str(log), "--live", "off"])
    app.phone_sync.plan.interval = 0.5                 # 15 s in use; the test cannot wait that long
    app.options.sketch_dir.mkdir()
    app.phone_sync.start()
    app.worker.start()
    t = 0.0
    empty = [frame for frame in frames if frame[1] == "empty"][:1]    # no hand: nothing pressed

    def step(frame_list) -> None:
        nonlocal t
        for frame, _ in frame_list:
            app.step(frame, t)
            t += DT

    def rest_until(condition, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"timed out; events: {[e['event'] for e in events(log)]}"
            step(empty)
            time.sleep(DT)

    def results() -> list[dict]:
        """Each save's own answer; a refresh (the last save ranked again as photos arrive) may come
        before or after the next save's answer, so counting it would race."""
        return [e for e in events(log) if e["event"] == "results" and not e.get("refresh")]

    def indexed(count: int) -> bool:        # pacing only: the results events are the check
        index = app.worker.index
        return index is not None and index.done and index.total == count
    try:
        assert app.worker.loaded.wait(120) and not app.worker.load_error
        rest_until(lambda: indexed(3))
        step(frames)
        rest_until(lambda: len(results()) >= 1)
        assert results()[0]["total"] == 3

        taken = phone.root / CAMERA / "rocket.jpg"          # taken now, on the phone
        cv2.imwrite(str(taken), cv2.cvtColor(data.rocket(), cv2.COLOR_RGB2BGR))
        os.utime(taken, (time.time(), time.time()))
        rest_until(lambda: indexed(4))
        step(frames)
        rest_until(lambda: len(results()) >= 2)
    finally:
        app.phone_sync.stop()
        app.worker.stop()
        assert app.worker.join(10)
        app.tracker.close()
        if app.events is not None:
            app.events.close()
    first, second = results()[:2]
    assert first["sketch"] != second["sketch"]
    assert second["total"] == 4 and second["searched"] == 4
    assert (tmp_path / "gallery" / phone.serialno / CAMERA / "rocket.jpg").is_file()
    assert "phone" in app.phone_sync.status
