"""retrieval.embedder: a tiny random Dinov2Model saved as a real HF folder, loaded back."""
from __future__ import annotations

import json

import numpy as np
import pytest
import skimage.data
import torch
from PIL import Image

from common.errors import MissingCheckpointError
from retrieval.embedder import DinoEmbedder
from tools.fixtures.tiny_models.dinov2 import IMAGE_SIZE, RESIZE_SHORTEST, write_tiny_dinov2


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
    with pytest.raises(MissingCheckpointError, match="cannot load DINOv2") as info:
        DinoEmbedder.from_pretrained(tmp_path / "no-such-model")
    assert "\n" not in str(info.value)
