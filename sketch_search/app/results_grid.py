"""The results picture: sketch | generated image | top-k gallery photos with names and scores."""
from __future__ import annotations

from pathlib import Path

from PIL import Image, ImageDraw, ImageFont, ImageOps

from sketch_search.common.names import display_name

TILE = 256
LABEL = 40
GAP = 8


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the fixed bitmap font
        return ImageFont.load_default()


def _fit(text: str, draw: ImageDraw.ImageDraw, font, width: int) -> str:
    """Shorten `text` in the middle until it fits `width` pixels (long phone file names).

    `text` is made one safe line first: a name may hold newlines, controls or undecodable bytes.
    """
    text = display_name(text)
    if draw.textlength(text, font=font) <= width:
        return text
    while len(text) > 4 and draw.textlength(text + "...", font=font) > width:
        text = text[: len(text) // 2 - 1] + text[len(text) // 2 + 1:]
    return text[: len(text) // 2] + "..." + text[len(text) // 2:]


def render_results_grid(sketch: Image.Image, generated: Image.Image,
                        results: list[tuple[Path, Image.Image | None, float]],
                        caption: str = "") -> Image.Image:
    """One row of tiles with a label under each; a missing thumbnail shows as grey."""
    tiles = [(sketch, "sketch"), (generated, "generated")]
    tiles += [(thumb, f"{i}. {Path(path).name}  {score:.3f}")
              for i, (path, thumb, score) in enumerate(results, 1)]
    header = 28 if caption else 0
    width = len(tiles) * (TILE + GAP) + GAP
    canvas = Image.new("RGB", (width, header + TILE + LABEL + 2 * GAP), "white")
    draw = ImageDraw.Draw(canvas)
    font, small = _font(16), _font(13)
    if caption:
        draw.text((GAP, 6), _fit(caption, draw, font, width - 2 * GAP), fill="black", font=font)
    for column, (image, label) in enumerate(tiles):
        x, y = GAP + column * (TILE + GAP), header + GAP
        if image is None:
            draw.rectangle([x, y, x + TILE - 1, y + TILE - 1], fill=(200, 200, 200))
        else:
            thumb = ImageOps.pad(image.convert("RGB"), (TILE, TILE), color="white")
            canvas.paste(thumb, (x, y))
        draw.text((x, y + TILE + 6), _fit(label, draw, small, TILE), fill="black", font=small)
    return canvas
