"""The one place that decides where models run and in which dtype each one runs.

Everything else asks `placement(device, precision)`; nobody re-derives a dtype.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from sketch_search.common.errors import DeviceError


def _mps_available() -> bool:
    return bool(getattr(torch.backends, "mps", None) and torch.backends.mps.is_available())


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA, then Apple's MPS, then the CPU. A device asked for by name must exist."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise DeviceError("--device cuda: no CUDA GPU is visible; use --device auto or cpu")
    if name == "mps" and not _mps_available():
        raise DeviceError("--device mps: Apple's MPS is not available; use --device auto or cpu")
    return torch.device(name)


def cpu_has_native_bfloat16() -> bool:
    """Whether oneDNN runs bfloat16 natively here (AVX-512 BF16 or AMX); emulated it is slower."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class ModelPrecision:
    """The dtypes each model runs in on a device (measured in BENCHMARKS.md)."""

    captioner: torch.dtype
    generator: torch.dtype      # text encoder and UNet
    vae: torch.dtype            # SD's VAE
    embedder: torch.dtype
    channels_last: bool         # UNet/VAE memory format


FLOAT32 = ModelPrecision(*(torch.float32,) * 4, channels_last=False)


def model_precision(device: torch.device, precision: str = "auto") -> ModelPrecision:
    """CUDA: float16, but SD's VAE in float32 (it can overflow in float16). A CPU with native
    bfloat16: the generator in bfloat16 and channels-last (about 3x faster than float32, images
    within a few grey levels of it) and DINOv2 in bfloat16 (about 1.8x faster, vectors within
    1e-4 cosine of float32); BLIP stays float32 (its greedy caption can change with precision).
    Elsewhere (MPS, a CPU without native bfloat16), or with precision "float32": float32.
    """
    if precision == "float32":
        return FLOAT32
    if device.type == "cuda":
        half = torch.float16
        return ModelPrecision(half, half, torch.float32, half, channels_last=False)
    if device.type == "cpu" and cpu_has_native_bfloat16():
        fast = torch.bfloat16
        return ModelPrecision(torch.float32, fast, fast, fast, channels_last=True)
    return FLOAT32


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtypes: ModelPrecision


def placement(device: str = "auto", precision: str = "auto") -> Placement:
    """The device for `--device` and every model's dtype on it for `--precision`."""
    chosen = pick_device(device)
    return Placement(chosen, model_precision(chosen, precision))


# Training (tools/finetune_captioner.py) runs under autocast, which has its own choices.
TRAINING_PRECISIONS = ("auto", "fp32", "bf16", "fp16")


def training_autocast(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for training, or None for plain float32. auto: bf16 on CUDA where
    supported, else fp16 there; float32 elsewhere."""
    if precision == "auto":
        if device.type != "cuda":
            return None
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
