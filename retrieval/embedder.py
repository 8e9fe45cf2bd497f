"""DINOv2 image embeddings: one L2-normalised vector per image (the CLS token's pooled output).

Created once and reused for the gallery index and for every query. `fingerprint` names the exact
model (size and weights), so an index built with other weights is noticed and rebuilt.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor, Dinov2Model
from transformers.utils import cached_file

from checkpoints.layout import FETCH_COMMAND
from common.errors import MissingCheckpointError

log = logging.getLogger(__name__)

_CONFIG_FILES = ("config.json", "preprocessor_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_SAMPLE_BYTES = 1 << 20  # safetensors' header (names, shapes, offsets) sits in the first bytes


def model_fingerprint(folder: Path) -> str:
    """A short hash of a model folder's configs, weight file sizes and first/last MiB.

    Reads a few MiB whatever the model's size, yet changes with the architecture, the
    preprocessing, and any re-saved or fine-tuned weights.
    """
    digest = hashlib.sha256()
    for name in _CONFIG_FILES:
        path = folder / name
        if path.is_file():
            digest.update(name.encode() + b"\0" + path.read_bytes())
    weights = sorted(p for p in folder.iterdir() if p.suffix in _WEIGHT_SUFFIXES and p.is_file())
    for path in weights:
        size = path.stat().st_size
        digest.update(f"{path.name}\0{size}\0".encode())
        with open(path, "rb") as handle:
            digest.update(handle.read(_SAMPLE_BYTES))
            if size > 2 * _SAMPLE_BYTES:
                handle.seek(-_SAMPLE_BYTES, 2)
                digest.update(handle.read())
    return digest.hexdigest()[:16]


class DinoEmbedder:
    """Embeds PIL images with a DINOv2 model; vectors are float32 and unit length."""

    def __init__(self, model: Dinov2Model, processor, fingerprint: str, name: str,
                 device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.processor = processor
        self.fingerprint = fingerprint
        self.name = name
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, name: str = "") -> DinoEmbedder:
        """Load a DINOv2 folder (or, online, a hub id such as facebook/dinov2-base)."""
        source = str(path_or_id)
        try:
            model = Dinov2Model.from_pretrained(source, dtype=dtype)
            processor = AutoImageProcessor.from_pretrained(source)
            # The folder the files were read from: the local one, or the hub cache's snapshot.
            folder = Path(cached_file(source, "config.json")).parent
        except OSError as exc:
            raise MissingCheckpointError(
                f"cannot load DINOv2 from {source} ({str(exc).splitlines()[0]}); "
                f"download it with `{FETCH_COMMAND}` or pass --checkpoints DIR") from exc
        model.to(device)
        embedder = cls(model, processor, model_fingerprint(folder),
                       name or Path(source.rstrip("/")).name, device)
        log.info("DINOv2 %s loaded from %s (dim %d, %d px, fingerprint %s)", embedder.name,
                 source, embedder.dim, embedder.input_size, embedder.fingerprint)
        return embedder

    @property
    def dim(self) -> int:
        return int(self.model.config.hidden_size)

    @property
    def input_size(self) -> int:
        """The side of the square the model sees (the processor's centre crop)."""
        crop = self.processor.crop_size
        return int(min(crop["height"], crop["width"]))

    @property
    def min_image_side(self) -> int:
        """The shorter side the processor resizes to before cropping (256 for facebook/dinov2).

        Decoding photos at a reduced scale down to this side loses nothing the model sees.
        """
        size = self.processor.size
        resized = size.get("shortest_edge") or min(size.get("height") or 0, size.get("width") or 0)
        return int(max(resized, self.input_size))

    @torch.inference_mode()
    def embed_images(self, images: list[Image.Image], batch_size: int = 16) -> np.ndarray:
        """(len(images), dim) float32, each row L2-normalised."""
        if not images:
            return np.zeros((0, self.dim), np.float32)
        chunks = []
        for start in range(0, len(images), batch_size):
            batch = [im if im.mode == "RGB" else im.convert("RGB")
                     for im in images[start:start + batch_size]]
            pixels = self.processor(images=batch, return_tensors="pt")["pixel_values"]
            output = self.model(pixel_values=pixels.to(self.device, self.dtype))
            vectors = F.normalize(output.pooler_output.float(), dim=-1)
            chunks.append(vectors.cpu().numpy())
        return np.concatenate(chunks).astype(np.float32, copy=False)
