"""What the air canvas's screen shows and what its controls do: plain, thread-free state.

Modes: drawing (the canvas; undo, redo, help and quit buttons; the matches as tiles along the
bottom once there are any), a photo open (back, previous, next, show on phone), help (a card
over the canvas; drawing goes on under it and closes it) and confirm-quit (a second, confirming
hold on Quit, or Back to stay). Every control lies inside the camera view, where the hand can
reach it, and is at least BUTTON x BUTTON pixels at 640 x 480 (tiles larger); sizes scale with
the view.

`press(control)` carries out what a control (or its key) does to the screen and returns the
`Command` the program must carry out (clear the canvas, undo, open a photo, show it on the
phone, quit...), or None: a table from (mode, control kind) to a short handler. The names of
controls and actions are sketch/controls.py's. New matches never reorder the tiles while one is being held: they wait
in `offer_results` until `settle` is called with no tile held.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import Enum, auto
from pathlib import Path

from sketch.controls import CommandAction, ControlId, ControlKind, named, tile
from sketch.pointer import Control, Rect

BUTTON = 88        # px at 640 x 480: big enough to hit from a metre
TILE = 112         # result tiles, five across the bottom
MARGIN = 8
MAX_TILES = 5
BASE = (640, 480)
K = ControlKind


class Mode(Enum):
    DRAWING = auto()
    PHOTO = auto()
    HELP = auto()
    CONFIRM_QUIT = auto()


@dataclass(frozen=True)
class Command:
    """An action for the program to carry out; `fields` go into its `command` event."""
    action: CommandAction
    fields: dict = field(default_factory=dict)

    def __post_init__(self):   # an action's word (e.g. from a test) is one of the actions, or fails here
        object.__setattr__(self, "action", CommandAction(self.action))


@dataclass
class PhoneState:
    """Whether the open photo can be shown on the phone; `reason` says why not."""
    available: bool | None = None    # None: not known yet
    reason: str | None = "checking"
    sending: bool = False


class Screen:
    """The screen of a `width` x `height` view (the camera's own pixels)."""

    def __init__(self, width: int, height: int, show_help: bool = False):
        self.width, self.height = width, height
        self.scale = min(width / BASE[0], height / BASE[1])
        self.mode = Mode.HELP if show_help else Mode.DRAWING
        self.results: list = []          # the tiles' matches, best first (ResultPhoto-like)
        self._pending: list | None = None
        self.browsing: list = []         # the matches as they were when a photo was opened
        self.index = 0                   # the open photo's place in `browsing`
        self.phone = PhoneState()
        self._before_quit = Mode.DRAWING

    # -- what is open -----------------------------------------------------------------------
    @property
    def photo(self):
        """The open photo's match (with .path and .score), or None."""
        return self.browsing[self.index] if self.mode is Mode.PHOTO else None

    @property
    def rank(self) -> int | None:
        return self.index + 1 if self.mode is Mode.PHOTO else None

    # -- matches ------------------------------------------------------------------------------
    def offer_results(self, photos: list, held: str | ControlId | None = None) -> None:
        """New matches for the tiles (objects with .path and .score), best first; they wait
        while a tile is held (`held`: the held control's name) so the tile under the hand stays."""
        self._pending = list(photos)
        self.settle(held)

    def settle(self, held: str | ControlId | None) -> None:
        """Call each frame with the held control (or its name): waiting matches take their place
        once no tile is held."""
        if self._pending is not None and not self._is_tile(held):
            self.results, self._pending = self._pending, None

    def _is_tile(self, held: str | ControlId | None) -> bool:
        control = self.control_named(held)
        return control is not None and control.kind is K.RESULT

    def control_named(self, name: str | ControlId | None) -> ControlId | None:
        """The control of this wire name (a button, or a tile up to the matches' count); None
        for no such control."""
        return named(name, max(MAX_TILES, len(self.results)))

    # -- the controls ----------------------------------------------------------------------------
    def _px(self, value: float) -> int:
        return int(round(value * self.scale))

    def _button(self, x: float, y: float, width: float = BUTTON, height: float = BUTTON) -> Rect:
        """A button's rect; x, y may be negative (from the right or bottom edge)."""
        w, h = self._px(width), self._px(height)
        left = x if x >= 0 else self.width + x - w
        top = y if y >= 0 else self.height + y - h
        return (int(round(left)), int(round(top)), w, h)

    def tile_rects(self) -> list[Rect]:
        side, gap = self._px(TILE), self._px(MARGIN)
        count = min(len(self.results), MAX_TILES)
        top = self.height - side - gap
        return [(gap + i * (side + gap), top, side, side) for i in range(count)]

    def controls(self) -> list[Control]:
        """The controls shown now, in drawing order (the last on top)."""
        m = self._px(MARGIN)
        b = self._px(BUTTON)
        if self.mode is Mode.PHOTO:
            return self._photo_controls(m)
        if self.mode is Mode.CONFIRM_QUIT:
            middle = (self.height - b) // 2
            return [Control(K.QUIT.value, self._button(self.width / 2 - b - 2 * m, middle, BUTTON * 1.2),
                            "Quit"),
                    Control(K.BACK.value, self._button(self.width / 2 + 2 * m, middle, BUTTON * 1.2),
                            "Stay")]
        if self.mode is Mode.HELP:
            return [Control(K.BACK.value, self._button((self.width - b) / 2, -3 * m), "Close")]
        controls = [
            Control(K.UNDO.value, self._button(m, m), "Undo"),
            Control(K.REDO.value, self._button(2 * m + b, m), "Redo"),
            Control(K.HELP.value, self._button(-(2 * m + b), m), "Help"),
            Control(K.QUIT.value, self._button(-m, m), "Quit"),
        ]
        for rank, rect in enumerate(self.tile_rects(), 1):
            controls.append(Control(tile(rank).name, rect, f"{rank}"))
        return controls

    def _photo_controls(self, m: int) -> list[Control]:
        """A photo open: back, show on phone (or why not), previous and next."""
        phone = self.phone
        can_show = bool(phone.available) and not phone.sending
        reason = None if can_show else ("sending" if phone.sending else phone.reason or "not available")
        several = len(self.browsing) > 1
        tall = BUTTON * 1.5     # previous / next: tall strips at the edges, easy to find
        middle = (self.height - self._px(tall)) // 2
        return [
            Control(K.BACK.value, self._button(m, m), "Back"),
            Control(K.SHOW_ON_PHONE.value, self._button(-m, m, BUTTON * 2), "On phone",
                    can_show, reason),
            Control(K.PREVIOUS.value, self._button(m, middle, BUTTON, tall), "<\nPrev", several,
                    None if several else "only one match"),
            Control(K.NEXT.value, self._button(-m, middle, BUTTON, tall), ">\nNext", several,
                    None if several else "only one match"),
        ]

    # -- what the controls do -------------------------------------------------------------------
    def press(self, control: str | ControlId) -> Command | None:
        """Carry out `control` (or the control of that wire name) on the screen; the command for
        the program, or None. What it does in each mode is PRESSES' handler."""
        control = self.control_named(control)
        handler = PRESSES.get((self.mode, control.kind)) if control is not None else None
        return handler(self, control) if handler is not None else None

    def _edit(self, control: ControlId) -> Command:
        return Command(EDITS[control.kind])

    def _help(self, control: ControlId) -> Command:
        self.mode = Mode.HELP
        return Command(CommandAction.HELP)

    def _ask_quit(self, control: ControlId) -> None:
        self._before_quit, self.mode = self.mode, Mode.CONFIRM_QUIT

    def _quit(self, control: ControlId) -> Command:
        return Command(CommandAction.QUIT)

    def _back(self, control: ControlId) -> Command:
        self.mode = Mode.DRAWING
        return Command(CommandAction.CLOSE)

    def _open_tile(self, control: ControlId) -> Command | None:
        return self.open(control.rank)

    def _step(self, control: ControlId) -> Command | None:
        """Next or previous among the matches as they were when the photo was opened."""
        if len(self.browsing) < 2:
            return None
        step, action = STEPS[control.kind]
        self.index = (self.index + step) % len(self.browsing)
        self.phone = PhoneState()
        return Command(action, self._open_fields())

    def _show_on_phone(self, control: ControlId) -> Command | None:
        if not self.phone.available or self.phone.sending:
            return None
        self.phone.sending = True
        return Command(CommandAction.SHOW_ON_PHONE, {"path": str(self.photo.path)})

    def open(self, rank: int) -> Command | None:
        """Open the match of this rank (1 = best) among the tiles."""
        if self.mode not in (Mode.DRAWING, Mode.PHOTO) or not 1 <= rank <= len(self.results):
            return None
        self.browsing = list(self.results)
        self.index = rank - 1
        self.mode = Mode.PHOTO
        self.phone = PhoneState()
        return Command(CommandAction.OPEN, self._open_fields())

    def _open_fields(self) -> dict:
        return {"rank": self.index + 1, "path": str(self.browsing[self.index].path)}

    def drawing_started(self) -> None:
        """The person began to draw: the help card and the quit question step aside."""
        if self.mode in (Mode.HELP, Mode.CONFIRM_QUIT):
            self.mode = Mode.DRAWING

    def phone_checked(self, path: Path, available: bool, reason: str | None) -> None:
        """Whether the photo at `path` came from a phone (it may no longer be the open one)."""
        if self.photo is not None and Path(self.photo.path) == Path(path):
            self.phone = PhoneState(available, None if available else reason)

    def phone_done(self, path: Path) -> None:
        """A show-on-phone call for `path` has ended: the control can be pressed again."""
        if self.photo is not None and Path(self.photo.path) == Path(path):
            self.phone.sending = False


EDITS = {K.UNDO: CommandAction.UNDO, K.REDO: CommandAction.REDO, K.CLEAR: CommandAction.CLEAR}
STEPS = {K.NEXT: (1, CommandAction.NEXT), K.PREVIOUS: (-1, CommandAction.PREVIOUS)}
Press = Callable[[Screen, ControlId], "Command | None"]


def _in(modes: tuple[Mode, ...], kinds: tuple[ControlKind, ...], handler: Press) -> dict:
    return {(mode, kind): handler for mode in modes for kind in kinds}


_NOT_PHOTO = (Mode.DRAWING, Mode.HELP, Mode.CONFIRM_QUIT)
# (mode, control kind) -> what pressing it does; a pair not listed does nothing.
PRESSES: dict[tuple[Mode, ControlKind], Press] = {
    **_in(_NOT_PHOTO, tuple(EDITS), Screen._edit),               # undo, redo, clear
    **_in(_NOT_PHOTO, (K.HELP,), Screen._help),
    **_in((Mode.DRAWING, Mode.HELP), (K.QUIT,), Screen._ask_quit),
    **_in((Mode.CONFIRM_QUIT,), (K.QUIT,), Screen._quit),        # the second, confirming hold
    **_in((Mode.PHOTO, Mode.HELP, Mode.CONFIRM_QUIT), (K.BACK,), Screen._back),
    **_in((Mode.DRAWING, Mode.PHOTO), (K.RESULT,), Screen._open_tile),
    **_in((Mode.PHOTO,), tuple(STEPS), Screen._step),
    **_in((Mode.PHOTO,), (K.SHOW_ON_PHONE,), Screen._show_on_phone),
}
