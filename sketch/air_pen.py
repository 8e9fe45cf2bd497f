"""From a tracked hand to tools and strokes: the gesture state machine of the air canvas."""
from __future__ import annotations

from dataclasses import dataclass

from sketch import overlay
from sketch.canvas import BLACK, ERASER_WIDTH, GREEN, PEN_WIDTH, RED, Canvas
from sketch.gestures import Gesture, GestureStabilizer, gesture_for_hand
from sketch.smoothing import OneEuroFilter
from sketch.tracker import Hand

HOLD_SECONDS = 0.6          # how long the save gesture is held before it fires
STABLE_FRAMES = 3           # frames a gesture must persist before the tool changes
INDEX_FINGERTIP = 8
POINTER_KNUCKLE = 5         # the index finger's base knuckle: steady whether the hand is a fist or not


@dataclass(frozen=True)
class Tool:
    name: str
    color: tuple[int, int, int]   # BGR; also the status bar's swatch
    width: int = PEN_WIDTH
    erase: bool = False


DRAWING_TOOLS = {
    Gesture.PEN_BLACK: Tool("black pen", BLACK),
    Gesture.PEN_GREEN: Tool("green pen", GREEN),
    Gesture.PEN_RED: Tool("red pen", RED),
    Gesture.ERASER: Tool("eraser", (255, 255, 255), ERASER_WIDTH, erase=True),
}
OTHER_TOOLS = {
    Gesture.PEN_UP: Tool("pen up", (110, 110, 110)),
    Gesture.SAVE: Tool("save (hold)", overlay.ACCENT),
}


def tool_for(gesture: Gesture) -> Tool:
    return DRAWING_TOOLS.get(gesture) or OTHER_TOOLS[gesture]


class AirPen:
    """Turns the tracked hand, frame by frame, into strokes on the canvas and save requests."""

    def __init__(self, canvas: Canvas, hold_seconds: float = HOLD_SECONDS,
                 stable_frames: int = STABLE_FRAMES):
        self.canvas = canvas
        self.hold_seconds = hold_seconds
        self.stabilizer = GestureStabilizer(frames=stable_frames)
        self.smoother = OneEuroFilter()
        self.gesture = Gesture.PEN_UP
        self.cursor: tuple[float, float] | None = None   # smoothed index fingertip, view pixels
        self.pointer_smoother = OneEuroFilter()
        self._knuckle: tuple[float, float] | None = None  # smoothed, view pixels
        self._hold_start: float | None = None
        self._hold_fired = False
        self._last_t: float | None = None

    @property
    def tool(self) -> Tool:
        return tool_for(self.gesture)

    @property
    def hold_progress(self) -> float | None:
        """0..1 while the save gesture is held, else None."""
        if self._hold_start is None or self._hold_fired or self._last_t is None:
            return None
        return min(1.0, (self._last_t - self._hold_start) / self.hold_seconds)

    @property
    def pointer(self) -> tuple[float, float] | None:
        """Where a hand that is not drawing points (the smoothed index-finger base knuckle, view
        pixels) while the pen is up and a hand is seen; None while drawing or with no hand."""
        return self._knuckle if self.gesture is Gesture.PEN_UP else None

    def update(self, hand: Hand | None, t: float) -> bool:
        """Take one frame's hand (or None) at time `t`; True when the save gesture completes."""
        self._last_t = t
        raw = gesture_for_hand(hand) if hand is not None else None
        self.gesture = self.stabilizer.update(raw)
        tool = DRAWING_TOOLS.get(self.gesture)

        if tool is None:
            self.canvas.end()
        elif not self.canvas.drawing or not _same_tool(self.canvas.strokes[-1], tool):
            self.canvas.begin(tool.color, tool.width, tool.erase)
            self.smoother.reset()  # a new stroke starts where the finger is, not where it was

        if hand is None:
            self.cursor = self._knuckle = None
            self.smoother.reset()  # the hand may come back anywhere
            self.pointer_smoother.reset()
        else:
            knuckle = hand.landmarks[POINTER_KNUCKLE, :2] * (self.canvas.width, self.canvas.height)
            self._knuckle = tuple(float(v) for v in self.pointer_smoother(knuckle, t))
            x, y = hand.landmarks[INDEX_FINGERTIP, :2] * (self.canvas.width, self.canvas.height)
            self.cursor = tuple(float(v) for v in self.smoother((x, y), t))
            # While fingers are changing (raw differs from the held tool) the pen pauses, so
            # curling a finger does not leave a hook at the end of a stroke.
            if tool is not None and raw == self.gesture:
                self.canvas.add(self.cursor)

        if self.gesture is Gesture.SAVE:
            if self._hold_start is None:
                self._hold_start = t
            if not self._hold_fired and t - self._hold_start >= self.hold_seconds:
                self._hold_fired = True
                return True
        else:
            self._hold_start, self._hold_fired = None, False
        return False


def _same_tool(stroke, tool: Tool) -> bool:
    return stroke.erase == tool.erase and stroke.color == tool.color and stroke.width == tool.width


# -- the search worker ----------------------------------------------------------------------------
