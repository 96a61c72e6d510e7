"""The archiver against real Mosquitto and influxd 1.6.7: events in, entries and crops out; bad events skipped."""

from __future__ import annotations

import json
import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from archiver.influx import InfluxError, V1Writer, V2Writer, choose_api, make_writer, server_version
from archiver.service import Archiver, SpoolWriter, run
from archiver.spool import Spool
from facebus.mqtt import MqttClient
from facebus.settings import ArchiverSettings, InfluxSettings
from facebus.topics import Topics
from tests.conftest import wait_for
from tests.factories import face_event, mqtt_settings

pytestmark = pytest.mark.integration

TOPICS = Topics()


def event(person, device="door", at=None, **kw):
    return face_event(person, device, at or datetime.now(timezone.utc), event_id=uuid.uuid4().hex, **kw)


def test_auto_detection_picks_the_v1_api_for_influxdb_1_6(influxd):
    version = server_version(influxd.url)
    assert version.startswith("1.6")
    assert choose_api(version) == "v1"
    assert isinstance(make_writer(InfluxSettings(url=influxd.url, database="detect")), V1Writer)
    assert choose_api("v2.7.4") == "v2" and choose_api("3.1.0") == "v2"


def test_v2_writer_reports_an_unreachable_server_as_influx_error():
    """The batch writer retries on InfluxError; any other exception would end its thread and stop all writes."""
    from facebus_tools.devservers import free_port

    writer = V2Writer(InfluxSettings(url=f"http://127.0.0.1:{free_port()}", api="v2", timeout_s=1))
    with pytest.raises(InfluxError, match="write failed"):
        writer.write(["face_entry,person=Alice distance=0.4 1700000000000"])
    writer.close()


@pytest.fixture
def archiver(mosquitto, influxd, tmp_path):
    settings = InfluxSettings(url=influxd.url, api="v1", database=f"t{time.monotonic_ns()}")
    writer = V1Writer(settings)
    mqtt = MqttClient(mqtt_settings(mosquitto.port, "archiver"), TOPICS.service_availability("archiver"), "archiver")
    archiver_settings = ArchiverSettings(crops_dir=tmp_path / "crops", spool_path=tmp_path / "spool.sqlite",
                                         throttle_s=120)
    spool = Spool(archiver_settings.spool_path, archiver_settings.spool_max_bytes, archiver_settings.spool_max_age_s)
    batch = SpoolWriter(writer, spool, batch_size=100, flush_interval_s=0.2, counters=mqtt.counters)
    service = Archiver(archiver_settings, spool, batch, mqtt.counters)
    stop = threading.Event()
    thread = threading.Thread(target=run, args=(mqtt, service, stop, 1.0), daemon=True)
    thread.start()
    assert mqtt.wait_connected(10)
    sender = MqttClient(mqtt_settings(mosquitto.port, "sender"), TOPICS.service_availability("test-sender"), "sender")
    sender.start()
    assert sender.wait_connected(10)
    yield service, sender, writer
    sender.stop()
    stop.set()
    thread.join(15)


def rows(writer, where="WHERE time > now() - 7d"):
    body = writer.query(f'SELECT * FROM "face_entry" {where}')
    series = body["results"][0].get("series", [])
    return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]


def test_events_become_throttled_entries_with_crops(archiver):
    service, sender, writer = archiver
    t0 = datetime.now(timezone.utc) - timedelta(minutes=10)
    sent = [
        event("Alice", "door", t0),
        event("Alice", "garage", t0 + timedelta(seconds=30)),  # same person, other device, inside 120 s: throttled
        event("Alice", "door", t0 + timedelta(seconds=121)),  # next window
        event(None, "door", t0),
        event(None, "door", t0 + timedelta(seconds=5)),  # unknown, same device: throttled
        event(None, "garage", t0 + timedelta(seconds=5)),  # unknown, other device: its own window
    ]
    for e in sent:
        sender.publish(TOPICS.face_with_crop(e.device_id), e.to_json(), qos=1)
    assert wait_for(lambda: len(rows(writer)) == 4, timeout_s=10)
    got = sorted((r["person"], r["device"]) for r in rows(writer))
    assert got == [("Alice", "door"), ("Alice", "door"), ("unknown", "door"), ("unknown", "garage")]
    for r in rows(writer):
        assert (service.crops_dir / r["crop_path"]).read_bytes()[:2] == b"\xff\xd8"
        assert r["category"] in ("authorised", "unknown") and isinstance(r["distance"], float)
    first = min(rows(writer), key=lambda r: r["time"])
    assert first["time"].startswith(t0.strftime("%Y-%m-%dT%H:%M:%S"))
    assert service.counters.get("events_throttled") == 2


def test_visitors_are_fields_throttled_per_visitor_and_never_merged(archiver):
    """Recurring strangers: visitor_id / visits / visitor_first_seen as fields of the right types, one entry per
    visitor across cameras, and two strangers of one frame at one camera as two points (not one merged point)."""
    from facebus.events import Visitor

    service, sender, writer = archiver
    t0 = (datetime.now(timezone.utc) - timedelta(minutes=10)).replace(microsecond=123000)
    first = datetime(2026, 11, 20, 17, 45, tzinfo=timezone.utc)

    def stranger(visitor_id, device, at, visits=1):
        return event(None, device, at, visitor=Visitor(visitor_id=visitor_id, visits=visits, first_seen=first))

    sent = [
        stranger("v-aaaaaa", "door", t0, visits=4),
        stranger("v-bbbbbb", "door", t0),  # another stranger in the same frame: its own entry, its own point
        event(None, "door", t0, distance=None),  # and one not recognised as a visitor, still in that frame
        stranger("v-aaaaaa", "garage", t0 + timedelta(seconds=30), visits=4),  # the first one next door: throttled
        event(None, "door", t0 + timedelta(seconds=5)),  # no visitor, same device: throttled as before
    ]
    for e in sent:
        sender.publish(TOPICS.face_with_crop(e.device_id), e.to_json(), qos=1)
    assert wait_for(lambda: service.counters.get("events_in") == len(sent) and len(rows(writer)) >= 3, timeout_s=10)
    found = sorted(rows(writer), key=lambda r: r["time"])
    assert len(found) == 3 and service.counters.get("events_throttled") == 2
    assert [(r["device"], r["visitor_id"]) for r in found] == [("door", "v-aaaaaa"), ("door", "v-bbbbbb"),
                                                               ("door", None)]
    assert [r["event_id"] for r in found] == [e.event_id for e in sent[:3]], "each point its own event, not merged"
    assert found[0]["time"] == t0.strftime("%Y-%m-%dT%H:%M:%S.123Z")
    assert found[0]["visits"] == 4 and found[0]["visitor_first_seen"] == "2026-11-20T17:45:00.000Z"
    assert all(r["person"] == "unknown" and r["category"] == "unknown" for r in found)
    for r in found:
        assert (service.crops_dir / r["crop_path"]).read_bytes()[:2] == b"\xff\xd8"
    body = writer.query('SHOW FIELD KEYS FROM "face_entry"')
    types = dict(body["results"][0]["series"][0]["values"])
    assert (types["visitor_id"], types["visits"], types["visitor_first_seen"]) == ("string", "integer", "string")
    tags = writer.query('SHOW TAG KEYS FROM "face_entry"')["results"][0]["series"][0]["values"]
    assert sorted(t for (t,) in tags) == ["category", "device", "person"], "visitor ids add no series"


def test_bad_events_are_counted_and_do_not_stop_the_archiver(archiver):
    service, sender, writer = archiver
    for payload in (b"{not json", b'{"schema_version": 1}', event("Bob", crop_jpeg_b64="@@@").to_json(), b"\xff" * 10):
        sender.publish(TOPICS.face_with_crop("door"), payload, qos=1)
    assert wait_for(lambda: service.counters.get("events_bad") == 4, timeout_s=10)
    sender.publish(TOPICS.face_with_crop("door"), event("Carol").to_json(), qos=1)
    assert wait_for(lambda: [r["person"] for r in rows(writer)] == ["Carol"], timeout_s=10)
    assert service.counters.get("callback_errors") == 0


def test_entries_wait_while_influxdb_is_down_and_arrive_when_it_is_back(tmp_path):
    """A real influxd stopped under the archiver's writer, then started again on the same port and data."""
    from facebus.stats import Counters
    from facebus_tools.devservers import start_influxd

    server = start_influxd(tmp_path / "influx")
    writer = V1Writer(InfluxSettings(url=server.url, database="restart", timeout_s=2))
    counters = Counters()
    spool = Spool(tmp_path / "spool.sqlite", 1024**2, 3600)
    batch = SpoolWriter(writer, spool, batch_size=10, flush_interval_s=0.05, counters=counters, max_backoff_s=1)
    batch.start()
    try:
        server.stop()
        spool.put("face_entry,person=Dora distance=0.3 1700000000000", "entries_written", "dora")
        assert wait_for(lambda: counters.get("write_errors") >= 1, timeout_s=10)
        assert len(spool) == 1
        server = start_influxd(tmp_path / "influx", port=server.port)
        assert wait_for(lambda: counters.get("entries_written") == 1, timeout_s=20)
        assert [r["person"] for r in rows(writer, where="")] == ["Dora"]
        assert len(spool) == 0
    finally:
        batch.stop(timeout_s=2)
        server.stop()



def test_stats_and_availability_messages_become_metrics(archiver):
    service, sender, writer = archiver
    stats = {"schema_version": 1, "service": "recognizer", "interval_s": 2.0,
             "service_stats": {"queue_depth": 0, "gallery_people": 22, "latency_p50_ms": 80.0},
             "devices": {"door": {"frames_in": 10, "frames_dropped": 4, "frames_processed": 6, "faces": 6}}}
    sender.publish(TOPICS.service_stats("recognizer"), json.dumps(stats))
    sender.publish(TOPICS.service_stats("recognizer"), b"{broken")
    sender.publish(TOPICS.device_availability("door"), b"online", qos=1, retain=True)

    def query(q):
        series = writer.query(q)["results"][0].get("series", [])
        return [dict(zip(s["columns"], v, strict=True)) for s in series for v in s["values"]]

    assert wait_for(lambda: query('SELECT fps, frames_dropped FROM device_stats WHERE device = \'door\''), timeout_s=10)
    (row,) = query("SELECT fps, frames_dropped FROM device_stats WHERE device = 'door'")
    assert row["fps"] == 5.0 and row["frames_dropped"] == 4
    assert query("SELECT gallery_people FROM service_stats WHERE service = 'recognizer'")[0]["gallery_people"] == 22
    assert wait_for(lambda: query("SELECT online FROM device_availability WHERE device = 'door'"), timeout_s=10)
    assert query("SELECT last(online) FROM device_availability WHERE device = 'door'")[0]["last"] == 1
    assert service.counters.get("stats_bad") == 1
    sender.publish(TOPICS.device_availability("door"), b"", qos=1, retain=True)  # clear the retained message
