"""The pipeline object: models loaded once, many queries, the fine-tuned captioner preferred."""
from __future__ import annotations

import pytest
import torch
from PIL import Image, ImageDraw

from sketch_search.app.settings import Settings
from sketch_search.app.sketch_search import SketchSearch
from sketch_search.common.errors import BlankSketchError, MissingCheckpointError
from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    return write_tiny_checkpoints(tmp_path_factory.mktemp("ckpt"), seed_blip_file=True)


@pytest.fixture(scope="module")
def search(checkpoints, tmp_path_factory):
    gallery = tmp_path_factory.mktemp("gallery")
    for i, colour in enumerate(["red", "green", "blue"]):
        image = Image.new("RGB", (120, 90), colour)
        ImageDraw.Draw(image).rectangle([10 * i, 10, 60, 70], fill="white")
        image.save(gallery / f"{colour}.png")
    engine = SketchSearch(Settings(checkpoints=checkpoints, show_progress=False))
    engine.load()
    engine.index_gallery(gallery)
    return engine


def drawing(offset: int = 0) -> Image.Image:
    image = Image.new("RGB", (256, 256), "white")
    ImageDraw.Draw(image).line([(30 + offset, 40), (200, 220 - offset)], fill="red", width=6)
    return image


def test_models_load_once_and_answer_many_queries(search):
    models = (search.captioner, search.generator, search.embedder)
    search.load()
    assert (search.captioner, search.generator, search.embedder) == models
    first, second = search.query(drawing(0)), search.query(drawing(40))
    assert (search.captioner, search.generator, search.embedder) == models
    for result in (first, second):
        assert len(result.results) == 3 and result.prompt.startswith("Convert")
        assert set(result.timings) == {"preprocess", "captioning", "generating", "searching", "total"}
    assert first.generated.tobytes() != second.generated.tobytes()
    assert search.query(drawing(0)).generated.tobytes() == first.generated.tobytes()


def test_stage_callback_names_each_stage(search):
    stages = []
    search.query(drawing(10), stage=stages.append)
    assert stages == ["preprocess", "captioning", "generating", "searching"]


def test_blank_sketch_is_refused(search):
    with pytest.raises(BlankSketchError):
        search.query(Image.new("RGB", (300, 200), (250, 250, 250)))


def test_auto_captioner_prefers_the_seed_file(search, checkpoints):
    tuned = torch.load(checkpoints / "blip_sketch.pt", weights_only=True)["model_state_dict"]
    name = "text_decoder.cls.predictions.decoder.weight"
    name = name if name in tuned else next(iter(tuned))
    assert torch.equal(search.captioner.model.state_dict()[name], tuned[name])
    stock = SketchSearch(Settings(checkpoints=checkpoints, captioner="stock"))
    stock.load()
    assert not torch.equal(stock.captioner.model.state_dict()[name], tuned[name])


def test_missing_model_named_before_loading(tmp_path):
    engine = SketchSearch(Settings(checkpoints=tmp_path))
    with pytest.raises(MissingCheckpointError) as info:
        engine.load()
    assert "checkpoints.fetch" in str(info.value) and engine.captioner is None


def test_the_generated_image_is_what_is_searched(search, checkpoints, tmp_path):
    """The route embeds the generated image, not the sketch: put that image into the gallery and
    it must come first with a score near 1 (a route that embedded the sketch would not)."""
    first = search.query(drawing(20))
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    first.generated.save(gallery / "generated.png")
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (120, 90), colour).save(gallery / f"{colour}.png")
    engine = SketchSearch(Settings(checkpoints=checkpoints, show_progress=False))
    engine.captioner, engine.generator, engine.embedder = search.captioner, search.generator, search.embedder
    engine.index_gallery(gallery)
    again = engine.query(drawing(20))
    best_path, best_score = again.results[0]
    assert best_path.name == "generated.png"
    assert best_score > 0.999
    encoded = engine.encode(drawing(20))
    assert encoded.generated.tobytes() == first.generated.tobytes()
    assert encoded.caption == first.caption and encoded.prompt == first.prompt
