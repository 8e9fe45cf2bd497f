"""BLIP captioning of a sketch.

Loads the stock BLIP base captioning model (a Hugging Face folder or hub id), optionally with
sketch fine-tuned weights: another HF folder, or the seed project's torch file that holds
`model_state_dict` for the same architecture.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from PIL import Image
from transformers import BlipForConditionalGeneration, BlipProcessor

from common.errors import CheckpointFormatError

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 30


def load_seed_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The `model_state_dict` of the seed's file, with DataParallel's `module.` prefix removed."""
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a foreign or broken file
        raise CheckpointFormatError(
            f"{path}: not a readable torch checkpoint ({type(exc).__name__}); "
            f"replace it with the fine-tuned BLIP file or remove it to use the stock captioner") from exc
    state = data.get("model_state_dict", data) if isinstance(data, dict) else None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointFormatError(
            f"{path}: holds no `model_state_dict` of tensors; expected the seed's fine-tuned BLIP file")
    return {k.removeprefix("module."): v for k, v in state.items()}


class BlipCaptioner:
    """Captions sketch images; created once, reused for every query."""

    def __init__(self, model: BlipForConditionalGeneration, processor: BlipProcessor,
                 device: str | torch.device = "cpu"):
        self.model = model.eval()
        self.processor = processor
        self.device = torch.device(device)
        self.dtype = next(model.parameters()).dtype

    @classmethod
    def from_pretrained(cls, base: str | Path, fine_tuned: str | Path | None = None,
                        device: str | torch.device = "cpu",
                        dtype: torch.dtype = torch.float32) -> BlipCaptioner:
        """`base`: folder or hub id of BLIP base captioning (processor + architecture).

        `fine_tuned`: an HF folder of a fine-tuned model (its own processor is used when it has
        one), or the seed's torch file, whose weights replace the base model's.
        """
        fine_tuned = Path(fine_tuned) if fine_tuned else None
        if fine_tuned is not None and fine_tuned.is_dir():
            model = BlipForConditionalGeneration.from_pretrained(fine_tuned, dtype=dtype)
            has_processor = (fine_tuned / "preprocessor_config.json").is_file() or (
                fine_tuned / "processor_config.json").is_file()
            processor = BlipProcessor.from_pretrained(fine_tuned if has_processor else base)
        else:
            model = BlipForConditionalGeneration.from_pretrained(base, dtype=dtype)
            processor = BlipProcessor.from_pretrained(base)
            if fine_tuned is not None:
                state = load_seed_state_dict(fine_tuned)
                try:
                    result = model.load_state_dict(state, strict=False)
                except RuntimeError as exc:  # shape mismatches
                    raise CheckpointFormatError(
                        f"{fine_tuned}: weights do not fit BLIP base captioning "
                        f"({str(exc).splitlines()[-1].strip()}); use the seed's BLIP file") from exc
                # Tied or buffer keys may legitimately be absent; real weights may not.
                missing = [k for k in result.missing_keys if "position_ids" not in k]
                if result.unexpected_keys or len(missing) > 2:
                    raise CheckpointFormatError(
                        f"{fine_tuned}: weights do not fit BLIP base captioning "
                        f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected keys, "
                        f"e.g. {(missing + result.unexpected_keys)[:2]}); use the seed's BLIP file")
                log.info("loaded fine-tuned captioner weights from %s", fine_tuned)
        return cls(model.to(device), processor, device)

    @torch.inference_mode()
    def caption(self, image: Image.Image) -> str:
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        ids = self.model.generate(pixel_values=pixels, max_new_tokens=MAX_NEW_TOKENS, num_beams=1,
                                  do_sample=False)
        return self.processor.decode(ids[0], skip_special_tokens=True).strip()
