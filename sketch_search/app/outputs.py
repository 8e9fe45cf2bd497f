"""A query's files: where they go (checked before any model work), and writing them atomically.

Each sketch gets a results grid, the generated image beside it (`<grid name>_generated.png`, so
two queries with different grids never share one) and, when asked, a JSON file. A place that
cannot be written is refused before the models load; a write that fails later (a full disk) is
one line too, and every file written before it stays as it was.
"""
from __future__ import annotations

import io
import json
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from sketch_search.common.errors import SketchSearchError
from sketch_search.common.files import write_atomically

GRID_SUFFIX = "_results"


class OutputError(SketchSearchError):
    """An output file that cannot be written where the user asked."""


@dataclass(frozen=True)
class QueryFiles:
    """Where one sketch's files go."""

    grid: Path
    generated: Path
    json: Path | None


def generated_path_for(grid: Path) -> Path:
    """The generated image beside its grid, named after the grid: unique per grid."""
    return grid.with_name(f"{grid.stem}_generated.png")


def unique_names(sketches: Sequence[Path]) -> list[str]:
    """One name per sketch (its file stem), made unique with -2, -3... where stems repeat."""
    names, seen = [], set()
    for path in sketches:
        name, n = path.stem, 1
        while name.lower() in seen:
            n += 1
            name = f"{path.stem}-{n}"
        seen.add(name.lower())
        names.append(name)
    return names


def plan_query_files(sketches: Sequence[Path], output: Path | None, json_path: Path | None,
                     several: bool) -> list[QueryFiles]:
    """Every file each sketch will write, checked now; nothing is created.

    One sketch: `output` and `json_path` are files (default grid `results/<sketch>_results.png`).
    Several: they are folders, holding `<sketch>_results.png` (default folder `results`) and
    `<sketch>.json`.
    """
    if several:
        out_dir = Path(output).expanduser() if output is not None else Path("results")
        check_folder(out_dir, "--output")
        json_dir = None
        if json_path is not None:
            json_dir = Path(json_path).expanduser()
            check_folder(json_dir, "--json")
        plans = [QueryFiles(out_dir / f"{name}{GRID_SUFFIX}.png",
                            generated_path_for(out_dir / f"{name}{GRID_SUFFIX}.png"),
                            json_dir / f"{name}.json" if json_dir is not None else None)
                 for name in unique_names(sketches)]
    else:
        grid = (Path(output).expanduser() if output is not None
                else Path("results") / f"{sketches[0].stem}{GRID_SUFFIX}.png")
        plans = [QueryFiles(grid, generated_path_for(grid),
                            Path(json_path).expanduser() if json_path is not None else None)]
    flags = {}
    for plan in plans:
        for flag, path in (("--output", plan.grid), ("--output", plan.generated), ("--json", plan.json)):
            if path is None:
                continue
            key = os.path.normcase(os.path.abspath(path))
            if key in flags:
                raise OutputError(f"{flag} {path}: already used by {flags[key]} in this run; "
                                  "give each file its own name")
            flags[key] = flag
            check_file(path, flag)
    return plans


def check_file(path: Path, flag: str) -> None:
    """Refuse now a file that could not be written later: a folder, or in a place that is not writable."""
    if path.is_dir():
        raise OutputError(f"{flag} {path}: is a folder; give a file name (e.g. {path / 'results.png'})"
                          if flag == "--output" else
                          f"{flag} {path}: is a folder; give a file name (e.g. {path / 'results.json'})")
    _check_writable_place(path.parent, f"{flag} {path}")


def check_folder(folder: Path, flag: str) -> None:
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{flag} {folder}: is a file; with several sketches {flag} is a folder "
                          "(each sketch gets its own files there)")
    _check_writable_place(folder, f"{flag} {folder}")


def _check_writable_place(folder: Path, what: str) -> None:
    """`folder` exists and takes new files, or can be made in a place that does; nothing is left."""
    folder = Path(os.path.abspath(folder))
    existing = folder
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"{what}: {existing} is a file, not a folder; choose another place")
    # Ask the file system itself (permissions, a read-only mount; root passes every access() check).
    probe = existing / f".sketch-search-probe-{uuid.uuid4().hex[:12]}"
    try:
        probe.touch(exist_ok=False)
    except OSError as exc:
        raise OutputError(f"{what}: cannot write in {existing} ({exc.strerror or exc}); "
                          "choose a writable place") from None
    probe.unlink()


def write_file(path: Path, write: Callable[[Path], None]) -> None:
    """write_atomically, with a failed write (a full disk, a vanished folder) as one line."""
    try:
        write_atomically(path, write)
    except OSError as exc:
        raise OutputError(f"could not write {path}: {exc.strerror or exc}; "
                          "the files written before it are kept") from None


def png_bytes(image: Image.Image) -> bytes:
    """An image encoded as PNG: what the generated image is written as (and kept as, by the air
    canvas's finished runs, so a save only writes the bytes)."""
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def save_query_files(result, generated_png: bytes, index_report, generated_path: Path,
                     json_path: Path | None) -> dict:
    """Write the generated image (PNG bytes) and, when asked, the JSON; return the JSON's content.

    `generated_image` in the JSON is absolute, like the result paths.
    """
    write_file(generated_path, lambda p: p.write_bytes(generated_png))
    data = result.to_dict(Path(generated_path).absolute(), index_report)
    if json_path is not None:
        write_json(json_path, data)
    return data


def write_json(path: Path, data: dict) -> None:
    text = json.dumps(data, indent=2)
    write_file(path, lambda p: p.write_text(text, encoding="utf-8"))
