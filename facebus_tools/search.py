"""``facebus faces search PHOTO``: "seen before?" - the archived face entries whose crop shows the face in a photo.

The photo's face (the largest) is encoded with the still-photo model (:func:`recognizer.photos.photo_model`, the one
the gallery is encoded with); so is the crop file of each face entry read back from InfluxDB since a time; the
entries whose crop face lies within the tolerance are the answer, nearest first. Enrolled people and visitors alike:
the entries' tags and fields (person, visitor_id) are reported as they were archived, the match is on the crops.

- :func:`rank` is the pure part (encodings in, ranked matches out);
- :func:`probe_encoding` and :func:`crop_candidates` do the I/O around it (photo, crop files);
- :func:`search` joins them to what InfluxDB holds (:func:`archiver.history.read_entries`).

Nothing is cached: an encoding is biometric data, and a crop deleted by a purge must leave nothing behind.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

from archiver.history import HistoryEntry, crop_file, read_entries
from facebus.events import format_time, parse_time
from facebus.images import ImageError
from facebus.topics import UNKNOWN_PERSON
from recognizer.models import FaceModel
from recognizer.photos import photo_faces

log = logging.getLogger(__name__)

DEFAULT_SINCE = timedelta(days=30)
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}


def parse_since(text: str, now: datetime) -> datetime:
    """The start of a search from ``--since``: a duration back from ``now`` (``90m``, ``12h``, ``30d``, ``2w``,
    combined as ``1d12h``; units s m h d w), an RFC 3339 time (``2026-11-01T08:00:00Z``) or a date (``2026-11-01``,
    midnight UTC). Raises ValueError for anything else."""
    text = text.strip()
    if text and _DURATION.sub("", text) == "":
        seconds = sum(float(n) * _UNITS_S[unit] for n, unit in _DURATION.findall(text))
        return now - timedelta(seconds=seconds)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
        return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)
    try:
        return parse_time(text)
    except ValueError:
        raise ValueError(f"{text!r} is neither a duration (30d, 12h, 90m, 1d12h) nor a time "
                         "(2026-11-01 or 2026-11-01T08:00:00Z)") from None


@dataclass(frozen=True)
class Candidate:
    """An archived entry and the face encoding of its crop."""

    entry: HistoryEntry
    encoding: np.ndarray


@dataclass(frozen=True)
class Found:
    """An entry whose crop face lies ``distance`` from the searched face."""

    entry: HistoryEntry
    distance: float

    def to_dict(self) -> dict:
        """The JSON line ``facebus faces search`` prints."""
        e = self.entry
        return {"time": format_time(e.time), "device": e.device,
                "person": None if e.person in ("", UNKNOWN_PERSON) else e.person, "category": e.category or None,
                "visitor_id": e.visitor_id or None, "distance": round(self.distance, 4), "crop_path": e.crop_path}


def rank(probe: np.ndarray, candidates: Iterable[Candidate], tolerance: float) -> list[Found]:
    """The candidates whose encoding lies within ``tolerance`` (Euclidean face distance, inclusive) of ``probe``,
    nearest first (ties: the newer entry first). Pure: no I/O."""
    candidates = list(candidates)
    if not candidates:
        return []
    distances = np.linalg.norm(np.asarray([c.encoding for c in candidates], np.float32)
                               - np.asarray(probe, np.float32)[None, :], axis=1)
    found = [Found(c.entry, float(d)) for c, d in zip(candidates, distances, strict=True) if d <= tolerance]
    return sorted(found, key=lambda f: (f.distance, -f.entry.time_ns))


def largest_face(model: FaceModel, data: bytes) -> np.ndarray | None:
    """The encoding of the largest face in a photo or crop (file bytes), None when no face is found.
    Raises ImageError for bytes that are not a readable image."""
    rgb, faces = photo_faces(model, data)
    if not faces:
        return None
    return model.encode(rgb, faces[:1])[0]


def probe_encoding(model: FaceModel, photo: Path) -> np.ndarray:
    """The encoding of the largest face in the photo file searched for. Raises ImageError (unreadable, no face)
    or OSError (no such file)."""
    encoding = largest_face(model, Path(photo).read_bytes())
    if encoding is None:
        raise ImageError("no face found")
    return encoding


@dataclass
class Tally:
    """What a search went through: entries read, crops encoded, crops skipped (no face found, or not a readable
    image), entries without a crop file (none named, missing, or a path outside the crops folder)."""

    entries: int = 0
    encoded: int = 0
    skipped: int = 0
    missing: int = 0


def crop_candidates(model: FaceModel, entries: Iterable[HistoryEntry], crops_dir: Path,
                    tally: Tally) -> Iterator[Candidate]:
    """A :class:`Candidate` for each entry whose crop file is in ``crops_dir`` and shows a face (the largest is
    encoded); the others are counted in ``tally`` (skipped or missing) and left out."""
    for entry in entries:
        tally.entries += 1
        path = crop_file(crops_dir, entry.crop_path)
        try:
            data = path.read_bytes() if path is not None else None
        except OSError:
            data = None
        if data is None:
            tally.missing += 1
            continue
        try:
            encoding = largest_face(model, data)
        except ImageError as exc:
            log.debug("crop %s unreadable: %s", entry.crop_path, exc)
            encoding = None
        if encoding is None:
            tally.skipped += 1
            continue
        tally.encoded += 1
        yield Candidate(entry, encoding)


def search(model: FaceModel, probe: np.ndarray, writer, measurement: str, crops_dir: Path, since: datetime,
           tolerance: float, progress: Callable[[list], Iterable] = iter) -> tuple[list[Found], Tally]:
    """The entries of ``measurement`` since ``since`` whose crop face lies within ``tolerance`` of ``probe``,
    nearest first, and the :class:`Tally`. ``writer``: a V1Writer or V2Writer; ``progress`` wraps the entries as
    their crops are encoded (e.g. ``tqdm``). Raises InfluxError."""
    tally = Tally()
    entries = read_entries(writer, measurement, since)
    return rank(probe, crop_candidates(model, progress(entries), Path(crops_dir), tally), tolerance), tally
