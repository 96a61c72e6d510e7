"""Webhooks (recognizer.webhooks) without a server: signing and verifying bodies, URL validation, off without URLs.
Delivery to real local HTTP servers is in tests/integration/test_webhooks.py."""

import pytest

from facebus.events import AccessDecision, AccessReason, Category, Decision
from facebus.settings import WebhookSettings
from facebus.stats import Counters
from recognizer.webhooks import Webhooks, sign, verify
from tests.factories import T0, face_event

SECRET = "correct horse battery staple"


def decision() -> AccessDecision:
    return AccessDecision(device_id="door", decision=Decision.granted, reason=AccessReason.authorised, person="Alice",
                          category=Category.authorised, track_id="t1", captured_at=T0, decided_at=T0)


def test_sign_and_verify():
    body = b'{"type":"access","payload":{}}'
    signature = sign(SECRET.encode(), body)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert signature == sign(SECRET, body)  # a str secret is its UTF-8 bytes
    assert verify(SECRET.encode(), body, signature)
    assert verify(SECRET, body, f" {signature} ")
    assert not verify(SECRET, body + b" ", signature)  # the exact bytes are signed
    assert not verify(b"other", body, signature)
    assert not verify(SECRET, body, None)
    assert not verify(SECRET, body, "sha256=nothex")
    assert not verify(SECRET, body, "sha1=" + signature[7:])
    assert not verify(SECRET, body, "sha256=é")


def test_bad_url_is_refused():
    with pytest.raises(ValueError, match="must be http"):
        WebhookSettings(urls=["ftp://example.com/x"])
    with pytest.raises(ValueError, match="must be http"):
        WebhookSettings(urls=["not a url"])


def test_off_without_urls():
    webhooks = Webhooks(WebhookSettings(), Counters())
    webhooks.start()
    assert not webhooks.enabled and not webhooks.send_event(face_event()) and not webhooks.send_decision(decision())
    assert webhooks.stop(1)
