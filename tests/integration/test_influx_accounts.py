"""The archiver's V1Writer with accounts that may not create databases, as docker-compose.yml gives it: InfluxDB 2's
write-only v1 account ``archiver`` (archiver/influxdb-init/facebus-accounts.sh), which answers CREATE DATABASE with a
statement error. Run against the real influxd 1.6.7 with authentication on (a user granted only WRITE, one granted
only READ, a wrong password), and against a stub answering like InfluxDB 2's v1 /query (no InfluxDB 2 here)."""

from __future__ import annotations

import base64
import http.server
import json
import logging
import threading
import time
from urllib.parse import parse_qs, urlparse

import pytest
import requests

from archiver.influx import InfluxError, V1Writer
from facebus.settings import InfluxSettings
from facebus_tools import devservers

pytestmark = pytest.mark.integration

ADMIN = ("admin", "admin-password")
LINE = "face_entry,person=Alice,device=door,category=authorised event_id=\"e1\",distance=0.4 {ms}"


@pytest.fixture(scope="module")
def influxd_auth(tmp_path_factory):
    """Debian's influxd 1.6.7 with ``auth-enabled``: an admin, the database ``facebus``, a user ``archiver`` with WRITE
    on it only and a user ``grafana`` with READ only (what the Compose accounts may do on InfluxDB 2)."""
    try:
        server = devservers.start_influxd(tmp_path_factory.mktemp("influxd-auth"), auth_enabled=True)
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    try:
        url = server.url

        def admin(q, auth=ADMIN):
            response = requests.post(url + "/query", params={"q": q}, auth=auth, timeout=5)
            assert response.status_code == 200 and "error" not in response.text, (q, response.text)

        admin(f"CREATE USER {ADMIN[0]} WITH PASSWORD '{ADMIN[1]}' WITH ALL PRIVILEGES", auth=None)
        admin('CREATE DATABASE "facebus"')
        admin("CREATE USER archiver WITH PASSWORD 'archiver-password'")
        admin('GRANT WRITE ON "facebus" TO archiver')
        admin("CREATE USER grafana WITH PASSWORD 'grafana-password'")
        admin('GRANT READ ON "facebus" TO grafana')
        yield server
    finally:
        server.stop()


def settings(url: str, username: str | None, password: str | None, database: str = "facebus") -> InfluxSettings:
    return InfluxSettings(url=url, api="v1", database=database, username=username, password=password, timeout_s=5)


def count(url: str, person: str) -> int:
    body = requests.get(url + "/query", auth=ADMIN, timeout=5, params={
        "db": "facebus", "q": f"SELECT count(distance) FROM face_entry WHERE person = '{person}'"}).json()
    series = body["results"][0].get("series", [])
    return series[0]["values"][0][1] if series else 0


def test_a_write_only_account_starts_without_creating_the_database_and_writes(influxd_auth, caplog):
    with caplog.at_level(logging.INFO, logger="archiver.influx"):
        writer = V1Writer(settings(influxd_auth.url, "archiver", "archiver-password"))
    refused = [r for r in caplog.records if "CREATE DATABASE" in r.getMessage()]
    assert len(refused) == 1 and "managed elsewhere" in refused[0].getMessage()
    assert "(403)" in refused[0].getMessage()  # 1.x: "requires admin privilege"
    writer.write([LINE.format(ms=int(time.time() * 1000))])
    assert count(influxd_auth.url, "Alice") == 1
    with pytest.raises(InfluxError) as refused_read:  # write-only: it cannot read what it wrote
        writer.query('SELECT * FROM "face_entry"')
    assert refused_read.value.status == 403
    writer.close()


def test_a_read_only_account_reads_but_cannot_write(influxd_auth):
    """Grafana's account: SELECT works, a write is refused (403, not permanent: the spool would keep it)."""
    writer = V1Writer(settings(influxd_auth.url, "grafana", "grafana-password"))
    assert "results" in writer.query('SELECT * FROM "face_entry" LIMIT 1')
    with pytest.raises(InfluxError) as refused:
        writer.write([LINE.format(ms=int(time.time() * 1000))])
    assert refused.value.status == 403 and not refused.value.permanent
    writer.close()


def test_a_wrong_password_or_an_unreachable_server_still_fails_at_start(influxd_auth):
    """401 and no answer raise InfluxError, as before: DeferredWriter tries again at the next write."""
    with pytest.raises(InfluxError) as wrong:
        V1Writer(settings(influxd_auth.url, "archiver", "not-the-password"))
    assert wrong.value.status == 401
    with pytest.raises(InfluxError) as unreachable:
        V1Writer(settings(f"http://127.0.0.1:{devservers.free_port()}", "archiver", "archiver-password"))
    assert unreachable.value.status is None


def test_an_admin_account_still_creates_a_missing_database(influxd_auth):
    V1Writer(settings(influxd_auth.url, *ADMIN, database="made_by_v1writer")).close()
    body = requests.get(influxd_auth.url + "/query", auth=ADMIN, params={"q": "SHOW DATABASES"}, timeout=5).json()
    assert ["made_by_v1writer"] in body["results"][0]["series"][0]["values"]


class InfluxDB2V1Stub(http.server.BaseHTTPRequestHandler):
    """InfluxDB 2's v1-compatible API as far as V1Writer uses it: /query answers CREATE DATABASE with 200 and the
    statement error InfluxDB 2.x sends ("not implemented: CREATE DATABASE", influxdata/influxdb#22255); /write takes
    the lines (204) when the v1 account's basic auth is right, else 401."""

    requests: list = []

    def log_message(self, *args):
        pass

    def _authorised(self) -> bool:
        expected = "Basic " + base64.b64encode(b"archiver:archiver-password").decode()
        return self.headers.get("Authorization") == expected

    def _reply(self, status: int, body: dict | None = None):
        data = json.dumps(body).encode() if body is not None else b""
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_POST(self):
        url = urlparse(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode()
        self.requests.append((url.path, parse_qs(url.query), body))
        if not self._authorised():
            return self._reply(401, {"code": "unauthorized", "message": "Unauthorized"})
        if url.path == "/query":
            statement = parse_qs(url.query)["q"][0]
            error = "not implemented: " + " ".join(statement.split()[:2])  # "CREATE DATABASE"
            return self._reply(200, {"results": [{"statement_id": 0, "error": error}]})
        if url.path == "/write":
            return self._reply(204)
        return self._reply(404, {"code": "not found"})


def test_influxdb_2_answering_not_implemented_is_a_database_managed_elsewhere(caplog):
    InfluxDB2V1Stub.requests = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), InfluxDB2V1Stub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with caplog.at_level(logging.INFO, logger="archiver.influx"):
            writer = V1Writer(settings(url, "archiver", "archiver-password"))
        assert any("not implemented: CREATE DATABASE" in r.getMessage() and "managed elsewhere" in r.getMessage()
                   for r in caplog.records)
        writer.write([LINE.format(ms=1_700_000_000_000)])
        (path, params, body) = InfluxDB2V1Stub.requests[-1]
        assert path == "/write" and params["db"] == ["facebus"] and body.startswith("face_entry,")
        with pytest.raises(InfluxError) as wrong:
            V1Writer(settings(url, "archiver", "wrong"))
        assert wrong.value.status == 401
    finally:
        server.shutdown()
        server.server_close()
