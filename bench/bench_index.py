"""Gallery indexing speed with phone-sized photos, and the cost of re-running on an unchanged gallery.

    python -m bench.bench_index [--quick] [--json out.json]

1. Photos per second of GalleryIndex.update (the product's indexing: decode at reduced scale on
   worker threads while DINOv2 base embeds the previous batch, one commit per batch; the
   embedder in the pipeline's dtype for this CPU: bfloat16 where it is native) over
   4000 x 3000 JPEGs into a fresh index: 1,000 photos (--quick: 100). Beside it, the parts alone:
   decoding (product's reduced-scale decode on 4 threads; full-size decode as the seed did) and
   embedding pre-decoded photos in batches of 16.
2. A re-run with nothing changed over 10,000 small photos (made and indexed once with a tiny
   DINOv2 into the cache; the re-run does no model work, so the model's size does not matter):
   the index update plus loading the vectors, as SketchSearch.index_gallery does. Target < 1 s.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bench import full_size
from sketch_search.common.command import run_command

ROOT = Path(__file__).resolve().parents[1]

RERUN_PHOTOS = 10_000


def photo_folder(count: int) -> Path:
    """`count` of the cached phone-sized photos in a folder of their own (built once)."""
    if count > 200:
        return full_size.write_photos(full_size.CACHE / f"gallery-{count}", count)
    source = full_size.gallery(200)
    if count == 200:
        return source
    folder = full_size.CACHE / f"gallery-links-{count}"
    folder.mkdir(parents=True, exist_ok=True)
    for path in sorted(source.glob("*.jpg"))[:count]:
        link = folder / path.name
        if not link.exists():
            link.symlink_to(path)
    return folder


def small_gallery(count: int) -> tuple[Path, Path]:
    """`count` small JPEGs in nested folders and their index, made once with a tiny DINOv2."""
    from PIL import Image

    from retrieval.embedder import DinoEmbedder
    from retrieval.index import GalleryIndex
    from tools.fixtures.tiny_models.dinov2 import write_tiny_dinov2
    root = full_size.CACHE / f"small-gallery-{count}"
    folder, index_path, model = root / "photos", root / "index.sqlite", root / "tiny-dinov2"
    if not (root / full_size.DONE).is_file():
        print(f"making {count} small photos and their index (once) in {root}", file=sys.stderr)
        for i in range(count):
            sub = folder / f"{2015 + i // 1000}" / f"{(i // 100) % 10:02d}"
            sub.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (64, 48), ((i * 37) % 256, (i * 11) % 256, (i * 5) % 256)).save(sub / f"IMG_{i:05d}.jpg")
        write_tiny_dinov2(model)
        with GalleryIndex(index_path) as index:
            index.update(folder, DinoEmbedder.from_pretrained(model), batch_size=64)
        (root / full_size.DONE).touch()
    return folder, index_path


def decode_rate(paths: list[Path], min_side: int | None, workers: int) -> float:
    from retrieval.images import load_image
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(lambda p: load_image(p, min_side), paths):
            pass
    return len(paths) / (time.perf_counter() - start)


def run(args) -> dict:
    full_size.quiet()
    from retrieval.embedder import DinoEmbedder
    from retrieval.images import load_image
    from retrieval.index import GalleryIndex

    report = {"machine": full_size.machine(), "command": " ".join(["python -m bench.bench_index", *sys.argv[1:]])}
    folder = photo_folder(args.photos)
    paths = sorted(folder.glob("*.jpg"))[:args.photos]
    import torch

    from sketch_search.app.precision import model_precision
    dtype = model_precision(torch.device("cpu"), "auto").embedder  # the product's choice here
    report["embedder_dtype"] = str(dtype)
    embedder = DinoEmbedder.from_pretrained(full_size.checkpoints() / "dinov2-base", dtype=dtype)
    sample = paths[:min(len(paths), 32)]
    report["decode_reduced_4_threads_per_s"] = decode_rate(sample, embedder.min_image_side, 4)
    report["decode_reduced_1_thread_per_s"] = decode_rate(sample[:16], embedder.min_image_side, 1)
    report["decode_full_size_1_thread_per_s"] = decode_rate(sample[:8], None, 1)
    images = [load_image(p, embedder.min_image_side) for p in sample]
    embedder.embed_images(images[:2])
    start = time.perf_counter()
    embedder.embed_images(images, batch_size=16)
    report["embed_only_per_s"] = len(images) / (time.perf_counter() - start)
    if dtype != torch.float32:  # what float32 would cost, for comparison
        reference = DinoEmbedder.from_pretrained(full_size.checkpoints() / "dinov2-base")
        reference.embed_images(images[:2])
        start = time.perf_counter()
        reference.embed_images(images, batch_size=16)
        report["embed_only_float32_per_s"] = len(images) / (time.perf_counter() - start)
        del reference

    with tempfile.TemporaryDirectory() as work:
        with GalleryIndex(Path(work) / "index.sqlite") as index:
            start = time.perf_counter()
            result = index.update(folder, embedder, batch_size=16)
            seconds = time.perf_counter() - start
    report["index"] = {"photos": result.added, "skipped": len(result.skipped), "seconds": seconds,
                       "photos_per_s": result.added / seconds}
    report["load_average_after_indexing"] = full_size.load_average()

    small, index_path = small_gallery(RERUN_PHOTOS)
    tiny = DinoEmbedder.from_pretrained(index_path.parent / "tiny-dinov2")
    runs = []
    for _ in range(3):
        start = time.perf_counter()
        with GalleryIndex(index_path) as index:
            rerun = index.update(small, tiny)
            walked = time.perf_counter() - start
            photos, _ = index.load_vectors()
        runs.append((time.perf_counter() - start, walked))
    assert rerun.unchanged == RERUN_PHOTOS and rerun.added == rerun.updated == 0 and len(photos) == RERUN_PHOTOS
    report["rerun"] = {"photos": RERUN_PHOTOS, "seconds": full_size.median([r[0] for r in runs]),
                       "update_only_s": full_size.median([r[1] for r in runs])}
    report["peak_rss_gb"] = full_size.peak_rss_gb()
    report["load_average_after"] = full_size.load_average()
    return report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads), "
          f"{m['date']}, load average {m['load_average']} -> {report['load_average_after_indexing']}")
    i = report["index"]
    print("\n| what | photos per second |\n|---|---|")
    print(f"| **index {i['photos']} photos of 4000x3000 (decode + embed, {i['seconds']:.0f} s)** | "
          f"**{i['photos_per_s']:.2f}** |")
    print(f"| decode alone, reduced scale, 4 threads | {report['decode_reduced_4_threads_per_s']:.1f} |")
    print(f"| decode alone, reduced scale, 1 thread | {report['decode_reduced_1_thread_per_s']:.1f} |")
    print(f"| decode alone, full size (the seed's way), 1 thread | {report['decode_full_size_1_thread_per_s']:.1f} |")
    print(f"| embed alone (DINOv2 base {report['embedder_dtype']}, batches of 16) | {report['embed_only_per_s']:.2f} |")
    if "embed_only_float32_per_s" in report:
        print(f"| embed alone, float32 (before) | {report['embed_only_float32_per_s']:.2f} |")
    r = report["rerun"]
    print("\n| re-run, nothing changed | seconds |\n|---|---|")
    print(f"| {r['photos']:,} photos: index update + load vectors (median of 3) | {r['seconds']:.3f} |")
    print(f"| of which the update (walk + compare) | {r['update_only_s']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100 photos (about a minute and a half)")
    parser.add_argument("--photos", type=int, default=None, help="photos to index (default 1000; quick 100)")

    def settle(args):
        args.photos = args.photos or (100 if args.quick else 1000)

    full_size.run_benchmark(parser, run, print_table, settle)


if __name__ == "__main__":
    run_command(main)
