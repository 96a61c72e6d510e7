"""The recognizer against a real Mosquitto: bad frames are logged, counted and skipped; good frames give events."""

from __future__ import annotations

import json
import threading
from datetime import timedelta

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facebus.events import CAPTURE_TIME_PROPERTY, FaceEvent, format_time, parse_time, utc_now
from facebus.mqtt import MqttClient, publish_properties
from facebus.settings import RecognizerSettings
from facebus.topics import Topics
from tests.conftest import FACES_DEV, GALLERY, wait_for
from tests.factories import mqtt_settings

pytestmark = pytest.mark.integration

TOPICS = Topics()


HOOK_SECRET = "door-secret"


@pytest.fixture(scope="module")
def hooks():
    """The local HTTP server the recognizer's webhooks go to."""
    from tests.receiver import Receiver

    server = Receiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def recognizer(mosquitto, tmp_path_factory, hooks):
    from facebus.settings import VisitorSettings, WebhookSettings
    from recognizer.photos import open_gallery
    from recognizer.service import Recognizer

    settings = RecognizerSettings(gallery=str(GALLERY), cache_dir=tmp_path_factory.mktemp("cache"),
                                  max_frame_bytes=2_000_000, workers=2, ha_discovery=True)
    gallery = open_gallery(settings)
    gallery.refresh()
    assert len(gallery.index.people) == 22 and not gallery.rejected
    mqtt = MqttClient(mqtt_settings(mosquitto.port, "recognizer"), TOPICS.service_availability("recognizer"),
                      "recognizer")
    webhooks = WebhookSettings(urls=[hooks.url("/facebus")], secret=HOOK_SECRET, categories=["restricted"],
                               decisions=["denied"])
    visitors = VisitorSettings(store=str(tmp_path_factory.mktemp("visitors")))  # not in the repo's sample gallery
    service = Recognizer(settings, mqtt, gallery, webhooks=webhooks, visitors=visitors)
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
        self.client.subscribe([(TOPICS.all_faces, 1), (TOPICS.all_tracks, 0), (TOPICS.all_access, 1),
                               (TOPICS.all_annotated, 0), ("facebus/services/+/availability", 1)])
        self.client.loop_start()
        # subscribed once a retained availability arrives (the broker keeps the recognizer's or an earlier one)
        assert wait_for(lambda: any(m.topic.endswith("/availability") for m in self.messages), 10)

    def publish_frame(self, device: str, payload: bytes, capture_time: str | None = None) -> None:
        props = publish_properties({CAPTURE_TIME_PROPERTY: capture_time}) if capture_time else None
        self.client.publish(TOPICS.frame(device), payload, qos=0, properties=props).wait_for_publish(5)

    def events(self, device: str, event_type: str = "decided") -> list[FaceEvent]:
        """The face events of ``device`` of one type (decided: one per track)."""
        found = [FaceEvent.model_validate_json(m.payload) for m in self.messages if m.topic == TOPICS.face(device)]
        return [e for e in found if e.event_type.value == event_type]

    def wait_events(self, device: str, count: int, timeout_s: float = 20,
                    event_type: str = "decided") -> list[FaceEvent]:
        assert wait_for(lambda: len(self.events(device, event_type)) >= count, timeout_s)
        return self.events(device, event_type)

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
    assert wait_for(lambda: any(m.payload == b"online" for m in availability(listener)), timeout_s=10)
    late = Listener(mosquitto.port)
    try:
        assert wait_for(lambda: len(availability(late)) >= 1, timeout_s=10), "no retained availability"
        assert [(m.payload, bool(m.retain)) for m in availability(late)] == [(b"online", True)]
    finally:
        late.close()


def test_a_photo_frame_gives_one_track_naming_the_person(recognizer, listener):
    photo = (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes()
    stamp = format_time(utc_now() - timedelta(seconds=2))
    listener.publish_frame("door", photo, capture_time=stamp)
    (ended,) = listener.wait_events("door", 1, event_type="ended")  # a still photo: the track ends 1 s later
    (event,) = listener.events("door")
    assert event.person == "Barack_Obama" and event.category.value == "authorised" and event.reason.value == "matched"
    assert event.model == "yunet-sface" and event.distance <= event.tolerance
    assert event.captured_at == parse_time(stamp) == event.first_seen == event.last_seen
    assert event.second_person and event.second_distance - event.distance >= event.margin
    assert event.matched_image.startswith("Authorised/Barack_Obama/")
    assert (event.frames, event.samples, event.votes) == (1, 1, {"Barack_Obama": 1})
    assert ended.track_id == event.track_id and ended.person == "Barack_Obama"


def test_a_stranger_is_unknown_with_null_person(recognizer, listener):
    photo = (FACES_DEV / "strangers/paul_rudd.jpg").read_bytes()
    listener.publish_frame("gate", photo)
    events = listener.wait_events("gate", 1)
    assert events and all(e.person is None and e.category.value == "unknown" for e in events)
    assert {e.reason.value for e in events} <= {"no_match", "ambiguous"}
    raw = [m.payload for m in listener.messages if m.topic == TOPICS.face("gate")][0]
    assert b'"person":null' in raw


def test_a_face_seen_for_many_frames_is_one_track_with_one_decision(recognizer, listener):
    photo = (FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0006.jpg").read_bytes()
    start = utc_now()
    for i in range(8):  # a camera at 5 fps looking at one person
        listener.publish_frame("hall", photo, capture_time=format_time(start + timedelta(seconds=0.2 * i)))
        assert wait_for(lambda i=i: recognizer.counters.get("frames_processed/hall") > i, timeout_s=10), i
    (ended,) = listener.wait_events("hall", 1, event_type="ended")
    (decided,) = listener.events("hall")
    assert decided.person == ended.person == "Tom_Hanks" and decided.track_id == ended.track_id
    assert ended.frames == 8 and 2 <= ended.samples < 8  # not every frame is encoded once the track is decided
    assert listener.events("hall", "changed") == []


def test_bad_frames_are_counted_and_the_service_keeps_running(recognizer, listener):
    before = recognizer.counters.get("frames_bad")
    good = (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes()
    # Two devices: a second frame on the same device could replace the first in its slot (newest wins) before the
    # worker decodes it, and a replaced frame is counted dropped, not bad.
    listener.publish_frame("lab", b"not a jpeg at all")
    listener.publish_frame("lab2", good[: len(good) // 3])  # truncated JPEG
    listener.publish_frame("lab", b"\xff\xd8" + b"\0" * 2_100_000)  # over max_frame_bytes
    listener.client.publish("facebus/bad device/frame", good).wait_for_publish(5)  # invalid device id
    assert wait_for(lambda: recognizer.counters.get("frames_bad") >= before + 4, timeout_s=10)
    assert recognizer.counters.get("frames_bad") == before + 4
    listener.publish_frame("lab", good)
    assert listener.wait_events("lab", 1)[0].person == "Barack_Obama"
    assert recognizer.counters.get("callback_errors") == 0 and recognizer.counters.get("worker_errors") == 0


def test_a_picture_without_faces_gives_no_event(recognizer, listener):
    listener.publish_frame("zoo", (FACES_DEV / "noface/coffee.jpg").read_bytes())
    listener.publish_frame("zoo2", (FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0008.jpg").read_bytes())
    assert wait_for(lambda: recognizer.counters.get("frames_processed/zoo") == 1, timeout_s=10)
    listener.wait_events("zoo2", 1, event_type="ended")  # frames of both devices are done and their tracks ended
    assert listener.events("zoo") == [] and listener.events("zoo", "ended") == []


def test_a_busy_recognizer_keeps_only_the_newest_frame_per_device(recognizer, listener):
    photo = (FACES_DEV / "groups/obama_and_biden.jpg").read_bytes()
    dropped = recognizer.counters.get("frames_dropped")
    for _ in range(10):
        listener.publish_frame("burst", photo)
    # publish() returns once the broker has the frame, not once the recognizer does: wait for all ten to arrive
    # before waiting for the slot to drain, or an empty slot before the first arrival ends the wait early.
    assert wait_for(lambda: recognizer.counters.get("frames_in/burst") >= 10, timeout_s=10)
    assert recognizer.counters.get("frames_in/burst") == 10
    assert recognizer.counters.get("frames_dropped") > dropped
    def accounted() -> int:
        return recognizer.counters.get("frames_processed/burst") + recognizer.counters.get("frames_dropped/burst")

    assert wait_for(lambda: accounted() == 10, timeout_s=20)  # each frame processed or replaced by a newer one
    listener.wait_events("burst", 2, event_type="ended")
    people = {e.person for e in listener.events("burst")}
    assert people - {None} == {"Barack_Obama", "Joseph_Biden"}  # YuNet also finds a stranger at the bottom edge


def test_cameras_spread_evenly_over_the_worker_processes(recognizer, listener):
    photo = (FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0008.jpg").read_bytes()
    cameras = [f"spread{i}" for i in range(4)]
    for camera in cameras:
        listener.publish_frame(camera, photo)
    assert wait_for(lambda: all(recognizer.counters.get(f"frames_processed/{c}") == 1 for c in cameras), 20)
    owners = [recognizer.owners.owner(c, 0.0) for c in cameras]
    assert owners.count(0) == owners.count(1) == 2  # the least loaded worker takes each new camera
    assert max(recognizer.owners.load) - min(recognizer.owners.load) <= 1
    assert len(recognizer.workers) == 2 and all(w.process.is_alive() for w in recognizer.workers)
    assert len({w.process.pid for w in recognizer.workers}) == 2


def test_tracks_topic_carries_the_boxes_of_each_processed_frame(recognizer, listener):
    from facebus.events import TracksMessage

    listener.publish_frame("porch", (FACES_DEV / "groups/obama_and_biden.jpg").read_bytes())
    assert wait_for(lambda: any(m.topic == TOPICS.tracks("porch") for m in listener.messages), 10)
    (message,) = [TracksMessage.model_validate_json(m.payload) for m in listener.messages
                  if m.topic == TOPICS.tracks("porch")]
    assert len(message.tracks) == 3 and all(t.person is None for t in message.tracks)  # undecided after 1 frame
    for track in message.tracks:
        top, right, bottom, left = track.box
        assert 0 <= left < right <= message.frame_width_px and 0 <= top < bottom <= message.frame_height_px
    ended = listener.wait_events("porch", 3, event_type="ended")
    assert {e.track_id for e in ended} == {t.track_id for t in message.tracks}


def test_a_capture_time_far_from_now_is_replaced_by_the_receive_time(recognizer, listener):
    """A camera whose clock says 2200 must not freeze its tracks (nor 1999 scramble them)."""
    photo = (FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0008.jpg").read_bytes()
    bad = recognizer.counters.get("frames_bad_capture_time")
    before = utc_now()
    listener.publish_frame("skewed", photo, capture_time="2200-01-01T00:00:00Z")
    (event,) = listener.wait_events("skewed", 1)
    assert before <= event.captured_at <= utc_now() and event.person == "Tom_Hanks"
    assert recognizer.counters.get("frames_bad_capture_time") == bad + 1


def with_size(jpeg: bytes, width: int, height: int) -> bytes:
    """``jpeg`` with its SOF header claiming ``width`` x ``height`` (a forged header: the pixels stay the same)."""
    at = next(i for i in range(2, len(jpeg) - 9) if jpeg[i] == 0xFF and jpeg[i + 1] in (0xC0, 0xC1, 0xC2))
    return jpeg[: at + 5] + height.to_bytes(2, "big") + width.to_bytes(2, "big") + jpeg[at + 9 :]


def corpus() -> dict[str, tuple[str, bytes]]:
    """Bad frames a camera or an attacker may send: name -> (device id, payload). Each must be refused by header
    or decoding, counted in frames_bad and logged with its topic; none may cost a worker or a callback."""
    import io

    import numpy as np
    from PIL import Image

    from facebus.images import encode_jpeg

    good = (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes()
    tiny = encode_jpeg(np.full((8, 8, 3), 128, np.uint8))
    rng = np.random.default_rng(7)
    return {
        "empty": ("bad-empty", b""),
        "random": ("bad-random", rng.integers(0, 256, 5000, dtype=np.uint8).tobytes()),
        "truncated": ("bad-truncated", good[: len(good) // 3]),
        "oversize": ("bad-oversize", b"\xff\xd8" + b"\0" * 2_100_000),
        "bomb-30000": ("bad-bomb", with_size(good, 30000, 30000)),
        "bomb-4096-in-631-bytes": ("bad-bomb2", with_size(tiny, 4096, 4096)),
        "png-truncated": ("bad-png", _encoded(Image.open(io.BytesIO(good)), "PNG")[:2000]),
        "text": ("bad-text", b"GET / HTTP/1.1\r\n\r\n"),
    }


def _encoded(image, fmt: str) -> bytes:
    import io

    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_a_bad_input_corpus_is_refused_counted_and_logged_and_good_frames_still_flow(recognizer, listener, caplog):
    """Bad frames, odd topics and device ids: each refused with its topic in the log, counted in frames_bad (none in
    worker_errors), and a PNG, a grayscale and a CMYK JPEG of a face are named as any frame is."""
    from PIL import Image

    before = recognizer.counters.get("frames_bad")
    frames = corpus()
    for device, payload in frames.values():
        listener.publish_frame(device, payload)
    odd_topics = ["facebus/services/frame", "facebus/" + "x" * 65 + "/frame", "facebus/dot.ted/frame",
                  "facebus/%2e%2e/frame"]
    for topic in odd_topics:
        listener.client.publish(topic, b"\xff\xd8\xff\xd9").wait_for_publish(5)
    expected = before + len(frames) + len(odd_topics)
    assert wait_for(lambda: recognizer.counters.get("frames_bad") >= expected, timeout_s=20)
    assert recognizer.counters.get("frames_bad") == expected
    logged = "\n".join(r.getMessage() for r in caplog.records)
    for device, _ in frames.values():
        assert TOPICS.frame(device) in logged, device
    assert "decompression bomb" in logged and "cannot hold the 4096x4096 pixels" in logged
    photo = Image.open(FACES_DEV / "probe/Barack_Obama/obama_small.jpg")
    for device, payload in {"as-png": _encoded(photo, "PNG"), "as-grey": _encoded(photo.convert("L"), "JPEG"),
                            "as-cmyk": _encoded(photo.convert("CMYK"), "JPEG")}.items():
        listener.publish_frame(device, payload)
        assert listener.wait_events(device, 1)[0].person == "Barack_Obama", device
    assert recognizer.counters.get("callback_errors") == 0 and recognizer.counters.get("worker_errors") == 0
    message = recognizer.stats_message(1.0)
    assert {"frames_bad", "frames_bad_capture_time", "worker_errors", "frames_refused"} <= set(message.service_stats)


def see(listener, recognizer, device: str, photo: bytes, frames: int = 6) -> None:
    """``device``'s camera looking at ``photo`` for ``frames`` frames at 5 fps, each waited for."""
    start = utc_now()
    for i in range(frames):
        listener.publish_frame(device, photo, capture_time=format_time(start + timedelta(seconds=0.2 * i)))
        assert wait_for(lambda i=i: recognizer.counters.get(f"frames_processed/{device}") > i, timeout_s=10), i


def decisions(listener, device: str) -> list[tuple[str, str, str | None]]:
    from facebus.events import AccessDecision

    found = [AccessDecision.model_validate_json(m.payload) for m in listener.messages
             if m.topic == TOPICS.access(device)]
    return [(d.decision.value, d.reason.value, d.person) for d in found]


@pytest.mark.parametrize("device, photo, first", [
    ("gate-a", "probe/Barack_Obama/obama_small.jpg", ("granted", "authorised", "Barack_Obama")),
    ("gate-r", "probe/Alex_Lacamoire/alex_lacamoire1.jpg", ("denied", "restricted", "Alex_Lacamoire")),
    ("gate-u", "strangers/paul_rudd.jpg", ("denied", "unknown", None)),
])
def test_an_authorised_a_restricted_and_an_unknown_face_get_their_access_decision(recognizer, listener, hooks, device,
                                                                                 photo, first):
    see(listener, recognizer, device, (FACES_DEV / photo).read_bytes())
    # The person walks away (no more frames): the track ends and the door's decision goes back to "no face".
    assert wait_for(lambda: len(decisions(listener, device)) >= 2, 15), decisions(listener, device)
    assert decisions(listener, device) == [first, ("denied", "no_face", None)]
    if device == "gate-r":  # the webhook settings ask for restricted faces and denials, signed
        from recognizer.webhooks import verify

        def posted() -> list[dict]:
            return [r.json for r in hooks.at("/facebus") if r.json["payload"]["device_id"] == device]

        assert wait_for(lambda: len(posted()) >= 3, 10), posted()
        kinds = [(b["type"], b["payload"].get("person"), b["payload"].get("decision")) for b in posted()]
        assert kinds == [("face", "Alex_Lacamoire", None), ("access", "Alex_Lacamoire", "denied"),
                         ("access", None, "denied")]
        assert all(verify(HOOK_SECRET, r.body, r.headers["X-Facebus-Signature"]) for r in hooks.at("/facebus"))
        assert all(b["payload"].get("crop_jpeg_b64") is None for b in posted())
    (message,) = [m for m in listener.messages if m.topic == TOPICS.access(device)][:1]
    assert message.qos == 1 and not message.retain
    assert 0 < message.properties.MessageExpiryInterval <= recognizer.access_settings.expiry_s


def test_the_annotated_view_shows_each_face_boxed_in_its_category_colour(recognizer, listener):
    from facebus.events import TracksMessage
    from facebus.images import decode_jpeg

    photo = (FACES_DEV / "probe/Alex_Lacamoire/alex_lacamoire1.jpg").read_bytes()

    def after_decision() -> tuple[TracksMessage, bytes] | None:
        """The first decided tracks message and an annotated frame drawn after it (same connection: in order)."""
        decided = None
        for m in list(listener.messages):
            if m.topic == TOPICS.tracks("lobby"):
                message = TracksMessage.model_validate_json(m.payload)
                if decided is None and message.tracks and message.tracks[0].category is not None:
                    decided = message
            elif m.topic == TOPICS.annotated("lobby") and decided is not None:
                return decided, m.payload
        return None

    start, sent = utc_now(), 0
    while after_decision() is None and sent < 100:  # annotated frames come at most twice a second: keep looking
        listener.publish_frame("lobby", photo, capture_time=format_time(start + timedelta(seconds=0.2 * sent)))
        sent += 1
        assert wait_for(lambda sent=sent: recognizer.counters.get("frames_processed/lobby") >= sent, timeout_s=10)
    tracks, jpeg = after_decision()
    assert tracks.tracks[0].category.value == "restricted"
    rgb = decode_jpeg(jpeg, 2_000_000, 1 << 24)
    scale = rgb.shape[1] / tracks.frame_width_px
    top, right, bottom, left = (round(v * scale) for v in tracks.tracks[0].box)
    edge = rgb[(top + bottom) // 2, max(0, left - 1):left + 2].astype(int)  # the box's left edge, +-1 px for JPEG
    assert any(r > 150 and g < 100 and b < 100 for r, g, b in edge), edge  # restricted: red
    inside = rgb[(top + bottom) // 2, (left + right) // 2].astype(int)
    assert not (inside[0] > 150 and inside[1] < 100 and inside[2] < 100), inside  # the face is not painted over
    annotated = sum(m.topic == TOPICS.annotated("lobby") for m in listener.messages)
    assert annotated < sent  # rate-limited: fewer annotated frames than frames


def test_a_new_camera_is_announced_to_home_assistant_retained(recognizer, listener, mosquitto):
    def subscriber(configs: dict[str, dict], retained_only: bool) -> paho.Client:
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.on_message = lambda c, u, m: configs.update({m.topic: json.loads(m.payload)}) \
            if m.retain or not retained_only else None
        client.connect("127.0.0.1", mosquitto.port)
        client.subscribe("homeassistant/+/facebus_garage/+/config", qos=1)
        client.loop_start()
        return client

    first, late = {}, {}
    early = subscriber(first, retained_only=False)
    try:
        assert wait_for(lambda: early.is_connected(), 10)
        listener.publish_frame("garage", (FACES_DEV / "noface/coffee.jpg").read_bytes())
        assert wait_for(lambda: len(first) == 4, 10), first  # announced when its first frame came
        arriving = subscriber(late, retained_only=True)  # Home Assistant starting later gets them all, retained
        assert wait_for(lambda: len(late) == 4, 10), late
        arriving.loop_stop()
        arriving.disconnect()
    finally:
        early.loop_stop()
        early.disconnect()
    assert {topic.split("/")[1] for topic in late} == {"camera", "sensor", "binary_sensor", "event"}
    camera = next(c for t, c in late.items() if t.startswith("homeassistant/camera/"))
    assert camera["topic"] == TOPICS.annotated("garage")
