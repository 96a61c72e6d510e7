"""The recognizer as separate processes against a real Mosquitto (and SeaweedFS): a flood of invented device ids,
two recognizers sharing the cameras and one of them killed, the gallery's S3 down when it starts."""

from __future__ import annotations

import json
import signal
import threading
import uuid

import pytest

from facebus.mqtt import MqttClient
from facebus.topics import Topics
from facebus_tools import devservers
from tests.conftest import FACES_DEV, GALLERY, S3_ACCESS_KEY, S3_BUCKET, S3_SECRET_KEY, bucket_ready, wait_for
from tests.factories import mqtt_settings
from tests.processes import Availability, ServiceProcess

pytestmark = pytest.mark.integration

TOPICS = Topics()
PHOTO = (FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0008.jpg").read_bytes()


class Stats:
    """Collects the recognizers' stats messages: per instance, frames_in per device summed over the messages."""

    def __init__(self, port: int) -> None:
        self.messages: list[dict] = []
        self._lock = threading.Lock()
        self.client = MqttClient(mqtt_settings(port, "stats"), TOPICS.service_availability("test-stats"), "stats")
        self.client.subscribe(TOPICS.all_service_stats, self._on)
        self.client.start()
        assert self.client.wait_connected(10)

    def _on(self, message) -> None:
        with self._lock:
            self.messages.append(json.loads(message.payload))

    def of(self, instance: str) -> list[dict]:
        with self._lock:
            return [m for m in self.messages if m["service"] == instance]

    def frames_in(self, instance: str, since: int = 0) -> dict[str, int]:
        """frames_in per device of ``instance`` in its stats messages after the first ``since``."""
        totals: dict[str, int] = {}
        for message in self.of(instance)[since:]:
            for device, counts in message["devices"].items():
                totals[device] = totals.get(device, 0) + counts.get("frames_in", 0)
        return {d: n for d, n in totals.items() if n}


def recognizer(folder, port: int, instance: str = "recognizer", **env: str) -> ServiceProcess:
    return ServiceProcess("recognizer", instance, folder / f"{instance}.log", {
        "FACEBUS_MQTT_PORT": str(port), "FACEBUS_MQTT_CLIENT_ID": f"{instance}-{uuid.uuid4().hex[:8]}",
        "FACEBUS_RECOGNIZER_INSTANCE": instance, "FACEBUS_RECOGNIZER_WORKERS": "1",
        "FACEBUS_RECOGNIZER_GALLERY": str(GALLERY), "FACEBUS_RECOGNIZER_CACHE_DIR": str(folder / "cache"),
        "FACEBUS_VISITORS_STORE": str(folder / "visitors"),
        "FACEBUS_STATS_INTERVAL_S": "1", **env})


@pytest.fixture
def broker(tmp_path):
    server = devservers.start_mosquitto(tmp_path / "mosquitto")
    watcher = Availability(server.port)
    camera = MqttClient(mqtt_settings(server.port, "camera"), TOPICS.service_availability("test-camera"), "camera")
    camera.start()
    assert camera.wait_connected(10)
    yield server, watcher, camera
    camera.stop()
    watcher.stop()
    server.stop()


def test_a_flood_of_invented_device_ids_keeps_memory_and_stats_bounded(broker, tmp_path):
    server, watcher, camera = broker
    service = recognizer(tmp_path, server.port, FACEBUS_RECOGNIZER_MAX_DEVICES="50")
    service.start(watcher)
    stats = Stats(server.port)
    try:
        assert wait_for(lambda: len(stats.of("recognizer")) >= 1, 10)
        rss_before = service.rss_mb()
        frame = PHOTO + bytes(8 * 1024**2 - 1024 - len(PHOTO))  # a real JPEG padded to just under 8 MiB
        for n in range(150):
            camera.publish(TOPICS.frame(f"invented-{n}"), frame).wait_for_publish(10)
        seen = len(stats.messages)
        assert wait_for(lambda: len(stats.messages) >= seen + 2, 20)
        message = stats.of("recognizer")[-1]
        refused = sum(m["service_stats"].get("frames_refused", 0) for m in stats.of("recognizer"))
        rss_after = service.rss_mb()
        print(f"recognizer RSS {rss_before:.0f} -> {rss_after:.0f} MiB under 150 invented ids of 8 MiB frames")
        assert refused == 100 and len(stats.frames_in("recognizer")) == 50
        assert message["service_stats"]["devices"] == 50 and len(message["devices"]) <= 50
        assert rss_after - rss_before < 250, (rss_before, rss_after)  # slots hold at most 64 MiB of frames
        assert service.log().count("refusing frames of new devices") == 1
        assert service.process.poll() is None
    finally:
        stats.client.stop()
        service.stop()


def test_two_recognizers_share_the_cameras_and_the_survivor_takes_over(broker, tmp_path):
    server, watcher, camera = broker
    a = recognizer(tmp_path, server.port, "recognizer-a")
    b = recognizer(tmp_path, server.port, "recognizer-b")
    stats = Stats(server.port)
    cameras = [f"cam{n}" for n in range(8)]
    try:
        a.start(watcher)
        b.start(watcher)
        assert wait_for(lambda: "recognizers online: recognizer-a, recognizer-b" in a.log(), 10)
        start_a, start_b = len(stats.of("recognizer-a")), len(stats.of("recognizer-b"))
        for _ in range(3):
            for cam in cameras:
                camera.publish(TOPICS.frame(cam), PHOTO).wait_for_publish(10)

        def seen() -> tuple[dict, dict]:
            return stats.frames_in("recognizer-a", start_a), stats.frames_in("recognizer-b", start_b)

        assert wait_for(lambda: sum(map(sum, (x.values() for x in seen()))) == 24, 20)
        in_a, in_b = seen()
        assert in_a and in_b and not set(in_a) & set(in_b)  # each camera at one recognizer, both busy
        assert set(in_a) | set(in_b) == set(cameras) and all(n == 3 for n in {**in_a, **in_b}.values())

        a.stop(signal.SIGKILL)  # its last will says offline at once
        assert wait_for(
            lambda: "recognizers online: recognizer-b" in b.log().split("recognizer-a, recognizer-b")[-1], 10)
        after_b = len(stats.of("recognizer-b"))
        for cam in cameras:
            camera.publish(TOPICS.frame(cam), PHOTO).wait_for_publish(10)
        assert wait_for(lambda: set(stats.frames_in("recognizer-b", after_b)) == set(cameras), 20), b.log()[-2000:]
        assert b.process.poll() is None
    finally:
        stats.client.stop()
        a.stop()
        b.stop()


def test_with_its_s3_gallery_down_the_recognizer_waits_offline_then_starts(broker, tmp_path):
    import boto3

    server, watcher, _ = broker
    ports = dict(zip(devservers.SEAWEEDFS_PORT_FLAGS, devservers.free_ports(len(devservers.SEAWEEDFS_PORT_FLAGS)),
                     strict=True))
    service = recognizer(
        tmp_path, server.port, FACEBUS_RECOGNIZER_GALLERY=f"s3://{S3_BUCKET}/",
        AWS_ENDPOINT_URL=f"http://127.0.0.1:{ports['s3.port']}", AWS_ACCESS_KEY_ID=S3_ACCESS_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET_KEY, AWS_DEFAULT_REGION="us-east-1")
    service.spawn()
    s3 = None
    try:
        assert wait_for(lambda: service.log().count("not going online until the gallery") >= 2, 60), service.log()
        assert watcher.count("recognizer") == 0 and service.process.poll() is None
        s3 = devservers.start_seaweedfs(tmp_path / "s3", S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY, ports=ports)
        client = boto3.client("s3", endpoint_url=s3.url, aws_access_key_id=S3_ACCESS_KEY,
                              aws_secret_access_key=S3_SECRET_KEY, region_name="us-east-1")
        assert wait_for(lambda: bucket_ready(client), 30)
        for photo in sorted((GALLERY / "Authorised").glob("*"))[:3]:
            key = f"Authorised/{photo.name}" if photo.is_file() else f"Authorised/{photo.name}/1.jpg"
            body = photo.read_bytes() if photo.is_file() else sorted(photo.glob("*.jp*g"))[0].read_bytes()
            client.put_object(Bucket=S3_BUCKET, Key=key, Body=body)
        assert wait_for(lambda: watcher.count("recognizer") >= 1, 90), service.log()[-2000:]
        state = []
        probe = MqttClient(mqtt_settings(server.port, "probe"), TOPICS.service_availability("test-probe"), "probe")
        probe.subscribe(TOPICS.gallery_state(), lambda m: state.append(json.loads(m.payload)), qos=1)
        probe.start()
        assert wait_for(lambda: state, 10)
        probe.stop()
        assert state[-1]["images"] == 3
    finally:
        service.stop()
        if s3:
            s3.stop()

