"""retrieval.search.top_k: exact cosine ranking, on hand-made vectors and on indexed real photos."""
from __future__ import annotations

import numpy as np
import pytest
import skimage.data
from PIL import Image

from retrieval.embedder import DinoEmbedder
from retrieval.images import load_image
from retrieval.index import GalleryIndex
from retrieval.search import top_k
from tools.fixtures.tiny_models.dinov2 import write_tiny_dinov2


def _unit(rows) -> np.ndarray:
    array = np.asarray(rows, np.float32)
    return array / np.linalg.norm(array, axis=-1, keepdims=True)


def test_orders_by_cosine_descending():
    vectors = _unit([[1, 0, 0], [0.6, 0.8, 0], [0, 1, 0], [-1, 0, 0], [0.8, 0.6, 0]])
    hits = top_k(_unit([1, 0, 0]), vectors, 3)
    assert [i for i, _ in hits] == [0, 4, 1]
    assert [s for _, s in hits] == pytest.approx([1.0, 0.8, 0.6], abs=1e-6)


def test_matches_a_full_sort_on_random_vectors():
    rng = np.random.default_rng(0)
    vectors = _unit(rng.normal(size=(1000, 64)))
    query = _unit(rng.normal(size=64))
    hits = top_k(query, vectors, 10)
    expected = np.argsort(-(vectors @ query))[:10]
    assert [i for i, _ in hits] == expected.tolist()
    assert all(a[1] >= b[1] for a, b in zip(hits, hits[1:]))


def test_k_larger_than_gallery_returns_all_and_edge_cases():
    vectors = _unit([[0, 1], [1, 0], [1, 1]])
    hits = top_k(_unit([1, 0]), vectors, 10)
    assert [i for i, _ in hits] == [1, 2, 0]
    assert top_k(_unit([1, 0]), vectors, 0) == []
    assert top_k(_unit([1, 0]), np.zeros((0, 2), np.float32), 5) == []
    assert len(top_k(_unit([1, 0]), vectors, 1)) == 1


def test_ties_keep_gallery_order():
    vectors = _unit([[1, 0], [0, 1], [1, 0], [1, 0]])
    assert [i for i, _ in top_k(_unit([1, 0]), vectors, 2)] == [0, 2]


def test_dimension_mismatch_is_refused():
    with pytest.raises(ValueError, match="dimensions"):
        top_k(np.ones(3, np.float32), np.ones((2, 4), np.float32), 1)


def test_each_indexed_photo_finds_itself_first(tmp_path):
    embedder = DinoEmbedder.from_pretrained(write_tiny_dinov2(tmp_path / "dinov2"))
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for name in ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field"):
        Image.fromarray(getattr(skimage.data, name)()).save(gallery / f"{name}.jpg", quality=90)
    with GalleryIndex(tmp_path / "index.sqlite") as index:
        index.update(gallery, embedder)
        paths, vectors = index.load_vectors()
    for row, path in enumerate(paths):
        query = embedder.embed_images([load_image(path, embedder.min_image_side)])[0]
        hits = top_k(query, vectors, 3)
        assert hits[0][0] == row
        assert hits[0][1] == pytest.approx(1.0, abs=1e-5)
        assert hits[1][1] < hits[0][1] - 1e-4
