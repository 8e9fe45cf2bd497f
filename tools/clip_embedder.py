"""CLIP image and text vectors in one space, for the evaluation's caption mode.

Loads a transformers CLIP folder (e.g. a download of openai/clip-vit-base-patch32): photos and
caption texts are embedded by the two towers and compared by cosine similarity.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import CLIPModel, CLIPProcessor

from sketch_search.common.errors import MissingCheckpointError

log = logging.getLogger(__name__)


def _features(output) -> torch.Tensor:
    # transformers 5 returns an output whose pooler_output is projected; 4.x returned the tensor.
    return output.pooler_output if hasattr(output, "pooler_output") else output


class ClipEmbedder:
    """Unit-length float32 vectors for images and texts from one CLIP model."""

    def __init__(self, model: CLIPModel, processor: CLIPProcessor, device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> ClipEmbedder:
        source = str(path_or_id)
        try:
            model = CLIPModel.from_pretrained(source, dtype=dtype)
            processor = CLIPProcessor.from_pretrained(source)
        except OSError as exc:
            raise MissingCheckpointError(
                f"--clip {source}: cannot load CLIP ({str(exc).splitlines()[0]}); pass a folder "
                f"holding a transformers CLIP model and its processor") from exc
        log.info("CLIP loaded from %s (dim %d)", source, model.config.projection_dim)
        return cls(model.to(device), processor, device)

    @property
    def min_image_side(self) -> int:
        size = self.processor.image_processor.size
        return int(size.get("shortest_edge") or min(size.get("height", 0), size.get("width", 0)))

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image], batch_size: int = 16) -> np.ndarray:
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = [im.convert("RGB") if im.mode != "RGB" else im for im in images[start:start + batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            pixels = pixels.to(self.device, self.dtype)
            features = _features(self.model.get_image_features(pixel_values=pixels))
            chunks.append(F.normalize(features.float(), dim=-1).cpu().numpy())
        if not chunks:
            return np.zeros((0, self.model.config.projection_dim), np.float32)
        return np.concatenate(chunks).astype(np.float32, copy=False)

    @torch.inference_mode()
    def embed_texts(self, texts: list[str]) -> np.ndarray:
        tokens = self.processor(text=texts, padding=True, truncation=True, return_tensors="pt")
        features = _features(self.model.get_text_features(
            input_ids=tokens["input_ids"].to(self.device),
            attention_mask=tokens["attention_mask"].to(self.device)))
        return F.normalize(features.float(), dim=-1).cpu().numpy().astype(np.float32, copy=False)
