"""Train the per-finger classifiers of sketch/gesture_model.json on labelled hand photos.

    python -m tools.train_gestures ../shared/data/hand-counts [--rotations 8] [--folds 7]

Each photo is detected upright and as `--rotations` changed copies, so the model sees
MediaPipe's landmarks of hands as other cameras show them: turned by a random angle, resampled
by a random interpolation (linear, cubic, nearest, area, Lanczos) at a random scale (half to
twice the size), sometimes blurred, brighter or darker; and each training hand again with its
landmarks jittered (`--jitter`, a fraction of the palm's length), as MediaPipe's own
landmarks wobble. Which fingers are extended
comes from the ASL digit in the file name (`asl<digit>_...`); without it, the count
folder says it for every count but 3 (three fingers can be several combinations), and
those photos only serve the evaluation.

Before the final fit, a grouped k-fold cross-validation reports how well finger counts
generalise to people not trained on: photos of one person (consecutive camera numbers,
`IMG_<n>`) never sit on both sides of a split, nor do the changed copies of a photo. It counts
the left-out people's photos upright, in the training's changed copies, and turned up to
`--max-angle` with cubic interpolation and the border carried outwards ("turned cubic"), the
way the held-out check of other people's photos is made; no copy of that kind is trained on.
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
from tools.evaluate_gestures import (
    INTERPOLATIONS,
    cv2_interpolation,
    detect_photos,
    labelled_photos,
    rotation_angles,
)

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


@dataclass(frozen=True)
class Augmentation:
    """How one training copy of a photo is changed before its hand is detected (then turned)."""

    scale: float          # of the photo's side
    interpolation: str    # for the scaling and the turn
    blur: float           # Gaussian sigma in pixels of the scaled photo; 0: none
    gain: float           # contrast
    offset: float         # brightness, in 0-255 levels

    def apply(self, image: np.ndarray) -> np.ndarray:
        import cv2

        height, width = image.shape[:2]
        size = (max(8, round(width * self.scale)), max(8, round(height * self.scale)))
        image = cv2.resize(image, size, interpolation=cv2_interpolation(self.interpolation))
        if self.blur > 0:
            image = cv2.GaussianBlur(image, (0, 0), self.blur)
        return np.clip(image.astype(np.float32) * self.gain + self.offset, 0, 255).astype(np.uint8)


def random_augmentations(count: int, seed: int) -> list[Augmentation]:
    rng = np.random.default_rng(seed)
    return [Augmentation(scale=float(np.exp(rng.uniform(np.log(0.5), np.log(2.0)))),
                         interpolation=INTERPOLATIONS[rng.integers(len(INTERPOLATIONS))],
                         blur=float(rng.uniform(0.3, 1.5)) if rng.random() < 0.5 else 0.0,
                         gain=float(rng.uniform(0.6, 1.4)), offset=float(rng.uniform(-30, 30)))
            for _ in range(count)]


UPRIGHT, TURNED, CHECK = "upright", "turned", "turned cubic"


@dataclass
class Detections:
    """Landmarks (points_3d) of every photo in every copy: copy 0 upright, then changed ones.

    kinds names each copy: UPRIGHT, TURNED (trained on) or CHECK (turned with cubic
    interpolation, as the held-out check is made: only ever counted, never trained on).
    """

    points: np.ndarray   # (copies, photos, 21, 3), NaN where no hand was found
    angles: np.ndarray   # (copies, photos)
    kinds: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if self.kinds is None:
            self.kinds = (UPRIGHT,) + (TURNED,) * (self.points.shape[0] - 1)

    @property
    def found(self) -> np.ndarray:
        return ~np.isnan(self.points[..., 0, 0])

    @property
    def trainable(self) -> np.ndarray:
        return np.array([kind != CHECK for kind in self.kinds])


def detect_copies(paths: Sequence[Path], rotations: int, max_angle: float, seed: int,
                  cache: Path | None = None, checks: int = 1) -> Detections:
    kinds = (UPRIGHT,) + (TURNED,) * rotations + (CHECK,) * checks
    if cache is not None and cache.is_file():
        data = np.load(cache)
        if data["points"].shape[:2] == (len(kinds), len(paths)) and tuple(data["kinds"]) == kinds:
            logger.info("using detections cached in %s", cache)
            return Detections(points=data["points"], angles=data["angles"], kinds=kinds)
    angles = np.stack([np.zeros(len(paths))] +
                      [rotation_angles(len(paths), max_angle, seed + r) for r in range(rotations)] +
                      [rotation_angles(len(paths), max_angle, seed + 1000 + r) for r in range(checks)])
    points = np.full((len(angles), len(paths), 21, 3), np.nan)
    for copy, copy_angles in enumerate(angles):
        if kinds[copy] == TURNED:
            changes = random_augmentations(len(paths), seed + 500 + copy)
            hands = detect_photos(paths, copy_angles, change=lambda i, image: changes[i].apply(image),
                                  interpolation="linear")
        else:
            hands = detect_photos(paths, copy_angles if copy else None, interpolation="cubic")
        for i, hand in enumerate(hands):
            if hand is not None:
                points[copy, i] = hand.points_3d()
    if cache is not None:
        np.savez_compressed(cache, points=points, angles=angles, kinds=np.array(kinds))
    return Detections(points=points, angles=angles, kinds=kinds)


def jittered(points: np.ndarray, labels: np.ndarray, copies: int, jitter: float,
             rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The hands plus `copies` versions with every landmark moved at random by `jitter` times
    the palm's length (wrist to middle knuckle), as MediaPipe's landmarks wobble."""
    if copies <= 0 or jitter <= 0:
        return points, labels
    palm = np.linalg.norm(points[:, 9] - points[:, 0], axis=-1)[:, None, None]
    moved = [points + rng.normal(size=points.shape) * jitter * palm for _ in range(copies)]
    return np.concatenate([points, *moved]), np.concatenate([labels] * (copies + 1))


def fit_model(features: dict[str, np.ndarray], labels: np.ndarray, known: np.ndarray, l2: float) -> FingerModel:
    """One classifier per finger, from samples whose finger labels are known."""
    classifiers = {}
    for f, name in enumerate(FINGERS):
        fitted = fit_logistic(features[name][known], labels[known, f].astype(float), l2)
        classifiers[name] = FingerClassifier(FEATURE_NAMES[name], fitted.mean, fitted.scale,
                                             fitted.weights, fitted.bias)
    return FingerModel(classifiers=classifiers)


def fit_points(points: np.ndarray, labels: np.ndarray, l2: float, jitter: float = 0.0,
               jitter_copies: int = 0, seed: int = 0) -> FingerModel:
    """The model fitted on hands' landmarks (and their jittered copies) with known labels."""
    points, labels = jittered(points, labels, jitter_copies, jitter, np.random.default_rng(seed))
    return fit_model(finger_features(points), labels, np.ones(len(points), dtype=bool), l2)


def cross_validate(detections: Detections, labels: np.ndarray, known: np.ndarray, counts: np.ndarray,
                   groups: np.ndarray, folds: int, l2: float, seed: int, jitter: float = 0.0,
                   jitter_copies: int = 0) -> dict:
    """Grouped k-fold: finger counts predicted for people left out of training.

    Returns {kind: {"accuracy", "per_class": {count: [n, correct]}, "missed", "photos"}} for
    each kind of copy (upright, turned, turned cubic).
    """
    copies, n = detections.points.shape[:2]
    unique = np.unique(groups)
    fold_of_group = dict(zip(np.random.default_rng(seed).permutation(unique), np.arange(len(unique)) % folds))
    fold = np.array([fold_of_group[g] for g in groups])
    predicted = np.full((copies, n), -1)
    found = detections.found
    all_labels = np.broadcast_to(labels, (copies,) + labels.shape)
    for k in range(folds):
        train = np.zeros((copies, n), dtype=bool)
        train[:, fold != k] = True
        train &= found & known[None, :] & detections.trainable[:, None]
        model = fit_points(detections.points[train], all_labels[train], l2, jitter, jitter_copies, seed + k)
        test = found & (fold == k)[None, :]
        predicted[test] = (model.scores(detections.points[test]) > 0).sum(axis=-1)
    report = {}
    kinds = np.array(detections.kinds)
    for name in dict.fromkeys(detections.kinds):
        got = predicted[kinds == name].ravel()
        want = np.tile(counts, int((kinds == name).sum()))
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
    parser.add_argument("--rotations", type=int, default=8, help="changed (turned, rescaled, blurred, ...) "
                        "copies of each photo to train on (default 8)")
    parser.add_argument("--checks", type=int, default=1, help="copies turned with cubic interpolation, "
                        "only counted in the cross-validation (default 1)")
    parser.add_argument("--jitter", type=float, default=0.02, help="landmark jitter, a fraction of the palm's "
                        "length (default 0.02)")
    parser.add_argument("--jitter-copies", type=int, default=2, help="jittered copies of each training hand "
                        "(default 2)")
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
    detections = detect_copies(paths, args.rotations, args.max_angle, args.seed, args.cache, args.checks)

    cv = cross_validate(detections, labels, known, counts, groups, args.folds, args.l2, args.seed,
                        args.jitter, args.jitter_copies)
    for name, result in cv.items():
        per_class = "  ".join(f"{c}: {ok}/{n}" for c, (n, ok) in result["per_class"].items())
        print(f"cross-validated ({args.folds} folds by person), {name}: accuracy {result['accuracy']:.4f}"
              f"  [{per_class}]  no hand: {result['missed']}")

    # The shipped model trains on the checks' copies too: nobody is left out any more.
    train = detections.found & known[None, :]
    copies = detections.points.shape[0]
    model = fit_points(detections.points[train], np.broadcast_to(labels, (copies,) + labels.shape)[train],
                       args.l2, args.jitter, args.jitter_copies, args.seed)
    model = FingerModel(model.classifiers, info={
        "trained_on": f"{args.folder.name}: {len(paths)} photos ({int(known.sum())} with finger labels), "
                      f"{len(np.unique(groups))} people, upright + {args.rotations} copies turned up to "
                      f"{args.max_angle:g} degrees, rescaled 0.5-2x by a random interpolation, some "
                      f"blurred, gain 0.6-1.4, offset +-30 + {args.checks} turned with cubic interpolation; "
                      f"each with {args.jitter_copies} copies jittered by {args.jitter:g} of the palm",
        "l2": args.l2, "jitter": args.jitter, "jitter_copies": args.jitter_copies,
        "cross_validation": {"folds": args.folds, "grouped_by": "person (camera number series)", **cv},
    })
    model.save(args.out)
    print(f"saved {args.out}")
    return 0


if __name__ == "__main__":
    run_command(main)
