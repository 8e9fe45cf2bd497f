"""Train the per-finger classifiers of sketch/gesture_model.json on labelled hand photos.

    python -m tools.train_gestures ../shared/data/hand-counts [../shared/data/hand-counting]
        [--rotations 8] [--rotations-counting 2] [--folds 7] [--margin M] [--cache DIR]

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
Reads are counted as the reader makes them: declined (implausible landmarks, a finger within
its margin of the boundary, the reader's FINGER_MARGINS or `--margin` for every finger) is neither right nor wrong, and the evaluation's table and lines
(`accuracy:`, `wrong:`, `declined: N of M`) are printed per folder and kind of copy.

Several folders train one model, each by its own naming: hand-counts' (ASL digits, people by
camera number) or hand-counting's (`set<k>_...`: grouped by set; its labels are the number shown,
see COUNTING_FINGERS for how they become finger labels). `--cache DIR` keeps each folder's
detections in an npz, used again only for the same photos (path, mtime, size) and copies.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import tools.evaluate_gestures
from sketch.gestures import (
    FEATURE_NAMES,
    FINGER_MARGINS,
    FINGERS,
    MODEL_PATH,
    FingerClassifier,
    FingerModel,
    finger_features,
    finger_margins,
    unclear_fingers,
)
from sketch.plausibility import doubt_about
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.errors import SketchSearchError
from tools.evaluate_gestures import (
    INTERPOLATIONS,
    EvaluationResult,
    cv2_interpolation,
    detect_photos,
    file_key,
    labelled_photos,
    report_lines,
    rotation_angles,
    write_atomic_npz,
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


# hand-counting's photos are named set<k>_<number>_<n>.jpg: two occasions, grouped by set.
COUNTING_SET = re.compile(r"(set\d+)_", re.IGNORECASE)
# Its labels are the number shown, in more than one way; what the counter is to read in them:
# 0, 4 and 5 say which fingers (a 4's thumb, even half out beside the palm, is not one of the
# four); 1, 2 and 3 do not (1 may be the thumb, 3 thumb-index-middle or index-middle-ring), so
# those hands are labelled with the count's highest-scoring fingers by a model fitted first on
# the hands whose fingers are known (fit_hands).
COUNTING_FINGERS = {0: ASL_FINGERS[0], 4: ASL_FINGERS[4], 5: ASL_FINGERS[5]}


@dataclass
class TrainingData:
    """Per photo: finger labels (thumb to pinky), whether they are known or to be ranked from the
    count, the count, and the group (person or set) cross-validation keeps on one side."""

    labels: np.ndarray
    known: np.ndarray
    ranked: np.ndarray
    counts: np.ndarray
    groups: np.ndarray
    grouped_by: str = "person (camera number series)"


def folder_data(photos: Sequence[tuple[Path, int]]) -> TrainingData:
    """The training data of one labelled folder, by its naming convention: hand-counting's
    (set<k>_...) or hand-counts' (ASL digits, camera numbers)."""
    paths = [path for path, _ in photos]
    counts = np.array([count for _, count in photos])
    if all(COUNTING_SET.match(path.name) for path in paths):
        named = [COUNTING_FINGERS.get(count) for count in counts]
        sets = [COUNTING_SET.match(path.name).group(1).lower() for path in paths]
        groups = np.unique(sets, return_inverse=True)[1]
        ranked = np.array([f is None for f in named])
        by = "set (set1, set2)"
    else:
        named = [finger_labels(path, count) for path, count in photos]
        groups, ranked, by = person_groups(paths), np.zeros(len(paths), dtype=bool), "person (camera number series)"
    known = np.array([f is not None for f in named])
    labels = np.array([f if f is not None else (0,) * 5 for f in named], dtype=int)
    return TrainingData(labels, known, ranked, counts, np.asarray(groups), by)


def combine(parts: Sequence[tuple[TrainingData, Detections]]) -> tuple[TrainingData, Detections]:
    """Several folders as one: groups kept apart, copies aligned by kind (a folder with fewer
    copies of a kind has no hand in the rest)."""
    layout = {kind: max(d.kinds.count(kind) for _, d in parts) for kind in (UPRIGHT, TURNED, CHECK)}
    kinds = tuple(kind for kind, n in layout.items() for _ in range(n))
    columns = []
    for _, det in parts:
        block = np.full((len(kinds),) + det.points.shape[1:], np.nan)
        for kind in layout:
            mine = [i for i, k in enumerate(det.kinds) if k == kind]
            first = kinds.index(kind) if kind in kinds else 0
            block[first:first + len(mine)] = det.points[mine]
        columns.append(block)
    offsets = np.cumsum([0] + [int(d.groups.max()) + 1 for d, _ in parts[:-1]])
    data = TrainingData(*(np.concatenate([getattr(d, f) for d, _ in parts]) for f in
                          ("labels", "known", "ranked", "counts")),
                        groups=np.concatenate([d.groups + o for (d, _), o in zip(parts, offsets)]))
    points = np.concatenate(columns, axis=1)
    return data, Detections(points=points, angles=np.zeros(points.shape[:2]), kinds=kinds)


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


def cache_file(folder: Path, paths: Sequence[Path], kinds: tuple[str, ...], max_angle: float, seed: int) -> str:
    """The cache's file name for this folder, these photos, these copies and the way hands are found
    in photos (evaluate_gestures.DETECTION_VERSION, the evaluation cache's key too)."""
    digest = hashlib.sha1("\n".join([*file_key(paths), *kinds, f"{max_angle:g}", str(seed),
                                      tools.evaluate_gestures.DETECTION_VERSION]).encode()).hexdigest()
    return f"{Path(folder).resolve().name}-{len(kinds)}copies-{digest[:12]}.npz"


def _load_cached(cache: Path, paths: Sequence[Path], kinds: tuple[str, ...]) -> Detections | None:
    if not cache.is_file():
        return None
    data = np.load(cache)
    if ("files" not in data or data["points"].shape[:2] != (len(kinds), len(paths))
            or tuple(data["kinds"]) != kinds or not np.array_equal(data["files"], file_key(paths))):
        logger.info("%s is for other photos or copies: detecting again", cache)
        return None
    logger.info("using detections cached in %s", cache)
    return Detections(points=data["points"], angles=data["angles"], kinds=kinds)


def detect_copies(paths: Sequence[Path], rotations: int, max_angle: float, seed: int,
                  cache: Path | None = None, checks: int = 1) -> Detections:
    """Every photo detected upright and in its changed copies; `cache`: an npz file that keeps
    them, used again only for the same photos (path, mtime, size) and copies."""
    kinds = (UPRIGHT,) + (TURNED,) * rotations + (CHECK,) * checks
    cached = None if cache is None else _load_cached(cache, paths, kinds)
    if cached is not None:
        return cached
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
        cache.parent.mkdir(parents=True, exist_ok=True)
        write_atomic_npz(cache, points=points, angles=angles, kinds=np.array(kinds), files=file_key(paths))
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


def ranked_labels(scores: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """(m, 5) labels: for each hand, its `count` fingers with the highest scores extended."""
    order = np.argsort(-scores, axis=-1)
    labels = np.zeros(scores.shape, dtype=int)
    for row, (ranking, count) in enumerate(zip(order, counts)):
        labels[row, ranking[:count]] = 1
    return labels


def fit_hands(points: np.ndarray, labels: np.ndarray, known: np.ndarray, ranked: np.ndarray, counts: np.ndarray,
              l2: float, jitter: float = 0.0, jitter_copies: int = 0, seed: int = 0) -> FingerModel:
    """The model on hands whose finger labels are `known`, then, when some are to be `ranked`
    (only their count is known), again on all: their labels are the count's highest-scoring
    fingers by the first model."""
    model = fit_points(points[known], labels[known], l2, jitter, jitter_copies, seed)
    if not ranked.any():
        return model
    labels = labels.copy()
    labels[ranked] = ranked_labels(model.scores(points[ranked]), counts[ranked])
    use = known | ranked
    return fit_points(points[use], labels[use], l2, jitter, jitter_copies, seed)


NO_HAND, DECLINED = -1, -2


def read_points(model: FingerModel, points: np.ndarray, margin: float | None = None) -> np.ndarray:
    """The count read from each hand's landmarks as the reader does, DECLINED where it declines
    (implausible landmarks, or a finger within its margin of the boundary: finger_margins(margin))."""
    if not len(points):
        return np.zeros(0, dtype=int)
    scores = model.scores(points)
    counts = (scores > 0).sum(axis=-1)
    doubtful = np.array([doubt_about(hand) is not None for hand in points])
    counts[doubtful | unclear_fingers(scores, margin).any(axis=-1)] = DECLINED
    return counts


def fit_detections(detections: Detections, data: TrainingData, use: np.ndarray, l2: float, jitter: float,
                   jitter_copies: int, seed: int) -> FingerModel:
    """fit_hands on the (copies, photos) hands `use` picks among those whose labels are known or
    ranked; every copy of a photo carries that photo's labels."""
    copies = detections.points.shape[0]
    every = lambda a: np.broadcast_to(a, (copies,) + a.shape)  # noqa: E731
    train = use & every(data.known | data.ranked)
    return fit_hands(detections.points[train], every(data.labels)[train], every(data.known)[train],
                     every(data.ranked)[train], every(data.counts)[train], l2, jitter, jitter_copies, seed)


def held_out_reads(detections: Detections, data: TrainingData, folds: int, l2: float, seed: int,
                   jitter: float = 0.0, jitter_copies: int = 0, margin: float | None = None) -> np.ndarray:
    """Grouped k-fold: (copies, photos) counts read for groups left out of training (NO_HAND,
    DECLINED)."""
    copies, n = detections.points.shape[:2]
    unique = np.unique(data.groups)
    fold_of_group = dict(zip(np.random.default_rng(seed).permutation(unique), np.arange(len(unique)) % folds))
    fold = np.array([fold_of_group[g] for g in data.groups])
    predicted = np.full((copies, n), NO_HAND)
    found = detections.found
    for k in range(folds):
        train = found & (fold != k)[None, :] & detections.trainable[:, None]
        model = fit_detections(detections, data, train, l2, jitter, jitter_copies, seed + k)
        test = found & (fold == k)[None, :]
        predicted[test] = read_points(model, detections.points[test], margin)
    return predicted


def kind_results(predicted: np.ndarray, counts: np.ndarray, kinds: Sequence[str]) -> dict[str, EvaluationResult]:
    """The reads of each kind of copy (NO_HAND, DECLINED or a count per photo) as the evaluation's
    EvaluationResult, so training and evaluation count right, wrong, declined and missed alike."""
    results = {}
    kinds = np.array(kinds)
    for name in dict.fromkeys(kinds):
        got = predicted[kinds == name].ravel()
        results[str(name)] = EvaluationResult(labels=[int(c) for c in np.tile(counts, int((kinds == name).sum()))],
                                              counts=[None if g < 0 else int(g) for g in got],
                                              declined=[bool(g == DECLINED) for g in got])
    return results


def summarise(predicted: np.ndarray, counts: np.ndarray, kinds: Sequence[str]) -> dict:
    """{kind: accuracy, wrong, declined, per_class {count: [n, correct]}, declined_per_class,
    missed, photos}; accuracy: right / all, wrong: a wrong count / all (declined and missed are
    neither)."""
    return {name: _summary(result) for name, result in kind_results(predicted, counts, kinds).items()}


def _summary(result: EvaluationResult) -> dict:
    table = result.table()
    return {"accuracy": float(result.accuracy), "wrong": float(result.wrong), "declined": result.declined_count,
            "per_class": {label: [n, correct] for label, n, correct, *_ in table},
            "declined_per_class": {label: declined for label, *_, declined in table},
            "missed": result.missed, "photos": len(result.labels)}


def cross_validate(detections: Detections, labels: np.ndarray, known: np.ndarray, counts: np.ndarray,
                   groups: np.ndarray, folds: int, l2: float, seed: int, jitter: float = 0.0,
                   jitter_copies: int = 0, margin: float | None = None) -> dict:
    """Grouped k-fold on one set of photos: summarise() of the reads of people left out."""
    data = TrainingData(labels=labels, known=known, ranked=np.zeros(len(counts), dtype=bool), counts=counts,
                        groups=groups)
    predicted = held_out_reads(detections, data, folds, l2, seed, jitter, jitter_copies, margin)
    return summarise(predicted, counts, detections.kinds)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tools.train_gestures", description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", type=Path, nargs="+", metavar="folder",
                        help="folders with subfolders 0-5 of hand photos (hand-counts' or hand-counting's layout)")
    parser.add_argument("--rotations", type=int, default=8, help="changed (turned, rescaled, blurred, ...) "
                        "copies of each photo to train on (default 8)")
    parser.add_argument("--rotations-counting", type=int, default=2, help="the same for hand-counting's "
                        "2,344 photos (default 2: MediaPipe over them is slow)")
    parser.add_argument("--checks", type=int, default=1, help="copies turned with cubic interpolation, "
                        "only counted in the cross-validation (default 1)")
    parser.add_argument("--jitter", type=float, default=0.02, help="landmark jitter, a fraction of the palm's "
                        "length (default 0.02)")
    parser.add_argument("--jitter-copies", type=int, default=2, help="jittered copies of each training hand "
                        "(default 2)")
    parser.add_argument("--max-angle", type=float, default=45.0, help="largest turn in degrees (default 45)")
    parser.add_argument("--folds", type=int, default=7, help="cross-validation folds (default 7)")
    parser.add_argument("--l2", type=float, default=0.1, help="L2 penalty on standardised weights (default 0.1)")
    parser.add_argument("--margin", type=float, default=None, help="declined when a finger's score is nearer "
                        "than this to the boundary, the same for every finger (default: the reader's margins, "
                        f"{', '.join(f'{m:g}' for m in FINGER_MARGINS)} thumb to pinky)")
    parser.add_argument("--seed", type=int, default=1, help="seed of turns and folds (default 1; the "
                        "evaluation's turns use seed 0)")
    parser.add_argument("--cache", type=Path, help="folder keeping the detections between runs (one npz per "
                        "folder, used again only for the same photos, file times and copies)")
    parser.add_argument("--out", type=Path, default=MODEL_PATH, help=f"model file (default {MODEL_PATH})")
    args = parser.parse_args(argv)
    if min(args.rotations, args.rotations_counting) < 0 or args.folds < 2:
        raise SketchSearchError("--rotations must be 0 or more and --folds at least 2")
    return args


def load_folder(folder: Path, args: argparse.Namespace) -> tuple[TrainingData, Detections]:
    photos = labelled_photos(folder)
    data = folder_data(photos)
    paths = [path for path, _ in photos]
    rotations = args.rotations_counting if data.grouped_by.startswith("set") else args.rotations
    kinds = (UPRIGHT,) + (TURNED,) * rotations + (CHECK,) * args.checks
    cache = None if args.cache is None else args.cache / cache_file(folder, paths, kinds, args.max_angle, args.seed)
    return data, detect_copies(paths, rotations, args.max_angle, args.seed, cache, args.checks)


def print_report(name: str, predicted: np.ndarray, counts: np.ndarray, kinds: Sequence[str], how: str) -> dict:
    """The evaluation's table and lines for each kind of copy of one folder; its summary."""
    results = kind_results(predicted, counts, kinds)
    for kind, result in results.items():
        print(f"cross-validated ({how}), {name}, {kind}:")
        print("\n".join(report_lines(result)))
    return {kind: _summary(result) for kind, result in results.items()}


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=True)  # training reports its progress in the log
    parts = [load_folder(folder, args) for folder in args.folders]
    data, detections = combine(parts)
    how = f"{args.folds} folds, " + "; ".join(f"{f.name} by {d.grouped_by}" for f, (d, _) in zip(args.folders, parts))
    predicted = held_out_reads(detections, data, args.folds, args.l2, args.seed, args.jitter, args.jitter_copies,
                               args.margin)
    cv, start = {}, 0
    for folder, (part, _) in zip(args.folders, parts):
        columns = slice(start, start + len(part.counts))
        start = columns.stop
        present = [i for i, kind in enumerate(detections.kinds)
                   if detections.found[i, columns].any() or kind == UPRIGHT]
        cv[folder.name] = print_report(folder.name, predicted[present, columns], part.counts,
                                       [detections.kinds[i] for i in present], how)
    # The shipped model trains on the checks' copies too: nobody is left out any more.
    model = fit_detections(detections, data, detections.found, args.l2, args.jitter, args.jitter_copies,
                           args.seed)
    FingerModel(model.classifiers, info=model_info(args, parts, how, cv)).save(args.out)
    print(f"saved {args.out}")
    return 0


def model_info(args: argparse.Namespace, parts: Sequence[tuple[TrainingData, Detections]], how: str,
               cv: dict) -> dict:
    folders = [f"{folder.name}: {len(d.counts)} photos ({int(d.known.sum())} with finger labels, "
               f"{int(d.ranked.sum())} labelled by ranking), {len(np.unique(d.groups))} groups by {d.grouped_by}, "
               f"upright + {det.kinds.count(TURNED)} changed copies + {det.kinds.count(CHECK)} turned cubic"
               for folder, (d, det) in zip(args.folders, parts)]
    return {
        "trained_on": "; ".join(folders) + f"; changed copies turned up to {args.max_angle:g} degrees, "
                      "rescaled 0.5-2x by a random interpolation, some blurred, gain 0.6-1.4, offset +-30; "
                      f"each hand with {args.jitter_copies} copies jittered by {args.jitter:g} of the palm",
        "l2": args.l2, "jitter": args.jitter, "jitter_copies": args.jitter_copies, "margin": list(finger_margins(args.margin)),
        "cross_validation": {"folds": args.folds, "grouped_by": how, **cv},
    }


if __name__ == "__main__":
    run_command(main)
