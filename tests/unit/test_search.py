"""The parts under `facebus faces search` (facebus_tools.search): ranking the candidates and reading --since."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from archiver.history import HistoryEntry
from facebus_tools.search import Candidate, parse_since, rank


def test_rank_keeps_the_candidates_within_tolerance_nearest_first():
    def entry(n):
        at = datetime(2026, 11, 1, tzinfo=timezone.utc) + timedelta(minutes=n)
        return HistoryEntry(at, n, "unknown", "unknown", "door", f"{n}.jpg", f"v-00000{n}")

    probe = np.zeros(4, np.float32)
    candidates = [Candidate(entry(1), np.array([0.5, 0, 0, 0])), Candidate(entry(2), np.array([0, 0.2, 0, 0])),
                  Candidate(entry(3), np.array([0, 0, 1.2, 0])), Candidate(entry(4), np.array([0, 0, 0, 0.5]))]
    found = rank(probe, candidates, 0.5)
    ranked = [(f.entry.crop_path, round(f.distance, 3)) for f in found]
    assert ranked == [("2.jpg", 0.2), ("4.jpg", 0.5), ("1.jpg", 0.5)]  # a tie: the newer entry first
    assert rank(probe, [], 1.0) == [] and rank(probe, candidates, 0.1) == []
    assert found[0].to_dict() == {"time": "2026-11-01T00:02:00.000Z", "device": "door", "person": None,
                                  "category": "unknown", "visitor_id": "v-000002", "distance": 0.2,
                                  "crop_path": "2.jpg"}


def test_since_takes_durations_dates_and_times():
    now = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
    assert parse_since("30d", now) == now - timedelta(days=30)
    assert parse_since("1d12h", now) == now - timedelta(hours=36)
    assert parse_since("90m", now) == parse_since("1.5h", now) == now - timedelta(minutes=90)
    assert parse_since("2w", now) == now - timedelta(days=14)
    assert parse_since("2026-11-01", now) == datetime(2026, 11, 1, tzinfo=timezone.utc)
    assert parse_since("2026-11-01T09:00:00+01:00", now) == datetime(2026, 11, 1, 8, tzinfo=timezone.utc)
    for bad in ("", "30", "d", "yesterday", "2026-11-01T09:00:00"):
        with pytest.raises(ValueError):
            parse_since(bad, now)
