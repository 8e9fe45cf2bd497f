"""What an index update has to do: the walk's files against the stored rows (a pure function).

A stored row whose size and mtime match the file is kept: its vector, or its remembered
"not an image" verdict. Photos that are new or changed are to be embedded, newest first (by
the file's mtime: the photos a person most likely looks for are covered first). Rows whose
file is gone are dropped, except below a folder that could not be listed this time (those
stay stored and searchable).
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from retrieval.gallery import GalleryFile, Skipped
from sketch_search.common.files import PHOTO_EXTENSIONS, is_photo_name

NOT_A_PHOTO_TYPE = f"not an image file type (expected one of {', '.join(sorted(PHOTO_EXTENSIONS))})"


@dataclass(frozen=True)
class StoredRow:
    size: int
    mtime_ns: int
    skip_reason: str | None  # None: the row holds a vector


@dataclass
class IndexChanges:
    embed: list[GalleryFile] = field(default_factory=list)  # new or changed photos, newest first
    replacing: set[str] = field(default_factory=set)        # of those, paths whose old vector is stored
    drop: list[str] = field(default_factory=list)            # stored rows whose file is gone
    dropped_photos: int = 0                                  # of those, rows that held a vector
    keep: list[str] = field(default_factory=list)            # stored vectors still true (searchable)
    unchanged: int = 0                                       # of those, photos the walk found unchanged
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (relative path, reason)


def newest_first(files: Iterable[GalleryFile]) -> list[GalleryFile]:
    """Newest mtime first; the path breaks ties, so the order is reproducible."""
    return sorted(files, key=lambda f: (-f.mtime_ns, f.path))


def compare_with_stored(found: Iterable[GalleryFile | Skipped],
                        stored: Mapping[str, StoredRow]) -> IndexChanges:
    """What to embed, drop and keep, and what is skipped, for the walk's entries `found`."""
    changes = IndexChanges()
    seen: set[str] = set()
    unreadable: list[str] = []  # folders that could not be listed: their rows are kept
    for item in found:
        if isinstance(item, Skipped):
            changes.skipped.append((item.path, item.reason))
            if item.folder:
                unreadable.append(item.path)
            continue
        seen.add(item.path)
        old = stored.get(item.path)
        if old is not None and old.size == item.size and old.mtime_ns == item.mtime_ns:
            if old.skip_reason is None:
                changes.unchanged += 1
            else:
                changes.skipped.append((item.path, old.skip_reason))
        elif is_photo_name(item.path):
            changes.embed.append(item)
            if old is not None and old.skip_reason is None:
                changes.replacing.add(item.path)
        else:
            changes.skipped.append((item.path, NOT_A_PHOTO_TYPE))
    changes.drop = [path for path in stored if path not in seen
                    and not any(path.startswith(folder) for folder in unreadable)]
    changes.dropped_photos = sum(stored[path].skip_reason is None for path in changes.drop)
    gone = set(changes.drop)
    # Rows below an unreadable folder stay searchable, as they stay stored.
    changes.keep = [path for path, row in stored.items() if row.skip_reason is None
                    and path not in gone and path not in changes.replacing]
    changes.embed = newest_first(changes.embed)
    return changes
