"""Fine-tuning the captioner on a tiny random BLIP of the real class and drawn shape sketches.

The tiny BLIP here has the words of the seed's caption template in its vocabulary (its own
writer below, built like tools/fixtures/tiny_models/blip.py), so the training targets tokenize as words.
"""
from __future__ import annotations

import json
import math

import pytest
import torch
from PIL import Image, ImageDraw
from safetensors.torch import load_file
from transformers import BertTokenizer, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor

from captioning.blip import BlipCaptioner
from captioning.prompt import subject_of
from checkpoints import layout
from sketch_search.common.errors import CheckpointFormatError, DatasetError, MissingCheckpointError
from tools.caption_data import load_hub_dataset, load_imagefolder
from tools.finetune_captioner import TrainConfig, class_word, convert_seed, epoch_batches, finetune, main, split_indices
from tools.fixtures.tiny_models.blip import (
    IMAGE_SIZE,
    SPECIAL,
    WORDS,
    tiny_blip_config,
    write_seed_blip_file,
    write_tiny_blip,
)
from tools.make_sketch_captions import caption_for_class, make_sketch_dataset
from tools.make_sketch_captions import main as dataset_main
from tools.training_state import read_progress, state_dir

TEMPLATE_WORDS = "convert into high - resolution color background circle square triangle".split()
SHAPES = ("circle", "square", "triangle")


def write_sketch_blip(folder, seed: int = 0):
    """A tiny random BLIP whose tokenizer knows the caption template's words."""
    words = WORDS + [w for w in TEMPLATE_WORDS if w not in WORDS]
    config = tiny_blip_config()
    config.text_config.vocab_size = len(SPECIAL) + len(words)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    BlipForConditionalGeneration(config).save_pretrained(folder)
    (folder / "vocab.txt").write_text("\n".join(SPECIAL + words) + "\n")
    tokenizer = BertTokenizer(str(folder / "vocab.txt"), bos_token="[DEC]", model_max_length=64)
    images = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    BlipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


def draw_shape(shape: str, variant: int, size: int = 64) -> Image.Image:
    """A black outline on white, position and size varied a little."""
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    margin = 6 + variant % 5
    box = [margin, margin + variant % 3, size - margin - variant % 4, size - margin]
    if shape == "circle":
        draw.ellipse(box, outline="black", width=3)
    elif shape == "square":
        draw.rectangle(box, outline="black", width=3)
    else:
        draw.polygon([(box[0], box[3]), (box[2], box[3]), ((box[0] + box[2]) // 2, box[1])],
                     outline="black", width=3)
    return image


def write_sketchy(folder, per_shape: int = 8, classes=SHAPES):
    for name in classes:
        (folder / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_shape):
            shape = name if name in SHAPES else SHAPES[i % 3]
            draw_shape(shape, i).save(folder / name / f"{name}_{i:02d}.png")
    return folder


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    return write_sketch_blip(tmp_path_factory.mktemp("blip"))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("shapes")
    make_sketch_dataset(write_sketchy(root / "sketchy"), root / "train", show_progress=False)
    return root / "train"


def config(base, data, out, **changes) -> TrainConfig:
    settings = dict(out=out, base=base, data=data, epochs=2, batch_size=6, lr=1e-2, val_fraction=0.25,
                    device="cpu", workers=0, show_progress=False, warmup_fraction=0.0)
    return TrainConfig(**{**settings, **changes})


def trained_weights(folder) -> dict[str, torch.Tensor]:
    return load_file(folder / "model.safetensors")


# -- the dataset maker ------------------------------------------------------------------------
def test_caption_for_class_uses_words_and_the_right_article():
    assert caption_for_class("alarm_clock") == (
        "Convert an alarm clock into a high-resolution color image with a white background")
    assert caption_for_class("hot-air_balloon").startswith("Convert a hot air balloon into")
    assert caption_for_class("car_(sedan)").startswith("Convert a car sedan into")
    for name in ("alarm_clock", "hot-air_balloon", "umbrella", "car_(sedan)"):
        # The prompt builder reads the class back out of the caption the captioner learns.
        assert subject_of(caption_for_class(name)) in ("an alarm clock", "a hot air balloon",
                                                        "an umbrella", "a car sedan")


def test_dataset_maker_writes_an_imagefolder(tmp_path):
    sketchy = write_sketchy(tmp_path / "sketchy", per_shape=5, classes=("alarm_clock", "hot-air_balloon"))
    (tmp_path / "sketchy" / "empty_class").mkdir()
    code = dataset_main(["--sketchy", str(sketchy), "--out", str(tmp_path / "out"), "--per-class", "3"])
    assert code == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "metadata.jsonl").read_text().splitlines()]
    assert len(rows) == 6
    assert {r["class"] for r in rows} == {"alarm_clock", "hot-air_balloon"}
    for row in rows:
        assert (tmp_path / "out" / row["file_name"]).is_file()
        assert row["file_name"].startswith(row["class"] + "/")
        assert row["text"] == caption_for_class(row["class"])
    # The seeded choice is the same on a second run, and the folder reads back as pairs.
    again = make_sketch_dataset(sketchy, tmp_path / "again", per_class=3, show_progress=False)
    assert [json.loads(line)["file_name"] for line in again.read_text().splitlines()] == [
        r["file_name"] for r in rows]
    pairs = load_imagefolder(tmp_path / "out")
    assert len(pairs) == 6 and pairs.text(0) == rows[0]["text"] and pairs.image(0).mode == "RGB"


def test_dataset_maker_refuses_a_folder_without_classes(tmp_path):
    (tmp_path / "flat").mkdir()
    draw_shape("circle", 0).save(tmp_path / "flat" / "loose.png")
    with pytest.raises(DatasetError, match="no class folders") as info:
        make_sketch_dataset(tmp_path / "flat", tmp_path / "out", show_progress=False)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("problem", ["no folder", "no metadata", "bad json", "missing image", "no text"])
def test_bad_training_data_is_one_line(tmp_path, problem):
    folder = tmp_path / "data"
    if problem != "no folder":
        folder.mkdir()
        draw_shape("circle", 0).save(folder / "a.png")
    lines = {"bad json": "{not json\n", "missing image": '{"file_name": "b.png", "text": "x"}\n',
             "no text": '{"file_name": "a.png"}\n'}
    if problem in lines:
        (folder / "metadata.jsonl").write_text(lines[problem])
    with pytest.raises(DatasetError) as info:
        load_imagefolder(folder)
    assert "\n" not in str(info.value) and str(folder) in str(info.value)


def test_hub_dataset_without_the_datasets_package_says_what_to_install():
    try:
        import datasets  # noqa: F401
    except ImportError:
        with pytest.raises(DatasetError, match="pip install datasets") as info:
            load_hub_dataset("someone/sketches")
        assert "\n" not in str(info.value)
    else:
        pytest.skip("`datasets` is installed here: the missing-package message cannot show")


# -- training ---------------------------------------------------------------------------------
def test_split_and_batches_are_seeded():
    train, val = split_indices(24, 0.25, seed=0)
    assert len(val) == 6 and sorted(train + val) == list(range(24))
    assert split_indices(24, 0.25, seed=0) == (train, val) != split_indices(24, 0.25, seed=1)
    assert epoch_batches(train, 5, 0, 1) == epoch_batches(train, 5, 0, 1) != epoch_batches(train, 5, 0, 2)
    assert [len(b) for b in epoch_batches(train, 5, 0, 0)] == [5, 5, 5, 3]


def test_class_word_compares_subjects():
    assert class_word(caption_for_class("alarm_clock")) == "alarm clock"
    assert class_word("a black and white drawing of an alarm clock") == "alarm clock"
    assert class_word("convert a circle into a") != class_word(caption_for_class("square"))


def test_loss_falls_and_the_folder_captions_through_the_product(base, data, tmp_path):
    checkpoints = tmp_path / "checkpoints"
    out = checkpoints / layout.BLIP_SKETCH_DIR
    result = finetune(config(base, data, out, epochs=4))
    assert result.finished and result.global_step == result.total_steps == 4 * 3
    history = result.history
    assert [h["epoch"] for h in history] == [1, 2, 3, 4]
    assert history[-1]["train_loss"] < 0.6 * history[0]["train_loss"]
    assert history[-1]["val_loss"] < history[0]["val_loss"]
    assert all(0.0 <= h["val_class_match"] <= 1.0 for h in history)
    assert not state_dir(out).exists()  # a finished run leaves no resume state behind
    # The pipeline's auto mode finds it, and the captioner loads and runs it as it is.
    write_tiny_blip(checkpoints / layout.BLIP_BASE[1])
    assert layout.fine_tuned_captioner(checkpoints) == out
    captioner = BlipCaptioner.from_pretrained(base, fine_tuned=out)
    caption = captioner.caption(draw_shape("circle", 1))
    assert caption.startswith("convert a"), caption  # it learned the template's words
    saved = trained_weights(out)
    stock = load_file(base / "model.safetensors")
    assert any(not torch.equal(saved[k], stock[k]) for k in stock)
    assert json.loads((out / "training_history.json").read_text())["history"] == history


def test_interrupted_run_continues_where_it_stopped(base, data, tmp_path):
    whole = finetune(config(base, data, tmp_path / "whole"))
    out = tmp_path / "pieces"
    # A first session stops at --max-steps: the model so far is written, the state kept.
    first = finetune(config(base, data, out, max_steps=2))
    assert not first.finished and first.global_step == 2
    assert read_progress(out).global_step == 2 and (out / "config.json").is_file()

    def interrupt(info):
        if info.global_step == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        finetune(config(base, data, out), on_step=interrupt)
    progress = read_progress(out)
    assert (progress.global_step, progress.epoch, progress.batches_done) == (4, 1, 1)
    steps = []
    last = finetune(config(base, data, out), on_step=lambda info: steps.append(info.global_step))
    assert steps == [5, 6] and last.finished  # continues, never restarts
    assert [h["step"] for h in last.history] == [3, 6]
    expected, got = trained_weights(tmp_path / "whole"), trained_weights(out)
    assert whole.global_step == last.global_step
    for name, value in expected.items():  # the same training as one uninterrupted run
        torch.testing.assert_close(got[name], value, rtol=1e-5, atol=1e-6, msg=name)


def test_resume_with_other_settings_is_refused(base, data, tmp_path):
    out = tmp_path / "out"
    finetune(config(base, data, out, max_steps=1))
    with pytest.raises(CheckpointFormatError, match="--restart") as info:
        finetune(config(base, data, out, lr=1e-3))
    assert "\n" not in str(info.value) and "lr" in str(info.value)
    restarted = finetune(config(base, data, out, lr=1e-3, restart=True, max_steps=1))
    assert restarted.global_step == 1


def test_lora_trains_adapters_and_saves_a_plain_folder(base, data, tmp_path):
    out = tmp_path / "lora"
    result = finetune(config(base, data, out, lora=True, lora_rank=4, epochs=2, lr=2e-2))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    saved, stock = trained_weights(out), load_file(base / "model.safetensors")
    assert not any("lora" in k or "base_layer" in k for k in saved)
    assert set(saved) == set(stock)
    changed = {k for k in stock if not torch.equal(saved[k], stock[k])}
    assert changed and all(k.startswith("text_decoder.") and k.endswith(
        ("query.weight", "key.weight", "value.weight")) for k in changed), sorted(changed)[:5]
    assert BlipCaptioner.from_pretrained(base, fine_tuned=out).caption(draw_shape("square", 2))


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_trains_saves_float32_and_resumes(base, data, tmp_path, precision):
    # The CUDA path's autocast and fp16 loss scaling, run on the CPU.
    out = tmp_path / precision
    finetune(config(base, data, out, precision=precision, max_steps=2))
    state = torch.load(state_dir(out) / "state.pt", weights_only=True)
    assert bool(state["scaler"]) == (precision == "fp16")  # the fp16 loss scale survives a resume
    result = finetune(config(base, data, out, precision=precision))
    assert result.finished and result.global_step == 6
    assert all(math.isfinite(h["train_loss"]) and math.isfinite(h["val_loss"]) for h in result.history)
    assert all(v.dtype == torch.float32 for v in trained_weights(out).values())


def test_grad_accum_counts_optimizer_steps(base, data, tmp_path):
    result = finetune(config(base, data, tmp_path / "acc", epochs=1, batch_size=2, grad_accum=4,
                             val_fraction=0.0))
    assert result.global_step == math.ceil(math.ceil(24 / 2) / 4) == 3
    assert result.history[0].get("val_loss") is None


def test_command_line_trains_and_converts_the_seed_file(base, data, tmp_path):
    out = tmp_path / "cli"
    assert main(["--data", str(data), "--out", str(out), "--base", str(base), "--epochs", "1",
                 "--batch-size", "8", "--device", "cpu"]) == 0  # images decoded by 2 worker processes
    assert (out / "model.safetensors").is_file()
    assert BlipProcessor.from_pretrained(out).tokenizer.convert_tokens_to_ids("circle") > 5

    stock_dir = write_tiny_blip(tmp_path / "stock")
    seed_file = write_seed_blip_file(tmp_path / "blip_sketch.pt", seed=5)
    converted = tmp_path / "converted"
    assert main(["--convert-seed", str(seed_file), "--base", str(stock_dir), "--out", str(converted)]) == 0
    expected = torch.load(seed_file, weights_only=True)["model_state_dict"]
    loaded = BlipCaptioner.from_pretrained(stock_dir, fine_tuned=converted)
    for name, value in loaded.model.state_dict().items():
        if name in expected:
            assert torch.equal(value, expected[name]), name
    assert loaded.caption(draw_shape("circle", 0))


def test_convert_seed_refuses_a_foreign_file(tmp_path):
    stock_dir = write_tiny_blip(tmp_path / "stock")
    foreign = tmp_path / "foreign.pt"
    torch.save({"model_state_dict": {"encoder.weight": torch.zeros(3, 3)}}, foreign)
    with pytest.raises(CheckpointFormatError):
        convert_seed(foreign, stock_dir, tmp_path / "out")
    with pytest.raises(MissingCheckpointError):
        convert_seed(tmp_path / "missing.pt", stock_dir, tmp_path / "out")
    assert not (tmp_path / "out" / "config.json").exists()


def test_missing_base_is_one_line(data, tmp_path):
    with pytest.raises(MissingCheckpointError, match="checkpoints.fetch") as info:
        finetune(config(tmp_path / "nowhere", data, tmp_path / "out"))
    assert "\n" not in str(info.value)
