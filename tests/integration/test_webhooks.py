"""Webhooks (recognizer.webhooks) against real local HTTP servers: signed bodies, retries and their limits, a dead or
stalled URL beside a live one, a flood against a stalled server, filters, stop. Signing, URL validation and
webhooks off without URLs (no server) are in tests/unit/test_webhook_signing.py."""

from __future__ import annotations

import logging
import socket
import time
import uuid

import pytest

from facebus.events import AccessDecision, AccessReason, Category, Decision, EventType, FaceEvent, Reason
from facebus.settings import WebhookSettings
from facebus.stats import Counters
from recognizer.webhooks import Webhooks, sign, verify
from tests.conftest import wait_for
from tests.factories import T0, face_event
from tests.receiver import Receiver

pytestmark = pytest.mark.integration

SECRET = "correct horse battery staple"


@pytest.fixture
def receiver():
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def make_webhooks():
    """Build and start a Webhooks with small timeouts and backoffs; stopped at the end."""
    made: list[Webhooks] = []

    def make(urls: list[str], start: bool = True, **fields) -> Webhooks:
        defaults = {"urls": urls, "timeout_s": 2.0, "max_backoff_s": 0.1, "max_attempts": 3}
        settings = WebhookSettings(**(defaults | fields))
        webhooks = Webhooks(settings, Counters())
        made.append(webhooks)
        if start:
            webhooks.start()
        return webhooks

    yield make
    for webhooks in made:
        webhooks.stop(0.5)


def closed_port() -> int:
    """A loopback port nothing listens on (connections to it are refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def decision(kind: Decision = Decision.granted, track: str = "t1", person: str | None = "Alice") -> AccessDecision:
    reason = AccessReason.authorised if kind is Decision.granted else AccessReason.restricted
    return AccessDecision(device_id="door", decision=kind, reason=reason, person=person,
                          category=Category.authorised if kind is Decision.granted else Category.restricted,
                          track_id=track, captured_at=T0, decided_at=T0)


def counts(webhooks: Webhooks) -> tuple[int, int, int]:
    c = webhooks.counters
    return c.get("webhooks_sent"), c.get("webhooks_failed"), c.get("webhooks_dropped")


# -- against real servers ------------------------------------------------------------------------------------------


def test_bodies_arrive_signed(receiver, make_webhooks):
    webhooks = make_webhooks([receiver.url("/hook")], secret=SECRET)
    event = face_event()
    assert event.crop_jpeg_b64 is not None
    assert webhooks.send_event(event) and webhooks.send_decision(decision())
    assert wait_for(lambda: len(receiver.at("/hook")) == 2, 10)
    face, access = receiver.at("/hook")  # in the order they were sent
    for got, kind in ((face, "face"), (access, "access")):
        assert got.headers["Content-Type"] == "application/json"
        assert got.headers["X-Facebus-Event"] == kind
        assert uuid.UUID(got.headers["X-Facebus-Delivery"])
        assert got.headers["X-Facebus-Signature"] == sign(SECRET, got.body)
        assert verify(SECRET, got.body, got.headers["X-Facebus-Signature"])
        assert got.json["type"] == kind
    assert face.headers["X-Facebus-Delivery"] != access.headers["X-Facebus-Delivery"]
    assert face.json["payload"]["crop_jpeg_b64"] is None  # the crop never leaves by webhook
    assert FaceEvent.model_validate(face.json["payload"]) == event.without_crop()
    assert AccessDecision.model_validate(access.json["payload"]) == decision()
    assert wait_for(lambda: counts(webhooks) == (2, 0, 0), 5)


def test_unsigned_without_secret(receiver, make_webhooks):
    make_webhooks([receiver.url("/plain")]).send_decision(decision())
    assert wait_for(lambda: receiver.at("/plain"), 10)
    assert "X-Facebus-Signature" not in receiver.at("/plain")[0].headers


@pytest.mark.parametrize("script", [[500, 500, 200], [503, 429, 200]])
def test_retried_until_accepted(receiver, make_webhooks, script):
    receiver.scripts["/flaky"] = list(script)
    webhooks = make_webhooks([receiver.url("/flaky")], max_backoff_s=0.2, secret=SECRET)
    webhooks.send_decision(decision())
    assert wait_for(lambda: counts(webhooks)[0] == 1, 10)
    attempts = receiver.at("/flaky")
    assert len(attempts) == 3
    assert len({a.headers["X-Facebus-Delivery"] for a in attempts}) == 1  # one delivery id across retries
    assert len({a.body for a in attempts}) == 1
    assert verify(SECRET, attempts[2].body, attempts[2].headers["X-Facebus-Signature"])
    gaps = [b.at - a.at for a, b in zip(attempts, attempts[1:], strict=False)]  # consecutive pairs
    assert all(gap >= 0.18 for gap in gaps), gaps  # min(0.5, max_backoff_s) = 0.2 s between attempts
    assert counts(webhooks) == (1, 0, 0)


def test_client_error_is_not_retried(receiver, make_webhooks, caplog):
    receiver.scripts["/strict"] = [400]
    webhooks = make_webhooks([receiver.url("/strict")], max_attempts=5)
    with caplog.at_level(logging.WARNING, logger="recognizer.webhooks"):
        webhooks.send_decision(decision(track="first"))
        webhooks.send_decision(decision(track="second"))
        # one URL's bodies go in order, a body's retries before the next body: once the second arrived, the first
        # had all the attempts it will get
        assert wait_for(lambda: len(receiver.at("/strict")) >= 2 and counts(webhooks)[0] == 1, 10)
    tracks = [r.json["payload"]["track_id"] for r in receiver.at("/strict")]
    assert tracks == ["first", "second"]
    assert counts(webhooks) == (1, 1, 0)
    failures = [r for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1
    assert receiver.url("/strict") in failures[0].getMessage() and "HTTP 400" in failures[0].getMessage()


def test_gives_up_after_max_attempts(receiver, make_webhooks, caplog):
    receiver.scripts["/down"] = [500, 502, 500]
    webhooks = make_webhooks([receiver.url("/down")], max_attempts=3)
    with caplog.at_level(logging.WARNING, logger="recognizer.webhooks"):
        webhooks.send_decision(decision(track="lost"))
        webhooks.send_decision(decision(track="next"))
        assert wait_for(lambda: counts(webhooks)[0] == 1, 10)
    assert [r.json["payload"]["track_id"] for r in receiver.at("/down")] == ["lost"] * 3 + ["next"]
    assert counts(webhooks) == (1, 1, 0)
    failures = [r.getMessage() for r in caplog.records if "failed" in r.getMessage()]
    assert len(failures) == 1 and "after 3 attempts" in failures[0] and "HTTP 500" in failures[0]


def test_dead_and_stalled_urls_do_not_delay_a_live_one(receiver, make_webhooks):
    receiver.stalled.add("/stalled")
    dead = f"http://127.0.0.1:{closed_port()}/dead"
    timeout_s = 2.0
    webhooks = make_webhooks([dead, receiver.url("/stalled"), receiver.url("/live")], timeout_s=timeout_s,
                             max_attempts=2)
    sent_at = []
    for i in range(5):
        sent_at.append(time.monotonic())
        assert webhooks.send_decision(decision(track=f"t{i}"))
    assert wait_for(lambda: len(receiver.at("/live")) == 5, timeout_s)
    live = receiver.at("/live")
    assert [r.json["payload"]["track_id"] for r in live] == [f"t{i}" for i in range(5)]
    delays = [r.at - s for r, s in zip(live, sent_at, strict=True)]
    assert max(delays) < timeout_s, delays
    assert wait_for(lambda: counts(webhooks)[1] == 5, 10)  # the dead URL: every body failed (2 attempts each)
    assert len(receiver.at("/stalled")) == 1  # still held: its lane waits, the others went on
    assert counts(webhooks)[0] == 5


def test_flood_against_a_stalled_server_stays_bounded(receiver, make_webhooks):
    receiver.stalled.add("/slow")
    url = receiver.url("/slow")
    webhooks = make_webhooks([url], timeout_s=60.0, max_queued=100)
    webhooks.send_decision(decision(track="head"))
    assert wait_for(lambda: receiver.at("/slow"), 10)  # the sender is now stuck in that request
    flood = [decision(track=f"t{i}") for i in range(10_000)]
    started = time.monotonic()
    for item in flood:
        webhooks.send_decision(item)
    took = time.monotonic() - started
    assert took < 10, took  # never blocked on the stalled server (about 0.1 s unloaded)
    assert webhooks.queued() == {url: 100}
    assert counts(webhooks) == (0, 0, 9_900)
    receiver.release()
    assert wait_for(lambda: len(receiver.at("/slow")) == 101, 20)
    tracks = [r.json["payload"]["track_id"] for r in receiver.at("/slow")]
    assert tracks == ["head"] + [f"t{i}" for i in range(9_900, 10_000)]  # the oldest were dropped
    assert wait_for(lambda: counts(webhooks) == (101, 0, 9_900), 5)


def test_filters(receiver, make_webhooks):
    webhooks = make_webhooks([receiver.url("/filtered")], categories=["restricted"], decisions=["denied"])
    restricted = dict(person="Mallory", category=Category.restricted, reason=Reason.matched)
    offered = [
        (webhooks.send_event(face_event("Alice")), "authorised decided"),
        (webhooks.send_event(face_event(**restricted, event_id="r1")), "restricted decided"),
        (webhooks.send_event(face_event(**restricted, event_id="r2", event_type=EventType.ended)), "restricted ended"),
        (webhooks.send_event(face_event(**restricted, event_id="r3", event_type=EventType.changed)),
         "restricted changed"),
        (webhooks.send_event(face_event(None, event_type=EventType.changed)), "unknown changed"),
        (webhooks.send_decision(decision(Decision.granted)), "granted"),
        (webhooks.send_decision(decision(Decision.denied, person="Mallory")), "denied"),
    ]
    assert [name for queued, name in offered if queued] == ["restricted decided", "restricted changed", "denied"]
    assert wait_for(lambda: len(receiver.at("/filtered")) == 3, 10)
    got = [r.json for r in receiver.at("/filtered")]
    assert [(g["type"], g["payload"].get("event_id")) for g in got] == [("face", "r1"), ("face", "r3"),
                                                                       ("access", None)]
    assert got[2]["payload"]["decision"] == "denied"


def test_stop_sends_what_is_queued(receiver, make_webhooks):
    webhooks = make_webhooks([receiver.url("/drain")], start=False)
    for i in range(3):
        webhooks.send_decision(decision(track=f"t{i}"))
    webhooks.start()
    assert webhooks.stop(10)
    assert len(receiver.at("/drain")) == 3 and counts(webhooks) == (3, 0, 0)
    assert not webhooks.send_decision(decision())  # stopped: nothing more is taken


def test_stop_gives_up_on_a_stalled_server(receiver, make_webhooks):
    receiver.stalled.add("/stuck")
    webhooks = make_webhooks([receiver.url("/stuck")], timeout_s=30.0)
    for i in range(4):
        webhooks.send_decision(decision(track=f"t{i}"))
    assert wait_for(lambda: receiver.at("/stuck"), 10)
    started = time.monotonic()
    assert not webhooks.stop(0.3)
    assert time.monotonic() - started < 2
    receiver.release()  # the request under way ends; the three behind it are given up
    assert wait_for(lambda: counts(webhooks) == (1, 0, 3), 10)
    assert len(receiver.at("/stuck")) == 1
