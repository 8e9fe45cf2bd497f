"""The gallery folder: the one check that a path is one, and the walk over its files.

The walk gives every non-hidden entry with its size and mtime (the cheap "has it changed?"
test), or why it is skipped. Links are followed only to regular files inside the gallery;
links to folders, to files outside it, dangling links and loops, and FIFOs, sockets and
devices are reported as skipped. A folder that cannot be listed is reported, and what was
indexed below it is kept.
"""
from __future__ import annotations

import errno
import os
import stat as stat_module
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from sketch_search.common.errors import GalleryError
from sketch_search.common.names import display_name


def gallery_folder(path: str | Path, missing_ok: bool = False) -> Path:
    """`path` (user's ~ expanded) if it is a folder; GalleryError if it is a file, or is missing
    (unless `missing_ok`: a folder the phone sync will create)."""
    folder = Path(path).expanduser()
    if folder.is_dir() or (missing_ok and not folder.exists()):
        return folder
    if folder.exists():
        raise GalleryError(f"gallery {display_name(folder)}: is a file, not a folder; pass the "
                           f"folder that holds your photos")
    raise GalleryError(f"gallery {display_name(folder)}: not a folder (there is no such folder); "
                       f"pass the folder that holds your photos")


@dataclass(frozen=True)
class GalleryFile:
    path: str        # relative, '/'-separated
    full: str        # absolute path to open (a link's target)
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class Skipped:
    path: str        # relative; a folder's ends with '/'
    reason: str
    folder: bool = False  # an unreadable folder: what was indexed below it is kept


def is_hidden(name: str) -> bool:
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


def _follow_link(link: str, rel: str, real_root: str) -> GalleryFile | Skipped:
    """The link's target if it is a regular file inside the gallery, else why it is skipped."""
    try:
        target_stat = os.stat(link)
    except FileNotFoundError:
        return Skipped(rel, "dangling link (its target does not exist)")
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Skipped(rel, "link loop (the link leads back to itself)")
        return Skipped(rel, f"link not followed ({exc.strerror})")
    target = os.path.realpath(link)
    if stat_module.S_ISDIR(target_stat.st_mode):
        return Skipped(rel, "link to a folder: not followed (photos are indexed in their own "
                            "folder inside the gallery)")
    if not _inside(target, real_root):
        return Skipped(rel, f"link to a file outside the gallery ({display_name(target)}): "
                            f"not followed; copy the photo into the gallery instead")
    if not stat_module.S_ISREG(target_stat.st_mode):
        return Skipped(rel, f"link to {_kind(target_stat.st_mode)}, not a photo file")
    return GalleryFile(rel, target, target_stat.st_size, target_stat.st_mtime_ns)


def walk_gallery(root: str, ignore: frozenset[str] = frozenset()) -> Iterator[GalleryFile | Skipped]:
    """Every non-hidden entry under root (absolute paths in `ignore` left out): files with their
    size and mtime, or why not."""
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
            yield Skipped(prefix, f"folder not readable ({exc.strerror}); its photos are left "
                                  f"out this time", folder=True)
            continue
        for entry in entries:
            if is_hidden(entry.name) or entry.path in ignore:
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
                        yield GalleryFile(rel, entry.path, info.st_size, info.st_mtime_ns)
                    else:
                        yield Skipped(rel, f"{_kind(info.st_mode)}, not a photo file")
            except OSError:  # vanished since the listing
                continue
