"""The captioner loads through the real BLIP code from an HF folder and from the seed's file."""
import pytest
import torch
from PIL import Image, ImageDraw

from captioning.blip import BlipCaptioner
from common.errors import CheckpointFormatError
from tools.fixtures.tiny_models.blip import write_seed_blip_file, write_tiny_blip


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
