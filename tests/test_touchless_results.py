"""Browsing the matches by hand, end to end: the air canvas with tiny real models, a gallery
synced from the stand-in phone (tools/fixtures/fake_phone.py, a real adb server), a real pen
photo drawing a circle and a real fist photo pointing (through MediaPipe, at a webcam's 30 fps
clock). The matches become tiles; a held tile opens its photo large; next, previous, back;
show on phone opens it in the phone's viewer (and says why not when it cannot); a photo that
did not come from the phone shows the control disabled with its reason."""
from __future__ import annotations

import json
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage import data

from tests.hand_video import FPS, hand_video_frames
from tools.fixtures.fake_phone import FakePhone
from tools.fixtures.pointer_video import Pointing, centre

DT = 1.0 / FPS
CAMERA = "DCIM/Camera"
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")


@pytest.fixture(scope="module")
def phone(adb, tmp_path_factory):
    root = tmp_path_factory.mktemp("sdcard")
    (root / CAMERA).mkdir(parents=True)
    for name in PHOTOS:
        cv2.imwrite(str(root / CAMERA / f"{name}.jpg"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    fake = FakePhone(root).start()
    adb.connect(fake)
    yield fake
    adb.disconnect(fake)
    fake.stop()


@pytest.fixture(scope="module")
def phone_gallery(adb, phone, tmp_path_factory) -> Path:
    """The phone's four photos synced into a gallery, plus one photo of our own (not from it)."""
    from device.phone_sync import sync_phone
    folder = tmp_path_factory.mktemp("gallery")
    sync_phone(folder, adb_port=adb.port, timeout=5, show_progress=False, originals=True)
    cv2.imwrite(str(folder / "mine.png"), cv2.cvtColor(data.coffee()[::-1], cv2.COLOR_RGB2BGR))
    return folder


@pytest.fixture(scope="module")
def search(tiny_checkpoints):
    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch
    return SketchSearch(Settings(checkpoints=tiny_checkpoints, show_progress=False, top_k=5))


class Driver:
    """Steps the app through frames at a 30 fps clock."""

    def __init__(self, app):
        self.app, self.t = app, 0.0
        self.hand = Pointing()

    def frames(self, frames) -> None:
        for frame, _ in frames:
            self.app.step(frame, self.t)
            self.t += DT

    def point(self, name: str, seconds: float = 1.5) -> None:
        """Glide the fist onto control `name` (as the screen shows it now) and hold it there."""
        rect = {c.name: c.rect for c in self.app.screen.controls()}[name]
        self.hand.frames.clear()
        self.hand.glide(centre(rect)).rest(seconds)
        self.frames(self.hand.frames)

    def rest_until(self, condition, timeout: float = 60.0) -> None:
        """The fist resting on an empty place, paced like a webcam, until `condition()`."""
        deadline = time.monotonic() + timeout
        self.hand.frames.clear()
        self.hand.glide((320, 250), seconds=0.3)
        self.frames(self.hand.frames)
        while not condition():
            assert time.monotonic() < deadline, "timed out"
            self.hand.frames.clear()
            self.hand.rest(DT)
            self.frames(self.hand.frames)
            time.sleep(DT)


def controls(app) -> dict:
    return {c.name: c for c in app.screen.controls()}


def test_matches_open_browse_and_show_on_the_phone_by_hand(search, phone, phone_gallery, adb, tmp_path):
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions

    app = AirCanvasApp(AppOptions(source=0, sketch_dir=tmp_path / "sketches", gallery=phone_gallery,
                                  window=False, events=tmp_path / "events.jsonl", adb_port=adb.port),
                       search)
    app.options.sketch_dir.mkdir()
    app.worker.start()
    try:
        assert app.worker.loaded.wait(120) and not app.worker.load_error
        drive = Driver(app)
        drive.frames(hand_video_frames(hold=0, tail=0))                  # draw a circle
        drive.rest_until(lambda: len(app.screen.results) == 5)          # the preview's tiles
        ranked = [Path(p.path) for p in app.screen.results]
        assert set(ranked) == {*(phone_gallery / phone.serialno / CAMERA).glob("*.jpg"),
                               phone_gallery / "mine.png"}

        drive.point("result-2")                                          # open the second best
        assert app.screen.photo.path == ranked[1]
        # The photo is decoded off the loop, then fills the view (fitted, centred).
        from sketch_search.app.photo_view import open_photo
        expected = open_photo(ranked[1], (640, 480)).image
        h, w = expected.shape[:2]
        top, left = (480 - h) // 2, (640 - w) // 2

        def photo_shown() -> bool:
            middle = app.compose()[top + h // 3:top + h // 2, left + w // 3:left + 2 * w // 3]
            want = expected[h // 3:h // 2, w // 3:2 * w // 3]
            return float(np.abs(middle.astype(int) - want).mean()) < 3
        drive.rest_until(photo_shown)
        drive.point("next")
        drive.point("previous")
        from_phone = [r for r, path in enumerate(ranked, 1) if path.name != "mine.png"]
        drive.rest_until(lambda: controls(app)["show-on-phone"].reason != "checking")
        if ranked[1].name == "mine.png":
            assert not controls(app)["show-on-phone"].enabled
            drive.point("back")
            drive.point(f"result-{from_phone[0]}")
            drive.rest_until(lambda: controls(app)["show-on-phone"].reason != "checking")
        shown = app.screen.photo.path
        assert controls(app)["show-on-phone"].enabled
        drive.point("show-on-phone")
        drive.rest_until(lambda: phone.started)                           # the phone's viewer opened
        drive.rest_until(lambda: controls(app)["show-on-phone"].enabled)  # the answer is back
        phone.locked = True
        drive.point("show-on-phone")                                      # a fresh hold: locked now
        drive.rest_until(lambda: controls(app)["show-on-phone"].enabled)
        phone.locked = False
        drive.point("back")
        mine = ranked.index(phone_gallery / "mine.png") + 1
        drive.point(f"result-{mine}")
        drive.rest_until(lambda: controls(app)["show-on-phone"].reason != "checking")
        refused = controls(app)["show-on-phone"]
        assert not refused.enabled and refused.reason == "not from a phone"
        drive.point("show-on-phone")                                      # disabled: nothing
        drive.point("back")
    finally:
        app.worker.stop()
        assert app.worker.join(10)
        app.tracker.close()
        app.events.close()

    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    fired = [{k: v for k, v in e.items() if k not in ("t", "event")} for e in events if e["event"] == "command"]
    expected = [{"action": "open", "rank": 2, "path": str(ranked[1])},
                {"action": "next", "rank": 3, "path": str(ranked[2])},
                {"action": "previous", "rank": 2, "path": str(ranked[1])}]
    if ranked[1].name == "mine.png":
        expected += [{"action": "close"},
                     {"action": "open", "rank": from_phone[0], "path": str(ranked[from_phone[0] - 1])}]
    expected += [{"action": "show_on_phone", "path": str(shown), "ok": True},
                 {"action": "show_on_phone", "path": str(shown), "ok": False, "reason": "locked"},
                 {"action": "close"},
                 {"action": "open", "rank": mine, "path": str(phone_gallery / "mine.png")},
                 {"action": "close"}]
    assert fired == expected
    # Each press opened the phone's viewer on the photo's media-store entry (locked: behind the lock).
    assert len(phone.started) == 2
    assert all(uri.startswith("content://media/external/images/media/") for uri, _ in phone.started)
    # The controls as each screen listed them: tiles by rank, then the photo's, with reasons.
    listed = [[c["name"] for c in e["controls"]] for e in events if e["event"] == "controls"]
    assert ["undo", "redo", "help", "quit", *[f"result-{i}" for i in range(1, 6)]] in listed
    assert ["back", "show-on-phone", "previous", "next"] in listed
    disabled = [c for e in events if e["event"] == "controls" for c in e["controls"] if c.get("enabled") is False]
    assert {"name": "show-on-phone", "rect": disabled[-1]["rect"], "enabled": False,
            "reason": "not from a phone"} in disabled
    for e in events:
        if e["event"] == "controls":
            for c in e["controls"]:
                x, y, w, h = c["rect"]
                assert x >= 0 and y >= 0 and x + w <= 640 and y + h <= 480 and min(w, h) >= 80


def test_an_opened_photo_is_shown_fitted_upright_with_name_date_and_score(tmp_path):
    """The viewer's picture: EXIF orientation applied, fitted to the view, dated by EXIF."""
    from PIL import Image

    from sketch_search.app.photo_view import open_photo, photo_date

    wide = np.zeros((300, 600, 3), np.uint8)
    wide[:, :300] = (255, 0, 0)                              # left half red (RGB)
    image = Image.fromarray(wide)
    exif = image.getexif()
    exif[0x0112] = 6                                          # shown turned 90 degrees clockwise
    exif.get_ifd(0x8769)[36867] = "2021:07:14 09:30:05"
    path = tmp_path / "turned.jpg"
    image.save(path, exif=exif, quality=95)
    opened = open_photo(path, (640, 480))
    assert opened.error is None
    h, w = opened.image.shape[:2]
    assert (w, h) == (240, 480)                               # upright (portrait), fitted
    assert opened.image[:h // 2 - 20, :, 2].mean() > 200      # red on top after the turn (BGR)
    assert opened.image[h // 2 + 20:, :, 2].mean() < 50
    assert opened.date.isoformat() == "2021-07-14T09:30:05" and opened.date_source == "taken"

    plain = tmp_path / "plain.png"
    Image.fromarray(wide).save(plain)
    when, source = photo_date(plain)
    assert source == "file" and abs(when.timestamp() - plain.stat().st_mtime) < 1

    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a photo")
    broken = open_photo(bad, (640, 480))
    assert broken.image is None and "not an image" in broken.error


def test_a_hostile_exif_date_falls_back_to_the_file_time(tmp_path):
    from PIL import Image

    from sketch_search.app.photo_view import photo_date
    image = Image.new("RGB", (32, 32))
    exif = image.getexif()
    exif.get_ifd(0x8769)[36867] = "9999:99:99 99:99:99\n$(rm -rf /)" * 50
    path = tmp_path / "odd.jpg"
    image.save(path, exif=exif)
    assert photo_date(path)[1] == "file"


def test_the_help_card_shows_once_at_the_first_start(tmp_path):
    from sketch_search.app.first_start import first_start, remember_help_shown
    home = tmp_path / "home"
    assert first_start(home)
    remember_help_shown(home)
    assert not first_start(home)


def test_the_first_start_shows_the_help_card_until_drawing_begins(tmp_path, monkeypatch):
    from sketch.screen import Mode
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
    from sketch_search.app.first_start import first_start

    monkeypatch.setenv("SKETCH_SEARCH_HOME", str(tmp_path / "fresh-home"))
    frames = list(hand_video_frames(hold=0, tail=0))
    app = AirCanvasApp(AppOptions(source=0, sketch_dir=tmp_path, window=True,
                                  events=tmp_path / "events.jsonl"))
    try:
        app.step(frames[0][0], 0.0)          # window=True only decides the card; none is opened
        assert app.screen.mode is Mode.HELP and not first_start()
        for i, (frame, _) in enumerate(frames[1:], 1):
            app.step(frame, i * DT)
        assert app.screen.mode is Mode.DRAWING and app.canvas.strokes   # drawn, card gone
    finally:
        app.tracker.close()
        app.events.close()
    again = AirCanvasApp(AppOptions(source=0, sketch_dir=tmp_path, window=True))
    try:
        again.step(frames[0][0], 0.0)
        assert again.screen.mode is Mode.DRAWING                       # only the first start
    finally:
        again.tracker.close()
    events = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert not [e for e in events if e["event"] == "command"]
