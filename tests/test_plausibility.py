"""Declining what it cannot see: implausible landmarks are not read, and a declined hand changes
nothing in the pen, the save or clear holds, or the pointer (thread-free, on made-up skeletons)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from sketch.air_pen import HOLD_SECONDS, Action, AirPen
from sketch.canvas import Canvas
from sketch.gestures import Gesture, gesture_for_hand, read_fingers
from sketch.plausibility import LONG_FINGERS, MIN_HANDEDNESS_SCORE, doubt_about, signed_bends
from sketch.pointer import Control, HoldToPress
from sketch.tracker import Hand
from tests.test_gestures import _transformed, synthetic_hand

VIEW = (640, 480)
FPS = 30
V_SIGN = (0, 1, 1, 0, 0)


def longer_finger(points: np.ndarray, finger: str, factor: float) -> np.ndarray:
    """The finger's bones made `factor` times as long (the rest of the hand as it was)."""
    out = points.copy()
    joints = LONG_FINGERS[finger]
    for a, b in zip(joints, joints[1:]):
        out[b] = out[a] + (points[b] - points[a]) * factor + (out[a] - points[a])
    return out


def bent_backwards(points: np.ndarray, finger: str, degrees: float) -> np.ndarray:
    """The finger bent at its middle joint by `degrees` towards the back of the hand (the
    synthetic hand's palm faces +z; fingers curl towards it by turning about x)."""
    out = points.copy()
    joints = LONG_FINGERS[finger]
    pivot = points[joints[1]]
    a = np.radians(-degrees)
    turn = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    for j in joints[2:]:
        out[j] = pivot + turn @ (points[j] - pivot)
    return out


def as_hand(points: np.ndarray, at=(320.0, 330.0), size=110.0, score=0.97) -> Hand:
    """A Hand in a VIEW-sized frame from palm-unit points (y flipped: the fingers point up)."""
    px = np.c_[points[:, 0] * size + at[0], -points[:, 1] * size + at[1], points[:, 2] * size]
    landmarks = (px / np.array([VIEW[0], VIEW[1], VIEW[0]])).astype(np.float32)
    return Hand(landmarks=landmarks, handedness="Right", score=score, image_size=VIEW)


# --- the check itself ---------------------------------------------------------------------

@pytest.mark.parametrize("extended", list(itertools.product([0, 1], repeat=5)))
def test_every_real_pose_is_plausible_turned_and_mirrored(extended):
    rng = np.random.default_rng(sum(b << i for i, b in enumerate(extended)))
    points = synthetic_hand(extended)
    for mirror in (False, True):
        assert doubt_about(_transformed(points, rng, mirror), 0.95) is None


@pytest.mark.parametrize("finger", list(LONG_FINGERS))
def test_a_finger_three_times_its_length_is_declined(finger):
    rng = np.random.default_rng(3)
    for extended in (V_SIGN, (1, 1, 1, 1, 1), (0, 0, 0, 0, 0)):
        points = longer_finger(synthetic_hand(extended), finger, 3.0)
        for mirror in (False, True):
            doubt = doubt_about(_transformed(points, rng, mirror), 0.95)
            assert doubt is not None and finger in doubt, doubt
        assert read_fingers(points).declined


@pytest.mark.parametrize("finger", list(LONG_FINGERS))
def test_a_joint_bent_backwards_is_declined(finger):
    rng = np.random.default_rng(4)
    for extended in (V_SIGN, (0, 1, 1, 1, 1), (1, 1, 1, 1, 1)):
        if not extended[1 + list(LONG_FINGERS).index(finger)]:
            continue  # a curled finger bent "backwards" is only less curled
        points = bent_backwards(synthetic_hand(extended), finger, 100.0)
        for mirror in (False, True):
            doubt = doubt_about(_transformed(points, rng, mirror), 0.95)
            assert doubt is not None and "backwards" in doubt and finger in doubt, (extended, doubt)
    # a little over-extension, as real fingers do, is still a hand
    assert doubt_about(bent_backwards(synthetic_hand((1, 1, 1, 1, 1)), finger, 20.0)) is None


def test_bends_have_one_sign_for_a_curling_hand_either_side():
    fist = synthetic_hand((0, 0, 0, 0, 0))
    rng = np.random.default_rng(5)
    for mirror in (False, True):
        bends = signed_bends(_transformed(fist, rng, mirror))
        assert (np.sign(bends[:, 1:]) == np.sign(bends[0, 1])).all() and np.abs(bends[:, 1:]).min() > 50


def test_a_low_handedness_score_is_declined_and_a_clear_one_is_not():
    points = synthetic_hand(V_SIGN)
    assert "handedness" in doubt_about(points, MIN_HANDEDNESS_SCORE - 0.05)
    assert doubt_about(points, MIN_HANDEDNESS_SCORE + 0.05) is None
    assert doubt_about(np.full((21, 3), np.nan)) is not None


def test_a_finger_near_the_boundary_is_declined():
    points = synthetic_hand(V_SIGN)
    sure = read_fingers(points)
    assert not sure.declined and sure.count == 2 and sure.doubt is None
    # the same hand with a margin larger than any finger's score: no finger is clear enough
    unsure = read_fingers(points, margin=1e6)
    assert unsure.declined and unsure.count is None and "neither clearly bent nor extended" in unsure.doubt
    assert read_fingers(points, margin=0.0).count == 2


def test_the_gesture_of_a_declined_hand_is_unsure():
    assert gesture_for_hand(as_hand(synthetic_hand(V_SIGN))) is Gesture.PEN_BLACK
    assert gesture_for_hand(as_hand(bent_backwards(synthetic_hand(V_SIGN), "middle", 100))) is Gesture.UNSURE
    assert gesture_for_hand(as_hand(synthetic_hand(V_SIGN), score=0.5)) is Gesture.UNSURE


# --- a declined hand changes nothing ------------------------------------------------------

def feed(pen: AirPen, hands_per_frame, start: int = 0):
    """Frames of hands at FPS from frame `start`; what fired in each."""
    return [pen.update(hands, (start + i) / FPS) for i, hands in enumerate(hands_per_frame)]


def _drawn(canvas: Canvas) -> list[tuple[tuple[int, int, int], bool, int]]:
    return [(stroke.color, stroke.erase, len(stroke.points)) for stroke in canvas.strokes]


def test_a_held_v_sign_that_turns_implausible_keeps_the_pen_and_draws_nothing():
    pen = AirPen(Canvas(*VIEW))
    v_sign = as_hand(synthetic_hand(V_SIGN))
    feed(pen, [[v_sign]] * 10)
    assert pen.gesture is Gesture.PEN_BLACK and pen.tool.name == "black pen"
    drawn = _drawn(pen.canvas)
    # now the fit goes wrong frame after frame, the hand moving on: a finger too long, then bent back
    moved = [as_hand(longer_finger(synthetic_hand(V_SIGN), "middle", 3.0), at=(320 + 4 * i, 330))
             for i in range(30)]
    moved += [as_hand(bent_backwards(synthetic_hand(V_SIGN), "index", 100), at=(440 - 4 * i, 330))
              for i in range(30)]
    fired = feed(pen, [[hand] for hand in moved], start=10)
    assert fired == [None] * 60
    assert pen.gesture is Gesture.PEN_BLACK and pen.tool.name == "black pen"
    assert _drawn(pen.canvas) == drawn          # no new stroke, no erase, no point added
    assert len(pen.unsure_points) == 1          # where the window shows its "?"
    feed(pen, [[v_sign]] * 3, start=70)
    assert pen.unsure_points == [] and len(pen.canvas.strokes[-1].points) > drawn[-1][2]


def test_an_implausible_open_hand_never_erases_and_an_implausible_index_never_saves():
    pen = AirPen(Canvas(*VIEW))
    feed(pen, [[as_hand(synthetic_hand(V_SIGN))]] * 10)   # drawing black
    five = as_hand(longer_finger(synthetic_hand((1, 1, 1, 1, 1)), "ring", 3.0))
    feed(pen, [[five]] * 40, start=10)
    assert all(not stroke.erase for stroke in pen.canvas.strokes) and pen.tool.name == "black pen"
    feed(pen, [[as_hand(synthetic_hand((1, 1, 1, 1, 1)))]] * 10, start=50)   # a plausible open hand erases
    assert pen.canvas.strokes[-1].erase
    pen = AirPen(Canvas(*VIEW))
    one = as_hand(bent_backwards(synthetic_hand((0, 1, 0, 0, 0)), "index", 100))
    assert feed(pen, [[one]] * int(3 * HOLD_SECONDS * FPS)) == [None] * int(3 * HOLD_SECONDS * FPS)
    assert pen.hold_progress is None


def test_an_unsure_frame_lets_go_of_a_save_hold_and_a_sure_hold_saves():
    index = as_hand(synthetic_hand((0, 1, 0, 0, 0)))
    unsure = as_hand(synthetic_hand((0, 1, 0, 0, 0)), score=0.5)
    half = int(HOLD_SECONDS * FPS * 0.7)
    pen = AirPen(Canvas(*VIEW))
    fired = feed(pen, [[index]] * half + [[unsure]] + [[index]] * half)
    assert Action.SAVE not in fired    # neither part alone is held long enough
    pen = AirPen(Canvas(*VIEW))
    assert Action.SAVE in feed(pen, [[index]] * (2 * half + 1))


def test_both_hands_open_do_not_clear_while_one_is_unsure():
    left = as_hand(synthetic_hand((1, 1, 1, 1, 1)), at=(160, 330))
    right = as_hand(synthetic_hand((1, 1, 1, 1, 1)), at=(480, 330))
    right_unsure = as_hand(synthetic_hand((1, 1, 1, 1, 1)), at=(480, 330), score=0.5)
    frames = int(3 * HOLD_SECONDS * FPS)
    pen = AirPen(Canvas(*VIEW))
    assert Action.CLEAR not in feed(pen, [[left, right_unsure]] * frames)
    pen = AirPen(Canvas(*VIEW))
    assert Action.CLEAR in feed(pen, [[left, right]] * frames)


def test_an_unsure_fist_gives_no_pointer_and_presses_no_control():
    fist = synthetic_hand((0, 0, 0, 0, 0))
    control = Control("show-on-phone", (200, 150, 240, 200), "Show")
    frames = int(3 * FPS)

    def presses(hand: Hand) -> list:
        pen, hold = AirPen(Canvas(*VIEW)), HoldToPress()
        pressed = []
        for i in range(frames):
            pen.update([hand], i / FPS)
            pressed.append(hold.update(pen.pointer, i / FPS, [control]))
            assert hold.progress is None or pen.pointer is not None
        return [p for p in pressed if p is not None]

    assert [p.name for p in presses(as_hand(fist))] == ["show-on-phone"]   # a sure fist presses
    assert presses(as_hand(fist, score=0.5)) == []
    assert presses(as_hand(longer_finger(fist, "index", 3.0))) == []


def test_the_window_draws_a_quiet_question_mark_on_an_unsure_hand_only():
    from sketch_search.app.window_picture import draw_pen

    pen = AirPen(Canvas(*VIEW))
    unsure = as_hand(synthetic_hand((0, 0, 0, 0, 0)), score=0.5)
    pen.update([unsure], 0.0)
    view = np.full((VIEW[1], VIEW[0], 3), 40, np.uint8)
    draw_pen(view, pen)
    x, y = (int(v) for v in pen.unsure_points[0])
    changed = np.argwhere((view != 40).any(axis=-1))
    assert len(changed) and np.abs(changed.mean(axis=0) - (y, x)).max() < 15   # on the hand
    assert len(changed) < 1500                                                # small and quiet
    pen.update([as_hand(synthetic_hand((0, 0, 0, 0, 0)))], 1 / FPS)
    plain = np.full_like(view, 40)
    draw_pen(plain, pen)
    assert (plain == 40).all()   # a fist read surely: no mark at all


def _with_score(model, finger: str, points: np.ndarray, score: float):
    """The model with one finger's bias moved so that its score on `points` is `score`."""
    from dataclasses import replace

    from sketch.gestures import FINGERS, FingerModel

    f = FINGERS.index(finger)
    shift = score - model.scores(points)[f]
    classifier = model.classifiers[finger]
    return FingerModel({**model.classifiers, finger: replace(classifier, bias=classifier.bias + shift)})


def test_the_little_finger_has_a_wider_margin_than_the_others():
    from sketch.gestures import FINGER_MARGINS, SCORE_MARGIN, load_finger_model

    points = synthetic_hand(V_SIGN)
    shipped = load_finger_model()
    between = (SCORE_MARGIN + FINGER_MARGINS[4]) / 2   # outside the others' margin, inside the pinky's
    pinky_unclear = _with_score(shipped, "pinky", points, -between)
    reading = read_fingers(points, model=pinky_unclear)
    assert reading.declined and "pinky" in reading.doubt
    assert read_fingers(points, model=pinky_unclear, margin=SCORE_MARGIN).count == 2
    # the same score on the ring finger is clear enough
    assert read_fingers(points, model=_with_score(shipped, "ring", points, -between)).count == 2


# --- several looks at one photo -----------------------------------------------------------

def test_the_count_most_looks_agree_on_is_read_and_a_split_vote_declined():
    from sketch.gestures import read_looks

    v_sign, fist = as_hand(synthetic_hand(V_SIGN)), as_hand(synthetic_hand((0, 0, 0, 0, 0)))
    open_hand, misfit = as_hand(synthetic_hand((1, 1, 1, 1, 1))), as_hand(bent_backwards(synthetic_hand(V_SIGN),
                                                                                        "middle", 100))
    assert read_looks([v_sign]).count == 2 and read_looks([misfit]).declined
    assert read_looks([v_sign, v_sign, fist]).count == 2
    assert read_looks([fist, v_sign, v_sign]).count == 2
    # an implausible first fit is outvoted by two plausible looks that agree
    assert read_looks([misfit, v_sign, v_sign]).count == 2
    for split in ([v_sign, fist, open_hand], [v_sign, None, None], [v_sign, misfit, fist], [v_sign, fist]):
        reading = read_looks(split)
        assert reading.declined and "no count read by most looks" in reading.doubt, split
    with pytest.raises(ValueError):
        read_looks([None, v_sign, v_sign])


def test_a_frame_judges_each_hand_once_for_the_second_look_and_the_reading(monkeypatch):
    """The second look and the finger reading both ask whether a hand is plausible every frame;
    the landmarks are judged once per hand (Hand.doubt), not once per asker."""
    import sketch.gestures
    import sketch.plausibility
    import sketch.tracker
    from sketch.gestures import read_hand
    from sketch.tracker import SecondLook

    judged = []

    def counting(points, score=None):
        judged.append(score)
        return doubt_about(points, score)

    for module in (sketch.plausibility, sketch.gestures, sketch.tracker):   # wherever it is called from
        monkeypatch.setattr(module, "doubt_about", counting, raising=False)
    hand = as_hand(synthetic_hand((0, 1, 1, 0, 0)))
    frame = np.zeros((VIEW[1], VIEW[0], 3), np.uint8)
    kept = SecondLook()(frame, [hand])
    assert kept == [hand] and read_hand(hand).count == 2 and gesture_for_hand(hand) is Gesture.PEN_BLACK
    assert len(judged) == 1
