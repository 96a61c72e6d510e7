"""The live page (recognizer/live.py) against a real Mosquitto and, for what the user sees, a real browser (Debian
chromium driven by Playwright): annotated frames over MJPEG, face events and access decisions over SSE, HTTP Basic
with the viewer's MQTT password on a secured broker. Each test has a topic prefix (or a broker) of its own."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import urllib.error
import urllib.request
import uuid

import pytest

from facebus.events import Category
from facebus.images import encode_jpeg, fit_width, load_photo
from facebus.mqtt import MqttClient
from facebus.settings import LiveSettings, MqttSettings
from facebus_tools import broker, devservers
from recognizer.live import BOUNDARY, PART_START, LivePage
from tests.conftest import FACES_DEV, ROOT, wait_for
from tests.factories import access_decision, live_event, mqtt_settings

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
ARTIFACTS = ROOT / "tests" / "artifacts"
PHOTO = load_photo(FACES_DEV / "groups" / "obama_and_biden.jpg")  # 1024 x 731
FRAME_A = encode_jpeg(fit_width(PHOTO, 640))  # 640 px wide, as the recognizer's annotated view by default
FRAME_B = encode_jpeg(fit_width(PHOTO, 320))
WAIT_S = 20.0  # generous: the tests also run with the CPU busy
WAIT_MS = WAIT_S * 1000




# -- HTTP without a browser: state, MJPEG, SSE, health, host check --------------------------------------------------


@pytest.fixture
def live(mosquitto):
    """A LivePage on a topic prefix of its own on the anonymous broker, and a camera-side client to publish with."""
    prefix = f"live-{uuid.uuid4().hex[:8]}"
    page = LivePage(mqtt_settings(mosquitto.port, "live", topic_prefix=prefix), LiveSettings(), port=0)
    page.start()
    publisher = MqttClient(mqtt_settings(mosquitto.port, "publisher", topic_prefix=prefix), None, "test-publisher")
    publisher.start()
    assert page.mqtt.wait_connected(WAIT_S) and publisher.wait_connected(WAIT_S)
    yield page, publisher
    publisher.stop()
    page.stop()


def announce(page: LivePage, publisher: MqttClient, device: str) -> None:
    """Publish ``device`` online (retained, QoS 1) and wait until the page has it: its subscriptions are in force."""
    publisher.publish(page.topics.device_availability(device), b"online", qos=1, retain=True)
    assert wait_for(lambda: device in page.state.cameras, WAIT_S)


def get(url: str, headers: dict | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=WAIT_S) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def test_state_mjpeg_and_events_over_http(live):
    page, publisher = live
    announce(page, publisher, "door")
    status, _, body = get(page.url + "healthz")
    assert (status, body) == (200, b"ok\n")
    assert get(page.url + "cameras/door.jpg")[0] == 404  # no frame yet
    assert get(page.url + "cameras/nosuch.mjpeg")[0] == 404
    assert get(page.url + "nosuch")[0] == 404

    stream = http.client.HTTPConnection("127.0.0.1", page.port, timeout=WAIT_S)
    stream.request("GET", "/cameras/door.mjpeg")
    response = stream.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type") == f"multipart/x-mixed-replace; boundary={BOUNDARY}"
    buffer = b""

    def part() -> bytes:
        """The next JPEG: everything up to the next part's start (sent at once after each frame)."""
        nonlocal buffer
        while buffer.count(PART_START) < 2:
            chunk = response.read1(65536)
            assert chunk, "stream ended"
            buffer += chunk
        assert buffer.startswith(PART_START)
        jpeg, _, rest = buffer[len(PART_START):].partition(b"\r\n" + PART_START)
        buffer = PART_START + rest
        return jpeg

    publisher.publish(page.topics.annotated("door"), FRAME_A)
    assert part() == FRAME_A  # sent with the next part's start: a browser shows it at once
    publisher.publish(page.topics.annotated("door"), FRAME_B)
    assert part() == FRAME_B
    response.close()
    stream.close()  # the page notices within a second and forgets the client quietly

    publisher.publish(page.topics.face("door"), live_event("Alice", "door").to_json(), qos=1)
    publisher.publish(page.topics.access("door"), access_decision("door", True).to_json(), qos=1)
    publisher.publish(page.topics.face("door"), b"garbage", qos=1)
    assert wait_for(lambda: len(page.state.log) == 2 and page.state.counters.get("events_bad") == 1, WAIT_S)
    status, headers, body = get(page.url + "api/state")
    state = json.loads(body)
    assert status == 200 and headers["Content-Type"] == "application/json"
    assert state["mqtt_connected"] is True
    assert [(c["device"], c["frames"], c["width_px"], c["availability"]) for c in state["cameras"]] == \
        [("door", 2, 320, "online")]
    assert [(i["kind"], i["person"], i.get("decision")) for i in state["log"]] == \
        [("face", "Alice", None), ("access", "Alice", "granted")]
    assert state["counters"]["events_bad"] == 1
    assert get(page.url + "cameras/door.jpg")[2] == FRAME_B

    events = http.client.HTTPConnection("127.0.0.1", page.port, timeout=WAIT_S)
    events.request("GET", "/events")
    response = events.getresponse()
    assert response.getheader("Content-Type") == "text/event-stream; charset=utf-8"
    assert response.readline() == b"retry: 2000\n" and response.readline() == b"\n"

    def message() -> tuple[str, dict]:
        kind, data = "message", None
        while (line := response.readline()) != b"\n":
            field, _, value = line.decode().rstrip("\n").partition(": ")
            kind, data = (value, data) if field == "event" else (kind, json.loads(value))
        return kind, data

    received = [message() for _ in range(3)]  # the current log on connect, then the camera summary
    assert [(kind, data.get("person")) for kind, data in received[:2]] == [("message", "Alice"), ("message", "Alice")]
    assert received[2][0] == "cameras" and received[2][1]["cameras"][0]["frames"] == 2
    publisher.publish(page.topics.face("door"), live_event(None, "door").to_json(), qos=1)
    kind, data = message()
    assert kind == "message" and data["person"] is None and data["category"] == "unknown" and data["seq"] == 3
    response.close()
    events.close()

    # Without authentication the page answers loopback Host names only (a DNS-rebinding site is refused).
    assert get(page.url + "api/state", {"Host": "evil.example:80"})[0] == 403
    assert get(page.url, {"Host": f"localhost:{page.port}"})[0] == 200
    assert wait_for(lambda: page._streams == 0, WAIT_S)  # both streams ended when their clients left


# -- the page in a real browser -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def browser():
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)",
                                   exc_type=ImportError)
    if not shutil.which(CHROMIUM):
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def img_width(device: str) -> str:
    return f"document.querySelector('figure[data-device=\"{device}\"] img')?.naturalWidth"


def test_the_page_shows_new_frames_and_events_on_a_phone(live, browser):
    page, publisher = live
    announce(page, publisher, "front-door")
    context = browser.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                  has_touch=True)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    tab.goto(page.url)
    tab.wait_for_selector("#stream.ok", timeout=WAIT_MS)
    tab.wait_for_selector('figure[data-device="front-door"]', timeout=WAIT_MS)  # from its availability

    publisher.publish(page.topics.annotated("front-door"), FRAME_A)
    tab.wait_for_function(f"() => {img_width('front-door')} === 640", timeout=WAIT_MS)
    publisher.publish(page.topics.annotated("front-door"), FRAME_B)
    tab.wait_for_function(f"() => {img_width('front-door')} === 320", timeout=WAIT_MS)  # the stream pushed the new one
    tab.wait_for_function("() => document.querySelector('figure[data-device=\"front-door\"]').dataset.frames === '2'",
                          timeout=WAIT_MS)
    assert "2 frames" in tab.inner_text('figure[data-device="front-door"] figcaption')

    publisher.publish(page.topics.face("front-door"), live_event("Barack_Obama", "front-door").to_json(), qos=1)
    publisher.publish(page.topics.face("front-door"), live_event(None, "front-door").to_json(), qos=1)
    biden = live_event("Joseph_Biden", "front-door", category=Category.restricted)
    publisher.publish(page.topics.face("front-door"), biden.to_json(), qos=1)
    denied = access_decision("front-door", False, "Joseph_Biden")
    publisher.publish(page.topics.access("front-door"), denied.to_json(), qos=1)
    tab.wait_for_function("() => document.querySelectorAll('#log li').length === 4", timeout=WAIT_MS)
    rows = tab.eval_on_selector_all("#log li", "items => items.map(li => [li.className, li.innerText])")
    assert [cls for cls, _ in rows] == ["denied", "restricted", "unknown", "authorised"]  # newest first
    assert "Barack_Obama" in rows[3][1] and "front-door" in rows[3][1]
    assert "unknown" in rows[2][1] and "denied" in rows[0][1].lower()
    colours = tab.eval_on_selector_all("#log li", "items => items.map(li => getComputedStyle(li).borderLeftColor)")
    assert colours[1] == colours[0] != colours[2] != colours[3] != colours[1]  # red, red, amber, green
    assert tab.evaluate("document.documentElement.scrollWidth <= window.innerWidth")  # no sideways scrolling

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tab.screenshot(path=str(ARTIFACTS / "live.png"), full_page=True)

    tab.reload()  # a new connection gets the current log at once, and the stream again
    tab.wait_for_function("() => document.querySelectorAll('#log li').length === 4", timeout=WAIT_MS)
    tab.wait_for_function(f"() => {img_width('front-door')} === 320", timeout=WAIT_MS)
    context.close()
    assert errors == []
    assert wait_for(lambda: page._streams == 0, WAIT_S)  # the browser's MJPEG and SSE connections were let go


# -- a secured broker: the page asks for the viewer's password ------------------------------------------------------


@pytest.fixture(scope="module")
def secure(tmp_path_factory):
    """A `facebus broker init` folder and Mosquitto running it (TLS, accounts, ACL)."""
    folder = tmp_path_factory.mktemp("live-secure")
    state = broker.init(folder / "broker", [], port=devservers.free_port(), bind="127.0.0.1")
    server = devservers.start_mosquitto(folder / "state", secure_dir=state.path)
    yield broker.BrokerDir.load(state.path)
    server.stop()


def account(state: broker.BrokerDir, name: str) -> MqttSettings:
    return MqttSettings(host="127.0.0.1", port=state.port, tls=True, ca_file=state.path / "ca.crt", username=name,
                        password=state.password(name), client_id=f"test-{uuid.uuid4().hex[:8]}", session_expiry_s=0)


def basic(user: str, password: str) -> dict:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def browser_refused(browser, url: str, credentials: dict | None) -> bool:
    """True when a browser with ``credentials`` (None: none) is refused ``url``: Chromium either shows the 401 or, when
    it has given up asking (Playwright answers its prompt with the context's credentials), fails the navigation."""
    context = browser.new_context(http_credentials=credentials)
    try:
        return context.new_page().goto(url).status == 401
    except Exception as exc:  # noqa: BLE001 - playwright's Error, imported only with the browser fixture
        return "ERR_INVALID_AUTH_CREDENTIALS" in str(exc)
    finally:
        context.close()


def test_on_a_secured_broker_the_page_needs_the_viewers_password(secure, browser):
    password = secure.password("viewer")
    with LivePage(account(secure, "viewer"), LiveSettings(), port=0) as page:
        recognizer = MqttClient(account(secure, "recognizer"), None, "test-recognizer")
        recognizer.start()
        try:
            assert page.mqtt.wait_connected(WAIT_S) and recognizer.wait_connected(WAIT_S)
            assert get(page.url + "healthz")[0] == 200  # health needs no password
            for headers in ({}, basic("viewer", "wrong"), basic("recognizer", secure.password("recognizer")),
                            basic("viewer", password + "x"), {"Authorization": "Basic !!!"},
                            {"Authorization": "Bearer " + password}):
                for path in ("", "api/state", "events", "cameras/door.mjpeg"):
                    status, answer, _ = get(page.url + path, headers)
                    assert status == 401, (path, headers)
                    assert answer["WWW-Authenticate"].startswith('Basic realm="facebus live"')
            status, _, body = get(page.url + "api/state", basic("viewer", password))
            assert status == 200 and json.loads(body)["mqtt_connected"] is True

            tab_context = browser.new_context(http_credentials={"username": "viewer", "password": password})
            tab = tab_context.new_page()
            tab.goto(page.url)
            tab.wait_for_selector("#stream.ok", timeout=WAIT_MS)
            tab.wait_for_selector("#broker.ok", timeout=WAIT_MS)
            # Published by the recognizer's account, read by the page's viewer account (subscribed since its
            # connect, long before the browser was served the page): the ACL lets both through.
            recognizer.publish(page.topics.annotated("door"), FRAME_A)
            recognizer.publish(page.topics.face("door"), live_event("Alice", "door").to_json(), qos=1)
            recognizer.publish(page.topics.access("door"), access_decision("door", True).to_json(), qos=1)
            tab.wait_for_function(f"() => {img_width('door')} === 640", timeout=WAIT_MS)
            tab.wait_for_selector("#log li.granted", timeout=WAIT_MS)
            assert "Alice" in tab.inner_text("#log li.authorised")
            assert recognizer.counters.get("mqtt_refused") == page.mqtt.counters.get("mqtt_refused") == 0
            tab_context.close()

            for credentials in (None, {"username": "viewer", "password": "wrong"}):
                assert browser_refused(browser, page.url, credentials), credentials
        finally:
            recognizer.stop()


# -- the whole pipeline: the clip, as `make demo` plays it ----------------------------------------------------------


def test_during_a_run_of_the_clip_the_page_shows_the_annotated_camera_and_the_named_people(tmp_path, browser):
    """`make demo`'s pipeline (secured broker, recognizer and archiver processes, the publisher playing the clip in
    real time) with its live page open in chromium, logged in as the viewer: the camera's annotated image updates
    and the people of the clip appear by name in the log, with their access decisions."""
    import threading

    from facebus_tools.demo import DEVICE_ID, Pipeline
    from tests.conftest import CLIP, GALLERY

    with Pipeline(tmp_path / "state", str(GALLERY)) as pipeline:
        viewer = broker.BrokerDir.load(pipeline.broker_dir).password("viewer")
        context = browser.new_context(http_credentials={"username": "viewer", "password": viewer},
                                      viewport={"width": 390, "height": 844}, is_mobile=True)
        tab = context.new_page()
        tab.goto(pipeline.live.url)
        tab.wait_for_selector("#stream.ok", timeout=WAIT_MS)
        player = threading.Thread(target=pipeline.publish, args=(str(CLIP), 1.0))
        player.start()
        try:
            figure = f'figure[data-device="{DEVICE_ID}"]'
            tab.wait_for_function(f"() => Number(document.querySelector('{figure}')?.dataset.frames) >= 3",
                                  timeout=WAIT_MS)
            tab.wait_for_function(f"() => {img_width(DEVICE_ID)} === 640", timeout=WAIT_MS)  # the annotated view
            tab.wait_for_function("() => document.querySelector('#log').innerText.includes('Lin_Manuel_Miranda')",
                                  timeout=WAIT_MS)
            tab.wait_for_function("() => document.querySelector('#log li.granted') !== null", timeout=WAIT_MS)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            tab.screenshot(path=str(ARTIFACTS / "live-clip.png"), full_page=True)
        finally:
            player.join(60)
            context.close()
