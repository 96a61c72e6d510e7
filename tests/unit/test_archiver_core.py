"""Throttling, crop paths and InfluxDB lines of the archiver (archiver.core)."""

from datetime import datetime, timedelta, timezone

import pytest

from pydantic import ValidationError

from archiver.core import Throttle, check_times, crop_files_of, crop_path, entry_for, point_for, sanitise
from facebus.events import Category, FaceEvent
from tests.factories import face_event

UTC = timezone.utc
T0 = datetime(2026, 11, 22, 8, 1, 2, 345678, tzinfo=UTC)


def make(person="Alice", device="cam1", at=T0, **overrides) -> FaceEvent:
    return face_event(person, device, at, **({"distance": 0.25, "crop_jpeg_b64": "/9j/"} | overrides))


def unchecked(person=None, **fields) -> FaceEvent:
    """An event carrying ids the schema now refuses (as entries archived before it did): crop names stay safe."""
    return make().model_copy(update={"person": person} | fields)


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


def test_a_person_named_unknown_is_not_a_valid_event():
    """The gallery reserves ``unknown`` (the tag of unmatched faces): an event naming it is refused at parse time."""
    with pytest.raises(ValidationError, match="reserved"):
        make("unknown", at=s(1))


def test_check_times_refuses_the_far_past_and_future():
    now = s(0)
    check_times(make(at=now - timedelta(days=6)), now, max_age_s=7 * 86400, max_ahead_s=600)
    check_times(make(at=now + timedelta(seconds=599)), now, max_age_s=7 * 86400, max_ahead_s=600)
    with pytest.raises(ValueError, match="ahead of now"):
        check_times(make(at=datetime(2200, 1, 1, tzinfo=timezone.utc)), now, 7 * 86400, 600)
    with pytest.raises(ValueError, match="old"):
        check_times(make(at=datetime(1, 1, 1, tzinfo=timezone.utc)), now, 7 * 86400, 600)


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
    path = crop_path(unchecked(person))
    assert str(path) == f"2026-11-22/cam1/{name}_080102.345Z_01234567.jpg"
    assert ".." not in path.parts and len(path.parts) == 3


def test_crop_path_sanitises_event_id():
    path = crop_path(unchecked("Alice", event_id="../../x/../yyyyyy"))
    assert str(path) == "2026-11-22/cam1/Alice_080102.345Z_x_yyyyyy.jpg"


def test_sanitise_fallback():
    assert sanitise("///") == "_"
    assert sanitise("", "none") == "none"


# -- InfluxDB line ----------------------------------------------------------------------------------------------------


def test_line_protocol():
    line = point_for(entry_for(unchecked("Jane Doe, Jr", distance=0.5))).to_line_protocol()
    assert line == (
        r"face_entry,category=authorised,device=cam1,person=Jane\ Doe\,\ Jr "
        'crop_path="2026-11-22/cam1/Jane_Doe_Jr_080102.345Z_01234567.jpg",distance=0.5,event_id="0123456789abcdef",'
        'track_id="0123456789ab" 1795334462345'
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
        'crop_path="2026-11-22/cam1/unknown_080102.345Z_01234567.jpg",distance=-1,event_id="0123456789abcdef",'
        'track_id="0123456789ab" 1795334462345'
    )


def test_entry_fields():
    entry = entry_for(make(distance=0.25))
    assert entry.time == T0
    assert entry.distance == 0.25
    assert entry.crop_path == "2026-11-22/cam1/Alice_080102.345Z_01234567.jpg"


# -- crop files of a person -------------------------------------------------------------------------------------------


def touch(crops_dir, *events) -> list:
    """Crop files where the archiver saves them (crops_dir / crop_path), returned in the same order."""
    paths = []
    for event in events:
        path = crops_dir / crop_path(event)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\xff\xd8")
        paths.append(path)
    return paths


def test_crop_files_of_finds_every_crop_of_the_person_sorted(tmp_path):
    theirs = touch(
        tmp_path,
        make("Barack_Obama", "garage", s(86_400), event_id="cccccccc"),  # next day
        make("Barack_Obama", "door", s(0), event_id="aaaaaaaa"),
        make("Barack_Obama", "door", s(130), event_id="bbbbbbbb"),
    )
    touch(tmp_path, make("Barack_Obama_Jr", "door", s(0)), make("Barack", "door", s(1)), make(None, "door", s(2)))
    assert crop_files_of(tmp_path, "Barack_Obama") == [theirs[1], theirs[2], theirs[0]]
    assert [p.relative_to(tmp_path).as_posix() for p in crop_files_of(tmp_path, "Barack_Obama")] == [
        "2026-11-22/door/Barack_Obama_080102.345Z_aaaaaaaa.jpg",
        "2026-11-22/door/Barack_Obama_080312.345Z_bbbbbbbb.jpg",
        "2026-11-23/garage/Barack_Obama_080102.345Z_cccccccc.jpg",
    ]


def test_crop_files_of_does_not_match_a_name_that_only_starts_alike(tmp_path):
    (jr,) = touch(tmp_path, make("Barack_Obama_Jr"))
    (barack,) = touch(tmp_path, make("Barack", at=s(1)))
    (unknown,) = touch(tmp_path, make(None, at=s(2)))
    assert crop_files_of(tmp_path, "Barack_Obama") == []
    assert crop_files_of(tmp_path, "Barack_Obama_Jr") == [jr]
    assert crop_files_of(tmp_path, "Barack") == [barack]
    assert crop_files_of(tmp_path, "Obama_Jr") == []  # nor one that ends alike
    assert crop_files_of(tmp_path, "unknown") == [unknown]


@pytest.mark.parametrize("person", ["Jane Doe, Jr.", "José María", "../../etc/passwd", "a" * 100, "J.R.R.Tolkien"])
def test_crop_files_of_finds_crops_of_names_sanitised_on_disk(tmp_path, person):
    (crop,) = touch(tmp_path, unchecked(person))
    touch(tmp_path, make("Someone_Else"))
    assert crop_files_of(tmp_path, person) == [crop]


def test_crop_files_of_matches_ids_that_sanitise_alike(tmp_path):
    """Documented limit: file names carry sanitise(person), so these ids share their crops' names."""
    (crop,) = touch(tmp_path, unchecked("J.Doe"))
    assert crop_files_of(tmp_path, "J_Doe") == [crop]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"person": None},
        {"event_id": "../../x/../yyyyyy", "unchecked": True},
        {"event_id": "ab"},
        {"device_id": "front-door_2"},
        {"captured_at": datetime(2026, 1, 2, 23, 59, 59, 999999, tzinfo=UTC)},
        {"captured_at": datetime(2026, 11, 22, 23, 30, 0, 7000, tzinfo=timezone(timedelta(hours=-2)))},
    ],
)
def test_crop_files_of_finds_whatever_crop_path_names(tmp_path, overrides):
    event = unchecked("Alice", **overrides) if overrides.pop("unchecked", False) else make(**overrides)
    (crop,) = touch(tmp_path, event)
    assert crop_files_of(tmp_path, event.person or "unknown") == [crop]


def test_crop_files_of_skips_what_is_not_a_crop(tmp_path):
    (crop,) = touch(tmp_path, make("Alice"))
    folder = crop.parent
    (folder / ".tmp-k2j3h4.jpg").write_bytes(b"partial")  # the archiver's temporary file while saving a crop
    (folder / "Alice_notes.txt").write_text("x")
    (folder / "Alice_080102.345Z_01234567.jpg.bak").write_text("x")
    (folder / "Alice_080102.345Z_0123456789.jpg").write_text("x")  # id longer than 8
    (folder / "Alice_0801.345Z_01234567.jpg").write_text("x")
    (tmp_path / "Alice_080102.345Z_01234567.jpg").write_text("x")  # outside the date/device folders
    (tmp_path / "2026-11-22" / "Alice_080102.345Z_01234567.jpg").write_text("x")
    (tmp_path / "notadate" / "cam1").mkdir(parents=True)
    (tmp_path / "notadate" / "cam1" / crop.name).write_text("x")
    (tmp_path / "2026-11-22" / "cam2" / crop.name).mkdir(parents=True)  # a folder named like a crop
    assert crop_files_of(tmp_path, "Alice") == [crop]


def test_crop_files_of_missing_folder_is_empty(tmp_path):
    assert crop_files_of(tmp_path / "never-created", "Alice") == []
