"""The face event: one JSON object per face track and decision, published by the recognizer (docs/mqtt.md).

The JSON Schema in ``docs/schemas/face-event.v3.json`` is generated from :class:`FaceEvent`
(``facebus schema``) and a test fails when the two drift apart.

Versioning: ``schema_version`` is 3. Version 2 carried the crop on the public topic; version 1 (one event per face
per frame) ended when face tracks came: an event now describes a track. Optional fields may be added within a
version (consumers ignore unknown keys); a rename or a change of meaning makes the next version.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from facebus.topics import DEVICE_ID_PATTERN, ID_PATTERN, UNKNOWN_PERSON

SCHEMA_VERSION = 3
SCHEMA_PATH = "docs/schemas/face-event.v3.json"


class Category(str, Enum):
    """Gallery folder the matched person came from; ``unknown`` when nobody matched."""

    authorised = "authorised"
    restricted = "restricted"
    unknown = "unknown"


class EventType(str, Enum):
    """Why a track's event was published."""

    decided = "decided"
    changed = "changed"
    ended = "ended"


class Reason(str, Enum):
    """Why a track has the identity it has."""

    matched = "matched"
    consistent = "consistent"
    no_match = "no_match"
    ambiguous = "ambiguous"
    too_small = "too_small"
    too_blurred = "too_blurred"
    empty_gallery = "empty_gallery"


Box = Annotated[
    tuple[int, int, int, int],
    Field(description="[top, right, bottom, left] in pixels of the published frame (face_recognition order)."),
]


class FaceQuality(BaseModel):
    """How good the track's best view was (the quality gate's measures)."""

    width_px: int = Field(..., ge=0, description="Face box width in pixels of the frame.")
    sharpness: float = Field(
        ..., ge=0, description="Variance of the Laplacian of the face at 64x64 (higher = sharper)."
    )
    frontal: float = Field(..., ge=0, le=1, description="1 for a frontal face, towards 0 for a profile.")


VISITOR_ID_PATTERN = r"^v-[0-9a-f]{6,16}$"


class Visitor(BaseModel):
    """The recurring stranger an unknown track was recognised as (docs/visitors.md)."""

    visitor_id: str = Field(
        ..., pattern=VISITOR_ID_PATTERN, description="Stable opaque id, e.g. v-7f3a9c; the same stranger keeps it "
        "across cameras, days and restarts."
    )
    visits: int = Field(
        ..., ge=1, description="Visits so far, this one included (tracks more than the visit gap apart)."
    )
    first_seen: AwareDatetime = Field(..., description="Capture time the visitor was first seen, UTC RFC 3339.")


class FaceEvent(BaseModel):
    """A face track's identity, as published on ``<prefix>/<device_id>/face`` (QoS 1, not retained): when the track
    is first decided, when its identity changes, and when it ends (with the summary)."""

    model_config = ConfigDict(extra="ignore", title="facebus face event")

    schema_version: Literal[3] = Field(SCHEMA_VERSION, description="Version of this payload's schema.")
    event_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        pattern=ID_PATTERN,
        description="Unique id of this event (hex UUID4; 1-64 of A-Z a-z 0-9 _ -); consumers drop duplicates by it.",
    )
    event_type: EventType = Field(
        ..., description="decided: first identity of the track; changed: its identity changed; ended: track over."
    )
    track_id: str = Field(..., pattern=ID_PATTERN, description="Id of the face track (unique per recognizer run).")
    model: str = Field(
        ..., min_length=1, max_length=64, description="Face model that made the encodings, e.g. yunet-sface."
    )
    device_id: str = Field(..., pattern=DEVICE_ID_PATTERN, description="Camera that captured the frames.")
    captured_at: AwareDatetime = Field(
        ..., description="Capture time of the frame that caused this event (the receive time when the camera sent "
        "none), UTC RFC 3339."
    )
    recognized_at: AwareDatetime = Field(..., description="Time the recognizer published this event, UTC RFC 3339.")
    first_seen: AwareDatetime = Field(..., description="Capture time of the track's first frame.")
    last_seen: AwareDatetime = Field(..., description="Capture time of the track's latest frame.")
    person: str | None = Field(
        ..., pattern=ID_PATTERN, description="Gallery person id (file or folder name, 1-64 of A-Z a-z 0-9 _ -, never "
        "\"unknown\"); null when unknown."
    )
    category: Category = Field(..., description="authorised, restricted or unknown.")
    reason: Reason = Field(
        ..., description="matched, consistent (named by the same nearest person over many views); or why unknown: "
        "no_match, ambiguous, too_small, too_blurred (quality gate), empty_gallery."
    )
    distance: float | None = Field(
        ..., ge=0, description="Smallest face distance of the decision's samples to the gallery (lower = more alike); "
        "null when nothing was encoded."
    )
    tolerance: float = Field(..., gt=0, description="Tolerance in force: a distance at or below it is a match.")
    margin: float = Field(0.0, ge=0, description="Margin in force: second_distance - distance must reach it.")
    second_person: str | None = Field(None, description="Nearest gallery person other than the nearest one.")
    second_distance: float | None = Field(None, ge=0, description="Face distance to second_person.")
    matched_image: str | None = Field(
        None, description="Gallery key of the nearest image (e.g. Authorised/Alice/1.jpg), matched or not."
    )
    frames: int = Field(..., ge=1, description="Frames of the track processed so far.")
    samples: int = Field(..., ge=0, description="Views of the track encoded and matched so far.")
    votes: dict[str, int] = Field(
        default_factory=dict, description="Samples per nearest accepted person; key \"\" for samples that matched "
        "nobody."
    )
    quality: FaceQuality = Field(..., description="The best view's quality.")
    box: Box
    frame_width_px: int = Field(..., gt=0, description="Width of the frame of the best view in pixels.")
    frame_height_px: int = Field(..., gt=0, description="Height of the frame of the best view in pixels.")
    visitor: Visitor | None = Field(
        None, description="For an unknown face that was encoded: the visitor it was recognised as (null when visitors "
        "are off, or for a named person).",
    )
    crop_jpeg_b64: str | None = Field(
        None, description="Crop of the best view with a margin, JPEG, base64 (standard alphabet); only on "
        "<prefix>/<device_id>/face_with_crop (the archiver's topic), null on <prefix>/<device_id>/face.",
    )

    # Within the recognizer only (never serialised): the track's face encodings, from the worker to the process that
    # gives unknown tracks their visitor.
    _encodings: list = PrivateAttr(default_factory=list)

    @field_validator("captured_at", "recognized_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(timezone.utc)

    @model_validator(mode="after")
    def _person_matches_category(self) -> FaceEvent:
        if self.person is not None and self.person.lower() == UNKNOWN_PERSON:
            raise ValueError(f"person {self.person!r} is reserved: an unknown face has person null")
        if (self.person is None) != (self.category is Category.unknown):
            raise ValueError(f"person {self.person!r} does not go with category {self.category.value!r}: "
                             "a named person is authorised or restricted, an unknown face (person null) is unknown")
        return self

    def to_json(self) -> bytes:
        """UTF-8 JSON with explicit nulls (an unknown person stays ``"person": null``)."""
        return self.model_dump_json().encode()

    def without_crop(self) -> FaceEvent:
        """This event with ``crop_jpeg_b64`` null, as published on ``<prefix>/<device_id>/face``."""
        return self.model_copy(update={"crop_jpeg_b64": None})


class TrackBox(BaseModel):
    """One live track in a processed frame."""

    track_id: str = Field(..., description="Id of the face track (as in its face events).")
    box: Box
    person: str | None = Field(..., description="The track's announced person; null while unknown or undecided.")
    category: Category | None = Field(..., description="authorised, restricted, unknown; null while undecided.")
    samples: int = Field(0, ge=0, description="Views of the track encoded and matched so far.")


class TracksMessage(BaseModel):
    """The live tracks of one processed frame, on ``<prefix>/<device_id>/tracks`` (QoS 0, not retained): light, for
    live views that draw boxes; the record of who was seen is the face events."""

    model_config = ConfigDict(extra="ignore", title="facebus tracks")

    schema_version: Literal[1] = Field(1, description="Version of this payload's schema.")
    device_id: str = Field(..., pattern=DEVICE_ID_PATTERN, description="Camera that captured the frame.")
    captured_at: AwareDatetime = Field(..., description="Capture time of the frame, UTC RFC 3339.")
    frame_width_px: int = Field(..., gt=0, description="Width of the frame in pixels.")
    frame_height_px: int = Field(..., gt=0, description="Height of the frame in pixels.")
    tracks: list[TrackBox] = Field(default_factory=list, description="Tracks seen in this frame, largest box first.")


class Decision(str, Enum):
    granted = "granted"
    denied = "denied"


class AccessReason(str, Enum):
    """Why access was granted or denied."""

    authorised = "authorised"
    restricted = "restricted"
    unknown = "unknown"
    no_face = "no_face"


class AccessDecision(BaseModel):
    """The access decision for one camera, on ``<prefix>/<device_id>/access`` (QoS 1, not retained, MQTT message
    expiry ``FACEBUS_ACCESS_EXPIRY_S``): published when the decision, its person or its reason changes."""

    model_config = ConfigDict(extra="ignore", title="facebus access decision")

    schema_version: Literal[1] = Field(1, description="Version of this payload's schema.")
    device_id: str = Field(..., pattern=DEVICE_ID_PATTERN, description="Camera the decision is for.")
    decision: Decision = Field(..., description="granted or denied.")
    reason: AccessReason = Field(
        ..., description="authorised (granted), restricted, unknown or no_face (nobody in front of the camera)."
    )
    person: str | None = Field(
        ..., pattern=ID_PATTERN, description="The person the decision is about; null for unknown and no_face."
    )
    category: Category | None = Field(..., description="That person's category; null for no_face.")
    track_id: str | None = Field(
        ..., pattern=ID_PATTERN, description="Face track the decision comes from; null for no_face."
    )
    captured_at: AwareDatetime = Field(
        ..., description="Capture time of the frame that changed the decision, UTC RFC 3339."
    )
    decided_at: AwareDatetime = Field(..., description="Time the recognizer published the decision, UTC RFC 3339.")

    def to_json(self) -> bytes:
        return self.model_dump_json().encode()


def describe_error(exc: ValidationError) -> str:
    """Every field a validation error names, with its message: ``person: String should match pattern ...;
    captured_at: Input should have timezone info (2 errors)``."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "payload"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts) + f" ({exc.error_count()} error{'s' if exc.error_count() != 1 else ''})"


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def json_schema() -> dict:
    """JSON Schema (draft 2020-12) of :class:`FaceEvent`, as committed in ``docs/schemas/``."""
    schema = FaceEvent.model_json_schema(mode="serialization")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://github.com/facebus/facebus/" + SCHEMA_PATH
    return schema


def json_schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"


# Frames are raw JPEG bytes (so any third-party MQTT camera works unchanged); the capture time travels beside them
# as an MQTT v5 user property. Consumers accept frames without it and use the receive time instead.
CAPTURE_TIME_PROPERTY = "capture_time"


def format_time(moment: datetime) -> str:
    """UTC RFC 3339 with milliseconds, e.g. ``2026-11-22T08:01:02.345Z``."""
    return moment.astimezone(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def parse_time(text: str) -> datetime:
    """Parse an RFC 3339 time (``Z`` or an offset) to an aware UTC datetime; ValueError when it is not one
    or has no time zone."""
    moment = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"time {text!r} has no time zone")
    return moment.astimezone(timezone.utc)
