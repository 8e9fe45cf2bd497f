"""A lean photo opened large: its kept image at once, then the phone's original pulled (a real adb
server, the stand-in phone of tools/fixtures/fake_phone.py) into the per-user originals cache
and shown in its place, through the window's Commands as the air canvas wires them. Cached: the
next open shows it with no transfer. Unplugged, gone from the phone, or synced whole: the kept
image stays (one note, not one per photo). Leaving the photo stops its pull.

The lean gallery is made as a lean sync leaves one: the phone synced, each photo's file replaced
by a small copy (the phone's time kept) and its record marked lean."""
from __future__ import annotations

import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
from PIL import Image
from skimage import data

from device.originals_cache import OriginalsCache
from device.phone_sync import sync_phone
from device.sync_state import SyncState
from sketch.canvas import Canvas
from sketch_search.app.commands import Commands
from sketch_search.app.events import EventLog
from sketch_search.app.photo_view import OpenedPhoto, PhotoViewer, open_photo
from sketch_search.app.timed_line import TimedLine
from sketch_search.common.home import HOME_VARIABLE
from tools.fixtures.fake_phone import FakePhone

CAMERA = "DCIM/Camera"
VIEW = (640, 480)
PHOTOS = ("astronaut", "chelsea", "coffee")
KEPT_SIDE = 320


@pytest.fixture
def phone(adb, tmp_path):
    root = tmp_path / "sdcard"
    (root / CAMERA).mkdir(parents=True)
    for name in PHOTOS:                     # camera-like originals, 1600 x 1200
        picture = cv2.resize(getattr(data, name)(), (1600, 1200), interpolation=cv2.INTER_CUBIC)
        Image.fromarray(picture).save(root / CAMERA / f"{name}.jpg", quality=92)
    fake = FakePhone(root).start()
    adb.connect(fake)
    yield fake
    adb.disconnect(fake)
    fake.stop()


def synced(adb, phone: FakePhone, gallery: Path, lean: bool) -> Path:
    """The phone synced into `gallery` by the real sync: lean (the phone's thumbnails, records
    marked lean) or whole (`--originals`)."""
    sync_phone(gallery, adb_port=adb.port, timeout=5, show_progress=False, originals=not lean)
    if lean:
        with SyncState(gallery) as state:
            for record in state.photos(phone.serialno).values():
                assert record.lean
                assert (gallery / record.local_path).stat().st_size < record.size / 5
    phone.recv_paths.clear()
    return gallery / phone.serialno / CAMERA


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """SKETCH_SEARCH_HOME of this test: the originals cache goes under it."""
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    return tmp_path / "home"


class NoteLine(TimedLine):
    """The status bar's note line, remembering every line shown on it."""

    def __init__(self, seconds: float):
        super().__init__(seconds)
        self.shown: list[str] = []

    def show(self, text: str, error: bool = False) -> None:
        self.shown.append(text)
        super().show(text, error)


class Viewer(PhotoViewer):
    """The real viewer, remembering what it hands the window."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.handed: list[object] = []

    def results(self) -> list[object]:
        results = super().results()
        self.handed += results
        return results


class Window:
    """The window's photo side as the air canvas wires it: Commands over a real PhotoViewer."""

    def __init__(self, viewer: Viewer):
        self.commands = Commands(EventLog(None), viewer, lambda text: None)
        self.commands.notes = NoteLine(self.commands.notes.seconds)
        self.notes = self.commands.notes.shown
        self.commands.start(Canvas(*VIEW), show_help=False)
        self.shown: list[OpenedPhoto] = []

    def open(self, paths: list[Path], rank: int = 1) -> None:
        self.commands.screen.offer_results([SimpleNamespace(path=p, score=0.5) for p in paths])
        self.commands.press(f"result-{rank}")

    def frames_until(self, condition, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            self.frame()
            if condition():
                return
            assert time.monotonic() < deadline, "timed out"
            time.sleep(1 / 30)

    def frame(self) -> None:
        """One frame's collection; `shown` gets each photo the viewer handed over in it, in
        order (the last one is what the window then draws)."""
        self.commands.collect_photo_jobs()
        handed = [r for r in self.commands.viewer.handed if isinstance(r, OpenedPhoto)]
        self.commands.viewer.handed.clear()
        self.shown += handed
        if handed:
            assert self.commands.opened is handed[-1]

    def wait(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.frame()
            time.sleep(1 / 30)


def showing_original(window: Window, path: Path) -> bool:
    opened = window.commands.opened
    return opened is not None and opened.path == path and opened.original


def test_a_lean_photo_shows_its_kept_image_then_the_original_then_from_the_cache(
        adb, phone, tmp_path, home):
    folder = synced(adb, phone, tmp_path / "gallery", lean=True)
    kept = folder / "astronaut.jpg"
    on_phone = phone.root / CAMERA / "astronaut.jpg"
    window = Window(Viewer(tmp_path / "gallery", adb.port))
    window.open([kept])
    window.frames_until(lambda: showing_original(window, kept))

    assert [o.original for o in window.shown] == [False, True]        # kept first, then original
    assert np.array_equal(window.shown[0].image, open_photo(kept, VIEW).image)
    assert np.array_equal(window.shown[1].image, open_photo(kept, VIEW, on_phone).image)
    difference = np.abs(window.shown[0].image.astype(int) - window.shown[1].image).mean()
    assert difference > 1.0                                 # the kept copy is visibly softer
    assert phone.recv_paths == [f"/sdcard/{CAMERA}/astronaut.jpg"]
    cached = list((home / "originals").iterdir())
    assert [p.read_bytes() for p in cached] == [on_phone.read_bytes()]
    assert window.notes == []

    # Next time (the program started again): the original from the cache at once, no transfer.
    again = Window(Viewer(tmp_path / "gallery", adb.port))
    again.open([kept])
    again.frames_until(lambda: again.shown)
    again.wait(1.0)
    assert [o.original for o in again.shown] == [True]
    assert np.array_equal(again.shown[0].image, window.shown[1].image)
    assert phone.recv_paths == [f"/sdcard/{CAMERA}/astronaut.jpg"]


def test_unplugged_the_kept_image_stays_with_one_note_until_the_phone_is_back(
        adb, phone, tmp_path):
    folder = synced(adb, phone, tmp_path / "gallery", lean=True)
    paths = [folder / f"{name}.jpg" for name in PHOTOS]
    cache = OriginalsCache(tmp_path / "cache")
    window = Window(Viewer(tmp_path / "gallery", adb.port, originals=cache))
    adb.disconnect(phone)
    window.open(paths, rank=1)
    window.frames_until(lambda: window.notes)
    assert len(window.notes) == 1 and "not connected" in window.notes[0], window.notes
    assert [o.original for o in window.shown] == [False]
    window.commands.press("next")                              # another photo, still unplugged
    window.frames_until(lambda: window.shown[-1].path == paths[1])
    adb.connect(phone)
    window.commands.press("next")                              # plugged in again
    window.frames_until(lambda: showing_original(window, paths[2]))
    assert len(window.notes) == 1                              # the second photo said nothing
    assert [(o.path, o.original) for o in window.shown] == [
        (paths[0], False), (paths[1], False), (paths[2], False), (paths[2], True)]
    assert phone.recv_paths == [f"/sdcard/{CAMERA}/coffee.jpg"]
    assert [e.path.read_bytes() for e in cache.entries()] == [
        (phone.root / CAMERA / "coffee.jpg").read_bytes()]


def test_a_phone_that_has_not_authorised_this_computer_says_so_once(adb, phone, tmp_path):
    folder = synced(adb, phone, tmp_path / "gallery", lean=True)
    adb.disconnect(phone)
    waiting = FakePhone(phone.root, unauthorized=True).start()     # plugged in, not allowed yet
    try:
        adb.connect(waiting, state="unauthorized")
        window = Window(Viewer(tmp_path / "gallery", adb.port,
                                    originals=OriginalsCache(tmp_path / "cache")))
        window.open([folder / "astronaut.jpg", folder / "chelsea.jpg"])
        window.frames_until(lambda: window.notes)
        window.commands.press("next")
        window.frames_until(lambda: len(window.shown) == 2)
        window.wait(1.0)
    finally:
        adb.disconnect(waiting)
        waiting.stop()
    assert len(window.notes) == 1 and "authorised" in window.notes[0], window.notes
    assert [o.original for o in window.shown] == [False, False]
    assert waiting.recv_paths == [] and phone.recv_paths == []


def test_a_photo_gone_from_the_phone_keeps_its_kept_image(adb, phone, tmp_path):
    folder = synced(adb, phone, tmp_path / "gallery", lean=True)
    (phone.root / CAMERA / "chelsea.jpg").unlink()
    cache = OriginalsCache(tmp_path / "cache")
    window = Window(Viewer(tmp_path / "gallery", adb.port, originals=cache))
    window.open([folder / "chelsea.jpg"])
    window.frames_until(lambda: window.notes)
    assert "no longer on the phone" in window.notes[0]
    assert [o.original for o in window.shown] == [False] and window.shown[0].image is not None
    assert not cache.folder.exists() or list(cache.folder.iterdir()) == []


def test_photos_synced_whole_are_never_pulled_again(adb, phone, tmp_path):
    folder = synced(adb, phone, tmp_path / "gallery", lean=False)      # --originals
    cache = OriginalsCache(tmp_path / "cache")
    viewer = Viewer(tmp_path / "gallery", adb.port, originals=cache)
    window = Window(viewer)
    window.open([folder / "coffee.jpg"])
    window.frames_until(lambda: window.shown)
    window.wait(1.5)
    assert [o.original for o in window.shown] == [False]
    assert phone.recv_paths == [] and window.notes == [] and not cache.folder.exists()


def test_leaving_a_photo_stops_its_pull_and_the_next_one_comes_at_once(adb, phone, tmp_path):
    folder = synced(adb, phone, tmp_path / "gallery", lean=True)
    paths = [folder / f"{name}.jpg" for name in PHOTOS]
    cache = OriginalsCache(tmp_path / "cache")
    window = Window(Viewer(tmp_path / "gallery", adb.port, originals=cache))
    phone.drip = (64 * 1024, 0.05)          # the first photo's bytes crawl after 64 KiB
    window.open(paths, rank=1)
    window.frames_until(lambda: phone.recv_paths)
    phone.drip = None
    left = time.monotonic()
    window.commands.press("next")
    window.frames_until(lambda: showing_original(window, paths[1]))
    # Far sooner than the crawl's own end (the 10 s read timeout): the first pull was stopped.
    assert time.monotonic() - left < 5.0
    assert all(not o.original for o in window.shown if o.path == paths[0])
    assert [e.path.read_bytes() for e in cache.entries()] == [
        (phone.root / CAMERA / "chelsea.jpg").read_bytes()]
    assert [p.name for p in cache.folder.iterdir() if p.name.startswith(".")] == []
    assert window.notes == []


def test_an_original_larger_than_the_whole_cache_is_not_pulled(adb, phone, tmp_path):
    folder = synced(adb, phone, tmp_path / "gallery", lean=True)
    cache = OriginalsCache(tmp_path / "cache", max_bytes=10_000)       # under any photo here
    window = Window(Viewer(tmp_path / "gallery", adb.port, originals=cache))
    window.open([folder / "coffee.jpg"])
    window.frames_until(lambda: window.notes)
    assert "larger than the originals cache" in window.notes[0]
    assert [o.original for o in window.shown] == [False]
    assert phone.recv_paths == [] and not cache.folder.exists()
