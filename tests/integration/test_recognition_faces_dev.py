"""Recognition quality on the real photos of faces-dev (samples/faces-dev) at the default settings, through the
recognizer's own path: each photo is a JPEG/PNG frame given to the engine (decode, detect, quality gate, track,
encode, match, vote), and the track's decision when it ends is the answer.

Measured (docs/accuracy.md, bench/accuracy.py): these tests pin those rates, so a change that loses accuracy fails.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone

import pytest

from facebus.settings import RecognizerSettings
from tests.conftest import FACES_DEV, GALLERY

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from recognizer.engine import Engine
    from recognizer.photos import load_index

    settings = RecognizerSettings(gallery=str(GALLERY), cache_dir=tmp_path_factory.mktemp("cache"))
    index, rejected = load_index(settings)
    assert not rejected
    engine = Engine(settings)
    engine.set_gallery(index)
    return engine


def decisions(engine, path, frames: int = 1) -> list:
    """The decided events of a photo shown as ``frames`` frames at 5 fps to a device of its own."""
    data = path.read_bytes()
    events = []
    for i in range(frames):
        events += engine.process_jpeg(path.stem, data, T0 + timedelta(seconds=0.2 * i), now_s=0.2 * i).events
    events += engine.finish()
    return [e for e in events if e.event_type.value == "decided"]


def largest(events):
    """The decision of the track of the largest face."""
    return max(events, key=lambda e: e.quality.width_px) if events else None


def probes():
    return sorted((FACES_DEV / "probe").glob("*/*"))


def test_probes_are_named_as_the_right_person(engine):
    named = wrong = 0
    for path in probes():
        event = largest(decisions(engine, path))
        if event is not None and event.person == path.parent.name:
            named += 1
        elif event is not None and event.person is not None:
            wrong += 1
    assert wrong == 0
    assert named / len(probes()) >= 0.98, f"{named}/{len(probes())} probes named"


@pytest.mark.parametrize("frames", [1, 10])
def test_no_stranger_is_named_in_a_photo_or_a_slideshow(engine, frames):
    """Strangers as single photos, and as a slideshow (2 s per photo at 5 fps, like people walking past a camera)."""
    named = [(path.name, e.person) for path in sorted((FACES_DEV / "strangers").glob("*"))
             for e in decisions(engine, path, frames) if e.person is not None]
    assert named == []


def test_group_photos_name_the_enrolled_people_present_and_nobody_else(engine):
    rows = {row["path"]: row for row in csv.DictReader((FACES_DEV / "manifest.csv").open())}
    for path in sorted((FACES_DEV / "groups").glob("*")):
        present = {p for p in rows[f"groups/{path.name}"]["identity"].split(";") if p not in ("unknown", "group")}
        found = {e.person for e in decisions(engine, path)} - {None}
        assert found <= present, path.name
        assert len(found) >= len(present) - 1, f"{path.name}: {found} of {present}"


def test_pictures_without_faces_name_nobody(engine):
    for path in sorted((FACES_DEV / "noface").glob("*")):
        assert all(e.person is None for e in decisions(engine, path)), path.name


def test_a_face_too_small_for_the_model_is_never_encoded_and_says_why(engine):
    from facebus.images import encode_jpeg, load_photo, scale_image

    rgb = load_photo(FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0006.jpg")  # face ~110 px wide in 250 px
    small = scale_image(rgb, 0.18)  # face ~20 px
    result = engine.process_jpeg("tiny", encode_jpeg(small), T0, now_s=0.0)
    assert result.faces >= 1 and result.encoded == 0
    (event,) = [e for e in engine.finish() if e.event_type.value == "decided"]
    assert (event.person, event.reason.value, event.samples, event.distance) == (None, "too_small", 0, None)
