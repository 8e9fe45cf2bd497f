"""Photos pulled from a (stand-in) phone through a real adb server are searched by main2."""
from __future__ import annotations

import io
import json

import pytest
from PIL import Image
from skimage import data as photos

from device.phone_sync import sync_phone
from sketch_search.app import find as main2
from tools.fixtures.fake_phone import stand_in_phone
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints


def jpeg(name: str) -> bytes:
    image = Image.fromarray(getattr(photos, name)()).convert("RGB")
    image.thumbnail((300, 300))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


@pytest.fixture()
def phone(tmp_path):
    root = tmp_path / "sdcard"
    files = {"DCIM/Camera/IMG 0001 cat.jpg": jpeg("chelsea"),
             "DCIM/Camera/IMG_0002.jpg": jpeg("astronaut"),
             "DCIM/Camera/IMG_0003.jpg": jpeg("coffee"),
             "DCIM/Camera/VID_0004.mp4": b"\x00\x00\x00 ftypisom not a photo"}
    for relative, content in files.items():
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        (root / relative).write_bytes(content)
    with stand_in_phone(root, tmp_path / "adb-home") as (adb, device):
        yield adb, device


def test_main2_searches_the_synced_phone_gallery(phone, tmp_path):
    adb, device = phone
    dest = tmp_path / "gallery"
    report = sync_phone(dest, adb_port=adb.port, show_progress=False)
    assert len(report.pulled) == 3
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    out = tmp_path / "out.json"
    sketch = tmp_path / "sketch.png"
    image = Image.new("RGB", (200, 200), "white")
    image.paste((0, 0, 0), (50, 50, 150, 60))
    image.save(sketch)
    assert main2.main(["--image_path", str(sketch), "--gallery", str(dest), "--checkpoints",
                       str(checkpoints), "--json", str(out), "--output", str(tmp_path / "g.png")]) == 0
    result = json.loads(out.read_text())
    names = sorted(path.rsplit("/", 1)[1] for path in (hit["path"] for hit in result["results"]))
    assert names == ["IMG 0001 cat.jpg", "IMG_0002.jpg", "IMG_0003.jpg"]
    assert result["index"]["added"] == 3 and result["index"]["skipped"] == []
    # Everything synced lives in the phone's own subfolder, the sync state stays hidden.
    assert all(f"/{device.serialno}/" in hit["path"] for hit in result["results"])


def test_main_py_pulls_the_phone_in_the_background_and_searches_it(phone, tmp_path):
    from tests.hand_video import child_env, hand_video_frames, run_main, write_video
    adb, device = phone
    gallery = tmp_path / "gallery"  # does not exist yet: main.py makes it for the phone's photos
    sketches = tmp_path / "sketches"
    video = write_video(tmp_path / "circle.avi", hand_video_frames())
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    done = run_main("--source", str(video), "--no-window", "--sketch-dir", str(sketches),
                    "--checkpoints", str(checkpoints), "--gallery", str(gallery),
                    "--adb-port", str(adb.port), env=child_env(HOME=str(adb.env["HOME"])),
                    timeout=300)
    assert done.returncode == 0, done.stderr
    pulled = sorted(p.name for p in gallery.rglob("*.jpg"))
    assert pulled == ["IMG 0001 cat.jpg", "IMG_0002.jpg", "IMG_0003.jpg"]
    (result_file,) = sketches.glob("sketch-*.json")
    result = json.loads(result_file.read_text())
    assert sorted(hit["path"].rsplit("/", 1)[1] for hit in result["results"]) == pulled
