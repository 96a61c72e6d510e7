"""The gallery from a real S3 server (SeaweedFS, SigV4): both layouts, a rejected image, changed objects, wrong
credentials. The folder gallery's listing is in tests/unit/test_gallery_folder.py."""

from __future__ import annotations

import pytest

from facebus.events import Category
from facebus.settings import RecognizerSettings
from recognizer.gallery import open_source
from tests.conftest import FACES_DEV, GALLERY, S3_BUCKET

pytestmark = pytest.mark.integration


def upload(client, prefix, files):
    for key, path in files.items():
        client.put_object(Bucket=S3_BUCKET, Key=prefix + key, Body=path.read_bytes())


def test_s3_gallery_with_both_layouts_and_a_rejected_image(s3_env, tmp_path):
    from recognizer.photos import load_index, photo_faces, photo_model

    upload(s3_env, "site-a/", {
        "Authorised/Barack_Obama.jpg": GALLERY / "Authorised/Barack_Obama/obama.jpg",
        "Authorised/Joseph_Biden/1.jpg": GALLERY / "Authorised/Joseph_Biden/biden.jpg",
        "Restricted/Alex_Lacamoire/a.jpg": GALLERY / "Restricted/Alex_Lacamoire/alex-lacamoire.jpg",
        "Restricted/Alex_Lacamoire/b.jpg": GALLERY / "Restricted/Alex_Lacamoire/img1.jpg",
        "Authorised/Nobody.jpg": FACES_DEV / "noface/dog.jpg",
        "Authorised/notes.txt": FACES_DEV / "manifest.csv",
        "Elsewhere/Someone.jpg": GALLERY / "Authorised/Barack_Obama/obama.jpg",
    })
    settings = RecognizerSettings(gallery=f"s3://{S3_BUCKET}/site-a", cache_dir=tmp_path)
    index, rejected = load_index(settings)
    assert index.people == ["Alex_Lacamoire", "Barack_Obama", "Joseph_Biden"]
    assert {e.person: e.category for e in index.entries}["Alex_Lacamoire"] == Category.restricted
    assert [(r.origin, r.reason) for r in rejected] == [("Authorised/Nobody.jpg", "no face found")]
    model = photo_model(settings)
    rgb, found = photo_faces(model, (FACES_DEV / "probe/Barack_Obama/obama_small.jpg").read_bytes())
    (probe,) = model.encode(rgb, found[:1])
    limits = settings.thresholds(settings.model)
    assert index.match(probe, limits.tolerance, limits.margin).person == "Barack_Obama"


def test_s3_listing_tags_change_when_an_object_is_replaced(s3_env):
    source = open_source(f"s3://{S3_BUCKET}/site-b")
    upload(s3_env, "site-b/", {"Authorised/Ann.jpg": GALLERY / "Authorised/Barack_Obama/obama.jpg"})
    first = source.list_images()
    upload(s3_env, "site-b/", {"Authorised/Ann.jpg": GALLERY / "Authorised/Joseph_Biden/biden.jpg"})
    assert source.list_images()["Authorised/Ann.jpg"] != first["Authorised/Ann.jpg"]


def test_wrong_s3_credentials_fail_clearly(s3_env, monkeypatch):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong")
    with pytest.raises(Exception, match="(?i)signature|denied|forbidden"):
        open_source(f"s3://{S3_BUCKET}/site-a").list_images()
