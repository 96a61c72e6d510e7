"""Re-measure the no-loss table of docs/reliability.md at full length: real Mosquitto and influxd, the archiver and
the recognizer as separate processes, faults of the durations the issue measured (archiver away 30 s, InfluxDB down
60 s, ...). Prints one markdown row per fault: face events on the bus, entries in InfluxDB, and what else counts.

    .venv/bin/python bench/faults.py [--quick]      (--quick: 5 s faults instead of 30/60 s)

Takes about 4 minutes (40 s with --quick).
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facebus.mqtt import MqttClient  # noqa: E402
from facebus_tools import devservers  # noqa: E402
from tests.factories import face_event, mqtt_settings  # noqa: E402
from tests.integration.test_no_loss import TOPICS, Archiver, entries, publish_events  # noqa: E402
from tests.processes import Availability  # noqa: E402

ROWS: list[tuple[str, str, str]] = []


def row(fault: str, bus_vs_entries: str, other: str) -> None:
    ROWS.append((fault, bus_vs_entries, other))
    print(f"| {fault} | {bus_vs_entries} | {other} |", flush=True)


class Stack:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.broker = devservers.start_mosquitto(folder / "mosquitto")
        self.influx = devservers.start_influxd(folder / "influxd")
        self.watcher = Availability(self.broker.port)
        self.sender = MqttClient(mqtt_settings(self.broker.port, "camera"), TOPICS.service_availability("b"), "bench")
        self.sender.start()
        self.sender.wait_connected(10)
        self.database = f"faults{time.monotonic_ns()}"
        self.archiver = Archiver(folder, self.broker.port, self.influx.url, self.database)

    def entries(self) -> list[str]:
        try:
            return entries(self.influx.url, self.database)
        except Exception:  # noqa: BLE001
            return []

    def wait_entries(self, count: int, timeout_s: float = 120) -> int:
        deadline = time.monotonic() + timeout_s
        while len(self.entries()) < count and time.monotonic() < deadline:
            time.sleep(0.2)
        return len(self.entries())

    def restart_influx(self) -> None:
        self.influx = devservers.start_influxd(self.folder / "influxd", port=self.influx.port)

    def close(self) -> None:
        self.archiver.stop(signal.SIGKILL)
        self.sender.stop()
        self.watcher.stop()
        self.influx.stop()
        self.broker.stop()


def archiver_away(stack: Stack, away_s: float) -> None:
    stack.archiver.start(stack.watcher)
    stack.archiver.stop()
    sent, deadline, n = [], time.monotonic() + away_s, 0
    while time.monotonic() < deadline:  # a camera seeing known people: one event a second
        sent += publish_events(stack.sender, 1, start=n)
        n += 1
        time.sleep(1)
    stack.archiver.start(stack.watcher)
    got = stack.wait_entries(len(sent))
    row(f"archiver stopped {away_s:.0f} s while a camera sees known people", f"{len(sent)} on the bus, {got} entries",
        "")
    stack.archiver.stop()


def archiver_sigkill(stack: Stack) -> None:
    before = len(stack.entries())
    stack.archiver.start(stack.watcher)
    stack.influx.stop()
    sent = publish_events(stack.sender, 24)
    time.sleep(1)
    stack.archiver.stop(signal.SIGKILL)
    stack.restart_influx()
    stack.archiver.start(stack.watcher)
    got = stack.wait_entries(before + 24) - before
    ids = set(stack.entries())
    orphans = [c for c in stack.archiver.crops() if not any(i[:8] in c.name for i in ids)]
    row("archiver `kill -9` with entries pending", f"{len(sent)} on the bus, {got} entries",
        f"{len(orphans)} crops without an entry")
    stack.archiver.stop()
    stack.influx.stop()
    stack.archiver.start(stack.watcher)  # InfluxDB down at start: it starts all the same
    sent = publish_events(stack.sender, 11, start=100)
    time.sleep(1)
    stack.archiver.stop()
    stack.restart_influx()
    stack.archiver.start(stack.watcher)
    got = stack.wait_entries(before + 24 + 11) - before - 24
    said = [line.split(": ", 1)[-1][:60] for line in stack.archiver.log().splitlines()
            if "stopping with 11 entries" in line]
    row("archiver SIGTERM while InfluxDB is down", f"{len(sent)} on the bus, {got} entries",
        f"logged '{said[-1]}…'" if said else "not logged")


def influx_down(stack: Stack, down_s: float) -> None:
    before = len(stack.entries())
    stack.influx.stop()
    lines_before, cpu_before = len(stack.archiver.log().splitlines()), stack.archiver.cpu_s()
    started = time.monotonic()
    sent = publish_events(stack.sender, 600, start=1000)
    time.sleep(max(0.0, down_s - (time.monotonic() - started)))
    lines = sum(" WARNING " in line or " ERROR " in line for line in stack.archiver.log().splitlines()[lines_before:])
    cpu_s = stack.archiver.cpu_s() - cpu_before
    stack.restart_influx()
    got = stack.wait_entries(before + 600) - before
    row(f"InfluxDB down {down_s:.0f} s with 600 entries pending", f"{len(sent)} on the bus, {got} entries",
        f"{lines} warning/error lines, {cpu_s:.1f} CPU-s in {time.monotonic() - started:.0f} s")


def bad_events(stack: Stack) -> None:
    import json

    before = len(stack.entries())
    good = face_event("Erin", "door", event_id="erin0").model_dump(mode="json")
    bad = [dict(good, captured_at="9999-12-31T23:59:59Z", event_id="y9999"),
           dict(good, captured_at="0001-01-01T00:00:00Z", event_id="y1"),
           dict(good, person="A" * 70_000, event_id="huge"),
           dict(good, captured_at="2200-01-01T00:00:00Z", event_id="y2200"),
           dict(good, person="", event_id="empty")]
    for payload in bad:
        stack.sender.publish(TOPICS.face_with_crop("door"), json.dumps(payload), qos=1).wait_for_publish(10)
    sent = publish_events(stack.sender, 600, start=5000)
    got = stack.wait_entries(before + 600) - before
    refused = stack.archiver.log().count("bad face event")
    row("events dated year 1, 9999 and 2200, a 70,000-character person, person \"\"; then 600 good ones",
        f"{len(sent)} good on the bus, {got} entries", f"{refused} bad events refused with their fields logged")


def id_flood(folder: Path, port: int, watcher: Availability) -> None:
    from tests.integration.test_recognizer_processes import PHOTO, recognizer

    service = recognizer(folder, port)
    service.start(watcher)
    camera = MqttClient(mqtt_settings(port, "flood"), TOPICS.service_availability("flood"), "flood")
    camera.start()
    camera.wait_connected(10)
    time.sleep(2)
    rss_before = service.rss_mb()
    frame = PHOTO + bytes(8 * 1024**2 - 1024 - len(PHOTO))
    peak = rss_before
    for n in range(100):
        camera.publish(TOPICS.frame(f"invented-{n}"), frame).wait_for_publish(10)
        peak = max(peak, service.rss_mb())
    for _ in range(20):
        time.sleep(0.25)
        peak = max(peak, service.rss_mb())
    row("100 invented device ids, one 8 MiB frame each", "-",
        f"recognizer RSS {rss_before:.0f} → peak {peak:.0f} MiB, {service.rss_mb():.0f} MiB after")
    camera.stop()
    service.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="5 s faults instead of 30 s and 60 s")
    args = parser.parse_args()
    print("| fault or input | events on the bus vs entries | other |\n|---|---|---|", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        stack = Stack(Path(tmp))
        try:
            archiver_away(stack, 5 if args.quick else 30)
            archiver_sigkill(stack)
            influx_down(stack, 5 if args.quick else 60)
            bad_events(stack)
            id_flood(Path(tmp), stack.broker.port, stack.watcher)
        finally:
            stack.close()
    return 0


if __name__ == "__main__":
    threading.excepthook = lambda args: None
    sys.exit(main())
