"""``facebus broker``: a secured Mosquitto configuration — TLS, one account per service and camera, an ACL.

    facebus broker init DIR [--host NAME]... [--port 8883]    write or update DIR (rerunning keeps accounts and keys)
    facebus broker add-camera DIR DEVICE_ID                    a camera account; its password on stdout's last line
    facebus broker remove-camera DIR DEVICE_ID
    facebus broker add-recognizer DIR recognizer-NAME          one more recognizer sharing the cameras
    facebus broker list DIR

What ``init`` writes into DIR (docs/security.md)::

    mosquitto.conf          mosquitto -c DIR/mosquitto.conf: a TLS listener only, no anonymous access (Compose
                            uses mosquitto/mosquitto.conf instead: the same text for DIR mounted at /mosquitto/secure)
    ca.crt, ca.key          the CA (generated once; ca.crt is what clients verify the broker with)
    server.crt, server.key  the broker's certificate, for localhost, 127.0.0.1, mosquitto and every --host
    passwd                  Mosquitto's password file (made with mosquitto_passwd, salted PBKDF2-SHA512 hashes)
    acl                     Mosquitto's ACL file, rendered from the accounts and the topics (:func:`acl_text`)
    accounts.json           account name -> role; the source the ACL and ``list`` are made from
    credentials/NAME.env    per account: FACEBUS_MQTT_USERNAME/PASSWORD/TLS/CA_FILE/HOST/PORT, mode 0600

Roles, and what each may do (everything not granted is refused; Mosquitto answers a refused QoS 1 publish with
reason code 135 and drops a refused QoS 0 one):

- ``recognizer``: read every camera's frames and availability and the services' availability; publish face events
  (without and with crop), tracks and its own ``services/recognizer/...`` topics (availability, stats, gallery);
- ``archiver``: read the face events with crops, the availability of cameras and every service's stats; publish its
  own ``services/archiver/...`` topics;
- ``viewer``: read face events without crops, tracks, access decisions, availability and the services' topics;
  never a frame, never a crop; publish nothing;
- ``camera`` (one account per device id): publish only ``<prefix>/<device>/frame`` and its own availability; read
  only what is meant for it (``<prefix>/<device>/access``).

Mosquitto reads the password file and the ACL again on SIGHUP: after add-camera or remove-camera, reload it
(``kill -HUP <pid>``, ``docker compose kill -s HUP mosquitto``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import getpass
import ipaddress
import json
import os
import re
import secrets
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from facebus.files import write_atomically
from facebus.topics import DEFAULT_PREFIX, RECOGNIZER_INSTANCE_PATTERN, SERVICES, Topics, validate_device_id

DEFAULT_PORT = 8883
DEFAULT_HOSTS = ("localhost", "127.0.0.1", "mosquitto")  # mosquitto: the broker's name inside docker-compose.yml
SERVICE_ROLES = ("recognizer", "archiver", "viewer")
CAMERA = "camera"
CA_DAYS = 3650
SERVER_DAYS = 1825
STATE_FILE = "accounts.json"
DISCOVERY_PREFIX = "homeassistant"  # RecognizerSettings.ha_discovery_prefix's default: Home Assistant's own

# Session, queue and persistence settings shared by every facebus broker: the compose one (mosquitto/mosquitto.conf),
# the ones `init` writes and the dev/test brokers (docs/reliability.md).
SESSION_CONF = """persistence true
autosave_interval 60
# Sessions of MQTT 3 clients that set no expiry end after a day away (facebus's own clients ask for 1 day).
persistent_client_expiration 1d
# Queue per away client: more than an hour of face events at 10 per second (about 8 KB each with the crop).
# Frames are QoS 0 and never queued: a recognizer that comes back starts from live frames.
max_queued_messages 100000
max_queued_bytes 536870912
# Nagle off on client sockets: frames and events are small and latency-bound.
set_tcp_nodelay true
"""


class BrokerError(RuntimeError):
    """A broker directory that cannot be made or changed (missing tool, unknown account, name taken)."""


# -- the pure part: ACL and configuration text ---------------------------------------------------------------------


def acl_lines(name: str, role: str, topics: Topics) -> list[str]:
    """Mosquitto ACL lines (``topic read|write|readwrite FILTER``) granting account ``name`` of ``role``."""
    p, own = topics.prefix, f"{topics.prefix}/{SERVICES}/{name}/#"
    if role == "recognizer":
        return [f"topic read {topics.all_frames}", f"topic read {topics.all_device_availability}",
                f"topic read {topics.service_availability('+')}", f"topic write {topics.all_faces}",
                f"topic write {topics.all_faces_with_crop}", f"topic write {topics.all_tracks}",
                f"topic write {topics.all_access}", f"topic write {topics.all_annotated}",
                f"topic write {topics.gallery_state()}", f"topic write {DISCOVERY_PREFIX}/#", f"topic readwrite {own}"]
    if role == "archiver":
        return [f"topic read {topics.all_faces_with_crop}", f"topic read {topics.all_device_availability}",
                f"topic read {topics.all_service_stats}", f"topic readwrite {own}"]
    if role == "viewer":
        return [f"topic read {topics.all_faces}", f"topic read {topics.all_tracks}", f"topic read {topics.all_access}",
                f"topic read {topics.all_annotated}", f"topic read {topics.all_device_availability}",
                f"topic read {p}/{SERVICES}/#", f"topic read {DISCOVERY_PREFIX}/#"]
    if role == CAMERA:
        return [f"topic write {topics.frame(name)}", f"topic readwrite {topics.device_availability(name)}",
                f"topic read {topics.access(name)}", f"topic read {topics.annotated(name)}"]
    raise BrokerError(f"unknown role {role!r}")


def acl_text(accounts: dict[str, str], prefix: str = DEFAULT_PREFIX) -> str:
    """Mosquitto ACL file for ``accounts`` (name -> role): one ``user`` block per account, services first."""
    topics = Topics(prefix)
    out = ["# Written by `facebus broker`: edit the accounts with its commands, not this file.",
           "# Everything not granted here is refused (docs/security.md)."]
    for name, role in sorted(accounts.items(), key=lambda item: (item[1] == CAMERA, item[0])):
        out += ["", f"# {role}", f"user {name}", *acl_lines(name, role, topics)]
    return "\n".join(out) + "\n"


def conf_text(secure_dir: str, data_dir: str, port: int = DEFAULT_PORT, user: str | None = None,
              bind: str | None = None) -> str:
    """Mosquitto configuration: one TLS listener on ``port`` (of ``bind``, default every interface), no anonymous
    access, the password file and ACL of ``secure_dir``, persistence in ``data_dir``. ``user``: the account Mosquitto
    runs as when started by root."""
    s = secure_dir.rstrip("/")
    run_as = f"# Run as this user when started by root (it must read the files above).\nuser {user}\n\n" if user else ""
    return f"""# Written by `facebus broker init` (docs/security.md). Mosquitto 2.x.

# TLS only{", on " + bind if bind else ", on every interface"}: cameras on the network connect here \
with the CA certificate ca.crt.
listener {port}{" " + bind if bind else ""}
cafile {s}/ca.crt
certfile {s}/server.crt
keyfile {s}/server.key
tls_version tlsv1.2

# Every client has an account (facebus broker add-camera ...); the ACL says what each may publish and read.
allow_anonymous false
password_file {s}/passwd
acl_file {s}/acl

{run_as}persistence_location {data_dir.rstrip('/')}/
{SESSION_CONF}
# stderr: unbuffered (stdout to a file or pipe is block-buffered); Docker keeps both.
log_dest stderr
log_type error
log_type warning
log_type notice
log_type information
connection_messages true
log_timestamp_format %Y-%m-%dT%H:%M:%S
"""


def credentials_text(name: str, role: str, password: str, ca_file: Path, host: str, port: int) -> str:
    """The env file a service or camera reads (``facebus --env-file FILE ...``, Compose ``env_file:``)."""
    lines = [f"# MQTT account {name!r} ({role}), written by `facebus broker`. Secret: keep it mode 0600.",
             f"FACEBUS_MQTT_USERNAME={name}", f"FACEBUS_MQTT_PASSWORD={password}", "FACEBUS_MQTT_TLS=true",
             f"FACEBUS_MQTT_CA_FILE={ca_file}", f"FACEBUS_MQTT_HOST={host}", f"FACEBUS_MQTT_PORT={port}"]
    if role == CAMERA:
        lines.append(f"FACEBUS_PUBLISHER_DEVICE_ID={name}")
    if role == "recognizer":
        lines.append(f"FACEBUS_RECOGNIZER_INSTANCE={name}")
    return "\n".join(lines) + "\n"


# -- the directory -------------------------------------------------------------------------------------------------


@dataclass
class BrokerDir:
    """A broker directory as ``init`` writes it; :meth:`load` reads its ``accounts.json``."""

    path: Path
    prefix: str = DEFAULT_PREFIX
    port: int = DEFAULT_PORT
    bind: str | None = None  # listen address; None: every interface
    broker_uid: int | None = None  # owner of the files the broker reads; None: whoever runs facebus broker
    hosts: list[str] = field(default_factory=lambda: list(DEFAULT_HOSTS))
    accounts: dict[str, str] = field(default_factory=dict)  # name -> role

    @classmethod
    def load(cls, path: Path) -> BrokerDir:
        """Raises BrokerError when ``path`` holds no ``accounts.json`` (not made by ``facebus broker init``)."""
        state = path / STATE_FILE
        if not state.is_file():
            raise BrokerError(f"{path} is not a broker directory (no {STATE_FILE}): run `facebus broker init {path}`")
        data = json.loads(state.read_text())
        return cls(path, data["prefix"], data["port"], data.get("bind"), data.get("broker_uid"), data["hosts"],
                   data["accounts"])

    def credentials(self, name: str) -> Path:
        return self.path / "credentials" / f"{name}.env"

    def password(self, name: str) -> str | None:
        """The password kept in the account's credentials file; None when it has none."""
        try:
            for line in self.credentials(name).read_text().splitlines():
                if line.startswith("FACEBUS_MQTT_PASSWORD="):
                    return line.partition("=")[2]
        except FileNotFoundError:
            pass
        return None

    def save(self) -> None:
        """Write accounts.json and the ACL; the broker reads the ACL (and the password file) again on SIGHUP."""
        state = {"prefix": self.prefix, "port": self.port, "bind": self.bind, "broker_uid": self.broker_uid,
                 "hosts": self.hosts, "accounts": self.accounts}
        _write(self.path / STATE_FILE, json.dumps(state, indent=2, sort_keys=True) + "\n", 0o644)
        _write(self.path / "acl", acl_text(self.accounts, self.prefix), 0o644, self.broker_uid)

    def set_account(self, name: str, role: str) -> str:
        """Create the account, or keep its password when it has one; returns the password."""
        password = self.password(name)
        if password is None:
            password = secrets.token_hex(16)  # 128 bits; hex: never read as an option by mosquitto_passwd
            _passwd(self.path / "passwd", ["-b", str(self.path / "passwd"), name, password], self.broker_uid)
        self.accounts[name] = role
        host = next((h for h in self.hosts if h not in DEFAULT_HOSTS), "localhost")
        _write(self.credentials(name),
               credentials_text(name, role, password, (self.path / "ca.crt").resolve(), host, self.port), 0o600)
        return password

    def remove_account(self, name: str) -> None:
        _passwd(self.path / "passwd", ["-D", str(self.path / "passwd"), name], self.broker_uid)
        del self.accounts[name]
        self.credentials(name).unlink(missing_ok=True)


def init(path: Path, hosts: list[str], port: int | None = None, prefix: str | None = None,
         broker_uid: int | None = None, bind: str | None = None) -> BrokerDir:
    """Write or update the broker directory ``path``: CA, server certificate (re-issued only when a host name is
    new), accounts of the three services (kept when they exist), password file, ACL and mosquitto.conf.

    ``bind``: the one address to listen on (e.g. 127.0.0.1), kept for reruns; default every interface.
    ``broker_uid``: owner given to the files the broker reads (passwd, acl, server.key), e.g. 1883 in the
    eclipse-mosquitto image; kept for reruns and the other commands. Run with sudo, every other file is given to the
    invoking user (SUDO_UID), so that `docker compose` run by that user reads the credentials. Raises BrokerError
    when mosquitto_passwd is missing.
    """
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o711)  # the broker, once it runs as its own user, must enter it; nobody else may list it
    _chown_to_invoker(path)
    try:
        state = BrokerDir.load(path)
    except BrokerError:
        state = BrokerDir(path)
    state.hosts = list(dict.fromkeys([*state.hosts, *DEFAULT_HOSTS, *hosts]))
    state.port = port or state.port
    state.prefix = prefix or state.prefix
    state.bind = bind or state.bind
    state.broker_uid = broker_uid if broker_uid is not None else state.broker_uid
    ensure_certificates(path, state.hosts, state.broker_uid)
    (path / "passwd").touch(mode=0o600, exist_ok=True)
    for role in SERVICE_ROLES:
        state.set_account(role, role)
    for name, role in list(state.accounts.items()):  # cameras, recognizers: rewrite their files for a new host or port
        if name not in SERVICE_ROLES:
            state.set_account(name, role)
    state.save()
    where = str(path.resolve())
    _write(path / "mosquitto.conf", conf_text(where, f"{where}/data", state.port, getpass.getuser(), state.bind), 0o644)
    (path / "data").mkdir(exist_ok=True)
    return state


def add_camera(path: Path, device_id: str) -> str:
    """Add (or keep) the camera account ``device_id``; returns its password. Raises BrokerError for a name a
    service has, ValueError for an id outside ``[A-Za-z0-9_-]{1,64}``."""
    validate_device_id(device_id)
    state = BrokerDir.load(path)
    if state.accounts.get(device_id, CAMERA) != CAMERA:
        raise BrokerError(f"{device_id!r} is the {state.accounts[device_id]} service's account, not a camera")
    password = state.set_account(device_id, CAMERA)
    state.save()
    return password


def add_recognizer(path: Path, instance: str) -> str:
    """Add (or keep) the account of one more recognizer instance (``recognizer-<suffix>``, its
    FACEBUS_RECOGNIZER_INSTANCE); returns its password. Raises BrokerError for another name."""
    if not re.fullmatch(RECOGNIZER_INSTANCE_PATTERN, instance) or instance == "recognizer":
        raise BrokerError(f"{instance!r} is not recognizer-<suffix> (1-53 of A-Z a-z 0-9 _ -)")
    state = BrokerDir.load(path)
    if state.accounts.get(instance, "recognizer") != "recognizer":
        raise BrokerError(f"{instance!r} is already a {state.accounts[instance]} account")
    password = state.set_account(instance, "recognizer")
    state.save()
    return password


def remove_camera(path: Path, device_id: str) -> None:
    state = BrokerDir.load(path)
    if state.accounts.get(device_id) != CAMERA:
        raise BrokerError(f"no camera account {device_id!r} in {path}")
    state.remove_account(device_id)
    state.save()


# -- certificates (Python's cryptography) --------------------------------------------------------------------------


def ensure_certificates(path: Path, hosts: list[str], broker_uid: int | None = None) -> None:
    """Make the CA once, and the server certificate when missing or when it lacks one of ``hosts``."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    def new_key() -> rsa.RSAPrivateKey:  # RSA 2048: what every camera TLS stack (mbedTLS on an ESP32, too) speaks
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def pem_key(key) -> bytes:
        return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
                                 serialization.NoEncryption())

    now = dt.datetime.now(dt.timezone.utc)
    ca_crt, ca_key_file = path / "ca.crt", path / "ca.key"
    if not (ca_crt.is_file() and ca_key_file.is_file()):
        ca_key = new_key()
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "facebus broker CA")])
        ca = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(ca_key.public_key())
              .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
              .not_valid_after(now + dt.timedelta(days=CA_DAYS))
              .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
              .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                           content_commitment=False, key_encipherment=False, data_encipherment=False,
                                           key_agreement=False, encipher_only=False, decipher_only=False),
                             critical=True)
              .sign(ca_key, hashes.SHA256()))
        _write(ca_key_file, pem_key(ca_key), 0o600)
        _write(ca_crt, ca.public_bytes(serialization.Encoding.PEM), 0o644)
        (path / "server.crt").unlink(missing_ok=True)  # a new CA: the old server certificate no longer verifies
    ca = x509.load_pem_x509_certificate(ca_crt.read_bytes())
    ca_key = serialization.load_pem_private_key(ca_key_file.read_bytes(), password=None)

    server_crt = path / "server.crt"
    if server_crt.is_file():
        cert = x509.load_pem_x509_certificate(server_crt.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        have = {str(v) for v in san.get_values_for_type(x509.DNSName)}
        have |= {str(v) for v in san.get_values_for_type(x509.IPAddress)}
        if set(hosts) <= have and cert.issuer == ca.subject and cert.not_valid_after_utc > now:
            return
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    key = new_key()
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(ca.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(days=SERVER_DAYS))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(ca_key, hashes.SHA256()))
    _write(path / "server.key", pem_key(key), 0o600, broker_uid)
    _write(server_crt, cert.public_bytes(serialization.Encoding.PEM), 0o644)


# -- files and Mosquitto's tool ------------------------------------------------------------------------------------


def _write(target: Path, content: str | bytes, mode: int, owner_uid: int | None = None) -> None:
    """Write ``target`` atomically with ``mode`` (set before any byte is written), owned by ``owner_uid`` if given,
    else by the user who ran sudo (if any)."""
    if not target.parent.is_dir():
        target.parent.mkdir(parents=True, mode=0o700)
        _chown_to_invoker(target.parent)
    data = content.encode() if isinstance(content, str) else content
    write_atomically(target, data, mode, owner_uid if owner_uid is not None else _invoker_uid())


def _invoker_uid() -> int | None:
    """The uid of the user who ran ``sudo facebus broker ...``; None when not under sudo."""
    uid = os.environ.get("SUDO_UID")
    return int(uid) if uid and uid.isdigit() and os.geteuid() == 0 else None


def _chown_to_invoker(path: Path) -> None:
    if (uid := _invoker_uid()) is not None:
        os.chown(path, uid, -1)


def _passwd(passwd_file: Path, args: list[str], broker_uid: int | None) -> None:
    tool = shutil.which("mosquitto_passwd") or next(
        (p for p in ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd") if os.path.exists(p)), None)
    if tool is None:
        raise BrokerError("mosquitto_passwd not found: install Mosquitto (Debian/Ubuntu: apt install mosquitto)")
    result = subprocess.run([tool, *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise BrokerError(f"mosquitto_passwd failed: {(result.stderr or result.stdout).strip()}")
    os.chmod(passwd_file, 0o600)
    if broker_uid is not None:
        os.chown(passwd_file, broker_uid, -1)


# -- command line --------------------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="broker_command", required=True, metavar="ACTION")
    p = sub.add_parser("init", help="write or update a secured Mosquitto configuration in DIR")
    p.add_argument("dir", type=Path)
    p.add_argument("--host", action="append", default=[],
                   help="host name or IP the cameras and services reach the broker by (repeatable); the certificate "
                   "always covers localhost, 127.0.0.1 and mosquitto")
    p.add_argument("--port", type=int, help=f"TLS port (default {DEFAULT_PORT}, or the one DIR has)")
    p.add_argument("--prefix", help=f"topic prefix the ACL is written for (default {DEFAULT_PREFIX})")
    p.add_argument("--bind", help="listen on this address only (e.g. 127.0.0.1); default every interface")
    p.add_argument("--broker-uid", type=int, help="owner of the files the broker reads (1883 in eclipse-mosquitto)")
    p = sub.add_parser("add-camera", help="add a camera account; prints its password on the last line")
    p.add_argument("dir", type=Path)
    p.add_argument("device_id")
    p = sub.add_parser("add-recognizer", help="add the account of one more recognizer instance (recognizer-NAME)")
    p.add_argument("dir", type=Path)
    p.add_argument("instance")
    p = sub.add_parser("remove-camera", help="remove a camera account")
    p.add_argument("dir", type=Path)
    p.add_argument("device_id")
    p = sub.add_parser("list", help="list the accounts and their roles")
    p.add_argument("dir", type=Path)


RELOAD_HINT = "reload the broker to apply it: kill -HUP <mosquitto pid>, or docker compose kill -s HUP mosquitto"


def main(args: argparse.Namespace) -> int:
    try:
        if args.broker_command == "init":
            state = init(args.dir, args.host, args.port, args.prefix, args.broker_uid, args.bind)
            print(f"broker directory {args.dir}: TLS port {state.port}, certificate for {', '.join(state.hosts)}")
            for name in SERVICE_ROLES:
                print(f"  {name}: {state.credentials(name)}")
            print(f"start it with: mosquitto -c {args.dir / 'mosquitto.conf'}")
        elif args.broker_command == "add-camera":
            password = add_camera(args.dir, args.device_id)
            print(f"camera {args.device_id}: credentials in {BrokerDir.load(args.dir).credentials(args.device_id)}; "
                  "CA certificate " + str(args.dir / "ca.crt"))
            print(RELOAD_HINT, file=sys.stderr)
            print(password)
        elif args.broker_command == "add-recognizer":
            add_recognizer(args.dir, args.instance)
            print(f"recognizer {args.instance}: credentials in {BrokerDir.load(args.dir).credentials(args.instance)}")
            print(RELOAD_HINT, file=sys.stderr)
        elif args.broker_command == "remove-camera":
            remove_camera(args.dir, args.device_id)
            print(f"camera {args.device_id} removed; {RELOAD_HINT}")
        else:
            for name, role in sorted(BrokerDir.load(args.dir).accounts.items()):
                print(f"{name}\t{role}")
    except (BrokerError, ValueError) as exc:
        print(f"facebus broker: {exc}", file=sys.stderr)
        return 1
    return 0
