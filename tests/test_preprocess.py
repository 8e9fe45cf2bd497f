"""Sketch preprocessing: stroke masks whatever the pen and paper, crop/pad/resize geometry, blanks."""
from __future__ import annotations

import hashlib
import io

import cv2
import numpy as np
import pytest
from PIL import Image

from generation.preprocess import prepare_sketch, stroke_colour, stroke_mask
from retrieval.images import load_image
from sketch.canvas import BLACK, GREEN, RED, Canvas
from sketch_search.common.errors import BlankSketchError
from tests.conftest import ROOT


def drawn(shape=(300, 400), thickness=5) -> np.ndarray:
    """The pixels a pen covers: a rectangle outline, a diagonal and a circle."""
    canvas = np.zeros(shape, dtype=np.uint8)
    cv2.rectangle(canvas, (60, 50), (300, 220), 255, thickness)
    cv2.line(canvas, (60, 50), (300, 220), 255, thickness)
    cv2.circle(canvas, (330, 240), 30, 255, thickness)
    return canvas > 0


def paint(strokes: np.ndarray, paper, pen) -> np.ndarray:
    image = np.empty((*strokes.shape, len(paper)), dtype=np.uint8)
    image[:] = paper
    image[strokes] = pen
    return image


def agreement(mask: np.ndarray, truth: np.ndarray) -> float:
    """Intersection over union."""
    return (mask & truth).sum() / (mask | truth).sum()


def test_black_pen_on_white_paper():
    truth = drawn()
    mask = stroke_mask(Image.fromarray(paint(truth, (255, 255, 255), (0, 0, 0))))
    assert mask.dtype == bool and mask.shape == truth.shape
    assert np.array_equal(mask, truth)


@pytest.mark.parametrize("pen", [(255, 0, 0), (0, 200, 0), (0, 0, 139), (255, 255, 0), (255, 255, 255)])
def test_coloured_pens_on_black(pen):
    truth = drawn()
    assert np.array_equal(stroke_mask(paint(truth, (0, 0, 0), pen)), truth)


def test_faint_pencil_on_cream_paper():
    truth = drawn()
    assert np.array_equal(stroke_mask(paint(truth, (250, 240, 220), (190, 185, 175))), truth)


def test_grey_image_and_numpy_input_agree():
    truth = drawn()
    grey = np.where(truth, 30, 240).astype(np.uint8)
    assert np.array_equal(stroke_mask(grey), truth)
    assert np.array_equal(stroke_mask(Image.fromarray(grey)), truth)


def test_transparent_layer_reads_alpha_not_colour():
    truth = drawn()
    rgba = paint(truth, (0, 0, 0, 0), (0, 0, 0, 255))  # paper and pen share their colour: only alpha differs
    assert np.array_equal(stroke_mask(Image.fromarray(rgba, "RGBA")), truth)


def test_opaque_rgba_reads_colour():
    truth = drawn()
    rgba = paint(truth, (255, 255, 255, 255), (20, 20, 200, 255))
    assert np.array_equal(stroke_mask(Image.fromarray(rgba, "RGBA")), truth)


def test_jpeg_photo_of_a_sketch_with_noise():
    truth = drawn()
    rng = np.random.default_rng(0)
    image = paint(truth, (235, 235, 230), (40, 40, 60)).astype(np.int16)
    image = np.clip(image + rng.normal(0, 4, image.shape), 0, 255).astype(np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=70)
    mask = stroke_mask(Image.open(buffer))
    assert agreement(mask, truth) > 0.9


def test_crop_pad_resize_geometry():
    # A 200 x 100 block of strokes at (x 150, y 80) on an 800 x 600 page.
    page = np.full((600, 800, 3), 255, np.uint8)
    page[80:180, 150:350] = 0
    sketch = prepare_sketch(Image.fromarray(page), size=256, margin=0.1)
    assert sketch.bbox == (150, 80, 350, 180)
    assert sketch.mask.shape == (256, 256) and sketch.mask.dtype == bool
    rows = np.flatnonzero(sketch.mask.any(axis=1))
    cols = np.flatnonzero(sketch.mask.any(axis=0))
    # square side = 200 + 2 * 20 px margin = 240 source px -> 256: the block spans 200/240 of the width,
    # centred, and 100/240 of the height, centred.
    scale = 256 / 240
    assert abs(cols[0] - 20 * scale) <= 1.5 and abs(cols[-1] + 1 - 220 * scale) <= 1.5
    assert abs(rows[0] - 70 * scale) <= 1.5 and abs(rows[-1] + 1 - 170 * scale) <= 1.5
    preview = np.asarray(sketch.preview)
    assert sketch.preview.mode == "RGB" and sketch.preview.size == (256, 256)
    assert np.array_equal(preview[..., 0] == 0, sketch.mask) and set(np.unique(preview)) == {0, 255}


def test_small_sketch_is_enlarged_without_thickening_much():
    page = np.full((400, 400), 255, np.uint8)
    page[190:210, 100:300] = 0   # 200 x 20 px bar, scaled by 512 / 224
    sketch = prepare_sketch(page, size=512, margin=0.06)
    rows = np.flatnonzero(sketch.mask.any(axis=1))
    assert abs(len(rows) - 20 * 512 / 224) <= 2


def test_thin_strokes_survive_a_large_downscale():
    # 1 px lines on a 3000 px page: the crop is about 2700 px square, shrunk about 5x to 512.
    page = np.full((3000, 3000), 255, np.uint8)
    cv2.line(page, (150, 150), (2850, 2850), 0, 1)
    cv2.line(page, (150, 2850), (2850, 150), 0, 1)
    cv2.circle(page, (1500, 1500), 1000, 0, 1)
    mask = prepare_sketch(page).mask
    reference = np.zeros((512, 512), np.uint8)
    # The same drawing made directly at 512 px (crop 2700 + 2 * 162 margin -> 512).
    scale = 512 / (2700 + 2 * 162)
    point = lambda x, y: (round((x - 150 + 162) * scale), round((y - 150 + 162) * scale))
    cv2.line(reference, point(150, 150), point(2850, 2850), 1, 1)
    cv2.line(reference, point(150, 2850), point(2850, 150), 1, 1)
    cv2.circle(reference, point(1500, 1500), round(1000 * scale), 1, 1)
    # The reference's rounding may differ by a pixel or two from the true geometry.
    near = cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert near[reference > 0].mean() > 0.99  # every part of every line is still there
    components = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1
    assert components == 1                    # unbroken (the lines cross the circle)
    assert mask.sum() < 3 * reference.sum()   # and not smeared into blobs


@pytest.mark.parametrize("blank", ["white", "black", "specks", "noise", "transparent"])
def test_blank_sketches_are_refused(blank):
    rng = np.random.default_rng(1)
    if blank == "white":
        image = np.full((300, 300, 3), 255, np.uint8)
    elif blank == "black":
        image = np.zeros((300, 300, 3), np.uint8)
    elif blank == "specks":  # a few stray pixels: sensor noise or a stray touch
        image = np.full((300, 300, 3), 255, np.uint8)
        image[rng.integers(0, 300, 5), rng.integers(0, 300, 5)] = 0
    elif blank == "noise":
        image = np.clip(rng.normal(240, 6, (300, 300, 3)), 0, 255).astype(np.uint8)
    else:
        image = np.zeros((300, 300, 4), np.uint8)
    with pytest.raises(BlankSketchError, match="no strokes: draw something"):
        prepare_sketch(Image.fromarray(image))


def test_a_single_short_stroke_is_not_blank():
    page = np.full((300, 300), 255, np.uint8)
    cv2.line(page, (100, 150), (130, 150), 0, 2)
    assert prepare_sketch(page).mask.any()


# -- pen colour hints ------------------------------------------------------------------------------

WHITE_PAPER, BLACK_PAPER = (255, 255, 255), (0, 0, 0)
# RGB. The air canvas's pens (sketch.canvas, stored as BGR), pure pens like the seed's saved
# sketches (red and green on black), and pens that must give no hint.
CANVAS_RED, CANVAS_GREEN, CANVAS_BLACK = RED[::-1], GREEN[::-1], BLACK[::-1]
PENS = {"canvas red": (CANVAS_RED, "red"), "pure red": ((255, 0, 0), "red"),
        "dark red": ((150, 10, 20), "red"), "canvas green": (CANVAS_GREEN, "green"),
        "pure green": ((0, 255, 0), "green"), "dark green": ((0, 110, 30), "green"),
        "canvas black": (CANVAS_BLACK, None), "grey": ((128, 128, 128), None),
        "blue": ((0, 0, 255), None), "light blue": ((80, 150, 255), None),
        "purple": ((140, 40, 200), None), "white": ((255, 255, 255), None)}


def apple(paper, body, leaf, size=(360, 480)) -> np.ndarray:
    """An apple drawn with anti-aliased strokes: a round `body` and a stalk and leaf in `leaf`."""
    image = np.empty((*size, 3), np.uint8)
    image[:] = paper
    cv2.circle(image, (240, 200), 110, body, 6, cv2.LINE_AA)
    cv2.line(image, (240, 90), (250, 40), leaf, 6, cv2.LINE_AA)
    cv2.ellipse(image, (285, 60), (35, 15), -20, 0, 360, leaf, 5, cv2.LINE_AA)
    return image


def saved(image: np.ndarray, path, **options):
    """Write the sketch to a real file and read it back the way main2.py does."""
    Image.fromarray(image).save(path, **options)
    return load_image(path)


@pytest.mark.parametrize("paper, pen", [(paper, pen) for paper in ("white", "black") for pen in PENS
                                        # a pen of the paper's colour draws nothing
                                        if (paper, pen) not in {("white", "white"), ("black", "canvas black")}])
@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_pen_colour_is_named_on_white_and_black_paper(paper, pen, kind, tmp_path):
    colour, expected = PENS[pen]
    paper = WHITE_PAPER if paper == "white" else BLACK_PAPER
    options = {"quality": 75} if kind == "jpeg" else {}
    image = saved(apple(paper, colour, colour), tmp_path / f"sketch.{kind}", **options)
    assert prepare_sketch(image).colour == expected


@pytest.mark.parametrize("paper", [WHITE_PAPER, BLACK_PAPER], ids=["white paper", "black paper"])
def test_the_seed_red_apple_with_a_green_leaf_is_red(paper, tmp_path):
    image = saved(apple(paper, (255, 0, 0), (0, 255, 0)), tmp_path / "apple.png")
    assert prepare_sketch(image).colour == "red"
    image = saved(apple(paper, (0, 255, 0), (255, 0, 0)), tmp_path / "pear.png")
    assert prepare_sketch(image).colour == "green"


def test_a_small_coloured_detail_gives_no_hint_a_large_share_does(tmp_path):
    # A black apple and leaf with a red stalk: a few per cent of the stroke pixels.
    image = apple(WHITE_PAPER, CANVAS_BLACK, CANVAS_BLACK)
    cv2.line(image, (240, 90), (250, 40), CANVAS_RED, 6, cv2.LINE_AA)
    image = saved(image, tmp_path / "apple.png")
    assert stroke_colour(image, stroke_mask(image)) is None
    # Half of it red, half black: the red is named.
    image = np.full((300, 600, 3), 255, np.uint8)
    cv2.circle(image, (150, 150), 100, CANVAS_BLACK, 6, cv2.LINE_AA)
    cv2.circle(image, (450, 150), 100, CANVAS_RED, 6, cv2.LINE_AA)
    assert prepare_sketch(saved(image, tmp_path / "half.png")).colour == "red"


def test_as_much_red_as_blue_gives_no_hint(tmp_path):
    image = np.full((300, 600, 3), 255, np.uint8)
    cv2.circle(image, (150, 150), 100, (230, 20, 20), 6, cv2.LINE_AA)
    cv2.circle(image, (450, 150), 100, (20, 20, 230), 6, cv2.LINE_AA)
    assert prepare_sketch(saved(image, tmp_path / "two.png")).colour is None


def test_noisy_jpeg_photo_of_a_red_sketch(tmp_path):
    # A phone photo of paper: cream, sensor noise, heavy JPEG; thin 3 px red and black pens.
    rng = np.random.default_rng(0)
    for pen, expected in [((200, 30, 35), "red"), ((40, 40, 60), None), ((30, 140, 50), "green")]:
        image = apple((235, 232, 222), pen, pen).astype(np.float32)
        image = np.clip(image + rng.normal(0, 5, image.shape), 0, 255).astype(np.uint8)
        assert prepare_sketch(saved(image, tmp_path / "photo.jpg", quality=55)).colour == expected


def test_the_air_canvas_export_names_its_pen(tmp_path):
    for pen, expected in [(RED, "red"), (GREEN, "green"), (BLACK, None)]:
        canvas = Canvas(640, 480)
        canvas.begin(pen)
        for t in np.linspace(0, 2 * np.pi, 60):
            canvas.add((320 + 120 * np.cos(t), 240 + 120 * np.sin(t)))
        canvas.end()
        path = tmp_path / "sketch.png"
        canvas.export().save(path)
        assert prepare_sketch(load_image(path)).colour == expected


def test_grey_images_and_a_wrong_mask():
    grey = np.where(drawn(), 30, 240).astype(np.uint8)
    assert prepare_sketch(grey).colour is None
    image = paint(drawn(), (255, 255, 255), (255, 0, 0))
    assert stroke_colour(image, stroke_mask(image)) == "red"
    with pytest.raises(ValueError, match="shape"):
        stroke_colour(image, np.ones((10, 10), bool))


def mask_digest(image) -> str:
    return hashlib.sha256(np.packbits(prepare_sketch(image).mask).tobytes()).hexdigest()[:16]


def test_the_generator_mask_is_unchanged_by_the_colour_hints():
    # Digests of prepare_sketch's masks taken before the colour hints were added.
    assert mask_digest(Image.open(ROOT / "examples" / "sketches" / "cat.png")) == "5789766b5f8e8e18"
    assert mask_digest(apple(BLACK_PAPER, (255, 0, 0), (0, 200, 0))) == "5b43f306ad0599ee"
    assert mask_digest(apple(WHITE_PAPER, CANVAS_RED, CANVAS_GREEN)) == "3a3ac12735825e39"
    assert mask_digest(apple(WHITE_PAPER, (20, 20, 20), (20, 20, 20))) == "9a96685e10376b38"
    # The same strokes in any pen give the same mask.
    truth = drawn()
    for pen in [(255, 0, 0), (0, 200, 0), (0, 0, 0)]:
        sketch = prepare_sketch(paint(truth, (255, 255, 255), pen))
        assert np.array_equal(sketch.mask, prepare_sketch(truth).mask)
