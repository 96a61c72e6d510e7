"""Writing line protocol to InfluxDB through the v1 ``/write`` API or the v2 API, one interface for both.

- v1 (``requests``): InfluxDB 1.x, as Debian and Raspberry Pi OS ship it (1.6.7 here); the database is created
  when missing. Works against 1.8+ and 3.x too.
- v2 (``influxdb-client``): InfluxDB 2.x, 3.x, and 1.8+ through its compatibility endpoint.
- ``auto`` asks ``/ping`` for ``X-Influxdb-Version``: 1.x gets v1, anything later v2.
"""

from __future__ import annotations

import logging
from typing import Protocol

import requests

from facebus.settings import InfluxSettings

log = logging.getLogger(__name__)


class InfluxError(RuntimeError):
    """A write or query InfluxDB refused or that did not reach it."""


class LineWriter(Protocol):
    def write(self, lines: list[str]) -> None:
        """Write line-protocol lines (ms timestamps); raises InfluxError on failure."""

    def close(self) -> None: ...


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
    """POST /write?db=...&precision=ms with optional user/password; creates the database on start."""

    def __init__(self, settings: InfluxSettings) -> None:
        self.settings = settings
        self.base = settings.url.rstrip("/")
        self.session = requests.Session()
        if settings.username:
            password = settings.password.get_secret_value() if settings.password else ""
            self.session.auth = (settings.username, password)
        self.query(f'CREATE DATABASE "{settings.database}"', method="POST")

    def query(self, influxql: str, method: str = "GET", epoch: str | None = None) -> dict:
        """Run InfluxQL through ``/query``; returns the decoded JSON. Raises InfluxError."""
        params = {"q": influxql, "db": self.settings.database}
        if epoch:
            params["epoch"] = epoch
        try:
            response = self.session.request(method, self.base + "/query", params=params, timeout=self.settings.timeout_s)
        except requests.RequestException as exc:
            raise InfluxError(f"query failed: {exc}") from exc
        if response.status_code >= 300:
            raise InfluxError(f"query refused ({response.status_code}): {response.text[:200]}")
        body = response.json()
        errors = [r["error"] for r in body.get("results", []) if "error" in r]
        if errors:
            raise InfluxError(f"query error: {errors[0]}")
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
            raise InfluxError(f"write refused ({response.status_code}): {response.text[:200]}")

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
        from influxdb_client.rest import ApiException

        try:
            self.write_api.write(
                bucket=self.settings.bucket, org=self.settings.org, record=lines, write_precision=self.precision
            )
        except (ApiException, OSError) as exc:
            raise InfluxError(f"write failed: {exc}") from exc

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
