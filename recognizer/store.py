"""Changing the gallery: add, remove, move and import photos in a folder or S3 gallery (:class:`GallerySource`), and
the per-person summary ``facebus faces list`` prints. The CLI (``facebus_tools/faces.py``) is a thin layer over this.

Photos are checked before anything is written: they must decode (JPEG, PNG, ...; EXIF rotation, RGBA and grayscale
handled), stay under the byte and pixel limits, and show exactly one face at least ``gallery_min_face_px`` wide
(the recognizer's own gallery encoder does the check, so what ``add`` accepts the recognizer enrols). What is stored is
a normalised JPEG: rotation applied, metadata (EXIF, GPS) dropped, longest side at most 1024 px, under
``<Category>/<Person_Id>/<name>-<sha8>.jpg``; the same photo added twice lands on the same key.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import PurePosixPath

import numpy as np

from facebus.events import Category
from facebus.images import ImageError, encode_jpeg, load_photo, scale_image
from facebus.topics import ID_RE, UNKNOWN_PERSON
from recognizer.gallery import CATEGORY_FOLDERS, VISITORS_FOLDER, GallerySource, Rejected, parse_key

log = logging.getLogger(__name__)

STORED_MAX_SIDE_PX = 1024  # the recognizer encodes gallery photos at this size: storing more buys nothing
STORED_JPEG_QUALITY = 92
CATEGORY_FOLDER = {Category.authorised: "Authorised", Category.restricted: "Restricted"}

Encoder = Callable[[bytes], np.ndarray]


class GalleryError(ValueError):
    """A change the gallery cannot make (bad name, person unknown or in the other category); the message says why."""


def person_id(name: str) -> str:
    """The person id for a name as a user types it: ``"Alice Smith"`` and ``"Alice_Smith"`` both give ``Alice_Smith``.
    Raises GalleryError unless the id is 1-64 ASCII letters, digits, ``_`` or ``-`` and not the reserved ``unknown``
    (ids are used unchanged in object keys and crop file names)."""
    pid = "_".join(name.split())
    if not ID_RE.fullmatch(pid) or pid.lower() == UNKNOWN_PERSON:
        raise GalleryError(
            f"{name!r} is not a usable person name: use ASCII letters, digits, spaces, '_' or '-' "
            f"(1-64 characters, e.g. Jose_Garcia for José García; 'unknown' is reserved)"
        )
    return pid


@dataclass(frozen=True)
class Photo:
    """A photo offered to the gallery: where it came from (file path or zip entry, for messages) and its bytes."""

    origin: str
    data: bytes


def prepare(photo: Photo, encode: Encoder, max_photo_bytes: int) -> bytes:
    """The JPEG to store for ``photo`` (see the module docstring), after checking it with the gallery ``encode``
    (which also fills the recognizer's encoding cache). Raises ImageError with the reason."""
    if len(photo.data) > max_photo_bytes:
        raise ImageError(f"file of {len(photo.data)} bytes is over the {max_photo_bytes} byte limit")
    rgb = load_photo(photo.data)
    rgb = scale_image(rgb, min(1.0, STORED_MAX_SIDE_PX / max(rgb.shape[:2])))
    jpeg = encode_jpeg(rgb, STORED_JPEG_QUALITY)
    encode(jpeg)
    return jpeg


def people_keys(keys: Iterable[str]) -> dict[str, dict[Category, list[str]]]:
    """Gallery keys grouped by person id, then category (sorted keys); keys outside the layout are left out."""
    people: dict[str, dict[Category, list[str]]] = {}
    for key in sorted(keys):
        parsed = parse_key(key)
        if parsed:
            category, person = parsed
            people.setdefault(person, {}).setdefault(category, []).append(key)
    return people


def category_folder(keys: Iterable[str], category: Category) -> str:
    """The folder that holds ``category`` in a gallery with these keys: the spelling already in use
    (``Authorized/``, ``authorised/``…), else ``Authorised`` or ``Restricted``."""
    for key in keys:
        parsed = parse_key(key)
        if parsed and parsed[0] == category:
            return key.split("/", 1)[0]
    return CATEGORY_FOLDER[category]


def photo_key(folder: str, person: str, origin: str, jpeg: bytes) -> str:
    """Where a prepared photo goes: ``<folder>/<person>/<name>-<sha8>.jpg``, ``name`` being the origin's file name
    made safe, ``sha8`` the start of the JPEG's SHA-256 (the same photo always gets the same key)."""
    stem = re.sub(r"[^\w.-]+", "_", PurePosixPath(origin.replace("\\", "/")).stem).strip("._")[:60] or "photo"
    return f"{folder}/{person}/{stem}-{hashlib.sha256(jpeg).hexdigest()[:8]}.jpg"


def write_all(source: GallerySource, items: list[tuple[str, bytes]]) -> None:
    """Write every (key, bytes), or none: after a failed write the keys written so far are deleted and the error
    is raised again."""
    written = []
    try:
        for key, data in items:
            source.write(key, data)
            written.append(key)
    except BaseException:
        for key in written:
            try:
                source.delete(key)
            except Exception as exc:  # noqa: BLE001 - report, keep undoing the rest
                log.error("could not undo the write of %s: %s", key, exc)
        raise


@dataclass
class Added:
    """What :func:`add` did: the keys written, photos already in the gallery, and the photos refused."""

    written: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)
    refused: list[Rejected] = field(default_factory=list)


def add(
    source: GallerySource, person: str, category: Category, photos: Iterable[Photo | Rejected], encode: Encoder,
    max_photo_bytes: int, all_or_nothing: bool = True,
) -> Added:
    """Check every photo, then store the good ones for ``person`` in ``category``. With ``all_or_nothing`` one bad
    photo stops the whole add (nothing written); without it the good photos are stored and the bad ones reported.
    A :class:`Rejected` among ``photos`` (a file that could not be read) counts as a bad photo.

    Raises GalleryError when the person is in the other category (move them first), and the source's error
    (nothing left half-written) when the gallery cannot be read or written.
    """
    keys = source.list_images()
    other = set(people_keys(keys).get(person, {})) - {category}
    if other:
        (current,) = other
        raise GalleryError(
            f"{person} is already {current.value}; move them first (facebus faces move {person} --to {category.value})"
        )
    result, items, folder = Added(), [], category_folder(keys, category)
    for photo in photos:
        if isinstance(photo, Rejected):
            result.refused.append(photo)
            continue
        try:
            jpeg = prepare(photo, encode, max_photo_bytes)
        except ImageError as exc:
            result.refused.append(Rejected(photo.origin, str(exc)))
            continue
        key = photo_key(folder, person, photo.origin, jpeg)
        if key in keys or key in dict(items):
            result.present.append(key)
        else:
            items.append((key, jpeg))
    if result.refused and all_or_nothing:
        return result
    write_all(source, items)
    result.written = [key for key, _ in items]
    return result


def remove(source: GallerySource, person: str) -> list[str]:
    """Delete every photo of ``person`` (either category, either layout); the keys deleted.
    Raises GalleryError when the gallery has no such person."""
    found = people_keys(source.list_images()).get(person)
    if not found:
        raise GalleryError(f"{person} is not in the gallery")
    keys = [key for category_keys in found.values() for key in category_keys]
    for key in keys:
        source.delete(key)
    return keys


def move(source: GallerySource, person: str, category: Category) -> list[tuple[str, str]]:
    """Move every photo of ``person`` to ``category``: copies first, originals deleted once all copies are written
    (a failure leaves the gallery as it was). The (old key, new key) pairs; empty when already there.
    Raises GalleryError when the gallery has no such person."""
    keys = source.list_images()
    found = people_keys(keys).get(person)
    if not found:
        raise GalleryError(f"{person} is not in the gallery")
    folder = category_folder(keys, category)
    moves, items, taken = [], [], set(keys)
    for current, current_keys in found.items():
        if current == category:
            continue
        for key in current_keys:
            data = source.read(key)
            new = f"{folder}/{key.split('/', 1)[1]}"
            if new in taken:  # a person in both categories with the same file name: keep both photos
                new = photo_key(folder, person, key, data)
            taken.add(new)
            moves.append((key, new))
            items.append((new, data))
    write_all(source, items)
    for old, _ in moves:
        source.delete(old)
    return moves


@dataclass(frozen=True)
class PersonSummary:
    """One row of ``facebus faces list``: a person, their category, usable photos, and what is wrong."""

    person: str
    category: str
    images: int
    problems: list[str]


def summarize(
    keys: Iterable[str], rejected: list[Rejected], lookalike: dict[str, tuple[str, float]] | None = None
) -> list[PersonSummary]:
    """Per person (by category, then id): category (``authorised``, ``restricted``, or ``authorised+restricted`` when
    in both, which is a problem), usable images, and problems: in both categories, each rejected photo with its
    reason, no usable photo, and a look-alike from :func:`recognizer.matching.lookalikes`
    (person -> (other, distance))."""
    reasons = {r.origin: r.reason for r in rejected}
    lookalike = lookalike or {}
    rows = []
    for person, by_category in people_keys(keys).items():
        problems = [f"{key}: {reasons[key]}" for keys_ in by_category.values() for key in keys_ if key in reasons]
        usable = sum(1 for keys_ in by_category.values() for key in keys_ if key not in reasons)
        if len(by_category) > 1:
            problems.insert(0, "in both Authorised and Restricted: the match decides which; move them to one")
        if not usable:
            problems.append("no usable photo: never recognised")
        if person in lookalike:
            other, distance = lookalike[person]
            problems.append(f"looks like {other} (distance {distance:.2f}): one person under two names, or two "
                            "people too alike to tell apart (a face near both is answered unknown)")
        category = "+".join(sorted(c.value for c in by_category))
        rows.append(PersonSummary(person, category, usable, problems))
    return sorted(rows, key=lambda row: (row.category, row.person.lower()))


def outside_layout(keys: Iterable[str]) -> list[str]:
    """Keys the recognizer ignores (not ``<Category>/<Person>.jpg|png`` or ``<Category>/<Person>/<any>.jpg|png``),
    hidden files left out."""
    return sorted(k for k in keys if parse_key(k) is None and not any(p.startswith(".") for p in k.split("/"))
                  and k.split("/")[0] != VISITORS_FOLDER)


def placement(path: str, default: Category) -> tuple[Category, str] | None:
    """(category, person) for a file in an import: a path in the gallery layout keeps its category
    (``Restricted/Bob.jpg``); ``Alice.jpg`` or ``Alice/1.jpg`` go to ``default``; None for anything else."""
    parsed = parse_key(path)
    if parsed:
        return parsed
    parts = path.split("/")
    if parts[0].lower() in CATEGORY_FOLDERS:  # in a category folder but not a valid gallery path (bad person id)
        return None
    if len(parts) in (1, 2) and parse_key(f"{CATEGORY_FOLDER[default]}/{path}"):
        return parse_key(f"{CATEGORY_FOLDER[default]}/{path}")
    return None
