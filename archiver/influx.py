"""Writing line protocol to InfluxDB through the v1 ``/write`` API or the v2 API, one interface for both.

- v1 (``requests``): InfluxDB 1.x, as Debian and Raspberry Pi OS ship it (1.6.7 here); the database is created
  when missing and the account may (else it is taken as managed elsewhere). Works against 1.8+, and 2.x/3.x through
  their v1-compatible API (e.g. docker-compose.yml's write-only ``archiver`` account on InfluxDB 2).
- v2 (``influxdb-client``): InfluxDB 2.x, 3.x, and 1.8+ through its compatibility endpoint.
- ``auto`` asks ``/ping`` for ``X-Influxdb-Version``: 1.x gets v1, anything later v2.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Protocol

import requests

from facebus.settings import InfluxSettings

log = logging.getLogger(__name__)


class InfluxError(RuntimeError):
    """A write or query InfluxDB refused or that did not reach it; ``status`` is the HTTP status when it answered."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def permanent(self) -> bool:
        """True when the request itself is at fault (400 bad line or time, 413 too large, 422): sending it again
        can never succeed. Unreachable servers, 401/403/404 (configuration) and 5xx are transient."""
        return self.status in (400, 413, 422)


class LineWriter(Protocol):
    def write(self, lines: list[str]) -> None:
        """Write line-protocol lines (ms timestamps); raises InfluxError on failure."""

    def delete_person(self, measurement: str, person: str) -> int:
        """Delete every point of ``measurement`` tagged ``person``, all times; returns how many there were.
        Raises InfluxError."""

    def close(self) -> None: ...


COUNT_FIELD = "event_id"  # every face entry has it (archiver.core.point_for): counting it counts entries


def influxql_string(value: str) -> str:
    """``value`` as an InfluxQL string literal: ``O'Brien`` -> ``'O\\'Brien'`` (backslash, quote, newline escaped)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'").replace("\n", "\\n") + "'"


def influxql_ident(name: str) -> str:
    """``name`` as a double-quoted InfluxQL identifier (also the delete predicate's quoting of values)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def flux_string(value: str) -> str:
    """``value`` as a Flux string literal (backslash, double quote and ``${`` interpolation escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("${", "\\${") + '"'


def server_version(url: str, timeout_s: float = 5.0) -> str:
    """The server's version from ``GET /ping`` (header ``X-Influxdb-Version``, e.g. ``1.6.7~rc0`` or ``v2.7.4``)."""
    try:
        response = requests.get(url.rstrip("/") + "/ping", timeout=timeout_s)
    except requests.RequestException as exc:
        raise InfluxError(f"InfluxDB at {url} unreachable: {exc}") from exc
    return response.headers.get("X-Influxdb-Version", "")


def choose_api(version: str) -> str:
    """``v1`` for a 1.x server version string, ``v2`` otherwise (2.x, 3.x, unknown)."""
    return "v1" if version.lstrip("v").startswith("1.") else "v2"


class V1Writer:
    """POST /write?db=...&precision=ms with optional user/password; creates the database on start when the account
    may (:meth:`create_database`)."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.session = requests.Session()
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            self.session.auth = (settings.username, password)
        self.create_database()

    def create_database(self) -> None:
        """``CREATE DATABASE``, which InfluxDB 1.x needs before the first write. A server that answers and refuses it
        for this account manages the database elsewhere: a 1.x user without admin rights (403, e.g. one granted only
        WRITE on the database), InfluxDB 2.x/3.x whose v1 API maps databases to buckets made by their own tools (a
        statement error such as "not implemented: CREATE DATABASE", or another 4xx). That is logged once and the
        writer carries on: the writes tell whether the database exists and the account may write there.

        Raises InfluxError when the server is unreachable, rejects the credentials (401) or fails (5xx), so that
        :class:`DeferredWriter` tries again."""
        database = self.settings.database
        try:
            self.query(f"CREATE DATABASE {influxql_ident(database)}", method="POST")
        except InfluxError as exc:
            if exc.status is None or exc.status == 401 or exc.status >= 500:
                raise
            log.info("InfluxDB refused CREATE DATABASE for %s (%s): writing to the database %s as it is, managed "
                     "elsewhere", self.settings.username or "anonymous", exc, database)

    def query(self, influxql: str, method: str = "GET", epoch: str | None = None) -> dict:
        """Run InfluxQL through ``/query``; returns the decoded JSON. Raises InfluxError."""
        params = {"q": influxql, "db": self.settings.database}
        if epoch:
            params["epoch"] = epoch
        try:
            response = self.session.request(method, self.base + "/query", params=params,
                                            timeout=self.settings.timeout_s)
        except requests.RequestException as exc:
            raise InfluxError(f"query failed: {exc}") from exc
        if response.status_code >= 300:
            raise InfluxError(f"query refused ({response.status_code}): {response.text[:200]}", response.status_code)
        body = response.json()
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        if errors:  # a statement error: the server answered (200) and refused the statement
            raise InfluxError(f"query error: {errors[0]}", response.status_code)
        return body

    def write(self, lines: list[str]) -> None:
        params = {"db": self.settings.database, "precision": "ms"}
        try:
            response = self.session.post(
                self.base + "/write", params=params, data="\n".join(lines).encode(), timeout=self.settings.timeout_s
            )
        except requests.RequestException as exc:
            raise InfluxError(f"write failed: {exc}") from exc
        if response.status_code != 204:
            raise InfluxError(f"write refused ({response.status_code}): {response.text[:200]}", response.status_code)

    def delete_person(self, measurement: str, person: str) -> int:
        """Delete the points of ``measurement`` whose tag ``person`` is ``person`` (all times, every device and
        category): ``DELETE FROM ... WHERE "person" = ...``.

        :return: how many points there were, counted just before (points with field ``event_id``: face entries)

        Raises InfluxError when a query fails; the count query changes nothing, so a failure there deletes nothing.
        """
        source, where = influxql_ident(measurement), f'"person" = {influxql_string(person)}'
        body = self.query(f'SELECT count({influxql_ident(COUNT_FIELD)}) FROM {source} WHERE {where}')
        series = [s for result in body.get("results", []) for s in result.get("series", [])]
        count = sum(int(row[1] or 0) for s in series for row in s.get("values", []))
        self.query(f"DELETE FROM {source} WHERE {where}", method="POST")
        return count

    def close(self) -> None:
        self.session.close()


class V2Writer:
    """influxdb-client's synchronous write API to ``bucket`` in ``org`` with ``token``."""

    def __init__(self, settings: InfluxSettings) -> None:
        from influxdb_client import InfluxDBClient, WritePrecision
        from influxdb_client.client.write_api import SYNCHRONOUS

        self.settings = settings
        token = settings.token.get_secret_value() if settings.token else ""
        self.client = InfluxDBClient(
            url=settings.url, token=token, org=settings.org, timeout=int(settings.timeout_s * 1000)
        )
        self.write_api = self.client.write_api(write_options=SYNCHRONOUS)
        self.precision = WritePrecision.MS

    def write(self, lines: list[str]) -> None:
        import urllib3
        from influxdb_client.rest import ApiException

        try:
            self.write_api.write(
                bucket=self.settings.bucket, org=self.settings.org, record=lines, write_precision=self.precision
            )
        except ApiException as exc:
            raise InfluxError(f"write refused ({exc.status}): {str(exc.body)[:200]}", exc.status) from exc
        except (OSError, urllib3.exceptions.HTTPError) as exc:  # urllib3's: server unreachable
            raise InfluxError(f"write failed: {exc}") from exc

    # Start and stop of a purge: all the time InfluxDB can store from 1970 on, so entries of a camera whose clock runs
    # ahead are deleted too (stop must stay below 2262-04-11, the end of int64 nanoseconds).
    PURGE_START = datetime(1970, 1, 1, tzinfo=timezone.utc)
    PURGE_STOP = datetime(2262, 1, 1, tzinfo=timezone.utc)

    def delete_person(self, measurement: str, person: str) -> int:
        """Delete the points of ``measurement`` whose tag ``person`` is ``person`` in the bucket, from 1970 to 2262,
        through ``/api/v2/delete`` with the predicate ``_measurement="..." AND person="..."``.

        :return: how many points there were, counted just before with Flux (points with field ``event_id``)

        Raises InfluxError when the count or the delete fails (the count changes nothing). InfluxDB OSS 2.x deletes
        at once; Cloud (TSM) queues the delete, so the points may stay readable a moment; servers without
        ``/api/v2/delete`` or Flux (InfluxDB 3, Cloud Serverless, 1.x without Flux enabled) raise InfluxError.
        """
        import urllib3
        from influxdb_client.client.exceptions import InfluxDBError

        flux = (
            f"from(bucket: {flux_string(self.settings.bucket)})"
            f" |> range(start: {self.PURGE_START:%Y-%m-%dT%H:%M:%SZ}, stop: {self.PURGE_STOP:%Y-%m-%dT%H:%M:%SZ})"
            f" |> filter(fn: (r) => r._measurement == {flux_string(measurement)}"
            f" and r.person == {flux_string(person)} and r._field == {flux_string(COUNT_FIELD)})"
            " |> group() |> count()"
        )
        predicate = f"_measurement={influxql_ident(measurement)} AND person={influxql_ident(person)}"
        try:
            tables = self.client.query_api().query(flux, org=self.settings.org)
            count = sum(int(record.get_value() or 0) for table in tables for record in table.records)
            self.client.delete_api().delete(
                self.PURGE_START, self.PURGE_STOP, predicate, bucket=self.settings.bucket, org=self.settings.org
            )
        except (InfluxDBError, OSError, urllib3.exceptions.HTTPError) as exc:
            raise InfluxError(f"deleting {person}'s entries failed: {exc}") from exc
        return count

    def close(self) -> None:
        self.client.close()


def make_writer(settings: InfluxSettings) -> LineWriter:
    """The writer ``settings.api`` asks for; ``auto`` detects it from the server. Raises InfluxError if unreachable."""
    api = settings.api
    if api == "auto":
        version = server_version(settings.url, settings.timeout_s)
        api = choose_api(version)
        log.info("InfluxDB %s at %s: using the %s API", version or "(no version header)", settings.url, api)
    return V1Writer(settings) if api == "v1" else V2Writer(settings)


class DeferredWriter:
    """:func:`make_writer` on first use, tried again at every write until it succeeds: the archiver starts, and spools,
    while InfluxDB is still down. Raises InfluxError (transient) until then."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self._writer: LineWriter | None = None

    def _connected(self) -> LineWriter:
        if self._writer is None:
            self._writer = make_writer(self.settings)
        return self._writer

    def write(self, lines: list[str]) -> None:
        self._connected().write(lines)

    def delete_person(self, measurement: str, person: str) -> int:
        return self._connected().delete_person(measurement, person)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
