"""Shared fixtures: real servers (Mosquitto, InfluxDB 1.x, SeaweedFS S3) on free loopback ports, one per session,
stopped at the end. Data lives under pytest's temporary folder."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from facebus_tools import devservers

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "samples"
GALLERY = SAMPLES / "gallery"
FACES_DEV = SAMPLES / "faces-dev"
CLIP = FACES_DEV / "video" / "short_hamilton_clip.mp4"

S3_ACCESS_KEY = "facebus-test"
S3_SECRET_KEY = "facebus-test-secret"
S3_BUCKET = "faces"


def bucket_ready(client, bucket: str = S3_BUCKET) -> bool:
    """True once the S3 server answers for ``bucket`` (weed mini creates its bucket a moment after the port opens)."""
    try:
        client.head_bucket(Bucket=bucket)
        return True
    except Exception:  # noqa: BLE001 - any botocore error means not yet
        return False


def wait_for(predicate, timeout_s: float) -> bool:
    """Poll ``predicate`` every 50 ms until it is true or ``timeout_s`` has passed; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()


@pytest.fixture(scope="session")
def mosquitto(tmp_path_factory):
    server = devservers.start_mosquitto(tmp_path_factory.mktemp("mosquitto"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def influxd(tmp_path_factory):
    server = devservers.start_influxd(tmp_path_factory.mktemp("influxd"))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def seaweedfs(tmp_path_factory):
    server = devservers.start_seaweedfs(tmp_path_factory.mktemp("seaweedfs"), S3_BUCKET, S3_ACCESS_KEY, S3_SECRET_KEY)
    yield server
    server.stop()


@pytest.fixture
def s3_env(seaweedfs, monkeypatch):
    """boto3's standard variables pointing at the SeaweedFS server; returns a client."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", S3_ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S3_SECRET_KEY)
    monkeypatch.setenv("AWS_ENDPOINT_URL", seaweedfs.url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    from recognizer.gallery import make_s3_client

    client = make_s3_client()
    deadline = time.monotonic() + 30
    while True:  # weed mini creates its -bucket a moment after the port opens
        try:
            client.head_bucket(Bucket=S3_BUCKET)
            return client
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)



DEMO_SPEED = 1.0  # real time, at the publisher's default 5 fps cap


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory):
    """The Hamilton clip once through the whole pipeline as `make demo` runs it (separate processes, real Mosquitto
    and influxd); shared by the end-to-end and the Grafana query tests. Yields (pipeline, time the run ended)."""
    from datetime import datetime, timezone

    from facebus_tools.demo import Pipeline

    with Pipeline(tmp_path_factory.mktemp("demo") / "state", str(GALLERY),
                  extra_env={"FACEBUS_STATS_INTERVAL_S": "2"}) as pipeline:
        assert pipeline.publish(str(CLIP), speed=DEMO_SPEED) == 0
        pipeline.wait_quiet()
        pipeline.stop_archiver()
        yield pipeline, datetime.now(timezone.utc)
