"""Builders shared by the tests."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime, timezone

import numpy as np

from facebus.events import (
    AccessDecision,
    AccessReason,
    Category,
    Decision,
    EventType,
    FaceEvent,
    FaceQuality,
    Reason,
    utc_now,
)
from facebus.images import encode_jpeg

T0 = datetime(2026, 11, 22, 8, 1, 2, 345678, tzinfo=timezone.utc)
JPEG = encode_jpeg(np.full((16, 12, 3), 200, np.uint8))


def face_event(person: str | None = "Alice", device: str = "cam1", at: datetime = T0, **overrides) -> FaceEvent:
    """A valid FaceEvent (a real JPEG crop); ``overrides`` replace any field."""
    fields = dict(
        event_id="0123456789abcdef",
        event_type=EventType.decided,
        track_id="0123456789ab",
        model="yunet-sface",
        device_id=device,
        captured_at=at,
        recognized_at=at,
        first_seen=at,
        last_seen=at,
        person=person,
        category=Category.authorised if person else Category.unknown,
        reason=Reason.matched if person else Reason.no_match,
        distance=0.25 if person else 0.7,
        tolerance=0.58,
        frames=3,
        samples=2,
        votes={person or "": 2},
        quality=FaceQuality(width_px=80, sharpness=300.0, frontal=0.9),
        box=(1, 2, 3, 0),
        frame_width_px=10,
        frame_height_px=10,
        crop_jpeg_b64=base64.b64encode(JPEG).decode(),
    )
    return FaceEvent(**(fields | overrides))


def mqtt_settings(port: int, name: str = "test", **fields):
    """MqttSettings for a test client on 127.0.0.1:``port`` with a client id of its own (``name`` + random), so
    clients of one test run never take over each other's sessions; ``fields`` override (e.g. session_expiry_s)."""
    import uuid

    from facebus.settings import MqttSettings

    return MqttSettings(
        **({"port": port, "client_id": f"{name}-{uuid.uuid4().hex[:8]}", "session_expiry_s": 0} | fields)
    )


def access_decision(device: str, granted: bool, person: str | None = "Alice") -> AccessDecision:
    """An access decision as the recognizer publishes it on <prefix>/<device>/access, decided now."""
    now = utc_now()
    return AccessDecision(device_id=device, decision=Decision.granted if granted else Decision.denied,
                          reason=AccessReason.authorised if granted else AccessReason.restricted, person=person,
                          category=Category.authorised if granted else Category.restricted, track_id="0123456789ab",
                          captured_at=now, decided_at=now)


def live_event(person: str | None, device: str, **fields) -> FaceEvent:
    """A face event as the recognizer publishes it on <prefix>/<device>/face: fresh id, now, no crop."""
    return face_event(person, device=device, at=utc_now(), event_id=uuid.uuid4().hex, **fields).without_crop()
