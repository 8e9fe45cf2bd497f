"""README.md is the front door and docs/*.md the manual: the README stays short, every relative
link (and its #anchor) leads somewhere, every flag of the three programs is written down, and the
developer commands stay spelled out."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

README_LIMIT = 15_000
PROGRAMS = {"main.py": [sys.executable, "main.py", "--help"],
            "main2.py": [sys.executable, "main2.py", "--help"],
            "device sync": [sys.executable, "-m", "device", "sync", "--help"]}
DEVELOPER_COMMANDS = ["python -m tools.fixtures.tiny_checkpoints", "python -m tools.evaluate_gestures --eval",
                      "python -m tools.finetune_captioner", "python -m tools.evaluate_retrieval"]
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)")
FENCE = re.compile(r"^(```|~~~).*?^\1", re.MULTILINE | re.DOTALL)


def pages() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md")), ROOT / "checkpoints" / "README.md"]


def prose(text: str) -> str:
    """The text outside fenced code blocks and inline code spans (where links are not links)."""
    return re.sub(r"`[^`\n]*`", "", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: its rendered text in lower case, punctuation dropped (letters,
    digits, `_`, `-` and spaces kept), each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link's text
    text = re.sub(r"<[^>]+>", "", text).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every heading's anchor in a Markdown file, repeats numbered as GitHub does (-1, -2, ...)."""
    found, seen = set(), {}
    for line in FENCE.sub("", path.read_text()).splitlines():
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if match:
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            found.add(base if count == 0 else f"{base}-{count}")
    return found


def broken_links(path: Path) -> list[str]:
    """Relative links in one Markdown file that lead to no file, or to no heading of it."""
    broken = []
    for target in LINK.findall(prose(path.read_text())):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):  # https:, mailto: ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and (linked.suffix != ".md" or anchor not in anchors(linked)):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    return broken


def documentation() -> str:
    return "\n".join(path.read_text() for path in [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))])


def help_flags(command: list[str]) -> set[str]:
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(re.findall(r"(?<![\w-])(--?[A-Za-z][\w-]*)", done.stdout))


def named(flag: str, text: str) -> bool:
    return re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", text) is not None


def test_the_readme_is_short():
    size = len((ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move text to docs/ (limit {README_LIMIT})"


def test_the_set_up_and_test_commands_lead_the_readme():
    lines = (ROOT / "README.md").read_text().splitlines()
    commands = [line for line in lines if line.startswith("python3 -m venv") or line.startswith("apt-get")]
    assert "python main2.py" in commands[0] and "python -m pytest -q" in commands[1]
    assert any("python -m pytest -q" in line for line in lines[:40])


def test_the_manual_pages_exist_and_the_readme_links_each():
    readme = (ROOT / "README.md").read_text()
    for name in ["install", "air-canvas", "events", "headless-search", "phone", "models", "measuring",
                 "development"]:
        assert (ROOT / "docs" / f"{name}.md").is_file(), name
        assert f"(docs/{name}.md" in readme, name


@pytest.mark.parametrize("path", pages(), ids=lambda path: str(path.relative_to(ROOT)))
def test_every_relative_link_resolves(path):
    assert broken_links(path) == []


def test_the_link_check_catches_a_missing_file_and_a_missing_heading(tmp_path):
    (tmp_path / "other.md").write_text("# Other\n\n## A `code` heading: (with) punctuation\n")
    page = tmp_path / "page.md"
    page.write_text("# Page\n[ok](other.md#a-code-heading-with-punctuation) [ok](#page)\n"
                    "[gone](missing.md) [no heading](other.md#nowhere) [self](#nowhere-here)\n"
                    "```\n[in code](missing-too.md)\n```\n`[inline](missing-three.md)`\n")
    assert [line.split(":")[0] for line in broken_links(page)] == ["missing.md", "other.md#nowhere",
                                                                   "#nowhere-here"]


def test_github_anchors():
    assert slug("8. Search as you draw (`python -m bench.bench_live [--quick]`)") == \
        "8-search-as-you-draw-python--m-benchbench_live---quick"
    assert slug("Air canvas: main.py") == "air-canvas-mainpy"
    assert slug("Colab and other headless machines") == "colab-and-other-headless-machines"


def test_the_developer_commands_are_written_out():
    text = documentation()
    for command in DEVELOPER_COMMANDS:
        assert command in text, command


@pytest.mark.parametrize("program", sorted(PROGRAMS))
def test_every_flag_of_the_programs_is_documented(program):
    flags = help_flags(PROGRAMS[program])
    assert {"--help", "-h"} & flags and len(flags) > 5  # the parse found the options
    text = documentation()
    assert sorted(flag for flag in flags if not named(flag, text)) == []


def test_the_flag_check_catches_a_flag_no_page_names():
    text = "use `--gallery DIR` and -v; `--top_k N`"
    assert named("--gallery", text) and named("-v", text) and named("--top_k", text)
    assert not named("--top", text) and not named("--rebuild-index", text) and not named("-h", text)
