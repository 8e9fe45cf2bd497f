"""The layout's rules, checked on the code itself: every import points down, no loops between
packages, the window never imports torch, and missing models are reported before torch loads.

Layers, top to bottom: entry points (main.py, main2.py, the `sketch-search` command in
sketch_search/__main__.py, tools/, bench/, tests/) -> wiring (sketch_search/app/) -> stages (sketch/,
captioning/, generation/, retrieval/, device/, checkpoints/) -> sketch_search/common/ (and the
package's own __init__, which holds only the version).
"""
from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import ROOT

ENTRY, WIRING, STAGE, GROUND = 3, 2, 1, 0
LAYERS = {"main": ENTRY, "main2": ENTRY, "tools": ENTRY, "bench": ENTRY, "tests": ENTRY,
          "sketch_search.__main__": ENTRY, "sketch_search": GROUND,
          "sketch_search.app": WIRING, "sketch": STAGE, "captioning": STAGE, "generation": STAGE,
          "retrieval": STAGE, "device": STAGE, "checkpoints": STAGE, "sketch_search.common": GROUND}


def unit_of(module: str) -> str:
    """The layer unit a module belongs to: its top-level package, or for the program's own
    package its sub-package (`sketch_search.app`, `sketch_search.common`, `sketch_search.__main__`)."""
    parts = module.split(".")
    if parts[0] == "sketch_search" and len(parts) > 1 and f"sketch_search.{parts[1]}" in LAYERS:
        return f"sketch_search.{parts[1]}"
    return parts[0]


def our_modules() -> dict[str, Path]:
    paths = [ROOT / "main.py", ROOT / "main2.py"]
    for package in {p.split(".")[0] for p in LAYERS}:
        if (ROOT / package).is_dir():
            paths += sorted((ROOT / package).rglob("*.py"))
    modules = {}
    for path in paths:
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        modules[name.removesuffix(".__init__")] = path
    return modules


def imports_of(path: Path) -> set[str]:
    """Top-level package names of our own modules that `path` imports (anywhere in the file)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return {name for name in found if unit_of(name) in LAYERS}


def test_every_import_points_down_or_sideways_within_a_package():
    upward = []
    for name, path in our_modules().items():
        package = unit_of(name)
        entry_point = path.name in ("__main__.py", "fetch.py")  # `python -m device`, `-m checkpoints.fetch`
        for target in imports_of(path):
            top = unit_of(target)
            if top == package:
                continue
            allowed = LAYERS[top] < LAYERS[package] or LAYERS[top] == LAYERS[package] != WIRING
            if LAYERS[package] == ENTRY and package != "tests" and top in ("tests", "main", "main2", "bench"):
                allowed = False  # tools and bench stand alone: never on the tests or each other
            if package == "sketch_search.__main__" and top in ("main", "main2"):
                allowed = True  # the installed command runs the two programs as its subcommands
            if entry_point and top == "sketch_search.common":
                allowed = True
            if not allowed:
                upward.append(f"{name} imports {target}")
    assert not upward, "imports that point up:\n" + "\n".join(sorted(upward))


def test_no_import_loop_between_packages():
    edges: dict[str, set[str]] = {}
    for name, path in our_modules().items():
        package = unit_of(name)
        edges.setdefault(package, set()).update(
            unit_of(t) for t in imports_of(path) if unit_of(t) != package)

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        return any(n == goal or (n not in seen and reaches(n, goal, seen | {n})) for n in edges.get(start, ()))

    loops = [p for p in edges if reaches(p, p, {p})]
    assert not loops, f"packages in an import loop: {loops}"


def test_the_runtime_never_imports_a_tool():
    runtime = [n for n in our_modules()
               if LAYERS[unit_of(n)] < ENTRY or n in ("main", "main2", "sketch_search.__main__")]
    leaks = [f"{n} imports {t}" for n in runtime for t in imports_of(our_modules()[n])
             if t.split(".")[0] in ("tools", "bench", "tests")]
    assert not leaks, leaks


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_the_window_loop_and_sketch_never_import_torch():
    modules = [n for n in our_modules() if n.split(".")[0] == "sketch"] + ["sketch_search.app.air_canvas", "sketch_search.app.search_worker",
                                                                       "sketch_search.app.search_scheduler", "sketch_search.app.search_presenter", "sketch_search.app.search_answers", "sketch_search.app.search_jobs", "sketch_search.app.search_board", "sketch_search.app.search_state",
                                                                       "sketch_search.app.commands", "sketch_search.app.live_follow", "sketch_search.app.results_panel",
                                                                       "sketch_search.app.sketch_saving", "sketch_search.app.timed_line", "sketch_search.app.window_picture",
                                                                       "sketch_search.app.bootstrap",
                                                                       "sketch_search.app.cli", "sketch_search.app.model_plan", "sketch_search.app.time_left", "main"]
    code = "import sys\n" + "".join(f"import {m}\n" for m in modules) + "print('torch' in sys.modules)"
    result = python(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False", f"torch was imported by one of {modules}"


def test_missing_models_are_reported_before_torch_loads(tmp_path):
    sketch = ROOT / "examples" / "sketches" / "cat.png"
    empty = tmp_path / "empty"
    empty.mkdir()
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "main2.py", "--image_path", str(sketch), "--gallery",
                             str(ROOT / "examples" / "gallery"), "--checkpoints", str(empty)],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - start
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: model files missing"), result.stderr
    assert "python -m checkpoints.fetch" in lines[0]
    # The plan is checked without torch: imports must not even start (a generous bound here;
    # the closing note gives the figure measured on an idle machine).
    assert seconds < 10, f"took {seconds:.1f} s"
    argv = ["main2.py", "--image_path", str(sketch), "--gallery", str(ROOT / "examples" / "gallery"),
            "--checkpoints", str(empty)]
    check = python(f"import sys, runpy\nsys.argv = {argv!r}\ntry:\n    runpy.run_path('main2.py', "
                   "run_name='__main__')\nexcept SystemExit:\n    pass\nprint('torch' in sys.modules)")
    assert check.stdout.strip().splitlines()[-1] == "False"


MAX_FUNCTION_LINES = 40
MAX_CLASS_LINES = 200


def test_runtime_functions_and_classes_stay_short():
    """No runtime function over 40 lines, no runtime class over 200, from `def`/`class` to its
    end (tools, benchmarks and tests aside): a long one is two jobs in one."""
    too_long = []
    for name, path in our_modules().items():
        if unit_of(name) in ("tools", "bench", "tests"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            limit = (MAX_CLASS_LINES if isinstance(node, ast.ClassDef) else
                     MAX_FUNCTION_LINES if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                     else None)
            if limit is not None and node.end_lineno - node.lineno + 1 > limit:
                too_long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} "
                                f"({node.end_lineno - node.lineno + 1} lines, at most {limit})")
    assert not too_long, "\n".join(too_long)
