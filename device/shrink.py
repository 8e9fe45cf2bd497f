"""The small image a lean sync keeps of a phone photo: decoded strictly, upright, at most
1024 px on its long side, JPEG, with the capture time as EXIF DateTimeOriginal.

Input comes from the phone, so it is untrusted: the pixel count is checked before decoding
(a tiny file can claim a huge image), and anything PIL cannot decode in full is refused with
a one-line reason (ShrinkError); the caller then falls back or skips the photo.
"""
from __future__ import annotations

import io
import warnings
from datetime import datetime, timezone
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from PIL import Image, ImageOps, UnidentifiedImageError

from sketch_search.common.heif import PHONE_MAX_PIXELS, register_heif

LONG_SIDE = 1024                  # what is kept at most (the window shows 640 x 480)
MIN_SHORT_SIDE = 256              # what the embedder needs (DINOv2: 256 px short side)
MAX_PIXELS = PHONE_MAX_PIXELS     # a Galaxy's 200 MP photo fits; a decompression bomb does not
QUALITY = 90
EXIF_IFD = 0x8769
DATETIME_ORIGINAL, OFFSET_TIME_ORIGINAL = 36867, 36881
ORIENTATION = 0x0112


class ShrinkError(Exception):
    """The bytes are not a usable image; the message says why, in a few words."""


def lean_jpeg(source: bytes | Path, taken_ms: int | None, zone: str,
              min_short_side: int = 0) -> bytes:
    """The kept image of `source` (a thumbnail's bytes or a pulled original's file). A result
    whose short side is under `min_short_side` raises ShrinkError (a thumbnail too small)."""
    image = _decode(source)
    if min(image.size) < min_short_side:
        raise ShrinkError(f"only {image.size[0]} x {image.size[1]} px (under "
                          f"{min_short_side} px on its short side)")
    image.thumbnail((LONG_SIDE, LONG_SIDE), Image.Resampling.LANCZOS)
    exif = Image.Exif()
    stamp = capture_stamp(taken_ms, zone)
    if stamp is not None:
        exif.get_ifd(EXIF_IFD)[DATETIME_ORIGINAL] = stamp[0]
        exif.get_ifd(EXIF_IFD)[OFFSET_TIME_ORIGINAL] = stamp[1]
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=QUALITY, exif=exif.tobytes())
    return out.getvalue()


def capture_stamp(taken_ms: int | None, zone: str) -> tuple[str, str] | None:
    """("YYYY:MM:DD HH:MM:SS", "+HH:MM") of `taken_ms` (ms since the epoch, UTC) in `zone`
    (UTC when the zone is unknown here); None when there is no plausible time."""
    if taken_ms is None or not 0 < taken_ms < 4_102_444_800_000:     # before 2100
        return None
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    local = datetime.fromtimestamp(taken_ms / 1000, timezone.utc).astimezone(tz)
    offset = local.strftime("%z")
    return local.strftime("%Y:%m:%d %H:%M:%S"), f"{offset[:3]}:{offset[3:]}"


def _decode(source: bytes | Path) -> Image.Image:
    register_heif()     # a Galaxy's originals are often HEIC
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as image:
                width, height = image.size
                if width * height > MAX_PIXELS:
                    raise ShrinkError(f"claims {width} x {height} px, over {MAX_PIXELS} pixels")
                image.draft("RGB", (LONG_SIDE, LONG_SIDE))   # JPEG: decode at 1/2..1/8 scale
                upright = ImageOps.exif_transpose(image)
                upright.load()
                return upright.convert("RGB")
    except ShrinkError:
        raise
    except UnidentifiedImageError:
        raise ShrinkError("not an image this computer can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ShrinkError(f"claims more than {MAX_PIXELS} pixels") from None
    except (OSError, ValueError, SyntaxError, EOFError) as error:
        raise ShrinkError(f"cut off or damaged ({type(error).__name__})") from None
