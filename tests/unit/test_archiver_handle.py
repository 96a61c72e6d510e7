"""Archiver.handle end to end without servers: a crops folder and a real SQLite spool in tmp_path, the clock pinned
(archiver.service). Lines are read back from the spool the writer thread would send to InfluxDB."""

import base64
import json
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from archiver.service import Archiver, SpoolWriter, decode_crop
from archiver.spool import Spool
from facebus.images import encode_jpeg
from facebus.mqtt import Message
from facebus.settings import ArchiverSettings
from facebus.stats import Counters
from tests.factories import face_event

T0 = datetime(2026, 11, 22, 8, 1, 2, 345000, tzinfo=timezone.utc)
JPEG = encode_jpeg(np.full((16, 12, 3), 200, np.uint8))
TOPIC = "facebus/cam1/face_with_crop"


def make_archiver(crops_dir, spool_path, **settings) -> Archiver:
    settings = ArchiverSettings(crops_dir=crops_dir, spool_path=spool_path, throttle_s=120.0, **settings)
    spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_age_s)
    counters = Counters()
    writer = SpoolWriter(None, spool, settings.batch_size, settings.flush_interval_s, counters)  # thread not started
    return Archiver(settings, spool, writer, counters, clock=lambda: T0 + timedelta(minutes=1))


def lines(archiver) -> list[str]:
    return [row.line for row in archiver.spool.peek(1000)]


def event_json(person="Alice", device="cam1", at=T0, crop=JPEG, **overrides) -> bytes:
    overrides = {"event_id": "abcdef0123456789", "distance": 0.25,
                 "crop_jpeg_b64": base64.b64encode(crop).decode()} | overrides
    return face_event(person, device, at, **overrides).to_json()


@pytest.fixture
def archiver(tmp_path):
    return make_archiver(tmp_path / "crops", tmp_path / "spool.sqlite")


def handle(archiver, payload: bytes, topic: str = TOPIC) -> bool:
    return archiver.handle(Message(topic, payload, user_properties={}))


def files(archiver):
    return sorted(p for p in archiver.crops_dir.rglob("*") if p.is_file()) if archiver.crops_dir.exists() else []


def test_valid_event_writes_crop_and_line(archiver):
    handle(archiver, event_json())
    path = archiver.crops_dir / "2026-11-22/cam1/Alice_080102.345Z_abcdef01.jpg"
    assert files(archiver) == [path]
    assert path.read_bytes() == JPEG and path.read_bytes()[:2] == b"\xff\xd8"
    assert len(lines(archiver)) == 1
    assert lines(archiver)[0].startswith("face_entry,category=authorised,device=cam1,person=Alice ")
    assert 'crop_path="2026-11-22/cam1/Alice_080102.345Z_abcdef01.jpg"' in lines(archiver)[0]
    assert archiver.counters.snapshot() == {"events_in": 1, "entries": 1}
    assert len(archiver.spool) == 1


def test_unknown_face_entry(archiver):
    handle(archiver, event_json(None, distance=None))
    assert [p.name for p in files(archiver)] == ["unknown_080102.345Z_abcdef01.jpg"]
    assert "person=unknown" in lines(archiver)[0] and "distance=-1" in lines(archiver)[0]


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
        _with(event_json(), person=""),
        _with(event_json(), person="unknown"),
        _with(event_json(), person="A" * 70_000),
        _with(event_json(), person="../../etc/passwd"),
        _with(event_json(), device_id="../cam1"),
        _with(event_json(), category="unknown"),
        _with(event_json(None), category="authorised"),
        _with(event_json(), event_id="x" * 65),
        _with(event_json(), captured_at="2200-01-01T00:00:00Z"),
        _with(event_json(), captured_at="0001-01-01T00:00:00Z"),
        _with(event_json(), captured_at="9999-12-31T23:59:59Z"),
        _with(event_json(), crop_jpeg_b64=base64.b64encode(b"\xff\xd8" + bytes(300_000)).decode()),
        _with(event_json(), crop_jpeg_b64=base64.b64encode(JPEG[: len(JPEG) // 2]).decode()),
        _with(event_json(), schema_version=2),
        _with(event_json(), schema_version=4),
        _with(event_json(), crop_jpeg_b64=None),
    ],
    ids=["json", "empty", "binary", "array", "missing", "v1", "device", "naive-time", "b64", "not-jpeg", "no-crop",
         "person-empty", "person-reserved", "person-huge", "person-traversal", "device-traversal",
         "named-but-unknown", "unknown-but-authorised", "event-id-long", "year-2200", "year-1", "year-9999",
         "crop-huge", "crop-truncated", "v2", "future-version", "crop-null"],
)
def test_bad_events_counted_not_raised(archiver, payload):
    assert handle(archiver, payload) is True  # acknowledged: a bad event is never delivered again
    assert archiver.counters.snapshot() == {"events_in": 1, "events_bad": 1}
    assert lines(archiver) == []
    assert files(archiver) == []


def test_bad_event_log_names_every_faulty_field(archiver, caplog):
    handle(archiver, _with(event_json(), person="", captured_at="2026-11-22T08:01:02", distance=-1))
    (line,) = [r.getMessage() for r in caplog.records if "bad face event" in r.getMessage()]
    assert TOPIC in line and "person" in line and "captured_at" in line and "distance" in line and "3 errors" in line


def test_throttled_duplicates_counted(archiver):
    handle(archiver, event_json(at=T0))
    handle(archiver, event_json(at=T0))  # redelivery: same event id
    handle(archiver, event_json(device="cam2", at=T0 + timedelta(seconds=30), event_id="1111111111"))
    handle(archiver, event_json(at=T0 + timedelta(seconds=120), event_id="2222222222"))
    counts = archiver.counters.snapshot()
    assert counts == {"events_in": 4, "events_duplicate": 1, "events_throttled": 1, "entries": 2}
    assert len(lines(archiver)) == 2
    assert [p.name for p in files(archiver)] == ["Alice_080102.345Z_abcdef01.jpg", "Alice_080302.345Z_22222222.jpg"]


def test_bad_event_does_not_consume_throttle(archiver):
    handle(archiver, _with(event_json(), crop_jpeg_b64="!!"))
    handle(archiver, event_json())
    assert archiver.counters.get("entries") == 1


def test_a_redelivered_event_makes_no_second_entry_after_a_restart(tmp_path):
    first = make_archiver(tmp_path / "crops", tmp_path / "spool.sqlite")
    handle(first, event_json())
    first.spool.close()
    again = make_archiver(tmp_path / "crops", tmp_path / "spool.sqlite")  # a fresh throttle, the same spool
    handle(again, event_json())
    assert again.counters.snapshot() == {"events_in": 1, "events_duplicate": 1}
    assert len(lines(again)) == 1


def test_a_second_archiver_cannot_open_a_spool_in_use(tmp_path):
    from archiver.spool import SpoolLocked

    first = Spool(tmp_path / "spool.sqlite", 1024**2, 3600)
    with pytest.raises(SpoolLocked, match="in use by another archiver"):
        Spool(tmp_path / "spool.sqlite", 1024**2, 3600)
    first.close()
    Spool(tmp_path / "spool.sqlite", 1024**2, 3600).close()  # free again once the first is closed


def test_a_full_spool_stops_acknowledging_and_loses_nothing(tmp_path):
    archiver = make_archiver(tmp_path / "crops", tmp_path / "spool.sqlite", spool_max_bytes=1024)
    archiver.stopping.set()  # a stopping archiver gives up waiting for room at once (a running one waits)
    acks = [handle(archiver, event_json(f"P{n}", event_id=f"id{n}")) for n in range(8)]
    spooled = len(lines(archiver))
    assert 1 < spooled < 8 and acks == [True] * spooled + [False] * (8 - spooled)
    assert archiver.counters.get("spool_full") == 1 and archiver.spool.bytes >= 1024
    archiver.spool.delete(archiver.spool.peek(100))  # InfluxDB took them
    archiver.stopping.clear()
    assert handle(archiver, event_json(f"P{spooled}", event_id=f"id{spooled}")) is True  # delivered again: kept
    assert [f"id{spooled}" in line for line in lines(archiver)] == [True]


def test_unwritable_crops_dir_still_writes_line(tmp_path):
    blocker = tmp_path / "crops"
    blocker.write_text("a file where the folder should be")
    archiver = make_archiver(blocker, tmp_path / "spool.sqlite")
    handle(archiver, event_json())
    assert archiver.counters.get("crop_errors") == 1
    assert len(lines(archiver)) == 1


def test_decode_crop():
    assert decode_crop(base64.b64encode(JPEG).decode()) == JPEG
    with pytest.raises(ValueError, match="base64"):
        decode_crop("@@@@")
    with pytest.raises(ValueError, match="JPEG"):
        decode_crop(base64.b64encode(b"\x89PNG").decode())


# -- visitors ---------------------------------------------------------------------------------------------------------


def visitor_json(visitor_id="v-7f3a9c", device="cam1", at=T0, visits=2, event_id="abcdef0123456789") -> bytes:
    """An unknown face the recognizer recognised as the recurring visitor ``visitor_id``."""
    visitor = {"visitor_id": visitor_id, "visits": visits, "first_seen": "2026-11-20T17:45:00.5Z"}
    return event_json(None, device, at, distance=0.7, event_id=event_id, visitor=visitor)


def test_a_visitor_entry_carries_the_visitor_as_fields(archiver):
    assert handle(archiver, visitor_json())
    (line,) = lines(archiver)
    tags, fields, _ = line.split(" ")
    assert tags == "face_entry,category=unknown,device=cam1,person=unknown"
    assert 'visitor_id="v-7f3a9c"' in fields and "visits=2i" in fields
    assert 'visitor_first_seen="2026-11-20T17:45:00.500Z"' in fields
    assert [p.name for p in files(archiver)] == ["unknown_080102.345Z_abcdef01.jpg"]


def test_two_visitors_at_one_door_make_two_entries_one_visitor_at_two_doors_one(archiver):
    handle(archiver, visitor_json("v-aaaaaa", "cam1", T0, event_id="e1"))
    handle(archiver, visitor_json("v-bbbbbb", "cam1", T0 + timedelta(seconds=5), event_id="e2"))  # another stranger
    handle(archiver, visitor_json("v-aaaaaa", "cam2", T0 + timedelta(seconds=30),
                                  event_id="e3"))  # the first, next door
    handle(archiver, event_json(None, "cam1", T0 + timedelta(seconds=6), distance=None, event_id="e4"))  # no visitor
    handle(archiver, event_json(None, "cam1", T0 + timedelta(seconds=7), distance=None, event_id="e5"))  # per device
    handle(archiver, event_json(None, "cam2", T0 + timedelta(seconds=8), distance=None, event_id="e6"))
    found = [(line.split(",device=")[1].split(",")[0],
              line.split('visitor_id="')[1][:8] if "visitor_id" in line else None)
             for line in lines(archiver)]
    assert found == [("cam1", "v-aaaaaa"), ("cam1", "v-bbbbbb"), ("cam1", None), ("cam2", None)]
    assert archiver.counters.get("events_throttled") == 2 and archiver.counters.get("entries") == 4


def test_two_strangers_in_one_frame_make_two_points(archiver):
    """Same camera, same capture time, same tags (person=unknown): InfluxDB keeps one point per series and time, so
    the second entry is written a millisecond later (and its crop keeps the capture time)."""
    handle(archiver, visitor_json("v-aaaaaa", "cam1", T0, event_id="e1"))
    handle(archiver, event_json(None, "cam1", T0, distance=None, event_id="e2"))
    handle(archiver, visitor_json("v-bbbbbb", "cam1", T0, event_id="e3"))
    ms = int(T0.timestamp() * 1000)
    assert [line.rsplit(" ", 1)[1] for line in lines(archiver)] == [str(ms), str(ms + 1), str(ms + 2)]
    assert [p.name for p in files(archiver)] == [f"unknown_080102.345Z_{i}.jpg" for i in ("e1", "e2", "e3")]


def test_a_flood_of_invented_visitor_ids_keeps_the_throttle_bounded(archiver):
    """Visitor ids come from the events: the throttle forgets keys whose window passed (every 1000 entries) and
    never holds more than its max_keys, even for a flood inside one window."""
    peak = 0
    for n in range(2100):  # one new stranger a second, each makes an entry
        at = T0 - timedelta(seconds=2100 - n)
        assert handle(archiver, visitor_json(f"v-{n:06x}", at=at, event_id=f"flood{n}"))
        peak = max(peak, len(archiver.throttle))
    assert archiver.counters.get("entries") == 2100
    in_window = 121  # keys within the 120 s window at one a second: never forgotten by forget_before
    assert 1000 <= peak <= 1000 + in_window and len(archiver.throttle) <= 1000 + in_window

    from archiver.core import Throttle

    archiver.throttle = Throttle(120, max_keys=100)
    for n in range(500):  # all inside one window
        handle(archiver, visitor_json(f"v-{0xa00000 + n:06x}", at=T0, event_id=f"burst{n}"))
        assert len(archiver.throttle) <= 100 and len(archiver.entry_times) <= archiver.entry_times.max_kept
    assert archiver.counters.get("entries") == 2600
