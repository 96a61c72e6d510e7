"""Recognition quality on the real photos of faces-dev (samples/faces-dev) at the default settings, through the
recognizer's own path: the gallery is opened and refreshed as the service does (recognizer.photos.open_gallery) and
handed to an Engine as a worker gets it (entries and model over its pipe); each photo is a JPEG/PNG frame given to
the engine as a worker gives it (decode, detect, quality gate, track, encode, match, vote), and the track's decision
is the answer. Which photo shows whom comes from the dataset's manifest.csv.

Measured (docs/accuracy.md, bench/accuracy.py): these tests pin those rates, so a change that loses accuracy fails.
At the defaults: 58/59 probes named right (one left unknown, none named wrong), 0/9 strangers named, every face of
the group photos found, 7 of the 8 enrolled people in them named and nobody else.
"""

from __future__ import annotations

import csv
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from facebus.settings import RecognizerSettings
from tests.conftest import FACES_DEV, GALLERY

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
NAMED_GOAL = 0.98  # bench/accuracy.py chooses the tolerance that names at least this share of the probes


FOLDERS = {"probe": "probe", "stranger": "strangers", "group": "groups", "noface": "noface"}  # split -> folder


def manifest_split(split: str) -> list[tuple[Path, dict[str, str]]]:
    """(photo, its manifest row) of every manifest.csv row of ``split`` (probe, stranger, group, noface); the rows
    must list exactly the files of the split's folder, so a photo missing or left out of the manifest fails."""
    with (FACES_DEV / "manifest.csv").open(newline="") as f:
        rows = sorted((row for row in csv.DictReader(f) if row["split"] == split), key=lambda r: r["path"])
    listed = [(FACES_DEV / row["path"], row) for row in rows]
    on_disk = {p for p in (FACES_DEV / FOLDERS[split]).rglob("*") if p.is_file()}
    assert {path for path, _ in listed} == on_disk, f"manifest.csv {split} rows vs {FOLDERS[split]}/"
    return listed


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    from recognizer.engine import Engine
    from recognizer.matching import GalleryIndex
    from recognizer.photos import open_gallery

    settings = RecognizerSettings(gallery=str(GALLERY), cache_dir=tmp_path_factory.mktemp("cache"))
    gallery = open_gallery(settings)  # as recognizer.service.main
    gallery.refresh()
    assert not gallery.rejected and len(gallery.index.people) == 22
    engine = Engine(RecognizerSettings(**settings.model_dump()))  # as a worker process builds it
    engine.set_gallery(GalleryIndex(gallery.index.entries, gallery.index.model))  # as a worker receives it
    return engine


def decisions(engine, path: Path, frames: int = 1) -> list:
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


def test_probes_are_named_as_the_right_person(engine):
    probes = manifest_split("probe")
    assert len(probes) == 59
    assert {row["identity"] for _, row in probes} <= set(engine.index.people)  # every probe's person is enrolled
    named, wrong, unseen, unnamed = [], [], [], []
    for path, row in probes:
        event = largest(decisions(engine, path))
        if event is None:
            unseen.append(path.name)  # no face found, or none decided
        elif event.person == row["identity"]:
            named.append(path.name)
        elif event.person is not None:
            wrong.append((path.name, event.person))
        else:
            unnamed.append((path.name, event.reason.value))
    assert unseen == [] and wrong == []
    assert len(named) / len(probes) >= NAMED_GOAL, f"{len(named)}/{len(probes)} probes named; unnamed: {unnamed}"


@pytest.mark.parametrize("frames", [1, 10])
def test_no_stranger_is_named_in_a_photo_or_a_slideshow(engine, frames):
    """Strangers as single photos, and as a slideshow (2 s per photo at 5 fps, like people walking past a camera):
    each stranger's one face is found and decided unknown."""
    found = {path.name: [(e.person, e.reason.value) for e in decisions(engine, path, frames)]
             for path, _ in manifest_split("stranger")}
    named = {name: got for name, got in found.items() if any(person is not None for person, _ in got)}
    assert named == {}
    assert {name: len(got) for name, got in found.items()} == dict.fromkeys(found, 1)
    assert {reason for got in found.values() for _, reason in got} <= {"no_match", "ambiguous"}


def test_group_photos_find_every_face_and_name_the_enrolled_people_present_and_nobody_else(engine):
    present_total = found_total = 0
    for path, row in manifest_split("group"):
        present = {p for p in row["identity"].split(";") if p not in ("unknown", "group")}
        events = decisions(engine, path)
        found = {e.person for e in events} - {None}
        assert len(events) == int(row["expected_face_count"]), f"{path.name}: {len(events)} faces decided"
        assert found <= present, path.name
        assert len(found) >= len(present) - 1, f"{path.name}: {found} of {present}"
        present_total, found_total = present_total + len(present), found_total + len(found)
    assert found_total >= present_total - 1, f"{found_total} of {present_total} enrolled people named"


def test_pictures_without_faces_give_no_decision(engine):
    for path, row in manifest_split("noface"):
        assert row["expected_face_count"] == "0"
        assert decisions(engine, path) == [], path.name


def test_a_face_too_small_for_the_model_is_never_encoded_and_says_why(engine):
    from facebus.images import encode_jpeg, load_photo, scale_image

    rgb = load_photo(FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0006.jpg")  # face ~110 px wide in 250 px
    small = scale_image(rgb, 0.18)  # face ~20 px
    result = engine.process_jpeg("tiny", encode_jpeg(small), T0, now_s=0.0)
    assert result.faces >= 1 and result.encoded == 0
    (event,) = [e for e in engine.finish() if e.event_type.value == "decided"]
    assert (event.person, event.reason.value, event.samples, event.distance) == (None, "too_small", 0, None)
