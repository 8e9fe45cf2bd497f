"""Full-size random models and a real-sized gallery for the benchmarks, built once into a cache.

The models are the product's real classes at the published sizes (random weights cost the same
compute as trained ones), saved in the real on-disk formats so that the product's loading code is
timed too:

- BLIP base captioning as Salesforce/blip-image-captioning-base's config (ViT-B/16 at 384 px,
  12-layer BERT decoder, vocabulary 30524) with a synthetic word list of the real size;
- SD-Turbo as stabilityai/sd-turbo: OpenCLIP ViT-H text encoder as CLIPTextModel (1024 wide, 23
  layers), SD 2.1's UNet (320/640/1280/1280) and SD's VAE (128/256/512/512), a synthetic CLIP BPE
  vocabulary of 49408 tokens, SD-Turbo's scheduler config;
- pix2pix-turbo's LoRA file (UNet rank 8, VAE rank 4, the authors' target lists, skip convs and the
  twin first conv) built the authors' way by tools/fixtures/tiny_models/sd_turbo.py;
- DINOv2 base (ViT-B/14, 518 px positions) with facebook/dinov2-base's processor (256 / 224).

The cache lives in $SKETCH_BENCH_CACHE or ~/.cache/sketch-search-bench (about 7 GB of models and
3 GB of photos when everything is built). Building takes a few minutes the first time.
"""
from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import random
import resource
import subprocess
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from checkpoints import layout
from sketch_search.common.command import run_command, setup_logging

ROOT = Path(__file__).resolve().parents[1]

log = logging.getLogger("bench")

CACHE = Path(os.environ.get("SKETCH_BENCH_CACHE", Path.home() / ".cache" / "sketch-search-bench"))
SKETCH = ROOT / "examples" / "sketches" / "cat.png"
DONE = ".complete"  # written last: a folder without it is rebuilt

# -- published configs ---------------------------------------------------------------------------
# Salesforce/blip-image-captioning-base config.json (the values that set the compute).
BLIP_TEXT = dict(vocab_size=30524, hidden_size=768, encoder_hidden_size=768, intermediate_size=3072,
                 num_hidden_layers=12, num_attention_heads=12, max_position_embeddings=512,
                 layer_norm_eps=1e-12, pad_token_id=0, sep_token_id=102, bos_token_id=30522,
                 eos_token_id=2)
BLIP_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                   image_size=384, patch_size=16, layer_norm_eps=1e-5)
BLIP_IMAGE_MEAN = [0.48145466, 0.4578275, 0.40821073]
BLIP_IMAGE_STD = [0.26862954, 0.26130258, 0.27577711]
# stabilityai/sd-turbo text_encoder/config.json (OpenCLIP ViT-H/14's text tower).
SD_TURBO_TEXT = dict(vocab_size=49408, hidden_size=1024, intermediate_size=4096, num_hidden_layers=23,
                     num_attention_heads=16, max_position_embeddings=77, hidden_act="gelu",
                     projection_dim=1024, layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0,
                     eos_token_id=2)
# stabilityai/sd-turbo unet/config.json (SD 2.1's UNet at 512 px).
SD_TURBO_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                     block_out_channels=(320, 640, 1280, 1280),
                     down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                     up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                     attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                     use_linear_projection=True, flip_sin_to_cos=True, freq_shift=0, act_fn="silu",
                     norm_num_groups=32, norm_eps=1e-5, downsample_padding=1)
# stabilityai/sd-turbo vae/config.json (SD's VAE).
SD_TURBO_VAE = dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
                    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
                    layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=768,
                    act_fn="silu", scaling_factor=0.18215)
# facebook/dinov2-base config.json and preprocessor_config.json.
DINOV2_BASE = dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, mlp_ratio=4,
                   patch_size=14, image_size=518, layerscale_value=1.0, drop_path_rate=0.0)
DINOV2_RESIZE, DINOV2_CROP = 256, 224

# Trained LoRA B weights start at zero and stay small; lora_A keeps peft's gaussian init (std 1/r).
LORA_B_STD = 0.005
TWIN_CONV_STD = 0.01


# -- models --------------------------------------------------------------------------------------
def write_blip_base(out: Path, seed: int = 0) -> Path:
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration, BlipImageProcessor, BlipProcessor
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = BlipConfig(text_config=BLIP_TEXT, vision_config=BLIP_VISION, projection_dim=512,
                        image_text_hidden_size=256)
    BlipForConditionalGeneration(config).eval().save_pretrained(out)
    # bert-base-uncased has 30522 entries; BLIP adds [DEC] (its bos) and one more.
    special = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    words = [f"w{i}" for i in range(30522 - len(special))]
    vocab_file = out / "vocab.txt"
    vocab_file.write_text("\n".join(special + words) + "\n")
    tokenizer = BertTokenizer(str(vocab_file), bos_token="[DEC]", model_max_length=512)
    tokenizer.add_special_tokens({"additional_special_tokens": ["[ENC]"]})
    images = BlipImageProcessor(size={"height": 384, "width": 384}, image_mean=BLIP_IMAGE_MEAN,
                                image_std=BLIP_IMAGE_STD, resample=3)
    BlipProcessor(image_processor=images, tokenizer=tokenizer).save_pretrained(out)
    return out


def write_clip_tokenizer(folder: Path, vocab_size: int = 49408) -> int:
    """CLIP BPE files of the real size: bytes, byte+</w>, synthetic merges, the two specials."""
    from tools.fixtures.tiny_models.sd_turbo import PAD_TOKEN, _bytes_to_unicode
    folder.mkdir(parents=True, exist_ok=True)
    chars = _bytes_to_unicode()
    vocab = chars + [c + "</w>" for c in chars]
    known = set(vocab)
    merges: list[str] = []
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    need = vocab_size - 2 - len(vocab)
    frontier = list(letters)
    while len(merges) < need:  # letter n-grams, left to right, each built from tokens already known
        grown = []
        for prefix in frontier:
            for letter in letters:
                for tail in (letter, letter + "</w>"):
                    token = prefix + tail
                    if token in known or len(merges) >= need:
                        continue
                    merges.append(f"{prefix} {tail}")
                    vocab.append(token)
                    known.add(token)
                    if not tail.endswith("</w>"):
                        grown.append(token)
        frontier = grown
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}, ensure_ascii=False))
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>",
               "unk_token": "<|endoftext|>", "pad_token": PAD_TOKEN}
    (folder / "special_tokens_map.json").write_text(json.dumps(special, indent=2))
    config = {"tokenizer_class": "CLIPTokenizer", "model_max_length": 77, "do_lower_case": True,
              "add_prefix_space": False, "errors": "replace", **special}
    (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    return len(vocab)


def write_sd_turbo(out: Path, seed: int = 0) -> Path:
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from tools.fixtures.tiny_models.sd_turbo import MODEL_INDEX, SD_TURBO_SCHEDULER, SD_TURBO_SCHEDULER_EXTRA
    out.mkdir(parents=True, exist_ok=True)
    vocab = write_clip_tokenizer(out / "tokenizer")
    assert vocab == SD_TURBO_TEXT["vocab_size"], vocab
    torch.manual_seed(seed)
    CLIPTextModel(CLIPTextConfig(**SD_TURBO_TEXT)).save_pretrained(out / "text_encoder")
    UNet2DConditionModel(**SD_TURBO_UNET).save_pretrained(out / "unet")
    AutoencoderKL(**SD_TURBO_VAE).save_pretrained(out / "vae")
    EulerDiscreteScheduler(**SD_TURBO_SCHEDULER).save_pretrained(out / "scheduler")
    config_file = out / "scheduler" / "scheduler_config.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps(dict(sorted({**config, **SD_TURBO_SCHEDULER_EXTRA}.items())), indent=2))
    (out / "model_index.json").write_text(json.dumps(MODEL_INDEX, indent=2))
    return out


def write_lora_file(path: Path, sd_turbo: Path, seed: int = 0) -> Path:
    """The authors' LoRA file for the full-size SD-Turbo, with trained-like magnitudes.

    The model is built by tools/fixtures/tiny_models/sd_turbo.py's `build_authors_model` (the authors'
    ranks, target lists, skip convs and twin conv); the tiny writer's noise (std 0.2) would dwarf
    full-size weights, so lora_B and the twin conv's change are drawn small here.
    """
    from tools.fixtures.tiny_models.sd_turbo import RANK_UNET, RANK_VAE, UNET_TARGETS, VAE_TARGETS, build_authors_model
    torch.manual_seed(seed)
    unet, vae = build_authors_model(sd_turbo)
    generator = torch.Generator().manual_seed(seed)
    state_unet = {k: v.clone() for k, v in unet.state_dict().items() if "lora" in k or "conv_in" in k}
    state_vae = {k: v.clone() for k, v in vae.state_dict().items() if "lora" in k or "skip" in k}
    for state in (state_unet, state_vae):
        for key, value in state.items():
            if "lora_B" in key:
                state[key] = torch.randn(value.shape, generator=generator) * LORA_B_STD
            elif key.startswith("conv_in.conv_in_curr."):
                state[key] = value + torch.randn(value.shape, generator=generator) * TWIN_CONV_STD
    del unet, vae
    torch.save({"rank_unet": RANK_UNET, "unet_lora_target_modules": UNET_TARGETS,
                "rank_vae": RANK_VAE, "vae_lora_target_modules": VAE_TARGETS,
                "state_dict_unet": state_unet, "state_dict_vae": state_vae}, path)
    return path


def write_dinov2_base(out: Path, seed: int = 0) -> Path:
    from transformers import BitImageProcessorPil, Dinov2Config, Dinov2Model
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    Dinov2Model(Dinov2Config(**DINOV2_BASE)).eval().save_pretrained(out)
    BitImageProcessorPil(size={"shortest_edge": DINOV2_RESIZE},
                         crop_size={"height": DINOV2_CROP, "width": DINOV2_CROP}, resample=3,
                         image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225]).save_pretrained(out)
    return out


def checkpoints(cache: Path = CACHE) -> Path:
    """The full-size checkpoints folder, built on first use (a few minutes, about 7 GB)."""
    out = cache / "checkpoints"
    steps = [
        (out / layout.BLIP_BASE[1], lambda p: write_blip_base(p)),
        (out / layout.SD_TURBO[1], lambda p: write_sd_turbo(p)),
        (out / layout.LORA_FILE, lambda p: write_lora_file(p, out / layout.SD_TURBO[1])),
        (out / layout.embedder_dir_name("base"), lambda p: write_dinov2_base(p)),
    ]
    for path, write in steps:
        marker = path.parent / f"{path.name}{DONE}"
        if marker.is_file():
            continue
        log.warning("building full-size %s (once, into %s)", path.name, out)
        path.parent.mkdir(parents=True, exist_ok=True)
        write(path)
        marker.touch()
    return out


# -- photos --------------------------------------------------------------------------------------
_SOURCES = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field", "immunohistochemistry",
            "cat", "colorwheel", "retina", "stereo_motorcycle")


def _source_photos() -> list[np.ndarray]:
    import skimage.data
    photos = []
    for name in _SOURCES:
        image = getattr(skimage.data, name)()
        image = image[0] if isinstance(image, tuple) else image
        photos.append(np.ascontiguousarray(image[..., :3]))
    return photos


def write_photos(folder: Path, count: int, size: tuple[int, int] = (4000, 3000), seed: int = 0,
                 quality: int = 90) -> Path:
    """`count` phone-sized JPEGs made from scikit-image's photos (crop, flip, tint, portrait/landscape,
    sensor-like noise so they compress like camera photos); built once, reused after."""
    marker = folder / DONE
    if marker.is_file() and len(list(folder.glob("*.jpg"))) == count:
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    sources = _source_photos()
    noise = np.random.default_rng(seed).normal(0, 3, (size[1] + 64, size[0] + 64, 3)).astype(np.int16)
    log.warning("writing %d photos of %dx%d into %s (once)", count, *size, folder)
    for index in range(count):
        path = folder / f"IMG_{index:05d}.jpg"
        if path.is_file():
            continue
        source = sources[index % len(sources)]
        h, w = source.shape[:2]
        crop = rng.uniform(0.7, 1.0)
        ch, cw = int(h * crop), int(w * crop)
        top, left = rng.randint(0, h - ch), rng.randint(0, w - cw)
        image = Image.fromarray(source[top:top + ch, left:left + cw])
        if rng.random() < 0.5:
            image = image.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        width, height = size if rng.random() < 0.7 else size[::-1]
        jitter = rng.uniform(0.95, 1.0)
        image = image.resize((int(width * jitter), int(height * jitter)), Image.Resampling.BICUBIC)
        pixels = np.asarray(image).astype(np.int16)
        pixels = pixels * np.array([rng.uniform(0.85, 1.15) for _ in range(3)])
        oy, ox = rng.randint(0, 63), rng.randint(0, 63)
        if pixels.shape[0] > pixels.shape[1]:  # portrait: use the noise tile transposed
            tile = noise.transpose(1, 0, 2)[oy:oy + pixels.shape[0], ox:ox + pixels.shape[1]]
        else:
            tile = noise[oy:oy + pixels.shape[0], ox:ox + pixels.shape[1]]
        pixels = np.clip(pixels + tile, 0, 255).astype(np.uint8)
        tmp = path.with_suffix(".tmp")
        Image.fromarray(pixels).save(tmp, format="JPEG", quality=quality)
        os.replace(tmp, path)
    marker.touch()
    return folder


def query_index(count: int = 200, cache: Path = CACHE) -> Path:
    """Where the query benchmarks keep the gallery's index (reused between runs)."""
    return cache / "index" / f"query-gallery-{count}.sqlite"


def gallery(count: int = 200, cache: Path = CACHE) -> Path:
    """A folder of `count` real-sized photos; smaller galleries are prefixes of larger ones' recipe."""
    return write_photos(cache / f"gallery-{count}", count)


# -- machine and process facts -------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.CalledProcessError):
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {"cpu": cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(), "gpu": gpu,
            "date": datetime.date.today().isoformat(), "load_average": load_average()}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def peak_rss_gb() -> float:
    """This process's peak resident memory (Linux: ru_maxrss is in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 ** 2


def rss_gb() -> float:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1024 ** 3


def quiet() -> None:
    """The model libraries' progress bars and advice would drown the tables."""
    os.environ.setdefault("TQDM_DISABLE", "1")
    import diffusers
    import transformers
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    setup_logging()


def median(values: list[float]) -> float:
    return float(np.median(values)) if values else float("nan")


def run_benchmark(parser, run, print_table, settle=None) -> None:
    """A benchmark's command line: parse (with --json), settle defaults, run, print, save JSON."""
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers as JSON")
    args = parser.parse_args()
    if settle is not None:
        settle(args)
    report = run(args)
    print_table(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


def main() -> int:
    quiet()
    import argparse
    parser = argparse.ArgumentParser(description="build the benchmarks' cache: models and photos")
    parser.add_argument("--photos", type=int, default=200, help="photos for the query gallery")
    args = parser.parse_args()
    print(checkpoints())
    print(gallery(args.photos))
    return 0


if __name__ == "__main__":
    run_command(main)
