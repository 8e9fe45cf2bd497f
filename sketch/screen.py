"""What the air canvas's screen shows and what its controls do: plain, thread-free state.

Modes: drawing (the canvas; undo, redo, help and quit buttons; the matches as tiles along the
bottom once there are any), a photo open (back, previous, next, show on phone), help (a card
over the canvas; drawing goes on under it and closes it) and confirm-quit (a second, confirming
hold on Quit, or Back to stay). Every control lies inside the camera view, where the hand can
reach it, and is at least BUTTON x BUTTON pixels at 640 x 480 (tiles larger); sizes scale with
the view.

`press(name)` carries out what a control (or its key) does to the screen and returns the
`Command` the program must carry out (clear the canvas, undo, open a photo, show it on the
phone, quit...), or None. New matches never reorder the tiles while one is being held: they wait
in `offer_results` until `settle` is called with no tile held.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from sketch.pointer import Control, Rect

BUTTON = 88        # px at 640 x 480: big enough to hit from a metre
TILE = 112         # result tiles, five across the bottom
MARGIN = 8
MAX_TILES = 5
BASE = (640, 480)


class Mode(Enum):
    DRAWING = "drawing"
    PHOTO = "photo"
    HELP = "help"
    CONFIRM_QUIT = "confirm-quit"


@dataclass(frozen=True)
class Command:
    """An action for the program to carry out; `fields` go into its `command` event."""
    action: str        # clear, undo, redo, open, close, next, previous, show_on_phone, help, quit
    fields: dict = field(default_factory=dict)


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
    def offer_results(self, photos: list, held: str | None = None) -> None:
        """New matches for the tiles (objects with .path and .score), best first; they wait
        while a tile is held (`held`: the held control's name) so the tile under the hand stays."""
        self._pending = list(photos)
        self.settle(held)

    def settle(self, held: str | None) -> None:
        """Call each frame with the held control's name: waiting matches take their place once
        no tile is held."""
        if self._pending is not None and not (held or "").startswith("result-"):
            self.results, self._pending = self._pending, None

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
            phone = self.phone
            can_show = bool(phone.available) and not phone.sending
            reason = None if can_show else ("sending" if phone.sending else phone.reason or "not available")
            several = len(self.browsing) > 1
            tall = BUTTON * 1.5     # previous / next: tall strips at the edges, easy to find
            middle = (self.height - self._px(tall)) // 2
            return [
                Control("back", self._button(m, m), "Back"),
                Control("show-on-phone", self._button(-m, m, BUTTON * 2), "On phone",
                        can_show, reason),
                Control("previous", self._button(m, middle, BUTTON, tall), "<\nPrev", several,
                        None if several else "only one match"),
                Control("next", self._button(-m, middle, BUTTON, tall), ">\nNext", several,
                        None if several else "only one match"),
            ]
        if self.mode is Mode.CONFIRM_QUIT:
            middle = (self.height - b) // 2
            return [Control("quit", self._button(self.width / 2 - b - 2 * m, middle, BUTTON * 1.2),
                            "Quit"),
                    Control("back", self._button(self.width / 2 + 2 * m, middle, BUTTON * 1.2),
                            "Stay")]
        if self.mode is Mode.HELP:
            return [Control("back", self._button((self.width - b) / 2, -3 * m), "Close")]
        controls = [
            Control("undo", self._button(m, m), "Undo"),
            Control("redo", self._button(2 * m + b, m), "Redo"),
            Control("help", self._button(-(2 * m + b), m), "Help"),
            Control("quit", self._button(-m, m), "Quit"),
        ]
        for rank, rect in enumerate(self.tile_rects(), 1):
            controls.append(Control(f"result-{rank}", rect, f"{rank}"))
        return controls

    # -- what the controls do -------------------------------------------------------------------
    def press(self, name: str) -> Command | None:
        """Carry out control `name` on the screen; the command for the program, or None."""
        mode = self.mode
        if name in ("undo", "redo", "clear"):
            return Command(name) if mode is not Mode.PHOTO else None
        if name == "help":
            if mode is Mode.PHOTO:
                return None
            self.mode = Mode.HELP
            return Command("help")
        if name == "quit":
            if mode is Mode.CONFIRM_QUIT:
                return Command("quit")
            if mode is Mode.PHOTO:
                return None
            self._before_quit, self.mode = mode, Mode.CONFIRM_QUIT
            return None
        if name == "back":
            if mode is Mode.DRAWING:
                return None
            self.mode = Mode.DRAWING
            return Command("close")
        if name.startswith("result-"):
            return self.open(int(name.removeprefix("result-")))
        if mode is not Mode.PHOTO:
            return None
        if name in ("next", "previous") and len(self.browsing) > 1:
            step = 1 if name == "next" else -1
            self.index = (self.index + step) % len(self.browsing)
            self.phone = PhoneState()
            return Command(name, self._open_fields())
        if name == "show-on-phone" and self.phone.available and not self.phone.sending:
            self.phone.sending = True
            return Command("show_on_phone", {"path": str(self.photo.path)})
        return None

    def open(self, rank: int) -> Command | None:
        """Open the match of this rank (1 = best) among the tiles."""
        if self.mode not in (Mode.DRAWING, Mode.PHOTO) or not 1 <= rank <= len(self.results):
            return None
        self.browsing = list(self.results)
        self.index = rank - 1
        self.mode = Mode.PHOTO
        self.phone = PhoneState()
        return Command("open", self._open_fields())

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
