"""``facebus demo``: the main job end to end on real input, with nothing installed beyond ``make``'s packages.

Starts a private Mosquitto and InfluxDB 1.x on free loopback ports (data under ``--state-dir``), the Mosquitto one
secured as in production (a ``facebus broker init`` folder: TLS, an account per service and camera, the ACL), the
recognizer (gallery: ``samples/gallery``) and the archiver as separate processes, publishes the bundled clip through the
publisher, waits until the last face event is archived, prints the entries read back from InfluxDB and where the
crops are, and stops everything it started.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from facebus.mqtt import MqttClient
from facebus.settings import InfluxSettings, MqttSettings
from facebus.topics import ONLINE, Topics
from facebus_tools import broker, devservers

DEVICE_ID = "hamilton"


@dataclass(frozen=True)
class Row:
    time: str
    device: str
    person: str
    category: str
    distance: float
    crop_path: str
    visitor_id: str | None = None


class Pipeline:
    """Mosquitto + InfluxDB + recognizer + archiver running under ``state_dir``; a context manager."""

    def __init__(self, state_dir: Path, gallery: str, throttle_s: float = 120.0, extra_env: dict | None = None):
        self.state_dir = Path(state_dir)
        self.gallery = gallery
        self.throttle_s = throttle_s
        self.extra_env = extra_env or {}
        self.crops_dir = self.state_dir / "crops"
        self._stack = ExitStack()
        self.faces_seen: list[bytes] = []
        self.decisions_seen: list[bytes] = []
        self._last_face_at = time.monotonic()

    def __enter__(self) -> "Pipeline":
        if self.state_dir.exists():
            shutil.rmtree(self.state_dir)
        self.state_dir.mkdir(parents=True)
        try:
            self.broker_dir = self.state_dir / "broker"
            broker.init(self.broker_dir, [], port=devservers.free_port(), bind="127.0.0.1")
            broker.add_camera(self.broker_dir, DEVICE_ID)
            self.mosquitto = devservers.start_mosquitto(self.state_dir / "mosquitto", secure_dir=self.broker_dir)
            self._stack.callback(self.mosquitto.stop)
            self.influxd = devservers.start_influxd(self.state_dir / "influxdb")
            self._stack.callback(self.influxd.stop)
            self.env = dict(
                os.environ,
                FACEBUS_MQTT_HOST="127.0.0.1",
                FACEBUS_INFLUX_URL=self.influxd.url,
                FACEBUS_LOG_JSON="0",
                # Beside the state folder, which each run starts afresh: a second `make demo` meets the same strangers
                # again under the same visitor ids. Never in the repo's sample gallery.
                FACEBUS_VISITORS_STORE=str(self.state_dir.parent / f"{self.state_dir.name}-visitors"),
                **self.extra_env,
            )
            self.watcher = MqttClient(self.mqtt_settings("viewer"), None, "demo")
            self._online: set[str] = set()
            self.watcher.subscribe(Topics().service_availability("+"), self._on_availability, qos=1)
            self.watcher.subscribe(Topics().all_faces, self._on_face, qos=1)
            self.watcher.subscribe(Topics().all_access, lambda m: self.decisions_seen.append(m.payload), qos=1)
            self.watcher.start()
            self._stack.callback(self.watcher.stop)
            from facebus.settings import LiveSettings
            from recognizer.live import LivePage

            self.live = LivePage(self.mqtt_settings("viewer"), LiveSettings(), port=0)
            self.live.start()
            self._stack.callback(self.live.stop)
            self.recognizer = self.spawn("recognizer", "--gallery", self.gallery)
            self.archiver = self.spawn(
                "archiver", "--crops-dir", str(self.crops_dir), "--throttle-s", str(self.throttle_s),
                "--spool-path", str(self.state_dir / "archiver-spool.sqlite"),
            )
            self.wait_online({"recognizer", "archiver"}, timeout_s=300)
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self._stack.close()

    def credentials(self, account: str) -> Path:
        """The env file of an MQTT account (recognizer, archiver, viewer, the camera) of the demo's broker."""
        return broker.BrokerDir.load(self.broker_dir).credentials(account)

    def mqtt_settings(self, account: str) -> MqttSettings:
        """Settings of a client logged in as ``account`` over TLS."""
        return MqttSettings(_env_file=self.credentials(account), host="127.0.0.1")

    def influx_settings(self) -> InfluxSettings:
        return InfluxSettings(url=self.influxd.url, api="v1")

    def spawn(self, service: str, *args: str) -> subprocess.Popen:
        """Start ``facebus <service> <args>`` logged in as ``service``, with its log in ``state_dir/<service>.log``;
        stopped on exit."""
        log = (self.state_dir / f"{service}.log").open("ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "facebus_tools", "--env-file", str(self.credentials(service)), service, *args],
            env=self.env, stdout=log, stderr=subprocess.STDOUT,
        )

        def stop() -> None:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(20)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()
            log.close()

        self._stack.callback(stop)
        return process

    def _on_availability(self, message) -> None:
        service = message.topic.split("/")[-2]
        if message.payload.decode(errors="replace") == ONLINE:
            self._online.add(service)
        else:
            self._online.discard(service)

    def _on_face(self, message) -> None:
        self.faces_seen.append(message.payload)
        self._last_face_at = time.monotonic()

    def wait_online(self, services: set[str], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while not services <= self._online:
            for name, process in (("recognizer", self.recognizer), ("archiver", self.archiver)):
                if process.poll() is not None:
                    raise RuntimeError(f"{name} exited with code {process.returncode}; see {self.state_dir}/{name}.log")
            if time.monotonic() > deadline:
                raise TimeoutError(f"services not online after {timeout_s} s: {services - self._online}")
            time.sleep(0.1)

    def publish(self, video: str, speed: float, fps_max: float = 5.0, device_id: str = DEVICE_ID) -> int:
        """Run the publisher on ``video`` to the end; returns its exit code."""
        args = ["--source", video, "--device-id", device_id, "--speed", str(speed), "--fps-max", str(fps_max)]
        if not sys.stderr.isatty():
            args.append("--no-progress")
        command = [sys.executable, "-m", "facebus_tools", "--env-file", str(self.credentials(device_id)),
                   "publisher", *args]
        return subprocess.run(command, env=self.env).returncode

    def wait_quiet(self, quiet_s: float = 4.0, timeout_s: float = 120.0) -> None:
        """Wait until no face event has been seen for ``quiet_s`` (the recognizer has drained its slots)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() - self._last_face_at < quiet_s and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop_archiver(self) -> None:
        """Stop the archiver (SIGTERM: it flushes its batch to InfluxDB first)."""
        self.archiver.terminate()
        self.archiver.wait(30)

    def entries(self, measurement: str = "face_entry") -> list[Row]:
        from archiver.influx import V1Writer

        body = V1Writer(self.influx_settings()).query(f'SELECT * FROM "{measurement}" WHERE time > now() - 1d')
        rows = []
        for series in body["results"][0].get("series", []):
            columns = series["columns"]
            for values in series["values"]:
                item = dict(zip(columns, values, strict=True))
                rows.append(
                    Row(item["time"], item["device"], item["person"], item["category"], item["distance"],
                        item["crop_path"], item.get("visitor_id"))
                )
        return rows


def print_table(rows: list[Row], crops_dir: Path) -> None:
    header = f"{'time (UTC)':<26} {'device':<10} {'person':<22} {'category':<11} {'distance':>8}  crop file"
    print(header)
    print("-" * len(header))
    for row in rows:
        who = f"{row.person} {row.visitor_id}" if row.visitor_id else row.person
        print(f"{row.time:<26} {row.device:<10} {who:<22} {row.category:<11} {row.distance:>8.3f}  {row.crop_path}")
    print(f"\n{len(rows)} entries; crops under {crops_dir.resolve()}")


def print_decisions(payloads: list[bytes]) -> None:
    """The access decisions the camera received, one line each."""
    from facebus.events import AccessDecision

    print(f"\naccess decisions sent to the camera ({len(payloads)}):")
    for payload in payloads:
        d = AccessDecision.model_validate_json(payload)
        print(f"  {d.captured_at.isoformat(timespec='milliseconds')}  {d.device_id:<10} {d.decision.value:<8} "
              f"{d.reason.value:<11} {d.person or ''}")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``facebus demo`` flags on ``parser``."""
    parser.add_argument("--state-dir", default=".state/demo", help="where the demo's servers keep their data and crops")
    parser.add_argument("--video", default="samples/faces-dev/video/short_hamilton_clip.mp4")
    parser.add_argument("--gallery", default="samples/gallery")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed of the clip (1 = real time)")


def main(args: argparse.Namespace) -> int:
    started = time.monotonic()
    state_dir = Path(args.state_dir)
    with Pipeline(state_dir, args.gallery) as pipeline:
        print(f"live page: {pipeline.live.url} (user viewer, password in {pipeline.credentials('viewer')}); "
              "open it while the clip plays", flush=True)
        print(f"mosquitto on 127.0.0.1:{pipeline.mosquitto.port} (TLS, accounts and ACL of {pipeline.broker_dir}), "
              f"influxd on {pipeline.influxd.url}, "
              f"recognizer and archiver online; publishing {args.video} at speed {args.speed}", flush=True)
        code = pipeline.publish(args.video, args.speed)
        if code != 0:
            print(f"publisher failed with exit code {code}", file=sys.stderr)
            return 1
        pipeline.wait_quiet()
        pipeline.stop_archiver()
        rows = pipeline.entries()
        print_decisions(pipeline.decisions_seen)
        print(f"\n{len(pipeline.faces_seen)} face events published; archived entries read back from InfluxDB:\n")
        print_table(rows, pipeline.crops_dir)
        print(f"logs: {state_dir.resolve()}/*.log; demo took {time.monotonic() - started:.0f} s")
    return 0 if rows else 1
