"""The installed `sketch-search` command: its subcommands are the programs' own command lines."""
from __future__ import annotations

import sys

import pytest

from sketch_search import __version__
from sketch_search.__main__ import SUBCOMMANDS, main


@pytest.fixture(autouse=True)
def own_argv(monkeypatch):
    """The command names its subcommand in sys.argv[0]; give pytest's back afterwards."""
    monkeypatch.setattr(sys, "argv", ["sketch-search"])


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return done.value.code


def test_help_lists_every_subcommand_and_version_says_the_version(capsys):
    assert run(["--help"]) == 0
    shown = capsys.readouterr().out
    assert all(name in shown for name in ("draw", "find", "phone", "fetch"))
    assert set(SUBCOMMANDS) == {"draw", "find", "phone", "fetch"}
    assert run(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"sketch-search {__version__}"


@pytest.mark.parametrize("argv", [[], ["search"], ["--gallery", "x"]])
def test_no_or_an_unknown_subcommand_is_one_error_line_and_exit_2(argv, capsys):
    assert run(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("sketch-search: error: ") and len(err) == 2  # usage, then the error


def test_find_is_main2_with_its_one_line_errors(tmp_path, capsys):
    missing = tmp_path / "no-such-sketch.png"
    assert run(["find", "--image_path", str(missing), "--gallery", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip().splitlines() == [f"error: --image_path {missing}: no such file"]


def test_each_subcommand_takes_its_program_s_flags_and_names_itself(capsys):
    for name, flag in (("find", "--image_path"), ("fetch", "--embedder"), ("draw", "--sketch-dir")):
        assert run([name, "--help"]) == 0
        shown = capsys.readouterr().out
        assert shown.startswith(f"usage: sketch-search {name} ") and flag in shown, name
    assert run(["phone", "--help"]) == 0
    shown = capsys.readouterr().out
    assert "list" in shown and "sync" in shown


def test_fetch_places_models_where_the_models_folder_rule_says(tmp_path, monkeypatch, capsys):
    """No --checkpoints: fetch reports the folder it would fill, the per-user home's models/."""
    monkeypatch.setenv("SKETCH_SEARCH_HOME", str(tmp_path / "home"))
    assert run(["fetch", "--help"]) == 0
    assert str(tmp_path / "home" / "models") in capsys.readouterr().out.replace("\n", "").replace(" ", "")
    assert not (tmp_path / "home").exists()  # asking for help creates nothing
