"""The program's per-user home: where its own data lives when it is installed as a command.

One environment variable moves all of it (`SKETCH_SEARCH_HOME`), as `RCLIP_DATADIR` and
`LLM_USER_PATH` do for those programs. Without it: `$XDG_DATA_HOME/sketch-search` (default
`~/.local/share/sketch-search`) on Linux, `~/Library/Application Support/sketch-search` on macOS,
`%LOCALAPPDATA%\\sketch-search` on Windows. Nothing is created here: writers make what they need.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

HOME_VARIABLE = "SKETCH_SEARCH_HOME"
APP_NAME = "sketch-search"


def user_home() -> Path:
    """The per-user home folder (not created)."""
    chosen = os.environ.get(HOME_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    if sys.platform == "win32":
        base = os.environ.get("LOCALAPPDATA") or str(Path.home() / "AppData" / "Local")
        return Path(base) / APP_NAME
    if sys.platform == "darwin":
        return Path.home() / "Library" / "Application Support" / APP_NAME
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base).expanduser() / APP_NAME
