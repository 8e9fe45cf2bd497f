"""Frames per second of the air canvas loop (main.py --no-window), idle and while searches run.

    python -m bench.bench_loop [--frames 300] [--checkpoints DIR] [--gallery DIR] [--pace FPS]
    python -m bench.bench_loop --trackers [--frames 300]

The camera is a 640 x 480 video of a real hand photo (../shared/data/hand-counts) moving in
circles, so every frame costs a hand-tracking pass and a stroke update, like a drawing user.
Run 1: no search. Run 2: the real pipeline (SketchSearch; tiny random models from
tools/fixtures/tiny_checkpoints when --checkpoints is not given), loaded beforehand, with queries submitted
back to back so one is always running on the worker thread while the loop runs. The worker's
torch threads are capped as main.py caps them (sketch_search.app.bootstrap.worker_threads; OMP_NUM_THREADS set by
the caller wins). --pace 30 delivers frames like a 30 fps webcam. The loop tracks two hands
(sketch.tracker.TwoHandTracker).

--trackers instead measures MediaPipe alone, per frame, with one and with two hands in view
(the moving pen hand; beside it a second, open hand): HandTracker with max_num_hands=1 and 2,
and the loop's TwoHandTracker, as while drawing and "eager" (as while the pen hand is open),
without its second look, and with every pen-hand fit made implausible (the second look's worst
case: a static detection on a crop every SECOND_LOOK_EVERY frames).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import threading
import time
from pathlib import Path

from sketch_search.app.bootstrap import bootstrap

bootstrap()  # before MediaPipe or torch is imported, as main.py

from sketch.camera import FrameSource  # noqa: E402
from sketch_search.app.air_canvas import AirCanvasApp, AppOptions  # noqa: E402
from sketch_search.common.command import run_command, setup_logging  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def hand_video(path: Path, frames: int, hands: int = 1) -> Path:
    from tools.fixtures.hand_video import hand_video_frames, write_video

    if hands == 2:
        return write_video(path, ((frame, "") for frame in two_hands_rgb(frames, bgr=True)))

    def circles():
        produced = 0
        while True:  # the pen hand circling, again and again; no save gesture
            for frame, label in hand_video_frames(hold=0, tail=0, turns=1.0):
                yield frame, label
                produced += 1
                if produced == frames:
                    return
    return write_video(path, circles())


def summarise(frames: list[tuple[float, float, bool]]) -> dict:
    """fps and frame times (wall clock), and the CPU time per frame of the whole process
    (MediaPipe runs on its own threads; while busy this includes the worker)."""
    if not frames:
        return {"frames": 0}
    wall = sorted(seconds for seconds, _, _ in frames)
    cpu = [seconds for _, seconds, _ in frames]
    return {"frames": len(wall), "fps": round(len(wall) / sum(wall), 1),
            "median_ms": round(1000 * statistics.median(wall), 1),
            "p95_ms": round(1000 * wall[int(0.95 * (len(wall) - 1))], 1),
            "process_cpu_ms": round(1000 * statistics.mean(cpu), 1),
            "load_average": round(os.getloadavg()[0], 2)}


def run_idle(video: Path, out: Path, pace: float | None) -> dict:
    app = AirCanvasApp(AppOptions(source=video, sketch_dir=out, window=False))
    app.run(VideoAsCamera(FrameSource(video), pace=pace))
    return summarise(list(app.stats.frame_seconds)[5:])  # skip the tracker's warm-up


class VideoAsCamera:
    """The video as the loop's frame source: from when `loaded` is set (the worker has loaded and
    warmed up its models, so with full-size models the video is not over before the first query
    runs) and, with `pace`, no faster than a webcam of that many frames per second."""

    def __init__(self, source, loaded: threading.Event | None = None, pace: float | None = None):
        self.source, self.loaded, self.pace = source, loaded, pace
        self._next = None

    def read(self):
        if self.loaded is not None:
            self.loaded.wait()
        if self.pace:
            now = time.perf_counter()
            self._next = max(self._next or now, now - 1.0 / self.pace)  # no catching up after a stall
            time.sleep(max(0.0, self._next - now))
            self._next += 1.0 / self.pace
        return self.source.read()

    def __getattr__(self, name):
        return getattr(self.source, name)


def run_busy(video: Path, out: Path, checkpoints: Path, gallery: Path | None, pace: float | None) -> dict:
    from PIL import Image

    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch

    setup_logging(False)  # quiet the model libraries' loading bars

    search = SketchSearch(Settings(checkpoints=checkpoints, show_progress=False))
    search.load()
    if gallery is not None:
        search.index_gallery(gallery)
    app = AirCanvasApp(AppOptions(source=video, sketch_dir=out, window=False, gallery=gallery), search)
    sketch = Image.open(ROOT / "examples" / "sketches" / "cat.png").convert("RGB")
    stop = threading.Event()
    queries = []
    query_seconds = []

    def feed() -> None:  # keep one query always queued or running
        app.worker.loaded.wait()
        while not stop.is_set():
            if not app.worker.busy:
                app.worker.submit(sketch, out / f"bench-{len(queries):03d}.png")
                queries.append(time.perf_counter())
            for outcome in app.worker.finished():
                if outcome.json_path:
                    query_seconds.append(json.loads(outcome.json_path.read_text())["timings"]["total"])
            time.sleep(0.005)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        app.run(VideoAsCamera(FrameSource(video), app.worker.loaded, pace))
    finally:
        stop.set()
        feeder.join()
    summary = summarise([frame for frame in list(app.stats.frame_seconds)[5:] if frame[2]])
    summary["queries_started"] = len(queries)
    summary["query_seconds_median"] = round(statistics.median(query_seconds), 2) if query_seconds else None
    return summary


def two_hands_rgb(frames: int, bgr: bool = False) -> list:
    """The pen hand drawing an oval on the left while an open hand rests on the right."""
    import cv2

    from tools.fixtures.hand_video import (
        LEFT,
        OPEN_PHOTO,
        PEN_PHOTO,
        RIGHT,
        background_colour,
        hand_photo,
        paste_all,
    )

    pen, second = hand_photo(PEN_PHOTO), hand_photo(OPEN_PHOTO)
    background = background_colour(pen)
    out = []
    for i in range(frames):
        angle = 2 * math.pi * i / 100
        frame = paste_all(background, [(pen, (LEFT[0] + 20 * math.cos(angle), LEFT[1] + 80 * math.sin(angle))),
                                       (second, RIGHT)])
        out.append(frame if bgr else cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    return out


class Misfit:
    """A tracker whose every fit has its middle finger stretched three times (implausible), so the
    loop's second look runs as often as it may: the worst case of its cost."""

    def __init__(self, tracker) -> None:
        self.tracker = tracker

    def process(self, frame):
        from dataclasses import replace

        hand = self.tracker.process(frame)
        if hand is None:
            return None
        points = hand.landmarks.copy()
        for a, b in ((9, 10), (10, 11), (11, 12)):
            points[b] = points[a] + (hand.landmarks[b] - hand.landmarks[a]) * 3
        return replace(hand, landmarks=points)

    def close(self) -> None:
        self.tracker.close()


def tracker_costs(frames: int) -> dict:
    """Median and mean milliseconds per frame of each tracker, one and two hands in view."""
    import cv2

    from sketch.tracker import HandTracker, TwoHandTracker
    from tools.fixtures.hand_video import LEFT, PEN_PHOTO, background_colour, hand_photo, paste_all

    pen = hand_photo(PEN_PHOTO)
    background = background_colour(pen)

    def video(two: bool) -> list:
        if two:
            return two_hands_rgb(frames)
        out = []
        for i in range(frames):  # the pen hand circling on the left
            angle = 2 * math.pi * i / 100
            placed = [(pen, (LEFT[0] + 20 * math.cos(angle), LEFT[1] + 80 * math.sin(angle)))]
            out.append(cv2.cvtColor(paste_all(background, placed), cv2.COLOR_BGR2RGB))
        return out

    def misfitting() -> TwoHandTracker:
        tracker = TwoHandTracker()
        tracker._first = Misfit(tracker._first)
        return tracker

    makers = {"max_num_hands=1": lambda: HandTracker(max_num_hands=1),
              "max_num_hands=2": lambda: HandTracker(max_num_hands=2),
              "TwoHandTracker": TwoHandTracker,
              "TwoHandTracker eager": TwoHandTracker,
              "TwoHandTracker no second look": lambda: TwoHandTracker(second_look_every=0),
              "TwoHandTracker, every pen-hand fit implausible": misfitting}
    results = {}
    for hands in (1, 2):
        rgb = video(hands == 2)
        for name, make in makers.items():
            tracker = make()
            times, cpu, found = [], [], []
            for frame in rgb:
                start, start_cpu = time.perf_counter(), time.process_time()
                seen = (tracker.process_all(frame, eager=name.endswith("eager"))
                        if isinstance(tracker, TwoHandTracker) else tracker.process_all(frame))
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)  # MediaPipe's threads included
                found.append(len(seen))
            tracker.close()
            times, cpu = times[10:], cpu[10:]  # the graph's start-up
            results[f"{hands} in view, {name}"] = {
                "median_ms": round(1000 * statistics.median(times), 1),
                "mean_ms": round(1000 * statistics.mean(times), 1),
                "cpu_ms": round(1000 * statistics.mean(cpu), 1),
                "frames_with_all_hands": round(sum(n >= hands for n in found) / len(found), 3)}
            print(f"{hands} hand(s) in view, {name}: {results[f'{hands} in view, {name}']}", flush=True)
    results["load_average"] = round(os.getloadavg()[0], 2)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300, help="frames per run (default 300)")
    parser.add_argument("--checkpoints", type=Path, default=None,
                        help="models for the busy run (default: tiny random ones, written to a temp dir)")
    parser.add_argument("--gallery", type=Path, default=ROOT / "examples" / "gallery",
                        help="photos indexed for the busy run (default examples/gallery)")
    parser.add_argument("--pace", type=float, default=None, metavar="FPS",
                        help="deliver frames no faster than a webcam of FPS frames per second "
                             "(default: as fast as the loop takes them)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument("--hands", type=int, choices=(1, 2), default=1,
                        help="hands in the loop's video: 1, the pen hand circling (default); 2, the pen "
                             "hand drawing on the left and an open hand resting on the right")
    parser.add_argument("--trackers", action="store_true",
                        help="measure MediaPipe's cost per frame with one and two hands in view instead")
    args = parser.parse_args()
    setup_logging()
    if args.trackers:
        numbers = tracker_costs(args.frames)
        if args.json:
            args.json.write_text(json.dumps(numbers, indent=2))
        return 0

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        video = hand_video(tmp / "hands.avi", args.frames, args.hands)
        idle = run_idle(video, tmp / "idle", args.pace)
        print(f"idle : {idle}", flush=True)
        checkpoints = args.checkpoints
        if checkpoints is None:
            from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
            checkpoints = write_tiny_checkpoints(tmp / "checkpoints")
        busy = run_busy(video, tmp / "busy", checkpoints, args.gallery, args.pace)
        print(f"busy : {busy}", flush=True)
    numbers = {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "frames": args.frames, "pace": args.pace, "hands": args.hands, "idle": idle, "busy": busy}
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))
    return 0


if __name__ == "__main__":
    run_command(main)
