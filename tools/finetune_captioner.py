"""Fine-tune BLIP captioning on sketches, or convert the seed's fine-tuned file.

    python -m tools.finetune_captioner --data DIR --out checkpoints/blip-sketch [--base MODEL]
        [--epochs N] [--batch-size N] [--grad-accum N] [--lr X] [--lora] [--val-fraction F]
    python -m tools.finetune_captioner --convert-seed blip_sketch.pt --base DIR --out checkpoints/blip-sketch

The output is a plain Hugging Face BLIP folder (model + processor; LoRA adapters are merged
into the weights) that `BlipCaptioner.from_pretrained(base, fine_tuned=OUT)` loads and that the
pipeline's `--captioner auto` picks when it is `checkpoints/blip-sketch`.

A run saves its state (weights, optimizer, scheduler, random generators, position) in
OUT/.resume every --save-every steps, at each epoch's end and when interrupted (Ctrl-C); running
the same command again continues from there. --max-steps stops after that many optimizer steps
in all, writing the model so far and keeping the state, so training can go on in later sessions.
"""
from __future__ import annotations

import argparse
import copy
import json
import logging
import math
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm
from transformers import BlipForConditionalGeneration, BlipProcessor

from captioning.blip import MAX_NEW_TOKENS, BlipCaptioner
from captioning.prompt import subject_of
from checkpoints import layout
from sketch_search.app.cli import quiet_model_libraries
from sketch_search.app.precision import TRAINING_PRECISIONS as PRECISIONS
from sketch_search.app.precision import pick_device, training_autocast
from sketch_search.common.command import run_command, setup_logging
from sketch_search.common.commands_named import Program, named
from sketch_search.common.errors import DatasetError, MissingCheckpointError, SketchSearchError
from tools.caption_data import CaptionPairs, load_hub_dataset, load_imagefolder
from tools.training_state import Progress, load_state, read_progress, save_state, state_dir

log = logging.getLogger(__name__)

DEFAULT_BASE = Path("checkpoints") / layout.BLIP_BASE[1]
DEFAULT_OUT = Path("checkpoints") / layout.BLIP_SKETCH_DIR
# The text decoder's self- and cross-attention projections (BERT naming inside BLIP).
LORA_TARGETS = r"text_decoder\.bert\.encoder\.layer\.\d+\.(attention|crossattention)\.self\.(query|key|value)"
HISTORY_FILE = "training_history.json"
MAX_TEXT_TOKENS = 64  # the seed's caption is about 20 tokens


@dataclass
class TrainConfig:
    out: Path = DEFAULT_OUT
    base: str | Path = DEFAULT_BASE
    data: Path | None = None             # an imagefolder
    hf_dataset: str | None = None        # or a hub dataset (needs `datasets`)
    hf_split: str = "train"
    image_column: str = "image"
    caption_column: str = "text"
    epochs: int = 3
    batch_size: int = 16
    grad_accum: int = 1
    lr: float | None = None              # default: 5e-5 full, 2e-4 LoRA
    weight_decay: float = 0.01
    warmup_fraction: float = 0.05
    val_fraction: float = 0.05
    seed: int = 0
    lora: bool = False
    lora_rank: int = 16
    lora_alpha: int = 32
    lora_dropout: float = 0.05
    freeze_vision: bool = False
    max_steps: int | None = None
    save_every: int = 500                # optimizer steps between resume saves (0: epochs only)
    device: str = "auto"
    precision: str = "auto"              # auto: bf16 (or fp16) autocast on CUDA, fp32 elsewhere
    workers: int = 2
    restart: bool = False
    keep_state: bool = False
    show_progress: bool = True

    def __post_init__(self) -> None:
        self.out = Path(self.out).expanduser()
        if self.lr is None:
            self.lr = 2e-4 if self.lora else 5e-5

    def identity(self, examples: int) -> dict:
        """What must match for a saved state to be continued."""
        keys = ("base", "data", "hf_dataset", "hf_split", "caption_column", "epochs", "batch_size",
                "grad_accum", "lr", "weight_decay", "warmup_fraction", "val_fraction", "seed", "lora",
                "lora_rank", "lora_alpha", "lora_dropout", "freeze_vision", "precision")
        values = {k: getattr(self, k) for k in keys}
        values = {k: str(v) if isinstance(v, Path) else v for k, v in values.items()}
        return {**values, "examples": examples}


@dataclass
class StepInfo:
    """Handed to the progress callback after each optimizer step."""

    epoch: int
    global_step: int
    total_steps: int
    loss: float


@dataclass
class TrainResult:
    out: Path
    finished: bool                       # False when stopped by --max-steps
    global_step: int
    total_steps: int
    history: list[dict] = field(default_factory=list)


# -- pieces -----------------------------------------------------------------------------------
def class_word(text: str) -> str:
    """The subject the prompt builder takes from a caption, without its article."""
    return re.sub(r"^(?:a|an|the)\s+", "", subject_of(text))


def split_indices(count: int, val_fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """A seeded train/validation split; at least one training example always stays."""
    if not 0.0 <= val_fraction < 1.0:
        raise DatasetError(f"--val-fraction {val_fraction}: must be in [0, 1)")
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    val_count = min(count - 1, round(count * val_fraction)) if val_fraction > 0 else 0
    return sorted(order[val_count:]), sorted(order[:val_count])


def epoch_batches(train: list[int], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The epoch's shuffled batches; the same for the same seed and epoch, so a resume skips exactly."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = [train[i] for i in torch.randperm(len(train), generator=generator).tolist()]
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


class _PairDataset(torch.utils.data.Dataset):
    def __init__(self, pairs: CaptionPairs, image_processor):
        self.pairs = pairs
        self.image_processor = image_processor

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str]:
        pixels = self.image_processor(images=self.pairs.image(index), return_tensors="pt")["pixel_values"]
        return pixels[0], self.pairs.text(index)


class _Collate:
    """Stacks images and tokenizes captions as BLIP's decoder is trained: [DEC] first, pads ignored."""

    def __init__(self, tokenizer, bos_token_id: int):
        self.tokenizer = tokenizer
        self.bos_token_id = bos_token_id

    def __call__(self, items: list[tuple[torch.Tensor, str]]) -> dict[str, torch.Tensor]:
        pixels = torch.stack([pixels for pixels, _ in items])
        texts = [text for _, text in items]
        tokens = self.tokenizer(texts, padding="longest", truncation=True,
                                max_length=min(MAX_TEXT_TOKENS, self.tokenizer.model_max_length),
                                return_tensors="pt")
        input_ids = tokens["input_ids"].clone()
        input_ids[:, 0] = self.bos_token_id
        labels = input_ids.masked_fill(tokens["attention_mask"] == 0, -100)
        return {"pixel_values": pixels, "input_ids": input_ids,
                "attention_mask": tokens["attention_mask"], "labels": labels, "texts": texts}


def load_base(base: str | Path) -> tuple[BlipForConditionalGeneration, BlipProcessor]:
    source = str(base)
    if Path(source).expanduser().exists():
        source = str(Path(source).expanduser())
    elif source == str(DEFAULT_BASE) or "/" not in source or source.startswith((".", "/", "~")):
        raise MissingCheckpointError(
            f"--base {base}: no such folder; download BLIP with `{named(Program.FETCH)}` or pass "
            f"--base {layout.BLIP_BASE[0]} to load it from the hub")
    try:
        model = BlipForConditionalGeneration.from_pretrained(source, dtype=torch.float32)
        processor = BlipProcessor.from_pretrained(source)
    except OSError as exc:
        raise MissingCheckpointError(f"--base {base}: cannot load BLIP ({str(exc).splitlines()[0]}); "
                                     f"pass a BLIP captioning folder or hub id") from exc
    return model, processor


def add_lora(model: BlipForConditionalGeneration, config: TrainConfig):
    """LoRA adapters on the text decoder's attention, injected in place; returns the PeftModel."""
    from peft import LoraConfig, get_peft_model
    lora = LoraConfig(r=config.lora_rank, lora_alpha=config.lora_alpha,
                      lora_dropout=config.lora_dropout, target_modules=LORA_TARGETS, bias="none")
    return get_peft_model(model, lora)


def write_model_folder(model: BlipForConditionalGeneration, processor: BlipProcessor, out: Path,
                       extra: dict[str, str] | None = None) -> Path:
    """Save model + processor into `out`; config.json arrives last, so a half-written folder is
    never taken for a complete one (the loaders need config.json and the weights)."""
    out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out, prefix=".saving-"))
    try:
        model.save_pretrained(staging)
        processor.save_pretrained(staging)
        for name, text in (extra or {}).items():
            (staging / name).write_text(text)
        names = sorted((p.name for p in staging.iterdir()), key=lambda n: n == "config.json")
        for name in names:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def plain_model(blip: BlipForConditionalGeneration, peft_model) -> BlipForConditionalGeneration:
    """A BLIP with no adapters: a merged copy when LoRA is on, else the model itself."""
    if peft_model is None:
        return blip
    return copy.deepcopy(peft_model).merge_and_unload()


# -- training ---------------------------------------------------------------------------------
def _load_pairs(config: TrainConfig) -> CaptionPairs:
    if (config.data is None) == (config.hf_dataset is None):
        raise DatasetError("pass either --data DIR (an imagefolder) or --hf-dataset NAME")
    if config.hf_dataset:
        return load_hub_dataset(config.hf_dataset, config.hf_split, config.image_column,
                                config.caption_column)
    return load_imagefolder(config.data, config.caption_column)


def _check(config: TrainConfig) -> None:
    for name in ("epochs", "batch_size", "grad_accum"):
        if getattr(config, name) < 1:
            raise SketchSearchError(f"--{name.replace('_', '-')} {getattr(config, name)}: must be at least 1")
    if config.max_steps is not None and config.max_steps < 1:
        raise SketchSearchError(f"--max-steps {config.max_steps}: must be at least 1")
    if config.precision not in PRECISIONS:
        raise SketchSearchError(f"--precision {config.precision}: choose one of {', '.join(PRECISIONS)}")


def _loader(dataset: _PairDataset, batches: list[list[int]], collate: _Collate, workers: int,
            device: torch.device):
    return torch.utils.data.DataLoader(dataset, batch_sampler=batches, collate_fn=collate,
                                       num_workers=workers, pin_memory=device.type == "cuda",
                                       persistent_workers=False)


def _to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items() if isinstance(v, torch.Tensor)}


@torch.no_grad()
def validate(model: BlipForConditionalGeneration, processor: BlipProcessor, dataset: _PairDataset,
             indices: list[int], collate: _Collate, config: TrainConfig, device: torch.device,
             amp: torch.dtype | None) -> dict[str, float]:
    """Mean loss and class-word exact match (greedy captions) on the held-out examples."""
    if not indices:
        return {}
    was_training = model.training
    model.eval()
    batches = [indices[i:i + config.batch_size] for i in range(0, len(indices), config.batch_size)]
    loss_sum, matches = 0.0, 0
    autocast = torch.autocast(device.type, dtype=amp) if amp else nullcontext()
    for batch in tqdm(_loader(dataset, batches, collate, config.workers, device), total=len(batches),
                      desc="validating", unit="batch", leave=False, disable=not config.show_progress):
        inputs = _to_device(batch, device)
        with autocast:
            loss = model(**inputs).loss
            ids = model.generate(pixel_values=inputs["pixel_values"], max_new_tokens=MAX_NEW_TOKENS,
                                 num_beams=1, do_sample=False)
        loss_sum += float(loss) * len(batch["texts"])
        for generated, target in zip(processor.batch_decode(ids, skip_special_tokens=True), batch["texts"]):
            matches += class_word(generated) == class_word(target)
    model.train(was_training)
    return {"val_loss": loss_sum / len(indices), "val_class_match": matches / len(indices)}


def _schedule(total_steps: int, warmup_fraction: float) -> Callable[[int], float]:
    warmup = max(1, round(total_steps * warmup_fraction)) if warmup_fraction > 0 else 0

    def factor(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))
    return factor


def finetune(config: TrainConfig, on_step: Callable[[StepInfo], None] | None = None) -> TrainResult:
    """Train, resuming from OUT/.resume when it holds a run with the same settings.

    `on_step` is called after each optimizer step (e.g. to show progress elsewhere); an
    exception it raises, KeyboardInterrupt included, ends the run after saving its state.
    """
    _check(config)
    pairs = _load_pairs(config)
    device = pick_device(config.device)
    amp = training_autocast(config.precision, device)
    torch.manual_seed(config.seed)
    blip, processor = load_base(config.base)
    if config.freeze_vision:
        blip.vision_model.requires_grad_(False)
    peft_model = add_lora(blip, config) if config.lora else None
    blip.to(device).train()
    trainable = [p for p in blip.parameters() if p.requires_grad]
    log.info("%d of %d parameters trainable (%s)", sum(p.numel() for p in trainable),
             sum(p.numel() for p in blip.parameters()), "LoRA" if config.lora else "full")

    train_idx, val_idx = split_indices(len(pairs), config.val_fraction, config.seed)
    steps_per_epoch = math.ceil(math.ceil(len(train_idx) / config.batch_size) / config.grad_accum)
    total_steps = steps_per_epoch * config.epochs
    optimizer = torch.optim.AdamW(trainable, lr=config.lr, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _schedule(total_steps, config.warmup_fraction))
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
    identity = config.identity(len(pairs))
    if config.restart and state_dir(config.out).exists():
        shutil.rmtree(state_dir(config.out))
    progress = load_state(config.out, identity, blip, optimizer, scheduler, scaler) or Progress()

    dataset = _PairDataset(pairs, processor.image_processor)
    collate = _Collate(processor.tokenizer, blip.config.text_config.bos_token_id)
    autocast = (lambda: torch.autocast(device.type, dtype=amp)) if amp else nullcontext

    def save() -> None:
        save_state(config.out, identity, progress, blip, optimizer, scheduler, scaler)

    def write_model() -> None:
        model = plain_model(blip, peft_model)
        history = json.dumps({"history": progress.history, "global_step": progress.global_step,
                              "settings": identity}, indent=2)
        write_model_folder(model, processor, config.out, {HISTORY_FILE: history})
        log.info("fine-tuned captioner written to %s", config.out)

    in_step = False
    if config.max_steps is not None and progress.global_step >= config.max_steps:
        write_model()
        return TrainResult(config.out, False, progress.global_step, total_steps, progress.history)
    bar = tqdm(total=total_steps, initial=progress.global_step, desc="fine-tuning", unit="step",
               disable=not config.show_progress)
    try:
        while progress.epoch < config.epochs:
            batches = epoch_batches(train_idx, config.batch_size, config.seed, progress.epoch)
            remaining = batches[progress.batches_done:]
            loss_sum, loss_count, pending = 0.0, 0, 0
            for number, batch in enumerate(_loader(dataset, remaining, collate, config.workers, device),
                                           start=progress.batches_done + 1):
                inputs = _to_device(batch, device)
                with autocast():
                    loss = blip(**inputs).loss
                scaler.scale(loss / config.grad_accum).backward()
                loss_sum += float(loss.detach())
                loss_count += 1
                pending += 1
                if pending < config.grad_accum and number < len(batches):
                    continue
                in_step = True  # an interrupt here would leave the weights half updated
                scaler.unscale_(optimizer)
                torch.nn.utils.clip_grad_norm_(trainable, 1.0)
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                scheduler.step()
                progress.global_step += 1
                progress.batches_done = number
                in_step = False
                pending = 0
                mean_loss = loss_sum / loss_count
                bar.update(1)
                bar.set_postfix(epoch=progress.epoch + 1, loss=f"{mean_loss:.4f}")
                if on_step:
                    on_step(StepInfo(progress.epoch, progress.global_step, total_steps, mean_loss))
                if config.max_steps is not None and progress.global_step >= config.max_steps:
                    save()
                    write_model()
                    log.info("stopped at --max-steps %d; run again to continue", config.max_steps)
                    return TrainResult(config.out, False, progress.global_step, total_steps,
                                       progress.history)
                if config.save_every and progress.global_step % config.save_every == 0:
                    save()
            record = {"epoch": progress.epoch + 1, "step": progress.global_step,
                      "train_loss": loss_sum / loss_count if loss_count else None,
                      **validate(blip, processor, dataset, val_idx, collate, config, device, amp)}
            progress.history.append(record)
            log.info("epoch %d: %s", record["epoch"],
                     ", ".join(f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
            progress.epoch += 1
            progress.batches_done = 0
            save()
    except BaseException:
        if not in_step and progress.global_step > 0:
            save()  # the last finished optimizer step; the accumulating batches are redone
        raise
    finally:
        bar.close()
    write_model()
    if not config.keep_state:
        shutil.rmtree(state_dir(config.out), ignore_errors=True)
    return TrainResult(config.out, True, progress.global_step, total_steps, progress.history)


def convert_seed(seed_file: str | Path, base: str | Path, out: str | Path) -> Path:
    """The seed project's `model_state_dict` file as a BLIP folder (weights checked on loading)."""
    seed_file = Path(seed_file).expanduser()
    if not seed_file.is_file():
        raise MissingCheckpointError(f"--convert-seed {seed_file}: no such file")
    base_path = Path(str(base)).expanduser()
    try:
        captioner = BlipCaptioner.from_pretrained(base_path if base_path.exists() else base,
                                                  fine_tuned=seed_file)
    except OSError as exc:
        raise MissingCheckpointError(f"--base {base}: cannot load BLIP ({str(exc).splitlines()[0]}); "
                                     f"pass the BLIP captioning folder the seed was trained from") from exc
    return write_model_folder(captioner.model, captioner.processor, Path(out).expanduser())


# -- command line -----------------------------------------------------------------------------
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Fine-tune BLIP captioning on sketch-caption pairs (full or LoRA), or convert "
                    "the seed's fine-tuned file, into a BLIP folder the captioner loads.")
    source = parser.add_argument_group("data")
    source.add_argument("--data", type=Path, help="imagefolder: images + metadata.jsonl (file_name, text)")
    source.add_argument("--hf-dataset", help="a hub dataset with image and text columns (needs `datasets`)")
    source.add_argument("--hf-split", default="train")
    source.add_argument("--image-column", default="image", help="hub dataset's image column")
    source.add_argument("--caption-column", default="text", help="the caption column (default text)")
    parser.add_argument("--convert-seed", type=Path, metavar="FILE",
                        help="instead of training: write the seed's blip_sketch.pt as a BLIP folder")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--base", default=str(DEFAULT_BASE),
                        help=f"BLIP captioning folder or hub id to start from (default {DEFAULT_BASE})")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--lr", type=float, default=None, help="peak learning rate (default 5e-5, LoRA 2e-4)")
    parser.add_argument("--weight-decay", type=float, default=0.01)
    parser.add_argument("--warmup", type=float, default=0.05, help="fraction of steps of linear warm-up")
    parser.add_argument("--val-fraction", type=float, default=0.05, help="held-out share (seeded split)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lora", action="store_true", help="train LoRA adapters on the text decoder's "
                                                            "attention instead of all weights")
    parser.add_argument("--lora-rank", type=int, default=16)
    parser.add_argument("--lora-alpha", type=int, default=32)
    parser.add_argument("--freeze-vision", action="store_true", help="keep the image encoder fixed")
    parser.add_argument("--max-steps", type=int, default=None,
                        help="stop after N optimizer steps in all (the model so far is written and "
                             "the state kept: run again without it to go on)")
    parser.add_argument("--save-every", type=int, default=500, help="steps between resume saves")
    parser.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"), default="auto")
    parser.add_argument("--precision", choices=PRECISIONS, default="auto",
                        help="auto: bf16 (fp16 on older GPUs) autocast on CUDA, fp32 elsewhere")
    parser.add_argument("--workers", type=int, default=2, help="image-decoding worker processes")
    parser.add_argument("--restart", action="store_true", help="ignore a saved state and start over")
    parser.add_argument("--keep-state", action="store_true", help="keep OUT/.resume after finishing")
    parser.add_argument("-v", "--verbose", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.verbose)
    quiet_model_libraries()
    if args.convert_seed:
        out = convert_seed(args.convert_seed, args.base, args.out)
        print(f"seed weights written as a BLIP folder to {out}")
        return 0
    config = TrainConfig(out=args.out, base=args.base, data=args.data, hf_dataset=args.hf_dataset,
                         hf_split=args.hf_split, image_column=args.image_column,
                         caption_column=args.caption_column, epochs=args.epochs,
                         batch_size=args.batch_size, grad_accum=args.grad_accum, lr=args.lr,
                         weight_decay=args.weight_decay, warmup_fraction=args.warmup,
                         val_fraction=args.val_fraction, seed=args.seed, lora=args.lora,
                         lora_rank=args.lora_rank, lora_alpha=args.lora_alpha,
                         freeze_vision=args.freeze_vision, max_steps=args.max_steps,
                         save_every=args.save_every, device=args.device, precision=args.precision,
                         workers=args.workers, restart=args.restart, keep_state=args.keep_state)
    try:
        result = finetune(config)
    except KeyboardInterrupt:
        saved = read_progress(config.out)
        if saved is None:
            print("interrupted before the first training step: nothing saved", file=sys.stderr)
        else:
            print(f"interrupted: step {saved.global_step} is saved in {state_dir(config.out)}; run "
                  f"the same command to continue", file=sys.stderr)
        return 130
    for record in result.history:
        print("epoch " + str(record["epoch"]) + ": " + ", ".join(
            f"{k} {v:.4f}" for k, v in record.items() if isinstance(v, float)))
    state = "finished" if result.finished else "stopped at --max-steps (run again to continue)"
    print(f"{state}: step {result.global_step} of {result.total_steps}; model in {result.out}")
    return 0


if __name__ == "__main__":
    run_command(main)
