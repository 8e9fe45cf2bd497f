"""Draw in the air, find the photo: `sketch-search draw [--source 0|VIDEO] [--gallery DIR] ...`
(`python main.py ...` from a checkout).

A window shows the mirrored webcam image with the canvas over it. Fingers pick the tool
(2 black, 3 green, 4 red, 5 eraser, fist or no hand: pen up) and the index fingertip draws;
holding one finger up for about 0.6 s saves the sketch and searches the gallery while the
window keeps running. A fist moves a pointer: resting it on an on-screen button for a second
presses it (undo, redo, help, quit, a match to open it large, back, previous, next, show on
phone). Keys are shortcuts: R clear, Z undo, Y redo, S save and search, H help, 1-5 open a
match, N/P next/previous, B back, M show on phone, Q quit, Esc back (or quit).

While drawing, the results panel follows the sketch (--live): a preview of the matches for the
strokes themselves after each change, and after a pause the full search runs ahead, so a save
of an unchanged drawing shows its results at once.

With --source VIDEO a video file stands in for the webcam (shown as it is, not mirrored: a
recording is usually already the right way round) and the program ends at its last frame,
after any search still running (not after indexing: a new gallery is searched while it is
indexed, and what was indexed is kept for the next start). Each save writes <sketch-dir>/sketch-<time>.png and, with
search on, sketch-<time>.json and sketch-<time>-generated.png.

Every way out (Q or Esc, the video's end, Ctrl+C, SIGTERM, a camera failure) cancels the running
query and waits for the search thread once (at most STOP_SECONDS); where it cannot stop in time
(a model still loading) `cli` ends the process with os._exit after its files are flushed, never
with an abort. `cli` runs `bootstrap()` first: the rest is imported after it, inside functions.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from sketch_search.app.bootstrap import bootstrap
from sketch_search.common.commands_named import Program, usage_name

DEFAULT_GALLERY = Path("~/sketch-gallery")
INTERRUPTED = "interrupted: saved sketches and their results are in --sketch-dir"


def _source(text: str) -> int | Path:
    return int(text) if text.isdigit() else Path(text)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0.0 <= value <= 60.0:
        raise argparse.ArgumentTypeError(f"give between 0 and 60 seconds, not {text}")
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from sketch_search.app.cli import add_gallery_arguments, add_model_arguments

    parser = argparse.ArgumentParser(
        prog=usage_name(Program.DRAW),
        description="Draw a sketch in the air in front of a webcam and find the photos in your "
                    "gallery that look like it.")
    parser.add_argument("--source", type=_source, default=0,
                        help="camera index (default 0, the first webcam; shown mirrored) or a video "
                             "file to use instead (shown as it is; the program ends with it)")
    add_gallery_arguments(parser)
    add_model_arguments(parser)
    _add_run_arguments(parser)
    _add_phone_arguments(parser)
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="at exit, save the window's last picture to this .png/.jpg file")
    args = parser.parse_args(argv)
    if args.screenshot and args.screenshot.suffix.lower() not in (".png", ".jpg", ".jpeg"):
        parser.error("--screenshot: give a file name ending in .png or .jpg")
    return args


def _add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """The window, saving and live-search flags."""
    from sketch_search.app.air_canvas import PAUSE_SECONDS
    from sketch_search.app.cli import positive_int
    from sketch_search.app.live_mode import LIVE_MODES, LiveMode

    parser.add_argument("--no-window", dest="window", action="store_false",
                        help="show nothing (headless); saves still write their files")
    parser.add_argument("--no-search", dest="search", action="store_false",
                        help="only save sketches: load no models, search nothing")
    parser.add_argument("--sketch-dir", type=Path, default=Path("sketches"),
                        help="where saved sketches and their results go (default ./sketches)")
    parser.add_argument("--max-frames", type=positive_int, default=None,
                        help="stop after this many frames")
    parser.add_argument("--live", choices=LIVE_MODES, default=LiveMode.PREVIEW.value,
                        help="what follows the drawing: preview (default: matches for the strokes "
                             "themselves after each change, and the full search run ahead after a "
                             "pause), full (the full search after every stroke; for fast machines), "
                             "off (search only on save)")
    parser.add_argument("--pause", type=_seconds, default=PAUSE_SECONDS,
                        help=f"pen-up seconds before the full search runs ahead of the save "
                             f"(--live preview; default {PAUSE_SECONDS:g})")
    parser.add_argument("--events", type=Path, default=None,
                        help="write one JSON line per event (preview, speculate, cancel, save, "
                             "results, command, controls) to this file")


def _add_phone_arguments(parser: argparse.ArgumentParser) -> None:
    """The phone group: photos pulled over ADB at start-up."""
    from device.background_sync import RESYNC_SECONDS
    from device.originals_cache import DEFAULT_CACHE_BYTES
    from device.phone_sync import DEFAULT_ADB_PORT, DEFAULT_FOLDERS
    from sketch_search.app.cli import positive_int

    phone = parser.add_argument_group(
        "phone", "new photos are brought over ADB from a connected phone into the gallery "
                 "(default ~/sketch-gallery) at start-up, then looked for again every "
                 f"{RESYNC_SECONDS:g} s while the window runs")
    phone.add_argument("--no-sync", dest="sync", action="store_false",
                       help="do not pull photos from a phone; search --gallery as it is")
    phone.add_argument("--serial", default=None, help="which phone, when several are connected")
    phone.add_argument("--folders", nargs="+", default=list(DEFAULT_FOLDERS),
                       help="phone folders under /sdcard to pull (default DCIM/Camera)")
    phone.add_argument("--adb-port", type=positive_int, default=DEFAULT_ADB_PORT,
                       help="the adb server's port (default 5037)")
    phone.add_argument("--originals", action="store_true",
                       help="keep byte-for-byte copies of the phone's photos (default: one small "
                            "image per photo, the phone's own thumbnail)")
    phone.add_argument("--originals-cache", type=_megabytes, default=DEFAULT_CACHE_BYTES // 1_000_000,
                       metavar="MB",
                       help="megabytes kept of originals pulled when a lean photo is opened large "
                            f"(default {DEFAULT_CACHE_BYTES // 1_000_000}; 0: never pull originals)")


def _megabytes(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number of megabytes: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"give 0 or more megabytes, not {text}")
    return value


def _check_display() -> None:
    """OpenCV's Qt window aborts the process without a display; say so in one line instead."""
    from sketch_search.common.errors import SketchSearchError
    if sys.platform.startswith("linux") and not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        raise SketchSearchError("no display to open a window on (DISPLAY is not set): run it on a "
                                "desktop, or pass --no-window")


def build(argv: list[str] | None = None):
    """The air canvas app for these arguments; everything a user can get wrong is checked before
    the camera opens or a model loads."""
    from retrieval.gallery import gallery_folder
    from sketch_search.app.air_canvas import AirCanvasApp, AppOptions
    from sketch_search.app.cli import quiet_model_libraries, settings_from
    from sketch_search.app.model_plan import plan_models
    from sketch_search.common.command import setup_logging

    args = parse_args(argv)
    setup_logging(args.verbose)
    if args.window:
        _check_display()
    sync = args.sync and args.search  # photos are only pulled to be searched
    gallery = args.gallery.expanduser() if args.gallery else None
    if gallery is None and sync:
        gallery = DEFAULT_GALLERY.expanduser()
    if gallery is not None:
        gallery_folder(gallery, missing_ok=sync)  # the phone sync makes a missing one
    search = None
    if args.search:
        settings = settings_from(args)
        plan_models(settings)  # missing models: one line now, before torch is imported
        quiet_model_libraries()
        from sketch_search.app.sketch_search import SketchSearch
        search = SketchSearch(settings)
        if gallery is None:
            logging.getLogger("main").warning(
                "no --gallery: searches show the caption and generated image only")
    options = AppOptions(source=args.source, sketch_dir=args.sketch_dir.expanduser(), gallery=gallery,
                         window=args.window, max_frames=args.max_frames, screenshot=args.screenshot,
                         live=args.live, pause=args.pause,
                         events=args.events.expanduser() if args.events else None,
                         adb_port=args.adb_port, serial=args.serial,
                         originals_cache=args.originals_cache * 1_000_000)
    return AirCanvasApp(options, search, _phone_sync(args, gallery) if sync else None)


def _phone_sync(args: argparse.Namespace, gallery: Path):
    """The phone sync that fills `gallery` while the window runs."""
    from device.background_sync import BackgroundSync
    gallery.mkdir(parents=True, exist_ok=True)  # the phone's photos land here
    return BackgroundSync(gallery, args.serial, args.folders, args.adb_port, originals=args.originals)


def main(argv: list[str] | None = None) -> int:
    """Run the air canvas; its exit status (call `cli` for the whole command)."""
    return build(argv).run()


def cli(argv: list[str] | None = None) -> None:
    """The air canvas command (`python main.py`, `sketch-search draw`): set-up before imports,
    the run, and the one way out.

    Exits with the run's status (2 for a user error, 130 on Ctrl+C, 143 on SIGTERM). When the
    search thread could not be stopped, this is the one place that ends the process hard.
    """
    bootstrap()
    from sketch_search.common.command import hard_exit, run_command, status_of

    apps = []

    def run() -> int:
        app = build(argv)
        apps.append(app)
        return app.run()
    try:
        run_command(run, interrupted=INTERRUPTED)
    except SystemExit as done:
        if any(app.hard_exit_needed for app in apps):
            hard_exit(status_of(done))
        raise

