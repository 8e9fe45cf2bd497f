"""The generator's speed-ups keep its output: merged adapters, folded twin conv, a separate VAE
dtype, channels-last, and the pipeline's choice of precision per device.

Tiny random SD-Turbo of the real classes (tools/fixtures/tiny_models/sd_turbo.py), loaded through the
product's loading code; the unmerged float32 model is the reference (it matches the authors'
forward pass, see test_pix2pix_turbo.py).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from peft.tuners.tuners_utils import BaseTunerLayer

from generation.pix2pix_turbo import Pix2PixTurbo, TwinConv
from sketch_search.app import precision
from sketch_search.app.precision import ModelPrecision, model_precision
from tools.fixtures.tiny_models.sd_turbo import write_tiny_lora_file, write_tiny_sd_turbo

PROMPT = "a photo of a cat"


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("speedups")
    sd_turbo = write_tiny_sd_turbo(root / "sd-turbo")
    return {"sd_turbo": sd_turbo, "lora": write_tiny_lora_file(root / "lora.pkl", sd_turbo)}


@pytest.fixture(scope="module")
def reference(tiny) -> Pix2PixTurbo:
    return Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"])


@pytest.fixture(scope="module")
def merged(tiny) -> Pix2PixTurbo:
    return Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"], gamma=0.4)


def sketch_mask(size: int = 128) -> np.ndarray:
    mask = np.zeros((size, size), dtype=bool)
    mask[size // 5: size * 4 // 5, size // 2 - 2: size // 2 + 2] = True
    yy, xx = np.mgrid[:size, :size]
    return mask | (np.abs(np.hypot(yy - size / 2, xx - size / 2) - size / 3) < 2)


def pixels(image) -> np.ndarray:
    return np.asarray(image).astype(np.int16)


def test_merged_model_has_no_adapter_layers_left(merged):
    assert not any(isinstance(m, BaseTunerLayer) for m in merged.modules())
    assert type(merged.unet.conv_in) is torch.nn.Conv2d and merged.merged and merged.gamma == 0.4


@pytest.mark.parametrize("gamma", [0.4, 0.8])
def test_merged_model_gives_the_unmerged_pixels(reference, merged, gamma):
    mask = sketch_mask()
    ours = pixels(merged.generate(mask, PROMPT, gamma=gamma, seed=2))
    unmerged = pixels(reference.generate(mask, PROMPT, gamma=gamma, seed=2))
    assert np.abs(ours - unmerged).max() <= 1
    assert ours.std() > 5


def test_another_gamma_re_merges_from_the_files_deterministically(tiny, merged):
    mask = sketch_mask()
    first = pixels(merged.generate(mask, PROMPT, gamma=0.4, seed=1))
    other = pixels(merged.generate(mask, PROMPT, gamma=0.9, seed=1))
    again = pixels(merged.generate(mask, PROMPT, gamma=0.4, seed=1))
    assert np.array_equal(first, again)  # no rounding left behind by the detour through 0.9
    assert np.abs(first - other).mean() > 1
    fresh = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"], gamma=0.9)
    assert np.array_equal(pixels(fresh.generate(mask, PROMPT, gamma=0.9, seed=1)), other)


def test_folded_twin_conv_equals_the_blend():
    torch.manual_seed(0)
    pretrained, current = torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.Conv2d(4, 8, 3, padding=1)
    twin = TwinConv(pretrained, current)
    twin.r = 0.3
    x = torch.randn(2, 4, 16, 16)
    assert torch.allclose(twin.folded(0.3)(x), twin(x), atol=1e-5)
    assert not torch.allclose(twin.folded(0.7)(x), twin(x), atol=1e-3)


def test_float32_vae_under_a_float16_model(tiny, reference):
    mixed = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"], dtype=torch.float16, gamma=0.4,
                                         vae_dtype=torch.float32)
    assert {p.dtype for p in mixed.vae.parameters()} == {torch.float32}
    assert {p.dtype for p in mixed.unet.parameters()} == {torch.float16}
    mask = sketch_mask()
    ours = pixels(mixed.generate(mask, PROMPT, gamma=0.4, seed=0)).astype(np.float32)
    full = pixels(reference.generate(mask, PROMPT, gamma=0.4, seed=0)).astype(np.float32)
    assert np.abs(ours - full).mean() < 2
    assert np.corrcoef(ours.ravel(), full.ravel())[0, 1] > 0.99


def test_channels_last_bfloat16_stays_close_and_deterministic(tiny, reference):
    fast = Pix2PixTurbo.from_pretrained(tiny["sd_turbo"], tiny["lora"], dtype=torch.bfloat16, gamma=0.4,
                                        channels_last=True)
    conv = next(m for m in fast.unet.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    mask = sketch_mask()
    ours = pixels(fast.generate(mask, PROMPT, gamma=0.4, seed=0))
    assert np.array_equal(ours, pixels(fast.generate(mask, PROMPT, gamma=0.4, seed=0)))
    full = pixels(reference.generate(mask, PROMPT, gamma=0.4, seed=0)).astype(np.float32)
    assert np.abs(ours - full).mean() < 2
    assert np.corrcoef(ours.ravel().astype(np.float32), full.ravel())[0, 1] > 0.99


def test_model_precision_per_device(monkeypatch):
    f32, f16, bf16 = torch.float32, torch.float16, torch.bfloat16
    cuda = model_precision(torch.device("cuda"))
    assert cuda == ModelPrecision(f16, f16, f32, f16, channels_last=False)  # the VAE never in float16
    assert model_precision(torch.device("cuda"), "float32") == ModelPrecision(f32, f32, f32, f32, False)
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: True)
    assert model_precision(torch.device("cpu")) == ModelPrecision(f32, bf16, bf16, bf16, channels_last=True)
    assert model_precision(torch.device("cpu"), "float32") == ModelPrecision(f32, f32, f32, f32, False)
    monkeypatch.setattr(precision, "cpu_has_native_bfloat16", lambda: False)
    assert model_precision(torch.device("cpu")) == ModelPrecision(f32, f32, f32, f32, False)
    assert model_precision(torch.device("mps")).generator == f32
    assert precision.placement("cpu").dtypes == model_precision(torch.device("cpu"))


def test_warmup_runs_every_stage_and_changes_no_answer(tmp_path):
    from PIL import Image, ImageDraw

    from sketch_search.app.settings import Settings
    from sketch_search.app.sketch_search import SketchSearch
    from tools.fixtures.tiny_checkpoints import write_tiny_checkpoints
    checkpoints = write_tiny_checkpoints(tmp_path / "ckpt")
    gallery = tmp_path / "gallery"
    gallery.mkdir()
    for i, colour in enumerate(["red", "green", "blue"]):
        Image.new("RGB", (90, 60 + 10 * i), colour).save(gallery / f"{colour}.png")
    sketch = Image.new("RGB", (200, 200), "white")
    ImageDraw.Draw(sketch).line([(20, 30), (180, 170)], fill="black", width=5)
    answers = []
    for warm in (False, True):
        search = SketchSearch(Settings(checkpoints=checkpoints, show_progress=False,
                                       index_path=tmp_path / f"index-{warm}.sqlite"))
        if warm:
            stages = []
            timings = search.warmup(status=stages.append)
            assert set(timings) == {"captioning", "generating", "searching"} and "warming up" in stages
        search.index_gallery(gallery)
        result = search.query(sketch)
        answers.append((result.caption, result.generated.tobytes(), result.results))
    assert answers[0] == answers[1]
