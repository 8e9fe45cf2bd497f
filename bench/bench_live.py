"""Search as you draw: preview latency, loop fps, save-to-results with and without the run ahead,
cancellation latency and the CPU spent on cancelled runs.

    python -m bench.bench_live [--quick] [--checkpoints DIR] [--gallery DIR] [--pace 30] [--json PATH]

The camera is a paced (default 30 fps) 640 x 480 video of real hand photos (../shared's
hand-counts, tools/fixtures/hand_video.py) drawing, played through the real air canvas
(AirCanvasApp, --no-window, --live preview) with the real pipeline on its worker thread:

- session: four strokes; after each of the first three the pen rests a little longer than
  --pause, so the run ahead starts and the next stroke cancels it; after the fourth it rests longer
  than one query, then the save gesture is held (the run ahead answers it);
- at once: one stroke, then the save gesture straight away (the save runs the whole route).

--cancel-gaps: the generator's cancellation latency at full size without building the model cache:
SD-Turbo's UNet and VAE at their published sizes, random weights in memory, in the product's dtype,
one sketch's encode, UNet step and decode; the longest time between two cancellation checks is the
worst a cancel can wait inside the generator.

Models: full-size random-weight ones built by bench/full_size.py (~/.cache/sketch-search-bench, the
first build takes minutes and GBs) and its 200-photo gallery; --quick uses tiny random checkpoints
(tools/fixtures/tiny_checkpoints) and examples/gallery.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from sketch_search.app.bootstrap import bootstrap

bootstrap()  # before MediaPipe or torch is imported, as main.py

from bench.bench_loop import VideoAsCamera, run_idle, summarise  # noqa: E402
from sketch.camera import FrameSource  # noqa: E402
from sketch_search.app.air_canvas import PAUSE_SECONDS, AirCanvasApp, AppOptions  # noqa: E402
from sketch_search.app.live_mode import LiveMode  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
FPS = 30.0
STROKE_FRAMES = 40          # one arc of the circle (1.3 s at 30 fps)
FIST_PHOTO = "0/asl0_IMG_1118.JPG"   # a fist (pen up), same person and session as the pen hand


def session_frames(strokes: int, rest_frames: list[int], hold: int = 30, tail: int = 10,
                   rest_hand: str = "none"):
    """(frame, label): `strokes` arcs round the circle, each followed by rest_frames[i] frames of
    pen up (no hand in view, or with `rest_hand` "fist" a fist), then the save hand held."""
    from tools.fixtures.hand_video import (
        PEN_PHOTO,
        SAVE_PHOTO,
        background_colour,
        circle_point,
        hand_photo,
        paste,
    )
    pen, save = hand_photo(PEN_PHOTO), hand_photo(SAVE_PHOTO)
    resting = hand_photo(FIST_PHOTO) if rest_hand == "fist" else None
    background = background_colour(pen)
    at = circle_point(0.0)
    for stroke in range(strokes):
        start = stroke / strokes
        at = circle_point(start)
        for _ in range(6):  # the tool settles before the stroke starts
            yield paste(background, pen, at), "lead-in"
        for i in range(STROKE_FRAMES):
            at = circle_point(start + (i + 1) / (strokes * STROKE_FRAMES) * 1.02)
            yield paste(background, pen, at), f"stroke {stroke + 1}"
        for _ in range(rest_frames[stroke]):
            yield paste(background, resting, at), f"rest {stroke + 1}"
    for _ in range(hold):
        yield paste(background, save, at), "hold"
    for _ in range(tail):
        yield paste(background, None, at), "tail"


class RestUntilIdle:
    """The video as a camera that, at frame `hold_at`, sends that frame again (time moving on)
    while the worker runs a query: a pause longer than one query, however long the query takes."""

    def __init__(self, source: FrameSource, hold_at: int | None):
        self.source, self.hold_at = source, hold_at
        self.worker = None
        self.sent = 0
        self.held = 0
        self._last = None

    def read(self):
        if (self.sent == self.hold_at and self._last is not None and self.worker is not None
                and self.worker.running):
            self.held += 1
            frame = self._last
        else:
            item = self.source.read()
            if item is None:
                return None
            frame = self._last = item[0]
            if self.held:  # done holding: on to the rest of the video
                self.hold_at = None
        self.sent += 1
        return frame, self.sent / self.source.fps

    def __getattr__(self, name):
        return getattr(self.source, name)


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def run_session(search, gallery: Path, video: Path, labels: list[str], out: Path, pace: float,
                pause: float) -> dict:
    app = AirCanvasApp(AppOptions(source=video, sketch_dir=out, window=False, gallery=gallery,
                                  live=LiveMode.PREVIEW, pause=pause), search)
    # Hold the last frame of a final rest until the run ahead has finished.
    last_rest = max((i for i, label in enumerate(labels) if label == "rest 4"), default=None)
    camera = RestUntilIdle(FrameSource(video), last_rest)
    camera.worker = app.worker
    app.run(VideoAsCamera(camera, app.worker.loaded, pace))
    labels = labels[:last_rest or 0] + [labels[last_rest]] * camera.held + labels[last_rest or 0:] \
        if camera.held else labels
    events = app.events.events
    previews = [e["latency"] for e in events if e["event"] == "preview"]
    cancels = [e for e in events if e["event"] == "cancel"]
    results = [e for e in events if e["event"] == "results"]
    frames = list(app.stats.frame_seconds)
    phases = {}
    for phase, prefixes in (("drawing", ("lead-in", "stroke")), ("resting", ("rest",))):
        chosen = [f for f, label in zip(frames[5:], labels[5:]) if label.startswith(prefixes)]
        phases[phase] = summarise(chosen)["fps"] if chosen else None
    return {
        "events": {name: sum(e["event"] == name for e in events)
                   for name in ("preview", "speculate", "cancel", "save", "results")},
        "preview_latency_median_s": round(statistics.median(previews), 3) if previews else None,
        "preview_latency_p90_s": round(percentile(previews, 0.9), 3) if previews else None,
        "loop": summarise(frames[5:]),  # skip the tracker's warm-up
        "loop_fps_by_phase": phases,
        "cancel_latency_s": [e["latency"] for e in cancels],
        "cancelled_run_seconds": round(sum(e["seconds"] for e in cancels), 2),
        "cancelled_run_process_cpu_s": round(sum(e["cpu_seconds"] for e in cancels), 2),
        "save_to_results_s": [r["save_to_results"] for r in results],
        "speculative": [r["speculative"] for r in results],
        "long_rest_held_frames": camera.held,
        "timeline": [{k: v for k, v in e.items() if k != "results"} for e in events],
    }


def cancel_gaps() -> dict:
    """Seconds between the generator's cancellation checks, full-size UNet and VAE at 512 px."""
    import torch
    from diffusers import AutoencoderKL, UNet2DConditionModel

    from bench.full_size import SD_TURBO_UNET, SD_TURBO_VAE
    from generation.pix2pix_turbo import checked_blocks
    from sketch_search.app.precision import placement
    from sketch_search.common.cancel import checked_modules

    dtypes = placement("cpu", "auto").dtypes
    memory = torch.channels_last if dtypes.channels_last else torch.contiguous_format
    torch.manual_seed(0)
    unet = UNet2DConditionModel(**SD_TURBO_UNET).eval().to(dtype=dtypes.generator, memory_format=memory)
    vae = AutoencoderKL(**SD_TURBO_VAE).eval().to(dtype=dtypes.vae, memory_format=memory)
    sketch = torch.zeros(1, 3, 512, 512, dtype=dtypes.vae).contiguous(memory_format=memory)
    sketch[:, :, 200:300, 100:400] = 1.0
    text = torch.randn(1, 77, SD_TURBO_UNET["cross_attention_dim"], dtype=dtypes.generator)
    stamps: list[float] = []
    names: list[str] = []
    checked = {id(module) for module in checked_blocks(unet, vae)}
    # The product's hooks (checked_modules), plus a name beside each check to say where it was.
    handles = [module.register_forward_pre_hook(lambda _m, _i, name=f"{part}.{name}": names.append(name))
               for part, model in (("unet", unet), ("vae", vae))
               for name, module in model.named_modules() if id(module) in checked]

    def check() -> bool:
        stamps.append(time.perf_counter())
        return False
    with torch.inference_mode(), checked_modules(checked_blocks(unet, vae), check):
        start = time.perf_counter()
        latent = vae.encode(sketch).latent_dist.sample()
        encoded = time.perf_counter()
        unet(latent.to(dtypes.generator), 999, encoder_hidden_states=text)
        stepped = time.perf_counter()
        vae.decode(latent)
        end = time.perf_counter()
    for handle in handles:
        handle.remove()
    marks = [start, *stamps, end]
    gaps = [b - a for a, b in zip(marks, marks[1:])]
    longest = max(range(len(gaps)), key=gaps.__getitem__)
    # Gap i ends at check i, so it is spent in the layer checked just before (names[i - 1]).
    where = names[longest - 1] if 0 < longest <= len(names) else "outside the checked layers"
    return {"dtype": str(dtypes.generator), "vae_dtype": str(dtypes.vae), "checks": len(stamps),
            "seconds": {"vae_encode": round(encoded - start, 2), "unet": round(stepped - encoded, 2),
                        "vae_decode": round(end - stepped, 2)},
            "longest_gap_s": round(max(gaps), 3), "longest_in": where, "p90_gap_s": round(percentile(gaps, 0.9), 3),
            "load_average": round(os.getloadavg()[0], 2)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="tiny random checkpoints and examples/gallery (seconds, not minutes)")
    parser.add_argument("--checkpoints", type=Path, default=None, help="models (default: see --quick)")
    parser.add_argument("--gallery", type=Path, default=None, help="photos to index (default: see --quick)")
    parser.add_argument("--pace", type=float, default=FPS, help="frames per second of the camera (30)")
    parser.add_argument("--pause", type=float, default=PAUSE_SECONDS, help="main.py --pause (1 s)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    parser.add_argument("--rest-hand", choices=("none", "fist"), default="none",
                        help="while the pen rests: no hand in view (default) or a fist")
    parser.add_argument("--cancel-gaps", action="store_true",
                        help="only the generator's longest time between cancellation checks, full size")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.cancel_gaps:
        gaps = cancel_gaps()
        print(f"cancellation checks in the generator (full size): {json.dumps(gaps)}")
        if args.json:
            args.json.write_text(json.dumps(gaps, indent=2))
        return 0

    from sketch_search.app.cli import quiet_model_libraries
    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch

    quiet_model_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.quick:
            from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
            checkpoints = args.checkpoints or write_tiny_checkpoints(tmp / "checkpoints")
            gallery = args.gallery or ROOT / "examples" / "gallery"
        else:
            from bench import full_size
            checkpoints = args.checkpoints or full_size.checkpoints()
            gallery = args.gallery or full_size.gallery()
        search = SketchSearch(Settings(checkpoints=checkpoints, show_progress=False))
        search.load()
        search.index_gallery(gallery)
        search.warmup()
        seconds = []
        for _ in range(3):
            started = time.perf_counter()
            search.query(search_sketch())
            seconds.append(time.perf_counter() - started)
        query = statistics.median(seconds)
        print(f"one query: {query:.2f} s ({search.gallery_size} photos)", flush=True)
        # Short rests: the run ahead starts --pause after the stroke's last point and the next
        # stroke's first point comes about halfway through it (the pen's stabiliser holds each tool
        # change 3 frames, at both ends of a rest). Long rest: the run ahead ends a second early.
        short = max(1, int(FPS * (args.pause + min(0.5 * query, 1.0))) - 3)
        # (A query on the worker takes up to ~1.4x longer while the loop runs: section 6.)
        long = int(FPS * (args.pause + 2.0 * query + 2.0))
        from tools.fixtures.hand_video import write_video
        rests = [short, short, short, long]
        session_video = write_video(tmp / "session.avi", session_frames(4, rests, rest_hand=args.rest_hand))
        at_once_video = write_video(tmp / "at_once.avi", session_frames(1, [0]))
        session_labels = [label for _, label in session_frames(4, rests, rest_hand=args.rest_hand)]
        at_once_labels = [label for _, label in session_frames(1, [0])]
        idle = run_idle(session_video, tmp / "idle", args.pace)
        print(f"loop with no search (same video):      {json.dumps(idle)}", flush=True)
        session = run_session(search, gallery, session_video, session_labels, tmp / "session", args.pace,
                              args.pause)
        print(f"session (3 short rests, 1 long, save): {json.dumps({k: v for k, v in session.items() if k != 'timeline'})}",
              flush=True)
        at_once = run_session(search, gallery, at_once_video, at_once_labels, tmp / "at_once", args.pace,
                              args.pause)
        print(f"at once (draw, save):                  {json.dumps({k: v for k, v in at_once.items() if k != 'timeline'})}",
              flush=True)
    numbers = {"cpu_count": os.cpu_count(), "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
               "checkpoints": "tiny" if args.quick else str(checkpoints), "query_s": round(query, 3),
               "pace": args.pace, "pause": args.pause, "rest_hand": args.rest_hand, "load_average": os.getloadavg()[0],
               "idle_loop": idle, "session": session, "at_once": at_once}
    if args.json:
        args.json.write_text(json.dumps(numbers, indent=2))
    return 0


def search_sketch():
    from PIL import Image
    return Image.open(ROOT / "examples" / "sketches" / "cat.png").convert("RGB")


if __name__ == "__main__":
    sys.exit(main())
