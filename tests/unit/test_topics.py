"""Topic strings and device-id / prefix validation (facebus.topics)."""

import pytest

from facebus.topics import Topics, validate_device_id, validate_prefix


def test_default_topic_strings():
    t = Topics()
    assert t.frame("cam1") == "facebus/cam1/frame"
    assert t.face("cam1") == "facebus/cam1/face"
    assert t.device_availability("cam1") == "facebus/cam1/availability"
    assert t.service_availability("recognizer") == "facebus/services/recognizer/availability"
    assert t.all_frames == "facebus/+/frame"
    assert t.all_faces == "facebus/+/face"


def test_custom_prefix():
    t = Topics("site-a/doors")
    assert t.frame("cam1") == "site-a/doors/cam1/frame"
    assert t.face("cam1") == "site-a/doors/cam1/face"
    assert t.service_availability("archiver") == "site-a/doors/services/archiver/availability"
    assert t.all_faces == "site-a/doors/+/face"
    assert t.device_of("site-a/doors/cam1/face") == "cam1"


@pytest.mark.parametrize(
    "topic, device",
    [("facebus/cam1/frame", "cam1"), ("facebus/Door_2-b/face", "Door_2-b"), ("facebus/x/availability", "x")],
)
def test_device_of(topic, device):
    assert Topics().device_of(topic) == device


@pytest.mark.parametrize(
    "topic",
    [
        "other/cam1/frame",  # wrong prefix
        "xfacebus/cam1/frame",  # prefix only as a suffix of the first level
        "facebus/cam1",  # no attribute
        "facebus/cam1/frame/extra",  # too deep
        "facebus/services/recognizer/availability",  # a service topic, not a device one
        "facebus/services/frame",  # reserved id
        "facebus/bad id/frame",  # invalid id
        "facebus//frame",  # empty id
        "facebus",
        "",
    ],
)
def test_device_of_rejects(topic):
    with pytest.raises(ValueError):
        Topics().device_of(topic)


def test_device_of_uses_own_prefix():
    with pytest.raises(ValueError):
        Topics("site").device_of("facebus/cam1/frame")


@pytest.mark.parametrize("device_id", ["a", "A" * 64, "cam_1-B", "0"])
def test_valid_device_ids(device_id):
    assert validate_device_id(device_id) == device_id
    assert Topics().frame(device_id) == f"facebus/{device_id}/frame"


@pytest.mark.parametrize("device_id", ["bad id", "cam+", "cam#", "a/b", "services", "", "a" * 65, "caméra", "cam.1"])
def test_invalid_device_ids(device_id):
    with pytest.raises(ValueError):
        validate_device_id(device_id)
    for build in (Topics().frame, Topics().face, Topics().device_availability):
        with pytest.raises(ValueError):
            build(device_id)


def test_device_id_with_trailing_newline_rejected():
    with pytest.raises(ValueError):
        validate_device_id("cam1\n")


@pytest.mark.parametrize("prefix", ["facebus", "a/b", "home-1"])
def test_valid_prefixes(prefix):
    assert validate_prefix(prefix) == prefix


@pytest.mark.parametrize("prefix", ["", "/facebus", "facebus/", "fb+", "fb#", "a/+/b", "fb\0"])
def test_invalid_prefixes(prefix):
    with pytest.raises(ValueError):
        validate_prefix(prefix)
    with pytest.raises(ValueError):
        Topics(prefix)
