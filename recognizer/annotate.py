"""The annotated view: a frame with each live face track's box, name and category colour, drawn with OpenCV.

Published by the recognizer on ``<prefix>/<device_id>/annotated`` (JPEG, QoS 0, at most
``FACEBUS_RECOGNIZER_ANNOTATED_FPS_MAX`` per device), for MQTT image viewers, Home Assistant's MQTT camera and
``facebus live``.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from facebus.events import Category, TrackBox

# BGR. Authorised green, restricted red, unknown amber, undecided grey (the prototypes' green and red).
COLOURS_BGR: dict[Category | None, tuple[int, int, int]] = {
    Category.authorised: (60, 180, 60),
    Category.restricted: (40, 40, 220),
    Category.unknown: (0, 170, 255),
    None: (170, 170, 170),
}
LINE_PX = 2
FONT = cv2.FONT_HERSHEY_SIMPLEX


def label(track: TrackBox) -> str:
    """The text over a box: the person's id, ``unknown``, or ``...`` while the track is undecided."""
    if track.category is None:
        return "..."
    return track.person or "unknown"


def draw_tracks(rgb: np.ndarray, tracks: Sequence[TrackBox], max_width_px: int = 640) -> np.ndarray:
    """A BGR copy of ``rgb`` (uint8, shape (height, width, 3)) shrunk to at most ``max_width_px`` wide, with each
    track's box (``(top, right, bottom, left)`` in pixels of ``rgb``) outlined in its category colour and its label
    on a filled band above it (below, when the box touches the top edge)."""
    scale = min(1.0, max_width_px / rgb.shape[1])
    bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)
    if scale < 1.0:
        bgr = cv2.resize(bgr, (round(rgb.shape[1] * scale), round(rgb.shape[0] * scale)), interpolation=cv2.INTER_AREA)
    font_scale = max(0.4, bgr.shape[1] / 1200)
    for track in tracks:
        top, right, bottom, left = (round(v * scale) for v in track.box)
        colour = COLOURS_BGR[track.category]
        cv2.rectangle(bgr, (left, top), (right, bottom), colour, LINE_PX)
        text = label(track)
        (text_w, text_h), baseline = cv2.getTextSize(text, FONT, font_scale, 1)
        band_top = top - text_h - baseline - 4 if top >= text_h + baseline + 4 else bottom
        cv2.rectangle(bgr, (left, band_top), (left + text_w + 4, band_top + text_h + baseline + 4), colour, cv2.FILLED)
        cv2.putText(bgr, text, (left + 2, band_top + text_h + 2), FONT, font_scale, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def annotated_jpeg(rgb: np.ndarray, tracks: Sequence[TrackBox], max_width_px: int = 640, quality: int = 80) -> bytes:
    """:func:`draw_tracks` encoded as JPEG bytes (``quality`` 1-100)."""
    ok, buffer = cv2.imencode(".jpg", draw_tracks(rgb, tracks, max_width_px), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError("could not encode the annotated frame")
    return buffer.tobytes()
