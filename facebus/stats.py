"""Thread-safe counters every service keeps (frames in, dropped, errors, ...), reported per interval, and the stats
message that reports them (:class:`StatsMessage`, the one definition its publishers and the archiver share).

Counter names are ``<name>`` for the whole service and ``<name>/<device>`` per device (see docs/metrics.md).
"""

from __future__ import annotations

import threading
from collections import Counter, deque
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, StrictFloat, StrictInt, StringConstraints

from facebus.topics import ID_PATTERN

STATS_SCHEMA_VERSION = 1
Figure = StrictInt | StrictFloat  # a count or a measurement; never a bool or a string
Name = Annotated[str, StringConstraints(pattern=ID_PATTERN)]


class StatsMessage(BaseModel):
    """One service's health figures of one interval, as published on ``<prefix>/services/<service>/stats`` (QoS 0,
    not retained; docs/metrics.md) and written by the archiver as ``service_stats`` and ``device_stats`` points::

        {"schema_version": 1, "service": "recognizer", "interval_s": 10.0,
         "service_stats": {"queue_depth": 0, "latency_p50_ms": 19.5, ...}, "devices": {"door": {"frames_in": 50, ...}}}

    ``service`` and device names are 1-64 of ``[A-Za-z0-9_-]``; figures are numbers. Parsing raises pydantic's
    ValidationError (a ValueError) for any other shape or version."""

    model_config = ConfigDict(frozen=True)

    schema_version: Literal[1] = STATS_SCHEMA_VERSION
    service: Name
    interval_s: float = Field(gt=0, description="Seconds the figures cover.")
    service_stats: dict[str, Figure] = Field(default_factory=dict, description="Figures of the whole service.")
    devices: dict[Name, dict[str, Figure]] = Field(default_factory=dict, description="Counts per device.")


class Counters:
    """Named monotonically increasing counts, safe to bump from MQTT callbacks and worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()
        self._reported: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def forget_device(self, device_id: str) -> None:
        """Drop every ``<name>/<device_id>`` counter: a forgotten device leaves the stats."""
        suffix = "/" + device_id
        with self._lock:
            for name in [n for n in self._counts if n.endswith(suffix)]:
                del self._counts[name]
                self._reported.pop(name, None)

    def deltas(self) -> dict[str, int]:
        """Counts added since the previous call (every counter that exists, zeros included)."""
        with self._lock:
            delta = {name: count - self._reported[name] for name, count in self._counts.items()}
            self._reported = Counter(self._counts)
            return delta


class Samples:
    """A bounded window of measurements (e.g. latencies in ms), drained once per interval."""

    def __init__(self, max_samples: int = 10_000) -> None:
        self._lock = threading.Lock()
        self._values: deque[float] = deque(maxlen=max_samples)

    def add(self, value: float) -> None:
        with self._lock:
            self._values.append(value)

    def drain_percentiles(self, *percentiles: float) -> dict[float, float] | None:
        """The given percentiles (0-100) of the values since the last drain, or None when there were none."""
        with self._lock:
            values, self._values = list(self._values), deque(maxlen=self._values.maxlen)
        if not values:
            return None
        return dict(zip(percentiles, (float(v) for v in np.percentile(values, percentiles)), strict=True))


def split_by_device(deltas: dict[str, int]) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """``{"frames_in": 3, "frames_in/door": 2, "frames_in/gate": 1}`` → (service-wide counts, counts per device)."""
    service: dict[str, int] = {}
    devices: dict[str, dict[str, int]] = {}
    for key, value in deltas.items():
        name, _, device = key.partition("/")
        if device:
            devices.setdefault(device, {})[name] = value
        else:
            service[key] = value
    return service, devices
