"""Writing a query's files: atomically, so a crash never leaves half an image or JSON file."""
from __future__ import annotations

import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path


def write_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder, then rename it into place.

    The temporary name is made here rather than by mkstemp, whose files are private (0600):
    results get the usual permissions (umask) like any file the user makes.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{uuid.uuid4().hex[:12]}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def save_query_files(result, index_report, generated_path: Path,
                     json_path: Path | None) -> dict:
    """Save the generated image (and the JSON, when asked); return the JSON's content."""
    write_atomically(generated_path, lambda p: result.generated.save(p, format="PNG"))
    data = result.to_dict(generated_path, index_report)
    if json_path is not None:
        write_atomically(json_path, lambda p: p.write_text(json.dumps(data, indent=2)))
    return data
