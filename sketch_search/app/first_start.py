"""The first start: the help card is shown once, at the very first start of the window, and a
flag file in the per-user home remembers that it was."""
from __future__ import annotations

import logging
from pathlib import Path

from sketch_search.common.files import write_text_atomically
from sketch_search.common.home import user_home

log = logging.getLogger(__name__)

HELP_SHOWN = "help-shown"


def help_flag(home: Path | None = None) -> Path:
    return (home or user_home()) / HELP_SHOWN


def first_start(home: Path | None = None) -> bool:
    """True until the help card has been shown once (for this user)."""
    return not help_flag(home).exists()


def remember_help_shown(home: Path | None = None) -> None:
    """Write the flag; a home that cannot be written only means the card shows again next time."""
    flag = help_flag(home)
    try:
        flag.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomically(flag, "the help card was shown at the first start\n")
    except OSError as exc:
        log.warning("could not remember that the help was shown (%s): %s", flag, exc)
