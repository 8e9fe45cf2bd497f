"""How far the generator's fast settings move its image from the float32 reference (full-size models).

    python -m bench.bench_precision [--quick] [--json out.json]

Generates the example sketch with SD-Turbo + pix2pix-turbo (full-size random weights, the cache of
bench/full_size.py) three ways: float32 with separate adapters (the reference: the seed's way),
float32 with merged adapters and folded twin conv, and the CPU default (merged, bfloat16,
channels-last); reports pixel differences (mean / max abs, PSNR) against the reference, the
DINOv2 cosine between the images' vectors, how many of the reference's top-10 photos of the
200-photo gallery each finds, and the generation time. --quick: 256 px, one seed, no float32-merged
variant and no warm-up pass (its times include first-run costs; the product runs 512 px).
"""
from __future__ import annotations

import argparse
import gc
import sys
import time
from pathlib import Path

import numpy as np

from bench import full_size
from checkpoints import layout
from sketch_search.common.command import run_command

ROOT = Path(__file__).resolve().parents[1]

VARIANTS = {  # name: (dtype name, merge for gamma, channels_last)
    "float32, adapters separate (reference)": ("float32", False, False),
    "float32, merged": ("float32", True, False),
    "bfloat16, merged, channels-last (CPU default)": ("bfloat16", True, True),
}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(((a - b) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(255 ** 2 / mse)


def run(args) -> dict:
    full_size.quiet()
    import torch
    from PIL import Image

    from captioning.prompt import build_prompt
    from generation.pix2pix_turbo import Pix2PixTurbo
    from generation.preprocess import prepare_sketch
    from retrieval.embedder import DinoEmbedder
    from retrieval.index import GalleryIndex
    from retrieval.search import top_k

    checkpoints = full_size.checkpoints()
    sketch = prepare_sketch(Image.open(full_size.SKETCH))
    mask = sketch.mask
    if args.size != mask.shape[0]:
        mask = np.asarray(Image.fromarray(mask).resize((args.size, args.size), Image.Resampling.NEAREST))
    prompt = build_prompt("a drawing of a cat", "Convert {subject} into a high-resolution color image "
                                                "with a white background")
    gamma = 0.4
    images: dict[str, list[np.ndarray]] = {}
    seconds: dict[str, float] = {}
    variants = {k: v for k, v in VARIANTS.items() if not (args.quick and v == ("float32", True, False))}
    for name, (dtype_name, merge, channels_last) in variants.items():
        generator = Pix2PixTurbo.from_pretrained(
            checkpoints / "sd-turbo", layout.lora_path(checkpoints),
            dtype=getattr(torch, dtype_name), gamma=gamma if merge else None, channels_last=channels_last)
        if not args.quick:
            generator.generate(mask, prompt, gamma=gamma, seed=0)  # warm: kernels chosen, prompt cached
        outputs, times = [], []
        for seed in args.seeds:
            start = time.perf_counter()
            outputs.append(np.asarray(generator.generate(mask, prompt, gamma=gamma, seed=seed)))
            times.append(time.perf_counter() - start)
        images[name], seconds[name] = outputs, full_size.median(times)
        del generator
        gc.collect()

    embedder = DinoEmbedder.from_pretrained(checkpoints / "dinov2-base")
    index_path = full_size.query_index(200)
    vectors = None
    if index_path.is_file():
        with GalleryIndex(index_path) as index:
            _, vectors = index.load_vectors()
    reference = next(iter(VARIANTS))
    report = {"machine": full_size.machine(), "size": args.size, "seeds": list(args.seeds),
              "command": " ".join(["python -m bench.bench_precision", *sys.argv[1:]]), "variants": {}}
    ref_vectors = embedder.embed_images([Image.fromarray(x) for x in images[reference]])
    for name in variants:
        rows = []
        vecs = embedder.embed_images([Image.fromarray(x) for x in images[name]])
        for ref, ours, ref_vec, vec in zip(images[reference], images[name], ref_vectors, vecs):
            a, b = ref.astype(np.float64), ours.astype(np.float64)
            row = {"mean_abs": float(np.abs(a - b).mean()), "max_abs": float(np.abs(a - b).max()),
                   "psnr_db": psnr(a, b), "dino_cosine": float(ref_vec @ vec)}
            if vectors is not None and len(vectors):
                same = {i for i, _ in top_k(ref_vec, vectors, 10)} & {i for i, _ in top_k(vec, vectors, 10)}
                row["top10_overlap"] = len(same)
            rows.append(row)
        summary = {key: float(np.mean([r[key] for r in rows])) for key in rows[0]}
        summary["max_abs"] = max(r["max_abs"] for r in rows)
        summary["generate_s"] = seconds[name]
        report["variants"][name] = summary
    report["reference_pixel_std"] = float(np.mean([x.std() for x in images[reference]]))
    report["load_average_after"] = full_size.load_average()
    return report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']}, {m['date']}, load average "
          f"{m['load_average']} -> {report['load_average_after']}; {report['size']} px, seeds {report['seeds']}, "
          f"reference image pixel std {report['reference_pixel_std']:.1f}")
    print("\n| generator | generate (s) | mean abs diff (0-255) | max abs diff | PSNR (dB) | DINOv2 cosine "
          "to reference | top-10 photos shared with reference |")
    print("|---|---|---|---|---|---|---|")
    for name, row in report["variants"].items():
        print(f"| {name} | {row['generate_s']:.2f} | {row['mean_abs']:.3f} | {row['max_abs']:.0f} | "
              f"{row['psnr_db']:.1f} | {row['dino_cosine']:.6f} | {row.get('top10_overlap', float('nan')):.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="256 px, one seed, two variants (about two minutes)")

    def settle(args):
        args.size = 256 if args.quick else 512
        args.seeds = (1,) if args.quick else (1, 2, 3)

    full_size.run_benchmark(parser, run, print_table, settle)


if __name__ == "__main__":
    run_command(main)
