"""The gallery index's SQLite file: schema, migration, reading rows and vectors, writing batches.

Each photo has one row: its path relative to the gallery (the file system's own bytes, so any
name a file can have is stored and given back as it is), its size and mtime (the cheap "has it
changed?" test), and its DINOv2 vector as a float32 blob, or the reason it is not an image.
Each batch commits on its own (WAL journal): an interrupted run keeps what it finished.

Only verdicts that stay true while the file is unchanged ("not an image") are remembered;
files that failed for a passing reason are deleted, so the next run tries them again. A
damaged file is reported as such (`rebuild=True` moves it aside and starts afresh); an index
written by a newer schema is refused, never wiped.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from retrieval.changes import StoredRow
from retrieval.gallery import GalleryFile
from retrieval.index_errors import IndexFileError, WayOut
from sketch_search.common.errors import GalleryError, NotAnImageError
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

# 1: paths as UTF-8 text, every skip remembered. 2: paths as the file system's bytes (BLOB),
# only permanent skips remembered. Version 1 files are converted in place (vectors kept).
SCHEMA_VERSION = 2
OWN_SUFFIXES = ("", "-wal", "-shm", "-journal")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value NOT NULL);
CREATE TABLE IF NOT EXISTS photos (
    path BLOB NOT NULL UNIQUE,   -- relative to the gallery, '/'-separated: os.fsencode(path)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    vector BLOB,                 -- float32 x dim; NULL when the file is not an image
    skip_reason TEXT             -- why it is not an image (kept so it is not decoded again)
);
-- Covers the "what is already indexed?" scan, so it never reads the vector blobs.
CREATE INDEX IF NOT EXISTS photos_stat ON photos (path, size, mtime_ns, skip_reason);
"""

UPSERT = """
INSERT INTO photos (path, size, mtime_ns, vector, skip_reason) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                                vector = excluded.vector, skip_reason = excluded.skip_reason
"""

# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xff).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26


class Damaged(Exception):
    """Content SQLite reads back without complaint but that this program never wrote."""


def _key(path: str) -> bytes:
    """The stored form of a relative path: the bytes the file system has (surrogateescape)."""
    return os.fsencode(path)


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if isinstance(value, str):  # a version 1 row, or a file written by hand
        return value
    raise Damaged(f"a stored path is a {type(value).__name__}")


class IndexStore:
    """One gallery's rows for one embedder, in one SQLite file.

    `rebuild=True` moves an existing file aside (to `<name>.damaged`) and starts a new one: the
    way out of a damaged index, or of one written by a newer version. Errors of the file are
    GalleryErrors (IndexFileError) that say the way out.
    """

    def __init__(self, db_path: str | Path, rebuild: bool = False):
        self.db_path = Path(db_path).expanduser()
        self._con: sqlite3.Connection | None = None
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            if rebuild:
                self._move_aside()
            # One thread at a time (the caller's lock), not always the one that opened it.
            self._con = sqlite3.connect(self.db_path, timeout=30, check_same_thread=False)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (OSError, sqlite3.Error, Damaged) as exc:
            self.close()
            raise self.unusable(exc) from exc
        except BaseException:
            self.close()
            raise

    def own_files(self) -> frozenset[str]:
        """The index's own files (absolute): a walk of a gallery that holds them leaves them out."""
        return frozenset(os.path.abspath(f"{self.db_path}{suffix}") for suffix in OWN_SUFFIXES)

    def _move_aside(self) -> None:
        for suffix in OWN_SUFFIXES:
            path = Path(f"{self.db_path}{suffix}")
            if path.exists():
                aside = Path(f"{self.db_path}.damaged{suffix}")
                os.replace(path, aside)
                log.warning("rebuilding the gallery index: moved %s to %s",
                            display_name(path), display_name(aside))

    @property
    def shown(self) -> str:
        return display_name(self.db_path)

    def unusable(self, exc: Exception) -> GalleryError:
        """The GalleryError that says what `exc` means for this file and the way out."""
        if isinstance(exc, GalleryError):
            return exc
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or isinstance(exc, Damaged):
            return IndexFileError(f"gallery index {self.shown} is damaged ({display_name(str(exc))})",
                                  (WayOut.REBUILD, WayOut.ELSEWHERE))
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return IndexFileError(f"gallery index {self.shown} is in use by another sketch search "
                                  f"({exc})", (WayOut.WAIT, WayOut.ELSEWHERE))
        if code == _SQLITE_FULL:
            return IndexFileError(f"no space left for the gallery index {self.shown}",
                                  (WayOut.FREE_SPACE, WayOut.OTHER_DISK))
        return IndexFileError(f"cannot write the gallery index {self.shown} "
                              f"({display_name(str(exc))})", (WayOut.WRITABLE,))

    def _migrate(self) -> None:
        tables = {name for (name,) in self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not {"meta", "photos"} <= tables:
            raise IndexFileError(f"{self.shown} is an SQLite file of another program, not a "
                                 f"gallery index", (WayOut.ELSEWHERE,))
        with self._con:
            self._con.executescript(_SCHEMA)
            version = self._meta("schema_version")
            try:
                number = int(version) if version is not None else SCHEMA_VERSION
            except (TypeError, ValueError):
                number = SCHEMA_VERSION + 1  # unknown: treat as newer than this program
            if number > SCHEMA_VERSION:
                raise IndexFileError(
                    f"gallery index {self.shown} was written by a newer sketch search (index "
                    f"schema {display_name(str(version))}, this one reads up to {SCHEMA_VERSION})",
                    (WayOut.NEWER_PROGRAM, WayOut.REBUILD))
            if number < 2:  # paths were UTF-8 text, and passing failures were remembered
                log.info("converting index %s to schema %d", self.shown, SCHEMA_VERSION)
                self._con.execute("UPDATE photos SET path = CAST(path AS BLOB) "
                                  "WHERE typeof(path) = 'text'")
                self._con.execute("DELETE FROM photos WHERE skip_reason IS NOT NULL")
            self._set_meta("schema_version", str(SCHEMA_VERSION))

    def _meta(self, key: str):
        row = self._con.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def _set_meta(self, key: str, value: str | bytes) -> None:
        self._con.execute("INSERT INTO meta (key, value) VALUES (?, ?) "
                          "ON CONFLICT(key) DO UPDATE SET value = excluded.value", (key, value))

    # -- reading ------------------------------------------------------------------------------
    def __len__(self) -> int:
        try:
            return self._con.execute(
                "SELECT COUNT(*) FROM photos WHERE vector IS NOT NULL").fetchone()[0]
        except sqlite3.Error as exc:
            raise self.unusable(exc) from exc

    def stored_rows(self) -> dict[str, StoredRow]:
        """Every row's relative path, size, mtime and skip reason (no vector is read)."""
        return {_text(path): StoredRow(size, mtime_ns, reason) for path, size, mtime_ns, reason in
                self._con.execute("SELECT path, size, mtime_ns, skip_reason FROM photos")}

    def load_vectors(self, only: Collection[str] | None = None) -> tuple[list[Path], np.ndarray]:
        """Absolute paths of the indexed photos and their (n, dim) float32 unit vectors, by path;
        `only`: just these relative paths.

        Raises GalleryError when the file is damaged, including vectors that SQLite reads back
        without complaint but that are not the unit vectors written (garbage in its pages).
        """
        try:
            return self._load_vectors(only)
        except (sqlite3.Error, Damaged) as exc:
            raise self.unusable(exc) from exc

    def _load_vectors(self, only: Collection[str] | None) -> tuple[list[Path], np.ndarray]:
        gallery, dim = self._meta("gallery"), int(self._meta("dim") or 0)
        rows = self._con.execute(
            "SELECT path, vector FROM photos WHERE vector IS NOT NULL ORDER BY path").fetchall()
        if only is not None:
            rows = [(path, blob) for path, blob in rows if _text(path) in only]
        if not rows or gallery is None:
            return [], np.zeros((0, dim), np.float32)
        root = Path(_text(gallery))
        wrong = sum(not isinstance(blob, bytes) or len(blob) != 4 * dim for _, blob in rows)
        if wrong or dim <= 0:
            raise Damaged(f"{wrong} of {len(rows)} vectors have the wrong size")
        paths = [root / _text(path) for path, _ in rows]
        vectors = np.frombuffer(b"".join(blob for _, blob in rows), np.float32).reshape(len(rows), dim)
        with np.errstate(all="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
        bad = int(np.sum(~(np.abs(norms - 1.0) < 1e-2)))  # NaN counts as bad
        if bad:
            raise Damaged(f"{bad} of {len(rows)} vectors are not the unit vectors written")
        return paths, vectors.copy()  # frombuffer's array is read-only

    # -- writing ------------------------------------------------------------------------------
    def adopt(self, gallery: Path, embedder_name: str, fingerprint: str, dim: int) -> None:
        """Record the gallery and embedder; vectors of another embedder are dropped."""
        with self._con:
            stored = self._meta("fingerprint")
            if stored is not None and stored != fingerprint:
                log.warning("index %s was built with another embedder (%s, now %s); re-embedding "
                            "the whole gallery", self.shown, stored, fingerprint)
                self._con.execute("DELETE FROM photos")
            self._set_meta("fingerprint", fingerprint)
            self._set_meta("dim", str(dim))
            self._set_meta("embedder", embedder_name)
            self._set_meta("gallery", os.fsencode(str(gallery)))

    def drop(self, paths: Sequence[str]) -> None:
        if paths:
            with self._con:
                self._con.executemany("DELETE FROM photos WHERE path = ?", [(_key(p),) for p in paths])

    def write_batch(self, embedded: Sequence[tuple[GalleryFile, np.ndarray]],
                    failed: Sequence[tuple[GalleryFile, NotAnImageError]]) -> None:
        """One transaction: all of the batch is kept, or none. Verdicts that stay true are
        remembered; files that failed for a passing reason are tried again next run."""
        with self._con:
            self._con.executemany(UPSERT, [
                (_key(f.path), f.size, f.mtime_ns, np.asarray(v, np.float32).tobytes(), None)
                for f, v in embedded])
            self._con.executemany(UPSERT, [
                (_key(f.path), f.size, f.mtime_ns, None, exc.reason) for f, exc in failed if exc.permanent])
            self._con.executemany("DELETE FROM photos WHERE path = ?", [
                (_key(f.path),) for f, exc in failed if not exc.permanent])

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
