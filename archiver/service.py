"""The archiver: subscribes to every device's face events, throttles them, saves crops, writes entries in batches.

Threads: paho's network thread runs :meth:`Archiver.handle` (parse, throttle, save crop, enqueue: all fast);
one writer thread flushes the queue to InfluxDB every ``flush_interval_s`` or at ``batch_size`` entries,
and keeps the entries and retries with backoff while InfluxDB is unreachable.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter, deque
from datetime import timedelta
from pathlib import Path

from pydantic import ValidationError

from archiver.core import Throttle, availability_point, entry_for, point_for, stats_points
from archiver.influx import InfluxError, LineWriter
from facebus.events import EventType, FaceEvent, utc_now
from facebus.mqtt import Message, MqttClient
from facebus.stats import Counters, split_by_device
from facebus.topics import Topics

log = logging.getLogger(__name__)

MAX_PENDING = 100_000  # entries kept in memory while InfluxDB is down; the oldest are dropped past this (counted)


def save_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that readers see the whole file or none (temp file + rename), folders created."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".jpg")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; the crops web server runs as another user
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def decode_crop(crop_jpeg_b64: str) -> bytes:
    """JPEG bytes of an event's crop; ValueError when it is not base64 of a JPEG."""
    try:
        data = base64.b64decode(crop_jpeg_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"crop is not base64: {exc}") from exc
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("crop is not a JPEG")
    return data


class BatchWriter:
    """Queues line-protocol lines and writes them from one thread, in batches, retrying while InfluxDB is down.

    Each line carries the name of the counter its successful write bumps (``entries_written`` for face entries,
    ``metrics_written`` for health metrics), so the two are reported apart.
    """

    def __init__(self, writer: LineWriter, batch_size: int, flush_interval_s: float, counters: Counters) -> None:
        self.writer, self.batch_size, self.flush_interval_s, self.counters = writer, batch_size, flush_interval_s, counters
        self._pending: deque[tuple[str, str]] = deque()
        self._cond = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def put(self, line: str, counter: str = "entries_written") -> None:
        with self._cond:
            if len(self._pending) >= MAX_PENDING:
                _, dropped = self._pending.popleft()
                self.counters.add(dropped.replace("_written", "_dropped"))
            self._pending.append((line, counter))
            if len(self._pending) >= self.batch_size:
                self._cond.notify()

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Flush what is queued (up to ``timeout_s``), then stop the thread."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout_s)

    def _run(self) -> None:
        backoff_s = 0.0
        while True:
            with self._cond:
                if not self._stopping and len(self._pending) < self.batch_size:
                    self._cond.wait(max(self.flush_interval_s, backoff_s))
                batch = [self._pending[i] for i in range(min(self.batch_size, len(self._pending)))]
                if not batch and self._stopping:
                    return
            if not batch:
                continue
            try:
                self.writer.write([line for line, _ in batch])
            except InfluxError as exc:
                self.counters.add("write_errors")
                backoff_s = min(30.0, max(1.0, backoff_s * 2))
                log.error("InfluxDB write of %d entries failed, retrying in %.0f s: %s", len(batch), backoff_s, exc)
                if self._stopping:
                    return
                continue
            backoff_s = 0.0
            with self._cond:
                for _ in batch:
                    self._pending.popleft()
            for counter, count in Counter(counter for _, counter in batch).items():
                self.counters.add(counter, count)


class Archiver:
    """Face events → throttle → crop file + InfluxDB entry."""

    def __init__(
        self,
        crops_dir: Path,
        throttle_s: float,
        measurement: str,
        batch: BatchWriter,
        counters: Counters,
        topics: Topics = Topics(),
    ) -> None:
        self.crops_dir = Path(crops_dir)
        self.topics = topics
        self.throttle = Throttle(throttle_s)
        self._admitted = 0
        self.measurement = measurement
        self.batch = batch
        self.counters = counters

    def handle(self, message: Message) -> None:
        """Handle one face-event message: a track's ``decided`` and ``changed`` events become entries (throttled),
        ``ended`` summaries do not; a bad event is logged with its topic and reason, counted and skipped."""
        self.counters.add("events_in")
        try:
            event = FaceEvent.model_validate_json(message.payload)
            crop = decode_crop(event.crop_jpeg_b64)
        except (ValidationError, ValueError) as exc:
            self.counters.add("events_bad")
            reason = str(exc).splitlines()[0] if isinstance(exc, ValueError) else _first_error(exc)
            log.warning("bad face event on %s: %s", message.topic, reason, extra={"topic": message.topic})
            return
        if event.event_type is EventType.ended:  # the summary repeats the track's last decision: no new entry
            self.counters.add("events_ended")
            return
        if not self.throttle.admit(event):
            self.counters.add("events_throttled")
            return
        self._admitted += 1
        if self._admitted % 1000 == 0:  # keys whose window has passed decide nothing any more: bound the memory
            self.throttle.forget_before(event.captured_at - timedelta(seconds=self.throttle.window_s))
        entry = entry_for(event)
        try:
            save_atomically(self.crops_dir / entry.crop_path, crop)
        except OSError as exc:
            self.counters.add("crop_errors")
            log.error("could not save crop %s: %s", entry.crop_path, exc)
        self.batch.put(point_for(entry, self.measurement).to_line_protocol())
        self.counters.add("entries")
        log.info(
            "entry %s %s on %s distance=%s crop=%s",
            entry.person, entry.category.value, entry.device, f"{entry.distance:.3f}", entry.crop_path,
        )


    def handle_stats(self, message: Message) -> None:
        """Write a service's stats message (docs/metrics.md) as InfluxDB points; a bad one is logged and counted."""
        try:
            points = stats_points(json.loads(message.payload), utc_now())
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self.counters.add("stats_bad")
            log.warning("bad stats message on %s: %s", message.topic, exc, extra={"topic": message.topic})
            return
        self.put_metrics(points)

    def handle_availability(self, message: Message) -> None:
        """Record a device going online or offline as a ``device_availability`` point."""
        try:
            point = availability_point(self.topics.device_of(message.topic), message.payload, utc_now())
        except ValueError as exc:
            self.counters.add("availability_bad")
            log.warning("bad availability on %s: %s", message.topic, exc, extra={"topic": message.topic})
            return
        self.put_metrics([point])

    def put_metrics(self, points: list) -> None:
        """Queue health-metric points (counted as ``metrics_written``, apart from face entries)."""
        for point in points:
            self.batch.put(point.to_line_protocol(), "metrics_written")

    def stats_message(self, interval_s: float) -> dict:
        """The archiver's own figures of the last interval, in the stats message shape."""
        service, _ = split_by_device(self.counters.deltas())
        names = ("events_in", "events_bad", "events_throttled", "events_ended", "entries_written", "metrics_written", "write_errors")
        figures = {name: service.get(name, 0) for name in names} | {"pending": self.batch.pending()}
        return {"schema_version": 1, "service": "archiver", "interval_s": interval_s, "service_stats": figures}


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
    return f"{where}: {err['msg']} ({exc.error_count()} error(s))"


def run(mqtt: MqttClient, archiver: Archiver, stop: threading.Event, stats_interval_s: float = 10.0) -> None:
    """Subscribe, run until ``stop`` is set, then flush and disconnect. Every ``stats_interval_s`` the archiver's own
    figures go to InfluxDB beside those the other services publish."""
    mqtt.subscribe(mqtt.topics.all_faces, archiver.handle, qos=1)
    mqtt.subscribe(mqtt.topics.all_service_stats, archiver.handle_stats, qos=0)
    mqtt.subscribe(mqtt.topics.all_device_availability, archiver.handle_availability, qos=1)
    archiver.batch.start()
    mqtt.start()
    last_stats = time.monotonic()
    try:
        while not stop.wait(0.5):
            elapsed_s = time.monotonic() - last_stats
            if elapsed_s >= stats_interval_s:
                last_stats = time.monotonic()
                archiver.put_metrics(stats_points(archiver.stats_message(round(elapsed_s, 3)), utc_now()))
    finally:
        mqtt.stop()
        archiver.batch.stop()
        log.info("archiver stopped; totals %s", archiver.counters.snapshot())
