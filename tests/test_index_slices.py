"""SketchSearch indexing in slices (issue 18): the search grows with each slice, newest photos first.

Tiny random checkpoints (the `tiny_checkpoints` fixture) and a gallery of real photo crops with
distinct file times; batch size 4 and zero-second slices, so each slice is one batch.
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

from retrieval.index import GalleryIndex
from sketch_search.app.settings import Settings
from sketch_search.app.sketch_search import SketchSearch

N = 22
BATCH = 4
T0 = 1_700_000_000_000_000_000  # ns


def _photo(path: Path, i: int, mtime_ns: int) -> None:
    y, x = divmod(i % 64, 8)
    Image.fromarray(skimage.data.astronaut()[y * 60:y * 60 + 56, x * 60:x * 60 + 56]).save(path)
    os.utime(path, ns=(mtime_ns, mtime_ns))


def _age(i: int) -> int:
    """Photo i's mtime: a shuffled order, so newest-first is not the names' order."""
    return T0 + ((i * 7) % N) * 1_000_000_000


@pytest.fixture
def gallery(tmp_path) -> Path:
    folder = tmp_path / "gallery"
    (folder / "Camera").mkdir(parents=True)
    for i in range(N):
        _photo(folder / ("Camera" if i % 3 else "") / f"p{i:02d}.png", i, _age(i))
    return folder


def _search(checkpoints: Path) -> SketchSearch:
    search = SketchSearch(Settings(checkpoints=checkpoints, device="cpu", show_progress=False,
                                   batch_size=BATCH))
    search.load(stages=("embedder",))
    return search


def _newest(gallery: Path, count: int) -> set[Path]:
    files = sorted((p for p in gallery.rglob("*.png")), key=lambda p: -p.stat().st_mtime_ns)
    return set(files[:count])


def _ranked_everything(search: SketchSearch, dim: int) -> dict[Path, np.ndarray]:
    """Every searched photo's vector, read back through rank(): one query per axis."""
    found: dict[Path, np.ndarray] = {}
    for axis in range(dim):
        query = np.zeros(dim, np.float32)
        query[axis] = 1.0
        for path, score in search.rank(query, k=10 ** 6):
            found.setdefault(path, np.zeros(dim, np.float32))[axis] = score
    return found


def _stored(db: Path) -> dict[Path, np.ndarray]:
    with GalleryIndex(db) as index:
        paths, vectors = index.load_vectors()
    return dict(zip(paths, vectors))


def _same(a: dict[Path, np.ndarray], b: dict[Path, np.ndarray]) -> None:
    assert set(a) == set(b)
    for path in a:
        np.testing.assert_allclose(a[path], b[path], atol=1e-6)


def test_slices_index_newest_first_and_search_what_is_indexed(gallery, tiny_checkpoints):
    search = _search(tiny_checkpoints)
    search.start_index(gallery)
    assert (search.gallery_size, search.gallery_total) == (0, N)
    assert search.rank(np.ones(search.embedder.dim, np.float32)) == []
    for slices in range(1, 4):
        progress = search.index_slice(0.0)
        assert (progress.searched, progress.total, progress.done) == (slices * BATCH, N, False)
        found = {path for path, _ in search.rank(np.ones(search.embedder.dim, np.float32), k=N)}
        assert found == _newest(gallery, slices * BATCH)
    assert search.gallery_size == 3 * BATCH and search.gallery_total == N


def test_the_search_after_slices_equals_a_fresh_load_of_the_index(gallery, tiny_checkpoints):
    search = _search(tiny_checkpoints)
    search.start_index(gallery)
    db = search.index_path(gallery)
    for _ in range(3):
        search.index_slice(0.0)
        _same(_ranked_everything(search, search.embedder.dim), _stored(db))
    while not search.index_slice(0.0).done:
        pass
    assert search.gallery_size == search.gallery_total == N
    _same(_ranked_everything(search, search.embedder.dim), _stored(db))


def test_an_interrupted_slice_run_resumes_and_ends_as_one_complete_run(gallery, tiny_checkpoints,
                                                                       tmp_path):
    first = _search(tiny_checkpoints)
    first.start_index(gallery)
    first.index_slice(60.0, cancelled=lambda: True)  # stops after the batch in progress
    assert first.gallery_size == BATCH
    first.index_slice(0.0)
    # The program ended there; the next one finds those photos searchable at once.
    again = _search(tiny_checkpoints)
    again.start_index(gallery)
    assert (again.gallery_size, again.gallery_total) == (2 * BATCH, N)
    again.index_slice(0.0)
    report = again.index_gallery(gallery)  # main2's complete index, after slices
    assert (again.gallery_size, again.gallery_total) == (N, N)
    assert report.unchanged == 3 * BATCH and report.added == N - 3 * BATCH
    one_run = Path(shutil.copytree(gallery, tmp_path / "copy", ignore=shutil.ignore_patterns(".*")))
    whole = _search(tiny_checkpoints)
    assert whole.index_gallery(one_run).added == N
    db, one_db = again.index_path(gallery), whole.index_path(one_run)
    _same({p.relative_to(gallery): v for p, v in _stored(db).items()},
          {p.relative_to(one_run): v for p, v in _stored(one_db).items()})
    _same({p.relative_to(gallery): v for p, v in _ranked_everything(again, again.embedder.dim).items()},
          {p.relative_to(one_run): v for p, v in _ranked_everything(whole, whole.embedder.dim).items()})


def test_photos_that_arrive_join_the_queue_newest_first_and_gone_ones_leave(gallery, tiny_checkpoints):
    search = _search(tiny_checkpoints)
    search.start_index(gallery)
    search.index_slice(0.0)
    search.index_slice(0.0)
    indexed = {path for path, _ in search.rank(np.ones(search.embedder.dim, np.float32), k=N)}
    deleted, changed = sorted(indexed)[:2]
    deleted.unlink()
    _photo(changed, 40, T0 + 500 * 1_000_000_000)  # edited: now the newest but one
    arrived = [gallery / "Camera" / f"new{i}.png" for i in range(3)]
    for i, path in enumerate(arrived):  # the phone sync keeps the phone's (newer) times
        _photo(path, 50 + i, T0 + (100 + i) * 1_000_000_000)
    search.start_index(gallery)  # the sync brought photos
    assert (search.gallery_size, search.gallery_total) == (2 * BATCH - 2, N - 1 + 3)
    # Two batches were already decoding ahead (they keep their turn); the newcomers come next.
    for _ in range(3):
        search.index_slice(0.0)
    found = {path for path, _ in search.rank(np.ones(search.embedder.dim, np.float32), k=N + 5)}
    assert set(arrived) | {changed} <= found and deleted not in found
    assert len(found) == 2 * BATCH - 2 + 3 * BATCH
    while not search.index_slice(0.0).done:
        pass
    assert search.gallery_size == search.gallery_total == N + 2
    _same(_ranked_everything(search, search.embedder.dim),
          _stored(search.index_path(gallery)))


def test_hostile_gallery_rules_hold_under_slicing(tmp_path, tiny_checkpoints):
    gallery, outside = tmp_path / "gallery", tmp_path / "private"
    gallery.mkdir()
    outside.mkdir()
    for i in range(6):
        _photo(gallery / f"p{i}.png", i, _age(i))
    _photo(gallery / os.fsdecode(b"caf\xe9.png"), 7, T0 + 99 * 1_000_000_000)
    _photo(outside / "secret.png", 8, T0)
    os.symlink(outside / "secret.png", gallery / "outside.png")
    os.mkfifo(gallery / "pipe.jpg")
    (gallery / "notes.jpg").write_text("shopping list\n")  # not an image: skipped when decoded
    (gallery / "cut.png").write_bytes((gallery / "p0.png").read_bytes()[:200])  # still copying
    (gallery / ".trashed-1-old.png").write_bytes((gallery / "p0.png").read_bytes())
    search = _search(tiny_checkpoints)
    search.start_index(gallery)
    assert search.gallery_total == 9  # 7 photos and 2 files that may be photos; links, FIFOs, hidden: not
    while not search.index_slice(0.0).done:
        pass
    assert search.gallery_size == search.gallery_total == 7
    found = {path.name for path, _ in search.rank(np.ones(search.embedder.dim, np.float32), k=20)}
    assert found == {f"p{i}.png" for i in range(6)} | {os.fsdecode(b"caf\xe9.png")}
    # The same verdicts as one complete run over the same files.
    report = search.index_gallery(gallery)
    assert report.unchanged == 7
    reasons = dict(report.skipped)
    assert "outside the gallery" in reasons["outside.png"] and "FIFO" in reasons["pipe.jpg"]
    assert "notes.jpg" in reasons and "cut.png" in reasons and ".trashed-1-old.png" not in reasons
