"""A query's files: the generated image and the JSON, written atomically."""
from __future__ import annotations

import json
from pathlib import Path

from common.files import write_atomically, write_text_atomically


def save_query_files(result, index_report, generated_path: Path,
                     json_path: Path | None) -> dict:
    """Save the generated image (and the JSON, when asked); return the JSON's content."""
    write_atomically(generated_path, lambda p: result.generated.save(p, format="PNG"))
    data = result.to_dict(generated_path, index_report)
    if json_path is not None:
        write_text_atomically(json_path, json.dumps(data, indent=2))
    return data
