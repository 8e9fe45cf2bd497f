"""The cache of phone originals pulled for the photo view: a folder under the per-user home,
bounded in bytes, least recently used dropped first.

A lean gallery keeps a small image per phone photo; opening one large pulls the phone's
original (device/originals.py) into this cache. Each file is named by a hash of the phone's
serial, the photo's path there, its size and its time (so a photo changed on the phone is a new
entry and the old one ages out), and is only used while its size is still the one the sync
record lists. A file's modification time is its last use: `find` and `store` set it from the
cache's clock, and eviction drops the oldest first until the cache is within its bound again.

Thread-free and process-safe enough for one user: a file another process removes is simply
gone; writes go through the one atomic-write helper, so a cut pull leaves no entry.
"""
from __future__ import annotations

import hashlib
import logging
import os
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from sketch_search.common.files import PHOTO_EXTENSIONS, write_atomically
from sketch_search.common.home import user_home

log = logging.getLogger(__name__)

CACHE_FOLDER = "originals"                 # under the per-user home
DEFAULT_CACHE_BYTES = 1_000_000_000        # 1 GB: some 250 camera photos of 4 MB
STALE_TEMP_S = 3600                        # a temporary file this old is a killed pull's
_ENTRY = re.compile(r"^[0-9a-f]{40}(\.[a-z]{3,4})?$")


@dataclass(frozen=True)
class PhoneFile:
    """A photo on a phone as the sync record lists it: the phone's own serial, its path there,
    its size in bytes and its time (seconds)."""
    serial: str
    device_path: str
    size: int
    mtime: int


@dataclass(frozen=True)
class CacheEntry:
    path: Path
    size: int
    used_ns: int      # last use (the file's modification time)


class OriginalsCache:
    """Pulled originals in `folder`, at most `max_bytes` in all after every `store`.

    `max_bytes` 0 caches nothing (and so pulls nothing). `clock`: seconds, for the last-use
    times (tests drive it). Nothing is created until the first `store`.
    """

    def __init__(self, folder: Path, max_bytes: int = DEFAULT_CACHE_BYTES,
                 clock: Callable[[], float] = time.time):
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be 0 or more, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self._clock = clock

    @classmethod
    def in_home(cls, max_bytes: int = DEFAULT_CACHE_BYTES) -> OriginalsCache:
        """The per-user cache (SKETCH_SEARCH_HOME moves it with the rest of the home)."""
        return cls(user_home() / CACHE_FOLDER, max_bytes)

    def fits(self, photo: PhoneFile) -> bool:
        """Whether `photo` can be cached at all (a file larger than the whole cache is not)."""
        return 0 < photo.size <= self.max_bytes

    def path_of(self, photo: PhoneFile) -> Path:
        key = "\0".join((photo.serial, photo.device_path, str(photo.size), str(photo.mtime)))
        digest = hashlib.sha1(key.encode("utf-8", errors="surrogateescape")).hexdigest()
        suffix = PurePosixPath(photo.device_path).suffix.lower()
        return self.folder / (digest + (suffix if suffix in PHOTO_EXTENSIONS else ""))

    def find(self, photo: PhoneFile) -> Path | None:
        """The cached original of `photo`, marked used now; None when there is none or its
        size is not the listed one any more (that file is dropped)."""
        path = self.path_of(photo)
        try:
            size = path.stat().st_size
        except OSError:
            return None
        if size != photo.size:
            log.info("dropping a cached original of the wrong size: %s", path.name)
            _remove(path)
            return None
        self._touch(path)
        return path

    def store(self, photo: PhoneFile, write: Callable[[Path], None]) -> Path | None:
        """Let `write` fill a temporary file with `photo`'s bytes; keep it when it has the
        listed size, then drop the least recently used others until the cache fits its bound.
        None (nothing written) when `photo` does not fit the cache. Whatever `write` raises
        goes on up, and no file is left behind."""
        if not self.fits(photo):
            return None
        path = self.path_of(photo)

        def checked(tmp: Path) -> None:
            write(tmp)
            size = tmp.stat().st_size
            if size != photo.size:
                raise ValueError(f"{size} bytes written, {photo.size} listed")
        write_atomically(path, checked)
        self._touch(path)
        self.evict(keep=path)
        return path

    def drop(self, photo: PhoneFile) -> None:
        _remove(self.path_of(photo))

    def entries(self) -> list[CacheEntry]:
        """The cached originals, least recently used first."""
        found = []
        try:
            with os.scandir(self.folder) as listing:
                for item in listing:
                    if _ENTRY.match(item.name) and item.is_file(follow_symlinks=False):
                        info = item.stat(follow_symlinks=False)
                        found.append(CacheEntry(Path(item.path), info.st_size, info.st_mtime_ns))
        except FileNotFoundError:
            return []
        return sorted(found, key=lambda entry: (entry.used_ns, entry.path.name))

    def total_bytes(self) -> int:
        return sum(entry.size for entry in self.entries())

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Drop the least recently used entries (never `keep`) until the cache fits its bound;
        also the temporary files of pulls killed long ago. Returns what was dropped."""
        entries = self.entries()
        total = sum(entry.size for entry in entries)
        dropped = []
        for entry in entries:
            if total <= self.max_bytes:
                break
            if entry.path != keep:
                _remove(entry.path)
                total -= entry.size
                dropped.append(entry.path)
        self._remove_stale_temps()
        if dropped:
            log.info("originals cache: dropped %d least recently used (%d bytes kept)",
                     len(dropped), total)
        return dropped

    def _touch(self, path: Path) -> None:
        now = int(self._clock() * 1e9)
        try:
            os.utime(path, ns=(now, now))
        except OSError as error:
            log.debug("cannot mark %s used: %s", path, error)

    def _remove_stale_temps(self) -> None:
        limit = (self._clock() - STALE_TEMP_S) * 1e9
        try:
            with os.scandir(self.folder) as listing:
                stale = [Path(item.path) for item in listing
                         if item.name.startswith(".") and ".tmp" in item.name
                         and item.is_file(follow_symlinks=False)
                         and item.stat(follow_symlinks=False).st_mtime_ns < limit]
        except FileNotFoundError:
            return
        for path in stale:
            _remove(path)


def _remove(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
    except OSError as error:
        log.warning("cannot remove %s from the originals cache: %s", path, error)
