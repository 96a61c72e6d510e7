"""The visitor book (pure): ids, matches, merges, visits, retention and bounds, on synthetic face encodings."""

from __future__ import annotations

from datetime import timedelta

import numpy as np

from facebus.settings import VisitorSettings
from recognizer.visitors import VisitorBook, VisitorRecord
from tests.factories import T0

SETTINGS = VisitorSettings(tolerance=0.5, visit_gap_s=600, retention_days=30, max_visitors=100, max_encodings=3)


def face(seed: int, noise: float = 0.0, rng_seed: int = 0) -> list[np.ndarray]:
    """A unit-length 128-d 'face' per seed; ``noise`` moves it a little (another view of the same face)."""
    base = np.random.default_rng(seed).normal(size=128)
    jitter = np.random.default_rng(1000 + rng_seed).normal(size=128) * noise
    vector = base / np.linalg.norm(base) + jitter
    return [(vector / np.linalg.norm(vector)).astype(np.float32)]


def test_the_same_face_keeps_its_id_and_another_face_gets_a_new_one():
    book = VisitorBook(SETTINGS, "yunet-sface")
    first = book.see(face(1), "door", T0)
    again = book.see(face(1, noise=0.02, rng_seed=1), "porch", T0 + timedelta(minutes=1))
    other = book.see(face(2), "door", T0 + timedelta(minutes=2))
    assert first.new and not again.new and other.new
    assert again.record.visitor_id == first.record.visitor_id != other.record.visitor_id
    assert again.record.cameras == ["door", "porch"] and again.record.visits == 1  # within the visit gap
    assert first.record.visitor_id.startswith("v-") and len(first.record.visitor_id) == 8


def test_a_return_after_the_visit_gap_counts_a_visit():
    book = VisitorBook(SETTINGS, "yunet-sface")
    book.see(face(1), "door", T0)
    later = book.see(face(1), "door", T0 + timedelta(hours=5))
    assert (later.record.visits == 2 and later.record.first_seen == T0
            and later.record.last_seen == T0 + timedelta(hours=5))


def test_two_visitors_found_to_be_one_merge_into_the_older():
    book = VisitorBook(SETTINGS, "yunet-sface")
    a, b = face(1), face(1, noise=0.11, rng_seed=2)  # two views too far apart to match each other...
    older = book.see(a, "door", T0).record.visitor_id
    newer = book.see(b, "door", T0 + timedelta(days=1)).record.visitor_id
    assert older != newer
    both = book.see([a[0], b[0]], "door", T0 + timedelta(days=2))  # ...until a track has both views
    assert both.record.visitor_id == older and both.merged == [newer] and newer in both.record.aliases
    assert set(book.visitors) == {older} and both.record.visits == 3


def test_retention_and_the_bounds():
    book = VisitorBook(SETTINGS, "yunet-sface")
    book.see(face(1), "door", T0)
    book.see(face(2), "door", T0 + timedelta(days=40))
    assert len(book.expire(T0 + timedelta(days=41))) == 1 and len(book) == 1
    for n in range(3, 400):  # a flood of strangers: the ones seen longest ago go first
        book.see(face(n), "door", T0 + timedelta(days=41, seconds=n))
    assert len(book) == SETTINGS.max_visitors
    record = book.see([face(500)[0], *face(501), *face(502), *face(503)], "door", T0 + timedelta(days=42)).record
    assert len(record.encodings) == SETTINGS.max_encodings


def test_a_record_survives_its_json():
    record = VisitorBook(SETTINGS, "yunet-sface").see(face(1), "door", T0).record
    back = VisitorRecord.from_json(record.to_json())
    assert (back.visitor_id, back.cameras, back.visits) == (record.visitor_id, ["door"], 1)
    assert abs(back.first_seen - T0) < timedelta(milliseconds=1)  # RFC 3339 with milliseconds
    assert np.allclose(back.encodings[0], record.encodings[0], atol=1e-5)
