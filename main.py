"""Draw in the air, find the photo: `python main.py [--source 0|VIDEO] [--gallery DIR] ...`

A window shows the mirrored webcam image with the canvas over it. Fingers pick the tool
(2 black, 3 green, 4 red, 5 eraser, fist or no hand: pen up) and the index fingertip draws;
holding one finger up for about 0.6 s saves the sketch and searches the gallery while the
window keeps running. Keys: R clear, Z undo, S save and search, Q or Esc quit.

With --source VIDEO a video file stands in for the webcam (shown as it is, not mirrored: a
recording is usually already the right way round) and the program ends at its last frame,
after any search still running. Each save writes <sketch-dir>/sketch-<time>.png and, with
search on, sketch-<time>.json and sketch-<time>-generated.png.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

# Quiet MediaPipe's native start-up chatter; the program reports what matters itself.
os.environ.setdefault("GLOG_minloglevel", "2")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from sketch.app import AirCanvasApp, AppOptions, reserve_core_for_loop  # noqa: E402

reserve_core_for_loop()  # before anything imports torch

from cli_common import add_model_arguments, run_cli, settings_from, setup_logging  # noqa: E402
from errors import GalleryError, SketchSearchError  # noqa: E402


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def _source(text: str) -> int | Path:
    return int(text) if text.isdigit() else Path(text)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Draw a sketch in the air in front of a webcam and find the photos in your "
                    "gallery that look like it.")
    parser.add_argument("--source", type=_source, default=0,
                        help="camera index (default 0, the first webcam; shown mirrored) or a video "
                             "file to use instead (shown as it is; the program ends with it)")
    add_model_arguments(parser)
    parser.add_argument("--no-window", dest="window", action="store_false",
                        help="show nothing (headless); saves still write their files")
    parser.add_argument("--no-search", dest="search", action="store_false",
                        help="only save sketches: load no models, search nothing")
    parser.add_argument("--sketch-dir", type=Path, default=Path("sketches"),
                        help="where saved sketches and their results go (default ./sketches)")
    parser.add_argument("--max-frames", type=_positive, default=None,
                        help="stop after this many frames")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="at exit, save the window's last picture to this .png/.jpg file")
    args = parser.parse_args(argv)
    if args.screenshot and args.screenshot.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        parser.error("--screenshot: give a file name ending in .png or .jpg")
    return args


def _setup_logging(verbose: bool, search: bool) -> None:
    if search:
        setup_logging(verbose)  # also quiets the model libraries (and imports them)
    else:
        logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                            format="%(levelname)s %(name)s: %(message)s")


def _check_display() -> None:
    """OpenCV's Qt window aborts the process without a display; say so in one line instead."""
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SketchSearchError("no display to open a window on (DISPLAY is not set): run it on a "
                                "desktop, or pass --no-window")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    _setup_logging(args.verbose, args.search)
    # Everything a user can get wrong is checked before the camera opens or a model loads.
    if args.window:
        _check_display()
    gallery = args.gallery.expanduser() if args.gallery else None
    if gallery is not None and not gallery.is_dir():
        raise GalleryError(f"--gallery {gallery}: not a folder; pass the folder of your photos")
    search = None
    if args.search:
        from pipeline import SketchSearch
        search = SketchSearch(settings_from(args))
        search.check_models()
        if gallery is None:
            logging.getLogger("main").warning(
                "no --gallery: searches show the caption and generated image only")
    options = AppOptions(source=args.source, sketch_dir=args.sketch_dir.expanduser(), gallery=gallery,
                         window=args.window, max_frames=args.max_frames, screenshot=args.screenshot)
    return AirCanvasApp(options, search).run()


if __name__ == "__main__":
    run_cli(main)
