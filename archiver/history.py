"""Forgetting a person's history: their face crops and their InfluxDB entries (``facebus faces forget NAME
--purge-history``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from archiver.core import crop_files_of
from archiver.influx import LineWriter

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Purged:
    """What a purge deleted: ``crops``, the crop files' paths relative to the crops folder (POSIX, by date, device
    and name, e.g. ``"2026-11-22/door/Barack_Obama_092014.371Z_f11d5302.jpg"``), and ``entries``, the number of
    InfluxDB points."""

    crops: list[str]
    entries: int


def purge_person(person: str, crops_dir: Path, measurement: str, writer: LineWriter) -> Purged:
    """Delete every InfluxDB entry of ``person`` in ``measurement``, then every crop file of ``person`` under
    ``crops_dir`` (see :func:`archiver.core.crop_files_of`), and the date and device folders this leaves empty.

    :param person: the person id, exactly as tagged in InfluxDB (``"unknown"`` would purge every unmatched face)
    :param crops_dir: the archiver's crops folder; a missing folder has no crops
    :param measurement: the entries' measurement (``ArchiverSettings.measurement``, ``face_entry`` by default)
    :param writer: a V1Writer or V2Writer (:func:`archiver.influx.make_writer`)
    :return: a :class:`Purged` with the crops deleted and the number of entries deleted

    InfluxDB goes first: when it fails (InfluxError propagates) no crop has been touched, and running the purge again
    is safe. When deleting a crop fails (OSError propagates) the entries are already gone and the crops deleted so
    far stay deleted; running it again deletes the rest (it then reports 0 entries). Entries still queued in a
    running archiver (e.g. while InfluxDB was down) are written after the purge: stop the archiver, or forget the
    person in the gallery first and purge once the archiver's queue is empty.
    """
    entries = writer.delete_person(measurement, person)
    crops_dir = Path(crops_dir)
    deleted: list[str] = []
    folders: set[Path] = set()
    for path in crop_files_of(crops_dir, person):
        try:
            path.unlink()
        except FileNotFoundError:  # removed meanwhile (a purge running at the same time): not ours to report
            continue
        deleted.append(path.relative_to(crops_dir).as_posix())
        folders.add(path.parent)
    for device_dir in sorted(folders):
        for folder in (device_dir, device_dir.parent):  # <date>/<device>, then <date>
            try:
                os.rmdir(folder)  # only when empty
            except FileNotFoundError:
                continue  # already gone
            except OSError:
                break  # not empty: other crops (or anything else) stay
    log.info("purged %s: %d entries, %d crops", person, entries, len(deleted))
    return Purged(crops=deleted, entries=entries)
