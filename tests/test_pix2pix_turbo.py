"""pix2pix-turbo generation on a tiny random SD-Turbo saved in the hub's layout.

The reference is the authors' forward pass (GaParmar/img2img-turbo: patched VAE encoder and
decoder forwards, diffusers' set_adapters, a one-step DDPMScheduler.step), run on a model built
their way by tools/fixtures/tiny_models/sd_turbo.py: our implementation must give the same pixels.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler
from diffusers.utils.peft_utils import set_weights_and_activate_adapters
from transformers import CLIPTextModel, CLIPTokenizer

from generation.pix2pix_turbo import Pix2PixTurbo
from sketch_search.common.errors import MissingCheckpointError
from tools.fixtures.tiny_models.sd_turbo import build_authors_model, write_tiny_lora_file, write_tiny_sd_turbo

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("p2p")
    sd_turbo = write_tiny_sd_turbo(root / "sd-turbo")
    return {"root": root, "sd_turbo": sd_turbo, "lora": write_tiny_lora_file(root / "lora.pkl", sd_turbo)}


@pytest.fixture(scope="module")
def model(tiny) -> Pix2PixTurbo:
    return Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"])


def sketch_mask(size: int = 128) -> np.ndarray:
    """A cross in a ring; small sizes keep the tests quick, the product's 512 px is checked too."""
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 5: size * 4 // 5, size // 2 - 2: size // 2 + 2] = True
    mask[size // 2 - 2: size // 2 + 2, size // 8: size * 7 // 8] = True
    yy, xx = np.mgrid[:size, :size]
    ring = np.abs(np.hypot(yy - size / 2, xx - size / 2) - size / 3) < 2
    return mask | ring


# -- the authors' forward pass, for reference ------------------------------------------------------
def _authors_encoder_forward(self, sample):
    sample = self.conv_in(sample)
    blocks = []
    for down_block in self.down_blocks:
        blocks.append(sample)
        sample = down_block(sample)
    sample = self.mid_block(sample)
    sample = self.conv_out(self.conv_act(self.conv_norm_out(sample)))
    self.current_down_blocks = blocks
    return sample


def _authors_decoder_forward(self, sample, latent_embeds=None):
    sample = self.mid_block(self.conv_in(sample), latent_embeds)
    skip_convs = [self.skip_conv_1, self.skip_conv_2, self.skip_conv_3, self.skip_conv_4]
    for idx, up_block in enumerate(self.up_blocks):
        sample = sample + skip_convs[idx](self.incoming_skip_acts[::-1][idx] * self.gamma)
        sample = up_block(sample, latent_embeds)
    return self.conv_out(self.conv_act(self.conv_norm_out(sample)))


@torch.no_grad()
def authors_generate(sd_turbo: Path, lora: Path, mask: np.ndarray, prompt: str, r: float, seed: int) -> np.ndarray:
    unet, vae = build_authors_model(sd_turbo, torch.load(lora, map_location="cpu"))
    vae.encoder.forward = _authors_encoder_forward.__get__(vae.encoder)
    vae.decoder.forward = _authors_decoder_forward.__get__(vae.decoder)
    tokenizer = CLIPTokenizer.from_pretrained(sd_turbo, subfolder="tokenizer")
    text_encoder = CLIPTextModel.from_pretrained(sd_turbo, subfolder="text_encoder").eval()
    sched = DDPMScheduler.from_pretrained(sd_turbo, subfolder="scheduler")
    sched.set_timesteps(1)
    timesteps = torch.tensor([999]).long()

    c_t = torch.from_numpy(mask).float()[None, None].repeat(1, 3, 1, 1)
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn((1, 4, mask.shape[0] // 8, mask.shape[1] // 8), generator=generator)
    tokens = tokenizer(prompt, max_length=tokenizer.model_max_length, padding="max_length",
                       truncation=True, return_tensors="pt").input_ids
    caption_enc = text_encoder(tokens)[0]
    unet.set_adapters(["default"], weights=[r])
    set_weights_and_activate_adapters(vae, ["vae_skip"], [r])
    encoded = vae.encode(c_t).latent_dist.sample(generator=generator) * vae.config.scaling_factor
    unet_input = encoded * r + noise * (1 - r)
    unet.conv_in.r = r
    unet_output = unet(unet_input, timesteps, encoder_hidden_states=caption_enc).sample
    x_denoised = sched.step(unet_output, timesteps, unet_input, return_dict=True,
                            generator=torch.Generator().manual_seed(1)).prev_sample
    vae.decoder.incoming_skip_acts = vae.encoder.current_down_blocks
    vae.decoder.gamma = r
    image = vae.decode(x_denoised / vae.config.scaling_factor).sample.clamp(-1, 1)
    return (image[0].permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1).mul(255).round().byte().numpy()


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


# -- tests -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def image_512(model):
    return model.generate(sketch_mask(512), PROMPT, gamma=0.4, seed=3)


def test_output_is_rgb_at_the_products_size(image_512):
    assert image_512.mode == "RGB" and image_512.size == (512, 512)


@pytest.mark.parametrize(("gamma", "size"), [(0.4, 512), (0.8, 128)])
def test_matches_the_authors_forward_pass(tiny, model, image_512, gamma, size):
    mask = sketch_mask(size)
    ours = pixels(image_512 if size == 512 else model.generate(mask, PROMPT, gamma=gamma, seed=3))
    theirs = authors_generate(tiny["sd_turbo"], tiny["lora"], mask, PROMPT, gamma, seed=3).astype(np.int16)
    assert np.abs(ours - theirs).max() <= 1
    assert ours.std() > 5  # a real image, not a flat one that any pipeline would match


@pytest.mark.parametrize("change", [{"prediction_type": "v_prediction"}, {"clip_sample": True}],
                         ids=["v_prediction", "clip_sample"])
def test_other_scheduler_configs_match_the_authors_step(tiny, change):
    folder = tiny["root"] / ("sd-turbo-" + "-".join(change))
    shutil.copytree(tiny["sd_turbo"], folder)
    config_file = folder / "scheduler" / "scheduler_config.json"
    config_file.write_text(json.dumps({**json.loads(config_file.read_text()), **change}))
    changed = Pix2PixTurbo.from_pretrained(folder, tiny["lora"])
    mask = sketch_mask()
    ours = pixels(changed.generate(mask, PROMPT, gamma=0.5, seed=0))
    theirs = authors_generate(folder, tiny["lora"], mask, PROMPT, 0.5, seed=0).astype(np.int16)
    assert np.abs(ours - theirs).max() <= 1


def test_output_takes_the_sketch_size(model):
    assert model.generate(sketch_mask(64), PROMPT).size == (64, 64)


def test_same_seed_same_pixels_other_seed_other_pixels(model):
    mask = sketch_mask()
    first = pixels(model.generate(mask, PROMPT, gamma=0.4, seed=7))
    again = pixels(model.generate(mask, PROMPT, gamma=0.4, seed=7))
    other = pixels(model.generate(mask, PROMPT, gamma=0.4, seed=8))
    assert np.array_equal(first, again)
    assert np.abs(first - other).mean() > 1


def test_gamma_changes_the_image_and_is_set_per_call(model):
    mask = sketch_mask()
    low = pixels(model.generate(mask, PROMPT, gamma=0.2, seed=0))
    high = pixels(model.generate(mask, PROMPT, gamma=0.9, seed=0))
    low_again = pixels(model.generate(mask, PROMPT, gamma=0.2, seed=0))
    assert np.abs(low - high).mean() > 1
    assert np.array_equal(low, low_again)


def test_gamma_outside_unit_interval_is_refused(model):
    with pytest.raises(ValueError, match="between 0 and 1"):
        model.generate(sketch_mask(), PROMPT, gamma=1.5)


def test_the_sketch_drives_the_image(model):
    bar = np.zeros((128, 128), dtype=bool)
    bar[60:68, 25:100] = True
    a = pixels(model.generate(sketch_mask(), PROMPT, seed=0))
    b = pixels(model.generate(bar, PROMPT, gamma=0.4, seed=0))
    assert np.abs(a - b).mean() > 1


def test_prompt_embedding_is_cached_and_the_prompt_matters(model):
    first = model.encode_prompt("a photo of a dog")
    assert model.encode_prompt("a photo of a dog") is first
    cat = pixels(model.generate(sketch_mask(), "a photo of a cat", seed=0))
    house = pixels(model.generate(sketch_mask(), "a detailed house", seed=0))
    assert np.abs(cat - house).mean() > 0.5


def test_lora_weights_are_applied(tiny, model):
    data = torch.load(tiny["lora"], map_location="cpu")
    for part in ("state_dict_unet", "state_dict_vae"):
        data[part] = {k: torch.zeros_like(v) if "lora" in k else v for k, v in data[part].items()}
    zeroed = tiny["root"] / "lora-zeroed.pkl"
    torch.save(data, zeroed)
    without = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], zeroed)
    mask = sketch_mask()
    assert np.abs(pixels(model.generate(mask, PROMPT, gamma=0.4, seed=0))
                  - pixels(without.generate(mask, PROMPT, gamma=0.4, seed=0))).mean() > 1


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_reduced_precision_runs_and_stays_close_to_float32(tiny, model, dtype):
    # float16 is what the pipeline picks on CUDA; the CPU runs the same casts, only slower.
    low_precision = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"], dtype=dtype)
    assert {p.dtype for p in low_precision.parameters()} == {dtype}
    mask = sketch_mask()
    reference = pixels(model.generate(mask, PROMPT, gamma=0.4, seed=0)).astype(np.float32)
    reduced = pixels(low_precision.generate(mask, PROMPT, gamma=0.4, seed=0)).astype(np.float32)
    assert np.abs(reference - reduced).mean() < 2
    assert np.corrcoef(reference.ravel(), reduced.ravel())[0, 1] > 0.99


def test_mask_with_sides_not_multiple_of_8_is_refused(model):
    with pytest.raises(ValueError, match="divisible by 8"):
        model.generate(np.zeros((100, 100), dtype=bool), PROMPT)


def test_missing_model_folder_says_what_to_do(tmp_path, tiny):
    with pytest.raises(MissingCheckpointError, match="checkpoints.fetch"):
        Pix2PixTurbo.from_pretrained(tmp_path / "nothing-here", tiny["lora"])
