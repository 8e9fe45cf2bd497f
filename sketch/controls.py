"""The air canvas's names: its controls and the commands they give, each written here once.

A control's wire name (in the `controls` event, `HoldToPress.holding`, a key's press) is its
kind's value; a result tile is the kind RESULT with a rank (1 = best), named "result-<rank>".
A command's action is the word its `command` event carries.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from enum import StrEnum

TILE_SEPARATOR = "-"


class ControlKind(StrEnum):
    """What a control does; its value is the control's wire name (a tile's adds its rank)."""

    UNDO = "undo"
    REDO = "redo"
    CLEAR = "clear"             # a key only (the two-hands gesture clears too)
    HELP = "help"
    QUIT = "quit"
    BACK = "back"
    PREVIOUS = "previous"
    NEXT = "next"
    SHOW_ON_PHONE = "show-on-phone"
    RESULT = "result"           # a match's tile, with its rank


class CommandAction(StrEnum):
    """What the program is asked to do; the `command` event's `action`."""

    CLEAR = "clear"
    UNDO = "undo"
    REDO = "redo"
    OPEN = "open"
    CLOSE = "close"
    NEXT = "next"
    PREVIOUS = "previous"
    SHOW_ON_PHONE = "show_on_phone"
    HELP = "help"
    QUIT = "quit"


@dataclass(frozen=True)
class ControlId:
    """One control: its kind, and for a result tile its rank (1 = best)."""

    kind: ControlKind
    rank: int | None = None

    @property
    def name(self) -> str:
        """The wire name: the kind's value, a tile's followed by its rank."""
        return str(self.kind) if self.rank is None else f"{self.kind}{TILE_SEPARATOR}{self.rank}"


def tile(rank: int) -> ControlId:
    """The result tile of this rank (1 = best)."""
    return ControlId(ControlKind.RESULT, rank)


def named(name: str | ControlId | None, tiles: int) -> ControlId | None:
    """The control a wire name stands for, among the buttons and tiles 1..`tiles`; None for no
    such control. Looked up among the names the controls make, never parsed."""
    if name is None or isinstance(name, ControlId):
        return name
    return _controls_by_name(tiles).get(name)


@functools.lru_cache(maxsize=8)
def _controls_by_name(tiles: int) -> dict[str, ControlId]:
    """Wire name -> control for the buttons and tiles 1..`tiles` (the window asks every frame)."""
    return {control.name: control for control in
            [ControlId(kind) for kind in ControlKind if kind is not ControlKind.RESULT]
            + [tile(rank) for rank in range(1, tiles + 1)]}
