"""The persistent gallery index, brought up to date as rclip does it: walk the gallery
(retrieval.gallery), compare with the stored rows (retrieval.changes, a pure function), decode in
batches (retrieval.decoding), write each batch (retrieval.index_store).

`GalleryIndex.update` embeds only new or changed photos, newest first, drops deleted ones and
reuses the rest, so re-indexing an unchanged gallery costs one SELECT and one directory walk.
Each batch commits on its own: an interrupted run keeps what it finished and the next run
resumes. `IndexRun` is the same work in steps, for a caller that searches between them (the air
canvas answers saves over the photos indexed so far). Progress goes to one callback; bars are
the command line's business.
"""
from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from retrieval.changes import IndexChanges, compare_with_stored
from retrieval.decoding import BatchDecoder
from retrieval.embedder import DinoEmbedder
from retrieval.gallery import gallery_folder, walk_gallery
from retrieval.images import DecodeBudget, load_image
from retrieval.index_store import SCHEMA_VERSION, Damaged, IndexStore
from sketch_search.common.names import display_name

__all__ = ["INDEX_DIR", "SCHEMA_VERSION", "GalleryIndex", "IndexProgress", "IndexReport", "IndexRun",
           "default_index_path"]

log = logging.getLogger(__name__)

INDEX_DIR = ".sketch-search"

ProgressFn = Callable[[int, int], None]


def default_index_path(gallery: Path, embedder_name: str) -> Path:
    return Path(gallery) / INDEX_DIR / f"index-{embedder_name}.sqlite"


@dataclass
class IndexReport:
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)

    def to_dict(self) -> dict:
        return {"added": self.added, "updated": self.updated, "removed": self.removed,
                "unchanged": self.unchanged,
                "skipped": [{"path": path, "reason": reason} for path, reason in self.skipped]}


@dataclass(frozen=True)
class IndexProgress:
    searched: int   # photos in the in-memory search
    total: int      # photos known that will be searched, indexed or not (skipped files not counted)
    done: bool      # nothing left to index


class GalleryIndex(IndexStore):
    """Vectors of one gallery's photos for one embedder, kept in one SQLite file."""

    def update(self, gallery: Path, embedder: DinoEmbedder, batch_size: int = 16, workers: int = 4,
               progress: ProgressFn | None = None,
               decode_budget: DecodeBudget | None = None) -> IndexReport:
        """Embed new and changed photos (newest first) and drop deleted ones; report what changed
        or was skipped. `progress(done, total)` after each batch, counting the files decoded.

        `decode_budget`: the decode memory the workers share (default: the process's).
        """
        run = IndexRun(self, gallery_folder(gallery), embedder, batch_size, workers, decode_budget)
        try:
            total = len(run.rescan().embed)
            while run.pending:
                run.step()
                if progress:
                    progress(total - run.pending, total)
        finally:
            run.close()
        return run.report


class IndexRun:
    """One gallery's index brought up to date in steps, newest photos first.

    `rescan` walks the gallery, compares it with the stored rows, drops the rows of deleted
    files and queues new and changed photos (again: photos that arrived join the queue by their
    time); each `step` decodes, embeds and commits one batch. Thread-free: the caller decides
    when each runs, from one thread at a time.
    """

    def __init__(self, index: IndexStore, gallery: Path, embedder: DinoEmbedder, batch_size: int = 16,
                 workers: int = 4, decode_budget: DecodeBudget | None = None):
        self.index, self.embedder = index, embedder
        self.gallery = Path(gallery).absolute()
        self.report = IndexReport()
        self._replacing: set[str] = set()
        self._adopted = False
        self._decoder = BatchDecoder(load_image, embedder.min_image_side, batch_size, workers,
                                     decode_budget)

    @property
    def pending(self) -> int:
        """Photos queued to be embedded (those decoding included)."""
        return len(self._decoder)

    def rescan(self) -> IndexChanges:
        """Walk and compare; drop the rows of deleted files; queue what is to be embedded."""
        try:
            if not self._adopted:
                self.index.adopt(self.gallery, self.embedder.name, self.embedder.fingerprint,
                                 self.embedder.dim)
                self._adopted = True
            changes = compare_with_stored(walk_gallery(str(self.gallery), self.index.own_files()),
                                          self.index.stored_rows())
            self.index.drop(changes.drop)
        except (sqlite3.Error, Damaged) as exc:
            raise self.index.unusable(exc) from exc
        self.report = IndexReport(removed=changes.dropped_photos, unchanged=changes.unchanged,
                                  skipped=changes.skipped)
        self._replacing = changes.replacing
        self._decoder.replace_queue(changes.embed)
        self._finish_if_done()
        return changes

    def step(self) -> list[tuple[str, np.ndarray]]:
        """Decode, embed and commit the next batch; its photos' (relative path, vector)."""
        batch = self._decoder.next_batch()
        vectors = (self.embedder.embed_images(batch.images, batch_size=self._decoder.batch_size)
                   if batch.images else [])
        embedded = list(zip(batch.files, vectors))
        try:
            self.index.write_batch(embedded, batch.failed)
        except (sqlite3.Error, Damaged) as exc:
            raise self.index.unusable(exc) from exc
        for file in batch.files:
            if file.path in self._replacing:
                self.report.updated += 1
            else:
                self.report.added += 1
        self.report.skipped.extend((file.path, exc.reason) for file, exc in batch.failed)
        for file, exc in batch.failed:
            log.info("skipped %s: %s", display_name(file.path), exc.reason)
        self._finish_if_done()
        return [(file.path, vector) for file, vector in embedded]

    def _finish_if_done(self) -> None:
        if not self.pending:
            self.report.skipped.sort()
            r = self.report
            log.info("index %s: %d added, %d updated, %d removed, %d unchanged, %d skipped",
                     self.index.shown, r.added, r.updated, r.removed, r.unchanged, len(r.skipped))

    def close(self) -> None:
        """Stop decoding; what was committed stays."""
        self._decoder.close()
