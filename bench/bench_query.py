"""Warm query latency, stage by stage, with the full-size models (random weights) on this machine.

    python -m bench.bench_query [--quick] [--runs N] [--json out.json]

Loads the product's SketchSearch from a full-size checkpoints folder (BLIP base, SD-Turbo +
pix2pix-turbo's LoRA file, DINOv2 base; built once into the cache by bench/full_size.py), indexes a
gallery of 200 phone-sized JPEGs (once; later runs reuse the index), then answers the example sketch
several times: the first query is reported on its own, the rest as medians per stage. Every query
computes its prompt's text embedding, as a new drawing would (the product caches it per prompt).
--baseline: the generator and embedder as they were before the speed-ups, for comparison.
--quick: 1 timed query after the first (about a minute on a 2-core CPU once the cache is built).
"""
from __future__ import annotations

import argparse
import functools
import sys
import time
from collections import defaultdict
from pathlib import Path

from bench import full_size
from checkpoints import layout
from sketch_search.common.command import run_command

ROOT = Path(__file__).resolve().parents[1]

STAGES = ("preprocess", "captioning", "text encoder", "vae encode", "unet", "vae decode",
          "generating", "embed query", "top-k", "searching", "total")


def instrument(search) -> dict[str, list[float]]:
    """Time the generator's and embedder's pieces by wrapping them (bench only, product unchanged)."""
    import torch
    times: dict[str, list[float]] = defaultdict(list)
    # CUDA kernels run asynchronously: a piece has ended when the device has finished it.
    sync = torch.cuda.synchronize if search.device.type == "cuda" else (lambda: None)

    def timed(name, function):
        @functools.wraps(function)
        def wrapper(*args, **kwargs):
            sync()
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                sync()
                times[name].append(time.perf_counter() - start)
        return wrapper

    generator = search.generator
    generator._encode = timed("vae encode", generator._encode)
    generator._decode = timed("vae decode", generator._decode)
    generator.text_encoder.forward = timed("text encoder", generator.text_encoder.forward)
    generator.unet.forward = timed("unet", generator.unet.forward)
    search.embedder.embed_images = timed("embed query", search.embedder.embed_images)
    return times


def one_query(search, sketch, times) -> dict[str, float]:
    for values in times.values():
        values.clear()
    # Each query as a new drawing, with its own caption: the prompt's text embedding is computed
    # (the cache only saves it when one sketch is searched again, e.g. with another seed).
    search.generator._prompt_cache.clear()
    result = search.query(sketch)
    row = dict(result.timings)
    for name in ("text encoder", "vae encode", "unet", "vae decode", "embed query"):
        row[name] = sum(times.get(name, []))
    row["top-k"] = row["searching"] - row["embed query"]
    return row


def run(args) -> dict:
    full_size.quiet()
    import torch
    from PIL import Image
    if args.threads:
        torch.set_num_threads(args.threads)

    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch

    checkpoints = full_size.checkpoints()
    gallery = full_size.gallery(args.gallery_size)
    index_path = full_size.query_index(args.gallery_size)
    settings = Settings(checkpoints=checkpoints, device=args.device, show_progress=False, index_path=index_path)
    report = {"machine": full_size.machine(), "command": " ".join(["python -m bench.bench_query", *sys.argv[1:]])}

    search = SketchSearch(settings)
    start = time.perf_counter()
    if args.baseline:  # the pipeline before the speed-ups: float32, adapters separate
        from generation.pix2pix_turbo import Pix2PixTurbo
        from retrieval.embedder import DinoEmbedder
        search.generator = Pix2PixTurbo.from_pretrained(
            checkpoints / "sd-turbo", layout.lora_path(checkpoints), dtype=torch.float32)
        search.embedder = DinoEmbedder.from_pretrained(checkpoints / "dinov2-base", name="dinov2-base")
    search.load()
    report["load_s"] = time.perf_counter() - start
    report["rss_after_load_gb"] = full_size.rss_gb()
    start = time.perf_counter()
    index = search.index_gallery(gallery)
    report["index_s"] = time.perf_counter() - start
    report["index_report"] = {"added": index.added, "unchanged": index.unchanged, "skipped": len(index.skipped)}
    report["gallery"] = search.gallery_size
    times = instrument(search)
    sketch = Image.open(full_size.SKETCH)
    sketch.load()
    report["first_query"] = one_query(search, sketch, times)
    warm = [one_query(search, sketch, times) for _ in range(args.runs)]
    report["warm_runs"] = warm
    report["warm_median"] = {stage: full_size.median([row[stage] for row in warm]) for stage in STAGES}
    report["peak_rss_gb"] = full_size.peak_rss_gb()
    report["load_average_after"] = full_size.load_average()
    report["generator_dtype"] = str(search.generator.unet.dtype)
    report["device"] = str(search.device)
    return report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
          f"{m['date']}, load average {m['load_average']} -> {report['load_average_after']}")
    if m.get("gpu"):
        print(f"GPU: {m['gpu']}; models on {report['device']}")
    print(f"models loaded in {report['load_s']:.1f} s, RSS {report['rss_after_load_gb']:.2f} GB after load, "
          f"peak RSS {report['peak_rss_gb']:.2f} GB; generator {report['generator_dtype']}")
    print(f"gallery: {report['gallery']} photos, index update {report['index_s']:.1f} s ({report['index_report']})")
    print(f"\n| stage | first query (s) | warm median of {len(report['warm_runs'])} (s) |")
    print("|---|---|---|")
    for stage in STAGES:
        print(f"| {stage} | {report['first_query'][stage]:.3f} | {report['warm_median'][stage]:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one warm query (about a minute)")
    parser.add_argument("--runs", type=int, default=None, help="warm queries to time (default 5; quick 1)")
    parser.add_argument("--gallery-size", type=int, default=200)
    parser.add_argument("--baseline", action="store_true",
                        help="the generator and embedder as before the speed-ups (float32, adapters separate)")
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                        help="where the models run (default cpu; cuda: float16, the VAE in float32)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's, one per core)")

    def settle(args):
        args.runs = args.runs or (1 if args.quick else 5)
        if args.device == "cuda":
            import torch
            if not torch.cuda.is_available():
                parser.error("--device cuda: no CUDA GPU is visible here; run it where one is, or use cpu")

    full_size.run_benchmark(parser, run, print_table, settle)


if __name__ == "__main__":
    run_command(main)
