"""Open a photo the way a phone shows it: RGB, EXIF orientation applied, HEIC included.

Phones take 12-200 megapixel photos while DINOv2 looks at 224 px, so `load_image` can decode
at a reduced scale (JPEG DCT scaling, HEIC's embedded thumbnails) when told the smallest side
the model needs: decoding a 4000 x 3000 JPEG at 1/8 scale is several times faster.
"""
from __future__ import annotations

import functools
import logging
import math
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from common.errors import NotAnImageError

log = logging.getLogger(__name__)

# Pillow refuses images over 2 x MAX_IMAGE_PIXELS (decompression bombs). Its default (~89 MP)
# would refuse a 200 MP photo from a Galaxy S2x Ultra, so raise the bar to about 220 MP (refusal
# over 440 MP), never lower it and never switch the protection off.
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


def _not_an_image(path: Path, reason: str) -> NotAnImageError:
    return NotAnImageError(f"{path}: {reason}", reason=reason)


def _draft_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The size, same aspect ratio, whose shorter side is min_side."""
    width, height = size
    scale = min_side / min(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)


def _open(path: Path, min_side: int | None) -> Image.Image:
    with Image.open(path) as image:
        if min_side and min(image.size) > min_side:
            # JPEG and HEIF honour this (DCT scaling / thumbnail); other formats ignore it.
            image.draft("RGB", _draft_size(image.size, min_side))
        image.load()  # a truncated file fails here, not in the model's batch later
        if min_side and min(image.size) >= 2 * min_side:
            # Box-reduce in the decoding thread so the processor's bicubic resize stays cheap.
            image = image.reduce(min(image.size) // min_side)
        image = ImageOps.exif_transpose(image)
        return image.convert("RGB") if image.mode != "RGB" else image.copy()


def load_image(path: str | Path, min_side: int | None = None) -> Image.Image:
    """Decode `path` as an RGB image in its display orientation.

    `min_side`: the shorter side needed (e.g. the model's resize size); the image may then be
    decoded or box-reduced to a shorter side between min_side and about twice that. Raises
    NotAnImageError (one line: path and reason) for a missing, truncated or non-image file.
    """
    path = Path(path)
    register_heif()
    try:
        return _open(path, min_side)
    except FileNotFoundError:
        raise _not_an_image(path, "no such file; check the path") from None
    except IsADirectoryError:
        raise _not_an_image(path, "is a folder, not an image file") from None
    except UnidentifiedImageError:
        raise _not_an_image(path, "not an image (no image format recognised in its content)") from None
    except Image.DecompressionBombError as exc:
        raise _not_an_image(path, f"too large to decode safely ({exc})") from None
    except OSError as exc:
        if "truncated" in str(exc).lower():  # cut short, or data so damaged the decoder ran out
            raise _not_an_image(path, f"truncated or damaged image data ({exc}); copy the file "
                                      f"again") from None
        raise _not_an_image(path, f"unreadable image ({type(exc).__name__}: {exc})") from None
    except (ValueError, SyntaxError, EOFError, RuntimeError, MemoryError) as exc:
        # Pillow's decoders raise these for damaged headers and data.
        raise _not_an_image(path, f"unreadable image ({type(exc).__name__}: {exc})") from None
