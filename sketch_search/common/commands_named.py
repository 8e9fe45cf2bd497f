"""The command the person ran, as every hint names it: `sketch-search fetch` for the installed
command, `python -m checkpoints.fetch` from a checkout.

One decision per process, made by its entry point: the `sketch-search` command
(sketch_search/__main__.py) runs its subcommand inside `running_as(Form.COMMAND)`; everything else
(`python main.py`, `python main2.py`, `python -m device`, `python -m checkpoints.fetch`, a library
caller) keeps the default, the checkout's form, which also works on an installed copy for the
`python -m` programs. Messages ask `named(Program.FETCH)`; parsers ask `usage_name(...)` for their
argparse `prog`.
"""
from __future__ import annotations

import enum
from collections.abc import Iterator
from contextlib import contextmanager

COMMAND = "sketch-search"  # the installed console script


class Form(enum.Enum):
    CHECKOUT = "checkout"  # python main.py, python main2.py, python -m device, python -m checkpoints.fetch
    COMMAND = "command"    # sketch-search draw|find|phone|fetch


class Program(enum.Enum):
    """The programs, by their subcommand names under `sketch-search`."""
    DRAW = "draw"
    FIND = "find"
    PHONE = "phone"
    FETCH = "fetch"


_CHECKOUT_COMMANDS = {Program.DRAW: "python main.py", Program.FIND: "python main2.py",
                      Program.PHONE: "python -m device", Program.FETCH: "python -m checkpoints.fetch"}
# argparse's prog from a checkout: None lets argparse name the script (main.py, main2.py,
# fetch.py) as it always did; `python -m device` has always named itself.
_CHECKOUT_USAGE = {Program.PHONE: _CHECKOUT_COMMANDS[Program.PHONE]}
_form = Form.CHECKOUT


def current_form() -> Form:
    return _form


@contextmanager
def running_as(form: Form) -> Iterator[None]:
    """Inside: hints name the programs in `form`; the previous form is back afterwards."""
    global _form
    previous, _form = _form, form
    try:
        yield
    finally:
        _form = previous


def checkout_command(program: Program) -> str:
    """The command line that runs `program` from a checkout, whatever form this process runs as."""
    return _CHECKOUT_COMMANDS[program]


def named(program: Program, *words: str) -> str:
    """The command line that runs `program` (with `words` after it), in the form this process runs as."""
    base = f"{COMMAND} {program.value}" if _form is Form.COMMAND else _CHECKOUT_COMMANDS[program]
    return " ".join([base, *words])


def usage_name(program: Program) -> str | None:
    """The `prog` for `program`'s argument parser (None: argparse's own, the script's name)."""
    if _form is Form.COMMAND:
        return f"{COMMAND} {program.value}"
    return _CHECKOUT_USAGE.get(program)
