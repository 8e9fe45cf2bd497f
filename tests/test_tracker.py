"""HandTracker on real hand photos: detection in small photos, landmark mapping, video tracking."""
from __future__ import annotations

import numpy as np
import pytest

from sketch.photo_detection import PHOTO_VIEWS, detect_in_photo, photo_tracker
from sketch.tracker import Hand, HandTracker
from sketch.views import PhotoView, map_back
from tests.conftest import shared_path
from tools.evaluate_gestures import read_rgb

INDEX_TIP, WRIST, MIDDLE_TIP = 8, 0, 12


def _photo(count: int, position: int = 0) -> np.ndarray:
    folder = shared_path("data", "hand-counts", str(count))
    return read_rgb(sorted(folder.iterdir())[position])


@pytest.fixture(scope="module")
def static_tracker():
    with photo_tracker() as tracker:
        yield tracker


# --- the views' geometry, without MediaPipe ---------------------------------------------

@pytest.mark.parametrize("view", PHOTO_VIEWS + (PhotoView(side=300, border=0.1, mirror=True, turn=-70.0),))
def test_view_affine_maps_photo_pixels_to_where_they_are_drawn(view):
    image = np.full((80, 120, 3), 200, dtype=np.uint8)
    spots = [(20, 15), (100, 60), (60, 40)]  # (x, y) pixel indices
    rendered_spots = []
    for x, y in spots:
        marked = image.copy()
        marked[y - 1:y + 2, x - 1:x + 2] = (255, 0, 0)
        rendered, affine = view.render(marked)
        red = (rendered[..., 0].astype(int) - rendered[..., 1]) > 60
        ys, xs = np.nonzero(red)
        # continuous coordinates of the drawn spot's centre
        rendered_spots.append((xs.mean() + 0.5, ys.mean() + 0.5))
        expected = affine @ np.array([x + 0.5, y + 0.5, 1.0])
        assert np.allclose(expected[:2], rendered_spots[-1], atol=1.5), (view, x, y)


def test_map_back_inverts_the_view():
    rng = np.random.default_rng(0)
    photo_points = rng.uniform([0, 0], [120, 80], size=(21, 2))
    for view in PHOTO_VIEWS:
        rendered, affine = view.render(np.zeros((80, 120, 3), dtype=np.uint8))
        height, width = rendered.shape[:2]
        in_view = np.c_[photo_points, np.ones(21)] @ affine.T
        landmarks = np.c_[in_view[:, 0] / width, in_view[:, 1] / height, np.zeros(21)].astype(np.float32)
        hand = Hand(landmarks=landmarks, handedness="Left", score=0.9, image_size=(width, height),
                    world_landmarks=np.zeros((21, 3), dtype=np.float32))
        back = map_back(hand, affine, view.mirror, 120, 80)
        assert back.image_size == (120, 80)
        assert np.allclose(back.landmarks_px(), photo_points, atol=1e-3)
        assert back.handedness == ("Right" if view.mirror else "Left")


# --- real photos ------------------------------------------------------------------------

@pytest.mark.parametrize("count", range(6))
def test_finds_the_hand_in_a_small_photo(static_tracker, count):
    photo = _photo(count)
    assert photo.shape == (100, 100, 3)
    hand = detect_in_photo(photo, static_tracker)
    assert hand is not None
    assert hand.handedness in ("Left", "Right") and 0.3 <= hand.score <= 1.0
    assert hand.landmarks.shape == (21, 3) and hand.world_landmarks.shape == (21, 3)
    # The photos are tight crops: landmarks lie in the photo, give or take a margin.
    assert hand.landmarks[:, :2].min() > -0.15 and hand.landmarks[:, :2].max() < 1.15
    # Hands point up in these photos: the wrist is below the fingertips.
    assert hand.landmarks[WRIST, 1] > hand.landmarks[[4, 8, 12, 16, 20], 1].min() + 0.2
    px = hand.landmarks_px()
    assert np.allclose(px, hand.landmarks[:, :2] * 100)
    assert hand.pixel(INDEX_TIP, 640, 480) == (round(float(hand.landmarks[8, 0]) * 640),
                                               round(float(hand.landmarks[8, 1]) * 480))


def test_landmarks_follow_the_photo_when_it_is_turned(static_tracker):
    photo = _photo(5, 3)
    upright = detect_in_photo(photo, static_tracker)
    turned = detect_in_photo(np.ascontiguousarray(np.rot90(photo)), static_tracker)  # 90 degrees anticlockwise
    assert upright is not None and turned is not None
    # a point (x, y) of the photo lands at (y, 1 - x) in the turned one
    expected = np.c_[upright.landmarks[:, 1], 1.0 - upright.landmarks[:, 0]]
    assert np.abs(turned.landmarks[:, :2] - expected).max() < 0.08


def test_a_photo_without_a_hand_gives_none(static_tracker):
    from skimage import data

    for image in (np.full((100, 100, 3), 180, dtype=np.uint8), data.coffee()):
        assert detect_in_photo(image, static_tracker) is None


def test_module_helper_makes_its_own_static_tracker():
    hand = detect_in_photo(_photo(2))
    assert hand is not None and hand.image_size == (100, 100)


def test_video_tracking_follows_a_moving_hand():
    """A hand photo moved along a path in 640x480 frames, as a webcam would see it."""
    import cv2

    hand_photo = cv2.resize(_photo(1, 5), (200, 200), interpolation=cv2.INTER_CUBIC)
    offsets = [(100 + 12 * i, 120 + 6 * i) for i in range(12)]  # where the photo's corner goes
    tips = []
    with HandTracker() as tracker:
        for left, top in offsets:
            # the frame repeats the photo's edges: background around it and the arm below
            frame = cv2.copyMakeBorder(hand_photo, top, 480 - 200 - top, left, 640 - 200 - left,
                                       cv2.BORDER_REPLICATE)
            hand = tracker.process(frame)
            tips.append(None if hand is None else np.array(hand.pixel(INDEX_TIP)))
    found = [i for i, tip in enumerate(tips) if tip is not None]
    assert len(found) >= 10
    # the fingertip moves with the photo: its place within the photo stays put
    in_photo = np.array([tips[i] - np.array(offsets[i]) for i in found])
    assert np.abs(in_photo - np.median(in_photo, axis=0)).max() < 12


def test_closed_tracker_and_bad_input():
    tracker = HandTracker()
    with pytest.raises(RuntimeError, match="static_image_mode"):
        detect_in_photo(np.zeros((50, 50, 3), dtype=np.uint8), tracker)
    with pytest.raises(ValueError, match=r"\(H, W, 3\)"):
        tracker.process(np.zeros((50, 50), dtype=np.uint8))
    with tracker:
        pass
    with pytest.raises(RuntimeError, match="closed"):
        tracker.process(np.zeros((50, 50, 3), dtype=np.uint8))
