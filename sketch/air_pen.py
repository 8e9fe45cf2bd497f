"""From the tracked hands to tools, strokes and commands: the gesture state machine of the air canvas.

One hand holds the pen (draws, erases, saves); a second hand never draws. Both hands open,
held, clear the canvas. A hand that is not drawing (a fist) moves the pointer.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, auto

from sketch import overlay
from sketch.canvas import BLACK, ERASER_WIDTH, GREEN, PEN_WIDTH, RED, Canvas
from sketch.gestures import Gesture, GestureStabilizer, gesture_for_hand
from sketch.smoothing import OneEuroFilter
from sketch.tracker import Hand

HOLD_SECONDS = 0.6          # how long the save and clear gestures are held before they fire
STABLE_FRAMES = 3           # frames a gesture must persist before the tool changes
INDEX_FINGERTIP = 8
# The pointer is the middle finger's base knuckle: it does not move when the fingers curl or
# open (a fingertip jumps as a fist closes), it is the top of a closed fist, so it reaches as
# near the edges as the hand does, and MediaPipe places it steadily on a fist.
POINTER_LANDMARK = 9
PALM = (0, 5, 9, 13, 17)    # wrist and knuckles: where a hand is, whatever its fingers do
# An eraser stroke begun this shortly before both hands are seen open was the first open hand
# of the clear gesture, seen before the tracker found the second: it is taken back. (Raising
# both hands together, the first is seen open up to about 0.3 s before both are.)
CLEAR_GRACE_SECONDS = 0.8


class Action(Enum):
    """What a frame's hands fired."""

    SAVE = auto()
    CLEAR = auto()


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
CLEAR_TOOL = Tool("clear (hold)", overlay.ACCENT)


def tool_for(gesture: Gesture) -> Tool:
    return DRAWING_TOOLS.get(gesture) or OTHER_TOOLS[gesture]


Point = tuple[float, float]


class _Hold:
    """A gesture held for `seconds`: fires once per hold, with its progress for the ring."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._start: float | None = None
        self._fired = False
        self._t: float | None = None

    def update(self, held: bool, t: float) -> bool:
        self._t = t
        if not held:
            self._start, self._fired = None, False
            return False
        if self._start is None:
            self._start = t
        if not self._fired and t - self._start >= self.seconds:
            self._fired = True
            return True
        return False

    @property
    def progress(self) -> float | None:
        if self._start is None or self._fired or self._t is None:
            return None
        return min(1.0, (self._t - self._start) / self.seconds)


class AirPen:
    """Turns the tracked hands, frame by frame, into strokes on the canvas and commands.

    Which hand draws: the pen belongs to one hand at a time. With one hand in view, that hand
    has it. When a second hand appears, the hand that had the pen keeps it (the hand nearest
    to where the pen hand was last seen); the second hand never draws, erases or saves. When
    the pen hand leaves the view, the pen passes to the hand that remains, keeping that hand's
    gesture (a fist stays a fist and does not start drawing).

    Clear: both hands open (five fingers each) held for `hold_seconds`, with a filling ring on
    each hand (`clear_progress`, `clear_points`); while both are open neither erases (an erase
    begun in the moment before the second hand was found is taken back).

    Pointer: `pointer` is the smoothed middle-finger knuckle of a hand showing a fist (pen up),
    the second hand's before the pen hand's, in view pixels; None when no hand is a fist. A
    drawing hand never gives a pointer.

    Unsure: a hand whose read is declined (Gesture.UNSURE) changes nothing: the tool stays, the
    pen pauses (no line, no erasing), a save or clear hold lets go and does not fire, and the
    hand gives no pointer (so no control's hold progresses); its palm is in `unsure_points`.
    """

    def __init__(self, canvas: Canvas, hold_seconds: float = HOLD_SECONDS,
                 stable_frames: int = STABLE_FRAMES):
        self.canvas = canvas
        self.hold_seconds = hold_seconds
        self.stabilizer = GestureStabilizer(frames=stable_frames)
        self.other_stabilizer = GestureStabilizer(frames=stable_frames)
        self.smoother = OneEuroFilter()
        self.pointer_smoother = OneEuroFilter()
        self.gesture = Gesture.PEN_UP           # the pen hand's (PEN_UP with no hand)
        self.other_gesture: Gesture | None = None  # the second hand's; None with no second hand
        self.cursor: Point | None = None        # smoothed index fingertip of the pen hand, view pixels
        self.pointer: Point | None = None
        self.clear_points: tuple[Point, Point] | None = None  # both palms while both are open
        self.unsure_points: list[Point] = []    # palms of the hands whose read was declined this frame
        self._save = _Hold(hold_seconds)
        self._clear = _Hold(hold_seconds)
        self._pen_at: Point | None = None       # palm of the pen hand when last seen
        self._other_at: Point | None = None     # palm of the second hand in the last frame
        self._pointer_from: str | None = None   # "pen" or "other"
        self._stroke_started: float | None = None
        self._raw: Gesture | None = None        # the pen hand's gesture in the last frame, unstabilised

    @property
    def tool(self) -> Tool:
        if self.clear_points is not None:
            return CLEAR_TOOL
        return tool_for(self.gesture)

    @property
    def expects_second_hand(self) -> bool:
        """True while the pen hand is open (eraser, or about to be): the start of the clear
        gesture, so the tracker looks for the second hand more often (TwoHandTracker's eager)."""
        return self._raw is Gesture.ERASER or self.gesture is Gesture.ERASER

    @property
    def hold_progress(self) -> float | None:
        """0..1 while the save gesture is held, else None."""
        return self._save.progress

    @property
    def clear_progress(self) -> float | None:
        """0..1 while both hands are held open, else None."""
        return self._clear.progress

    def palm(self, hand: Hand) -> Point:
        x, y = hand.landmarks[list(PALM), :2].mean(axis=0) * (self.canvas.width, self.canvas.height)
        return float(x), float(y)

    def _assign(self, hands: Sequence[Hand]) -> tuple[Hand | None, Hand | None]:
        """(pen hand, second hand) for this frame; swaps the hands' state when the pen passes."""
        hands = list(hands)[:2]
        if not hands:
            self._other_at = None
            return None, None
        palms = [self.palm(hand) for hand in hands]
        if len(hands) == 1:
            if (self._other_at is not None and self._pen_at is not None
                    and math.dist(palms[0], self._other_at) < math.dist(palms[0], self._pen_at)):
                # The pen hand left: the pen passes to the remaining hand, with its gesture; its
                # line is its own (never joined to where the other hand stopped).
                self.stabilizer, self.other_stabilizer = self.other_stabilizer, self.stabilizer
                self.canvas.end()
                self.smoother.reset()
                self._stroke_started = None
            self._pen_at, self._other_at = palms[0], None
            return hands[0], None
        pen = 0
        if self._pen_at is not None and math.dist(palms[1], self._pen_at) < math.dist(palms[0], self._pen_at):
            pen = 1
        self._pen_at, self._other_at = palms[pen], palms[1 - pen]
        return hands[pen], hands[1 - pen]

    def update(self, hands: Sequence[Hand], t: float) -> Action | None:
        """Take one frame's hands (none, one or two) at time `t`; what fired, if anything."""
        pen_hand, other = self._assign(hands)
        raw, other_raw = self._read(pen_hand, other)
        sure = raw is not Gesture.UNSURE and other_raw is not Gesture.UNSURE
        both_open = sure and self.gesture is Gesture.ERASER and self.other_gesture is Gesture.ERASER
        tool = None if both_open else DRAWING_TOOLS.get(self.gesture)

        if both_open and self.canvas.drawing and self.canvas.strokes[-1].erase and \
                self._stroke_started is not None and t - self._stroke_started <= CLEAR_GRACE_SECONDS:
            self.canvas.cancel()
        self._draw(pen_hand, tool, raw, t)
        self._update_pointer(pen_hand if raw is not Gesture.UNSURE else None,
                             other if other_raw is not Gesture.UNSURE else None, t)
        self.clear_points = (self.palm(pen_hand), self.palm(other)) if both_open else None
        if self._clear.update(both_open, t):
            return Action.CLEAR
        # An unsure frame of the pen hand lets go of the save: a declined hand never completes one.
        if self._save.update(self.gesture is Gesture.SAVE and raw is not Gesture.UNSURE, t):
            return Action.SAVE
        return None

    def _read(self, pen_hand: Hand | None, other: Hand | None) -> tuple[Gesture | None, Gesture | None]:
        """Each hand's gesture this frame (raw), fed to its stabiliser; UNSURE ones change nothing
        there, and their palms go to `unsure_points` for the window's "?"."""
        raw = gesture_for_hand(pen_hand) if pen_hand is not None else None
        self._raw = raw
        self.gesture = self.stabilizer.update(raw)
        other_raw = None
        if other is None:
            self.other_stabilizer.reset()
            self.other_gesture = None
        else:
            other_raw = gesture_for_hand(other)
            self.other_gesture = self.other_stabilizer.update(other_raw)
        self.unsure_points = [self.palm(hand) for hand, gesture in ((pen_hand, raw), (other, other_raw))
                              if hand is not None and gesture is Gesture.UNSURE]
        return raw, other_raw

    def _draw(self, pen_hand: Hand | None, tool: Tool | None, raw: Gesture | None, t: float) -> None:
        """The pen hand's stroke: begun, continued or ended for this frame's tool."""
        if tool is None:
            self.canvas.end()
        elif not self.canvas.drawing or not _same_tool(self.canvas.strokes[-1], tool):
            self.canvas.begin(tool.color, tool.width, tool.erase)
            self._stroke_started = t
            self.smoother.reset()  # a new stroke starts where the finger is, not where it was
        if pen_hand is None:
            self.cursor = None
            self.smoother.reset()  # the hand may come back anywhere
            return
        x, y = pen_hand.landmarks[INDEX_FINGERTIP, :2] * (self.canvas.width, self.canvas.height)
        self.cursor = tuple(float(v) for v in self.smoother((x, y), t))
        # While fingers are changing (raw differs from the held tool) the pen pauses, so curling a
        # finger does not leave a hook at the end of a stroke; an unsure hand (raw UNSURE) pauses it
        # too: it neither draws nor erases.
        if tool is not None and raw == self.gesture:
            self.canvas.add(self.cursor)

    def _update_pointer(self, pen_hand: Hand | None, other: Hand | None, t: float) -> None:
        if other is not None and self.other_gesture is Gesture.PEN_UP:
            source, hand = "other", other
        elif pen_hand is not None and self.gesture is Gesture.PEN_UP and not self.canvas.drawing:
            source, hand = "pen", pen_hand
        else:
            source, hand = None, None
        if source != self._pointer_from:
            self.pointer_smoother.reset()  # another hand: start where it is
            self._pointer_from = source
        if hand is None:
            self.pointer = None
            return
        x, y = hand.landmarks[POINTER_LANDMARK, :2] * (self.canvas.width, self.canvas.height)
        self.pointer = tuple(float(v) for v in self.pointer_smoother((x, y), t))


def _same_tool(stroke, tool: Tool) -> bool:
    return stroke.erase == tool.erase and stroke.color == tool.color and stroke.width == tool.width


# -- the search worker ----------------------------------------------------------------------------
