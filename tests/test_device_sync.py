"""Phone sync against a real adb server and a stand-in phone speaking the ADB protocol."""
from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from device.adb_server import parse_device_line
from device.phone_errors import PhoneConnectionLost, PhoneError
from device.phone_sync import normalise_folder, safe_serial, sync_phone, unsafe_name_reason
from tools.fixtures.fake_phone import AdbServer, FakePhone

MTIME = 1_690_000_000


@pytest.fixture
def phone_factory(adb: AdbServer, tmp_path: Path):
    """Makes connected stand-in phones; each serves {relative path: bytes} as its /sdcard."""
    phones: list[FakePhone] = []

    def make(files: dict[str, bytes], name: str = "phone", **options) -> FakePhone:
        root = tmp_path / name
        for relative, data in files.items():
            write_file(root / relative, data)
        root.mkdir(parents=True, exist_ok=True)
        phone = FakePhone(root, **options).start()
        phones.append(phone)
        if options.get("unauthorized"):
            adb.connect(phone, state="unauthorized")
        else:
            adb.connect(phone)
        return phone

    yield make
    for phone in phones:
        adb.disconnect(phone)
        phone.stop()


def write_file(path: Path, data: bytes, mtime: int = MTIME) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))


def local_files(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def sync(adb: AdbServer, dest: Path, **kwargs):
    kwargs.setdefault("originals", True)      # byte-for-byte copies: these photos are not images
    return sync_phone(dest, adb_port=adb.port, timeout=5, show_progress=False, **kwargs)


CAMERA = {
    "DCIM/Camera/IMG_0001.jpg": b"jpeg-1" * 100,
    "DCIM/Camera/IMG_0002.HEIC": b"heic-2" * 50,
    "DCIM/Camera/Screenshot.PNG": b"png" * 10,
    "DCIM/Camera/sticker.webp": b"webp",
    "DCIM/Camera/Burst/IMG_0003.jpeg": b"burst" * 30,
    "DCIM/Camera/VID_0001.mp4": b"video" * 1000,
    "DCIM/Camera/.trashed-1700000000-IMG_0000.jpg": b"binned",
    "DCIM/Camera/.pending-1700000000-IMG_0009.jpg": b"half",
    "DCIM/Camera/.thumbnails/IMG_0001.jpg": b"thumb",
    "Pictures/Screenshots/shot.png": b"screen",
}
CAMERA_PHOTOS = ["DCIM/Camera/Burst/IMG_0003.jpeg", "DCIM/Camera/IMG_0001.jpg",
                 "DCIM/Camera/IMG_0002.HEIC", "DCIM/Camera/Screenshot.PNG",
                 "DCIM/Camera/sticker.webp"]


def test_first_sync_copies_photos_only_then_only_changes(adb, phone_factory, tmp_path):
    phone = phone_factory(CAMERA)
    dest = tmp_path / "gallery"
    calls: list[tuple[int, int, str]] = []

    report = sync(adb, dest, progress=lambda done, total, name: calls.append((done, total, name)))

    folder = dest / phone.serialno
    assert report.folder == folder
    assert local_files(folder) == {p: CAMERA[p] for p in CAMERA_PHOTOS}
    assert sorted(p.relative_to(folder).as_posix() for p in report.pulled) == CAMERA_PHOTOS
    assert report.bytes == sum(len(CAMERA[p]) for p in CAMERA_PHOTOS)
    assert all(int((folder / p).stat().st_mtime) == MTIME for p in CAMERA_PHOTOS)
    reasons = dict(report.skipped)
    assert reasons["/sdcard/DCIM/Camera/VID_0001.mp4"] == "not a photo (.mp4)"
    assert reasons["/sdcard/DCIM/Camera/.trashed-1700000000-IMG_0000.jpg"] == "in the phone's trash"
    assert reasons["/sdcard/DCIM/Camera/.pending-1700000000-IMG_0009.jpg"] == "still being written"
    assert [c[:2] for c in calls] == [(i, 5) for i in range(5)] + [(5, 5)]
    assert calls[-1][2] == "" and all(c[2].startswith("/sdcard/DCIM/Camera/") for c in calls[:-1])
    assert report.to_dict()["bytes"] == report.bytes
    assert (dest / ".sketch-search" / "sync.sqlite").is_file()

    phone.recv_paths.clear()
    again = sync(adb, dest)
    assert (again.pulled, again.unchanged, again.bytes) == ([], 5, 0)
    assert phone.recv_paths == []

    # A new size, or the same size with a new time, is a changed photo.
    write_file(phone.root / "DCIM/Camera/IMG_0001.jpg", b"edited", MTIME + 60)
    write_file(phone.root / "DCIM/Camera/sticker.webp", b"WEBP", MTIME + 60)
    changed = sync(adb, dest)
    assert sorted(p.name for p in changed.pulled) == ["IMG_0001.jpg", "sticker.webp"]
    assert changed.unchanged == 3
    assert (folder / "DCIM/Camera/IMG_0001.jpg").read_bytes() == b"edited"
    assert (folder / "DCIM/Camera/sticker.webp").read_bytes() == b"WEBP"


def test_deleted_on_phone_kept_unless_mirror(adb, phone_factory, tmp_path):
    phone = phone_factory(CAMERA)
    dest = tmp_path / "gallery"
    report = sync(adb, dest, folders=["DCIM/Camera", "/sdcard/Pictures/Screenshots"])
    assert len(report.pulled) == 6
    folder = report.folder
    (phone.root / "DCIM/Camera/IMG_0002.HEIC").unlink()
    (phone.root / "Pictures/Screenshots/shot.png").unlink()

    kept = sync(adb, dest, folders=["DCIM/Camera", "Pictures/Screenshots"])
    assert kept.deleted == [] and (folder / "DCIM/Camera/IMG_0002.HEIC").exists()

    # Screenshots now lists no photo at all: mirroring refuses to empty a whole folder.
    mirrored = sync(adb, dest, folders=["DCIM/Camera", "Pictures/Screenshots"], mirror=True)
    assert mirrored.deleted == [folder / "DCIM/Camera/IMG_0002.HEIC"]
    assert not (folder / "DCIM/Camera/IMG_0002.HEIC").exists()
    assert (folder / "Pictures/Screenshots/shot.png").exists()
    assert ("/sdcard/Pictures/Screenshots", "not mirrored: the phone lists no photos there; "
            "delete the local copies yourself if that is right") in mirrored.skipped
    assert (folder / "DCIM/Camera/IMG_0001.jpg").exists()


def test_awkward_names_copied_and_escaping_names_refused(adb, phone_factory, tmp_path):
    awkward = ["my holiday photo.jpg", "it's \"quoted\".jpg", "a;b&c|d.jpg", "$(touch pwned).jpg",
               "café_日本_😀.jpg", "-rf.png"]
    phone = phone_factory({f"DCIM/Camera/{name}": name.encode() for name in awkward})
    hostile = {"/sdcard/DCIM/Camera/../escape.jpg", "/sdcard/DCIM/Camera/sub/../../x.jpg",
               "/sdcard/DCIM/Camera/back\\slash.jpg"}
    for path in hostile:
        phone.extra_files[path] = b"hostile"
    dest = tmp_path / "gallery"

    report = sync(adb, dest)

    camera = report.folder / "DCIM" / "Camera"
    assert local_files(camera) == {name: name.encode() for name in awkward}
    refused = {name for name, reason in report.skipped if reason.startswith("unsafe")}
    assert refused == hostile
    assert not any(p.name in ("escape.jpg", "x.jpg") for p in tmp_path.rglob("*"))
    assert not hostile & set(phone.recv_paths)
    assert not (Path.cwd() / "pwned").exists()
    assert "refused /sdcard/DCIM/Camera/../escape.jpg" in report.summary()


def test_cable_pulled_mid_file_leaves_no_partial_photo_and_resume_completes(
        adb, phone_factory, tmp_path):
    photos = {f"DCIM/Camera/IMG_{i}.jpg": bytes([i]) * 150_000 for i in range(1, 4)}
    phone = phone_factory(photos)
    phone.drop_after_bytes = 200_000            # a third of the way into the second photo
    dest = tmp_path / "gallery"

    with pytest.raises(PhoneConnectionLost, match="sync again"):
        sync(adb, dest)

    camera = dest / phone.serialno / "DCIM" / "Camera"
    assert sorted(os.listdir(camera)) == ["IMG_1.jpg"]      # no partial photo, no temp file
    assert (camera / "IMG_1.jpg").read_bytes() == photos["DCIM/Camera/IMG_1.jpg"]

    adb.connect(phone)
    resumed = sync(adb, dest)
    assert sorted(p.name for p in resumed.pulled) == ["IMG_2.jpg", "IMG_3.jpg"]
    assert resumed.unchanged == 1
    assert local_files(camera) == {k.rsplit("/", 1)[1]: v for k, v in photos.items()}

    # A changed photo cut off mid-copy keeps its earlier copy whole.
    write_file(phone.root / "DCIM/Camera/IMG_2.jpg", b"new" * 60_000, MTIME + 60)
    phone.drop_after_bytes = phone.data_bytes_sent + 50_000
    with pytest.raises(PhoneConnectionLost):
        sync(adb, dest)
    assert local_files(camera) == {k.rsplit("/", 1)[1]: v for k, v in photos.items()}
    adb.connect(phone)
    assert [p.name for p in sync(adb, dest).pulled] == ["IMG_2.jpg"]
    assert (camera / "IMG_2.jpg").read_bytes() == b"new" * 60_000


def test_a_phone_that_stops_answering_times_out(adb, phone_factory, tmp_path):
    phone = phone_factory({"DCIM/Camera/IMG_1.jpg": b"a" * 100_000})
    phone.stall_after_bytes = 10_000
    with pytest.raises(PhoneConnectionLost, match="sent nothing for 1 s.*sync again"):
        sync_phone(tmp_path / "gallery", adb_port=adb.port, timeout=1, show_progress=False,
                   originals=True)
    assert local_files(tmp_path / "gallery" / phone.serialno) == {}


def test_phone_refusing_one_file_skips_it_and_copies_the_rest(adb, phone_factory, tmp_path):
    phone = phone_factory({f"DCIM/Camera/IMG_{i}.jpg": b"x" * i for i in range(1, 4)})
    phone.unreadable.add("/sdcard/DCIM/Camera/IMG_2.jpg")

    report = sync(adb, tmp_path / "gallery")

    assert sorted(p.name for p in report.pulled) == ["IMG_1.jpg", "IMG_3.jpg"]
    (name, reason), = report.skipped
    assert name == "/sdcard/DCIM/Camera/IMG_2.jpg" and "Permission denied" in reason


def test_two_phones_need_a_serial_and_never_collide(adb, phone_factory, tmp_path):
    first = phone_factory({"DCIM/Camera/IMG_0001.jpg": b"first"}, name="first")
    second = phone_factory({"DCIM/Camera/IMG_0001.jpg": b"second"}, name="second",
                           model="SM-A546B")
    dest = tmp_path / "gallery"

    with pytest.raises(PhoneError, match="several phones.*--serial") as error:
        sync(adb, dest)
    assert first.serial in str(error.value) and second.serial in str(error.value)

    sync(adb, dest, serial=first.serial)
    sync(adb, dest, serial=second.serial)
    assert local_files(dest / first.serialno) == {"DCIM/Camera/IMG_0001.jpg": b"first"}
    assert local_files(dest / second.serialno) == {"DCIM/Camera/IMG_0001.jpg": b"second"}
    with sqlite3.connect(dest / ".sketch-search" / "sync.sqlite") as db:
        assert db.execute("SELECT COUNT(DISTINCT serial) FROM synced_photo").fetchone() == (2,)


def test_unauthorized_phone_says_to_accept_the_prompt(adb, phone_factory, tmp_path):
    phone = phone_factory({"DCIM/Camera/IMG_1.jpg": b"x"}, unauthorized=True)
    with pytest.raises(PhoneError, match=f"{phone.serial} has not authorised.*accept"):
        sync(adb, tmp_path / "gallery")
    assert not (tmp_path / "gallery").exists()


def test_offline_phone_says_to_replug(adb, tmp_path):
    phone = FakePhone(tmp_path, offline=True).start()
    connecting = adb.connect_in_background(phone)
    try:
        adb.wait_for_state(phone.serial, "offline")
        with pytest.raises(PhoneError, match="offline.*replug"):
            sync(adb, tmp_path / "gallery")
    finally:
        connecting.kill()
        connecting.wait()
        adb.disconnect(phone)
        phone.stop()


def test_no_phone_and_unknown_serial(adb, tmp_path):
    with pytest.raises(PhoneError, match="no phone found.*USB debugging"):
        sync(adb, tmp_path / "gallery")
    with pytest.raises(PhoneError, match="no phone with serial R5CW"):
        sync(adb, tmp_path / "gallery", serial="R5CW")


@pytest.mark.parametrize("folder, parts", [
    ("DCIM/Camera", ("DCIM", "Camera")),
    ("/sdcard/Pictures/Screenshots/", ("Pictures", "Screenshots")),
    ("/storage/emulated/0/DCIM", ("DCIM",)),
])
def test_folder_names_are_read_relative_to_sdcard(folder, parts):
    assert normalise_folder(folder) == parts


@pytest.mark.parametrize("folder", ["../data", "/data/data", "DCIM/../../etc", "/sdcard", ""])
def test_folders_outside_sdcard_are_refused(folder):
    with pytest.raises(PhoneError, match="not a folder under /sdcard"):
        normalise_folder(folder)


def test_names_and_serials():
    assert safe_serial("127.0.0.1:5555") == "127.0.0.1_5555"
    assert safe_serial("../..") == "_.."
    assert safe_serial("R5CW12345") == "R5CW12345"
    for name in ("..", ".", "a/b.jpg", "a\\b.jpg", "a\0.jpg", ""):
        assert unsafe_name_reason(name)
    assert unsafe_name_reason("it's a photo; yes.jpg") is None
    line = ("0123456789ABCDEF       no permissions (user in plugdev group; are your udev rules "
            "wrong?); see [http://developer.android.com/tools/device.html] usb:1-1")
    info = parse_device_line(line)
    assert info.state.startswith("no permissions") and info.usb == "1-1"
    info = parse_device_line("R5CW123 device usb:1-2 product:dm3qxxx model:SM_S918B device:dm3q "
                             "transport_id:3")
    assert (info.serial, info.state, info.model, info.product) == \
        ("R5CW123", "device", "SM_S918B", "dm3qxxx")
