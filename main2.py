"""Headless sketch search: `python main2.py --image_path sketch.png --gallery DIR`.

Prints the caption, prompt, generated image and the top-k photos with cosine scores; writes a
results grid (and, with --json, the same as JSON).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from app.cli import add_gallery_arguments, add_model_arguments, quiet_model_libraries, settings_from
from app.model_plan import plan_models
from app.outputs import save_query_files
from common.command import run_command, setup_logging
from common.errors import GalleryError, NotAnImageError, SketchSearchError
from common.files import write_atomically
from common.names import display_name

# True here: the index commits each batch, so the next run resumes where this one stopped.
INTERRUPTED = "interrupted: what was indexed is kept; run again to resume"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Find the photos in a gallery that look like a sketch: caption it (BLIP), "
                    "turn it into a photo-like image (pix2pix-turbo), compare that image with "
                    "every photo (DINOv2, cosine similarity).")
    parser.add_argument("--image_path", type=Path, required=True,
                        help="the sketch: strokes of any colour on a plain background (PNG/JPEG)")
    add_gallery_arguments(parser)
    add_model_arguments(parser)
    parser.add_argument("--output", type=Path, default=None,
                        help="results grid image (default results/<sketch-name>_results.png)")
    parser.add_argument("--json", type=Path, default=None,
                        help="also write the caption, prompt, results, timings and index report as JSON")
    args = parser.parse_args(argv)
    if args.gallery is None:
        parser.error("--gallery is required: the folder of photos to search")
    return args


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
    sketch_path = args.image_path.expanduser()
    if not sketch_path.is_file():
        raise NotAnImageError(f"--image_path {sketch_path}: no such file")
    sketch = load_image(sketch_path)
    prepare_sketch(sketch)  # refuses a blank sketch now rather than after loading models
    gallery = args.gallery.expanduser()
    if not gallery.is_dir():
        raise GalleryError(f"--gallery {gallery}: not a folder; pass the folder of your photos")
    settings = settings_from(args)
    plan_models(settings)  # missing models: one line now, before the slow torch imports

    quiet_model_libraries()
    from app.results_grid import render_results_grid
    from app.sketch_search import SketchSearch
    search = SketchSearch(settings)
    search.load()
    report = search.index_gallery(gallery)
    result = search.query(sketch)

    output = args.output or Path("results") / f"{sketch_path.stem}_results.png"
    generated_path = output.with_name(f"{sketch_path.stem}_generated.png")
    thumbs = []
    for path, score in result.results:
        try:
            thumbs.append((path, load_image(path, min_side=256), score))
        except SketchSearchError:  # deleted since indexing: still listed, shown grey
            thumbs.append((path, None, score))
    grid = render_results_grid(result.sketch.preview, result.generated, thumbs, result.caption)
    write_atomically(output, lambda p: grid.save(p, format="PNG"))
    data = save_query_files(result, report, generated_path, args.json)
    print_report(data, output)
    return 0


if __name__ == "__main__":
    run_command(main, interrupted=INTERRUPTED)
