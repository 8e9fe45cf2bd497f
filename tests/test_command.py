"""The one command runner and the one atomic writer that every command uses."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

from sketch_search.common.command import exit_status
from sketch_search.common.errors import GalleryError
from sketch_search.common.files import is_photo_name, write_atomically, write_text_atomically
from tests.conftest import ROOT


def test_user_error_is_one_line_and_exit_2(capsys):
    def fails():
        raise GalleryError("--gallery /nowhere: not a folder; pass the folder of your photos")
    assert exit_status(fails) == 2
    assert capsys.readouterr().err == "error: --gallery /nowhere: not a folder; pass the folder of your photos\n"


def test_ctrl_c_is_130_with_the_command_s_own_message(capsys):
    def interrupted():
        raise KeyboardInterrupt
    assert exit_status(interrupted, interrupted="interrupted: run the same command again to resume") == 130
    assert capsys.readouterr().err.strip() == "interrupted: run the same command again to resume"


def test_a_bug_keeps_its_traceback():
    def bug():
        raise ZeroDivisionError("a bug")
    with pytest.raises(ZeroDivisionError):
        exit_status(bug)


def test_sigterm_exits_143_through_the_runner(tmp_path):
    code = ("import os, signal, time\nfrom sketch_search.common.command import run_command\n"
            "def main():\n    print('ready', flush=True)\n    time.sleep(30)\nrun_command(main)\n")
    child = subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert child.stdout.readline().strip() == "ready"
    child.send_signal(signal.SIGTERM)
    assert child.wait(timeout=20) == 143


def test_atomic_write_gives_ordinary_permissions_and_leaves_nothing_on_failure(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "out" / "result.json"
        write_text_atomically(target, "{}")
        assert target.read_text() == "{}"
        assert target.stat().st_mode & 0o777 == 0o644  # not mkstemp's private 0600

        def half_written(tmp):
            tmp.write_text("partial")
            raise OSError("disk full")
        with pytest.raises(OSError):
            write_atomically(target, half_written)
        assert target.read_text() == "{}"
        assert sorted(p.name for p in target.parent.iterdir()) == ["result.json"]
    finally:
        os.umask(old)


def test_one_list_of_photo_types():
    assert is_photo_name("IMG_1.HEIC") and is_photo_name("a.tiff") and is_photo_name("x.JPG")
    assert not is_photo_name(".jpg") and not is_photo_name("clip.mp4") and not is_photo_name("notes")
