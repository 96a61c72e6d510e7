"""Back-pressure for frames: per device, only the newest unprocessed frame is kept (latest frame wins).

The MQTT network thread only ever ``put``s (never blocks); the worker ``take``s. When a device sends faster than
frames are processed, older frames are replaced and counted as dropped, so latency cannot grow without bound
and memory stays at one frame per device, and at most ``max_bytes`` in all (many devices with large frames).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlots(Generic[T]):
    """One slot per key holding the newest item; ``take`` serves keys in arrival order (fair across devices).

    :param max_bytes: most bytes (by ``size``) held in all slots together; None: unbounded
    :param size: the size of an item in bytes (default ``len``; not called when there is no ``max_bytes``)
    """

    def __init__(self, max_bytes: int | None = None, size: Callable[[T], int] = len) -> None:
        self._items: OrderedDict[str, T] = OrderedDict()
        self._cond = threading.Condition()
        self.max_bytes, self._size = max_bytes, (size if max_bytes is not None else lambda item: 0)
        self.bytes = 0
        self.dropped = 0

    def put(self, key: str, item: T) -> bool:
        """Store ``item`` as the newest for ``key``; True when an unprocessed item was lost: the one it replaced, or
        ``item`` itself when it would take the slots past ``max_bytes``."""
        with self._cond:
            old = self._items.get(key)
            grown = self.bytes + self._size(item) - (self._size(old) if old is not None else 0)
            if self.max_bytes is not None and grown > self.max_bytes and self._items:
                self.dropped += 1
                return True
            self.bytes = grown
            if old is not None:
                self.dropped += 1
            else:
                self._cond.notify()
            self._items[key] = item  # a replaced key keeps its place in the queue: no device can starve the others
            return old is not None

    def take(self, timeout_s: float | None = None) -> tuple[str, T] | None:
        """The oldest-waiting key and its newest item, removed; None when nothing arrives within ``timeout_s``."""
        with self._cond:
            if not self._items and not self._cond.wait_for(lambda: bool(self._items), timeout_s):
                return None
            key, item = self._items.popitem(last=False)
            self.bytes -= self._size(item)
            return key, item

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)
