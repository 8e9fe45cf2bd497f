"""What follows the drawing while a person draws (the window's `--live`), named once."""
from __future__ import annotations

from enum import StrEnum


class LiveMode(StrEnum):
    OFF = "off"            # saves only
    PREVIEW = "preview"    # a quick preview of the matches, and the full search ahead after a pause
    FULL = "full"          # the full search at every change, its results shown as they come


LIVE_MODES = tuple(mode.value for mode in LiveMode)   # the flag's choices, in this order
