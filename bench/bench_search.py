"""Top-10 search latency over 10k, 100k and 1M unit vectors of DINOv2 base's size (768).

    python -m bench.bench_search [--quick] [--sizes 10000 100000 1000000] [--json out.json]

For each gallery size: exact cosine top-k (numpy / BLAS matrix-vector product + argpartition,
float32), the same over float16 storage (torch), and the product's choice, retrieval.search's
VectorSearch: exact up to 200k vectors, above that faiss-cpu IVF-Flat with nprobe calibrated on
the gallery for recall@10 >= 0.97 (its build time, latency and recall on the benchmark's own
queries). Also the product's SQLite index: bytes on disk per photo and the time to load the
vectors at start-up.

The vectors are synthetic but clustered like photo embeddings (groups of near-duplicates around
shared themes; uniform random vectors would be the worst case for any approximate index), and the
queries are new points near the data, as a generated image's vector is.
The full run adds 1M vectors without topics (the hardest case for IVF).
--quick: fewer queries, and the SQLite measurements at 10k only (about a minute and a half).
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from bench import full_size
from retrieval.search import top_k
from sketch_search.common.command import run_command

ROOT = Path(__file__).resolve().parents[1]

DIM = 768
K = 10


def clustered_vectors(n: int, rng: np.random.Generator, topics: int = 100,
                      chunk: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
    """n unit vectors shaped like a photo collection's embeddings, and the scenes they come from.

    100 topics (say beaches, pets, documents); n/50 scenes spread over them (cosine to their
    topic about 0.7); each photo a scene plus its own detail (cosine to the scene about 0.8).
    topics=0: scenes in unrelated random directions, the hardest case for an IVF index.
    """
    def unit(x: np.ndarray) -> np.ndarray:
        return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)

    def noise(rows: int, norm: float) -> np.ndarray:
        return rng.standard_normal((rows, DIM), dtype=np.float32) * (norm / np.sqrt(DIM))

    scene_count = max(1, n // 50)
    if topics:
        themes = unit(rng.standard_normal((topics, DIM), dtype=np.float32))
        scenes = unit(themes[rng.integers(0, topics, scene_count)] + noise(scene_count, 1.0))
    else:
        scenes = unit(rng.standard_normal((scene_count, DIM), dtype=np.float32))
    out = np.empty((n, DIM), np.float32)
    for start in range(0, n, chunk):
        stop = min(n, start + chunk)
        out[start:stop] = unit(scenes[rng.integers(0, scene_count, stop - start)] + noise(stop - start, 0.75))
    return out, scenes


def queries_near(scenes: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    q = scenes[rng.integers(0, len(scenes), count)]
    q = q + rng.standard_normal((count, DIM), dtype=np.float32) * (0.75 / np.sqrt(DIM))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def timed_ms(function, queries: np.ndarray) -> tuple[float, list]:
    times, results = [], []
    for q in queries:
        start = time.perf_counter()
        results.append(function(q))
        times.append((time.perf_counter() - start) * 1000)
    return full_size.median(times), results


def recall(results: list, exact: list) -> float:
    return float(np.mean([len(set(r) & set(e)) / K for r, e in zip(results, exact)]))


def exact_ids(vectors: np.ndarray, queries: np.ndarray) -> list[list[int]]:
    return [[i for i, _ in top_k(q, vectors, K)] for q in queries]


def bench_product(vectors: np.ndarray, queries: np.ndarray, exact: list) -> dict:
    """retrieval.search.VectorSearch as the pipeline builds it: exact, or calibrated IVF (faiss)."""
    from retrieval.search import VectorSearch
    start = time.perf_counter()
    search = VectorSearch(vectors)
    build_s = time.perf_counter() - start
    search.top_k(queries[0], K)
    ms, found = timed_ms(lambda q: [i for i, _ in search.top_k(q, K)], queries)
    return {"approximate": search.approximate, "nprobe": search.nprobe, "build_s": build_s, "ms": ms,
            "recall": recall(found, exact)}


def bench_sqlite(n: int, vectors: np.ndarray, folder: Path) -> dict:
    """The product's index file with n photos: bytes per photo, and load_vectors' time."""
    from retrieval.index import GalleryIndex
    from retrieval.index_store import UPSERT as _UPSERT
    path = folder / f"index-{n}.sqlite"
    with GalleryIndex(path) as index:
        con = index._con  # bench only: fill the product's schema without embedding n photos
        with con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('gallery', ?)", (str(folder),))
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('dim', ?)", (str(DIM),))
            con.executemany(_UPSERT, ((f"DCIM/Camera/IMG_20240101_{i:07d}.jpg", 3_000_000 + i,
                                       1_700_000_000_000_000_000 + i, vectors[i].tobytes(), None)
                                      for i in range(n)))
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = path.stat().st_size
    with GalleryIndex(path) as index:
        start = time.perf_counter()
        paths, loaded = index.load_vectors()
        load_s = time.perf_counter() - start
    assert len(paths) == n and np.array_equal(loaded, vectors[:n])
    path.unlink()
    return {"photos": n, "bytes_per_photo": size / n, "load_vectors_s": load_s}


def run(args) -> dict:
    import torch
    rng = np.random.default_rng(0)
    report = {"machine": full_size.machine(), "command": " ".join(["python -m bench.bench_search", *sys.argv[1:]]),
              "rows": [], "sqlite": []}
    datasets = [("topics", 100)] + ([] if args.quick else [("no topics (IVF's worst case)", 0)])
    for data_name, topics in datasets:
        for n in args.sizes if topics else [max(args.sizes)]:
            vectors, scenes = clustered_vectors(n, rng, topics)
            queries = queries_near(scenes, args.queries, rng)
            row: dict = {"data": data_name, "n": n, "memory_mb_float32": vectors.nbytes / 2 ** 20}
            top_k(queries[0], vectors, K)  # touch the pages once
            row["exact_numpy_ms"], exact = timed_ms(lambda q: [i for i, _ in top_k(q, vectors, K)], queries)
            half = torch.from_numpy(vectors).to(torch.float16)

            def half_top_k(q):
                return torch.topk(half @ torch.from_numpy(q).to(torch.float16), K).indices.tolist()

            half_top_k(queries[0])
            row["exact_float16_torch_ms"], found = timed_ms(half_top_k, queries)
            row["float16_recall"] = recall(found, exact)
            half = None  # freed before the next size is built
            row["product"] = bench_product(vectors, queries, exact)
            report["rows"].append(row)
            print(json.dumps(row), file=sys.stderr, flush=True)
            del vectors
    with tempfile.TemporaryDirectory() as folder:
        rng = np.random.default_rng(2)
        for n in ([10_000] if args.quick else [10_000, 100_000]):
            vectors, _ = clustered_vectors(n, rng)
            report["sqlite"].append(bench_sqlite(n, vectors, Path(folder)))
    report["load_average_after"] = full_size.load_average()
    return report


def print_table(report: dict) -> None:
    m = report["machine"]
    print(f"machine: {m['cpu']}, {m['cores']} cores, numpy {np.__version__}, torch {m['torch']}, {m['date']}, "
          f"load average {m['load_average']} -> {report['load_average_after']}")
    print("\n| vectors (768-d) | data | RAM float32 | exact numpy top-10 (ms) | exact float16 torch (ms; recall@10) "
          "| product: VectorSearch (build s; ms; recall@10) |")
    print("|---|---|---|---|---|---|")
    for row in report["rows"]:
        p = row["product"]
        kind = f"IVF nprobe {p['nprobe']}" if p["approximate"] else "exact"
        print(f"| {row['n']:,} | {row['data']} | {row['memory_mb_float32']:.0f} MB | {row['exact_numpy_ms']:.1f} | "
              f"{row['exact_float16_torch_ms']:.1f}; {row['float16_recall']:.3f} | {kind}: {p['build_s']:.1f} s; "
              f"{p['ms']:.2f} ms; {p['recall']:.3f} |")
    print("\n| photos in the SQLite index | bytes on disk per photo | load_vectors at start-up (s) |")
    print("|---|---|---|")
    for row in report["sqlite"]:
        print(f"| {row['photos']:,} | {row['bytes_per_photo']:.0f} | {row['load_vectors_s']:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 queries per size, SQLite at 10k only")
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=None, help="queries per size (default 30; quick 5)")

    def settle(args):
        args.queries = args.queries or (5 if args.quick else 30)

    full_size.run_benchmark(parser, run, print_table, settle)


if __name__ == "__main__":
    run_command(main)
