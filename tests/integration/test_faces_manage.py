"""`facebus faces add/remove/move/list/import/forget` as a user runs them: subprocesses against a real S3 server
(SeaweedFS, SigV4), real face photos from faces-dev, and for `forget --purge-history` a real influxd."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import uuid
import zipfile
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from PIL import Image

from archiver.core import crop_path, entry_for, point_for
from archiver.influx import V1Writer
from facebus.settings import InfluxSettings
from tests.conftest import FACES_DEV, GALLERY, ROOT, S3_BUCKET
from tests.factories import face_event

pytestmark = pytest.mark.integration

TOM = sorted((GALLERY / "Authorised/Tom_Hanks").glob("*.jpg"))
TOM_PROBE = next((FACES_DEV / "probe/Tom_Hanks").glob("*.jpg"))
PAUL = FACES_DEV / "strangers/paul_rudd.jpg"
DOG = FACES_DEV / "noface/dog.jpg"
GROUP = FACES_DEV / "groups/obama_and_biden.jpg"


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("encodings")


@pytest.fixture
def gallery(s3_env, cache_dir, request):
    """A fresh ``s3://faces/<test>/`` gallery; returns (spec, run) where ``run(*args)`` runs ``facebus faces``."""
    prefix = f"{request.node.name[:40]}-{uuid.uuid4().hex[:6]}"
    spec = f"s3://{S3_BUCKET}/{prefix}"
    env = dict(os.environ, FACEBUS_RECOGNIZER_CACHE_DIR=str(cache_dir), FACEBUS_RECOGNIZER_GALLERY=spec)

    def run(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "facebus_tools", "faces", *map(str, args)], capture_output=True,
                              text=True, env=env, cwd=ROOT, timeout=600)

    def keys() -> list[str]:
        listing = s3_env.list_objects_v2(Bucket=S3_BUCKET, Prefix=prefix + "/").get("Contents", [])
        return sorted(obj["Key"][len(prefix) + 1:] for obj in listing)

    run.keys = keys
    run.prefix = prefix
    return spec, run


def listed(run) -> dict:
    done = run("list", "--json")
    return json.loads(done.stdout)


def test_add_list_move_identify_remove_round_trip(gallery, s3_env):
    spec, run = gallery
    done = run("add", "Tom Hanks", *TOM)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("added Authorised/Tom_Hanks/") == 2
    assert [k.split("/")[:2] for k in run.keys()] == [["Authorised", "Tom_Hanks"]] * 2
    stored = s3_env.get_object(Bucket=S3_BUCKET, Key=f"{run.prefix}/{run.keys()[0]}")
    assert stored["ContentType"] == "image/jpeg"
    assert listed(run)["people"] == [{"person": "Tom_Hanks", "category": "authorised", "images": 2, "problems": []}]

    again = run("add", "Tom_Hanks", TOM[0])
    assert again.returncode == 0 and "already there" in again.stdout and len(run.keys()) == 2

    done = run("move", "Tom_Hanks", "--to", "restricted")
    assert done.returncode == 0, done.stderr
    assert all(k.startswith("Restricted/Tom_Hanks/") for k in run.keys()) and len(run.keys()) == 2
    identified = run("identify", TOM_PROBE)
    (face,) = [json.loads(line) for line in identified.stdout.splitlines()]
    assert (face["person"], face["category"]) == ("Tom_Hanks", "restricted")
    assert face["matched_image"].startswith("Restricted/Tom_Hanks/")

    done = run("remove", "Tom Hanks")
    assert done.returncode == 0 and done.stdout.count("removed Restricted/Tom_Hanks/") == 2
    assert run.keys() == [] and listed(run)["people"] == []
    missing = run("remove", "Tom_Hanks")
    assert missing.returncode == 1 and "Tom_Hanks is not in the gallery" in missing.stderr


def test_add_refuses_each_bad_photo_with_its_reason_and_writes_nothing(gallery, tmp_path):
    spec, run = gallery
    corrupt = tmp_path / "corrupt.jpg"
    corrupt.write_bytes(PAUL.read_bytes()[:3000])  # a truncated download
    huge = tmp_path / "huge.png"
    Image.new("1", (20000, 20000)).save(huge)  # 400 megapixels in a 48 kB file
    tiny = tmp_path / "tiny.jpg"
    with Image.open(PAUL) as image:
        image.resize((image.width // 12, image.height // 12)).save(tiny)
    done = run("add", "Paul Rudd", PAUL, corrupt, DOG, GROUP, huge, tiny, tmp_path / "missing.jpg")
    assert done.returncode == 1
    errors = dict(line.split(": ", 2)[1:] for line in done.stderr.splitlines()
                  if line.startswith("facebus faces add: /"))
    assert set(errors) == {str(p) for p in (corrupt, DOG, GROUP, huge, tiny, tmp_path / "missing.jpg")}
    assert "truncated" in errors[str(corrupt)]
    assert errors[str(DOG)] == "no face found"
    assert "faces found, a gallery photo must show exactly one" in errors[str(GROUP)]
    assert "too large" in errors[str(huge)]
    assert "face too small" in errors[str(tiny)]
    assert "No such file" in errors[str(tmp_path / "missing.jpg")]
    assert "nothing added for Paul_Rudd: 6 of 7 photos refused" in done.stderr
    assert run.keys() == [], "nothing half-written"


def test_add_takes_rgba_grayscale_and_exif_rotated_photos_upright_without_metadata(gallery, tmp_path):
    spec, run = gallery
    with Image.open(PAUL) as image:
        image.convert("RGBA").save(tmp_path / "rgba.png")
        image.convert("L").save(tmp_path / "gray.jpg")
        exif = image.getexif()
        exif[0x0112] = 6  # orientation: the camera held sideways, pixels stored rotated
        image.rotate(90, expand=True).save(tmp_path / "rotated.jpg", exif=exif)
        upright = image.size
    done = run("add", "Paul_Rudd", tmp_path / "rgba.png", tmp_path / "gray.jpg", tmp_path / "rotated.jpg")
    assert done.returncode == 0, done.stderr
    assert len(run.keys()) == 3 and all(key.endswith(".jpg") for key in run.keys())
    rotated = next(key for key in run.keys() if "rotated" in key)
    s3 = __import__("recognizer.gallery", fromlist=["open_source"]).open_source(spec)
    with Image.open(io.BytesIO(s3.read(rotated))) as stored:
        assert stored.format == "JPEG" and stored.size == upright and not stored.getexif()


def test_add_refuses_a_person_of_the_other_category_and_bad_names(gallery):
    spec, run = gallery
    assert run("add", "Paul_Rudd", PAUL).returncode == 0
    done = run("add", "Paul_Rudd", PAUL, "--restricted")
    assert done.returncode == 1 and "move them first" in done.stderr
    for name in ("unknown", "José", "../x"):
        done = run("add", name, PAUL)
        assert done.returncode == 1 and "not a usable person name" in done.stderr
    assert len(run.keys()) == 1


def test_list_reports_rejected_photos_lookalikes_and_files_outside_the_layout(gallery, s3_env):
    spec, run = gallery
    put = lambda key, path: s3_env.put_object(Bucket=S3_BUCKET, Key=f"{run.prefix}/{key}", Body=path.read_bytes())  # noqa: E731
    put("Authorised/Tom_Hanks/1.jpg", TOM[0])
    put("Authorised/Rex.jpg", DOG)  # dropped into the bucket by hand: no check on the way in
    put("Authorised/Paul.jpg", PAUL)
    put("Restricted/Paul_Rudd.jpg", PAUL)  # the same face under two names
    put("Guests/Someone.jpg", PAUL)
    report = listed(run)
    people = {row["person"]: row for row in report["people"]}
    assert people["Tom_Hanks"] == {"person": "Tom_Hanks", "category": "authorised", "images": 1, "problems": []}
    assert people["Rex"]["images"] == 0
    assert people["Rex"]["problems"] == ["Authorised/Rex.jpg: no face found", "no usable photo: never recognised"]
    assert people["Paul"]["problems"][0].startswith("looks like Paul_Rudd (distance 0.00)")
    assert people["Paul_Rudd"]["category"] == "restricted"
    assert report["ignored"] == ["Guests/Someone.jpg"]
    table = run("list")
    assert table.returncode == 1  # problems found
    assert "ignored Guests/Someone.jpg" in table.stdout and "4 people, 3 usable photos" in table.stdout


def _zip(path: Path, entries: dict[str, bytes | Path]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(name, data.read_bytes() if isinstance(data, Path) else data)
    return path


def test_import_a_zip_and_a_folder(gallery, tmp_path):
    spec, run = gallery
    bundle = _zip(tmp_path / "team.zip", {
        "team/Authorised/Tom_Hanks/a.jpg": TOM[0],
        "team/Authorised/Tom_Hanks/b.jpg": TOM[1],
        "team/Restricted/Paul_Rudd.jpg": PAUL,
        "team/Authorised/Rex.jpg": DOG,
        "team/README.txt": b"made by zip -r team.zip team/",
    })
    done = run("import", bundle)
    assert done.returncode == 1  # one photo refused
    assert done.stdout.count("added ") == 3
    assert "facebus faces import: Authorised/Rex.jpg: no face found" in done.stderr
    assert "imported 3 photos of 3 people from 4 files; 1 refused" in done.stdout
    assert {k.rsplit("/", 1)[0] for k in run.keys()} == {"Authorised/Tom_Hanks", "Restricted/Paul_Rudd"}

    folder = tmp_path / "visitors"
    (folder / "Guest_One").mkdir(parents=True)
    (folder / "Guest_One" / "1.jpg").write_bytes(TOM_PROBE.read_bytes())
    (folder / "Paul_Rudd.jpg").write_bytes(PAUL.read_bytes())
    done = run("import", folder, "--restricted")
    assert done.returncode == 0, done.stderr
    assert "added Restricted/Guest_One/1-" in done.stdout and "already there Restricted/Paul_Rudd/" in done.stdout
    people = {row["person"]: row for row in listed(run)["people"]}
    assert people["Guest_One"]["category"] == "restricted"


def test_import_refuses_zip_bombs_path_traversal_and_oversized_bundles(gallery, tmp_path):
    spec, run = gallery
    bomb = _zip(tmp_path / "bomb.zip", {"Authorised/Bomb.jpg": b"\0" * (64 * 1024 * 1024), "Authorised/Paul.jpg": PAUL})
    traversal = _zip(tmp_path / "traversal.zip", {"Authorised/Paul.jpg": PAUL, "../../../tmp/Authorised/x.jpg": PAUL})
    crowded = _zip(tmp_path / "crowded.zip", {f"Authorised/P{i}.jpg": PAUL for i in range(5)})
    cases = [
        ([bomb], "inflates 1"),
        ([traversal], "unsafe entry '../../../tmp/Authorised/x.jpg'"),
        ([crowded, "--max-entries", "3"], "5 entries, over the limit of 3"),
        ([crowded, "--max-zip-bytes", "1000"], "over the 1000 byte limit"),
        ([tmp_path / "nothing.zip"], "no such folder or zip file"),
    ]
    for args, message in cases:
        done = run("import", *args)
        assert done.returncode == 1 and message in done.stderr, (args, done.stderr)
    assert run.keys() == []
    assert not Path("/tmp/Authorised/x.jpg").exists()


def test_forget_with_purge_history_deletes_gallery_photos_crops_and_entries(gallery, influxd, tmp_path, cache_dir):
    spec, run = gallery
    assert run("add", "Paul_Rudd", PAUL).returncode == 0
    assert run("add", "Tom_Hanks", TOM[0]).returncode == 0
    settings = InfluxSettings(url=influxd.url, api="v1", database=f"forget{uuid.uuid4().hex[:6]}")
    writer = V1Writer(settings)
    crops = tmp_path / "crops"
    start = datetime.now(timezone.utc) - timedelta(days=1)
    events = [face_event(person, "door", start + timedelta(minutes=i), event_id=uuid.uuid4().hex)
              for i, person in enumerate(["Paul_Rudd", "Tom_Hanks", "Paul_Rudd", "Paul_Rudd"])]
    for event in events:
        path = crops / crop_path(event)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"jpeg")
    writer.write([point_for(entry_for(event)).to_line_protocol() for event in events])

    cached = set(cache_dir.glob("*.npy"))
    done = run("forget", "Paul Rudd", "--purge-history", "--crops-dir", crops, "--influx-url", influxd.url,
               "--influx-api", "v1", "--influx-database", settings.database)
    assert done.returncode == 0, done.stderr
    assert "removed Authorised/Paul_Rudd/" in done.stdout
    assert "deleted 3 crops and 3 InfluxDB entries of Paul_Rudd" in done.stdout
    assert "deleted 1 cached face encodings of Paul_Rudd" in done.stdout
    assert len(cached - set(cache_dir.glob("*.npy"))) == 1, "his encoding is gone from the cache, Tom's stays"
    assert [k.split("/")[1] for k in run.keys()] == ["Tom_Hanks"]
    assert [p.name.split("_")[0] for p in crops.rglob("*.jpg")] == ["Tom"]
    rows = writer.query('SELECT count("event_id") FROM "face_entry" GROUP BY "person"')["results"][0]["series"]
    assert {row["tags"]["person"]: row["values"][0][1] for row in rows} == {"Tom_Hanks": 1}

    again = run("forget", "Paul_Rudd")
    assert again.returncode == 1 and "not in the gallery" in again.stderr
    writer.close()
