"""The archived history of faces: reading face entries back from InfluxDB (``facebus faces search``), and forgetting
a person's history (``facebus faces forget NAME --purge-history``) or a visitor's (``facebus faces forget-visitor``):
their face crops and their InfluxDB entries.

Entries are read and deleted through the v1 API (InfluxQL) or the v2 API (Flux and ``/api/v2/delete``), whichever
:func:`archiver.influx.make_writer` chose. A person is a tag, so a person's entries go with one delete; a visitor id
is a field, which neither API can delete by: a visitor's entries are found by a query, then each is deleted by its
exact time and its tags (person, category, device: the whole series key, so exactly that point goes).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path, PurePosixPath

from archiver.core import crop_files_of
from archiver.influx import (
    InfluxError,
    LineWriter,
    V1Writer,
    V2Writer,
    flux_string,
    influxql_ident,
    influxql_string,
)

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
    deleted = delete_crops(crops_dir, crop_files_of(crops_dir, person))
    log.info("purged %s: %d entries, %d crops", person, entries, len(deleted))
    return Purged(crops=deleted, entries=entries)


def delete_crops(crops_dir: Path, paths: Iterable[Path]) -> list[str]:
    """Delete the crop files ``paths`` (under ``crops_dir``), then the ``<date>/<device>`` and ``<date>`` folders this
    leaves empty; the paths deleted, relative to ``crops_dir`` (POSIX). A file already gone is left out (a purge
    running at the same time removed it); an OSError other than that propagates (the files deleted so far stay
    deleted)."""
    deleted: list[str] = []
    folders: set[Path] = set()
    for path in paths:
        try:
            path.unlink()
        except FileNotFoundError:  # removed meanwhile (a purge running at the same time): not ours to report
            continue
        deleted.append(path.relative_to(crops_dir).as_posix())
        folders.add(path.parent)
    for device_dir in sorted(folders):
        for folder in (device_dir, device_dir.parent):  # <date>/<device>, then <date>
            if folder == crops_dir:
                break
            try:
                os.rmdir(folder)  # only when empty
            except FileNotFoundError:
                continue  # already gone
            except OSError:
                break  # not empty: other crops (or anything else) stay
    return deleted


def crop_file(crops_dir: Path, crop_path: str) -> Path | None:
    """The file of an entry's ``crop_path`` (relative to ``crops_dir``, as :func:`archiver.core.crop_path` makes it);
    None for an empty path or one that would leave the folder (absolute, ``..``): the field is read back from
    InfluxDB, where anybody with write access could have put anything."""
    relative = PurePosixPath(crop_path)
    if not crop_path or relative.is_absolute() or ".." in relative.parts or "\\" in crop_path:
        return None
    return Path(crops_dir).joinpath(*relative.parts)


@dataclass(frozen=True)
class HistoryEntry:
    """One face entry as read back from InfluxDB: its time (UTC), its tags (``person`` is ``unknown`` when nobody
    matched), its ``crop_path`` field ("" when it has none) and its ``visitor_id`` field (None when it has none).
    ``time_ns`` is the stored time exactly, in ns since 1970 (what a delete of this one point needs)."""

    time: datetime
    time_ns: int
    person: str
    category: str
    device: str
    crop_path: str
    visitor_id: str | None = None


PAGE_SIZE = 10_000  # v1: entries read per query (LIMIT/OFFSET), so a server's max-row-limit never truncates a read
DELETE_BATCH = 50  # v1: DELETE statements per request (they travel in the URL's query string)


def read_entries(
    writer: LineWriter, measurement: str, since: datetime | None = None, visitor_ids: Collection[str] | None = None,
) -> list[HistoryEntry]:
    """The face entries of ``measurement`` captured at or after ``since`` (None: all times, 1970 on, a camera clock
    running ahead included), oldest first; with ``visitor_ids``, only those whose field ``visitor_id`` is one of them
    (an empty collection: none).

    :param writer: a V1Writer (InfluxQL ``SELECT``) or V2Writer (Flux) from :func:`archiver.influx.make_writer`
    :raises InfluxError: when a query fails (database or bucket missing, server unreachable, no Flux)

    A measurement never written yet has no entries (no error).
    """
    if visitor_ids is not None and not visitor_ids:
        return []
    if isinstance(writer, V1Writer):
        entries = _read_v1(writer, measurement, since, visitor_ids)
    elif isinstance(writer, V2Writer):
        entries = _read_v2(writer, measurement, since, visitor_ids)
    else:
        raise TypeError(f"cannot read entries through {type(writer).__name__}")
    return sorted(entries, key=lambda e: (e.time_ns, e.device, e.person))


def _read_v1(writer: V1Writer, measurement: str, since: datetime | None,
             visitor_ids: Collection[str] | None) -> list[HistoryEntry]:
    conditions = []
    if since is not None:
        conditions.append(f"time >= {influxql_string(_rfc3339(since))}")
    if visitor_ids is not None:
        ids = " OR ".join(f'"visitor_id" = {influxql_string(v)}' for v in sorted(visitor_ids))
        conditions.append(f"({ids})")
    where = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    select = (f'SELECT "crop_path", "visitor_id", "person", "category", "device" FROM {influxql_ident(measurement)}'
              f"{where} ORDER BY time ASC")
    entries: list[HistoryEntry] = []
    while True:
        body = writer.query(f"{select} LIMIT {PAGE_SIZE} OFFSET {len(entries)}", epoch="ns")
        rows = [dict(zip(s["columns"], values, strict=True)) for result in body.get("results", [])
                for s in result.get("series", []) for values in s.get("values", [])]
        entries += [HistoryEntry(_from_ns(int(r["time"])), int(r["time"]), r.get("person") or "",
                                 r.get("category") or "", r.get("device") or "", r.get("crop_path") or "",
                                 r.get("visitor_id")) for r in rows]
        if len(rows) < PAGE_SIZE:
            return entries


def _read_v2(writer: V2Writer, measurement: str, since: datetime | None,
             visitor_ids: Collection[str] | None) -> list[HistoryEntry]:
    import urllib3
    from influxdb_client.client.exceptions import InfluxDBError

    start = since or writer.PURGE_START
    flux = (
        f"from(bucket: {flux_string(writer.settings.bucket)})"
        f" |> range(start: {_rfc3339(start)}, stop: {_rfc3339(writer.PURGE_STOP)})"
        f" |> filter(fn: (r) => r._measurement == {flux_string(measurement)}"
        ' and (r._field == "crop_path" or r._field == "visitor_id"))'
        ' |> pivot(rowKey: ["_time"], columnKey: ["_field"], valueColumn: "_value")'
    )
    if visitor_ids is not None:
        ids = ", ".join(flux_string(v) for v in sorted(visitor_ids))
        flux += f" |> filter(fn: (r) => exists r.visitor_id and contains(value: r.visitor_id, set: [{ids}]))"
    try:
        tables = writer.client.query_api().query(flux, org=writer.settings.org)
    except (InfluxDBError, OSError, urllib3.exceptions.HTTPError) as exc:
        raise InfluxError(f"reading the entries failed: {exc}") from exc
    entries = []
    for table in tables:
        for record in table.records:
            moment = record.get_time().astimezone(timezone.utc)
            values = record.values
            entries.append(HistoryEntry(moment, _to_ns(moment), values.get("person") or "",
                                        values.get("category") or "", values.get("device") or "",
                                        values.get("crop_path") or "", values.get("visitor_id")))
    return entries


def delete_entries(writer: LineWriter, measurement: str, entries: list[HistoryEntry]) -> int:
    """Delete exactly these points: each by its time and its tags (``DELETE FROM m WHERE time = … AND "person" = …
    AND "category" = … AND "device" = …`` through v1, in batches; ``/api/v2/delete`` with start = stop = its time and
    the predicate ``_measurement="m" AND person="…" AND category="…" AND device="…"`` through v2). A point already
    gone deletes nothing and is no error. Returns how many points were asked to go.

    :raises InfluxError: when a delete fails; the points deleted before it stay deleted (running it again is safe)
    """
    if isinstance(writer, V1Writer):
        source = influxql_ident(measurement)
        statements = [
            f"DELETE FROM {source} WHERE time = {e.time_ns} AND \"person\" = {influxql_string(e.person)}"
            f" AND \"category\" = {influxql_string(e.category)} AND \"device\" = {influxql_string(e.device)}"
            for e in entries
        ]
        for i in range(0, len(statements), DELETE_BATCH):
            writer.query("; ".join(statements[i:i + DELETE_BATCH]), method="POST")
    elif isinstance(writer, V2Writer):
        import urllib3
        from influxdb_client.client.exceptions import InfluxDBError

        api = writer.client.delete_api()
        for e in entries:
            predicate = (f"_measurement={influxql_ident(measurement)} AND person={influxql_ident(e.person)}"
                         f" AND category={influxql_ident(e.category)} AND device={influxql_ident(e.device)}")
            moment = _rfc3339_ns(e.time_ns)
            try:
                api.delete(moment, moment, predicate, bucket=writer.settings.bucket, org=writer.settings.org)
            except (InfluxDBError, OSError, urllib3.exceptions.HTTPError) as exc:
                raise InfluxError(f"deleting the entry at {moment} failed: {exc}") from exc
    else:
        raise TypeError(f"cannot delete entries through {type(writer).__name__}")
    return len(entries)


def purge_visitor(visitor_ids: Collection[str], crops_dir: Path, measurement: str, writer: LineWriter) -> Purged:
    """Delete every InfluxDB entry of ``measurement`` whose field ``visitor_id`` is one of ``visitor_ids`` (a visitor
    and the ids merged into it, its aliases), all times, and the crop files those entries name (``crop_path``) under
    ``crops_dir``, with the date and device folders this leaves empty.

    :return: a :class:`Purged` with the crops deleted (relative POSIX paths) and the number of entries deleted
    :raises InfluxError: when the query or a delete fails

    The entries are read first (a failure there changes nothing), then their crops are deleted, then the entries:
    the crop file names do not carry the visitor id (they say ``unknown``), so only the entries lead to them, and
    running the purge again after any failure finds what is left. As with :func:`purge_person`, entries still
    queued in a running archiver are written after the purge.
    """
    crops_dir = Path(crops_dir)
    entries = read_entries(writer, measurement, None, set(visitor_ids))
    files = sorted({path for e in entries if (path := crop_file(crops_dir, e.crop_path)) is not None})
    deleted = delete_crops(crops_dir, files)
    count = delete_entries(writer, measurement, entries)
    log.info("purged visitor %s: %d entries, %d crops", ", ".join(sorted(visitor_ids)), count, len(deleted))
    return Purged(crops=deleted, entries=count)


def _rfc3339(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _rfc3339_ns(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    return (_EPOCH + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S") + f".{rest:09d}Z"


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)


def _from_ns(ns: int) -> datetime:
    return _EPOCH + timedelta(microseconds=ns // 1000)


def _to_ns(moment: datetime) -> int:
    delta = moment - _EPOCH
    return (delta.days * 86400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1000
