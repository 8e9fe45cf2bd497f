"""One phone, one identity: the sync's folder and record follow the phone's own serial
(ro.serialno), not adb's transport serial (IP:PORT over Wi-Fi, new each session); and the sync
pulls newest first."""
from __future__ import annotations

import os
from pathlib import Path

from device.phone_sync import sync_phone
from device.show_on_phone import PhoneOrigin, phone_origin
from device.sync_state import SyncedPhoto, SyncState
from tools.fixtures.fake_phone import AdbServer, FakePhone

MTIME = 1_690_000_000
PHOTOS = {f"DCIM/Camera/IMG_{i:04d}.jpg": b"photo %d" % i for i in range(1, 5)}


def make_root(root: Path, files: dict[str, bytes], mtimes: dict[str, int] | None = None) -> Path:
    for relative, data in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        mtime = (mtimes or {}).get(relative, MTIME)
        os.utime(path, (mtime, mtime))
    return root


def sync(adb: AdbServer, dest: Path, **kwargs):
    kwargs.setdefault("originals", True)      # byte-for-byte copies: these photos are not images
    return sync_phone(dest, adb_port=adb.port, timeout=5, show_progress=False, **kwargs)


def connected(adb: AdbServer, root: Path, serialno: str) -> FakePhone:
    phone = FakePhone(root, serialno=serialno).start()
    adb.connect(phone)
    return phone


def leave(adb: AdbServer, phone: FakePhone) -> None:
    adb.disconnect(phone)
    phone.stop()


def test_one_phone_under_two_transport_serials_syncs_into_one_folder(adb, tmp_path):
    root = make_root(tmp_path / "sdcard", PHOTOS)
    dest = tmp_path / "gallery"
    # Wireless debugging gives the phone a new port each session: a new transport serial.
    monday = connected(adb, root, "R5CW30ABCDE")
    first = sync(adb, dest)
    leave(adb, monday)
    tuesday = connected(adb, root, "R5CW30ABCDE")
    try:
        assert tuesday.serial != monday.serial
        second = sync(adb, dest)
    finally:
        leave(adb, tuesday)

    assert first.folder == second.folder == dest / "R5CW30ABCDE"
    assert (first.serial, first.transport) == ("R5CW30ABCDE", monday.serial)
    assert (second.serial, second.transport) == ("R5CW30ABCDE", tuesday.serial)
    assert len(first.pulled) == 4
    assert (second.pulled, second.unchanged) == ([], 4)
    assert tuesday.recv_paths == []                         # nothing copied the second time
    assert [p.name for p in dest.iterdir() if not p.name.startswith(".")] == ["R5CW30ABCDE"]
    assert phone_origin(dest, dest / "R5CW30ABCDE/DCIM/Camera/IMG_0001.jpg") == PhoneOrigin(
        "R5CW30ABCDE", "/sdcard/DCIM/Camera/IMG_0001.jpg")


def test_a_folder_synced_the_old_way_stays_the_phones_without_a_re_pull(adb, tmp_path):
    """A gallery from before: the folder and the record keyed by yesterday's IP:PORT."""
    root = make_root(tmp_path / "sdcard", PHOTOS)
    dest = tmp_path / "gallery"
    old_folder = dest / "192.168.1.20_37891"
    make_root(old_folder, PHOTOS)
    with SyncState(dest) as state:
        for relative, data in PHOTOS.items():
            state.record("192.168.1.20:37891", SyncedPhoto(
                f"/sdcard/{relative}", len(data), MTIME, f"192.168.1.20_37891/{relative}"))
    (root / "DCIM/Camera/IMG_0009.jpg").write_bytes(b"taken since")

    phone = connected(adb, root, "R5CW30ABCDE")
    try:
        report = sync(adb, dest)
        again = sync(adb, dest)
    finally:
        leave(adb, phone)

    assert report.folder == old_folder
    assert [p.name for p in report.pulled] == ["IMG_0009.jpg"] and report.unchanged == 4
    assert phone.recv_paths == ["/sdcard/DCIM/Camera/IMG_0009.jpg"]
    assert (again.folder, again.pulled, again.unchanged) == (old_folder, [], 5)
    assert sorted(p.name for p in dest.iterdir() if not p.name.startswith(".")) == [
        "192.168.1.20_37891"]
    # The photos are now known as the phone's, by its own serial: show on phone finds it.
    assert phone_origin(dest, old_folder / "DCIM/Camera/IMG_0001.jpg") == PhoneOrigin(
        "R5CW30ABCDE", "/sdcard/DCIM/Camera/IMG_0001.jpg")


def test_an_old_record_of_another_phone_is_left_alone(adb, tmp_path):
    dest = tmp_path / "gallery"
    other = {"DCIM/Camera/IMG_0001.jpg": b"another phone's photo"}
    make_root(dest / "192.168.1.30_40000", other)
    with SyncState(dest) as state:
        state.record("192.168.1.30:40000", SyncedPhoto(
            "/sdcard/DCIM/Camera/IMG_0001.jpg", len(other["DCIM/Camera/IMG_0001.jpg"]), MTIME,
            "192.168.1.30_40000/DCIM/Camera/IMG_0001.jpg"))

    phone = connected(adb, make_root(tmp_path / "sdcard", PHOTOS), "R5CW30ABCDE")
    try:
        report = sync(adb, dest)
    finally:
        leave(adb, phone)

    assert report.folder == dest / "R5CW30ABCDE" and len(report.pulled) == 4
    assert phone_origin(dest, dest / "192.168.1.30_40000/DCIM/Camera/IMG_0001.jpg") == \
        PhoneOrigin("192.168.1.30:40000", "/sdcard/DCIM/Camera/IMG_0001.jpg")


def test_the_sync_pulls_newest_first_by_the_phones_time(adb, tmp_path):
    # Names in one order, times in the other: the listing's order is not the copying order.
    mtimes = {relative: MTIME + 3600 * index for index, relative in enumerate(sorted(PHOTOS))}
    mtimes["DCIM/Camera/IMG_0002.jpg"] = MTIME + 10 * 3600          # the newest
    phone = connected(adb, make_root(tmp_path / "sdcard", PHOTOS, mtimes), "R5CW30ABCDE")
    order: list[str] = []
    try:
        sync(adb, tmp_path / "gallery",
             progress=lambda done, total, path: order.append(path) if path else None)
    finally:
        leave(adb, phone)

    newest_first = sorted(PHOTOS, key=lambda relative: -mtimes[relative])
    assert order == [f"/sdcard/{relative}" for relative in newest_first]
    assert phone.recv_paths == order
