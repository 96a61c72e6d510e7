"""The recognition engine on real frames with the real models (no servers): the clip, motion, scene cuts, bounds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from facebus.images import encode_jpeg, load_photo
from facebus.settings import RecognizerSettings
from tests.conftest import CLIP, FACES_DEV, GALLERY

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, tzinfo=timezone.utc)
OBAMA = encode_jpeg(load_photo(FACES_DEV / "probe/Barack_Obama/obama1.jpg"))
TOM = encode_jpeg(load_photo(FACES_DEV / "probe/Tom_Hanks/Tom_Hanks_0006.jpg"))
COFFEE = encode_jpeg(load_photo(FACES_DEV / "noface/coffee.jpg"))


@pytest.fixture(scope="module")
def index(tmp_path_factory):
    from recognizer.photos import load_index

    index, rejected = load_index(RecognizerSettings(gallery=str(GALLERY), cache_dir=tmp_path_factory.mktemp("cache")))
    assert not rejected
    return index


def make_engine(index, **settings):
    from recognizer.engine import Engine

    engine = Engine(RecognizerSettings(**settings))
    engine.set_gallery(index)
    return engine


def show(engine, device, jpeg, frames, start_s=0.0, fps=5.0):
    """``frames`` frames of one picture at ``fps``; the FrameResults."""
    return [engine.process_jpeg(device, jpeg, T0 + timedelta(seconds=start_s + i / fps), now_s=start_s + i / fps)
            for i in range(frames)]


def test_the_clip_names_exactly_the_three_people_with_their_categories(index):
    from recognizer.identify import video_frames

    engine = make_engine(index)
    events = []
    for time_s, rgb in video_frames(CLIP, fps=10):
        events += engine.process("hamilton", rgb, T0 + timedelta(seconds=time_s), now_s=time_s).events
    events += engine.finish()
    named = {e.person: e.category.value for e in events if e.person}
    assert named == {"Lin_Manuel_Miranda": "authorised", "Alex_Lacamoire": "restricted", "Barack_Obama": "authorised"}
    tracks = {e.track_id for e in events}
    assert {e.track_id for e in events if e.event_type.value == "ended"} == tracks  # every track ended once
    assert len([e for e in events if e.event_type.value == "decided"]) == len(tracks)
    assert len(tracks) < 60, "tracks, not frames: 92 frames with 1-6 faces each"


def test_a_still_empty_scene_is_skipped_but_a_still_face_is_not(index):
    engine = make_engine(index)
    empty = show(engine, "hall", COFFEE, 5)
    assert [r.still for r in empty] == [False, True, True, True, True]
    face = show(engine, "desk", TOM, 5)
    assert not any(r.still for r in face) and all(r.faces == 1 for r in face)
    assert sum(r.encoded for r in face) < 5, "a decided track is not encoded on every frame"


def test_a_scene_cut_ends_the_tracks_of_the_previous_scene(index):
    engine = make_engine(index)
    first = show(engine, "cam", OBAMA, 3)
    cut = show(engine, "cam", TOM, 3, start_s=0.6)
    ended = [e for r in first + cut for e in r.events if e.event_type.value == "ended"]
    assert [e.person for e in ended] == ["Barack_Obama"]
    assert ended[0].last_seen == T0 + timedelta(seconds=0.4)
    assert {e.person for r in cut for e in r.events} == {"Tom_Hanks", "Barack_Obama"}


def test_device_state_is_bounded_and_forgotten_devices_end_their_tracks(index):
    engine = make_engine(index, max_devices=20, motion_threshold=0)
    ended = []
    for i in range(200):  # 200 invented device ids, one frame each
        ended += [e for r in show(engine, f"cam{i}", TOM, 1, start_s=i * 0.01) for e in r.events
                  if e.event_type.value == "ended"]
    assert engine.devices == 20 and engine.live_tracks() == 20
    assert len(ended) == 180 and {e.person for e in ended} == {"Tom_Hanks"}
    assert len(engine.expire_idle(now_s=100.0)) == 2 * 20  # decided (one sample) and ended for each
    assert engine.devices == 0


def test_a_gallery_of_another_model_is_refused(index):
    from recognizer.matching import GalleryIndex

    engine = make_engine(index)
    with pytest.raises(ValueError, match="dlib"):
        engine.set_gallery(GalleryIndex(index.entries, "dlib"))


def test_the_dlib_model_still_serves_its_galleries_and_never_meets_sface_encodings(tmp_path):
    """model=dlib end to end on a small gallery; its cache entries and index are its own."""
    import shutil

    from recognizer.engine import Engine
    from recognizer.photos import load_index

    gallery = tmp_path / "gallery"
    for person in ("Tom_Hanks", "Joseph_Biden"):
        shutil.copytree(GALLERY / "Authorised" / person, gallery / "Authorised" / person)
    cache = tmp_path / "cache"
    sface_index, _ = load_index(RecognizerSettings(gallery=str(gallery), cache_dir=cache))
    settings = RecognizerSettings(gallery=str(gallery), cache_dir=cache, model="dlib")
    dlib_index, rejected = load_index(settings)
    assert not rejected and dlib_index.model == "dlib" and sface_index.model == "yunet-sface"
    assert len(list(cache.glob("*.npy"))) == len(dlib_index) + len(sface_index)  # one cache entry per model
    engine = Engine(settings)
    engine.set_gallery(dlib_index)
    show(engine, "desk", TOM, 3)
    events = [e for e in engine.finish() if e.event_type.value == "ended"]
    assert [(e.person, e.model) for e in events] == [("Tom_Hanks", "dlib")]
    assert events[0].distance <= settings.thresholds("dlib").tolerance
    with pytest.raises(ValueError):
        engine.set_gallery(sface_index)
