"""Floods of the recognizer's and the MQTT client's own bookkeeping: each stays at its bound."""

from __future__ import annotations

import numpy as np

from facebus.mqtt import MAX_REFUSALS_LOGGED, MqttClient
from facebus.settings import MqttSettings, RecognizerSettings, VisitorSettings
from tests.factories import face_event


def test_refused_topics_logged_once_each_stay_bounded():
    client = MqttClient(MqttSettings(), None, "test")
    assert client._refusal_is_new("publish to:a") and not client._refusal_is_new("publish to:a")
    for n in range(MAX_REFUSALS_LOGGED + 500):
        client._refusal_is_new(f"publish to:forged/{n}")
    assert len(client._refused) == MAX_REFUSALS_LOGGED


def test_the_visitors_of_live_tracks_stay_bounded(tmp_path):
    from recognizer import service

    recognizer = service.Recognizer(RecognizerSettings(gallery=str(tmp_path)), MqttClient(MqttSettings(), None, "t"),
                                    gallery=None, visitors=VisitorSettings(store=str(tmp_path / "v"), max_visitors=5))
    rng = np.random.default_rng(3)
    for n in range(service.MAX_TRACK_VISITORS + 300):  # tracks that never end (their ended event never comes)
        event = face_event(None, track_id=f"t{n}")
        event._encodings = [rng.normal(size=128).astype(np.float32)]
        assert recognizer.with_visitor(event).visitor is not None
    assert len(recognizer._track_visitors) == service.MAX_TRACK_VISITORS
    assert len(recognizer.visitors.book) == 5
