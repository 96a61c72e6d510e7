"""The publisher: read frames from a source, cap their rate, downscale, JPEG-encode and publish them.

Each frame goes to ``<prefix>/<device_id>/frame`` as raw JPEG bytes, QoS 0, not retained, with its capture time in
the MQTT v5 user property ``capture_time``. The device's availability topic carries ``online``/``offline``.
While the broker is unreachable, frames are counted as ``frames_not_sent`` and capturing goes on.
"""

from __future__ import annotations

import logging
import threading
import time

from facebus.events import CAPTURE_TIME_PROPERTY, format_time, utc_now
from facebus.images import encode_jpeg_bgr, fit_width
from facebus.mqtt import MqttClient
from facebus.settings import PublisherConfig, PublisherSettings
from facebus.stats import Counters
from facebus.topics import Topics
from publisher.sources import describe, frames

log = logging.getLogger(__name__)


def due(play_time_s: float, last_published_s: float | None, fps_max: float) -> bool:
    """True when a frame at playback time ``play_time_s`` (media time / speed; wall time for live sources) may be
    published under the ``fps_max`` cap, the last published one having been at ``last_published_s`` (None: none yet)."""
    return last_published_s is None or play_time_s - last_published_s >= 1.0 / fps_max - 1e-6


def run(settings: PublisherSettings, mqtt: MqttClient, stop: threading.Event,
        connect_timeout_s: float = 10.0) -> Counters:
    """Publish frames until the source ends or ``stop`` is set; returns the counters."""
    source = describe(settings.source)
    counters = mqtt.counters
    topic = mqtt.topics.frame(settings.device_id)
    mqtt.start()
    if not mqtt.wait_connected(connect_timeout_s):
        log.warning("broker not reachable yet; capturing anyway and publishing once connected")
    log.info("publishing %s %s to %s", source.kind, source.spec, topic)
    bar = None
    if settings.progress and not source.live:
        from tqdm import tqdm

        bar = tqdm(total=source.frame_count, unit="frame", desc=settings.device_id)
    started = time.monotonic()
    last_published_s: float | None = None
    last_info = None
    try:
        for media_time_s, bgr in frames(source, settings.loop, settings.reopen_delay_s, counters, settings.fps_max):
            if stop.is_set():
                break
            if bar is not None:
                bar.update()
            play_time_s = media_time_s if source.live else media_time_s / settings.speed
            if not due(play_time_s, last_published_s, settings.fps_max):
                counters.add("frames_skipped")
                continue
            if settings.realtime and not source.live:
                delay_s = started + play_time_s - time.monotonic()
                if delay_s > 0 and stop.wait(delay_s):
                    break
            last_published_s = play_time_s
            captured = format_time(utc_now())
            jpeg = encode_jpeg_bgr(fit_width(bgr, settings.max_width_px), settings.jpeg_quality)
            info = mqtt.publish(topic, jpeg, qos=0, properties={CAPTURE_TIME_PROPERTY: captured})
            if info.rc == 0:
                counters.add("frames_published")
                last_info = info
            else:
                counters.add("frames_not_sent")
    finally:
        if bar is not None:
            bar.close()
        if last_info is not None:
            try:
                last_info.wait_for_publish(timeout=5)
            except (RuntimeError, ValueError):
                pass
        mqtt.stop()
    log.info("publisher done: %s", counters.snapshot())
    return counters


def main(config: PublisherConfig, stop: threading.Event) -> int:
    """The publisher service (``facebus publisher``), wired from its settings; runs until the source ends or ``stop``
    is set. Returns the exit code: 0, or 1 for a source that cannot be opened (a missing file, a bad URL)."""
    settings = config.publisher
    mqtt = MqttClient(config.mqtt, Topics(config.mqtt.topic_prefix).device_availability(settings.device_id),
                      f"publisher-{settings.device_id}")
    try:
        run(settings, mqtt, stop)
    except (FileNotFoundError, ValueError) as exc:
        log.error("%s", exc)
        return 1
    return 0
