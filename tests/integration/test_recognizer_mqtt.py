"""The recognizer against a real Mosquitto: bad frames are logged, counted and skipped; good frames give events."""

from __future__ import annotations

import threading
import time

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facebus.events import CAPTURE_TIME_PROPERTY, FaceEvent, parse_time
from facebus.mqtt import MqttClient, user_properties
from facebus.settings import MqttSettings, RecognizerSettings
from facebus.topics import Topics
from tests.conftest import FACES_DEV, GALLERY, wait_for

pytestmark = pytest.mark.integration

TOPICS = Topics()


@pytest.fixture(scope="module")
def recognizer(mosquitto, tmp_path_factory):
    from recognizer.service import Recognizer, open_gallery

    settings = RecognizerSettings(gallery=str(GALLERY), cache_dir=tmp_path_factory.mktemp("cache"), max_frame_bytes=2_000_000)
    gallery = open_gallery(settings)
    gallery.refresh()
    assert len(gallery.index.people) == 22 and not gallery.rejected
    mqtt = MqttClient(MqttSettings(port=mosquitto.port), TOPICS.service_availability("recognizer"), "recognizer")
    service = Recognizer(settings, mqtt, gallery)
    stop = threading.Event()
    thread = threading.Thread(target=service.run, args=(stop,), daemon=True)
    thread.start()
    assert mqtt.wait_connected(10)
    yield service
    stop.set()
    thread.join(10)


class Listener:
    """A plain paho client (as a user's would be) collecting face events and availability."""

    def __init__(self, port: int) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = lambda c, u, m: self.messages.append(m)
        self.client.connect("127.0.0.1", port)
        self.client.subscribe([(TOPICS.all_faces, 1), ("facebus/services/+/availability", 1)])
        self.client.loop_start()
        time.sleep(0.3)

    def publish_frame(self, device: str, payload: bytes, capture_time: str | None = None) -> None:
        props = user_properties({CAPTURE_TIME_PROPERTY: capture_time}) if capture_time else None
        self.client.publish(TOPICS.frame(device), payload, qos=0, properties=props).wait_for_publish(5)

    def events(self, device: str) -> list[FaceEvent]:
        return [FaceEvent.model_validate_json(m.payload) for m in self.messages if m.topic == TOPICS.face(device)]

    def wait_events(self, device: str, count: int, timeout_s: float = 20) -> list[FaceEvent]:
        wait_for(lambda: len(self.events(device)) >= count, timeout_s)
        return self.events(device)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def listener(mosquitto):
    client = Listener(mosquitto.port)
    yield client
    client.close()


def test_availability_is_retained_online(recognizer, listener, mosquitto):
    def availability(client: Listener) -> list[paho.MQTTMessage]:
        return [m for m in client.messages if m.topic == "facebus/services/recognizer/availability"]

    # The first listener may subscribe before the broker has the recognizer's "online" (it then gets an earlier
    # retained value and the live "online" after): once it has seen "online", a subscriber arriving later must get
    # it at once, retained.
    wait_for(lambda: any(m.payload == b"online" for m in availability(listener)), timeout_s=10)
    late = Listener(mosquitto.port)
    try:
        wait_for(lambda: availability(late), timeout_s=10)
        assert [(m.payload, bool(m.retain)) for m in availability(late)] == [(b"online", True)]
    finally:
        late.close()


def test_a_photo_frame_gives_one_event_naming_the_person(recognizer, listener):
    photo = (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes()
    listener.publish_frame("door", photo, capture_time="2026-11-22T10:00:00.250Z")
    (event,) = listener.wait_events("door", 1)
    assert event.person == "Barack_Obama" and event.category.value == "authorised"
    assert event.distance <= event.tolerance
    assert event.captured_at == parse_time("2026-11-22T10:00:00.250Z")
    assert event.second_person and event.second_distance - event.distance >= event.margin
    assert event.matched_image.startswith("Authorised/Barack_Obama/")


def test_a_stranger_is_unknown_with_null_person(recognizer, listener):
    photo = (FACES_DEV / "strangers").glob("*.jpg").__next__().read_bytes()
    listener.publish_frame("gate", photo)
    events = listener.wait_events("gate", 1)
    assert events and all(e.person is None and e.category.value == "unknown" for e in events)
    raw = [m.payload for m in listener.messages if m.topic == TOPICS.face("gate")][0]
    assert b'"person":null' in raw


def test_bad_frames_are_counted_and_the_service_keeps_running(recognizer, listener):
    before = recognizer.counters.get("frames_bad")
    good = (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes()
    # Two devices: a second frame on the same device could replace the first in its slot (newest wins) before the
    # worker decodes it, and a replaced frame is counted dropped, not bad.
    listener.publish_frame("lab", b"not a jpeg at all")
    listener.publish_frame("lab2", good[: len(good) // 3])  # truncated JPEG
    listener.publish_frame("lab", b"\xff\xd8" + b"\0" * 2_100_000)  # over max_frame_bytes
    listener.client.publish("facebus/bad device/frame", good).wait_for_publish(5)  # invalid device id
    wait_for(lambda: recognizer.counters.get("frames_bad") >= before + 4, timeout_s=10)
    assert recognizer.counters.get("frames_bad") == before + 4
    listener.publish_frame("lab", good)
    assert listener.wait_events("lab", 1)[0].person == "Barack_Obama"
    assert recognizer.counters.get("callback_errors") == 0


def test_a_picture_without_faces_gives_no_event(recognizer, listener):
    processed = recognizer.counters.get("frames_processed")
    listener.publish_frame("zoo", (FACES_DEV / "noface/coffee.jpg").read_bytes())
    wait_for(lambda: recognizer.counters.get("frames_processed") != processed, timeout_s=10)
    time.sleep(0.3)
    assert listener.events("zoo") == []


def test_a_busy_recognizer_keeps_only_the_newest_frame_per_device(recognizer, listener):
    photo = (FACES_DEV / "groups/obama_and_biden.jpg").read_bytes()
    dropped = recognizer.counters.get("frames_dropped")
    for _ in range(10):
        listener.publish_frame("burst", photo)
    # publish() returns once the broker has the frame, not once the recognizer does: wait for all ten to arrive
    # before waiting for the slot to drain, or an empty slot before the first arrival ends the wait early.
    wait_for(lambda: recognizer.counters.get("frames_in/burst") >= 10, timeout_s=10)
    wait_for(lambda: not len(recognizer.slots), timeout_s=20)
    assert recognizer.counters.get("frames_in/burst") == 10
    assert recognizer.counters.get("frames_dropped") > dropped
    time.sleep(1)
    people = {e.person for e in listener.events("burst")}
    assert {"Barack_Obama", "Joseph_Biden"} <= people
