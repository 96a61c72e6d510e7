"""Purging a person's history (``facebus faces forget NAME --purge-history``) against a real influxd 1.6.7: their
entries and crops go, everyone else's stay, empty folders go, a second purge finds nothing."""

from __future__ import annotations

import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from archiver.core import entry_for, point_for
from archiver.history import Purged, purge_person
from archiver.influx import InfluxError, V1Writer, V2Writer, influxql_ident
from facebus.files import write_atomically
from facebus.settings import InfluxSettings
from tests.factories import JPEG, face_event

pytestmark = pytest.mark.integration

DAY1 = datetime(2026, 11, 21, 10, 0, 0, 250000, tzinfo=timezone.utc)
DAY2 = DAY1 + timedelta(days=1)


@pytest.fixture
def writer(influxd):
    writer = V1Writer(InfluxSettings(url=influxd.url, api="v1", database=f"purge{time.monotonic_ns()}"))
    yield writer
    writer.close()


def archive(writer, crops_dir, events, measurement="face_entry"):
    """What the archiver does with admitted events: the crop file, then the InfluxDB point. Returns the entries."""
    entries = [entry_for(e) for e in events]
    for entry in entries:
        write_atomically(crops_dir / entry.crop_path, JPEG)
    writer.write([point_for(entry, measurement).to_line_protocol() for entry in entries])
    return entries


def seen(person, device, at):
    """An event of ``person``; names the schema now refuses (quotes, backslashes) stand for entries archived before
    it did, which a purge must still find exactly."""
    return face_event("Someone", device, at, event_id=uuid.uuid4().hex).model_copy(update={"person": person})


def stored(writer, measurement="face_entry"):
    """(person, device, event_id) of every point, all times (a year either side of now, and the fixed days)."""
    where = "time > '2000-01-01T00:00:00Z' AND time < now() + 365d"
    body = writer.query(f"SELECT * FROM {influxql_ident(measurement)} WHERE {where}")
    rows = [dict(zip(s["columns"], v, strict=True)) for s in body["results"][0].get("series", []) for v in s["values"]]
    return sorted((r["person"], r["device"], r["event_id"]) for r in rows)


def test_purge_deletes_exactly_that_persons_entries_and_crops(writer, tmp_path):
    crops = tmp_path / "crops"
    tomorrow = datetime.now(timezone.utc) + timedelta(days=1)  # a camera whose clock runs a day ahead
    obama = archive(writer, crops, [
        seen("Barack_Obama", "door", DAY1),
        seen("Barack_Obama", "door", DAY1 + timedelta(seconds=130)),
        seen("Barack_Obama", "garage", DAY1 + timedelta(seconds=300)),
        seen("Barack_Obama", "door", DAY2),
        seen("Barack_Obama", "garage", tomorrow),
    ])
    others = archive(writer, crops, [
        seen("Barack_Obama_Jr", "door", DAY1 + timedelta(seconds=1)),
        seen("Barack_Obama_Jr", "door", DAY2 + timedelta(seconds=1)),
        seen("Barack_Obama_Jr", "garage", DAY2 + timedelta(seconds=2)),
        seen(None, "door", DAY1 + timedelta(seconds=2)),
        seen(None, "garage", DAY2 + timedelta(seconds=3)),
    ])
    assert len(stored(writer)) == 10
    assert len(list(crops.rglob("*.jpg"))) == 10

    purged = purge_person("Barack_Obama", crops, "face_entry", writer)

    assert purged == Purged(crops=sorted(e.crop_path for e in obama), entries=5)
    assert purged.crops[0] == f"2026-11-21/door/Barack_Obama_100000.250Z_{obama[0].event_id[:8]}.jpg"
    assert not any((crops / e.crop_path).exists() for e in obama)
    # His folders left empty are gone, shared ones stay.
    assert not (crops / "2026-11-21" / "garage").exists()
    assert not (crops / tomorrow.strftime("%Y-%m-%d")).exists()
    assert sorted(p.relative_to(crops).as_posix() for p in crops.rglob("*") if p.is_dir()) == [
        "2026-11-21", "2026-11-21/door", "2026-11-22", "2026-11-22/door", "2026-11-22/garage"
    ]
    # Everyone else's crops and entries are untouched.
    assert sorted(p.relative_to(crops).as_posix() for p in crops.rglob("*.jpg")) == sorted(e.crop_path for e in others)
    assert all((crops / e.crop_path).read_bytes() == JPEG for e in others)
    assert stored(writer) == sorted((e.person, e.device, e.event_id) for e in others)

    assert purge_person("Barack_Obama", crops, "face_entry", writer) == Purged(crops=[], entries=0)
    assert stored(writer) == sorted((e.person, e.device, e.event_id) for e in others)


def test_purge_of_the_last_entries_empties_the_crops_folder_but_keeps_it(writer, tmp_path):
    crops = tmp_path / "crops"
    archive(writer, crops, [seen("Alice", "door", DAY1), seen("Alice", "porch", DAY2)])
    purged = purge_person("Alice", crops, "face_entry", writer)
    assert (len(purged.crops), purged.entries) == (2, 2)
    assert crops.is_dir() and list(crops.iterdir()) == []
    assert stored(writer) == []


def test_purge_with_no_history_at_all(writer, tmp_path):
    """A person never seen, a crops folder never created and a measurement never written: nothing to do, no error."""
    assert purge_person("Nobody", tmp_path / "crops", "face_entry", writer) == Purged(crops=[], entries=0)
    assert not (tmp_path / "crops").exists()


def test_a_quote_in_the_name_or_measurement_cannot_widen_the_delete(writer, tmp_path):
    crops = tmp_path / "crops"
    measurement = 'face "entry" \'\\d'  # (a backslash before a space does not survive line protocol in 1.6)
    sneaky = "No\\body' OR \"person\" = 'Barack_Obama_Jr"
    jr = archive(writer, crops, [seen("Barack_Obama_Jr", "door", DAY1)], measurement)
    archive(writer, crops, [seen(sneaky, "door", DAY2)], measurement)
    assert len(stored(writer, measurement)) == 2

    assert purge_person(sneaky, crops, measurement, writer).entries == 1
    assert stored(writer, measurement) == [("Barack_Obama_Jr", "door", jr[0].event_id)]
    assert (crops / jr[0].crop_path).exists()


def test_a_database_error_leaves_entries_and_crops_as_they_were(writer, tmp_path):
    crops = tmp_path / "crops"
    (entry,) = archive(writer, crops, [seen("Alice", "door", DAY1)])
    writer.query(f'DROP DATABASE "{writer.settings.database}"', method="POST")
    with pytest.raises(InfluxError, match="database not found"):
        purge_person("Alice", crops, "face_entry", writer)
    assert (crops / entry.crop_path).read_bytes() == JPEG


def test_the_v2_api_on_a_server_without_it_fails_cleanly_and_keeps_the_crops(influxd, writer, tmp_path):
    """influxd 1.6 has no /api/v2: the v2 writer reports an InfluxError (not a client exception), crops stay."""
    crops = tmp_path / "crops"
    (entry,) = archive(writer, crops, [seen("Alice", "door", DAY1)])
    v2 = V2Writer(InfluxSettings(url=influxd.url, api="v2", token="t", timeout_s=5))
    try:
        with pytest.raises(InfluxError):
            purge_person("Alice", crops, "face_entry", v2)
    finally:
        v2.close()
    assert (crops / entry.crop_path).exists()
    assert len(stored(writer)) == 1
