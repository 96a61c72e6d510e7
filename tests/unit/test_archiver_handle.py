"""Archiver.handle end to end without servers: a crops folder in tmp_path and a recording batch (archiver.service)."""

import base64
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from archiver.service import Archiver, decode_crop, save_atomically
from facebus.images import encode_jpeg
from facebus.mqtt import Message
from facebus.stats import Counters
from tests.factories import face_event

T0 = datetime(2026, 11, 22, 8, 1, 2, 345000, tzinfo=timezone.utc)
JPEG = encode_jpeg(np.full((16, 12, 3), 200, np.uint8))
TOPIC = "facebus/cam1/face"


class RecordingBatch:
    def __init__(self):
        self.lines = []

    def put(self, line: str) -> None:
        self.lines.append(line)


def event_json(person="Alice", device="cam1", at=T0, crop=JPEG, **overrides) -> bytes:
    overrides = {"event_id": "abcdef0123456789", "distance": 0.25, "crop_jpeg_b64": base64.b64encode(crop).decode()} | overrides
    return face_event(person, device, at, **overrides).to_json()


@pytest.fixture
def archiver(tmp_path):
    return Archiver(tmp_path / "crops", 120.0, "face_entry", RecordingBatch(), Counters())


def handle(archiver, payload: bytes, topic: str = TOPIC) -> None:
    archiver.handle(Message(topic, payload, user_properties={}))


def files(archiver):
    return sorted(p for p in archiver.crops_dir.rglob("*") if p.is_file()) if archiver.crops_dir.exists() else []


def test_valid_event_writes_crop_and_line(archiver):
    handle(archiver, event_json())
    path = archiver.crops_dir / "2026-11-22/cam1/Alice_080102.345Z_abcdef01.jpg"
    assert files(archiver) == [path]
    assert path.read_bytes() == JPEG and path.read_bytes()[:2] == b"\xff\xd8"
    assert len(archiver.batch.lines) == 1
    assert archiver.batch.lines[0].startswith("face_entry,category=authorised,device=cam1,person=Alice ")
    assert 'crop_path="2026-11-22/cam1/Alice_080102.345Z_abcdef01.jpg"' in archiver.batch.lines[0]
    assert archiver.counters.snapshot() == {"events_in": 1, "entries": 1}


def test_unknown_face_entry(archiver):
    handle(archiver, event_json(None, distance=None))
    assert [p.name for p in files(archiver)] == ["unknown_080102.345Z_abcdef01.jpg"]
    assert "person=unknown" in archiver.batch.lines[0] and "distance=-1" in archiver.batch.lines[0]


def _with(payload: bytes, **changes) -> bytes:
    data = json.loads(payload)
    data.update(changes)
    return json.dumps(data).encode()


@pytest.mark.parametrize(
    "payload",
    [
        b"{not json",
        b"",
        b"\xff\xfe\x00",
        b"[]",
        b'{"device_id": "cam1"}',
        _with(event_json(), schema_version=1),
        _with(event_json(), device_id="bad id"),
        _with(event_json(), captured_at="2026-11-22T08:01:02"),
        _with(event_json(), crop_jpeg_b64="not base64!!"),
        _with(event_json(), crop_jpeg_b64=base64.b64encode(b"GIF89a....").decode()),
        _with(event_json(), crop_jpeg_b64=""),
    ],
    ids=["json", "empty", "binary", "array", "missing", "v1", "device", "naive-time", "b64", "not-jpeg", "no-crop"],
)
def test_bad_events_counted_not_raised(archiver, payload):
    handle(archiver, payload)
    assert archiver.counters.snapshot() == {"events_in": 1, "events_bad": 1}
    assert archiver.batch.lines == []
    assert files(archiver) == []


def test_throttled_duplicates_counted(archiver):
    handle(archiver, event_json(at=T0))
    handle(archiver, event_json(at=T0))  # redelivery
    handle(archiver, event_json(device="cam2", at=T0 + timedelta(seconds=30), event_id="1111111111"))
    handle(archiver, event_json(at=T0 + timedelta(seconds=120), event_id="2222222222"))
    counts = archiver.counters.snapshot()
    assert counts == {"events_in": 4, "events_throttled": 2, "entries": 2}
    assert len(archiver.batch.lines) == 2
    assert [p.name for p in files(archiver)] == ["Alice_080102.345Z_abcdef01.jpg", "Alice_080302.345Z_22222222.jpg"]


def test_bad_event_does_not_consume_throttle(archiver):
    handle(archiver, _with(event_json(), crop_jpeg_b64="!!"))
    handle(archiver, event_json())
    assert archiver.counters.get("entries") == 1


def test_unwritable_crops_dir_still_writes_line(tmp_path):
    blocker = tmp_path / "crops"
    blocker.write_text("a file where the folder should be")
    archiver = Archiver(blocker, 120.0, "face_entry", RecordingBatch(), Counters())
    handle(archiver, event_json())
    assert archiver.counters.get("crop_errors") == 1
    assert len(archiver.batch.lines) == 1


def test_save_atomically_creates_folders_and_leaves_no_temp(tmp_path):
    path = tmp_path / "a" / "b" / "c.jpg"
    save_atomically(path, b"one")
    save_atomically(path, b"two")
    assert path.read_bytes() == b"two"
    assert [p.name for p in path.parent.iterdir()] == ["c.jpg"]


def test_decode_crop():
    assert decode_crop(base64.b64encode(JPEG).decode()) == JPEG
    with pytest.raises(ValueError, match="base64"):
        decode_crop("@@@@")
    with pytest.raises(ValueError, match="JPEG"):
        decode_crop(base64.b64encode(b"\x89PNG").decode())
