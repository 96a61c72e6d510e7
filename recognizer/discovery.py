"""Home Assistant MQTT discovery for the cameras the recognizer sees (docs/home-assistant.md).

Pure functions: :func:`discovery_messages` builds, for one camera, the retained config messages that make Home
Assistant create a device with four entities; :func:`removal_messages` the empty retained messages that remove them.
The caller publishes them (QoS 1, retained) to the broker Home Assistant reads.

Per camera ``<device>``, with ``<node>`` = ``facebus_<device>`` (see :func:`node_id`)::

    <discovery>/camera/<node>/annotated/config             the annotated view (<prefix>/<device>/annotated, JPEG)
    <discovery>/sensor/<node>/last_person/config           last person named (<prefix>/<device>/face), "unknown"
    <discovery>/binary_sensor/<node>/restricted/config     ON while the access decision is "restricted"
    <discovery>/event/<node>/face/config                   one HA event per face event: decided, changed, ended

Every entity is available only while both the camera (``<prefix>/<device>/availability``) and the recognizer
(``<prefix>/services/<instance>/availability``) say ``online`` (``availability_mode: all``).
"""

from __future__ import annotations

import hashlib
import json
import re
from importlib import metadata

from facebus.topics import (
    ID_UNSAFE_CHAR,
    OFFLINE,
    ONLINE,
    RECOGNIZER_INSTANCE_PATTERN,
    Topics,
    discovery_topic,
    validate_device_id,
)

MANUFACTURER = "facebus"
MODEL = "camera"
MAX_ID = 64  # node_id and object_id: 1-64 of [A-Za-z0-9_-] (facebus.topics.discovery_topic)

# object_id (the topic level and the end of each unique_id) of each entity, by component
CAMERA = ("camera", "annotated")
LAST_PERSON = ("sensor", "last_person")
RESTRICTED = ("binary_sensor", "restricted")
FACE_EVENT = ("event", "face")
ENTITIES = (CAMERA, LAST_PERSON, RESTRICTED, FACE_EVENT)

FACE_EVENT_TYPES = ["decided", "changed", "ended"]  # facebus.events.EventType, the event entity's event_types
# Templates Home Assistant renders (Jinja2, value_json = the JSON payload); the unit tests render them too.
LAST_PERSON_TEMPLATE = "{{ value_json.person or 'unknown' }}"
LAST_PERSON_ATTRIBUTES_TEMPLATE = (
    "{{ {'category': value_json.category, 'track_id': value_json.track_id, 'event_type': value_json.event_type,"
    " 'reason': value_json.reason, 'distance': value_json.distance, 'captured_at': value_json.captured_at} | tojson }}"
)
RESTRICTED_TEMPLATE = "{{ 'ON' if value_json.reason == 'restricted' else 'OFF' }}"
# safety: on means unsafe. A restricted person at the camera is an alert, not occupancy: "occupancy" would read
# "clear" while an authorised person stands there, and Home Assistant counts occupancy sensors as area presence.
RESTRICTED_DEVICE_CLASS = "safety"


def _version() -> str:
    try:
        return metadata.version("facebus")
    except metadata.PackageNotFoundError:
        return "unknown"


def node_id(device_id: str, topics: Topics) -> str:
    """Discovery node id of a camera: ``facebus_<device_id>`` for the default topic prefix,
    ``facebus_<prefix>_<device_id>`` for another one (``/`` and other characters outside ``[A-Za-z0-9_-]`` as ``_``), so
    two installations behind one Home Assistant do not collide. Longer than 64 characters: cut to 55 plus ``_`` and 8
    hex digits of its SHA-1. It is also the device identifier and the start of each unique_id. ValueError for an invalid
    device id."""
    validate_device_id(device_id)
    prefix = "" if topics.prefix == "facebus" else re.sub(ID_UNSAFE_CHAR, "_", topics.prefix) + "_"
    node = f"facebus_{prefix}{device_id}"
    if len(node) > MAX_ID:
        node = f"{node[:MAX_ID - 9]}_{hashlib.sha1(node.encode()).hexdigest()[:8]}"
    return node


def _availability(device_id: str, topics: Topics, recognizer_instance: str) -> dict:
    return {
        "availability": [
            {"topic": topics.device_availability(device_id), "payload_available": ONLINE,
             "payload_not_available": OFFLINE},
            {"topic": topics.service_availability(recognizer_instance), "payload_available": ONLINE,
             "payload_not_available": OFFLINE},
        ],
        "availability_mode": "all",
    }


def discovery_configs(device_id: str, topics: Topics,
                      recognizer_instance: str = "recognizer") -> dict[tuple[str, str], dict]:
    """The config of each entity of camera ``device_id``, by (component, object_id), as dicts. ValueError for an
    invalid device id or recognizer instance name."""
    if not re.fullmatch(RECOGNIZER_INSTANCE_PATTERN, recognizer_instance):
        raise ValueError(f"recognizer instance {recognizer_instance!r} must be recognizer or recognizer-<suffix>")
    node = node_id(device_id, topics)
    device = {"identifiers": [node], "name": device_id, "manufacturer": MANUFACTURER, "model": MODEL,
              "sw_version": _version()}
    origin = {"name": "facebus", "sw_version": _version()}

    def common(entity: tuple[str, str], name: str) -> dict:
        return {"name": name, "unique_id": f"{node}_{entity[1]}", "device": device, "origin": origin,
                **_availability(device_id, topics, recognizer_instance)}

    return {
        CAMERA: common(CAMERA, "Annotated view") | {"topic": topics.annotated(device_id), "qos": 0},
        LAST_PERSON: common(LAST_PERSON, "Last person") | {
            "state_topic": topics.face(device_id), "value_template": LAST_PERSON_TEMPLATE,
            "json_attributes_topic": topics.face(device_id),
            "json_attributes_template": LAST_PERSON_ATTRIBUTES_TEMPLATE, "icon": "mdi:account-search", "qos": 1,
        },
        RESTRICTED: common(RESTRICTED, "Restricted person present") | {
            "state_topic": topics.access(device_id), "value_template": RESTRICTED_TEMPLATE,
            "payload_on": "ON", "payload_off": "OFF", "device_class": RESTRICTED_DEVICE_CLASS, "qos": 1,
        },
        FACE_EVENT: common(FACE_EVENT, "Face event") | {
            # the FaceEvent JSON as is: its event_type key is what Home Assistant's event entity requires, the other
            # keys become the event's attributes
            "state_topic": topics.face(device_id), "event_types": list(FACE_EVENT_TYPES),
            "icon": "mdi:face-recognition", "qos": 1,
        },
    }


def _topics(device_id: str, topics: Topics, discovery_prefix: str) -> list[str]:
    node = node_id(device_id, topics)
    return [discovery_topic(discovery_prefix, component, node, object_id) for component, object_id in ENTITIES]


def discovery_messages(device_id: str, topics: Topics, discovery_prefix: str,
                       recognizer_instance: str = "recognizer") -> list[tuple[str, bytes]]:
    """(topic, payload) of the four discovery configs of camera ``device_id``, to publish retained (QoS 1): topics
    ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``, payloads compact UTF-8 JSON. ``topics`` gives
    facebus's topic prefix, ``recognizer_instance`` the service whose availability the entities follow. ValueError
    for an invalid device id, discovery prefix or recognizer instance."""
    configs = discovery_configs(device_id, topics, recognizer_instance)
    return [(topic, json.dumps(configs[entity], separators=(",", ":"), sort_keys=True).encode())
            for topic, entity in zip(_topics(device_id, topics, discovery_prefix), ENTITIES, strict=True)]


def removal_messages(device_id: str, topics: Topics, discovery_prefix: str) -> list[tuple[str, bytes]]:
    """(topic, b"") for the same topics as :func:`discovery_messages`: published retained, they remove the camera's
    entities from Home Assistant and clear the retained configs from the broker. ValueError as there."""
    return [(topic, b"") for topic in _topics(device_id, topics, discovery_prefix)]
