"""FaceEvent serialisation and validation, time helpers, and the committed JSON Schema (facebus.events)."""

import json
import re
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError

from facebus import events
from facebus.events import Category, FaceEvent, format_time, parse_time
from facebus.topics import ID_PATTERN
from tests.factories import face_event

ROOT = Path(__file__).resolve().parents[2]
UTC = timezone.utc


def make(**overrides) -> FaceEvent:
    fields = dict(
        event_id="0123456789abcdef0123456789abcdef",
        captured_at=datetime(2026, 11, 22, 8, 1, 2, 345000, tzinfo=UTC),
        recognized_at=datetime(2026, 11, 22, 8, 1, 2, 500000, tzinfo=UTC),
        distance=0.31,
        second_person="Bob",
        second_distance=0.8,
        matched_image="Authorised/Alice/1.jpg",
        box=(10, 60, 70, 5),
        frame_width_px=640,
        frame_height_px=480,
        crop_jpeg_b64="/9j/",
    )
    return face_event(**(fields | overrides))


def test_json_round_trip():
    event = make()
    assert FaceEvent.model_validate_json(event.to_json()) == event
    assert isinstance(event.to_json(), bytes)


def test_unknown_person_keeps_explicit_null():
    event = make(person=None, category=Category.unknown, distance=None, second_person=None, second_distance=None)
    data = json.loads(event.to_json())
    assert "person" in data and data["person"] is None
    assert data["distance"] is None
    assert data["category"] == "unknown"
    assert FaceEvent.model_validate_json(event.to_json()) == event


def test_person_is_required_even_if_null():
    data = json.loads(make().to_json())
    del data["person"]
    with pytest.raises(ValidationError):
        FaceEvent.model_validate(data)


def test_unknown_keys_ignored():
    data = json.loads(make().to_json())
    data["added_in_v1_1"] = {"anything": [1, 2]}
    event = FaceEvent.model_validate_json(json.dumps(data))
    assert event == make()
    assert "added_in_v1_1" not in json.loads(event.to_json())


def test_times_converted_to_utc():
    paris = timezone(timedelta(hours=2))
    event = make(captured_at=datetime(2026, 6, 1, 10, 0, tzinfo=paris))
    assert event.captured_at == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert event.captured_at.utcoffset() == timedelta(0)
    data = json.loads(make(captured_at="2026-06-01T10:00:00+02:00").to_json())
    assert parse_time(data["captured_at"]) == datetime(2026, 6, 1, 8, 0, tzinfo=UTC)
    assert data["captured_at"].startswith("2026-06-01T08:00:00")


def test_naive_datetime_rejected():
    with pytest.raises(ValidationError):
        make(captured_at=datetime(2026, 6, 1, 10, 0))
    with pytest.raises(ValidationError):
        make(recognized_at="2026-06-01T10:00:00")


@pytest.mark.parametrize("version", [1, 2, 4])
def test_other_schema_versions_rejected(version):
    data = json.loads(make().to_json())
    assert data["schema_version"] == 3
    data["schema_version"] = version
    with pytest.raises(ValidationError):
        FaceEvent.model_validate(data)


@pytest.mark.parametrize(
    "overrides",
    [
        {"device_id": "bad id"},
        {"distance": -0.1},
        {"tolerance": 0},
        {"box": (1, 2, 3)},
        {"frame_width_px": 0},
        {"frames": 0},
        {"event_type": "started"},
        {"reason": "because"},
        {"quality": {"width_px": 10, "sharpness": 1.0, "frontal": 2.0}},
        {"category": "friend"},
        {"event_id": ""},
    ],
)
def test_invalid_fields_rejected(overrides):
    with pytest.raises(ValidationError):
        make(**overrides)


# A UUID4 as 32 lowercase hex digits (docs/mqtt.md): version nibble 4, variant 10xx (8, 9, a or b).
UUID4_HEX = re.compile(r"[0-9a-f]{12}4[0-9a-f]{3}[89ab][0-9a-f]{15}")


def test_event_ids_default_to_distinct_uuid4_hex_the_schema_accepts():
    fields = make().model_dump()
    del fields["event_id"]
    ids = [FaceEvent(**fields).event_id for _ in range(1000)]
    assert len(set(ids)) == len(ids) == 1000
    bad = [i for i in ids if not (UUID4_HEX.fullmatch(i) and re.fullmatch(ID_PATTERN, i))]
    assert bad == []
    assert {uuid.UUID(hex=i).version for i in ids} == {4}
    event = FaceEvent(**fields)
    assert FaceEvent.model_validate_json(event.to_json()).event_id == event.event_id  # kept, not made again


def test_format_time():
    moment = datetime(2026, 11, 22, 8, 1, 2, 345678, tzinfo=UTC)
    assert format_time(moment) == "2026-11-22T08:01:02.345Z"
    two_hours_ahead = timezone(timedelta(hours=2))
    assert format_time(datetime(2026, 11, 22, 10, 1, 2, tzinfo=two_hours_ahead)) == "2026-11-22T08:01:02.000Z"


def test_format_parse_round_trip():
    moment = datetime(2026, 11, 22, 8, 1, 2, 345000, tzinfo=UTC)
    assert parse_time(format_time(moment)) == moment
    assert parse_time("2026-11-22T08:01:02.345Z") == moment
    assert parse_time("2026-11-22T09:01:02.345+01:00") == moment
    assert parse_time("2026-11-22T09:01:02.345+01:00").utcoffset() == timedelta(0)


@pytest.mark.parametrize("text", ["2026-11-22T08:01:02", "yesterday", ""])
def test_parse_time_rejects(text):
    with pytest.raises(ValueError):
        parse_time(text)


def test_committed_schema_matches_model():
    committed = (ROOT / events.SCHEMA_PATH).read_text(encoding="utf-8")
    assert committed == events.json_schema_text(), "regenerate with: facebus schema > " + events.SCHEMA_PATH


def test_schema_shape():
    schema = events.json_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "person" in schema["required"]
    assert set(schema["$defs"]["Category"]["enum"]) == {"authorised", "restricted", "unknown"}
