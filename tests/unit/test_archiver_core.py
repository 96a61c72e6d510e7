"""Throttling, crop paths and InfluxDB lines of the archiver (archiver.core)."""

from datetime import datetime, timedelta, timezone

import pytest

from archiver.core import Throttle, crop_path, entry_for, point_for, sanitise
from facebus.events import Category, FaceEvent
from tests.factories import face_event

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 8, 1, 2, 345678, tzinfo=UTC)


def make(person="Alice", device="cam1", at=T0, **overrides) -> FaceEvent:
    return face_event(person, device, at, **({"distance": 0.25, "crop_jpeg_b64": "/9j/"} | overrides))


def s(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# -- Throttle -------------------------------------------------------------------------------------------------------


def test_first_event_admitted():
    assert Throttle(120).admit(make())


def test_same_person_refused_within_window_across_devices():
    throttle = Throttle(120)
    assert throttle.admit(make(device="cam1", at=s(0)))
    assert not throttle.admit(make(device="cam1", at=s(1)))
    assert not throttle.admit(make(device="cam2", at=s(60)))
    assert not throttle.admit(make(device="cam3", at=s(119.999)))


def test_admitted_again_at_window():
    throttle = Throttle(120)
    assert throttle.admit(make(at=s(0)))
    assert not throttle.admit(make(at=s(100)))  # refused events do not extend the window
    assert throttle.admit(make(device="cam2", at=s(120)))
    assert not throttle.admit(make(at=s(200)))
    assert throttle.admit(make(at=s(240)))


def test_different_people_independent():
    throttle = Throttle(120)
    assert throttle.admit(make("Alice", at=s(0)))
    assert throttle.admit(make("Bob", at=s(1)))
    assert not throttle.admit(make("Alice", at=s(2)))


def test_unknown_faces_throttled_per_device():
    throttle = Throttle(120)
    assert throttle.admit(make(None, device="cam1", at=s(0)))
    assert throttle.admit(make(None, device="cam2", at=s(1)))
    assert not throttle.admit(make(None, device="cam1", at=s(2)))
    assert not throttle.admit(make(None, device="cam2", at=s(3)))
    assert throttle.admit(make(None, device="cam1", at=s(120)))


def test_unknown_does_not_share_window_with_a_person_named_unknown():
    throttle = Throttle(120)
    assert throttle.admit(make(None, at=s(0)))
    assert throttle.admit(make("unknown", at=s(1)))


def test_late_events_refused():
    throttle = Throttle(120)
    assert throttle.admit(make(at=s(1000)))
    assert not throttle.admit(make(at=s(10)))  # older than the last admitted one, even by more than the window
    assert not throttle.admit(make(at=s(999)))


def test_duplicate_delivery_refused():
    throttle = Throttle(120)
    assert throttle.admit(make())
    assert not throttle.admit(make())


def test_forget_before():
    throttle = Throttle(120)
    assert throttle.admit(make(None, device="cam1", at=s(0)))
    throttle.forget_before(s(500))
    assert throttle.admit(make(None, device="cam1", at=s(1)))


# -- crop paths -----------------------------------------------------------------------------------------------------


def test_crop_path_format():
    assert str(crop_path(make())) == "2026-11-22/cam1/Alice_080102.345Z_01234567.jpg"


def test_crop_path_unknown_person():
    assert str(crop_path(make(None))) == "2026-11-22/cam1/unknown_080102.345Z_01234567.jpg"


def test_crop_path_uses_utc_date():
    at = datetime(2026, 11, 22, 23, 30, 0, 7000, tzinfo=timezone(timedelta(hours=-2)))
    assert str(crop_path(make(at=at))) == "2026-11-23/cam1/Alice_013000.007Z_01234567.jpg"


@pytest.mark.parametrize(
    "person, name",
    [
        ("../../etc/passwd", "etc_passwd"),
        ("Jane Doe", "Jane_Doe"),
        ("  Jane   Doe, Jr. ", "Jane_Doe_Jr"),
        ("José María", "Jos_Mar_a"),
        ("李", "_"),
        ("a" * 100, "a" * 64),
    ],
)
def test_crop_path_sanitises_person(person, name):
    path = crop_path(make(person))
    assert str(path) == f"2026-11-22/cam1/{name}_080102.345Z_01234567.jpg"
    assert ".." not in path.parts and len(path.parts) == 3


def test_crop_path_sanitises_event_id():
    path = crop_path(make(event_id="../../x/../yyyyyy"))
    assert str(path) == "2026-11-22/cam1/Alice_080102.345Z_x_yyyyyy.jpg"


def test_sanitise_fallback():
    assert sanitise("///") == "_"
    assert sanitise("", "none") == "none"


# -- InfluxDB line ----------------------------------------------------------------------------------------------------


def test_line_protocol():
    line = point_for(entry_for(make("Jane Doe, Jr", distance=0.5))).to_line_protocol()
    assert line == (
        r"face_entry,category=authorised,device=cam1,person=Jane\ Doe\,\ Jr "
        'crop_path="2026-11-22/cam1/Jane_Doe_Jr_080102.345Z_01234567.jpg",distance=0.5,event_id="0123456789abcdef" '
        "1795334462345"
    )


def test_line_protocol_ms_timestamp():
    line = point_for(entry_for(make())).to_line_protocol()
    assert line.rsplit(" ", 1)[1] == str(int(T0.timestamp() * 1000))


def test_line_protocol_unknown_empty_gallery_custom_measurement():
    event = make(None, distance=None)
    entry = entry_for(event)
    assert entry.distance == -1.0 and entry.person == "unknown" and entry.category is Category.unknown
    assert point_for(entry, "face entry").to_line_protocol() == (
        r"face\ entry,category=unknown,device=cam1,person=unknown "
        'crop_path="2026-11-22/cam1/unknown_080102.345Z_01234567.jpg",distance=-1,event_id="0123456789abcdef" '
        "1795334462345"
    )


def test_entry_fields():
    entry = entry_for(make(distance=0.25))
    assert entry.time == T0
    assert entry.distance == 0.25
    assert entry.crop_path == "2026-11-22/cam1/Alice_080102.345Z_01234567.jpg"
