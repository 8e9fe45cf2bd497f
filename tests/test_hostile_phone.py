"""A broken or hostile phone (the stand-in, misbehaving) through a real adb server: a sync ends
in bounded time and memory, writes no more than the listing announced, and keeps the gallery whole.
"""
from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from device.phone_errors import PhoneConnectionLost, PhoneError
from device.phone_sync import SyncLimitError, SyncLimits, part_path, sync_phone
from sketch_search.common.names import display_name
from tools.fixtures.fake_phone import AdbServer, FakePhone

MTIME = 1_690_000_000
CAMERA = "/sdcard/DCIM/Camera"


@pytest.fixture
def make_phone(adb: AdbServer, tmp_path: Path):
    """Makes connected stand-in phones serving {relative path: bytes} as /sdcard."""
    phones: list[FakePhone] = []

    def make(files: dict[str, bytes]) -> FakePhone:
        root = tmp_path / "sdcard"
        for relative, data in files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            os.utime(path, (MTIME, MTIME))
        (root / "DCIM" / "Camera").mkdir(parents=True, exist_ok=True)
        phone = FakePhone(root).start()
        phones.append(phone)
        adb.connect(phone)
        return phone

    yield make
    for phone in phones:
        adb.disconnect(phone)
        phone.stop()        # also ends a sync the old code would still be running


def bounded(function: Callable[[], object], seconds: float = 10):
    """Run `function` in a thread; fail if it has not ended after `seconds` (the bug this
    guards against is a sync that never ends). Returns (result or exception, elapsed s)."""
    outcome: list = []

    def run() -> None:
        try:
            outcome.append(function())
        except BaseException as error:      # handed to the test
            outcome.append(error)

    start = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"the sync was still running after {seconds} s"
    return outcome[0], time.monotonic() - start


def sync(adb: AdbServer, dest: Path, **kwargs):
    kwargs.setdefault("timeout", 5)
    kwargs.setdefault("originals", True)      # byte-for-byte copies: these photos are not images
    return sync_phone(dest, adb_port=adb.port, show_progress=False, **kwargs)


def files_under(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def largest_file_while(folder: Path, stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        sizes = [p.stat().st_size for p in folder.rglob("*") if p.is_file()] if folder.exists() else []
        seen.append(max(sizes, default=0))
        time.sleep(0.005)


# --- item 8: the phone sends more than it listed -----------------------------------------------

def test_file_sending_more_than_listed_is_refused_at_the_listed_size(adb, make_phone, tmp_path):
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"one", "DCIM/Camera/IMG_3.jpg": b"three"})
    endless = f"{CAMERA}/IMG_2.jpg"
    phone.extra_files[endless] = b"0123456789"          # listed at 10 bytes ...
    phone.endless_files.add(endless)                      # ... then sent without end
    dest = tmp_path / "gallery"
    stop, seen = threading.Event(), []
    watcher = threading.Thread(target=largest_file_while, daemon=True,
                               args=(dest / phone.serialno, stop, seen))
    watcher.start()
    try:
        report, elapsed = bounded(lambda: sync(adb, dest))
    finally:
        stop.set()
        watcher.join()

    assert not isinstance(report, BaseException), report
    assert max(seen) <= 10                                # never more than listed on disk
    (name, reason), = report.skipped
    assert name == endless and "more than the 10 bytes it listed" in reason
    assert files_under(report.folder) == {"DCIM/Camera/IMG_1.jpg": b"one",
                                          "DCIM/Camera/IMG_3.jpg": b"three"}
    assert report.bytes == 8 and elapsed < 8


def test_data_frame_over_64_kib_is_refused(adb, make_phone, tmp_path):
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"one"})
    huge = f"{CAMERA}/IMG_0.jpg"
    phone.extra_files[huge] = b"x" * 100
    phone.listed_sizes[huge] = 0xFFFFFFFF                 # the listing agrees: 4 GiB
    phone.oversized_frames.add(huge)                      # one DATA frame "of 0xFFFFFFFF bytes"

    report, _ = bounded(lambda: sync(adb, tmp_path / "gallery"))

    assert not isinstance(report, BaseException), report
    (name, reason), = report.skipped
    assert name == huge and "frame of 4294967295 bytes, over the protocol's 65536" in reason
    assert files_under(report.folder) == {"DCIM/Camera/IMG_1.jpg": b"one"}


# --- item 9: endless listings and trees --------------------------------------------------------

def test_endless_listing_ends_at_the_folder_limit_keeping_copies(adb, make_phone, tmp_path):
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"one", "DCIM/Camera/IMG_2.jpg": b"two"})
    dest = tmp_path / "gallery"
    first = sync(adb, dest)
    assert len(first.pulled) == 2
    (phone.root / "DCIM/Camera/IMG_2.jpg").unlink()       # deleted on the phone ...
    (phone.root / "DCIM/Camera/IMG_4.jpg").write_bytes(b"four")
    (phone.root / "DCIM/Camera/Endless").mkdir()
    phone.endless_folders.add(f"{CAMERA}/Endless")        # ... and a folder listed without end

    # Default limits: what a user gets.
    error, elapsed = bounded(lambda: sync(adb, dest, mirror=True), seconds=20)

    assert isinstance(error, SyncLimitError), error
    message = str(error)
    assert "\n" not in message
    assert f"more than 100000 entries in {CAMERA}/Endless (the limit per folder)" in message
    assert "1 new photos copied from the folders listed before it, nothing deleted" in message
    assert [p.name for p in error.report.pulled] == ["IMG_4.jpg"]   # its folder was complete
    # --mirror does not act on a listing cut short: the copy of IMG_2 stays.
    assert files_under(first.folder) == {"DCIM/Camera/IMG_1.jpg": b"one",
                                         "DCIM/Camera/IMG_2.jpg": b"two",
                                         "DCIM/Camera/IMG_4.jpg": b"four"}
    assert elapsed < 15


def test_endless_dot_entries_end_the_listing(adb, make_phone, tmp_path):
    phone = make_phone({})
    phone.endless_folders.add(CAMERA)
    phone.endless_name = "."            # entries a listing leaves out, so no count sees them
    error, _ = bounded(lambda: sync(adb, tmp_path / "gallery"))
    assert isinstance(error, PhoneError) and "'.' or '..' again and again" in str(error)


@pytest.mark.parametrize("width, depth, limits, words, lists", [
    (1, None, SyncLimits(depth=5),
     f"folders nested more than 5 deep in {CAMERA}/Tree (the depth limit)", 6),
    (50, 3, SyncLimits(folders=200), "more than 200 folders (the limit per sync)", 200),
    # 21 entries in each folder above the 3rd level below Tree, 1 in each folder of the 3rd.
    (20, 3, SyncLimits(total_entries=500), "more than 500 entries in all (the limit per sync)",
     234),
])
def test_endless_tree_ends_at_a_limit(adb, make_phone, tmp_path, width, depth, limits, words,
                                      lists):
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"one"})
    (phone.root / "DCIM/Camera/Tree").mkdir()
    phone.endless_trees[f"{CAMERA}/Tree"] = width         # endlessly deep, or wide and deep
    phone.tree_depth = depth

    error, _ = bounded(lambda: sync(adb, tmp_path / "gallery", limits=limits,
                                    folders=["DCIM/Camera/Tree", "DCIM/Camera"]))

    assert isinstance(error, SyncLimitError), error
    assert words in str(error)
    assert phone.list_requests == lists
    # The tree's photos from the folders listed in full were copied; DCIM/Camera never listed.
    assert all(p.name == "IMG.jpg" for p in error.report.pulled) and error.report.pulled


def test_default_depth_limit_with_a_deep_chain(adb, make_phone, tmp_path):
    phone = make_phone({})
    phone.endless_trees[CAMERA] = 1
    error, _ = bounded(lambda: sync(adb, tmp_path / "gallery"))
    assert isinstance(error, SyncLimitError) and "more than 16 deep" in str(error)
    assert phone.list_requests == 17 and len(error.report.pulled) == 16


# --- item 10: a phone dripping data ------------------------------------------------------------

def test_dripping_phone_ends_at_the_rate_deadline_leaving_no_partial_file(
        adb, make_phone, tmp_path):
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"x" * 20})
    phone.drip = (2, 0.4)       # 2 bytes, then one byte every 0.4 s: each read waits < 1 s
    dest = tmp_path / "gallery"

    error, elapsed = bounded(lambda: sync(adb, dest, timeout=1))

    assert isinstance(error, PhoneConnectionLost), error
    assert "slower than 16 KB/s" in str(error) and "sync again" in str(error)
    assert elapsed < 4          # the old per-read timeout let it run 7 s, and finish
    assert files_under(dest / phone.serialno) == {}   # no partial, hidden or not


def test_minimum_rate_is_a_parameter(adb, make_phone, tmp_path):
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"x" * 20})
    phone.drip = (0, 0.1)       # 10 bytes/s for 2 s: too slow by default, fine with min_rate=8
    report = sync(adb, tmp_path / "gallery", timeout=1, limits=SyncLimits(min_rate=8))
    assert [p.name for p in report.pulled] == ["IMG_1.jpg"]


# --- item 11: long paths, long names, control characters ---------------------------------------

def test_path_over_1024_bytes_is_skipped_and_siblings_copied(adb, make_phone, tmp_path):
    deep = "DCIM/Camera/" + "/".join(letter * 250 for letter in "abcd")   # /sdcard/...: 1023 bytes
    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"one",
                        f"{deep}/IMG_2.jpg": b"too long",
                        f"{deep}/Sub/IMG_3.jpg": b"folder too long"})
    assert len(f"/sdcard/{deep}".encode()) == 1023

    report = sync(adb, tmp_path / "gallery")

    assert files_under(report.folder) == {"DCIM/Camera/IMG_1.jpg": b"one"}
    reasons = dict(report.skipped)
    assert reasons[f"/sdcard/{deep}/IMG_2.jpg"].startswith("path longer than 1024 bytes")
    assert reasons[f"/sdcard/{deep}/Sub"].startswith("path longer than 1024 bytes")
    assert not any(len(path.encode()) > 1024 for path in phone.recv_paths)


def test_names_of_251_to_255_bytes_are_copied(adb, make_phone, tmp_path):
    names = ["x" * (length - 4) + ".jpg" for length in (251, 255)] + ["é" * 125 + "ab.jpg"]
    assert [len(n.encode()) for n in names] == [251, 255, 256]
    phone = make_phone({f"DCIM/Camera/{name}": name.encode()[:50] for name in names[:2]})
    phone.extra_files[f"{CAMERA}/{names[2]}"] = b"too long here"

    report = sync(adb, tmp_path / "gallery")

    assert files_under(report.folder / "DCIM/Camera") == {n: n.encode()[:50] for n in names[:2]}
    assert len(part_path(report.folder / "DCIM/Camera" / names[1]).name) < 30
    (name, reason), = report.skipped
    assert name == f"{CAMERA}/{names[2]}" and reason.startswith("name longer than 255 bytes")


def test_names_with_control_characters_are_refused(adb, make_phone, tmp_path):
    bad = ["new\nline.jpg", "tab\there.jpg", "bell\x07.jpg", "esc\x1b[31mred.jpg", "del\x7f.jpg",
           "c1\x85.jpg"]
    phone = make_phone({"DCIM/Camera/fine.jpg": b"fine"})
    for name in bad:
        phone.extra_files[f"{CAMERA}/{name}"] = b"bad"
    (phone.root / "DCIM/Camera/dir\nname").mkdir()
    (phone.root / "DCIM/Camera/dir\nname/IMG_1.jpg").write_bytes(b"inside")

    report = sync(adb, tmp_path / "gallery")

    assert files_under(report.folder) == {"DCIM/Camera/fine.jpg": b"fine"}
    refused = {name for name, reason in report.skipped if "control character" in reason}
    assert refused == {f"{CAMERA}/{display_name(name)}" for name in [*bad, "dir\nname"]}
    assert phone.recv_paths == [f"{CAMERA}/fine.jpg"]
    summary = report.summary()
    assert "refused /sdcard/DCIM/Camera/new\\nline.jpg: unsafe name" in summary
    assert all(line.startswith("  ") for line in summary.splitlines()[1:])
    assert "\x1b" not in summary and "\x07" not in summary


def test_background_sync_reports_a_limit_and_signals_the_photos_it_copied(adb, make_phone,
                                                                         tmp_path):
    from device.background_sync import BackgroundSync

    phone = make_phone({"DCIM/Camera/IMG_1.jpg": b"one"})
    (phone.root / "DCIM/Camera/Endless").mkdir()
    phone.endless_folders.add(f"{CAMERA}/Endless")
    background = BackgroundSync(tmp_path / "gallery", adb_port=adb.port, originals=True)
    background.start()
    assert background.done.wait(20)
    assert "the limit per folder" in background.error and "Traceback" not in background.error
    assert background.status.startswith("phone: stopped listing")
    assert background.gallery_changed.is_set()          # IMG_1 arrived: the index looks
    assert [p.name for p in background.report.pulled] == ["IMG_1.jpg"]
