"""The one way every command runs: logging set up once, a user error is one line and exit 2,
Ctrl+C is exit 130 with a message true for that command, SIGTERM is exit 143, and a bug keeps
its traceback."""
from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Callable
from typing import NoReturn

from sketch_search.common.errors import SketchSearchError

USER_ERROR = 2
INTERRUPTED = 130
TERMINATED = 143


def setup_logging(verbose: bool = False) -> None:
    """INFO with -v, else WARNING; the one logging set-up of every command."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s", force=True)


def _terminate(signum, frame) -> None:
    raise SystemExit(TERMINATED)


def exit_status(main: Callable[..., int | None], *args, interrupted: str = "interrupted") -> int:
    """Run `main(*args)`; return its exit status, turning a user error into one line on stderr."""
    try:
        return main(*args) or 0
    except SketchSearchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return USER_ERROR
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        return INTERRUPTED


def run_command(main: Callable[[], int | None], interrupted: str = "interrupted") -> None:
    """Run a command's `main` and exit with its status (the `if __name__ == "__main__"` of each).

    `interrupted` is what Ctrl+C prints, e.g. "interrupted: what was indexed is kept; run again
    to resume" only where running again really resumes. SIGTERM unwinds like Ctrl+C (files are
    closed, temporary files removed) and exits 143.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _terminate)
    sys.exit(exit_status(main, interrupted=interrupted))


def status_of(done: SystemExit) -> int:
    """The exit status a SystemExit stands for."""
    return done.code if isinstance(done.code, int) else (0 if done.code is None else 1)


def hard_exit(code: int) -> NoReturn:
    """End the process now with `code`, its logs and output flushed: for a thread that cannot be
    stopped (torch aborts an interpreter that ends while a thread runs in it)."""
    logging.getLogger(__name__).info("a thread did not stop; ending the process")
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
