"""Write a complete checkpoints folder of tiny random models: `python -m tests.tiny_checkpoints OUT`.

The models are the real classes (BLIP, CLIP text encoder, SD UNet and VAE, DINOv2) saved in the
real formats, plus a pix2pix-turbo LoRA file and the seed's BLIP file, so that
`main2.py --checkpoints OUT` runs the whole program here in seconds. Their outputs are noise.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from checkpoints import layout  # noqa: E402
from tests.tiny_models.blip import write_seed_blip_file, write_tiny_blip  # noqa: E402
from tests.tiny_models.dinov2 import write_tiny_dinov2  # noqa: E402
from tests.tiny_models.sd_turbo import write_tiny_lora_file, write_tiny_sd_turbo  # noqa: E402


def write_tiny_checkpoints(out: Path, embedders: tuple[str, ...] = (layout.DEFAULT_EMBEDDER,),
                           seed_blip_file: bool = False) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_tiny_blip(out / layout.BLIP_BASE[1])
    if seed_blip_file:
        write_seed_blip_file(out / layout.BLIP_SEED_FILE)
    sd_turbo = write_tiny_sd_turbo(out / layout.SD_TURBO[1])
    write_tiny_lora_file(out / layout.LORA_FILE, sd_turbo)
    for size in embedders:
        write_tiny_dinov2(out / layout.dinov2_dir_name(size))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="folder to write (use it as --checkpoints)")
    parser.add_argument("--seed-blip-file", action="store_true",
                        help="also write a seed-format fine-tuned BLIP file (blip_sketch.pt)")
    args = parser.parse_args()
    write_tiny_checkpoints(args.out, seed_blip_file=args.seed_blip_file)
    print(f"tiny checkpoints written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
