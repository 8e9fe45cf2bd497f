"""Time opening a lean photo large: its kept image, its original pulled from the stand-in phone
over a real adb server (and decoded, fitted), and the same photo again from the originals cache.

    python -m bench.bench_original_pull [--repeats 5]

The phone holds one camera-sized photo (4000 x 3000 JPEG, noise added so it weighs what a
phone photo weighs); the gallery keeps it lean (1024 px on its long side). Each round starts
with an empty cache. Loopback moves bytes for free, so the transfer at a USB 2 cable's 30 MB/s
and Wi-Fi adb's 8 MB/s is given from the bytes. Needs `adb` on PATH.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from device.originals_cache import OriginalsCache
from device.phone_sync import sync_phone
from device.sync_state import SyncState
from sketch_search.app.photo_view import OpenedPhoto, OriginalNote, PhotoViewer
from sketch_search.common.command import run_command
from tools.fixtures.fake_phone import stand_in_phone

PHOTO = "DCIM/Camera/20240301_101500.jpg"
VIEW = (640, 480)
RATES = {"USB 2 (30 MB/s)": 30e6, "Wi-Fi (8 MB/s)": 8e6}


def camera_photo(path: Path) -> None:
    picture = np.asarray(Image.fromarray(data.astronaut()).resize((4000, 3000), Image.BICUBIC))
    noise = np.random.default_rng(0).normal(0, 6, picture.shape)
    Image.fromarray(np.clip(picture + noise, 0, 255).astype(np.uint8)).save(path, quality=92)


def make_lean(gallery: Path, serial: str) -> Path:
    with SyncState(gallery) as state:
        record = next(iter(state.photos(serial).values()))
        kept = gallery / record.local_path
        with Image.open(kept) as image:
            image.thumbnail((1024, 1024))
            image.save(kept, quality=90)
        os.utime(kept, (record.mtime, record.mtime))
        state.record(serial, replace(record, lean=True))
    return kept


def open_and_time(viewer: PhotoViewer, path: Path) -> tuple[float | None, float]:
    """(seconds to the kept image, or None when the original came first; seconds to the
    original)."""
    start = time.perf_counter()
    viewer.open(path, VIEW)
    kept = None
    while True:
        for result in viewer.results():
            if isinstance(result, OpenedPhoto) and not result.original:
                kept = time.perf_counter() - start
            elif isinstance(result, OpenedPhoto):
                return kept, time.perf_counter() - start
            elif isinstance(result, OriginalNote):
                raise SystemExit(f"no original: {result.message}")
        time.sleep(0.002)


def line(label: str, values: list[float]) -> str:
    ms = sorted(v * 1000 for v in values)
    return f"{label:32s} median {statistics.median(ms):8.1f} ms  min {ms[0]:8.1f}  max {ms[-1]:8.1f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        (work_dir / "sdcard" / PHOTO).parent.mkdir(parents=True)
        camera_photo(work_dir / "sdcard" / PHOTO)
        with stand_in_phone(work_dir / "sdcard", work_dir / "home") as (adb, phone):
            gallery = work_dir / "gallery"
            sync_phone(gallery, adb_port=adb.port, show_progress=False)
            kept = make_lean(gallery, phone.serialno)
            phone.recv_paths.clear()
            cache = OriginalsCache(work_dir / "cache")
            kept_s, pulled_s, cached_s = [], [], []
            for _ in range(args.repeats):
                shutil.rmtree(cache.folder, ignore_errors=True)
                first, original = open_and_time(PhotoViewer(gallery, adb.port, originals=cache), kept)
                kept_s.append(first)
                pulled_s.append(original)
                none, again = open_and_time(PhotoViewer(gallery, adb.port, originals=cache), kept)
                assert none is None
                cached_s.append(again)
            size = (work_dir / "sdcard" / PHOTO).stat().st_size
            print(f"original {size / 1e6:.2f} MB (4000 x 3000), kept {kept.stat().st_size / 1e3:.0f} KB, "
                  f"{args.repeats} rounds, {len(phone.recv_paths)} pulls")
            print(line("kept image shown", kept_s))
            print(line("original shown (pull + decode)", pulled_s))
            print(line("cached original shown", cached_s))
            for label, rate in RATES.items():
                print(f"transfer at {label}: {size / rate * 1000:.0f} ms")


if __name__ == "__main__":
    run_command(main)
