"""Train the per-finger classifiers of sketch/gesture_model.json on labelled hand photos.

    python -m tools.train_gestures ../shared/data/hand-counts [--rotations 2] [--folds 7]

Each photo is detected upright and as `--rotations` copies turned by random angles, so
the model also sees MediaPipe's landmarks of turned hands. Which fingers are extended
comes from the ASL digit in the file name (`asl<digit>_...`); without it, the count
folder says it for every count but 3 (three fingers can be several combinations), and
those photos only serve the evaluation.

Before the final fit, a grouped k-fold cross-validation reports how well finger counts
generalise to people not trained on: photos of one person (consecutive camera numbers,
`IMG_<n>`) never sit on both sides of a split, nor do the turned copies of a photo.
"""
from __future__ import annotations

import argparse
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sketch.gestures import (
    FEATURE_NAMES,
    FINGERS,
    MODEL_PATH,
    FingerClassifier,
    FingerModel,
    finger_features,
)
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.errors import SketchSearchError
from tools.evaluate_gestures import detect_photos, labelled_photos, rotation_angles

logger = logging.getLogger(__name__)

# Extended fingers of each ASL digit (the shared photos' source), thumb to pinky.
ASL_FINGERS = {
    0: (0, 0, 0, 0, 0), 1: (0, 1, 0, 0, 0), 2: (0, 1, 1, 0, 0), 3: (1, 1, 1, 0, 0), 4: (0, 1, 1, 1, 1),
    5: (1, 1, 1, 1, 1), 6: (0, 1, 1, 1, 0), 7: (0, 1, 1, 0, 1), 8: (0, 1, 0, 1, 1), 9: (0, 0, 1, 1, 1),
}
# Without a digit in the name, the count alone says which fingers, except for 3.
COUNT_FINGERS = {0: ASL_FINGERS[0], 1: ASL_FINGERS[1], 2: ASL_FINGERS[2], 4: ASL_FINGERS[4], 5: ASL_FINGERS[5]}
# Camera numbers further apart than this start another person's series.
SERIES_GAP = 15


def finger_labels(path: Path, count: int) -> tuple[int, ...] | None:
    """Which fingers are extended in a labelled photo, or None when the name does not say."""
    match = re.match(r"asl(\d)_", path.name, re.IGNORECASE)
    if match:
        fingers = ASL_FINGERS[int(match.group(1))]
        if sum(fingers) != count:
            raise SketchSearchError(f"{path} is in folder {count} but its ASL digit has {sum(fingers)} fingers")
        return fingers
    return COUNT_FINGERS.get(count)


def person_groups(paths: Sequence[Path]) -> np.ndarray:
    """A group number per photo: one per series of consecutive camera numbers (one person).

    Photos without an `IMG_<n>` number each get a group of their own.
    """
    numbers = [re.search(r"IMG_(\d+)", path.name, re.IGNORECASE) for path in paths]
    groups = np.empty(len(paths), dtype=int)
    numbered = [(int(m.group(1)), i) for i, m in enumerate(numbers) if m]
    group = -1
    last = None
    for number, i in sorted(numbered):
        if last is None or number - last > SERIES_GAP:
            group += 1
        groups[i], last = group, number
    for i, m in enumerate(numbers):
        if not m:
            group += 1
            groups[i] = group
    return groups


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float) -> FingerClassifier:
    """L2-regularised logistic regression on standardised features (Newton's method)."""
    mean, scale = x.mean(axis=0), x.std(axis=0) + 1e-9
    z = np.c_[(x - mean) / scale, np.ones(len(x))]
    w = np.zeros(z.shape[1])
    penalty = np.eye(z.shape[1]) * l2
    penalty[-1, -1] = 0.0  # the bias is not shrunk
    for _ in range(100):
        p = 1.0 / (1.0 + np.exp(-np.clip(z @ w, -30, 30)))
        gradient = z.T @ (p - y) + penalty @ w
        hessian = (z * (p * (1 - p))[:, None]).T @ z + penalty
        step = np.linalg.solve(hessian, gradient)
        w -= step
        if np.abs(step).max() < 1e-10:
            break
    return FingerClassifier(features=(), mean=mean, scale=scale, weights=w[:-1], bias=float(w[-1]))


@dataclass
class Detections:
    """Landmarks (points_3d) of every photo in every copy: copy 0 upright, then turned ones."""

    points: np.ndarray   # (copies, photos, 21, 3), NaN where no hand was found
    angles: np.ndarray   # (copies, photos)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.points[..., 0, 0])


def detect_copies(paths: Sequence[Path], rotations: int, max_angle: float, seed: int,
                  cache: Path | None = None) -> Detections:
    if cache is not None and cache.is_file():
        data = np.load(cache)
        if data["points"].shape[:2] == (rotations + 1, len(paths)):
            logger.info("using detections cached in %s", cache)
            return Detections(points=data["points"], angles=data["angles"])
    angles = np.stack([np.zeros(len(paths))] +
                      [rotation_angles(len(paths), max_angle, seed + r) for r in range(rotations)])
    points = np.full((len(angles), len(paths), 21, 3), np.nan)
    for copy, copy_angles in enumerate(angles):
        hands = detect_photos(paths, copy_angles if copy else None)
        for i, hand in enumerate(hands):
            if hand is not None:
                points[copy, i] = hand.points_3d()
    if cache is not None:
        np.savez_compressed(cache, points=points, angles=angles)
    return Detections(points=points, angles=angles)


def fit_model(features: dict[str, np.ndarray], labels: np.ndarray, known: np.ndarray, l2: float) -> FingerModel:
    """One classifier per finger, from samples whose finger labels are known."""
    classifiers = {}
    for f, name in enumerate(FINGERS):
        fitted = fit_logistic(features[name][known], labels[known, f].astype(float), l2)
        classifiers[name] = FingerClassifier(FEATURE_NAMES[name], fitted.mean, fitted.scale,
                                             fitted.weights, fitted.bias)
    return FingerModel(classifiers=classifiers)


def cross_validate(detections: Detections, labels: np.ndarray, known: np.ndarray, counts: np.ndarray,
                   groups: np.ndarray, folds: int, l2: float, seed: int) -> dict:
    """Grouped k-fold: finger counts predicted for people left out of training.

    Returns {"upright"|"turned": {"accuracy", "per_class": {count: [n, correct]}, "missed"}}.
    """
    copies, n = detections.points.shape[:2]
    unique = np.unique(groups)
    fold_of_group = dict(zip(np.random.default_rng(seed).permutation(unique), np.arange(len(unique)) % folds))
    fold = np.array([fold_of_group[g] for g in groups])
    predicted = np.full((copies, n), -1)
    found = detections.found
    for k in range(folds):
        train = np.zeros((copies, n), dtype=bool)
        train[:, fold != k] = True
        train &= found & known[None, :]
        features = finger_features(detections.points[train])
        model = fit_model(features, np.broadcast_to(labels, (copies,) + labels.shape)[train],
                          np.ones(train.sum(), dtype=bool), l2)
        test = found & (fold == k)[None, :]
        predicted[test] = (model.scores(detections.points[test]) > 0).sum(axis=-1)
    report = {}
    for name, copy_slice in (("upright", slice(0, 1)), ("turned", slice(1, copies))):
        got, want = predicted[copy_slice].ravel(), np.tile(counts, predicted[copy_slice].shape[0])
        if got.size == 0:
            continue
        report[name] = {
            "accuracy": float((got == want).mean()),
            "per_class": {int(c): [int((want == c).sum()), int(((got == want) & (want == c)).sum())]
                          for c in np.unique(want)},
            "missed": int((got < 0).sum()),
            "photos": int(got.size),
        }
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.train_gestures", description=__doc__.split("\n\n")[0])
    parser.add_argument("folder", type=Path, help="folder with subfolders 0-5 (extended fingers) of hand photos")
    parser.add_argument("--rotations", type=int, default=2, help="turned copies of each photo (default 2)")
    parser.add_argument("--max-angle", type=float, default=45.0, help="largest turn in degrees (default 45)")
    parser.add_argument("--folds", type=int, default=7, help="cross-validation folds (default 7)")
    parser.add_argument("--l2", type=float, default=0.1, help="L2 penalty on standardised weights (default 0.1)")
    parser.add_argument("--seed", type=int, default=1, help="seed of turns and folds (default 1; the "
                        "evaluation's turns use seed 0)")
    parser.add_argument("--cache", type=Path, help="npz file keeping the detections between runs")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help=f"model file (default {MODEL_PATH})")
    args = parser.parse_args(argv)
    setup_logging(verbose=True)  # training reports its progress in the log
    if args.rotations < 0 or args.folds < 2:
        raise SketchSearchError("--rotations must be 0 or more and --folds at least 2")

    photos = labelled_photos(args.folder)
    paths = [path for path, _ in photos]
    counts = np.array([count for _, count in photos])
    named = [finger_labels(path, count) for path, count in photos]
    known = np.array([f is not None for f in named])
    labels = np.array([f if f is not None else (0,) * 5 for f in named], dtype=int)
    groups = person_groups(paths)
    detections = detect_copies(paths, args.rotations, args.max_angle, args.seed, args.cache)

    cv = cross_validate(detections, labels, known, counts, groups, args.folds, args.l2, args.seed)
    for name, result in cv.items():
        per_class = "  ".join(f"{c}: {ok}/{n}" for c, (n, ok) in result["per_class"].items())
        print(f"cross-validated ({args.folds} folds by person), {name}: accuracy {result['accuracy']:.4f}"
              f"  [{per_class}]  no hand: {result['missed']}")

    train = detections.found & known[None, :]
    copies = detections.points.shape[0]
    model = fit_model(finger_features(detections.points[train]),
                      np.broadcast_to(labels, (copies,) + labels.shape)[train],
                      np.ones(train.sum(), dtype=bool), args.l2)
    model = FingerModel(model.classifiers, info={
        "trained_on": f"{args.folder.name}: {len(paths)} photos ({int(known.sum())} with finger labels), "
                      f"{len(np.unique(groups))} people, upright + {args.rotations} copies turned up to "
                      f"{args.max_angle:g} degrees",
        "l2": args.l2,
        "cross_validation": {"folds": args.folds, "grouped_by": "person (camera number series)", **cv},
    })
    model.save(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    run_command(main)
