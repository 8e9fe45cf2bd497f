"""retrieval.index: a gallery of real photos (scikit-image) indexed with a tiny random DINOv2.

The embedders below are real DinoEmbedders loaded from a saved folder; the subclasses only
count (or, for the interrupt test, refuse) calls on the way to the real model.
"""
from __future__ import annotations

import io
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import skimage.data
from PIL import Image

import retrieval.index as index_module
from retrieval.embedder import DinoEmbedder
from retrieval.images import load_image, register_heif
from retrieval.index import GalleryIndex, IndexReport, default_index_path
from sketch_search.common.errors import GalleryError
from tools.fixtures.tiny_models.dinov2 import write_tiny_dinov2

PHOTOS = {  # relative path -> real photo
    "astronaut.jpg": skimage.data.astronaut,
    "chelsea.jpg": skimage.data.chelsea,
    "coffee.png": skimage.data.coffee,
    "Camera/rocket.JPG": skimage.data.rocket,
    "Camera/hubble.jpeg": skimage.data.hubble_deep_field,
    "Camera/2024/cells.png": skimage.data.immunohistochemistry,
    "Camera/2024/cameraman.jpg": skimage.data.camera,
    "Camera/cat.heic": skimage.data.chelsea,
    "Camera/portrait.jpg": skimage.data.rocket,  # with an EXIF orientation tag
}
N = len(PHOTOS)
BROKEN = {"broken.jpg", "cut.jpg", "notes.txt"}


class CountingEmbedder(DinoEmbedder):
    """The real embedder, counting the images it is asked to embed."""

    calls = 0
    images = 0

    def embed_images(self, images, batch_size=16):
        self.calls += 1
        self.images += len(images)
        return super().embed_images(images, batch_size)


class FailingEmbedder(CountingEmbedder):
    """Embeds its first batch, then is interrupted (as by Ctrl-C) on the second."""

    def embed_images(self, images, batch_size=16):
        if self.calls >= 1:
            raise KeyboardInterrupt
        return super().embed_images(images, batch_size)


def _jpeg_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def write_gallery(root):
    register_heif()
    for rel, photo in PHOTOS.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        image, extra = Image.fromarray(photo()), {}
        if rel == "Camera/portrait.jpg":
            extra["exif"] = Image.Exif()
            extra["exif"][0x0112] = 6  # rotate 90 degrees clockwise to display
        kind = {".png": "PNG", ".heic": "HEIF"}.get(path.suffix.lower(), "JPEG")
        image.save(path, format=kind, **extra)
    rng = np.random.default_rng(0)
    chelsea = _jpeg_bytes(skimage.data.chelsea())
    (root / "broken.jpg").write_bytes(chelsea[:600] + rng.bytes(len(chelsea) - 600))
    (root / "cut.jpg").write_bytes(chelsea[: len(chelsea) // 2])
    (root / "notes.txt").write_text("not a photo\n")
    # Hidden: Android's trash and in-progress files, thumbnails, partial downloads.
    (root / ".trashed-1700000000-old.jpg").write_bytes(chelsea)
    (root / ".pending-1700000000-new.jpg").write_bytes(chelsea[:100])
    (root / ".thumbnails").mkdir()
    (root / ".thumbnails" / "t.jpg").write_bytes(chelsea)
    return root


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_tiny_dinov2(tmp_path_factory.mktemp("dinov2-tiny"))


@pytest.fixture
def embedder(model_dir):
    return CountingEmbedder.from_pretrained(model_dir, name="dinov2-tiny")


@pytest.fixture(scope="module")
def gallery_template(tmp_path_factory):
    return write_gallery(tmp_path_factory.mktemp("template") / "gallery")


@pytest.fixture
def gallery(tmp_path, gallery_template):
    return Path(shutil.copytree(gallery_template, tmp_path / "gallery"))


def _update(index: GalleryIndex, gallery, embedder, **kwargs) -> IndexReport:
    return index.update(gallery, embedder, **kwargs)


class CountingLoads:
    def __init__(self):
        self.paths = []

    def __call__(self, path, min_side=None, budget=None):
        self.paths.append(os.path.basename(path))
        return load_image(path, min_side, budget)


def test_first_run_embeds_every_photo_and_skips_broken_files(gallery, embedder):
    calls = []
    with GalleryIndex(default_index_path(gallery, embedder.name)) as index:
        report = _update(index, gallery, embedder, batch_size=3,
                         progress=lambda done, total: calls.append((done, total)))
        paths, vectors = index.load_vectors()
    assert default_index_path(gallery, "x") == gallery / ".sketch-search" / "index-x.sqlite"
    assert (report.added, report.updated, report.removed, report.unchanged) == (N, 0, 0, 0)
    assert embedder.images == N
    reasons = dict(report.skipped)
    assert set(reasons) == BROKEN
    assert "truncated" in reasons["cut.jpg"]
    assert reasons["broken.jpg"]  # damaged data: a reason, whatever the decoder's words
    assert "not an image file type" in reasons["notes.txt"]
    assert sorted(p.relative_to(gallery).as_posix() for p in paths) == sorted(PHOTOS)
    assert vectors.shape == (N, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert calls[-1] == (N + 2, N + 2)  # the photos and the 2 broken image files went through decoding
    as_dict = report.to_dict()
    assert set(as_dict) == {"added", "updated", "removed", "unchanged", "skipped"}
    assert {"path": "notes.txt", "reason": reasons["notes.txt"]} in as_dict["skipped"]


@pytest.mark.parametrize("name", ["Camera/rocket.JPG", "Camera/cat.heic", "Camera/portrait.jpg"])
def test_stored_vector_is_the_photo_embedding(gallery, embedder, name):
    with GalleryIndex(gallery / "idx.sqlite") as index:
        _update(index, gallery, embedder)
        paths, vectors = index.load_vectors()
    row = paths.index(gallery / name)
    shown = load_image(paths[row], embedder.min_image_side)  # decoded, upright, reduced
    expected = embedder.embed_images([shown])[0]
    np.testing.assert_allclose(vectors[row], expected, atol=1e-5)
    if name == "Camera/portrait.jpg":
        assert shown.height > shown.width  # EXIF orientation applied before embedding


def test_unchanged_gallery_does_no_model_work_and_decodes_only_the_failures(gallery, embedder,
                                                                             monkeypatch):
    db = default_index_path(gallery, embedder.name)
    with GalleryIndex(db) as index:
        first = _update(index, gallery, embedder)
        before = index.load_vectors()[1]
    loads = CountingLoads()
    monkeypatch.setattr(index_module, "load_image", loads)
    embedder.calls = embedder.images = 0
    with GalleryIndex(db) as index:
        second = _update(index, gallery, embedder)
        after = index.load_vectors()[1]
    # A truncated file may be still being copied: tried again (never embedded); broken.jpg
    # has no recognisable image format, a verdict that stays true while the file is unchanged.
    assert embedder.calls == 0 and loads.paths == ["cut.jpg"]
    assert (second.added, second.updated, second.removed, second.unchanged) == (0, 0, 0, N)
    assert second.skipped == first.skipped
    np.testing.assert_array_equal(before, after)


def test_changed_photo_is_re_embedded_and_deleted_photo_removed(gallery, embedder, monkeypatch):
    db = gallery / "idx.sqlite"
    with GalleryIndex(db) as index:
        _update(index, gallery, embedder)
    changed = gallery / "chelsea.jpg"
    changed.write_bytes(_jpeg_bytes(skimage.data.coffee()))
    stat = changed.stat()
    os.utime(changed, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = gallery / "astronaut.jpg"  # same bytes, new mtime (e.g. edited and saved back)
    os.utime(touched, ns=(stat.st_atime_ns, touched.stat().st_mtime_ns + 5_000_000_000))
    (gallery / "Camera" / "hubble.jpeg").unlink()
    loads = CountingLoads()
    monkeypatch.setattr(index_module, "load_image", loads)
    embedder.calls = embedder.images = 0
    with GalleryIndex(db) as index:
        report = _update(index, gallery, embedder)
        paths, vectors = index.load_vectors()
    assert (report.added, report.updated, report.removed, report.unchanged) == (0, 2, 1, N - 3)
    assert sorted(loads.paths) == ["astronaut.jpg", "chelsea.jpg", "cut.jpg"]
    assert embedder.images == 2
    assert gallery / "Camera" / "hubble.jpeg" not in paths and len(paths) == N - 1
    expected = embedder.embed_images([load_image(changed, embedder.min_image_side)])[0]
    np.testing.assert_allclose(vectors[paths.index(changed)], expected, atol=1e-5)


def test_repaired_file_leaves_the_skipped_list(gallery, embedder):
    db = gallery / "idx.sqlite"
    with GalleryIndex(db) as index:
        _update(index, gallery, embedder)
        (gallery / "cut.jpg").write_bytes(_jpeg_bytes(skimage.data.chelsea()))  # copied again
        report = _update(index, gallery, embedder)
    assert report.added == 1 and "cut.jpg" not in dict(report.skipped)


def test_new_embedder_fingerprint_drops_all_vectors(gallery, embedder, tmp_path):
    db = gallery / "idx.sqlite"
    with GalleryIndex(db) as index:
        _update(index, gallery, embedder)
        old = index.load_vectors()[1]
    retrained = CountingEmbedder.from_pretrained(write_tiny_dinov2(tmp_path / "other", seed=1))
    assert retrained.fingerprint != embedder.fingerprint
    with GalleryIndex(db) as index:
        report = _update(index, gallery, retrained)
        new = index.load_vectors()[1]
    assert (report.added, report.unchanged) == (N, 0) and retrained.images == N
    assert not np.allclose(old, new, atol=1e-3)


def test_interrupted_run_keeps_committed_batches_and_resumes(gallery, model_dir):
    db = gallery / "idx.sqlite"
    failing = FailingEmbedder.from_pretrained(model_dir)
    with GalleryIndex(db) as index, pytest.raises(KeyboardInterrupt):
        _update(index, gallery, failing, batch_size=2)
    assert failing.images == 2
    resumed = CountingEmbedder.from_pretrained(model_dir)
    with GalleryIndex(db) as index:
        committed = index.load_vectors()
        report = _update(index, gallery, resumed, batch_size=2)
        paths, vectors = index.load_vectors()
    assert len(committed[0]) == 2  # the first batch was kept
    assert resumed.images == N - 2 and (report.added, report.unchanged) == (N - 2, 2)
    assert len(paths) == N
    # Resumed vectors agree with a clean run's.
    fresh = CountingEmbedder.from_pretrained(model_dir)
    with GalleryIndex(gallery / "clean.sqlite") as index:
        _update(index, gallery, fresh)
        clean_paths, clean_vectors = index.load_vectors()
    assert clean_paths == paths
    np.testing.assert_allclose(vectors, clean_vectors, atol=1e-5)


def test_error_in_a_later_batch_keeps_earlier_ones(gallery, model_dir):
    class Exploding(CountingEmbedder):
        def embed_images(self, images, batch_size=16):
            if self.calls >= 2:
                raise RuntimeError("out of memory")
            return super().embed_images(images, batch_size)

    db = gallery / "idx.sqlite"
    with GalleryIndex(db) as index, pytest.raises(RuntimeError):
        _update(index, gallery, Exploding.from_pretrained(model_dir), batch_size=3)
    with GalleryIndex(db) as index:
        assert 3 <= len(index) < N


def test_hidden_files_and_the_index_itself_are_ignored(gallery, embedder):
    with GalleryIndex(gallery / "gallery-index.sqlite") as index:  # inside, not hidden
        first = _update(index, gallery, embedder)
        second = _update(index, gallery, embedder)
    for report in (first, second):
        names = {p for p, _ in report.skipped}
        assert names == BROKEN  # no .trashed-*, .pending-*, .thumbnails, nor the index files


def test_missing_gallery_or_file_is_a_gallery_error(tmp_path, embedder):
    with GalleryIndex(tmp_path / "idx.sqlite") as index:
        with pytest.raises(GalleryError, match="no such folder"):
            _update(index, tmp_path / "nowhere", embedder)
        (tmp_path / "photo.jpg").write_bytes(b"x")
        with pytest.raises(GalleryError, match="not a folder"):
            _update(index, tmp_path / "photo.jpg", embedder)


def test_unwritable_or_damaged_index_is_a_gallery_error(tmp_path):
    (tmp_path / "file").write_text("a file where a folder should be")
    with pytest.raises(GalleryError, match="writable place") as info:  # main2 names --index
        GalleryIndex(tmp_path / "file" / "index.sqlite")
    assert "\n" not in str(info.value)
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(GalleryError, match="damaged"):
        GalleryIndex(tmp_path / "junk.sqlite")


def test_index_is_one_sqlite_file_with_relative_paths(gallery, embedder):
    db = default_index_path(gallery, embedder.name)
    with GalleryIndex(db) as index:
        _update(index, gallery, embedder)
    con = sqlite3.connect(db)
    rows = dict(con.execute("SELECT path, length(vector) FROM photos"))
    con.close()
    assert rows[b"Camera/2024/cells.png"] == 32 * 4  # the file system's bytes
    assert b"cut.jpg" not in rows  # a passing failure: not remembered, tried again next run


def test_empty_index_loads_nothing(tmp_path):
    with GalleryIndex(tmp_path / "idx.sqlite") as index:
        paths, vectors = index.load_vectors()
    assert paths == [] and vectors.shape[0] == 0
