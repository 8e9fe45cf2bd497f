"""VectorSearch: exact top-k for phone-sized galleries, calibrated IVF (faiss-cpu) for huge ones.

The threshold is lowered so that a few thousand clustered vectors take the approximate path.
"""
from __future__ import annotations

import sys

import numpy as np
import pytest

from retrieval.search import VectorSearch, top_k

DIM = 64


def clustered(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scenes = rng.standard_normal((n // 20, DIM)).astype(np.float32)
    x = scenes[rng.integers(0, len(scenes), n)] + rng.standard_normal((n, DIM)).astype(np.float32) * 0.6
    q = scenes[rng.integers(0, len(scenes), 40)] + rng.standard_normal((40, DIM)).astype(np.float32) * 0.6
    unit = lambda a: (a / np.linalg.norm(a, axis=1, keepdims=True)).astype(np.float32)  # noqa: E731
    return unit(x), unit(q)


def test_small_gallery_is_searched_exactly():
    vectors, queries = clustered(2000)
    search = VectorSearch(vectors)
    assert not search.approximate and len(search) == 2000
    for q in queries[:5]:
        assert search.top_k(q, 10) == top_k(q, vectors, 10)


def test_large_gallery_uses_a_calibrated_ivf_with_exact_scores():
    pytest.importorskip("faiss", reason="faiss-cpu is the approximate search's requirement")
    vectors, queries = clustered(8000)
    search = VectorSearch(vectors, exact_max_rows=1000)
    assert search.approximate and len(search) == 8000 and search.recall >= 0.97
    recalls = []
    for q in queries:
        hits, exact = search.top_k(q, 10), top_k(q, vectors, 10)
        assert len(hits) == 10 and [s for _, s in hits] == sorted((s for _, s in hits), reverse=True)
        for row, score in hits:  # scores are the true cosines of the rows found
            assert score == pytest.approx(float(vectors[row] @ q), abs=1e-5)
        recalls.append(len({r for r, _ in hits} & {r for r, _ in exact}) / 10)
    assert np.mean(recalls) >= 0.95
    assert search.top_k(queries[0], 0) == []
    with pytest.raises(ValueError, match="dimensions"):
        search.top_k(np.ones(DIM + 1, np.float32), 3)


def test_without_faiss_a_large_gallery_stays_exact(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss raises ImportError
    vectors, queries = clustered(3000)
    search = VectorSearch(vectors, exact_max_rows=1000)
    assert not search.approximate
    assert search.top_k(queries[0], 5) == top_k(queries[0], vectors, 5)


def test_unreachable_recall_falls_back_to_exact():
    pytest.importorskip("faiss", reason="faiss-cpu is the approximate search's requirement")
    vectors, queries = clustered(3000)
    search = VectorSearch(vectors, exact_max_rows=1000, recall_target=1.01)
    assert not search.approximate
    assert search.top_k(queries[1], 5) == top_k(queries[1], vectors, 5)


def test_vectors_added_in_pieces_search_as_one_build_and_removed_ones_leave():
    vectors, queries = clustered(3000)
    grown = VectorSearch(np.zeros((0, 0), np.float32))
    for start in range(0, 3000, 700):  # uneven pieces: the matrix grows several times
        grown.add(vectors[start:start + 700])
    whole = VectorSearch(vectors)
    assert len(grown) == 3000 and not grown.approximate
    for q in queries[:5]:
        assert grown.top_k(q, 10) == whole.top_k(q, 10)
    gone = [r for r, _ in whole.top_k(queries[0], 3)]
    grown.remove(gone)
    rest = np.array([i for i in range(3000) if i not in gone])
    assert len(grown) == 2997
    expected = [(int(rest[r]), s) for r, s in top_k(queries[0], vectors[rest], 10)]
    assert grown.top_k(queries[0], 10) == expected  # ids stay those they were added with


def test_crossing_the_threshold_trains_the_ivf_once_then_adds_to_it():
    pytest.importorskip("faiss", reason="faiss-cpu is the approximate search's requirement")
    vectors, queries = clustered(8000)
    grown = VectorSearch(np.zeros((0, 0), np.float32), exact_max_rows=1000)
    grown.add(vectors[:900])
    assert not grown.approximate
    grown.add(vectors[900:4000])  # crosses: trained on these 4000
    assert grown.approximate and len(grown) == 4000
    grown.add(vectors[4000:])     # into the trained lists, with their ids
    assert len(grown) == 8000
    for row in (4000, 6123, 7999):  # a vector added after training finds itself first
        assert grown.top_k(vectors[row], 1)[0] == (row, pytest.approx(1.0, abs=1e-5))
    recalls = [len({r for r, _ in grown.top_k(q, 10)} & {r for r, _ in top_k(q, vectors, 10)}) / 10
               for q in queries]
    assert np.mean(recalls) >= 0.9
    grown.remove([6123])
    assert len(grown) == 7999 and grown.top_k(vectors[6123], 1)[0][0] != 6123
