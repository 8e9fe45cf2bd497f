"""Point and hold: on-screen controls pressed by holding a pointer still on them.

A hand that is not drawing moves a pointer (`AirPen.pointer`); holding it within a small radius
on an enabled control for about a second presses that control, while a ring fills. Plain,
thread-free logic fed with (point, time, controls) each frame, so tests drive it directly.

Rules: a disabled control never fires; after a press nothing fires again until the pointer has
both left the pressed control (by name) and moved away from where it pressed, or the hand is
gone - so a control that takes the place of the pressed one (a photo's Back where its tile
was) is not pressed by the same hold.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

HOLD_SECONDS = 1.0     # how long the pointer rests on a control to press it
HOLD_RADIUS = 24.0     # pixels of a 480-pixel-high view: more movement than this restarts the hold

Point = tuple[float, float]
Rect = tuple[int, int, int, int]   # x, y, width, height in view pixels


@dataclass(frozen=True)
class Control:
    """A pressable place on the screen. `reason`: why it is shown disabled (None when enabled)."""
    name: str
    rect: Rect
    label: str
    enabled: bool = True
    reason: str | None = None

    def contains(self, point: Point) -> bool:
        x, y, w, h = self.rect
        return x <= point[0] < x + w and y <= point[1] < y + h

    def as_event(self) -> dict:
        """The control as the `controls` event lists it."""
        item = {"name": self.name, "rect": [int(v) for v in self.rect]}
        if not self.enabled:
            item["enabled"] = False
            item["reason"] = self.reason or "not available"
        return item


def control_at(point: Point, controls: list[Control]) -> Control | None:
    """The control under `point`; the last listed wins where controls overlap (drawn on top)."""
    for control in reversed(controls):
        if control.contains(point):
            return control
    return None


class HoldToPress:
    """Turns a pointer's path into presses of controls."""

    def __init__(self, hold_seconds: float = HOLD_SECONDS, radius: float = HOLD_RADIUS):
        if hold_seconds <= 0 or radius <= 0:
            raise ValueError("hold_seconds and radius must be positive")
        self.hold_seconds = hold_seconds
        self.radius = radius
        self.point: Point | None = None
        self.over: Control | None = None      # the control under the pointer, enabled or not
        self._anchor: Point | None = None     # where the current hold started
        self._started = 0.0
        self._now = 0.0
        self._spent: tuple[str, Point] | None = None   # the last press: control name, point

    @property
    def holding(self) -> str | None:
        """The name of the control being held (its ring filling), else None."""
        return self.over.name if self._anchor is not None and self.over is not None else None

    @property
    def progress(self) -> float | None:
        """0..1 while a control is being held, else None."""
        if self.holding is None:
            return None
        return min(1.0, (self._now - self._started) / self.hold_seconds)

    def reset(self) -> None:
        """Forget the hold and the last press (the hand is gone)."""
        self.point = self.over = self._anchor = self._spent = None

    def update(self, point: Point | None, t: float, controls: list[Control]) -> Control | None:
        """One frame: the pointer (None: no pointing hand) at time `t`; the control pressed now."""
        self._now = t
        if point is None:
            self.reset()
            return None
        self.point = point
        over = control_at(point, controls)
        if self._spent is not None:
            name, pressed_at = self._spent
            if (over is None or over.name != name) and math.dist(point, pressed_at) > self.radius:
                self._spent = None
        if over is None or not over.enabled or self._spent is not None:
            self.over, self._anchor = over, None
            return None
        if (self._anchor is None or self.over is None or self.over.name != over.name
                or math.dist(point, self._anchor) > self.radius):
            self._anchor, self._started = point, t   # a new hold starts here
        self.over = over
        if t - self._started >= self.hold_seconds:
            self._spent = (over.name, point)
            self._anchor = None
            return over
        return None
