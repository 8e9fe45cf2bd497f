"""The persistent gallery index: one SQLite file per gallery and embedder.

Each photo has one row: its path relative to the gallery (the file system's own bytes, so any
name a file can have is stored and given back as it is), its size and mtime (the cheap "has it
changed?" test), and its DINOv2 vector as a float32 blob, or the reason it is not an image.
`update` embeds only new or changed photos, drops deleted ones and reuses the rest, so
re-indexing an unchanged gallery costs one SELECT and one directory walk. Each batch commits on
its own (WAL journal): an interrupted run keeps what it finished and the next run resumes.

Only verdicts that stay true while the file is unchanged ("not an image") are remembered;
files that failed for a passing reason (permissions, memory, still being copied, damaged data)
are tried again on the next run. Links are followed only to regular files inside the gallery;
links to folders, to files outside it, dangling links and loops, and FIFOs, sockets and devices
are reported as skipped. A damaged index file is reported as such (`rebuild=True` moves it aside
and starts afresh); an index written by a newer schema is refused, never wiped.
"""
from __future__ import annotations

import errno
import logging
import os
import sqlite3
import stat as stat_module
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from retrieval.embedder import DinoEmbedder
from retrieval.images import DecodeBudget, load_image
from sketch_search.common.errors import GalleryError, NotAnImageError
from sketch_search.common.files import PHOTO_EXTENSIONS, is_photo_name
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

INDEX_DIR = ".sketch-search"
# 1: paths as UTF-8 text, every skip remembered. 2: paths as the file system's bytes (BLOB),
# only permanent skips remembered. Version 1 files are converted in place (vectors kept).
SCHEMA_VERSION = 2
_OWN_SUFFIXES = ("", "-wal", "-shm", "-journal")

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

# SQLite's primary result codes (sqlite3.Error.sqlite_errorcode & 0xff).
_SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_CORRUPT, _SQLITE_FULL, _SQLITE_NOTADB = 5, 6, 11, 13, 26

ProgressFn = Callable[[int, int], None]


def default_index_path(gallery: Path, embedder_name: str) -> Path:
    return Path(gallery) / INDEX_DIR / f"index-{embedder_name}.sqlite"


class _Damaged(Exception):
    """Content SQLite reads back without complaint but that this program never wrote."""


def _key(path: str) -> bytes:
    """The stored form of a relative path: the bytes the file system has (surrogateescape)."""
    return os.fsencode(path)


def _text(value: bytes | str) -> str:
    if isinstance(value, bytes):
        return os.fsdecode(value)
    if isinstance(value, str):  # a version 1 row, or a file written by hand
        return value
    raise _Damaged(f"a stored path is a {type(value).__name__}")


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
    full: str        # absolute path to open (a link's target)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class _Skip:
    path: str        # relative; a folder's ends with '/'
    reason: str
    folder: bool = False  # an unreadable folder: what was indexed below it is kept


def _is_hidden(name: str) -> bool:
    # Covers our own .sketch-search folder, Android's .trashed-*/.pending-* files (deleted
    # photos and ones still being written) and partial downloads such as .name.part.
    return name.startswith(".")


def _kind(mode: int) -> str:
    for test, name in ((stat_module.S_ISFIFO, "a FIFO"), (stat_module.S_ISSOCK, "a socket"),
                       (stat_module.S_ISCHR, "a character device"),
                       (stat_module.S_ISBLK, "a block device")):
        if test(mode):
            return name
    return "not a regular file"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _follow_link(link: str, rel: str, real_root: str) -> _FileStat | _Skip:
    """The link's target if it is a regular file inside the gallery, else why it is skipped."""
    try:
        target_stat = os.stat(link)
    except FileNotFoundError:
        return _Skip(rel, "dangling link (its target does not exist)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return _Skip(rel, "link loop (the link leads back to itself)")
        return _Skip(rel, f"link not followed ({exc.strerror})")
    target = os.path.realpath(link)
    if stat_module.S_ISDIR(target_stat.st_mode):
        return _Skip(rel, "link to a folder: not followed (photos are indexed in their own "
                          "folder inside the gallery)")
    if not _inside(target, real_root):
        return _Skip(rel, f"link to a file outside the gallery ({display_name(target)}): "
                          f"not followed; copy the photo into the gallery instead")
    if not stat_module.S_ISREG(target_stat.st_mode):
        return _Skip(rel, f"link to {_kind(target_stat.st_mode)}, not a photo file")
    return _FileStat(rel, target, target_stat.st_size, target_stat.st_mtime_ns)


def _walk(root: str, ignore: frozenset[str]) -> Iterator[_FileStat | _Skip]:
    """Every non-hidden entry under root: files with their size and mtime, or why not."""
    real_root = os.path.realpath(root)
    folders = [(root, "")]
    while folders:
        folder, prefix = folders.pop()
        try:
            with os.scandir(folder) as listing:
                entries = list(listing)
        except OSError as exc:
            if not prefix:
                raise GalleryError(f"gallery {display_name(root)}: not readable ({exc.strerror}); "
                                   f"pass a folder you can read") from None
            yield _Skip(prefix, f"folder not readable ({exc.strerror}); its photos are left "
                                f"out this time", folder=True)
            continue
        for entry in entries:
            if _is_hidden(entry.name) or entry.path in ignore:
                continue
            rel = prefix + entry.name
            try:
                if entry.is_symlink():
                    yield _follow_link(entry.path, rel, real_root)
                elif entry.is_dir(follow_symlinks=False):
                    folders.append((entry.path, f"{rel}/"))
                else:
                    info = entry.stat(follow_symlinks=False)
                    if stat_module.S_ISREG(info.st_mode):
                        yield _FileStat(rel, entry.path, info.st_size, info.st_mtime_ns)
                    else:
                        yield _Skip(rel, f"{_kind(info.st_mode)}, not a photo file")
            except OSError:  # vanished since the listing
                continue


class GalleryIndex:
    """Vectors of one gallery's photos for one embedder, kept in one SQLite file.

    `rebuild=True` moves an existing file aside (to `<name>.damaged`) and starts a new one: the
    way out of a damaged index, or of one written by a newer version.
    """

    def __init__(self, db_path: str | Path, rebuild: bool = False):
        self.db_path = Path(db_path).expanduser()
        self._con: sqlite3.Connection | None = None
        try:
            self.db_path.parent.mkdir(parents=True, exist_ok=True)
            if rebuild:
                self._move_aside()
            self._con = sqlite3.connect(self.db_path, timeout=30)
            self._con.execute("PRAGMA journal_mode=WAL")
            self._con.execute("PRAGMA synchronous=NORMAL")
            self._migrate()
        except (OSError, sqlite3.Error, _Damaged) as exc:
            self.close()
            raise self._unusable(exc) from exc
        except BaseException:
            self.close()
            raise

    def _move_aside(self) -> None:
        for suffix in _OWN_SUFFIXES:
            path = Path(f"{self.db_path}{suffix}")
            if path.exists():
                aside = Path(f"{self.db_path}.damaged{suffix}")
                os.replace(path, aside)
                log.warning("rebuilding the gallery index: moved %s to %s",
                            display_name(path), display_name(aside))

    @property
    def _shown(self) -> str:
        return display_name(self.db_path)

    def _damaged(self, why: str) -> GalleryError:
        return GalleryError(f"gallery index {self._shown} is damaged ({display_name(why)}); run "
                            f"again with --rebuild-index to rebuild it from the photos, or pass "
                            f"--index PATH")

    def _unusable(self, exc: Exception) -> GalleryError:
        if isinstance(exc, GalleryError):
            return exc
        code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
        if code in (_SQLITE_CORRUPT, _SQLITE_NOTADB) or isinstance(exc, _Damaged):
            return self._damaged(str(exc))
        if code in (_SQLITE_BUSY, _SQLITE_LOCKED):
            return GalleryError(f"gallery index {self._shown} is in use by another sketch search "
                                f"({exc}); wait for it to finish, or pass --index PATH")
        if code == _SQLITE_FULL:
            return GalleryError(f"no space left for the gallery index {self._shown}; free some "
                                f"space or pass --index PATH on another disk")
        return GalleryError(f"cannot write the gallery index {self._shown} ({display_name(str(exc))}); "
                            f"pass --index PATH to keep it in a writable place")

    def _migrate(self) -> None:
        tables = {name for (name,) in self._con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")}
        if tables and not {"meta", "photos"} <= tables:
            raise GalleryError(f"{self._shown} is an SQLite file of another program, not a "
                               f"gallery index; pass another --index PATH")
        with self._con:
            self._con.executescript(_SCHEMA)
            version = self._meta("schema_version")
            try:
                number = int(version) if version is not None else SCHEMA_VERSION
            except (TypeError, ValueError):
                number = SCHEMA_VERSION + 1  # unknown: treat as newer than this program
            if number > SCHEMA_VERSION:
                raise GalleryError(
                    f"gallery index {self._shown} was written by a newer sketch search (index "
                    f"schema {display_name(str(version))}, this one reads up to {SCHEMA_VERSION}); "
                    f"use that version, or run with --rebuild-index to rebuild it for this one")
            if number < 2:  # paths were UTF-8 text, and passing failures were remembered
                log.info("converting index %s to schema %d", self._shown, SCHEMA_VERSION)
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
            raise self._unusable(exc) from exc

    def load_vectors(self) -> tuple[list[Path], np.ndarray]:
        """Absolute paths of the indexed photos and their (n, dim) float32 unit vectors.

        Raises GalleryError when the file is damaged, including vectors that SQLite reads back
        without complaint but that are not the unit vectors written (garbage in its pages).
        """
        try:
            return self._load_vectors()
        except (sqlite3.Error, _Damaged) as exc:
            raise self._unusable(exc) from exc

    def _load_vectors(self) -> tuple[list[Path], np.ndarray]:
        gallery, dim = self._meta("gallery"), int(self._meta("dim") or 0)
        rows = self._con.execute(
            "SELECT path, vector FROM photos WHERE vector IS NOT NULL ORDER BY path").fetchall()
        if not rows or gallery is None:
            return [], np.zeros((0, dim), np.float32)
        root = Path(_text(gallery))
        wrong = sum(not isinstance(blob, bytes) or len(blob) != 4 * dim for _, blob in rows)
        if wrong or dim <= 0:
            raise _Damaged(f"{wrong} of {len(rows)} vectors have the wrong size")
        paths = [root / _text(path) for path, _ in rows]
        vectors = np.frombuffer(b"".join(blob for _, blob in rows), np.float32).reshape(len(rows), dim)
        with np.errstate(all="ignore"):
            norms = np.sqrt(np.einsum("ij,ij->i", vectors, vectors, dtype=np.float64))
        bad = int(np.sum(~(np.abs(norms - 1.0) < 1e-2)))  # NaN counts as bad
        if bad:
            raise _Damaged(f"{bad} of {len(rows)} vectors are not the unit vectors written")
        return paths, vectors.copy()  # frombuffer's array is read-only

    # -- updating -----------------------------------------------------------------------------
    def update(self, gallery: Path, embedder: DinoEmbedder, batch_size: int = 16, workers: int = 4,
               progress: ProgressFn | None = None, show_progress: bool = True,
               decode_budget: DecodeBudget | None = None) -> IndexReport:
        """Embed new and changed photos and drop deleted ones; report what changed or was skipped.

        `decode_budget`: the decode memory the workers share (default: the process's).
        """
        gallery = Path(gallery).expanduser()
        if not gallery.exists():
            raise GalleryError(f"gallery {display_name(gallery)}: no such folder; pass the folder "
                               f"that holds your photos")
        if not gallery.is_dir():
            raise GalleryError(f"gallery {display_name(gallery)}: is a file, not a folder; pass "
                               f"the folder that holds your photos")
        try:
            return self._update(gallery.absolute(), embedder, max(1, batch_size), max(1, workers),
                                progress, show_progress, decode_budget)
        except (sqlite3.Error, _Damaged) as exc:
            raise self._unusable(exc) from exc

    def _update(self, gallery: Path, embedder: DinoEmbedder, batch_size: int, workers: int,
                progress: ProgressFn | None, show_progress: bool,
                decode_budget: DecodeBudget | None) -> IndexReport:
        report = IndexReport()
        self._adopt(gallery, embedder)
        known = {_text(path): (size, mtime_ns, reason) for path, size, mtime_ns, reason in
                 self._con.execute("SELECT path, size, mtime_ns, skip_reason FROM photos")}
        own_files = frozenset(os.path.abspath(f"{self.db_path}{suffix}") for suffix in _OWN_SUFFIXES)
        todo: list[_FileStat] = []
        seen: set[str] = set()
        unreadable: list[str] = []  # folders that could not be listed: their rows are kept
        for item in _walk(str(gallery), own_files):
            if isinstance(item, _Skip):
                report.skipped.append((item.path, item.reason))
                if item.folder:
                    unreadable.append(item.path)
                continue
            seen.add(item.path)
            old = known.get(item.path)
            if old is not None and old[0] == item.size and old[1] == item.mtime_ns:
                if old[2] is None:
                    report.unchanged += 1
                else:
                    report.skipped.append((item.path, old[2]))
            elif is_photo_name(item.path):
                todo.append(item)
            else:
                report.skipped.append((item.path, "not an image file type "
                                       f"(expected one of {', '.join(sorted(PHOTO_EXTENSIONS))})"))
        gone = [path for path in known if path not in seen
                and not any(path.startswith(folder) for folder in unreadable)]
        if gone:
            with self._con:
                self._con.executemany("DELETE FROM photos WHERE path = ?",
                                      [(_key(p),) for p in gone])
            report.removed = sum(known[path][2] is None for path in gone)  # photos, not skips
        if todo:
            todo.sort(key=lambda s: s.path)
            self._embed(todo, known, embedder, batch_size, workers, report, progress,
                        show_progress, decode_budget)
        report.skipped.sort()
        log.info("index %s: %d added, %d updated, %d removed, %d unchanged, %d skipped", self._shown,
                 report.added, report.updated, report.removed, report.unchanged, len(report.skipped))
        return report

    def _adopt(self, gallery: Path, embedder: DinoEmbedder) -> None:
        """Record the gallery and embedder; vectors of another embedder are dropped."""
        with self._con:
            stored = self._meta("fingerprint")
            if stored is not None and stored != embedder.fingerprint:
                log.warning("index %s was built with another embedder (%s, now %s); re-embedding "
                            "the whole gallery", self._shown, stored, embedder.fingerprint)
                self._con.execute("DELETE FROM photos")
            self._set_meta("fingerprint", embedder.fingerprint)
            self._set_meta("dim", str(embedder.dim))
            self._set_meta("embedder", embedder.name)
            self._set_meta("gallery", os.fsencode(str(gallery)))

    def _embed(self, todo: list[_FileStat], known: dict[str, tuple], embedder: DinoEmbedder,
               batch_size: int, workers: int, report: IndexReport,
               progress: ProgressFn | None, show_progress: bool,
               decode_budget: DecodeBudget | None) -> None:
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
                pending.append((stat, pool.submit(load_image, stat.full, min_side, decode_budget)))

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
                        failed.append((stat, exc))
                vectors = embedder.embed_images(images, batch_size=batch_size) if images else []
                with self._con:  # one transaction per batch: all of it is kept, or none
                    self._con.executemany(_UPSERT, [
                        (_key(s.path), s.size, s.mtime_ns, v.astype(np.float32).tobytes(), None)
                        for s, v in zip(stats, vectors)])
                    # Verdicts that stay true are kept; passing failures are tried next run.
                    self._con.executemany(_UPSERT, [
                        (_key(s.path), s.size, s.mtime_ns, None, exc.reason)
                        for s, exc in failed if exc.permanent])
                    self._con.executemany("DELETE FROM photos WHERE path = ?", [
                        (_key(s.path),) for s, exc in failed if not exc.permanent])
                for stat in stats:
                    old = known.get(stat.path)
                    if old is not None and old[2] is None:
                        report.updated += 1
                    else:
                        report.added += 1
                report.skipped.extend((s.path, exc.reason) for s, exc in failed)
                for stat, exc in failed:
                    log.info("skipped %s: %s", display_name(stat.path), exc.reason)
                done += len(stats) + len(failed)
                bar.update(len(stats) + len(failed))
                if progress:
                    progress(done, len(todo))
        finally:
            bar.close()
            pool.shutdown(wait=True, cancel_futures=True)

    # -- lifetime -----------------------------------------------------------------------------
    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None

    def __enter__(self) -> GalleryIndex:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_UPSERT = """
INSERT INTO photos (path, size, mtime_ns, vector, skip_reason) VALUES (?, ?, ?, ?, ?)
ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns,
                                vector = excluded.vector, skip_reason = excluded.skip_reason
"""
