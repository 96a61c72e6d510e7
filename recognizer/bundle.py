"""Reading the photos of a bulk import (``facebus faces import DIR|ZIP``) safely.

A zip is checked from its central directory before any byte is inflated: at most ``max_zip_bytes`` on disk and
``max_entries`` entries; no absolute path, ``..``, backslash or drive letter and no symlink (path traversal); no
entry inflating more than ``max_ratio`` times (over 1 MiB) and at most ``max_total_bytes`` in all (zip bombs). Any of
these rejects the whole zip (:class:`BundleError`): such a file is crafted, not a user's photo collection. Entries are
then read one at a time, never more than ``max_photo_bytes`` each, and nothing is extracted to disk.

Paths inside a folder or zip are ``/``-separated and relative; a single top folder above the category folders (what
``zip -r gallery.zip gallery/`` makes) is dropped.
"""

from __future__ import annotations

import stat
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from facebus.images import IMAGE_SUFFIXES
from recognizer.gallery import CATEGORY_FOLDERS, Rejected
from recognizer.store import Photo

MIB = 1024 * 1024


class BundleError(ValueError):
    """A folder or zip refused as a whole (missing, unsafe, over a limit); the message says why."""


@dataclass(frozen=True)
class Limits:
    """What an import accepts (bytes, entries, ratio)."""

    max_zip_bytes: int = 1024 * MIB
    max_entries: int = 10_000
    max_total_bytes: int = 4096 * MIB
    max_ratio: float = 100.0
    max_photo_bytes: int = 20 * MIB


def read_bundle(path: Path, limits: Limits = Limits()) -> tuple[list[str], Iterator[Photo | Rejected]]:
    """The image paths of a folder or zip (after the checks above) and an iterator giving, in that order, a
    :class:`Photo` (origin = path inside the bundle) or a :class:`Rejected` (entry over ``max_photo_bytes``,
    unreadable). Files that are not .jpg/.jpeg/.png, hidden files and ``__MACOSX/`` are left out.

    Raises BundleError when the folder or zip is refused as a whole.
    """
    path = Path(path)
    if path.is_dir():
        return _read_folder(path, limits)
    if not path.is_file():
        raise BundleError(f"{path}: no such folder or zip file")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path}: neither a folder nor a zip file")
    return _read_zip(path, limits)


def _is_image(name: str) -> bool:
    parts = name.split("/")
    return (
        name.lower().endswith(IMAGE_SUFFIXES)
        and not any(part.startswith(".") for part in parts)
        and parts[0] != "__MACOSX"
    )


def _drop_top_folder(names: list[str]) -> dict[str, str]:
    """{path as the gallery sees it: path in the bundle}: a common top folder above category folders is dropped."""
    tops = {name.split("/", 1)[0] for name in names}
    if len(tops) == 1 and all(name.count("/") >= 2 for name in names):
        if any(name.split("/")[1].lower() in CATEGORY_FOLDERS for name in names):
            return {name.split("/", 1)[1]: name for name in names}
    return {name: name for name in names}


def _read_folder(root: Path, limits: Limits) -> tuple[list[str], Iterator[Photo | Rejected]]:
    names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
    names = [name for name in names if _is_image(name)]
    if len(names) > limits.max_entries:
        raise BundleError(f"{root}: {len(names)} images, over the limit of {limits.max_entries}")
    mapping = _drop_top_folder(names)

    def photos() -> Iterator[Photo | Rejected]:
        for name, original in mapping.items():
            file = root / original
            size = file.stat().st_size
            if size > limits.max_photo_bytes:
                yield Rejected(name, f"file of {size} bytes is over the {limits.max_photo_bytes} byte limit")
                continue
            try:
                yield Photo(name, file.read_bytes())
            except OSError as exc:
                yield Rejected(name, f"unreadable: {exc}")

    return list(mapping), photos()


def _unsafe(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith("/") or "\\" in name or (len(name) > 1 and name[1] == ":"):
        return "absolute or Windows path"
    if ".." in PurePosixPath(name).parts:
        return "'..' in the path"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "symbolic link"
    return None


def _read_zip(path: Path, limits: Limits) -> tuple[list[str], Iterator[Photo | Rejected]]:
    size = path.stat().st_size
    if size > limits.max_zip_bytes:
        raise BundleError(f"{path}: zip of {size} bytes is over the {limits.max_zip_bytes} byte limit")
    try:
        archive = zipfile.ZipFile(path)
    except (zipfile.BadZipFile, OSError) as exc:
        raise BundleError(f"{path}: not a readable zip ({exc})") from exc
    infos = archive.infolist()
    if len(infos) > limits.max_entries:
        archive.close()
        raise BundleError(f"{path}: {len(infos)} entries, over the limit of {limits.max_entries}")
    total = 0
    for info in infos:
        reason = _unsafe(info)
        if reason:
            archive.close()
            raise BundleError(f"{path}: unsafe entry {info.filename!r} ({reason}); nothing imported")
        total += info.file_size
        if info.file_size > MIB and info.file_size > limits.max_ratio * max(info.compress_size, 1):
            archive.close()
            raise BundleError(
                f"{path}: entry {info.filename!r} inflates {info.file_size / max(info.compress_size, 1):.0f}x "
                f"(over {limits.max_ratio:.0f}x): a zip bomb? nothing imported"
            )
    if total > limits.max_total_bytes:
        archive.close()
        raise BundleError(f"{path}: inflates to {total} bytes, over the {limits.max_total_bytes} byte limit")
    by_name = {info.filename: info for info in infos if not info.is_dir() and _is_image(info.filename)}
    mapping = _drop_top_folder(sorted(by_name))

    def photos() -> Iterator[Photo | Rejected]:
        with archive:
            for name, original in mapping.items():
                info = by_name[original]
                if info.file_size > limits.max_photo_bytes:
                    yield Rejected(name, f"entry of {info.file_size} bytes is over the "
                                         f"{limits.max_photo_bytes} byte limit")
                    continue
                try:
                    with archive.open(info) as entry:
                        data = entry.read(limits.max_photo_bytes + 1)  # never trust the declared size
                except (zipfile.BadZipFile, OSError, NotImplementedError, RuntimeError) as exc:
                    yield Rejected(name, f"unreadable zip entry: {exc}")
                    continue
                if len(data) > limits.max_photo_bytes:
                    yield Rejected(name, f"entry inflates past the {limits.max_photo_bytes} byte limit")
                else:
                    yield Photo(name, data)

    return list(mapping), photos()
