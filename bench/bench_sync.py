"""Time phone sync against a stand-in phone holding many small photos, over a real adb server.

    python -m bench.bench_sync [--photos 2000] [--size 8192] [--repeats 5]

Prints: the first (full) sync, a second sync with nothing changed, the sync-service listing
alone, and for comparison `adb pull` of the whole folder (what copying everything on every
run costs). Needs `adb` on PATH (Debian/Ubuntu: apt-get install adb).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from ppadb.client import Client
from ppadb.device import Device

from device.phone_sync import sync_phone
from device.sync_protocol import SyncConnection
from sketch_search.common.command import run_command
from tools.fixtures.fake_phone import AdbServer, FakePhone

ROOT = Path(__file__).resolve().parents[1]


def build_phone(root: Path, photos: int, size: int) -> None:
    camera = root / "DCIM" / "Camera"
    camera.mkdir(parents=True)
    for index in range(photos):
        path = camera / f"IMG_20240101_{index:06d}.jpg"
        path.write_bytes(os.urandom(size))
        os.utime(path, (1_700_000_000 + index, 1_700_000_000 + index))


def timed(function, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=2000)
    parser.add_argument("--size", type=int, default=8192, help="bytes per photo")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as work:
        work_dir = Path(work)
        build_phone(work_dir / "sdcard", args.photos, args.size)
        adb = AdbServer(work_dir / "home").start()
        phone = FakePhone(work_dir / "sdcard").start()
        try:
            adb.connect(phone)
            gallery = work_dir / "gallery"

            def sync():
                return sync_phone(gallery, adb_port=adb.port, show_progress=False)

            start = time.perf_counter()
            first = sync()
            first_s = time.perf_counter() - start
            assert len(first.pulled) == args.photos, first.summary()
            unchanged = timed(lambda: sync(), args.repeats)
            assert sync().unchanged == args.photos

            device = Device(Client("127.0.0.1", adb.port), phone.serial)

            def list_only():
                with SyncConnection.open(device) as connection:
                    entries = list(connection.list_dir("/sdcard/DCIM/Camera"))
                assert len(entries) == args.photos

            listing = timed(list_only, args.repeats)
            pull_dir = work_dir / "adb-pull"
            start = time.perf_counter()
            result = adb.run("-s", phone.serial, "pull", "/sdcard/DCIM/Camera", str(pull_dir),
                             timeout=600)
            pull_s = time.perf_counter() - start
            assert result.returncode == 0, result.stderr
        finally:
            adb.disconnect(phone)
            phone.stop()
            adb.stop()

    megabytes = args.photos * args.size / 1e6
    print(f"stand-in phone: {args.photos} photos x {args.size} B ({megabytes:.1f} MB), "
          f"{os.cpu_count()} CPUs")
    print(f"first sync (copies all):        {first_s:7.3f} s  "
          f"({args.photos / first_s:.0f} photos/s)")
    print(f"second sync (nothing changed):  {statistics.median(unchanged):7.3f} s  "
          f"median of {args.repeats} (min {min(unchanged):.3f})")
    print(f"listing alone (LIST, 1 folder): {statistics.median(listing):7.3f} s  "
          f"median of {args.repeats} (min {min(listing):.3f})")
    print(f"`adb pull` of the whole folder: {pull_s:7.3f} s  (copying everything every run)")


if __name__ == "__main__":
    run_command(main)
