"""pix2pix-turbo's LoRA file: key names of every peft version, round trips, what the authors'
loader accepts (missing weights keep their initial values), train_pix2pix_turbo.py's files,
foreign files refused."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from transformers import CLIPTextModel, CLIPTokenizer

from generation.lora_file import canonical_key, load_lora_file, save_lora_file
from generation.pix2pix_turbo import Pix2PixTurbo
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError
from tools.fixtures.tiny_models.sd_turbo import (
    build_authors_model,
    tiny_vae,
    write_tiny_lora_file,
    write_tiny_sd_turbo,
    write_tiny_training_file,
)

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


def _loaded_with_warning(tiny, path: Path, caplog, **kwargs) -> tuple[Pix2PixTurbo, str]:
    """The model, and the one warning that names the weights the file lacks."""
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="generation.pix2pix_turbo"):
        model = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], path, **kwargs)
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING
                and r.name == "generation.pix2pix_turbo"]
    assert len(warnings) == 1 and "\n" not in warnings[0] and str(path) in warnings[0], warnings
    return model, warnings[0]


def test_a_missing_lora_weight_keeps_its_initial_value_and_is_named(tiny, caplog):
    key = "down_blocks.1.attentions.0.proj_in.lora_B.default.weight"
    path = _edited(tiny, "incomplete.pkl", lambda d: d["state_dict_unet"].pop(key))
    model, warning = _loaded_with_warning(tiny, path, caplog)
    assert "lacks 1 weights" in warning and "unet.down_blocks.1.attentions.0.proj_in.lora_B.weight" in warning
    layer = model.unet.down_blocks[1].attentions[0].proj_in
    assert torch.count_nonzero(layer.lora_B["default"].weight) == 0  # peft's initial B: the adapter adds nothing


def test_a_missing_skip_conv_keeps_the_authors_initial_value(tiny, caplog):
    path = _edited(tiny, "no-skip.pkl", lambda d: d["state_dict_vae"].pop("decoder.skip_conv_3.base_layer.weight"))
    model, warning = _loaded_with_warning(tiny, path, caplog)
    assert "vae.decoder.skip_conv_3.weight" in warning
    weight = model.vae.decoder.skip_conv_3.get_base_layer().weight
    assert torch.equal(weight, torch.full_like(weight, 1e-5))


def _authors_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items()}


def test_the_authors_layout_without_the_twin_convs_pretrained_half(tiny, caplog):
    def drop(data):
        for key in ("conv_in.conv_in_pretrained.weight", "conv_in.conv_in_pretrained.bias"):
            del data["state_dict_unet"][key]
    path = _edited(tiny, "no-pretrained-half.pkl", drop)
    model, warning = _loaded_with_warning(tiny, path, caplog)
    assert "lacks 2 weights" in warning and "unet.conv_in.conv_in_pretrained.weight" in warning
    # The authors' loader on the same file: their model's initial values where the file is silent.
    theirs_unet, theirs_vae = build_authors_model(tiny["sd_turbo"], torch.load(path))
    for ours, theirs in ((model.unet, theirs_unet), (model.vae, theirs_vae)):
        ours_state, theirs_state = ours.state_dict(), _authors_state(theirs)
        assert ours_state.keys() == theirs_state.keys()
        for key, value in theirs_state.items():
            if ".lora_A." in key:  # random in their build; every one is in the file and compared below
                continue
            assert torch.equal(ours_state[key], value), key
    file_unet = torch.load(path)["state_dict_unet"]
    ours_state = model.unet.state_dict()
    assert all(torch.equal(ours_state[k], v) for k, v in file_unet.items())
    stock = UNet2DConditionModel.from_pretrained(tiny["sd_turbo"], subfolder="unet").conv_in
    assert torch.equal(model.unet.conv_in.conv_in_pretrained.weight, stock.weight)
    assert not torch.equal(model.unet.conv_in.conv_in_curr.weight, stock.weight)


def test_without_any_lora_b_the_model_is_sd_turbo_with_the_files_skips(tiny, caplog):
    def drop(data):
        for part in ("state_dict_unet", "state_dict_vae"):
            data[part] = {k: v for k, v in data[part].items() if ".lora_B." not in k}
    path = _edited(tiny, "no-lora-b.pkl", drop)
    gamma = 0.4
    merged, warning = _loaded_with_warning(tiny, path, caplog, gamma=gamma)
    assert "lora_B" in warning
    stock_unet = UNet2DConditionModel.from_pretrained(tiny["sd_turbo"], subfolder="unet").state_dict()
    stock_vae = AutoencoderKL.from_pretrained(tiny["sd_turbo"], subfolder="vae").state_dict()
    unet, vae = merged.unet.state_dict(), merged.vae.state_dict()
    # Merged adapters with B = 0 leave every layer exactly SD-Turbo's...
    assert unet.keys() == stock_unet.keys()
    assert all(torch.equal(unet[k], v) for k, v in stock_unet.items() if not k.startswith("conv_in.")), \
        [k for k, v in stock_unet.items() if not torch.equal(unet[k], v)][:3]
    assert set(vae) == set(stock_vae) | {f"decoder.skip_conv_{i}.weight" for i in range(1, 5)}
    assert all(torch.equal(vae[k], v) for k, v in stock_vae.items())
    # ... plus the file's skip convs and its twin conv folded at r.
    data = torch.load(path)
    for i in range(1, 5):
        assert torch.equal(vae[f"decoder.skip_conv_{i}.weight"],
                           data["state_dict_vae"][f"decoder.skip_conv_{i}.base_layer.weight"])
    twin = data["state_dict_unet"]
    folded = twin["conv_in.conv_in_pretrained.weight"] * (1 - gamma) + twin["conv_in.conv_in_curr.weight"] * gamma
    torch.testing.assert_close(unet["conv_in.weight"], folded, rtol=0, atol=1e-6)
    # The adapters kept apart (unmerged) draw the same image.
    separate = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], path)
    a = np.asarray(merged.generate(mask(), PROMPT, seed=1)).astype(int)
    b = np.asarray(separate.generate(mask(), PROMPT, gamma=gamma, seed=1)).astype(int)
    assert np.abs(a - b).max() <= 1


# -- train_pix2pix_turbo.py's files (--generator) -------------------------------------------------------
def _authors_encoder_forward(self, sample):
    sample = self.conv_in(sample)
    blocks = []
    for down_block in self.down_blocks:
        blocks.append(sample)
        sample = down_block(sample)
    self.current_down_blocks = blocks
    return self.conv_out(self.conv_act(self.conv_norm_out(self.mid_block(sample))))


def _authors_decoder_forward(self, sample, latent_embeds=None):
    sample = self.mid_block(self.conv_in(sample), latent_embeds)
    skip_convs = [self.skip_conv_1, self.skip_conv_2, self.skip_conv_3, self.skip_conv_4]
    for idx, up_block in enumerate(self.up_blocks):
        sample = up_block(sample + skip_convs[idx](self.incoming_skip_acts[::-1][idx] * self.gamma), latent_embeds)
    return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


@torch.no_grad()
def authors_deterministic(sd_turbo: Path, path: Path, sketch: np.ndarray, prompt: str, seed: int) -> np.ndarray:
    """Their `pretrained_path` model and `forward(deterministic=True)`, with our draws' order
    (the noise first, unused, then the VAE's sample)."""
    unet, vae = build_authors_model(sd_turbo, torch.load(path), twin=False)
    vae.encoder.forward = _authors_encoder_forward.__get__(vae.encoder)
    vae.decoder.forward = _authors_decoder_forward.__get__(vae.decoder)
    vae.decoder.gamma = 1
    tokenizer = CLIPTokenizer.from_pretrained(sd_turbo, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(sd_turbo, subfolder="text_encoder").eval()
    sched = DDPMScheduler.from_pretrained(sd_turbo, subfolder="scheduler")
    sched.set_timesteps(1)
    timesteps = torch.tensor([999]).long()
    c_t = torch.from_numpy(sketch).float()[None, None].repeat(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    torch.randn((1, 4, sketch.shape[0] // 8, sketch.shape[1] // 8), generator=generator)
    tokens = tokenizer(prompt, max_length=tokenizer.model_max_length, padding="max_length",
                       truncation=True, return_tensors="pt").input_ids
    caption_enc = text_encoder(tokens)[0]
    encoded = vae.encode(c_t).latent_dist.sample(generator=generator) * vae.config.scaling_factor
    model_pred = unet(encoded, timesteps, encoder_hidden_states=caption_enc).sample
    x_denoised = sched.step(model_pred, timesteps, encoded, return_dict=True).prev_sample
    vae.decoder.incoming_skip_acts = vae.encoder.current_down_blocks
    image = vae.decode(x_denoised / vae.config.scaling_factor).sample.clamp(-1, 1)
    return (image[0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).mul(255).round().byte().numpy()


def test_a_training_script_file_runs_as_the_authors_deterministic_pass(tiny, caplog):
    path = write_tiny_training_file(tiny["root"] / "model_1001.pkl", tiny["sd_turbo"], seed=4)
    assert "conv_in.weight" in torch.load(path)["state_dict_unet"]
    assert load_lora_file(path).deterministic and not load_lora_file(tiny["peft_new"]).deterministic
    theirs = authors_deterministic(tiny["sd_turbo"], path, mask(), PROMPT, seed=2).astype(int)
    assert theirs.std() > 5
    separate = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], path)
    merged = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], path, gamma=0.4)  # r has no meaning here
    assert separate.deterministic and isinstance(separate.unet.conv_in, torch.nn.Conv2d)
    for model in (separate, merged):
        ours = np.asarray(model.generate(mask(), PROMPT, gamma=0.4, seed=2)).astype(int)
        assert model.gamma == 1.0
        assert np.abs(ours - theirs).max() <= 1


def test_generator_flag_names_a_training_file(tiny, tmp_path):
    from sketch_search.app.model_plan import plan_models
    from sketch_search.app.settings import Settings
    from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    own = write_tiny_training_file(tmp_path / "mine.pkl", checkpoints / "sd-turbo")
    plan = plan_models(Settings(checkpoints=checkpoints, generator=str(own)), stages=("generator",))
    assert plan.lora == own
    with pytest.raises(MissingCheckpointError, match="--generator") as info:
        plan_models(Settings(checkpoints=checkpoints, generator=str(tmp_path / "absent.pkl")),
                    stages=("generator",))
    assert "\n" not in str(info.value)


def test_a_foreign_file_is_refused_in_one_line(tiny):
    def kohya(data):  # another LoRA format's names in the authors' dict
        data["state_dict_unet"] = {"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight": torch.zeros(8, 16)}
    _refused(tiny, _edited(tiny, "kohya.pkl", kohya), "fit no layer", "another model")


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
