"""BLIP captioning of a sketch.

Loads the stock BLIP base captioning model (a Hugging Face folder or hub id), optionally with
sketch fine-tuned weights: another HF folder, or the seed project's torch file that holds
`model_state_dict` for the same architecture.

The seed's file was trained under transformers 4.4x, which keeps the text decoder's output matrix
(`text_decoder.cls.predictions.decoder.weight`) apart from its word embeddings; transformers 5
ties the two into one. Loading two different matrices into a tied model keeps one of them, so a
file whose two differ is loaded with the tie off: the model computes what the file's weights say.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BlipConfig, BlipForConditionalGeneration, BlipProcessor

from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import CheckpointFormatError
from sketch_search.common.model_files import check_model_folder, load_model_folder

log = logging.getLogger(__name__)

MAX_NEW_TOKENS = 30
BLIP_TYPES = ("blip",)
# What transformers 5 ties (BlipForConditionalGeneration._tied_weights_keys): target <- source.
TIED_PAIRS = {
    "text_decoder.cls.predictions.decoder.weight": "text_decoder.bert.embeddings.word_embeddings.weight",
    "text_decoder.cls.predictions.decoder.bias": "text_decoder.cls.predictions.bias",
}


def _numpy_scalar_globals() -> list:
    """The pickle globals a numpy scalar needs (a training loop's `loss.item()` slip), and no more:
    the scalar constructor and the numeric dtypes. Arrays and every other class stay refused."""
    allowed: list = [np.dtype]
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        allowed.append((np.core.multiarray.scalar, f"{module}.scalar"))
    for kind in (np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32,
                 np.uint64, np.float16, np.float32, np.float64):
        allowed.append(type(np.dtype(kind)))
    return allowed


def load_seed_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The `model_state_dict` of the seed's file, with DataParallel's `module.` prefix removed.

    Read by torch's safe loader (weights_only): tensors, plain containers and numbers, plus
    numpy scalars through a narrow allow-list; pickled code is never run.
    """
    try:
        with torch.serialization.safe_globals(_numpy_scalar_globals()):
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


def _untied_pairs(state: dict[str, torch.Tensor]) -> list[str]:
    """The tied targets whose matrix in `state` differs from its source's (a 4.4x-trained file)."""
    return [target for target, source in TIED_PAIRS.items()
            if target in state and source in state and (state[target].shape != state[source].shape
                                                         or not torch.equal(state[target], state[source]))]


def _model_for_state(base: str | Path, state: dict[str, torch.Tensor], source: Path,
                     dtype: torch.dtype) -> BlipForConditionalGeneration:
    """BLIP built from `base`'s config, tied only where the file's two matrices are one, and
    loaded with exactly the file's weights (every weight must be there: none stays at random)."""
    try:
        config = BlipConfig.from_pretrained(base)
    except (OSError, ValueError) as exc:
        raise CheckpointFormatError(
            f"{base}: no BLIP configuration to load {source} into ({type(exc).__name__}); "
            f"fetch the models with `{named(Program.FETCH)}`") from exc
    untied = _untied_pairs(state)
    if untied:
        config = copy.deepcopy(config)
        config.tie_word_embeddings = False
        config.text_config.tie_word_embeddings = False
        log.info("%s: its text decoder's output matrix differs from the word embeddings "
                 "(trained untied): loading it with the tie off", source)
    model = BlipForConditionalGeneration(config)
    try:
        result = model.load_state_dict(state, strict=False)
    except RuntimeError as exc:  # shape mismatches
        raise CheckpointFormatError(
            f"{source}: weights do not fit BLIP base captioning "
            f"({str(exc).splitlines()[-1].strip()}); use the seed's BLIP file") from exc
    # Buffers rebuilt by the model and the tied copies of weights the file holds may be absent.
    tied_present = {t for t, s in TIED_PAIRS.items() if s in state} if not untied else set()
    missing = [k for k in result.missing_keys if "position_ids" not in k and k not in tied_present]
    if result.unexpected_keys or missing:
        raise CheckpointFormatError(
            f"{source}: weights do not fit BLIP base captioning "
            f"({len(missing)} missing, {len(result.unexpected_keys)} unexpected keys, "
            f"e.g. {(missing + result.unexpected_keys)[:2]}); use the seed's BLIP file")
    if not untied:
        model.tie_weights()
    return model.to(dtype)


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
            model = load_model_folder(BlipForConditionalGeneration, fine_tuned, "BLIP captioning",
                                      kinds=BLIP_TYPES, dtype=dtype)
            has_processor = (fine_tuned / "preprocessor_config.json").is_file() or (
                fine_tuned / "processor_config.json").is_file()
            processor = BlipProcessor.from_pretrained(fine_tuned if has_processor else base)
        elif fine_tuned is not None:
            state = load_seed_state_dict(fine_tuned)  # first: a bad file fails before any model work
            check_model_folder(base, "BLIP captioning", BLIP_TYPES)
            model = _model_for_state(base, state, fine_tuned, dtype)
            processor = BlipProcessor.from_pretrained(base)
            log.info("loaded fine-tuned captioner weights from %s", fine_tuned)
        else:
            model = load_model_folder(BlipForConditionalGeneration, base, "BLIP captioning",
                                      kinds=BLIP_TYPES, dtype=dtype)
            processor = BlipProcessor.from_pretrained(base)
        return cls(model.to(device), processor, device)

    @torch.inference_mode()
    def caption(self, image: Image.Image) -> str:
        inputs = self.processor(images=image.convert("RGB"), return_tensors="pt")
        pixels = inputs["pixel_values"].to(self.device, self.dtype)
        ids = self.model.generate(pixel_values=pixels, max_new_tokens=MAX_NEW_TOKENS, num_beams=1,
                                  do_sample=False)
        return self.processor.decode(ids[0], skip_special_tokens=True).strip()
