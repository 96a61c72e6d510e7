"""Back-pressure for frames: per device, only the newest unprocessed frame is kept (latest frame wins).

The MQTT network thread only ever ``put``s (never blocks); the worker ``take``s. When a device sends faster than
frames are processed, older frames are replaced and counted as dropped, so latency cannot grow without bound
and memory stays at one frame per device.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlots(Generic[T]):
    """One slot per key holding the newest item; ``take`` serves keys in arrival order (fair across devices)."""

    def __init__(self) -> None:
        self._items: OrderedDict[str, T] = OrderedDict()
        self._cond = threading.Condition()
        self.dropped = 0

    def put(self, key: str, item: T) -> bool:
        """Store ``item`` as the newest for ``key``; True when it replaced an unprocessed one (a dropped frame)."""
        with self._cond:
            replaced = key in self._items
            if replaced:
                self.dropped += 1
            else:
                self._cond.notify()
            self._items[key] = item  # a replaced key keeps its place in the queue: no device can starve the others
            return replaced

    def take(self, timeout_s: float | None = None) -> tuple[str, T] | None:
        """The oldest-waiting key and its newest item, removed; None when nothing arrives within ``timeout_s``."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                return None
            return self._items.popitem(last=False)

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
