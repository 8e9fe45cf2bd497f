"""Files: the one way to write a file atomically, and the one list of photo file types."""
from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from pathlib import Path

# Every photo type the program reads (gallery index) and pulls (phone sync).
PHOTO_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".bmp", ".tif", ".tiff"})


def is_photo_name(name: str) -> bool:
    """By extension, any case; a hidden file's name alone (".jpg") is not a photo."""
    dot = name.rfind(".")
    return dot > 0 and name[dot:].lower() in PHOTO_EXTENSIONS


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename it into place.

    The temporary name is made here rather than by mkstemp, whose files are private (0600):
    what we write gets the usual permissions (0644 under the common umask) like any file the
    user makes. A failed write leaves the old file, if any, untouched and no temporary behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem[:80]}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def remove_quietly(path: Path) -> None:
    """Remove a file if it can be; a leftover temporary file is never worth an error."""
    try:
        path.unlink()
    except OSError:
        pass


def write_text_atomically(path: Path, text: str) -> None:
    write_atomically(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))
