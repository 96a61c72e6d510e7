"""JPEG decode limits, crops, photo loading and resizing (facebus.images)."""

import io

import numpy as np
import pytest
from PIL import Image

from facebus.images import ImageError, crop_jpeg, decode_jpeg, encode_jpeg, fit_width, image_size, load_photo

BIG = 10**9


def gradient(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    channels = [x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), np.full_like(x, 90)]
    return np.stack(channels, -1).astype(np.uint8)


def size_of(jpeg: bytes) -> tuple[int, int]:
    assert jpeg[:2] == b"\xff\xd8"
    with Image.open(io.BytesIO(jpeg)) as image:
        return image.size


def pil_bytes(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


# -- decode_jpeg ------------------------------------------------------------------------------------------------------


def test_decode_round_trip_rgb_order():
    rgb = np.zeros((20, 30, 3), np.uint8)
    rgb[..., 0] = 250  # pure red stays red (RGB, not OpenCV's BGR)
    decoded = decode_jpeg(encode_jpeg(rgb, 95), BIG, BIG)
    assert decoded.shape == (20, 30, 3) and decoded.dtype == np.uint8
    assert decoded[10, 15, 0] > 240 and decoded[10, 15, 2] < 15


def test_decode_png():
    assert decode_jpeg(pil_bytes(Image.new("RGB", (7, 5), (0, 0, 255)), "PNG"), BIG, BIG)[0, 0].tolist() == [0, 0, 255]


def test_decode_rejects_empty():
    with pytest.raises(ImageError, match="empty"):
        decode_jpeg(b"", BIG, BIG)


def test_decode_rejects_oversized_bytes():
    data = encode_jpeg(gradient(40, 40))
    assert decode_jpeg(data, len(data), BIG).shape == (40, 40, 3)
    with pytest.raises(ImageError, match="byte limit"):
        decode_jpeg(data, len(data) - 1, BIG)


def test_decode_rejects_too_many_pixels_by_header():
    data = encode_jpeg(np.zeros((3000, 3000, 3), np.uint8), 10)
    assert image_size(data) == (3000, 3000)
    with pytest.raises(ImageError, match="pixel limit"):
        decode_jpeg(data, BIG, 3000 * 3000 - 1)
    small = encode_jpeg(np.zeros((10, 10, 3), np.uint8))
    assert decode_jpeg(small, BIG, 100).shape == (10, 10, 3)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.95])
def test_decode_rejects_truncated(cut):
    data = encode_jpeg(gradient(120, 160), 90)
    with pytest.raises(ImageError):
        decode_jpeg(data[: int(len(data) * cut)], BIG, BIG)


def test_decode_rejects_random_bytes():
    data = np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    with pytest.raises(ImageError):
        decode_jpeg(data, BIG, BIG)
    with pytest.raises(ImageError):
        decode_jpeg(b"\xff\xd8" + data, BIG, BIG)


def test_image_error_is_value_error():
    assert issubclass(ImageError, ValueError)


# -- crop_jpeg --------------------------------------------------------------------------------------------------------


def test_crop_with_margin():
    # box 40x40 at (top=40, right=100, bottom=80, left=60), margin 0.25 -> 10 px each side -> 60x60
    assert size_of(crop_jpeg(gradient(200, 200), (40, 100, 80, 60))) == (60, 60)


def test_crop_clipped_to_image():
    rgb = gradient(100, 200)
    assert size_of(crop_jpeg(rgb, (0, 40, 40, 0))) == (50, 50)  # padding only to the right and below
    assert size_of(crop_jpeg(rgb, (80, 200, 100, 160))) == (50, 25)  # bottom-right corner
    # larger than the image: whole image
    assert size_of(crop_jpeg(rgb, (-20, 230, 130, -30), max_side_px=400)) == (200, 100)


def test_crop_respects_max_side():
    assert size_of(crop_jpeg(gradient(1000, 1000), (100, 900, 500, 100), max_side_px=160)) == (160, 96)
    assert max(size_of(crop_jpeg(gradient(1000, 1000), (0, 1000, 1000, 0), max_side_px=64))) == 64
    assert size_of(crop_jpeg(gradient(100, 100), (40, 60, 60, 40), max_side_px=160)) == (30, 30)  # never upscaled


def test_crop_outside_image_rejected():
    with pytest.raises(ImageError, match="outside"):
        crop_jpeg(gradient(100, 100), (150, 200, 180, 160))


def test_crop_left_of_image_rejected():
    with pytest.raises(ImageError):
        crop_jpeg(gradient(100, 200), (10, -30, 50, -100))


# -- load_photo -------------------------------------------------------------------------------------------------------


def test_load_photo_rgba_png_flattened_on_white():
    image = Image.new("RGBA", (4, 3), (255, 0, 0, 255))
    image.putpixel((0, 0), (0, 0, 0, 0))
    rgb = load_photo(pil_bytes(image, "PNG"))
    assert rgb.shape == (3, 4, 3) and rgb.dtype == np.uint8
    assert rgb[0, 0].tolist() == [255, 255, 255]
    assert rgb[1, 1].tolist() == [255, 0, 0]


def test_load_photo_grayscale_jpeg(tmp_path):
    path = tmp_path / "gray.jpg"
    Image.new("L", (8, 6), 128).save(path, "JPEG")
    rgb = load_photo(path)
    assert rgb.shape == (6, 8, 3)
    assert abs(int(rgb[3, 3, 0]) - 128) <= 2 and rgb[3, 3, 0] == rgb[3, 3, 1] == rgb[3, 3, 2]
    assert load_photo(str(path)).shape == (6, 8, 3)


def test_load_photo_applies_exif_rotation():
    image = Image.new("RGB", (40, 20), (0, 0, 0))
    image.paste((255, 255, 255), (0, 0, 20, 20))  # left half white
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    rgb = load_photo(pil_bytes(image, "JPEG", exif=exif, quality=95))
    assert rgb.shape == (40, 20, 3)  # width and height swapped
    assert rgb[5, 10].min() > 200 and rgb[35, 10].max() < 50  # the white half is now on top


def test_load_photo_palette_with_transparency():
    image = Image.new("P", (2, 2), 0)
    image.putpalette([0, 0, 255, 10, 20, 30])
    image.info["transparency"] = 0
    assert load_photo(pil_bytes(image, "PNG", transparency=0))[0, 0].tolist() == [255, 255, 255]


def test_load_photo_rejects_non_images_and_too_many_pixels():
    with pytest.raises(ImageError):
        load_photo(b"not an image at all")
    with pytest.raises(ImageError, match="pixel limit"):
        load_photo(pil_bytes(Image.new("RGB", (100, 100)), "PNG"), max_pixels=9999)


def test_load_photo_missing_file(tmp_path):
    with pytest.raises(ImageError):
        load_photo(tmp_path / "missing.jpg")


# -- fit_width --------------------------------------------------------------------------------------------------------


def test_fit_width_downscales_keeping_aspect():
    assert fit_width(gradient(100, 200), 50).shape == (25, 50, 3)
    assert fit_width(gradient(101, 300), 100).shape == (34, 100, 3)


def test_fit_width_leaves_narrow_images_alone():
    image = gradient(100, 200)
    assert fit_width(image, 200) is image
    assert fit_width(image, 4000) is image


def test_fit_width_keeps_at_least_one_row():
    assert fit_width(gradient(1, 1000), 10).shape == (1, 10, 3)
