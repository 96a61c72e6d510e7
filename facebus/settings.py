"""Configuration for every service, read by pydantic-settings.

Precedence, highest first: command-line flags, environment variables, ``.env`` in the working directory, defaults.
Each concern has its own class and environment prefix; one shared ``.env`` serves all services
(``extra="ignore"``: a service ignores the others' keys). ``.env.example`` documents every variable.

Flags are generated from the same fields (``--mqtt-host``, ``--device-id``, ...), so there is one source of truth;
:func:`add_arguments` / :func:`load` connect argparse to these classes.
"""

from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from facebus.topics import DEFAULT_PREFIX, RECOGNIZER_INSTANCE_PATTERN, validate_device_id, validate_prefix


def _config(env_prefix: str) -> SettingsConfigDict:
    return SettingsConfigDict(env_prefix=env_prefix, env_file=".env", env_file_encoding="utf-8", extra="ignore")


class MqttSettings(BaseSettings):
    """Broker connection, shared by every service."""

    model_config = _config("FACEBUS_MQTT_")

    host: str = Field("127.0.0.1", title="Broker host", description="MQTT broker host name or IP address.")
    port: int = Field(1883, ge=1, le=65535, title="Broker port", description="MQTT broker TCP port.")
    username: str | None = Field(None, title="User name", description="MQTT user name; empty for anonymous.")
    password: SecretStr | None = Field(None, title="Password", description="MQTT password.")
    topic_prefix: str = Field(DEFAULT_PREFIX, title="Topic prefix", description="First level of every facebus topic.")
    keepalive_s: int = Field(30, ge=5, le=3600, title="Keepalive", description="MQTT keepalive in seconds.")
    client_id: str | None = Field(
        None, min_length=1, max_length=64, title="Client id",
        description="MQTT client id, the name the broker keeps this service's session under; empty: "
        "facebus-<service>-<host>. Set it per service (never in a .env shared by several services).",
    )
    session_expiry_s: int = Field(
        86400, ge=0, le=4_294_967_295, title="Session expiry",
        description="How long (s) the broker keeps this client's session (subscriptions, queued QoS 1 messages) "
        "while it is away; 0: a clean session on every connect.",
    )

    tls: bool = Field(
        False, title="TLS", description="Connect over TLS (the broker's TLS listener, usually port 8883).",
    )
    ca_file: Path | None = Field(
        None, title="CA certificate",
        description="PEM file of the CA that signed the broker's certificate (facebus broker init writes ca.crt); "
        "empty: the system's trusted CAs.",
    )
    cert_file: Path | None = Field(
        None, title="Client certificate", description="PEM client certificate, for brokers that require one.",
    )
    key_file: Path | None = Field(None, title="Client key", description="PEM private key of the client certificate.")
    tls_insecure: bool = Field(
        False, title="Skip host name check",
        description="Accept a broker certificate issued for another host name (the CA is still checked). "
        "Off by default.",
    )

    @field_validator("client_id", "ca_file", "cert_file", "key_file", "username", mode="before")
    @classmethod
    def _empty_is_default(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("topic_prefix")
    @classmethod
    def _check_prefix(cls, value: str) -> str:
        return validate_prefix(value)


class PublisherSettings(BaseSettings):
    """Camera side: where frames come from and how they are published."""

    model_config = _config("FACEBUS_PUBLISHER_")

    source: str = Field(
        ...,
        title="Source",
        description="Webcam index (0), RTSP/HTTP URL, video file or folder of images.",
    )
    device_id: str = Field("camera1", title="Device id", description="Camera id in topics: 1-64 of A-Z a-z 0-9 _ -.")
    fps_max: float = Field(5.0, gt=0, le=60, title="FPS cap", description="Most frames per second to publish.")
    max_width_px: int = Field(1280, ge=64, le=7680, title="Max width", description="Frames wider are downscaled (px).")
    jpeg_quality: int = Field(85, ge=10, le=100, title="JPEG quality", description="JPEG quality of published frames.")
    realtime: bool = Field(
        True, title="Real-time pacing",
        description="Pace video files and folders at their own rate (else: as fast as possible).",
    )
    speed: float = Field(
        1.0, gt=0, le=100, title="Playback speed",
        description="Files and folders play at this speed (0.25 = slow motion).",
    )
    loop: bool = Field(False, title="Loop", description="Start a video file or folder again at its end.")
    progress: bool = Field(True, title="Progress bar", description="Show a progress bar for files and folders.")
    reopen_delay_s: float = Field(
        2.0, ge=0, title="Reopen delay", description="Seconds to wait before reopening a webcam or stream that failed."
    )

    @field_validator("device_id")
    @classmethod
    def _check_device_id(cls, value: str) -> str:
        return validate_device_id(value)


class RecognizerSettings(BaseSettings):
    """Face detection, encoding and matching."""

    model_config = _config("FACEBUS_RECOGNIZER_")

    gallery: str = Field(
        "samples/gallery",
        title="Gallery",
        description="Folder or s3://bucket/prefix holding Authorised/ and Restricted/ (Person.jpg or Person/*.jpg).",
    )
    model: Literal["yunet-sface", "dlib"] = Field(
        "yunet-sface",
        title="Face model",
        description="yunet-sface (OpenCV YuNet + SFace, fast, the default) or dlib (face_recognition HOG + ResNet).",
    )
    tolerance: float | None = Field(
        None,
        gt=0,
        le=2,
        title="Tolerance",
        description="Largest face distance still called a match; lower is stricter. Empty: the model's default "
        "(yunet-sface 1.04, dlib 0.58; docs/accuracy.md).",
    )
    margin: float | None = Field(
        None,
        ge=0,
        lt=1,
        title="Margin",
        description="The nearest other person must be at least this much farther than the match, else unknown. "
        "Empty: the model's default (yunet-sface 0.10, dlib 0.05).",
    )
    detect_max_width_px: int = Field(
        640, ge=160, le=4096, title="Detection width",
        description="Frames wider are shrunk to this width for detection (px).",
    )
    detect_score: float = Field(
        0.6, gt=0, lt=1, title="Detection score", description="yunet-sface: lowest detector confidence kept as a face."
    )
    detect_upsample: int = Field(
        1, ge=0, le=2, title="Detection upsample",
        description="dlib: HOG upsampling passes (1 finds faces half as large, at 4x cost).",
    )
    detect_profiles: bool = Field(
        True, title="Profile faces",
        description="dlib: also run OpenCV's profile-face cascade (faces turned 45-90 degrees).",
    )
    min_face_px: int | None = Field(
        None, ge=8, le=1000, title="Minimum face size",
        description="Quality gate: a face narrower than this (px of the frame) is never encoded or named (reason "
        "too_small). Empty: the model's default (yunet-sface 24, dlib 32).",
    )
    min_sharpness: float | None = Field(
        None, ge=0, title="Minimum sharpness",
        description="Quality gate: a face blurrier than this (variance of the Laplacian at 64x64) is never named "
        "(too_blurred). Empty: the model's default (yunet-sface 40, dlib 80).",
    )
    track_timeout_s: float = Field(
        1.0, gt=0, le=60, title="Track timeout", description="A face track unseen this long (s, capture time) ends."
    )
    track_min_votes: int = Field(
        2, ge=1, le=20, title="Votes to decide",
        description="Encoded views a track needs before it is decided, and votes a person needs (with a majority) "
        "to be named.",
    )
    track_consistent_votes: int = Field(
        4, ge=0, le=100, title="Consistent views",
        description="A track whose distinct views have the same nearest person this many times (3/4 of its views), "
        "each within the consistency band above the tolerance, is that person (0: off).",
    )
    track_consistent_band: float = Field(
        0.12, ge=0, lt=1, title="Consistency band",
        description="How far above the tolerance a view still counts for the consistency rule.",
    )
    track_resample_s: float = Field(
        1.0, gt=0, title="Re-encode interval",
        description="A decided track is encoded again after this long (s), or at once for a better view.",
    )
    track_max: int = Field(
        32, ge=1, le=1000, title="Tracks per device", description="Most live face tracks per device."
    )
    motion_threshold: float = Field(
        1.5, ge=0, le=255, title="Motion threshold",
        description="A frame differing less than this (mean grey levels at 64x36) from the last, with no live track, "
        "is skipped (0: off).",
    )
    scene_cut_threshold: float = Field(
        0.15, gt=0, le=1, title="Scene cut threshold",
        description="A frame whose grey histogram lies this far (Bhattacharyya, 0-1) from the last ends every live "
        "track (a cut, a moved camera).",
    )
    max_clock_skew_s: float = Field(
        300.0, gt=0, title="Clock skew",
        description="A frame whose capture_time is further than this (s) from its arrival uses the arrival time "
        "(counted as frames_bad_capture_time).",
    )
    max_devices: int = Field(
        1000, ge=1, title="Devices",
        description="Most devices followed at once; frames of a new device beyond it are refused (frames_refused) "
        "until a device has been quiet for device_idle_s.",
    )
    device_idle_s: float = Field(
        300.0, gt=0, title="Device idle time",
        description="A device that sent no frame for this long (s) is forgotten: its figures leave the stats.",
    )
    max_queued_bytes: int = Field(
        64 * 1024 * 1024, ge=1024 * 1024, title="Frame queue size",
        description="Most bytes of frames waiting for the workers, all devices together; a frame past it is dropped.",
    )
    instance: str = Field(
        "recognizer", pattern=RECOGNIZER_INSTANCE_PATTERN, title="Instance name",
        description="This recognizer's name: recognizer, or recognizer-<suffix> for each of several recognizers "
        "that share the cameras (docs/reliability.md).",
    )
    start_without_gallery: bool = Field(
        False, title="Start without gallery",
        description="Go online even when the gallery cannot be read at start (every face unknown until it can); "
        "by default the recognizer waits for it, retrying with backoff.",
    )
    workers: int = Field(
        0, ge=0, le=256, title="Workers", description="Worker processes (a device stays on one); 0: one per CPU core."
    )
    gallery_min_face_px: int = Field(
        60,
        ge=20,
        le=1000,
        title="Gallery minimum face size",
        description="A gallery photo's face must be at least this wide (px); smaller faces encode poorly.",
    )
    gallery_max_photo_bytes: int = Field(
        20 * 1024 * 1024,
        ge=1024,
        title="Gallery maximum photo size",
        description="Gallery photos larger than this (bytes) are rejected unread.",
    )
    gallery_poll_s: float = Field(
        30.0,
        ge=0,
        title="Gallery poll interval",
        description="Seconds between checks of the gallery for changes (0: read it at start only).",
    )
    cache_dir: Path | None = Field(
        Path("~/.cache/facebus/encodings"),
        title="Encoding cache",
        description="Folder caching gallery face encodings by image hash; empty to disable.",
    )
    max_frame_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, title="Max frame size", description="Frames larger than this (bytes) are rejected."
    )
    max_frame_pixels: int = Field(
        4096 * 4096, ge=64 * 64, title="Max frame pixels", description="Frames with more pixels are rejected undecoded."
    )
    crop_max_px: int = Field(
        160, ge=32, le=1024, title="Crop size", description="Longest side of the face crop carried in each event (px)."
    )
    annotated_fps_max: float = Field(
        2.0, ge=0, le=30, title="Annotated view rate",
        description="Most annotated frames (boxes, names, colours) per second and device "
        "on <prefix>/<device>/annotated; 0: off.",
    )
    annotated_max_width_px: int = Field(
        640, ge=64, le=4096, title="Annotated view width", description="Annotated frames wider are downscaled (px).",
    )
    ha_discovery: bool = Field(
        False, title="Home Assistant discovery",
        description="Publish Home Assistant MQTT discovery configs (retained) for every camera seen: camera, sensor, "
        "binary_sensor and event entities.",
    )
    ha_discovery_prefix: str = Field(
        "homeassistant", min_length=1, title="Discovery prefix", description="Home Assistant's MQTT discovery prefix.",
    )


    @field_validator("cache_dir", "tolerance", "margin", "min_face_px", "min_sharpness", mode="before")
    @classmethod
    def _empty_disables(cls, value: object) -> object:
        return None if value == "" else value

    def thresholds(self, model: str) -> Thresholds:
        """The tolerance, margin and quality gate in force for ``model``: each setting, else the model's default."""
        defaults = MODEL_DEFAULTS[model]
        return Thresholds(**{name: value if (value := getattr(self, name)) is not None else getattr(defaults, name)
                             for name in Thresholds.__dataclass_fields__})

    def worker_count(self) -> int:
        return self.workers or os.cpu_count() or 1


@dataclass(frozen=True)
class Thresholds:
    """Matching and quality-gate thresholds of one face model (distances have no unit; sizes in px)."""

    tolerance: float
    margin: float
    min_face_px: int
    min_sharpness: float


# Chosen in docs/accuracy.md from the faces-dev curves (bench/accuracy.py): tolerance in the middle of the gap between
# the farthest named probe and the nearest stranger; the largest margin costing no probe; the smallest face and the
# blurriest view from which faces are named >= 90 % right with no wrong name.
MODEL_DEFAULTS = {
    "yunet-sface": Thresholds(tolerance=1.04, margin=0.10, min_face_px=24, min_sharpness=40.0),
    "dlib": Thresholds(tolerance=0.58, margin=0.05, min_face_px=32, min_sharpness=80.0),
}

class AccessSettings(BaseSettings):
    """The access decision sent back to each camera on <prefix>/<device>/access (docs/mqtt.md)."""

    model_config = _config("FACEBUS_ACCESS_")

    enabled: bool = Field(True, title="Access decisions", description="Publish access decisions.")
    min_samples: int = Field(
        1, ge=1, le=100, title="Samples before granted",
        description="An authorised person is granted only once their track has this many encoded views.",
    )
    restricted_denies_all: bool = Field(
        True, title="Restricted denies all",
        description="A restricted person anywhere in the frame denies access to everybody in it.",
    )
    unknown_denies_all: bool = Field(
        False, title="Unknown denies all",
        description="An unknown face beside an authorised person denies access (against tailgating).",
    )
    expiry_s: int = Field(
        10, ge=1, le=86400, title="Decision expiry",
        description="MQTT message expiry (s): a camera offline longer never receives the stale decision.",
    )


class VisitorSettings(BaseSettings):
    """Recurring unknown faces: stable visitor ids, their store and its retention (docs/visitors.md)."""

    model_config = _config("FACEBUS_VISITORS_")

    enabled: bool = Field(
        True, title="Visitors",
        description="Give unknown faces a stable visitor id and keep the visitor store; "
        "false: nothing is kept about strangers.",
    )
    store: str | None = Field(
        None, title="Visitor store",
        description="Folder or s3://bucket/prefix of the visitor store; "
        "empty: the gallery's own source, under Visitors/.",
    )
    tolerance: float | None = Field(
        None, gt=0, le=2, title="Visitor tolerance",
        description="Largest face distance at which an unknown face is a known visitor; stricter than for enrolled "
        "people. Empty: the model's default (yunet-sface 1.00, dlib 0.41; docs/visitors-threshold.md).",
    )
    retention_days: float = Field(
        30.0, gt=0, title="Retention",
        description="A visitor not seen for this many days is deleted with their photos.",
    )
    visit_gap_s: float = Field(
        600.0, ge=0, title="Visit gap", description="A visitor seen again after this long (s) counts a new visit.",
    )
    max_visitors: int = Field(
        10_000, ge=1, title="Visitors kept",
        description="Most visitors kept; past it the one seen longest ago is deleted.",
    )
    max_encodings: int = Field(
        5, ge=1, le=50, title="Encodings per visitor", description="Face encodings kept per visitor (the best views).",
    )
    max_crops: int = Field(
        3, ge=0, le=20, title="Crops per visitor",
        description="Face crops kept per visitor (JPEG) for promote and the dashboards.",
    )

    @field_validator("store", "tolerance", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


class WebhookSettings(BaseSettings):
    """HTTP POSTs of face events and access decisions (docs/webhooks.md)."""

    model_config = _config("FACEBUS_WEBHOOK_")

    urls: list[str] = Field(
        default_factory=list, title="URLs",
        description='JSON list of URLs to POST to, e.g. ["http://nodered:1880/face"]; empty: off.',
    )
    categories: list[Literal["authorised", "restricted", "unknown"]] = Field(
        default_factory=lambda: ["authorised", "restricted", "unknown"], title="Categories",
        description="Face events (decided, changed) of these categories are sent (JSON list).",
    )
    decisions: list[Literal["granted", "denied"]] = Field(
        default_factory=lambda: ["granted", "denied"], title="Decisions",
        description="Access decisions of these kinds are sent (JSON list).",
    )
    secret: SecretStr | None = Field(
        None, title="Signing secret",
        description="Shared secret: each body is signed with HMAC-SHA256 in the X-Facebus-Signature header "
        "(sha256=<hex>).",
    )
    timeout_s: float = Field(5.0, gt=0, le=120, title="Timeout", description="HTTP timeout per attempt (s).")
    max_attempts: int = Field(
        5, ge=1, le=100, title="Attempts", description="Attempts per body before it is dropped (counted).",
    )
    max_backoff_s: float = Field(30.0, ge=0.1, title="Retry backoff", description="Longest wait between attempts (s).")
    max_queued: int = Field(
        1000, ge=1, title="Queue size",
        description="Bodies waiting to be sent; past it the oldest is dropped (counted).",
    )

    @field_validator("secret", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("urls")
    @classmethod
    def _check_urls(cls, urls: list[str]) -> list[str]:
        from urllib.parse import urlsplit

        for url in urls:
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("a webhook URL must be http:// or https:// with a host")
        return urls


class LiveSettings(BaseSettings):
    """The live page (facebus live): cameras' annotated views and the latest events and decisions."""

    model_config = _config("FACEBUS_LIVE_")

    host: str = Field(
        "127.0.0.1", title="Listen address", description="Address the page listens on (0.0.0.0: every interface)."
    )
    port: int = Field(8090, ge=1, le=65535, title="Port", description="HTTP port of the page.")
    max_log: int = Field(
        100, ge=1, le=10_000, title="Log length", description="Latest events and decisions kept for the page."
    )
    max_devices: int = Field(
        64, ge=1, le=10_000, title="Cameras", description="Most cameras shown; further ones are ignored (counted)."
    )


class InfluxSettings(BaseSettings):
    """InfluxDB connection: v1 ``/write`` API (InfluxDB 1.x) or v2 API (1.8+, 2.x, 3.x)."""

    model_config = _config("FACEBUS_INFLUX_")

    url: str = Field("http://127.0.0.1:8086", title="URL", description="InfluxDB base URL.")
    api: Literal["auto", "v1", "v2"] = Field(
        "auto", title="API", description="auto asks /ping for the server version: 1.x uses v1, later versions v2."
    )
    database: str = Field("facebus", title="Database", description="v1: database name (created when missing).")
    username: str | None = Field(None, title="User", description="v1: user name.")
    password: SecretStr | None = Field(None, title="Password", description="v1: password.")
    token: SecretStr | None = Field(None, title="Token", description="v2: API token.")
    org: str = Field("facebus", title="Organisation", description="v2: organisation.")
    bucket: str = Field("facebus", title="Bucket", description="v2: bucket.")
    timeout_s: float = Field(10.0, gt=0, title="Timeout", description="HTTP timeout in seconds.")


class ArchiverSettings(BaseSettings):
    """Throttling, crops and batching of face entries."""

    model_config = _config("FACEBUS_ARCHIVER_")

    throttle_s: float = Field(
        120.0,
        ge=0,
        title="Throttle window",
        description="One entry per person per window (seconds), across devices; unknown faces per visitor, "
        "else per device.",
    )
    crops_dir: Path = Field(Path("crops"), title="Crops folder", description="Where face crops are saved.")
    measurement: str = Field("face_entry", title="Measurement", description="InfluxDB measurement of entries.")
    batch_size: int = Field(500, ge=1, le=50_000, title="Batch size", description="Entries per InfluxDB write.")
    flush_interval_s: float = Field(
        1.0, gt=0, le=60, title="Flush interval", description="Longest time an entry waits before it is written (s)."
    )
    spool_path: Path = Field(
        Path("spool/archiver.sqlite"), title="Spool",
        description="SQLite file holding accepted entries until InfluxDB has them (survives restarts and kill -9).",
    )
    spool_max_bytes: int = Field(
        1024**3, ge=1024, title="Spool size limit",
        description="Bytes of waiting entries past which face events are no longer acknowledged "
        "(the broker keeps them).",
    )
    spool_max_age_s: float = Field(
        7 * 86400.0, gt=0, title="Spool age limit",
        description="Age (s) of the oldest waiting entry past which face events are no longer acknowledged.",
    )
    max_backoff_s: float = Field(
        30.0, ge=1, le=3600, title="Retry backoff",
        description="Longest wait (s) between InfluxDB write attempts while it fails.",
    )
    max_event_age_s: float = Field(
        7 * 86400.0, gt=0, title="Oldest event",
        description="Face events captured longer ago than this (s) are refused as bad "
        "(a camera clock far off, a replay).",
    )
    max_event_ahead_s: float = Field(
        600.0, ge=0, title="Furthest future event",
        description="Face events captured further ahead of the archiver's clock than this (s) are refused as bad.",
    )
    max_crop_bytes: int = Field(
        256 * 1024, ge=1024, title="Crop size limit",
        description="Face events whose crop JPEG is larger (bytes) are refused as bad.",
    )
    max_stats_devices: int = Field(
        1000, ge=1, title="Devices per stats message",
        description="Stats messages listing more devices than this are refused (bounds the rows one message adds).",
    )


class StatsSettings(BaseSettings):
    """Health metrics of the services (docs/metrics.md)."""

    model_config = _config("FACEBUS_STATS_")

    interval_s: float = Field(
        10.0, ge=1, le=3600, title="Stats interval", description="Seconds between health metric reports."
    )


class GrafanaSettings(BaseSettings):
    """A running Grafana that ``facebus grafana push`` writes the datasource and dashboards to."""

    model_config = _config("FACEBUS_GRAFANA_")

    url: str | None = Field(None, title="Grafana URL", description="Grafana base URL, e.g. http://grafana.local:3000.")
    token: SecretStr | None = Field(
        None, title="Token", description="Token of a Grafana service account with the Admin role."
    )
    crops_url: str | None = Field(
        None, title="Crops URL",
        description="Where browsers find the crops (unset: as in the dashboards, http://localhost:8081/crops).",
    )


class LogSettings(BaseSettings):
    """Logging of every service."""

    model_config = _config("FACEBUS_LOG_") | SettingsConfigDict(populate_by_name=True)

    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        "INFO", title="Log level", description="DEBUG, INFO, WARNING or ERROR."
    )
    json_lines: bool | None = Field(
        None, validation_alias="FACEBUS_LOG_JSON", title="JSON logs",
        description="1: JSON lines, 0: text; unset: JSON unless stdout is a terminal.",
    )

    @field_validator("level", mode="before")
    @classmethod
    def _upper(cls, value: object) -> object:
        return value.upper() if isinstance(value, str) else value

    @field_validator("json_lines", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: object) -> object:
        return None if value == "" else value


S = TypeVar("S", bound=BaseSettings)


# --- What each service reads: one bundle per entry point (``<service>.service.main(config, stop)``) ---------------


@dataclass(frozen=True)
class PublisherConfig:
    """Everything ``facebus publisher`` reads."""

    publisher: PublisherSettings
    mqtt: MqttSettings


@dataclass(frozen=True)
class RecognizerConfig:
    """Everything ``facebus recognizer`` reads."""

    recognizer: RecognizerSettings
    access: AccessSettings
    visitors: VisitorSettings
    webhooks: WebhookSettings
    stats: StatsSettings
    mqtt: MqttSettings


@dataclass(frozen=True)
class ArchiverConfig:
    """Everything ``facebus archiver`` reads."""

    archiver: ArchiverSettings
    stats: StatsSettings
    influx: InfluxSettings
    mqtt: MqttSettings


@dataclass(frozen=True)
class LiveConfig:
    """Everything ``facebus live`` reads."""

    live: LiveSettings
    mqtt: MqttSettings


C = TypeVar("C")


def config_classes(config: type) -> list[type[BaseSettings]]:
    """The settings classes of a bundle such as :class:`RecognizerConfig`, in field order (the order of --help)."""
    hints = get_type_hints(config)
    return [hints[f.name] for f in fields(config)]


def add_config_arguments(parser: argparse.ArgumentParser, config: type) -> None:
    """Add the flags of every settings class of the bundle ``config`` to ``parser``."""
    for cls in config_classes(config):
        add_arguments(parser, cls)


def load_config(config: type[C], args: argparse.Namespace) -> C:
    """Build the bundle ``config`` from the flags in ``args``, then environment, then ``.env``. Raises
    ValidationError for the first invalid settings class."""
    return config(*(load(cls, args) for cls in config_classes(config)))

# Flags of shared concerns carry a prefix (--mqtt-host, --influx-url); a service's own flags have none (--device-id).
_FLAG_PREFIXES = {"MqttSettings": "mqtt_", "InfluxSettings": "influx_", "LogSettings": "log_",
                  "StatsSettings": "stats_", "AccessSettings": "access_", "WebhookSettings": "webhook_",
                  "VisitorSettings": "visitors_"}
ALL_SETTINGS = (MqttSettings, PublisherSettings, RecognizerSettings, AccessSettings, VisitorSettings, WebhookSettings,
                LiveSettings, InfluxSettings, ArchiverSettings, GrafanaSettings, LogSettings, StatsSettings)


def _key(cls: type[BaseSettings], field_name: str) -> str:
    """The name a field goes by outside Python: its alias without the prefix (``FACEBUS_LOG_JSON`` → ``json``), else
    the field name."""
    alias = cls.model_fields[field_name].validation_alias
    prefix = cls.model_config.get("env_prefix", "")
    if isinstance(alias, str) and alias.upper().startswith(prefix.upper()):
        return alias[len(prefix):].lower()
    return field_name


def _dest(cls: type[BaseSettings], field_name: str) -> str:
    return _FLAG_PREFIXES.get(cls.__name__, "") + field_name


def flag_name(cls: type[BaseSettings], field_name: str) -> str:
    """Command-line flag of a field, e.g. ``--mqtt-port``, ``--log-json`` (field ``json_lines``, alias
    ``FACEBUS_LOG_JSON``)."""
    return "--" + (_FLAG_PREFIXES.get(cls.__name__, "") + _key(cls, field_name)).replace("_", "-")


def env_name(cls: type[BaseSettings], field_name: str) -> str:
    """Environment variable of a field, e.g. ``FACEBUS_MQTT_PORT``, ``FACEBUS_LOG_JSON`` (its alias)."""
    return f"{cls.model_config.get('env_prefix', '')}{_key(cls, field_name).upper()}"


def add_arguments(parser: argparse.ArgumentParser, cls: type[BaseSettings]) -> None:
    """Add one flag per field of ``cls`` to ``parser``; a flag not given leaves the field to env, .env, default."""
    group = parser.add_argument_group(cls.__doc__.splitlines()[0] if cls.__doc__ else cls.__name__)
    for name, field in cls.model_fields.items():
        kwargs: dict[str, Any] = {
            "dest": _dest(cls, name),
            "default": argparse.SUPPRESS,
            "help": f"{field.description} [env {env_name(cls, name)}]",
        }
        if field.annotation in (bool, bool | None):
            kwargs["action"] = argparse.BooleanOptionalAction
        elif get_origin(field.annotation) is list:
            kwargs["type"] = _json_list
        elif get_origin(field.annotation) is Literal:
            kwargs["choices"] = get_args(field.annotation)
            if all(isinstance(c, str) and c.isupper() for c in kwargs["choices"]):
                kwargs["type"] = str.upper  # --log-level debug, as FACEBUS_LOG_LEVEL=debug
        group.add_argument(flag_name(cls, name), **kwargs)


def _json_list(text: str) -> list:
    """A list flag's value: JSON (``'["a", "b"]'``), as in its environment variable."""
    value = json.loads(text)
    if not isinstance(value, list):
        raise argparse.ArgumentTypeError(f"{text!r} is not a JSON list")
    return value


def load(cls: type[S], args: argparse.Namespace) -> S:
    """Build ``cls`` from the flags given in ``args``, then environment, then ``.env``. Raises ValidationError."""
    given = {name: getattr(args, _dest(cls, name)) for name in cls.model_fields if hasattr(args, _dest(cls, name))}
    return cls(**given)


def explain(exc: ValidationError) -> list[str]:
    """One line per invalid setting, naming its environment variable and flag, e.g.
    ``FACEBUS_MQTT_PORT / --mqtt-port: Input should be less than or equal to 65535 (got '70000')``."""
    cls = next((c for c in ALL_SETTINGS if c.__name__ == exc.title), None)
    lines = []
    for err in exc.errors():
        key = str(err["loc"][0]) if err["loc"] else "?"
        if cls is not None:  # an aliased field is reported by its alias (FACEBUS_LOG_JSON): back to the field
            key = next((n for n, f in cls.model_fields.items() if key in (n, f.validation_alias)), key)
        where = f"{env_name(cls, key)} / {flag_name(cls, key)}" if cls and key in cls.model_fields else key
        got = f" (got {err['input']!r})" if not isinstance(err.get("input"), dict) else ""
        lines.append(f"invalid setting {where}: {err['msg']}{got}")
    return lines
