"""Image helpers shared by the services: JPEG decode with limits, encode, resize, face crops, photo loading.

Arrays are numpy ``uint8`` of shape (height, width, 3) in **RGB** order (face_recognition's convention),
except where a name says ``bgr`` (OpenCV's order, used by the publisher's capture).
"""

from __future__ import annotations

import io
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

Box = tuple[int, int, int, int]  # (top, right, bottom, left) in pixels

# File name suffixes (lower case) of the photos every part accepts (gallery keys, image folders, `faces` paths): the
# formats PIL reads that cameras and phones write. Videos: what OpenCV's FFmpeg backend opens.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".m4v")


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two (top, right, bottom, left) boxes."""
    inter_h = min(a[2], b[2]) - max(a[0], b[0])
    inter_w = min(a[1], b[1]) - max(a[3], b[3])
    if inter_h <= 0 or inter_w <= 0:
        return 0.0
    inter = inter_h * inter_w
    return inter / (_area(a) + _area(b) - inter)


def _area(box: Box) -> int:
    return (box[2] - box[0]) * (box[1] - box[3])


class ImageError(ValueError):
    """An image that cannot be used: not decodable, too large, wrong format. The message says why."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels from the image header, without decoding the pixels.

    Raises ImageError when the bytes are not an image PIL recognises.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            return image.size
    except Image.DecompressionBombError as exc:  # PIL refuses headers past 2 x MAX_IMAGE_PIXELS (179 Mpx) itself
        raise ImageError(f"decompression bomb: {exc}") from exc
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise ImageError(f"not an image ({exc.__class__.__name__})") from exc


# A JPEG spends at least one bit per 8x8 block of luma (its DC code), so it needs at least width*height/512 bytes;
# a header claiming more pixels than 1024 per byte (twice that bound) belongs to a truncated or forged file.
JPEG_MAX_PIXELS_PER_BYTE = 1024


def check_frame(data: bytes, max_bytes: int, max_pixels: int) -> tuple[int, int]:
    """(width, height) in pixels of a JPEG or PNG frame, read from its header without decoding the pixels.

    Raises ImageError when ``data`` is empty, longer than ``max_bytes``, not an image, has more than ``max_pixels``
    pixels, or is a JPEG too short for the size its header claims (a decompression bomb or a truncated file).
    """
    if not data:
        raise ImageError("empty payload")
    if len(data) > max_bytes:
        raise ImageError(f"payload of {len(data)} bytes is over the {max_bytes} byte limit")
    width, height = image_size(data)
    if width * height > max_pixels:
        raise ImageError(f"{width}x{height} frame is over the {max_pixels} pixel limit")
    if data[:2] == b"\xff\xd8" and width * height > JPEG_MAX_PIXELS_PER_BYTE * len(data):
        raise ImageError(f"{len(data)}-byte JPEG cannot hold the {width}x{height} pixels its header claims "
                         "(truncated or forged)")
    return width, height


def decode_jpeg(data: bytes, max_bytes: int, max_pixels: int) -> np.ndarray:
    """Decode a JPEG (or PNG) frame to an RGB array of shape (height, width, 3); grayscale and CMYK become RGB.

    Raises ImageError for what :func:`check_frame` refuses (checked before decoding, so a decompression bomb costs
    nothing) and when the pixels do not decode.
    """
    check_frame(data, max_bytes, max_pixels)
    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ImageError("corrupt or truncated image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def encode_jpeg(rgb: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of an RGB array of shape (height, width, 3)."""
    return encode_jpeg_bgr(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), quality)


def encode_jpeg_bgr(bgr: np.ndarray, quality: int = 85) -> bytes:
    """JPEG bytes of a BGR array of shape (height, width, 3), as OpenCV captures it."""
    ok, buf = cv2.imencode(".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ImageError("JPEG encoding failed")
    return buf.tobytes()


def fit_width(image: np.ndarray, max_width_px: int) -> np.ndarray:
    """``image`` downscaled (aspect kept, INTER_AREA) so its width is at most ``max_width_px``; unchanged if
    narrower."""
    height, width = image.shape[:2]
    if width <= max_width_px:
        return image
    scale = max_width_px / width
    return cv2.resize(image, (max_width_px, max(1, round(height * scale))), interpolation=cv2.INTER_AREA)


def scale_image(image: np.ndarray, scale: float) -> np.ndarray:
    """``image`` resized by ``scale`` (0 < scale <= 1) with INTER_AREA; the same array when scale is 1."""
    if scale >= 1:
        return image
    height, width = image.shape[:2]
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def crop_jpeg(rgb: np.ndarray, box: Box, max_side_px: int = 160, margin: float = 0.25, quality: int = 85) -> bytes:
    """JPEG of the face at ``box`` (top, right, bottom, left in pixels of ``rgb``) with ``margin`` (fraction of the
    box size) on each side, clipped to the image and downscaled so its longest side is at most ``max_side_px``."""
    top, right, bottom, left = box
    pad_y, pad_x = round((bottom - top) * margin), round((right - left) * margin)
    height, width = rgb.shape[:2]
    y0, y1 = max(0, top - pad_y), min(height, bottom + pad_y)
    x0, x1 = max(0, left - pad_x), min(width, right + pad_x)
    if y1 <= y0 or x1 <= x0:
        raise ImageError(f"box {box} lies outside the {width}x{height} image")
    face = rgb[y0:y1, x0:x1]
    longest = max(face.shape[:2])
    return encode_jpeg(scale_image(face, max_side_px / longest) if longest > max_side_px else face, quality)


def load_photo(source: str | Path | bytes, max_pixels: int = 50_000_000) -> np.ndarray:
    """RGB array (height, width, 3) of a photo file or its bytes: any format PIL reads, EXIF rotation applied,
    grayscale, palette and RGBA (flattened on white) converted.

    Raises ImageError when it is not an image, is truncated, or has more than ``max_pixels`` pixels.
    """
    try:
        image = Image.open(io.BytesIO(source) if isinstance(source, bytes) else source)
        if image.width * image.height > max_pixels:
            raise ImageError(f"{image.width}x{image.height} image is over the {max_pixels} pixel limit")
        image = ImageOps.exif_transpose(image)
        if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
            image = Image.alpha_composite(background, rgba)
        return np.asarray(image.convert("RGB"))
    except ImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large to decode safely ({exc})") from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not an image (JPEG, PNG or another format PIL reads)") from exc
    except (OSError, ValueError) as exc:
        raise ImageError(f"not a readable image ({exc})") from exc
