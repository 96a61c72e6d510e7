"""Several recognizers sharing the cameras: every device belongs to exactly one online recognizer.

Choice: rendezvous (highest-random-weight) hashing of the device id over the recognizers that are online, with
membership read from their retained availability topics (``<prefix>/services/<instance>/availability``, ``online``
or the last will ``offline``). Every recognizer subscribes to every frame and keeps only its own devices' frames.

Why not MQTT v5 shared subscriptions: the broker hands each *message* to any member, so one camera's frames would
be spread over several recognizers and no face track could see two frames of it in a row. Hashing keeps a device's
tracks in one place; when a recognizer joins or leaves (its will fires as soon as its connection drops), only the
devices it gains or loses move (about 1/n of them), and the tracks of a moved device end by timeout at its old owner.

A recognizer takes part only once it has seen its own ``online`` come back through its subscription: the broker
sends the retained states of the others first, so from then on it knows who else is there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from facebus.topics import RECOGNIZER_INSTANCE_RE as INSTANCE_RE  # as RecognizerSettings.instance


def weight(member: str, device_id: str) -> int:
    """The rendezvous weight of ``device_id`` at ``member`` (64 bits of SHA-256; the same on every host)."""
    return int.from_bytes(hashlib.sha256(f"{member}\0{device_id}".encode()).digest()[:8], "big")


def owner_of(device_id: str, members: Iterable[str]) -> str:
    """The member that owns ``device_id``: the one with the highest weight. Raises ValueError when none is online."""
    return max(members, key=lambda member: (weight(member, device_id), member))


class Membership:
    """The online recognizers as this one sees them (``me`` among them once its own ``online`` came back).
    Not thread-safe: the MQTT thread calls it."""

    def __init__(self, me: str) -> None:
        self.me = me
        self.online: set[str] = set()

    @property
    def ready(self) -> bool:
        """True once this recognizer has seen its own ``online``: it then knows every other member."""
        return self.me in self.online

    def update(self, instance: str, payload: bytes) -> bool:
        """Apply one availability message of service ``instance``; True when the membership changed. Services that
        are not recognizers and payloads other than ``online``/``offline`` change nothing."""
        if not INSTANCE_RE.fullmatch(instance):
            return False
        state = payload.decode(errors="replace").strip()
        before = set(self.online)
        if state == "online":
            self.online.add(instance)
        elif state in ("offline", ""):  # "": a retained state cleared
            self.online.discard(instance)
        return self.online != before

    def owns(self, device_id: str) -> bool:
        """True when this recognizer is ready and the owner of ``device_id``."""
        return self.ready and owner_of(device_id, self.online) == self.me
