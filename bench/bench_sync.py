"""Phone sync against the stand-in phone over a real adb server: lean (the default) against
--originals, with real-sized photos.

    python -m bench.bench_sync [--photos 200] [--width 4000 --height 3000] [--repeats 3]
    python -m bench.bench_sync --small [--photos 2000] [--size 8192]   # the listing benchmark

Real-sized mode prints, per mode: bytes kept, bytes transferred, the sync's time on loopback,
a second sync's time (nothing transferred), and the time until every photo is searchable
(sync + the index's decoding of every kept file + DINOv2-base's embedding, timed on a batch
with random weights of the real size); the cost of one thumbnail read over exec:; and each
mode's transfer time at a USB 2 cable's 30 MB/s and Wi-Fi's 8 MB/s, computed from the bytes.
The stand-in makes each thumbnail with PIL from the full photo: a real phone's cost per
thumbnail (MediaProvider, cached under Pictures/.thumbnails) is not measured here.
Needs `adb` on PATH (Debian/Ubuntu: apt-get install adb).
"""
from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from ppadb.client import Client
from ppadb.device import Device

from device.lean_sync import MAX_THUMBNAIL_BYTES
from device.media_store import media_entries
from device.phone_shell import run_exec
from device.phone_sync import sync_phone
from device.sync_protocol import SyncConnection
from sketch_search.common.command import run_command
from tools.fixtures.fake_phone import AdbServer, FakePhone, stand_in_phone
from tools.fixtures.photos import camera_jpeg

ROOT = Path(__file__).resolve().parents[1]
RATES = {"USB 2 cable, 30 MB/s": 30e6, "Wi-Fi, 8 MB/s": 8e6}
CAMERA = ("DCIM", "Camera")


def _write_photo(job: tuple[str, int, int, int]) -> int:
    path, width, height, seed = job
    data = camera_jpeg(width, height, seed)
    Path(path).write_bytes(data)
    os.utime(path, (1_700_000_000 + seed, 1_700_000_000 + seed))
    return len(data)


def build_real_phone(root: Path, photos: int, width: int, height: int) -> int:
    camera = root.joinpath(*CAMERA)
    camera.mkdir(parents=True, exist_ok=True)
    jobs = [(str(camera / f"{1_700_000_000 + i}.jpg"), width, height, i) for i in range(photos)]
    with ProcessPoolExecutor(os.cpu_count() or 1) as pool:
        return sum(pool.map(_write_photo, jobs, chunksize=4))


def build_small_phone(root: Path, photos: int, size: int) -> None:
    camera = root.joinpath(*CAMERA)
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


def decode_seconds(folder: Path) -> float:
    """The index's decoding of every kept photo (retrieval.images.load_image at 256 px)."""
    from retrieval.images import load_image
    start = time.perf_counter()
    for path in sorted(folder.rglob("*.jpg")):
        load_image(path, min_side=256)
    return time.perf_counter() - start


def embed_seconds_per_photo(batch: int = 8) -> float:
    """DINOv2-base (ViT-B/14, random weights of the real size) on a 224 px batch, per photo."""
    import torch
    from transformers import Dinov2Config, Dinov2Model
    model = Dinov2Model(Dinov2Config()).eval()
    pixels = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(pixel_values=pixels)                    # warm-up
        start = time.perf_counter()
        model(pixel_values=pixels)
    return (time.perf_counter() - start) / batch


def thumbnail_read_seconds(adb: AdbServer, phone: FakePhone, reads: int) -> list[float]:
    client = Client("127.0.0.1", adb.port)
    entries = list(media_entries(client, phone.serial, 30).values())[:reads]
    times = []
    for entry in entries:
        start = time.perf_counter()
        data = run_exec(client, phone.serial, ["content", "read", "--uri", entry.thumbnail_uri],
                        10, MAX_THUMBNAIL_BYTES)
        times.append(time.perf_counter() - start)
        assert data[:2] == b"\xff\xd8"
    return times


def run_mode(adb: AdbServer, phone: FakePhone, gallery: Path, originals: bool,
             repeats: int) -> dict:
    def sync():
        return sync_phone(gallery, adb_port=adb.port, show_progress=False, originals=originals,
                          timeout=60)
    start = time.perf_counter()
    first = sync()
    seconds = time.perf_counter() - start
    assert not first.skipped, first.summary()
    phone.exec_commands.clear()
    phone.recv_paths.clear()
    again = timed(sync, repeats)
    assert phone.exec_commands == [] and phone.recv_paths == []   # nothing read again
    return {"sync_s": seconds, "again_s": statistics.median(again), "bytes": first.bytes,
            "kept": first.kept_bytes, "pulled": len(first.pulled),
            "fell_back": len(first.fell_back), "decode_s": decode_seconds(first.folder)}


def real_sized(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work_dir = Path(work)
        start = time.perf_counter()
        original_bytes = build_real_phone(work_dir / "sdcard", args.photos, args.width,
                                          args.height)
        print(f"made {args.photos} photos {args.width} x {args.height}, "
              f"{original_bytes / 1e6:.0f} MB ({original_bytes / args.photos / 1e6:.2f} MB "
              f"each) in {time.perf_counter() - start:.0f} s")
        with stand_in_phone(work_dir / "sdcard", work_dir / "home") as (adb, phone):
            modes = {"lean": run_mode(adb, phone, work_dir / "lean", False, args.repeats),
                     "originals": run_mode(adb, phone, work_dir / "orig", True, args.repeats)}
            reads = thumbnail_read_seconds(adb, phone, min(20, args.photos))
    report(args, original_bytes, modes, reads, embed_seconds_per_photo())


def report(args, original_bytes: int, modes: dict, reads: list[float], embed: float) -> None:
    n = args.photos
    print(f"{os.cpu_count()} CPUs, load {os.getloadavg()[0]:.2f} at the end")
    print(f"one thumbnail read (exec:content read, stand-in phone, loopback): median "
          f"{statistics.median(reads) * 1000:.0f} ms over {len(reads)} (min {min(reads) * 1000:.0f})")
    print(f"DINOv2-base embedding, CPU: {embed * 1000:.0f} ms per photo (the same in both modes)")
    print("| mode | kept | transferred | sync (loopback) | second sync | decode for the index | "
          "every photo searchable (loopback) | " + " | ".join(f"transfer at {r}" for r in RATES)
          + " |")
    print("|---" * (7 + len(RATES)) + "|")
    for name, m in modes.items():
        searchable = m["sync_s"] + m["decode_s"] + embed * n
        cells = [name, f"{m['kept'] / 1e6:.1f} MB ({100 * m['kept'] / original_bytes:.2f} %)",
                 f"{m['bytes'] / 1e6:.1f} MB ({100 * m['bytes'] / original_bytes:.2f} %)",
                 f"{m['sync_s']:.1f} s", f"{m['again_s']:.2f} s", f"{m['decode_s']:.1f} s",
                 f"{searchable:.1f} s"]
        cells += [f"{m['bytes'] / rate:.1f} s" for rate in RATES.values()]
        print("| " + " | ".join(cells) + " |")
        if m["fell_back"]:
            print(f"  {name}: {m['fell_back']} photos fell back to the original")
    lean, orig = modes["lean"], modes["originals"]
    for label, rate in RATES.items():
        lean_done = lean["sync_s"] + lean["bytes"] / rate + lean["decode_s"] + embed * n
        orig_sync = orig["bytes"] / rate
        print(f"{label}: lean, every photo searchable after {lean_done:.1f} s (loopback sync + "
              f"its bytes at this rate + decode + embed); --originals' transfer alone "
              f"{orig_sync:.1f} s")


def small(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(dir=args.work) as work:
        work_dir = Path(work)
        build_small_phone(work_dir / "sdcard", args.photos, args.size)
        with stand_in_phone(work_dir / "sdcard", work_dir / "home") as (adb, phone):
            gallery = work_dir / "gallery"

            def sync():
                return sync_phone(gallery, adb_port=adb.port, show_progress=False, originals=True)
            first_s = timed(sync, 1)[0]
            unchanged = timed(sync, args.repeats)
            device = Device(Client("127.0.0.1", adb.port), phone.serial)

            def list_only():
                with SyncConnection.open(device) as connection:
                    assert len(list(connection.list_dir("/sdcard/DCIM/Camera"))) == args.photos
            listing = timed(list_only, args.repeats)
    print(f"stand-in phone: {args.photos} photos x {args.size} B, {os.cpu_count()} CPUs")
    print(f"first sync (--originals, copies all): {first_s:7.3f} s")
    print(f"second sync (nothing changed):  {statistics.median(unchanged):7.3f} s median")
    print(f"listing alone (LIST, 1 folder): {statistics.median(listing):7.3f} s median")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200)
    parser.add_argument("--width", type=int, default=4000)
    parser.add_argument("--height", type=int, default=3000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--small", action="store_true",
                        help="many small random files instead (the listing benchmark)")
    parser.add_argument("--size", type=int, default=8192, help="bytes per photo with --small")
    parser.add_argument("--work", type=Path, default=None,
                        help="folder for the stand-in phone and the galleries (default: temp)")
    args = parser.parse_args()
    (small if args.small else real_sized)(args)


if __name__ == "__main__":
    run_command(main)
