"""The face event: one JSON object per face found in a frame, published by the recognizer (docs/mqtt.md).

The JSON Schema in ``docs/schemas/face-event.v1.json`` is generated from :class:`FaceEvent`
(``facebus schema``) and a test fails when the two drift apart.

Versioning: ``schema_version`` is 1. Optional fields may be added within a version (consumers ignore unknown keys);
a rename or a change of meaning makes version 2, published beside version 1 for a while.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime, timezone
from enum import Enum
from typing import Annotated, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

SCHEMA_VERSION = 1
SCHEMA_PATH = "docs/schemas/face-event.v1.json"


class Category(str, Enum):
    """Gallery folder the matched person came from; ``unknown`` when nobody matched."""

    authorised = "authorised"
    restricted = "restricted"
    unknown = "unknown"


Box = Annotated[
    tuple[int, int, int, int],
    Field(description="[top, right, bottom, left] in pixels of the published frame (face_recognition order)."),
]


class FaceEvent(BaseModel):
    """One face seen by a camera, as published on ``<prefix>/<device_id>/face`` (QoS 1, not retained)."""

    model_config = ConfigDict(extra="ignore", title="facebus face event")

    schema_version: Literal[1] = Field(SCHEMA_VERSION, description="Version of this payload's schema.")
    event_id: str = Field(
        default_factory=lambda: uuid.uuid4().hex,
        min_length=1,
        max_length=64,
        description="Unique id of this event (hex UUID4); consumers drop duplicates by it.",
    )
    device_id: str = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Camera that captured the frame.")
    captured_at: AwareDatetime = Field(
        ..., description="Capture time of the frame, UTC RFC 3339 (the receive time when the camera sent none)."
    )
    recognized_at: AwareDatetime = Field(..., description="Time the recognizer finished this frame, UTC RFC 3339.")
    person: str | None = Field(..., description="Gallery person id (file or folder name); null when unknown.")
    category: Category = Field(..., description="authorised, restricted or unknown.")
    distance: float | None = Field(
        ..., ge=0, description="Face distance to the nearest gallery encoding (lower = more alike); null if the gallery is empty."
    )
    tolerance: float = Field(..., gt=0, description="Tolerance in force: a distance at or below it is a match.")
    margin: float = Field(0.0, ge=0, description="Margin in force: second_distance - distance must reach it.")
    second_person: str | None = Field(None, description="Nearest gallery person other than the nearest one.")
    second_distance: float | None = Field(None, ge=0, description="Face distance to second_person.")
    matched_image: str | None = Field(
        None, description="Gallery key of the nearest image (e.g. Authorised/Alice/1.jpg), matched or not."
    )
    box: Box
    frame_width_px: int = Field(..., gt=0, description="Width of the published frame in pixels.")
    frame_height_px: int = Field(..., gt=0, description="Height of the published frame in pixels.")
    face_index: int = Field(0, ge=0, description="Index of this face among the faces of the frame (0-based).")
    faces_in_frame: int = Field(1, ge=1, description="How many faces the frame held.")
    crop_jpeg_b64: str = Field(..., description="Face crop with a margin, JPEG, base64 (standard alphabet).")

    @field_validator("captured_at", "recognized_at")
    @classmethod
    def _to_utc(cls, value: datetime) -> datetime:
        return value.astimezone(timezone.utc)

    def to_json(self) -> bytes:
        """UTF-8 JSON with explicit nulls (an unknown person stays ``"person": null``)."""
        return self.model_dump_json().encode()


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
