"""Sketch image -> binary stroke mask, cropped to the strokes, square, at the generator's size.

pix2pix-turbo's sketch model was trained on binary sketches (stroke = 1, paper = 0), so any
drawing (black pen on white paper, coloured pens on the air canvas's black, a transparent
layer) is reduced to "which pixels are stroke". The paper colour is read from the image's
border, so neither pen nor paper colour is assumed. The pen colour is not lost: when red or
green strokes make up a meaningful share of the drawing, `colour` names it for the prompt
(the generator's input stays the binary mask).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image

from sketch_search.common.errors import BlankSketchError

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

# Pen colour hints. A stroke pixel is chromatic when its chroma (largest minus smallest channel,
# 0-255) is at least MIN_CHROMA and at least MIN_SATURATION of its brightest channel: black,
# grey, white and pencil pens, JPEG ringing and anti-aliased edges blended with the paper are not.
MIN_CHROMA = 48
MIN_SATURATION = 0.35
# Hue ranges in degrees: red wraps around 0, green is centred on 120.
RED_HUES = (335.0, 25.0)
GREEN_HUES = (75.0, 165.0)
# A colour is named when at least this share of the stroke pixels has it and it outnumbers every
# other chromatic hue (a blue or mostly-black drawing gets no hint).
MIN_COLOUR_SHARE = 0.25


@dataclass
class PreparedSketch:
    """What the generator and the captioner get from one sketch."""

    mask: np.ndarray             # bool (size, size), True = stroke
    preview: Image.Image         # RGB (size, size): black strokes on white, for captioning/display
    bbox: tuple[int, int, int, int]  # strokes' box in source pixels: left, top, right, bottom (exclusive)
    colour: str | None = None    # "red" or "green" when that pen drew a meaningful share (stroke_colour)


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
    return _stroke_mask(*_to_array(image))


def _stroke_mask(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if colour.shape[0] == 0 or colour.shape[1] == 0:
        raise BlankSketchError(BLANK_MESSAGE)
    if alpha is not None and float(alpha.max() - alpha.min()) > MIN_ALPHA_RANGE:
        distance = np.abs(alpha - float(np.median(_border(alpha))))
    else:
        paper = np.median(_border(colour), axis=0)
        distance = np.abs(colour - paper).max(axis=2)
    mask = distance > _threshold(distance)
    return _remove_specks(mask)


def _hues(pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(hue in degrees 0-360, chromatic?) of N x 3 RGB pixels (0-255)."""
    red, green, blue = pixels[:, 0], pixels[:, 1], pixels[:, 2]
    top, bottom = pixels.max(axis=1), pixels.min(axis=1)
    chroma = top - bottom
    chromatic = (chroma >= MIN_CHROMA) & (chroma >= MIN_SATURATION * top)
    safe = np.where(chroma > 0, chroma, 1.0)
    hue = np.where(top == red, ((green - blue) / safe) % 6.0,
                   np.where(top == green, (blue - red) / safe + 2.0, (red - green) / safe + 4.0))
    return hue * 60.0, chromatic


def _stroke_colour(colour: np.ndarray, mask: np.ndarray) -> str | None:
    if colour.shape[2] < 3 or not mask.any():
        return None  # a grey image has no pen colour
    # The strokes' core: edge pixels are blended with the paper (and JPEG blurs colour at edges).
    # Thin strokes that erosion would wipe out are read whole.
    core = cv2.erode(mask.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    use = core if core.sum() >= 0.2 * mask.sum() else mask
    hue, chromatic = _hues(colour[use].reshape(-1, 3))
    red = chromatic & ((hue >= RED_HUES[0]) | (hue < RED_HUES[1]))
    green = chromatic & (hue >= GREEN_HUES[0]) & (hue < GREEN_HUES[1])
    counts = {"red": int(red.sum()), "green": int(green.sum())}
    other = int(chromatic.sum()) - counts["red"] - counts["green"]
    name = max(counts, key=counts.get)
    count = counts[name]
    rival = max(other, min(counts.values()))
    if count >= MIN_COLOUR_SHARE * hue.size and count > rival:
        log.debug("sketch: %s strokes (%.0f %% of stroke pixels)", name, 100.0 * count / hue.size)
        return name
    return None


def stroke_colour(image: Image.Image | np.ndarray, mask: np.ndarray) -> str | None:
    """"red" or "green" when that colour is a meaningful share of the strokes, else None.

    `mask` is the image's stroke mask (`stroke_mask(image)`). A colour is named when at least
    MIN_COLOUR_SHARE of the stroke pixels have its hue and it outnumbers every other chromatic
    hue; black, grey, white and blue-ish pens give None, on any paper.
    """
    colour, _ = _to_array(image)
    mask = np.asarray(mask, dtype=bool)
    if mask.shape != colour.shape[:2]:
        raise ValueError(f"the mask's shape {mask.shape} is not the image's {colour.shape[:2]}")
    return _stroke_colour(colour, mask)


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
    colour, alpha = _to_array(image)
    mask = _stroke_mask(colour, alpha)
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
    pen = _stroke_colour(colour, mask)
    preview = Image.fromarray(np.where(resized, 0, 255).astype(np.uint8)).convert("RGB")
    log.debug("sketch: strokes at %s, %d px square -> %d px", (left, top, right, bottom), side, size)
    return PreparedSketch(mask=resized, preview=preview, bbox=(left, top, right, bottom), colour=pen)
