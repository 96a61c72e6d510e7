"""Face tracks and the vote per track (recognizer.tracking): association, ending, bounds and decisions."""

from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from facebus.events import Category
from recognizer.matching import Match
from recognizer.quality import Quality
from recognizer.tracking import UNKNOWN_VOTE, Tracker, TrackPolicy, affinity

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
GOOD = Quality(width_px=80, sharpness=300.0, frontal=0.9)
POLICY = TrackPolicy(timeout_s=1.0, min_votes=2, resample_s=1.0, max_tracks=8, min_face_px=32, min_sharpness=20.0,
                     consistent_votes=4, consistent_distance=1.15, margin=0.05)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def box(left: int, top: int = 100, size: int = 80) -> tuple[int, int, int, int]:
    return (top, left + size, top + size, left)


def named(person: str, distance: float = 0.8) -> Match:
    return Match(person, Category.authorised, distance, person, f"Authorised/{person}.jpg", "Other", 1.3)


def stranger(nearest: str = "Alice", distance: float = 1.2, second_distance: float = 1.3) -> Match:
    return Match(None, Category.unknown, distance, nearest, f"Authorised/{nearest}.jpg", "Other", second_distance,
                 "no_match", Category.restricted)


def view(i: int) -> np.ndarray:
    """A distinct unit encoding per view ``i`` (views of one face differ a little)."""
    encoding = np.zeros(128, np.float32)
    encoding[0], encoding[1 + i] = 1.0, 0.1
    return encoding / np.linalg.norm(encoding)


def test_a_face_walking_across_the_frame_keeps_one_track():
    tracker = Tracker("door", POLICY)
    ids = set()
    for i in range(20):  # 25 px per frame at 5 fps: fast walking, boxes overlap less each frame
        (track,), ended = tracker.update([box(10 + 25 * i)], at(i * 0.2))
        assert ended == []
        ids.add(track.track_id)
    assert len(ids) == 1 and track.frames == 20


def test_two_faces_two_tracks_even_when_the_order_of_detections_changes():
    tracker = Tracker("door", POLICY)
    a, b = tracker.update([box(10), box(400)], at(0))[0]
    b2, a2 = tracker.update([box(405), box(12)], at(0.2))[0]
    assert (a2, b2) == (a, b) and a is not b


def test_a_track_unseen_for_the_timeout_ends_and_a_new_face_gets_a_new_track():
    tracker = Tracker("door", POLICY)
    (first,), _ = tracker.update([box(10)], at(0))
    assert tracker.update([], at(0.5)) == ([], [])
    (second,), ended = tracker.update([box(10)], at(1.2))
    assert ended == [first] and second is not first
    assert tracker.expire(at(5)) == [second] and tracker.tracks == {}


def test_live_tracks_are_bounded_when_a_frame_floods_detections():
    tracker = Tracker("door", POLICY)
    boxes = [box(10 + 90 * (i % 20), top=90 * (i // 20)) for i in range(100)]
    assigned, _ = tracker.update(boxes, at(0))
    assert len(tracker.tracks) == POLICY.max_tracks
    assert sum(t is not None for t in assigned) == POLICY.max_tracks
    assert assigned[:POLICY.max_tracks] == [t for t in assigned if t is not None]  # the first (largest) boxes win


def test_affinity_refuses_a_face_of_another_size_far_away():
    assert affinity(box(10), box(12)) > 0.8
    assert affinity(box(10), box(300)) == 0
    assert affinity(box(10, size=40), box(10, size=200)) == 0


def test_a_stranger_who_lands_near_someone_now_and_then_stays_unknown():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    for i, match in enumerate([stranger(), named("Alice", 0.98), stranger(), stranger(), named("Alice", 0.99)]
                              + [stranger()] * 3):
        track.add_sample(match, GOOD, at(i * 0.2), POLICY)
    identity = track.decide(POLICY)
    assert identity.person is None and identity.category is Category.unknown and identity.reason == "no_match"
    assert track.votes == {UNKNOWN_VOTE: 6, "Alice": 2}


def test_one_lucky_sample_names_nobody_until_a_second_vote():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    track.add_sample(named("Alice"), GOOD, at(0), POLICY)
    assert track.decide(POLICY) is None  # one vote: undecided
    track.add_sample(named("Alice", 0.7), GOOD, at(0.2), POLICY)
    identity = track.decide(POLICY)
    assert identity.person == "Alice" and identity.match.distance == 0.7


def test_a_leader_without_a_majority_is_watched_a_little_longer_then_unknown():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    track.add_sample(stranger(), GOOD, at(0), POLICY)
    track.add_sample(named("Alice"), GOOD, at(0.2), POLICY)
    assert track.decide(POLICY) is None  # Alice leads without a majority: keep looking
    for i in range(6):
        assert track.decide(POLICY) is None
        track.add_sample(stranger(), GOOD, at(0.4 + 0.2 * i), POLICY)
    assert track.decide(POLICY).person is None  # 8 samples: unknown


def test_a_track_that_was_unknown_becomes_known_as_better_views_arrive():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    track.add_sample(stranger("Alice", 1.2), GOOD, at(0), POLICY)
    track.add_sample(stranger("Alice", 1.2), GOOD, at(0.2), POLICY)
    track.announced = track.decide(POLICY)
    assert track.announced.person is None
    for i in range(3):
        track.add_sample(named("Alice", 0.8), GOOD, at(1 + i), POLICY)
    assert track.decide(POLICY).person == "Alice"


def test_quality_gate_never_samples_a_small_or_blurred_face_and_says_why():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10, size=20)], at(0))
    small, blurred = Quality(20, 300.0, 1.0), Quality(80, 5.0, 1.0)
    assert not track.wants_sample(small, at(0), POLICY)
    assert not track.wants_sample(blurred, at(0), POLICY)
    assert track.decide(POLICY) is None  # one frame: undecided
    assert track.add_gated("too_small", small)  # the track's best view so far
    tracker.update([box(12, size=20)], at(0.2))
    assert not track.add_gated("too_small", small)  # no better
    identity = track.decide(POLICY)
    assert (identity.person, identity.reason, identity.match) == (None, "too_small", None)


def test_sampling_first_views_then_better_views_or_every_resample_s():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    assert track.wants_sample(GOOD, at(0), POLICY)
    track.add_sample(named("Alice"), GOOD, at(0), POLICY)
    track.add_sample(named("Alice"), GOOD, at(0.2), POLICY)
    track.announced = track.decide(POLICY)
    assert not track.wants_sample(GOOD, at(0.4), POLICY)  # decided, same view: no new encoding
    assert track.wants_sample(Quality(140, 300.0, 1.0), at(0.4), POLICY)  # a much larger view
    assert track.wants_sample(GOOD, at(1.2), POLICY)  # resample_s after the last sample


@pytest.mark.parametrize("ended", [False, True])
def test_an_ended_track_is_always_decided(ended):
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    tracker.update([box(10)], at(0.2))
    track.add_sample(named("Alice"), GOOD, at(0.2), POLICY)
    identity = track.decide(POLICY, ended=ended)
    assert (identity is None) is (not ended)
    if ended:
        assert identity.person is None  # one vote in two frames is not enough to name anybody, even at the end


def test_a_single_still_photo_is_named_by_its_one_sample_when_its_track_ends():
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    track.add_sample(named("Alice"), GOOD, at(0), POLICY)
    assert track.decide(POLICY) is None
    assert track.decide(POLICY, ended=True).person == "Alice"


def test_a_face_just_beyond_the_tolerance_in_view_after_view_is_named_by_consistency():
    """A profile or a small face: every distinct view has the same nearest person just beyond the tolerance."""
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    for i in range(4):
        assert track.decide(POLICY) is None  # someone leads: watched, not called unknown yet
        track.add_sample(stranger("Alex", 1.08 + 0.01 * i, 1.2), GOOD, at(0.2 * i), POLICY, view(i))
    identity = track.decide(POLICY)
    assert (identity.person, identity.category, identity.reason) == ("Alex", Category.restricted, "consistent")
    assert identity.match.distance == 1.08


def test_the_same_frame_sent_again_is_one_view_for_the_consistency_rule():
    """A stranger's still photo shown for seconds must not add up to a name."""
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    for i in range(10):
        track.add_sample(stranger("Alex", 1.08, 1.2), GOOD, at(0.2 * i), POLICY, view(0))
    assert track.consistent == {"Alex": 1} and track.decide(POLICY).person is None


@pytest.mark.parametrize("match", [stranger("Alex", 1.16, 1.3), stranger("Alex", 1.08, 1.1)], ids=["far", "no-margin"])
def test_views_beyond_the_band_or_without_the_margin_do_not_count(match):
    tracker = Tracker("door", POLICY)
    (track,), _ = tracker.update([box(10)], at(0))
    for i in range(8):
        track.add_sample(match, GOOD, at(0.2 * i), POLICY, view(i))
    assert track.consistent == {} and track.decide(POLICY).person is None
