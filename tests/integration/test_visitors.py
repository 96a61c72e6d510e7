"""Visitors through the real recognizer (in process, its worker processes, a real Mosquitto) and real photos: one
stranger seen twice in two different photos keeps one visitor id, also across a restart; two strangers get two ids;
the visitor store lives in the gallery folder and survives its S3 store being down."""

from __future__ import annotations

import shutil
import threading
from datetime import timedelta

import pytest

from facebus.events import FaceEvent, format_time, utc_now
from facebus.mqtt import MqttClient
from facebus.settings import RecognizerSettings, VisitorSettings
from facebus.topics import Topics
from recognizer.visitors import VisitorStore
from tests.conftest import FACES_DEV, GALLERY, S3_BUCKET, bucket_ready, wait_for
from tests.factories import mqtt_settings

pytestmark = pytest.mark.integration

TOPICS = Topics()
HANKS = FACES_DEV / "probe" / "Tom_Hanks"  # Tom Hanks is not in this test's gallery: a stranger here


@pytest.fixture
def gallery(tmp_path):
    """A gallery of one person (Barack_Obama): everybody else is a stranger."""
    folder = tmp_path / "gallery"
    shutil.copytree(GALLERY / "Authorised" / "Barack_Obama", folder / "Authorised" / "Barack_Obama")
    return folder


class Running:
    """A recognizer on ``gallery`` (its visitor store in gallery/Visitors/) and a subscriber of its face events."""

    def __init__(self, port: int, gallery, cache, visitors: VisitorSettings | None = None) -> None:
        from recognizer.photos import open_gallery
        from recognizer.service import Recognizer

        settings = RecognizerSettings(gallery=str(gallery), cache_dir=cache, workers=1, max_frame_bytes=2_000_000)
        loader = open_gallery(settings)
        loader.refresh()
        self.mqtt = MqttClient(mqtt_settings(port, "recognizer"), TOPICS.service_availability("recognizer"),
                               "recognizer")
        self.service = Recognizer(settings, self.mqtt, loader, visitors=visitors)
        self.events: list[FaceEvent] = []
        self.camera = MqttClient(mqtt_settings(port, "camera"), TOPICS.device_availability("cam"), "camera")
        self.camera.subscribe(TOPICS.all_faces,
                              lambda m: self.events.append(FaceEvent.model_validate_json(m.payload)), 1)
        self.camera.start()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert self.mqtt.wait_connected(30) and self.camera.wait_connected(10)
        # The recognizer takes frames once it has seen its own "online" (recognizer.sharing): before, it skips them.
        assert wait_for(lambda: self.service.membership.ready, 10)

    def show(self, device: str, photo, frames: int = 4) -> FaceEvent:
        """The camera ``device`` sees ``photo`` for a few frames; the decided event of its track."""
        before = len(self.events)
        start = utc_now()
        for i in range(frames):
            self.camera.publish(TOPICS.frame(device), photo.read_bytes(), qos=0,
                                properties={"capture_time": format_time(start + timedelta(seconds=0.2 * i))})
        assert wait_for(lambda: any(e.event_type.value == "ended" for e in self.events[before:]), 20)
        return next(e for e in self.events[before:] if e.event_type.value == "decided")

    def close(self) -> None:
        self.stop.set()
        self.thread.join(30)
        self.camera.stop()


def test_one_stranger_in_two_photos_keeps_one_id_through_a_restart_and_two_strangers_get_two(
    mosquitto, gallery, tmp_path
):
    cache = tmp_path / "cache"
    first = Running(mosquitto.port, gallery, cache)
    try:
        seen = first.show("door", HANKS / "Tom_Hanks_0006.jpg")
        other = first.show("door", FACES_DEV / "strangers" / "paul_rudd.jpg")
        assert first.service.stats_message(1.0).service_stats["visitors"] == 2
    finally:
        first.close()
    assert seen.person is None and seen.visitor is not None and seen.visitor.visits == 1
    assert other.visitor is not None and other.visitor.visitor_id != seen.visitor.visitor_id
    stored = {r.visitor_id for r in VisitorStore.open(VisitorSettings(), str(gallery)).load()}
    assert stored == {seen.visitor.visitor_id, other.visitor.visitor_id}
    assert list((gallery / "Visitors" / seen.visitor.visitor_id).glob("*.jpg")), "a crop is kept for promote"

    again = Running(mosquitto.port, gallery, cache)  # a restart: the store is read back
    try:
        later = again.show("porch", HANKS / "Tom_Hanks_0008.jpg")  # another photo, another camera
    finally:
        again.close()
    assert later.visitor.visitor_id == seen.visitor.visitor_id
    assert later.visitor.first_seen == seen.visitor.first_seen


def test_with_visitors_off_nothing_is_kept_about_strangers(mosquitto, gallery, tmp_path):
    running = Running(mosquitto.port, gallery, tmp_path / "cache", VisitorSettings(enabled=False))
    try:
        event = running.show("door", HANKS / "Tom_Hanks_0006.jpg")
    finally:
        running.close()
    assert event.person is None and event.visitor is None
    assert not (gallery / "Visitors").exists()


def test_the_store_on_s3_keeps_sightings_while_s3_is_down_and_writes_them_when_it_is_back(tmp_path, monkeypatch):
    import boto3
    import numpy as np

    from facebus_tools import devservers
    from recognizer.visitors import Visitors
    from tests.conftest import S3_ACCESS_KEY, S3_SECRET_KEY

    ports = dict(zip(devservers.SEAWEEDFS_PORT_FLAGS, devservers.free_ports(len(devservers.SEAWEEDFS_PORT_FLAGS)),
                     strict=True))
    for name, value in {"AWS_ACCESS_KEY_ID": S3_ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
                        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{ports['s3.port']}", "AWS_DEFAULT_REGION": "us-east-1",
                        "AWS_MAX_ATTEMPTS": "1"}.items():
        monkeypatch.setenv(name, value)
    settings = VisitorSettings(store=f"s3://{S3_BUCKET}/visitors", tolerance=0.5)
    s3 = devservers.start_seaweedfs(tmp_path / "s3", S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, ports=ports)
    client = boto3.client("s3")
    try:
        assert wait_for(lambda: bucket_ready(client), 30)
        visitors = Visitors(settings, "yunet-sface", VisitorStore.open(settings, "unused"))
        assert visitors.flush_once()  # loaded: an empty store
        s3.stop()  # S3 goes down
        rng = np.random.default_rng(7)
        faces = [v / np.linalg.norm(v) for v in rng.normal(size=(3, 128)).astype(np.float32)]
        ids = [visitors.see([f], "door", utc_now(), crop_jpeg=(FACES_DEV / "strangers" / "paul_rudd.jpg").read_bytes())
               .visitor_id for f in faces]
        assert visitors.see([faces[0]], "porch", utc_now(), None).visitor_id == ids[0]  # answered from memory
        assert not visitors.flush_once() and visitors.pending() == 3  # nothing lost, nothing written
        s3 = devservers.start_seaweedfs(tmp_path / "s3", S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, ports=ports)
        assert wait_for(lambda: bucket_ready(client), 30)
        assert wait_for(visitors.flush_once, 30) and visitors.pending() == 0
        stored = {r.visitor_id: r for r in VisitorStore.open(settings, "unused").load()}
        assert set(stored) == set(ids) and stored[ids[0]].cameras == ["door", "porch"]
        assert all(len(r.crops) == 1 for r in stored.values())
    finally:
        s3.stop()

