"""facebus services as child processes for the tests that stop, kill and restart them, and a watcher of the
services' availability topics."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from facebus.mqtt import MqttClient
from facebus.topics import Topics
from tests.conftest import wait_for
from tests.factories import mqtt_settings

TOPICS = Topics()


class Availability:
    """Counts the live ``online`` messages per service, as a dashboard watching the availability topics would."""

    def __init__(self, port: int) -> None:
        self.online: dict[str, int] = {}
        self.client = MqttClient(mqtt_settings(port, "watch"), TOPICS.service_availability("test-watch"), "watch")
        self.client.subscribe(TOPICS.service_availability("+"), self._on, qos=1)
        self.client.start()
        assert self.client.wait_connected(10)

    def _on(self, message) -> None:
        if message.payload == b"online" and not message.retain:
            service = TOPICS.service_of(message.topic)
            self.online[service] = self.online.get(service, 0) + 1

    def count(self, service: str) -> int:
        return self.online.get(service, 0)

    def stop(self) -> None:
        self.client.stop()


class ServiceProcess:
    """``facebus <command>`` as a child process with ``env`` on top of the environment; its log in ``log_path``.
    ``name`` is the service name it announces on its availability topic."""

    def __init__(self, command: str, name: str, log_path: Path, env: dict[str, str]) -> None:
        self.command, self.name, self.log_path = command, name, log_path
        self.env = dict(os.environ, FACEBUS_LOG_JSON="0", **env)
        self.process: subprocess.Popen | None = None

    def spawn(self) -> None:
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "facebus_tools", self.command], env=self.env,
                                            stdout=log, stderr=subprocess.STDOUT)

    def start(self, online: Availability, timeout_s: float = 60) -> None:
        """Spawn and wait until it announces ``online`` (fails with its log when it exits first)."""
        before = online.count(self.name)
        self.spawn()
        assert wait_for(lambda: online.count(self.name) > before or self.process.poll() is not None, timeout_s)
        assert self.process.poll() is None, self.log()[-3000:]

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process and self.process.poll() is None:
            self.process.send_signal(sig)
            self.process.wait(30)

    def cpu_s(self) -> float:
        """User + system CPU seconds the process has used so far."""
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def rss_mb(self) -> float:
        """Resident memory of the process itself (not its workers) in MiB."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError("no VmRSS")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
