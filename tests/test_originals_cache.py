"""The originals cache and the decisions around it, driven directly (no thread, no phone): the
bound after every store, least recently used dropped first, a size that no longer matches, a
file larger than the whole cache, nothing left by a failed write; which photos are lean (from a
real sync record); and the notes said once."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from device.originals import OriginalUnavailable, QuietNotes, lean_original
from device.originals_cache import CACHE_FOLDER, STALE_TEMP_S, OriginalsCache, PhoneFile
from device.sync_state import SyncedPhoto, SyncState
from sketch_search.common.home import HOME_VARIABLE


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now

    def tick(self, seconds: float = 1.0) -> None:
        self.now += seconds


def photo(name: str, size: int, serial: str = "R5CW1", mtime: int = 1_700_000_000) -> PhoneFile:
    return PhoneFile(serial, f"/sdcard/DCIM/Camera/{name}", size, mtime)


def writer(data: bytes):
    return lambda tmp: tmp.write_bytes(data)


def store(cache: OriginalsCache, clock: Clock, item: PhoneFile) -> Path | None:
    clock.tick()
    return cache.store(item, writer(bytes([len(item.device_path) % 256]) * item.size))


def cached_names(cache: OriginalsCache) -> list[str]:
    by_path = {cache.path_of(photo(n, s)): n for n, s in NAMES.items()}
    return [by_path[entry.path] for entry in cache.entries()]


NAMES = {"a.jpg": 400, "b.jpg": 300, "c.jpg": 300, "d.jpg": 500, "e.jpg": 1000, "f.jpg": 1001}


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def cache(tmp_path, clock) -> OriginalsCache:
    return OriginalsCache(tmp_path / "originals", max_bytes=1000, clock=clock)


def test_a_store_keeps_the_bytes_and_a_find_gives_them_back(cache, clock):
    a = photo("a.jpg", 400)
    assert cache.find(a) is None
    assert not cache.folder.exists()                      # nothing made before the first store
    path = cache.store(a, writer(b"x" * 400))
    assert path == cache.path_of(a) and path.read_bytes() == b"x" * 400
    assert path.parent == cache.folder and path.suffix == ".jpg"
    assert cache.find(a) == path
    assert [p.name for p in cache.folder.iterdir()] == [path.name]   # no temporary left


def test_the_bound_holds_after_every_store_least_recently_used_dropped_first(cache, clock):
    for name in ("a.jpg", "b.jpg", "c.jpg"):              # 400 + 300 + 300 = 1000: all fit
        store(cache, clock, photo(name, NAMES[name]))
    assert cached_names(cache) == ["a.jpg", "b.jpg", "c.jpg"]
    clock.tick()
    assert cache.find(photo("a.jpg", 400)) is not None    # a used again: b is now the oldest
    store(cache, clock, photo("d.jpg", 500))              # 1500: b (300) and c (300) go
    assert cached_names(cache) == ["a.jpg", "d.jpg"]
    assert cache.total_bytes() == 900 <= cache.max_bytes
    store(cache, clock, photo("e.jpg", 1000))             # exactly the bound: alone
    assert cached_names(cache) == ["e.jpg"] and cache.total_bytes() == 1000


def test_a_file_larger_than_the_whole_cache_is_not_stored_and_evicts_nothing(cache, clock):
    store(cache, clock, photo("a.jpg", 400))
    big = photo("f.jpg", 1001)
    assert not cache.fits(big)
    called = []
    assert cache.store(big, lambda tmp: called.append(tmp)) is None
    assert called == [] and cached_names(cache) == ["a.jpg"]
    assert not OriginalsCache(cache.folder, max_bytes=0).fits(photo("a.jpg", 1))


def test_a_cached_file_whose_size_no_longer_matches_is_dropped(cache, clock):
    a = photo("a.jpg", 400)
    path = store(cache, clock, a)
    path.write_bytes(b"short")                          # cut, or written over by something else
    assert cache.find(a) is None and not path.exists()


def test_the_same_path_changed_on_the_phone_is_another_entry(cache):
    old, new = photo("a.jpg", 400), photo("a.jpg", 400, mtime=1_700_000_999)
    other_phone = photo("a.jpg", 400, serial="R5CW2")
    assert len({cache.path_of(old), cache.path_of(new), cache.path_of(other_phone)}) == 3


def test_a_failed_or_short_write_leaves_nothing(cache):
    a = photo("a.jpg", 400)

    def cut(tmp: Path) -> None:
        tmp.write_bytes(b"x" * 100)
        raise ConnectionError("cable pulled")
    with pytest.raises(ConnectionError):
        cache.store(a, cut)
    with pytest.raises(ValueError, match="100 bytes written, 400 listed"):
        cache.store(a, writer(b"x" * 100))
    assert list(cache.folder.iterdir()) == []


def test_hostile_phone_paths_never_leave_the_cache_folder(cache):
    for path in ("/sdcard/../../etc/passwd", "/sdcard/a/\n.jpg", "/x.JPG/../../y", "/a.jp g"):
        target = cache.path_of(PhoneFile("../..", path, 10, 0))
        assert target.parent == cache.folder and not target.name.startswith(".")
    assert cache.path_of(PhoneFile("s", "/sdcard/IMG.JPG", 1, 0)).suffix == ".jpg"
    assert cache.path_of(PhoneFile("s", "/sdcard/IMG.exe", 1, 0)).suffix == ""


def test_foreign_files_are_not_counted_and_old_temporaries_go(cache, clock):
    store(cache, clock, photo("a.jpg", 400))
    (cache.folder / "notes.txt").write_bytes(b"n" * 5000)          # not ours: left alone
    old_tmp = cache.folder / ".0123.abcdef.tmp.jpg"
    old_tmp.write_bytes(b"t" * 100)
    old = int((clock.now - STALE_TEMP_S - 10) * 1e9)
    os.utime(old_tmp, ns=(old, old))
    fresh_tmp = cache.folder / ".4567.abcdef.tmp.jpg"                # a pull in progress
    fresh_tmp.write_bytes(b"t" * 100)
    fresh = int(clock.now * 1e9)
    os.utime(fresh_tmp, ns=(fresh, fresh))
    store(cache, clock, photo("b.jpg", 300))
    assert cached_names(cache) == ["a.jpg", "b.jpg"]
    assert (cache.folder / "notes.txt").exists() and fresh_tmp.exists() and not old_tmp.exists()


def test_the_cache_lives_in_the_per_user_home(tmp_path, monkeypatch):
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "elsewhere"))
    cache = OriginalsCache.in_home()
    assert cache.folder == tmp_path / "elsewhere" / CACHE_FOLDER
    assert cache.max_bytes == 1_000_000_000


def test_only_photos_the_sync_kept_lean_have_an_original_to_pull(tmp_path):
    gallery = tmp_path / "gallery"
    rows = {"lean.jpg": ("/sdcard/DCIM/Camera/lean.jpg", True),
            "whole.jpg": ("/sdcard/DCIM/Camera/whole.jpg", False),       # --originals
            "odd.jpg": ("DCIM/Camera/odd.jpg", True),                     # not a phone path
            "doc.jpg": ("/sdcard/DCIM/Camera/doc.txt", True),             # not a photo there
            "ctl.jpg": ("/sdcard/DCIM/Camera/a\x1b[2J.jpg", True)}        # a control character
    with SyncState(gallery) as state:
        for name, (device_path, lean) in rows.items():
            state.record("R5CW1", SyncedPhoto(device_path, 4000, 1_700_000_000,
                                              f"R5CW1/DCIM/Camera/{name}", lean))
    folder = gallery / "R5CW1" / "DCIM" / "Camera"
    assert lean_original(gallery, folder / "lean.jpg") == PhoneFile(
        "R5CW1", "/sdcard/DCIM/Camera/lean.jpg", 4000, 1_700_000_000)
    for name in ("whole.jpg", "odd.jpg", "doc.jpg", "ctl.jpg", "never-synced.jpg"):
        assert lean_original(gallery, folder / name) is None, name
    assert lean_original(None, folder / "lean.jpg") is None
    assert lean_original(gallery, tmp_path / "lean.jpg") is None             # outside


def test_a_failure_is_told_once_until_an_original_arrives_again():
    notes = QuietNotes()
    a, b = photo("a.jpg", 1), photo("b.jpg", 1)
    unplugged = OriginalUnavailable("no-phone", "phone R5CW1 is not connected")
    assert notes.should_say(unplugged, a)
    assert not notes.should_say(unplugged, b)              # the next photo opened: quiet
    gone = OriginalUnavailable("gone", "no longer on the phone")
    assert notes.should_say(gone, a) and not notes.should_say(gone, a)
    assert notes.should_say(gone, b)                       # another photo gone: its own note
    notes.clear()                                          # an original arrived
    assert notes.should_say(unplugged, a)


def test_the_window_keeps_originals_in_the_cache_its_options_size(tmp_path, monkeypatch):
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
    monkeypatch.setenv(HOME_VARIABLE, str(tmp_path / "home"))
    for size in (0, 250_000_000):
        app = AirCanvasApp(AppOptions(window=False, gallery=tmp_path, originals_cache=size))
        cache = app.commands.viewer.originals
        assert (cache.folder, cache.max_bytes) == (tmp_path / "home" / CACHE_FOLDER, size)
        app.events.close()
    assert AppOptions().originals_cache == 1_000_000_000
