"""The archiver: subscribes to every device's face events, throttles them, keeps crops, writes entries to InfluxDB.

Nothing is acknowledged before it is safe (docs/reliability.md):

- paho's network thread runs :meth:`Archiver.handle`: parse and check the event, throttle, save the crop, commit
  the entry to the durable spool (archiver.spool), and only then acknowledge the QoS 1 message to the broker;
- one writer thread (:class:`SpoolWriter`) sends the spool to InfluxDB in batches and deletes lines only once
  InfluxDB accepted them; a line InfluxDB refuses for good goes to the spool's dead letters, the rest flows;
  while InfluxDB is unreachable it backs off exponentially and logs once when writes fail and once when they resume;
- while the spool is full the handler waits instead of acknowledging: the broker keeps the rest (its queue for the
  archiver's persistent session), nothing is dropped.
"""

from __future__ import annotations

import base64
import binascii
import logging
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

from pydantic import ValidationError

from archiver.core import EntryTimes, Throttle, availability_point, check_times, entry_for, point_for, stats_points
from archiver.influx import DeferredWriter, InfluxError, LineWriter
from archiver.spool import Spool, Spooled, SpoolFull, SpoolLocked
from facebus.events import EventType, FaceEvent, describe_error, utc_now
from facebus.files import write_atomically
from facebus.images import ImageError, decode_jpeg
from facebus.mqtt import Message, MqttClient
from facebus.settings import ArchiverConfig, ArchiverSettings
from facebus.stats import Counters, StatsMessage, split_by_device
from facebus.topics import Topics

log = logging.getLogger(__name__)

CROP_MAX_PIXELS = 2048 * 2048  # a crop is a face with a margin (160 px by default): anything near this is not one


def decode_crop(crop_jpeg_b64: str | None, max_bytes: int = 256 * 1024) -> bytes:
    """JPEG bytes of an event's crop. Raises ValueError when it is not base64, decodes to more than ``max_bytes``,
    is not a JPEG or does not decode as an image of at most CROP_MAX_PIXELS pixels."""
    if crop_jpeg_b64 is None:
        raise ValueError("the event has no crop (crop_jpeg_b64 is null: events with crops are on "
                         "<device>/face_with_crop)")
    if len(crop_jpeg_b64) > (max_bytes + 2) // 3 * 4:
        raise ValueError(f"crop of about {len(crop_jpeg_b64) * 3 // 4} bytes is over the {max_bytes} byte limit")
    try:
        data = base64.b64decode(crop_jpeg_b64, validate=True)
    except binascii.Error as exc:
        raise ValueError(f"crop is not base64: {exc}") from exc
    if not data.startswith(b"\xff\xd8"):
        raise ValueError("crop is not a JPEG")
    try:
        decode_jpeg(data, max_bytes, CROP_MAX_PIXELS)
    except ImageError as exc:
        raise ValueError(f"crop is not a usable JPEG: {exc}") from exc
    return data


class SpoolWriter:
    """Sends the spool to InfluxDB from one thread: every ``flush_interval_s`` (or as soon as ``batch_size`` lines
    wait), in batches of ``batch_size``, deleting each batch from the spool once InfluxDB accepted it.

    - A batch InfluxDB refuses for good (:attr:`InfluxError.permanent`, e.g. a time out of its range) is split in
      halves until the refused lines are found; each goes to the dead letters (logged once, counted as
      ``entries_dead`` or ``metrics_dead``) and the others are written. Writing a line twice is harmless: the same
      measurement, tags and time make one point.
    - Other failures (InfluxDB down, 5xx, timeouts) keep everything and retry after 1, 2, 4 … ``max_backoff_s``
      seconds whatever the queue's depth, counted in ``write_errors``; one log line when writes start failing and one
      when they succeed again.
    """

    def __init__(
        self, writer: LineWriter, spool: Spool, batch_size: int, flush_interval_s: float, counters: Counters,
        max_backoff_s: float = 30.0,
    ) -> None:
        self.writer, self.spool, self.batch_size, self.counters = writer, spool, batch_size, counters
        self.flush_interval_s, self.max_backoff_s = flush_interval_s, max_backoff_s
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._failing_since: float | None = None
        self._failed_attempts = 0
        self._thread = threading.Thread(target=self._run, name="influx-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def notify(self) -> None:
        """A line was spooled: write soon if a whole batch waits."""
        if len(self.spool) >= self.batch_size:
            self._wake.set()

    @property
    def failing(self) -> bool:
        """True while InfluxDB writes fail (between the two state-change log lines)."""
        return self._failing_since is not None

    def stop(self, timeout_s: float = 10.0) -> None:
        """One last attempt at what is spooled (up to ``timeout_s``), then stop; what is left stays in the spool."""
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)
        waiting = self.spool.waiting()
        if waiting:
            log.warning("archiver stopping with %d entries and %d metric points in the spool %s: they are written "
                        "when it starts again", waiting.get("entries_written", 0), waiting.get("metrics_written", 0),
                        self.spool.path)

    def flush(self) -> None:
        """Write everything spooled, batch by batch. Raises InfluxError on a transient failure."""
        while rows := self.spool.peek(self.batch_size):
            self._write(rows)

    def _write(self, rows: list[Spooled]) -> None:
        try:
            self.writer.write([row.line for row in rows])
        except InfluxError as exc:
            if not exc.permanent:
                raise
            if len(rows) > 1:
                half = len(rows) // 2
                self._write(rows[:half])
                self._write(rows[half:])
                return
            self.spool.bury(rows[0], str(exc))
            self.counters.add(rows[0].counter.replace("_written", "_dead"))
            log.error("InfluxDB refused a line for good, moved to the dead letters of %s: %s; line %.300s",
                      self.spool.path, exc, rows[0].line, extra={"event_id": rows[0].event_id})
            return
        self.spool.delete(rows)
        for counter, count in Counter(row.counter for row in rows).items():
            self.counters.add(counter, count)

    def _run(self) -> None:
        delay_s = self.flush_interval_s
        while True:
            self._wake.wait(delay_s)
            self._wake.clear()
            stopping = self._stopping.is_set()
            try:
                self.flush()
            except InfluxError as exc:
                delay_s = self._failed(exc)
            except Exception:  # noqa: BLE001 - the spool file failing (disk gone): keep the thread, retry later
                self.counters.add("spool_errors")
                log.exception("writing the spool %s to InfluxDB failed; retrying in %.0f s", self.spool.path,
                              self.max_backoff_s)
                delay_s = self.max_backoff_s
            else:
                self._recovered()
                delay_s = self.flush_interval_s
            if stopping:
                return

    def _failed(self, exc: InfluxError) -> float:
        self.counters.add("write_errors")
        self._failed_attempts += 1
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.error("InfluxDB writes failing, keeping %d lines in the spool and retrying with backoff "
                      "up to %.0f s: %s", len(self.spool), self.max_backoff_s, exc)
        else:
            log.debug("InfluxDB write attempt %d failed: %s", self._failed_attempts, exc)
        return min(self.max_backoff_s, 2.0 ** min(self._failed_attempts - 1, 30))

    def _recovered(self) -> None:
        if self._failing_since is not None:
            log.warning("InfluxDB writes succeed again after %.0f s and %d failed attempts",
                        time.monotonic() - self._failing_since, self._failed_attempts)
            self._failing_since, self._failed_attempts = None, 0


class Archiver:
    """Face events → checks → throttle → crop file + spooled entry (written to InfluxDB by the SpoolWriter).

    ``clock`` gives "now" for the event-time window (tests pin it).
    """

    def __init__(
        self,
        settings: ArchiverSettings,
        spool: Spool,
        writer: SpoolWriter,
        counters: Counters,
        topics: Topics | None = None,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self.settings = settings
        self.crops_dir = Path(settings.crops_dir)
        self.topics = topics or Topics()
        self.throttle = Throttle(settings.throttle_s)
        self.entry_times = EntryTimes()  # two entries of one frame and series: distinct InfluxDB points
        self.spool, self.writer, self.counters, self.clock = spool, writer, counters, clock
        self.measurement = settings.measurement
        self.stopping = threading.Event()  # set on stop: a handler waiting for room gives up (not acknowledged)
        self._admitted = 0
        self._full_since: float | None = None

    def handle(self, message: Message) -> bool:
        """Handle one face-event message: a track's ``decided`` and ``changed`` events become entries (throttled),
        ``ended`` summaries do not; a bad event (schema, ids, a time outside the accepted window, a crop that is not
        a small JPEG) is logged with its topic and every faulty field, counted and acknowledged (never retried).

        :return: True to acknowledge; False only when stopping before the entry could be spooled (the broker
            delivers the event again)
        """
        self.counters.add("events_in")
        try:
            event = FaceEvent.model_validate_json(message.payload)
            check_times(event, self.clock(), self.settings.max_event_age_s, self.settings.max_event_ahead_s)
            crop = decode_crop(event.crop_jpeg_b64, self.settings.max_crop_bytes)
        except (ValidationError, ValueError) as exc:
            self.counters.add("events_bad")
            reason = describe_error(exc) if isinstance(exc, ValidationError) else str(exc).splitlines()[0]
            log.warning("bad face event on %s: %s", message.topic, reason, extra={"topic": message.topic})
            return True
        if event.event_type is EventType.ended:  # the summary repeats the track's last decision: no new entry
            self.counters.add("events_ended")
            return True
        if self.spool.seen(event.event_id):  # delivered again (a reconnect, a restart): already an entry
            self.counters.add("events_duplicate")
            return True
        if not self.throttle.admits(event):
            self.counters.add("events_throttled")
            return True
        entry = self.entry_times.free(entry_for(event))
        try:  # the crop first: once the entry is spooled and acknowledged, its crop is on disk
            write_atomically(self.crops_dir / entry.crop_path, crop)  # 0644: the crops web server is another user
        except OSError as exc:
            self.counters.add("crop_errors")
            log.error("could not save crop %s: %s", entry.crop_path, exc)
        if not self._spool(point_for(entry, self.measurement).to_line_protocol(), event.event_id):
            return False
        self.throttle.record(event)
        self.entry_times.record(entry)
        self._admitted += 1
        if self._admitted % 1000 == 0:  # keys whose window has passed decide nothing any more: bound the memory
            self.throttle.forget_before(event.captured_at - timedelta(seconds=self.throttle.window_s))
        self.counters.add("entries")
        log.info(
            "entry %s %s on %s distance=%s crop=%s%s",
            entry.person, entry.category.value, entry.device, f"{entry.distance:.3f}", entry.crop_path,
            f" visitor={entry.visitor_id} visits={entry.visits}" if entry.visitor_id else "",
        )
        return True

    def _spool(self, line: str, event_id: str) -> bool:
        """Commit an entry to the spool, waiting (not acknowledging) while it is full or cannot be written.
        False when stopping first."""
        while True:
            try:
                self.spool.put(line, "entries_written", event_id)
            except (SpoolFull, sqlite3.Error) as exc:
                if self._full_since is None:
                    self._full_since = time.monotonic()
                    self.counters.add("spool_full")
                    log.error("SPOOL FULL, face events are no longer acknowledged (the broker keeps them) until "
                              "InfluxDB takes entries: %s", exc)
                if self.stopping.wait(1.0):
                    return False
                continue
            if self._full_since is not None:
                log.warning("spool has room again after %.0f s: face events are acknowledged again",
                            time.monotonic() - self._full_since)
                self._full_since = None
            self.writer.notify()
            return True

    def handle_stats(self, message: Message) -> None:
        """Write a service's stats message (docs/metrics.md) as InfluxDB points; a bad one is logged and counted."""
        try:
            points = stats_points(StatsMessage.model_validate_json(message.payload), utc_now(),
                                  self.settings.max_stats_devices, self.topics.service_of(message.topic))
        except ValueError as exc:  # pydantic's ValidationError is a ValueError
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
        """Spool health-metric points (counted as ``metrics_written``, apart from face entries). While the spool is
        full they are dropped (counted as ``metrics_dropped``): face entries have the room."""
        for point in points:
            try:
                self.spool.put(point.to_line_protocol(), "metrics_written")
            except (SpoolFull, sqlite3.Error):
                self.counters.add("metrics_dropped")

    STATS_NAMES = ("events_in", "events_bad", "events_throttled", "events_ended", "events_duplicate", "entries",
                   "entries_written", "entries_dead", "metrics_written", "metrics_dead", "metrics_dropped",
                   "write_errors", "crop_errors", "spool_full")

    def stats_message(self, interval_s: float) -> StatsMessage:
        """The archiver's own figures of the last interval, in the stats message shape: every counter it keeps
        (zeros included) and the spool's depth (``pending`` lines, ``spool_bytes``)."""
        service, _ = split_by_device(self.counters.deltas())
        figures = {name: 0 for name in self.STATS_NAMES} | service
        figures |= {"pending": len(self.spool), "spool_bytes": self.spool.bytes, "throttle_keys": len(self.throttle)}
        return StatsMessage(service="archiver", interval_s=interval_s, service_stats=figures)


def run(mqtt: MqttClient, archiver: Archiver, stop: threading.Event, stats_interval_s: float = 10.0) -> None:
    """Subscribe, run until ``stop`` is set, then stop acknowledging, disconnect and give the writer a last try.
    Every ``stats_interval_s`` the archiver's own figures go to InfluxDB beside those the other services publish."""
    mqtt.subscribe(mqtt.topics.all_faces_with_crop, archiver.handle, qos=1)
    mqtt.subscribe(mqtt.topics.all_service_stats, archiver.handle_stats, qos=0)
    mqtt.subscribe(mqtt.topics.all_device_availability, archiver.handle_availability, qos=1)
    if len(archiver.spool):
        log.info("%d lines waiting in the spool %s from before: writing them", len(archiver.spool), archiver.spool.path)
    archiver.writer.start()
    mqtt.start()
    last_stats = time.monotonic()
    try:
        while not stop.wait(0.5):
            elapsed_s = time.monotonic() - last_stats
            if elapsed_s >= stats_interval_s:
                last_stats = time.monotonic()
                archiver.put_metrics(stats_points(archiver.stats_message(round(elapsed_s, 3)), utc_now()))
    finally:
        archiver.stopping.set()
        mqtt.stop()
        archiver.writer.stop()
        log.info("archiver stopped; totals %s", archiver.counters.snapshot())


def main(config: ArchiverConfig, stop: threading.Event) -> int:
    """The archiver service (``facebus archiver``), wired from its settings; runs until ``stop`` is set. Returns the
    exit code (1 when the spool cannot be opened or another archiver holds it). InfluxDB may be down at start:
    entries wait in the spool."""
    settings = config.archiver
    try:
        spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_age_s)
    except (SpoolLocked, sqlite3.Error, OSError) as exc:
        log.error("cannot open the spool %s: %s", settings.spool_path, exc)
        return 1
    influx = DeferredWriter(config.influx)
    mqtt = MqttClient(config.mqtt, Topics(config.mqtt.topic_prefix).service_availability("archiver"), "archiver")
    writer = SpoolWriter(influx, spool, settings.batch_size, settings.flush_interval_s, mqtt.counters,
                         settings.max_backoff_s)
    run(mqtt, Archiver(settings, spool, writer, mqtt.counters, mqtt.topics), stop, config.stats.interval_s)
    spool.close()
    influx.close()
    return 0
