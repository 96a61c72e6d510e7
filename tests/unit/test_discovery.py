"""Home Assistant MQTT discovery messages (recognizer.discovery), checked against what Home Assistant documents.

The key sets below are written from Home Assistant's documentation of each MQTT platform's configuration variables
(and the voluptuous schemas behind them, homeassistant/components/mqtt/{camera,sensor,binary_sensor,event,schemas,
entity,config}.py in home-assistant/core):

- discovery (topic ``<discovery_prefix>/<component>/[<node_id>/]<object_id>/config``, ids ``[a-zA-Z0-9_-]``, an
  empty retained payload removes): https://www.home-assistant.io/integrations/mqtt/#mqtt-discovery
- camera: https://www.home-assistant.io/integrations/camera.mqtt/ (``topic`` required)
- sensor: https://www.home-assistant.io/integrations/sensor.mqtt/ (``state_topic`` required)
- binary_sensor: https://www.home-assistant.io/integrations/binary_sensor.mqtt/ (``state_topic`` required)
- event: https://www.home-assistant.io/integrations/event.mqtt/ (``state_topic`` and ``event_types`` required; the
  JSON payload must carry an ``event_type`` key)
- binary sensor device classes: https://www.home-assistant.io/integrations/binary_sensor/#device-class
"""

from __future__ import annotations

import json
import re

import pytest

from facebus.events import AccessDecision, AccessReason, Category, Decision, EventType
from facebus.topics import Topics
from recognizer.discovery import (
    FACE_EVENT_TYPES,
    LAST_PERSON_ATTRIBUTES_TEMPLATE,
    LAST_PERSON_TEMPLATE,
    RESTRICTED_TEMPLATE,
    discovery_messages,
    node_id,
    removal_messages,
)
from tests.factories import T0, face_event

TOPICS = Topics()
PREFIX = "homeassistant"
TOPIC_RE = re.compile(r"^(?P<prefix>.+)/(?P<component>[a-z_]+)/(?P<node>[A-Za-z0-9_-]{1,64})"
                      r"/(?P<object>[A-Za-z0-9_-]{1,64})/config$")

# Options every MQTT entity platform takes (availability, device, origin and the entity options; qos/encoding).
COMMON = {
    "availability", "availability_mode", "availability_template", "availability_topic", "payload_available",
    "payload_not_available", "device", "origin", "enabled_by_default", "entity_category", "entity_picture", "icon",
    "json_attributes_template", "json_attributes_topic", "name", "object_id", "default_entity_id", "unique_id",
    "platform", "qos", "encoding",
}
ALLOWED = {
    "camera": COMMON | {"topic", "image_encoding"},
    "sensor": COMMON | {"state_topic", "value_template", "device_class", "expire_after", "force_update",
                        "last_reset_value_template", "options", "state_class", "suggested_display_precision",
                        "unit_of_measurement"},
    "binary_sensor": COMMON | {"state_topic", "value_template", "device_class", "expire_after", "force_update",
                               "off_delay", "payload_off", "payload_on"},
    "event": COMMON | {"state_topic", "value_template", "device_class", "event_types"},
}
REQUIRED = {
    "camera": {"topic"},
    "sensor": {"state_topic"},
    "binary_sensor": {"state_topic"},
    "event": {"state_topic", "event_types"},
}
DEVICE_KEYS = {"identifiers", "connections", "configuration_url", "hw_version", "manufacturer", "model", "model_id",
               "name", "serial_number", "suggested_area", "sw_version", "via_device"}
ORIGIN_KEYS = {"name", "sw_version", "support_url"}
AVAILABILITY_KEYS = {"topic", "payload_available", "payload_not_available", "value_template"}
BINARY_SENSOR_DEVICE_CLASSES = {
    "battery", "battery_charging", "carbon_monoxide", "cold", "connectivity", "door", "garage_door", "gas", "heat",
    "light", "lock", "moisture", "motion", "moving", "occupancy", "opening", "plug", "power", "presence", "problem",
    "running", "safety", "smoke", "sound", "tamper", "update", "vibration", "window",
}


def configs(device: str = "door", topics: Topics = TOPICS, prefix: str = PREFIX, **kwargs) -> dict[str, dict]:
    """component -> parsed config of each discovery message."""
    out = {}
    for topic, payload in discovery_messages(device, topics, prefix, **kwargs):
        match = TOPIC_RE.fullmatch(topic)
        assert match, topic
        out[match["component"]] = json.loads(payload)
    return out


def test_one_message_per_component_on_the_documented_topics():
    messages = discovery_messages("door", TOPICS, PREFIX)
    assert [t for t, _ in messages] == [
        "homeassistant/camera/facebus_door/annotated/config",
        "homeassistant/sensor/facebus_door/last_person/config",
        "homeassistant/binary_sensor/facebus_door/restricted/config",
        "homeassistant/event/facebus_door/face/config",
    ]
    for topic, payload in messages:
        match = TOPIC_RE.fullmatch(topic)
        assert match and match["prefix"] == PREFIX and match["node"] == "facebus_door"
        assert isinstance(payload, bytes) and isinstance(json.loads(payload.decode("utf-8")), dict)


@pytest.mark.parametrize("component", sorted(ALLOWED))
def test_payload_keys_are_the_documented_ones(component):
    config = configs()[component]
    assert REQUIRED[component] <= set(config), f"{component}: missing {REQUIRED[component] - set(config)}"
    assert set(config) <= ALLOWED[component], f"{component}: not documented {set(config) - ALLOWED[component]}"
    assert set(config["device"]) <= DEVICE_KEYS and set(config["origin"]) <= ORIGIN_KEYS
    assert config["origin"]["name"] == "facebus"
    assert "availability_topic" not in config  # exclusive with the availability list
    for item in config["availability"]:
        assert set(item) <= AVAILABILITY_KEYS and "topic" in item
    assert config["qos"] in (0, 1, 2)
    assert all(isinstance(config[k], str) for k in config if k.endswith(("_topic", "_template")) or k == "topic")


def test_device_and_unique_ids():
    by_component = configs()
    devices = [c["device"] for c in by_component.values()]
    assert all(d == devices[0] for d in devices)  # one device, all four entities on it
    assert devices[0] | {"sw_version": None} == {"identifiers": ["facebus_door"], "name": "door",
                                                 "manufacturer": "facebus", "model": "camera", "sw_version": None}
    unique_ids = [c["unique_id"] for c in by_component.values()] + [c["unique_id"] for c in configs("gate").values()]
    assert len(set(unique_ids)) == 8
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", u) for u in unique_ids)


@pytest.mark.parametrize("instance", ["recognizer", "recognizer-b"])
def test_availability_is_the_camera_and_the_recognizer(instance):
    for component, config in configs(recognizer_instance=instance).items():
        assert config["availability_mode"] == "all", component
        assert [a["topic"] for a in config["availability"]] == [
            TOPICS.device_availability("door"), TOPICS.service_availability(instance)]
        assert all(a["payload_available"] == "online" and a["payload_not_available"] == "offline"
                   for a in config["availability"])


def test_state_topics_are_facebus_topics():
    c = configs()
    assert c["camera"]["topic"] == TOPICS.annotated("door") == "facebus/door/annotated"
    assert c["sensor"]["state_topic"] == c["sensor"]["json_attributes_topic"] == TOPICS.face("door")
    assert c["binary_sensor"]["state_topic"] == TOPICS.access("door")
    assert c["event"]["state_topic"] == TOPICS.face("door")
    assert c["event"]["event_types"] == FACE_EVENT_TYPES == [t.value for t in EventType]
    assert c["binary_sensor"]["device_class"] in BINARY_SENSOR_DEVICE_CLASSES
    assert c["binary_sensor"]["device_class"] == "safety"


def test_templates_render_as_home_assistant_would():
    jinja2 = pytest.importorskip("jinja2")
    env = jinja2.Environment()

    def render(template: str, payload: bytes) -> str:
        return env.from_string(template).render(value_json=json.loads(payload)).strip()

    alice = face_event("Alice").without_crop().to_json()
    nobody = face_event(None, event_type=EventType.changed).without_crop().to_json()
    assert render(LAST_PERSON_TEMPLATE, alice) == "Alice"
    assert render(LAST_PERSON_TEMPLATE, nobody) == "unknown"
    attributes = json.loads(render(LAST_PERSON_ATTRIBUTES_TEMPLATE, nobody))
    assert attributes["category"] == "unknown" and attributes["track_id"] == "0123456789ab"
    assert attributes["event_type"] == "changed" and attributes["reason"] == "no_match"
    assert json.loads(alice)["event_type"] in FACE_EVENT_TYPES  # what the event entity needs, as published

    def access(decision: Decision, reason: AccessReason, person: str | None, category: Category | None) -> bytes:
        return AccessDecision(device_id="door", decision=decision, reason=reason, person=person, category=category,
                              track_id=None if reason is AccessReason.no_face else "t1", captured_at=T0,
                              decided_at=T0).to_json()

    assert render(RESTRICTED_TEMPLATE,
                  access(Decision.denied, AccessReason.restricted, "Mallory", Category.restricted)) == "ON"
    assert render(RESTRICTED_TEMPLATE,
                  access(Decision.granted, AccessReason.authorised, "Alice", Category.authorised)) == "OFF"
    assert render(RESTRICTED_TEMPLATE, access(Decision.denied, AccessReason.unknown, None, Category.unknown)) == "OFF"
    assert render(RESTRICTED_TEMPLATE, access(Decision.denied, AccessReason.no_face, None, None)) == "OFF"


def test_other_prefixes_and_long_ids_stay_id_safe():
    site = Topics("site-a/doors")
    assert node_id("door", site) == "facebus_site-a_doors_door"
    c = configs("door", site, "ha/discovery")
    assert c["camera"]["topic"] == "site-a/doors/door/annotated"
    assert c["camera"]["availability"][1]["topic"] == "site-a/doors/services/recognizer/availability"
    long_a, long_b = "a" * 63 + "1", "a" * 63 + "2"
    assert len(node_id(long_a, TOPICS)) == 64 and node_id(long_a, TOPICS) != node_id(long_b, TOPICS)
    for topic, _ in discovery_messages(long_a, TOPICS, PREFIX):
        assert TOPIC_RE.fullmatch(topic), topic


def test_removal_messages_empty_the_same_topics():
    made = discovery_messages("door", TOPICS, PREFIX)
    removed = removal_messages("door", TOPICS, PREFIX)
    assert [t for t, _ in removed] == [t for t, _ in made]
    assert all(payload == b"" for _, payload in removed)


@pytest.mark.parametrize("device, prefix, instance", [
    ("bad/id", PREFIX, "recognizer"), ("services", PREFIX, "recognizer"), ("door", "ha/#", "recognizer"),
    ("door", "", "recognizer"), ("door", PREFIX, "archiver"),
])
def test_invalid_arguments(device, prefix, instance):
    with pytest.raises(ValueError):
        discovery_messages(device, TOPICS, prefix, instance)
