"""The headless install (requirements-headless.txt, examples/colab.ipynb): what Colab keeps, what
main2.py's imports need, and a torchvision that does not fit torch, as after a torch upgrade."""
from __future__ import annotations

import ast
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints

OURS = {"main", "main2", "sketch_search", "sketch", "captioning", "generation", "retrieval", "device",
        "checkpoints", "tools", "bench", "tests"}
CAMERA_AND_PHONE = {"mediapipe", "ppadb"}  # pin numpy<2 / protobuf<5, or need adb
# Import name -> the distribution that provides it, where they differ.
DISTRIBUTION = {"cv2": "opencv-contrib-python", "PIL": "pillow", "pillow_heif": "pillow-heif",
                "faiss": "faiss-cpu", "skimage": "scikit-image", "huggingface_hub": "huggingface_hub"}


def requirement_names(path: Path) -> dict[str, str]:
    """name (lower case) -> its version specifier, from a requirements file."""
    names = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, spec = re.match(r"([A-Za-z0-9_.\-]+)(.*)", line).groups()
            names[name.lower()] = spec.strip()
    return names


def module_file(name: str) -> Path | None:
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def third_party_imports(start: Path) -> dict[str, Path]:
    """Top-level third-party modules imported anywhere in `start` and the project modules it reaches."""
    seen, found, todo = set(), {}, [start]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module, *(f"{node.module}.{alias.name}" for alias in node.names)]
            else:
                continue
            for name in names:
                parts = name.split(".")
                if parts[0] in OURS:
                    todo += [f for i in range(1, len(parts) + 1) if (f := module_file(".".join(parts[:i])))]
                elif parts[0] not in sys.stdlib_module_names and parts[0] != "__future__":
                    found.setdefault(parts[0], path.relative_to(ROOT))
    return found


def headless_tests() -> list[Path]:
    lines = (ROOT / "tests" / "headless.txt").read_text().splitlines()
    return [ROOT / line.strip() for line in lines if line.strip() and not line.startswith("#")]


def test_headless_requirements_keep_colab_s_own_torch_numpy_and_opencv():
    headless = requirement_names(ROOT / "requirements-headless.txt")
    assert not CAMERA_AND_PHONE & set(headless) and "pure-python-adb" not in headless
    assert not {n for n in headless if n.startswith("opencv") and n != "opencv-contrib-python"}
    # No pin: pip keeps whatever torch and numpy are installed (Colab's CUDA torch, numpy 2).
    assert headless["torch"] == "" and headless["numpy"] == ""
    assert headless["opencv-contrib-python"] == ">=4.12"  # the first opencv built for numpy 2
    # Everything main2.py imports (and what it imports, to the bottom) is in the list.
    # (torchvision only as sketch_search.app.compat's probe: never needed.)
    needed = {DISTRIBUTION.get(name, name).lower() for name in third_party_imports(ROOT / "main2.py")
              if name != "torchvision"}
    assert needed - set(headless) == set(), needed - set(headless)


def test_headless_tests_never_reach_the_camera_or_phone_stack():
    files = headless_tests()
    assert ROOT / "tests" / "test_main2.py" in files and len(files) > 5
    for test_file in [ROOT / "main2.py", ROOT / "checkpoints" / "fetch.py", *files]:
        reached = {name: str(where) for name, where in third_party_imports(test_file).items()
                   if name in CAMERA_AND_PHONE}
        assert reached == {}, f"{test_file.name} reaches {reached}"


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture()
def gallery(tmp_path):
    folder = tmp_path / "gallery"
    shutil.copytree(ROOT / "examples" / "gallery", folder)
    return folder


def mismatched_torchvision(folder: Path) -> Path:
    """What an old torchvision does beside a newer torch: installed (metadata and all), and its
    import fails as the real one does when its compiled operators do not fit."""
    package = folder / "torchvision"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        'raise RuntimeError("operator torchvision::nms does not exist")\n')
    info = folder / "torchvision-0.20.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: torchvision\nVersion: 0.20.1\n")
    return folder


def run(args: list[str], pythonpath: list[Path], cwd: Path = ROOT) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(map(str, [*pythonpath, ROOT]))}
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_a_torchvision_that_does_not_fit_torch_is_set_aside_with_one_warning(checkpoints, gallery, tmp_path):
    broken = mismatched_torchvision(tmp_path / "site")
    # As on Colab: with such a torchvision, transformers cannot even import BLIP.
    plain = run(["-c", "from transformers import BlipProcessor"], [broken])
    assert plain.returncode != 0 and "BlipProcessor" in plain.stderr
    out = tmp_path / "out.json"
    done = run([str(ROOT / "main2.py"), "--image_path", str(ROOT / "examples" / "sketches" / "cat.png"),
                "--gallery", str(gallery), "--checkpoints", str(checkpoints), "--json", str(out),
                "--output", str(tmp_path / "grid.png")], [broken])
    assert done.returncode == 0, done.stderr
    about = [line for line in done.stderr.splitlines() if "torchvision" in line]
    assert len(about) == 1 and about[0].startswith("WARNING ") and "torchvision::nms" in about[0]
    assert "Traceback" not in done.stderr
    assert len(json.loads(out.read_text())["results"]) == 4


def notebook_code(notebook) -> list[str]:
    return ["".join(cell.source) if isinstance(cell.source, list) else cell.source
            for cell in notebook.cells if cell.cell_type == "code"]


def test_colab_notebook_is_valid_and_its_search_command_runs(checkpoints, gallery, tmp_path):
    import nbformat  # in requirements.txt and requirements-headless.txt (tests)
    notebook = nbformat.read(ROOT / "examples" / "colab.ipynb", as_version=4)
    nbformat.validate(notebook)
    assert notebook.nbformat == 4
    code = notebook_code(notebook)
    for source in code:  # shell lines (!) aside, every cell is Python
        compile("\n".join("pass" if line.lstrip().startswith("!") else line
                          for line in source.splitlines()), "cell", "exec")
    text = "\n".join(code)
    for step in ["pip install -q -r requirements-headless.txt", "python -m checkpoints.fetch",
                 "drive.mount", "files.upload", "python main2.py", "display(Image("]:
        assert step in text, step
    assert "requirements.txt" not in text.replace("requirements-headless.txt", "")

    # The notebook's own search command, its variables filled in, on tiny models.
    command = next(line.strip()[1:] for source in code for line in source.splitlines()
                   if line.strip().startswith("!python main2.py"))
    sketches = tmp_path / "sketches"
    sketches.mkdir()
    shutil.copy(ROOT / "examples" / "sketches" / "cat.png", sketches)
    filled = command.format(SKETCHES=sketches, GALLERY=gallery, CHECKPOINTS=checkpoints)
    args = shlex.split(filled)
    assert args[:2] == ["python", "main2.py"]
    done = run([str(ROOT / "main2.py"), *args[2:]], [], cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    grids = sorted((tmp_path / "results").glob("*_results.png"))  # what the last cell shows
    assert [g.name for g in grids] == ["cat_results.png"]
    assert (tmp_path / "results" / "cat.json").is_file()


def readme(page: str = "README.md") -> str:
    """README.md, or a page of the manual in docs/ (where the flag tables and bench commands live)."""
    return (ROOT / page).read_text()


def test_readme_test_command_works_with_empty_apt_lists():
    commands = [line for line in readme().splitlines() if "apt-get install" in line and "pytest" in line]
    assert commands and all(line.startswith("apt-get update && apt-get install -y ") for line in commands)


def test_readme_states_the_download_where_the_set_up_command_is():
    text = readme()
    set_up = text[:text.index("Run the tests")]
    assert "python -m checkpoints.fetch" in set_up and "6.5 GB" in set_up
    from checkpoints.fetch import HF_FILES
    sd_turbo = HF_FILES["stabilityai/sd-turbo"]
    for part, size in (("text_encoder", "1.36 GB"), ("unet", "3.46 GB"), ("vae", "0.33 GB")):
        assert f"{part}/" in " ".join(sd_turbo) and size in set_up  # each fetched weight file, sized
    for model in ("BLIP base 1.0 GB", "DINOv2 base\n0.35 GB", "LoRA about 40 MB"):
        assert model.replace("\n", " ") in set_up.replace("\n", " ")


def test_readme_states_main2_s_gallery_and_index_defaults_as_they_are():
    from checkpoints.layout import embedder_dir_name
    from retrieval.index import default_index_path
    from sketch_search.app import find as main2
    from sketch_search.app.settings import Settings
    text = readme("docs/headless-search.md")
    with pytest.raises(SystemExit):  # no default gallery: required
        main2.parse_args(["--image_path", "x.png"])
    row = next(line for line in text.splitlines() if line.startswith("| `--gallery DIR` |"))
    assert "required" in row and "no default" in row
    index = default_index_path(Path("G"), embedder_dir_name(Settings().embedder))
    assert f"`{index.name}`" in text and f"<gallery>/{index.parent.name}/" in text


def test_readme_claims_quick_only_for_benches_that_have_it():
    text = readme("docs/measuring.md")
    claim = " ".join(text.split("`--quick` for a short run")[1].split("\n\n")[0].split())
    for match in re.finditer(r"^python -m bench\.(\w+)([^\n]*)", text, re.MULTILINE):
        name, rest = match.groups()
        has_quick = "--quick" in (ROOT / "bench" / f"{name}.py").read_text()
        assert ("--quick" in rest) == has_quick, name
        if not has_quick:
            assert f"{name} " in claim and "no quick mode" in claim, name
