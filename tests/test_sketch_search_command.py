"""The installed `sketch-search` command: its subcommands are the programs' own command lines."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sketch_search import __version__
from sketch_search.__main__ import SUBCOMMANDS, main
from sketch_search.app import find
from sketch_search.common.commands_named import Form, current_form
from tests.conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra brings it on 3.10
    import tomli as tomllib


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


def test_a_subcommand_names_itself_through_prog_and_leaves_sys_argv_alone(capsys):
    before = list(sys.argv)
    assert run(["find", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: sketch-search find ")
    assert sys.argv == before  # the command used to rewrite it to name the subcommand
    assert run(["phone", "--help"]) == 0  # `python -m device` names itself, but not here
    assert capsys.readouterr().out.startswith("usage: sketch-search phone ")
    assert run(["phone", "sync", "--help"]) == 0
    assert capsys.readouterr().out.startswith("usage: sketch-search phone sync ")


def test_a_missing_model_names_sketch_search_fetch_then_the_checkout_s_form_is_back(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = ["--image_path", str(ROOT / "examples" / "sketches" / "cat.png"), "--gallery",
            str(ROOT / "examples" / "gallery"), "--checkpoints", str(empty)]
    assert run(["find", *argv]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "model files missing" in error[0], error
    assert "download them with `sketch-search fetch`" in error[0] and "python -m" not in error[0]
    assert current_form() is Form.CHECKOUT  # nothing after the command inherits its form
    with pytest.raises(SystemExit) as done:
        find.cli(argv)  # `python main2.py`, in the same process
    assert done.value.code == 2
    error = capsys.readouterr().err.strip()
    assert "download them with `python -m checkpoints.fetch`" in error and "sketch-search" not in error


def installed_copy(site: Path) -> Path:
    """What the wheel installs, copied into `site` (no pyproject.toml, main.py or main2.py beside
    it), and the console script pip writes for [project.scripts]; returns the script."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    setuptools = config["tool"]["setuptools"]
    for package in setuptools["packages"]:
        folder = Path(*package.split("."))
        (site / folder).mkdir(parents=True)
        for pattern in ["*.py", *setuptools.get("package-data", {}).get(package, [])]:
            for path in (ROOT / folder).glob(pattern):
                shutil.copy(path, site / folder / path.name)
    module, function = config["project"]["scripts"]["sketch-search"].split(":")
    script = site / "bin" / "sketch-search"
    script.parent.mkdir()
    script.write_text(f"import re\nimport sys\nfrom {module} import {function}\n"
                      "if __name__ == '__main__':\n"
                      "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
                      f"    sys.exit({function}())\n")
    return script


def run_program(args: list, cwd: Path, pythonpath: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("SKETCH_SEARCH_HOME", "PYTHONPATH")}
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**env, "PYTHONPATH": str(pythonpath)})


def test_installed_hints_name_sketch_search_and_a_checkout_s_name_its_own_form(tmp_path):
    """The same missing model, from the installed command (run from another folder) and from
    `python main2.py` in the checkout: each names the fetch command of its own form."""
    script = installed_copy(tmp_path / "site-packages")
    work, empty = tmp_path / "work", tmp_path / "empty"
    work.mkdir()
    empty.mkdir()
    search = ["--image_path", ROOT / "examples" / "sketches" / "cat.png", "--gallery",
              ROOT / "examples" / "gallery", "--checkpoints", empty]
    installed = run_program([script, "find", *search], work, tmp_path / "site-packages")
    assert installed.returncode == 2, installed.stderr
    lines = installed.stderr.strip().splitlines()
    assert len(lines) == 1 and "download them with `sketch-search fetch`" in lines[0], lines
    assert "python -m" not in lines[0]
    shown = run_program([script, "fetch", "--help"], work, tmp_path / "site-packages")
    assert shown.returncode == 0 and shown.stdout.startswith("usage: sketch-search fetch ")
    checkout = run_program([ROOT / "main2.py", *search], ROOT, ROOT)
    assert checkout.returncode == 2, checkout.stderr
    lines = checkout.stderr.strip().splitlines()
    assert len(lines) == 1 and "download them with `python -m checkpoints.fetch`" in lines[0], lines
    assert "sketch-search" not in lines[0].replace("sketch-search-", "")
    shown = run_program([ROOT / "main.py", "--help"], ROOT, ROOT)
    assert shown.returncode == 0 and shown.stdout.startswith("usage: main.py ")
    assert "with `python -m checkpoints.fetch`" in " ".join(shown.stdout.split())
