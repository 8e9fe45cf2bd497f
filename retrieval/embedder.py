"""DINO image embeddings: one L2-normalised vector per image (the CLS token's pooled output).

DINOv2 (the default, any size) or DINOv3's ViT-H+/16, both through transformers' own classes.
Created once and reused for the gallery index and for every query. `fingerprint` names the exact
model (family, size and weights), so an index built with other weights is noticed and rebuilt.
A folder that holds another model, damaged or unsafe weights, or weights that leave layers at
random is refused in one line (sketch_search.common.model_files).
"""
from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from transformers import AutoImageProcessor, Dinov2Model, DINOv3ViTModel
from transformers.utils import cached_file

from checkpoints.layout import DINOV2_TYPE, DINOV3_TYPE, family_of_dir_name
from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import CheckpointFormatError, MissingCheckpointError
from sketch_search.common.model_files import load_model_folder, read_config

log = logging.getLogger(__name__)

_CONFIG_FILES = ("config.json", "preprocessor_config.json")
_WEIGHT_SUFFIXES = (".safetensors", ".bin")
_SAMPLE_BYTES = 1 << 20  # safetensors' header (names, shapes, offsets) sits in the first bytes


MODEL_CLASSES = {DINOV2_TYPE: Dinov2Model, DINOV3_TYPE: DINOv3ViTModel}
FAMILY_NAMES = {DINOV2_TYPE: "DINOv2", DINOV3_TYPE: "DINOv3"}
# Read only when a masked-image training loss is computed, never by an embedding.
_UNUSED_AT_INFERENCE = ("embeddings.mask_token",)


class Dinov3Preprocessor:
    """DINOv3's preprocessing as transformers' DINOv3ViTImageProcessor does it (which needs
    torchvision, not a dependency here): scale to [0, 1], resize to the square size with an
    antialiased filter (bilinear unless the config says bicubic), normalise."""

    def __init__(self, config: dict):
        size = config.get("size") or {"height": 224, "width": 224}
        if "height" not in size:
            side = size.get("shortest_edge", 224)
            size = {"height": side, "width": side}
        self.size = {"height": int(size["height"]), "width": int(size["width"])}
        self.crop_size = dict(self.size)  # no crop: the whole photo, squeezed to the square
        self.rescale_factor = float(config.get("rescale_factor", 1 / 255))
        self.mode = "bicubic" if config.get("resample") == 3 else "bilinear"
        self.mean = torch.tensor(config.get("image_mean", [0.485, 0.456, 0.406])).view(1, 3, 1, 1)
        self.std = torch.tensor(config.get("image_std", [0.229, 0.224, 0.225])).view(1, 3, 1, 1)

    @classmethod
    def from_pretrained(cls, source: str) -> Dinov3Preprocessor:
        return cls(json.loads(Path(cached_file(source, "preprocessor_config.json")).read_text()))

    def __call__(self, images: list[Image.Image], return_tensors: str = "pt") -> dict[str, torch.Tensor]:
        out = []
        for image in images:
            pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy())
            pixels = pixels.permute(2, 0, 1)[None].float() * self.rescale_factor
            pixels = F.interpolate(pixels, size=(self.size["height"], self.size["width"]),
                                   mode=self.mode, align_corners=False, antialias=True)
            out.append((pixels - self.mean) / self.std)
        return {"pixel_values": torch.cat(out)}


def model_fingerprint(folder: Path, family: str = DINOV2_TYPE) -> str:
    """A short hash of a model folder's configs, weight file sizes and first/last MiB.

    Reads a few MiB whatever the model's size, yet changes with the architecture, the
    preprocessing, and any re-saved or fine-tuned weights. Other families than DINOv2 carry their
    name in front (DINOv2's stays as earlier versions wrote it, so their indexes stay valid).
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
    return digest.hexdigest()[:16] if family == DINOV2_TYPE else f"{family}-{digest.hexdigest()[:16]}"


def _family(source: str, name: str, family: str | None) -> str:
    """The model family to load: asked for, implied by the folder's name, or read off its config."""
    family = family or family_of_dir_name(name) or family_of_dir_name(Path(source.rstrip("/")).name)
    if family:
        return family
    folder = Path(source).expanduser()
    if (folder / "config.json").is_file():
        kind = read_config(folder).get("model_type")
        if kind in MODEL_CLASSES:
            return kind
        raise CheckpointFormatError(
            f"{folder}: holds a {kind} model, not DINOv2 or DINOv3; point at a DINO model folder")
    return DINOV3_TYPE if "dinov3" in source.lower() else DINOV2_TYPE


class DinoEmbedder:
    """Embeds PIL images with a DINOv2 or DINOv3 model; vectors are float32 and unit length."""

    def __init__(self, model: Dinov2Model | DINOv3ViTModel, processor, fingerprint: str, name: str,
                 device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.processor = processor
        self.fingerprint = fingerprint
        self.name = name
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, path_or_id: str | Path, device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32, name: str = "",
                        family: str | None = None) -> DinoEmbedder:
        """Load a DINOv2 or DINOv3 folder (or, online, a hub id such as facebook/dinov2-base).

        `family`: the model_type the folder must hold ("dinov2", "dinov3_vit"); by default the
        one its checkpoints name implies (dinov2-base/, dinov3-vith16plus-.../), else any DINO.
        """
        source = str(path_or_id)
        family = _family(source, name, family)
        what = FAMILY_NAMES[family]
        model = load_model_folder(MODEL_CLASSES[family], source, what, kinds=(family,),
                                  allowed_missing=_UNUSED_AT_INFERENCE, dtype=dtype)
        try:
            processor = (Dinov3Preprocessor.from_pretrained(source) if family == DINOV3_TYPE
                         else AutoImageProcessor.from_pretrained(source))
            # The folder the files were read from: the local one, or the hub cache's snapshot.
            folder = Path(cached_file(source, "config.json")).parent
        except OSError as exc:
            raise MissingCheckpointError(
                f"cannot load {what}'s preprocessing from {source} ({str(exc).splitlines()[0]}); "
                f"download it with `{named(Program.FETCH)}` or pass --checkpoints DIR") from exc
        model.to(device)
        embedder = cls(model, processor, model_fingerprint(folder, family),
                       name or Path(source.rstrip("/")).name, device)
        log.info("%s %s loaded from %s (dim %d, %d px, fingerprint %s)", what, embedder.name,
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
