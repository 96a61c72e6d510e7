"""Still photos through the configured face model: gallery photos (checked, encoded, cached) and photos to identify.

The recognizer service, ``facebus faces`` and the benchmarks use these functions, so a gallery is encoded one way.
Photos are shrunk to at most ``PHOTO_MAX_SIDE_PX`` on their longest side before detection and encoding.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import numpy as np

from facebus.images import ImageError, load_photo, scale_image
from facebus.settings import RecognizerSettings
from recognizer.cache import EncodingCache
from recognizer.gallery import GalleryLoader, Rejected, open_source
from recognizer.matching import GalleryIndex
from recognizer.models import Detection, Dlib, FaceModel, YuNetSFace

log = logging.getLogger(__name__)

PHOTO_MAX_SIDE_PX = 1024
GALLERY_JITTERS = 10  # dlib: gallery photos are encoded once (and cached); 10 re-samplings give steadier encodings


def photo_model(settings: RecognizerSettings) -> FaceModel:
    """``settings.model`` configured for still photos: YuNet on the whole (shrunk) photo; dlib HOG upsample 1 at
    640 px wide, no profile cascade, encodings averaged over 10 jitters."""
    if settings.model == "dlib":
        return Dlib(640, upsample=1, profiles=False, num_jitters=GALLERY_JITTERS)
    return YuNetSFace(PHOTO_MAX_SIDE_PX, score_threshold=settings.detect_score)


def photo_faces(model: FaceModel, data: bytes) -> tuple[np.ndarray, list[Detection]]:
    """The photo (file bytes: JPEG, PNG, ...; EXIF rotation, RGBA and grey handled) as RGB shrunk to at most
    ``PHOTO_MAX_SIDE_PX``, and its faces (pixels of that copy, largest first). Raises ImageError for unreadable
    bytes."""
    rgb = load_photo(data)
    rgb = scale_image(rgb, min(1.0, PHOTO_MAX_SIDE_PX / max(rgb.shape[:2])))
    return rgb, model.detect(rgb)


def encode_gallery_photo(model: FaceModel, data: bytes, min_face_px: int = 60) -> np.ndarray:
    """The face encoding of the one face in a gallery photo: the photo must show exactly one face at least
    ``min_face_px`` wide in pixels of the shrunk copy; smaller faces in the background are ignored.

    Raises ImageError, with the reason as its message: not a readable image, no face found, the face is too small,
    or more than one face.
    """
    rgb, found = photo_faces(model, data)
    if not found:
        raise ImageError("no face found")
    large = [d for d in found if d.width_px >= min_face_px]
    if not large:
        raise ImageError(
            f"face too small: {max(d.width_px for d in found)} px wide, at least {min_face_px} px needed "
            f"(measured with the photo's longest side at most {PHOTO_MAX_SIDE_PX} px)"
        )
    if len(large) > 1:
        raise ImageError(f"{len(large)} faces found, a gallery photo must show exactly one")
    return model.encode(rgb, large)[0]


def gallery_cache(settings: RecognizerSettings) -> EncodingCache:
    """The on-disk cache of gallery encodings at ``settings.cache_dir``, keyed by photo, model and every parameter."""
    jitters = f"-jitters{GALLERY_JITTERS}" if settings.model == "dlib" else ""
    return EncodingCache(settings.cache_dir, f"{settings.model}{jitters}-minface{settings.gallery_min_face_px}-v3")


def gallery_encoder(settings: RecognizerSettings) -> Callable[[bytes], np.ndarray]:
    """``encode(photo_bytes) -> face encoding`` for gallery photos, through :func:`gallery_cache`: the photo must be
    at most ``gallery_max_photo_bytes`` long and pass :func:`encode_gallery_photo`. Raises ImageError with the reason
    otherwise. The recognizer and ``facebus faces`` use this one function. The model loads on first use."""
    min_face_px, max_bytes = settings.gallery_min_face_px, settings.gallery_max_photo_bytes
    cache = gallery_cache(settings)
    model: list[FaceModel] = []

    def compute(data: bytes) -> np.ndarray:
        if not model:
            model.append(photo_model(settings))
        return encode_gallery_photo(model[0], data, min_face_px)

    def encode(data: bytes) -> np.ndarray:
        if len(data) > max_bytes:
            raise ImageError(f"photo of {len(data)} bytes is over the {max_bytes} byte limit")
        return cache.get_or_compute(data, compute)

    return encode


def open_gallery(settings: RecognizerSettings) -> GalleryLoader:
    """The gallery named by ``settings.gallery``, encoded with :func:`gallery_encoder`; not loaded yet (call
    refresh)."""
    return GalleryLoader(open_source(settings.gallery), gallery_encoder(settings), settings.model)


def load_index(settings: RecognizerSettings) -> tuple[GalleryIndex, list[Rejected]]:
    """Encode the gallery named by ``settings.gallery`` once. Raises when it cannot be listed."""
    loader = open_gallery(settings)
    started = time.perf_counter()
    loader.refresh()
    log.info("gallery %s: %d people, %d images, %d rejected, in %.1f s", settings.gallery,
             len(loader.index.people), len(loader.index), len(loader.rejected), time.perf_counter() - started)
    return loader.index, loader.rejected
