"""main2.py end to end on tiny checkpoints and a small real gallery (scikit-image's photos)."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image, ImageDraw
from skimage import data as photos

from captioning.prompt import build_prompt
from sketch_search.app import find as main2
from tests.conftest import ROOT
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints

PHOTOS = ["astronaut", "chelsea", "coffee", "rocket", "camera", "horse"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), seed_blip_file=True)


@pytest.fixture()
def gallery(tmp_path):
    folder = tmp_path / "gallery"
    (folder / "trip").mkdir(parents=True)
    for i, name in enumerate(PHOTOS):
        array = getattr(photos, name)()
        image = Image.fromarray(array).convert("RGB")
        image.thumbnail((320, 320))
        image.save(folder / ("trip" if i % 2 else ".") / f"{name}.jpg", quality=90)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    return folder


@pytest.fixture()
def sketch(tmp_path):
    image = Image.new("RGB", (400, 300), "white")
    draw = ImageDraw.Draw(image)
    draw.ellipse([120, 80, 280, 240], outline=(20, 120, 20), width=5)
    draw.line([(140, 100), (160, 40), (200, 85)], fill=(20, 120, 20), width=5)
    path = tmp_path / "cat sketch.png"
    image.save(path)
    return path


def run_main2(*args: str, cwd=ROOT, preexec_fn=None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(ROOT / "main2.py"), *args], capture_output=True,
                          text=True, env=env, cwd=cwd, timeout=300, preexec_fn=preexec_fn)


def draw_sketch(path, shape: str):
    image = Image.new("RGB", (300, 300), "white")
    draw = ImageDraw.Draw(image)
    if shape == "circle":
        draw.ellipse([60, 60, 240, 240], outline="black", width=6)
    elif shape == "box":
        draw.rectangle([50, 90, 250, 210], outline="black", width=6)
    else:
        draw.line([(40, 260), (150, 40), (260, 260)], fill="black", width=6)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def test_end_to_end_then_second_run_embeds_nothing(checkpoints, gallery, sketch, tmp_path, capsys):
    out = tmp_path / "out.json"
    grid = tmp_path / "res" / "grid.png"
    args = ["--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints", str(checkpoints),
            "--json", str(out), "--output", str(grid), "--top_k", "4"]
    assert main2.main(args) == 0
    result = json.loads(out.read_text())
    assert set(result) == {"caption", "prompt", "generated_image", "results", "timings", "index"}
    assert result["prompt"].startswith("Convert ")
    scores = [hit["score"] for hit in result["results"]]
    assert len(scores) == 4 and scores == sorted(scores, reverse=True)
    assert all(-1.0 <= s <= 1.0 for s in scores)
    indexed = {str(p) for p in gallery.rglob("*.jpg") if p.name != "corrupt.jpg"}
    assert {hit["path"] for hit in result["results"]} <= indexed
    assert result["index"]["added"] == len(PHOTOS)
    assert [s["path"] for s in result["index"]["skipped"]] == ["corrupt.jpg"]
    assert set(result["timings"]) >= {"captioning", "generating", "searching", "total"}
    generated = Image.open(result["generated_image"])
    assert generated.size == (512, 512)
    with Image.open(grid) as picture:  # sketch + generated + 4 results, side by side
        assert picture.width > 6 * 256 and picture.height > 256
    table = capsys.readouterr().out
    assert "corrupt.jpg" in table and result["caption"] in table

    # The same run again: nothing to embed, the same answer.
    assert main2.main(args) == 0
    again = json.loads(out.read_text())
    assert again["index"] == {"added": 0, "updated": 0, "removed": 0, "unchanged": len(PHOTOS),
                              "skipped": result["index"]["skipped"]}
    assert again["results"] == result["results"]

    # A changed photo is embedded again, a deleted one leaves the index and the results.
    changed = gallery / "astronaut.jpg"
    Image.fromarray(np.flipud(np.asarray(Image.open(changed)))).save(changed, quality=90)
    (gallery / "trip" / "chelsea.jpg").unlink()
    assert main2.main([*args, "--top_k", "10"]) == 0
    third = json.loads(out.read_text())
    assert (third["index"]["added"], third["index"]["updated"], third["index"]["removed"]) == (0, 1, 1)
    assert len(third["results"]) == len(PHOTOS) - 1
    assert all("chelsea" not in hit["path"] for hit in third["results"])


def test_same_seed_same_image_other_seed_differs(checkpoints, gallery, sketch, tmp_path):
    def generated(seed: str, name: str) -> np.ndarray:
        out = tmp_path / f"{name}.json"
        assert main2.main(["--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints",
                           str(checkpoints), "--seed", seed, "--json", str(out),
                           "--output", str(tmp_path / name / "grid.png")]) == 0
        return np.asarray(Image.open(json.loads(out.read_text())["generated_image"]))

    first, again, other = generated("3", "a"), generated("3", "b"), generated("4", "c")
    assert np.array_equal(first, again)
    assert not np.array_equal(first, other)


def test_missing_checkpoints_stop_before_any_work(gallery, sketch, tmp_path):
    empty = tmp_path / "no-models"
    empty.mkdir()
    before = sorted(p.name for p in gallery.rglob("*"))
    done = run_main2("--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints",
                     str(empty), "--output", str(tmp_path / "res" / "g.png"))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "python -m checkpoints.fetch" in lines[0]
    assert "sd-turbo" in lines[0] and "Traceback" not in done.stderr
    assert not (tmp_path / "res").exists()
    assert sorted(p.name for p in gallery.rglob("*")) == before  # no index written either


@pytest.mark.parametrize("case", ["blank", "blank among several", "not an image", "missing", "no gallery"])
def test_bad_input_is_one_line_and_exit_2(checkpoints, gallery, tmp_path, case):
    sketch = tmp_path / "sketch.png"
    gallery_arg, extra = str(gallery), []
    if case == "blank":
        Image.new("RGB", (300, 300), "white").save(sketch)
        expected = "no strokes"
    elif case == "blank among several":
        Image.new("RGB", (300, 300), "white").save(sketch)
        extra = [str(ROOT / "examples" / "sketches" / "cat.png")]
        expected = f"--image_path {sketch}: the sketch has no strokes"
    elif case == "not an image":
        sketch.write_text("these are words, not pixels")
        expected = str(sketch)
    elif case == "missing":
        sketch = tmp_path / "nowhere.png"
        expected = "no such file"
    else:
        shutil.copy(ROOT / "examples" / "sketches" / "cat.png", sketch)
        gallery_arg = str(tmp_path / "absent")
        expected = "not a folder"
    done = run_main2("--image_path", *extra, str(sketch), "--gallery", gallery_arg,
                     "--checkpoints", str(checkpoints), "--output", str(tmp_path / "r" / "g.png"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0]
    assert not (tmp_path / "r").exists()


def test_help_explains_every_flag():
    done = run_main2("--help")
    assert done.returncode == 0
    for flag in ["--image_path", "--gallery", "--checkpoints", "--top_k", "--output", "--json",
                 "--device", "--seed", "--gamma", "--embedder", "--no-colour-hints"]:
        assert flag in done.stdout


def test_a_red_sketch_says_red_in_the_prompt_unless_told_not_to(checkpoints, gallery, tmp_path, monkeypatch):
    """The seed's kind of sketch (red strokes on black); the generator's input stays the mask."""
    from captioning.blip import BlipCaptioner
    # The tiny captioner's random words may name a colour (then no hint is added, by design);
    # a real one says this of a sketch. The colour must still come from the sketch file.
    monkeypatch.setattr(BlipCaptioner, "caption", lambda self, image: "a black and white drawing of an apple")
    def strokes(paper, pen, name):
        image = Image.new("RGB", (400, 300), paper)
        draw = ImageDraw.Draw(image)
        draw.ellipse([120, 80, 280, 240], outline=pen, width=6)
        draw.line([(200, 80), (210, 30)], fill=pen, width=6)
        image.save(tmp_path / name)
        return tmp_path / name

    def run(sketch, name, *flags):
        out = tmp_path / f"{name}.json"
        assert main2.main(["--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints",
                           str(checkpoints), "--json", str(out), "--output", str(tmp_path / name / "grid.png"),
                           *flags]) == 0
        result = json.loads(out.read_text())
        return result, np.asarray(Image.open(result["generated_image"]))

    red = strokes("black", (255, 0, 0), "red apple.png")
    black = strokes("white", "black", "black apple.png")
    hinted, hinted_image = run(red, "hinted")
    plain, plain_image = run(red, "plain", "--no-colour-hints")
    same_strokes, same_strokes_image = run(black, "black")
    assert re.search(r"\bred\b", hinted["prompt"]) and not re.search(r"\bred\b", plain["prompt"])
    assert hinted["prompt"] == build_prompt(hinted["caption"], colour="red")
    assert plain["prompt"] == build_prompt(plain["caption"])
    # Without the hint, red on black is the same generator input as black on white: same caption,
    # prompt and image; with it, only the prompt differs, and the image follows it.
    assert same_strokes["prompt"] == plain["prompt"] and hinted["caption"] == plain["caption"]
    assert np.array_equal(plain_image, same_strokes_image)
    assert not np.array_equal(hinted_image, plain_image)


def test_several_sketches_load_the_models_once_and_each_gets_its_files(
        checkpoints, gallery, tmp_path, monkeypatch, capsys):
    from captioning.blip import BlipCaptioner
    from generation.pix2pix_turbo import Pix2PixTurbo
    loads = []
    for cls in (BlipCaptioner, Pix2PixTurbo):
        real = cls.from_pretrained.__func__
        monkeypatch.setattr(cls, "from_pretrained", classmethod(
            lambda c, *a, _real=real, **k: loads.append(c.__name__) or _real(c, *a, **k)))
    folder = tmp_path / "sketches"
    draw_sketch(folder / "circle.png", "circle")
    draw_sketch(folder / "box.png", "box")
    (folder / "notes.txt").write_text("not a sketch")  # not an image type: not a sketch
    other = draw_sketch(tmp_path / "elsewhere" / "box.png", "peak")  # same name, other folder
    out, js = tmp_path / "grids", tmp_path / "json"
    assert main2.main(["--image_path", str(folder), "--image_path", str(other), "--gallery", str(gallery),
                       "--checkpoints", str(checkpoints), "--output", str(out), "--json", str(js)]) == 0
    assert sorted(loads) == ["BlipCaptioner", "Pix2PixTurbo"]
    # A folder's images in name order, then the file; a repeated name is made unique.
    assert sorted(p.name for p in js.iterdir()) == ["box-2.json", "box.json", "circle.json"]
    generated = set()
    for name in ["box", "circle", "box-2"]:
        data = json.loads((js / f"{name}.json").read_text())
        assert data["generated_image"] == str(out / f"{name}_results_generated.png")
        generated.add(Image.open(data["generated_image"]).tobytes())
        with Image.open(out / f"{name}_results.png") as picture:
            assert picture.width > 256
    assert len(generated) == 3  # three sketches, three different images
    printed = capsys.readouterr().out
    assert printed.count("caption : ") == 3 and f"sketch 3/3: {other}" in printed


def test_a_folder_without_images_says_so(checkpoints, gallery, tmp_path):
    folder = tmp_path / "empty sketches"
    folder.mkdir()
    (folder / "readme.txt").write_text("no images here")
    done = run_main2("--image_path", str(folder), "--gallery", str(gallery),
                     "--checkpoints", str(checkpoints), "--output", str(tmp_path / "r"))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"{folder}: a folder with no images" in lines[0], lines
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("case", ["output is a folder", "json is a folder", "parent is a file",
                                  "read-only place", "json read-only", "same file twice",
                                  "several: output is a file"])
def test_unwritable_outputs_are_refused_before_any_model_work(checkpoints, gallery, sketch,
                                                              tmp_path, case):
    a_file = tmp_path / "a file.txt"
    a_file.write_text("in the way")
    (tmp_path / "a folder").mkdir()
    output, json_out, expected = tmp_path / "ok" / "grid.png", None, ""
    images = [str(sketch)]
    if case == "output is a folder":
        output, expected = tmp_path / "a folder", "--output"
    elif case == "json is a folder":
        json_out, expected = tmp_path / "a folder", "--json"
    elif case == "parent is a file":
        output, expected = a_file / "sub" / "grid.png", "is a file, not a folder"
    elif case == "read-only place":  # sysfs takes no new files, even from root
        output, expected = "/sys/grid.png", "cannot write in /sys"
    elif case == "json read-only":
        json_out, expected = "/sys/out.json", "cannot write in /sys"
    elif case == "same file twice":
        json_out, expected = output, "already used"
    else:
        images, output, expected = [str(sketch), str(sketch)], a_file, "is a file"
    args = ["--gallery", str(gallery), "--checkpoints", str(checkpoints), "--output", str(output)]
    for image in images:
        args += ["--image_path", image]
    if json_out is not None:
        args += ["--json", str(json_out)]
    done = run_main2(*args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (gallery / ".sketch-search").exists()  # refused before indexing: no model work
    assert not (tmp_path / "ok").exists()
    assert not list(tmp_path.rglob(".sketch-search-probe-*"))


def test_a_write_that_fails_later_is_one_line_and_keeps_earlier_files(checkpoints, gallery, sketch,
                                                                     tmp_path):
    import resource
    import signal
    out, grid = tmp_path / "out" / "q.json", tmp_path / "out" / "q.png"
    args = ["--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints", str(checkpoints),
            "--json", str(out), "--output", str(grid), "--seed", "1"]
    assert run_main2(*args).returncode == 0
    before = {p.name: p.read_bytes() for p in out.parent.iterdir()}
    assert set(before) == {"q.json", "q.png", "q_generated.png"}

    # Like a full disk: writes past `limit` bytes fail with an OSError (EFBIG). The gallery
    # index fits under it, the generated image does not.
    limit = max(p.stat().st_size for p in (gallery / ".sketch-search").iterdir()) + 65536
    assert len(before["q_generated.png"]) > limit

    def small_disk():
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))

    done = run_main2(*args[:-1], "2", preexec_fn=small_disk)
    assert done.returncode == 2, done.stderr
    # The gallery's unreadable photo is retried each run (issue 12): its progress bar may show.
    lines = [line for line in re.split(r"[\r\n]+", done.stderr.strip()) if not line.startswith("indexing gallery:")]
    assert len(lines) == 1 and lines[0].startswith("error: could not write "), lines
    assert "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in out.parent.iterdir()} == before  # intact, no temporaries


def test_generated_images_of_two_queries_do_not_overwrite_each_other(checkpoints, gallery, sketch,
                                                                     tmp_path):
    results = tmp_path / "results"
    for seed, name in (("1", "first"), ("2", "second")):
        assert main2.main(["--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints",
                           str(checkpoints), "--seed", seed, "--output", str(results / f"{name}.png"),
                           "--json", str(results / f"{name}.json")]) == 0
    first = json.loads((results / "first.json").read_text())["generated_image"]
    second = json.loads((results / "second.json").read_text())["generated_image"]
    assert first != second
    assert not np.array_equal(np.asarray(Image.open(first)), np.asarray(Image.open(second)))


def test_generated_image_in_the_json_is_absolute(checkpoints, gallery, sketch, tmp_path):
    done = run_main2("--image_path", str(sketch), "--gallery", str(gallery), "--checkpoints",
                     str(checkpoints), "--output", "res/grid.png", "--json", "res/out.json", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    data = json.loads((tmp_path / "res" / "out.json").read_text())
    assert data["generated_image"] == str(tmp_path / "res" / "grid_generated.png")
    assert all(os.path.isabs(hit["path"]) for hit in data["results"])
