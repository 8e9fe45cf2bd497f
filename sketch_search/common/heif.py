"""Pillow taught to open HEIC/HEIF, the Galaxy camera's format: one place for the gallery's
decoder and the phone sync's shrinking alike."""
from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)


@functools.cache
def register_heif() -> bool:
    """Teach Pillow to open HEIC/HEIF (once per process); False when pillow-heif is missing."""
    try:
        import pillow_heif
    except ImportError:
        log.warning("pillow-heif is not installed: HEIC/HEIF photos cannot be read")
        return False
    pillow_heif.register_heif_opener()
    return True
