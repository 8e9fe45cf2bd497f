"""The second look, through the real MediaPipe: an implausible fit is looked at again on a tight,
upscaled crop (photos: one more view; video: around the previous frame's hand, now and then), and
a video whose landmarks are made implausible while a V sign is held changes no tool, erases
nothing and saves nothing."""
from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np
import pytest

from sketch.air_pen import AirPen
from sketch.canvas import Canvas
from sketch.gestures import Gesture, read_hand, read_looks
from sketch.photo_detection import CHECK_VIEWS, detect_in_photo, first_look, looks_in_photo, photo_tracker
from sketch.plausibility import LONG_FINGERS, doubt_about_hand
from sketch.tracker import SECOND_LOOK_EVERY, Hand, TwoHandTracker
from tests.conftest import shared_path
from tools.evaluate_gestures import read_rgb
from tools.fixtures import hand_video as videos
from tools.fixtures.hand_video import FPS, VIEW


@pytest.fixture(scope="module", autouse=True)
def hand_photos():
    shared_path("data", "hand-counts")


def stretched(hand: Hand, finger: str = "middle", factor: float = 3.0) -> Hand:
    """The hand with one finger's bones `factor` times as long: a fit no hand could be."""
    points = hand.landmarks.astype(np.float64).copy()
    joints = LONG_FINGERS[finger]
    for a, b in zip(joints, joints[1:]):
        points[b] = points[a] + (hand.landmarks[b] - hand.landmarks[a]) * factor
    return replace(hand, landmarks=points.astype(np.float32))


class MisfitFirst:
    """A real tracker whose fits go wrong (a finger stretched) on its first `wrong` calls, as
    MediaPipe's first fit of a blurred hand close to the camera does."""

    def __init__(self, tracker, wrong: int | None = None) -> None:
        self.tracker, self.wrong, self.calls = tracker, wrong, 0
        self.static_image_mode = tracker.static_image_mode

    def process(self, frame: np.ndarray) -> Hand | None:
        self.calls += 1
        hand = self.tracker.process(frame)
        if hand is None or (self.wrong is not None and self.calls > self.wrong):
            return hand
        return stretched(hand)

    def close(self) -> None:
        self.tracker.close()


def test_a_photo_whose_first_fit_is_implausible_gets_a_plausible_second_look():
    photo = read_rgb(sorted(shared_path("data", "hand-counts", "2").iterdir())[0])
    with photo_tracker() as real:
        plain = detect_in_photo(photo, real)
        misfit = MisfitFirst(real, wrong=1)
        assert doubt_about_hand(first_look(misfit, photo)) is not None
        misfit.calls = 0
        hand = detect_in_photo(photo, misfit)
        assert misfit.calls == 2                        # the first view, then one more
        assert doubt_about_hand(hand) is None and read_hand(hand).count == 2
        # the closer look fits the same hand: its landmarks lie where the plain detection put them
        palm = np.linalg.norm(plain.landmarks_px()[9] - plain.landmarks_px()[0])
        assert np.abs(hand.landmarks_px() - plain.landmarks_px()).max() < 0.35 * palm
        misfit.calls = 0
        assert doubt_about_hand(detect_in_photo(photo, misfit, look_twice=False)) is not None


class MisfitCalls(MisfitFirst):
    """A real tracker whose fits go wrong on the given calls (1 is the first)."""

    def __init__(self, tracker, calls: set[int]) -> None:
        super().__init__(tracker)
        self.wrong_calls = calls

    def process(self, frame: np.ndarray) -> Hand | None:
        self.calls += 1
        hand = self.tracker.process(frame)
        return stretched(hand) if hand is not None and self.calls in self.wrong_calls else hand


def test_a_photo_is_read_where_most_looks_agree_and_declined_where_they_do_not():
    photo = read_rgb(sorted(shared_path("data", "hand-counts", "2").iterdir())[0])
    with photo_tracker() as real:
        looks = looks_in_photo(photo, real)
        assert len(looks) == 1 + len(CHECK_VIEWS) and all(look is not None for look in looks)
        # every look is the same hand in the photo's coordinates (the mirror and the turn undone)
        first = looks[0].landmarks_px()
        palm = np.linalg.norm(first[9] - first[0])
        assert all(np.abs(look.landmarks_px() - first).max() < 0.35 * palm for look in looks[1:])
        assert [read_hand(look).count for look in looks] == [2] * len(looks)
        assert read_looks(looks).count == 2
        # one look misfitted (the mirrored one, the second call): the others still agree
        one_off = looks_in_photo(photo, MisfitCalls(real, {2}))
        assert read_hand(one_off[1]).declined and read_looks(one_off).count == 2
        # every look after the first misfitted: only one look reads 2, not most of them
        split = read_looks(looks_in_photo(photo, MisfitCalls(real, {2, 3})))
        assert split.declined and "no count read by most looks" in split.doubt
        assert looks_in_photo(np.full((240, 320, 3), 128, np.uint8), real) == []


def _v_sign_frames(frames: int):
    pen = videos.hand_photo(videos.PEN_PHOTO)
    background = videos.background_colour(pen)
    for i in range(frames):
        yield videos.paste(background, pen, videos.circle_point(i / 120))


def _run(tracker: TwoHandTracker, pen: AirPen, frames, start: int = 0, spoil=None):
    fired = []
    for i, frame in enumerate(frames):
        hands = tracker.process_all(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
        if spoil is not None:
            hands = [spoil(hand) for hand in hands]
        fired.append(pen.update(hands, (start + i) / FPS))
    return fired


def test_video_second_look_reads_a_hand_the_tracker_misfits():
    frames = list(_v_sign_frames(60))
    with TwoHandTracker() as tracker:
        tracker._first = MisfitFirst(tracker._first)   # every tracked fit goes wrong
        pen = AirPen(Canvas(*VIEW))
        assert _run(tracker, pen, frames) == [None] * 60
        look = tracker.second_look
        assert 60 // SECOND_LOOK_EVERY - 1 <= look.looks <= 60 // SECOND_LOOK_EVERY + 1   # now and then only
        assert look.kept >= look.looks * 0.8
        assert pen.gesture is Gesture.PEN_BLACK and pen.canvas.strokes    # read between the declined frames
    with TwoHandTracker(second_look_every=0) as tracker:
        tracker._first = MisfitFirst(tracker._first)
        pen = AirPen(Canvas(*VIEW))
        _run(tracker, pen, frames)
        assert pen.gesture is Gesture.PEN_UP and not pen.canvas.strokes and pen.unsure_points


def test_a_held_v_sign_made_implausible_changes_no_tool_erases_and_saves_nothing():
    with TwoHandTracker() as tracker:
        pen = AirPen(Canvas(*VIEW))
        _run(tracker, pen, _v_sign_frames(20))
        assert pen.gesture is Gesture.PEN_BLACK
        drawn = [(s.color, s.erase, len(s.points)) for s in pen.canvas.strokes]
        # the V sign held on, and then the save hand, with every fit (the second look's too) spoilt
        spoilt = list(_v_sign_frames(60))[20:] + [frame for frame, label in videos.hand_video_frames(draw=False)
                                                 if label == "hold"]
        fired = _run(tracker, pen, spoilt, start=20, spoil=stretched)
        assert fired == [None] * len(spoilt)
        assert pen.gesture is Gesture.PEN_BLACK and pen.hold_progress is None
        assert [(s.color, s.erase, len(s.points)) for s in pen.canvas.strokes] == drawn
