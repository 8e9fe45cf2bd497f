"""retrieval.images: real photos (scikit-image) written as JPEG/PNG/HEIC, then read back."""
from __future__ import annotations

import io

import numpy as np
import pytest
import skimage.data
from PIL import Image

from retrieval.images import load_image, register_heif
from sketch_search.common.errors import NotAnImageError
from sketch_search.common.files import PHOTO_EXTENSIONS, is_photo_name

ORIENTATION = 0x0112  # EXIF tag


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, np.float32) - np.asarray(b, np.float32)).mean())


def test_jpeg_and_png_load_as_rgb(tmp_path):
    photo = Image.fromarray(skimage.data.coffee())
    photo.save(tmp_path / "coffee.jpg", quality=95)
    Image.fromarray(skimage.data.camera()).save(tmp_path / "camera.PNG")  # grey, upper-case name
    jpeg = load_image(tmp_path / "coffee.jpg")
    assert jpeg.mode == "RGB" and jpeg.size == photo.size
    assert _mean_diff(jpeg, photo) < 3
    grey = load_image(tmp_path / "camera.PNG")
    assert grey.mode == "RGB" and grey.size == (512, 512)
    assert np.array_equal(np.asarray(grey)[..., 0], skimage.data.camera())


def test_exif_orientation_is_applied(tmp_path):
    photo = Image.fromarray(skimage.data.rocket())  # 640 x 427, landscape and asymmetric
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # "rotate 90 degrees clockwise to display", as phones write portraits
    photo.save(tmp_path / "portrait.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "portrait.jpg")
    assert shown.size == (427, 640)
    clockwise = Image.fromarray(np.rot90(np.asarray(photo), k=-1))
    counter = Image.fromarray(np.rot90(np.asarray(photo), k=1))
    assert _mean_diff(shown, clockwise) < 3 < _mean_diff(shown, counter)


def test_exif_orientation_survives_reduced_decoding(tmp_path):
    photo = Image.fromarray(skimage.data.rocket()).resize((1920, 1281))
    exif = Image.Exif()
    exif[ORIENTATION] = 8  # rotate 90 degrees counter-clockwise to display
    photo.save(tmp_path / "big.jpg", exif=exif, quality=95)
    shown = load_image(tmp_path / "big.jpg", min_side=160)
    assert shown.width < shown.height  # rotated
    assert 160 <= shown.width < 320
    expected = Image.fromarray(np.rot90(np.asarray(photo), k=1)).resize(shown.size, Image.BILINEAR)
    assert _mean_diff(shown, expected) < 6


def test_heic_is_decoded(tmp_path):
    assert register_heif()
    photo = Image.fromarray(skimage.data.chelsea())
    photo.save(tmp_path / "chelsea.HEIC", quality=90)
    assert (tmp_path / "chelsea.HEIC").read_bytes()[4:8] == b"ftyp"  # really an HEIF container
    shown = load_image(tmp_path / "chelsea.HEIC")
    assert shown.mode == "RGB" and shown.size == photo.size
    assert _mean_diff(shown, photo) < 6


def test_min_side_decodes_jpeg_at_reduced_scale(tmp_path):
    photo = Image.fromarray(skimage.data.astronaut()).resize((2048, 1536), Image.BICUBIC)
    photo.save(tmp_path / "phone.jpg", quality=92)
    small = load_image(tmp_path / "phone.jpg", min_side=224)
    assert 224 <= min(small.size) < 448  # 1/4 scale: 512 x 384
    assert small.width / small.height == pytest.approx(4 / 3, rel=0.01)
    expected = photo.resize(small.size, Image.BILINEAR)
    assert _mean_diff(small, expected) < 6
    # Already smaller than min_side: left at full size, never upscaled.
    assert load_image(tmp_path / "phone.jpg", min_side=4000).size == (2048, 1536)


def test_min_side_reduces_png(tmp_path):
    Image.fromarray(skimage.data.retina()).save(tmp_path / "retina.png")  # 1411 x 1411
    small = load_image(tmp_path / "retina.png", min_side=256)
    assert 256 <= small.width < 512 and small.width == small.height


def test_truncated_jpeg_fails_at_load_with_reason(tmp_path):
    buffer = io.BytesIO()
    Image.fromarray(skimage.data.chelsea()).save(buffer, "JPEG")
    (tmp_path / "cut.jpg").write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(NotAnImageError, match=r"cut\.jpg: truncated") as info:
        load_image(tmp_path / "cut.jpg")
    assert info.value.reason.startswith("truncated")
    assert "\n" not in str(info.value)


def test_text_and_missing_files_are_not_images(tmp_path):
    (tmp_path / "notes.jpg").write_text("shopping list: milk, eggs\n")
    with pytest.raises(NotAnImageError, match=r"notes\.jpg: not an image"):
        load_image(tmp_path / "notes.jpg")
    with pytest.raises(NotAnImageError, match="no such file"):
        load_image(tmp_path / "absent.png")
    with pytest.raises(NotAnImageError, match="is a folder"):
        load_image(tmp_path)


def test_each_failed_load_raises_its_own_error():
    """A photo that fails again (an index retries it each run) raises a fresh error: one error
    object raised again would collect every earlier raise's traceback and context."""
    errors = []
    for _ in range(2):
        with pytest.raises(NotAnImageError) as caught:
            load_image("/nonexistent/absent.jpg")
        errors.append(caught.value)
    assert errors[0] is not errors[1]
    assert str(errors[0]) == str(errors[1])


def test_image_extensions_any_case():
    assert {".jpg", ".jpeg", ".png", ".heic", ".heif", ".webp", ".bmp", ".tif", ".tiff"} == PHOTO_EXTENSIONS
    assert is_photo_name("IMG_0001.JPG") and is_photo_name("a.HeIc") and is_photo_name("x.tiff")
    assert not is_photo_name("clip.mp4") and not is_photo_name(".jpg") and not is_photo_name("jpg")


def test_decompression_bomb_protection_stays_on_but_admits_200_megapixel_photos():
    assert Image.MAX_IMAGE_PIXELS is not None
    assert 2 * Image.MAX_IMAGE_PIXELS > 16320 * 12240  # a Galaxy 200 MP photo opens
    assert Image.MAX_IMAGE_PIXELS < 1_000_000_000
