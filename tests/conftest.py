"""Shared test setup: the location of ../shared test data (pytest puts the repo root on the path)."""
from __future__ import annotations

import os
import sys
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


# The fast set (`python -m pytest -m "not slow"`): unit tests with no subprocess, window, adb or
# tiny models. Everything else is marked slow here, in one place, rather than in each file:
# whole modules that are about those things, single tests that start a process in a module of
# unit tests, and any test that asks for a fixture that starts adb or writes tiny models.
SLOW_MODULES = {
    "test_air_canvas_video", "test_window", "test_live_search", "test_phone_search",  # hand videos, windows
    "test_touchless_video", "test_touchless_results", "test_two_hands", "test_second_look",
    "test_device_cli", "test_device_sync", "test_hostile_phone",  # a real adb server
    "test_phone_commands", "test_phone_identity", "test_show_on_phone", "test_original_pull",
    "test_main2", "test_headless", "test_start_up_quiet", "test_hostile_gallery",  # the programs, run
    "test_search_while_indexing", "test_index_slices",
    "test_captioning", "test_embedder", "test_evaluate", "test_fetch", "test_finetune",  # tiny models
    "test_generation_speedups", "test_lora_file", "test_model_files", "test_pipeline",
    "test_pix2pix_turbo", "test_index", "test_search",
    "test_models_folder",  # a python process per case
    "test_lean_sync", "test_live_resync", "test_phone_live_search",  # a real adb server
}
SLOW_TESTS = {
    "test_command.py::test_sigterm_exits_143_through_the_runner",
    "test_gestures.py::test_eval_command_prints_a_table_and_accuracy_last",
    "test_gestures.py::test_eval_command_refuses_a_bad_folder_in_one_line",
    "test_time_left.py::test_the_module_is_torch_free",
    "test_structure.py::test_the_window_loop_and_sketch_never_import_torch",
    "test_structure.py::test_missing_models_are_reported_before_torch_loads",
    "test_docs.py::test_every_flag_of_the_programs_is_documented",  # runs each program's --help
    "test_sketch_search_command.py::test_installed_hints_name_sketch_search_and_a_checkout_s_name_its_own_form",
}
# detections: test_gestures runs MediaPipe over every real hand photo (about 40 s here).
SLOW_FIXTURES = {"adb", "tiny_checkpoints", "detections"}


def pytest_ignore_collect(collection_path, config):
    """With -m "not slow", the slow modules are not even imported (several import torch)."""
    if config.getoption("markexpr", "").strip() == "not slow" and collection_path.stem in SLOW_MODULES:
        return True
    return None


def pytest_collection_modifyitems(config, items):
    for item in items:
        module = item.path.stem
        test = f"{item.path.name}::{item.originalname}"
        if module in SLOW_MODULES or test in SLOW_TESTS or SLOW_FIXTURES & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture(scope="session")
def one_torch_thread():
    """Tiny models gain nothing from threads, and on a busy 2-core CI machine the pool spins.
    Asked for by the tests and fixtures that run torch; the others never import it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def torch_at_one_thread_once_imported(request):
    """Tests of modules that imported torch (or ran code that did) get one thread too; a test
    that never touched torch does not import it for this."""
    if "torch" in sys.modules:
        request.getfixturevalue("one_torch_thread")


@pytest.fixture(scope="module")
def adb(tmp_path_factory):
    """A real adb server on a free port, with its keys in a temporary home."""
    from tools.fixtures.fake_phone import AdbServer

    server = AdbServer(tmp_path_factory.mktemp("adb-home")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def tiny_checkpoints(tmp_path_factory, one_torch_thread) -> Path:
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
