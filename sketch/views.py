"""Showing part of an image to the hand detector, and mapping what it finds back.

A `PhotoView` scales (and may pad, mirror or turn) an image for MediaPipe; `map_back` expresses
landmarks found in such a view in the original image's coordinates. `look_closer` is the second
look: the region around a hand, cut out, upscaled and shown again on its own (static mode), which
often fits a hand whose first fit was implausible. Used by photo detection and the video loop.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import cv2
import numpy as np

if TYPE_CHECKING:  # this module builds hands with dataclasses.replace, never imports the tracker
    from sketch.tracker import Hand

NUM_LANDMARKS = 21
# The second look: the hand's landmark box grown by this fraction of its size on each side (the
# fit may have missed a finger), made square, and shown scaled to CLOSER_VIEW.
CLOSER_MARGIN = 0.45


@dataclass(frozen=True)
class PhotoView:
    """One way to show a photo to the detector: scaled to `side`, with a border, maybe turned.

    Tight crops (a hand filling a 100 px photo edge to edge, its wrist cut by the frame)
    defeat the palm detector; a border made by repeating the edge pixels gives the hand
    context and extends the cut arm, as in a wider shot.
    """

    side: int = 256          # longer side of the photo after scaling, in pixels
    border: float = 0.35     # border on each edge, as a fraction of `side`
    mirror: bool = False
    turn: float = 0.0        # degrees, counter-clockwise

    def render(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The view's image and the 3x3 affine map from photo to view pixel coordinates.

        Coordinates are continuous (the photo spans [0, W] x [0, H]), as MediaPipe's
        normalised landmarks times the image size are.
        """
        height, width = image.shape[:2]
        scale = self.side / max(height, width)
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        interpolation = cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA
        resized = cv2.resize(image, size, interpolation=interpolation)
        w, h = size
        mirror = np.array([[-1.0, 0, w], [0, 1, 0], [0, 0, 1]]) if self.mirror else np.eye(3)
        # Turn about the centre on a canvas large enough for the turned photo, plus the border.
        angle = np.deg2rad(self.turn)
        cos, sin = np.cos(angle), np.sin(angle)
        border = 2 * self.side * self.border
        out_w = round(abs(w * cos) + abs(h * sin) + border)
        out_h = round(abs(w * sin) + abs(h * cos) + border)
        rotate = np.array([[cos, sin, 0], [-sin, cos, 0], [0, 0, 1]])  # y points down
        to_view_from_resized = _translation(out_w / 2, out_h / 2) @ rotate @ _translation(-w / 2, -h / 2) @ mirror
        affine = to_view_from_resized @ np.diag([w / width, h / height, 1.0])
        # warpAffine works on pixel indices (centres at integers): shift by half a pixel.
        in_index = _translation(-0.5, -0.5) @ to_view_from_resized @ _translation(0.5, 0.5)
        rendered = cv2.warpAffine(resized, in_index[:2], (out_w, out_h), flags=cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_REPLICATE)
        return rendered, affine


def _translation(dx: float, dy: float) -> np.ndarray:
    return np.array([[1.0, 0, dx], [0, 1, dy], [0, 0, 1]])


def map_back(hand: Hand, to_view: np.ndarray, mirrored: bool, width: int, height: int) -> Hand:
    """A hand found in a view, with its landmarks expressed in the original photo."""
    view_w, view_h = hand.image_size
    points = np.c_[hand.landmarks[:, 0] * view_w, hand.landmarks[:, 1] * view_h, np.ones(NUM_LANDMARKS)]
    back = points @ np.linalg.inv(to_view).T
    linear = to_view[:2, :2]
    scale = float(np.sqrt(abs(np.linalg.det(linear))))
    landmarks = np.empty((NUM_LANDMARKS, 3), dtype=np.float32)
    landmarks[:, 0] = back[:, 0] / width
    landmarks[:, 1] = back[:, 1] / height
    landmarks[:, 2] = hand.landmarks[:, 2] * view_w / scale / width  # z is on the scale of x
    world = hand.world_landmarks
    if world is not None:
        # Undo the view's turn and mirror on the metric landmarks too (x right, y down).
        unit = linear / scale
        world = world.copy()
        world[:, :2] = world[:, :2] @ np.linalg.inv(unit).T
        world = world.astype(np.float32)
    handedness = hand.handedness
    if mirrored:
        handedness = {"Left": "Right", "Right": "Left"}.get(handedness, handedness)
    return replace(hand, landmarks=landmarks, handedness=handedness, image_size=(width, height),
                   world_landmarks=world)



CLOSER_VIEW = PhotoView(side=256, border=0.2)


def box_around(points_px: np.ndarray, margin: float = CLOSER_MARGIN) -> tuple[int, int, int]:
    """(x0, y0, side): a square around (N, 2) pixel points, grown by `margin` of their size on each
    side; it may reach past the image's edges."""
    low, high = points_px.min(axis=0), points_px.max(axis=0)
    side = float((high - low).max()) * (1 + 2 * margin)
    centre = (low + high) / 2
    side = max(side, 16.0)
    x0, y0 = (int(np.floor(v - side / 2)) for v in centre)
    return x0, y0, int(np.ceil(side))


def crop(image: np.ndarray, box: tuple[int, int, int]) -> np.ndarray:
    """The square `box` of the image; parts past its edges repeat the edge pixels."""
    x0, y0, side = box
    height, width = image.shape[:2]
    pad = max(0, -x0, -y0, x0 + side - width, y0 + side - height)
    if pad:
        image = cv2.copyMakeBorder(image, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
    return np.ascontiguousarray(image[y0 + pad:y0 + pad + side, x0 + pad:x0 + pad + side])


def hand_in_view(tracker, image: np.ndarray, view: PhotoView) -> Hand | None:
    """The hand `tracker` finds in `view` of the image (None if none), in the image's coordinates."""
    rendered, to_view = view.render(image)
    hand = tracker.process(rendered)
    return None if hand is None else map_back(hand, to_view, view.mirror, image.shape[1], image.shape[0])


def look_closer(tracker, image: np.ndarray, box: tuple[int, int, int], view: PhotoView = CLOSER_VIEW) -> Hand | None:
    """The hand a static `tracker` (HandTracker(static_image_mode=True)) finds in the square `box`
    of the image, upscaled on its own; landmarks in the whole image's coordinates."""
    rendered, to_view = view.render(crop(image, box))
    hand = tracker.process(rendered)
    if hand is None:
        return None
    x0, y0, _ = box
    height, width = image.shape[:2]
    return map_back(hand, to_view @ _translation(-x0, -y0), view.mirror, width, height)


def second_look(tracker, image: np.ndarray, hand: Hand, around: Hand | None = None) -> Hand:
    """The second look, in photos and in video: a plausible fit from a tighter, upscaled crop
    around `around` (default: `hand` itself; in video, the hand as the previous frame had it),
    else `hand` unchanged."""
    box = box_around((hand if around is None else around).landmarks_px())
    closer = look_closer(tracker, image, box)
    return closer if closer is not None and closer.doubt is None else hand
