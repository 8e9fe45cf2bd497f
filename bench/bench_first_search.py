"""Save -> first results on a fresh gallery while it is indexed in slices (issue 18).

Full-size random-weight models (bench/full_size.py) and its real-sized photos. One thread plays
the search worker's order of work on the index side: load the models, `start_index` (the photos
already indexed become searchable, the rest queued newest first), then slices of about a second;
a save made a few seconds after start waits for the models and for the slice in progress, is
answered over what is indexed so far (encode + rank), and its vector is ranked again once the
index is complete (no model work). Measured:

- save -> first results, against a warm query (models warm, index complete), counted from the
  later of the save and the models being loaded: the goal is within 1.5x;
- the time to the complete answer, and that it equals a fresh load of the finished index's;
- the phone sync bringing new photos while a person saves: save -> results.

It drives SketchSearch directly, not the air canvas (the loop's fps is bench/bench_loop.py's).

    python -m bench.bench_first_search            # 200 photos of 4000x3000, 2,000 of 1600x1200, 500 synced
    python -m bench.bench_first_search --quick    # 30, 200 and 50: minutes on a busy 2-core machine
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
import threading
import time
from pathlib import Path

from bench import full_size

SMALL_SIZE = (1600, 1200)


def _fresh_gallery(source: Path, folder: Path, count: int, first_ns: int) -> Path:
    """`count` photos of `source` linked into `folder` with increasing file times (as a phone's)."""
    import os
    folder.mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(sorted(source.glob("*.jpg"))[:count]):
        target = folder / f"{folder.name}-{photo.name}"
        shutil.copyfile(photo, target)
        os.utime(target, ns=(first_ns + i * 10 ** 9, first_ns + i * 10 ** 9))
    return folder


class Driver:
    """The worker's order of work on the index side, in one thread, with the times it reached."""

    def __init__(self, search, gallery: Path, sketch, slice_s: float):
        self.search, self.gallery, self.sketch, self.slice_s = search, gallery, sketch, slice_s
        self.saved_at: float | None = None
        self.times: dict[str, float] = {}
        self.first: list = []
        self.first_searched = 0
        self.vector = None
        self._save = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-worker")

    def start(self) -> None:
        self.start_at = time.perf_counter()
        self._thread.start()

    def save(self) -> None:
        self.saved_at = time.perf_counter()
        self._save.set()

    def join(self) -> None:
        self._thread.join()

    def _at(self, name: str) -> None:
        self.times[name] = time.perf_counter() - self.start_at

    def _run(self) -> None:
        self.search.load()
        self._at("models_loaded")
        self.search.start_index(self.gallery)
        self._at("index_started")
        answered = False
        while True:
            if self._save.is_set() and not answered and self.search.gallery_size:
                encoded = self.search.encode(self.sketch)
                self.vector = encoded.vector
                self.first = self.search.rank(self.vector)
                self.first_searched = self.search.gallery_size
                self._at("first_results")
                answered = True
                continue
            progress = self.search.index_slice(self.slice_s, cancelled=self._save.is_set if not answered else None)
            if progress.done and answered:
                self.complete = self.search.rank(self.vector)
                self._at("complete_answer")
                return
            if progress.done:
                self._save.wait()


def first_search(checkpoints: Path, source: Path, count: int, save_at: float, slice_s: float,
                 sketch, work: Path, sync: Path | None, sync_count: int) -> dict:
    from retrieval.index import GalleryIndex
    from retrieval.search import VectorSearch
    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch

    gallery = _fresh_gallery(source, work / "gallery", count, 1_700_000_000 * 10 ** 9)
    search = SketchSearch(Settings(checkpoints=checkpoints, device="cpu", show_progress=False,
                                   index_path=work / "index.sqlite"))
    driver = Driver(search, gallery, sketch, slice_s)
    driver.start()
    time.sleep(save_at)
    driver.save()
    driver.join()
    times = dict(driver.times)
    save_s = driver.saved_at - driver.start_at
    counted_from = max(save_s, times["models_loaded"])
    # The warm query: models warm, index complete.
    warm = []
    for _ in range(2):
        start = time.perf_counter()
        search.query(sketch)
        warm.append(time.perf_counter() - start)
    # The complete answer equals a fresh load of the finished index's.
    with GalleryIndex(work / "index.sqlite") as index:
        paths, vectors = index.load_vectors()
    fresh = [(paths[i], s) for i, s in VectorSearch(vectors).top_k(driver.vector, search.settings.top_k)]
    same = [p for p, _ in fresh] == [p for p, _ in driver.complete]
    result = {"photos": count, "save_at_s": round(save_s, 2), "models_loaded_s": round(times["models_loaded"], 2),
              "first_results_s": round(times["first_results"] - counted_from, 2),
              "first_searched": driver.first_searched, "warm_query_s": round(min(warm), 2),
              "ratio": round((times["first_results"] - counted_from) / min(warm), 2),
              "complete_answer_s": round(times["complete_answer"] - save_s, 2), "complete_equals_fresh": same}
    if sync is not None:
        # The phone sync brings new photos (newest), then a person saves: save -> results.
        _fresh_gallery(sync, gallery, sync_count, 1_800_000_000 * 10 ** 9)
        start = time.perf_counter()
        search.start_index(gallery)  # what the worker does when the sync says photos arrived
        search.index_slice(slice_s)  # the slice in progress when the save comes
        encoded = search.encode(sketch)
        search.rank(encoded.vector)
        result.update(sync_photos=sync_count, sync_save_to_results_s=round(time.perf_counter() - start, 2),
                      sync_searched=search.gallery_size, sync_total=search.gallery_total)
    return result


def run(args: argparse.Namespace) -> dict:
    from PIL import Image
    full_size.quiet()
    checkpoints = full_size.checkpoints()
    big = full_size.write_photos(full_size.CACHE / f"gallery-{args.photos}", args.photos)
    small = full_size.write_photos(full_size.CACHE / f"small-{args.small}", args.small, size=SMALL_SIZE, seed=1)
    sync = full_size.write_photos(full_size.CACHE / f"sync-{args.sync}", args.sync, size=(4000, 3000), seed=2)
    sketch = Image.open(full_size.SKETCH).convert("RGB")
    report = {"machine": full_size.machine(), "command": args.command, "runs": []}
    for name, source, count, with_sync in (("real-sized", big, args.photos, True),
                                          ("smaller", small, args.small, False)):
        with tempfile.TemporaryDirectory(prefix="bench-first-") as work:
            result = first_search(checkpoints, source, count, args.save_at, args.slice, sketch, Path(work),
                                  sync if with_sync else None, args.sync)
        result["gallery"] = name
        report["runs"].append(result)
        print(result, flush=True)
    report["load_after"] = full_size.load_average()
    return report


def print_table(report: dict) -> None:
    print(f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
          f"load {report['machine']['load_average']} -> {report['load_after']}")
    print("| gallery | photos | models loaded (s) | save -> first results (s) | searched then | warm query (s) "
          "| ratio | save -> complete (s) | complete = fresh load |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        print(f"| {r['gallery']} | {r['photos']} | {r['models_loaded_s']} | {r['first_results_s']} | "
              f"{r['first_searched']} | {r['warm_query_s']} | {r['ratio']}x | {r['complete_answer_s']} | "
              f"{r['complete_equals_fresh']} |")
    for r in report["runs"]:
        if "sync_photos" in r:
            print(f"phone sync of {r['sync_photos']} photos, then a save: save -> results "
                  f"{r['sync_save_to_results_s']} s over {r['sync_searched']} of {r['sync_total']} photos")


def settle(args: argparse.Namespace) -> None:
    if args.quick:
        args.photos, args.small, args.sync = 30, 200, 50
    import sys
    args.command = "python -m bench.bench_first_search " + " ".join(sys.argv[1:])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photos", type=int, default=200, help="real-sized (4000x3000) photos")
    parser.add_argument("--small", type=int, default=2000, help=f"smaller ({SMALL_SIZE[0]}x{SMALL_SIZE[1]}) photos")
    parser.add_argument("--sync", type=int, default=500, help="photos the phone sync brings")
    parser.add_argument("--save-at", dest="save_at", type=float, default=4.0, help="seconds after start")
    parser.add_argument("--slice", type=float, default=1.0, help="seconds of indexing per slice")
    parser.add_argument("--quick", action="store_true", help="30 / 200 / 50 photos")
    full_size.run_benchmark(parser, run, print_table, settle)
    return 0


if __name__ == "__main__":
    from sketch_search.common.command import run_command
    run_command(main)
