"""Image-caption pairs for fine-tuning the captioner.

Two sources: a folder in Hugging Face's `imagefolder` convention (images beside a
`metadata.jsonl` or `metadata.csv` whose rows name a `file_name` and a caption column, default
`text`; split subfolders such as train/ and test/ each with their own metadata are read
together), or a hub dataset with an image and a text column (needs the `datasets` package).
"""
from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

from retrieval.images import load_image
from sketch_search.common.errors import DatasetError
from sketch_search.common.files import is_photo_name

log = logging.getLogger(__name__)

METADATA_NAMES = ("metadata.jsonl", "metadata.csv")



class CaptionPairs(Protocol):
    """What the trainer reads: an indexable collection of (RGB image, caption)."""

    def __len__(self) -> int: ...

    def image(self, index: int) -> Image.Image: ...

    def text(self, index: int) -> str: ...


@dataclass(frozen=True)
class ImageFolderPairs:
    """Pairs listed by imagefolder metadata files; images are decoded when asked for."""

    paths: tuple[Path, ...]
    texts: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)

    def image(self, index: int) -> Image.Image:
        return load_image(self.paths[index])

    def text(self, index: int) -> str:
        return self.texts[index]


def _rows(metadata: Path) -> list[tuple[int, dict]]:
    """(line number, row) of a metadata.jsonl or metadata.csv file."""
    if metadata.suffix == ".csv":
        with open(metadata, newline="", encoding="utf-8") as handle:
            return [(number, row) for number, row in enumerate(csv.DictReader(handle), start=2)]
    rows = []
    with open(metadata, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DatasetError(f"{metadata}:{number}: not a JSON line ({exc.msg}); "
                                   f"each line must be an object with file_name and text") from None
            if not isinstance(row, dict):
                raise DatasetError(f"{metadata}:{number}: not a JSON object; "
                                   f"each line must be an object with file_name and text")
            rows.append((number, row))
    return rows


def load_imagefolder(folder: str | Path, caption_column: str = "text") -> ImageFolderPairs:
    """Every (image path, caption) listed by the metadata files under `folder`.

    Raises DatasetError (one line) for a missing folder, no metadata, a malformed row, or a
    listed image that is not there.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"--data {folder}: not a folder; pass a folder of images with a "
                           f"metadata.jsonl (file_name, {caption_column}) as made by "
                           f"`python -m tools.make_sketch_captions`")
    metadata_files = sorted(p for name in METADATA_NAMES for p in folder.rglob(name))
    if not metadata_files:
        raise DatasetError(f"--data {folder}: no metadata.jsonl or metadata.csv in it; add one with a "
                           f"line {{\"file_name\": ..., \"{caption_column}\": ...}} per image")
    paths: list[Path] = []
    texts: list[str] = []
    for metadata in metadata_files:
        for number, row in _rows(metadata):
            name, text = row.get("file_name"), row.get(caption_column)
            if not isinstance(name, str) or not name or not isinstance(text, str) or not text.strip():
                raise DatasetError(f"{metadata}:{number}: needs a non-empty `file_name` and "
                                   f"`{caption_column}` (found keys {sorted(row)})")
            path = metadata.parent / name
            if not path.is_file():
                raise DatasetError(f"{metadata}:{number}: {name} is not there; fix the file_name "
                                   f"or remove the line")
            if not is_photo_name(path.name):
                raise DatasetError(f"{metadata}:{number}: {name} has no image extension")
            paths.append(path)
            texts.append(" ".join(text.split()))
    if not paths:
        raise DatasetError(f"--data {folder}: its metadata lists no images")
    log.info("%d image-caption pairs from %d metadata file(s) under %s", len(paths),
             len(metadata_files), folder)
    return ImageFolderPairs(tuple(paths), tuple(texts))


class HubPairs:
    """A hub dataset's rows; its image column holds PIL images (datasets' Image feature)."""

    def __init__(self, dataset, image_column: str, caption_column: str):
        self.dataset = dataset
        self.image_column = image_column
        self.texts = [" ".join(str(t).split()) for t in dataset[caption_column]]

    def __len__(self) -> int:
        return len(self.texts)

    def image(self, index: int) -> Image.Image:
        image = self.dataset[index][self.image_column]
        return image.convert("RGB") if image.mode != "RGB" else image

    def text(self, index: int) -> str:
        return self.texts[index]


def load_hub_dataset(name: str, split: str = "train", image_column: str = "image",
                     caption_column: str = "text") -> HubPairs:
    """A Hugging Face hub dataset (downloaded and cached by `datasets`) as caption pairs."""
    try:
        import datasets
    except ImportError:
        raise DatasetError("--hf-dataset needs the `datasets` package: `pip install datasets`, "
                           "or pass a local imagefolder with --data DIR") from None
    try:
        dataset = datasets.load_dataset(name, split=split)
    except Exception as exc:  # network, auth and naming errors come in many types
        raise DatasetError(f"--hf-dataset {name}: cannot load split {split!r} "
                           f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})") from exc
    missing = [c for c in (image_column, caption_column) if c not in dataset.column_names]
    if missing:
        raise DatasetError(f"--hf-dataset {name}: no column {missing[0]!r} (columns: "
                           f"{', '.join(dataset.column_names)}); pass --image-column/--caption-column")
    return HubPairs(dataset, image_column, caption_column)
