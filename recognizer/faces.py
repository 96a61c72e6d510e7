"""The ``dlib`` face model's parts (recognizer.models.Dlib): face_recognition's HOG detector + ResNet encoder.

Importing this module loads dlib's models (~1 s, +125 MB): only the recognizer process does.
Measured cost on one core (docs/performance.md): HOG at half size of 640x480 with upsample 0 ~7 ms, upsample 1 ~30 ms;
one encoding ~85 ms regardless of frame size.
"""

from __future__ import annotations

import cv2
import face_recognition
import numpy as np
from PIL import ImageFile

from facebus.images import Box, fit_width, iou

# face_recognition switches PIL to decoding truncated files (grey below the cut) for the whole process: switch it back,
# so that a truncated gallery photo is refused as truncated instead of enrolled half grey (facebus.images.load_photo).
ImageFile.LOAD_TRUNCATED_IMAGES = False

_PROFILE_CASCADE = cv2.CascadeClassifier(cv2.data.haarcascades + "haarcascade_profileface.xml")


def detect(rgb: np.ndarray, max_width_px: int = 640, upsample: int = 1, profiles: bool = True) -> list[Box]:
    """Face boxes in ``rgb`` (uint8, shape (height, width, 3)), found on a copy shrunk to at most ``max_width_px``.

    Two detectors run on that copy: dlib's HOG (frontal and slightly turned faces; ``upsample`` 1 finds faces down to
    ~40 px wide at 4x the cost of 0) and, with ``profiles``, OpenCV's Haar profile cascade in both directions
    (faces turned 45-90 degrees, which HOG misses). Boxes overlapping a HOG box (IoU > 0.3) are dropped.

    Returns a list of (top, right, bottom, left) tuples in pixels of the input image, clipped to it, largest first.
    """
    small = fit_width(rgb, max_width_px)
    boxes = face_recognition.face_locations(small, upsample, model="hog")
    if profiles:
        boxes += [b for b in _profile_boxes(small) if all(iou(b, other) <= 0.3 for other in boxes)]
    factor_y, factor_x = rgb.shape[0] / small.shape[0], rgb.shape[1] / small.shape[1]
    height, width = rgb.shape[:2]
    scaled = []
    for top, right, bottom, left in boxes:
        box = (
            max(0, round(top * factor_y)),
            min(width, round(right * factor_x)),
            min(height, round(bottom * factor_y)),
            max(0, round(left * factor_x)),
        )
        if box[2] > box[0] and box[1] > box[3]:
            scaled.append(box)
    return sorted(scaled, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]), reverse=True)


def _profile_boxes(rgb: np.ndarray) -> list[Box]:
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    width = gray.shape[1]
    found = []
    for mirrored in (False, True):
        image = cv2.flip(gray, 1) if mirrored else gray
        for x, y, w, h in _PROFILE_CASCADE.detectMultiScale(image, scaleFactor=1.1, minNeighbors=5, minSize=(24, 24)):
            left = width - x - w if mirrored else x
            box = (int(y), int(left + w), int(y + h), int(left))
            if all(iou(box, other) <= 0.3 for other in found):
                found.append(box)
    return found


def encode(rgb: np.ndarray, boxes: list[Box], num_jitters: int = 1) -> list[np.ndarray]:
    """One 128-d float64 face encoding per box (boxes in pixels of ``rgb``), computed on the full-resolution image.
    ``num_jitters`` > 1 averages that many randomly perturbed re-samplings (cost grows linearly)."""
    if not boxes:
        return []
    return face_recognition.face_encodings(rgb, known_face_locations=boxes, num_jitters=num_jitters, model="small")
