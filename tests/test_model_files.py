"""Model folders that hold the wrong thing end in one line naming the folder, never in a model
with random layers: a truncated safetensors file, a pickled .bin that the safe loader refuses,
another model's folder (DINOv2 and BLIP swapped, a plain ViT where DINOv2 belongs), and weights
that leave layers at their random initial values (issue 11, part 6)."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import ViTConfig, ViTModel

from captioning.blip import BlipCaptioner
from checkpoints import layout
from generation.pix2pix_turbo import Pix2PixTurbo
from retrieval.embedder import DinoEmbedder
from sketch_search.common.errors import CheckpointFormatError
from tools.fixtures.tiny_models.blip import write_tiny_blip
from tools.fixtures.tiny_models.dinov2 import write_tiny_dinov2
from tools.fixtures.tiny_models.sd_turbo import write_tiny_lora_file, write_tiny_sd_turbo

DINO_DIR = layout.embedder_dir_name("base")
BLIP_DIR = layout.BLIP_BASE[1]


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("good")
    sd_turbo = write_tiny_sd_turbo(root / "sd-turbo")
    return {"dino": write_tiny_dinov2(root / DINO_DIR), "blip": write_tiny_blip(root / BLIP_DIR),
            "sd_turbo": sd_turbo, "lora": write_tiny_lora_file(root / "lora.pkl", sd_turbo)}


def _copy(source: Path, target: Path) -> Path:
    shutil.copytree(source, target)
    return target


def _refused(load, folder: Path, *fragments: str, named: Path | None = None) -> str:
    """`load(folder)` ends in one line naming `named` (default: the folder itself)."""
    named = named or folder
    with pytest.raises(CheckpointFormatError) as caught:
        load(folder)
    message = str(caught.value)
    assert "\n" not in message and str(named) in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


def load_dino(folder: Path):
    return DinoEmbedder.from_pretrained(folder)


def load_blip(folder: Path):
    return BlipCaptioner.from_pretrained(folder)


def _truncate(path: Path, keep: float = 0.5) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("keep", [0.5, 0.0001], ids=["half", "header"])
@pytest.mark.parametrize("model", ["dino", "blip"])
def test_a_truncated_safetensors_file_is_one_line(good, tmp_path, model, keep):
    folder = _copy(good[model], tmp_path / (DINO_DIR if model == "dino" else BLIP_DIR))
    _truncate(folder / "model.safetensors", keep)
    _refused(load_dino if model == "dino" else load_blip, folder, "truncated")


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("content", ["code", "object"])
def test_a_pickled_bin_that_the_safe_loader_refuses_is_one_line(good, tmp_path, content):
    folder = _copy(good["dino"], tmp_path / DINO_DIR)
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "ran"
    weights["extra"] = _RunsCode(marker) if content == "code" else Path("x")
    torch.save(weights, folder / "pytorch_model.bin")
    _refused(load_dino, folder, "pickle", "model.safetensors")
    assert not marker.exists()


def test_a_plain_bin_of_the_right_model_still_loads(good, tmp_path):
    folder = _copy(good["dino"], tmp_path / DINO_DIR)
    torch.save(load_file(folder / "model.safetensors"), folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert DinoEmbedder.from_pretrained(folder).fingerprint


def test_dinov2_and_blip_swapped_are_refused(good, tmp_path):
    blip_where_dino_goes = _copy(good["blip"], tmp_path / "a" / DINO_DIR)
    dino_where_blip_goes = _copy(good["dino"], tmp_path / "b" / BLIP_DIR)
    _refused(load_dino, blip_where_dino_goes, "holds a blip model, not DINOv2")
    _refused(load_blip, dino_where_blip_goes, "holds a dinov2 model, not BLIP captioning")
    # Also as the fine-tuned folder over a right base.
    _refused(lambda f: BlipCaptioner.from_pretrained(good["blip"], fine_tuned=f), dino_where_blip_goes, "dinov2")


def test_a_plain_vit_in_the_dinov2_folder_is_refused(tmp_path):
    # ViTModel's weights load into Dinov2Model with a warning and random layers; never use them.
    folder = tmp_path / DINO_DIR
    ViTModel(ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=56, patch_size=14)).save_pretrained(folder)
    write_tiny_dinov2(tmp_path / "donor")
    shutil.copy(tmp_path / "donor" / "preprocessor_config.json", folder)
    _refused(load_dino, folder, "holds a vit model, not DINOv2")


def _drop_weights(folder: Path, file: str, pick) -> list[str]:
    weights = load_file(folder / file)
    dropped = [k for k in weights if pick(k)]
    save_file({k: v for k, v in weights.items() if k not in dropped}, folder / file, metadata={"format": "pt"})
    return dropped


@pytest.mark.parametrize("model", ["dino", "blip"])
def test_weights_that_leave_layers_random_are_refused(good, tmp_path, model):
    folder = _copy(good[model], tmp_path / (DINO_DIR if model == "dino" else BLIP_DIR))
    dropped = _drop_weights(folder, "model.safetensors", lambda k: ".1.attention" in k and k.endswith("bias"))
    assert dropped
    _refused(load_dino if model == "dino" else load_blip, folder, "at random", "missing")


def test_a_dinov2_without_the_unused_mask_token_loads(good, tmp_path):
    folder = _copy(good["dino"], tmp_path / DINO_DIR)
    assert _drop_weights(folder, "model.safetensors", lambda k: k == "embeddings.mask_token")
    reference = DinoEmbedder.from_pretrained(good["dino"])
    loaded = DinoEmbedder.from_pretrained(folder)
    pixels = torch.rand(1, 3, 56, 56)
    with torch.no_grad():
        assert torch.equal(loaded.model(pixel_values=pixels).pooler_output,
                           reference.model(pixel_values=pixels).pooler_output)


def load_generator(good):
    return lambda folder: Pix2PixTurbo.from_pretrained(folder, good["lora"])


@pytest.mark.parametrize("part", ["unet", "vae", "text_encoder"])
def test_sd_turbo_parts_are_checked_the_same_way(good, tmp_path, part):
    weights = "model.safetensors" if part == "text_encoder" else "diffusion_pytorch_model.safetensors"
    truncated = _copy(good["sd_turbo"], tmp_path / "truncated")
    _truncate(truncated / part / weights)
    _refused(load_generator(good), truncated, "truncated", named=truncated / part)
    holed = _copy(good["sd_turbo"], tmp_path / "holed")
    assert _drop_weights(holed / part, weights, lambda k: k.endswith("bias") and ".1." in k)
    _refused(load_generator(good), holed, "at random", named=holed / part)


def test_a_unet_where_the_vae_belongs_is_refused(good, tmp_path):
    swapped = _copy(good["sd_turbo"], tmp_path / "swapped")
    shutil.rmtree(swapped / "vae")
    shutil.copytree(good["sd_turbo"] / "unet", swapped / "vae")
    _refused(load_generator(good), swapped, "holds a UNet2DConditionModel model, not SD-Turbo's vae",
             named=swapped / "vae")


def test_a_swapped_folder_is_refused_before_any_model_loads(good, tmp_path):
    """The torch-free plan reads the folders' config.json: no model work before the one line."""
    from sketch_search.app.model_plan import plan_models
    from sketch_search.app.settings import Settings
    checkpoints = tmp_path / "ckpt"
    _copy(good["blip"], checkpoints / DINO_DIR)
    _copy(good["dino"], checkpoints / BLIP_DIR)
    for stage, folder, held in (("embedder", DINO_DIR, "blip"), ("captioner", BLIP_DIR, "dinov2")):
        with pytest.raises(CheckpointFormatError) as caught:
            plan_models(Settings(checkpoints=checkpoints, captioner="stock"), stages=(stage,))
        message = str(caught.value)
        assert "\n" not in message and str(checkpoints / folder) in message and f"holds a {held} model" in message
