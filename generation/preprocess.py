"""Sketch image -> binary stroke mask, cropped to the strokes, square, at the generator's size.

pix2pix-turbo's sketch model was trained on binary sketches (stroke = 1, paper = 0), so any
drawing (black pen on white paper, coloured pens on the air canvas's black, a transparent
layer) is reduced to "which pixels are stroke". The paper colour is read from the image's
border, so neither pen nor paper colour is assumed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from common.errors import BlankSketchError

log = logging.getLogger(__name__)

BLANK_MESSAGE = "the sketch has no strokes: draw something before searching"

# Below this colour difference from the paper (0-255, largest channel) a pixel is paper:
# above JPEG and camera noise, below a light pencil line.
MIN_CONTRAST = 32
# Alpha counts as "varying" (a transparent layer) when its range exceeds this.
MIN_ALPHA_RANGE = 64
# Downscaled strokes keep every pixel that any ink touches: a 1 px line stays an unbroken line
# at any scale, and strokes grow by at most one output pixel.
DOWNSCALE_COVERAGE = 0.0


@dataclass
class PreparedSketch:
    """What the generator and the captioner get from one sketch."""

    mask: np.ndarray             # bool (size, size), True = stroke
    preview: Image.Image         # RGB (size, size): black strokes on white, for captioning/display
    bbox: tuple[int, int, int, int]  # strokes' box in source pixels: left, top, right, bottom (exclusive)


def _to_array(image: Image.Image | np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour HxWxC float32, alpha HxW float32 or None), both 0-255."""
    if isinstance(image, Image.Image):
        if image.mode == "P":
            image = image.convert("RGBA" if "transparency" in image.info else "RGB")
        if image.mode in ("RGBA", "LA", "PA"):
            rgba = np.asarray(image.convert("RGBA"), dtype=np.float32)
            return rgba[..., :3], rgba[..., 3]
        if image.mode not in ("L", "RGB"):
            image = image.convert("RGB")
        array = np.asarray(image, dtype=np.float32)
    else:
        array = np.asarray(image)
        if array.dtype == bool:
            array = array.astype(np.float32) * 255.0
        elif np.issubdtype(array.dtype, np.floating) and array.size and array.max() <= 1.0:
            array = array.astype(np.float32) * 255.0  # floats in [0, 1]
        else:
            array = array.astype(np.float32)
    if array.ndim == 2:
        return array[..., None], None
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ValueError(f"a sketch must be HxW, HxWx3 or HxWx4; got shape {array.shape}")
    if array.shape[2] == 4:
        return array[..., :3], array[..., 3]
    return array, None


def _border(values: np.ndarray) -> np.ndarray:
    """The pixels of the image's outer ring (1% of the short side, at least 1 px), flattened."""
    height, width = values.shape[:2]
    ring = max(1, min(height, width) // 100)
    parts = [values[:ring], values[-ring:], values[:, :ring], values[:, -ring:]]
    return np.concatenate([p.reshape(-1, *values.shape[2:]) for p in parts])


def _threshold(distance: np.ndarray) -> float:
    """Half the typical stroke contrast, never below MIN_CONTRAST.

    Halfway between paper and ink keeps anti-aliased edges at their drawn width whatever the
    pen's contrast (a faint pencil or a saturated marker).
    """
    candidates = distance[distance > MIN_CONTRAST]
    if candidates.size == 0:
        return float(MIN_CONTRAST)
    return max(float(MIN_CONTRAST), 0.5 * float(np.median(candidates)))


def _remove_specks(mask: np.ndarray) -> np.ndarray:
    """Drop isolated specks (sensor/JPEG noise, a stray touch) that would stretch the crop."""
    speck = max(4, int(2e-6 * mask.size))
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = np.zeros(count, dtype=bool)
    keep[1:] = stats[1:, cv2.CC_STAT_AREA] >= speck
    return keep[labels]


def stroke_mask(image: Image.Image | np.ndarray) -> np.ndarray:
    """A bool HxW mask, True where the sketch has a stroke, whatever the pen and paper colours.

    A transparent layer (alpha that varies) is read by its alpha; otherwise each pixel's
    colour distance from the paper colour (the median of the border) decides.
    """
    colour, alpha = _to_array(image)
    if colour.shape[0] == 0 or colour.shape[1] == 0:
        raise BlankSketchError(BLANK_MESSAGE)
    if alpha is not None and float(alpha.max() - alpha.min()) > MIN_ALPHA_RANGE:
        distance = np.abs(alpha - float(np.median(_border(alpha))))
    else:
        paper = np.median(_border(colour), axis=0)
        distance = np.abs(colour - paper).max(axis=2)
    mask = distance > _threshold(distance)
    return _remove_specks(mask)


def _resize_mask(square: np.ndarray, size: int) -> np.ndarray:
    coverage = square.astype(np.float32)
    if square.shape[0] > size:
        # Area averaging then the lowest threshold: thin strokes thicken a little instead of breaking.
        small = cv2.resize(coverage, (size, size), interpolation=cv2.INTER_AREA)
        return small > DOWNSCALE_COVERAGE
    if square.shape[0] < size:
        large = cv2.resize(coverage, (size, size), interpolation=cv2.INTER_LINEAR)
        return large >= 0.5
    return square.copy()


def prepare_sketch(image: Image.Image | np.ndarray, size: int = 512, margin: float = 0.06) -> PreparedSketch:
    """Crop to the strokes with `margin` (a fraction of their longer side), pad square, resize.

    Raises BlankSketchError when there are no strokes (noise specks alone count as none).
    """
    mask = stroke_mask(image)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    if rows.size == 0:
        raise BlankSketchError(BLANK_MESSAGE)
    top, bottom = int(rows[0]), int(rows[-1]) + 1
    left, right = int(cols[0]), int(cols[-1]) + 1
    height, width = bottom - top, right - left
    pad = int(round(margin * max(height, width)))
    side = max(height, width) + 2 * pad
    square = np.zeros((side, side), dtype=bool)
    y0, x0 = (side - height) // 2, (side - width) // 2
    square[y0:y0 + height, x0:x0 + width] = mask[top:bottom, left:right]
    resized = _resize_mask(square, size)
    preview = Image.fromarray(np.where(resized, 0, 255).astype(np.uint8)).convert("RGB")
    log.debug("sketch: strokes at %s, %d px square -> %d px", (left, top, right, bottom), side, size)
    return PreparedSketch(mask=resized, preview=preview, bbox=(left, top, right, bottom))
