"""The recognizer: frames in from every device, one FaceEvent per face out.

Threads: paho's network thread runs :meth:`Recognizer.on_frame`, which only checks the size and drops the frame into
its device's latest-frame-wins slot; one worker thread decodes, detects, encodes, matches and publishes.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from facebus.events import CAPTURE_TIME_PROPERTY, FaceEvent, parse_time, utc_now
from facebus.images import Box, ImageError, crop_jpeg, decode_jpeg
from facebus.mqtt import Message, MqttClient
from facebus.settings import RecognizerSettings
from facebus.stats import Samples, split_by_device
from recognizer import faces
from recognizer.cache import EncodingCache
from recognizer.gallery import GalleryLoader, Rejected, open_source
from recognizer.identify import identify
from recognizer.matching import GalleryIndex, Match
from recognizer.slots import LatestSlots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A received frame waiting in its device's slot."""

    topic: str
    device_id: str
    jpeg: bytes
    captured_at: datetime


def face_event(
    frame: Frame, shape: tuple[int, ...], box: Box, match: Match, settings: RecognizerSettings, crop: bytes,
    index: int, count: int,
) -> FaceEvent:
    """The event for face ``index`` of ``count`` in ``frame`` (decoded ``shape`` = (height, width, 3))."""
    return FaceEvent(
        device_id=frame.device_id,
        captured_at=frame.captured_at,
        recognized_at=utc_now(),
        person=match.person,
        category=match.category,
        distance=match.distance,
        tolerance=settings.tolerance,
        margin=settings.margin,
        second_person=match.second_person,
        second_distance=match.second_distance,
        matched_image=match.image_key,
        box=box,
        frame_width_px=shape[1],
        frame_height_px=shape[0],
        face_index=index,
        faces_in_frame=count,
        crop_jpeg_b64=base64.b64encode(crop).decode("ascii"),
    )


def gallery_cache(settings: RecognizerSettings) -> EncodingCache:
    """The on-disk cache of gallery encodings at ``settings.cache_dir``, keyed by photo and every encoding parameter."""
    params = f"dlib-resnet-small-jitters{faces.GALLERY_JITTERS}-minface{settings.gallery_min_face_px}-v2"
    return EncodingCache(settings.cache_dir, params)


def gallery_encoder(settings: RecognizerSettings) -> Callable[[bytes], np.ndarray]:
    """``encode(photo_bytes) -> 128-d encoding`` for gallery photos, through :func:`gallery_cache`: the photo must
    be at most ``gallery_max_photo_bytes`` long and show exactly one face at least ``gallery_min_face_px`` wide.
    Raises ImageError with the reason otherwise. The recognizer and ``facebus faces`` use this one function."""
    min_face_px, max_bytes = settings.gallery_min_face_px, settings.gallery_max_photo_bytes
    cache = gallery_cache(settings)

    def encode(data: bytes) -> np.ndarray:
        if len(data) > max_bytes:
            raise ImageError(f"photo of {len(data)} bytes is over the {max_bytes} byte limit")
        return cache.get_or_compute(data, lambda d: faces.encode_gallery_photo(d, min_face_px))

    return encode


def open_gallery(settings: RecognizerSettings) -> GalleryLoader:
    """The gallery named by ``settings.gallery``, encoded with :func:`gallery_encoder`; not loaded yet (call refresh)."""
    return GalleryLoader(open_source(settings.gallery), gallery_encoder(settings))


def load_index(settings: RecognizerSettings) -> tuple[GalleryIndex, list[Rejected]]:
    """Encode the gallery named by ``settings.gallery`` once. Raises when it cannot be listed."""
    loader = open_gallery(settings)
    started = time.perf_counter()
    loader.refresh()
    log.info("gallery %s: %d people, %d images, %d rejected, in %.1f s", settings.gallery,
             len(loader.index.people), len(loader.index), len(loader.rejected), time.perf_counter() - started)
    return loader.index, loader.rejected


class Recognizer:
    def __init__(self, settings: RecognizerSettings, mqtt: MqttClient, gallery: GalleryLoader) -> None:
        self.settings = settings
        self.mqtt = mqtt
        self.gallery = gallery  # its index is replaced whole by the gallery thread: readers see the old or the new
        self.counters = mqtt.counters
        self.slots: LatestSlots[Frame] = LatestSlots()
        self.latency_ms = Samples()
        self._gallery_published = False

    # -- MQTT thread -----------------------------------------------------------------------------------------------

    def on_frame(self, message: Message) -> None:
        """Queue a frame (newest wins per device). Oversized or mis-addressed frames are logged, counted, skipped."""
        self.counters.add("frames_in")
        try:
            device_id = self.mqtt.topics.device_of(message.topic)
        except ValueError as exc:
            self.counters.add("frames_bad")
            log.warning("frame on %s ignored: %s", message.topic, exc, extra={"topic": message.topic})
            return
        if len(message.payload) > self.settings.max_frame_bytes:
            self.counters.add("frames_bad")
            log.warning(
                "frame on %s rejected: %d bytes is over the %d byte limit",
                message.topic, len(message.payload), self.settings.max_frame_bytes, extra={"topic": message.topic},
            )
            return
        captured_at = utc_now()
        stamp = message.user_properties.get(CAPTURE_TIME_PROPERTY)
        if stamp:
            try:
                captured_at = parse_time(stamp)
            except ValueError:
                self.counters.add("frames_bad_capture_time")
        self.counters.add(f"frames_in/{device_id}")
        if self.slots.put(device_id, Frame(message.topic, device_id, message.payload, captured_at)):
            self.counters.add("frames_dropped")
            self.counters.add(f"frames_dropped/{device_id}")

    # -- worker thread ---------------------------------------------------------------------------------------------

    def process(self, frame: Frame) -> list[FaceEvent]:
        """Decode, detect, encode and match one frame; one event per face. Raises ImageError for a bad frame."""
        s = self.settings
        rgb = decode_jpeg(frame.jpeg, s.max_frame_bytes, s.max_frame_pixels)
        boxes = faces.detect(rgb, s.detect_max_width_px, s.detect_upsample, s.detect_profiles)
        events = []
        for i, (box, match) in enumerate(zip(boxes, identify(rgb, boxes, self.gallery.index, s))):
            crop = crop_jpeg(rgb, box, s.crop_max_px)
            events.append(face_event(frame, rgb.shape, box, match, s, crop, i, len(boxes)))
        return events

    def work_once(self, timeout_s: float = 0.5) -> bool:
        """Process the next waiting frame, if one arrives within ``timeout_s``; False when none did."""
        taken = self.slots.take(timeout_s)
        if taken is None:
            return False
        _, frame = taken
        started = time.perf_counter()
        try:
            events = self.process(frame)
        except ImageError as exc:
            self.counters.add("frames_bad")
            log.warning("frame on %s rejected: %s", frame.topic, exc, extra={"topic": frame.topic})
            return True
        self.counters.add("frames_processed")
        self.counters.add(f"frames_processed/{frame.device_id}")
        self.latency_ms.add((utc_now() - frame.captured_at).total_seconds() * 1000)
        for event in events:
            self.counters.add(f"faces/{frame.device_id}")
            self.mqtt.publish(self.mqtt.topics.face(frame.device_id), event.to_json(), qos=1)
            self.counters.add("faces_" + event.category.value)
            log.info(
                "face %s %s on %s distance=%s nearest=%s second=%s@%s",
                event.person or "unknown", event.category.value, event.device_id,
                "-" if event.distance is None else f"{event.distance:.3f}", event.matched_image,
                event.second_person, "-" if event.second_distance is None else f"{event.second_distance:.3f}",
                extra={"latency_ms": round((time.perf_counter() - started) * 1000)},
            )
        return True

    # -- gallery thread --------------------------------------------------------------------------------------------

    def refresh_gallery(self) -> None:
        """Bring the gallery up to date and publish its state (retained). While the source cannot be listed (S3 down,
        folder gone) the last good gallery stays in force; the failure is logged and counted."""
        started = time.perf_counter()
        try:
            change = self.gallery.refresh()
        except Exception as exc:  # noqa: BLE001 - any source failure: keep serving the last gallery
            self.counters.add("gallery_errors")
            log.error("gallery %s unreachable, keeping the last one (%d images): %s",
                      self.settings.gallery, len(self.gallery.index), exc)
            return
        if change.changed or not self._gallery_published:
            log.info(
                "gallery %s: %d people, %d images, %d rejected; +%d -%d images in %.1f s",
                self.settings.gallery, len(self.gallery.index.people), len(self.gallery.index), len(self.gallery.rejected),
                len(change.added), len(change.removed), time.perf_counter() - started,
            )
            self.mqtt.publish(self.mqtt.topics.gallery_state(), json.dumps(self.gallery.state()), qos=1, retain=True)
            self._gallery_published = True

    def _watch_gallery(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.gallery_poll_s):
            self.refresh_gallery()

    def stats_message(self, interval_s: float) -> dict:
        """The figures of the last interval, as published on ``<prefix>/services/recognizer/stats``."""
        service, devices = split_by_device(self.counters.deltas())
        figures = {
            "queue_depth": len(self.slots),
            "gallery_people": len(self.gallery.index.people),
            "gallery_images": len(self.gallery.index),
            "frames_bad": service.get("frames_bad", 0),
        }
        latency = self.latency_ms.drain_percentiles(50, 99)
        if latency:
            figures |= {"latency_p50_ms": latency[50], "latency_p99_ms": latency[99]}
        return {"schema_version": 1, "service": "recognizer", "interval_s": interval_s,
                "service_stats": figures, "devices": devices}

    def run(self, stop: threading.Event, stats_interval_s: float = 10.0) -> None:
        """Load the gallery, subscribe to every device's frames and process them until ``stop`` is set; check the
        gallery for changes every ``gallery_poll_s`` and publish the stats every ``stats_interval_s``."""
        self.mqtt.subscribe(self.mqtt.topics.all_frames, self.on_frame, qos=0)
        self.refresh_gallery()  # before connecting: "online" means the gallery is in force (the state waits in paho)
        self.mqtt.start()
        if self.settings.gallery_poll_s > 0:
            threading.Thread(target=self._watch_gallery, args=(stop,), name="gallery", daemon=True).start()
        last_stats = time.monotonic()
        try:
            while not stop.is_set():
                try:
                    self.work_once()
                except Exception:  # noqa: BLE001 - one bad frame must not stop the service
                    self.counters.add("worker_errors")
                    log.exception("unexpected error while processing a frame")
                elapsed_s = time.monotonic() - last_stats
                if elapsed_s >= stats_interval_s:
                    last_stats = time.monotonic()
                    message = self.stats_message(round(elapsed_s, 3))
                    self.mqtt.publish(self.mqtt.topics.service_stats("recognizer"), json.dumps(message), qos=0)
                    log.debug("stats %s", message)
        finally:
            self.mqtt.stop()
            log.info("recognizer stopped; totals %s", self.counters.snapshot())
