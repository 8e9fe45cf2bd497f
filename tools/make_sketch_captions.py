"""Make the captioner's training set from a Sketchy-style folder of sketches.

`python -m tools.make_sketch_captions --sketchy DIR --out DIR [--per-class N]`

DIR holds one folder per class (`airplane/`, `alarm_clock/`, ...) of sketch images (in the
Sketchy download: `256x256/sketch/tx_000000000000`). The output is an `imagefolder`:
`OUT/<class>/<image>` plus `OUT/metadata.jsonl` with one line per image,
`{"file_name", "text", "class"}`, where text is the seed project's answer
"Convert a <class> into a high-resolution color image with a white background".
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import random
import re
import shutil
from pathlib import Path

from tqdm import tqdm

from captioning.prompt import DEFAULT_TEMPLATE
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.errors import DatasetError
from sketch_search.common.files import is_photo_name, write_text_atomically

log = logging.getLogger(__name__)

LINK_MODES = ("copy", "hardlink", "symlink")


def class_phrase(class_name: str) -> str:
    """A folder name as words: "alarm_clock" -> "alarm clock", "car_(sedan)" -> "car sedan"."""
    words = re.sub(r"[_\-()\[\]]+", " ", class_name)
    return " ".join(words.split()).lower()


def with_article(phrase: str) -> str:
    """"a"/"an" by the first letter, the rule captioning.prompt uses for bare subjects."""
    return ("an " if phrase[:1] in "aeiou" else "a ") + phrase


def caption_for_class(class_name: str, template: str = DEFAULT_TEMPLATE) -> str:
    """The training caption for a class folder name."""
    phrase = class_phrase(class_name)
    if not phrase:
        raise DatasetError(f"class folder {class_name!r} has no letters to name the class")
    return template.format(subject=with_article(phrase))


def sketch_classes(sketchy: Path) -> dict[str, list[Path]]:
    """Class folder name -> its image files (sorted), for every class folder with images."""
    if not sketchy.is_dir():
        raise DatasetError(f"--sketchy {sketchy}: not a folder; pass the folder whose subfolders "
                           f"are the classes")
    classes = {}
    for folder in sorted(p for p in sketchy.iterdir() if p.is_dir() and not p.name.startswith(".")):
        images = sorted(p for p in folder.iterdir() if p.is_file() and is_photo_name(p.name))
        if images:
            classes[folder.name] = images
    if not classes:
        raise DatasetError(f"--sketchy {sketchy}: no class folders with images in it; pass the folder "
                           f"whose subfolders are the classes (in Sketchy: 256x256/sketch/tx_000000000000)")
    return classes


def _place(source: Path, target: Path, mode: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists() or target.is_symlink():
        target.unlink()
    if mode == "symlink":
        target.symlink_to(source.resolve())
        return
    if mode == "hardlink":
        try:
            os.link(source, target)
            return
        except OSError:  # another file system, or links not allowed: a copy is always possible
            pass
    shutil.copy2(source, target)


def make_sketch_dataset(sketchy: str | Path, out: str | Path, per_class: int | None = None,
                        seed: int = 0, link: str = "copy", template: str = DEFAULT_TEMPLATE,
                        show_progress: bool = True) -> Path:
    """Write OUT/<class>/* and OUT/metadata.jsonl; returns the metadata file.

    `per_class`: at most this many sketches per class, a seeded random choice (all when None).
    `link`: copy the images, hard-link them (falls back to a copy) or symlink them.
    """
    if link not in LINK_MODES:
        raise ValueError(f"link must be one of {LINK_MODES}")
    if per_class is not None and per_class < 1:
        raise DatasetError(f"--per-class {per_class}: must be at least 1")
    sketchy, out = Path(sketchy).expanduser(), Path(out).expanduser()
    classes = sketch_classes(sketchy)
    if out.resolve() == sketchy.resolve() or sketchy.resolve() in out.resolve().parents:
        raise DatasetError(f"--out {out}: must not be inside --sketchy {sketchy}")
    chooser = random.Random(seed)
    rows = []
    for name, images in classes.items():
        if per_class is not None and len(images) > per_class:
            images = sorted(chooser.sample(images, per_class))
        text = caption_for_class(name, template)
        rows += [{"file_name": f"{name}/{image.name}", "text": text, "class": name, "_source": image}
                 for image in images]
    out.mkdir(parents=True, exist_ok=True)
    for row in tqdm(rows, desc="sketches", unit="img", disable=not show_progress):
        _place(row.pop("_source"), out / row["file_name"], link)
    metadata = out / "metadata.jsonl"
    # The metadata appears last and whole: a folder with one lists only images that are there.
    write_text_atomically(metadata, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))
    log.info("%d sketches of %d classes written to %s", len(rows), len(classes), out)
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sketchy", type=Path, required=True,
                        help="folder of class folders of sketches (Sketchy: 256x256/sketch/tx_000000000000)")
    parser.add_argument("--out", type=Path, required=True, help="imagefolder to write")
    parser.add_argument("--per-class", type=int, default=None,
                        help="at most N sketches per class, chosen at random with --seed (default all)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--link", choices=LINK_MODES, default="copy",
                        help="copy the images (default), hard-link or symlink them")
    parser.add_argument("--template", default=DEFAULT_TEMPLATE,
                        help="the caption, with {subject} where 'a <class>' goes")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if "{subject}" not in args.template:
        parser.error("--template must contain {subject}")
    setup_logging(args.verbose)
    metadata = make_sketch_dataset(args.sketchy, args.out, args.per_class, args.seed, args.link,
                                   args.template)
    count = sum(1 for _ in open(metadata, encoding="utf-8"))
    print(f"{count} sketches with captions in {metadata}")
    return 0


if __name__ == "__main__":
    run_command(main)
