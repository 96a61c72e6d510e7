"""The gallery: enrolled faces from a local folder or an S3 bucket, with the same layout in both::

    <root>/Authorised/<Person_Id>.jpg            one image of a person
    <root>/Authorised/<Person_Id>/<any>.jpg      several images of a person
    <root>/Restricted/...                        the same, for restricted people

Person id = file stem or folder name (``[A-Za-z0-9_-]``, 1-64 characters; ``unknown`` is reserved).
Category folder names are matched case-insensitively; ``Authorized`` is accepted for ``Authorised``.
Images: .jpg, .jpeg, .png. Anything else in the tree is ignored.

A :class:`GallerySource` lists image keys with a version tag (S3 ETag, or mtime+size for a folder) and reads bytes;
:class:`GalleryLoader` keeps a :class:`GalleryIndex` in step with a source, rejecting (not raising on) images it
cannot use.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from facebus.events import Category
from facebus.files import write_atomically
from facebus.images import IMAGE_SUFFIXES, ImageError
from facebus.topics import ID_RE, UNKNOWN_PERSON
from recognizer.matching import GalleryEntry, GalleryIndex
from recognizer.models import ModelFileError

log = logging.getLogger(__name__)

CATEGORY_FOLDERS = {
    "authorised": Category.authorised,
    "authorized": Category.authorised,
    "restricted": Category.restricted,
}


VISITORS_FOLDER = "Visitors"  # the visitor store's folder beside Authorised/ and Restricted/ (recognizer.visitors)


def parse_key(key: str) -> tuple[Category, str] | None:
    """(category, person id) of a gallery image key such as ``Authorised/Alice.jpg`` or ``Restricted/Bob/1.png``;
    None for keys outside the layout (other folders, other file types, reserved or malformed names)."""
    parts = key.split("/")
    if len(parts) not in (2, 3) or not parts[-1].lower().endswith(IMAGE_SUFFIXES):
        return None
    category = CATEGORY_FOLDERS.get(parts[0].lower())
    person = Path(parts[1]).stem if len(parts) == 2 else parts[1]
    if category is None or not ID_RE.fullmatch(person) or person.lower() == UNKNOWN_PERSON:
        return None
    return category, person


class GallerySource(Protocol):
    """Where gallery images live. Keys are relative to the gallery root, ``/``-separated."""

    def list_images(self) -> dict[str, str]:
        """Every key under the root mapped to a version tag that changes when the content changes."""

    def read(self, key: str) -> bytes:
        """The bytes of one image."""

    def write(self, key: str, data: bytes) -> None:
        """Store ``data`` at ``key`` whole (a reader never sees half an image), replacing what was there."""

    def delete(self, key: str) -> None:
        """Remove ``key``; no error when it is already gone."""


class FolderSource:
    """A gallery in a local folder; version tag = modification time (ns) and size."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"FolderSource({str(self.root)!r})"

    def list_images(self) -> dict[str, str]:
        if not self.root.is_dir():
            raise FileNotFoundError(f"gallery folder {self.root} does not exist")
        listing = {}
        for path in self.root.rglob("*"):
            if path.is_file():
                stat = path.stat()
                listing[path.relative_to(self.root).as_posix()] = f"{stat.st_mtime_ns}-{stat.st_size}"
        return listing

    def read(self, key: str) -> bytes:
        return (self.root / key).read_bytes()

    def write(self, key: str, data: bytes) -> None:
        write_atomically(self.root / key, data)

    def delete(self, key: str) -> None:
        path = self.root / key
        path.unlink(missing_ok=True)
        person_folder = path.parent
        if person_folder.parent != self.root and person_folder != self.root and person_folder.is_dir():
            if not any(person_folder.iterdir()):
                person_folder.rmdir()  # <Category>/<Person>/, once empty


class S3Source:
    """A gallery under ``s3://bucket/prefix``; version tag = ETag.

    Credentials and endpoint come from boto3's usual sources (``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
    ``AWS_ENDPOINT_URL``, ``AWS_DEFAULT_REGION``, ~/.aws). Path-style addressing, so MinIO and SeaweedFS work.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.client = client or make_s3_client()

    def __repr__(self) -> str:
        return f"S3Source('s3://{self.bucket}/{self.prefix}')"

    def list_images(self) -> dict[str, str]:
        listing = {}
        for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                listing[obj["Key"][len(self.prefix) :]] = obj["ETag"].strip('"')
        return listing

    def read(self, key: str) -> bytes:
        return self.client.get_object(Bucket=self.bucket, Key=self.prefix + key)["Body"].read()

    def write(self, key: str, data: bytes) -> None:
        content_type = "image/png" if key.lower().endswith(".png") else "image/jpeg"
        self.client.put_object(Bucket=self.bucket, Key=self.prefix + key, Body=data, ContentType=content_type)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.prefix + key)


def make_s3_client():
    """boto3 S3 client with path-style addressing and bounded retries; endpoint and keys from the environment."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(  # a new session reads the environment now, not at first use
        "s3",
        config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 3, "mode": "standard"},
                      connect_timeout=5),
    )


def open_source(spec: str) -> GallerySource:
    """``s3://bucket/prefix`` → :class:`S3Source`; anything else is a folder path → :class:`FolderSource`."""
    if spec.startswith("s3://"):
        bucket, _, prefix = spec[len("s3://") :].partition("/")
        if not bucket:
            raise ValueError(f"gallery {spec!r}: no bucket name after s3://")
        return S3Source(bucket, prefix)
    return FolderSource(spec)


@dataclass(frozen=True)
class Rejected:
    """A photo that was not taken into the gallery, and why: a gallery image not enrolled (``origin`` = its key), or a
    photo, zip or zip entry ``facebus faces`` refused (``origin`` = file path or path inside the zip)."""

    origin: str
    reason: str


@dataclass(frozen=True)
class Refresh:
    """What one :meth:`GalleryLoader.refresh` found: keys added (or changed) and removed since the last one."""

    added: list[str]
    removed: list[str]

    @property
    def changed(self) -> bool:
        return bool(self.added or self.removed)


class GalleryLoader:
    """Keeps a gallery in step with its source: each :meth:`refresh` lists the source and reads and encodes only the
    images whose version tag (S3 ETag, folder mtime+size) is new, so a poll of an unchanged gallery costs one listing.

    ``encode_photo`` turns image bytes into one face encoding of model ``model`` and raises ImageError (with the
    reason) when the image is unusable: that image is rejected and the rest loads. Not thread-safe: one thread
    refreshes.
    """

    def __init__(self, source: GallerySource, encode_photo: Callable[[bytes], np.ndarray], model: str = "") -> None:
        self.source = source
        self.encode_photo = encode_photo
        self.model = model  # name of the face model behind encode_photo; the index and the state carry it
        self._known: dict[str, tuple[str, GalleryEntry | Rejected]] = {}
        self.index = GalleryIndex([], model)
        self.listed: list[str] = []  # every key of the last listing, in the gallery layout or not

    @property
    def rejected(self) -> list[Rejected]:
        """The images not enrolled, by key."""
        return [item for _, (_, item) in sorted(self._known.items()) if isinstance(item, Rejected)]

    def refresh(self, progress: Callable[[list[str]], Iterable[str]] = iter) -> Refresh:
        """List the source and bring :attr:`index` up to date. Raises (leaving :attr:`index` as it was) only when the
        source cannot be listed (missing folder, S3 unreachable); an image that cannot be read is rejected.
        ``progress`` wraps the keys to read (e.g. ``tqdm``)."""
        listed = self.source.list_images()
        listing = {key: tag for key, tag in listed.items() if parse_key(key) is not None}
        removed = sorted(set(self._known) - set(listing))
        added = sorted(key for key, tag in listing.items() if self._known.get(key, ("",))[0] != tag)
        known = {key: value for key, value in self._known.items() if key in listing}
        for key in progress(added):
            known[key] = (listing[key], self._load(key))
        self._known, self.listed = known, sorted(listed)
        if added or removed:
            self.index = GalleryIndex([item for _, item in known.values() if isinstance(item, GalleryEntry)],
                                      self.model)
        return Refresh(added, removed)

    def _load(self, key: str) -> GalleryEntry | Rejected:
        category, person = parse_key(key)
        try:
            return GalleryEntry(person, category, key, self.encode_photo(self.source.read(key)))
        except (ImageError, OSError) as exc:
            log.warning("gallery image rejected: %s: %s", key, exc, extra={"key": key})
            return Rejected(key, str(exc))
        except ModelFileError:  # no photo is to blame: the model cannot load (the caller reports it)
            raise
        except Exception as exc:  # noqa: BLE001 - e.g. botocore errors when one object vanished between list and get
            log.warning("gallery image unreadable: %s: %s", key, exc, extra={"key": key})
            return Rejected(key, f"unreadable: {exc}")

    def state(self) -> dict:
        """The gallery summary published retained on ``<prefix>/services/recognizer/gallery``: people with category and
        image count, totals, and the rejected images with their reasons."""
        people: dict[str, dict] = {}
        for entry in self.index.entries:
            item = people.setdefault(entry.person,
                                     {"person": entry.person, "category": entry.category.value, "images": 0})
            item["images"] += 1
        return {
            "schema_version": 1,
            "source": repr(self.source),
            "model": self.model,
            "people": list(people.values()),
            "images": len(self.index),
            "rejected": [{"key": r.origin, "reason": r.reason} for r in self.rejected],
        }

