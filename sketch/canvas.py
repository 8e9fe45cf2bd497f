"""The air canvas: strokes kept as data (so undo and export redraw them), shown over the live view.

Each stroke is a colour, a width and a list of points in view pixels; eraser strokes are strokes
too, so undoing an erase brings the ink back. Undo steps back through strokes and clears (one undo
brings a cleared sketch back); redo steps forward again until a new stroke is drawn. A layer of what is drawn so far is kept up to date
as points arrive, so showing the canvas costs one masked copy per frame however long the
sketch gets.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from PIL import Image

from sketch.smoothing import fill_gap
from sketch_search.common.errors import BlankSketchError

BGR = tuple[int, int, int]
Point = tuple[float, float]

BLACK: BGR = (20, 20, 20)
GREEN: BGR = (40, 170, 40)
RED: BGR = (40, 40, 220)
WHITE: BGR = (255, 255, 255)

PEN_WIDTH = 6        # pixels of a 640-pixel-wide view
ERASER_WIDTH = 40
POINT_STEP = 3.0     # stored points are at most this far apart (pixels)

EXPORT_SIZE = 512
EXPORT_MARGIN = 0.12       # of the sketch's longer side, on every edge
EXPORT_MIN_SIDE = 64       # view pixels: a tiny doodle is not blown up into a blob
EXPORT_WIDTH_SCALE = (0.75, 2.0)  # strokes thicken with the zoom, within these bounds
_SHIFT = 4                 # fixed-point bits for sub-pixel drawing


@dataclass
class Stroke:
    color: BGR
    width: int
    points: list[Point] = field(default_factory=list)
    erase: bool = False


def _fixed(point: Point, scale: float = 1.0, offset: Point = (0.0, 0.0)) -> tuple[int, int]:
    factor = scale * (1 << _SHIFT)
    return (int(round((point[0] - offset[0]) * factor)), int(round((point[1] - offset[1]) * factor)))


def draw_stroke(image: np.ndarray, stroke: Stroke, color, scale: float = 1.0,
                offset: Point = (0.0, 0.0), width_scale: float = 1.0, start: int = 0,
                antialias: bool = False) -> None:
    """Draw `stroke` (from point `start` on) into `image`, mapping p to (p - offset) * scale."""
    points = stroke.points
    if not points:
        return
    thickness = max(1, int(round(stroke.width * width_scale)))
    line_type = cv2.LINE_AA if antialias else cv2.LINE_8
    if len(points) == 1 or start == 0:
        # Round dot at the stroke's first point: a tap leaves a mark.
        cv2.circle(image, _fixed(points[0], scale, offset), (thickness << _SHIFT) // 2, color,
                   -1, line_type, _SHIFT)
    for i in range(max(1, start), len(points)):
        cv2.line(image, _fixed(points[i - 1], scale, offset), _fixed(points[i], scale, offset),
                 color, thickness, line_type, _SHIFT)


class Canvas:
    """Strokes over a view of `width` x `height` pixels."""

    def __init__(self, width: int, height: int):
        if width < 1 or height < 1:
            raise ValueError(f"canvas size must be positive, got {width}x{height}")
        self.width, self.height = width, height
        self.strokes: list[Stroke] = []
        # Goes up whenever the visible ink may have changed (points added, undo, clear): what
        # the air canvas watches to follow the drawing.
        self.version = 0
        self._open = False  # the last stroke is still being drawn
        # What undo takes back, newest last: a Stroke that was drawn, or the list of strokes a
        # clear removed. Redo holds what undo took, newest last; a new stroke empties it.
        self._done: list[Stroke | list[Stroke]] = []
        self._undone: list[Stroke | list[Stroke]] = []
        self._ink = np.zeros((height, width, 3), np.uint8)
        self._mask = np.zeros((height, width), np.uint8)

    # -- drawing --------------------------------------------------------------------------------
    def begin(self, color: BGR, width: int = PEN_WIDTH, erase: bool = False) -> Stroke:
        self.end()
        stroke = Stroke(tuple(int(c) for c in color), int(width), [], erase)
        self.strokes.append(stroke)
        self._open = True
        return stroke

    def add(self, point: Point) -> None:
        """Extend the open stroke to `point`, filling the gap since the last point."""
        if not self._open:
            raise RuntimeError("no open stroke: call begin() first")
        stroke = self.strokes[-1]
        x = min(max(float(point[0]), 0.0), self.width - 1.0)
        y = min(max(float(point[1]), 0.0), self.height - 1.0)
        first_new = len(stroke.points)
        if stroke.points:
            if (x, y) == stroke.points[-1]:
                return
            stroke.points.extend(fill_gap(stroke.points[-1], (x, y), POINT_STEP))
        else:
            stroke.points.append((x, y))
            self._done.append(stroke)  # a stroke counts from its first point
            self._undone.clear()
        self._draw_on_layer(stroke, start=first_new)
        self.version += 1

    def end(self) -> None:
        """Close the open stroke; a stroke that got no points is dropped."""
        if self._open and not self.strokes[-1].points:
            self.strokes.pop()
        self._open = False

    @property
    def drawing(self) -> bool:
        return self._open

    def cancel(self) -> None:
        """Drop the stroke being drawn, as if it had never been (not undoable, not redoable):
        for a stroke that turns out to have been part of another gesture."""
        if not self._open:
            return
        stroke = self.strokes.pop()
        self._open = False
        if stroke.points:
            self._done.pop()
            self._redraw_layer()
            self.version += 1

    @property
    def can_undo(self) -> bool:
        return bool(self._done)

    @property
    def can_redo(self) -> bool:
        return bool(self._undone)

    def undo(self) -> bool:
        """Take back the last stroke (the one being drawn, if any) or the last clear. False when
        there was nothing to take back."""
        self.end()
        if not self._done:
            return False
        step = self._done.pop()
        if isinstance(step, Stroke):
            self.strokes.pop()
        else:
            self.strokes[:] = step
        self._undone.append(step)
        self._redraw_layer()
        self.version += 1
        return True

    def redo(self) -> bool:
        """Do again what the last undo took back. False when there is nothing to redo."""
        self.end()
        if not self._undone:
            return False
        step = self._undone.pop()
        if isinstance(step, Stroke):
            self.strokes.append(step)
        else:
            self.strokes.clear()
        self._done.append(step)
        self._redraw_layer()
        self.version += 1
        return True

    def clear(self) -> bool:
        """Remove every stroke, as one step that undo takes back. False when there was none."""
        self.end()
        if not self.strokes:
            return False
        self._done.append(list(self.strokes))
        self._undone.clear()
        self.strokes.clear()
        self._redraw_layer()
        self.version += 1
        return True

    # -- showing --------------------------------------------------------------------------------
    def _draw_on_layer(self, stroke: Stroke, start: int = 0) -> None:
        if stroke.erase:
            draw_stroke(self._mask, stroke, 0, start=start)
        else:
            draw_stroke(self._ink, stroke, stroke.color, start=start)
            draw_stroke(self._mask, stroke, 255, start=start)

    def _redraw_layer(self) -> None:
        self._ink[:] = 0
        self._mask[:] = 0
        for stroke in self.strokes:
            self._draw_on_layer(stroke)

    @property
    def mask(self) -> np.ndarray:
        """(height, width) uint8: 255 where ink is visible. Read-only view."""
        view = self._mask.view()
        view.flags.writeable = False
        return view

    def render(self, frame: np.ndarray) -> np.ndarray:
        """Paint the visible ink onto a BGR `frame` of the canvas's size, in place; returns it."""
        if frame.shape[:2] != (self.height, self.width):
            raise ValueError(f"frame is {frame.shape[1]}x{frame.shape[0]}, "
                             f"canvas is {self.width}x{self.height}")
        cv2.copyTo(self._ink, self._mask, frame)
        return frame

    def is_blank(self) -> bool:
        return not self._mask.any()

    # -- export ---------------------------------------------------------------------------------
    def export(self, size: int = EXPORT_SIZE, margin: float = EXPORT_MARGIN) -> Image.Image:
        """The sketch as an RGB image: strokes on white, cropped with a margin, square, `size` px.

        Raises BlankSketchError when no ink is left (nothing drawn, or all of it erased).
        """
        ys, xs = np.nonzero(self._mask)
        if xs.size == 0:
            raise BlankSketchError("the canvas is blank: draw something (2-4 fingers) before saving")
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        side = max(x1 - x0, y1 - y0, EXPORT_MIN_SIDE) * (1.0 + 2.0 * margin)
        left = (x0 + x1) / 2.0 - side / 2.0
        top = (y0 + y1) / 2.0 - side / 2.0
        scale = size / side
        width_scale = min(max(scale, EXPORT_WIDTH_SCALE[0]), EXPORT_WIDTH_SCALE[1])
        # Pixel centres: view pixel (x0 + 0.5) lands inside the crop, hence the half-pixel shift.
        offset = (left - 0.5, top - 0.5)
        image = np.full((size, size, 3), 255, np.uint8)
        for stroke in self.strokes:
            draw_stroke(image, stroke, WHITE if stroke.erase else stroke.color, scale, offset,
                        width_scale, antialias=True)
        return Image.fromarray(cv2.cvtColor(image, cv2.COLOR_BGR2RGB))
