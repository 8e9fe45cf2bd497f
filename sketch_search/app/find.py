"""Headless sketch search: `sketch-search find --image_path sketch.png --gallery DIR`
(`python main2.py ...` from a checkout).

Prints the caption, prompt, generated image and the top-k photos with cosine scores; writes a
results grid (and, with --json, the same as JSON). Several sketches (--image_path repeated, or a
folder of them) share one model load and one gallery index; each gets its own files.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from retrieval.gallery import gallery_folder
from sketch_search.app.cli import (
    add_gallery_arguments,
    add_model_arguments,
    index_flags,
    progress_bar,
    quiet_model_libraries,
    settings_from,
)
from sketch_search.app.model_plan import plan_models
from sketch_search.app.outputs import (
    QueryFiles,
    plan_query_files,
    png_bytes,
    save_query_files,
    write_file,
    write_json,
)
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.commands_named import Program, usage_name
from sketch_search.common.errors import BlankSketchError, NotAnImageError
from sketch_search.common.files import PHOTO_EXTENSIONS, is_photo_name
from sketch_search.common.names import display_name

# True here: the index commits each batch, so the next run resumes where this one stopped.
INTERRUPTED = "interrupted: what was indexed is kept; run again to resume"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=usage_name(Program.FIND),
        description="Find the photos in a gallery that look like a sketch: caption it (BLIP), "
                    "turn it into a photo-like image (pix2pix-turbo), compare that image with "
                    "every photo (DINOv2, cosine similarity).")
    parser.add_argument("--image_path", type=Path, required=True, action="extend", nargs="+",
                        help="the sketch: strokes of any colour on a plain background (PNG/JPEG); "
                             "several files, the flag repeated, or a folder of sketches search "
                             "one after the other with the models loaded once")
    add_gallery_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--output", type=Path, default=None,
                        help="results grid image (default results/<sketch-name>_results.png); "
                             "with several sketches, the folder for their grids (default results)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the caption, prompt, results, timings and index report "
                             "as JSON; with several sketches, the folder for <sketch-name>.json")
    args = parser.parse_args(argv)
    if args.gallery is None:
        parser.error("--gallery is required: the folder of photos to search")
    return args


def sketch_files(given: list[Path]) -> list[Path]:
    """The sketch files named by --image_path: files as they are, a folder's images (sorted)."""
    sketches = []
    for path in (p.expanduser() for p in given):
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.is_file() and is_photo_name(p.name))
            if not found:
                kinds = ", ".join(sorted(e[1:] for e in PHOTO_EXTENSIONS))
                raise NotAnImageError(f"--image_path {path}: a folder with no images ({kinds}) in "
                                      "it; pass a sketch file or a folder of sketches")
            sketches.extend(found)
        elif path.is_file():
            sketches.append(path)
        else:
            raise NotAnImageError(f"--image_path {path}: no such file")
    return sketches


def print_report(data: dict, output: Path, skipped_shown: int = 10) -> None:
    """The report as lines of text; every name goes through display_name (one safe line each)."""
    show = display_name
    print(f"caption : {show(data['caption'])}")
    print(f"prompt  : {show(data['prompt'])}")
    print(f"image   : {show(str(data['generated_image']))}")
    print(f"grid    : {show(output)}")
    print(f"{'rank':>4}  {'score':>7}  photo")
    for rank, hit in enumerate(data["results"], 1):
        print(f"{rank:>4}  {hit['score']:>7.4f}  {show(hit['path'])}")
    if not data["results"]:
        print("   -        -  (the gallery has no photos that could be read)")
    index = data["index"]
    print(f"index   : {index['added']} added, {index['updated']} updated, {index['removed']} removed, "
          f"{index['unchanged']} unchanged, {len(index['skipped'])} skipped")
    for item in index["skipped"][:skipped_shown]:
        print(f"  skipped {show(item['path'])}: {show(item['reason'])}")
    if len(index["skipped"]) > skipped_shown:
        print(f"  ... and {len(index['skipped']) - skipped_shown} more (see --json)")
    print("timings : " + ", ".join(f"{k} {v:.2f} s" for k, v in data["timings"].items()))


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    # Everything a user can get wrong is checked before any model loads or any file is written.
    from generation.preprocess import prepare_sketch
    from retrieval.images import load_image
    paths = sketch_files(args.image_path)
    several = len(args.image_path) > 1 or any(p.expanduser().is_dir() for p in args.image_path)
    sketches = []
    for path in paths:
        sketch = load_image(path)
        try:
            prepare_sketch(sketch)  # refuses a blank sketch now rather than after loading models
        except BlankSketchError as exc:
            raise BlankSketchError(f"--image_path {path}: {exc}") from None
        sketches.append(sketch)
    gallery = gallery_folder(args.gallery)
    files = plan_query_files(paths, args.output, args.json, several)
    settings = settings_from(args)
    plan_models(settings)  # missing models: one line now, before the slow torch imports

    quiet_model_libraries()
    from sketch_search.app.sketch_search import SketchSearch
    search = SketchSearch(settings)
    search.load()
    with index_flags(), progress_bar("indexing gallery", "photo", settings.show_progress) as progress:
        report = search.index_gallery(gallery, progress)
    for number, (path, sketch, plan) in enumerate(zip(paths, sketches, files), 1):
        if several:
            print(f"== sketch {number}/{len(paths)}: {display_name(path)}")
        data = search_one(search, sketch, report, plan)
        print_report(data, plan.grid)
    return 0


def search_one(search, sketch, report, plan: QueryFiles) -> dict:
    """One sketch's query and its files: generated image, grid, then the JSON."""
    from retrieval.images import load_thumbnail
    from sketch_search.app.results_grid import render_results_grid
    result = search.query(sketch)
    # A photo deleted since indexing is still listed, shown grey.
    thumbs = [(path, load_thumbnail(path, min_side=256), score) for path, score in result.results]
    grid = render_results_grid(result.sketch.preview, result.generated, thumbs, result.caption)
    data = save_query_files(result, png_bytes(result.generated), report, plan.generated, None)
    write_file(plan.grid, lambda p: grid.save(p, format="PNG"))
    if plan.json is not None:
        write_json(plan.json, data)
    return data


def cli(argv: list[str] | None = None) -> None:
    """The command (`python main2.py`, `sketch-search find`)."""
    run_command(lambda: main(argv), interrupted=INTERRUPTED)

