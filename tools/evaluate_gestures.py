"""Measure the finger counter on labelled hand photos (DIR/<N>/*, N = extended fingers, 0-5).

    python -m tools.evaluate_gestures --eval DIR [--rotate 45] [--seed 0] [--interpolation cubic]
                                      [--motion-blur 15]

Each photo is read as photo reading does: the hand detect_in_photo finds, looked at again in the
other views of sketch/photo_detection.py CHECK_VIEWS, and counted only where most of the looks
read the same count (sketch/gestures.py read_looks); otherwise the read is declined.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sketch.gestures import FingerModel, read_hand, read_looks
from sketch.tracker import Hand, HandTracker
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.errors import NotAnImageError, SketchSearchError
from sketch_search.common.files import is_photo_name, write_atomically

logger = logging.getLogger(__name__)

# --- evaluation on labelled photos ----------------------------------------------------


class LabelledPhotosError(SketchSearchError):
    """A folder given for evaluation or training is not laid out as DIR/<count>/<photo>."""


def labelled_photos(root: Path) -> list[tuple[Path, int]]:
    """(photo, extended-finger count) for every image in root/<N>/ with N in 0-5, sorted."""
    root = Path(root)
    if not root.is_dir():
        raise LabelledPhotosError(f"{root} is not a folder: give a folder with subfolders 0 to 5 of hand photos")
    photos = []
    for folder in sorted(root.iterdir()):
        if not folder.is_dir():
            continue
        if not (folder.name.isdigit() and 0 <= int(folder.name) <= 5):
            logger.warning("skipping %s: not a finger count from 0 to 5", folder)
            continue
        photos += [(path, int(folder.name)) for path in sorted(folder.iterdir())
                   if path.is_file() and is_photo_name(path.name)]
    if not photos:
        raise LabelledPhotosError(f"{root} has no photos in subfolders named 0 to 5 (the number of extended fingers)")
    return photos


def read_rgb(path: Path) -> np.ndarray:
    """An image file as an RGB uint8 array, turned upright by its EXIF orientation."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, UnidentifiedImageError) as exc:
        raise NotAnImageError(f"{path} cannot be read as an image ({exc}); remove or replace it") from exc


INTERPOLATIONS = ("linear", "cubic", "nearest", "area", "lanczos")


def cv2_interpolation(name: str) -> int:
    import cv2

    return {"linear": cv2.INTER_LINEAR, "cubic": cv2.INTER_CUBIC, "nearest": cv2.INTER_NEAREST,
            "area": cv2.INTER_AREA, "lanczos": cv2.INTER_LANCZOS4}[name]


def rotate_photo(image: np.ndarray, degrees: float, interpolation: str = "linear") -> np.ndarray:
    """The photo turned counter-clockwise, on a canvas that holds all of it.

    The new corners repeat the photo's edge pixels, so the background stays background
    and an arm cut by the frame still runs out of it, as in a photo taken turned.
    """
    import cv2

    height, width = image.shape[:2]
    matrix = cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0)
    cos, sin = abs(matrix[0, 0]), abs(matrix[0, 1])
    new_w, new_h = int(round(height * sin + width * cos)), int(round(height * cos + width * sin))
    matrix[0, 2] += new_w / 2 - width / 2
    matrix[1, 2] += new_h / 2 - height / 2
    return cv2.warpAffine(image, matrix, (new_w, new_h), flags=cv2_interpolation(interpolation),
                          borderMode=cv2.BORDER_REPLICATE)


def rotation_angles(count: int, max_degrees: float, seed: int) -> np.ndarray:
    """One angle in [-max_degrees, max_degrees] per photo, the same for the same seed."""
    if max_degrees <= 0:
        return np.zeros(count)
    return np.random.default_rng(seed).uniform(-max_degrees, max_degrees, count)


# The frame width --motion-blur's length is given in: a laptop webcam's 640 x 480.
BLUR_FRAME_WIDTH = 640


def motion_blur(image: np.ndarray, length: float, degrees: float) -> np.ndarray:
    """The photo smeared along a line `length` pixels long at `degrees` (counter-clockwise from
    the x axis), as a hand moving while the camera exposes; the edges repeat outward."""
    import cv2

    if length < 2:
        return image
    size = int(np.ceil(length)) | 1                  # odd: the line is centred on a pixel
    kernel = np.zeros((size, size), np.float32)
    centre = (size - 1) / 2
    dx, dy = np.cos(np.radians(degrees)), -np.sin(np.radians(degrees))
    for t in np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * size):
        kernel[int(round(centre + t * dy)), int(round(centre + t * dx))] = 1.0
    return cv2.filter2D(image, -1, kernel / kernel.sum(), borderType=cv2.BORDER_REPLICATE)


def motion_blurs(count: int, length: float, seed: int):
    """A `change` for detection: photo i smeared by `length` pixels of a BLUR_FRAME_WIDTH-wide
    frame (scaled to the photo's width) in a direction drawn per photo, the same for the same seed."""
    directions = np.random.default_rng(seed + 2000).uniform(0, 180, count)

    def change(i: int, image: np.ndarray) -> np.ndarray:
        return motion_blur(image, length * image.shape[1] / BLUR_FRAME_WIDTH, float(directions[i]))
    return change


def _images(paths: Sequence[Path], angles: Sequence[float] | None, interpolation: str, change,
            progress: bool) -> Iterator[np.ndarray]:
    """Each photo as RGB, changed by `change(i, image)` when given, then turned by its angle."""
    from tqdm import tqdm

    for i, path in enumerate(tqdm(paths, desc="detecting hands", unit="photo", disable=not progress)):
        image = read_rgb(path)
        if change is not None:
            image = change(i, image)
        if angles is not None and angles[i]:
            image = rotate_photo(image, float(angles[i]), interpolation)
        yield image


def detect_photos(paths: Sequence[Path], angles: Sequence[float] | None = None,
                  tracker: HandTracker | None = None, progress: bool = True,
                  interpolation: str = "linear", change=None) -> list[Hand | None]:
    """A hand (or None) for each photo, each first turned by its angle when angles are given.

    `change`, when given, is called with (photo number, RGB image) and gives the image to use
    (training's augmentations); the turn is applied after it.
    """
    from sketch.photo_detection import detect_in_photo, photo_tracker

    with photo_tracker() if tracker is None else nullcontext(tracker) as using:
        return [detect_in_photo(image, using) for image in _images(paths, angles, interpolation, change, progress)]


def detect_looks(paths: Sequence[Path], angles: Sequence[float] | None = None, progress: bool = True,
                 interpolation: str = "linear", change=None) -> list[list[Hand | None]]:
    """Every look at each photo (sketch/photo_detection.py looks_in_photo; [] where no hand was
    found), each photo first changed by `change` (as detect_photos) and turned by its angle."""
    from sketch.photo_detection import looks_in_photo, photo_tracker

    with photo_tracker() as tracker:
        return [looks_in_photo(image, tracker) for image in _images(paths, angles, interpolation, change, progress)]


def file_key(paths: Sequence[Path]) -> np.ndarray:
    """What a cache of these photos' detections is valid for: each path with its mtime and size."""
    return np.array([f"{Path(p).resolve()}|{Path(p).stat().st_mtime_ns}|{Path(p).stat().st_size}" for p in paths])


def write_atomic_npz(path: Path, **arrays: np.ndarray) -> None:
    """np.savez_compressed through a temporary file renamed into place (never half a cache)."""
    write_atomically(path, lambda tmp: np.savez_compressed(tmp, **arrays))


# Bump when photo detection changes what it finds (views, second look, other looks): cached hands
# are then stale.
DETECTION_VERSION = "4: PHOTO_VIEWS + second look + CHECK_VIEWS' looks"


def cached_detect(paths: Sequence[Path], angles: np.ndarray | None, interpolation: str, progress: bool,
                  cache: Path | None, change=None, change_key: str = "") -> list[list[Hand | None]]:
    """detect_looks, kept in an npz under `cache` for the same photos (path, mtime, size), turns,
    change (`change_key` names it) and DETECTION_VERSION, so evaluating another model does not
    run MediaPipe again."""
    if cache is None:
        return detect_looks(paths, angles, progress=progress, interpolation=interpolation, change=change)
    key = "\n".join([*file_key(paths), DETECTION_VERSION, interpolation,
                      "" if angles is None else ",".join(f"{a:.6f}" for a in angles)]
                     + ([change_key] if change_key else []))
    path = cache / f"eval-{Path(paths[0]).parents[1].name}-{hashlib.sha1(key.encode()).hexdigest()[:12]}.npz"
    if path.is_file():
        logger.info("using hands cached in %s", path)
        return _unpack_looks(np.load(path))
    looks = detect_looks(paths, angles, progress=progress, interpolation=interpolation, change=change)
    write_atomic_npz(path, **_pack_looks(looks))
    logger.info("cached the looks at %d photos in %s", len(looks), path)
    return looks


def _pack_looks(looks: Sequence[Sequence[Hand | None]]) -> dict[str, np.ndarray]:
    """(photos, looks, ...) arrays, NaN landmarks where a look (or the photo) has no hand."""
    width = max([len(lk) for lk in looks] + [1])
    hands = [list(lk) + [None] * (width - len(lk)) for lk in looks]
    return {"landmarks": np.array([[np.full((21, 3), np.nan, np.float32) if h is None else h.landmarks for h in row]
                                   for row in hands], dtype=np.float32).reshape(len(hands), width, 21, 3),
            "handedness": np.array([["" if h is None else h.handedness for h in row] for row in hands]),
            "scores": np.array([[np.nan if h is None else h.score for h in row] for row in hands]),
            "sizes": np.array([[(0, 0) if h is None else h.image_size for h in row] for row in hands])}


def _unpack_looks(data) -> list[list[Hand | None]]:
    # Each item of an npz is decompressed again on every access: take each array out once.
    landmarks, handedness, scores, sizes = (data[name] for name in ("landmarks", "handedness", "scores", "sizes"))
    looks = []
    for i in range(len(landmarks)):
        row = [None if np.isnan(landmarks[i, k, 0, 0]) else
               Hand(landmarks=landmarks[i, k], handedness=str(handedness[i, k]), score=float(scores[i, k]),
                    image_size=tuple(int(v) for v in sizes[i, k]))
               for k in range(landmarks.shape[1])]
        looks.append([] if row[0] is None else row)
    return looks


@dataclass
class EvaluationResult:
    """Labels and reads of a set of photos. counts: the count read, None where no hand was found
    or the read was declined (`declined` True: a hand was found but not read)."""

    labels: list[int]
    counts: list[int | None]
    declined: list[bool] | None = None

    def __post_init__(self) -> None:
        if self.declined is None:
            self.declined = [False] * len(self.labels)

    def table(self) -> list[tuple[int, int, int, float, int, int]]:
        """(class, n, correct, accuracy, no hand, declined) per class present."""
        rows = []
        for label in sorted(set(self.labels)):
            rows_of = [(c, d) for t, c, d in zip(self.labels, self.counts, self.declined) if t == label]
            correct = sum(c == label for c, _ in rows_of)
            declined = sum(d for _, d in rows_of)
            missed = sum(c is None and not d for c, d in rows_of)
            rows.append((label, len(rows_of), correct, correct / len(rows_of), missed, declined))
        return rows

    @property
    def missed(self) -> int:
        """Photos where no hand was found."""
        return sum(c is None and not d for c, d in zip(self.counts, self.declined))

    @property
    def declined_count(self) -> int:
        return sum(self.declined)

    @property
    def accuracy(self) -> float:
        """Right reads over all photos (a declined or missed hand is not right)."""
        return sum(t == c for t, c in zip(self.labels, self.counts)) / len(self.labels)

    @property
    def wrong(self) -> float:
        """Wrong counts over all photos (a declined or missed hand is not wrong)."""
        return sum(c is not None and t != c for t, c in zip(self.labels, self.counts)) / len(self.labels)


def score_hands(labels: Sequence[int], hands: Iterable[Hand | Sequence[Hand | None] | None],
                model: FingerModel | None = None, margin: float | None = None) -> EvaluationResult:
    """Read every photo's hand (a Hand), or its looks (a list, read by read_looks; [] or None: no
    hand found); declined reads are kept apart from misses."""
    readings = [None if not hand else read_hand(hand, model, margin) if isinstance(hand, Hand)
                else read_looks(hand, model, margin) for hand in hands]
    return EvaluationResult(labels=list(labels),
                            counts=[None if r is None else r.count for r in readings],
                            declined=[r is not None and r.declined for r in readings])


def evaluate_folder(root: Path, rotate: float = 0.0, seed: int = 0, progress: bool = True,
                    interpolation: str = "linear", cache: Path | None = None,
                    blur: float = 0.0) -> EvaluationResult:
    """Count fingers on every photo of root/<N>/ (smeared by `blur` pixels of motion, then turned
    by up to `rotate` degrees, both seeded) as photo reading does: the count most looks at the
    photo agree on (read_looks); `cache`: a folder keeping the looks between runs."""
    photos = labelled_photos(root)
    angles = rotation_angles(len(photos), rotate, seed) if rotate > 0 else None
    change = motion_blurs(len(photos), blur, seed) if blur > 0 else None
    looks = cached_detect([path for path, _ in photos], angles, interpolation, progress, cache,
                          change=change, change_key=f"motion blur {blur:g} seed {seed}" if change else "")
    return score_hands([label for _, label in photos], looks)


def report_lines(result: EvaluationResult) -> list[str]:
    """The per-class table, then `no hand detected: N of M`, `declined: N of M`, `wrong: 0.xxxx`
    and, last, `accuracy: 0.xxxx`; no other line begins with a digit (the table's rows are indented)."""
    lines = [f"{'class':>6}  {'n':>5}  {'correct':>7}  {'accuracy':>8}  {'no hand':>7}  {'declined':>8}"]
    for label, n, correct, accuracy, missed, declined in result.table():
        lines.append(f"{label:>6}  {n:>5}  {correct:>7}  {accuracy:>8.4f}  {missed:>7}  {declined:>8}")
    total = len(result.labels)
    lines.append(f"no hand detected: {result.missed} of {total} (not right, not wrong)")
    lines.append(f"declined: {result.declined_count} of {total} (not right, not wrong)")
    lines.append(f"wrong: {result.wrong:.4f}")
    lines.append(f"accuracy: {result.accuracy:.4f}")
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.evaluate_gestures",
                                     description="Measure the finger counter on labelled hand photos.")
    parser.add_argument("--eval", dest="folder", type=Path, required=True,
                        help="folder with subfolders 0-5 (extended fingers) of hand photos")
    parser.add_argument("--rotate", type=float, default=0.0, metavar="DEGREES",
                        help="turn each photo by a random angle in [-DEGREES, DEGREES] first")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random angles (default 0)")
    parser.add_argument("--interpolation", choices=INTERPOLATIONS, default="linear",
                        help="how turned photos are resampled (default linear; the held-out check uses cubic)")
    parser.add_argument("--motion-blur", type=float, default=0.0, metavar="PIXELS",
                        help="smear each photo first, in a random direction, by PIXELS of a 640 px wide "
                             "frame (a hand moving while a webcam exposes; default 0: none)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--cache", type=Path, help="folder keeping the hands found (an npz per folder and "
                        "turn, used again only for the same photos and file times)")
    args = parser.parse_args(argv)
    setup_logging()
    if args.rotate < 0:
        raise LabelledPhotosError(f"--rotate must be 0 or more degrees, got {args.rotate}")
    if not 0 <= args.motion_blur <= BLUR_FRAME_WIDTH:
        raise LabelledPhotosError(f"--motion-blur must be 0 to {BLUR_FRAME_WIDTH} pixels, got {args.motion_blur:g}")
    result = evaluate_folder(args.folder, rotate=args.rotate, seed=args.seed, progress=not args.no_progress,
                             interpolation=args.interpolation, cache=args.cache, blur=args.motion_blur)
    print("\n".join(report_lines(result)))
    return 0


if __name__ == "__main__":
    run_command(main)
