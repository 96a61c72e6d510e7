"""Home Assistant discovery configs published retained to a real Mosquitto: a subscriber arriving afterwards (as Home
Assistant starting later would) receives every one of them, retained; the removal messages clear them."""

from __future__ import annotations

import threading
import uuid

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from facebus.mqtt import MqttClient
from facebus.topics import Topics
from recognizer.discovery import discovery_messages, removal_messages
from tests.conftest import wait_for
from tests.factories import mqtt_settings

pytestmark = pytest.mark.integration

TOPICS = Topics()


def publish_all(port: int, messages: list[tuple[str, bytes]]) -> None:
    client = MqttClient(mqtt_settings(port, "discovery"), None, "discovery")
    client.start()
    try:
        assert client.wait_connected(10)
        infos = [client.publish(topic, payload, qos=1, retain=True) for topic, payload in messages]
        for info in infos:
            info.wait_for_publish(timeout=10)
            assert info.is_published()
    finally:
        client.stop()


def retained(port: int, topic_filter: str, expected: int) -> dict[str, paho.MQTTMessage]:
    """Messages a new subscriber to ``topic_filter`` receives; waits for ``expected`` of them or for the broker's
    answer to a marker published after subscribing (so an empty result is known to be complete)."""
    got: dict[str, paho.MQTTMessage] = {}
    lock = threading.Lock()
    marker = f"{topic_filter.rstrip('#')}marker/{uuid.uuid4().hex}"
    seen_marker = threading.Event()

    def on_message(client, userdata, message):
        if message.topic == marker:
            seen_marker.set()
            return
        with lock:
            got[message.topic] = message

    def on_subscribe(client, userdata, mid, reason_codes, properties):
        client.publish(marker, b"x", qos=1)  # not retained: it arrives after every retained message of the filter

    client = paho.Client(CallbackAPIVersion.VERSION2, protocol=paho.MQTTv5)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
    client.connect("127.0.0.1", port)
    client.loop_start()
    try:
        assert wait_for(lambda: seen_marker.is_set() and len(got) >= expected, 10), (len(got), expected)
        with lock:
            return dict(got)
    finally:
        client.disconnect()
        client.loop_stop()


def test_discovery_configs_are_retained_for_later_subscribers(mosquitto):
    prefix = f"ha-test-{uuid.uuid4().hex[:8]}"  # one broker serves the whole session: a discovery prefix of our own
    messages = discovery_messages("door", TOPICS, prefix) + discovery_messages("gate", TOPICS, prefix, "recognizer-b")
    assert len(messages) == 8
    publish_all(mosquitto.port, messages)

    got = retained(mosquitto.port, f"{prefix}/#", len(messages))
    assert set(got) == {topic for topic, _ in messages}
    for topic, payload in messages:
        assert got[topic].retain, topic
        assert got[topic].payload == payload

    publish_all(mosquitto.port, removal_messages("door", TOPICS, prefix))
    left = retained(mosquitto.port, f"{prefix}/#", 4)
    assert set(left) == {topic for topic, _ in discovery_messages("gate", TOPICS, prefix, "recognizer-b")}

    publish_all(mosquitto.port, removal_messages("gate", TOPICS, prefix))
    assert retained(mosquitto.port, f"{prefix}/#", 0) == {}
