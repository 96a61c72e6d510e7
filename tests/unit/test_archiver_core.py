"""Throttling, crop paths and InfluxDB lines of the archiver (archiver.core)."""

from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from archiver.core import (
    EntryTimes,
    Throttle,
    check_times,
    crop_files_of,
    crop_path,
    entry_for,
    point_for,
    sanitise,
    throttle_key,
)
from facebus.events import Category, FaceEvent, Visitor
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


FIRST_SEEN = datetime(2026, 11, 1, 7, 0, 0, 120000, tzinfo=UTC)


def visitor(visitor_id="v-7f3a9c", visits=3, first_seen=FIRST_SEEN) -> Visitor:
    return Visitor(visitor_id=visitor_id, visits=visits, first_seen=first_seen)


def stranger(visitor_id="v-7f3a9c", device="cam1", at=T0, event_id="0123456789abcdef", **overrides) -> FaceEvent:
    """An unknown face the recognizer recognised as the recurring visitor ``visitor_id``."""
    return make(None, device, at, distance=0.7, event_id=event_id, visitor=visitor(visitor_id, **overrides))


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


def test_throttle_keys():
    assert (throttle_key(make("Alice", device="cam1")) == throttle_key(make("Alice", device="cam2"))
            == ("person", "Alice"))
    assert throttle_key(make(None, device="cam1")) == ("unknown", "cam1")
    assert throttle_key(stranger("v-7f3a9c", device="cam1")) == throttle_key(stranger("v-7f3a9c", device="cam2"))
    assert throttle_key(stranger("v-7f3a9c")) == ("visitor", "v-7f3a9c")
    # a named person keeps the person key even should an event carry a visitor (the schema says it does not)
    assert throttle_key(make("Alice", visitor=visitor())) == ("person", "Alice")


def test_two_visitors_on_one_device_within_the_window_both_make_entries():
    throttle = Throttle(120)
    assert throttle.admit(stranger("v-aaaaaa", device="cam1", at=s(0)))
    assert throttle.admit(stranger("v-bbbbbb", device="cam1", at=s(1)))
    assert not throttle.admit(stranger("v-aaaaaa", device="cam1", at=s(2)))
    assert not throttle.admit(stranger("v-bbbbbb", device="cam1", at=s(119)))
    assert throttle.admit(stranger("v-aaaaaa", device="cam1", at=s(120)))


def test_one_visitor_on_two_devices_within_the_window_makes_one_entry():
    throttle = Throttle(120)
    assert throttle.admit(stranger("v-aaaaaa", device="cam1", at=s(0)))
    assert not throttle.admit(stranger("v-aaaaaa", device="cam2", at=s(30)))
    assert not throttle.admit(stranger("v-aaaaaa", device="cam3", at=s(119.999)))
    assert throttle.admit(stranger("v-aaaaaa", device="cam2", at=s(120)))


def test_visitors_and_unrecognised_unknowns_have_windows_of_their_own():
    """An unknown face without a visitor (not encoded, visitors off) stays throttled per device, beside the
    visitors seen at that device."""
    throttle = Throttle(120)
    assert throttle.admit(stranger("v-aaaaaa", device="cam1", at=s(0)))
    assert throttle.admit(make(None, device="cam1", at=s(1)))
    assert not throttle.admit(make(None, device="cam1", at=s(2)))
    assert throttle.admit(make(None, device="cam2", at=s(3)))
    assert throttle.admit(stranger("v-bbbbbb", device="cam1", at=s(4)))


def test_throttle_keeps_at_most_max_keys():
    """A flood of invented visitor ids within one window: memory stays bounded, the oldest records go first."""
    throttle = Throttle(120, max_keys=100)
    for n in range(10_000):
        assert throttle.admit(stranger(f"v-{n:06x}", at=s(n / 1000)))
        assert len(throttle) <= 100
    assert len(throttle) == 100
    assert not throttle.admit(stranger(f"v-{9_999:06x}", at=s(10)))  # the newest are still throttled
    assert throttle.admit(stranger(f"v-{0:06x}", at=s(10)))  # the oldest was forgotten
    with pytest.raises(ValueError):
        Throttle(120, max_keys=0)


def test_re_recording_a_key_makes_it_the_newest():
    throttle = Throttle(10, max_keys=2)
    assert throttle.admit(stranger("v-aaaaaa", at=s(0)))
    assert throttle.admit(stranger("v-bbbbbb", at=s(1)))
    assert throttle.admit(stranger("v-aaaaaa", at=s(10)))  # its next window: now the newest record
    assert throttle.admit(stranger("v-cccccc", at=s(11)))  # evicts v-bbbbbb, not v-aaaaaa
    assert not throttle.admit(stranger("v-aaaaaa", at=s(12)))
    assert throttle.admit(stranger("v-bbbbbb", at=s(12)))


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


def test_line_protocol_keeps_whole_milliseconds():
    """influxdb_client turns a datetime into ms through a float (one whole millisecond in eight came out one less)."""
    start = datetime(2026, 11, 22, 8, 1, 2, tzinfo=UTC)
    for n in range(2000):
        at = start + timedelta(milliseconds=n)
        assert point_for(entry_for(make(at=at))).to_line_protocol().rsplit(" ", 1)[1] == str(1795334462000 + n)


def test_line_protocol_unknown_empty_gallery_custom_measurement():
    event = make(None, distance=None)
    entry = entry_for(event)
    assert entry.distance == -1.0 and entry.person == "unknown" and entry.category is Category.unknown
    assert point_for(entry, "face entry").to_line_protocol() == (
        r"face\ entry,category=unknown,device=cam1,person=unknown "
        'crop_path="2026-11-22/cam1/unknown_080102.345Z_01234567.jpg",distance=-1,event_id="0123456789abcdef",'
        'track_id="0123456789ab" 1795334462345'
    )


def test_line_protocol_of_a_visitor():
    event = stranger("v-7f3a9c", visits=3,
                     first_seen=datetime(2026, 11, 1, 8, 0, 0, 120000, tzinfo=timezone(timedelta(hours=1))))
    entry = entry_for(event)
    assert (entry.visitor_id, entry.visits, entry.visitor_first_seen) == ("v-7f3a9c", 3, "2026-11-01T07:00:00.120Z")
    assert point_for(entry).to_line_protocol() == (
        "face_entry,category=unknown,device=cam1,person=unknown "
        'crop_path="2026-11-22/cam1/unknown_080102.345Z_01234567.jpg",distance=0.7,event_id="0123456789abcdef",'
        'track_id="0123456789ab",visitor_first_seen="2026-11-01T07:00:00.120Z",visitor_id="v-7f3a9c",visits=3i '
        "1795334462345"
    )


def test_entries_without_a_visitor_have_no_visitor_fields():
    for event in (make(), make(None), make(None, distance=None)):
        entry = entry_for(event)
        assert (entry.visitor_id, entry.visits, entry.visitor_first_seen) == (None, None, None)
        line = point_for(entry).to_line_protocol()
        assert "visit" not in line, line


def test_entries_of_one_frame_and_series_get_distinct_milliseconds():
    """Two visitors (and an unrecognised stranger) in one frame at one camera: one series, one capture time. InfluxDB
    would keep one point of the three; EntryTimes moves the later ones on by a millisecond each."""
    times = EntryTimes()
    stamps = []
    for event in (stranger("v-aaaaaa", event_id="e1"), stranger("v-bbbbbb", event_id="e2"), make(None, event_id="e3")):
        entry = times.free(entry_for(event))
        times.record(entry)
        stamps.append(point_for(entry).to_line_protocol().rsplit(" ", 1)[1])
        assert entry.crop_path == str(crop_path(event)), "the crop keeps the capture time"
    ms = int(T0.timestamp() * 1000)
    assert stamps == [str(ms), str(ms + 1), str(ms + 2)]
    # other series at that time keep it: another camera, a named person
    assert times.free(entry_for(stranger("v-aaaaaa", device="cam2"))).time == T0
    assert times.free(entry_for(make("Alice"))).time == T0
    assert times.free(entry_for(stranger("v-cccccc", at=s(0.2)))).time == s(0.2)  # the next frame


def test_entry_times_are_bounded():
    times = EntryTimes(max_kept=50)
    for n in range(1000):
        times.record(entry_for(stranger(f"v-{n:06x}", at=s(n / 10))))
        assert len(times) <= 50
    assert times.free(entry_for(make(None, at=s(0)))).time == s(0), "the oldest are forgotten"
    assert times.free(entry_for(make(None, at=s(99.9)))).time == s(99.9) + timedelta(milliseconds=1)


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
