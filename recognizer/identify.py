"""``facebus faces identify`` on photos and videos, through the recognizer's own engine and settings.

A photo gives one result per face (``file``, ``box``, ``person``, ``category``, ``reason``, ``distance``,
``second_person``, ``second_distance``, ``matched_image``, ``quality``). A video runs frame by frame through
:class:`~recognizer.engine.Engine` exactly as the recognizer does (tracks, votes, quality gate), without dropping
frames, and gives one result per face track (``file``, ``track_id``, ``first_s``, ``last_s``, ``frames``,
``samples``, ``person``, ``category``, ``reason``, ``distance``, ``second_person``, ``second_distance``, ``votes``,
``box`` at the best view).
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

from facebus.images import ImageError
from recognizer.engine import Engine
from recognizer.quality import measure

_VIDEO_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # video time 0 as a capture time


def identify_photo(engine: Engine, rgb: np.ndarray) -> list[dict]:
    """One result per face in ``rgb`` (RGB uint8, (height, width, 3)), largest first; faces that fail the quality
    gate are reported with ``person`` null and the reason, unencoded."""
    detections = engine.model.detect(rgb)
    qualities = [measure(rgb, d) for d in detections]
    problems = [q.problem(engine.policy.min_face_px, engine.policy.min_sharpness) for q in qualities]
    usable = [d for d, p in zip(detections, problems, strict=True) if p is None]
    matches = iter(engine.index.match(e, engine.tolerance, engine.margin) for e in engine.model.encode(rgb, usable))
    results = []
    for detection, quality, problem in zip(detections, qualities, problems, strict=True):
        match = None if problem else next(matches)
        results.append({
            "box": list(detection.box),
            "person": match.person if match else None,
            "category": match.category.value if match else "unknown",
            "reason": match.reason if match else problem,
            "distance": match.distance if match else None,
            "second_person": match.second_person if match else None,
            "second_distance": match.second_distance if match else None,
            "matched_image": match.image_key if match else None,
            "quality": {"width_px": quality.width_px, "sharpness": round(quality.sharpness, 1),
                        "frontal": round(quality.frontal, 3)},
        })
    return results


def video_frames(path: Path, fps: float | None) -> Iterator[tuple[float, np.ndarray]]:
    """(time in s, RGB frame) of a video file, every frame or sampled at ``fps`` frames per second.
    Raises ImageError when the file cannot be opened as a video."""
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise ImageError("not a readable video")
    try:
        source_fps = capture.get(cv2.CAP_PROP_FPS) or 25.0
        step = 1.0 if not fps else max(1.0, source_fps / fps)
        index, next_index = 0, 0.0
        while True:
            ok, bgr = capture.read()
            if not ok:
                return
            if index >= next_index - 1e-9:
                next_index += step
                yield index / source_fps, cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
            index += 1
    finally:
        capture.release()


def identify_video(engine: Engine, path: Path, fps: float | None = None,
                   crops_dir: Path | None = None) -> Iterator[dict]:
    """One result per face track of the video at ``path`` (sampled at ``fps``; default every frame), in the order
    tracks end. With ``crops_dir``, each track's best view is saved there as
    ``<video stem>_<track_id>_<person>.jpg``."""
    for time_s, rgb in video_frames(path, fps):
        result = engine.process("video", rgb, _VIDEO_EPOCH + timedelta(seconds=time_s), now_s=time_s)
        yield from _tracks(result.events, path, crops_dir)
    yield from _tracks(engine.finish(), path, crops_dir)


def _tracks(events, path: Path, crops_dir: Path | None) -> Iterator[dict]:
    for event in events:
        if event.event_type.value != "ended":
            continue
        result = {
            "file": str(path), "track_id": event.track_id,
            "first_s": round((event.first_seen - _VIDEO_EPOCH).total_seconds(), 3),
            "last_s": round((event.last_seen - _VIDEO_EPOCH).total_seconds(), 3),
            "frames": event.frames, "samples": event.samples, "person": event.person,
            "category": event.category.value, "reason": event.reason.value, "distance": event.distance,
            "second_person": event.second_person, "second_distance": event.second_distance,
            "votes": event.votes, "box": list(event.box),
        }
        if crops_dir is not None:
            crop = crops_dir / f"{path.stem}_{event.track_id}_{event.person or 'unknown'}.jpg"
            crop.parent.mkdir(parents=True, exist_ok=True)
            crop.write_bytes(base64.b64decode(event.crop_jpeg_b64))
            result["crop"] = str(crop)
        yield result
