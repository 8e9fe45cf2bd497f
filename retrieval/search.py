"""Cosine top-k over the gallery's vectors: exact for any phone-sized gallery, approximate beyond.

Measured on a 2-core CPU (BENCHMARKS.md, bench/bench_search.py): the exact float32 matrix-vector
product plus argpartition takes about 6 ms over 10k vectors of 768 and 25 ms over 100k, but
300 ms over 1M. So `VectorSearch` stays exact up to EXACT_MAX_ROWS vectors and above that, when
faiss-cpu is installed, uses an IVF-Flat index (exact float32 scores for the candidates it
visits) whose nprobe is calibrated on the gallery itself to reach RECALL_TARGET against exact
search; without faiss, or when no nprobe reaches the target, it stays exact.
"""
from __future__ import annotations

import logging
import math

import numpy as np

log = logging.getLogger(__name__)

EXACT_MAX_ROWS = 200_000
RECALL_TARGET = 0.97
_CALIBRATION_QUERIES = 64
_CALIBRATION_K = 10
_NPROBES = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def top_k(query: np.ndarray, vectors: np.ndarray, k: int) -> list[tuple[int, float]]:
    """The k rows of `vectors` most similar to `query`, best first, as (row, cosine score).

    Both sides are unit vectors, so the dot product is the cosine. Fewer than k rows give all
    of them; an empty gallery or k <= 0 gives [].
    """
    if k <= 0 or len(vectors) == 0:
        return []
    query = np.asarray(query, np.float32).reshape(-1)
    if vectors.shape[1] != query.shape[0]:
        raise ValueError(f"query has {query.shape[0]} dimensions, the index {vectors.shape[1]}")
    scores = vectors @ query
    k = min(k, len(scores))
    best = np.argpartition(-scores, k - 1)[:k] if k < len(scores) else np.arange(len(scores))
    # Ties keep row order (sorted rows, stable sort) so results are reproducible.
    best = np.sort(best)
    best = best[np.argsort(-scores[best], kind="stable")]
    return [(int(i), float(scores[i])) for i in best]


class VectorSearch:
    """Top-k over a fixed set of unit vectors; build once per loaded gallery, query many times."""

    def __init__(self, vectors: np.ndarray, exact_max_rows: int = EXACT_MAX_ROWS,
                 recall_target: float = RECALL_TARGET, seed: int = 0):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.dim = int(self.vectors.shape[1]) if self.vectors.ndim == 2 else 0
        self.recall = 1.0          # calibrated recall@10 against exact search
        self.nprobe = 0            # IVF lists visited per query (0: exact search)
        self._ivf = None
        if len(self.vectors) > exact_max_rows:
            self._ivf = self._build_ivf(recall_target, seed)
        if self._ivf is not None:
            self.vectors = np.zeros((0, self.dim), np.float32)  # the IVF lists hold them: no second copy

    @property
    def approximate(self) -> bool:
        return self._ivf is not None

    def __len__(self) -> int:
        return int(self._ivf.ntotal) if self._ivf is not None else len(self.vectors)

    def _build_ivf(self, recall_target: float, seed: int):
        try:
            import faiss
        except ImportError:
            log.warning("%d vectors: exact search takes a few hundred ms per query here; "
                        "`pip install faiss-cpu` makes it a few ms", len(self.vectors))
            return None
        vectors, rng = self.vectors, np.random.default_rng(seed)
        n = len(vectors)
        nlist = int(min(4096, max(16, round(math.sqrt(n)))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[rng.choice(n, min(n, 40 * nlist), replace=False)])
        index.add(vectors)
        # Calibrate on queries like real ones: gallery vectors moved a little off themselves.
        probes = vectors[rng.choice(n, _CALIBRATION_QUERIES, replace=False)]
        probes = probes + rng.standard_normal(probes.shape).astype(np.float32) * (0.75 / math.sqrt(self.dim))
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        scores = probes @ vectors.T
        exact = np.argpartition(-scores, _CALIBRATION_K - 1, axis=1)[:, :_CALIBRATION_K]
        for nprobe in _NPROBES:
            if nprobe > nlist:
                break
            index.nprobe = nprobe
            found = index.search(probes, _CALIBRATION_K)[1]
            recall = float(np.mean([len(set(f) & set(e)) / _CALIBRATION_K for f, e in zip(found, exact)]))
            if recall >= recall_target:
                self.recall, self.nprobe = recall, nprobe
                log.info("approximate search over %d vectors: IVF %d lists, nprobe %d, recall@%d %.3f",
                         n, nlist, nprobe, _CALIBRATION_K, recall)
                return index
        log.warning("approximate search could not reach recall %.2f over %d vectors; searching exactly",
                    recall_target, n)
        return None

    def top_k(self, query: np.ndarray, k: int) -> list[tuple[int, float]]:
        """As `top_k` above; approximate (recall >= the calibrated one) over very large galleries."""
        if self._ivf is None:
            return top_k(query, self.vectors, k)
        if k <= 0:
            return []
        query = np.asarray(query, np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"query has {query.shape[1]} dimensions, the index {self.dim}")
        scores, rows = self._ivf.search(query, min(k, len(self)))
        hits = sorted(((int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0),
                      key=lambda hit: (-hit[1], hit[0]))
        return hits
