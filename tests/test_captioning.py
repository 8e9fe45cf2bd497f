"""The captioner loads through the real BLIP code from an HF folder and from the seed's file."""
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw
from transformers import BlipConfig, BlipForConditionalGeneration

from captioning.blip import BlipCaptioner, load_seed_state_dict
from checkpoints import layout
from sketch_search.common.errors import CheckpointFormatError
from tools.fixtures.tiny_models.blip import OUTPUT_MATRIX, WORD_EMBEDDINGS, write_seed_blip_file, write_tiny_blip


@pytest.fixture(scope="module")
def blip_dir(tmp_path_factory):
    return write_tiny_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture()
def sketch():
    image = Image.new("RGB", (200, 160), "white")
    ImageDraw.Draw(image).ellipse([40, 30, 160, 130], outline="black", width=4)
    return image


def test_caption_from_hf_folder_is_text(blip_dir, sketch):
    captioner = BlipCaptioner.from_pretrained(blip_dir)
    caption = captioner.caption(sketch)
    assert isinstance(caption, str) and caption
    assert captioner.caption(sketch) == caption  # greedy decoding is deterministic


def test_seed_file_replaces_the_weights(blip_dir, sketch, tmp_path):
    seed_file = write_seed_blip_file(tmp_path / "blip_sketch.pt", seed=7)
    stock = BlipCaptioner.from_pretrained(blip_dir)
    tuned = BlipCaptioner.from_pretrained(blip_dir, fine_tuned=seed_file)
    expected = torch.load(seed_file, weights_only=True)["model_state_dict"]
    for name, value in tuned.model.state_dict().items():
        if name in expected:
            assert torch.equal(value, expected[name]), name
    differs = any(not torch.equal(a, b) for a, b in
                  zip(stock.model.parameters(), tuned.model.parameters()))
    assert differs


def test_seed_file_with_dataparallel_prefix_loads(blip_dir, tmp_path):
    seed_file = write_seed_blip_file(tmp_path / "plain.pt", seed=3)
    state = torch.load(seed_file, weights_only=True)["model_state_dict"]
    torch.save({"model_state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "dp.pt")
    tuned = BlipCaptioner.from_pretrained(blip_dir, fine_tuned=tmp_path / "dp.pt")
    name, value = next(iter(state.items()))
    assert torch.equal(tuned.model.state_dict()[name], value)


@pytest.mark.parametrize("content", ["garbage", "not a dict", "foreign", "wrong shape"])
def test_foreign_seed_file_is_refused_in_one_line(blip_dir, tmp_path, content):
    path = tmp_path / "bad.pt"
    if content == "garbage":
        path.write_bytes(b"\x00not a torch file")
    elif content == "not a dict":
        torch.save([1, 2, 3], path)
    elif content == "foreign":
        torch.save({"model_state_dict": {"encoder.weight": torch.zeros(3, 3)}}, path)
    else:
        state = torch.load(write_seed_blip_file(tmp_path / "ok.pt"), weights_only=True)["model_state_dict"]
        key = next(k for k, v in state.items() if v.ndim == 2)
        state[key] = torch.zeros(state[key].shape[0] + 1, state[key].shape[1])
        torch.save({"model_state_dict": state}, path)
    with pytest.raises(CheckpointFormatError) as info:
        BlipCaptioner.from_pretrained(blip_dir, fine_tuned=path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


# -- the seed's file as transformers 4.4x trained it -------------------------------------------------
def _logits(model, pixel_values, input_ids):
    with torch.no_grad():
        return model(pixel_values=pixel_values, input_ids=input_ids).logits


def _inputs():
    generator = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 32, 32, generator=generator), torch.tensor([[5, 8, 9, 10, 3], [5, 11, 12, 13, 3]])


def test_an_untied_file_computes_exactly_what_its_weights_say(blip_dir, tmp_path):
    seed_file = write_seed_blip_file(tmp_path / "blip_fine_tuning.pth", seed=7, untied=True)
    state = load_seed_state_dict(seed_file)
    assert not torch.equal(state[OUTPUT_MATRIX], state[WORD_EMBEDDINGS])  # the case at hand
    # The reference: BLIP with the tie off, every weight loaded strictly, as 4.4x computed it.
    config = BlipConfig.from_pretrained(blip_dir)
    config.tie_word_embeddings = config.text_config.tie_word_embeddings = False
    reference = BlipForConditionalGeneration(config).eval()
    reference.load_state_dict(state, strict=True)
    assert torch.equal(reference.state_dict()[OUTPUT_MATRIX], state[OUTPUT_MATRIX])

    tuned = BlipCaptioner.from_pretrained(blip_dir, fine_tuned=seed_file).model
    ours = tuned.state_dict()
    assert torch.equal(ours[OUTPUT_MATRIX], state[OUTPUT_MATRIX])
    assert torch.equal(ours[WORD_EMBEDDINGS], state[WORD_EMBEDDINGS])
    pixels, ids = _inputs()
    assert torch.equal(_logits(tuned, pixels, ids), _logits(reference, pixels, ids))


def test_a_file_whose_matrices_are_one_keeps_the_tie(blip_dir, tmp_path):
    seed_file = write_seed_blip_file(tmp_path / "tied.pt", seed=4, untied=False)
    model = BlipCaptioner.from_pretrained(blip_dir, fine_tuned=seed_file).model
    decoder = model.text_decoder
    assert decoder.cls.predictions.decoder.weight is decoder.bert.embeddings.word_embeddings.weight
    reference = BlipForConditionalGeneration(BlipConfig.from_pretrained(blip_dir)).eval()
    reference.load_state_dict(load_seed_state_dict(seed_file), strict=True)
    pixels, ids = _inputs()
    assert torch.equal(_logits(model, pixels, ids), _logits(reference, pixels, ids))


@pytest.mark.parametrize("name", ["blip_fine_tuning.pth", "blip_sketch.pt"])
def test_the_seeds_file_is_found_under_either_name(tmp_path, name):
    checkpoints = tmp_path / "ckpt"
    assert layout.fine_tuned_captioner(checkpoints) is None
    write_seed_blip_file(checkpoints / name)
    assert layout.fine_tuned_captioner(checkpoints) == checkpoints / name


def test_numpy_scalars_beside_the_weights_load(blip_dir, tmp_path):
    seed_file = write_seed_blip_file(tmp_path / "blip_fine_tuning.pth", numpy_loss=True)
    with pytest.raises(pickle.UnpicklingError):  # what torch's safe loader alone says
        torch.load(seed_file, weights_only=True)
    state = load_seed_state_dict(seed_file)
    assert torch.equal(BlipCaptioner.from_pretrained(blip_dir, fine_tuned=seed_file).model.state_dict()[
        OUTPUT_MATRIX], state[OUTPUT_MATRIX])


class _RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("extra", ["code", "array", "path"])
def test_pickled_code_and_other_objects_are_still_refused(blip_dir, tmp_path, extra):
    marker = tmp_path / "ran"
    state = load_seed_state_dict(write_seed_blip_file(tmp_path / "ok.pt"))
    value = {"code": _RunsCode(marker), "array": np.zeros(3), "path": Path("x")}[extra]
    path = tmp_path / "blip_fine_tuning.pth"
    torch.save({"model_state_dict": state, "loss": np.float64(0.1), "extra": value}, path)
    with pytest.raises(CheckpointFormatError, match="not a readable torch checkpoint") as info:
        BlipCaptioner.from_pretrained(blip_dir, fine_tuned=path)
    assert "\n" not in str(info.value) and not marker.exists()
