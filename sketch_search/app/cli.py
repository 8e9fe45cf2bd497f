"""The model flags main.py and main2.py share, read into Settings; every default is Settings'."""
from __future__ import annotations

import argparse
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from checkpoints.layout import models_folder_rule
from retrieval.index_errors import WAYS_OUT, IndexFileError, WayOut
from sketch_search.app.settings import DEVICES, EMBEDDERS, PRECISIONS, Settings
from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import GalleryError, SketchSearchError

# The index's ways out (retrieval.index_errors) as this command line offers them.
INDEX_WAYS_OUT_IN_FLAGS = {
    WayOut.REBUILD: "run again with --rebuild-index to rebuild it from the photos",
    WayOut.ELSEWHERE: "pass --index PATH",
    WayOut.WRITABLE: "pass --index PATH to keep it in a writable place",
    WayOut.OTHER_DISK: "pass --index PATH on another disk",
}


def unit_interval(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def add_gallery_arguments(parser: argparse.ArgumentParser) -> None:
    """The search flags of main.py and main2.py: the gallery, its index and how many results."""
    d = Settings()
    parser.add_argument("--gallery", type=Path,
                        help="folder of photos to search (searched recursively; indexed once, "
                             "later runs embed only new or changed photos)")
    parser.add_argument("--top_k", type=positive_int, default=d.top_k,
                        help=f"how many photos to show (default {d.top_k})")
    parser.add_argument("--index", type=Path, default=None,
                        help="gallery index file (default <gallery>/.sketch-search/index-<embedder>.sqlite)")
    parser.add_argument("--rebuild-index", dest="rebuild_index", action="store_true",
                        help="move the gallery index aside (to <index>.damaged) and build it again "
                             "from the photos: for a damaged index or one of a newer version")


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The model flags every command that runs the route shares (main, main2, the evaluation)."""
    d = Settings()  # every default below is the dataclass's, so there is one of each
    parser.add_argument("--checkpoints", type=Path, default=d.checkpoints,
                        help=f"folder holding the models (default: {models_folder_rule()}; fill it "
                             f"with `{named(Program.FETCH)}`)")
    parser.add_argument("--device", choices=DEVICES, default=d.device,
                        help="where models run: auto picks CUDA, then Apple's MPS, then the CPU")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="random seed of the generator: the same seed gives the same image")
    parser.add_argument("--gamma", type=unit_interval, default=d.gamma,
                        help="pix2pix-turbo's r in [0, 1]: higher follows the strokes more "
                             f"closely, lower lets the model invent more (default {d.gamma})")
    parser.add_argument("--precision", choices=PRECISIONS, default=d.precision,
                        help="auto: float16 on CUDA (VAE in float32); on a CPU with native "
                             "bfloat16, the generator and embedder in bfloat16 (about 3x faster, "
                             "images within a few grey levels); float32: full precision")
    parser.add_argument("--embedder", choices=EMBEDDERS, default=d.embedder,
                        help=f"DINOv2 size used to compare photos (default {d.embedder}: "
                             "close to large in quality at a third of its cost), or DINOv3's "
                             "ViT-H+/16 (dinov3-vith16plus: gated, accept its licence on the hub)")
    parser.add_argument("--generator", metavar="PATH", default=d.generator,
                        help="a pix2pix-turbo file of your own (what the authors' "
                             "train_pix2pix_turbo.py writes) instead of the sketch LoRA file")
    parser.add_argument("--captioner", default=d.captioner,
                        help="auto (a sketch fine-tuned BLIP when checkpoints has one), stock, or "
                             "the path of a fine-tuned BLIP folder or the seed's .pt file")
    parser.add_argument("--prompt-template", dest="prompt_template", default=d.prompt_template,
                        help="the generator's prompt, with {subject} where the caption's subject goes")
    parser.add_argument("--no-colour-hints", dest="colour_hints", action="store_false",
                        default=d.colour_hints,
                        help="leave the pen colour out of the prompt (by default, when red or "
                             "green strokes are a meaningful share of the sketch, the prompt says "
                             "so: 'a red apple'; the generator's input is the same binary mask)")
    parser.add_argument("--online", action="store_true",
                        help="download models missing from --checkpoints from the Hugging Face hub")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what each stage does")


def settings_from(args: argparse.Namespace, **extra) -> Settings:
    """Settings from the flags of add_model_arguments (and add_gallery_arguments, if added)."""
    if "{subject}" not in args.prompt_template:
        raise SketchSearchError("--prompt-template must contain {subject}")
    gallery = ({"top_k": args.top_k, "index_path": args.index, "rebuild_index": args.rebuild_index}
               if hasattr(args, "index") else {})
    return Settings(checkpoints=args.checkpoints, device=args.device, embedder=args.embedder,
                    captioner=args.captioner, generator=args.generator, gamma=args.gamma, seed=args.seed, online=args.online,
                    precision=args.precision, prompt_template=args.prompt_template,
                    colour_hints=args.colour_hints, **gallery, **extra)


def quiet_model_libraries() -> None:
    """The model libraries' own loading bars and advice would drown the program's output.

    Call it before anything imports transformers: it first hides a torchvision that does not fit
    the installed torch (sketch_search.app.compat), which would otherwise stop transformers from loading BLIP.
    """
    from sketch_search.app.compat import hide_broken_torchvision
    hide_broken_torchvision()
    import diffusers
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()


def index_error_with_flags(error: IndexFileError) -> GalleryError:
    """The same error, its ways out said as this command line's flags."""
    ways = ", or ".join(INDEX_WAYS_OUT_IN_FLAGS.get(way, WAYS_OUT[way]) for way in error.ways_out)
    return GalleryError(f"{error.problem}; {ways}")


@contextmanager
def index_flags() -> Iterator[None]:
    """Around indexing at the command line: an unusable index names --rebuild-index and --index."""
    try:
        yield
    except IndexFileError as error:
        raise index_error_with_flags(error) from None


@contextmanager
def progress_bar(description: str, unit: str, shown: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A `progress(done, total)` callback drawing a tqdm bar on the terminal (nothing if not shown)."""
    from tqdm import tqdm
    bar = None

    def progress(done: int, total: int) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, desc=description, unit=unit, disable=not shown)
        bar.total = max(total, done)
        bar.update(done - bar.n)

    try:
        yield progress
    finally:
        if bar is not None:
            bar.close()
