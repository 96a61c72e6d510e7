"""HTTP webhooks: face events and access decisions POSTed as JSON to the URLs in ``FACEBUS_WEBHOOK_URLS``
(docs/webhooks.md).

Design: one *lane* per URL, each with its own bounded queue, its own thread and its own ``requests.Session``.
``send_event`` / ``send_decision`` only filter, serialise, sign and append to every lane's queue (never block, never
do I/O). A lane sends its bodies one at a time, in order, retrying a body in place (exponential backoff) before it
takes the next. So:

- a slow or dead URL holds back only its own lane: the other URLs never wait for it;
- each URL receives the bodies in the order they were sent (an access decision is never overtaken by an older one);
- a body's retries delay the newer bodies of the same URL by at most ``max_attempts`` timeouts plus the backoff
  between them, never indefinitely; past ``max_queued`` waiting bodies the oldest is dropped (``webhooks_dropped``).

Counters (per body and URL): ``webhooks_sent``, ``webhooks_failed`` (every attempt failed, or an answer that is not
retried), ``webhooks_dropped`` (queue full, or still waiting when :meth:`Webhooks.stop` gave up).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import requests

from facebus.events import AccessDecision, EventType, FaceEvent
from facebus.settings import WebhookSettings
from facebus.stats import Counters

log = logging.getLogger(__name__)

INITIAL_BACKOFF_S = 0.5  # wait after the first failed attempt; doubles after each further one, up to max_backoff_s
SIGNATURE_HEADER = "X-Facebus-Signature"
EVENT_HEADER = "X-Facebus-Event"
DELIVERY_HEADER = "X-Facebus-Delivery"
SENT_EVENT_TYPES = frozenset({EventType.decided, EventType.changed})  # an ended track is not news for a webhook


def sign(secret: bytes | str, body: bytes) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of the exact ``body`` bytes under ``secret`` (a str is taken as UTF-8), as
    sent in the ``X-Facebus-Signature`` header."""
    key = secret.encode() if isinstance(secret, str) else secret
    return "sha256=" + hmac.new(key, body, hashlib.sha256).hexdigest()


def verify(secret: bytes | str, body: bytes, header: str | None) -> bool:
    """True when ``header`` (the received ``X-Facebus-Signature`` value) is the signature of ``body`` under
    ``secret``; False for a wrong, malformed or missing (None) header. Constant-time comparison."""
    if not isinstance(header, str):
        return False
    return hmac.compare_digest(sign(secret, body).encode(), header.strip().encode("utf-8", "replace"))


def display_url(url: str) -> str:
    """``url`` for logs: without user name, password and query string (they may hold credentials)."""
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((parts.scheme, netloc, parts.path, "", "")) + ("?..." if parts.query else "")


@dataclass(frozen=True)
class _Body:
    kind: str  # "face" or "access": the X-Facebus-Event header
    data: bytes  # the exact JSON bytes POSTed (and signed)
    delivery_id: str  # X-Facebus-Delivery: the same for every URL and every attempt
    signature: str | None


@dataclass(frozen=True)
class _Outcome:
    ok: bool
    retry: bool
    reason: str
    retry_after_s: float | None = None


class _Lane:
    """One URL: a bounded FIFO of bodies, a thread sending them in order, a session of its own."""

    def __init__(self, owner: Webhooks, url: str) -> None:
        self.owner = owner
        self.url = url
        self.shown_url = display_url(url)
        self.queue: deque[_Body] = deque()
        self.cond = threading.Condition()
        self.overflowing = False  # a drop was logged; logged again only after the queue emptied
        self.thread = threading.Thread(target=self._run, name=f"webhook-{self.shown_url}", daemon=True)

    def put(self, body: _Body) -> None:
        settings, counters = self.owner.settings, self.owner.counters
        first_drop = False
        with self.cond:
            if len(self.queue) >= settings.max_queued:
                self.queue.popleft()
                counters.add("webhooks_dropped")
                first_drop, self.overflowing = not self.overflowing, True
            self.queue.append(body)
            self.cond.notify()
        if first_drop:
            log.warning("webhook queue for %s full (%d bodies): dropping the oldest (counted webhooks_dropped)",
                        self.shown_url, settings.max_queued, extra={"url": self.shown_url})

    def size(self) -> int:
        with self.cond:
            return len(self.queue)

    def _run(self) -> None:
        session = requests.Session()
        try:
            while True:
                with self.cond:
                    while not self.queue and not self.owner._stopping.is_set():
                        self.overflowing = False
                        self.cond.wait()
                    if self.owner._abort.is_set() or not self.queue:
                        left = len(self.queue)
                        self.queue.clear()
                        break
                    body = self.queue.popleft()
                try:
                    self._deliver(session, body)
                except Exception:  # noqa: BLE001 - a bug here must not end the lane
                    self.owner.counters.add("webhooks_failed")
                    log.exception("webhook to %s failed (delivery %s)", self.shown_url, body.delivery_id,
                                  extra={"url": self.shown_url})
        finally:
            session.close()
        if left:
            self.owner.counters.add("webhooks_dropped", left)
            log.warning("%d webhook bodies for %s not sent: stopped", left, self.shown_url,
                        extra={"url": self.shown_url})

    def _deliver(self, session: requests.Session, body: _Body) -> None:
        settings, counters = self.owner.settings, self.owner.counters
        backoff = min(INITIAL_BACKOFF_S, settings.max_backoff_s)
        for attempt in range(1, settings.max_attempts + 1):
            outcome = self._attempt(session, body)
            if outcome.ok:
                counters.add("webhooks_sent")
                return
            if not outcome.retry or attempt == settings.max_attempts:
                break
            wait = backoff
            if outcome.retry_after_s is not None:
                wait = min(settings.max_backoff_s, max(backoff, outcome.retry_after_s))
            if self.owner._abort.wait(wait):
                counters.add("webhooks_dropped")
                log.warning("webhook to %s not sent (delivery %s): stopped after %d attempts (last: %s)",
                            self.shown_url, body.delivery_id, attempt, outcome.reason, extra={"url": self.shown_url})
                return
            backoff = min(backoff * 2, settings.max_backoff_s)
        counters.add("webhooks_failed")
        log.warning("webhook to %s failed (delivery %s, %s) after %d attempt%s: %s", self.shown_url, body.delivery_id,
                    body.kind, attempt, "" if attempt == 1 else "s", outcome.reason, extra={"url": self.shown_url})

    def _attempt(self, session: requests.Session, body: _Body) -> _Outcome:
        headers = {"Content-Type": "application/json", "User-Agent": "facebus-webhooks",
                   EVENT_HEADER: body.kind, DELIVERY_HEADER: body.delivery_id}
        if body.signature is not None:
            headers[SIGNATURE_HEADER] = body.signature
        timeout = self.owner.settings.timeout_s
        try:
            response = session.post(self.url, data=body.data, headers=headers, timeout=timeout, allow_redirects=False)
        except requests.Timeout:
            return _Outcome(False, True, f"timed out after {timeout:g} s")
        except requests.ConnectionError as exc:
            return _Outcome(False, True, f"connection failed: {_root_cause(exc)}")
        except requests.RequestException as exc:  # invalid URL, too many redirects, ...: retrying will not help
            return _Outcome(False, False, f"request failed: {_root_cause(exc)}")
        status = response.status_code
        reason = f"HTTP {status} {response.reason or ''}".rstrip()
        retry_after = _retry_after_s(response.headers.get("Retry-After"))
        response.close()
        if 200 <= status < 300:
            return _Outcome(True, False, reason)
        if status == 429 or status >= 500:
            return _Outcome(False, True, reason, retry_after)
        return _Outcome(False, False, reason + (" (redirects are not followed)" if 300 <= status < 400 else ""))


def _root_cause(exc: BaseException) -> str:
    """The innermost reason of a requests/urllib3 error (``[Errno 111] Connection refused``), not its long wrapper."""
    seen = exc
    while True:
        inner = getattr(seen, "reason", None)
        if not isinstance(inner, BaseException) and seen.args and isinstance(seen.args[0], BaseException):
            inner = seen.args[0]
        if not isinstance(inner, BaseException) or inner is seen:
            break
        seen = inner
    text = str(seen)
    head, sep, tail = text.partition(": ")  # urllib3: "HTTPConnection(host=..., port=...): Failed to establish ..."
    return (tail if sep and ("Connection" in head or head.startswith("<")) else text) or type(seen).__name__


def _retry_after_s(value: str | None) -> float | None:
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: ignored, the backoff applies


class Webhooks:
    """POSTs face events and access decisions to every URL of ``settings.urls`` (none: off).

    :meth:`send_event` and :meth:`send_decision` never block: they return at once, True when the body was queued
    for every URL (False: filtered out, webhooks off, or stopped). :meth:`start` starts one thread per URL,
    :meth:`stop` ends them. ValueError when a URL is not ``http(s)://host...``.
    """

    def __init__(self, settings: WebhookSettings, counters: Counters) -> None:
        self.settings = settings
        self.counters = counters
        self._secret = settings.secret.get_secret_value().encode() if settings.secret else None
        self._categories = frozenset(settings.categories)
        self._decisions = frozenset(settings.decisions)
        self._lanes = [_Lane(self, url) for url in dict.fromkeys(settings.urls)]  # a URL listed twice gets it once
        self._stopping = threading.Event()  # no new bodies; the lanes send what is queued
        self._abort = threading.Event()  # the lanes give up what is left
        self._started = False

    @property
    def enabled(self) -> bool:
        return bool(self._lanes)

    def start(self) -> None:
        """Start the senders (one thread per URL); bodies sent before are queued and go out now. Idempotent."""
        if self._stopping.is_set():
            raise RuntimeError("webhooks were stopped; make a new Webhooks")
        if not self._started:
            self._started = True
            for lane in self._lanes:
                lane.thread.start()

    def stop(self, timeout_s: float = 5.0) -> bool:
        """Stop taking bodies and give the senders up to ``timeout_s`` seconds to send what is queued (retries
        included). Past it, what is still waiting is dropped (counted ``webhooks_dropped``) once the attempt under way
        (at most ``settings.timeout_s``) ends. True when every sender had finished within ``timeout_s``."""
        deadline = time.monotonic() + max(0.0, timeout_s)
        self._stopping.set()
        for lane in self._lanes:
            with lane.cond:
                lane.cond.notify_all()
        if not self._started:
            return True
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
        finished = not any(lane.thread.is_alive() for lane in self._lanes)
        if not finished:
            self._abort.set()
        return finished

    def queued(self) -> dict[str, int]:
        """Bodies waiting per URL (not counting the one being sent); each at most ``settings.max_queued``."""
        return {lane.url: lane.size() for lane in self._lanes}

    def send_event(self, event: FaceEvent) -> bool:
        """Queue ``event`` (without its crop) when its event_type is decided or changed and its category is one of
        ``settings.categories``. Body ``{"type": "face", "payload": <FaceEvent JSON>}``."""
        if event.event_type not in SENT_EVENT_TYPES or event.category.value not in self._categories:
            return False
        return self._queue("face", event.without_crop().to_json())

    def send_decision(self, decision: AccessDecision) -> bool:
        """Queue ``decision`` when its decision is one of ``settings.decisions``. Body
        ``{"type": "access", "payload": <AccessDecision JSON>}``."""
        if decision.decision.value not in self._decisions:
            return False
        return self._queue("access", decision.to_json())

    def _queue(self, kind: str, payload: bytes) -> bool:
        if not self._lanes or self._stopping.is_set():
            return False
        data = b'{"type":"' + kind.encode() + b'","payload":' + payload + b"}"
        body = _Body(kind, data, str(uuid.uuid4()), sign(self._secret, data) if self._secret is not None else None)
        for lane in self._lanes:
            lane.put(body)
        return True
