"""The secured broker against the attacks it exists for, on a real Mosquitto started from a `facebus broker init`
folder (TLS, an account per service and camera, the ACL): anonymous and wrong-password clients, clients without
the CA, a camera publishing as another camera or as a service, the viewer reading crops or frames."""

from __future__ import annotations

import base64
import signal
import ssl
import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facebus.mqtt import Message, MqttClient
from facebus.settings import MqttSettings
from facebus.topics import Topics
from facebus_tools import broker, devservers
from tests.conftest import wait_for
from tests.factories import JPEG, face_event

pytestmark = pytest.mark.integration

TOPICS = Topics()


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A `facebus broker init` folder with cameras front-door and back-door, and Mosquitto running it."""
    folder = tmp_path_factory.mktemp("secure")
    state = broker.init(folder / "broker", [], port=devservers.free_port(), bind="127.0.0.1")
    for camera in ("front-door", "back-door"):
        broker.add_camera(state.path, camera)
    server = devservers.start_mosquitto(folder / "state", secure_dir=state.path)
    yield broker.BrokerDir.load(state.path), server
    server.stop()


def settings(secure, account: str | None, **fields) -> MqttSettings:
    """A client of ``account`` (None: anonymous, over TLS with the CA) on the test broker."""
    state, _ = secure
    values = {"host": "127.0.0.1", "port": state.port, "tls": True, "ca_file": state.path / "ca.crt",
              "client_id": f"test-{uuid.uuid4().hex[:8]}", "session_expiry_s": 0}
    if account is not None:
        values |= {"username": account, "password": state.password(account)}
    return MqttSettings(**(values | fields))


class Client:
    """A started MqttClient that records what it receives."""

    def __init__(self, secure, account: str | None, availability: str | None = None,
                 subscriptions: tuple[tuple[str, int], ...] = (), **fields) -> None:
        self.received: list[Message] = []
        self.mqtt = MqttClient(settings(secure, account, **fields), availability, f"test-{account}")
        for topic_filter, qos in subscriptions:
            self.mqtt.subscribe(topic_filter, self.received.append, qos)
        self.mqtt.start()

    def topics(self) -> list[str]:
        return [m.topic for m in self.received]

    def refused(self) -> int:
        return self.mqtt.counters.snapshot().get("mqtt_refused", 0)

    def stop(self) -> None:
        self.mqtt.stop()


@pytest.fixture
def clients():
    started: list[Client] = []

    def make(*args, **kwargs) -> Client:
        client = Client(*args, **kwargs)
        started.append(client)
        return client

    yield make
    for client in started:
        client.stop()


def test_anonymous_and_wrong_password_clients_are_refused_and_say_so(secure, clients, caplog):
    anonymous = clients(secure, None)
    wrong = clients(secure, "recognizer", password="not-the-password")
    assert wait_for(lambda: anonymous.refused() >= 1 and wrong.refused() >= 1, 15)
    assert not anonymous.mqtt.connected and not wrong.mqtt.connected
    refusals = [r.getMessage() for r in caplog.records if "refused as user" in r.getMessage()]
    assert any("'recognizer'" in line and "Not authorized" in line for line in refusals), refusals
    assert any("None" in line for line in refusals), refusals


def test_a_client_without_the_ca_or_without_tls_cannot_connect(secure):
    state, _ = secure
    no_ca = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    no_ca.tls_set()  # the system's CAs: the broker's own CA is not among them
    no_ca.username_pw_set("viewer", state.password("viewer"))
    with pytest.raises(ssl.SSLCertVerificationError):
        no_ca.connect("127.0.0.1", state.port)

    plain = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    plain.username_pw_set("viewer", state.password("viewer"))
    answered = threading.Event()
    plain.on_connect = lambda *args: answered.set()
    plain.connect("127.0.0.1", state.port)  # TCP is accepted; the broker then waits for a TLS hello
    plain.loop(timeout=1.0)
    plain.loop(timeout=1.0)
    assert not answered.is_set()  # no CONNACK: plain MQTT is not spoken on the TLS port
    plain.disconnect()


def test_a_camera_cannot_publish_frames_as_another_camera(secure, clients, caplog):
    recognizer = clients(secure, "recognizer", subscriptions=((TOPICS.all_frames, 0),))
    front = clients(secure, "front-door", TOPICS.device_availability("front-door"))
    assert wait_for(lambda: recognizer.mqtt.connected and front.mqtt.connected, 15)

    front.mqtt.publish(TOPICS.frame("back-door"), JPEG, qos=1)  # QoS 1: PUBACK with reason code 135
    assert wait_for(lambda: front.refused() >= 1, 10)
    assert any("back-door/frame refused" in r.getMessage() and "reason code 135" in r.getMessage()
               for r in caplog.records)
    front.mqtt.publish(TOPICS.frame("back-door"), JPEG + b"forged", qos=0)  # QoS 0: dropped without a word
    front.mqtt.publish(TOPICS.frame("front-door"), JPEG, qos=0)  # its own topic, sent after the forgeries
    assert wait_for(lambda: TOPICS.frame("front-door") in recognizer.topics(), 10)
    assert recognizer.topics() == [TOPICS.frame("front-door")]  # one connection keeps order: the forgeries were dropped


def test_a_camera_cannot_forge_events_stats_availability_or_the_gallery(secure, clients):
    front = clients(secure, "front-door", TOPICS.device_availability("front-door"))
    archiver = clients(secure, "archiver",
                       subscriptions=((TOPICS.all_faces_with_crop, 1), (TOPICS.all_service_stats, 0)))
    assert wait_for(lambda: front.mqtt.connected and archiver.mqtt.connected, 15)
    forged = face_event("Mallory_Intruder", device="vault")
    forgeries = [
        (TOPICS.face("vault"), forged.without_crop().to_json(), False),
        (TOPICS.face_with_crop("front-door"), forged.to_json(), False),
        (TOPICS.service_stats("recognizer"), b'{"schema_version": 1, "service": "recognizer", "interval_s": 1}', False),
        (TOPICS.service_stats("evil"), b'{"schema_version": 1, "service": "evil", "interval_s": 1}', False),
        (TOPICS.service_availability("recognizer"), b"offline", True),
        (TOPICS.gallery_state(), b'{"people": 0}', True),
    ]
    for topic, payload, retain in forgeries:
        front.mqtt.publish(topic, payload, qos=1, retain=retain)
    assert wait_for(lambda: front.refused() >= len(forgeries), 10)

    # What a service publishes on its own topics still gets through, after the forgeries.
    recognizer = clients(secure, "recognizer", TOPICS.service_availability("recognizer"))
    assert wait_for(lambda: recognizer.mqtt.connected, 15)
    recognizer.mqtt.publish(TOPICS.face_with_crop("front-door"),
                            face_event("Alice", device="front-door").to_json(), qos=1)
    assert wait_for(lambda: archiver.topics() == [TOPICS.face_with_crop("front-door")], 10), archiver.topics()
    # A viewer arriving now sees the recognizer's own retained state only, no forged offline or gallery.
    viewer = clients(secure, "viewer", subscriptions=((f"{TOPICS.prefix}/services/#", 1),))
    assert wait_for(lambda: TOPICS.service_availability("recognizer") in viewer.topics(), 10)
    retained = {m.topic: m.payload for m in viewer.received}
    assert retained == {TOPICS.service_availability("recognizer"): b"online"}


def test_the_viewer_reads_face_events_but_never_a_crop_or_a_frame(secure, clients):
    viewer = clients(secure, "viewer", subscriptions=((f"{TOPICS.prefix}/#", 1), (TOPICS.all_faces_with_crop, 1)))
    recognizer = clients(secure, "recognizer", TOPICS.service_availability("recognizer"))
    camera = clients(secure, "back-door", TOPICS.device_availability("back-door"))
    assert wait_for(lambda: viewer.mqtt.connected and recognizer.mqtt.connected and camera.mqtt.connected, 15)
    camera.mqtt.publish(TOPICS.frame("back-door"), JPEG, qos=1)
    event = face_event("Alice", device="back-door")
    recognizer.mqtt.publish(TOPICS.face_with_crop("back-door"), event.to_json(), qos=1)
    recognizer.mqtt.publish(TOPICS.face("back-door"), event.without_crop().to_json(), qos=1)  # the last one sent
    assert wait_for(lambda: TOPICS.face("back-door") in viewer.topics(), 10)
    assert TOPICS.frame("back-door") not in viewer.topics()
    assert TOPICS.face_with_crop("back-door") not in viewer.topics()
    assert not any(base64.b64encode(JPEG) in m.payload for m in viewer.received)
    assert camera.refused() == recognizer.refused() == 0  # their own topics: nothing refused


def test_a_removed_camera_cannot_log_in_after_the_broker_reloads_and_a_new_one_can(secure, clients):
    state, server = secure
    old_password = state.password("back-door")
    password = broker.add_camera(state.path, "side-door")
    broker.remove_camera(state.path, "back-door")
    assert not state.credentials("back-door").exists()
    assert "back-door" not in broker.acl_text(broker.BrokerDir.load(state.path).accounts)
    server.process.send_signal(signal.SIGHUP)  # Mosquitto reads the password file and the ACL again
    side = clients(secure, "side-door", TOPICS.device_availability("side-door"), password=password)
    assert wait_for(lambda: side.mqtt.connected, 15)  # the reload has happened: side-door exists only since
    old = clients(secure, "back-door", password=old_password)
    assert wait_for(lambda: old.refused() >= 1, 15)
    assert not old.mqtt.connected


def test_init_writes_secrets_0600_and_a_rerun_keeps_accounts_and_the_ca(tmp_path):
    from cryptography import x509

    folder = tmp_path / "broker"
    first = broker.init(folder, ["door-host.lan"], port=18883)
    passwords = {name: first.password(name) for name in broker.SERVICE_ROLES}
    camera_password = broker.add_camera(folder, "gate")
    ca = (folder / "ca.crt").read_bytes()
    for secret in ("ca.key", "server.key", "passwd",
                   *(f"credentials/{n}.env" for n in (*broker.SERVICE_ROLES, "gate"))):
        assert (folder / secret).stat().st_mode & 0o777 == 0o600, secret

    again = broker.init(folder, ["cam-net.lan"])  # a new host name: a new server certificate, same CA and accounts
    assert {name: again.password(name) for name in broker.SERVICE_ROLES} == passwords
    assert again.password("gate") == camera_password and again.accounts["gate"] == "camera"
    assert (folder / "ca.crt").read_bytes() == ca and again.port == 18883
    cert = x509.load_pem_x509_certificate((folder / "server.crt").read_bytes())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert {"door-host.lan", "cam-net.lan", "localhost", "mosquitto"} <= set(names)
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(ca))
    passwd_users = [line.split(":")[0] for line in (folder / "passwd").read_text().splitlines()]
    assert sorted(passwd_users) == sorted([*broker.SERVICE_ROLES, "gate"])


def test_add_camera_prints_the_password_last_and_refuses_service_names(tmp_path):
    import subprocess
    import sys

    folder = tmp_path / "broker"
    broker.init(folder, [])
    run = subprocess.run([sys.executable, "-m", "facebus_tools", "broker", "add-camera", str(folder), "porch"],
                         capture_output=True, text=True, check=True)
    assert run.stdout.splitlines()[-1] == broker.BrokerDir.load(folder).password("porch")
    for name in ("archiver", "services", "bad/name"):
        refused = subprocess.run([sys.executable, "-m", "facebus_tools", "broker", "add-camera", str(folder), name],
                                 capture_output=True, text=True)
        assert refused.returncode == 1 and "facebus broker:" in refused.stderr and not refused.stdout
    listed = subprocess.run([sys.executable, "-m", "facebus_tools", "broker", "list", str(folder)],
                            capture_output=True, text=True, check=True).stdout
    assert "porch\tcamera" in listed and "viewer\tviewer" in listed


def test_a_second_recognizer_has_an_account_of_its_own_that_cannot_speak_for_the_first(secure, clients):
    state, server = secure
    password = broker.add_recognizer(state.path, "recognizer-b")
    assert "FACEBUS_RECOGNIZER_INSTANCE=recognizer-b" in state.credentials("recognizer-b").read_text()
    server.process.send_signal(signal.SIGHUP)
    second = clients(secure, "recognizer-b", TOPICS.service_availability("recognizer-b"), password=password)
    viewer = clients(secure, "viewer", subscriptions=((TOPICS.service_stats("+"), 0), (TOPICS.gallery_state(), 1)))
    assert wait_for(lambda: second.mqtt.connected and viewer.mqtt.connected, 15)
    before = second.refused()  # a connection tried before the broker's reload was refused
    second.mqtt.publish(TOPICS.service_stats("recognizer"), b"{}", qos=1)  # the first one's stats: refused
    assert wait_for(lambda: second.refused() == before + 1, 10)
    second.mqtt.publish(TOPICS.gallery_state(), b'{"people": 22}', qos=1)  # the shared gallery state: allowed
    second.mqtt.publish(TOPICS.service_stats("recognizer-b"), b"{}", qos=1)
    assert wait_for(lambda: viewer.topics() == [TOPICS.gallery_state(), TOPICS.service_stats("recognizer-b")], 10)
    assert second.refused() == before + 1
