"""Point and hold (sketch.pointer) and the screen's state (sketch.screen), driven frame by frame
with made-up times: no threads, no sleeps."""
from __future__ import annotations

from pathlib import Path

import pytest

from sketch.overlay import ResultPhoto
from sketch.pointer import Control, HoldToPress, control_at
from sketch.screen import BUTTON, Mode, Screen

FRAME = 1 / 30


def hold(presser: HoldToPress, point, controls, seconds: float, start: float = 0.0):
    """Feed the same point for `seconds`; the names pressed, in order, and the end time."""
    pressed, t = [], start
    while t <= start + seconds + 1e-9:
        control = presser.update(point, t, controls)
        if control is not None:
            pressed.append(control.name)
        t += FRAME
    return pressed, t


BUTTONS = [Control("undo", (10, 10, 90, 90), "Undo"),
           Control("off", (200, 10, 90, 90), "Off", enabled=False, reason="not now")]


def test_a_one_second_hold_on_a_control_presses_it_once():
    presser = HoldToPress()
    pressed, _ = hold(presser, (50, 50), BUTTONS, 0.9)
    assert pressed == []
    assert 0.85 < presser.progress <= 0.95 and presser.holding == "undo"
    pressed, _ = hold(presser, (50, 50), BUTTONS, 3.0, start=0.9 + FRAME)
    assert pressed == ["undo"]            # held on: no second press
    assert presser.progress is None


def test_the_pointer_must_leave_and_come_back_to_press_again():
    presser = HoldToPress()
    pressed, t = hold(presser, (50, 50), BUTTONS, 1.2)
    assert pressed == ["undo"]
    pressed, t = hold(presser, (400, 300), BUTTONS, 0.2, t)   # away
    pressed, t = hold(presser, (50, 50), BUTTONS, 1.2, t)     # back, held
    assert pressed == ["undo"]


def test_the_hand_going_away_rearms_the_control():
    presser = HoldToPress()
    _, t = hold(presser, (50, 50), BUTTONS, 1.2)
    presser.update(None, t, BUTTONS)
    pressed, _ = hold(presser, (50, 50), BUTTONS, 1.2, t + FRAME)
    assert pressed == ["undo"]


def test_moving_more_than_the_radius_restarts_the_hold():
    presser = HoldToPress(radius=10)
    t, pressed = 0.0, []
    for i in range(60):   # 2 s drifting 1 px a frame inside the button: never still long enough
        control = presser.update((20 + i, 50), t, BUTTONS)
        pressed += [control.name] if control else []
        t += FRAME
    assert pressed == []


def test_a_disabled_control_never_fires_and_shows_no_ring():
    presser = HoldToPress()
    pressed, _ = hold(presser, (240, 50), BUTTONS, 5.0)
    assert pressed == [] and presser.progress is None
    assert presser.over.name == "off"


def test_resting_away_from_the_controls_presses_nothing():
    presser = HoldToPress()
    pressed, _ = hold(presser, (320, 300), BUTTONS, 10.0)
    assert pressed == [] and presser.progress is None and presser.over is None


def test_a_control_that_takes_the_pressed_ones_place_is_not_pressed_by_the_same_hold():
    presser = HoldToPress()
    _, t = hold(presser, (50, 50), BUTTONS, 1.1)
    replaced = [Control("back", (10, 10, 90, 90), "Back")]
    pressed, t = hold(presser, (52, 50), replaced, 3.0, t)
    assert pressed == []
    pressed, t = hold(presser, (300, 300), replaced, 0.1, t)
    pressed, _ = hold(presser, (50, 50), replaced, 1.1, t)
    assert pressed == ["back"]


def test_control_at_prefers_the_topmost_and_events_list_disabled_reasons():
    a, b = Control("a", (0, 0, 100, 100), "A"), Control("b", (50, 50, 100, 100), "B")
    assert control_at((60, 60), [a, b]).name == "b"
    assert control_at((200, 200), [a, b]) is None
    assert BUTTONS[1].as_event() == {"name": "off", "rect": [200, 10, 90, 90], "enabled": False,
                                     "reason": "not now"}
    assert BUTTONS[0].as_event() == {"name": "undo", "rect": [10, 10, 90, 90]}


# -- the screen ---------------------------------------------------------------------------------
def photos(n: int, prefix: str = "p") -> list[ResultPhoto]:
    return [ResultPhoto(Path(f"/g/{prefix}{i}.jpg"), f"{prefix}{i}.jpg", 1.0 - i / 10) for i in range(n)]


def names(screen: Screen) -> list[str]:
    return [c.name for c in screen.controls()]


def inside(rect, size) -> bool:
    x, y, w, h = rect
    return x >= 0 and y >= 0 and x + w <= size[0] and y + h <= size[1]


def test_drawing_controls_are_inside_the_view_large_and_apart():
    screen = Screen(640, 480)
    screen.offer_results(photos(5))
    controls = screen.controls()
    assert names(screen) == ["undo", "redo", "help", "quit"] + [f"result-{i}" for i in range(1, 6)]
    for control in controls:
        assert inside(control.rect, (640, 480)), control
        assert control.rect[2] >= 80 and control.rect[3] >= 80, control
    tiles = [c for c in controls if c.name.startswith("result-")]
    assert all(c.rect[2] > BUTTON for c in tiles)
    for i, a in enumerate(controls):   # no two overlap
        for b in controls[i + 1:]:
            ax, ay, aw, ah = a.rect
            bx, by, bw, bh = b.rect
            assert ax + aw <= bx or bx + bw <= ax or ay + ah <= by or by + bh <= ay, (a, b)


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (320, 240)])
def test_every_mode_keeps_its_controls_inside_views_of_any_size(size):
    screen = Screen(*size, show_help=True)
    assert inside(screen.controls()[0].rect, size)
    screen.press("back")
    screen.offer_results(photos(5))
    for control in screen.controls():
        assert inside(control.rect, size)
    screen.press("result-2")
    for control in screen.controls():
        assert inside(control.rect, size)
    screen.press("back")
    screen.press("quit")
    for control in screen.controls():
        assert inside(control.rect, size)


def test_open_next_previous_back():
    screen = Screen(640, 480)
    screen.offer_results(photos(3))
    command = screen.press("result-2")
    assert (command.action, command.fields) == ("open", {"rank": 2, "path": "/g/p1.jpg"})
    assert screen.mode is Mode.PHOTO and screen.photo.path == Path("/g/p1.jpg")
    assert names(screen) == ["back", "show-on-phone", "previous", "next"]
    assert screen.press("next").fields == {"rank": 3, "path": "/g/p2.jpg"}
    assert screen.press("next").fields == {"rank": 1, "path": "/g/p0.jpg"}   # round to the best
    assert screen.press("previous").fields == {"rank": 3, "path": "/g/p2.jpg"}
    assert screen.press("back").action == "close"
    assert screen.mode is Mode.DRAWING and screen.photo is None
    assert screen.press("back") is None          # nothing open: nothing to close


def test_one_match_has_no_previous_or_next():
    screen = Screen(640, 480)
    screen.offer_results(photos(1))
    screen.press("result-1")
    controls = {c.name: c for c in screen.controls()}
    assert not controls["next"].enabled and controls["next"].reason
    assert screen.press("next") is None


def test_show_on_phone_is_disabled_until_known_and_with_its_reason():
    screen = Screen(640, 480)
    screen.offer_results(photos(2))
    screen.press("result-1")
    phone = {c.name: c for c in screen.controls()}["show-on-phone"]
    assert not phone.enabled and phone.reason == "checking"
    assert screen.press("show-on-phone") is None
    screen.phone_checked(Path("/g/p1.jpg"), True, None)     # another photo: ignored
    screen.phone_checked(Path("/g/p0.jpg"), False, "not from a phone")
    phone = {c.name: c for c in screen.controls()}["show-on-phone"]
    assert not phone.enabled and phone.reason == "not from a phone"
    assert screen.press("show-on-phone") is None
    screen.press("next")
    screen.phone_checked(Path("/g/p1.jpg"), True, None)
    assert {c.name: c for c in screen.controls()}["show-on-phone"].enabled
    command = screen.press("show-on-phone")
    assert (command.action, command.fields) == ("show_on_phone", {"path": "/g/p1.jpg"})
    assert screen.press("show-on-phone") is None            # one call at a time
    screen.phone_done(Path("/g/p1.jpg"))
    assert screen.press("show-on-phone").action == "show_on_phone"


def test_quit_needs_a_second_confirming_press_and_back_stays():
    screen = Screen(640, 480)
    first = {c.name: c for c in screen.controls()}["quit"]
    assert screen.press("quit") is None
    assert screen.mode is Mode.CONFIRM_QUIT
    confirm = {c.name: c for c in screen.controls()}["quit"]
    assert confirm.rect != first.rect          # not under the hand that pressed the first
    assert screen.press("back").action == "close" and screen.mode is Mode.DRAWING
    screen.press("quit")
    assert screen.press("quit").action == "quit"


def test_help_card_at_first_start_closes_by_back_or_by_drawing():
    screen = Screen(640, 480, show_help=True)
    assert screen.mode is Mode.HELP and names(screen) == ["back"]
    screen.drawing_started()
    assert screen.mode is Mode.DRAWING
    assert screen.press("help").action == "help" and screen.mode is Mode.HELP
    assert screen.press("back").action == "close"


def test_new_matches_wait_while_a_tile_is_held():
    screen = Screen(640, 480)
    screen.offer_results(photos(3, "a"))
    screen.offer_results(photos(3, "b"), held="result-2")
    assert [p.name for p in screen.results] == ["a0.jpg", "a1.jpg", "a2.jpg"]
    screen.settle("result-2")
    assert screen.press("result-2").fields["path"] == "/g/a1.jpg"   # what was under the hand
    screen.press("back")
    screen.settle(None)
    assert [p.name for p in screen.results] == ["b0.jpg", "b1.jpg", "b2.jpg"]
    screen.offer_results(photos(2, "c"), held="undo")     # a button held: tiles may change
    assert [p.name for p in screen.results] == ["c0.jpg", "c1.jpg"]


def test_an_open_photo_keeps_its_list_when_new_matches_arrive():
    screen = Screen(640, 480)
    screen.offer_results(photos(3, "a"))
    screen.press("result-1")
    screen.offer_results(photos(3, "b"))
    assert screen.press("next").fields["path"] == "/g/a1.jpg"
