"""A tiny random BLIP captioning model of the real classes, saved as the real formats.

`write_tiny_blip` writes a Hugging Face folder (config, safetensors, processor with a BERT
tokenizer built from a small word list); `write_seed_blip_file` writes the seed project's
torch file (`model_state_dict` for the same architecture) with different weights.
"""
from __future__ import annotations

from pathlib import Path

import torch
from transformers import (BertTokenizer, BlipConfig, BlipForConditionalGeneration,
                          BlipImageProcessor, BlipProcessor)

# Real words, so that random captions read like (odd) English and exercise the prompt builder.
WORDS = """a an the of drawing sketch black and white cat dog house tree car bird flower
on with in picture image simple line doodle pencil illustration apple chair cup bicycle
boat fish horse star sun moon face hand shoe clock""".split()
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]"]
IMAGE_SIZE = 32


def tiny_blip_config() -> BlipConfig:
    vocab = len(SPECIAL) + len(WORDS)
    text = dict(vocab_size=vocab, hidden_size=32, encoder_hidden_size=32, intermediate_size=64,
                num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=64,
                pad_token_id=0, sep_token_id=3, bos_token_id=5, eos_token_id=3)
    vision = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                  image_size=IMAGE_SIZE, patch_size=8)
    return BlipConfig(text_config=text, vision_config=vision, projection_dim=32)


def _processor(folder: Path) -> BlipProcessor:
    vocab_file = folder / "vocab.txt"
    vocab_file.write_text("\n".join(SPECIAL + WORDS) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]", model_max_length=64)
    images = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    return BlipProcessor(image_processor=images, tokenizer=tokenizer)


def _model(seed: int) -> BlipForConditionalGeneration:
    torch.manual_seed(seed)
    return BlipForConditionalGeneration(tiny_blip_config()).eval()


def write_tiny_blip(out_dir: Path, seed: int = 0) -> Path:
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _model(seed).save_pretrained(out_dir)
    _processor(out_dir).save_pretrained(out_dir)
    return out_dir


def write_seed_blip_file(path: Path, seed: int = 1) -> Path:
    """The seed's format: a torch file holding `model_state_dict` (plus training extras)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"epoch": 3, "model_state_dict": _model(seed).state_dict()}, path)
    return path
