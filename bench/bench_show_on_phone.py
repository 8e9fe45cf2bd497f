"""Time "show on phone" against the stand-in phone, over a real adb server.

    python -m bench.bench_show_on_phone [--repeats 20]

Three cases: the media store knows the photo (the usual one); it does not yet, so the scanner
is asked and the store queried again; the scanner never adds it, so the file:// URI is used
after the scan wait (SCAN_WAIT_S). The stand-in answers at once: a real phone adds its own
time (waking the screen, the viewer starting under `am start -W`). Needs `adb` on PATH.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from device.phone_sync import sync_phone
from device.show_on_phone import show_on_phone
from sketch_search.common.command import run_command
from tools.fixtures.fake_phone import stand_in_phone
from tools.fixtures.photos import camera_jpeg

PHOTO = "DCIM/Camera/IMG_20240101_000001.jpg"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        (work_dir / "sdcard" / PHOTO).parent.mkdir(parents=True)
        # A real photo: the lean sync (the default) keeps only what it can decode.
        (work_dir / "sdcard" / PHOTO).write_bytes(camera_jpeg(1600, 1200))
        with stand_in_phone(work_dir / "sdcard", work_dir / "home") as (adb, phone):
            gallery = work_dir / "gallery"
            sync_phone(gallery, adb_port=adb.port, show_progress=False)
            photo = gallery / phone.serialno / PHOTO

            def known() -> None:
                phone.add_media("/sdcard/" + PHOTO)

            def unknown() -> None:
                phone.media.clear()

            def never() -> None:
                phone.media.clear()
                phone.media_scanner = False

            for label, prepare in (("in the media store", known), ("scanned first", unknown),
                                   ("file:// fallback", never)):
                times = []
                for _ in range(args.repeats):
                    prepare()
                    start = time.perf_counter()
                    result = show_on_phone(gallery, photo, adb_port=adb.port)
                    times.append(time.perf_counter() - start)
                    assert result.ok, result.message
                times_ms = sorted(t * 1000 for t in times)
                print(f"{label:20s} median {statistics.median(times_ms):7.1f} ms  "
                      f"min {times_ms[0]:7.1f}  max {times_ms[-1]:7.1f}  ({args.repeats} runs)")
                phone.media_scanner = True


if __name__ == "__main__":
    run_command(main)
