"""Every MQTT topic facebus uses, built in this one module (documented in docs/mqtt.md).

Layout follows the zigbee2mqtt / Home Assistant convention ``<prefix>/<device_id>/<attribute>``::

    <prefix>/<device_id>/frame                  raw JPEG bytes, QoS 0, not retained
    <prefix>/<device_id>/face                   one JSON FaceEvent per face track decision, QoS 1, not retained,
                                                without the crop (crop_jpeg_b64 null): for automations and viewers
    <prefix>/<device_id>/face_with_crop         the same event with its crop, QoS 1: for the archiver only (the ACL)
    <prefix>/<device_id>/access                 one JSON AccessDecision per change, QoS 1, message expiry,
                                                for the camera
    <prefix>/<device_id>/annotated              JPEG frames with boxes and names, QoS 0, rate-limited
    <prefix>/<device_id>/tracks                 live track boxes per processed frame, JSON, QoS 0, not retained
    <prefix>/<device_id>/availability           "online" (retained) / "offline" (last will, retained)
    <prefix>/services/<service>/availability    same, for recognizer, archiver, ...
    <prefix>/services/<service>/stats           per-interval figures, JSON, QoS 0, not retained
    <prefix>/services/recognizer/gallery        gallery summary, JSON, QoS 1, retained
    <discovery>/<component>/<node_id>/<object_id>/config   Home Assistant MQTT discovery, retained

``services`` is reserved: no camera may use it as its device id.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DEFAULT_PREFIX = "facebus"
SERVICES = "services"
# Device, person, track and event ids, service names: file-name and topic-level safe as is. The one definition:
# ID (to embed in a larger pattern), ID_PATTERN (anchored, for pydantic), ID_RE (compiled).
ID_CHARS = "[A-Za-z0-9_-]"
ID_UNSAFE_CHAR = "[^A-Za-z0-9_-]"  # what sanitising replaces
ID = ID_CHARS + "{1,64}"
ID_PATTERN = f"^{ID}$"
DEVICE_ID_PATTERN = ID_PATTERN
ID_RE = re.compile(ID_PATTERN)
# recognizer, or recognizer-<suffix> for more (the whole name an ID of at most 64 characters)
RECOGNIZER_INSTANCE_PATTERN = f"^recognizer(-{ID_CHARS}{{1,53}})?$"
RECOGNIZER_INSTANCE_RE = re.compile(RECOGNIZER_INSTANCE_PATTERN)
UNKNOWN_PERSON = "unknown"  # reserved: the person tag of faces nobody matched, never a gallery person id

ONLINE = "online"
OFFLINE = "offline"


def validate_device_id(device_id: str) -> str:
    """Return ``device_id`` unchanged, or raise ValueError when it is not 1-64 of ``[A-Za-z0-9_-]`` or is reserved."""
    if not ID_RE.fullmatch(device_id):
        raise ValueError(f"device id {device_id!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    if device_id == SERVICES:
        raise ValueError(f"device id {SERVICES!r} is reserved for the services' own topics")
    return device_id


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged, or raise ValueError when it is empty, has MQTT wildcards or leading/trailing '/'."""
    if not prefix or prefix.startswith("/") or prefix.endswith("/") or any(c in prefix for c in "+#\0"):
        raise ValueError(f"topic prefix {prefix!r} must be non-empty, without + # or a leading/trailing /")
    return prefix


@dataclass(frozen=True)
class Topics:
    """Topic builder for one prefix (default ``facebus``)."""

    prefix: str = DEFAULT_PREFIX

    def __post_init__(self) -> None:
        validate_prefix(self.prefix)

    def frame(self, device_id: str) -> str:
        """Topic a camera publishes its raw JPEG frames to."""
        return f"{self.prefix}/{validate_device_id(device_id)}/frame"

    def face(self, device_id: str) -> str:
        """Topic the recognizer publishes one FaceEvent per face to, for frames of ``device_id``."""
        return f"{self.prefix}/{validate_device_id(device_id)}/face"

    def face_with_crop(self, device_id: str) -> str:
        """Topic of the same FaceEvent with its crop (``crop_jpeg_b64``), read by the archiver only."""
        return f"{self.prefix}/{validate_device_id(device_id)}/face_with_crop"

    def access(self, device_id: str) -> str:
        """Topic of the access decisions for ``device_id`` (AccessDecision, QoS 1, with a message expiry)."""
        return f"{self.prefix}/{validate_device_id(device_id)}/access"

    def annotated(self, device_id: str) -> str:
        """Topic of ``device_id``'s annotated view: JPEG frames with the face boxes and names drawn (QoS 0)."""
        return f"{self.prefix}/{validate_device_id(device_id)}/annotated"

    def tracks(self, device_id: str) -> str:
        """Topic the recognizer publishes each processed frame's live track boxes to (TracksMessage)."""
        return f"{self.prefix}/{validate_device_id(device_id)}/tracks"

    def device_availability(self, device_id: str) -> str:
        return f"{self.prefix}/{validate_device_id(device_id)}/availability"

    def service_availability(self, service: str) -> str:
        return f"{self.prefix}/{SERVICES}/{service}/availability"

    def service_stats(self, service: str) -> str:
        """Per-interval figures of a service (JSON, QoS 0, not retained; docs/metrics.md)."""
        return f"{self.prefix}/{SERVICES}/{service}/stats"

    def gallery_state(self) -> str:
        """The recognizer's gallery summary (JSON, QoS 1, retained)."""
        return f"{self.prefix}/{SERVICES}/recognizer/gallery"

    @property
    def all_service_stats(self) -> str:
        return f"{self.prefix}/{SERVICES}/+/stats"

    @property
    def all_device_availability(self) -> str:
        """Subscription filter for every device's availability (the services' own are one level deeper)."""
        return f"{self.prefix}/+/availability"

    @property
    def all_frames(self) -> str:
        """Subscription filter for every device's frames."""
        return f"{self.prefix}/+/frame"

    @property
    def all_access(self) -> str:
        return f"{self.prefix}/+/access"

    @property
    def all_annotated(self) -> str:
        return f"{self.prefix}/+/annotated"

    @property
    def all_tracks(self) -> str:
        """Subscription filter for every device's live tracks."""
        return f"{self.prefix}/+/tracks"

    @property
    def all_faces(self) -> str:
        """Subscription filter for every device's face events (without crops)."""
        return f"{self.prefix}/+/face"

    @property
    def all_faces_with_crop(self) -> str:
        """Subscription filter for every device's face events with their crops."""
        return f"{self.prefix}/+/face_with_crop"

    def service_of(self, topic: str) -> str:
        """Service name of a ``<prefix>/services/<service>/<attribute>`` topic; ValueError for other topics."""
        parts = topic.split("/")
        head = self.prefix.split("/")
        if parts[: len(head)] != head or len(parts) != len(head) + 3 or parts[len(head)] != SERVICES:
            raise ValueError(f"topic {topic!r} is not {self.prefix}/{SERVICES}/<service>/<attribute>")
        return parts[len(head) + 1]

    def device_of(self, topic: str) -> str:
        """Device id of a ``<prefix>/<device_id>/<attribute>`` topic; ValueError when the topic is not of that form."""
        head, sep, rest = topic.partition(self.prefix + "/")
        parts = rest.split("/")
        if head or not sep or len(parts) != 2:
            raise ValueError(f"topic {topic!r} is not {self.prefix}/<device_id>/<attribute>")
        return validate_device_id(parts[0])


def discovery_topic(discovery_prefix: str, component: str, node_id: str, object_id: str) -> str:
    """Home Assistant MQTT discovery config topic ``<discovery_prefix>/<component>/<node_id>/<object_id>/config``;
    ``node_id`` and ``object_id`` must be 1-64 of ``[A-Za-z0-9_-]`` (ValueError otherwise)."""
    for part in (node_id, object_id):
        if not ID_RE.fullmatch(part):
            raise ValueError(f"discovery id {part!r} must be 1-64 characters of A-Z a-z 0-9 _ -")
    return f"{validate_prefix(discovery_prefix)}/{component}/{node_id}/{object_id}/config"
