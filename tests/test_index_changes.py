"""retrieval.changes.compare_with_stored: the walk against the stored rows, with no files or SQLite."""
from __future__ import annotations

from retrieval.changes import NOT_A_PHOTO_TYPE, StoredRow, compare_with_stored
from retrieval.gallery import GalleryFile, Skipped


def _file(path: str, size: int = 100, mtime_ns: int = 1) -> GalleryFile:
    return GalleryFile(path, f"/g/{path}", size, mtime_ns)


def test_new_changed_unchanged_gone_and_not_images():
    stored = {
        "same.jpg": StoredRow(100, 1, None),
        "edited.jpg": StoredRow(100, 1, None),          # mtime moves on: re-embedded, an update
        "resized.jpg": StoredRow(90, 1, None),          # size differs
        "gone.jpg": StoredRow(100, 1, None),
        "gone-text.jpg": StoredRow(5, 1, "not an image"),
        "words.jpg": StoredRow(100, 1, "not an image"),  # verdict kept while unchanged
        "was-text.jpg": StoredRow(100, 1, "not an image"),  # changed: tried again, not an update
    }
    found = [_file("same.jpg"), _file("edited.jpg", mtime_ns=2), _file("resized.jpg"),
             _file("words.jpg"), _file("was-text.jpg", mtime_ns=3), _file("new.png", mtime_ns=5),
             _file("notes.txt"), Skipped("pipe.jpg", "a FIFO, not a photo file")]
    changes = compare_with_stored(found, stored)
    assert [f.path for f in changes.embed] == ["new.png", "was-text.jpg", "edited.jpg", "resized.jpg"]
    assert changes.replacing == {"edited.jpg", "resized.jpg"}
    assert sorted(changes.drop) == ["gone-text.jpg", "gone.jpg"] and changes.dropped_photos == 1
    assert changes.keep == ["same.jpg"] and changes.unchanged == 1
    assert sorted(changes.skipped) == [("notes.txt", NOT_A_PHOTO_TYPE),
                                       ("pipe.jpg", "a FIFO, not a photo file"),
                                       ("words.jpg", "not an image")]


def test_newest_first_with_the_path_breaking_ties():
    found = [_file("b.jpg", mtime_ns=10), _file("a.jpg", mtime_ns=10), _file("old.jpg", mtime_ns=1),
             _file("new.jpg", mtime_ns=99)]
    changes = compare_with_stored(found, {})
    assert [f.path for f in changes.embed] == ["new.jpg", "a.jpg", "b.jpg", "old.jpg"]


def test_rows_below_an_unreadable_folder_are_kept_not_dropped():
    stored = {"locked/a.jpg": StoredRow(1, 1, None), "open/b.jpg": StoredRow(1, 1, None)}
    found = [Skipped("locked/", "folder not readable (Permission denied)", folder=True)]
    changes = compare_with_stored(found, stored)
    assert changes.drop == ["open/b.jpg"] and changes.dropped_photos == 1
    assert changes.keep == ["locked/a.jpg"] and changes.unchanged == 0
    assert changes.skipped == [("locked/", "folder not readable (Permission denied)")]


def test_an_unchanged_gallery_changes_nothing():
    stored = {"a.jpg": StoredRow(100, 1, None), "b.jpg": StoredRow(100, 2, None)}
    changes = compare_with_stored([_file("a.jpg"), _file("b.jpg", mtime_ns=2)], stored)
    assert (changes.embed, changes.drop, changes.skipped) == ([], [], [])
    assert sorted(changes.keep) == ["a.jpg", "b.jpg"] and changes.unchanged == 2
