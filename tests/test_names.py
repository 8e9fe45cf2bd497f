"""The window's names are typed: each wire name (a control, a command's action, a show-on-phone
reason, a live mode, an index's way out) is written in quotes in one runtime module only, the one
that defines its enum, and every enum's values are distinct.

Runtime modules: every .py file outside tests/, tools/ and bench/ (comments, docstrings and thread
names included: a name in quotes anywhere is a name someone can mistype).
"""
from __future__ import annotations

import re
from enum import Enum
from pathlib import Path

from device.show_on_phone import ShowReason
from retrieval.index_errors import WayOut
from sketch.controls import CommandAction, ControlKind, tile
from sketch_search.app.live_mode import LiveMode
from tests.conftest import ROOT

ENUMS: dict[type[Enum], str] = {
    ControlKind: "sketch/controls.py",
    CommandAction: "sketch/controls.py",
    ShowReason: "device/show_on_phone.py",
    LiveMode: "sketch_search/app/live_mode.py",
    WayOut: "retrieval/index_errors.py",
}
# The same word in quotes meaning something else there: (module, word) -> what it means.
OTHER_MEANINGS = {
    ("captioning/prompt.py", "next"): "an English word that ends a caption's phrase",
    ("sketch_search/app/search_jobs.py", "preview"): "the `preview` event's name",
    ("device/adb_server.py", "unauthorized"): "adb's state of a phone that has not allowed this computer",
    ("device/originals.py", "unauthorized"): "adb's state of a phone, read from `adb devices`",
}
NOT_RUNTIME = {"tests", "tools", "bench"}


def runtime_modules() -> dict[str, str]:
    """Each runtime .py file's text, by its path from the repository root."""
    found = {}
    for path in sorted(ROOT.rglob("*.py")):
        parts = path.relative_to(ROOT).parts
        if parts[0] in NOT_RUNTIME or any(p.startswith(".") for p in parts) or "build" in parts[:1]:
            continue
        found[Path(*parts).as_posix()] = path.read_text(encoding="utf-8")
    return found


def quoted(word: str, prefix: bool = False) -> re.Pattern:
    """`word` between quotes ("word" or 'word'; with `prefix`, a string that starts with it)."""
    end = "" if prefix else r"['\"]"
    return re.compile(rf"['\"]{re.escape(word)}{end}")


def modules_quoting(pattern: re.Pattern, modules: dict[str, str]) -> set[str]:
    return {name for name, text in modules.items() if pattern.search(text)}


def wire_names() -> list[tuple[str, re.Pattern, str]]:
    """(wire name, its pattern, the module that owns it) for every enum value and the tile prefix."""
    names = [(str(m.value), quoted(str(m.value)), owner) for enum, owner in ENUMS.items() for m in enum]
    prefix = tile(1).name.removesuffix("1")
    return names + [(prefix, quoted(prefix, prefix=True), ENUMS[ControlKind])]


def test_each_wire_name_is_written_in_quotes_in_its_own_module_only():
    modules = runtime_modules()
    assert set(ENUMS.values()) <= set(modules), "an enum's module is not among the runtime modules"
    strays = []
    for word, pattern, owner in wire_names():
        for module in sorted(modules_quoting(pattern, modules) - {owner}):
            if (module, word) not in OTHER_MEANINGS:
                strays.append(f"{module} writes {word!r} (defined in {owner})")
    assert not strays, "wire names written outside their enum's module:\n" + "\n".join(strays)


def test_the_other_meanings_listed_are_still_there():
    """An exception that no longer applies goes from the list, so the list cannot hide a name."""
    modules = runtime_modules()
    stale = [f"{module}: {word!r}" for module, word in OTHER_MEANINGS
             if not quoted(word).search(modules.get(module, ""))]
    assert not stale, f"exceptions no longer needed: {stale}"


def test_the_scan_finds_a_wire_name_written_twice():
    """The scan itself can fail: a name copied into a second module is found."""
    modules = {"sketch/controls.py": 'X = "show-on-phone"', "sketch_search/app/other.py": 'press("show-on-phone")',
               "sketch_search/app/tiles.py": 'name = f"result-{rank}"'}
    assert modules_quoting(quoted("show-on-phone"), modules) == {"sketch/controls.py", "sketch_search/app/other.py"}
    assert modules_quoting(quoted("result-", prefix=True), modules) == {"sketch_search/app/tiles.py"}
    assert not modules_quoting(quoted("show"), modules)


def test_every_enums_values_are_distinct():
    for enum in ENUMS:
        values = [member.value for member in enum.__members__.values()]
        assert len(values) == len(set(values)), f"{enum.__name__} repeats a value: {values}"


def test_a_tile_is_a_kind_and_a_rank():
    third = tile(3)
    assert third.kind is ControlKind.RESULT and third.rank == 3
    assert third.name == "result-3" and tile(3) == third and tile(4) != third


def test_a_press_the_table_does_not_list_changes_nothing():
    """Screen.press is its table: every (mode, control) pair it does not list leaves the screen
    as it was and gives no command; every pair it lists is a real control in that mode."""
    from types import SimpleNamespace

    from sketch.controls import ControlId
    from sketch.screen import PRESSES, Mode, Screen

    def screen_in(mode: Mode) -> Screen:
        screen = Screen(640, 480)
        screen.offer_results([SimpleNamespace(path=f"/g/p{i}.jpg", score=0.5) for i in range(3)])
        screen.settle(None)
        if mode is Mode.PHOTO:
            screen.open(1)
            screen.phone_checked(screen.photo.path, True, None)
        elif mode is not Mode.DRAWING:
            screen.press(ControlId(ControlKind.HELP if mode is Mode.HELP else ControlKind.QUIT))
        assert screen.mode is mode
        return screen

    controls = [ControlId(k) for k in ControlKind if k is not ControlKind.RESULT] + [tile(2)]
    for mode in Mode:
        for control in controls:
            screen = screen_in(mode)
            before = (screen.mode, screen.index, list(screen.browsing))
            command = screen.press(control)
            if (mode, control.kind) not in PRESSES:
                assert command is None and (screen.mode, screen.index, list(screen.browsing)) == before
            else:
                assert command is not None or screen.mode is not mode, (mode, control)
            assert screen_in(mode).press(control.name) == command   # by its name: the same
