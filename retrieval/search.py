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
    """Top-k over a growing set of unit vectors, each known by an id (default: its row, 0, 1, ...).

    `add` appends (amortised growth of the exact matrix; above `exact_max_rows`, the IVF is
    trained once on what is there, and later vectors are added to its trained lists); `remove`
    takes vectors out by id. So an index that grows in slices is never re-read or rebuilt.
    """

    def __init__(self, vectors: np.ndarray, exact_max_rows: int = EXACT_MAX_ROWS,
                 recall_target: float = RECALL_TARGET, seed: int = 0,
                 ids: np.ndarray | None = None):
        vectors = np.asarray(vectors, dtype=np.float32)
        self.dim = int(vectors.shape[1]) if vectors.ndim == 2 else 0
        self.recall = 1.0          # calibrated recall@10 against exact search
        self.nprobe = 0            # IVF lists visited per query (0: exact search)
        self._exact_max_rows, self._recall_target, self._seed = exact_max_rows, recall_target, seed
        self._matrix = np.zeros((0, self.dim), np.float32)  # rows [0, _rows) are in use
        self._ids = np.zeros(0, np.int64)
        self._rows = 0
        self._next_id = 0
        self._ivf = None
        self._ivf_tried = False    # trained (or found not worth it) once, when crossing the threshold
        self.add(vectors, ids)

    @property
    def approximate(self) -> bool:
        return self._ivf is not None

    @property
    def vectors(self) -> np.ndarray:
        """The exact search's vectors, in the order added (empty once the IVF holds them)."""
        return self._matrix[:self._rows]

    def __len__(self) -> int:
        return int(self._ivf.ntotal) if self._ivf is not None else self._rows

    def add(self, vectors: np.ndarray, ids: np.ndarray | None = None) -> None:
        """Append unit vectors; `ids` (default: the next numbers) is what top_k gives back for them."""
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        if vectors.size == 0:
            return
        if self.dim == 0:
            self.dim = int(vectors.shape[1])
            self._matrix = np.zeros((0, self.dim), np.float32)
        if vectors.shape[1] != self.dim:
            raise ValueError(f"vectors have {vectors.shape[1]} dimensions, the index {self.dim}")
        if ids is None:
            ids = np.arange(self._next_id, self._next_id + len(vectors), dtype=np.int64)
        ids = np.asarray(ids, np.int64)
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        if self._ivf is not None:
            self._ivf.add_with_ids(vectors, ids)
            return
        needed = self._rows + len(vectors)
        if needed > len(self._matrix):  # grow by doubling: each vector is copied O(1) times on average
            capacity = max(needed, 2 * len(self._matrix), 1024)
            matrix, kept_ids = np.zeros((capacity, self.dim), np.float32), np.zeros(capacity, np.int64)
            matrix[:self._rows], kept_ids[:self._rows] = self._matrix[:self._rows], self._ids[:self._rows]
            self._matrix, self._ids = matrix, kept_ids
        self._matrix[self._rows:needed], self._ids[self._rows:needed] = vectors, ids
        self._rows = needed
        if self._rows > self._exact_max_rows and not self._ivf_tried:
            self._ivf_tried = True
            self._ivf = self._build_ivf(self._recall_target, self._seed)
            if self._ivf is not None:  # the IVF lists hold them: no second copy
                self._matrix, self._ids, self._rows = np.zeros((0, self.dim), np.float32), np.zeros(0, np.int64), 0

    def remove(self, ids) -> None:
        """Take the vectors of these ids out (unknown ids are ignored)."""
        ids = np.asarray(list(ids), np.int64)
        if ids.size == 0:
            return
        if self._ivf is not None:
            import faiss
            self._ivf.remove_ids(faiss.IDSelectorBatch(ids))
            return
        keep = ~np.isin(self._ids[:self._rows], ids)
        kept = int(keep.sum())
        self._matrix[:kept] = self._matrix[:self._rows][keep]
        self._ids[:kept] = self._ids[:self._rows][keep]
        self._rows = kept

    def _build_ivf(self, recall_target: float, seed: int):
        try:
            import faiss
        except ImportError:
            log.warning("%d vectors: exact search takes a few hundred ms per query here; "
                        "`pip install faiss-cpu` makes it a few ms", self._rows)
            return None
        vectors, ids, rng = self.vectors, self._ids[:self._rows], np.random.default_rng(seed)
        n = len(vectors)
        nlist = int(min(4096, max(16, round(math.sqrt(n)))))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.train(vectors[rng.choice(n, min(n, 40 * nlist), replace=False)])
        index.add_with_ids(vectors, ids)
        # Calibrate on queries like real ones: gallery vectors moved a little off themselves.
        probes = vectors[rng.choice(n, _CALIBRATION_QUERIES, replace=False)]
        probes = probes + rng.standard_normal(probes.shape).astype(np.float32) * (0.75 / math.sqrt(self.dim))
        probes /= np.linalg.norm(probes, axis=1, keepdims=True)
        scores = probes @ vectors.T
        exact = ids[np.argpartition(-scores, _CALIBRATION_K - 1, axis=1)[:, :_CALIBRATION_K]]
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
        """As `top_k` above, with ids for rows; approximate (recall >= the calibrated one) over
        very large galleries."""
        if self._ivf is None:
            ids = self._ids[:self._rows]
            return [(int(ids[row]), score) for row, score in top_k(query, self.vectors, k)]
        if k <= 0:
            return []
        query = np.asarray(query, np.float32).reshape(1, -1)
        if query.shape[1] != self.dim:
            raise ValueError(f"query has {query.shape[1]} dimensions, the index {self.dim}")
        scores, rows = self._ivf.search(query, min(k, len(self)))
        hits = sorted(((int(r), float(s)) for r, s in zip(rows[0], scores[0]) if r >= 0),
                      key=lambda hit: (-hit[1], hit[0]))
        return hits
