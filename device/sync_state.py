"""What earlier syncs copied: one SQLite row per phone file, beside the gallery.

The file lives in the gallery's hidden `.sketch-search` folder, so the photo index never sees
it. Rows are committed one photo at a time: a sync cut short keeps everything it finished.

Rows are keyed by the phone's own serial (ro.serialno), the same over USB and Wi-Fi. Syncs
before that keyed them by the adb transport serial (over Wi-Fi IP:PORT, new each session); such
"legacy" keys have no row in `phone` and are adopted by the phone they turn out to be
(`adopt`), keeping their folder, so nothing is pulled again.
"""
from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sketch_search.common.errors import GalleryError

log = logging.getLogger(__name__)

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
    lean        INTEGER NOT NULL DEFAULT 0,  -- 1: a small image is kept, not the original
    PRIMARY KEY (serial, device_path)
);
CREATE INDEX IF NOT EXISTS synced_photo_local ON synced_photo (local_path);
CREATE TABLE IF NOT EXISTS phone (
    serial TEXT PRIMARY KEY,       -- the phone's own serial (ro.serialno)
    folder TEXT NOT NULL           -- its folder in the gallery, relative
)
"""


@dataclass(frozen=True)
class SyncedPhoto:
    device_path: str
    size: int
    mtime: int
    local_path: str
    lean: bool = False  # the gallery keeps a small image of it, not the phone's original

    @classmethod
    def from_row(cls, row) -> SyncedPhoto:
        return cls(row[0], row[1], row[2], row[3], bool(row[4]))


_COLUMNS = "device_path, size, mtime, local_path, lean"


def _has_lean(db: sqlite3.Connection) -> bool:
    return any(row[1] == "lean" for row in db.execute("PRAGMA table_info(synced_photo)"))


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a record written before lean syncs up to date: its rows keep lean = 0."""
    if not _has_lean(db):
        db.execute("ALTER TABLE synced_photo ADD COLUMN lean INTEGER NOT NULL DEFAULT 0")
        log.info("sync record: added the lean column (earlier photos stay originals)")


class SyncState:
    """The sync record of one gallery folder (all phones synced into it)."""

    def __init__(self, gallery: Path):
        self.path = Path(gallery) / STATE_DIR / STATE_FILE
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")  # WAL + NORMAL: durable across crashes
            self._db.executescript(_SCHEMA)
            _migrate(self._db)
            self._db.commit()
        except (OSError, sqlite3.Error) as error:
            raise GalleryError(f"cannot use the sync record {self.path} ({error}): delete it; the "
                               "next sync then re-checks every photo without copying it again"
                               ) from None

    def photos(self, serial: str) -> dict[str, SyncedPhoto]:
        rows = self._db.execute(f"SELECT {_COLUMNS} FROM synced_photo WHERE serial = ?", (serial,))
        return {row[0]: SyncedPhoto.from_row(row) for row in rows}

    def record(self, serial: str, photo: SyncedPhoto) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO synced_photo (serial, device_path, size, mtime, local_path, "
            "synced_at, lean) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (serial, photo.device_path, photo.size, photo.mtime, photo.local_path, time.time(),
             int(photo.lean)))
        self._db.commit()

    def forget(self, serial: str, device_path: str) -> None:
        self._db.execute("DELETE FROM synced_photo WHERE serial = ? AND device_path = ?",
                         (serial, device_path))
        self._db.commit()

    def phone_folder(self, serial: str) -> str | None:
        """The gallery subfolder of the phone whose own serial is `serial`, if it has one."""
        row = self._db.execute("SELECT folder FROM phone WHERE serial = ?", (serial,)).fetchone()
        return row[0] if row else None

    def set_phone_folder(self, serial: str, folder: str) -> None:
        self._db.execute("INSERT OR REPLACE INTO phone VALUES (?, ?)", (serial, folder))
        self._db.commit()

    def legacy_serials(self) -> list[str]:
        """Keys of rows written before phones were known by their own serial."""
        rows = self._db.execute("SELECT DISTINCT serial FROM synced_photo WHERE serial NOT IN "
                                "(SELECT serial FROM phone) ORDER BY serial")
        return [row[0] for row in rows]

    def shares_photo(self, serial: str, photos: Iterable[tuple[str, int, int]]) -> bool:
        """Whether a row of `serial` is one of `photos` (device path, size, time) exactly:
        the same phone, since no two phones hold a file of the same path, size and second."""
        known = self.photos(serial)
        return any((found := known.get(path)) is not None and (found.size, found.mtime) ==
                   (size, mtime) for path, size, mtime in photos)

    def adopt(self, legacy: str, serial: str) -> None:
        """Move the rows of transport serial `legacy` to phone `serial` (its files stay put)."""
        if legacy == serial:
            return
        with self._db:
            self._db.execute("UPDATE OR IGNORE synced_photo SET serial = ? WHERE serial = ?",
                             (serial, legacy))
            self._db.execute("DELETE FROM synced_photo WHERE serial = ?", (legacy,))
        log.info("sync record: rows of %s now belong to phone %s", legacy, serial)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> SyncState:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def find_synced(gallery: Path, local_path: str) -> tuple[str, SyncedPhoto] | None:
    """(phone serial, record) of the synced file at `local_path` (relative to `gallery`,
    '/'-separated), or None when no sync brought it. Reads only; creates nothing (a record
    written before lean syncs reads as lean = False)."""
    path = Path(gallery) / STATE_DIR / STATE_FILE
    if not path.is_file():
        return None
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            lean = "lean" if _has_lean(db) else "0"
            row = db.execute(f"SELECT serial, device_path, size, mtime, local_path, {lean} "
                             "FROM synced_photo WHERE local_path = ? "
                             "ORDER BY synced_at DESC LIMIT 1", (local_path,)).fetchone()
        finally:
            db.close()
    except sqlite3.Error as error:
        log.warning("cannot read the sync record %s: %s", path, error)
        return None
    return (row[0], SyncedPhoto.from_row(row[1:])) if row else None
