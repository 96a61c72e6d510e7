"""Health metrics: counter deltas, percentiles, stats messages → InfluxDB lines (docs/metrics.md)."""

from datetime import datetime, timezone

import pytest

from archiver.core import availability_point, stats_points
from facebus.stats import Counters, Samples, StatsMessage, split_by_device
from facebus.topics import Topics

T = datetime(2026, 11, 22, 9, 0, 0, tzinfo=timezone.utc)
MS = 1795338000000


def test_topics_for_stats_and_availability_are_pinned():
    topics = Topics()
    assert topics.service_stats("recognizer") == "facebus/services/recognizer/stats"
    assert topics.all_service_stats == "facebus/services/+/stats"
    assert topics.all_device_availability == "facebus/+/availability"


def test_counter_deltas_report_what_was_added_since_the_last_report():
    counters = Counters()
    counters.add("frames_in", 3)
    counters.add("frames_in/door", 3)
    assert counters.deltas() == {"frames_in": 3, "frames_in/door": 3}
    counters.add("frames_in/door")
    assert counters.deltas() == {"frames_in": 0, "frames_in/door": 1}
    assert counters.get("frames_in/door") == 4


def test_split_by_device():
    service, devices = split_by_device({"frames_bad": 1, "frames_in/door": 2, "faces/door": 1, "frames_in/gate": 5})
    assert service == {"frames_bad": 1}
    assert devices == {"door": {"frames_in": 2, "faces": 1}, "gate": {"frames_in": 5}}


def test_percentiles_are_drained_per_interval():
    samples = Samples()
    for value in range(1, 101):
        samples.add(value)
    got = samples.drain_percentiles(50, 99)
    assert got[50] == pytest.approx(50.5) and got[99] == pytest.approx(99.01)
    assert samples.drain_percentiles(50) is None


def test_stats_message_becomes_service_and_device_points():
    message = {
        "schema_version": 1, "service": "recognizer", "interval_s": 10.0,
        "service_stats": {"queue_depth": 1, "latency_p50_ms": 120.5},
        "devices": {"door": {"frames_in": 50, "frames_dropped": 20}},
    }
    lines = [p.to_line_protocol() for p in stats_points(StatsMessage.model_validate(message), T)]
    assert lines == [
        f"service_stats,service=recognizer interval_s=10,latency_p50_ms=120.5,queue_depth=1i {MS}",
        f"device_stats,device=door fps=5,frames_dropped=20i,frames_in=50i,interval_s=10 {MS}",
    ]


@pytest.mark.parametrize(
    "message",
    [[], {"schema_version": 2, "service": "x", "interval_s": 1},
     {"schema_version": 1, "service": "x", "interval_s": 0},
     {"schema_version": 1, "service": "x", "interval_s": 1, "service_stats": {"a": "text"}},
     {"schema_version": 1, "service": "x", "interval_s": 1, "devices": {"d": {"a": True}}},
     {"schema_version": 1, "service": "x/y", "interval_s": 1},
     {"schema_version": 1, "service": "x", "interval_s": 1, "devices": {"a/b": {"frames_in": 1}}}],
)
def test_malformed_stats_messages_are_refused(message):
    with pytest.raises(ValueError):
        StatsMessage.model_validate(message)


def test_a_stats_message_over_the_device_bound_is_refused():
    message = StatsMessage(service="recognizer", interval_s=1, devices={f"d{i}": {"frames_in": 1} for i in range(3)})
    assert len(stats_points(message, T, max_devices=3)) == 4
    with pytest.raises(ValueError, match="3 devices, over the bound of 2"):
        stats_points(message, T, max_devices=2)


def test_stats_message_round_trips_its_json_with_ints_kept():
    message = StatsMessage(service="archiver", interval_s=10.0, service_stats={"pending": 3, "latency_p50_ms": 1.5})
    assert StatsMessage.model_validate_json(message.model_dump_json()) == message
    assert '"pending":3,' in message.model_dump_json()


def test_a_stats_message_naming_another_service_than_its_topic_is_refused():
    message = StatsMessage(service="recognizer", interval_s=1)
    assert stats_points(message, T, topic_service="recognizer")
    with pytest.raises(ValueError, match="'recognizer' on the stats topic of 'evil'"):
        stats_points(message, T, topic_service="evil")


def test_availability_points():
    assert (availability_point("door", b"online", T).to_line_protocol()
            == f"device_availability,device=door online=1i {MS}")
    assert availability_point("door", b"offline", T).to_line_protocol().endswith(f"online=0i {MS}")
    with pytest.raises(ValueError):
        availability_point("door", b"maybe", T)
