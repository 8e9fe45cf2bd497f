"""Finger counting and the air canvas's gestures, as pure functions on hand landmarks.

Whether a finger is extended is read from geometry that stays the same when the hand
turns in 3D, is mirrored (left or right hand, selfie view), shows its back or comes
closer: angles between the palm and the finger's segments, distances relative to the
hand's own size, and the thumb's direction in a frame built from the palm itself.
A tiny logistic regression per finger (gesture_model.json, made by
`python -m tools.train_gestures`) weighs those few numbers; inference is numpy only.

The reader declines ("unsure") rather than guess: when the landmarks could not be a hand
(sketch/plausibility.py) or a finger's score sits near the boundary between bent and extended
(`read_fingers`, `Gesture.UNSURE`).

Evaluation on labelled photos lives in tools/evaluate_gestures.py.
"""
from __future__ import annotations

import functools
import json
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from sketch.plausibility import doubt_about
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError
from sketch_search.common.files import write_text_atomically

if TYPE_CHECKING:  # only for type hints: this module never loads MediaPipe itself
    from sketch.tracker import Hand

logger = logging.getLogger(__name__)

FINGERS = ("thumb", "index", "middle", "ring", "pinky")
WRIST = 0
# MediaPipe's landmark numbers: base (CMC or MCP), next joint, next joint, tip.
FINGER_JOINTS = {
    "thumb": (1, 2, 3, 4),
    "index": (5, 6, 7, 8),
    "middle": (9, 10, 11, 12),
    "ring": (13, 14, 15, 16),
    "pinky": (17, 18, 19, 20),
}
LONG_FINGER_FEATURES = ("bend", "pip_angle", "reach")
THUMB_FEATURES = ("direction_across", "tip_across", "tip_to_pinky_base", "tip_to_nearest_finger")
FEATURE_NAMES = {name: THUMB_FEATURES if name == "thumb" else LONG_FINGER_FEATURES for name in FINGERS}

MODEL_PATH = Path(__file__).with_name("gesture_model.json")
MODEL_FORMAT = "sketch-search finger model"
_EPS = 1e-9
# A finger whose score (log-odds of "extended") is nearer than this to 0 is neither clearly bent
# nor clearly extended: the read is declined. On hand-counting's photos (the model of hand-counts
# alone, upright and turned) it declines 0.8 % more reads than no margin, 38 % of them wrong ones
# (of all reads 4.9 % are wrong); a wider margin declines mostly right reads (BENCHMARKS.md,
# "Declining what it cannot see").
SCORE_MARGIN = 0.5
# The margin per finger, thumb to pinky. The little finger's scores spread wider: a pinky half
# curled beside an extended ring finger is the commonest confident wrong read left (a 3 read as 4).
# A margin of 2 on the pinky alone declined 9 wrong and 2 right reads of hand-counting's set1 and
# 1 wrong, 0 right of set2 (the model never trained on either; BENCHMARKS.md, "second round").
FINGER_MARGINS = (SCORE_MARGIN, SCORE_MARGIN, SCORE_MARGIN, SCORE_MARGIN, 2.0)


def finger_margins(margin: float | None = None) -> np.ndarray:
    """(5,) margins thumb to pinky: FINGER_MARGINS for None, else `margin` for every finger."""
    if margin is None:
        return np.asarray(FINGER_MARGINS, dtype=np.float64)
    return np.full(5, float(margin))


def unclear_fingers(scores: np.ndarray, margin: float | None = None) -> np.ndarray:
    """(..., 5) whether each finger's score (thumb to pinky) is within its margin of the boundary
    (finger_margins(margin)): a read with any such finger is declined."""
    return np.abs(scores) < finger_margins(margin)


# --- geometry -------------------------------------------------------------------------

def as_points(landmarks: np.ndarray) -> np.ndarray:
    """Landmarks as float64 (..., 21, 3); 2D landmarks get z = 0."""
    points = np.asarray(landmarks, dtype=np.float64)
    if points.ndim < 2 or points.shape[-2] != 21 or points.shape[-1] not in (2, 3):
        raise ValueError(f"expected hand landmarks of shape (21, 3) or (21, 2), got {points.shape}")
    if points.shape[-1] == 2:
        points = np.concatenate([points, np.zeros(points.shape[:-1] + (1,))], axis=-1)
    if not np.isfinite(points).all():
        raise ValueError("hand landmarks contain NaN or infinite values")
    return points


def _norm(v: np.ndarray) -> np.ndarray:
    return np.linalg.norm(v, axis=-1)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / (_norm(v)[..., None] + _EPS)


def _angle(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Angle between vectors in degrees (0: same direction)."""
    cos = np.sum(_unit(a) * _unit(b), axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def finger_features(landmarks: np.ndarray) -> dict[str, np.ndarray]:
    """Per finger, the invariant numbers the model reads: {finger: (..., n_features)}.

    Pass points with the same unit on every axis (Hand.points_3d(), or MediaPipe's world
    landmarks); normalised image landmarks of a non-square frame skew the angles.

    Long fingers (index to pinky):
      bend: angle between the palm's direction (wrist -> knuckle) and the finger's last
            part (middle joint -> tip); about 0 straight, 90+ curled.
      pip_angle: the angle at the middle joint (knuckle -> joint vs joint -> tip).
      reach: tip-to-wrist over middle-joint-to-wrist distance; above 1 when extended.
    Thumb, in a palm frame whose "across" axis runs from the pinky's knuckle to the
    index's (so the same for either hand, facing either way):
      direction_across: how much the thumb (its MCP -> tip) points away from the palm, across.
      tip_across: how far the tip lies beyond the index knuckle, over the palm's width.
      tip_to_pinky_base: tip to the pinky's knuckle over the palm's length.
      tip_to_nearest_finger: tip to the nearest joint or tip of another finger over the
            palm's length (small when the thumb touches or holds a finger).
    """
    p = as_points(landmarks)
    wrist = p[..., WRIST, :]
    features: dict[str, np.ndarray] = {}
    for name in FINGERS[1:]:
        base, middle_joint, _, tip = (p[..., i, :] for i in FINGER_JOINTS[name])
        features[name] = np.stack([
            _angle(base - wrist, tip - middle_joint),
            _angle(middle_joint - base, tip - middle_joint),
            _norm(tip - wrist) / (_norm(middle_joint - wrist) + _EPS),
        ], axis=-1)

    features["thumb"] = _thumb_features(p)
    return {name: features[name] for name in FINGERS}


def _thumb_features(p: np.ndarray) -> np.ndarray:
    """(..., 4) the thumb's features (see finger_features) from (..., 21, 3) points."""
    wrist = p[..., WRIST, :]
    index_base, middle_base, pinky_base = p[..., 5, :], p[..., 9, :], p[..., 17, :]
    across = index_base - pinky_base
    palm_width = _norm(across) + _EPS
    across = across / palm_width[..., None]
    palm_length = _norm(middle_base - wrist) + _EPS
    thumb_mcp, thumb_tip = p[..., 2, :], p[..., 4, :]
    other_joints = p[..., [6, 7, 8, 10, 11, 12, 14, 15, 16, 18, 19, 20], :]
    nearest = _norm(other_joints - thumb_tip[..., None, :]).min(axis=-1)
    return np.stack([
        np.sum(_unit(thumb_tip - thumb_mcp) * across, axis=-1),
        np.sum((thumb_tip - index_base) * across, axis=-1) / palm_width,
        _norm(thumb_tip - pinky_base) / palm_length,
        nearest / palm_length,
    ], axis=-1)


# --- the model ------------------------------------------------------------------------

@dataclass(frozen=True)
class FingerClassifier:
    """Logistic regression on one finger's standardised features: score > 0 means extended."""

    features: tuple[str, ...]
    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    bias: float

    def score(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.scale) @ self.weights + self.bias

    def to_json(self) -> dict:
        return {"features": list(self.features), "mean": self.mean.tolist(), "scale": self.scale.tolist(),
                "weights": self.weights.tolist(), "bias": float(self.bias)}


@dataclass(frozen=True)
class FingerModel:
    """One classifier per finger, plus how it was made (training data, cross-validation)."""

    classifiers: dict[str, FingerClassifier]
    info: dict = field(default_factory=dict)

    def scores(self, landmarks: np.ndarray) -> np.ndarray:
        """(..., 5) scores, thumb to pinky; > 0 means extended."""
        features = finger_features(landmarks)
        return np.stack([self.classifiers[name].score(features[name]) for name in FINGERS], axis=-1)

    def save(self, path: Path) -> None:
        data = {"format": MODEL_FORMAT, "version": 1,
                "fingers": {name: self.classifiers[name].to_json() for name in FINGERS},
                "info": self.info}
        write_text_atomically(Path(path), json.dumps(data, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> FingerModel:
        path = Path(path)
        if not path.is_file():
            raise MissingCheckpointError(
                f"finger model {path} is missing: restore it from the repository or run "
                "`python -m tools.train_gestures DIR`")
        try:
            data = json.loads(path.read_text())
            if data.get("format") != MODEL_FORMAT:
                raise ValueError("not a finger model")
            classifiers = {}
            for name in FINGERS:
                entry = data["fingers"][name]
                if tuple(entry["features"]) != FEATURE_NAMES[name]:
                    raise ValueError(f"{name} uses other features")
                classifiers[name] = FingerClassifier(
                    features=tuple(entry["features"]),
                    mean=np.asarray(entry["mean"], dtype=np.float64),
                    scale=np.asarray(entry["scale"], dtype=np.float64),
                    weights=np.asarray(entry["weights"], dtype=np.float64),
                    bias=float(entry["bias"]),
                )
                if not (classifiers[name].mean.shape == classifiers[name].scale.shape
                        == classifiers[name].weights.shape == (len(FEATURE_NAMES[name]),)):
                    raise ValueError(f"{name} has parameters of the wrong size")
        except (ValueError, KeyError, TypeError) as exc:
            raise CheckpointFormatError(
                f"{path} is not a finger model of this version ({exc}): "
                "retrain it with `python -m tools.train_gestures DIR`") from exc
        return cls(classifiers=classifiers, info=data.get("info", {}))


@functools.lru_cache(maxsize=4)
def load_finger_model(path: Path = MODEL_PATH) -> FingerModel:
    """The finger model, read once per path."""
    return FingerModel.load(path)


# --- counting -------------------------------------------------------------------------

@dataclass(frozen=True)
class ExtendedFingers:
    """Which fingers are extended. Iterates thumb to pinky; len() is not the count: use .count."""

    thumb: bool
    index: bool
    middle: bool
    ring: bool
    pinky: bool

    def __iter__(self) -> Iterator[bool]:
        return iter((self.thumb, self.index, self.middle, self.ring, self.pinky))

    @property
    def count(self) -> int:
        return sum(self)


def extended_fingers(landmarks: np.ndarray, handedness: str | None = None,
                     model: FingerModel | None = None) -> ExtendedFingers:
    """Which fingers of one hand (21 landmarks) are extended.

    `handedness` is accepted for callers that have it but not needed: the geometry is
    the same for a left hand, a right hand and a mirrored image.
    """
    points = as_points(landmarks)
    if points.ndim != 2:
        raise ValueError(f"expected one hand's (21, 3) landmarks, got {points.shape}")
    scores = (model or load_finger_model()).scores(points)
    return ExtendedFingers(*(bool(s > 0) for s in scores))


@dataclass(frozen=True)
class Reading:
    """One hand's read: which fingers are extended, or None with the reason it was declined."""

    fingers: ExtendedFingers | None
    doubt: str | None = None

    @property
    def count(self) -> int | None:
        """Extended fingers, or None when declined."""
        return None if self.fingers is None else self.fingers.count

    @property
    def declined(self) -> bool:
        return self.fingers is None


def read_fingers(landmarks: np.ndarray, handedness_score: float | None = None,
                 model: FingerModel | None = None, margin: float | None = None) -> Reading:
    """Which fingers are extended, or a declined Reading when the landmarks are implausible or a
    finger's score is within its margin of the boundary (None: FINGER_MARGINS; a number: that
    margin for every finger, 0 turns the margin off)."""
    points = as_points(landmarks)
    if points.ndim != 2:
        raise ValueError(f"expected one hand's (21, 3) landmarks, got {points.shape}")
    return _read(points, doubt_about(points, handedness_score), model, margin)


def _read(points: np.ndarray, doubt: str | None, model: FingerModel | None, margin: float | None) -> Reading:
    """read_fingers on one hand's (21, 3) points whose plausibility was judged (`doubt`)."""
    if doubt is not None:
        return Reading(None, doubt)
    scores = (model or load_finger_model()).scores(points)
    unclear = np.flatnonzero(unclear_fingers(scores, margin))
    if unclear.size:
        return Reading(None, f"the {FINGERS[unclear[0]]} finger is neither clearly bent nor extended")
    return Reading(ExtendedFingers(*(bool(v > 0) for v in scores)))


def read_hand(hand: Hand, model: FingerModel | None = None, margin: float | None = None) -> Reading:
    """read_fingers for a tracked hand (its pixel landmarks and handedness score); the hand's
    plausibility is judged once however often it is read (Hand.doubt)."""
    return _read(as_points(hand.points_3d()), hand.doubt, model, margin)


def read_looks(hands: Sequence[Hand | None], model: FingerModel | None = None,
               margin: float | None = None) -> Reading:
    """One read from several looks at the same hand (photo detection's views; the first found the
    hand, None where another found none): the count more than half of all the looks read, with the
    fingers of the first look that read it; declined when no count has that majority."""
    if not hands or hands[0] is None:
        raise ValueError("read_looks needs the first look's hand")
    readings = [None if hand is None else read_hand(hand, model, margin) for hand in hands]
    counts = [r.count for r in readings if r is not None and not r.declined]
    for count in dict.fromkeys(counts):
        if 2 * counts.count(count) > len(hands):
            return next(r for r in readings if r is not None and r.count == count)
    if len(hands) == 1:
        return readings[0]
    seen = ", ".join("-" if r is None else "?" if r.declined else str(r.count) for r in readings)
    return Reading(None, f"no count read by most looks ({seen})")


def count_extended_fingers(landmarks: np.ndarray, handedness: str | None = None,
                           model: FingerModel | None = None) -> int:
    """How many fingers (0-5) of one hand are extended."""
    return extended_fingers(landmarks, handedness, model).count


# --- gestures -------------------------------------------------------------------------

class Gesture(Enum):
    PEN_UP = "pen_up"        # fist, or no hand: move without drawing
    SAVE = "save"            # index finger only: search with the sketch
    PEN_BLACK = "pen_black"  # two fingers
    PEN_GREEN = "pen_green"  # three
    PEN_RED = "pen_red"      # four
    ERASER = "eraser"        # open hand
    UNSURE = "unsure"        # the hand is seen but not read (declined): changes nothing

    @property
    def draws(self) -> bool:
        """Whether the index fingertip leaves a mark (a pen or the eraser)."""
        return self in (Gesture.PEN_BLACK, Gesture.PEN_GREEN, Gesture.PEN_RED, Gesture.ERASER)


_GESTURE_BY_COUNT = {0: Gesture.PEN_UP, 1: Gesture.SAVE, 2: Gesture.PEN_BLACK,
                     3: Gesture.PEN_GREEN, 4: Gesture.PEN_RED, 5: Gesture.ERASER}


def gesture_for_count(count: int | None) -> Gesture:
    """The gesture for a number of extended fingers; None (no hand) is PEN_UP."""
    if count is None:
        return Gesture.PEN_UP
    if count not in _GESTURE_BY_COUNT:
        raise ValueError(f"a hand has 0 to 5 extended fingers, got {count}")
    return _GESTURE_BY_COUNT[count]


def gesture_for_fingers(fingers: ExtendedFingers | None) -> Gesture:
    """Like gesture_for_count, but one finger saves only when it is the index finger:
    a thumbs-up or a lone little finger is not a request to search."""
    if fingers is None:
        return Gesture.PEN_UP
    if fingers.count == 1 and not fingers.index:
        return Gesture.PEN_UP
    return gesture_for_count(fingers.count)


def gesture_for_hand(hand: Hand | None, model: FingerModel | None = None) -> Gesture:
    """The gesture a tracked hand shows (PEN_UP when there is no hand, UNSURE when its read is
    declined)."""
    if hand is None:
        return Gesture.PEN_UP
    reading = read_hand(hand, model)
    if reading.declined:
        return Gesture.UNSURE
    return gesture_for_fingers(reading.fingers)


class GestureStabilizer:
    """Holds the current gesture until a new one has been seen `frames` times in a row.

    A finger half-way through bending can read as extended for a frame; without this the
    pen colour would flicker. No hand (None) counts as PEN_UP. An UNSURE frame is skipped: it
    changes nothing and is not counted (a hand read only now and then, between declined frames,
    still changes the gesture after `frames` reads of it in a row).
    """

    def __init__(self, frames: int = 3, initial: Gesture = Gesture.PEN_UP) -> None:
        if frames < 1:
            raise ValueError(f"frames must be at least 1, got {frames}")
        self.frames = frames
        self._current = initial
        self._candidate = initial
        self._seen = 0

    @property
    def current(self) -> Gesture:
        return self._current

    def update(self, gesture: Gesture | None) -> Gesture:
        """Feed one frame's gesture; returns the stable gesture after it."""
        gesture = Gesture.PEN_UP if gesture is None else gesture
        if gesture is Gesture.UNSURE:
            return self._current
        if gesture == self._current:
            self._candidate, self._seen = gesture, 0
            return self._current
        if gesture == self._candidate:
            self._seen += 1
        else:
            self._candidate, self._seen = gesture, 1
        if self._seen >= self.frames:
            self._current, self._seen = gesture, 0
        return self._current

    def reset(self, gesture: Gesture = Gesture.PEN_UP) -> None:
        self._current = self._candidate = gesture
        self._seen = 0
