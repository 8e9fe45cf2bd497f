"""The evaluation runs the product's models (tiny checkpoints) on a small labelled set.

Sketches are drawn shape outlines, photos are filled shapes on coloured grounds plus real
photos from scikit-image; a tiny random CLIP of the real classes stands in for the caption mode.
"""
from __future__ import annotations

import json

import pytest
import torch
from PIL import Image, ImageDraw
from skimage import data as skimage_data
from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor, CLIPTokenizer

from sketch_search.app.settings import Settings
from sketch_search.common.errors import DatasetError, GalleryError, MissingCheckpointError
from tools.clip_embedder import ClipEmbedder
from tools.evaluate_retrieval import EvalConfig, Evaluator, main, write_reports
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
from tools.fixtures.tiny_models.sd_turbo import write_clip_tokenizer

SHAPES = ("circle", "square", "triangle")


def draw(shape: str, variant: int, filled: bool, size: int = 96) -> Image.Image:
    ground = "white" if not filled else ["#dde", "#ede", "#eed"][variant % 3]
    image = Image.new("RGB", (size, size), ground)
    pen = ImageDraw.Draw(image)
    m = 10 + 3 * variant
    box = [m, m, size - m, size - m + variant]
    style = dict(fill=["red", "green", "blue"][variant % 3]) if filled else dict(outline="black", width=3)
    if shape == "circle":
        pen.ellipse(box, **style)
    elif shape == "square":
        pen.rectangle(box, **style)
    else:
        pen.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])], **style)
    return image


def write_tiny_clip(folder):
    """A tiny random CLIPModel with a CLIP BPE tokenizer and image processor, saved as on the hub."""
    vocab_size = write_clip_tokenizer(folder)
    tokenizer = CLIPTokenizer.from_pretrained(folder)
    images = CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    text = dict(vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                num_attention_heads=2, max_position_embeddings=77, bos_token_id=vocab_size - 2,
                eos_token_id=vocab_size - 1, pad_token_id=0)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=32, patch_size=8)
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(folder)
    CLIPProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("eval")
    for shape in SHAPES:
        (root / "sketches" / shape).mkdir(parents=True)
        (root / "photos" / shape).mkdir(parents=True)
        for i in range(2):
            draw(shape, i, filled=False).save(root / "sketches" / shape / f"{i}.png")
        for i in range(3):
            draw(shape, i, filled=True).save(root / "photos" / shape / f"{i}.jpg")
    # A class with sketches but no photos, and one with photos but no sketches.
    (root / "sketches" / "star").mkdir()
    draw("triangle", 4, filled=False).save(root / "sketches" / "star" / "0.png")
    (root / "photos" / "space").mkdir()
    Image.fromarray(skimage_data.astronaut()).save(root / "photos" / "space" / "astronaut.jpg")
    Image.fromarray(skimage_data.rocket()).save(root / "photos" / "space" / "rocket.jpg")
    (root / "photos" / "space" / "broken.jpg").write_bytes(b"not a photo")
    Image.new("RGB", (64, 64), "white").save(root / "sketches" / "circle" / "blank.png")
    return root


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"))


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    return write_tiny_clip(tmp_path_factory.mktemp("clip"))


def settings(checkpoints) -> Settings:
    return Settings(checkpoints=checkpoints, device="cpu", show_progress=False, batch_size=4)


def check_numbers(result: dict, names: list[str]) -> None:
    rows = [result["overall"], *result["per_class"].values()]
    for row in rows:
        for name in names:
            assert row[name] is None or 0.0 <= row[name] <= 1.0, (name, row)


def test_full_run_reports_every_mode_and_class(dataset, checkpoints, clip_dir, tmp_path):
    config = EvalConfig(sketches=dataset / "sketches", photos=dataset / "photos",
                        settings=settings(checkpoints), clip=clip_dir, out=tmp_path / "report",
                        hit_ks=(1, 5, 10), precision_ks=(100, 200))
    report = Evaluator(config).run()
    markdown, data = write_reports(report, config.out)
    assert markdown == tmp_path / "report.md" and data == tmp_path / "report.json"
    saved = json.loads(data.read_text())
    assert saved["metrics"] == ["mAP", "P@100", "P@200", "acc@1", "acc@5", "acc@10"]
    classes = {"circle", "square", "triangle", "star", "space"}
    assert set(saved["classes"]) == classes
    assert saved["counts"] == {"classes": 5, "photos": 11, "queries": 6}
    assert saved["photos_skipped"][0]["path"].endswith("broken.jpg")
    assert [s["path"].endswith("blank.png") for s in saved["sketches_skipped"]] == [True]
    assert "no strokes" in saved["sketches_skipped"][0]["reason"]
    assert "no photos" in saved["classes"]["star"]["note"]
    assert "no sketches" in saved["classes"]["space"]["note"]
    text = markdown.read_text()
    for mode in ("generated", "sketch", "caption"):
        result = saved["modes"][mode]
        assert result["available"], mode
        assert set(result["per_class"]) == classes
        assert result["overall"]["queries"] == 6
        assert result["per_class"]["star"]["queries"] == 0 and result["per_class"]["star"]["mAP"] is None
        assert result["per_class"]["circle"]["queries"] == 2
        check_numbers(result, saved["metrics"])
        # 9 shape photos + 2 distractors: a query's 3 relevant photos rank at worst 9th-11th.
        assert result["overall"]["mAP"] >= (1 / 9 + 2 / 10 + 3 / 11) / 3 - 1e-9
        assert result["overall"]["acc@10"] == 1.0
        assert result["overall"]["P@100"] == pytest.approx(3 / 11)  # k capped at the 11 photos
        assert result["median_seconds_per_query"] > 0
        assert f"## {mode}:" in text
    for name in classes:
        rows = [line for line in text.splitlines() if line.startswith(f"| {name} |")]
        assert len(rows) == 3 and all(row.count("|") == 2 + len(saved["metrics"]) + 1 for row in rows), rows
    # The sketch mode needs no caption, so it never takes longer than the generated route.
    seconds = {mode: result["median_seconds_per_query"] for mode, result in saved["modes"].items()}
    assert seconds["sketch"] < seconds["generated"]
    assert all(q["caption"] for q in saved["queries"])


def test_caption_mode_without_clip_is_reported_unavailable(dataset, checkpoints, tmp_path, capsys):
    code = main(["--sketches", str(dataset / "sketches"), "--photos", str(dataset / "photos"),
                 "--checkpoints", str(checkpoints), "--modes", "sketch,caption", "--device", "cpu",
                 "--out", str(tmp_path / "r.md"), "--top-k", "1,3", "--precision-at", "5"])
    assert code == 0
    saved = json.loads((tmp_path / "r.json").read_text())
    assert saved["metrics"] == ["mAP", "P@5", "acc@1", "acc@3"]
    assert saved["modes"]["caption"] == {"available": False, "route": saved["modes"]["caption"]["route"],
                                         "reason": saved["modes"]["caption"]["reason"]}
    assert "--clip" in saved["modes"]["caption"]["reason"]
    assert list(saved["modes"]) == ["sketch", "caption"]
    assert "Unavailable" in (tmp_path / "r.md").read_text()
    assert "caption: unavailable" in capsys.readouterr().out


def test_clip_embedder_vectors_are_unit_length(clip_dir):
    clip = ClipEmbedder.from_pretrained(clip_dir)
    texts = clip.embed_texts(["a photo of a cat", "a photo of a dog"])
    images = clip.embed_images([draw("circle", 0, True), draw("square", 1, True)])
    assert texts.shape == images.shape == (2, 16)
    for vectors in (texts, images):
        assert abs((vectors ** 2).sum(1) - 1).max() < 1e-5
    assert not (texts[0] == texts[1]).all()


def test_bad_folders_are_one_line(dataset, checkpoints, tmp_path):
    (tmp_path / "empty").mkdir()
    cases = [(dict(sketches=tmp_path / "nowhere"), DatasetError),
             (dict(sketches=tmp_path / "empty"), DatasetError),
             (dict(photos=tmp_path / "nowhere"), GalleryError)]
    for change, error in cases:
        fields = dict(sketches=dataset / "sketches", photos=dataset / "photos",
                      settings=settings(checkpoints))
        with pytest.raises(error) as info:
            Evaluator(EvalConfig(**{**fields, **change}))
        assert "\n" not in str(info.value)
    evaluator = Evaluator(EvalConfig(sketches=dataset / "sketches", photos=dataset / "photos",
                                     settings=settings(tmp_path / "no-models")))
    with pytest.raises(MissingCheckpointError, match="checkpoints.fetch"):
        evaluator.run()


def test_sketch_mode_needs_and_loads_only_the_embedder(dataset, checkpoints, tmp_path):
    import shutil

    from checkpoints import layout
    only_dino = tmp_path / "only-dinov2"
    only_dino.mkdir()
    dino = layout.embedder_source(checkpoints, "base").local
    shutil.copytree(dino, only_dino / dino.name)
    evaluator = Evaluator(EvalConfig(sketches=dataset / "sketches", photos=dataset / "photos",
                                     settings=settings(only_dino), modes=("sketch",), out=tmp_path / "r"))
    report = evaluator.run()
    assert report["modes"]["sketch"]["overall"]["queries"] == 6
    search = evaluator.search
    assert search.embedder is not None and search.captioner is None and search.generator is None
    # The generated route does need the other models, and says which are missing in one line.
    evaluator = Evaluator(EvalConfig(sketches=dataset / "sketches", photos=dataset / "photos",
                                     settings=settings(only_dino), modes=("sketch", "generated")))
    with pytest.raises(MissingCheckpointError, match="checkpoints.fetch") as info:
        evaluator.run()
    assert "\n" not in str(info.value)


def test_an_out_of_range_gamma_is_refused_before_any_model_loads(dataset, tmp_path):
    """The evaluation shares main2's model flags and their checks (it used to load every model,
    then die with a ValueError traceback)."""
    import subprocess
    import sys

    from tests.conftest import ROOT
    result = subprocess.run([sys.executable, "-m", "tools.evaluate_retrieval", "--sketches",
                             str(dataset / "sketches"), "--photos", str(dataset / "photos"),
                             "--checkpoints", str(tmp_path / "none"), "--gamma", "1.5"],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--gamma: 1.5 is not between 0 and 1" in result.stderr
