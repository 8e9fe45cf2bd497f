"""The touchless commands of the air canvas: the screen's controls, the pointer's holds that press
them, and what each command does (clear, undo, redo, open / next / previous / back, show on phone,
help, quit), with its `command` event and the `controls` event whenever the controls change.

No thread and no window: the loop hands it each frame's pointer and collects the photo viewer's
answers through it; the window's picture reads its screen, pointer holds, open photo and note.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from device.show_on_phone import ShowReason
from sketch.canvas import Canvas
from sketch.controls import CommandAction, ControlId
from sketch.pointer import HOLD_RADIUS, HoldToPress, Point
from sketch.screen import Command, Screen
from sketch_search.app.events import EventLog
from sketch_search.app.photo_view import OpenedPhoto, OriginalNote, PhoneCheck, PhoneShown, PhotoViewer
from sketch_search.app.timed_line import TimedLine
from sketch_search.common.names import display_name

NOTE_SECONDS = 6.0


class Commands:
    """Presses controls and carries out commands on `canvas` (set with `start`); `toast` shows a
    short message over the view."""

    def __init__(self, events: EventLog, viewer: PhotoViewer, toast: Callable[[str], None]):
        self.events = events
        self.viewer = viewer
        self.toast = toast
        self.canvas: Canvas | None = None
        self.screen: Screen | None = None
        self.presser = HoldToPress()
        self.opened: OpenedPhoto | None = None               # the open photo, once decoded
        self.quit_requested = False
        self.notes = TimedLine(NOTE_SECONDS)                 # a status-bar line for a while
        self._controls_sent: list[dict] | None = None

    def start(self, canvas: Canvas, show_help: bool) -> None:
        """The first frame: the screen over the camera's view, the pointer's hold at its scale."""
        self.canvas = canvas
        self.screen = Screen(canvas.width, canvas.height, show_help=show_help)
        self.presser = HoldToPress(radius=HOLD_RADIUS * self.screen.scale)

    def point(self, pointer: Point | None, t: float) -> None:
        """The pointer at frame time `t`: a hold long enough on a control presses it."""
        pressed = self.presser.update(pointer, t, self.screen.controls())
        if pressed is not None:
            self.press(pressed.name)

    def press(self, control: str | ControlId) -> None:
        """A control (or the control of that wire name) pressed, by the pointer's hold or its key:
        the screen decides, we act."""
        command = self.screen.press(control)
        if command is not None:
            self.carry_out(command)

    def carry_out(self, command: Command) -> None:
        """Do what a command asks; every command but showing on the phone is logged as it fires
        (that one when the phone has answered, with the answer)."""
        action = command.action
        if action is not CommandAction.SHOW_ON_PHONE:
            self.events.write("command", action=action.value, **command.fields)
        if action is CommandAction.CLEAR:
            self.toast("cleared (undo brings it back)" if self.canvas.clear() else "nothing to clear")
        elif action is CommandAction.UNDO:
            self.toast("undone" if self.canvas.undo() else "nothing to undo")
        elif action is CommandAction.REDO:
            self.toast("redone" if self.canvas.redo() else "nothing to redo")
        elif action in (CommandAction.OPEN, CommandAction.NEXT, CommandAction.PREVIOUS):
            self.opened = None
            self.viewer.open(Path(command.fields["path"]), (self.canvas.width, self.canvas.height))
        elif action is CommandAction.CLOSE:
            self.viewer.close()
            self.opened = None
        elif action is CommandAction.SHOW_ON_PHONE:
            self.viewer.show_on_phone(Path(command.fields["path"]))
            self.note("showing the photo on the phone ...")
        elif action is CommandAction.QUIT:
            self.quit_requested = True

    def note(self, message: str, error: bool = False) -> None:
        """One line in the status bar for a while (e.g. the phone's answer)."""
        self.notes.show(message, error)

    def collect_photo_jobs(self) -> None:
        """The viewer's answers: the decoded photo (then its phone original, or a note why not),
        whether the phone has it, the phone's answer."""
        for result in self.viewer.results():
            if isinstance(result, OpenedPhoto):
                if self.screen.photo is not None and Path(self.screen.photo.path) == result.path:
                    self.opened = result              # the kept image, then its original
            elif isinstance(result, OriginalNote):
                self.note(result.message)
            elif isinstance(result, PhoneCheck):
                self.screen.phone_checked(result.path, result.available, result.reason)
            elif isinstance(result, PhoneShown):
                self.screen.phone_done(result.path)
                fields = {"path": str(result.path), "ok": result.ok}
                if not result.ok:
                    fields["reason"] = str(result.reason or ShowReason.REFUSED)
                self.events.write("command", action=CommandAction.SHOW_ON_PHONE.value, **fields)
                self.note(display_name(result.message) or ("shown on the phone" if result.ok else
                                                           f"not shown on the phone: {fields.get('reason')}"),
                          error=not result.ok)

    def settle(self) -> None:
        """End of a frame: waiting matches become tiles (unless one is held); a `controls` event
        whenever the pressable controls or their places change."""
        self.screen.settle(self.presser.holding)
        controls = [c.as_event() for c in self.screen.controls()]
        if controls != self._controls_sent:
            self._controls_sent = controls
            self.events.write("controls", controls=controls)
