"""Lean sync (the default) against the stand-in phone through a real adb server: one small
image per photo from the phone's own thumbnail, every fallback and bound, the commands asked,
a second sync transferring nothing, --originals byte for byte, and an older gallery of
originals left as it is."""
from __future__ import annotations

import os
import shlex
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from device.__main__ import main as device_main
from device.phone_sync import sync_phone
from device.sync_state import SyncState
from tools.fixtures.fake_phone import FakePhone
from tools.fixtures.photos import camera_jpeg

CAMERA = "DCIM/Camera"
MTIME = 1_709_284_500            # 2024-03-01 09:15:00 UTC: 10:15 in Berlin
MEDIA = "content://media/external/images/media"


def put(root: Path, name: str, data: bytes, mtime: int = MTIME) -> Path:
    path = root / CAMERA / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def phone(adb, tmp_path) -> Iterator[FakePhone]:
    root = tmp_path / "sdcard"
    (root / CAMERA).mkdir(parents=True)
    fake = FakePhone(root).start()
    adb.connect(fake)
    yield fake
    adb.disconnect(fake)
    fake.stop()


def sync(adb, dest: Path, **kwargs):
    kwargs.setdefault("timeout", 3)
    return sync_phone(dest, adb_port=adb.port, show_progress=False, **kwargs)


def kept(folder: Path) -> dict[str, Path]:
    """Every file in the phone's folder, hidden ones included (none may be left)."""
    return {p.relative_to(folder).as_posix(): p for p in sorted(folder.rglob("*")) if p.is_file()}


def exif_date(path: Path) -> str | None:
    with Image.open(path) as image:
        return image.getexif().get_ifd(0x8769).get(36867)


def argvs(commands: list[str]) -> list[list[str]]:
    return [shlex.split(line) for line in commands]


def check_kept(path: Path, mtime: int = MTIME) -> None:
    with Image.open(path) as image:
        image.load()
        assert image.format == "JPEG"
        assert min(image.size) >= 256 and max(image.size) <= 1024, image.size
    assert int(path.stat().st_mtime) == mtime


NAMES = ["20240301_101500.jpg", "IMG_0002.JPG", "it's $(touch INJECTED) `id`.jpg",
         "Screenshot_1.png"]


def test_lean_sync_keeps_the_phones_thumbnails(adb, phone, tmp_path):
    for index, name in enumerate(NAMES):
        fmt = "PNG" if name.endswith(".png") else "JPEG"
        data = camera_jpeg(1600, 1200, index) if fmt == "JPEG" else None
        if data is None:
            from io import BytesIO
            out = BytesIO()
            Image.new("RGB", (1080, 1920), "navy").save(out, format="PNG")
            data = out.getvalue()
        put(phone.root, name, data)
    report = sync(adb, tmp_path / "gallery")

    files = kept(report.folder)
    assert sorted(files) == sorted([f"{CAMERA}/20240301_101500.jpg", f"{CAMERA}/IMG_0002.JPG",
                                    f"{CAMERA}/it's $(touch INJECTED) `id`.jpg",
                                    f"{CAMERA}/Screenshot_1.jpg"])
    for path in files.values():
        check_kept(path)
        assert exif_date(path) == "2024:03:01 10:15:00"       # datetaken in Europe/Berlin
    assert report.fell_back == [] and report.skipped == []
    assert phone.recv_paths == []                               # no original pulled
    assert phone.thumbnail_reads == len(NAMES)
    assert report.bytes < sum(p.stat().st_size for p in (phone.root / CAMERA).iterdir())
    # What was asked: one listing query, one thumbnail read per photo, each word quoted.
    asked = argvs(phone.exec_commands)
    assert asked[0] == ["content", "query", "--uri", MEDIA, "--projection", "_id:datetaken:_data"]
    ids = sorted(phone.media.values())
    assert sorted(asked[1:]) == sorted(["content", "read", "--uri", f"{MEDIA}/{i}/thumbnail"]
                                       for i in ids)
    assert argvs(phone.shell_commands) == [["getprop", "ro.serialno"],
                                          ["getprop", "persist.sys.timezone"]]
    assert not (Path.cwd() / "INJECTED").exists()
    with SyncState(tmp_path / "gallery") as state:
        assert all(row.lean for row in state.photos(report.serial).values())

    # A second sync of the unchanged phone reads no thumbnail and pulls no file.
    phone.exec_commands.clear()
    again = sync(adb, tmp_path / "gallery")
    assert (again.pulled, again.unchanged, again.bytes) == ([], len(NAMES), 0)
    assert phone.exec_commands == [] and phone.recv_paths == []


FAULTS = ["refuse", "garbage", "endless", "stall", "huge", "small", "unknown"]


def test_every_bad_thumbnail_falls_back_to_the_shrunk_original(adb, phone, tmp_path):
    put(phone.root, "good.jpg", camera_jpeg(1200, 900, 0))
    for index, fault in enumerate(FAULTS):
        put(phone.root, f"{fault}.jpg", camera_jpeg(2000, 1500, index + 1))
        phone.thumbnail_faults[f"/sdcard/{CAMERA}/{fault}.jpg"] = fault
    # taken sideways: the kept image is turned upright (EXIF orientation 6: rotate 90 clockwise)
    put(phone.root, "sideways.jpg", camera_jpeg(1600, 1200, 9, orientation=6))
    phone.thumbnail_faults[f"/sdcard/{CAMERA}/sideways.jpg"] = "unknown"
    phone.timezone = ""                                          # unknown: written in UTC

    report = sync(adb, tmp_path / "gallery")

    files = kept(report.folder)
    names = ["good.jpg", *(f"{fault}.jpg" for fault in FAULTS), "sideways.jpg"]
    assert sorted(files) == sorted(f"{CAMERA}/{name}" for name in names)
    for relative, path in files.items():
        check_kept(path)
        unknown = relative.endswith(("/unknown.jpg", "/sideways.jpg"))   # no datetaken for them
        assert exif_date(path) == (None if unknown else "2024:03:01 09:15:00")
    with Image.open(files[f"{CAMERA}/sideways.jpg"]) as upright:
        assert upright.size == (768, 1024)
    with Image.open(files[f"{CAMERA}/refuse.jpg"]) as shrunk:
        assert shrunk.size == (1024, 768)                       # the original, shrunk
    fell_back = dict(report.fell_back)
    assert sorted(fell_back) == sorted(f"/sdcard/{CAMERA}/{n}" for n in names[1:])
    assert all("\n" not in reason for reason in fell_back.values())
    assert "256" in fell_back[f"/sdcard/{CAMERA}/small.jpg"]
    assert "media store" in fell_back[f"/sdcard/{CAMERA}/unknown.jpg"]
    assert "over 4194304 bytes" in fell_back[f"/sdcard/{CAMERA}/huge.jpg"]
    assert "over 4194304 bytes" in fell_back[f"/sdcard/{CAMERA}/endless.jpg"]
    assert "in time" in fell_back[f"/sdcard/{CAMERA}/stall.jpg"]
    assert sorted(phone.recv_paths) == sorted(fell_back)        # only those were pulled

    # Fallbacks are kept lean too: the next sync asks for nothing.
    phone.exec_commands.clear()
    phone.recv_paths.clear()
    again = sync(adb, tmp_path / "gallery")
    assert (again.pulled, again.unchanged) == ([], len(names))
    assert phone.exec_commands == [] and phone.recv_paths == []


def test_a_photo_deleted_before_its_read_is_skipped_and_the_rest_kept(adb, phone, tmp_path):
    put(phone.root, "stays.jpg", camera_jpeg(1200, 900, 1))
    put(phone.root, "goes.jpg", camera_jpeg(1200, 900, 2), mtime=MTIME + 60)
    phone.thumbnail_faults[f"/sdcard/{CAMERA}/goes.jpg"] = "deleted"
    report = sync(adb, tmp_path / "gallery")
    assert sorted(kept(report.folder)) == [f"{CAMERA}/stays.jpg"]
    ((name, reason),) = report.skipped
    assert name == f"/sdcard/{CAMERA}/goes.jpg" and "\n" not in reason
    assert "refused" in reason


def test_an_original_that_is_no_image_is_skipped_in_one_line(adb, phone, tmp_path):
    put(phone.root, "fine.jpg", camera_jpeg(1200, 900, 1))
    put(phone.root, "broken.jpg", b"\xff\xd8\xff not really a photo")
    report = sync(adb, tmp_path / "gallery")
    assert sorted(kept(report.folder)) == [f"{CAMERA}/fine.jpg"]
    ((name, reason),) = report.skipped
    assert name == f"/sdcard/{CAMERA}/broken.jpg" and "not kept" in reason


def test_heic_and_jpeg_of_one_stem_keep_apart(adb, phone, tmp_path):
    put(phone.root, "IMG_1.heic", camera_jpeg(1200, 900, 1))   # a JPEG inside: the thumbnail
    put(phone.root, "IMG_1.jpg", camera_jpeg(1200, 900, 2))
    put(phone.root, "IMG_2.heic", camera_jpeg(1200, 900, 3))
    report = sync(adb, tmp_path / "gallery")
    assert sorted(kept(report.folder)) == [f"{CAMERA}/IMG_1.heic.jpg", f"{CAMERA}/IMG_1.jpg",
                                           f"{CAMERA}/IMG_2.jpg"]


def test_originals_are_kept_byte_for_byte_and_left_as_they_are(adb, phone, tmp_path):
    photos = {name: camera_jpeg(1200, 900, i) for i, name in enumerate(["a.jpg", "b.jpg"])}
    for name, data in photos.items():
        put(phone.root, name, data)
    gallery = tmp_path / "gallery"
    assert device_main(["--adb-port", str(adb.port), "sync", "--dest", str(gallery),
                        "--originals", "--json"]) == 0
    folder = gallery / phone.serialno
    assert {p: f.read_bytes() for p, f in kept(folder).items()} == {
        f"{CAMERA}/{name}": data for name, data in photos.items()}
    assert phone.exec_commands == []

    # The new default never re-pulls, shrinks or deletes what an earlier sync kept whole...
    phone.recv_paths.clear()
    put(phone.root, "c.jpg", camera_jpeg(1200, 900, 7), mtime=MTIME + 5)
    report = sync(adb, gallery)
    files = kept(folder)
    assert {p: files[f"{CAMERA}/{p}"].read_bytes() for p in photos} == photos
    assert [p.name for p in report.pulled] == ["c.jpg"] and phone.recv_paths == []
    check_kept(files[f"{CAMERA}/c.jpg"], MTIME + 5)               # ...only new photos are lean
    with SyncState(gallery) as state:
        rows = state.photos(report.serial)
    assert {Path(p).name: row.lean for p, row in rows.items()} == {"a.jpg": False, "b.jpg": False,
                                                                   "c.jpg": True}


def test_a_cable_pulled_during_a_read_ends_the_sync_in_one_line_and_keeps_the_rest(adb, phone,
                                                                                  tmp_path):
    from device.phone_errors import PhoneConnectionLost

    put(phone.root, "newest.jpg", camera_jpeg(1200, 900, 1), mtime=MTIME + 20)
    put(phone.root, "middle.jpg", camera_jpeg(1200, 900, 2), mtime=MTIME + 10)
    put(phone.root, "oldest.jpg", camera_jpeg(1200, 900, 3), mtime=MTIME)
    phone.thumbnail_faults[f"/sdcard/{CAMERA}/middle.jpg"] = "cut"
    gallery = tmp_path / "gallery"
    with pytest.raises(PhoneConnectionLost) as lost:
        sync(adb, gallery)
    assert "\n" not in str(lost.value) and "sync again" in str(lost.value)
    folder = gallery / phone.serialno
    left = kept(folder)
    assert all(not name.rsplit("/", 1)[1].startswith(".") for name in left)   # nothing partial
    assert f"{CAMERA}/middle.jpg" not in left
    for path in left.values():
        check_kept(path, int(path.stat().st_mtime))

    del phone.thumbnail_faults[f"/sdcard/{CAMERA}/middle.jpg"]
    adb.connect(phone)                                   # plugged in again: the rest arrives
    report = sync(adb, gallery)
    assert sorted(kept(folder)) == [f"{CAMERA}/{n}" for n in ("middle.jpg", "newest.jpg",
                                                               "oldest.jpg")]
    assert report.unchanged == len(left)


@pytest.fixture
def small_disk(tmp_path) -> Iterator[Path]:
    """A 256 KiB tmpfs: a real disk that fills (mounting needs root, as CI runs)."""
    import subprocess
    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        if os.environ.get("CI") == "true":
            pytest.fail(f"cannot mount a small tmpfs under CI: {done.stderr.strip()}")
        pytest.skip(f"a full disk needs a small tmpfs, and mounting one failed: {done.stderr.strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_disk_that_fills_ends_the_sync_in_one_line_and_keeps_what_was_kept(adb, phone, small_disk):
    from sketch_search.common.errors import GalleryError

    for index in range(60):                     # far more thumbnails than 256 KiB hold
        put(phone.root, f"IMG_{index:04d}.jpg", camera_jpeg(1200, 900, index), mtime=MTIME + index)
    gallery = small_disk / "gallery"
    with pytest.raises(GalleryError) as full:
        sync(adb, gallery)
    message = str(full.value)
    assert "\n" not in message and "space" in message, message
    folder = gallery / phone.serialno
    left = kept(folder)
    assert 0 < len(left) < 60
    assert all(not name.rsplit("/", 1)[1].startswith(".") for name in left)   # nothing partial
    for path in left.values():
        check_kept(path, int(path.stat().st_mtime))
    with SyncState(gallery) as state:
        recorded = {Path(p).name for p in state.photos(phone.serialno)}
    assert recorded == {Path(name).name for name in left}       # the record lists what is kept


def sync_in_a_fresh_process(adb, gallery: Path) -> Path:
    """`python -m device sync --dest gallery` in its own process (Pillow as that program sets it
    up, nothing else imported); it must succeed."""
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-m", "device", "--adb-port", str(adb.port), "sync",
                           "--dest", str(gallery), "--json"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    return gallery


def test_a_heic_original_falls_back_and_is_shrunk_in_a_fresh_process(adb, phone, tmp_path):
    """The fallback decodes a Galaxy's HEIC original itself: `python -m device sync` never
    imports the gallery's decoder, so nothing else has taught Pillow HEIC in that process."""
    import skimage.data

    from sketch_search.common.heif import register_heif

    assert register_heif()
    heic = tmp_path / "IMG_7.heic"
    Image.fromarray(skimage.data.chelsea()).resize((1200, 900)).save(heic, quality=90)
    put(phone.root, "IMG_7.heic", heic.read_bytes())
    phone.thumbnail_faults[f"/sdcard/{CAMERA}/IMG_7.heic"] = "refuse"
    gallery = sync_in_a_fresh_process(adb, tmp_path / "gallery")
    assert sorted(kept(gallery / phone.serialno)) == [f"{CAMERA}/IMG_7.jpg"]
    check_kept(gallery / phone.serialno / CAMERA / "IMG_7.jpg")


def test_a_200_megapixel_original_falls_back_and_is_shrunk_in_a_fresh_process(adb, phone, tmp_path):
    """A Galaxy S2x Ultra's 200 MP original (12240 x 16320) passes the decompression-bomb bar in
    `python -m device sync`, where the gallery's decoder is never imported: the bar is set where
    the shrinking's decoder and the gallery's share it (sketch_search/common/heif.py)."""
    import io

    out = io.BytesIO()
    Image.new("L", (12240, 16320), 128).save(out, format="JPEG", quality=80)
    put(phone.root, "IMG_200MP.jpg", out.getvalue())
    phone.thumbnail_faults[f"/sdcard/{CAMERA}/IMG_200MP.jpg"] = "refuse"
    gallery = sync_in_a_fresh_process(adb, tmp_path / "gallery")
    assert sorted(kept(gallery / phone.serialno)) == [f"{CAMERA}/IMG_200MP.jpg"]
    check_kept(gallery / phone.serialno / CAMERA / "IMG_200MP.jpg")
