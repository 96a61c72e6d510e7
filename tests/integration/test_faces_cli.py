"""`facebus faces identify` as a user runs it: a subprocess, a gallery folder, photos in, JSON lines out."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from PIL import Image

from facebus.settings import MODEL_DEFAULTS
from tests.conftest import CLIP, FACES_DEV, GALLERY, ROOT

pytestmark = pytest.mark.integration


def test_identify_names_each_face_and_reports_files_without_faces(tmp_path):
    gallery = tmp_path / "gallery"
    for person in ("Barack_Obama", "Joseph_Biden"):
        shutil.copytree(GALLERY / "Authorised" / person, gallery / "Authorised" / person)
    corrupt = tmp_path / "photos" / "broken.jpg"
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"\xff\xd8 not really a jpeg")
    shutil.copy(FACES_DEV / "groups/two_people.jpg", corrupt.parent / "two_people.jpg")
    shutil.copy(FACES_DEV / "noface/dog.jpg", corrupt.parent / "dog.jpg")
    env = dict(os.environ, FACEBUS_RECOGNIZER_CACHE_DIR=str(tmp_path / "cache"), FACEBUS_LOG_JSON="1")
    done = subprocess.run(
        [sys.executable, "-m", "facebus_tools", "faces", "identify", str(corrupt.parent), "--gallery", str(gallery),
         "--crops", str(tmp_path / "crops")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]  # stdout holds results only; logs go to stderr
    assert all("file" in line for line in lines) and "gallery" in done.stderr
    by_file: dict[str, list[dict]] = {}
    for line in lines:
        by_file.setdefault(os.path.basename(line["file"]), []).append(line)

    assert "error" in by_file["broken.jpg"][0] and by_file["broken.jpg"][0]["person"] is None
    assert by_file["dog.jpg"] == [{**by_file["dog.jpg"][0], "person": None, "box": None}]
    group = by_file["two_people.jpg"]
    assert {face["person"] for face in group} == {"Barack_Obama", "Joseph_Biden"}
    for face in group:
        top, right, bottom, left = face["box"]
        assert 0 <= top < bottom and 0 <= left < right
        limits = MODEL_DEFAULTS["yunet-sface"]
        assert face["distance"] <= limits.tolerance and face["second_distance"] - face["distance"] >= limits.margin
        assert face["matched_image"].startswith(f"Authorised/{face['person']}/")
        with Image.open(face["crop"]) as crop:
            assert crop.format == "JPEG"


def test_identify_a_video_prints_one_line_per_track_naming_exactly_the_three_people(tmp_path):
    env = dict(os.environ, FACEBUS_RECOGNIZER_CACHE_DIR=str(tmp_path / "cache"), FACEBUS_LOG_JSON="1")
    done = subprocess.run(
        [sys.executable, "-m", "facebus_tools", "faces", "identify", str(CLIP), "--fps", "10",
         "--gallery", str(GALLERY), "--crops", str(tmp_path / "crops")],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    tracks = [json.loads(line) for line in done.stdout.splitlines()]
    named = {t["person"]: t["category"] for t in tracks if t["person"]}
    assert named == {"Lin_Manuel_Miranda": "authorised", "Alex_Lacamoire": "restricted", "Barack_Obama": "authorised"}
    assert len({t["track_id"] for t in tracks}) == len(tracks)
    for track in tracks:
        assert 0 <= track["first_s"] <= track["last_s"] <= 9.2 and track["frames"] >= 1
        assert set(track) >= {"file", "track_id", "first_s", "last_s", "frames", "person", "category", "distance",
                              "second_person", "second_distance", "votes", "box"}
        with Image.open(track["crop"]) as crop:
            assert crop.format == "JPEG"
