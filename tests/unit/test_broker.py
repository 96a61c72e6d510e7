"""The broker's ACL and configuration text (pure: no broker, no files)."""

from __future__ import annotations

from pathlib import Path

from facebus_tools.broker import acl_text, conf_text

ROOT = Path(__file__).resolve().parents[2]
ACCOUNTS = {"recognizer": "recognizer", "archiver": "archiver", "viewer": "viewer", "front-door": "camera"}


def block(text: str, user: str) -> list[str]:
    """The ACL lines of one ``user`` block."""
    lines, inside = [], False
    for line in text.splitlines():
        if line.startswith("user "):
            inside = line == f"user {user}"
        elif inside and line.startswith("topic "):
            lines.append(line)
    return lines


def test_a_camera_may_publish_only_its_own_frames_and_availability():
    assert block(acl_text(ACCOUNTS), "front-door") == [
        "topic write facebus/front-door/frame",
        "topic readwrite facebus/front-door/availability",
        "topic read facebus/front-door/access",
        "topic read facebus/front-door/annotated",
    ]


def test_only_the_recognizer_publishes_events_and_only_the_archiver_reads_crops():
    text = acl_text(ACCOUNTS)
    writers = {user for user in ACCOUNTS for line in block(text, user)
               if line.startswith(("topic write", "topic readwrite"))
               and line.endswith(("/+/face", "/+/face_with_crop", "/+/tracks"))}
    assert writers == {"recognizer"}
    crop_readers = {user for user in ACCOUNTS for line in block(text, user)
                    if line.startswith(("topic read ", "topic readwrite")) and "face_with_crop" in line}
    assert crop_readers == {"archiver"}


def test_the_viewer_reads_no_frame_and_no_crop_and_writes_nothing():
    lines = block(acl_text(ACCOUNTS), "viewer")
    assert lines and all(line.startswith("topic read ") for line in lines)
    assert not any(line.endswith(("/frame", "/face_with_crop")) for line in lines)
    assert [line for line in lines if line.endswith("#")] == ["topic read facebus/services/#",
                                                              "topic read homeassistant/#"]


def test_each_service_writes_only_below_its_own_services_topic():
    text = acl_text(ACCOUNTS | {"recognizer-b": "recognizer"}, prefix="site/a")
    for service in ("recognizer", "recognizer-b", "archiver"):
        own = [line for line in block(text, service) if "/services/" in line and "write" in line.split()[1]]
        gallery = ["topic write site/a/services/recognizer/gallery"] if service.startswith("recognizer") else []
        assert own == [*gallery, f"topic readwrite site/a/services/{service}/#"]


def test_the_compose_mosquitto_conf_is_the_generated_one_for_the_mounted_folder():
    committed = (ROOT / "mosquitto" / "mosquitto.conf").read_text()
    generated = conf_text("/mosquitto/secure", "/mosquitto/data")
    assert committed.endswith(generated.split("\n", 1)[1])
    assert "allow_anonymous false" in committed and "listener 8883\n" in committed
