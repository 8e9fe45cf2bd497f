"""Where the models are when --checkpoints is not given (checkpoints.layout.models_folder), checked
on real copies of the checkpoints package: in a checkout, and installed (no project file beside it)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import ROOT

ASK = "from checkpoints.layout import models_folder; print(models_folder())"


def copy_of_checkpoints(where: Path, checkout: bool) -> Path:
    """The checkpoints package copied under `where` (with a pyproject.toml beside it when it
    stands for a checkout); `where` goes first on the import path."""
    package = where / "checkpoints"
    package.mkdir(parents=True)
    for name in ("__init__.py", "layout.py"):
        shutil.copy(ROOT / "checkpoints" / name, package / name)
    if checkout:
        (where / "pyproject.toml").write_text("[project]\nname = 'sketch-search'\n")
    return package


def models_folder_of(where: Path, home: Path, **env: str) -> Path:
    clean = {k: v for k, v in os.environ.items() if k not in ("SKETCH_SEARCH_HOME", "XDG_DATA_HOME")}
    clean.update(HOME=str(home), PYTHONPATH=os.pathsep.join([str(where), str(ROOT)]), **env)
    done = subprocess.run([sys.executable, "-c", ASK], cwd=where, env=clean, capture_output=True,
                          text=True, timeout=60, check=True)
    return Path(done.stdout.strip())


def test_a_checkout_with_models_uses_its_own_folder_and_the_variable_overrides_it(tmp_path):
    package = copy_of_checkpoints(tmp_path / "repo", checkout=True)
    home = tmp_path / "home"
    per_user = home / ".local" / "share" / "sketch-search" / "models"
    assert models_folder_of(tmp_path / "repo", home) == per_user  # no models in it yet
    (package / "dinov2-base").mkdir()
    assert models_folder_of(tmp_path / "repo", home) == package.resolve()
    moved = tmp_path / "elsewhere"
    assert models_folder_of(tmp_path / "repo", home, SKETCH_SEARCH_HOME=str(moved)) == moved / "models"


def test_an_installed_copy_never_uses_its_own_folder(tmp_path):
    package = copy_of_checkpoints(tmp_path / "site-packages", checkout=False)
    (package / "dinov2-base").mkdir()
    (package / "sd-turbo").mkdir()
    home = tmp_path / "home"
    assert models_folder_of(tmp_path / "site-packages", home) == home / ".local/share/sketch-search/models"
    assert models_folder_of(tmp_path / "site-packages", home, XDG_DATA_HOME=str(tmp_path / "xdg")) == (
        tmp_path / "xdg" / "sketch-search" / "models")
