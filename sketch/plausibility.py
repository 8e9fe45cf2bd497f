"""Whether 21 hand landmarks could be a real hand: the finger reader's "unsure" before it counts.

MediaPipe fits a skeleton to every hand it finds, also to a blurred hand close to the camera,
and then the fit can be wrong in ways no hand is: a finger far longer than the palm allows, a
finger joint bent backwards. `doubt_about` names the first such problem (None: plausible); the
reader (sketch/gestures.py) then declines to count instead of guessing.

The limits are wide on purpose, set on the landmarks MediaPipe fits to the 2,762 shared photos
(hand-counts and hand-counting, upright and in training's turned copies): together they decline
1 of 4,180 hand-counts fits and 90 of 9,363 hand-counting ones (BENCHMARKS.md, "Declining what
it cannot see").

Points are (21, 3) with one unit on every axis (Hand.points_3d()); numpy only, no MediaPipe.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # type hints only
    from sketch.tracker import Hand

WRIST = 0
# MediaPipe's landmark numbers of the long fingers: knuckle (MCP), middle joint (PIP), DIP, tip.
LONG_FINGERS = {"index": (5, 6, 7, 8), "middle": (9, 10, 11, 12), "ring": (13, 14, 15, 16),
                "pinky": (17, 18, 19, 20)}
THUMB = (1, 2, 3, 4)
KNUCKLES = (5, 9, 13, 17)

# A finger (knuckle to tip along its bones) at most this many palm sizes long. On the shared
# photos the longest middle finger is about 1.3 palm sizes; a finger fitted three times its
# length is 2.5 or more.
MAX_FINGER_LENGTH = 1.9
MAX_THUMB_LENGTH = 1.9
# One bone at most this many palm sizes long (a real finger's longest bone is about half a palm).
MAX_BONE_LENGTH = 0.95
# A joint bent backwards (against the way the hand's other fingers bend) by more than this many
# degrees. Fingers over-extend a little, and the landmarks' depth is noisy: the limit is wide.
MAX_BACKWARD_DEGREES = 60.0
# Past this a bend either way is the same fold (a curled finger's knuckle near 180 degrees reads
# as +175 or -178): only bends between the two limits count as backwards.
AMBIGUOUS_FOLD_DEGREES = 150.0
# The other joints must bend at least this much in all (degrees) to tell which way is forwards.
MIN_BEND_TO_ORIENT = 60.0
# MediaPipe's handedness score is the confidence of its left/right label, 0.5 to 1: near 0.5 the
# model could not tell the hand's side, which goes with a poor fit.
MIN_HANDEDNESS_SCORE = 0.6


def palm_size(points: np.ndarray) -> float:
    """The palm's size: the longest of wrist-to-knuckle distances and the knuckles' span (a palm
    seen edge-on still shows one of them at full length)."""
    wrist = points[WRIST]
    reaches = [np.linalg.norm(points[k] - wrist) for k in KNUCKLES]
    span = np.linalg.norm(points[5] - points[17])
    return float(max(max(reaches), span * 1.2))


def _length_doubt(points: np.ndarray, palm: float) -> str | None:
    for name, joints in (("thumb", THUMB[1:]),) + tuple(LONG_FINGERS.items()):
        bones = np.linalg.norm(np.diff(points[list(joints)], axis=0), axis=-1) / palm
        limit = MAX_THUMB_LENGTH if name == "thumb" else MAX_FINGER_LENGTH
        if bones.sum() > limit:
            return f"{name} finger {bones.sum():.1f} palm sizes long"
        if bones.max() > MAX_BONE_LENGTH:
            return f"a bone of the {name} finger {bones.max():.1f} palm sizes long"
    return None


def signed_bends(points: np.ndarray) -> np.ndarray:
    """(4, 3) bends in degrees of the long fingers' joints (MCP, PIP, DIP, index to pinky): the
    turn about the palm's across axis (pinky knuckle -> index knuckle) from one bone to the next,
    seen along that axis, so a finger spread sideways does not count. One sign is a finger curling
    into the palm, the other bending backwards (which is which depends on the hand's side)."""
    across = points[5] - points[17]
    across = across / (np.linalg.norm(across) + 1e-9)
    bends = np.zeros((4, 3))
    for f, joints in enumerate(LONG_FINGERS.values()):
        chain = np.array([points[WRIST]] + [points[j] for j in joints])
        bones = np.diff(chain, axis=0)
        bones = bones - np.outer(bones @ across, across)   # seen along the across axis
        for j in range(3):
            before, after = bones[j], bones[j + 1]
            turn = np.dot(np.cross(before, after), across)
            bends[f, j] = np.degrees(np.arctan2(turn, np.dot(before, after)))
    return bends


def _backward_doubt(points: np.ndarray) -> str | None:
    """A joint bent backwards: against the direction the hand's other joints bend in."""
    bends = signed_bends(points).ravel()
    total = bends[np.abs(bends) < AMBIGUOUS_FOLD_DEGREES].sum()
    names = [f"{finger} {joint}" for finger in LONG_FINGERS for joint in ("knuckle", "middle joint", "end joint")]
    for j, bend in enumerate(bends):
        others = total - (bend if abs(bend) < AMBIGUOUS_FOLD_DEGREES else 0.0)
        if abs(others) < MIN_BEND_TO_ORIENT:
            continue  # the rest of the hand is straight: no way to tell forwards here
        if -AMBIGUOUS_FOLD_DEGREES < bend * np.sign(others) < -MAX_BACKWARD_DEGREES:
            return f"{names[j]} bent {abs(bend):.0f} degrees backwards"
    return None


def doubt_about(points: np.ndarray, handedness_score: float | None = None) -> str | None:
    """Why these landmarks cannot be trusted as a hand (a short reason), or None when plausible."""
    points = np.asarray(points, dtype=np.float64)
    if points.shape != (21, 3) or not np.isfinite(points).all():
        return "landmarks missing or not finite"
    if handedness_score is not None and handedness_score < MIN_HANDEDNESS_SCORE:
        return f"hand seen unclearly (handedness score {handedness_score:.2f})"
    palm = palm_size(points)
    if palm <= 1e-6:
        return "the palm has no size"
    return _length_doubt(points, palm) or _backward_doubt(points)


def doubt_about_hand(hand: Hand) -> str | None:
    """doubt_about for a tracked hand: its landmarks in pixels and its handedness score (judged
    once per hand, Hand.doubt)."""
    return hand.doubt
