"""Naming the faces of one image: encode each box, match it, and look again at the near misses.

The one path used by the recognizer service, the accuracy benchmark and (later) ``facebus faces identify``.
"""

from __future__ import annotations

import numpy as np

from facebus.images import Box
from facebus.settings import RecognizerSettings
from recognizer import faces
from recognizer.matching import GalleryIndex, Match


def identify(rgb: np.ndarray, boxes: list[Box], index: GalleryIndex, settings: RecognizerSettings) -> list[Match]:
    """One Match per box (boxes as (top, right, bottom, left) in pixels of ``rgb``, an RGB uint8 array).

    A near miss (nearest distance within ``refine_band`` above the tolerance, the margin to the next person already
    met) is encoded again with ``refine_jitters`` re-samplings and matched again: averaging removes part of the
    noise of a single encoding (on faces-dev: true-match distances -0.03 to -0.05, strangers hardly move; see
    docs/accuracy.md). Clear matches and clear strangers are encoded once.
    """
    matches = []
    for box, encoding in zip(boxes, faces.encode(rgb, boxes)):
        match = index.match(encoding, settings.tolerance, settings.margin)
        if _near_miss(match, settings):
            (refined,) = faces.encode(rgb, [box], num_jitters=settings.refine_jitters)
            match = index.match(refined, settings.tolerance, settings.margin)
        matches.append(match)
    return matches


def _near_miss(match: Match, s: RecognizerSettings) -> bool:
    if s.refine_jitters <= 1 or match.person is not None or match.distance is None:
        return False
    margin_met = match.second_distance is None or match.second_distance - match.distance >= s.margin
    return margin_met and match.distance <= s.tolerance + s.refine_band
