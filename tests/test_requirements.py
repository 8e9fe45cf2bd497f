"""The pinned installs stay inside pyproject.toml's: requirements.txt is the base plus the desktop
and test extras, requirements-headless.txt the base plus the test extra (Colab). Each pin must be
something that install asks for, at a version inside its range; and no install gets two OpenCV
distributions (they all install the same `cv2` package over each other)."""
from __future__ import annotations

import importlib.metadata
import sys
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from tests.conftest import ROOT

if sys.version_info >= (3, 11):
    import tomllib
else:  # the test extra brings it on 3.10
    import tomli as tomllib

PINNED_INSTALLS = {"requirements.txt": ("desktop", "test"), "requirements-headless.txt": ("test",)}
OPENCV = {"opencv-python", "opencv-python-headless", "opencv-contrib-python", "opencv-contrib-python-headless"}
# Distributions that bring an OpenCV of their own (read from their metadata where installed:
# test_the_opencv_each_brings_is_what_its_metadata_says).
BRINGS_OPENCV = {"mediapipe": "opencv-contrib-python", "cvzone": "opencv-python"}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def asked_for(extras: tuple[str, ...], meta: dict | None = None) -> dict[str, SpecifierSet]:
    """name -> the range pyproject's install of the base plus `extras` asks for (an extra may name
    the project itself with other extras, as `desktop` does)."""
    meta = meta or project()
    own = canonicalize_name(meta["name"])
    wanted: dict[str, SpecifierSet] = {}
    todo, seen = [*meta["dependencies"], *(f"{meta['name']}[{e}]" for e in extras)], set()
    while todo:
        requirement = Requirement(todo.pop())
        name = canonicalize_name(requirement.name)
        if name == own:
            for extra in requirement.extras - seen:
                seen.add(extra)
                todo += meta["optional-dependencies"][extra]
            continue
        wanted[name] = wanted.get(name, SpecifierSet()) & requirement.specifier
    return wanted


def pinned(path: Path) -> list[Requirement]:
    lines = (line.split("#")[0].strip() for line in path.read_text().splitlines())
    return [Requirement(line) for line in lines if line and not line.startswith("-")]


def _near(version: Version) -> list[Version]:
    """Versions just above and just below `version`, to probe the edges of two ranges."""
    release = list(version.release)
    near = [version, Version(".".join(map(str, [*release, 1])))]
    for i in reversed(range(len(release))):
        if release[i] > 0:
            near.append(Version(".".join(map(str, [*release[:i], release[i] - 1, 999]))))
            break
    return near


def overlap(a: SpecifierSet, b: SpecifierSet) -> bool:
    """Whether some version satisfies both ranges (probed at every edge either one names)."""
    mentioned = [Version(spec.version) for spec in (*a, *b) if not spec.version.endswith("*")]
    candidates = [Version("0"), Version("99999"), *(v for m in mentioned for v in _near(m))]
    return any(a.contains(v, prereleases=True) and b.contains(v, prereleases=True) for v in candidates)


def problems(pins: list[Requirement], asked: dict[str, SpecifierSet]) -> list[str]:
    found = []
    for pin in pins:
        name = canonicalize_name(pin.name)
        if name not in asked:
            found.append(f"{pin}: pinned, but the pyproject install does not ask for {name}")
        elif not overlap(pin.specifier, asked[name]):
            found.append(f"{pin}: outside pyproject's range {asked[name] or '(any)'}")
    return found


def opencv_in(names) -> set[str]:
    names = {canonicalize_name(n) for n in names}
    return (names & OPENCV) | {BRINGS_OPENCV[n] for n in names if n in BRINGS_OPENCV}


def test_each_requirements_file_pins_only_what_its_pyproject_install_asks_for():
    for file, extras in PINNED_INSTALLS.items():
        assert problems(pinned(ROOT / file), asked_for(extras)) == [], file


def test_no_install_gets_two_opencv_distributions_and_each_gets_one():
    meta = project()
    installs = {"base": (), **{f"[{extra}]": (extra,) for extra in meta["optional-dependencies"]}}
    for label, extras in installs.items():
        assert len(opencv_in(asked_for(extras, meta))) == 1, label
    for file in PINNED_INSTALLS:
        assert len(opencv_in(p.name for p in pinned(ROOT / file))) == 1, file


def test_the_check_names_a_stray_pin_a_pin_out_of_range_and_a_second_opencv():
    asked = asked_for(("desktop",))
    assert problems([Requirement("transformers==5.3")], asked) == []
    assert problems([Requirement("transformers==4.57")], asked) == [
        "transformers==4.57: outside pyproject's range <6,>=5"]
    assert problems([Requirement("transformers<5")], asked) != []
    assert problems([Requirement("diffusers>=0.43")], asked) != []
    assert problems([Requirement("mediapipe<0.10.21")], asked) != []
    assert problems([Requirement("pure-python-adb==0.3.0.dev0")], asked) == []
    assert problems([Requirement("cvzone==1.6.1")], asked) == [
        "cvzone==1.6.1: pinned, but the pyproject install does not ask for cvzone"]
    assert problems([Requirement("mediapipe==0.10.21")], asked_for(())) != []  # base has no camera
    assert opencv_in(["mediapipe", "cvzone"]) == {"opencv-contrib-python", "opencv-python"}
    assert opencv_in(["mediapipe", "opencv-contrib-python<4.12"]) == {"opencv-contrib-python"}


def test_the_opencv_each_brings_is_what_its_metadata_says():
    """Where a distribution of the table is installed (the desktop venv: mediapipe), its own
    requirements name the OpenCV the table says."""
    for name, opencv in BRINGS_OPENCV.items():
        try:
            requires = importlib.metadata.requires(name) or []
        except importlib.metadata.PackageNotFoundError:
            continue
        brought = opencv_in(Requirement(r).name for r in requires if "extra ==" not in r)
        assert brought == {opencv}, (name, brought)
