"""Hand landmarks from RGB images with MediaPipe Hands (`mp.solutions.hands`, works offline).

`HandTracker.process` is for webcam frames (tracking between frames); single, possibly tiny
photos go through sketch/photo_detection.py. `TwoHandTracker` follows up to two hands in webcam
frames at about the cost of one while only one is in view.
"""
from __future__ import annotations

import functools
import logging
import os
import re
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from sketch.plausibility import doubt_about, doubt_about_hand
from sketch.views import second_look
from sketch_search.common.native_env import quiet_native_logs

logger = logging.getLogger(__name__)

NUM_LANDMARKS = 21

# What MediaPipe's C++ (TFLite, absl, its GL context) writes straight to the process's stderr
# while its graph starts: true, but noise to a user. Shown with -v (logging at INFO).
START_UP_CHATTER = re.compile(
    r"XNNPACK delegate|TensorFlow Lite|Feedback manager|inference_feedback_manager|"
    r"absl::InitializeLog|EGL|gl_context|GL version|OpenGL|renderer: |Created TensorFlow|"
    r"landmark_projection_calculator|Using NORM_RECT")


@contextmanager
def _start_up_chatter_quiet() -> Iterator[None]:
    """Catch what native code writes to file descriptor 2 meanwhile; give back all but the chatter.

    Python's logging cannot reach it (it is C++ writing to the descriptor), so the descriptor
    itself goes to a temporary file for the start-up calls. With -v nothing is caught.
    """
    if logger.isEnabledFor(logging.INFO):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            text = caught.read().decode("utf-8", "replace")
    kept = [line for line in text.splitlines(keepends=True) if not START_UP_CHATTER.search(line)]
    if kept:  # not MediaPipe's start-up: whoever wrote it meant it
        sys.stderr.write("".join(kept))
        sys.stderr.flush()


@dataclass(frozen=True)
class Hand:
    """One detected hand.

    landmarks: (21, 3) float32; x and y normalised to the image's width and height
        ([0, 1] inside the image), z relative depth on roughly the scale of x.
    world_landmarks: (21, 3) float32 in metres around the hand's centre (true 3D
        shape, undistorted by the image's aspect ratio); None if not available.
    handedness: "Left" or "Right" as MediaPipe labels it (it assumes a mirrored
        selfie image).
    image_size: (width, height) of the image the landmarks refer to.
    """

    landmarks: np.ndarray
    handedness: str
    score: float
    image_size: tuple[int, int]
    world_landmarks: np.ndarray | None = field(default=None, repr=False)

    def landmarks_px(self, width: int | None = None, height: int | None = None) -> np.ndarray:
        """(21, 2) float pixel coordinates in an image of this size (default: the source image)."""
        w = self.image_size[0] if width is None else width
        h = self.image_size[1] if height is None else height
        return self.landmarks[:, :2] * np.array([w, h], dtype=np.float32)

    def pixel(self, index: int, width: int | None = None, height: int | None = None) -> tuple[int, int]:
        """One landmark (e.g. 8, the index fingertip) as integer pixel coordinates."""
        x, y = self.landmarks_px(width, height)[index]
        return int(round(float(x))), int(round(float(y)))

    @functools.cached_property
    def doubt(self) -> str | None:
        """Why these landmarks cannot be trusted as a hand (sketch/plausibility.py), or None.
        Kept: the second look and the finger reading both ask, every frame."""
        return doubt_about(self.points_3d(), self.score)

    def points_3d(self) -> np.ndarray:
        """(21, 3) landmarks in pixels on all three axes, for angle and distance geometry.

        Normalised x and y are fractions of different lengths on a non-square frame, which
        would skew angles; z is on the scale of x. (The image landmarks separate bent from
        extended fingers better than the world landmarks on the shared photos.)
        """
        w, h = self.image_size
        return self.landmarks * np.array([w, h, w], dtype=np.float32)


def check_rgb(image: np.ndarray) -> np.ndarray:
    if not isinstance(image, np.ndarray) or image.ndim != 3 or image.shape[2] != 3 or image.size == 0:
        shape = getattr(image, "shape", type(image).__name__)
        raise ValueError(f"expected an RGB image as an (H, W, 3) array, got {shape}")
    if image.dtype != np.uint8:
        image = np.clip(image, 0, 255).astype(np.uint8)
    return np.ascontiguousarray(image)


class HandTracker:
    """MediaPipe Hands, created once and reused (building its graph takes ~0.1 s)."""

    def __init__(
        self,
        static_image_mode: bool = False,
        max_num_hands: int = 1,
        min_detection_confidence: float = 0.5,
        min_tracking_confidence: float = 0.5,
    ) -> None:
        # Imported here so that modules using only Hand or the pure gesture logic load fast.
        quiet_native_logs()  # MediaPipe's C++ start-up chatter; the one setting bootstrap() makes too
        with _start_up_chatter_quiet():
            import mediapipe as mp

            self.static_image_mode = static_image_mode
            self._hands = mp.solutions.hands.Hands(
                static_image_mode=static_image_mode,
                max_num_hands=max_num_hands,
                model_complexity=1,
                min_detection_confidence=min_detection_confidence,
                min_tracking_confidence=min_tracking_confidence,
            )
        self._started = False  # its models start on the first frame, the landmarks' on the first hand

    def process(self, frame_rgb: np.ndarray) -> Hand | None:
        """The most confident hand in an RGB frame, or None when no hand is seen."""
        hands = self.process_all(frame_rgb)
        return max(hands, key=lambda hand: hand.score) if hands else None

    def process_all(self, frame_rgb: np.ndarray) -> list[Hand]:
        """Every hand found (at most max_num_hands)."""
        if self._hands is None:
            raise RuntimeError("HandTracker is closed")
        frame = check_rgb(frame_rgb)
        if self._started:
            result = self._hands.process(frame)
        else:
            with _start_up_chatter_quiet():
                result = self._hands.process(frame)
            self._started = bool(result.multi_hand_landmarks)
        if not result.multi_hand_landmarks:
            return []
        height, width = frame.shape[:2]
        worlds = result.multi_hand_world_landmarks or [None] * len(result.multi_hand_landmarks)
        hands = []
        for image_lm, world_lm, handed in zip(result.multi_hand_landmarks, worlds, result.multi_handedness):
            label = handed.classification[0]
            hands.append(
                Hand(
                    landmarks=_to_array(image_lm),
                    handedness=label.label,
                    score=float(label.score),
                    image_size=(width, height),
                    world_landmarks=None if world_lm is None else _to_array(world_lm),
                )
            )
        return hands

    def close(self) -> None:
        if self._hands is not None:
            self._hands.close()
            self._hands = None

    def __enter__(self) -> HandTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


# While one hand is tracked, the rest of the frame is searched for a second hand (a palm
# detection, costing about 1.4 times a tracking) on every SECOND_HAND_EVERY-th frame, or every
# EAGER_SEARCH_EVERY-th while the caller expects one (AirPen: the pen hand is open, as when both
# hands are raised to clear): 3 frames at 30 fps find it within 0.1 s, well inside the clear
# gesture's 0.6 s hold, and a hand that draws costs only a search every half second.
SECOND_HAND_EVERY = 15
EAGER_SEARCH_EVERY = 3
# Once found, the second hand is followed on every TRACK_SECOND_EVERY-th frame and given as last
# seen in between (one frame, 33 ms, old): it only points, or holds still to clear, so that is
# enough, and two hands in view cost one and a half trackings a frame instead of two.
TRACK_SECOND_EVERY = 2
# Around the first hand's landmarks, this fraction of the hand's size is hidden from the second
# search too, so that the edge of the first hand is not found again as a "second" hand.
MASK_MARGIN = 0.3
MASK_GREY = 128
# Two hands whose landmark boxes' centres are closer than this fraction of the larger box are
# one hand seen twice (both trackers on it after the first lost its own).
SAME_HAND = 0.5


# The second look in video: when a tracked hand's landmarks are implausible, a static detection on
# a tighter, upscaled crop around where the hand was in the previous frame, at most once every
# SECOND_LOOK_EVERY frames (it costs about two trackings; BENCHMARKS.md, "Declining what it
# cannot see"), so the loop keeps 30 fps. A plausible fit found so replaces the tracked one.
SECOND_LOOK_EVERY = 5


class SecondLook:
    """Replaces implausible hands with a plausible fit from a crop, now and then (see above)."""

    def __init__(self, every: int = SECOND_LOOK_EVERY) -> None:
        if every < 1:
            raise ValueError(f"every must be at least 1, got {every}")
        self.every = every
        self.looks = 0                      # second looks taken
        self.kept = 0                       # of which gave a plausible fit
        self._since = every                 # frames since the last look
        self._previous: list[Hand] = []     # the hands of the previous frame, as tracked
        self._static: HandTracker | None = None   # made on first need

    def __call__(self, frame: np.ndarray, hands: list[Hand]) -> list[Hand]:
        """This frame's hands, an implausible one replaced when a look is due and finds better."""
        self._since += 1
        previous, self._previous = self._previous, list(hands)
        out = []
        for hand in hands:
            if self._since >= self.every and doubt_about_hand(hand) is not None:
                self._since = 0
                hand = self._look(frame, hand, previous)
            out.append(hand)
        return out

    def _look(self, frame: np.ndarray, hand: Hand, previous: list[Hand]) -> Hand:
        around = next((before for before in previous if same_hand(before, hand)), hand)
        if self._static is None:
            self._static = HandTracker(static_image_mode=True)
        self.looks += 1
        closer = second_look(self._static, frame, hand, around)
        self.kept += closer is not hand
        return closer

    def close(self) -> None:
        if self._static is not None:
            self._static.close()
            self._static = None


class TwoHandTracker:
    """Up to two hands in each webcam frame, at about the cost of one while one is in view.

    MediaPipe with max_num_hands=2 runs its palm detector on every frame while fewer than two
    hands are tracked (25 ms a frame here with one hand in view, against 11 ms with
    max_num_hands=1). Here the first tracker (max_num_hands=1) follows one hand on every
    frame; a second one looks for another hand only every `search_every`-th frame (every
    `eager_every`-th when the caller expects one), in the frame with the first hand painted
    over, and once found follows it every `track_every`-th frame. Hands come back first
    tracker's first; which hand draws is the caller's business (AirPen keeps the pen
    with the hand that was drawing). `second_look_every`: implausible hands get a SecondLook at
    most every that many frames (0: never).
    """

    def __init__(self, search_every: int = SECOND_HAND_EVERY, eager_every: int = EAGER_SEARCH_EVERY,
                 track_every: int = TRACK_SECOND_EVERY, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, second_look_every: int = SECOND_LOOK_EVERY) -> None:
        if min(search_every, eager_every, track_every) < 1:
            raise ValueError(f"search_every, eager_every and track_every must be at least 1, got "
                             f"{search_every}, {eager_every}, {track_every}")
        self.search_every = search_every
        self.eager_every = eager_every
        self.track_every = track_every
        options = dict(max_num_hands=1, min_detection_confidence=min_detection_confidence,
                       min_tracking_confidence=min_tracking_confidence)
        self._first = HandTracker(**options)
        self._second_tracker = HandTracker(**options)
        self._second: Hand | None = None     # the second hand as last seen
        self._frames_since_search = 0
        self.second_look = SecondLook(second_look_every) if second_look_every else None

    def process_all(self, frame_rgb: np.ndarray, eager: bool = False) -> list[Hand]:
        """The hands in this frame: none, one, or two (the first tracker's first). `eager`: a
        second hand is expected, so it is searched for more often (every `eager_every` frames)."""
        frame = check_rgb(frame_rgb)
        first = self._first.process(frame)
        if first is None:
            # No hand at all, or the first tracker lost its own: it searches the whole frame
            # next time and may pick up the second hand, so the second search starts over.
            self._second = None
            self._frames_since_search = 0
            return []
        self._frames_since_search += 1
        if self._second is not None:
            every = self.track_every
        else:
            every = self.eager_every if eager else self.search_every
        if self._frames_since_search >= every:
            self._frames_since_search = 0
            self._second = self._second_tracker.process(without_hand(frame, first))
        if self._second is not None and same_hand(first, self._second):
            self._second = None
        hands = [first] if self._second is None else [first, self._second]
        return hands if self.second_look is None else self.second_look(frame, hands)

    def close(self) -> None:
        self._first.close()
        self._second_tracker.close()
        if self.second_look is not None:
            self.second_look.close()

    def __enter__(self) -> TwoHandTracker:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _box(hand: Hand) -> tuple[np.ndarray, np.ndarray]:
    """The (x, y) corners of a hand's landmarks' box in pixels: low, high."""
    points = hand.landmarks_px()
    return points.min(axis=0), points.max(axis=0)


def without_hand(frame: np.ndarray, hand: Hand, margin: float = MASK_MARGIN) -> np.ndarray:
    """A copy of the frame with the hand's box (grown by `margin` of its size) painted grey."""
    low, high = _box(hand)
    grow = margin * float((high - low).max())
    x0, y0 = (int(v) for v in np.maximum(np.floor(low - grow), 0))
    x1, y1 = (int(v) for v in np.ceil(high + grow))
    hidden = frame.copy()
    hidden[y0:max(y0, y1), x0:max(x0, x1)] = MASK_GREY
    return hidden


def same_hand(a: Hand, b: Hand) -> bool:
    (a_low, a_high), (b_low, b_high) = _box(a), _box(b)
    size = max(float((a_high - a_low).max()), float((b_high - b_low).max()), 1.0)
    return float(np.linalg.norm((a_low + a_high) / 2 - (b_low + b_high) / 2)) < SAME_HAND * size


def _to_array(landmark_list) -> np.ndarray:
    return np.array([[p.x, p.y, p.z] for p in landmark_list.landmark], dtype=np.float32)
