"""pix2pix-turbo's LoRA file: key names of every peft version, round trips, foreign files refused."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL

from common.errors import CheckpointFormatError, MissingCheckpointError
from generation.lora_file import canonical_key, load_lora_file, save_lora_file
from generation.pix2pix_turbo import Pix2PixTurbo
from tools.fixtures.tiny_models.sd_turbo import tiny_vae, write_tiny_lora_file, write_tiny_sd_turbo

PROMPT = "a sketch of a house"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("lora")
    sd_turbo = write_tiny_sd_turbo(root / "sd-turbo")
    files = {naming: write_tiny_lora_file(root / f"{naming}.pkl", sd_turbo, naming=naming)
             for naming in ("peft_new", "peft_old", "peft_prefixed")}
    return {"root": root, "sd_turbo": sd_turbo, **files}


def mask() -> np.ndarray:
    sketch = np.zeros((64, 64), dtype=bool)
    sketch[10:54, 30:34] = True
    sketch[30:34, 8:56] = True
    return sketch


def image(sd_turbo: Path, lora: Path) -> np.ndarray:
    return np.asarray(Pix2PixTurbo.from_pretrained(sd_turbo, lora).generate(mask(), PROMPT, seed=1))


@pytest.mark.parametrize(("key", "canonical"), [
    ("down_blocks.0.attentions.0.proj_in.lora_A.default.weight", "down_blocks.0.attentions.0.proj_in.lora_A.weight"),
    ("down_blocks.0.attentions.0.proj_in.lora_A.weight", "down_blocks.0.attentions.0.proj_in.lora_A.weight"),
    ("decoder.skip_conv_1.base_layer.weight", "decoder.skip_conv_1.weight"),
    ("decoder.skip_conv_1.lora_B.vae_skip.weight", "decoder.skip_conv_1.lora_B.weight"),
    ("base_model.model.conv_out.lora_B.default.weight", "conv_out.lora_B.weight"),
    ("unet.conv_in.conv_in_curr.bias", "conv_in.conv_in_curr.bias"),
    ("vae.encoder.conv_in.base_layer.bias", "encoder.conv_in.bias"),
])
def test_canonical_key_names(key, canonical):
    assert canonical_key(key) == canonical


def test_the_three_namings_really_differ(tiny):
    keys = {n: set(torch.load(tiny[n])["state_dict_vae"]) for n in ("peft_new", "peft_old", "peft_prefixed")}
    assert "decoder.skip_conv_1.base_layer.weight" in keys["peft_new"]
    assert "decoder.skip_conv_1.weight" in keys["peft_old"]
    assert not any(".base_layer." in k or ".vae_skip." in k for k in keys["peft_old"])
    assert all(k.startswith("base_model.model.") for k in keys["peft_prefixed"])


def test_every_naming_gives_the_same_image(tiny):
    new = image(tiny["sd_turbo"], tiny["peft_new"])
    assert np.array_equal(new, image(tiny["sd_turbo"], tiny["peft_old"]))
    assert np.array_equal(new, image(tiny["sd_turbo"], tiny["peft_prefixed"]))


def test_save_and_load_round_trip(tiny):
    lora = load_lora_file(tiny["peft_old"])
    copy = save_lora_file(lora, tiny["root"] / "copy" / "again.pkl")
    again = load_lora_file(copy)
    assert (again.rank_unet, again.rank_vae) == (lora.rank_unet, lora.rank_vae)
    assert again.unet_target_modules == lora.unet_target_modules
    assert again.vae_target_modules == lora.vae_target_modules
    for part in ("state_dict_unet", "state_dict_vae"):
        original, loaded = getattr(lora, part), getattr(again, part)
        assert original.keys() == loaded.keys()
        assert all(torch.equal(original[k], loaded[k]) for k in original)
    assert np.array_equal(image(tiny["sd_turbo"], copy), image(tiny["sd_turbo"], tiny["peft_old"]))


def _edited(tiny, name: str, edit) -> Path:
    data = torch.load(tiny["peft_new"])
    edit(data)
    path = tiny["root"] / name
    torch.save(data, path)
    return path


def _refused(tiny, path: Path, *fragments: str) -> str:
    with pytest.raises(CheckpointFormatError) as caught:
        Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], path)
    message = str(caught.value)
    assert "\n" not in message and str(path) in message
    for fragment in fragments:
        assert fragment in message
    return message


def test_not_a_torch_file_is_refused(tiny):
    path = tiny["root"] / "photo.pkl"
    path.write_bytes(b"\x89PNG\r\n\x1a\n not a checkpoint")
    _refused(tiny, path, "not a readable torch file")


def test_a_pickled_object_is_not_executed(tiny):
    path = _edited(tiny, "object.pkl", lambda d: d.update(rank_unet=Path("x")))  # any class but tensors
    message = _refused(tiny, path, "not a readable torch file")
    assert "UnpicklingError" in message


def test_missing_top_level_keys_are_named(tiny):
    path = _edited(tiny, "no-vae.pkl", lambda d: (d.pop("state_dict_vae"), d.pop("rank_vae")))
    _refused(tiny, path, "rank_vae", "state_dict_vae")


def test_a_missing_lora_weight_is_refused(tiny):
    def drop(data):
        key = next(k for k in data["state_dict_unet"] if "lora_B" in k)
        del data["state_dict_unet"][key]
    _refused(tiny, _edited(tiny, "incomplete.pkl", drop), "lacks 1", "state_dict_unet")


def test_a_missing_skip_conv_is_refused(tiny):
    def drop(data):
        del data["state_dict_vae"]["decoder.skip_conv_3.base_layer.weight"]
    _refused(tiny, _edited(tiny, "no-skip.pkl", drop), "decoder.skip_conv_3.weight")


def test_an_unknown_key_is_refused(tiny):
    def add(data):
        data["state_dict_unet"]["mid_block.attentions.7.to_q.lora_A.default.weight"] = torch.zeros(8, 32)
    _refused(tiny, _edited(tiny, "unknown.pkl", add), "fit no layer")


def test_a_rank_that_does_not_match_the_weights_is_refused(tiny):
    def rank(data):
        data["rank_unet"] = 4
    _refused(tiny, _edited(tiny, "rank.pkl", rank), "shape")


def test_a_file_for_another_base_model_is_refused(tiny, tmp_path):
    # Same layer names, other widths: the LoRA file of a different VAE / UNet.
    other = write_tiny_sd_turbo(tmp_path / "other")
    AutoencoderKL.from_config({**tiny_vae().config, "block_out_channels": (8, 8, 16, 16)}).save_pretrained(
        other / "vae")
    foreign = write_tiny_lora_file(tmp_path / "foreign.pkl", other)
    _refused(tiny, foreign, "shape", "another base model")


def test_a_missing_file_says_how_to_fetch_it(tiny):
    with pytest.raises(MissingCheckpointError, match="checkpoints.fetch"):
        load_lora_file(tiny["root"] / "absent.pkl")
