"""The archiver's decisions, pure and without I/O: throttling, crop paths, InfluxDB points.

crop_files_of() is the one exception: it lists the crops folder (and changes nothing).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath
from string import Formatter

from influxdb_client import Point, WritePrecision

from facebus.events import Category, FaceEvent, format_time
from facebus.stats import StatsMessage
from facebus.topics import ID, ID_CHARS, ID_UNSAFE_CHAR, UNKNOWN_PERSON

UNKNOWN_TAG = UNKNOWN_PERSON  # person tag of faces nobody matched (the gallery reserves this id)


ThrottleKey = tuple[str, str]


def throttle_key(event: FaceEvent) -> ThrottleKey:
    """What one throttle window covers: ``("person", id)`` for a known person, across all devices;
    ``("visitor", visitor_id)`` for an unknown face recognised as a recurring visitor, across all devices (two
    strangers at one door each get their entry, one stranger walking past two doors gets one);
    ``("unknown", device)`` for any other unknown face, per device (so a crowd of unrecognised strangers at one door
    cannot flood the log, and every door still logs its first stranger)."""
    if event.person is not None:
        return ("person", event.person)
    if event.visitor is not None:
        return ("visitor", event.visitor.visitor_id)
    return (UNKNOWN_TAG, event.device_id)


class Throttle:
    """One entry per key (:func:`throttle_key`) per window, on the events' capture times (not wall-clock time).

    ``admit(event)`` is True for the first event of a key and then for the first one at least ``window_s`` after
    the last admitted one. Events older than the last admitted one of their key are refused (late duplicates).

    Bounded: at most ``max_keys`` keys are kept (visitor ids and device ids come from the events, so a forged flood
    could invent any number); past it the key recorded longest ago is forgotten (its next event may make an entry
    a little early). The archiver also calls :meth:`forget_before` to drop keys whose window has passed.
    Not thread-safe: the archiver calls it from one thread.
    """

    def __init__(self, window_s: float, max_keys: int = 100_000) -> None:
        if max_keys < 1:
            raise ValueError("max_keys must be at least 1")
        self.window_s = window_s
        self.max_keys = max_keys
        self._last: dict[ThrottleKey, datetime] = {}  # in the order recorded: the first is the oldest record

    def admit(self, event: FaceEvent) -> bool:
        """:meth:`admits` and, when True, :meth:`record`."""
        if not self.admits(event):
            return False
        self.record(event)
        return True

    def admits(self, event: FaceEvent) -> bool:
        """Whether ``event`` would make an entry now; changes nothing."""
        last = self._last.get(throttle_key(event))
        return last is None or (event.captured_at - last).total_seconds() >= self.window_s

    def record(self, event: FaceEvent) -> None:
        """Note ``event`` as its key's last entry (call once the entry is safely stored)."""
        key = throttle_key(event)
        self._last.pop(key, None)  # re-inserted last: the dict stays in the order of recording
        self._last[key] = event.captured_at
        while len(self._last) > self.max_keys:
            del self._last[next(iter(self._last))]

    def __len__(self) -> int:
        return len(self._last)

    def forget_before(self, cutoff: datetime) -> None:
        """Drop keys whose last entry is older than ``cutoff`` (bounds memory with many unknown devices)."""
        self._last = {k: t for k, t in self._last.items() if t >= cutoff}


def check_times(event: FaceEvent, now: datetime, max_age_s: float, max_ahead_s: float) -> None:
    """Raise ValueError when ``event``'s capture time lies more than ``max_age_s`` before ``now`` or more than
    ``max_ahead_s`` after it (a camera clock years off, a forged event): such a time would make an entry InfluxDB
    refuses or one that silences its person in the throttle for years."""
    offset_s = (event.captured_at - now).total_seconds()
    if offset_s > max_ahead_s:
        raise ValueError(f"captured_at {format_time(event.captured_at)} is {offset_s:.0f} s ahead of now "
                         f"(at most {max_ahead_s:.0f} s accepted)")
    if -offset_s > max_age_s:
        raise ValueError(f"captured_at {format_time(event.captured_at)} is {-offset_s:.0f} s old "
                         f"(at most {max_age_s:.0f} s accepted)")


_UNSAFE = re.compile(ID_UNSAFE_CHAR + "+")


def sanitise(part: str, fallback: str = "_") -> str:
    """``part`` reduced to ``[A-Za-z0-9_-]`` (runs of anything else become one ``_``), at most 64 characters."""
    cleaned = _UNSAFE.sub("_", part).strip("_")[:64]
    return cleaned or fallback


# The crop layout, in one place: crop_path() fills it in, crop_files_of() matches it. Each field's pattern is what
# crop_path() can put there (sanitise() output for device, person and id8).
CROP_LAYOUT = "{date}/{device}/{person}_{hhmmss}.{ms}Z_{id8}.jpg"
_CROP_FIELD_PATTERNS = {
    "date": r"\d{4}-\d{2}-\d{2}",
    "device": ID,
    "person": ID,
    "hhmmss": r"\d{6}",
    "ms": r"\d{3}",
    "id8": ID_CHARS + "{1,8}",
}


def crop_layout_pattern(**fixed: str) -> re.Pattern[str]:
    """:data:`CROP_LAYOUT` as a regex over a relative POSIX path; ``fixed`` pins fields to literal values
    (e.g. ``person="Alice"``), the others match anything crop_path() can produce there."""
    parts = []
    for literal, field, _, _ in Formatter().parse(CROP_LAYOUT):
        parts.append(re.escape(literal))
        if field is not None:
            parts.append(re.escape(fixed[field]) if field in fixed else f"(?:{_CROP_FIELD_PATTERNS[field]})")
    return re.compile("".join(parts))


def crop_path(event: FaceEvent) -> PurePosixPath:
    """Relative path of an entry's crop: ``YYYY-MM-DD/<device>/<person>_<HHMMSS>.<mmm>Z_<id8>.jpg`` (UTC date and time
    of capture; person ``unknown`` when nobody matched; the event id's first 8 characters keep names unique)."""
    captured = event.captured_at.astimezone(timezone.utc)
    return PurePosixPath(
        CROP_LAYOUT.format(
            date=captured.strftime("%Y-%m-%d"),
            device=sanitise(event.device_id),
            person=sanitise(event.person or UNKNOWN_TAG),
            hhmmss=captured.strftime("%H%M%S"),
            ms=f"{captured.microsecond // 1000:03d}",
            id8=sanitise(event.event_id)[:8],
        )
    )


def crop_files_of(crops_dir: Path, person: str) -> list[Path]:
    """Every crop file of ``person`` under ``crops_dir``, as crop_path() names them, sorted (date, device, time).

    :param crops_dir: the archiver's crops folder (``ArchiverSettings.crops_dir``); missing: no crops
    :param person: a person id as the recognizer publishes it, e.g. ``"Barack_Obama"`` (``"unknown"``: unmatched faces)
    :return: a list of paths ``crops_dir / "YYYY-MM-DD/<device>/<person>_<HHMMSS>.<mmm>Z_<id8>.jpg"``, files only

    The whole relative path must fit the layout, so ``Barack_Obama`` does not match ``Barack_Obama_Jr``'s crops and
    other files (temporary ``.tmp-*`` files, anything else) are left out. File names carry ``sanitise(person)``,
    which leaves gallery person ids (``[A-Za-z0-9_-]{1,64}``) unchanged, so one person's crops are never another's.
    Other strings are matched by their sanitised form (``J.Doe`` finds ``J_Doe``'s crops).
    """
    pattern = crop_layout_pattern(person=sanitise(person))
    crops_dir = Path(crops_dir)
    found = [
        path
        for path in crops_dir.glob("*/*/*")
        if pattern.fullmatch(path.relative_to(crops_dir).as_posix()) and path.is_file()
    ]
    return sorted(found)


@dataclass(frozen=True)
class Entry:
    """One archived face entry: what goes to InfluxDB (measurement ``face_entry`` by default).

    Tags: person (``unknown`` when nobody matched), category, device. Fields: distance (float, -1 when nothing was
    matched: empty gallery, or a face the quality gate kept from encoding), event_id, track_id, crop_path (strings;
    crop_path relative to the crops folder); for an unknown face recognised as a recurring visitor also visitor_id
    (string), visits (integer) and visitor_first_seen (string, RFC 3339 UTC): fields, not tags, so the series
    count stays bounded however many strangers come. Time: capture time, ms precision.
    """

    time: datetime
    person: str
    category: Category
    device: str
    distance: float
    event_id: str
    crop_path: str
    track_id: str = ""
    visitor_id: str | None = None
    visits: int | None = None
    visitor_first_seen: str | None = None


def entry_for(event: FaceEvent) -> Entry:
    visitor = event.visitor
    return Entry(
        time=event.captured_at,
        person=event.person or UNKNOWN_TAG,
        category=event.category,
        device=event.device_id,
        distance=-1.0 if event.distance is None else event.distance,
        event_id=event.event_id,
        crop_path=str(crop_path(event)),
        track_id=event.track_id,
        visitor_id=visitor.visitor_id if visitor else None,
        visits=visitor.visits if visitor else None,
        visitor_first_seen=format_time(visitor.first_seen) if visitor else None,
    )


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_MS = timedelta(milliseconds=1)


class EntryTimes:
    """Keeps entries of one series from sharing a millisecond.

    InfluxDB stores one point per measurement, tag set and time: a second point with the same ones replaces the
    first (field by field), so it would silently lose an entry and mix the two entries' fields. Entries of a series
    (tags person, category, device) share a millisecond when two of them come from one frame: two visitors, or a
    visitor and an unrecognised stranger, at one camera, each with its own throttle key. :meth:`free` moves such an
    entry's time on by whole milliseconds to the first one not taken (its crop path keeps the capture time).

    Remembers the ``max_kept`` entries recorded last (entries of one frame arrive together); not thread-safe.
    """

    def __init__(self, max_kept: int = 10_000) -> None:
        self.max_kept = max_kept
        self._taken: dict[tuple[str, str, str, int], None] = {}  # in the order recorded

    @staticmethod
    def _key(entry: Entry, shift_ms: int = 0) -> tuple[str, str, str, int]:
        return entry.person, entry.category.value, entry.device, (entry.time - _EPOCH) // _MS + shift_ms

    def free(self, entry: Entry) -> Entry:
        """``entry``, or a copy moved on to the first millisecond no recorded entry of its series has."""
        shift = 0
        while self._key(entry, shift) in self._taken:
            shift += 1
        return entry if shift == 0 else replace(entry, time=entry.time + shift * _MS)

    def record(self, entry: Entry) -> None:
        """Note ``entry``'s series and millisecond as taken (call once it is safely stored)."""
        key = self._key(entry)
        self._taken.pop(key, None)
        self._taken[key] = None
        while len(self._taken) > self.max_kept:
            del self._taken[next(iter(self._taken))]

    def __len__(self) -> int:
        return len(self._taken)


def point_for(entry: Entry, measurement: str = "face_entry") -> Point:
    """The InfluxDB point of an entry, millisecond precision (``point.to_line_protocol()`` gives the line)."""
    point = (
        Point(measurement)
        .tag("person", entry.person)
        .tag("category", entry.category.value)
        .tag("device", entry.device)
        .field("distance", float(entry.distance))
        .field("event_id", entry.event_id)
        .field("crop_path", entry.crop_path)
        .field("track_id", entry.track_id)
    )
    if entry.visitor_id is not None:
        point.field("visitor_id", entry.visitor_id)
        point.field("visits", int(entry.visits or 0))
        point.field("visitor_first_seen", entry.visitor_first_seen or "")
    # whole milliseconds as an int: influxdb_client converts a datetime through a float, which for about one time in
    # eight on a whole millisecond gives the millisecond before (and entries EntryTimes set apart would meet again)
    return point.time((entry.time - _EPOCH) // _MS, WritePrecision.MS)


def stats_points(message: StatsMessage, time: datetime, max_devices: int = 1000,
                 topic_service: str | None = None) -> list[Point]:
    """InfluxDB points of one stats message (facebus.stats.StatsMessage, docs/metrics.md): one ``service_stats``
    point (tag service) and one ``device_stats`` point per device (tag device, plus ``fps`` = frames_in /
    interval_s), each with the field ``interval_s``. Raises ValueError for a message with more than ``max_devices``
    devices (a bound on the rows one message can add), or naming another service than its topic's ``topic_service``
    (the broker's ACL lets a service publish only on its own stats topic).
    """
    if topic_service is not None and message.service != topic_service:
        raise ValueError(f"stats message names service {message.service!r} on the stats topic of {topic_service!r}")
    if len(message.devices) > max_devices:
        raise ValueError(f"stats message has {len(message.devices)} devices, over the bound of {max_devices}")
    points = [_fields(Point("service_stats").tag("service", message.service), message.service_stats,
                      message.interval_s)]
    for device, counts in message.devices.items():
        point = _fields(Point("device_stats").tag("device", device), counts, message.interval_s)
        points.append(point.field("fps", float(counts.get("frames_in", 0)) / message.interval_s))
    return [p.time(time, WritePrecision.MS) for p in points]


def _fields(point: Point, values: dict[str, int | float], interval_s: float) -> Point:
    for name, value in values.items():
        point.field(name, value)
    return point.field("interval_s", float(interval_s))


def availability_point(device: str, payload: bytes, time: datetime) -> Point:
    """``device_availability`` point: field online 1 for ``online``, 0 for ``offline``; ValueError otherwise."""
    state = payload.decode(errors="replace").strip()
    if state not in ("online", "offline"):
        raise ValueError(f"availability {state[:20]!r} is neither online nor offline")
    return (Point("device_availability").tag("device", device).field("online", int(state == "online"))
            .time(time, WritePrecision.MS))
