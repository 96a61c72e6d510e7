"""The access policy and its one-decision-per-change state (pure)."""

from __future__ import annotations

from facebus.events import AccessReason, Category, Decision, TrackBox
from facebus.settings import AccessSettings
from recognizer.access import NO_FACE, AccessState, decide
from tests.factories import T0

DEFAULT = AccessSettings()


def track(person: str | None, category: Category | None, track_id: str = "t1", samples: int = 2) -> TrackBox:
    return TrackBox(track_id=track_id, box=(10, 60, 60, 10), person=person, category=category, samples=samples)


ALICE = track("Alice", Category.authorised, "alice")
MALLORY = track("Mallory", Category.restricted, "mallory")
STRANGER = track(None, Category.unknown, "stranger")
UNDECIDED = track(None, None, "new")


def test_authorised_is_granted_restricted_and_unknown_are_denied_nobody_is_no_face():
    assert (decide([ALICE], DEFAULT).decision, decide([ALICE], DEFAULT).person) == (Decision.granted, "Alice")
    assert decide([MALLORY], DEFAULT).reason is AccessReason.restricted
    assert decide([STRANGER], DEFAULT).reason is AccessReason.unknown
    assert decide([], DEFAULT) == NO_FACE and NO_FACE.decision is Decision.denied


def test_a_restricted_person_anywhere_denies_everybody_unless_switched_off():
    assert decide([ALICE, MALLORY], DEFAULT).reason is AccessReason.restricted
    lenient = AccessSettings(restricted_denies_all=False)
    assert decide([ALICE, MALLORY], lenient).decision is Decision.granted
    assert decide([MALLORY], lenient).decision is Decision.denied


def test_an_unknown_face_beside_an_authorised_one_denies_only_when_asked():
    assert decide([ALICE, STRANGER], DEFAULT).decision is Decision.granted
    assert decide([ALICE, STRANGER], AccessSettings(unknown_denies_all=True)).reason is AccessReason.unknown


def test_undecided_faces_and_too_few_samples_hold_the_last_decision():
    assert decide([UNDECIDED], DEFAULT) is None
    assert decide([track("Alice", Category.authorised, samples=1)], AccessSettings(min_samples=3)) is None
    assert (decide([track("Alice", Category.authorised, samples=3)], AccessSettings(min_samples=3)).decision
            is Decision.granted)


def test_one_decision_per_change_not_per_frame():
    state = AccessState(DEFAULT)
    frames = [[], [UNDECIDED], [ALICE], [ALICE], [ALICE, UNDECIDED], [track("Alice", Category.authorised, "alice2")],
              [STRANGER], [STRANGER], []]
    decisions = [d for d in (state.update("door", f, T0) for f in frames) if d is not None]
    assert [(d.decision.value, d.reason.value, d.person) for d in decisions] == [
        ("denied", "no_face", None), ("granted", "authorised", "Alice"), ("denied", "unknown", None),
        ("denied", "no_face", None)]
    assert decisions[1].track_id == "alice" and decisions[1].device_id == "door"


def test_a_track_ending_without_a_frame_decides_again_and_devices_are_bounded():
    state = AccessState(DEFAULT, max_devices=3)
    state.update("door", [ALICE], T0)
    assert state.end_track("door", "someone-else", T0) is None
    assert state.end_track("door", "alice", T0).reason is AccessReason.no_face
    for n in range(100):
        state.update(f"cam{n}", [ALICE], T0)
    assert len(state) == 3
