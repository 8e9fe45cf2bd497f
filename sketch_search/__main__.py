"""`sketch-search`: the installed command, one subcommand per program.

    sketch-search draw  [...]   the air canvas (sketch_search/app/draw.py; needs the camera extra,
                                a phone optional; `python main.py` from a checkout)
    sketch-search find  [...]   the headless search (sketch_search/app/find.py; `python main2.py`)
    sketch-search phone [...]   the phone over ADB (`python -m device`: list, sync, show, ...)
    sketch-search fetch [...]   download the models (`python -m checkpoints.fetch`)

Each subcommand is its program's own command line, flags, exit codes and all: the rest of argv
goes to it unchanged, and it runs inside `running_as(Form.COMMAND)`, so its usage line says
`sketch-search NAME` and its hints name `sketch-search` commands (sys.argv is left as it is). A
subcommand's module is imported only when it runs, so `find` never imports MediaPipe and `--help`
imports nothing heavy. Also `python -m sketch_search`.
"""
from __future__ import annotations

import argparse
import sys

from sketch_search import __version__
from sketch_search.common.commands_named import COMMAND, Form, Program, checkout_command, running_as


def _draw(argv: list[str]) -> None:
    from sketch_search.app import draw
    draw.cli(argv)


def _find(argv: list[str]) -> None:
    from sketch_search.app import find
    find.cli(argv)


def _phone(argv: list[str]) -> None:
    import device.__main__  # its own parser: new phone subcommands appear here unchanged
    device.__main__.cli(argv)


def _fetch(argv: list[str]) -> None:
    import checkpoints.fetch
    checkpoints.fetch.cli(argv)


# name -> (what runs it, what it does). Each `cli(argv)` runs its program and exits with its status.
SUBCOMMANDS = {
    program.value: (run, f"{what} ({checkout_command(program)})") for program, run, what in (
        (Program.DRAW, _draw, "draw a sketch in the air in front of a webcam and search the gallery"),
        (Program.FIND, _find, "search a gallery for a saved sketch, headless"),
        (Program.PHONE, _phone, "the phone over ADB: list, sync, show, ..."),
        (Program.FETCH, _fetch, "download the models"))
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=COMMAND,
        description="Find a photo in your gallery by drawing it. `sketch-search COMMAND --help` "
                    "gives each command's flags.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, summary) in SUBCOMMANDS.items():
        commands.add_parser(name, help=summary, add_help=False)
    return parser


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] not in SUBCOMMANDS:
        build_parser().parse_args(argv)  # --help, --version, or one line and exit 2
        return
    name, rest = argv[0], argv[1:]
    with running_as(Form.COMMAND):  # its parser's prog and every hint name `sketch-search NAME`
        SUBCOMMANDS[name][0](rest)


if __name__ == "__main__":
    main()
