"""Open a photo the way a phone shows it: RGB, EXIF orientation applied, HEIC included.

Phones take 12-200 megapixel photos while DINOv2 looks at 224 px, so `load_image` can decode
at a reduced scale (JPEG DCT scaling, HEIC's embedded thumbnails) when told the smallest side
the model needs: decoding a 4000 x 3000 JPEG at 1/8 scale is several times faster. Other
formats (PNG, WebP, TIFF, BMP) decode at full size, so the pixels being decoded at one time are
bounded by one `DecodeBudget` that every decoding thread of the process shares.

Every mode Pillow opens comes out as 8-bit RGB with its tones: palette and 1-bit images through
their palette, 16-bit grey scaled from 0-65535, 32-bit integer and float grey from the range
they use, CMYK, YCbCr and LAB converted, and transparent images laid on white.
"""
from __future__ import annotations

import errno
import functools
import logging
import math
import os
import stat
import threading
import warnings
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from sketch_search.common.errors import NotAnImageError
from sketch_search.common.heif import register_heif
from sketch_search.common.names import display_name

log = logging.getLogger(__name__)

# Pillow's bar is PHONE_MAX_PIXELS (sketch_search/common/heif.py). Between it and twice it Pillow
# only warns; the decode budget below bounds what that costs.
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)

# Decoded pixels held at once by all decoding threads together. Pillow keeps 4 bytes a pixel
# for colour (RGB is stored as RGBX), so 1 GiB is one 268 MP colour image or many phone photos.
DEFAULT_DECODE_MIB = 1024


class DecodeBudget:
    """Bytes of decoded pixels that the threads of this process may hold at once.

    Each decode reserves what it will hold before it starts and gives it back when it is done.
    Waiters are served in arrival order, so a large image is not starved by small ones; an
    image larger than the whole budget waits until nothing else is decoding, then runs alone.
    """

    def __init__(self, limit_bytes: int):
        self.limit = max(1, int(limit_bytes))
        self.used = 0
        self.peak = 0  # the most reserved at once (for tests and logs)
        self._cond = threading.Condition()
        self._queue: deque[object] = deque()

    @contextmanager
    def reserve(self, nbytes: int) -> Iterator[None]:
        nbytes = max(0, min(int(nbytes), self.limit))
        ticket = object()
        with self._cond:
            self._queue.append(ticket)
            while self._queue[0] is not ticket or self.used + nbytes > self.limit:
                self._cond.wait()
            self._queue.popleft()
            self.used += nbytes
            self.peak = max(self.peak, self.used)
            self._cond.notify_all()
        try:
            yield
        finally:
            with self._cond:
                self.used -= nbytes
                self._cond.notify_all()


def _budget_from_environment() -> int:
    text = os.environ.get("SKETCH_SEARCH_DECODE_MIB", "")
    try:
        mib = float(text) if text else DEFAULT_DECODE_MIB
        if mib <= 0:
            raise ValueError
    except ValueError:
        log.warning("SKETCH_SEARCH_DECODE_MIB=%s is not a positive number; using %d",
                    text, DEFAULT_DECODE_MIB)
        mib = DEFAULT_DECODE_MIB
    return int(mib * 2**20)


DECODE_BUDGET = DecodeBudget(_budget_from_environment())


def _not_an_image(path: Path, reason: str, permanent: bool) -> NotAnImageError:
    reason = display_name(reason)  # exception texts may quote the name, newlines included
    return NotAnImageError(f"{display_name(path)}: {reason}", reason=reason, permanent=permanent)


def _draft_size(size: tuple[int, int], min_side: int) -> tuple[int, int]:
    """The size, same aspect ratio, whose shorter side is min_side."""
    width, height = size
    scale = min_side / min(width, height)
    return math.ceil(width * scale), math.ceil(height * scale)


def _bytes_per_pixel(mode: str) -> int:
    """Pillow's bytes a pixel, plus the copy our conversion of that mode makes at full size."""
    if mode in ("P", "PA"):
        return (1 if mode == "P" else 4) + 4  # the colours, when not subsampled first
    if mode in ("1", "L"):
        return 1 + (mode == "1")
    return 3 if mode.startswith("I;16") else 4  # every other mode: 4 bytes a pixel in Pillow


def _decode_bytes(image: Image.Image, min_side: int | None) -> int:
    """About what decoding `image` holds at its peak: the pixels and the converted copies."""
    width, height = image.size
    factor = min(width, height) // min_side if min_side else 1
    out = math.ceil(width / max(1, factor)) * math.ceil(height / max(1, factor))
    return width * height * _bytes_per_pixel(image.mode) + out * 12


def _palette_tones(image: Image.Image) -> Image.Image:
    """Palette and 1-bit images as the colours they show (RGBA where they are transparent)."""
    if image.mode == "PA" or (image.mode == "P" and "transparency" in image.info):
        return image.convert("RGBA")
    return image.convert("RGB" if image.mode == "P" else "L")


def _reduced(image: Image.Image, min_side: int | None) -> Image.Image:
    """Box-reduce so that the shorter side lies in [min_side, 2 * min_side) (cheap resize later)."""
    if not min_side or min(image.size) < 2 * min_side:
        return image
    width, height = image.size
    factor = min(width, height) // min_side
    if image.mode in ("P", "PA"):
        # Palette indices cannot be averaged: subsample to about 4x the target, take the
        # colours, then average those.
        if factor >= 8:
            step = factor // 4
            image = image.resize((math.ceil(width / step), math.ceil(height / step)),
                                 Image.Resampling.NEAREST)
        image = _palette_tones(image)
        factor = min(image.size) // min_side
        return image.reduce(factor) if factor >= 2 else image
    if image.mode == "1":
        image = image.convert("L")  # same size in memory; averaging gives the grey it shows
    elif image.mode.startswith("I;16"):  # Image.reduce refuses 16-bit modes
        image = _sixteen_to_8_bit(image)
    try:
        return image.reduce(factor)
    except ValueError:  # a rare packed mode (BGR;15 ...): take its colours first
        return image.convert("RGB").reduce(factor)


def _sixteen_to_8_bit(image: Image.Image) -> Image.Image:
    """16-bit grey (any byte order) as 8-bit L: 0-65535 scaled to 0-255, in bands of rows.

    Pillow's own convert clips 16-bit values at 255 (an all-white photo).
    """
    width, height = image.size
    out = np.empty((height, width), np.uint8)
    step = max(1, (1 << 22) // max(1, width))  # about 4 M pixels a band
    for top in range(0, height, step):
        band = np.asarray(image.crop((0, top, width, min(height, top + step)))).astype(np.uint32)
        out[top:top + band.shape[0]] = (band * 255 + 32767) // 65535
    return Image.fromarray(out, "L")


def _grey_to_8_bit(image: Image.Image) -> Image.Image:
    """32-bit integer and float grey as 8-bit L, keeping the tones."""
    values = np.asarray(image).astype(np.float64)
    finite = values[np.isfinite(values)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif low >= 0 and high <= 255:
        pass
    elif low >= 0 and high <= 65535:  # 16-bit data read as 32-bit (some TIFFs)
        values = values / 257.0
    else:  # signed or unusual ranges: stretch what is there
        values = (values - low) * (255.0 / (high - low)) if high > low else values * 0
    values = np.nan_to_num(values, nan=0.0, posinf=255.0, neginf=0.0)
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8), "L")


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode in ("P", "PA", "1"):
        image = _palette_tones(image)
    if image.mode.startswith("I;16"):
        image = _sixteen_to_8_bit(image)
    elif image.mode in ("I", "F"):
        image = _grey_to_8_bit(image)
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "La", "RGBa"):  # transparent parts show on white
        rgba = image.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)),
                                     rgba).convert("RGB")
    return image.convert("RGB")  # L, CMYK, YCbCr, LAB, HSV, RGBX ...


def _open_file(path: Path):
    """Open for reading without following a FIFO or device into a blocking read."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(errno.EISDIR, "is a folder", str(path))
        if not stat.S_ISREG(info.st_mode):
            raise _not_an_image(path, "not a regular file (a pipe, socket or device)", True)
        if info.st_size == 0:
            raise _not_an_image(path, "empty file (still being copied?)", False)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


@functools.cache
def _malloc_trim():
    """glibc's malloc_trim, or None elsewhere."""
    try:
        import ctypes
        return ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):
        return None


# Freed pixels stay in the decoding thread's malloc arena, where another thread cannot use them:
# four threads decoding large images one after another would each keep one. Hand them back.
_TRIM_AFTER_BYTES = 64 * 2**20


def _open(path: Path, min_side: int | None, budget: DecodeBudget) -> Image.Image:
    with _open_file(path) as file:
        full = Image.open(file)
        try:
            if min_side and min(full.size) > min_side:
                # JPEG and HEIF honour this (DCT scaling / thumbnail); other formats ignore it.
                full.draft("RGB", _draft_size(full.size, min_side))
            need = _decode_bytes(full, min_side)
            with budget.reserve(need):
                try:
                    full.load()  # a truncated file fails here, not in the model's batch later
                    image = ImageOps.exif_transpose(_reduced(full, min_side))
                    rgb = _to_rgb(image)
                    rgb = rgb.copy() if rgb is full else rgb
                    del image
                finally:
                    full.close()  # the full-size pixels go before the budget is given back
                    if need >= _TRIM_AFTER_BYTES and _malloc_trim() is not None:
                        _malloc_trim()(0)
            return rgb
        finally:
            full.close()


def load_image(path: str | Path, min_side: int | None = None,
               budget: DecodeBudget | None = None) -> Image.Image:
    """Decode `path` as an RGB image in its display orientation.

    `min_side`: the shorter side needed (e.g. the model's resize size); the image may then be
    decoded or box-reduced to a shorter side between min_side and about twice that. `budget`:
    the decode memory shared with other threads (default: the process's DECODE_BUDGET).
    Raises NotAnImageError (one line: path and reason) for a missing, truncated or non-image
    file; its `permanent` is False where the same file may read fine later.
    """
    path = Path(path)
    register_heif()
    try:
        return _open(path, min_side, budget or DECODE_BUDGET)
    except NotAnImageError:
        raise
    except FileNotFoundError:
        raise _not_an_image(path, "no such file; check the path", False) from None
    except IsADirectoryError:
        raise _not_an_image(path, "is a folder, not an image file", True) from None
    except PermissionError:
        raise _not_an_image(path, "not readable (permission denied); give yourself read "
                                  "access to it", False) from None
    except UnidentifiedImageError:
        raise _not_an_image(path, "not an image (no image format recognised in its content)",
                            True) from None
    except Image.DecompressionBombError as exc:
        raise _not_an_image(path, f"too large to decode safely ({exc})", True) from None
    except MemoryError:
        raise _not_an_image(path, "not enough memory to decode it now", False) from None
    except OSError as exc:
        if "truncated" in str(exc).lower():  # cut short, or data so damaged the decoder ran out
            raise _not_an_image(path, f"truncated or damaged image data ({exc}); copy the file "
                                      f"again", False) from None
        raise _not_an_image(path, f"unreadable image ({type(exc).__name__}: {exc})", False) from None
    except (ValueError, SyntaxError, EOFError, RuntimeError) as exc:
        # Pillow's decoders raise these for damaged headers and data (or a file still being
        # written): worth another try on the next run.
        raise _not_an_image(path, f"unreadable image ({type(exc).__name__}: {exc})", False) from None


def load_thumbnail(path: str | Path, min_side: int) -> Image.Image | None:
    """A result's picture for a grid or panel tile; None when the photo is gone or unreadable
    since it was indexed (the tile is shown grey, the match still listed)."""
    try:
        return load_image(path, min_side=min_side)
    except NotAnImageError:
        return None
