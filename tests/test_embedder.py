"""retrieval.embedder: tiny random Dinov2Model and DINOv3ViTModel saved as real HF folders, loaded back."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from checkpoints import layout
from retrieval.embedder import DinoEmbedder
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError
from tools.fixtures.tiny_models import dinov3
from tools.fixtures.tiny_models.dinov2 import IMAGE_SIZE, RESIZE_SHORTEST, write_tiny_dinov2
from tools.fixtures.tiny_models.dinov3 import write_tiny_dinov3


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return write_tiny_dinov2(tmp_path_factory.mktemp("dinov2-tiny"))


@pytest.fixture(scope="module")
def photos():
    return [Image.fromarray(skimage.data.astronaut()), Image.fromarray(skimage.data.chelsea()),
            Image.fromarray(skimage.data.coffee()), Image.fromarray(skimage.data.camera())]


def test_loads_folder_and_reports_shape(tiny_dir):
    embedder = DinoEmbedder.from_pretrained(tiny_dir, name="dinov2-tiny")
    assert embedder.name == "dinov2-tiny"
    assert embedder.dim == 32
    assert embedder.input_size == IMAGE_SIZE
    assert embedder.min_image_side == RESIZE_SHORTEST
    assert DinoEmbedder.from_pretrained(tiny_dir).name == tiny_dir.name


def test_vectors_are_unit_float32_and_batching_does_not_change_them(tiny_dir, photos):
    embedder = DinoEmbedder.from_pretrained(tiny_dir)
    together = embedder.embed_images(photos)
    one_by_one = embedder.embed_images(photos, batch_size=1)
    assert together.shape == (4, 32) and together.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(together, one_by_one, atol=1e-5)
    assert embedder.embed_images([]).shape == (0, 32)
    # Different photos give different vectors (the model is random, not degenerate).
    assert float(together[0] @ together[1]) < 0.9999


def test_vector_is_the_cls_pooled_output(tiny_dir, photos):
    embedder = DinoEmbedder.from_pretrained(tiny_dir)
    pixels = embedder.processor(images=photos[:1], return_tensors="pt")["pixel_values"]
    with torch.no_grad():  # last_hidden_state is already layer-normed; token 0 is CLS
        hidden = embedder.model(pixel_values=pixels).last_hidden_state
    expected = torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy()
    np.testing.assert_allclose(embedder.embed_images(photos[:1]), expected, atol=1e-5)


def test_fingerprint_is_stable_and_follows_weights_and_size(tmp_path, tiny_dir):
    first = DinoEmbedder.from_pretrained(tiny_dir).fingerprint
    assert DinoEmbedder.from_pretrained(tiny_dir).fingerprint == first
    other_weights = write_tiny_dinov2(tmp_path / "seed1", seed=1)
    assert DinoEmbedder.from_pretrained(other_weights).fingerprint != first
    other_size = write_tiny_dinov2(tmp_path / "crop", seed=0)
    config_path = other_size / "preprocessor_config.json"
    config = json.loads(config_path.read_text())
    config["crop_size"] = {"height": 42, "width": 42}
    config_path.write_text(json.dumps(config))
    resized = DinoEmbedder.from_pretrained(other_size)
    assert resized.input_size == 42 and resized.fingerprint != first


def test_missing_folder_is_a_one_line_error(tmp_path):
    with pytest.raises(MissingCheckpointError, match="no DINOv2 model here") as info:
        DinoEmbedder.from_pretrained(tmp_path / "no-such-model")
    assert "\n" not in str(info.value)


# -- DINOv3 ViT-H+/16 (--embedder dinov3-vith16plus) ---------------------------------------------------
DINOV3_DIR = layout.embedder_dir_name("dinov3-vith16plus")


@pytest.fixture(scope="module")
def dinov3_dir(tmp_path_factory):
    return write_tiny_dinov3(tmp_path_factory.mktemp("ckpt") / DINOV3_DIR)


def test_dinov3_is_an_embedder_choice_with_its_own_folder():
    assert layout.EMBEDDER_MODELS["dinov3-vith16plus"] == "facebook/dinov3-vith16plus-pretrain-lvd1689m"
    assert DINOV3_DIR == "dinov3-vith16plus-pretrain-lvd1689m"
    assert layout.DEFAULT_EMBEDDER == "base"


def test_dinov3_loads_with_its_own_class_and_embeds(dinov3_dir, photos):
    embedder = DinoEmbedder.from_pretrained(dinov3_dir, name=DINOV3_DIR)
    assert type(embedder.model).__name__ == "DINOv3ViTModel"
    assert embedder.dim == 32 and embedder.input_size == dinov3.IMAGE_SIZE
    vectors = embedder.embed_images(photos)
    assert vectors.shape == (4, 32) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(vectors, embedder.embed_images(photos, batch_size=1), atol=1e-5)
    # The vector is the CLS token of the normed output (registers and patches come after it).
    pixels = embedder.processor(images=photos[:1])["pixel_values"]
    with torch.no_grad():
        hidden = embedder.model(pixel_values=pixels).last_hidden_state
    assert hidden.shape[1] == 1 + 4 + 9
    expected = torch.nn.functional.normalize(hidden[:, 0], dim=-1).numpy()
    np.testing.assert_allclose(vectors[:1], expected, atol=1e-5)


def test_dinov3_preprocessing_is_rescale_resize_normalise_without_a_crop(dinov3_dir):
    embedder = DinoEmbedder.from_pretrained(dinov3_dir)
    mean = np.array(dinov3.IMAGENET_MEAN)[:, None, None]
    std = np.array(dinov3.IMAGENET_STD)[:, None, None]
    rng = np.random.default_rng(0)
    same_size = rng.integers(0, 256, (dinov3.IMAGE_SIZE, dinov3.IMAGE_SIZE, 3), dtype=np.uint8)
    pixels = embedder.processor(images=[Image.fromarray(same_size)])["pixel_values"][0].numpy()
    np.testing.assert_allclose(pixels, (same_size.transpose(2, 0, 1) / 255 - mean) / std, atol=1e-5)
    # A wide photo is squeezed to the square, not cropped: its red left quarter stays a quarter.
    wide = np.full((60, 240, 3), 255, np.uint8)
    wide[:, :60] = (255, 0, 0)
    pixels = embedder.processor(images=[Image.fromarray(wide)])["pixel_values"][0].numpy()
    green = pixels[1] * std[1, 0, 0] + mean[1, 0, 0]
    assert green[:, :10].max() < 0.05 and green[:, 14:].min() > 0.95


def test_the_fingerprint_and_name_tell_the_families_apart(dinov3_dir, tmp_path):
    v2 = DinoEmbedder.from_pretrained(write_tiny_dinov2(tmp_path / layout.embedder_dir_name("base")))
    v3 = DinoEmbedder.from_pretrained(dinov3_dir)
    assert v3.fingerprint.startswith("dinov3_vit-") and v2.fingerprint != v3.fingerprint
    assert "-" not in v2.fingerprint  # DINOv2's fingerprint is unchanged: its indexes stay valid
    assert (v2.name, v3.name) == ("dinov2-base", DINOV3_DIR)
    assert DinoEmbedder.from_pretrained(dinov3_dir).fingerprint == v3.fingerprint


def test_a_dinov3_folder_where_dinov2_belongs_is_refused(dinov3_dir, tmp_path):
    import shutil
    misplaced = shutil.copytree(dinov3_dir, tmp_path / "dinov2-base")
    with pytest.raises(CheckpointFormatError, match="holds a dinov3_vit model, not DINOv2") as info:
        DinoEmbedder.from_pretrained(misplaced)
    assert "\n" not in str(info.value) and str(misplaced) in str(info.value)


def test_the_flags_choose_dinov3_and_plan_its_folder(dinov3_dir):
    import argparse

    from sketch_search.app.cli import add_model_arguments, settings_from
    from sketch_search.app.model_plan import plan_models
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    assert settings_from(parser.parse_args([])).embedder == "base"
    settings = settings_from(parser.parse_args(["--checkpoints", str(dinov3_dir.parent),
                                                "--embedder", "dinov3-vith16plus", "--generator", "mine.pkl"]))
    assert settings.embedder == "dinov3-vith16plus" and settings.generator == "mine.pkl"
    plan = plan_models(settings, stages=("embedder",))
    assert plan.embedder == dinov3_dir and plan.embedder_name == DINOV3_DIR
    embedder = DinoEmbedder.from_pretrained(plan.embedder, name=plan.embedder_name)
    assert type(embedder.model).__name__ == "DINOv3ViTModel"
