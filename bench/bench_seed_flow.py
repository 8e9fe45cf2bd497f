"""The seed project's flow against ours, same machine, same run, full-size models (random weights).

    python -m bench.bench_seed_flow [--quick] [--json out.json]

Seed flow (what the seed did for every search): a NEW Python process loads every model from disk
in float32 (BLIP, SD-Turbo + pix2pix-turbo's adapters unmerged, DINOv2), decodes every photo of
the gallery at full size and embeds it one by one (no index), captions the sketch, generates the
image, embeds it and ranks the gallery by cosine. It runs first, alone, timed from process start
to ranking.
Ours: SketchSearch loaded once (the CPU defaults: generator merged, bfloat16, channels-last),
the gallery index reused, warmed up; the median warm query is the number to compare.
Gallery: 200 phone-sized JPEGs (4000 x 3000). --quick (about two minutes): the seed flow on the
first 10 photos, its per-photo cost extrapolated to 200, against our first query after loading
(no warm-up), which understates the speed-up.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

START = time.perf_counter()

from bench import full_size  # noqa: E402 (after START: the seed flow times its own imports)
from checkpoints import layout  # noqa: E402
from sketch_search.common.command import run_command  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def seed_process(gallery: Path, limit: int) -> dict:
    """The seed's search in this (fresh) process; seconds since the interpreter started."""
    full_size.quiet()
    import numpy as np
    import torch
    from PIL import Image

    from captioning.blip import BlipCaptioner
    from captioning.prompt import DEFAULT_TEMPLATE, build_prompt
    from generation.pix2pix_turbo import Pix2PixTurbo
    from generation.preprocess import prepare_sketch
    from retrieval.embedder import DinoEmbedder

    times = {"imports": time.perf_counter() - START}
    checkpoints = full_size.checkpoints()
    start = time.perf_counter()
    captioner = BlipCaptioner.from_pretrained(checkpoints / "blip-image-captioning-base")
    generator = Pix2PixTurbo.from_pretrained(checkpoints / "sd-turbo", layout.lora_path(checkpoints),
                                             dtype=torch.float32)
    embedder = DinoEmbedder.from_pretrained(checkpoints / "dinov2-base")
    times["load"] = time.perf_counter() - start
    start = time.perf_counter()
    paths = sorted(gallery.glob("*.jpg"))[:limit]
    vectors = []
    for path in paths:  # full-size decode, one photo at a time, nothing kept between runs
        with Image.open(path) as image:
            vectors.append(embedder.embed_images([image.convert("RGB")])[0])
    vectors = np.stack(vectors)
    times["embed_gallery"] = time.perf_counter() - start
    times["photos"] = len(paths)
    start = time.perf_counter()
    sketch = prepare_sketch(Image.open(full_size.SKETCH))
    caption = captioner.caption(sketch.preview)
    times["captioning"] = time.perf_counter() - start
    start = time.perf_counter()
    image = generator.generate(sketch.mask, build_prompt(caption, DEFAULT_TEMPLATE), gamma=0.4, seed=0)
    times["generating"] = time.perf_counter() - start
    start = time.perf_counter()
    query = embedder.embed_images([image])[0]
    ranking = np.argsort(-(vectors @ query))[:5]
    times["searching"] = time.perf_counter() - start
    times["best"] = str(paths[int(ranking[0])].name)
    times["total_since_process_start"] = time.perf_counter() - START
    times["peak_rss_gb"] = full_size.peak_rss_gb()
    return times


def our_queries(gallery: Path, runs: int, warm: bool) -> dict:
    full_size.quiet()
    from PIL import Image

    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch
    settings = Settings(checkpoints=full_size.checkpoints(), device="cpu", show_progress=False,
                        index_path=full_size.query_index(200))
    search = SketchSearch(settings)
    start = time.perf_counter()
    search.load()
    load_s = time.perf_counter() - start
    start = time.perf_counter()
    report = search.index_gallery(gallery)
    index_s = time.perf_counter() - start
    warmup_s = 0.0
    if warm:
        start = time.perf_counter()
        search.warmup()
        warmup_s = time.perf_counter() - start
    sketch = Image.open(full_size.SKETCH)
    sketch.load()
    totals = []
    for _ in range(runs):
        search.generator._prompt_cache.clear()  # as a new drawing: its prompt not seen before
        totals.append(search.query(sketch).timings["total"])
    return {"load": load_s, "index_update": index_s, "index_added": report.added, "warmup": warmup_s,
            "warm": warm, "queries": totals, "median": full_size.median(totals), "gallery": search.gallery_size,
            "peak_rss_gb": full_size.peak_rss_gb()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="seed flow on 10 photos, extrapolated; our first query, not warmed")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--seed-process", type=int, default=None, help=argparse.SUPPRESS)  # internal
    args = parser.parse_args()
    gallery = full_size.gallery(200)
    if args.seed_process is not None:
        print(json.dumps(seed_process(gallery, args.seed_process)))
        return
    full_size.checkpoints()  # built before anything is timed
    limit = 10 if args.quick else 200
    machine = full_size.machine()
    start = time.perf_counter()
    child = subprocess.run([sys.executable, "-m", "bench.bench_seed_flow", "--seed-process", str(limit)],
                           cwd=ROOT, capture_output=True, text=True, check=True,
                           env={**os.environ, "TQDM_DISABLE": "1"})
    seed_wall = time.perf_counter() - start
    seed = json.loads(child.stdout.strip().splitlines()[-1])
    seed["wall"] = seed_wall
    per_photo = seed["embed_gallery"] / seed["photos"]
    seed["wall_at_200"] = seed_wall + per_photo * (200 - seed["photos"])
    ours = our_queries(gallery, 1 if args.quick else 3, warm=not args.quick)
    report = {"machine": machine, "command": " ".join(["python -m bench.bench_seed_flow", *sys.argv[1:]]),
              "seed": seed, "ours": ours, "speedup": seed["wall_at_200"] / ours["median"],
              "load_average_after": full_size.load_average()}
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, torch {machine['torch']}, {machine['date']}, "
          f"load average {machine['load_average']} -> {report['load_average_after']}")
    extrapolated = "" if seed["photos"] == 200 else f" (measured on {seed['photos']}, extrapolated)"
    print("\n| flow | seconds |\n|---|---|")
    print(f"| seed: new process, imports | {seed['imports']:.1f} |")
    print(f"| seed: load all models (float32) | {seed['load']:.1f} |")
    print(f"| seed: decode + embed {seed['photos']} photos one by one ({per_photo:.2f} s each) | "
          f"{seed['embed_gallery']:.1f} |")
    print(f"| seed: caption / generate / search | {seed['captioning']:.1f} / {seed['generating']:.1f} / "
          f"{seed['searching']:.2f} |")
    print(f"| **seed: whole search, 200 photos{extrapolated}** | **{seed['wall_at_200']:.1f}** |")
    print(f"| ours: load once / index update / warm-up (not per query) | {ours['load']:.1f} / "
          f"{ours['index_update']:.1f} / {ours['warmup']:.1f} |")
    which = (f"warm query, median of {len(ours['queries'])}" if ours["warm"]
             else "first query after loading, not warmed (quick: a lower bound on the speed-up)")
    print(f"| **ours: {which}** | **{ours['median']:.1f}** |")
    print(f"| **speed-up** | **{report['speedup']:.1f}x** |")
    print(f"\npeak RSS: seed process {seed['peak_rss_gb']:.2f} GB, ours {ours['peak_rss_gb']:.2f} GB")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    run_command(main)
