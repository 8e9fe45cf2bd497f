"""Finger counting: accuracy on the shared real photos (upright and turned), invariance of the
geometry, the gesture mapping, the stabilizer, the model file, the training code and the CLI."""
from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from sketch.gestures import (
    FINGER_JOINTS,
    FINGERS,
    ExtendedFingers,
    FingerModel,
    Gesture,
    GestureStabilizer,
    count_extended_fingers,
    extended_fingers,
    gesture_for_count,
    gesture_for_fingers,
    gesture_for_hand,
    load_finger_model,
)
from sketch.photo_detection import photo_tracker
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError
from tests.conftest import ROOT, shared_path
from tools.evaluate_gestures import (
    EvaluationResult,
    LabelledPhotosError,
    detect_photos,
    labelled_photos,
    report_lines,
    rotation_angles,
    score_hands,
)
from tools.train_gestures import (
    CHECK,
    UPRIGHT,
    Augmentation,
    Detections,
    cross_validate,
    finger_labels,
    fit_logistic,
    fit_model,
    jittered,
    person_groups,
    random_augmentations,
)

# The targets, for upright photos and for copies turned up to 45 degrees.
MIN_ACCURACY = 0.98
MIN_CLASS_ACCURACY = 0.90
MAX_TURN = 45.0


# --- real photos (detected once per test session) ---------------------------------------

@pytest.fixture(scope="module")
def photos():
    return labelled_photos(shared_path("data", "hand-counts"))


@pytest.fixture(scope="module")
def detections(photos):
    """{"upright"|"turned": [Hand | None per photo]}; the turns are the eval command's (seed 0)."""
    paths = [path for path, _ in photos]
    with photo_tracker() as tracker:
        return {
            "upright": detect_photos(paths, tracker=tracker, progress=False),
            "turned": detect_photos(paths, rotation_angles(len(paths), MAX_TURN, seed=0), tracker=tracker,
                                    progress=False),
            # As the held-out check of other people's photos is made (other angles, too).
            "turned cubic": detect_photos(paths, rotation_angles(len(paths), MAX_TURN, seed=7), tracker=tracker,
                                          progress=False, interpolation="cubic"),
        }


@pytest.mark.parametrize("copy", ["upright", "turned", "turned cubic"])
def test_finger_counts_on_real_photos_meet_the_target(photos, detections, copy):
    labels = [label for _, label in photos]
    result = score_hands(labels, detections[copy])
    table = "\n".join(report_lines(result))
    assert sorted({row[0] for row in result.table()}) == [0, 1, 2, 3, 4, 5]
    assert result.accuracy >= MIN_ACCURACY, table
    assert result.wrong <= 0.01 and result.declined_count <= 0.01 * len(labels), table
    for label, n, correct, accuracy, _missed, _declined in result.table():
        assert accuracy >= MIN_CLASS_ACCURACY, f"class {label}:\n{table}"


def test_cross_validated_accuracy_holds_for_unseen_people(photos, detections):
    """The training code's grouped k-fold on the session's detections: people left out of
    training are counted about as well as the shipped model counts everyone."""
    paths = [path for path, _ in photos]
    counts = np.array([label for _, label in photos])
    named = [finger_labels(path, count) for path, count in photos]
    known = np.array([f is not None for f in named])
    labels = np.array([f if f is not None else (0,) * 5 for f in named])
    points = np.full((2, len(paths), 21, 3), np.nan)
    for copy, name in enumerate(["upright", "turned"]):
        for i, hand in enumerate(detections[name]):
            if hand is not None:
                points[copy, i] = hand.points_3d()
    groups = person_groups(paths)
    assert len(np.unique(groups)) >= 40  # about 42 people, 10 photos each
    report = cross_validate(Detections(points, np.zeros((2, len(paths)))), labels, known, counts, groups,
                            folds=5, l2=0.1, seed=0)
    for name in ("upright", "turned"):
        assert report[name]["accuracy"] >= MIN_ACCURACY, report
        for c, (n, correct) in report[name]["per_class"].items():
            assert correct / n >= MIN_CLASS_ACCURACY, (name, c, report)


# --- invariance of the geometry -----------------------------------------------------------

def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q


def _transformed(points: np.ndarray, rng: np.random.Generator, mirror: bool) -> np.ndarray:
    moved = points @ _random_rotation(rng).T * rng.uniform(0.2, 5.0) + rng.normal(size=3) * 100
    if mirror:
        moved[:, 0] = -moved[:, 0]
    return moved


def test_counts_do_not_change_when_real_hands_turn_in_3d_or_are_mirrored(photos, detections):
    rng = np.random.default_rng(1)
    hands = [hand for hand in detections["upright"][::7] if hand is not None]
    assert len(hands) >= 50
    for hand in hands:
        points = hand.points_3d()
        expected = extended_fingers(points)
        for mirror in (False, True):
            assert extended_fingers(_transformed(points, rng, mirror)) == expected


def _rot_x(degrees: float) -> np.ndarray:
    a = np.radians(degrees)
    return np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])


# A hand built from joint angles: x across the palm (towards the thumb), y from the wrist
# along the palm, z out of the palm's front; the palm is 1 long.
_KNUCKLES = {"index": (0.32, 0.95), "middle": (0.08, 1.0), "ring": (-0.15, 0.95), "pinky": (-0.35, 0.85)}
_BONES = {"index": (0.42, 0.25, 0.2), "middle": (0.46, 0.29, 0.21), "ring": (0.42, 0.27, 0.2),
          "pinky": (0.33, 0.2, 0.18)}
_THUMB_OUT = [(0.2, 0.2, 0.05), (0.42, 0.42, 0.08), (0.62, 0.6, 0.1), (0.78, 0.75, 0.1)]
_THUMB_ACROSS = [(0.2, 0.2, 0.05), (0.38, 0.42, 0.12), (0.25, 0.6, 0.25), (0.05, 0.65, 0.3)]


def synthetic_hand(extended: tuple[int, ...]) -> np.ndarray:
    points = np.zeros((21, 3))
    for k, name in enumerate(FINGERS[1:], start=1):
        joints = FINGER_JOINTS[name]
        position = np.array([*_KNUCKLES[name], 0.0])
        points[joints[0]] = position
        flexion = (8, 5, 5) if extended[k] else (75, 100, 65)  # degrees at each joint
        total = 0.0
        for joint, length, bend in zip(joints[1:], _BONES[name], flexion):
            total += bend
            position = position + length * (_rot_x(total) @ np.array([0.0, 1.0, 0.0]))
            points[joint] = position
    points[1:5] = _THUMB_OUT if extended[0] else _THUMB_ACROSS
    return points


@pytest.mark.parametrize("extended", list(itertools.product([0, 1], repeat=5)))
def test_synthetic_hands_in_any_pose_and_orientation(extended):
    rng = np.random.default_rng(sum(b << i for i, b in enumerate(extended)))
    points = synthetic_hand(extended)
    for mirror in (False, True, False):
        moved = _transformed(points, rng, mirror)
        assert tuple(extended_fingers(moved)) == tuple(bool(b) for b in extended)
        assert count_extended_fingers(moved, handedness="Left") == sum(extended)


def test_two_dimensional_landmarks_are_accepted_and_bad_shapes_refused():
    flat = synthetic_hand((1, 1, 1, 1, 1))[:, :2]
    assert 0 <= count_extended_fingers(flat) <= 5
    with pytest.raises(ValueError, match="21"):
        count_extended_fingers(np.zeros((20, 3)))
    with pytest.raises(ValueError, match="NaN"):
        count_extended_fingers(np.full((21, 3), np.nan))


# --- gestures -----------------------------------------------------------------------------

def test_gesture_for_count():
    assert [gesture_for_count(n) for n in range(6)] == [
        Gesture.PEN_UP, Gesture.SAVE, Gesture.PEN_BLACK, Gesture.PEN_GREEN, Gesture.PEN_RED, Gesture.ERASER]
    assert gesture_for_count(None) is Gesture.PEN_UP
    with pytest.raises(ValueError):
        gesture_for_count(6)
    assert [g.draws for g in (Gesture.PEN_UP, Gesture.SAVE, Gesture.PEN_BLACK, Gesture.ERASER)] == [
        False, False, True, True]


def test_one_finger_saves_only_when_it_is_the_index():
    assert gesture_for_fingers(ExtendedFingers(False, True, False, False, False)) is Gesture.SAVE
    assert gesture_for_fingers(ExtendedFingers(True, False, False, False, False)) is Gesture.PEN_UP
    assert gesture_for_fingers(ExtendedFingers(False, False, False, False, True)) is Gesture.PEN_UP
    assert gesture_for_fingers(ExtendedFingers(True, True, True, False, False)) is Gesture.PEN_GREEN
    assert gesture_for_fingers(None) is Gesture.PEN_UP
    assert ExtendedFingers(True, True, False, False, True).count == 3


def test_gesture_for_detected_hands(photos, detections):
    wanted = {1: Gesture.SAVE, 2: Gesture.PEN_BLACK, 4: Gesture.PEN_RED, 5: Gesture.ERASER, 0: Gesture.PEN_UP}
    for (_, label), hand in list(zip(photos, detections["upright"]))[::5]:
        if label in wanted and hand is not None:
            assert gesture_for_hand(hand) is wanted[label]
    assert gesture_for_hand(None) is Gesture.PEN_UP


def test_stabilizer_changes_only_after_n_frames_in_a_row():
    stabilizer = GestureStabilizer(frames=3)
    assert stabilizer.current is Gesture.PEN_UP
    seen = [stabilizer.update(g) for g in [Gesture.PEN_RED, Gesture.PEN_RED, Gesture.PEN_GREEN,
                                           Gesture.PEN_RED, Gesture.PEN_RED, Gesture.PEN_RED]]
    assert seen == [Gesture.PEN_UP] * 5 + [Gesture.PEN_RED]
    # a one-frame flicker does not change the pen, and resets the count
    seen = [stabilizer.update(g) for g in [Gesture.PEN_BLACK, Gesture.PEN_RED, Gesture.PEN_BLACK,
                                           Gesture.PEN_BLACK, Gesture.PEN_BLACK]]
    assert seen == [Gesture.PEN_RED] * 4 + [Gesture.PEN_BLACK]
    # no hand counts as PEN_UP
    seen = [stabilizer.update(None) for _ in range(3)]
    assert seen == [Gesture.PEN_BLACK, Gesture.PEN_BLACK, Gesture.PEN_UP]
    stabilizer.reset(Gesture.ERASER)
    assert stabilizer.current is Gesture.ERASER


def test_stabilizer_of_one_frame_follows_at_once_and_zero_is_refused():
    stabilizer = GestureStabilizer(frames=1)
    assert stabilizer.update(Gesture.SAVE) is Gesture.SAVE
    with pytest.raises(ValueError):
        GestureStabilizer(frames=0)


# --- the model file and its training code --------------------------------------------------

def test_shipped_model_is_tiny_and_records_its_cross_validation():
    model = load_finger_model()
    assert sum(c.weights.size + 1 for c in model.classifiers.values()) <= 30
    cv = model.info["cross_validation"]["hand-counts"]
    assert cv["upright"]["accuracy"] >= MIN_ACCURACY and cv["turned"]["accuracy"] >= MIN_ACCURACY
    assert cv["turned cubic"]["accuracy"] >= MIN_ACCURACY  # as the held-out check turns photos
    for kind in ("upright", "turned", "turned cubic"):   # declines are recorded, and rare
        assert cv[kind]["declined"] <= 0.01 * cv[kind]["photos"] and cv[kind]["wrong"] <= 0.01


def test_check_copies_are_counted_but_never_trained_on():
    """A CHECK copy whose hands are another pose than their labels say would spoil the model if
    it were trained on: the upright cross-validation must be exactly as without it."""
    rng = np.random.default_rng(3)
    poses = [p for p in itertools.product([0, 1], repeat=5)]
    upright = np.stack([_transformed(synthetic_hand(p), rng, mirror=i % 2 == 1)
                        for i, p in enumerate(poses * 3)])
    labels = np.array(poses * 3)
    counts = labels.sum(axis=1)
    wrong = upright[::-1].copy()  # labelled with the poses in the other order
    groups = np.arange(len(labels)) % 12
    known = np.ones(len(labels), dtype=bool)
    alone = cross_validate(Detections(upright[None], np.zeros((1, len(labels)))), labels, known, counts,
                           groups, folds=4, l2=0.1, seed=0)
    with_check = cross_validate(Detections(np.stack([upright, wrong]), np.zeros((2, len(labels))),
                                           (UPRIGHT, CHECK)), labels, known, counts, groups, folds=4,
                                l2=0.1, seed=0)
    assert with_check[UPRIGHT] == alone[UPRIGHT] and alone[UPRIGHT]["accuracy"] > 0.95
    assert with_check[CHECK]["accuracy"] < 0.5


def test_augmentations_change_size_sharpness_and_tones_and_jitter_copies_hands():
    image = np.random.default_rng(0).integers(0, 256, (100, 100, 3), dtype=np.uint8)
    changes = random_augmentations(200, seed=0)
    assert {c.interpolation for c in changes} == {"linear", "cubic", "nearest", "area", "lanczos"}
    scales = [c.scale for c in changes]
    assert 0.5 <= min(scales) < 0.7 and 1.6 < max(scales) <= 2.0
    assert 0.3 < np.mean([c.blur > 0 for c in changes]) < 0.7
    big = Augmentation(scale=2.0, interpolation="cubic", blur=1.0, gain=1.0, offset=0.0).apply(image)
    assert big.shape == (200, 200, 3) and big.std() < image.std()  # blurred
    dark = Augmentation(scale=1.0, interpolation="nearest", blur=0.0, gain=0.6, offset=-30.0).apply(image)
    assert dark.shape == image.shape and dark.mean() < image.mean() * 0.6
    hands = np.stack([synthetic_hand((0, 1, 1, 0, 0))] * 2)
    points, labels = jittered(hands, np.array([[0, 1, 1, 0, 0]] * 2), copies=3, jitter=0.02,
                              rng=np.random.default_rng(0))
    assert points.shape == (8, 21, 3) and labels.shape == (8, 5)
    palm = np.linalg.norm(hands[0, 9] - hands[0, 0])
    moved = np.linalg.norm(points[2:] - np.concatenate([hands] * 3), axis=-1)
    assert 0.005 * palm < moved.mean() < 0.05 * palm


def test_model_round_trip_and_bad_files(tmp_path):
    model = load_finger_model()
    path = tmp_path / "model.json"
    model.save(path)
    again = FingerModel.load(path)
    hand = synthetic_hand((0, 1, 1, 0, 0))
    assert np.allclose(again.scores(hand), model.scores(hand))
    with pytest.raises(MissingCheckpointError, match="train_gestures"):
        FingerModel.load(tmp_path / "absent.json")
    data = json.loads(path.read_text())
    data["fingers"]["ring"]["weights"] = [1.0]
    path.write_text(json.dumps(data))
    with pytest.raises(CheckpointFormatError, match="wrong size"):
        FingerModel.load(path)
    path.write_text("{not json")
    with pytest.raises(CheckpointFormatError):
        FingerModel.load(path)


def test_fit_logistic_separates_and_fit_model_learns_synthetic_hands():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 2))
    y = (x[:, 0] - 0.5 * x[:, 1] > 0.2).astype(float)
    fitted = fit_logistic(x, y, l2=0.01)
    assert ((fitted.score(x) > 0) == y.astype(bool)).mean() > 0.97

    poses = list(itertools.product([0, 1], repeat=5))
    points = np.stack([_transformed(synthetic_hand(p), rng, mirror=i % 2 == 1)
                       for i, p in enumerate(poses * 4)])
    labels = np.array(poses * 4)
    from sketch.gestures import finger_features
    model = fit_model(finger_features(points), labels, np.ones(len(labels), dtype=bool), l2=0.1)
    assert ((model.scores(points) > 0) == labels.astype(bool)).all()


def test_person_groups_and_finger_labels():
    names = ["asl0_IMG_1118.JPG", "asl3_IMG_1121.JPG", "asl8_IMG_1167.JPG", "asl0_IMG_1169.JPG", "hand.png"]
    groups = person_groups([Path(n) for n in names])
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[1] != groups[2]
    assert groups[4] not in groups[:4]
    assert finger_labels(Path("asl7_IMG_1.JPG"), 3) == (0, 1, 1, 0, 1)
    assert finger_labels(Path("x.jpg"), 3) is None
    assert finger_labels(Path("x.jpg"), 4) == (0, 1, 1, 1, 1)
    from sketch_search.common.errors import SketchSearchError
    with pytest.raises(SketchSearchError, match="folder 2"):
        finger_labels(Path("asl5_IMG_1.JPG"), 2)


# --- the evaluation command ----------------------------------------------------------------

def _run_eval(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "tools.evaluate_gestures", "--no-progress", *args],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_eval_command_prints_a_table_and_the_fixed_lines(photos, tmp_path):
    for path, label in photos[::20]:  # a couple of photos per class
        (tmp_path / str(label)).mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / str(label) / path.name)
    result = _run_eval("--eval", str(tmp_path), "--rotate", "30")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0].split() == ["class", "n", "correct", "accuracy", "no", "hand", "declined"]
    rows = [line.split() for line in lines[1:-4]]
    assert [int(r[0]) for r in rows] == sorted({label for _, label in photos[::20]})
    assert sum(int(r[1]) for r in rows) == len(photos[::20])
    missed = re.fullmatch(r"no hand detected: (\d+) of (\d+) \(not right, not wrong\)", lines[-4])
    declined = re.fullmatch(r"declined: (\d+) of (\d+) \(not right, not wrong\)", lines[-3])
    wrong = re.fullmatch(r"wrong: (\d\.\d{4})", lines[-2])
    accuracy = re.fullmatch(r"accuracy: (\d\.\d{4})", lines[-1])
    assert missed and declined and wrong and accuracy, lines
    total = len(photos[::20])
    assert int(missed.group(2)) == int(declined.group(2)) == total
    # the columns add up to the lines, and right + wrong + declined + missed is every photo
    assert sum(int(r[4]) for r in rows) == int(missed.group(1))
    assert sum(int(r[5]) for r in rows) == int(declined.group(1))
    right = sum(int(r[2]) for r in rows)
    assert float(accuracy.group(1)) == pytest.approx(right / total, abs=1e-4)
    wrong_n = round(float(wrong.group(1)) * total)
    assert right + wrong_n + int(declined.group(1)) + int(missed.group(1)) == total
    assert float(accuracy.group(1)) >= 0.9
    assert not any(re.match(r"\d", line) for line in lines)


def test_declined_hands_are_neither_right_nor_wrong():
    result = EvaluationResult(labels=[2, 2, 3, 3], counts=[2, None, 4, None], declined=[False, True, False, False])
    assert result.accuracy == 0.25 and result.wrong == 0.25
    assert result.missed == 1 and result.declined_count == 1
    assert [row[4:] for row in result.table()] == [(0, 1), (1, 0)]
    lines = report_lines(result)
    assert lines[-4:] == ["no hand detected: 1 of 4 (not right, not wrong)", "declined: 1 of 4 (not right, not wrong)",
                          "wrong: 0.2500", "accuracy: 0.2500"]


def test_eval_command_refuses_a_bad_folder_in_one_line(tmp_path):
    for folder in (tmp_path / "absent", tmp_path):
        result = _run_eval("--eval", str(folder))
        assert result.returncode == 2
        assert len(result.stderr.strip().splitlines()) == 1 and result.stderr.startswith("error: ")
    with pytest.raises(LabelledPhotosError, match="subfolders named 0 to 5"):
        labelled_photos(tmp_path)


def test_detections_are_cached_per_photo_file_and_found_again_only_while_the_files_are_unchanged(photos, tmp_path):
    import os

    from tools.evaluate_gestures import cached_detect
    from tools.train_gestures import cache_file, detect_copies

    folder = tmp_path / "photos"
    (folder / "2").mkdir(parents=True)
    paths = [Path(shutil.copy(path, folder / "2" / path.name)) for path, label in photos if label == 2][:2]
    cache = tmp_path / "cache"
    first = cached_detect(paths, None, "linear", False, cache)
    assert len(list(cache.glob("*.npz"))) == 1
    again = cached_detect(paths, None, "linear", False, cache)
    assert [len(looks) for looks in again] == [len(looks) for looks in first] == [3, 3]
    from tools.evaluate_gestures import motion_blurs
    cached_detect(paths, None, "linear", False, cache, change=motion_blurs(2, 15, 0), change_key="blur 15")
    assert len(list(cache.glob("*.npz"))) == 2                  # smeared photos: looks of their own
    pairs = [(a, b) for a_looks, b_looks in zip(again, first) for a, b in zip(a_looks, b_looks)]
    assert all((a is None) == (b is None) for a, b in pairs)
    assert all(np.allclose(a.landmarks, b.landmarks) and a.image_size == b.image_size and a.handedness == b.handedness
               and a.score == pytest.approx(b.score) for a, b in pairs if a is not None)
    first = [looks[0] for looks in first]
    kinds = ("upright",)
    name = cache_file(folder, paths, kinds, 45.0, 1)
    copies = detect_copies(paths, 0, 45.0, 1, cache / name, checks=0)
    assert np.allclose(copies.points[0], [h.points_3d() for h in first])
    stamp = paths[0].stat().st_mtime_ns
    os.utime(paths[0], ns=(stamp + 10**9, stamp + 10**9))   # the photo changed on disk
    assert cache_file(folder, paths, kinds, 45.0, 1) != name
    import tools.evaluate_gestures
    changed = cache_file(folder, paths, kinds, 45.0, 1)
    with pytest.MonkeyPatch.context() as patch:             # photo detection changed: detect again
        patch.setattr(tools.evaluate_gestures, "DETECTION_VERSION", "a newer detection")
        assert cache_file(folder, paths, kinds, 45.0, 1) != changed
    cached_detect(paths, None, "linear", False, cache)
    assert len(list(cache.glob("eval-*.npz"))) == 3            # detected again, under a new key


def test_motion_blur_smears_a_point_into_a_line_of_the_length_and_direction_asked():
    from tools.evaluate_gestures import motion_blur, motion_blurs

    dot = np.zeros((41, 61), np.uint8)
    dot[20, 30] = 255
    for degrees, spans in ((0, (9, 1)), (90, (1, 9)), (45, (7, 7))):
        out = motion_blur(dot, 9, degrees)
        ys, xs = np.nonzero(out)
        assert (np.ptp(xs) + 1, np.ptp(ys) + 1) == spans
        assert abs(int(out.sum()) - 255) <= 9                 # the light is spread, not added
    rising = motion_blur(dot, 9, 45)
    assert rising[17, 33] > 0 and rising[17, 27] == 0          # counter-clockwise: up and to the right
    assert np.array_equal(motion_blur(dot, 1, 30), dot)
    # --motion-blur's length is in pixels of a 640 px wide frame: half of it on a 320 px photo
    wide, narrow = np.zeros((41, 640), np.uint8), np.zeros((41, 320), np.uint8)
    wide[20, 320] = narrow[20, 160] = 255
    change = motion_blurs(1, 16, seed=0)
    assert np.count_nonzero(change(0, wide)) >= 15 and np.count_nonzero(change(0, narrow)) <= 9


def test_eval_command_refuses_a_motion_blur_out_of_range_in_one_line(tmp_path):
    (tmp_path / "2").mkdir()
    result = _run_eval("--eval", str(tmp_path), "--motion-blur", "-3")
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and "--motion-blur" in result.stderr
