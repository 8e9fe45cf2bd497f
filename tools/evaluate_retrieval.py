"""Measure retrieval on a labelled set: which photos each sketch finds, per class and overall.

    python -m tools.evaluate_retrieval --sketches DIR --photos DIR [--checkpoints DIR]
        [--modes generated,sketch,caption] [--embedder base] [--clip DIR] [--out report]
        [--top-k 1,5,10] [--precision-at 100,200] [--per-class N]

Layout: DIR/<class>/<images> for both sketches and photos (Sketchy: sketch/tx_000000000000 and
photo/tx_000000000000). Every sketch is a query against all photos; a photo is relevant when
its class folder has the sketch's class name. Modes:

- generated: the product's route (sketch -> BLIP caption -> pix2pix-turbo image -> DINOv2 vector)
- sketch: the sketch's own DINOv2 vector (the binarised preview the captioner sees)
- caption: CLIP text vector of "a photo of <caption's subject>" against CLIP photo vectors
  (needs --clip DIR; reported as unavailable without it)

Writes OUT.md and OUT.json: mAP, P@k, acc@k (metric definitions in retrieval/metrics.py and in
the report) and the median seconds per query of each mode. Photos are embedded once per run.
"""
from __future__ import annotations

import argparse
import json
import logging
import random
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from tqdm import tqdm

from captioning.prompt import subject_of
from generation.preprocess import prepare_sketch
from retrieval.images import load_image
from retrieval.search import top_k
from sketch_search.app.cli import add_model_arguments, positive_int, quiet_model_libraries, settings_from
from sketch_search.app.settings import Settings
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.errors import BlankSketchError, DatasetError, GalleryError, NotAnImageError, SketchSearchError
from sketch_search.common.files import is_photo_name, write_text_atomically
from tools.retrieval_metrics import mean_metrics, metric_names, query_metrics

log = logging.getLogger(__name__)

MODES = ("generated", "sketch", "caption")
MODE_ROUTES = {
    "generated": "sketch -> BLIP caption -> pix2pix-turbo image -> DINOv2 vector",
    "sketch": "the sketch's own DINOv2 vector",
    "caption": "CLIP text vector of the caption's subject -> CLIP photo vectors",
}
DEFAULT_CLIP_TEMPLATE = "a photo of {subject}"
DEFINITIONS = {
    "mAP": "mean over queries of average precision over the whole photo set (the mean, over the "
           "relevant photos, of the precision at each one's rank)",
    "P@k": "share of the top k photos that are of the sketch's class (k capped at the number of photos)",
    "acc@k": "share of queries with at least one photo of their class in the top k "
             "(what SBIR papers call recall@k or top-k accuracy)",
    "seconds": "median wall-clock seconds per query, from the sketch image to the ranked photos "
               "(the caption's time is counted in every mode that uses it)",
}


@dataclass
class EvalConfig:
    sketches: Path
    photos: Path
    settings: Settings = field(default_factory=Settings)
    modes: tuple[str, ...] = MODES
    out: Path = Path("evaluation") / "report"
    clip: str | Path | None = None
    clip_template: str = DEFAULT_CLIP_TEMPLATE
    hit_ks: tuple[int, ...] = (1, 5, 10)
    precision_ks: tuple[int, ...] = (100, 200)
    per_class: int | None = None           # sketches per class (a seeded sample); None: all
    sample_seed: int = 0


def class_folders(folder: Path, what: str) -> dict[str, list[Path]]:
    """Class name -> its image files (searched recursively, sorted); classes without images kept."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise DatasetError(f"--{what} {folder}: not a folder; pass a folder of <class>/ folders of images")
    classes = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes[sub.name] = sorted(p for p in sub.rglob("*") if p.is_file() and is_photo_name(p.name)
                                   and not any(part.startswith(".") for part in p.relative_to(sub).parts))
    if not any(classes.values()):
        raise DatasetError(f"--{what} {folder}: no <class>/ folders with images in it")
    return classes


@dataclass
class PhotoSet:
    paths: list[Path]
    labels: np.ndarray                       # class name per photo
    vectors: np.ndarray                      # DINOv2, unit rows
    clip_vectors: np.ndarray | None          # CLIP image tower, unit rows
    skipped: list[dict[str, str]]


def embed_photos(photos: dict[str, list[Path]], embedder, clip, batch_size: int,
                 show_progress: bool) -> PhotoSet:
    """Decode every photo once (on threads) and embed it with DINOv2 and, if given, CLIP."""
    items = [(path, name) for name, paths in photos.items() for path in paths]
    min_side = max(embedder.min_image_side, clip.min_image_side if clip else 0)
    paths, labels, vectors, clip_vectors, skipped = [], [], [], [], []

    def decode(item):
        try:
            return item, load_image(item[0], min_side=min_side), None
        except NotAnImageError as exc:
            return item, None, getattr(exc, "reason", str(exc))

    with ThreadPoolExecutor(max_workers=4) as pool, tqdm(total=len(items), desc="photos", unit="img",
                                                         disable=not show_progress) as bar:
        for start in range(0, len(items), batch_size):
            batch = list(pool.map(decode, items[start:start + batch_size]))
            images = []
            for (path, name), image, reason in batch:
                if image is None:
                    skipped.append({"path": str(path), "reason": reason})
                    continue
                paths.append(path)
                labels.append(name)
                images.append(image)
            if images:
                vectors.append(embedder.embed_images(images, batch_size=batch_size))
                if clip:
                    clip_vectors.append(clip.embed_images(images, batch_size=batch_size))
            bar.update(len(batch))
    dim = embedder.dim
    return PhotoSet(paths, np.asarray(labels, dtype=object),
                    np.concatenate(vectors) if vectors else np.zeros((0, dim), np.float32),
                    np.concatenate(clip_vectors) if clip_vectors else None, skipped)


def choose_queries(sketches: dict[str, list[Path]], per_class: int | None,
                   seed: int) -> list[tuple[Path, str]]:
    chooser = random.Random(seed)
    queries = []
    for name, paths in sketches.items():
        if per_class is not None and len(paths) > per_class:
            paths = sorted(chooser.sample(paths, per_class))
        queries += [(path, name) for path in paths]
    return queries


def _timed(function, *args, **kwargs):
    start = time.perf_counter()
    value = function(*args, **kwargs)
    return value, time.perf_counter() - start


class Evaluator:
    """Loads the product's models once, embeds the photos once, then runs every query."""

    def __init__(self, config: EvalConfig):
        self.config = config
        for mode in config.modes:
            if mode not in MODES:
                raise SketchSearchError(f"--modes: unknown mode {mode!r}; choose from {', '.join(MODES)}")
        self.sketches = class_folders(config.sketches, "sketches")
        if not Path(config.photos).expanduser().is_dir():
            raise GalleryError(f"--photos {config.photos}: not a folder; "
                               f"pass a folder of <class>/ folders of photos")
        self.photos = class_folders(config.photos, "photos")
        self.unavailable: dict[str, str] = {}
        if "caption" in config.modes and not config.clip:
            self.unavailable["caption"] = ("no text-image model configured: pass --clip DIR "
                                           "(a transformers CLIP folder) to measure this mode")
        self.modes = [m for m in config.modes if m not in self.unavailable]
        self.search = None
        self.clip = None

    def stages(self) -> tuple[str, ...]:
        """The pipeline models the chosen modes use (raw sketches need only the embedder)."""
        needed = ["embedder"]
        if {"generated", "caption"} & set(self.modes):
            needed.append("captioner")
        if "generated" in self.modes:
            needed.append("generator")
        return tuple(needed)

    def load(self) -> None:
        from sketch_search.app.sketch_search import SketchSearch
        self.search = SketchSearch(self.config.settings)
        self.search.load(stages=self.stages())
        if "caption" in self.modes:
            from tools.clip_embedder import ClipEmbedder
            self.clip = ClipEmbedder.from_pretrained(self.config.clip, self.search.device,
                                                     self.search.placement.dtypes.captioner)

    def _query_vectors(self, prepared, photos: PhotoSet):
        """(caption, [(mode, vector, photo vectors, seconds of the mode's own stages)])."""
        caption, rows = None, []
        if "generated" in self.modes:  # the product's own route, exactly as a query runs it
            encoded = self.search.encode(prepared)
            caption = encoded.caption
            seconds = sum(v for k, v in encoded.timings.items() if k != "preprocess")
            rows.append(("generated", encoded.vector, photos.vectors, seconds))
        if "caption" in self.modes:
            if caption is None:
                (caption, _), seconds = _timed(self.search.caption, prepared)
            else:
                seconds = encoded.timings["captioning"]
            text = self.config.clip_template.format(subject=subject_of(caption))
            vectors, embedding = _timed(self.clip.embed_texts, [text])
            rows.append(("caption", vectors[0], photos.clip_vectors, seconds + embedding))
        if "sketch" in self.modes:
            vectors, seconds = _timed(self.search.embedder.embed_images, [prepared.preview])
            rows.append(("sketch", vectors[0], photos.vectors, seconds))
        order = {mode: i for i, mode in enumerate(self.modes)}
        return caption, sorted(rows, key=lambda row: order[row[0]])

    def run(self) -> dict:
        """Evaluate every mode; returns the report (what write_reports saves)."""
        config, settings = self.config, self.config.settings
        if self.search is None:
            self.load()
        photos = embed_photos(self.photos, self.search.embedder, self.clip, settings.batch_size,
                              settings.show_progress)
        photo_counts = {name: int((photos.labels == name).sum()) for name in
                        sorted(set(self.sketches) | set(self.photos))}
        queries = choose_queries(self.sketches, config.per_class, config.sample_seed)
        names = metric_names(config.precision_ks, config.hit_ks)
        per_mode: dict[str, list[dict]] = {m: [] for m in self.modes}
        records, skipped, not_scored = [], [], {}
        for path, name in tqdm(queries, desc="queries", unit="sketch", disable=not settings.show_progress):
            if photo_counts.get(name, 0) == 0:
                not_scored[name] = not_scored.get(name, 0) + 1
                continue
            try:
                image = load_image(path)
                prepared, preparing = _timed(prepare_sketch, image)
            except (NotAnImageError, BlankSketchError) as exc:
                skipped.append({"path": str(path), "reason": getattr(exc, "reason", str(exc))})
                continue
            caption, rows = self._query_vectors(prepared, photos)
            record = {"sketch": str(path), "class": name, "caption": caption, "modes": {}}
            for mode, vector, vectors, seconds in rows:
                _, searching = _timed(top_k, vector, vectors, max(config.hit_ks))
                scores = vectors @ np.asarray(vector, np.float32)
                metrics = query_metrics(scores, photos.labels, name, config.precision_ks, config.hit_ks)
                seconds += preparing + searching
                per_mode[mode].append({"class": name, "seconds": seconds, **metrics})
                record["modes"][mode] = {"AP": metrics["mAP"], "seconds": round(seconds, 4)}
            records.append(record)
        return self._report(photos, photo_counts, queries, names, per_mode, records, skipped, not_scored)

    def _report(self, photos: PhotoSet, photo_counts: dict[str, int], queries, names, per_mode,
                records, skipped, not_scored) -> dict:
        config, settings = self.config, self.config.settings
        sketch_counts = {name: 0 for name in photo_counts}
        for _, name in queries:
            sketch_counts[name] += 1
        classes = {}
        for name in photo_counts:
            note = None
            if sketch_counts[name] == 0:
                note = "no sketches: its photos stay in the set as distractors"
            elif photo_counts[name] == 0:
                note = "no photos: its sketches are not scored"
            classes[name] = {"sketches": sketch_counts[name], "photos": photo_counts[name], "note": note}
        modes = {}
        for mode in config.modes:
            if mode in self.unavailable:
                modes[mode] = {"available": False, "reason": self.unavailable[mode],
                               "route": MODE_ROUTES[mode]}
                continue
            results = per_mode[mode]
            per_class = {}
            for name in photo_counts:
                rows = [r for r in results if r["class"] == name]
                per_class[name] = {"queries": len(rows), **mean_metrics(rows, names),
                                   "note": classes[name]["note"] if not rows else None}
            seconds = [r["seconds"] for r in results]
            modes[mode] = {"available": True, "route": MODE_ROUTES[mode],
                           "overall": {"queries": len(results), **mean_metrics(results, names)},
                           "per_class": per_class,
                           "median_seconds_per_query": statistics.median(seconds) if seconds else None}
        return {
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "sketches": str(config.sketches), "photos": str(config.photos),
            "settings": {"checkpoints": str(settings.checkpoints), "embedder": settings.embedder,
                         "captioner": settings.captioner, "device": str(self.search.device),
                         "seed": settings.seed, "gamma": settings.gamma,
                         "prompt_template": settings.prompt_template,
                         "clip": str(config.clip) if config.clip else None,
                         "clip_template": config.clip_template, "per_class": config.per_class},
            "metrics": names, "definitions": DEFINITIONS,
            "counts": {"classes": len(classes), "photos": len(photos.paths),
                       "queries": len(queries) - sum(not_scored.values()) - len(skipped)},
            "classes": classes, "modes": modes,
            "photos_skipped": photos.skipped, "sketches_skipped": skipped, "queries": records,
        }


# -- report files -----------------------------------------------------------------------------
def _cell(value) -> str:
    return "-" if value is None else f"{value:.3f}"


def render_markdown(report: dict) -> str:
    names = report["metrics"]
    settings = report["settings"]
    lines = ["# Retrieval evaluation", "",
             f"- sketches: `{report['sketches']}`; photos: `{report['photos']}` "
             f"({report['counts']['photos']} photos, {report['counts']['classes']} classes, "
             f"{report['counts']['queries']} queries scored)",
             f"- embedder: DINOv2 {settings['embedder']}; captioner: {settings['captioner']}; "
             f"device: {settings['device']}; seed {settings['seed']}, gamma {settings['gamma']}",
             f"- created {report['created']}", "", "Metrics:", ""]
    lines += [f"- **{key}**: {text}" for key, text in report["definitions"].items()]
    for mode, result in report["modes"].items():
        lines += ["", f"## {mode}: {result['route']}", ""]
        if not result["available"]:
            lines.append(f"Unavailable: {result['reason']}")
            continue
        median = result["median_seconds_per_query"]
        lines += [f"Median query time: {'-' if median is None else f'{median:.3f} s'}", "",
                  "| class | queries | " + " | ".join(names) + " |",
                  "|---|---:|" + "---:|" * len(names)]
        overall = result["overall"]
        lines.append(f"| **overall** | {overall['queries']} | "
                     + " | ".join(_cell(overall[n]) for n in names) + " |")
        for name, row in result["per_class"].items():
            cells = (" | ".join(_cell(row[n]) for n in names) if row["queries"]
                     else " | ".join([row["note"] or "no queries"] + [""] * (len(names) - 1)))
            lines.append(f"| {name} | {row['queries']} | {cells} |")
    notes = [f"- {name}: {c['note']}" for name, c in report["classes"].items() if c["note"]]
    notes += [f"- photo skipped: {s['path']}: {s['reason']}" for s in report["photos_skipped"]]
    notes += [f"- sketch skipped: {s['path']}: {s['reason']}" for s in report["sketches_skipped"]]
    if notes:
        lines += ["", "## Data notes", "", *notes]
    return "\n".join(lines) + "\n"


def write_reports(report: dict, out: Path) -> tuple[Path, Path]:
    """OUT.md and OUT.json (a suffix on OUT is dropped), each written whole."""
    out = Path(out).expanduser()
    if out.suffix in (".md", ".json"):
        out = out.with_suffix("")
    markdown, data = out.with_name(out.name + ".md"), out.with_name(out.name + ".json")
    write_text_atomically(markdown, render_markdown(report))
    write_text_atomically(data, json.dumps(report, indent=2, allow_nan=False))
    return markdown, data


# -- command line -----------------------------------------------------------------------------
def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected numbers separated by commas") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected positive numbers separated by commas")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sketches", type=Path, required=True, help="folder of <class>/ folders of sketches")
    parser.add_argument("--photos", type=Path, required=True, help="folder of <class>/ folders of photos")
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, from {', '.join(MODES)} (default all)")
    parser.add_argument("--clip", default=None, help="a transformers CLIP folder (or hub id with --online) "
                                                     "for the caption mode")
    parser.add_argument("--clip-template", default=DEFAULT_CLIP_TEMPLATE,
                        help="CLIP's text, with {subject} for the caption's subject")
    parser.add_argument("--out", type=Path, default=Path("evaluation") / "report",
                        help="report path without suffix: writes OUT.md and OUT.json")
    parser.add_argument("--top-k", type=_int_list, default=(1, 5, 10), help="k of acc@k (default 1,5,10)")
    parser.add_argument("--precision-at", type=_int_list, default=(100, 200),
                        help="k of P@k (default 100,200)")
    parser.add_argument("--per-class", type=int, default=None,
                        help="at most N sketches per class (a seeded random choice; default all)")
    parser.add_argument("--batch-size", type=positive_int, default=Settings.batch_size,
                        help="photos embedded per batch")
    add_model_arguments(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    if "{subject}" not in args.clip_template:
        raise SketchSearchError("--clip-template must contain {subject}")
    if args.per_class is not None and args.per_class < 1:
        raise SketchSearchError(f"--per-class {args.per_class}: must be at least 1")
    modes = tuple(m.strip() for m in args.modes.split(",") if m.strip())
    settings = settings_from(args, batch_size=args.batch_size)  # checks --gamma, the template
    config = EvalConfig(sketches=args.sketches, photos=args.photos, settings=settings, modes=modes,
                        out=args.out, clip=args.clip, clip_template=args.clip_template,
                        hit_ks=args.top_k, precision_ks=args.precision_at, per_class=args.per_class)
    evaluator = Evaluator(config)  # checks the folders and modes before any model loads
    quiet_model_libraries()
    report = evaluator.run()
    markdown, data = write_reports(report, config.out)
    for mode, result in report["modes"].items():
        if not result["available"]:
            print(f"{mode:>9}: unavailable ({result['reason']})")
            continue
        overall = result["overall"]
        print(f"{mode:>9}: " + ", ".join(f"{n} {_cell(overall[n])}" for n in report["metrics"])
              + f", {_cell(result['median_seconds_per_query'])} s/query ({overall['queries']} queries)")
    print(f"report: {markdown} and {data}")
    return 0


if __name__ == "__main__":
    run_command(main)
