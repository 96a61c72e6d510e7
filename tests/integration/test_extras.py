"""Every extra installs what its commands import (pyproject.toml): the facebus wheel, built once, goes non-editable
into a fresh virtualenv per extra (``pip install "facebus-….whl[<extra>]"``, no system site packages), and every
command of that extra runs there from a folder outside the repository, so the source tree cannot stand in for the
install: ``facebus --help``, ``facebus schema``, ``--help`` of each of the extra's commands and their actions, and
one real action per extra, checked as a user would see it (frames on the broker, a face named, an entry in
InfluxDB, the gallery listed, the dashboards pushed, a secured broker that Mosquitto runs).

The six virtualenvs are installed by two worker threads, in the order of the tests, while the tests run; a test
waits only for its own. A failed install or command fails its test with pip's or the command's stderr.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import tomllib
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facebus.events import CAPTURE_TIME_PROPERTY, format_time, json_schema_text
from facebus.mqtt import publish_properties
from facebus.topics import Topics
from facebus_tools import cli, devservers
from tests.conftest import wait_for
from tests.support.grafana_stub import serve_grafana_stub

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]  # the repository: tests/integration/test_extras.py
SAMPLES = ROOT / "samples"
GALLERY = SAMPLES / "gallery"
FACES_DEV = SAMPLES / "faces-dev"
TOPICS = Topics()

# extra -> the commands it serves, from the command line's own table (demo: every service at once, its extra is the
# union of theirs; not installed here)
NOT_INSTALLED_HERE = {"demo"}
EXTRA_COMMANDS = {extra: tuple(c for c, e in cli.EXTRAS.items() if e == extra)
                  for extra in dict.fromkeys(cli.EXTRAS.values()) if extra not in NOT_INSTALLED_HERE}
# What the wheel is built from: the checkout without what is not source (a copy, so that setuptools' build/ and
# *.egg-info neither land in the shared checkout nor bring stale files into the wheel).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", ".state", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".ruff_cache", "secure")
PIP_TIMEOUT_S = 900
INSTALL_WORKERS = 2  # pip is CPU-bound here (the cache serves every file): one install per core
COMMAND_TIMEOUT_S = 120


def clean_env(**overrides: str) -> dict[str, str]:
    """The environment of every child: this one without facebus settings or Python paths of the dev venv, help text
    wide enough that no path is wrapped, plain-text logs."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("FACEBUS_", "PYTHON", "VIRTUAL_ENV", "AWS_", "INFLUX_", "GRAFANA_"))}
    return env | {"COLUMNS": "300", "FACEBUS_LOG_JSON": "0"} | overrides


def described(what: str, done: subprocess.CompletedProcess) -> str:
    return (f"{what} exited with {done.returncode}\n--- stderr ---\n{done.stderr[-8000:]}\n"
            f"--- stdout ---\n{done.stdout[-4000:]}")


class InstallError(RuntimeError):
    """A virtualenv or pip step that failed; the message holds its stderr."""


def _step(args: list[str], what: str, cwd: Path, timeout_s: float) -> None:
    done = subprocess.run(args, cwd=cwd, env=clean_env(), capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise InstallError(described(what, done))


@dataclass(frozen=True)
class Venv:
    """A fresh virtualenv holding the wheel with one extra; commands run in ``cwd``, an empty folder outside the
    repository."""

    extra: str
    root: Path
    cwd: Path

    @property
    def facebus(self) -> str:
        return str(self.root / "bin" / "facebus")

    @functools.cached_property
    def site_packages(self) -> Path:
        return Path(self.python("import sysconfig; print(sysconfig.get_paths()['purelib'])").strip()).resolve()

    def run(self, *args: str, timeout_s: float = COMMAND_TIMEOUT_S, **env: str) -> subprocess.CompletedProcess:
        """``facebus *args``; fails the test with its stderr unless it exits 0."""
        done = subprocess.run([self.facebus, *args], cwd=self.cwd, env=clean_env(**env), capture_output=True,
                              text=True, timeout=timeout_s)
        if done.returncode != 0:
            pytest.fail(described(f"[{self.extra} venv] facebus {' '.join(args)}", done), pytrace=False)
        return done

    def python(self, code: str) -> str:
        done = subprocess.run([str(self.root / "bin" / "python"), "-c", code], cwd=self.cwd, env=clean_env(),
                              capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
        if done.returncode != 0:
            pytest.fail(described(f"[{self.extra} venv] python -c {code!r}", done), pytrace=False)
        return done.stdout

    @contextlib.contextmanager
    def service(self, log_path: Path, *args: str, **env: str) -> Iterator[subprocess.Popen]:
        """``facebus *args`` as a child process (stdout and stderr in ``log_path``), stopped at the end."""
        with log_path.open("wb") as log:
            process = subprocess.Popen([self.facebus, *args], cwd=self.cwd, env=clean_env(**env), stdout=log,
                                       stderr=subprocess.STDOUT)
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait(30)


def install(wheel: Path, extra: str, folder: Path) -> Venv:
    root, cwd = folder / f"venv-{extra}", folder / f"cwd-{extra}"
    cwd.mkdir(parents=True)
    _step([sys.executable, "-m", "venv", str(root)], f"python -m venv {root}", cwd, 120)
    # --no-compile: Python compiles what is imported when it is imported; compiling all of botocore & co. up front
    # would take longer than the install itself.
    _step([str(root / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check", "-q", "--no-compile",
           f"{wheel}[{extra}]"], f"pip install '{wheel.name}[{extra}]'", cwd, PIP_TIMEOUT_S)
    return Venv(extra, root, cwd)


class Venvs:
    """One virtualenv per extra, installed in worker threads as soon as asked for (:meth:`prefetch`)."""

    def __init__(self, wheel: Path, folder: Path) -> None:
        self.wheel, self.folder = wheel, folder
        self._pool = ThreadPoolExecutor(max_workers=INSTALL_WORKERS, thread_name_prefix="venv")
        self._futures: dict[str, Future] = {}
        self._lock = threading.Lock()

    def prefetch(self, extras) -> None:
        with self._lock:
            for extra in extras:
                if extra not in self._futures:
                    self._futures[extra] = self._pool.submit(install, self.wheel, extra, self.folder)

    def get(self, extra: str) -> Venv:
        self.prefetch([extra])
        try:
            return self._futures[extra].result()
        except InstallError as exc:
            pytest.fail(f"[{extra} venv] {exc}", pytrace=False)

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The facebus wheel, built once from (a copy of) the checkout this file is in."""
    folder = tmp_path_factory.mktemp("wheel")
    source, dist = folder / "source", folder / "dist"
    shutil.copytree(ROOT, source, ignore=NOT_SOURCE)
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--disable-pip-version-check", "-q",
                           "-w", str(dist), str(source)], cwd=folder, env=clean_env(), capture_output=True, text=True,
                          timeout=PIP_TIMEOUT_S)
    if done.returncode != 0:
        pytest.fail(described(f"pip wheel {ROOT}", done), pytrace=False)
    (built,) = dist.glob("facebus-*.whl")
    return built


@pytest.fixture(scope="module")
def venvs(wheel, tmp_path_factory, request) -> Iterator[Venvs]:
    """The virtualenvs; those of the selected tests (named test_<extra>_extra_…) are queued for install at once."""
    found = Venvs(wheel, tmp_path_factory.mktemp("venvs"))
    selected = {item.name for item in request.session.items if getattr(item, "module", None) is sys.modules[__name__]}
    found.prefetch(e for e in EXTRA_COMMANDS if any(name.startswith(f"test_{e}_extra") for name in selected))
    yield found
    found.close()


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    """A plain Mosquitto of this module's own (no retained messages of other tests' services on it)."""
    server = devservers.start_mosquitto(tmp_path_factory.mktemp("extras-mosquitto"))
    yield server
    server.stop()


# --- what every extra's venv must run ------------------------------------------------------------------------------


@functools.cache
def actions_of(command: str) -> tuple[str, ...]:
    """The subcommands of ``facebus <command>`` (faces add, list …), as the checkout's own parser has them."""
    def subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        return found[0].choices if found else {}

    return tuple(subparsers(subparsers(cli.build_parser())[command]))


def check_commands(venv: Venv) -> None:
    """The installed code (not the checkout) answers ``facebus --help``, ``schema`` and ``--help`` of each command
    of the extra and of each of its actions."""
    packages = ("facebus", "publisher", "recognizer", "archiver", "facebus_tools")
    code = f"import importlib\nfor p in {packages!r}: print(importlib.import_module(p).__file__)"
    for line in venv.python(code).split():
        assert Path(line).resolve().is_relative_to(venv.site_packages), line

    usage = venv.run("--help").stdout
    assert usage.startswith("usage: facebus"), usage
    for command in [*cli.SERVICES, *cli.TOOLS, "schema"]:
        assert re.search(rf"^\s+{command}\s+\S", usage, re.M), (command, usage)
    assert json.loads(venv.run("schema").stdout) == json.loads(json_schema_text())

    for command in EXTRA_COMMANDS[venv.extra]:
        text = venv.run(command, "--help").stdout
        assert text.startswith(f"usage: facebus {command} "), text
        for action in actions_of(command):
            text = venv.run(command, action, "--help").stdout
            assert text.startswith(f"usage: facebus {command} {action} "), text
            assert "options:" in text


def test_every_command_belongs_to_an_extra_checked_here():
    assert set(cli.EXTRAS) == set(cli.SERVICES) | set(cli.TOOLS), "a command without its extra in cli.EXTRAS"
    assert set(cli.EXTRAS.values()) <= set(tomllib.loads((ROOT / "pyproject.toml").read_text())
                                           ["project"]["optional-dependencies"])
    covered = {command for commands in EXTRA_COMMANDS.values() for command in commands}
    assert covered | NOT_INSTALLED_HERE == set(cli.SERVICES) | set(cli.TOOLS)
    assert actions_of("grafana") == ("push",) and "init" in actions_of("broker") and "list" in actions_of("faces")


# --- a plain MQTT client, as a user's would be --------------------------------------------------------------------


class Bus:
    """A paho client on 127.0.0.1:``port`` collecting the messages of ``topics`` (subscribed before it returns)."""

    def __init__(self, port: int, topics: list[str]) -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._lock = threading.Lock()
        self._subscribed = threading.Event()
        self.client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        self.client.on_message = self._on_message
        self.client.on_subscribe = lambda *args: self._subscribed.set()
        self.client.on_connect = lambda client, *args: client.subscribe([(topic, 1) for topic in topics])
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        assert self._subscribed.wait(10), "no SUBACK from the broker"

    def _on_message(self, client, userdata, message) -> None:
        with self._lock:
            self.messages.append(message)

    def on(self, topic: str) -> list[paho.MQTTMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]

    def json(self, topic: str) -> list[dict]:
        return [json.loads(m.payload) for m in self.on(topic)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def bus_factory():
    made: list[Bus] = []

    def make(port: int, topics: list[str]) -> Bus:
        made.append(Bus(port, topics))
        return made[-1]

    yield make
    for bus in made:
        bus.close()


def log_of(path: Path) -> str:
    return path.read_text(errors="replace")[-5000:] if path.exists() else "(no log)"


def stop_cleanly(process: subprocess.Popen, log_path: Path) -> None:
    """SIGTERM, as systemd or Docker stop it: the service ends by itself with exit code 0."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(30) == 0, log_of(log_path)


# --- one test per extra -------------------------------------------------------------------------------------------


def test_publisher_extra_publishes_a_folder_of_images(venvs, broker, bus_factory, tmp_path):
    venv = venvs.get("publisher")
    check_commands(venv)

    photos = sorted((FACES_DEV / "strangers").glob("*.jpg"))[:2]
    folder = tmp_path / "frames"
    folder.mkdir()
    for photo in photos:
        shutil.copy(photo, folder)
    device = "extras-publisher"
    bus = bus_factory(broker.port, [TOPICS.frame(device)])
    done = venv.run("publisher", "--source", str(folder), "--device-id", device, "--no-loop", "--no-realtime",
                    "--progress", "--mqtt-host", "127.0.0.1", "--mqtt-port", str(broker.port),
                    "--mqtt-client-id", f"extras-publisher-{uuid.uuid4().hex[:8]}", timeout_s=60)
    assert wait_for(lambda: len(bus.on(TOPICS.frame(device))) >= 2, 10), done.stdout
    frames = bus.on(TOPICS.frame(device))
    assert len(frames) == 2 and all(m.payload.startswith(b"\xff\xd8") and m.payload.endswith(b"\xff\xd9")
                                    for m in frames)
    assert "'frames_published': 2" in done.stdout, done.stdout
    assert "2/2" in done.stderr, done.stderr  # the --progress bar (tqdm)


def test_recognizer_extra_names_a_face_and_the_live_page_shows_it(venvs, broker, bus_factory, tmp_path):
    venv = venvs.get("recognizer")
    check_commands(venv)

    device, port = "extras-door", str(broker.port)
    gallery_topic, online_topic = TOPICS.gallery_state(), TOPICS.service_availability("recognizer")
    bus = bus_factory(broker.port, [gallery_topic, online_topic, TOPICS.face(device), TOPICS.access(device)])
    live_port = devservers.free_port()
    live_url = f"http://127.0.0.1:{live_port}"
    recognizer_log, live_log = tmp_path / "recognizer.log", tmp_path / "live.log"
    with (venv.service(recognizer_log, "recognizer", "--gallery", str(GALLERY), "--workers", "1",
                       "--cache-dir", str(tmp_path / "cache"), "--visitors-store", str(tmp_path / "visitors"),
                       "--gallery-poll-s", "0", "--mqtt-port", port,
                       "--mqtt-client-id", f"extras-recognizer-{uuid.uuid4().hex[:8]}") as recognizer,
          venv.service(live_log, "live", "--port", str(live_port), "--mqtt-port", port,
                       "--mqtt-client-id", f"extras-live-{uuid.uuid4().hex[:8]}") as live):
        # the gallery encoded with the packaged YuNet and SFace models, in force
        assert wait_for(lambda: any(m.payload == b"online" for m in bus.on(online_topic))
                        or recognizer.poll() is not None, 90), log_of(recognizer_log)
        assert recognizer.poll() is None, log_of(recognizer_log)
        assert wait_for(lambda: bus.on(gallery_topic), 10), log_of(recognizer_log)
        state = bus.json(gallery_topic)[-1]
        assert state["model"] == "yunet-sface" and not state["rejected"], state
        assert {p["person"]: (p["category"], p["images"]) for p in state["people"]} == gallery_layout()

        assert wait_for(lambda: http_get(live_url + "/healthz")[0] == 200 or live.poll() is not None, 30), \
            log_of(live_log)
        status, page = http_get(live_url + "/")
        assert status == 200 and "<html" in page.lower(), page[:500]  # live.html, package data

        # a camera looking at Barack Obama, 5 frames a second (capture time), until his face event comes
        photo = (FACES_DEV / "probe" / "Barack_Obama" / "obama_small.jpg").read_bytes()
        start = datetime.now(timezone.utc)

        def decided() -> list[dict]:
            return [e for e in bus.json(TOPICS.face(device)) if e["event_type"] == "decided"]

        for n in range(50):
            props = publish_properties({CAPTURE_TIME_PROPERTY: format_time(start + timedelta(seconds=0.2 * n))})
            bus.client.publish(TOPICS.frame(device), photo, properties=props).wait_for_publish(5)
            if wait_for(decided, 0.2):
                break
        assert wait_for(decided, 20), log_of(recognizer_log)
        event = decided()[0]
        assert (event["person"], event["category"], event["model"]) == ("Barack_Obama", "authorised", "yunet-sface")
        assert wait_for(lambda: bus.json(TOPICS.access(device)), 10)
        assert bus.json(TOPICS.access(device))[0]["decision"] == "granted"
        assert wait_for(lambda: "Barack_Obama" in http_get(live_url + "/api/state")[1], 10), log_of(live_log)

        stop_cleanly(recognizer, recognizer_log)
        stop_cleanly(live, live_log)

    # `facebus faces` is the faces extra's (it also reads InfluxDB): here it names the extra to install
    done = subprocess.run([venv.facebus, "faces", "list", "--gallery", str(GALLERY)], cwd=venv.cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 2, described("faces list in a recognizer-only install", done)
    assert "which this install lacks: pip install 'facebus[faces]'" in done.stderr and "Traceback" not in done.stderr

    # face-recognition is the README's separate --no-deps step: without it `--model dlib` ends at once, saying so
    done = subprocess.run([venv.facebus, "recognizer", "--model", "dlib", "--gallery", str(GALLERY),
                           "--cache-dir", str(tmp_path / "dlib-cache"), "--mqtt-port", port], cwd=venv.cwd,
                          env=clean_env(), capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 1, described("recognizer --model dlib without face_recognition", done)
    assert "the dlib model needs face_recognition" in done.stdout + done.stderr


def test_archiver_extra_archives_a_face_event_and_its_crop(venvs, broker, influxd, bus_factory, tmp_path):
    venv = venvs.get("archiver")
    check_commands(venv)
    from archiver.influx import V1Writer
    from facebus.settings import InfluxSettings
    from tests.factories import face_event

    device, database = "extras-archiver", f"extras{uuid.uuid4().hex[:8]}"
    online_topic = TOPICS.service_availability("archiver")
    bus = bus_factory(broker.port, [online_topic])
    crops = tmp_path / "crops"
    log_path = tmp_path / "archiver.log"
    with venv.service(log_path, "archiver", "--influx-url", influxd.url, "--influx-database", database,
                      "--crops-dir", str(crops), "--spool-path", str(tmp_path / "spool.sqlite"), "--throttle-s", "0",
                      "--flush-interval-s", "0.2", "--mqtt-port", str(broker.port),
                      "--mqtt-client-id", f"extras-archiver-{uuid.uuid4().hex[:8]}") as archiver:
        assert wait_for(lambda: any(m.payload == b"online" for m in bus.on(online_topic))
                        or archiver.poll() is not None, 60), log_of(log_path)
        assert archiver.poll() is None, log_of(log_path)

        event_id = uuid.uuid4().hex
        event = face_event("Alice", device, datetime.now(timezone.utc) - timedelta(seconds=5), event_id=event_id)
        bus.client.publish(TOPICS.face_with_crop(device), event.to_json(), qos=1).wait_for_publish(10)

        influx = V1Writer(InfluxSettings(url=influxd.url, database=database))

        def archived() -> list[list]:
            try:
                body = influx.query('SELECT person, event_id FROM "face_entry" WHERE time > now() - 1d')
            except Exception:  # noqa: BLE001 - the database is created by the archiver's first write
                return []
            return [row[1:] for s in body["results"][0].get("series", []) for row in s["values"]]

        try:
            assert wait_for(archived, 20), log_of(log_path)
            assert archived() == [["Alice", event_id]]
        finally:
            influx.close()
        (crop,) = crops.rglob("*.jpg")
        assert crop.read_bytes() == base64.b64decode(event.crop_jpeg_b64)
        stop_cleanly(archiver, log_path)


def test_faces_extra_lists_the_gallery_and_identifies_a_photo(venvs, tmp_path):
    venv = venvs.get("faces")
    check_commands(venv)
    cache = str(tmp_path / "cache")  # empty: the installed models encode every photo

    table = venv.run("faces", "list", "--gallery", str(GALLERY), "--cache-dir", cache).stdout
    layout = gallery_layout()
    for person, (category, images) in layout.items():
        assert re.search(rf"^{person}\s+{category}\s+{images}\s*$", table, re.M), (person, table)
    assert table.rstrip().endswith(f"{len(layout)} people, {sum(n for _, n in layout.values())} usable photos")
    dev = subprocess.run([sys.executable, "-m", "facebus_tools", "faces", "list", "--gallery", str(GALLERY),
                          "--cache-dir", str(tmp_path / "dev-cache")], cwd=ROOT, env=clean_env(),
                         capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert dev.returncode == 0, described("dev venv: facebus faces list", dev)
    assert table == dev.stdout

    listed = json.loads(venv.run("faces", "list", "--json", "--gallery", str(GALLERY), "--cache-dir", cache).stdout)
    assert {p["person"]: (p["category"], p["images"]) for p in listed["people"]} == layout
    assert not any(p["problems"] for p in listed["people"])

    probe = FACES_DEV / "probe" / "Barack_Obama" / "obama_small.jpg"
    lines = venv.run("faces", "identify", str(probe), "--gallery", str(GALLERY), "--cache-dir", cache).stdout
    (face,) = [json.loads(line) for line in lines.splitlines() if line.strip()]
    assert (face["person"], face["category"], face["file"]) == ("Barack_Obama", "authorised", str(probe)), face

    # face-recognition is the README's separate --no-deps step: without it the dlib model says so, and blames no photo
    done = subprocess.run([venv.facebus, "faces", "list", "--model", "dlib", "--gallery", str(GALLERY),
                           "--cache-dir", str(tmp_path / "dlib-cache")], cwd=venv.cwd, env=clean_env(),
                          capture_output=True, text=True, timeout=COMMAND_TIMEOUT_S)
    assert done.returncode == 1, described("faces list --model dlib without face_recognition", done)
    assert "the dlib model needs face_recognition: pip install --no-deps face-recognition==1.3.0" in done.stderr
    assert "unreadable" not in done.stdout + done.stderr


def test_grafana_extra_finds_its_dashboards_in_the_install_and_pushes_them(venvs, tmp_path):
    venv = venvs.get("grafana")
    check_commands(venv)
    repo_dashboards = {p.name: p.read_bytes() for p in (ROOT / "grafana" / "dashboards").glob("*.json")}
    assert repo_dashboards

    text = venv.run("grafana", "push", "--help").stdout
    defaults = dict(re.findall(r"^\s+--(dashboards|datasource) \S+\s+.*?\(default: (.+)\)\s*$", text, re.M))
    assert set(defaults) == {"dashboards", "datasource"}, text
    folder, datasource = Path(defaults["dashboards"]), Path(defaults["datasource"])
    assert folder.is_dir() and datasource.is_file(), f"grafana push --help: defaults that are not files: {defaults}"
    folder, datasource = folder.resolve(), datasource.resolve()
    assert folder.is_relative_to(venv.site_packages) and datasource.is_relative_to(venv.site_packages), defaults
    assert {p.name: p.read_bytes() for p in folder.glob("*.json")} == repo_dashboards
    assert datasource.read_bytes() == (ROOT / "grafana/provisioning/datasources/influxdb.yaml").read_bytes()

    with serve_grafana_stub() as (url, recorded, _):
        venv.run("grafana", "push", "--url", url, "--token", "glsa_extras", timeout_s=60)
    assert all(r["auth"] == "Bearer glsa_extras" for r in recorded)
    created = [r["body"] for r in recorded if (r["method"], r["path"]) == ("POST", "/api/datasources")]
    assert [source["uid"] for source in created] == ["facebus-influxdb"]
    saved = [r["body"]["dashboard"]["uid"] for r in recorded if r["path"] == "/api/dashboards/db"]
    assert sorted(saved) == sorted(json.loads(body)["uid"] for body in repo_dashboards.values())


def test_broker_extra_writes_a_secured_broker_that_mosquitto_runs(venvs, tmp_path):
    venv = venvs.get("broker")
    check_commands(venv)
    secure = tmp_path / "secure"
    port = devservers.free_port()

    venv.run("broker", "init", str(secure), "--port", str(port))
    for name in ("ca.crt", "server.crt", "server.key", "passwd", "acl", "mosquitto.conf", "accounts.json"):
        assert (secure / name).is_file() and (secure / name).stat().st_size > 0, name
    assert f"listener {port}" in (secure / "mosquitto.conf").read_text()
    assert "-----BEGIN CERTIFICATE-----" in (secure / "ca.crt").read_text()
    assert {p.stem for p in (secure / "credentials").glob("*.env")} == {"recognizer", "archiver", "viewer"}

    password = venv.run("broker", "add-camera", str(secure), "extras-cam").stdout.strip().splitlines()[-1]
    accounts = dict(line.split("\t") for line in venv.run("broker", "list", str(secure)).stdout.splitlines())
    assert accounts == {"archiver": "archiver", "extras-cam": "camera", "recognizer": "recognizer",
                        "viewer": "viewer"}

    server = devservers.start_mosquitto(tmp_path / "mosquitto", secure_dir=secure)
    try:  # the camera's account, over TLS verified with the CA that init made
        connected: list = []
        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
        client.tls_set(ca_certs=str(secure / "ca.crt"))
        client.username_pw_set("extras-cam", password)
        client.on_connect = lambda c, u, flags, reason, props: connected.append(reason)
        client.connect("localhost", port)
        client.loop_start()
        try:
            assert wait_for(lambda: connected, 10), log_of(server.log_path)
            assert not connected[0].is_failure, connected
        finally:
            client.loop_stop()
            client.disconnect()
    finally:
        server.stop()


# --- helpers --------------------------------------------------------------------------------------------------------


def gallery_layout() -> dict[str, tuple[str, int]]:
    """person -> (category, photos) as the folders of samples/gallery say (Visitors/ is the visitor store)."""
    layout = {}
    for category in sorted(GALLERY.iterdir()):
        kind = {"authorised": "authorised", "authorized": "authorised", "restricted": "restricted"}.get(
            category.name.lower())
        if kind is None or not category.is_dir():
            continue
        for person in sorted(category.iterdir()):
            photos = [person] if person.is_file() else [p for p in person.iterdir() if p.is_file()]
            layout[person.stem] = (kind, len(photos))
    return layout


def http_get(url: str) -> tuple[int, str]:
    """(status, body) of a GET; (0, error) when nothing answers yet."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")
    except OSError as exc:
        return 0, str(exc)
