"""The recognizer: frames in from every device, face-track events out (docs/mqtt.md).

Threads and processes: paho's network thread runs :meth:`Recognizer.on_frame`, which keeps only the frames of this
recognizer's own devices (recognizer.sharing), checks their size and header, and drops each into its device's
latest-frame-wins slot at the worker that owns the device; one feeder thread per worker
hands that worker its next frame and publishes what comes back; worker processes decode, detect, track, encode and
match (recognizer.workers, recognizer.engine). A gallery thread polls the gallery and sends changes to the workers.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from collections import OrderedDict

from facebus.events import (
    CAPTURE_TIME_PROPERTY,
    AccessDecision,
    Category,
    EventType,
    FaceEvent,
    Visitor,
    parse_time,
    utc_now,
)
from facebus.images import ImageError, check_frame
from facebus.mqtt import Message, MqttClient
from facebus.settings import (
    AccessSettings,
    RecognizerConfig,
    RecognizerSettings,
    VisitorSettings,
    WebhookSettings,
)
from facebus.stats import Samples, StatsMessage, split_by_device
from facebus.topics import Topics
from recognizer.access import AccessState
from recognizer.discovery import discovery_messages
from recognizer.engine import FrameResult
from recognizer.gallery import GalleryLoader
from recognizer.models import ModelFileError
from recognizer.sharing import Membership
from recognizer.visitors import Visitors, VisitorStore
from recognizer.webhooks import Webhooks
from recognizer.workers import DeviceOwners, Frame, Worker

log = logging.getLogger(__name__)

MAX_TRACK_VISITORS = 10_000  # live tracks remembered with their visitor, for their later events
RETENTION_EVERY_S = 60.0


class Recognizer:
    def __init__(self, settings: RecognizerSettings, mqtt: MqttClient, gallery: GalleryLoader,
                 access: AccessSettings | None = None, webhooks: WebhookSettings | None = None,
                 visitors: VisitorSettings | None = None) -> None:
        self.settings = settings
        self.access_settings = access or AccessSettings()
        self.access = AccessState(self.access_settings, settings.max_devices)
        self.webhooks = Webhooks(webhooks or WebhookSettings(), mqtt.counters)
        # devices whose Home Assistant configs were published (bounded by max_devices)
        self._discovered: set[str] = set()
        visitors = visitors or VisitorSettings()
        self.visitors = (Visitors(visitors, settings.model, VisitorStore.open(visitors, settings.gallery))
                         if visitors.enabled else None)
        self._track_visitors: OrderedDict[str, Visitor] = OrderedDict()
        self._track_visitors_lock = threading.Lock()
        self.mqtt = mqtt
        self.gallery = gallery  # its index is replaced whole by the gallery thread: readers see the old or the new
        self.counters = mqtt.counters
        self.latency_ms = Samples()
        self.workers: list[Worker] = []
        self.owners = DeviceOwners(1, 1)  # replaced by start_workers
        self._owners_lock = threading.Lock()  # the MQTT thread assigns devices, the main thread expires them
        self._refusing_devices = False
        self.membership = Membership(settings.instance)
        self._gallery_published = False

    # -- MQTT thread -----------------------------------------------------------------------------------------------

    def on_frame(self, message: Message) -> None:
        """Queue a frame of one of this recognizer's devices (newest wins per device). Frames of other recognizers'
        devices are skipped; oversized, undecodable-by-header or mis-addressed frames and new devices past
        ``max_devices`` are logged, counted and skipped."""
        try:
            device_id = self.mqtt.topics.device_of(message.topic)
        except ValueError as exc:
            self.counters.add("frames_bad")
            log.warning("frame on %s ignored: %s", message.topic, exc, extra={"topic": message.topic})
            return
        if not self.membership.owns(device_id):
            self.counters.add("frames_other" if self.membership.ready else "frames_not_ready")
            return
        self.counters.add("frames_in")
        try:
            check_frame(message.payload, self.settings.max_frame_bytes, self.settings.max_frame_pixels)
        except ImageError as exc:
            self.counters.add("frames_bad")
            log.warning("frame on %s rejected: %s", message.topic, exc, extra={"topic": message.topic})
            return
        received_at = captured_at = utc_now()
        stamp = message.user_properties.get(CAPTURE_TIME_PROPERTY)
        if stamp:
            try:
                captured_at = parse_time(stamp)
            except ValueError:
                self.counters.add("frames_bad_capture_time")
            if abs((captured_at - received_at).total_seconds()) > self.settings.max_clock_skew_s:
                captured_at = received_at  # a camera clock far off would freeze or scramble its tracks' timing
                self.counters.add("frames_bad_capture_time")
        now_s = time.monotonic()
        with self._owners_lock:
            worker = self.owners.owner(device_id, now_s)
        if worker is None:
            self.counters.add("frames_refused")
            if not self._refusing_devices:
                self._refusing_devices = True
                log.warning("%d devices followed (max_devices): refusing frames of new devices, first %s, until one "
                            "has been quiet for %.0f s (counted as frames_refused)", len(self.owners), device_id,
                            self.settings.device_idle_s, extra={"topic": message.topic})
            return
        self.counters.add(f"frames_in/{device_id}")
        if self.settings.ha_discovery and device_id not in self._discovered:
            self.announce(device_id)
        frame = Frame(message.topic, device_id, message.payload, captured_at, now_s)
        if self.workers[worker].slots.put(device_id, frame):
            self.counters.add("frames_dropped")
            self.counters.add(f"frames_dropped/{device_id}")

    def announce(self, device_id: str) -> None:
        """Publish the Home Assistant discovery configs of a newly seen device (retained, QoS 1;
        docs/home-assistant.md)."""
        if len(self._discovered) >= self.settings.max_devices:
            self._discovered.clear()  # republishing a retained config is harmless; the set stays bounded
        self._discovered.add(device_id)
        for topic, payload in discovery_messages(device_id, self.mqtt.topics, self.settings.ha_discovery_prefix,
                                                 self.settings.instance):
            self.mqtt.publish(topic, payload, qos=1, retain=True)

    def on_availability(self, message: Message) -> None:
        """Follow which recognizers are online (recognizer.sharing): their devices are theirs."""
        try:
            instance = self.mqtt.topics.service_of(message.topic)
        except ValueError:
            return
        if self.membership.update(instance, message.payload):
            log.info("recognizers online: %s (this one: %s)", ", ".join(sorted(self.membership.online)) or "none",
                     self.settings.instance)

    def expire_devices(self, now_s: float | None = None) -> list[str]:
        """Forget the devices quiet for ``device_idle_s``: they leave the stats and free their place."""
        with self._owners_lock:
            forgotten = self.owners.expire(time.monotonic() if now_s is None else now_s)
            if forgotten and self._refusing_devices:
                self._refusing_devices = False
                log.info("%d quiet devices forgotten: new devices are accepted again", len(forgotten))
        for device_id in forgotten:
            self.counters.forget_device(device_id)
            self.access.forget(device_id)
        return forgotten

    # -- feeder threads --------------------------------------------------------------------------------------------

    def feed_once(self, worker: Worker, timeout_s: float = 0.5) -> bool:
        """Hand ``worker`` its next waiting frame (or, when none arrives within ``timeout_s``, a tick that ends the
        tracks of quiet devices) and publish what comes back. False when there was no frame."""
        taken = worker.slots.take(timeout_s)
        if taken is None:
            reply = worker.request("tick", time.monotonic())
            if reply.kind == "result":
                self.publish_events(reply.value)
            return False
        _, frame = taken
        reply = worker.request("frame", frame.device_id, frame.jpeg, frame.captured_at, frame.received_s)
        if reply.kind == "bad":
            self.counters.add("frames_bad")
            log.warning("frame on %s rejected: %s", frame.topic, reply.value, extra={"topic": frame.topic})
        elif reply.kind == "error":
            self.counters.add("worker_errors")
            log.error("worker %d failed on a frame of %s: %s", worker.number, frame.topic, reply.value,
                      extra={"topic": frame.topic})
        else:
            self._publish_result(frame, reply.value)
        return True

    def _publish_result(self, frame: Frame, result: FrameResult) -> None:
        if result.still:
            self.counters.add("frames_still")
            self.counters.add(f"frames_still/{frame.device_id}")
            return
        self.counters.add("frames_processed")
        self.counters.add(f"frames_processed/{frame.device_id}")
        self.counters.add("faces_encoded", result.encoded)
        self.latency_ms.add((utc_now() - frame.captured_at).total_seconds() * 1000)
        if result.annotated is not None:
            self.mqtt.publish(self.mqtt.topics.annotated(frame.device_id), result.annotated, qos=0)
        if result.tracks is not None:
            self.mqtt.publish(self.mqtt.topics.tracks(frame.device_id), result.tracks.model_dump_json(), qos=0)
        self.publish_events(result.events, frame_tracks=result.tracks is not None)
        if result.tracks is not None and self.access_settings.enabled:
            self.publish_decision(self.access.update(frame.device_id, result.tracks.tracks, frame.captured_at))

    def publish_decision(self, decision: AccessDecision | None) -> None:
        """Publish a changed access decision (QoS 1, expiring after ``expiry_s``: never acted on late)."""
        if decision is None:
            return
        self.mqtt.publish(self.mqtt.topics.access(decision.device_id), decision.to_json(), qos=1,
                          expiry_s=self.access_settings.expiry_s)
        self.webhooks.send_decision(decision)
        self.counters.add(f"access_{decision.decision.value}")
        log.info("access %s on %s: %s %s", decision.decision.value, decision.device_id, decision.reason.value,
                 decision.person or "")

    def publish_events(self, events: list[FaceEvent], frame_tracks: bool = False) -> None:
        """Publish face events (QoS 1) on their devices' face topics, without the crop for every reader and with it
        for the archiver (the broker's ACL lets only the archiver read the crops), counting and logging each.
        ``frame_tracks``: the events come with a frame's live tracks, which decide access (else an ended track
        decides it again)."""
        for event in events:
            if event.category is Category.unknown and self.visitors is not None:
                event = self.with_visitor(event)
            self.mqtt.publish(self.mqtt.topics.face(event.device_id), event.without_crop().to_json(), qos=1)
            self.mqtt.publish(self.mqtt.topics.face_with_crop(event.device_id), event.to_json(), qos=1)
            self.webhooks.send_event(event)
            self.counters.add(f"events_{event.event_type.value}")
            if event.event_type.value != "ended":
                self.counters.add(f"faces/{event.device_id}")
                self.counters.add("faces_" + event.category.value)
            if event.event_type is EventType.ended and self.access_settings.enabled and not frame_tracks:
                self.publish_decision(self.access.end_track(event.device_id, event.track_id, event.last_seen))
            log.info(
                "track %s %s on %s: %s %s (%s) distance=%s second=%s@%s frames=%d samples=%d",
                event.track_id, event.event_type.value, event.device_id, event.person or "unknown",
                event.category.value, event.reason.value,
                "-" if event.distance is None else f"{event.distance:.3f}", event.second_person,
                "-" if event.second_distance is None else f"{event.second_distance:.3f}", event.frames, event.samples,
            )

    def with_visitor(self, event: FaceEvent) -> FaceEvent:
        """The unknown track's event with its visitor: found or made from the track's encodings on its first event
        that has any, then the same for the track's later events. Unchanged when the track was never encoded."""
        with self._track_visitors_lock:
            visitor = self._track_visitors.get(event.track_id)
        if visitor is None and event._encodings:
            crop = base64.b64decode(event.crop_jpeg_b64) if event.crop_jpeg_b64 else None
            visitor = self.visitors.see(event._encodings, event.device_id, event.first_seen, crop)
            with self._track_visitors_lock:
                self._track_visitors[event.track_id] = visitor
                while len(self._track_visitors) > MAX_TRACK_VISITORS:
                    self._track_visitors.popitem(last=False)
        if event.event_type is EventType.ended:
            with self._track_visitors_lock:
                self._track_visitors.pop(event.track_id, None)
        return event if visitor is None else event.model_copy(update={"visitor": visitor})

    def _feed(self, worker: Worker, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.feed_once(worker)
            except Exception:  # noqa: BLE001 - one bad frame must not stop the service
                self.counters.add("worker_errors")
                log.exception("unexpected error while processing a frame")

    # -- gallery thread --------------------------------------------------------------------------------------------

    def refresh_gallery(self) -> bool:
        """Bring the gallery up to date and publish its state (retained). While the source cannot be listed (S3 down,
        folder gone) the last good gallery stays in force; the failure is logged and counted, and False returned.
        Raises ModelFileError when the face model cannot load (an installation fault, not the source's)."""
        started = time.perf_counter()
        try:
            change = self.gallery.refresh()
        except ModelFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - any source failure: keep serving the last gallery
            self.counters.add("gallery_errors")
            log.error("gallery %s unreachable, keeping the last one (%d images): %s",
                      self.settings.gallery, len(self.gallery.index), exc)
            return False
        if change.changed or not self._gallery_published:
            log.info(
                "gallery %s: %d people, %d images, %d rejected; +%d -%d images in %.1f s",
                self.settings.gallery, len(self.gallery.index.people), len(self.gallery.index),
                len(self.gallery.rejected), len(change.added), len(change.removed), time.perf_counter() - started,
            )
            for worker in self.workers:
                worker.set_gallery(self.gallery.index)
            self.mqtt.publish(self.mqtt.topics.gallery_state(), json.dumps(self.gallery.state()), qos=1, retain=True)
            self._gallery_published = True
        return True

    def load_first_gallery(self, stop: threading.Event, max_backoff_s: float = 30.0) -> bool:
        """Read the gallery before going online, retrying after 1, 2, 4 … ``max_backoff_s`` s while its source
        cannot be read, unless ``start_without_gallery``. False when ``stop`` was set first."""
        delay_s = 1.0
        while not self.refresh_gallery():
            if self.settings.start_without_gallery:
                log.warning("starting without a gallery (start_without_gallery): every face is unknown until %s "
                            "can be read (checked every %.0f s)", self.settings.gallery, self.settings.gallery_poll_s)
                return True
            log.error("not going online until the gallery %s can be read; next try in %.0f s",
                      self.settings.gallery, delay_s)
            if stop.wait(delay_s):
                return False
            delay_s = min(max_backoff_s, delay_s * 2)
        return True

    def _watch_gallery(self, stop: threading.Event) -> None:
        while not stop.wait(self.settings.gallery_poll_s):
            self.refresh_gallery()

    STATS_NAMES = ("frames_in", "frames_bad", "frames_bad_capture_time", "frames_refused", "frames_dropped",
                   "frames_still", "frames_processed", "frames_other", "frames_not_ready", "faces_encoded",
                   "events_decided", "events_changed", "events_ended", "access_granted", "access_denied",
                   "webhooks_sent", "webhooks_failed", "webhooks_dropped",
                   "worker_errors", "gallery_errors")

    def stats_message(self, interval_s: float) -> StatsMessage:
        """The figures of the last interval, as published on ``<prefix>/services/<instance>/stats``: every counter
        the recognizer keeps (zeros included), gauges, latency percentiles, and counts per followed device."""
        service, devices = split_by_device(self.counters.deltas())
        figures = {name: 0 for name in self.STATS_NAMES} | service | {
            "queue_depth": sum(len(w.slots) for w in self.workers),
            "queued_bytes": sum(w.slots.bytes for w in self.workers),
            "devices": len(self.owners),
            "recognizers_online": len(self.membership.online),
            "workers": len(self.workers),
            "worker_restarts": sum(w.restarts for w in self.workers),
            "gallery_people": len(self.gallery.index.people),
            "gallery_images": len(self.gallery.index),
        }
        if self.visitors is not None:
            figures |= {"visitors": len(self.visitors.book), "visitors_pending": self.visitors.pending(),
                        "visitor_store_errors": self.visitors.errors}
        latency = self.latency_ms.drain_percentiles(50, 99)
        if latency:
            figures |= {"latency_p50_ms": latency[50], "latency_p99_ms": latency[99]}
        return StatsMessage(service=self.settings.instance, interval_s=interval_s, service_stats=figures,
                            devices=devices)

    def start_workers(self) -> None:
        """Start ``settings.worker_count()`` worker processes (in parallel), each with the current gallery."""
        count = self.settings.worker_count()
        started = time.perf_counter()
        threads, workers = [], [None] * count

        def start(n: int) -> None:
            workers[n] = Worker(n, self.settings)

        for n in range(count):
            threads.append(threading.Thread(target=start, args=(n,)))
            threads[-1].start()
        for thread in threads:
            thread.join()
        if any(w is None for w in workers):
            raise RuntimeError("a recognizer worker failed to start (see the error above)")
        for worker in workers:
            worker.set_gallery(self.gallery.index)
        self.owners = DeviceOwners(count, self.settings.max_devices, self.settings.device_idle_s)
        self.workers = workers
        log.info("%d workers (model %s) started in %.1f s", count, self.settings.model, time.perf_counter() - started)

    def run(self, stop: threading.Event, stats_interval_s: float = 10.0) -> None:
        """Load the gallery, start the workers, subscribe to every device's frames and process them until ``stop``
        is set; check the gallery for changes every ``gallery_poll_s`` and publish the stats every
        ``stats_interval_s``. At the end the live tracks end (their events are published) and the workers stop."""
        self.mqtt.subscribe(self.mqtt.topics.service_availability("+"), self.on_availability, qos=1)
        self.mqtt.subscribe(self.mqtt.topics.all_frames, self.on_frame, qos=0)
        if not self.load_first_gallery(stop):  # before connecting: "online" means the gallery is in force
            return
        self.start_workers()
        self.webhooks.start()
        writer = None
        if self.visitors is not None:
            self.visitors.flush_once()  # read the visitor store first: a stranger seen before keeps their id
            writer = threading.Thread(target=self.visitors.run, args=(stop,), name="visitors", daemon=True)
            writer.start()
        self.mqtt.start()
        if self.settings.gallery_poll_s > 0:
            threading.Thread(target=self._watch_gallery, args=(stop,), name="gallery", daemon=True).start()
        feeders = [threading.Thread(target=self._feed, args=(w, stop), name=f"feeder-{w.number}", daemon=True)
                   for w in self.workers]
        for feeder in feeders:
            feeder.start()
        last_stats = last_retention = time.monotonic()
        try:
            while not stop.wait(min(1.0, stats_interval_s)):
                self.expire_devices()
                if self.visitors is not None and time.monotonic() - last_retention >= RETENTION_EVERY_S:
                    last_retention = time.monotonic()
                    self.visitors.expire()
                elapsed_s = time.monotonic() - last_stats
                if elapsed_s >= stats_interval_s:
                    last_stats = time.monotonic()
                    message = self.stats_message(round(elapsed_s, 3))
                    self.mqtt.publish(self.mqtt.topics.service_stats(self.settings.instance),
                                      message.model_dump_json(), qos=0)
                    log.debug("stats %s", message)
        finally:
            for feeder in feeders:
                feeder.join(timeout=5)
            for worker in self.workers:
                self.publish_events(worker.stop())
            if writer is not None:
                writer.join(10)
                self.visitors.flush_once()  # what the last events changed
            self.webhooks.stop(5.0)
            self.mqtt.stop()
            log.info("recognizer stopped; totals %s", self.counters.snapshot())


def main(config: RecognizerConfig, stop: threading.Event) -> int:
    """The recognizer service (``facebus recognizer``), wired from its settings; runs until ``stop`` is set. Returns
    the exit code (1 for a gallery setting that cannot be opened, e.g. ``s3://`` without a bucket, or a face model
    that cannot load)."""
    from recognizer.photos import open_gallery

    settings = config.recognizer
    try:
        gallery = open_gallery(settings)
    except ValueError as exc:
        log.error("%s", exc)
        return 1
    availability = Topics(config.mqtt.topic_prefix).service_availability(settings.instance)
    mqtt = MqttClient(config.mqtt, availability, settings.instance)
    try:
        Recognizer(settings, mqtt, gallery, config.access, config.webhooks,
                   config.visitors).run(stop, config.stats.interval_s)
    except ModelFileError as exc:  # e.g. --model dlib without face_recognition: nothing to retry
        log.error("%s", exc)
        return 1
    return 0
