"""Visitors: unknown faces that keep a stable id across visits, cameras and restarts (docs/visitors.md).

- :class:`VisitorBook` is the pure part: the visitors in memory, matching an unknown track's face encodings against
  them (stricter than the gallery's tolerance), new ids, merges (two visitors found to be one: the older id wins,
  the other becomes its alias), visit counting, bounds and retention.
- :class:`VisitorStore` keeps them in the gallery's source (folder or S3) under ``Visitors/<visitor_id>/``:
  ``visitor.json`` (the record, encodings included) and up to ``max_crops`` face crops.
- :class:`Visitors` joins the two for the recognizer: sightings change the book at once; a writer thread saves the
  changed visitors and retries with backoff while the store is unreachable (nothing is lost while S3 is down: the
  book holds it and writes it later).
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from facebus.events import Visitor, format_time, parse_time, utc_now
from facebus.settings import VisitorSettings
from recognizer.gallery import VISITORS_FOLDER, GallerySource, open_source

log = logging.getLogger(__name__)

RECORD_FILE = "visitor.json"
MAX_CAMERAS = 32
MAX_ALIASES = 32
MAX_CROPS_HARD = 20  # VisitorSettings.max_crops's upper bound
# Chosen in docs/visitors-threshold.md (bench/visitors.py): the nearest pair of different people (photos and the
# clip's tracks) minus a safety margin; stricter than the gallery's 1.04 and 0.58.
DEFAULT_TOLERANCE = {"yunet-sface": 1.00, "dlib": 0.41}


def new_visitor_id(taken: set[str]) -> str:
    """``v-`` and 6 random hex digits (more when taken), never one of ``taken``."""
    digits = 6
    while (candidate := f"v-{secrets.token_hex(8)[:digits]}") in taken:
        digits += 2
    return candidate


@dataclass
class VisitorRecord:
    """One visitor: id, model of the encodings, first and last capture time seen, visits, cameras (device ids),
    face encodings (the best views, model's length each), crop keys in the store, and the ids merged into it."""

    visitor_id: str
    model: str
    first_seen: datetime
    last_seen: datetime
    visits: int = 1
    cameras: list[str] = field(default_factory=list)
    encodings: list[np.ndarray] = field(default_factory=list)
    crops: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)

    def ref(self) -> Visitor:
        """What a face event carries about the visitor."""
        return Visitor(visitor_id=self.visitor_id, visits=self.visits, first_seen=self.first_seen)

    def to_json(self) -> bytes:
        return json.dumps({
            "visitor_id": self.visitor_id, "model": self.model, "first_seen": format_time(self.first_seen),
            "last_seen": format_time(self.last_seen), "visits": self.visits, "cameras": self.cameras,
            "crops": self.crops, "aliases": self.aliases,
            "encodings": [[round(float(v), 6) for v in e] for e in self.encodings],
        }, indent=1).encode()

    @classmethod
    def from_json(cls, data: bytes) -> VisitorRecord:
        """Raises ValueError (or KeyError) for a record that is not one."""
        raw = json.loads(data)
        return cls(raw["visitor_id"], raw["model"], parse_time(raw["first_seen"]), parse_time(raw["last_seen"]),
                   int(raw["visits"]), list(raw["cameras"]), [np.asarray(e, np.float32) for e in raw["encodings"]],
                   list(raw["crops"]), list(raw["aliases"]))


@dataclass(frozen=True)
class Sighting:
    """What one unknown track did to the book: the visitor it is, whether that visitor is new, and the ids merged
    into it (now aliases, to delete from the store)."""

    record: VisitorRecord
    new: bool
    merged: list[str]


class VisitorBook:
    """The visitors in memory. Not thread-safe: :class:`Visitors` holds the lock."""

    def __init__(self, settings: VisitorSettings, model: str, tolerance: float | None = None) -> None:
        self.settings = settings
        self.model = model
        self.tolerance = tolerance if tolerance is not None else (settings.tolerance or DEFAULT_TOLERANCE[model])
        self.visitors: dict[str, VisitorRecord] = {}

    def __len__(self) -> int:
        return len(self.visitors)

    def distances(self, encodings: Sequence[np.ndarray]) -> list[tuple[float, str]]:
        """(smallest face distance between any of ``encodings`` and the visitor's, visitor id), nearest first."""
        if not encodings or not self.visitors:
            return []
        probe = np.asarray(encodings, np.float32)
        out = []
        for visitor in self.visitors.values():
            gallery = np.asarray(visitor.encodings, np.float32)
            if len(gallery):
                out.append((float(np.min(np.linalg.norm(probe[:, None, :] - gallery[None, :, :], axis=2))),
                            visitor.visitor_id))
        return sorted(out)

    def see(self, encodings: Sequence[np.ndarray], device_id: str, captured_at: datetime) -> Sighting:
        """An unknown track with ``encodings`` (at least one) seen on ``device_id`` at ``captured_at``: the visitor it
        matches within the tolerance (every visitor within it merges into the oldest), or a new one."""
        matches = [vid for distance, vid in self.distances(encodings) if distance <= self.tolerance]
        if not matches:
            record = VisitorRecord(new_visitor_id(self._all_ids()), self.model, captured_at, captured_at)
            self.visitors[record.visitor_id] = record
            new, merged = True, []
        else:
            ordered = sorted((self.visitors[v] for v in matches), key=lambda r: (r.first_seen, r.visitor_id))
            record, others = ordered[0], ordered[1:]
            for other in others:
                self._merge(record, other)
            new, merged = False, [o.visitor_id for o in others]
            if captured_at - record.last_seen > timedelta(seconds=self.settings.visit_gap_s):
                record.visits += 1
        record.last_seen = max(record.last_seen, captured_at)
        if device_id not in record.cameras:
            record.cameras = [*record.cameras, device_id][-MAX_CAMERAS:]
        record.encodings = self._keep(record.encodings, list(encodings))
        self._bound()
        return Sighting(record, new, merged)

    def expire(self, now: datetime) -> list[str]:
        """Delete the visitors not seen for ``retention_days``; their ids."""
        cutoff = now - timedelta(days=self.settings.retention_days)
        gone = [vid for vid, r in self.visitors.items() if r.last_seen < cutoff]
        for vid in gone:
            del self.visitors[vid]
        return gone

    def add(self, record: VisitorRecord) -> None:
        """A visitor read from the store (kept unless one with its id is already in memory)."""
        if record.model == self.model:
            self.visitors.setdefault(record.visitor_id, record)

    def _merge(self, into: VisitorRecord, other: VisitorRecord) -> None:
        into.first_seen = min(into.first_seen, other.first_seen)
        into.last_seen = max(into.last_seen, other.last_seen)
        into.visits += other.visits
        into.cameras = list(dict.fromkeys([*into.cameras, *other.cameras]))[-MAX_CAMERAS:]
        into.encodings = self._keep(into.encodings, other.encodings)
        # other's crops go with its folder: into keeps its own (and gets new ones while it has fewer than max_crops)
        into.aliases = list(dict.fromkeys([*into.aliases, other.visitor_id, *other.aliases]))[-MAX_ALIASES:]
        del self.visitors[other.visitor_id]

    def _keep(self, kept: list[np.ndarray], more: list[np.ndarray]) -> list[np.ndarray]:
        """The first encoding stays (the visitor's first view); the newest fill the rest up to max_encodings."""
        both = [*kept, *more]
        limit = self.settings.max_encodings
        return both if len(both) <= limit else [both[0], *both[len(both) - limit + 1:]]

    def _bound(self) -> None:
        while len(self.visitors) > self.settings.max_visitors:
            oldest = min(self.visitors.values(), key=lambda r: r.last_seen)
            del self.visitors[oldest.visitor_id]

    def _all_ids(self) -> set[str]:
        return set(self.visitors) | {a for r in self.visitors.values() for a in r.aliases}


class VisitorStore:
    """Visitors in a gallery source under ``prefix`` (``Visitors/`` of the gallery by default)."""

    def __init__(self, source: GallerySource, prefix: str = VISITORS_FOLDER + "/") -> None:
        self.source, self.prefix = source, prefix

    @classmethod
    def open(cls, settings: VisitorSettings, gallery: str) -> VisitorStore:
        """The store named by ``settings.store``, else ``Visitors/`` in the gallery ``gallery`` (folder or s3://)."""
        if settings.store:
            return cls(open_source(settings.store), "")
        return cls(open_source(gallery))

    def key(self, visitor_id: str, name: str) -> str:
        return f"{self.prefix}{visitor_id}/{name}"

    def load(self) -> list[VisitorRecord]:
        """Every readable visitor record; an unreadable one is logged with its key and skipped. A folder that does
        not exist yet is an empty store. Raises when the source cannot be listed (S3 down)."""
        try:
            keys = self.source.list_images()
        except FileNotFoundError:
            return []
        records = []
        for key in sorted(keys):
            if key.startswith(self.prefix) and key.endswith("/" + RECORD_FILE):
                try:
                    records.append(VisitorRecord.from_json(self.source.read(key)))
                except (ValueError, KeyError, TypeError, OSError) as exc:
                    log.warning("visitor record %s unreadable: %s", key, exc, extra={"key": key})
        return records

    def save(self, record: VisitorRecord, crop_jpeg: bytes | None = None) -> None:
        """Write the record (and a new crop first, listed in it); raises when the source refuses."""
        if crop_jpeg is not None and len(record.crops) < MAX_CROPS_HARD:
            key = self.key(record.visitor_id, f"{format_time(record.last_seen).replace(':', '')}.jpg")
            self.source.write(key, crop_jpeg)
            if key not in record.crops:
                record.crops.append(key)
        self.source.write(self.key(record.visitor_id, RECORD_FILE), record.to_json())

    def delete(self, visitor_id: str) -> list[str]:
        """Remove every file of the visitor; their keys."""
        try:
            keys = [k for k in self.source.list_images() if k.startswith(self.key(visitor_id, ""))]
        except FileNotFoundError:
            return []
        for key in keys:
            self.source.delete(key)
        return keys


class Visitors:
    """The recognizer's visitors: :meth:`see` answers at once from memory; a writer thread loads the store, then
    saves and deletes what changed, retrying with backoff (1 s doubling to 60 s) while the store is unreachable."""

    def __init__(self, settings: VisitorSettings, model: str, store: VisitorStore) -> None:
        self.settings = settings
        self.book = VisitorBook(settings, model)
        self.store = store
        self._lock = threading.Lock()
        self._dirty: dict[str, bytes | None] = {}  # visitor id -> a new crop to save with it (None: none)
        self._deleted: set[str] = set()
        self._wake = threading.Event()
        self.loaded = threading.Event()
        self.errors = 0

    def see(self, encodings: Sequence[np.ndarray], device_id: str, captured_at: datetime,
            crop_jpeg: bytes | None) -> Visitor:
        """The visitor of an unknown track (its face encodings, one or more), as its events carry it."""
        with self._lock:
            sighting = self.book.see(encodings, device_id, captured_at)
            record = sighting.record
            wants_crop = crop_jpeg is not None and len(record.crops) < self.settings.max_crops
            self._dirty[record.visitor_id] = crop_jpeg if wants_crop else self._dirty.get(record.visitor_id)
            for merged in sighting.merged:
                self._dirty.pop(merged, None)
                self._deleted.add(merged)
            ref = record.ref()
        if sighting.new or sighting.merged:
            log.info("visitor %s %s on %s%s", ref.visitor_id, "new" if sighting.new else "seen", device_id,
                     f", merged {', '.join(sighting.merged)}" if sighting.merged else "")
        self._wake.set()
        return ref

    def expire(self, now: datetime | None = None) -> list[str]:
        """Apply the retention: forget and delete visitors not seen for ``retention_days``."""
        with self._lock:
            gone = self.book.expire(now or utc_now())
            for vid in gone:
                self._dirty.pop(vid, None)
                self._deleted.add(vid)
        if gone:
            log.info("retention: %d visitors not seen for %g days deleted", len(gone), self.settings.retention_days)
            self._wake.set()
        return gone

    def pending(self) -> int:
        with self._lock:
            return len(self._dirty) + len(self._deleted)

    def flush_once(self) -> bool:
        """Load the store (first time), then write every pending change. False when the store failed (kept)."""
        try:
            if not self.loaded.is_set():
                records = self.store.load()
                with self._lock:
                    for record in records:
                        self.book.add(record)
                self.loaded.set()
                log.info("visitor store: %d visitors loaded", len(records))
            while True:
                with self._lock:
                    if self._deleted:
                        vid, work = self._deleted.pop(), "delete"
                    elif self._dirty:
                        vid, crop = self._dirty.popitem()
                        record, work = self.book.visitors.get(vid), "save"
                    else:
                        return True
                try:
                    if work == "delete":
                        self.store.delete(vid)
                    elif record is not None:
                        self.store.save(record, crop)
                except Exception:
                    with self._lock:  # put it back for the next try
                        if work == "delete":
                            self._deleted.add(vid)
                        elif vid in self.book.visitors:
                            self._dirty.setdefault(vid, crop)
                    raise
        except Exception as exc:  # noqa: BLE001 - S3 down, folder unwritable: keep it in memory and retry
            self.errors += 1
            log.warning("visitor store %s unreachable (%s); %d changes kept, retrying", self.store.source, exc,
                        self.pending())
            return False

    def run(self, stop: threading.Event, max_backoff_s: float = 60.0) -> None:
        """The writer thread's body, until ``stop``; writes what is pending once more at the end."""
        delay_s = 1.0
        while not stop.is_set():
            if self.flush_once():
                delay_s = 1.0
                self._wake.wait(5.0)
            else:
                stop.wait(delay_s)
                delay_s = min(max_backoff_s, delay_s * 2)
            self._wake.clear()
        self.flush_once()


def promote_photos(store: VisitorStore, visitor_id: str) -> list[bytes]:
    """The visitor's crops (JPEG bytes), for ``facebus faces promote``. Raises KeyError for an unknown visitor."""
    keys = [k for k in store.source.list_images() if k.startswith(store.key(visitor_id, "")) and k.endswith(".jpg")]
    if not keys:
        raise KeyError(visitor_id)
    return [store.source.read(k) for k in sorted(keys)]
