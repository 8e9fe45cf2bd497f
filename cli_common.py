"""What main.py and main2.py share: the model flags, logging set-up and the one-line error exit."""
from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from checkpoints.layout import DEFAULT_EMBEDDER
from errors import SketchSearchError
from settings import DEVICES, EMBEDDERS, PRECISIONS, Settings


def _unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gallery", type=Path,
                        help="folder of photos to search (searched recursively; indexed once, "
                             "later runs embed only new or changed photos)")
    parser.add_argument("--checkpoints", type=Path, default=Path("checkpoints"),
                        help="folder holding the models (default ./checkpoints; fill it with "
                             "`python -m checkpoints.fetch`)")
    parser.add_argument("--top_k", type=positive_int, default=5, help="how many photos to show (default 5)")
    parser.add_argument("--device", choices=DEVICES, default="auto",
                        help="where models run: auto picks CUDA, then Apple's MPS, then the CPU")
    parser.add_argument("--seed", type=int, default=0,
                        help="random seed of the generator: the same seed gives the same image")
    parser.add_argument("--gamma", type=_unit_interval, default=0.4,
                        help="pix2pix-turbo's r in [0, 1]: higher follows the strokes more "
                             "closely, lower lets the model invent more (default 0.4)")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: float16 on CUDA (VAE in float32); on a CPU with native "
                             "bfloat16, the generator and embedder in bfloat16 (about 3x faster, "
                             "images within a few grey levels); float32: full precision on CPU")
    parser.add_argument("--embedder", choices=EMBEDDERS, default=DEFAULT_EMBEDDER,
                        help=f"DINOv2 size used to compare photos (default {DEFAULT_EMBEDDER}: "
                             "close to large in quality at a third of its cost)")
    parser.add_argument("--captioner", default="auto",
                        help="auto (a sketch fine-tuned BLIP when checkpoints has one), stock, or "
                             "the path of a fine-tuned BLIP folder or the seed's .pt file")
    parser.add_argument("--prompt-template", dest="prompt_template", default=None,
                        help="the generator's prompt, with {subject} where the caption's subject goes")
    parser.add_argument("--index", type=Path, default=None,
                        help="gallery index file (default <gallery>/.sketch-search/index-<embedder>.sqlite)")
    parser.add_argument("--online", action="store_true",
                        help="download models missing from --checkpoints from the Hugging Face hub")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")


def settings_from(args: argparse.Namespace) -> Settings:
    settings = Settings(checkpoints=args.checkpoints, device=args.device, embedder=args.embedder,
                        captioner=args.captioner, top_k=args.top_k, gamma=args.gamma,
                        seed=args.seed, index_path=args.index, online=args.online,
                        precision=args.precision)
    if args.prompt_template:
        if "{subject}" not in args.prompt_template:
            raise SketchSearchError("--prompt-template must contain {subject}")
        settings.prompt_template = args.prompt_template
    return settings


def setup_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")


def quiet_model_libraries() -> None:
    """The model libraries' own loading bars and advice would drown the program's output."""
    import diffusers
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def run_cli(main: Callable[[], int]) -> None:
    """Run `main`; a user error ends with one line on stderr and exit 2, never a traceback."""
    try:
        code = main()
    except SketchSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print("interrupted: what was indexed is kept; run again to resume", file=sys.stderr)
        code = 130
    sys.exit(code)
