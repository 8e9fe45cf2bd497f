"""pix2pix-turbo's stochastic sketch model (arXiv:2403.12036): sketch + prompt -> image, one step.

Built on SD-Turbo's own classes: the VAE encoder hands its down-block inputs to the decoder
through four added 1x1 "skip" convs, the UNet runs once at the last training timestep with the
prompt's CLIP embedding, and the x0 prediction is decoded. A value r (gamma) in [0, 1] mixes
noise into the latent, scales both LoRA adapters, blends the UNet's first conv between its
pretrained and fine-tuned copies, and scales the skip activations: low r lets the model invent,
high r follows the strokes.

Speed (measured in BENCHMARKS.md): loaded with a `gamma`, the adapters are merged into the weights
and the twin conv folded into one conv, at full precision before any cast, so a query pays nothing
for them; a query with another r rebuilds the merged layers from the files, so the weights for a
given r are always the same whatever ran before (deterministic). Without a `gamma` the adapters
stay separate and r can change per call at their cost. The VAE may keep its own dtype (float32
under a float16 model: SD's VAE can overflow in float16), and the UNet and VAE may use
channels-last memory (faster convolutions on the CPU).
"""
from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from diffusers import AutoencoderKL, DDPMScheduler, UNet2DConditionModel
from diffusers.models.autoencoders.vae import DiagonalGaussianDistribution
from peft import LoraConfig
from peft.tuners.lora import LoraLayer
from peft.tuners.tuners_utils import BaseTunerLayer
from PIL import Image
from transformers import CLIPTextModel, CLIPTokenizer

from generation import DEFAULT_GAMMA
from generation.lora_file import LoraFile, canonical_key, load_lora_file, map_state_dict, unet_file_key, vae_file_key
from sketch_search.common.cancel import CancelCheck, check, checked_modules
from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import MissingCheckpointError
from sketch_search.common.model_files import load_model_folder

log = logging.getLogger(__name__)

UNET_ADAPTER = "default"     # the authors' names: state dict keys carry them
VAE_ADAPTER = "vae_skip"
LORA_ALPHA = 8               # peft's default when the authors trained; scaling = alpha / rank
PROMPT_CACHE_SIZE = 16
SKIP_CONV_INIT = 1e-5        # the authors' initial value of the skip convs (their training start)
LORA_INIT_SEED = 0           # peft draws lora_A at random: the same draw every load
MISSING_NAMED = 8            # weights named in the missing-weights warning (then a count)

# The layers that check for cancellation before they run: every convolution, attention and
# feed-forward layer, so on SD's 512 px UNet and VAE the longest stretch without a check is one
# convolution (bench/bench_live.py --cancel-gaps; BENCHMARKS.md section 8).
CHECKED_BLOCKS = ("Conv2d", "Attention", "FeedForward", "Downsample2D", "Upsample2D")


def checked_blocks(*models: torch.nn.Module) -> list[torch.nn.Module]:
    """The models' layers named in CHECKED_BLOCKS (by class name: torch's and diffusers' own)."""
    return [module for model in models for module in model.modules()
            if type(module).__name__ in CHECKED_BLOCKS]


class TwinConv(torch.nn.Module):
    """The UNet's first conv as a blend of its pretrained and fine-tuned copies."""

    def __init__(self, pretrained: torch.nn.Conv2d, current: torch.nn.Conv2d):
        super().__init__()
        self.conv_in_pretrained = copy.deepcopy(pretrained)
        self.conv_in_curr = copy.deepcopy(current)
        self.r = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_in_pretrained(x) * (1.0 - self.r) + self.conv_in_curr(x) * self.r

    def folded(self, r: float) -> torch.nn.Conv2d:
        """One conv equal to the blend at this r (convolution is linear in its weights)."""
        conv = copy.deepcopy(self.conv_in_curr)
        with torch.no_grad():
            conv.weight.copy_(self.conv_in_pretrained.weight * (1.0 - r) + self.conv_in_curr.weight * r)
            if conv.bias is not None:
                conv.bias.copy_(self.conv_in_pretrained.bias * (1.0 - r) + self.conv_in_curr.bias * r)
        return conv


def skip_conv_channels(vae_block_out_channels: list[int] | tuple[int, ...]) -> list[tuple[int, int]]:
    """(in, out) channels of skip_conv_1.. for a VAE with these block widths.

    Skip i carries the input of the encoder's down blocks taken in reverse order into the input
    of the decoder's up block i; for SD's (128, 256, 512, 512): 512->512, 256->512, 128->512, 128->256.
    """
    widths = list(vae_block_out_channels)
    down_inputs = [widths[0]] + widths[:-1]
    reversed_widths = widths[::-1]
    up_inputs = [reversed_widths[0]] + reversed_widths[:-1]
    return list(zip(down_inputs[::-1], up_inputs))


def add_sketch_layers(unet: UNet2DConditionModel, vae: AutoencoderKL, lora: LoraFile) -> None:
    """Give SD-Turbo the pix2pix-turbo model's extra layers, in the authors' order, with the
    authors' initial values: skip convs at 1e-5, lora_B at zero (so an adapter the file lacks adds
    nothing), the twin conv (stochastic files only) two copies of SD-Turbo's first conv.

    Skip convs and the twin conv come before the adapters: the VAE's target list names the skip
    convs, so peft wraps them too.
    """
    for index, (c_in, c_out) in enumerate(skip_conv_channels(vae.config.block_out_channels), start=1):
        conv = torch.nn.Conv2d(c_in, c_out, kernel_size=1, bias=False)
        torch.nn.init.constant_(conv.weight, SKIP_CONV_INIT)
        setattr(vae.decoder, f"skip_conv_{index}", conv)
    if not lora.deterministic:
        unet.conv_in = TwinConv(unet.conv_in, unet.conv_in)
    with torch.random.fork_rng(devices=[]):  # lora_A's draw: the same each load, the caller's RNG untouched
        torch.manual_seed(LORA_INIT_SEED)
        vae.add_adapter(LoraConfig(r=lora.rank_vae, lora_alpha=LORA_ALPHA, init_lora_weights="gaussian",
                                   target_modules=lora.vae_target_modules), adapter_name=VAE_ADAPTER)
        unet.add_adapter(LoraConfig(r=lora.rank_unet, lora_alpha=LORA_ALPHA, init_lora_weights="gaussian",
                                    target_modules=lora.unet_target_modules), adapter_name=UNET_ADAPTER)


def load_sketch_weights(unet: UNet2DConditionModel, vae: AutoencoderKL, lora: LoraFile) -> list[str]:
    """Copy the file's tensors over the models' initial values, as the authors' loader does.

    A weight the file lacks keeps its initial value; all of them are named in one warning, and
    returned (canonical names). A tensor that fits no weight refuses the file (CheckpointFormatError).
    """
    missing: list[str] = []
    for model, file_state, expected, part in ((unet, lora.state_dict_unet, unet_file_key, "state_dict_unet"),
                                              (vae, lora.state_dict_vae, vae_file_key, "state_dict_vae")):
        model_state = model.state_dict()
        mapped, lacking = map_state_dict(file_state, model_state, expected, lora.name, part)
        model_state.update(mapped)
        model.load_state_dict(model_state, strict=True)
        missing += [f"{'unet' if model is unet else 'vae'}.{canonical_key(k)}" for k in lacking]
    if missing:
        shown = ", ".join(missing[:MISSING_NAMED])
        more = f" and {len(missing) - MISSING_NAMED} more" if len(missing) > MISSING_NAMED else ""
        log.warning("%s lacks %d weights, which keep the authors' initial values (skip convs 1e-5, "
                    "LoRA B zero, the first conv SD-Turbo's): %s%s", lora.name, len(missing), shown, more)
        log.debug("%s: every weight it lacks: %s", lora.name, ", ".join(missing))
    return missing


def set_adapter_scale(model: torch.nn.Module, adapter: str, scale: float) -> None:
    """Scale one LoRA adapter in every layer it wraps (scaling = scale * alpha / rank)."""
    for module in model.modules():
        if isinstance(module, BaseTunerLayer):
            module.set_scale(adapter, scale)


def _merge_into_base(layer: LoraLayer, adapter: str, scale: float) -> torch.nn.Module:
    """The layer's base Linear/Conv2d with W += scale * alpha/rank * (B @ A), done in place.

    The same sum as peft's merge (a k x k lora_A followed by a 1 x 1 lora_B is one matrix product
    over the flattened kernels), without its full-size temporaries: about ten times faster on
    SD's UNet.
    """
    base = layer.get_base_layer()
    a, b = layer.lora_A[adapter].weight, layer.lora_B[adapter].weight
    plain = (isinstance(base, (torch.nn.Linear, torch.nn.Conv2d)) and not layer.use_dora.get(adapter)
             and not getattr(layer, "fan_in_fan_out", False) and not layer.lora_bias.get(adapter)
             and b.shape[2:].numel() == 1 and getattr(base, "groups", 1) == 1)
    if not plain:  # anything unusual: peft's own merge
        layer.set_scale(adapter, scale)
        layer.merge(adapter_names=[adapter])
        return base
    scaling = scale * layer.lora_alpha[adapter] / layer.r[adapter]
    weight = base.weight.data
    weight.view(weight.shape[0], -1).addmm_(b.reshape(b.shape[0], -1), a.reshape(a.shape[0], -1),
                                            alpha=scaling)
    return base


def merge_sketch_layers(unet: UNet2DConditionModel, vae: AutoencoderKL, gamma: float) -> None:
    """Fold the adapters (scaled by gamma) into their layers' weights, put the plain layers back in
    place of peft's wrappers, and fold the twin conv into one conv.

    Done once per gamma on freshly loaded float32 weights, so the merged weights are a function of
    the files and gamma alone.
    """
    for model, adapter in ((unet, UNET_ADAPTER), (vae, VAE_ADAPTER)):
        wrapped = [(name, module) for name, module in model.named_modules() if isinstance(module, LoraLayer)]
        for name, layer in wrapped:
            parent_name, _, child = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, child, _merge_into_base(layer, adapter, gamma))
    if isinstance(unet.conv_in, TwinConv):  # a deterministic model's first conv is a plain one
        unet.conv_in = unet.conv_in.folded(gamma)


# What each SD-Turbo subfolder's config must say it holds (transformers' model_type, diffusers' class).
_KINDS = {"text_encoder": ("clip_text_model", "CLIPTextModel"), "unet": ("UNet2DConditionModel",),
          "vae": ("AutoencoderKL",)}


def _load(component: type, source: str | Path, subfolder: str, **kwargs):
    if subfolder in _KINDS:  # weights: checked (another model, damaged file, layers left at random)
        return load_model_folder(component, source, f"SD-Turbo's {subfolder}", _KINDS[subfolder],
                                 subfolder=subfolder, **kwargs)
    try:
        return component.from_pretrained(source, subfolder=subfolder, **kwargs)
    except (OSError, ValueError) as exc:
        raise MissingCheckpointError(
            f"{source}: cannot load SD-Turbo's {subfolder} ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
            f"fetch the models with `{named(Program.FETCH)}`") from exc


def _check_gamma(gamma: float) -> float:
    gamma = float(gamma)
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be between 0 and 1, got {gamma}")
    return gamma


@dataclass(frozen=True)
class OneStep:
    """DDPM in one step: from the last training timestep (999 for SD-Turbo) straight to x0, as
    DDPMScheduler.step reads its config."""
    timestep: int
    alpha_cumprod: float
    prediction_type: str           # epsilon or v_prediction
    clip_x0: float | None          # SD-Turbo's config says clip_sample: false

    @classmethod
    def from_scheduler(cls, scheduler: DDPMScheduler) -> OneStep:
        config = scheduler.config
        if config.prediction_type not in ("epsilon", "v_prediction") or config.thresholding:
            raise ValueError(f"scheduler: prediction_type {config.prediction_type!r} with thresholding="
                             f"{config.thresholding} is not supported (SD-Turbo: epsilon, no thresholding)")
        timestep = int(config.num_train_timesteps) - 1
        return cls(timestep, float(scheduler.alphas_cumprod[timestep]), config.prediction_type,
                   float(config.clip_sample_range) if config.clip_sample else None)

    def predict_x0(self, model_output: torch.Tensor, sample: torch.Tensor) -> torch.Tensor:
        """DDPM's x0 from one prediction at `timestep` (float32 for the division)."""
        alpha = torch.tensor(self.alpha_cumprod, dtype=torch.float32)
        out, x = model_output.float(), sample.float()
        if self.prediction_type == "epsilon":
            x0 = (x - (1 - alpha).sqrt() * out) / alpha.sqrt()
        else:  # v_prediction
            x0 = alpha.sqrt() * x - (1 - alpha).sqrt() * out
        if self.clip_x0 is not None:
            x0 = x0.clamp(-self.clip_x0, self.clip_x0)
        return x0.to(model_output.dtype)


class Pix2PixTurbo(torch.nn.Module):
    """One-step sketch-to-image generator; load once, call `generate` per query."""

    def __init__(self, tokenizer: CLIPTokenizer, text_encoder: CLIPTextModel, unet: UNet2DConditionModel,
                 vae: AutoencoderKL, scheduler: DDPMScheduler, device: str | torch.device = "cpu",
                 dtype: torch.dtype = torch.float32, vae_dtype: torch.dtype | None = None,
                 channels_last: bool = False, merged_gamma: float | None = None,
                 rebuild: Callable[[float], tuple[UNet2DConditionModel, AutoencoderKL]] | None = None,
                 deterministic: bool = False):
        """`merged_gamma`: the r the UNet and VAE were merged for (`merge_sketch_layers`), with
        `rebuild(r)` giving freshly loaded and merged float32 copies for another r.
        `deterministic`: a train_pix2pix_turbo.py model (plain first conv), run at r = 1."""
        super().__init__()
        if merged_gamma is not None and rebuild is None:
            raise ValueError("a merged model needs `rebuild` to serve other values of gamma")
        self.tokenizer = tokenizer
        self.text_encoder = text_encoder
        self.unet = unet
        self.vae = vae
        self.device = torch.device(device)
        self.dtype = dtype
        self.vae_dtype = vae_dtype or dtype
        self.channels_last = channels_last
        self._rebuild = rebuild
        self.step = OneStep.from_scheduler(scheduler)
        self.latent_factor = 2 ** (len(vae.config.block_out_channels) - 1)
        # A deterministic model (train_pix2pix_turbo.py) runs as the authors' deterministic pass:
        # r fixed at 1 (no noise, adapters and skips at full scale, no twin conv).
        self.deterministic = deterministic
        self.gamma: float | None = 1.0 if self.deterministic else merged_gamma
        self.merged = merged_gamma is not None
        self._prompt_cache: dict[str, torch.Tensor] = {}
        self.requires_grad_(False)
        self.eval()
        # Each part cast once from its loaded precision (a float32 VAE under a float16 model is
        # never rounded through float16).
        self.text_encoder.to(device=self.device, dtype=dtype)
        self._place(unet, vae)

    def _place(self, unet: UNet2DConditionModel, vae: AutoencoderKL) -> None:
        """Put the UNet and VAE on the device in their dtypes and memory format, and use them."""
        unet.requires_grad_(False).eval()
        vae.requires_grad_(False).eval()
        memory_format = torch.channels_last if self.channels_last else torch.contiguous_format
        # torch's own `to`: diffusers' override only adds a warning for models like these, which
        # keep no layer in float32.
        self.unet = torch.nn.Module.to(unet, device=self.device, dtype=self.dtype, memory_format=memory_format)
        self.vae = torch.nn.Module.to(vae, device=self.device, dtype=self.vae_dtype, memory_format=memory_format)

    @classmethod
    def from_pretrained(cls, sd_turbo: str | Path, lora_file: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, gamma: float | None = None,
                        vae_dtype: torch.dtype | None = None, channels_last: bool = False) -> Pix2PixTurbo:
        """`sd_turbo`: a diffusers folder or hub id of SD-Turbo; `lora_file`: the authors' LoRA file.

        `gamma`: merge the adapters for this r (fastest for queries at this r; another r rebuilds
        the merged layers from the files, a few seconds). None keeps them separate.
        `vae_dtype`: the VAE's dtype when not `dtype` (float32 under float16 avoids overflow).
        `lora_file` may also be a deterministic model from the authors' train_pix2pix_turbo.py
        (--generator); it runs at r = 1 whatever `gamma` says, as theirs does.
        """
        lora = load_lora_file(lora_file)  # first: a bad file fails before the slow loading
        if lora.deterministic:
            log.info("%s: a deterministic pix2pix-turbo model (plain first conv): r is fixed at 1", lora.name)
            gamma = None if gamma is None else 1.0
        source = str(sd_turbo)
        log.info("loading SD-Turbo from %s", source)
        tokenizer = _load(CLIPTokenizer, source, "tokenizer")
        # float32 first: the adapters and the file's tensors are added (and merged) at full
        # precision, then the whole model is cast once.
        text_encoder = _load(CLIPTextModel, source, "text_encoder")
        scheduler = _load(DDPMScheduler, source, "scheduler")

        def load_sketch_model(merge_gamma: float | None) -> tuple[UNet2DConditionModel, AutoencoderKL]:
            unet = _load(UNet2DConditionModel, source, "unet")
            vae = _load(AutoencoderKL, source, "vae")
            add_sketch_layers(unet, vae, lora)
            load_sketch_weights(unet, vae, lora)
            if merge_gamma is not None:
                merge_sketch_layers(unet, vae, _check_gamma(merge_gamma))
            return unet, vae

        unet, vae = load_sketch_model(gamma)
        return cls(tokenizer, text_encoder, unet, vae, scheduler, device=device, dtype=dtype,
                   vae_dtype=vae_dtype, channels_last=channels_last,
                   merged_gamma=None if gamma is None else float(gamma),
                   rebuild=load_sketch_model if gamma is not None else None,
                   deterministic=lora.deterministic)

    # -- pieces ------------------------------------------------------------------------------------
    @torch.inference_mode()
    def encode_prompt(self, prompt: str) -> torch.Tensor:
        """The prompt's CLIP embedding (1, tokens, width); kept for prompts seen recently."""
        cached = self._prompt_cache.get(prompt)
        if cached is not None:
            return cached
        ids = self.tokenizer(prompt, max_length=self.tokenizer.model_max_length, padding="max_length",
                             truncation=True, return_tensors="pt").input_ids.to(self.device)
        embedding = self.text_encoder(ids)[0]
        if len(self._prompt_cache) >= PROMPT_CACHE_SIZE:
            self._prompt_cache.pop(next(iter(self._prompt_cache)))
        self._prompt_cache[prompt] = embedding
        return embedding

    def set_gamma(self, gamma: float) -> None:
        """Set r for the adapters and the twin conv; only work when it changes."""
        gamma = _check_gamma(gamma)
        if self.deterministic:  # the authors' deterministic pass has no r: it stays 1
            return
        if gamma == self.gamma:
            return
        if self.merged:
            # Rebuilt from the files rather than un-merged: the weights for an r never depend on
            # the r used before (un-merging would leave rounding behind).
            log.info("gamma %s -> %s: re-merging the sketch layers from the files", self.gamma, gamma)
            self.unet = self.vae = None  # free the old copies before loading new ones
            self._place(*self._rebuild(gamma))
            self.gamma = gamma
            return
        set_adapter_scale(self.unet, UNET_ADAPTER, gamma)
        set_adapter_scale(self.vae, VAE_ADAPTER, gamma)
        self.unet.conv_in.r = gamma
        self.gamma = gamma

    def _encode(self, sketch: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Latent sample (scaled) and the input of each encoder down block, for the skips."""
        encoder = self.vae.encoder
        hidden = encoder.conv_in(sketch)
        skips = []
        for down_block in encoder.down_blocks:
            skips.append(hidden)
            hidden = down_block(hidden)
        hidden = encoder.mid_block(hidden)
        hidden = encoder.conv_out(encoder.conv_act(encoder.conv_norm_out(hidden)))
        if self.vae.quant_conv is not None:
            hidden = self.vae.quant_conv(hidden)
        latent = DiagonalGaussianDistribution(hidden).sample(generator=generator)
        return latent * self.vae.config.scaling_factor, skips

    def _decode(self, latent: torch.Tensor, skips: list[torch.Tensor], r: float) -> torch.Tensor:
        """VAE decoder with each up block fed the matching encoder activation, scaled by r."""
        decoder = self.vae.decoder
        z = latent / self.vae.config.scaling_factor
        if self.vae.post_quant_conv is not None:
            z = self.vae.post_quant_conv(z)
        hidden = decoder.mid_block(decoder.conv_in(z))
        for index, (up_block, skip) in enumerate(zip(decoder.up_blocks, reversed(skips)), start=1):
            skip_conv = getattr(decoder, f"skip_conv_{index}")
            hidden = up_block(hidden + skip_conv(skip * r))
        return decoder.conv_out(decoder.conv_act(decoder.conv_norm_out(hidden)))

    # -- the query ---------------------------------------------------------------------------------
    @torch.inference_mode()
    def generate(self, mask: np.ndarray, prompt: str, gamma: float | None = None, seed: int = 0,
                 cancelled: CancelCheck | None = None) -> Image.Image:
        """An RGB image the size of `mask` (bool HxW, True = stroke; sides multiples of 8).

        `gamma` None: the r the model is set to (the merged one), DEFAULT_GAMMA if never set.
        `cancelled`: checked before each UNet/VAE block (and between the stages); when it returns
        True, sketch_search.common.cancel.Cancelled is raised and no image is made.
        """
        mask = np.asarray(mask)
        if mask.ndim != 2 or mask.shape[0] % self.latent_factor or mask.shape[1] % self.latent_factor:
            raise ValueError(f"the sketch mask must be 2-D with sides divisible by {self.latent_factor}, "
                             f"got shape {mask.shape}")
        if gamma is not None or self.gamma is None:
            self.set_gamma(DEFAULT_GAMMA if gamma is None else gamma)
        r = self.gamma
        height, width = mask.shape
        # Stroke = 1, paper = 0, as the model was trained (not rescaled to [-1, 1]).
        sketch = torch.from_numpy(mask.astype(np.float32)).to(self.device, self.vae_dtype)
        sketch = sketch.expand(1, 3, height, width)
        if self.channels_last:
            sketch = sketch.contiguous(memory_format=torch.channels_last)
        # A CPU generator gives the same draws on every device; noise first, then the VAE sample.
        generator = torch.Generator("cpu").manual_seed(int(seed))
        noise_shape = (1, self.unet.config.in_channels, height // self.latent_factor, width // self.latent_factor)
        noise = torch.randn(noise_shape, generator=generator, dtype=torch.float32).to(self.device, self.dtype)
        check(cancelled)
        text = self.encode_prompt(prompt)
        with checked_modules(checked_blocks(self.unet, self.vae) if cancelled else (), cancelled):
            latent, skips = self._encode(sketch, generator)
            unet_input = latent.to(self.dtype) * r + noise * (1.0 - r)
            timestep = torch.tensor([self.step.timestep], device=self.device, dtype=torch.long)
            prediction = self.unet(unet_input, timestep, encoder_hidden_states=text).sample
            x0 = self.step.predict_x0(prediction, unet_input)
            image = self._decode(x0.to(self.vae_dtype), skips, r).clamp(-1, 1)
        pixels = (image[0].float().permute(1, 2, 0) * 0.5 + 0.5).clamp(0, 1)
        return Image.fromarray((pixels * 255).round().to(torch.uint8).cpu().numpy())
