"""Thread-safe counters every service keeps (frames in, dropped, errors, ...), logged periodically."""

from __future__ import annotations

import threading
from collections import Counter


class Counters:
    """Named monotonically increasing counts, safe to bump from MQTT callbacks and worker threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, name: str, amount: int = 1) -> None:
        with self._lock:
            self._counts[name] += amount

    def get(self, name: str) -> int:
        with self._lock:
            return self._counts[name]

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
