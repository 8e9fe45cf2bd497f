"""Shared test setup: the location of ../shared test data (pytest puts the repo root on the path)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared"


def shared_path(*parts: str) -> Path:
    """A path under ../shared; skips the test when absent, fails under CI (CI=true)."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        message = f"{path} is missing: these tests read real data from ../shared beside the clone"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture(scope="session", autouse=True)
def user_home(tmp_path_factory):
    """A per-user home of the tests' own (never the real one), past its first start: the help
    card that a first start shows is tested where a test asks for a fresh home."""
    from sketch_search.app.first_start import remember_help_shown
    from sketch_search.common.home import HOME_VARIABLE

    before = os.environ.get(HOME_VARIABLE)
    home = tmp_path_factory.mktemp("home")
    remember_help_shown(home)
    os.environ[HOME_VARIABLE] = str(home)
    yield home
    if before is None:
        os.environ.pop(HOME_VARIABLE, None)
    else:
        os.environ[HOME_VARIABLE] = before


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core CI machine the pool spins."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def adb(tmp_path_factory):
    """A real adb server on a free port, with its keys in a temporary home."""
    from tools.fixtures.fake_phone import AdbServer

    server = AdbServer(tmp_path_factory.mktemp("adb-home")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A complete checkpoints folder of tiny random models (tools/fixtures/tiny_checkpoints.py)."""
    from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
    return write_tiny_checkpoints(tmp_path_factory.mktemp("checkpoints"))


@pytest.fixture(scope="module")
def gallery(tmp_path_factory) -> Path:
    """Four real photos (scikit-image's) as JPEG files (a test module may define its own)."""
    import cv2
    from skimage import data
    folder = tmp_path_factory.mktemp("gallery")
    for name in ("astronaut", "chelsea", "coffee", "rocket"):
        cv2.imwrite(str(folder / f"{name}.jpg"), cv2.cvtColor(getattr(data, name)(), cv2.COLOR_RGB2BGR))
    return folder
