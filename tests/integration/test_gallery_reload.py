"""Hot reload: the recognizer picks up uploads and deletions in its gallery while it runs, publishes the gallery state
retained, and keeps serving the last good gallery while S3 is down. Real Mosquitto, real folder, real SeaweedFS."""

from __future__ import annotations

import json
import shutil
import threading

import pytest

from facebus.mqtt import MqttClient
from facebus.settings import RecognizerSettings
from facebus.topics import Topics
from facebus_tools.devservers import start_seaweedfs
from tests.conftest import FACES_DEV, GALLERY, S3_ACCESS_KEY, S3_SECRET_KEY, bucket_ready, wait_for
from tests.factories import mqtt_settings
from tests.integration.test_recognizer_mqtt import Listener

pytestmark = pytest.mark.integration

TOPICS = Topics()
OBAMA = GALLERY / "Authorised/Barack_Obama/obama.jpg"
BIDEN = GALLERY / "Authorised/Joseph_Biden/biden.jpg"
OBAMA_PROBE = (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes()
BIDEN_PROBE = next((FACES_DEV / "probe/Joseph_Biden").glob("*.jpg")).read_bytes()


class Running:
    """A recognizer in this process with a fast gallery poll, and a listener for its events and gallery state."""

    def __init__(self, port: int, gallery: str, cache_dir) -> None:
        from recognizer.photos import open_gallery
        from recognizer.service import Recognizer

        settings = RecognizerSettings(gallery=gallery, cache_dir=cache_dir, gallery_poll_s=0.3)
        mqtt = MqttClient(mqtt_settings(port, "recognizer"), TOPICS.service_availability("recognizer"), "recognizer")
        self.service = Recognizer(settings, mqtt, open_gallery(settings))
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.service.run, args=(self.stop,), daemon=True)
        self.thread.start()
        assert mqtt.wait_connected(60)
        self.listener = Listener(port)
        self.listener.client.subscribe(TOPICS.gallery_state(), 1)
        self.device = 0

    def state(self) -> dict | None:
        states = [m for m in self.listener.messages if m.topic == TOPICS.gallery_state()]
        return json.loads(states[-1].payload) if states else None

    def people(self) -> set[str]:
        state = self.state()
        return {p["person"] for p in state["people"]} if state else set()

    def name(self, photo: bytes) -> str | None:
        """Publish ``photo`` as a frame of a new device and return the person of its largest face's track."""
        self.device += 1
        device = f"cam{self.device}"
        self.listener.publish_frame(device, photo)
        ended = self.listener.wait_events(device, 1, event_type="ended")
        return max(ended, key=lambda e: e.quality.width_px).person

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)
        self.listener.client.publish(TOPICS.gallery_state(), b"", qos=1, retain=True).wait_for_publish(5)
        self.listener.close()


def test_folder_gallery_upload_change_and_deletion_while_running(mosquitto, tmp_path):
    root = tmp_path / "gallery"
    (root / "Authorised").mkdir(parents=True)
    shutil.copy(OBAMA, root / "Authorised/Barack_Obama.jpg")
    running = Running(mosquitto.port, str(root), tmp_path / "cache")
    try:
        assert wait_for(lambda: running.people() == {"Barack_Obama"}, timeout_s=30)
        assert running.name(OBAMA_PROBE) == "Barack_Obama"
        assert running.name(BIDEN_PROBE) is None

        (root / "Restricted/Joseph_Biden").mkdir(parents=True)
        shutil.copy(BIDEN, root / "Restricted/Joseph_Biden/1.jpg")
        shutil.copy(FACES_DEV / "noface/dog.jpg", root / "Authorised/Rex.jpg")
        rex_rejected = [{"key": "Authorised/Rex.jpg", "reason": "no face found"}]
        # Two copies, not atomic: a poll between them (or during the second) publishes a state on the way.
        assert wait_for(lambda: running.people() == {"Barack_Obama", "Joseph_Biden"}
                        and running.state()["rejected"] == rex_rejected, timeout_s=30)
        state = running.state()
        assert {"person": "Joseph_Biden", "category": "restricted", "images": 1} in state["people"]
        assert running.name(BIDEN_PROBE) == "Joseph_Biden"

        (root / "Authorised/Barack_Obama.jpg").unlink()
        assert wait_for(lambda: running.people() == {"Joseph_Biden"}, timeout_s=30)
        assert running.name(OBAMA_PROBE) is None
    finally:
        running.close()


def test_s3_down_keeps_the_last_gallery_and_reloads_when_back(mosquitto, tmp_path, monkeypatch):
    server = start_seaweedfs(tmp_path / "s3", "reload", S3_ACCESS_KEY, S3_SECRET_KEY)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from recognizer.gallery import make_s3_client

    client = make_s3_client()
    assert wait_for(lambda: bucket_ready(client, "reload"), timeout_s=30)
    client.put_object(Bucket="reload", Key="Authorised/Barack_Obama.jpg", Body=OBAMA.read_bytes())
    running = Running(mosquitto.port, "s3://reload/", tmp_path / "cache")
    try:
        assert wait_for(lambda: running.people() == {"Barack_Obama"}, timeout_s=30)
        server.stop()
        errors = running.service.counters.get("gallery_errors")
        assert wait_for(lambda: running.service.counters.get("gallery_errors") > errors, timeout_s=60)
        assert running.name(OBAMA_PROBE) == "Barack_Obama", "the last good gallery stays in force"

        server = start_seaweedfs(tmp_path / "s3", "reload", S3_ACCESS_KEY, S3_SECRET_KEY, ports=server.extra["ports"])
        assert wait_for(lambda: bucket_ready(client, "reload"), timeout_s=30)
        client.put_object(Bucket="reload", Key="Authorised/Joseph_Biden.jpg", Body=BIDEN.read_bytes())
        assert wait_for(lambda: running.people() == {"Barack_Obama", "Joseph_Biden"}, timeout_s=60)
        assert running.name(BIDEN_PROBE) == "Joseph_Biden"
    finally:
        running.close()
        server.stop()



def test_faces_add_and_remove_reach_a_running_recognizer_on_s3(mosquitto, s3_env, tmp_path):
    """The user's loop: a recognizer serving an S3 gallery, `facebus faces add` / `remove` from another shell."""
    import os
    import subprocess
    import sys
    import uuid

    from tests.conftest import ROOT, S3_BUCKET

    spec = f"s3://{S3_BUCKET}/live-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, FACEBUS_RECOGNIZER_GALLERY=spec, FACEBUS_RECOGNIZER_CACHE_DIR=str(tmp_path / "cache"))
    faces = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "facebus_tools", "faces", *map(str, args)], env=env, cwd=ROOT, capture_output=True,
        text=True, timeout=300,
    )
    assert faces("add", "Barack Obama", OBAMA).returncode == 0
    running = Running(mosquitto.port, spec, tmp_path / "cache")
    try:
        assert wait_for(lambda: running.people() == {"Barack_Obama"}, timeout_s=30)
        added = faces("add", "Joseph Biden", BIDEN, "--restricted")
        assert added.returncode == 0, added.stderr
        assert wait_for(lambda: running.people() == {"Barack_Obama", "Joseph_Biden"}, timeout_s=30)
        assert running.name(BIDEN_PROBE) == "Joseph_Biden"
        assert faces("remove", "Barack_Obama").returncode == 0
        assert wait_for(lambda: running.people() == {"Joseph_Biden"}, timeout_s=30)
        assert running.name(OBAMA_PROBE) is None
    finally:
        running.close()
