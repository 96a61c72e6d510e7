"""A stub of the part of Grafana's HTTP API that ``facebus grafana push`` uses (no Grafana can be installed here):
it records every request and answers like Grafana 11, the datasource and folder missing until created."""

from __future__ import annotations

import contextlib
import http.server
import json
import threading
from collections.abc import Iterator


class GrafanaStub(http.server.BaseHTTPRequestHandler):
    """Records every request; answers like Grafana 11: the datasource and folder are missing until created."""

    requests: list[dict]
    state: dict

    def _reply(self, status: int, body: dict | list) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _handle(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.requests.append({"method": self.command, "path": self.path, "auth": self.headers.get("Authorization"),
                              "body": body})
        route = (self.command, self.path)
        if route == ("GET", "/api/datasources/uid/facebus-influxdb"):
            if "datasource" in self.state:
                return self._reply(200, self.state["datasource"])
            return self._reply(404, {"message": "Data source not found"})
        if route == ("POST", "/api/datasources"):
            self.state["datasource"] = body
            return self._reply(200, {"message": "Datasource added", "id": 1, "datasource": body})
        if route == ("PUT", "/api/datasources/uid/facebus-influxdb"):
            return self._reply(200, {"message": "Datasource updated", "id": 1, "datasource": body})
        if route == ("GET", "/api/folders/facebus"):
            if self.state.get("folder", {}).get("uid") == "facebus":
                return self._reply(200, self.state["folder"])
            return self._reply(404, {"message": "folder not found"})
        if route == ("GET", "/api/folders"):
            return self._reply(200, [self.state["folder"]] if "folder" in self.state else [])
        if route == ("POST", "/api/folders"):
            self.state["folder"] = body
            return self._reply(200, {"id": 1, **body})
        if route == ("POST", "/api/dashboards/db"):
            return self._reply(200, {"status": "success", "uid": body["dashboard"]["uid"], "version": 1})
        return self._reply(404, {"message": "not found"})

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, *args) -> None:
        pass


@contextlib.contextmanager
def serve_grafana_stub() -> Iterator[tuple[str, list[dict], dict]]:
    """``(base URL, recorded requests, state)`` of a stub on a free loopback port, for the ``with`` block. Set
    ``state["folder"]`` beforehand for a folder that exists already."""
    handler = type("Handler", (GrafanaStub,), {"requests": [], "state": {}})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", handler.requests, handler.state
    finally:
        server.shutdown()
        server.server_close()
