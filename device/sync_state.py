"""What earlier syncs copied: one SQLite row per phone file, beside the gallery.

The file lives in the gallery's hidden `.sketch-search` folder, so the photo index never sees
it. Rows are committed one photo at a time: a sync cut short keeps everything it finished.
"""
from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from sketch_search.common.errors import GalleryError

STATE_DIR = ".sketch-search"
STATE_FILE = "sync.sqlite"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS synced_photo (
    serial      TEXT NOT NULL,
    device_path TEXT NOT NULL,     -- e.g. /sdcard/DCIM/Camera/IMG_0001.jpg
    size        INTEGER NOT NULL,  -- as the phone listed it
    mtime       INTEGER NOT NULL,  -- seconds, as the phone listed it
    local_path  TEXT NOT NULL,     -- relative to the gallery folder, '/'-separated
    synced_at   REAL NOT NULL,
    PRIMARY KEY (serial, device_path)
)
"""


@dataclass(frozen=True)
class SyncedPhoto:
    device_path: str
    size: int
    mtime: int
    local_path: str


class SyncState:
    """The sync record of one gallery folder (all phones synced into it)."""

    def __init__(self, gallery: Path):
        self.path = Path(gallery) / STATE_DIR / STATE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
            self._db.execute(_SCHEMA)
            self._db.commit()
        except (OSError, sqlite3.Error) as error:
            raise GalleryError(f"cannot use the sync record {self.path} ({error}): delete it; the "
                               "next sync then re-checks every photo without copying it again"
                               ) from None

    def photos(self, serial: str) -> dict[str, SyncedPhoto]:
        rows = self._db.execute(
            "SELECT device_path, size, mtime, local_path FROM synced_photo WHERE serial = ?",
            (serial,))
        return {row[0]: SyncedPhoto(*row) for row in rows}

    def record(self, serial: str, photo: SyncedPhoto) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO synced_photo VALUES (?, ?, ?, ?, ?, ?)",
            (serial, photo.device_path, photo.size, photo.mtime, photo.local_path, time.time()))
        self._db.commit()

    def forget(self, serial: str, device_path: str) -> None:
        self._db.execute("DELETE FROM synced_photo WHERE serial = ? AND device_path = ?",
                         (serial, device_path))
        self._db.commit()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SyncState:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
