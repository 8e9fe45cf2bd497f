"""A tiny random SD-Turbo of the real classes, in the hub's on-disk layout, and a LoRA file for it.

`write_tiny_sd_turbo` writes a diffusers folder like stabilityai/sd-turbo's: model_index.json,
text_encoder/ (CLIPTextModel), tokenizer/ (CLIP BPE vocab.json + merges.txt, as on the hub),
unet/ (UNet2DConditionModel with cross-attention and linear projections, as SD 2.1),
vae/ (AutoencoderKL with 4 blocks) and scheduler/ (SD-Turbo's scheduler config).

`write_tiny_lora_file` builds the stochastic sketch model the way the authors' code does
(GaParmar/img2img-turbo src/pix2pix_turbo.py: skip convs and the twin conv, then peft
adapters with their target lists and peft's default alpha), gives every added weight random
non-zero values and saves the authors' dict, with current or old peft key names. This is
written independently of generation/ so that tests compare two separate readings of the format.
"""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import torch
from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
from peft import LoraConfig
from transformers import CLIPTextConfig, CLIPTextModel

# The authors' lists (their "random weights" branch) and ranks.
UNET_TARGETS = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_shortcut", "conv_out",
                "proj_in", "proj_out", "ff.net.2", "ff.net.0.proj"]
VAE_TARGETS = ["conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out",
               "skip_conv_1", "skip_conv_2", "skip_conv_3", "skip_conv_4", "to_k", "to_q", "to_v", "to_out.0"]
RANK_UNET = 8
RANK_VAE = 4
NAMINGS = ("peft_new", "peft_old", "peft_prefixed")

# Words whose BPE merges the tokenizer knows; other text falls back to single bytes.
WORDS = "a photo of cat dog house tree car bird flower sketch drawing realistic detailed".split()
PAD_TOKEN = "!"  # SD 2.x / SD-Turbo pad with "!" (id 0), as OpenCLIP does

# stabilityai/sd-turbo's scheduler_config.json: an EulerDiscreteScheduler config that also carries
# the fields DDPM reads (clip_sample false: pix2pix-turbo's one-step DDPM must not clamp x0).
SD_TURBO_SCHEDULER = dict(num_train_timesteps=1000, beta_start=0.00085, beta_end=0.012,
                          beta_schedule="scaled_linear", prediction_type="epsilon",
                          interpolation_type="linear", timestep_spacing="trailing", steps_offset=1,
                          use_karras_sigmas=False)
SD_TURBO_SCHEDULER_EXTRA = dict(clip_sample=False, set_alpha_to_one=False, skip_prk_steps=True,
                                sample_max_value=1.0)
MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.24.0.dev0",
    "feature_extractor": [None, None],
    "image_encoder": [None, None],
    "requires_safety_checker": False,
    "safety_checker": [None, None],
    "scheduler": ["diffusers", "EulerDiscreteScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "CLIPTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
}


def _bytes_to_unicode() -> list[str]:
    """GPT-2/CLIP's printable stand-in for each of the 256 byte values, in vocabulary order."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    codes, extra = printable[:], 0
    for byte in range(256):
        if byte not in printable:
            codes.append(256 + extra)
            extra += 1
    return [chr(c) for c in codes]


def write_clip_tokenizer(folder: Path) -> int:
    """CLIP's BPE files as the hub has them; returns the vocabulary size."""
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    merges: list[str] = []
    for word in WORDS:
        tokens = list(word[:-1]) + [word[-1] + "</w>"]
        while len(tokens) > 1:  # merge left to right: every intermediate is in the vocabulary
            merge, merged = f"{tokens[0]} {tokens[1]}", tokens[0] + tokens[1]
            if merge not in merges:
                merges.append(merge)
            if merged not in vocab:
                vocab.append(merged)
            tokens = [merged] + tokens[2:]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>", "unk_token": "<|endoftext|>",
               "pad_token": PAD_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
              "add_prefix_space": False, "errors": "replace", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)


def tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=64, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(16, 32), down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32,
        attention_head_dim=(2, 4), norm_num_groups=8, use_linear_projection=True,
        flip_sin_to_cos=True, freq_shift=0)


def tiny_vae() -> AutoencoderKL:
    # Four blocks shaped as SD's (128, 256, 512, 512): the skip convs need four down-block
    # activations, and unequal widths check their channel counts. Narrow: the top block runs at 512 px.
    return AutoencoderKL(
        in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(4, 8, 16, 16),
        layers_per_block=1, latent_channels=4, norm_num_groups=4, sample_size=512,
        scaling_factor=0.18215)


def tiny_text_encoder(vocab_size: int, eos_token_id: int) -> CLIPTextModel:
    config = CLIPTextConfig(vocab_size=vocab_size, hidden_size=32, intermediate_size=64,
                            num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=77,
                            hidden_act="gelu", projection_dim=32, pad_token_id=0,
                            bos_token_id=eos_token_id - 1, eos_token_id=eos_token_id)
    return CLIPTextModel(config)


def write_tiny_sd_turbo(out_dir: Path, seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    vocab_size = write_clip_tokenizer(out_dir / "tokenizer")
    torch.manual_seed(seed)
    tiny_text_encoder(vocab_size, eos_token_id=vocab_size - 1).save_pretrained(out_dir / "text_encoder")
    tiny_unet().save_pretrained(out_dir / "unet")
    tiny_vae().save_pretrained(out_dir / "vae")
    EulerDiscreteScheduler(**SD_TURBO_SCHEDULER).save_pretrained(out_dir / "scheduler")
    config_file = out_dir / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(dict(sorted({**config, **SD_TURBO_SCHEDULER_EXTRA}.items())), indent=2))
    (out_dir / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    return out_dir


class AuthorsTwinConv(torch.nn.Module):
    """The authors' TwinConv: same submodule names, r set before each UNet call."""

    def __init__(self, convin_pretrained: torch.nn.Module, convin_curr: torch.nn.Module):
        super().__init__()
        self.conv_in_pretrained = copy.deepcopy(convin_pretrained)
        self.conv_in_curr = copy.deepcopy(convin_curr)
        self.r = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_in_pretrained(x).detach() * (1 - self.r) + self.conv_in_curr(x) * self.r


def _skip_channels(vae: AutoencoderKL) -> list[tuple[int, int]]:
    """(in, out) of skip_conv_1..4 read off the VAE's own layers."""
    encoder, decoder = vae.encoder, vae.decoder
    down_inputs = [encoder.conv_in.out_channels] + [b.resnets[-1].conv2.out_channels
                                                   for b in encoder.down_blocks[:-1]]
    up_inputs = [b.resnets[0].conv1.in_channels for b in decoder.up_blocks]
    return list(zip(down_inputs[::-1], up_inputs))


def build_authors_model(sd_turbo_dir: Path, lora_state: dict | None = None,
                        targets: tuple[list[str], list[str]] = (UNET_TARGETS, VAE_TARGETS),
                        ranks: tuple[int, int] = (RANK_UNET, RANK_VAE)) -> tuple[UNet2DConditionModel, AutoencoderKL]:
    """UNet and VAE as the authors build the stochastic sketch model, their file loaded their way."""
    unet = UNet2DConditionModel.from_pretrained(sd_turbo_dir, subfolder="unet")
    vae = AutoencoderKL.from_pretrained(sd_turbo_dir, subfolder="vae")
    for index, (c_in, c_out) in enumerate(_skip_channels(vae), start=1):
        setattr(vae.decoder, f"skip_conv_{index}", torch.nn.Conv2d(c_in, c_out, kernel_size=(1, 1), bias=False))
    unet.conv_in = AuthorsTwinConv(copy.deepcopy(unet.conv_in), unet.conv_in)
    if lora_state is not None:
        targets = (lora_state["unet_lora_target_modules"], lora_state["vae_lora_target_modules"])
        ranks = (lora_state["rank_unet"], lora_state["rank_vae"])
    vae.add_adapter(LoraConfig(r=ranks[1], init_lora_weights="gaussian", target_modules=targets[1]),
                    adapter_name="vae_skip")
    unet.add_adapter(LoraConfig(r=ranks[0], init_lora_weights="gaussian", target_modules=targets[0]))
    if lora_state is not None:
        for model, part in ((vae, "state_dict_vae"), (unet, "state_dict_unet")):
            state = model.state_dict()
            state.update(lora_state[part])
            model.load_state_dict(state)
    return unet.eval(), vae.eval()


def _old_peft_name(key: str) -> str:
    """peft < 0.7 names: no ".base_layer", no adapter name after lora_A / lora_B."""
    key = key.replace(".base_layer.", ".")
    return re.sub(r"\.(lora_A|lora_B)\.[^.]+\.(weight|bias)$", r".\1.\2", key)


def _rename(state: dict[str, torch.Tensor], naming: str) -> dict[str, torch.Tensor]:
    if naming == "peft_new":
        return state
    if naming == "peft_old":
        return {_old_peft_name(k): v for k, v in state.items()}
    if naming == "peft_prefixed":
        return {f"base_model.model.{k}": v for k, v in state.items()}
    raise ValueError(f"naming must be one of {NAMINGS}, got {naming!r}")


def write_tiny_lora_file(path: Path, sd_turbo_dir: Path, naming: str = "peft_new", seed: int = 0) -> Path:
    """The authors' LoRA file for the tiny SD-Turbo, with random non-zero added weights."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    unet, vae = build_authors_model(Path(sd_turbo_dir))
    generator = torch.Generator().manual_seed(seed)
    state_unet = {k: v for k, v in unet.state_dict().items() if "lora" in k or "conv_in" in k}
    state_vae = {k: v for k, v in vae.state_dict().items() if "lora" in k or "skip" in k}
    for twin_keys, state in ((True, state_unet), (False, state_vae)):
        for key, value in state.items():
            # lora_B starts at zero and the twin copies start equal: make every added weight count,
            # and depend on `seed` alone (peft's initial values come from the global generator).
            noise = torch.randn(value.shape, generator=generator) * 0.2
            state[key] = (value + noise) if twin_keys and key.startswith("conv_in.") else noise
    torch.save({
        "rank_unet": RANK_UNET, "unet_lora_target_modules": UNET_TARGETS,
        "rank_vae": RANK_VAE, "vae_lora_target_modules": VAE_TARGETS,
        "state_dict_unet": _rename(state_unet, naming), "state_dict_vae": _rename(state_vae, naming),
    }, path)
    return path
