"""The persistent gallery index: one SQLite file per gallery and embedder.

Each photo has one row: its path relative to the gallery, its size and mtime (the cheap
"has it changed?" test), and its DINOv2 vector as a float32 blob, or the reason it could not be
read. `update` embeds only new or changed photos, drops deleted ones and reuses the rest, so
re-indexing an unchanged gallery costs one SELECT and one directory walk. Each batch commits on
its own (WAL journal): an interrupted run keeps what it finished and the next run resumes.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.errors import GalleryError, NotAnImageError
from common.files import PHOTO_EXTENSIONS, is_photo_name
from retrieval.embedder import DinoEmbedder
from retrieval.images import load_image

log = logging.getLogger(__name__)

INDEX_DIR = ".sketch-search"
SCHEMA_VERSION = "1"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    path TEXT NOT NULL UNIQUE,   -- relative to the gallery, '/'-separated
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    vector BLOB,                 -- float32 x dim; NULL when the file could not be read
    skip_reason TEXT             -- why it could not be read (kept so it is not decoded again)
);
-- Covers the "what is already indexed?" scan, so it never reads the vector blobs.
CREATE INDEX IF NOT EXISTS photos_stat ON photos (path, size, mtime_ns, skip_reason);
"""

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
class _FileStat:
    path: str        # relative, '/'-separated
    full: str        # absolute path to open
    size: int
    mtime_ns: int


def _is_hidden(name: str) -> bool:
    # Covers our own .sketch-search folder, Android's .trashed-*/.pending-* files (deleted
    # photos and ones still being written) and partial downloads such as .name.part.
    return name.startswith(".")


def _walk(root: str, ignore: frozenset[str]) -> Iterator[_FileStat]:
    """Every non-hidden file under root, with its size and mtime (one os.scandir per folder)."""
    folders = [(root, "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError as exc:
            log.warning("%s: folder not readable (%s); its photos are left out", folder, exc)
            continue
        for entry in entries:
            if _is_hidden(entry.name) or entry.path in ignore:
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    folders.append((entry.path, f"{prefix}{entry.name}/"))
                elif entry.is_file():
                    stat = entry.stat()
                    yield _FileStat(prefix + entry.name, entry.path, stat.st_size, stat.st_mtime_ns)
            except OSError:  # vanished or a dangling link since the listing
                continue


class GalleryIndex:
    """Vectors of one gallery's photos for one embedder, kept in one SQLite file."""

    def __init__(self, db_path: str | Path):
        self.db_path = Path(db_path).expanduser()
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            self._con = sqlite3.connect(self.db_path, timeout=30)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise self._unusable(exc) from exc

    def _unusable(self, exc: Exception) -> GalleryError:
        if isinstance(exc, sqlite3.DatabaseError) and "not a database" in str(exc):
            return GalleryError(f"gallery index {self.db_path} is damaged; delete it (it is rebuilt "
                                f"on the next run) or pass --index PATH")
        return GalleryError(f"cannot write the gallery index {self.db_path} ({exc}); "
                            f"pass --index PATH to keep it in a writable place")

    def _migrate(self) -> None:
        with self._con:
            self._con.executescript(_SCHEMA)
            version = self._meta("schema_version")
            if version not in (None, SCHEMA_VERSION):  # an index is a cache: rebuild, don't convert
                log.info("index %s has schema %s; rebuilding", self.db_path, version)
                self._con.execute("DELETE FROM photos")
                self._con.execute("DELETE FROM meta")
            self._set_meta("schema_version", SCHEMA_VERSION)

    def _meta(self, key: str) -> str | None:
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str) -> None:
        self._con.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self._con.execute("SELECT COUNT(*) FROM photos WHERE vector IS NOT NULL").fetchone()[0]

    def load_vectors(self) -> tuple[list[Path], np.ndarray]:
        """Absolute paths of the indexed photos and their (n, dim) float32 unit vectors."""
        gallery, dim = self._meta("gallery"), int(self._meta("dim") or 0)
        rows = self._con.execute(
            "SELECT path, vector FROM photos WHERE vector IS NOT NULL ORDER BY path").fetchall()
        if not rows or gallery is None:
            return [], np.zeros((0, dim), np.float32)
        root = Path(gallery)
        paths = [root / path for path, _ in rows]
        blobs = b"".join(blob for _, blob in rows)
        vectors = np.frombuffer(blobs, np.float32).reshape(len(rows), dim)
        return paths, vectors.copy()  # frombuffer's array is read-only

    # -- updating -----------------------------------------------------------------------------
    def update(self, gallery: Path, embedder: DinoEmbedder, batch_size: int = 16, workers: int = 4,
               progress: ProgressFn | None = None, show_progress: bool = True) -> IndexReport:
        """Embed new and changed photos and drop deleted ones; report what changed or was skipped."""
        gallery = Path(gallery).expanduser()
        if not gallery.exists():
            raise GalleryError(
                f"gallery {gallery}: no such folder; pass the folder that holds your photos")
        if not gallery.is_dir():
            raise GalleryError(
                f"gallery {gallery}: is a file, not a folder; pass the folder that holds your photos")
        try:
            return self._update(gallery.absolute(), embedder, max(1, batch_size), max(1, workers),
                                progress, show_progress)
        except sqlite3.Error as exc:
            raise self._unusable(exc) from exc

    def _update(self, gallery: Path, embedder: DinoEmbedder, batch_size: int, workers: int,
                progress: ProgressFn | None, show_progress: bool) -> IndexReport:
        report = IndexReport()
        self._adopt(gallery, embedder)
        known = {path: (size, mtime_ns, reason) for path, size, mtime_ns, reason in
                 self._con.execute("SELECT path, size, mtime_ns, skip_reason FROM photos")}
        own_files = frozenset(os.path.abspath(f"{self.db_path}{suffix}")
                              for suffix in ("", "-wal", "-shm", "-journal"))
        todo: list[_FileStat] = []
        seen: set[str] = set()
        for stat in _walk(str(gallery), own_files):
            seen.add(stat.path)
            old = known.get(stat.path)
            if old is not None and old[0] == stat.size and old[1] == stat.mtime_ns:
                if old[2] is None:
                    report.unchanged += 1
                else:
                    report.skipped.append((stat.path, old[2]))
            elif is_photo_name(stat.path):
                todo.append(stat)
            else:
                report.skipped.append((stat.path, "not an image file type "
                                       f"(expected one of {', '.join(sorted(PHOTO_EXTENSIONS))})"))
        gone = [path for path in known if path not in seen]
        if gone:
            with self._con:
                self._con.executemany("DELETE FROM photos WHERE path = ?", [(p,) for p in gone])
            report.removed = sum(known[path][2] is None for path in gone)  # photos, not skips
        if todo:
            todo.sort(key=lambda s: s.path)
            self._embed(todo, known, embedder, batch_size, workers, report, progress, show_progress)
        report.skipped.sort()
        log.info("index %s: %d added, %d updated, %d removed, %d unchanged, %d skipped", self.db_path,
                 report.added, report.updated, report.removed, report.unchanged, len(report.skipped))
        return report

    def _adopt(self, gallery: Path, embedder: DinoEmbedder) -> None:
        """Record the gallery and embedder; vectors of another embedder are dropped."""
        with self._con:
            stored = self._meta("fingerprint")
            if stored is not None and stored != embedder.fingerprint:
                log.warning("index %s was built with another embedder (%s, now %s); re-embedding "
                            "the whole gallery", self.db_path, stored, embedder.fingerprint)
                self._con.execute("DELETE FROM photos")
            self._set_meta("fingerprint", embedder.fingerprint)
            self._set_meta("dim", str(embedder.dim))
            self._set_meta("embedder", embedder.name)
            self._set_meta("gallery", str(gallery))

    def _embed(self, todo: list[_FileStat], known: dict[str, tuple], embedder: DinoEmbedder,
               batch_size: int, workers: int, report: IndexReport,
               progress: ProgressFn | None, show_progress: bool) -> None:
        """Decode in worker threads while the model embeds the previous batch; commit per batch."""
        min_side = embedder.min_image_side
        pending: deque[tuple[_FileStat, Future]] = deque()
        queue = iter(todo)
        pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        bar = tqdm(total=len(todo), desc="indexing gallery", unit="photo", disable=not show_progress)

        def fill() -> None:  # keep two batches decoding ahead, no more (bounded memory)
            while len(pending) < 2 * batch_size:
                stat = next(queue, None)
                if stat is None:
                    return
                pending.append((stat, pool.submit(load_image, stat.full, min_side)))

        done = 0
        try:
            fill()
            while pending:
                images, stats, failed = [], [], []
                while pending and len(stats) + len(failed) < batch_size:
                    stat, future = pending.popleft()
                    fill()
                    try:
                        images.append(future.result())
                        stats.append(stat)
                    except NotAnImageError as exc:
                        failed.append((stat, exc.reason))
                vectors = embedder.embed_images(images, batch_size=batch_size)
                with self._con:  # one transaction per batch: all of it is kept, or none
                    self._con.executemany(_UPSERT, [
                        (s.path, s.size, s.mtime_ns, v.astype(np.float32).tobytes(), None)
                        for s, v in zip(stats, vectors)])
                    self._con.executemany(_UPSERT, [
                        (s.path, s.size, s.mtime_ns, None, reason) for s, reason in failed])
                for stat in stats:
                    old = known.get(stat.path)
                    if old is not None and old[2] is None:
                        report.updated += 1
                    else:
                        report.added += 1
                report.skipped.extend((s.path, reason) for s, reason in failed)
                for stat, reason in failed:
                    log.info("skipped %s: %s", stat.full, reason)
                done += len(stats) + len(failed)
                bar.update(len(stats) + len(failed))
                if progress:
                    progress(done, len(todo))
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        self._con.close()

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_UPSERT = """
INSERT INTO photos (path, size, mtime_ns, vector, skip_reason) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                                vector = excluded.vector, skip_reason = excluded.skip_reason
"""
