"""``facebus faces visitors | promote | forget-visitor | search`` as a user runs them (subprocesses), on history made
the real way: the recognizer (in process, one worker process) sees real photos on a real Mosquitto, the archiver
(in process) writes the entries to a real influxd 1.6.7 and the crops to a folder, the visitor store fills from
those sightings. Tom Hanks and Paul Rudd are not in the gallery (strangers: visitors); Barack Obama is."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from datetime import timedelta
from pathlib import Path

import numpy as np
import pytest

from archiver.core import entry_for, point_for
from archiver.influx import V1Writer
from archiver.service import Archiver, SpoolWriter, run
from archiver.spool import Spool
from facebus.events import FaceEvent, Visitor, format_time, utc_now
from facebus.files import write_atomically
from facebus.images import encode_jpeg, load_photo, scale_image
from facebus.mqtt import MqttClient
from facebus.settings import ArchiverSettings, InfluxSettings, RecognizerSettings, VisitorSettings
from facebus.topics import Topics
from recognizer.visitors import VisitorStore
from tests.conftest import FACES_DEV, GALLERY, ROOT, S3_BUCKET, wait_for
from tests.factories import mqtt_settings

pytestmark = pytest.mark.integration

TOPICS = Topics()
HANKS = FACES_DEV / "probe" / "Tom_Hanks"
RUDD = FACES_DEV / "strangers" / "paul_rudd.jpg"
OBAMA = FACES_DEV / "probe" / "Barack_Obama"


class Site:
    """A recognizer (gallery ``gallery``, its visitor store in gallery/Visitors/, gallery polled every 0.5 s) and an
    archiver (every decided event an entry: no throttle) on real servers, and a camera publishing frames."""

    def __init__(self, mosquitto, influxd, tmp_path: Path, gallery: Path) -> None:
        from recognizer.photos import open_gallery
        from recognizer.service import Recognizer

        self.gallery, self.crops = gallery, tmp_path / "crops"
        self.influx = InfluxSettings(url=influxd.url, api="v1", database=f"visitors{time.monotonic_ns()}")
        self.writer = V1Writer(self.influx)
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []

        archiver_mqtt = MqttClient(mqtt_settings(mosquitto.port, "archiver"), TOPICS.service_availability("archiver"),
                                   "archiver")
        settings = ArchiverSettings(crops_dir=self.crops, spool_path=tmp_path / "spool.sqlite", throttle_s=0)
        spool = Spool(settings.spool_path, settings.spool_max_bytes, settings.spool_max_age_s)
        batch = SpoolWriter(self.writer, spool, batch_size=100, flush_interval_s=0.2, counters=archiver_mqtt.counters)
        self._start(run, archiver_mqtt, Archiver(settings, spool, batch, archiver_mqtt.counters), self.stop_event, 5.0)

        recognizer = RecognizerSettings(gallery=str(gallery), cache_dir=tmp_path / "cache", workers=1,
                                        max_frame_bytes=2_000_000, gallery_poll_s=0.5)
        loader = open_gallery(recognizer)
        loader.refresh()
        self.mqtt = MqttClient(mqtt_settings(mosquitto.port, "recognizer"), TOPICS.service_availability("recognizer"),
                               "recognizer")
        self.recognizer = Recognizer(recognizer, self.mqtt, loader)
        self._start(self.recognizer.run, self.stop_event)

        self.events: list[FaceEvent] = []
        self.gallery_people: set[str] = set()
        self.camera = MqttClient(mqtt_settings(mosquitto.port, "camera"), TOPICS.device_availability("cam"), "camera")
        self.camera.subscribe(TOPICS.all_faces, lambda m: self.events.append(FaceEvent.model_validate_json(m.payload)),
                              1)
        self.camera.subscribe(TOPICS.gallery_state(), self._on_gallery, 1)
        self.camera.start()
        assert self.mqtt.wait_connected(30) and archiver_mqtt.wait_connected(30) and self.camera.wait_connected(10)
        # The retained gallery state has reached the camera: its subscriptions (face events first) are in place.
        assert wait_for(lambda: "Barack_Obama" in self.gallery_people, 30)

    def _start(self, target, *args) -> None:
        self.threads.append(threading.Thread(target=target, args=args, daemon=True))
        self.threads[-1].start()

    def _on_gallery(self, message) -> None:
        self.gallery_people = {p["person"] for p in json.loads(message.payload)["people"]}

    def show(self, device: str, photo: Path | bytes, frames: int = 4) -> FaceEvent:
        """The camera ``device`` sees ``photo`` (a file, or JPEG bytes) for a few frames; the decided event of its
        track, once the archiver has written its entry and the recognizer its visitor store."""
        jpeg = photo if isinstance(photo, bytes) else photo.read_bytes()
        before, entries = len(self.events), len(self.entries())
        start = utc_now()
        for i in range(frames):
            self._deliver(device, jpeg, start + timedelta(seconds=0.2 * i))
        assert wait_for(lambda: any(e.event_type.value == "ended" for e in self.events[before:]), 30)
        decided = next(e for e in self.events[before:] if e.event_type.value == "decided")
        assert wait_for(lambda: len(self.entries()) == entries + 1, 20), "the archiver wrote the entry"
        visitors = self.recognizer.visitors
        assert wait_for(lambda: visitors.pending() == 0, 20), "the visitor store is written"
        return decided

    def _deliver(self, device: str, jpeg: bytes, captured_at) -> None:
        """Publish one frame and wait until the recognizer has taken it through its worker (processed, or skipped as
        still): frames never pile up in its newest-wins queue, so every frame counts as it would at a real camera's
        pace. A frame the recognizer was not ready for (its subscription or its membership still starting, QoS 0)
        is sent again."""
        counters = self.recognizer.counters
        kinds = ("frames_processed", "frames_still", "frames_dropped")
        taken = lambda: sum(counters.get(f"{kind}/{device}") for kind in kinds)  # noqa: E731
        already = taken()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            self.camera.publish(TOPICS.frame(device), jpeg, qos=0,
                                properties={"capture_time": format_time(captured_at)})
            if wait_for(lambda: taken() > already, 3):
                return
        raise AssertionError(f"the recognizer never took a frame of {device}")

    def entries(self) -> list[dict]:
        """Every face entry in InfluxDB: time (ns), tags and fields."""
        body = self.writer.query('SELECT * FROM "face_entry"', epoch="ns")
        return [dict(zip(s["columns"], v, strict=True)) for r in body["results"] for s in r.get("series", [])
                for v in s["values"]]

    def faces(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        """``facebus faces ARGS`` in a subprocess, on this site's gallery, InfluxDB and crops (through the
        environment, as a deployment sets them); ``env`` adds or overrides variables."""
        environment = dict(os.environ, FACEBUS_RECOGNIZER_GALLERY=str(self.gallery),
                           FACEBUS_RECOGNIZER_CACHE_DIR=str(self.crops.parent / "cli-cache"),
                           FACEBUS_INFLUX_URL=self.influx.url, FACEBUS_INFLUX_API="v1",
                           FACEBUS_INFLUX_DATABASE=self.influx.database, FACEBUS_ARCHIVER_CROPS_DIR=str(self.crops),
                           FACEBUS_LOG_JSON="1") | env
        return subprocess.run([sys.executable, "-m", "facebus_tools", "faces", *args], capture_output=True, text=True,
                              env=environment, cwd=ROOT, timeout=300)

    def close(self) -> None:
        """Stop the services and the camera (InfluxDB stays readable through :attr:`writer`)."""
        if self.stop_event.is_set():
            return
        self.stop_event.set()
        for thread in self.threads:
            thread.join(30)
        self.camera.stop()


@pytest.fixture
def site(mosquitto, influxd, tmp_path):
    gallery = tmp_path / "gallery"
    shutil.copytree(GALLERY / "Authorised" / "Barack_Obama", gallery / "Authorised" / "Barack_Obama")
    running = Site(mosquitto, influxd, tmp_path, gallery)
    yield running
    running.close()
    running.writer.close()


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines()]


def small_face_frame(photo: Path, scale: float) -> bytes:
    """A 640x360 camera frame showing ``photo`` shrunk by ``scale``: a face far from the camera."""
    rgb = scale_image(load_photo(photo), scale)
    frame = np.full((360, 640, 3), 90, np.uint8)
    frame[40:40 + rgb.shape[0], 200:200 + rgb.shape[1]] = rgb
    return encode_jpeg(frame, 90)


def test_search_finds_the_entries_of_the_person_in_another_photo_and_nobody_elses(site):
    door = site.show("door", HANKS / "Tom_Hanks_0006.jpg")
    porch = site.show("porch", HANKS / "Tom_Hanks_54745.jpg")
    rudd = site.show("door", RUDD)
    obama = site.show("door", OBAMA / "obama1.jpg")
    assert [e.person for e in (door, porch, rudd, obama)] == [None, None, None, "Barack_Obama"]
    assert door.visitor and rudd.visitor and door.visitor.visitor_id != rudd.visitor.visitor_id
    stored = {r["event_id"]: r for r in site.entries()}

    done = site.faces("search", str(HANKS / "Tom_Hanks_0008.jpg"))  # a photo the cameras never saw
    assert done.returncode == 0, done.stderr
    found = json_lines(done.stdout)
    hanks = {stored[e.event_id]["crop_path"] for e in (door, porch)}
    assert {f["crop_path"] for f in found} == hanks, "both Tom Hanks entries, not Paul Rudd's, not Obama's"
    assert [f["distance"] for f in found] == sorted(f["distance"] for f in found)
    assert all(f["distance"] <= 1.04 for f in found)  # the model's gallery tolerance (yunet-sface)
    by_device = {f["device"]: f for f in found}
    assert by_device["door"] == {
        "time": format_time(door.captured_at), "device": "door", "person": None, "category": "unknown",
        "visitor_id": door.visitor.visitor_id, "distance": by_device["door"]["distance"],
        "crop_path": stored[door.event_id]["crop_path"]}
    assert "4 entries since" in done.stderr and "4 crops encoded, 0 skipped" in done.stderr
    assert "2 within tolerance 1.04" in done.stderr

    # Enrolled people alike: another photo of Obama finds his entry, named.
    done = site.faces("search", str(GALLERY / "Authorised" / "Barack_Obama" / "obama.jpg"), "--limit", "1")
    assert done.returncode == 0, done.stderr
    (line,) = json_lines(done.stdout)
    assert (line["person"], line["category"], line["visitor_id"]) == ("Barack_Obama", "authorised", None)
    assert line["crop_path"] == stored[obama.event_id]["crop_path"]

    # A crop that shows no face is skipped, a crop file gone is counted, neither fails the search.
    shutil.copy(FACES_DEV / "noface" / "dog.jpg", site.crops / stored[rudd.event_id]["crop_path"])
    (site.crops / stored[obama.event_id]["crop_path"]).unlink()
    done = site.faces("search", str(HANKS / "Tom_Hanks_0008.jpg"), "--tolerance", "0.2")
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""  # nothing that near
    assert "4 entries since" in done.stderr and "2 crops encoded, 1 skipped (no face found), 1 without a crop file" \
        in done.stderr and "0 within tolerance 0.2" in done.stderr

    # --since: a time after the sightings reads none; a bad value is refused (exit 2).
    done = site.faces("search", str(HANKS / "Tom_Hanks_0008.jpg"), "--since", format_time(utc_now()))
    assert done.returncode == 0 and done.stdout == "" and "0 entries since" in done.stderr
    done = site.faces("search", str(HANKS / "Tom_Hanks_0008.jpg"), "--since", "1h")
    assert done.returncode == 0 and len(json_lines(done.stdout)) == 2
    done = site.faces("search", str(HANKS / "Tom_Hanks_0008.jpg"), "--since", "last tuesday")
    assert done.returncode == 2 and "neither a duration" in done.stderr
    done = site.faces("search", str(FACES_DEV / "noface" / "dog.jpg"))
    assert done.returncode == 1 and "no face found" in done.stderr


def test_visitors_lists_the_store_and_promote_enrols_a_visitor_whom_the_recognizer_then_names(site):
    first = site.show("door", HANKS / "Tom_Hanks_0006.jpg")
    again = site.show("porch", HANKS / "Tom_Hanks_0008.jpg")
    rudd = site.show("door", RUDD)
    hanks = first.visitor.visitor_id
    assert again.visitor.visitor_id == hanks and rudd.visitor.visitor_id != hanks

    done = site.faces("visitors", "--json")
    assert done.returncode == 0, done.stderr
    rows = {row["visitor_id"]: row for row in json_lines(done.stdout)}
    assert set(rows) == {hanks, rudd.visitor.visitor_id}
    row = rows[hanks]
    assert (row["visits"], row["cameras"], row["aliases"], row["model"]) == (1, ["door", "porch"], 0, "yunet-sface")
    assert row["first_seen"] == format_time(first.first_seen) <= row["last_seen"] == format_time(again.first_seen)
    assert row["crops"] >= 1 and Path(row["best_crop"]).is_file()
    assert Path(row["best_crop"]).parent == site.gallery / "Visitors" / hanks
    table = site.faces("visitors")
    assert table.returncode == 0 and table.stdout.splitlines()[0].split()[:3] == ["visitor", "visits", "first"]
    assert hanks in table.stdout and "door,porch" in table.stdout and "2 visitors in" in table.stdout

    done = site.faces("promote", hanks, "Tom Hanks")
    assert done.returncode == 0, done.stderr
    added = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("added ")]
    assert len(added) == row["crops"] and all(k.startswith("Authorised/Tom_Hanks/") for k in added)
    assert f"deleted Visitors/{hanks}/visitor.json" in done.stdout
    assert not (site.gallery / "Visitors" / hanks).exists()
    listed = site.faces("list", "--json")
    people = {p["person"]: p for p in json.loads(listed.stdout)["people"]}
    assert people["Tom_Hanks"]["category"] == "authorised" and people["Tom_Hanks"]["images"] == len(added)
    assert [r["visitor_id"] for r in json_lines(site.faces("visitors", "--json").stdout)] == [rudd.visitor.visitor_id]

    # The recognizer reads the gallery again (its poll) and names him from then on, with a photo never shown.
    assert wait_for(lambda: "Tom_Hanks" in site.gallery_people, 20)
    later = site.show("garage", HANKS / "Tom_Hanks_54745.jpg")
    assert (later.person, later.category.value, later.visitor) == ("Tom_Hanks", "authorised", None)

    done = site.faces("promote", rudd.visitor.visitor_id, "Paul_Rudd", "--restricted")
    assert done.returncode == 0, done.stderr
    assert list((site.gallery / "Restricted" / "Paul_Rudd").glob("*.jpg"))
    assert json_lines(site.faces("visitors", "--json").stdout) == []

    done = site.faces("promote", rudd.visitor.visitor_id, "Paul_Rudd")
    assert done.returncode == 1 and "has no crop in the visitor store" in done.stderr
    done = site.faces("promote", "v-nothex", "Paul_Rudd")
    assert done.returncode == 2 and "is not a visitor id" in done.stderr


def test_promote_of_a_visitor_seen_too_small_explains_and_changes_nothing(site):
    """A face 41 px wide in the frame: the recognizer names faces from 24 px, so it is a visitor, but its crop (never
    enlarged) shows a face too small for the gallery's 60 px: promote refuses every crop and says why."""
    far = site.show("door", small_face_frame(HANKS / "Tom_Hanks_0006.jpg", 0.4))
    assert far.person is None and far.visitor is not None and far.quality.width_px < 60
    vid = far.visitor.visitor_id
    kept = sorted(p.name for p in (site.gallery / "Visitors" / vid).iterdir())

    done = site.faces("promote", vid, "Tom Hanks")
    assert done.returncode == 1
    assert "face too small" in done.stderr and f"nothing promoted: all 1 crops of {vid} were refused" in done.stderr
    assert "at least 60 px" in done.stderr and "at most 160 px" in done.stderr
    assert "facebus faces add Tom_Hanks PHOTO.jpg" in done.stderr and f"forget-visitor {vid}" in done.stderr
    assert done.stdout == ""
    assert sorted(p.name for p in (site.gallery / "Visitors" / vid).iterdir()) == kept
    assert not (site.gallery / "Authorised" / "Tom_Hanks").exists()


def test_forget_visitor_deletes_the_store_files_entries_and_crops_of_that_visitor_only(site, influxd):
    first = site.show("door", HANKS / "Tom_Hanks_0006.jpg")
    again = site.show("porch", HANKS / "Tom_Hanks_0008.jpg")
    rudd = site.show("door", RUDD)
    obama = site.show("door", OBAMA / "obama1.jpg")
    site.close()  # nothing writes any more: the store and InfluxDB hold what they hold
    vid = first.visitor.visitor_id
    assert again.visitor.visitor_id == vid

    # An id merged into this visitor earlier (an alias) has an entry of its own, archived the archiver's way.
    store = VisitorStore.open(VisitorSettings(), str(site.gallery))
    (record,) = [r for r in store.load() if r.visitor_id == vid]
    record.aliases = ["v-00aa11"]
    store.save(record)
    merged = first.model_copy(update={"event_id": uuid.uuid4().hex, "device_id": "gate",
                                      "visitor": Visitor(visitor_id="v-00aa11", visits=1,
                                                         first_seen=first.first_seen)})
    entry = entry_for(merged)
    write_atomically(site.crops / entry.crop_path, (HANKS / "Tom_Hanks_0006.jpg").read_bytes())
    site.writer.write([point_for(entry).to_line_protocol()])
    before = {r["event_id"]: r for r in site.entries()}
    assert len(before) == 5
    gone = [before[e.event_id]["crop_path"] for e in (first, again)] + [entry.crop_path]
    kept = [before[e.event_id]["crop_path"] for e in (rudd, obama)]

    # The v2 API on influxd 1.6 fails: nothing at all is deleted (the history goes first).
    done = site.faces("forget-visitor", vid, FACEBUS_INFLUX_API="v2", FACEBUS_INFLUX_TIMEOUT_S="5")
    assert done.returncode == 1 and "InfluxDB" in done.stderr
    assert (site.gallery / "Visitors" / vid / "visitor.json").exists() and len(site.entries()) == 5
    assert all((site.crops / path).is_file() for path in gone)

    done = site.faces("forget-visitor", vid)
    assert done.returncode == 0, done.stderr
    deleted = [line.split()[2] for line in done.stdout.splitlines() if line.startswith("deleted crop ")]
    assert sorted(deleted) == sorted(gone)
    assert f"deleted Visitors/{vid}/visitor.json" in done.stdout
    assert "3 InfluxDB entries" in done.stdout and "v-00aa11" in done.stdout
    assert not (site.gallery / "Visitors" / vid).exists()
    assert (site.gallery / "Visitors" / rudd.visitor.visitor_id / "visitor.json").exists()
    assert sorted(r["event_id"] for r in site.entries()) == sorted([rudd.event_id, obama.event_id])
    assert not any((site.crops / path).exists() for path in gone)
    assert all((site.crops / path).is_file() for path in kept)
    assert not (site.crops / Path(entry.crop_path).parent).exists(), "the gate's folder, left empty, is gone"

    done = site.faces("forget-visitor", vid)
    assert done.returncode == 0, done.stderr
    assert f"{vid} is not in the visitor store" in done.stdout and "0 crops and 0 InfluxDB entries" in done.stdout
    assert len(site.entries()) == 2


def test_visitors_and_promote_on_an_s3_store(s3_env, tmp_path):
    """A visitor store on S3 (FACEBUS_VISITORS_STORE), filled by the recognizer's Visitors from real sightings (the
    engine on real photos): visitors shows the crop's s3:// location; promote copies the crops into a folder gallery
    and deletes the visitor's objects."""
    import base64

    from recognizer.engine import Engine
    from recognizer.visitors import Visitors

    prefix = f"visitors-{uuid.uuid4().hex[:8]}"
    settings = VisitorSettings(store=f"s3://{S3_BUCKET}/{prefix}")
    visitors = Visitors(settings, "yunet-sface", VisitorStore.open(settings, "unused"))
    assert visitors.flush_once()
    engine = Engine(RecognizerSettings(gallery="unused", cache_dir=None))
    start = utc_now()
    sightings = [("door", HANKS / "Tom_Hanks_0006.jpg"), ("porch", HANKS / "Tom_Hanks_0008.jpg")]
    for n, (device, photo) in enumerate(sightings):
        rgb = load_photo(photo)
        events = []
        for i in range(4):
            events += engine.process(device, rgb, start + timedelta(seconds=10 * n + 0.2 * i)).events
        events += engine.finish()
        decided = next(e for e in events if e.event_type.value == "decided")
        ref = visitors.see(decided._encodings, device, decided.first_seen, base64.b64decode(decided.crop_jpeg_b64))
        assert visitors.flush_once()  # the writer thread's turn
    gallery = tmp_path / "gallery"
    shutil.copytree(GALLERY / "Authorised" / "Barack_Obama", gallery / "Authorised" / "Barack_Obama")
    env = dict(os.environ, FACEBUS_VISITORS_STORE=settings.store, FACEBUS_RECOGNIZER_GALLERY=str(gallery),
               FACEBUS_RECOGNIZER_CACHE_DIR=str(tmp_path / "cache"), FACEBUS_LOG_JSON="1")

    def faces(*args):
        return subprocess.run([sys.executable, "-m", "facebus_tools", "faces", *args], capture_output=True, text=True,
                              env=env, cwd=ROOT, timeout=300)

    done = faces("visitors", "--json")
    assert done.returncode == 0, done.stderr
    (row,) = json_lines(done.stdout)
    assert (row["visitor_id"], row["cameras"], row["crops"]) == (ref.visitor_id, ["door", "porch"], 2)
    assert row["best_crop"].startswith(f"s3://{S3_BUCKET}/{prefix}/{ref.visitor_id}/")
    key = row["best_crop"][len(f"s3://{S3_BUCKET}/"):]
    assert s3_env.head_object(Bucket=S3_BUCKET, Key=key)["ContentLength"] > 0

    done = faces("promote", ref.visitor_id, "Tom Hanks")
    assert done.returncode == 0, done.stderr
    assert len(list((gallery / "Authorised" / "Tom_Hanks").glob("*.jpg"))) == 2
    listing = s3_env.list_objects_v2(Bucket=S3_BUCKET, Prefix=f"{prefix}/")
    assert listing.get("KeyCount", 0) == 0


def test_reading_and_deleting_entries_by_visitor_id_pages_batches_and_stays_exact(influxd, tmp_path, monkeypatch):
    """history.read_entries / delete_entries / purge_visitor on influxd 1.6.7 with small pages and batches: every
    entry of the visitor (a camera clock a day ahead included) and its crop go, a quote in an id widens nothing,
    the other entries stay."""
    from archiver import history
    from tests.factories import JPEG, face_event

    monkeypatch.setattr(history, "PAGE_SIZE", 3)
    monkeypatch.setattr(history, "DELETE_BATCH", 2)
    writer = V1Writer(InfluxSettings(url=influxd.url, api="v1", database=f"history{time.monotonic_ns()}"))
    crops = tmp_path / "crops"
    now = utc_now()

    def archive(visitor, device, at):
        event = face_event(None, device, at, event_id=uuid.uuid4().hex,
                           visitor=Visitor.model_construct(visitor_id=visitor, visits=1, first_seen=at)
                           if visitor else None)  # (unvalidated: ids the schema refuses stand for forged entries)
        entry = entry_for(event)
        write_atomically(crops / entry.crop_path, JPEG)
        writer.write([point_for(entry).to_line_protocol()])
        return entry

    try:
        theirs = [archive("v-aaaaaa", device, now - timedelta(days=d, seconds=s))
                  for d, s, device in [(0, 0, "door"), (0, 0, "porch"), (1, 5, "door"), (40, 0, "door"),
                                       (-1, 0, "gate"), (2, 1, "porch"), (3, 0, "door")]]
        others = [archive("v-bbbbbb", "door", now - timedelta(seconds=1)),
                  archive(None, "door", now - timedelta(seconds=3)),
                  archive("v-aaaaaa' OR 'x", "door", now - timedelta(seconds=2))]
        assert len(history.read_entries(writer, "face_entry")) == 10
        assert len(history.read_entries(writer, "face_entry", now - timedelta(days=30))) == 9
        assert history.read_entries(writer, "face_entry", None, []) == []
        mine = history.read_entries(writer, "face_entry", None, {"v-aaaaaa"})
        assert sorted(e.crop_path for e in mine) == sorted(e.crop_path for e in theirs)
        assert all(e.visitor_id == "v-aaaaaa" and e.person == "unknown" for e in mine)

        purged = history.purge_visitor(["v-aaaaaa", "v-cccccc"], crops, "face_entry", writer)
        assert purged.entries == 7 and sorted(purged.crops) == sorted(e.crop_path for e in theirs)
        left = history.read_entries(writer, "face_entry")
        assert sorted(e.crop_path for e in left) == sorted(e.crop_path for e in others)
        assert all((crops / e.crop_path).is_file() for e in others)
        assert history.purge_visitor(["v-aaaaaa"], crops, "face_entry", writer) == history.Purged([], 0)
        assert history.crop_file(crops, "../outside.jpg") is None and history.crop_file(crops, "/etc/x") is None
        assert history.read_entries(writer, "never_written") == []
    finally:
        writer.close()
