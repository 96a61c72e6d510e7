"""Frame sources: webcam index, RTSP/HTTP URL, video file, folder of images.

Each source yields ``(media_time_s, bgr)``: the frame's time in seconds from the start of the media (for live sources,
seconds since opening) and the frame as a BGR uint8 array (height, width, 3), OpenCV's order.
Live sources (webcam, stream) reopen after a failure and never end; files and folders end (or loop).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from facebus.images import IMAGE_SUFFIXES
from facebus.stats import Counters

log = logging.getLogger(__name__)


@dataclass
class Source:
    """An opened source description: what it is, how many frames (None if live/unknown) and its native rate."""

    spec: str
    kind: str  # "webcam" | "stream" | "video" | "folder"
    frame_count: int | None
    fps: float | None

    @property
    def live(self) -> bool:
        return self.kind in ("webcam", "stream")


def describe(spec: str) -> Source:
    """Classify ``spec`` and read what can be known up front. Raises FileNotFoundError / ValueError for bad specs."""
    if spec.isdigit():
        return Source(spec, "webcam", None, None)
    if "://" in spec:
        return Source(spec, "stream", None, None)
    path = Path(spec)
    if path.is_dir():
        images = _folder_images(path)
        if not images:
            raise ValueError(f"folder {spec} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return Source(spec, "folder", len(images), None)
    if path.is_file():
        capture = cv2.VideoCapture(spec)
        try:
            if not capture.isOpened():
                raise ValueError(f"{spec} is not a video OpenCV can open")
            count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
            fps = capture.get(cv2.CAP_PROP_FPS) or None
        finally:
            capture.release()
        return Source(spec, "video", count, fps)
    raise FileNotFoundError(f"source {spec!r} is neither a webcam index, a URL, a file nor a folder")


def _folder_images(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def frames(source: Source, loop: bool, reopen_delay_s: float, counters: Counters,
           fps_folder: float) -> Iterator[tuple[float, np.ndarray]]:
    """Yield ``(media_time_s, bgr)`` from ``source``. Folders get one frame every ``1 / fps_folder`` s of media time."""
    if source.kind == "folder":
        yield from _folder_frames(Path(source.spec), loop, counters, fps_folder)
    elif source.live:
        yield from _live_frames(source, reopen_delay_s, counters)
    else:
        yield from _video_frames(source, loop)


def _folder_frames(path: Path, loop: bool, counters: Counters, fps: float) -> Iterator[tuple[float, np.ndarray]]:
    index = 0
    while True:
        for image_path in _folder_images(path):
            bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
            if bgr is None:
                counters.add("source_errors")
                log.warning("skipping unreadable image %s", image_path)
                continue
            yield index / fps, bgr
            index += 1
        if not loop:
            return


def _video_frames(source: Source, loop: bool) -> Iterator[tuple[float, np.ndarray]]:
    fps = source.fps or 25.0
    offset_s = 0.0
    while True:
        capture = cv2.VideoCapture(source.spec)
        index = 0
        try:
            while True:
                ok, bgr = capture.read()
                if not ok:
                    break
                yield offset_s + index / fps, bgr
                index += 1
        finally:
            capture.release()
        if not loop or index == 0:
            return
        offset_s += index / fps


def _live_frames(source: Source, reopen_delay_s: float, counters: Counters) -> Iterator[tuple[float, np.ndarray]]:
    opened_at = time.monotonic()
    while True:
        capture = cv2.VideoCapture(int(source.spec) if source.kind == "webcam" else source.spec)
        try:
            if not capture.isOpened():
                log.warning("cannot open %s; retrying in %.0f s", source.spec, reopen_delay_s)
            while capture.isOpened():
                ok, bgr = capture.read()
                if not ok:
                    log.warning("%s stopped delivering frames; reopening in %.0f s", source.spec, reopen_delay_s)
                    break
                yield time.monotonic() - opened_at, bgr
        finally:
            capture.release()
        counters.add("source_reopens")
        time.sleep(reopen_delay_s)
