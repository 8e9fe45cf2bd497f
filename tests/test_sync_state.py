"""The sync record's lean column: a new record has it, an older record gains it (its photos stay
originals, lean = 0), and find_synced reads it without writing anything."""
from __future__ import annotations

import sqlite3
from pathlib import Path

from device.sync_state import STATE_DIR, STATE_FILE, SyncedPhoto, SyncState, find_synced

OLD_SCHEMA = """
CREATE TABLE synced_photo (serial TEXT NOT NULL, device_path TEXT NOT NULL, size INTEGER NOT NULL,
    mtime INTEGER NOT NULL, local_path TEXT NOT NULL, synced_at REAL NOT NULL,
    PRIMARY KEY (serial, device_path));
CREATE TABLE phone (serial TEXT PRIMARY KEY, folder TEXT NOT NULL);
INSERT INTO synced_photo VALUES ('S1', '/sdcard/DCIM/old.jpg', 5, 7, 'Phone/old.jpg', 1.0);
"""


def old_record(gallery: Path) -> Path:
    path = gallery / STATE_DIR / STATE_FILE
    path.parent.mkdir(parents=True)
    db = sqlite3.connect(path)
    db.executescript(OLD_SCHEMA)
    db.close()
    return path


def test_new_record_keeps_lean(tmp_path):
    with SyncState(tmp_path) as state:
        state.record("S1", SyncedPhoto("/sdcard/a.jpg", 10, 20, "Phone/a.jpg", lean=True))
        state.record("S1", SyncedPhoto("/sdcard/b.jpg", 11, 21, "Phone/b.jpg"))
        photos = state.photos("S1")
    assert photos["/sdcard/a.jpg"].lean is True and photos["/sdcard/b.jpg"].lean is False
    assert find_synced(tmp_path, "Phone/a.jpg") == ("S1", SyncedPhoto("/sdcard/a.jpg", 10, 20,
                                                                        "Phone/a.jpg", True))
    assert find_synced(tmp_path, "Phone/none.jpg") is None


def test_older_record_is_migrated_and_keeps_its_originals(tmp_path):
    path = old_record(tmp_path)
    # read-only look first: no column added, the row reads as an original
    assert find_synced(tmp_path, "Phone/old.jpg") == ("S1", SyncedPhoto("/sdcard/DCIM/old.jpg", 5, 7,
                                                                          "Phone/old.jpg", False))
    columns = [row[1] for row in sqlite3.connect(path).execute("PRAGMA table_info(synced_photo)")]
    assert "lean" not in columns
    with SyncState(tmp_path) as state:
        assert state.photos("S1")["/sdcard/DCIM/old.jpg"].lean is False
        state.record("S1", SyncedPhoto("/sdcard/DCIM/new.jpg", 1, 2, "Phone/new.jpg", lean=True))
    with SyncState(tmp_path) as state:  # opening again migrates nothing twice
        photos = state.photos("S1")
    assert photos["/sdcard/DCIM/old.jpg"].lean is False and photos["/sdcard/DCIM/new.jpg"].lean


def test_find_synced_creates_nothing(tmp_path):
    assert find_synced(tmp_path, "a.jpg") is None
    assert not (tmp_path / STATE_DIR).exists()
