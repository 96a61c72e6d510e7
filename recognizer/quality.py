"""How good a view of a face is: size, sharpness, frontality. Pure numpy/OpenCV on one frame, no state.

The quality gate (``FACEBUS_RECOGNIZER_MIN_FACE_PX``, ``FACEBUS_RECOGNIZER_MIN_SHARPNESS``) keeps faces too small or
too blurred for the model from ever being named; the thresholds come from docs/accuracy.md. A track's best view is
the sample with the highest :func:`view_score`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from recognizer.models import Detection

SHARPNESS_SIDE_PX = 64  # the face region is resized to this square before measuring, so sizes compare fairly


@dataclass(frozen=True)
class Quality:
    """``width_px``: box width in pixels of the frame; ``sharpness``: variance of the Laplacian of the face region
    (grey, resized to 64x64; higher = sharper); ``frontal``: 1 for a frontal face, towards 0 for a profile (1 when
    the detector gives no landmarks)."""

    width_px: int
    sharpness: float
    frontal: float

    def problem(self, min_face_px: int, min_sharpness: float) -> str | None:
        """Why this view may not be named (``too_small`` or ``too_blurred``), or None when it passes the gate."""
        if self.width_px < min_face_px:
            return "too_small"
        if self.sharpness < min_sharpness:
            return "too_blurred"
        return None


def sharpness(rgb: np.ndarray, box: tuple[int, int, int, int]) -> float:
    """Variance of the Laplacian of the region ``box`` (top, right, bottom, left in pixels of ``rgb``) in grey,
    resized to 64x64 with INTER_AREA. 0.0 for an empty region."""
    top, right, bottom, left = box
    region = rgb[max(0, top):bottom, max(0, left):right]
    if region.size == 0:
        return 0.0
    grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (SHARPNESS_SIDE_PX, SHARPNESS_SIDE_PX), interpolation=cv2.INTER_AREA)
    return float(cv2.Laplacian(grey, cv2.CV_32F).var())


def frontal(landmarks: np.ndarray | None) -> float:
    """Frontality in [0, 1] from 5 landmarks (eyes, nose, mouth corners as (x, y) rows): 1 when the nose tip lies
    midway between the eyes, 0 when it lies at or beyond one eye (a profile). 1.0 without landmarks."""
    if landmarks is None:
        return 1.0
    eye_a, eye_b, nose = landmarks[0], landmarks[1], landmarks[2]
    half_span = abs(float(eye_b[0] - eye_a[0])) / 2
    if half_span < 1e-6:
        return 0.0
    offset = abs(float(nose[0]) - (float(eye_a[0]) + float(eye_b[0])) / 2)
    return float(np.clip(1.0 - offset / half_span, 0.0, 1.0))


def measure(rgb: np.ndarray, detection: Detection) -> Quality:
    """The :class:`Quality` of one detection in ``rgb``."""
    return Quality(detection.width_px, sharpness(rgb, detection.box), frontal(detection.landmarks))


def view_score(q: Quality) -> float:
    """Higher is a better view to encode: width (capped at 160 px, where models stop gaining) times frontality."""
    return min(q.width_px, 160) * (0.25 + 0.75 * q.frontal)
