"""Access decisions: what a door (or a screen) in front of a camera should do, from the camera's live face tracks.

Pure: :func:`decide` is the policy, :class:`AccessState` remembers each device's last decision and says when it
changes (one decision per change, never one per frame). The recognizer publishes what it returns on
``<prefix>/<device_id>/access`` (docs/mqtt.md).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from facebus.events import AccessDecision, AccessReason, Category, Decision, TrackBox, utc_now
from facebus.settings import AccessSettings


@dataclass(frozen=True)
class Verdict:
    """A decision without its times: granted or denied, why, and about which track and person."""

    decision: Decision
    reason: AccessReason
    person: str | None = None
    category: Category | None = None
    track_id: str | None = None

    def same_as(self, other: Verdict | None) -> bool:
        """Equal in what a door acts on (decision, reason, person): a new track of the same person changes nothing."""
        return (other is not None
                and (self.decision, self.reason, self.person) == (other.decision, other.reason, other.person))


NO_FACE = Verdict(Decision.denied, AccessReason.no_face)


def _verdict(decision: Decision, reason: AccessReason, track: TrackBox) -> Verdict:
    return Verdict(decision, reason, track.person, track.category, track.track_id)


def decide(tracks: Sequence[TrackBox], settings: AccessSettings) -> Verdict | None:
    """The policy, for the live tracks of one frame (largest box first, as in a TracksMessage).

    - nobody in the frame: denied, ``no_face``;
    - a restricted person: denied, ``restricted`` — for everybody when ``restricted_denies_all`` (default), else
      only when no authorised person is there;
    - an authorised person whose track has at least ``min_samples`` encoded views: granted, ``authorised`` —
      unless an unknown face is beside them and ``unknown_denies_all``;
    - an unknown face: denied, ``unknown``.

    None while the faces present are not decided yet (or an authorised one has too few views): the last decision
    holds, so a person walking up does not flicker through "unknown" before being named.
    """
    if not tracks:
        return NO_FACE
    decided = [t for t in tracks if t.category is not None]
    restricted = [t for t in decided if t.category is Category.restricted]
    authorised = [t for t in decided if t.category is Category.authorised and t.samples >= settings.min_samples]
    unknown = [t for t in decided if t.category is Category.unknown]
    if restricted and (settings.restricted_denies_all or not authorised):
        return _verdict(Decision.denied, AccessReason.restricted, restricted[0])
    if authorised and not (unknown and settings.unknown_denies_all):
        return _verdict(Decision.granted, AccessReason.authorised, authorised[0])
    if unknown:
        return _verdict(Decision.denied, AccessReason.unknown, unknown[0])
    return None


class AccessState:
    """Each device's live tracks and last decision; :meth:`update` returns a decision only when it changes.

    Bounded: at most ``max_devices`` devices (the one updated longest ago is forgotten first). Thread-safe (the
    recognizer's feeder threads share it).
    """

    def __init__(self, settings: AccessSettings, max_devices: int = 1000) -> None:
        self.settings = settings
        self.max_devices = max_devices
        self._devices: OrderedDict[str, tuple[list[TrackBox], Verdict | None]] = OrderedDict()
        self._lock = threading.Lock()

    def update(self, device_id: str, tracks: Sequence[TrackBox], captured_at: datetime) -> AccessDecision | None:
        """The device's live tracks in a new frame; the new decision when it differs from the last one, else None."""
        with self._lock:
            _, last = self._devices.pop(device_id, ([], None))
            verdict = decide(tracks, self.settings)
            if verdict is None or verdict.same_as(last):
                self._store(device_id, list(tracks), last)
                return None
            self._store(device_id, list(tracks), verdict)
        return AccessDecision(device_id=device_id, decision=verdict.decision, reason=verdict.reason,
                              person=verdict.person, category=verdict.category, track_id=verdict.track_id,
                              captured_at=captured_at, decided_at=utc_now())

    def end_track(self, device_id: str, track_id: str, at: datetime) -> AccessDecision | None:
        """A track ended without a new frame (the camera went quiet): decide again without it."""
        with self._lock:
            tracks, _ = self._devices.get(device_id, ([], None))
            if not any(t.track_id == track_id for t in tracks):
                return None
        return self.update(device_id, [t for t in tracks if t.track_id != track_id], at)

    def forget(self, device_id: str) -> None:
        with self._lock:
            self._devices.pop(device_id, None)

    def __len__(self) -> int:
        return len(self._devices)

    def _store(self, device_id: str, tracks: list[TrackBox], verdict: Verdict | None) -> None:
        self._devices[device_id] = (tracks, verdict)
        while len(self._devices) > self.max_devices:
            self._devices.popitem(last=False)
