"""The live page's state (recognizer.live.LiveState) on its own, no broker, no HTTP: the bounds it keeps on cameras and
the event log, duplicates and ended tracks left out, and the bad payloads it counts and logs without raising.
The page over MQTT, HTTP and a browser is in tests/integration/test_live.py."""


import cv2

from facebus.events import EventType
from facebus.images import encode_jpeg, fit_width, load_photo
from facebus.mqtt import Message
from facebus.topics import Topics
from recognizer.live import LiveState
from tests.conftest import FACES_DEV
from tests.factories import access_decision, live_event

PHOTO = load_photo(FACES_DEV / "groups" / "obama_and_biden.jpg")  # 1024 x 731
FRAME_B = encode_jpeg(fit_width(PHOTO, 320))




def test_state_keeps_the_bounds_and_counts_what_it_ignores(caplog):
    topics = Topics("t")
    state = LiveState(topics, max_devices=2, max_log=3)
    for device in ("a", "b", "c"):
        state.on_annotated(Message(topics.annotated(device), FRAME_B, {}))
    state.on_availability(Message(topics.device_availability("d"), b"online", {}))
    assert sorted(state.cameras) == ["a", "b"]
    assert state.counters.get("devices_ignored") == 2
    assert state.cameras["a"].width_px == 320 and state.cameras["a"].frames == 1

    first = live_event("Alice", "a")
    for payload in (first, first, live_event(None, "a"), live_event("Bob", "b", event_type=EventType.ended)):
        state.on_face(Message(topics.face(payload.device_id), payload.to_json(), {}))
    assert [item["person"] for item in state.log] == ["Alice", None]  # duplicate and ended left out
    assert state.counters.get("events_duplicate") == 1 and state.counters.get("events_ended") == 1
    for granted in (True, False, True):
        state.on_access(Message(topics.access("a"), access_decision("a", granted).to_json(), {}))
    assert [item.get("decision") for item in state.log] == ["granted", "denied", "granted"]  # the latest 3
    assert [item["seq"] for item in state.log] == [3, 4, 5]
    state.on_face(Message(topics.face("a"), first.to_json(), {}))  # its first copy left the log: logged again
    assert state.log[-1]["event_id"] == first.event_id

    bad = [
        ("frames_bad", state.on_annotated, topics.annotated("a"), b"not a jpeg"),
        ("frames_bad", state.on_annotated, topics.annotated("a"), cv2.imencode(".png", PHOTO[:8, :8])[1].tobytes()),
        ("frames_bad", state.on_annotated, "t/services/annotated", FRAME_B),  # reserved device id
        ("events_bad", state.on_face, topics.face("a"), b"{not json"),
        ("events_bad", state.on_face, topics.face("b"), live_event("Alice", "a").to_json()),  # device not the topic's
        ("decisions_bad", state.on_access, topics.access("a"), b'{"decision": "maybe"}'),
        ("availability_bad", state.on_availability, topics.device_availability("a"), b"sleepy"),
    ]
    for counter, handler, topic, payload in bad:
        before = state.counters.get(counter)
        handler(Message(topic, payload, {}))  # never raises
        assert state.counters.get(counter) == before + 1, (counter, topic)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert any("t/a/face" in line and "Invalid JSON" in line for line in warnings), warnings
    assert state.cameras["a"].frames == 1 and len(state.log) == 3
