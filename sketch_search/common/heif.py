"""Pillow made ready for a phone's photos: taught to open HEIC/HEIF, the Galaxy camera's format,
and to admit its 200 MP photos. One place for the gallery's decoder and the phone sync's
shrinking alike (importing this module sets the pixel bar)."""
from __future__ import annotations

import functools
import logging

from PIL import Image

log = logging.getLogger(__name__)

# Pillow refuses images over 2 x MAX_IMAGE_PIXELS (decompression bombs) and warns over it. Its
# default (~89 MP) would refuse a 200 MP photo from a Galaxy S2x Ultra, so raise the bar to about
# 220 MP (refusal over 440 MP), never lower it and never switch the protection off.
PHONE_MAX_PIXELS = 220_000_000
if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < PHONE_MAX_PIXELS:
    Image.MAX_IMAGE_PIXELS = PHONE_MAX_PIXELS


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
