"""Save -> first results on a fresh gallery while it is indexed in slices (issue 18).

Full-size random-weight models (bench/full_size.py) and its real-sized photos, driven through the
air canvas's own search thread (SearchWorker and its SearchScheduler: models load, `start_index`,
indexing in slices of about a second between jobs, a save answered over the photos indexed so
far, then ranked again as the index grows). A save is made a few seconds after start. Measured:

- save -> first results, against a warm query (models warm, index complete), counted from the
  later of the save and the models being loaded: the goal is within 1.5x;
- save -> the complete answer (the refresh that covers every photo), and that its top-k equals
  a fresh load of the finished index's (main2's way) for the same sketch vector;
- a paced 30 fps loop meanwhile, doing a frame's worth of image work (flip, resize, blend of a
  1280x720 frame) and polling the worker as the window does: the frames it kept;
- the phone sync bringing new photos, then a save: save -> results.

    python -m bench.bench_first_search            # 200 photos of 4000x3000, 2,000 of 1600x1200, 500 synced
    python -m bench.bench_first_search --quick    # 30, 200 and 50: minutes on a busy 2-core machine
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import ImageOps

from bench import full_size

SMALL_SIZE = (1600, 1200)
FPS = 30


def _add_photos(source: Path, folder: Path, count: int, first_ns: int) -> Path:
    """`count` photos of `source` copied into `folder`, each a second newer (as a phone's)."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, photo in enumerate(sorted(source.glob("*.jpg"))[:count]):
        target = folder / f"{source.name}-{photo.name}"
        shutil.copyfile(photo, target)
        os.utime(target, ns=(first_ns + i * 10 ** 9, first_ns + i * 10 ** 9))
    return folder


class PacedLoop:
    """A 30 fps loop in its own thread: a frame's image work, then the worker polled; counts frames."""

    def __init__(self, worker):
        import cv2
        self.cv2, self.worker = cv2, worker
        self.frame = np.random.default_rng(0).integers(0, 255, (720, 1280, 3), np.uint8)
        self.frames, self.late = 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="paced-loop")

    def _run(self) -> None:
        cv2, period = self.cv2, 1.0 / FPS
        self.started = next_at = time.monotonic()
        while not self._stop.is_set():
            mirrored = cv2.flip(self.frame, 1)
            small = cv2.resize(mirrored, (640, 360))
            cv2.addWeighted(small, 0.7, small, 0.3, 0)
            self.worker.status  # noqa: B018 (what the window reads each frame)
            self.worker.finished()
            self.frames += 1
            next_at += period
            wait = next_at - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            else:
                self.late += 1
                next_at = time.monotonic()
        self.ended = time.monotonic()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def fps(self) -> float:
        return self.frames / max(1e-9, self.ended - self.started)


def _until(condition, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the worker did not get there in time")
        time.sleep(0.05)


def first_search(checkpoints: Path, source: Path, count: int, save_at: float, slice_s: float,
                 sketch, work: Path, sync: Path | None, sync_count: int, timeout: float) -> dict:
    from retrieval.index import GalleryIndex
    from retrieval.search import VectorSearch
    from sketch_search.app.events import EventLog
    from sketch_search.app.live_mode import LiveMode
    from sketch_search.app.search_worker import SearchWorker, WorkerOwner
    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch

    gallery = _add_photos(source, work / "gallery", count, 1_700_000_000 * 10 ** 9)
    search = SketchSearch(Settings(checkpoints=checkpoints, device="cpu", show_progress=False))
    start = time.monotonic()
    events = EventLog(start=start)
    changed = threading.Event()
    worker = SearchWorker(search, gallery, changed, live=LiveMode.OFF, events=events, slice_seconds=slice_s)
    sketch_path = work / "sketch-1.png"
    sketch.save(sketch_path)

    def answers(path: Path) -> list[dict]:
        return [e for e in events.events if e["event"] == "results" and e["sketch"] == str(path)]

    with WorkerOwner(worker, stop_seconds=30), PacedLoop(worker) as loop:
        loaded: list[float] = []
        threading.Thread(target=lambda: (worker.loaded.wait(), loaded.append(time.monotonic() - start)),
                         daemon=True).start()
        time.sleep(max(0.0, start + save_at - time.monotonic()))
        saved = time.monotonic() - start
        worker.submit(sketch, sketch_path, saved_at=start + saved)
        _until(lambda: answers(sketch_path), timeout)
        first = answers(sketch_path)[0]
        _until(lambda: (worker.index is not None and worker.index.done
                        and answers(sketch_path)[-1]["searched"] == answers(sketch_path)[-1]["total"]), timeout)
        complete = answers(sketch_path)[-1]
        result = {"photos": count, "save_at_s": round(saved, 2), "models_loaded_s": round(loaded[0], 2),
                  "first_results_s": round(first["t"] - max(saved, loaded[0]), 2),
                  "first_searched": first["searched"], "first_total": first["total"],
                  "complete_answer_s": round(complete["t"] - saved, 2), "refreshes": len(answers(sketch_path)) - 1}
        if sync is not None:
            # The phone sync brings new photos (the newest), then a person saves: save -> results.
            _add_photos(sync, gallery, sync_count, 1_800_000_000 * 10 ** 9)
            changed.set()
            # The save comes once the worker has seen them: during the catch-up indexing.
            _until(lambda: worker.index is not None and worker.index.total == count + sync_count, timeout)
            second = work / "sketch-2.png"
            drawing = ImageOps.mirror(sketch)  # another drawing: nothing of the first save's to reuse
            drawing.save(second)
            saved = time.monotonic() - start
            worker.submit(drawing, second, saved_at=start + saved)
            _until(lambda: answers(second), timeout)
            got = answers(second)[0]
            result.update(sync_photos=sync_count, sync_save_to_results_s=round(got["t"] - saved, 2),
                          sync_searched=got["searched"], sync_total=got["total"])
    result["loop_fps"] = round(loop.fps, 1)
    result["loop_late_frames"] = loop.late
    events.close()
    # The warm query (models warm, the index complete), and main2's answer for its vector.
    warm = []
    for _ in range(2):
        began = time.perf_counter()
        answer = search.query(sketch)
        warm.append(time.perf_counter() - began)
    result["warm_query_s"] = round(min(warm), 2)
    result["ratio"] = round(result["first_results_s"] / min(warm), 2)
    with GalleryIndex(search.index_path(gallery)) as index:
        paths, vectors = index.load_vectors()
    if sync is not None:  # the complete answer came before the phone's photos arrived
        before = [i for i, path in enumerate(paths) if not path.name.startswith(f"{sync.name}-")]
        paths, vectors = [paths[i] for i in before], vectors[before]
    fresh = [str(paths[i]) for i, _ in VectorSearch(vectors).top_k(answer.vector, search.settings.top_k)]
    result["complete_equals_fresh_load"] = fresh == [r["path"] for r in complete["results"]]
    return result


def run(args: argparse.Namespace) -> dict:
    from PIL import Image
    full_size.quiet()
    checkpoints = args.checkpoints or full_size.checkpoints()
    big = full_size.write_photos(full_size.CACHE / f"gallery-{args.photos}", args.photos)
    small = full_size.write_photos(full_size.CACHE / f"small-{args.small}", args.small, size=SMALL_SIZE, seed=1)
    sync = full_size.write_photos(full_size.CACHE / f"sync-{args.sync}", args.sync, size=(4000, 3000), seed=2)
    sketch = Image.open(full_size.SKETCH).convert("RGB")
    report = {"machine": full_size.machine(), "command": args.command, "runs": []}
    for name, source, count, with_sync in (("real-sized", big, args.photos, True),
                                          ("smaller", small, args.small, False)):
        if args.galleries not in ("both", name):
            continue
        with tempfile.TemporaryDirectory(prefix="bench-first-") as work:
            result = first_search(checkpoints, source, count, args.save_at, args.slice, sketch, Path(work),
                                  sync if with_sync else None, args.sync, args.timeout)
        result["gallery"] = name
        report["runs"].append(result)
        print(result, flush=True)
    report["load_after"] = full_size.load_average()
    return report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}; load {m['load_average']} -> "
          f"{report['load_after']}; command: {report['command']}")
    print("| gallery | photos | save at (s) | models loaded (s) | save -> first results (s) | searched then "
          "| warm query (s) | ratio | save -> complete (s) | refreshes | loop fps (late frames) "
          "| complete = main2's |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in report["runs"]:
        print(f"| {r['gallery']} | {r['photos']} | {r['save_at_s']} | {r['models_loaded_s']} | "
              f"{r['first_results_s']} | {r['first_searched']} of {r['first_total']} | {r['warm_query_s']} | "
              f"{r['ratio']}x | {r['complete_answer_s']} | {r['refreshes']} | {r['loop_fps']} "
              f"({r['loop_late_frames']}) | {r['complete_equals_fresh_load']} |")
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
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="models to use instead of the full-size ones (a smoke run on tiny ones)")
    parser.add_argument("--galleries", choices=("both", "real-sized", "smaller"), default="both",
                        help="which gallery runs (default both)")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds to wait for each answer")
    full_size.run_benchmark(parser, run, print_table, settle)
    return 0


if __name__ == "__main__":
    from sketch_search.common.command import run_command
    run_command(main)
