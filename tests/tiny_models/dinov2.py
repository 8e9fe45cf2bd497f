"""A tiny random DINOv2 of the real class, saved in the real on-disk format.

`write_tiny_dinov2` writes a Hugging Face folder (config.json, model.safetensors and a
preprocessor_config.json shaped like facebook/dinov2-*'s: resize the shortest edge, centre crop,
ImageNet mean/std) that `retrieval.embedder.DinoEmbedder.from_pretrained(folder)` loads.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model

IMAGE_SIZE = 56          # 4 x 4 patches of 14 px
RESIZE_SHORTEST = 64     # facebook/dinov2-* resize to 256 then crop 224: the same 8/7 ratio
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def tiny_dinov2_config() -> Dinov2Config:
    return Dinov2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, mlp_ratio=2, image_size=IMAGE_SIZE, patch_size=14)


def tiny_dinov2_processor() -> BitImageProcessorPil:
    # BICUBIC (3), as in facebook/dinov2-*'s preprocessor_config.json.
    return BitImageProcessorPil(size={"shortest_edge": RESIZE_SHORTEST},
                                crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE},
                                resample=3, image_mean=IMAGENET_MEAN, image_std=IMAGENET_STD)


def write_tiny_dinov2(out_dir: Path, seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Dinov2Model(tiny_dinov2_config()).eval().save_pretrained(out_dir)
    tiny_dinov2_processor().save_pretrained(out_dir)
    return out_dir
