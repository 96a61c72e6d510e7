"""``facebus live``: a live page of every camera's annotated view and the latest face events and access decisions
(docs/live.md).

One read-only MQTT client (the ``viewer`` account on a secured broker: it publishes nothing, not even availability)
subscribes to ``<prefix>/+/annotated`` (raw JPEG, QoS 0), ``<prefix>/+/face`` (FaceEvent without crop, QoS 1),
``<prefix>/+/access`` (AccessDecision, QoS 1) and ``<prefix>/+/availability``. :class:`LiveState` keeps per camera
its latest annotated JPEG (at most ``max_devices`` cameras) and a log of the latest ``max_log`` events and decisions.
A standard-library ``ThreadingHTTPServer`` serves them:

    GET /                        the page (HTML, CSS and JS inline; live.html beside this module)
    GET /cameras/<device>.mjpeg  MJPEG stream (multipart/x-mixed-replace): every new annotated frame, newest wins
    GET /cameras/<device>.jpg    the latest annotated frame, once
    GET /events                  Server-Sent Events: the current log on connect, then each new item (``data:`` JSON);
                                 ``event: cameras`` summaries at most once a second when something changed
    GET /api/state               JSON: mqtt_connected, cameras, log, counters
    GET /healthz                 200 ``ok`` while connected to the broker, else 503 (no authentication)

Every URL but ``/healthz`` needs HTTP Basic authentication with the page's own MQTT account (user name and password
of ``MqttSettings``) when it has one; without one (an anonymous broker) there is no authentication.

Nothing here imports face_recognition: the page runs anywhere facebus's base dependencies do.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging
import re
import select
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import datetime
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from facebus.events import AccessDecision, EventType, FaceEvent, describe_error, format_time, utc_now
from facebus.images import ImageError, check_frame
from facebus.mqtt import Message, MqttClient
from facebus.settings import LiveConfig, LiveSettings, MqttSettings
from facebus.stats import Counters
from facebus.topics import ID, OFFLINE, ONLINE, Topics

log = logging.getLogger(__name__)
M = TypeVar("M", bound=BaseModel)

PAGE_PATH = Path(__file__).with_name("live.html")
MAX_FRAME_BYTES = 4 * 1024 * 1024  # an annotated frame is a downscaled JPEG (640 px wide by default): ~50 KB
MAX_FRAME_PIXELS = 4096 * 4096
MAX_STREAMS = 100  # open MJPEG and SSE connections together; one page holds at most 5 (4 streams + its events)
KEEPALIVE_S = 15.0  # an idle stream sends something this often (SSE: a comment; MJPEG: the frame again)
POLL_S = 1.0  # a stream checks this often whether its client has gone
SUMMARY_INTERVAL_S = 1.0  # camera summaries on /events at most this often
SOCKET_TIMEOUT_S = 30.0  # a client that reads nothing for this long is dropped
BOUNDARY = "facebus-frame"
PART_START = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\n\r\n".encode()  # before each JPEG of an MJPEG stream
_CAMERA_PATH = re.compile(f"^/cameras/({ID})\\.(mjpeg|jpg)$")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


@dataclass
class Camera:
    """One camera as the page shows it: its latest annotated JPEG (None until the first) and availability."""

    device: str
    jpeg: bytes | None = None
    width_px: int | None = None
    height_px: int | None = None
    frames: int = 0  # annotated frames received since the page started
    updated_at: datetime | None = None  # receive time of the latest frame, UTC
    availability: str | None = None  # "online", "offline", or None when no availability was seen

    def summary(self) -> dict:
        """JSON-ready: device, frames, width_px, height_px, updated_at (RFC 3339 or null), availability."""
        return {"device": self.device, "frames": self.frames, "width_px": self.width_px,
                "height_px": self.height_px, "availability": self.availability,
                "updated_at": format_time(self.updated_at) if self.updated_at else None}


class LiveState:
    """What the page shows, filled from MQTT callbacks and read by HTTP threads; thread-safe.

    ``cameras``: at most ``max_devices`` (device id -> :class:`Camera`), made by a camera's first annotated frame or
    availability message; messages of further cameras are ignored and counted (``devices_ignored``). ``log``: the
    latest ``max_log`` face events and access decisions, oldest first, as dicts (see :meth:`face_item`,
    :meth:`access_item`) each with a ``seq`` number increasing by one per item. Bad payloads are logged with their
    topic and counted, never raised. Every change notifies :attr:`changed` (a Condition on the state's lock).
    """

    def __init__(self, topics: Topics, max_devices: int, max_log: int, counters: Counters | None = None) -> None:
        self.topics = topics
        self.max_devices = max_devices
        self.max_log = max_log
        self.counters = counters or Counters()
        self.changed = threading.Condition()
        self.cameras: dict[str, Camera] = {}
        self.log: deque[dict] = deque(maxlen=max_log)
        self.seq = 0  # seq of the latest log item
        self.version = 0  # bumped on every camera change
        self.closed = False
        self._event_ids: set[str] = set()  # event ids of the face events in the log: duplicates (QoS 1) are dropped

    # -- MQTT handlers (paho's network thread) ---------------------------------------------------------------------

    def on_annotated(self, message: Message) -> None:
        """An annotated frame: raw JPEG bytes, at most MAX_FRAME_BYTES and MAX_FRAME_PIXELS."""
        device = self._device(message, "frames_bad")
        if device is None:
            return
        try:
            if message.payload[:2] != b"\xff\xd8":
                raise ImageError("not a JPEG")
            width, height = check_frame(message.payload, MAX_FRAME_BYTES, MAX_FRAME_PIXELS)
        except ImageError as exc:
            self._bad("frames_bad", message, str(exc))
            return
        with self.changed:
            camera = self._camera(device)
            if camera is None:
                return
            camera.jpeg, camera.width_px, camera.height_px = message.payload, width, height
            camera.frames += 1
            camera.updated_at = utc_now()
            self.version += 1
            self.counters.add("frames_in")
            self.changed.notify_all()

    def on_availability(self, message: Message) -> None:
        """A camera's availability: ``online`` or ``offline``."""
        device = self._device(message, "availability_bad")
        if device is None:
            return
        state = message.payload.decode("utf-8", "replace").strip()
        if state not in (ONLINE, OFFLINE):
            self._bad("availability_bad", message, f"payload {message.payload[:40]!r} is neither online nor offline")
            return
        with self.changed:
            camera = self._camera(device)
            if camera is not None and camera.availability != state:
                camera.availability = state
                self.version += 1
                self.changed.notify_all()

    def on_face(self, message: Message) -> None:
        """A FaceEvent: ``decided`` and ``changed`` events go to the log (``ended`` ones repeat the track's last
        decision and are only counted); an event already in the log (a QoS 1 redelivery) is dropped."""
        event = self._parse(message, FaceEvent, "events_bad")
        if event is None:
            return
        self.counters.add("events_in")
        if event.event_type is EventType.ended:
            self.counters.add("events_ended")
            return
        with self.changed:
            if event.event_id in self._event_ids:
                self.counters.add("events_duplicate")
                return
            self._append(self.face_item(event))

    def on_access(self, message: Message) -> None:
        """An AccessDecision: goes to the log."""
        decision = self._parse(message, AccessDecision, "decisions_bad")
        if decision is None:
            return
        self.counters.add("decisions_in")
        with self.changed:
            self._append(self.access_item(decision))

    # -- log items -------------------------------------------------------------------------------------------------

    @staticmethod
    def face_item(event: FaceEvent) -> dict:
        """``{"kind": "face", "time", "device", "person" (null: unknown), "category", "event_type", "reason",
        "distance", "track_id", "event_id"}``; time is the event's captured_at, RFC 3339 UTC."""
        return {"kind": "face", "time": format_time(event.captured_at), "device": event.device_id,
                "person": event.person, "category": event.category.value, "event_type": event.event_type.value,
                "reason": event.reason.value, "distance": event.distance, "track_id": event.track_id,
                "event_id": event.event_id}

    @staticmethod
    def access_item(decision: AccessDecision) -> dict:
        """``{"kind": "access", "time", "device", "decision" (granted / denied), "reason", "person", "category",
        "track_id"}``; time is the decision's captured_at, RFC 3339 UTC."""
        return {"kind": "access", "time": format_time(decision.captured_at), "device": decision.device_id,
                "decision": decision.decision.value, "reason": decision.reason.value, "person": decision.person,
                "category": decision.category.value if decision.category else None, "track_id": decision.track_id}

    # -- readers (HTTP threads) ------------------------------------------------------------------------------------

    def log_after(self, seq: int) -> list[dict]:
        """Log items with a ``seq`` above ``seq``, oldest first (all of them for 0). Call holding :attr:`changed`
        or not: it takes the lock itself (re-entrant)."""
        with self.changed:
            return [item for item in self.log if item["seq"] > seq]

    def camera_summaries(self) -> list[dict]:
        """:meth:`Camera.summary` of every camera, sorted by device id."""
        with self.changed:
            return [self.cameras[device].summary() for device in sorted(self.cameras)]

    def latest_frame(self, device: str) -> tuple[bytes | None, int] | None:
        """(latest JPEG or None, frame count) of ``device``; None for a camera the page does not have."""
        with self.changed:
            camera = self.cameras.get(device)
            return None if camera is None else (camera.jpeg, camera.frames)

    def close(self) -> None:
        """Wake every waiting stream for good: they end."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    # -- internals -------------------------------------------------------------------------------------------------

    def _device(self, message: Message, counter: str) -> str | None:
        try:
            return self.topics.device_of(message.topic)
        except ValueError as exc:
            self._bad(counter, message, str(exc))
            return None

    def _parse(self, message: Message, model: type[M], counter: str) -> M | None:
        """``message``'s payload as ``model`` (a FaceEvent or AccessDecision) whose device_id is the topic's; None
        (counted in ``counter`` and logged) when the topic, the payload or the device does not fit."""
        device = self._device(message, counter)
        if device is None:
            return None
        try:
            parsed = model.model_validate_json(message.payload)
        except ValidationError as exc:
            self._bad(counter, message, describe_error(exc))
            return None
        if parsed.device_id != device:
            self._bad(counter, message, f"device_id {parsed.device_id!r} is not the topic's device")
            return None
        return parsed

    def _bad(self, counter: str, message: Message, reason: str) -> None:
        self.counters.add(counter)
        log.warning("bad message on %s ignored: %s", message.topic, reason, extra={"topic": message.topic})

    def _camera(self, device: str) -> Camera | None:  # holding the lock
        camera = self.cameras.get(device)
        if camera is None:
            if len(self.cameras) >= self.max_devices:
                self.counters.add("devices_ignored")
                return None
            camera = self.cameras[device] = Camera(device)
        return camera

    def _append(self, item: dict) -> None:  # holding the lock
        if len(self.log) == self.log.maxlen and self.log[0]["kind"] == "face":
            self._event_ids.discard(self.log[0]["event_id"])
        self.seq += 1
        self.log.append({"seq": self.seq} | item)
        if item["kind"] == "face":
            self._event_ids.add(item["event_id"])
        self.changed.notify_all()


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    page: LivePage

    def handle_error(self, request, client_address) -> None:  # noqa: ANN001 - socketserver's signature
        log.debug("http request from %s failed", client_address[0], exc_info=True)


class _Server6(_Server):
    address_family = socket.AF_INET6


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    timeout = SOCKET_TIMEOUT_S
    server_version = "facebus-live"
    sys_version = ""

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - BaseHTTPRequestHandler's signature
        log.debug("http %s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - BaseHTTPRequestHandler's name
        try:
            self._get()
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            pass  # the client went away or stopped reading: nothing to tell anyone

    def _get(self) -> None:
        page, path = self.server.page, urlsplit(self.path).path
        if path == "/healthz":
            ok = page.mqtt.connected
            self._send(HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE, b"ok\n" if ok else b"mqtt down\n",
                       "text/plain; charset=utf-8")
            return
        if not self._host_allowed():
            self._send(HTTPStatus.FORBIDDEN, b"host not allowed\n", "text/plain; charset=utf-8")
            return
        if not page.authorised(self.headers.get("Authorization")):
            self.send_response(HTTPStatus.UNAUTHORIZED)
            self.send_header("WWW-Authenticate", 'Basic realm="facebus live", charset="UTF-8"')
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", "13")
            self.end_headers()
            self.wfile.write(b"unauthorised\n")
            return
        if path in ("/", "/index.html"):
            self._send(HTTPStatus.OK, page.html, "text/html; charset=utf-8")
        elif path == "/api/state":
            self._send(HTTPStatus.OK, json.dumps(page.state_json()).encode(), "application/json")
        elif path == "/events":
            self._stream(self._events)
        elif match := _CAMERA_PATH.match(path):
            device, kind = match.groups()
            frame = page.state.latest_frame(device)
            if frame is None:
                self._send(HTTPStatus.NOT_FOUND, b"no such camera\n", "text/plain; charset=utf-8")
            elif kind == "jpg":
                if frame[0] is None:
                    self._send(HTTPStatus.NOT_FOUND, b"no frame yet\n", "text/plain; charset=utf-8")
                else:
                    self._send(HTTPStatus.OK, frame[0], "image/jpeg")
            else:
                self._stream(lambda: self._mjpeg(device))
        else:
            self._send(HTTPStatus.NOT_FOUND, b"not found\n", "text/plain; charset=utf-8")

    def _host_allowed(self) -> bool:
        """Without authentication on a loopback address, only loopback Host names (against DNS rebinding)."""
        page = self.server.page
        if page.mqtt_settings.username is not None or page.host not in _LOOPBACK:
            return True
        host = self.headers.get("Host", "")
        name = host[1:].partition("]")[0] if host.startswith("[") else host.rpartition(":")[0] or host
        return name in _LOOPBACK

    def _headers(self, status: HTTPStatus, content_type: str, length: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        if length is not None:
            self.send_header("Content-Length", str(length))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("X-Frame-Options", "DENY")
        if content_type.startswith("text/html"):
            self.send_header("Content-Security-Policy", "default-src 'none'; img-src 'self'; connect-src 'self'; "
                             "style-src 'unsafe-inline'; script-src 'unsafe-inline'; frame-ancestors 'none'")
        self.end_headers()

    def _send(self, status: HTTPStatus, body: bytes, content_type: str) -> None:
        self._headers(status, content_type, len(body))
        self.wfile.write(body)

    def _stream(self, body) -> None:  # noqa: ANN001 - a callable writing the stream
        page = self.server.page
        if not page.open_stream():
            self.server.page.state.counters.add("http_streams_refused")
            self._send(HTTPStatus.SERVICE_UNAVAILABLE, b"too many streams\n", "text/plain; charset=utf-8")
            return
        try:
            body()
        finally:
            page.close_stream()

    def _client_gone(self) -> bool:
        """True when the client closed its end: a stream's client sends nothing after its request, so a readable
        socket means end of file (or a misbehaving client, dropped all the same)."""
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
        except (OSError, ValueError):
            return True
        return bool(readable)

    def _mjpeg(self, device: str) -> None:
        """Each new frame of ``device`` as one part. The boundary and the headers of the next part go right after a
        frame, without a Content-Length: Chromium shows a part only once the next one has begun. Newest frame wins:
        a slow client skips frames, never queues them."""
        state = self.server.page.state
        self._headers(HTTPStatus.OK, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.wfile.write(PART_START)
        sent = 0
        while True:
            deadline = time.monotonic() + KEEPALIVE_S
            with state.changed:
                while not state.closed and state.cameras[device].frames == sent:
                    left = deadline - time.monotonic()
                    if left <= 0 or self._client_gone():
                        break
                    state.changed.wait(min(left, POLL_S))
                if state.closed or self._client_gone():
                    return
                camera = state.cameras[device]
                jpeg, sent = camera.jpeg, camera.frames
            if jpeg is None:
                continue
            self.wfile.write(jpeg + b"\r\n" + PART_START)

    def _events(self) -> None:
        """The current log, then each new item as ``data: <json>``; ``event: cameras`` with {mqtt_connected,
        max_log, cameras} on connect and then at most once a second when it changed; a comment when idle."""
        page, state = self.server.page, self.server.page.state
        self._headers(HTTPStatus.OK, "text/event-stream; charset=utf-8")
        self.wfile.write(b"retry: 2000\n\n")
        seq, version, connected = 0, -1, None
        summary_at = written_at = 0.0
        while True:
            with state.changed:
                if not state.closed and state.seq == seq:
                    state.changed.wait(min(SUMMARY_INTERVAL_S, POLL_S))
                if state.closed or self._client_gone():
                    return
                items = state.log_after(seq)
                now = time.monotonic()
                summary = None
                if (state.version != version or page.mqtt.connected != connected) and now >= summary_at:
                    version, connected, summary_at = state.version, page.mqtt.connected, now + SUMMARY_INTERVAL_S
                    summary = {"mqtt_connected": connected, "max_log": state.max_log,
                               "cameras": state.camera_summaries()}
            chunks = [f"data: {json.dumps(item)}\n\n" for item in items]
            if summary is not None:
                chunks.append(f"event: cameras\ndata: {json.dumps(summary)}\n\n")
            if not chunks and now - written_at >= KEEPALIVE_S:
                chunks.append(": keepalive\n\n")
            if chunks:
                self.wfile.write("".join(chunks).encode())
                written_at = now
            if items:
                seq = items[-1]["seq"]


class LivePage:
    """The live page: its MQTT client, :class:`LiveState` and HTTP server.

    ``port``: None listens on ``settings.port``; 0 on a free port. After :meth:`start`, :attr:`port` is the port
    listened on and :attr:`url` the page's address. :meth:`start` raises OSError when the address cannot be bound.
    The MQTT session is always clean (``session_expiry_s`` 0): a live page wants no backlog of old events.
    """

    def __init__(self, mqtt_settings: MqttSettings, settings: LiveSettings, port: int | None = None) -> None:
        self.mqtt_settings = mqtt_settings
        self.settings = settings
        self.host = settings.host
        self.port = settings.port if port is None else port
        self.mqtt = MqttClient(mqtt_settings.model_copy(update={"session_expiry_s": 0}), None, "live")
        self.topics = self.mqtt.topics
        self.state = LiveState(self.topics, settings.max_devices, settings.max_log, self.mqtt.counters)
        self.html = PAGE_PATH.read_bytes()
        password = mqtt_settings.password.get_secret_value() if mqtt_settings.password else ""
        self._user = mqtt_settings.username.encode() if mqtt_settings.username is not None else None
        self._password = password.encode()
        self._streams = 0
        self._streams_lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """``http://<host>:<port>/`` (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def start(self) -> None:
        """Listen, serve in a background thread, connect to the broker in the background."""
        server = (_Server6 if ":" in self.host else _Server)((self.host, self.port), _Handler)
        server.page = self
        self._server, self.port = server, server.server_address[1]
        self.mqtt.subscribe(self.topics.all_annotated, self.state.on_annotated, qos=0)
        self.mqtt.subscribe(self.topics.all_faces, self.state.on_face, qos=1)
        self.mqtt.subscribe(self.topics.all_access, self.state.on_access, qos=1)
        self.mqtt.subscribe(self.topics.all_device_availability, self.state.on_availability, qos=1)
        self._thread = threading.Thread(target=server.serve_forever, name="live-http", daemon=True)
        self._thread.start()
        self.mqtt.start()

    def stop(self) -> None:
        """End every stream, stop serving, disconnect."""
        self.state.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self.mqtt.stop()

    def __enter__(self) -> LivePage:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def authorised(self, header: str | None) -> bool:
        """True when no account is set (anonymous broker), or ``header`` is ``Basic <base64 user:password>`` of the
        page's MQTT account (compared in constant time)."""
        if self._user is None:
            return True
        scheme, _, encoded = (header or "").partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
        except (binascii.Error, ValueError):
            return False
        user_ok = hmac.compare_digest(user, self._user)
        password_ok = hmac.compare_digest(password, self._password)
        return bool(sep) and user_ok and password_ok

    def open_stream(self) -> bool:
        with self._streams_lock:
            if self._streams >= MAX_STREAMS:
                return False
            self._streams += 1
            return True

    def close_stream(self) -> None:
        with self._streams_lock:
            self._streams -= 1

    def state_json(self) -> dict:
        """``{"mqtt_connected": bool, "cameras": [Camera.summary()...], "log": [items, oldest first],
        "counters": {name: count}}``."""
        with self.state.changed:
            cameras, items = self.state.camera_summaries(), self.state.log_after(0)
        return {"mqtt_connected": self.mqtt.connected, "cameras": cameras, "log": items,
                "counters": self.state.counters.snapshot()}


def main(config: LiveConfig, stop: threading.Event) -> int:
    """``facebus live``: serve the page until ``stop`` is set. Returns the exit code: 0, or 1 when the address
    cannot be listened on."""
    mqtt_settings, settings = config.mqtt, config.live
    page = LivePage(mqtt_settings, settings)
    try:
        page.start()
    except OSError as exc:
        log.error("cannot listen on %s:%s: %s", settings.host, settings.port, exc)
        return 1
    if mqtt_settings.username is None:
        how = "no password (the broker account is anonymous)"
        if settings.host not in _LOOPBACK:
            log.warning("the live page has no password and listens on %s: anyone who reaches it sees every "
                        "camera; use a secured broker's viewer account (docs/live.md)", settings.host)
    else:
        how = f"HTTP Basic as {mqtt_settings.username!r} with its MQTT password"
    log.info("live page on %s, %s", page.url, how)
    try:
        stop.wait()
    finally:
        page.stop()
    return 0
