"""Library mismatches the program survives. Imported before transformers (sketch_search.app.cli.quiet_model_libraries).

A torchvision that does not fit the installed torch (Colab after torch was replaced: `operator
torchvision::nms does not exist`) fails on import, and transformers imports it whenever it is
installed, which takes BLIP down with it. Nothing here needs torchvision, so it is hidden.
"""
from __future__ import annotations

import importlib.util
import logging
import sys

log = logging.getLogger(__name__)


def hide_broken_torchvision() -> bool:
    """If torchvision is installed but cannot be imported, make every library see it as absent.

    transformers and diffusers ask `importlib.util.find_spec("torchvision")`, which answers None
    for a module set to None in sys.modules, and `import torchvision` then raises ImportError,
    which they handle. Returns True when it was hidden (with a one-line warning).
    """
    if "torchvision" in sys.modules:
        return sys.modules["torchvision"] is None
    try:
        if importlib.util.find_spec("torchvision") is None:
            return False
    except (ImportError, ValueError):
        return False
    try:
        import torchvision  # noqa: F401
    except Exception as exc:  # a mismatched build raises RuntimeError, a broken one anything
        for name in [n for n in sys.modules if n == "torchvision" or n.startswith("torchvision.")]:
            del sys.modules[name]
        sys.modules["torchvision"] = None
        import torch
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        log.warning("torchvision does not fit torch %s (%s): running without it; `pip uninstall "
                    "torchvision` or install the build made for this torch to silence this",
                    torch.__version__, reason[:160])
        return True
    return False
