"""Changing the gallery and reading imports, without face models or servers: recognizer.store (names, placement, keys,
add/remove/move on a real folder, the ``faces list`` summary), FolderSource write/delete, matching.lookalikes and
bundle.read_bundle (real zip files and folders in tmp_path).

``store.add`` gets a FAKE encoder here, only to drive its control flow; the real gallery encoder is exercised by the
integration tests."""

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facebus.events import Category
from facebus.images import ImageError
from recognizer import store
from recognizer.bundle import BundleError, Limits, read_bundle
from recognizer.gallery import FolderSource, Rejected, parse_key
from recognizer.matching import ENCODING_DIM, GalleryEntry, GalleryIndex, lookalikes
from recognizer.store import GalleryError, Photo

A, R = Category.authorised, Category.restricted
MIB = 1024 * 1024


def image_bytes(size=(64, 64), colour=(200, 120, 60), fmt="JPEG", **save) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, colour).save(out, fmt, **save)
    return out.getvalue()


def opened(data: bytes) -> Image.Image:
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


JPEG = image_bytes()
DARK = (0, 0, 0)  # the fake encoder finds "no face" in a dark photo


def fake_encode(jpeg: bytes) -> np.ndarray:
    """Stands in for the gallery encoder: refuses dark photos the way the real one refuses faceless ones."""
    if np.asarray(opened(jpeg)).mean() < 30:
        raise ImageError("no face found")
    return np.zeros(ENCODING_DIM)


def gallery(root: Path, files: dict[str, bytes]) -> FolderSource:
    for key, data in files.items():
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        (root / key).write_bytes(data)
    return FolderSource(root)


def files_under(root: Path) -> list[str]:
    """Every file (hidden ones too) under ``root``, as sorted relative paths."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


# -- person_id --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["Alice Smith", "  Alice   Smith ", "Alice_Smith"])
def test_person_id_joins_words_with_underscores(name):
    assert store.person_id(name) == "Alice_Smith"


@pytest.mark.parametrize("name", ["unknown", "Unknown", "José", "a/b", "", "   ", "x" * 65])
def test_person_id_refuses_unusable_names_saying_why(name):
    with pytest.raises(GalleryError) as refused:
        store.person_id(name)
    message = str(refused.value)
    assert repr(name) in message and "ASCII letters" in message and "1-64 characters" in message
    assert "'unknown' is reserved" in message


def test_person_id_accepts_64_characters():
    assert store.person_id("x" * 64) == "x" * 64


# -- placement --------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path, default, expected",
    [
        ("Restricted/Bob.jpg", A, (R, "Bob")),
        ("authorized/Bob/x.PNG", R, (A, "Bob")),
        ("Alice.jpg", A, (A, "Alice")),
        ("Alice.jpg", R, (R, "Alice")),
        ("Alice/1.jpg", A, (A, "Alice")),
        ("Alice/1.jpg", R, (R, "Alice")),
    ],
)
def test_placement_keeps_the_layout_category_else_the_default(path, default, expected):
    assert store.placement(path, default) == expected


# A category-folder path that fails parse_key ("Authorised/Alice Smith.jpg") must not fall through to the
# "<Person>/<any>.jpg" rule and enrol a person called "Authorised".
@pytest.mark.parametrize(
    "path", ["a/b/c/d.jpg", "Alice.gif", "Authorised/unknown.jpg", "Authorised/Alice Smith.jpg", "Restricted/José.jpg"]
)
@pytest.mark.parametrize("default", [A, R])
def test_placement_refuses_paths_outside_the_layout(path, default):
    assert store.placement(path, default) is None


# -- category_folder, photo_key ---------------------------------------------------------------------------------------


def test_category_folder_reuses_the_spelling_in_use():
    keys = ["authorized/Alice.jpg", "RESTRICTED/Bob/1.jpg", "Other/x.jpg"]
    assert store.category_folder(keys, A) == "authorized"
    assert store.category_folder(keys, R) == "RESTRICTED"


@pytest.mark.parametrize("category, folder", [(A, "Authorised"), (R, "Restricted")])
def test_category_folder_default_spelling(category, folder):
    assert store.category_folder(["Other/x.jpg", "authorised.jpg"], category) == folder


def test_photo_key_is_the_same_for_the_same_bytes():
    key = store.photo_key("Authorised", "Alice", "a.jpg", JPEG)
    assert store.photo_key("Authorised", "Alice", "a.jpg", JPEG) == key
    assert store.photo_key("Authorised", "Alice", "a.jpg", image_bytes(colour=(1, 2, 3))) != key


@pytest.mark.parametrize(
    "origin, stem",
    [("../../x y.jpg", "x_y"), ("C:\\photos\\a b.JPG", "a_b"), ("Alice/IMG 0001.png", "IMG_0001"), ("..jpg", "photo")],
)
def test_photo_key_makes_the_origin_name_one_safe_component(origin, stem):
    key = store.photo_key("Restricted", "Alice", origin, JPEG)
    folder, person, name = key.split("/")
    assert (folder, person) == ("Restricted", "Alice")
    assert name.startswith(f"{stem}-") and name.endswith(".jpg") and ".." not in name and "\\" not in name
    assert parse_key(key) == (R, "Alice")


# -- write_all, FolderSource -----------------------------------------------------------------------------------------


class FailingDisk(FolderSource):
    """A stand-in for a failing disk: the write of the ``fail_at``-th key raises OSError (nothing of it written)."""

    def __init__(self, root, fail_at=3):
        super().__init__(root)
        self.writes, self.fail_at = 0, fail_at

    def write(self, key, data):
        self.writes += 1
        if self.writes == self.fail_at:
            raise OSError(28, "No space left on device")
        super().write(key, data)


ALICE_AND_BOB = {"Authorised/Alice.jpg": b"1", "Authorised/Alice/2.jpg": b"2", "Authorised/Bob.jpg": b"3"}
ITEMS = [(f"Authorised/Alice/{i}.jpg", b"photo %d" % i) for i in range(1, 5)]


def test_write_all_writes_every_item(tmp_path):
    source = FolderSource(tmp_path)
    store.write_all(source, ITEMS)
    assert {key: source.read(key) for key in source.list_images()} == dict(ITEMS)


def test_write_all_failing_midway_leaves_nothing_and_raises(tmp_path):
    source = FailingDisk(tmp_path)
    with pytest.raises(OSError, match="No space left"):
        store.write_all(source, ITEMS)
    assert files_under(tmp_path) == [] and not (tmp_path / "Authorised" / "Alice").exists()


def test_folder_write_replaces_content_and_leaves_no_temp_file(tmp_path):
    source = FolderSource(tmp_path)
    source.write("Authorised/Alice/1.jpg", b"old")
    source.write("Authorised/Alice/1.jpg", b"new")
    assert files_under(tmp_path) == ["Authorised/Alice/1.jpg"] and source.read("Authorised/Alice/1.jpg") == b"new"


# A failed write leaves no hidden ".*.tmp" file (it would keep delete from removing the person folder). A folder where
# the file should go is a cheap real failure.
def test_folder_write_that_fails_leaves_no_temp_file(tmp_path):
    (tmp_path / "Authorised" / "Alice" / "1.jpg").mkdir(parents=True)
    with pytest.raises(OSError):
        FolderSource(tmp_path).write("Authorised/Alice/1.jpg", b"photo")
    assert files_under(tmp_path) == []


def test_folder_delete_removes_the_emptied_person_folder_not_the_category(tmp_path):
    source = gallery(tmp_path, {"Authorised/Alice/1.jpg": JPEG, "Authorised/Alice/2.jpg": JPEG})
    source.delete("Authorised/Alice/1.jpg")
    assert (tmp_path / "Authorised" / "Alice").is_dir()
    source.delete("Authorised/Alice/2.jpg")
    assert not (tmp_path / "Authorised" / "Alice").exists() and (tmp_path / "Authorised").is_dir()


def test_folder_delete_of_a_single_image_keeps_the_category_folder(tmp_path):
    source = gallery(tmp_path, {"Authorised/Alice.jpg": JPEG})
    source.delete("Authorised/Alice.jpg")
    assert (tmp_path / "Authorised").is_dir() and files_under(tmp_path) == []


# GallerySource.delete promises no error when the key is already gone, even with its person folder.
@pytest.mark.parametrize("key", ["Authorised/Alice/9.jpg", "Authorised/Ghost.jpg", "Authorised/Ghost/1.jpg"])
def test_folder_delete_of_a_missing_key_is_no_error(tmp_path, key):
    source = gallery(tmp_path, {"Authorised/Alice/1.jpg": JPEG})
    source.delete(key)
    assert files_under(tmp_path) == ["Authorised/Alice/1.jpg"]


# -- remove, move -----------------------------------------------------------------------------------------------------


def test_remove_deletes_both_layouts(tmp_path):
    source = gallery(tmp_path, ALICE_AND_BOB)
    assert store.remove(source, "Alice") == ["Authorised/Alice.jpg", "Authorised/Alice/2.jpg"]
    assert files_under(tmp_path) == ["Authorised/Bob.jpg"]


def test_remove_of_a_missing_person_raises(tmp_path):
    source = gallery(tmp_path, {"Authorised/Bob.jpg": JPEG})
    with pytest.raises(GalleryError, match="Alice is not in the gallery"):
        store.remove(source, "Alice")


def test_move_moves_every_photo_keeping_file_names(tmp_path):
    source = gallery(tmp_path, ALICE_AND_BOB)
    assert store.move(source, "Alice", R) == [
        ("Authorised/Alice.jpg", "Restricted/Alice.jpg"),
        ("Authorised/Alice/2.jpg", "Restricted/Alice/2.jpg"),
    ]
    assert {key: source.read(key) for key in source.list_images()} == {
        "Restricted/Alice.jpg": b"1", "Restricted/Alice/2.jpg": b"2", "Authorised/Bob.jpg": b"3",
    }


def test_move_uses_the_existing_folder_spelling(tmp_path):
    source = gallery(tmp_path, {"Authorised/Alice.jpg": b"1", "restricted/Bob.jpg": b"2"})
    assert store.move(source, "Alice", R) == [("Authorised/Alice.jpg", "restricted/Alice.jpg")]


def test_move_to_the_current_category_changes_nothing(tmp_path):
    source = gallery(tmp_path, {"Restricted/Alice/1.jpg": b"1"})
    assert store.move(source, "Alice", R) == []
    assert files_under(tmp_path) == ["Restricted/Alice/1.jpg"]


def test_move_of_a_missing_person_raises(tmp_path):
    with pytest.raises(GalleryError, match="Alice is not in the gallery"):
        store.move(gallery(tmp_path, {"Authorised/Bob.jpg": JPEG}), "Alice", R)


# `faces list` tells a user in both categories to move them to one; when both hold a photo under the same name
# (Alice.jpg, the one-photo layout) the move must keep both photos.
def test_move_of_a_person_in_both_categories_loses_no_photo(tmp_path):
    source = gallery(tmp_path, {"Authorised/Alice.jpg": b"photo A", "Restricted/Alice.jpg": b"photo R"})
    store.move(source, "Alice", R)
    assert sorted(source.read(key) for key in source.list_images()) == [b"photo A", b"photo R"]


# -- prepare, add (fake encoder) --------------------------------------------------------------------------------------


def test_prepare_stores_at_most_1024_px():
    stored = opened(store.prepare(Photo("big.jpg", image_bytes((2000, 1500))), fake_encode, 20 * MIB))
    assert (stored.format, stored.size) == ("JPEG", (1024, 768))


def test_prepare_applies_exif_rotation_and_drops_exif():
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90° to display
    original = image_bytes((200, 100), exif=exif)
    assert opened(original).getexif()[0x0112] == 6
    stored = opened(store.prepare(Photo("phone.jpg", original), fake_encode, 20 * MIB))
    assert stored.size == (100, 200) and not stored.getexif()


def test_prepare_stores_a_png_as_jpeg():
    stored = opened(store.prepare(Photo("a.png", image_bytes(fmt="PNG")), fake_encode, 20 * MIB))
    assert (stored.format, stored.size) == ("JPEG", (64, 64))


def add(source, photos, person="Alice", category=A, **kwargs):
    kwargs.setdefault("max_photo_bytes", 20 * MIB)
    return store.add(source, person, category, photos, fake_encode, **kwargs)


GOOD = [Photo("a.jpg", image_bytes(colour=(200, 120, 60))), Photo("b.png", image_bytes(colour=(9, 200, 90), fmt="PNG"))]
FACELESS = Photo("wall.jpg", image_bytes(colour=DARK))


def test_add_stores_normalised_jpegs_under_the_person(tmp_path):
    source = FolderSource(tmp_path)
    result = add(source, GOOD)
    assert (result.present, result.refused) == ([], [])
    assert sorted(result.written) == files_under(tmp_path) and len(result.written) == 2
    assert all(parse_key(key) == (A, "Alice") and opened(source.read(key)).format == "JPEG" for key in result.written)


def test_add_all_or_nothing_writes_nothing_when_one_photo_is_refused(tmp_path):
    result = add(FolderSource(tmp_path), [*GOOD, FACELESS])
    assert result.refused == [Rejected("wall.jpg", "no face found")]
    assert result.written == [] and files_under(tmp_path) == []


def test_add_without_all_or_nothing_writes_the_good_photos(tmp_path):
    result = add(FolderSource(tmp_path), [GOOD[0], FACELESS, GOOD[1]], all_or_nothing=False)
    assert result.refused == [Rejected("wall.jpg", "no face found")]
    assert len(result.written) == 2 and sorted(result.written) == files_under(tmp_path)


def test_add_reports_a_refused_item_among_the_photos(tmp_path):
    unreadable = Rejected("broken.jpg", "unreadable zip entry: Bad CRC-32")
    result = add(FolderSource(tmp_path), [GOOD[0], unreadable])
    assert (result.refused, result.written, files_under(tmp_path)) == ([unreadable], [], [])


def test_add_same_photo_twice_in_one_call_writes_it_once(tmp_path):
    result = add(FolderSource(tmp_path), [GOOD[0], GOOD[0]])
    assert len(result.written) == 1 and result.present == result.written
    assert files_under(tmp_path) == result.written


def test_add_photo_already_in_the_gallery_is_reported_present(tmp_path):
    source = FolderSource(tmp_path)
    first = add(source, [GOOD[0]])
    again = add(source, [GOOD[0]])
    assert (again.written, again.present, again.refused) == ([], first.written, [])
    assert files_under(tmp_path) == first.written


def test_add_uses_the_existing_folder_spelling(tmp_path):
    source = gallery(tmp_path, {"authorized/Bob.jpg": JPEG})
    assert add(source, [GOOD[0]]).written[0].startswith("authorized/Alice/")


def test_add_refuses_a_person_in_the_other_category(tmp_path):
    source = gallery(tmp_path, {"Restricted/Alice.jpg": JPEG})
    with pytest.raises(GalleryError, match=r"Alice is already restricted.*facebus faces move Alice --to authorised"):
        add(source, GOOD)
    assert files_under(tmp_path) == ["Restricted/Alice.jpg"]


def test_add_refuses_a_photo_over_the_byte_limit(tmp_path):
    big = Photo("big.jpg", image_bytes((300, 300), colour=(200, 120, 60)))
    result = add(FolderSource(tmp_path), [big], max_photo_bytes=len(big.data) - 1)
    assert [r.origin for r in result.refused] == ["big.jpg"] and "byte limit" in result.refused[0].reason
    assert files_under(tmp_path) == []


# -- summarize, outside_layout ----------------------------------------------------------------------------------------


def test_summarize_rows_and_problems():
    keys = [
        "Authorised/Alice/1.jpg", "Authorised/Alice/2.jpg", "Restricted/Bob.jpg",
        "Authorised/Carol.jpg", "Restricted/Carol/1.jpg", "Authorised/Dan.jpg", "Other/x.jpg",
    ]
    rejected = [Rejected("Authorised/Alice/2.jpg", "no face found"), Rejected("Authorised/Dan.jpg", "2 faces")]
    rows = {row.person: row for row in store.summarize(keys, rejected, {"Bob": ("Alice", 0.3125)})}
    assert {p: (r.category, r.images) for p, r in rows.items()} == {
        "Alice": ("authorised", 1), "Bob": ("restricted", 1), "Carol": ("authorised+restricted", 2),
        "Dan": ("authorised", 0),
    }
    assert rows["Alice"].problems == ["Authorised/Alice/2.jpg: no face found"]
    assert rows["Carol"].problems[0].startswith("in both Authorised and Restricted")
    assert rows["Dan"].problems == ["Authorised/Dan.jpg: 2 faces", "no usable photo: never recognised"]
    assert len(rows["Bob"].problems) == 1 and rows["Bob"].problems[0].startswith("looks like Alice (distance 0.31)")


def test_summarize_of_an_empty_gallery():
    assert store.summarize([], []) == []


def test_outside_layout_lists_what_the_recognizer_ignores_but_not_hidden_files():
    keys = {
        "Authorised/Alice.jpg": "t", "Restricted/Bob/1.png": "t", "Other/x.jpg": "t", "Authorised/a/b/c.jpg": "t",
        "Authorised/José.jpg": "t", ".hidden/x.jpg": "t", "Authorised/.DS_Store": "t",
    }
    assert store.outside_layout(keys) == ["Authorised/José.jpg", "Authorised/a/b/c.jpg", "Other/x.jpg"]


# -- matching.lookalikes ----------------------------------------------------------------------------------------------


def entry(person, encoding, key=None):
    return GalleryEntry(person, A, key or f"Authorised/{person}.jpg", np.asarray(encoding))


def axis(i: int, length: float) -> np.ndarray:
    v = np.zeros(ENCODING_DIM)
    v[i] = length
    return v


def test_lookalikes_identical_encodings_both_ways():
    face = np.random.default_rng(3).normal(0, 0.09, ENCODING_DIM)
    found = lookalikes(GalleryIndex([entry("Alice", face), entry("Bob", face), entry("Carol", face + 0.5)]), 0.6)
    assert set(found) == {"Alice", "Bob"}
    assert found["Alice"][0] == "Bob" and found["Bob"][0] == "Alice"
    assert found["Alice"][1] == pytest.approx(0, abs=2e-3) and found["Bob"][1] == pytest.approx(0, abs=2e-3)


def test_lookalikes_single_person_gallery_is_empty():
    index = GalleryIndex([entry("Alice", axis(0, 0.25), "A/1.jpg"), entry("Alice", axis(0, 0.25), "A/2.jpg")])
    assert lookalikes(index, 0.6) == {}
    assert lookalikes(GalleryIndex([]), 0.6) == {}


def test_lookalikes_smallest_distance_wins():
    index = GalleryIndex([
        entry("Alice", axis(0, 0.5), "Authorised/Alice/1.jpg"),
        entry("Alice", axis(1, 0.25), "Authorised/Alice/2.jpg"),
        entry("Bob", np.zeros(ENCODING_DIM)),
        entry("Carol", axis(2, 0.375)),
    ])
    assert lookalikes(index, 0.4) == {"Alice": ("Bob", 0.25), "Bob": ("Alice", 0.25), "Carol": ("Bob", 0.375)}


def test_lookalikes_tolerance_is_inclusive():
    index = GalleryIndex([entry("Alice", axis(0, 0.5)), entry("Bob", np.zeros(ENCODING_DIM))])
    assert lookalikes(index, 0.5) == {"Alice": ("Bob", 0.5), "Bob": ("Alice", 0.5)}
    assert lookalikes(index, 0.4375) == {}


# -- bundle.read_bundle -----------------------------------------------------------------------------------------------


def make_zip(path: Path, entries, compression=zipfile.ZIP_DEFLATED) -> Path:
    """A zip with ``entries`` ({name or ZipInfo: bytes}); a name ending in / is a folder entry, as ``zip -r`` adds."""
    with zipfile.ZipFile(path, "w", compression) as archive:
        for name, data in entries.items():
            archive.writestr(name, data)
    return path


DEFAULT_LIMITS = Limits()


def read(path, limits=DEFAULT_LIMITS):
    names, photos = read_bundle(path, limits)
    return names, list(photos)


def test_zip_top_folder_above_the_categories_is_dropped(tmp_path):
    bundle = make_zip(tmp_path / "gallery.zip", {
        "gallery/": b"", "gallery/Authorised/": b"", "gallery/Authorised/Alice.jpg": b"a",
        "gallery/Restricted/Bob/1.jpg": b"b",
    })
    names, photos = read(bundle)
    assert names == ["Authorised/Alice.jpg", "Restricted/Bob/1.jpg"]
    assert photos == [Photo("Authorised/Alice.jpg", b"a"), Photo("Restricted/Bob/1.jpg", b"b")]


def test_zip_of_one_person_folder_keeps_it(tmp_path):
    names, photos = read(make_zip(tmp_path / "alice.zip", {"Alice/": b"", "Alice/1.jpg": b"1", "Alice/2.jpg": b"2"}))
    assert names == ["Alice/1.jpg", "Alice/2.jpg"] and [p.data for p in photos] == [b"1", b"2"]
    assert {store.placement(name, R) for name in names} == {(R, "Alice")}


def test_folder_top_folder_above_the_categories_is_dropped(tmp_path):
    gallery(tmp_path / "in", {"gallery/Authorised/Alice.jpg": b"a", "gallery/Restricted/Bob/1.jpg": b"b"})
    names, photos = read(tmp_path / "in")
    assert names == ["Authorised/Alice.jpg", "Restricted/Bob/1.jpg"] and [p.data for p in photos] == [b"a", b"b"]


JUNK = {
    ".hidden.jpg": b"x", "Authorised/._Alice.jpg": b"x", ".git/x.jpg": b"x", "__MACOSX/Authorised/Alice.jpg": b"x",
    "notes.txt": b"x", "Authorised/Alice.gif": b"x",
    "Authorised/Alice.jpg": b"a", "Bob.JPEG": b"b", "Carol/1.PNG": b"c",
}
KEPT = ["Authorised/Alice.jpg", "Bob.JPEG", "Carol/1.PNG"]


def test_zip_leaves_out_hidden_files_macosx_and_non_images(tmp_path):
    names, photos = read(make_zip(tmp_path / "mixed.zip", JUNK))
    assert names == KEPT and [p.data for p in photos] == [b"a", b"b", b"c"]


def test_folder_leaves_out_hidden_files_macosx_and_non_images(tmp_path):
    gallery(tmp_path / "in", JUNK)
    names, photos = read(tmp_path / "in")
    assert names == KEPT and [p.data for p in photos] == [b"a", b"b", b"c"]


@pytest.mark.parametrize(
    "name, reason",
    [
        ("../../etc/x.jpg", "'..' in the path"),
        ("Authorised/../../x.jpg", "'..' in the path"),
        ("/abs/x.jpg", "absolute or Windows path"),
        ("C:\\x.jpg", "absolute or Windows path"),
        ("C:/x.jpg", "absolute or Windows path"),
    ],
)
def test_zip_with_an_unsafe_path_is_refused_whole(tmp_path, name, reason):
    bundle = make_zip(tmp_path / "evil.zip", {"Authorised/Alice.jpg": JPEG, zipfile.ZipInfo(name): JPEG})
    with pytest.raises(BundleError) as refused:
        read_bundle(bundle)
    assert repr(name) in str(refused.value) and reason in str(refused.value)


def test_zip_with_a_symlink_is_refused_whole(tmp_path):
    link = zipfile.ZipInfo("Authorised/Alice.jpg")
    link.external_attr = (stat.S_IFLNK | 0o777) << 16
    with pytest.raises(BundleError, match=r"'Authorised/Alice.jpg' \(symbolic link\)"):
        read_bundle(make_zip(tmp_path / "link.zip", {link: b"/etc/passwd"}))


def test_zip_bomb_is_refused_whole(tmp_path):
    bundle = make_zip(tmp_path / "bomb.zip", {"Authorised/Bob.jpg": JPEG, "Authorised/Alice.jpg": bytes(20 * MIB)})
    with pytest.raises(BundleError, match=r"'Authorised/Alice.jpg' inflates \d+x \(over 100x\): a zip bomb"):
        read_bundle(bundle)


def test_zip_inflating_past_the_total_limit_is_refused_whole(tmp_path):
    bundle = make_zip(tmp_path / "big.zip", {f"Authorised/P{i}.jpg": bytes(1000) for i in range(3)})
    with pytest.raises(BundleError, match="inflates to 3000 bytes, over the 2500 byte limit"):
        read_bundle(bundle, Limits(max_total_bytes=2500))


def test_zip_with_too_many_entries_is_refused_whole(tmp_path):
    bundle = make_zip(tmp_path / "many.zip", {f"Authorised/P{i}.jpg": JPEG for i in range(3)})
    assert len(read(bundle, Limits(max_entries=3))[0]) == 3
    with pytest.raises(BundleError, match="3 entries, over the limit of 2"):
        read_bundle(bundle, Limits(max_entries=2))


def test_zip_over_the_size_limit_is_refused_whole(tmp_path):
    bundle = make_zip(tmp_path / "big.zip", {"Authorised/Alice.jpg": JPEG})
    with pytest.raises(BundleError, match="byte limit"):
        read_bundle(bundle, Limits(max_zip_bytes=bundle.stat().st_size - 1))


def test_not_a_zip_or_folder_is_refused(tmp_path):
    (tmp_path / "photos.zip").write_bytes(JPEG)
    with pytest.raises(BundleError, match="neither a folder nor a zip file"):
        read_bundle(tmp_path / "photos.zip")
    with pytest.raises(BundleError, match="no such folder or zip file"):
        read_bundle(tmp_path / "missing")


def test_zip_entry_over_the_photo_limit_is_refused_alone(tmp_path):
    bundle = make_zip(tmp_path / "g.zip", {"Alice.jpg": b"a" * 100, "Bob.jpg": b"b" * 101, "Carol.jpg": b"c"})
    names, photos = read(bundle, Limits(max_photo_bytes=100))
    assert names == ["Alice.jpg", "Bob.jpg", "Carol.jpg"]
    assert photos[0] == Photo("Alice.jpg", b"a" * 100) and photos[2] == Photo("Carol.jpg", b"c")
    assert isinstance(photos[1], Rejected) and photos[1].origin == "Bob.jpg" and "byte limit" in photos[1].reason


def test_folder_file_over_the_photo_limit_is_refused_alone(tmp_path):
    gallery(tmp_path / "in", {"Alice.jpg": b"a" * 100, "Bob.jpg": b"b" * 101})
    _, photos = read(tmp_path / "in", Limits(max_photo_bytes=100))
    assert photos[0] == Photo("Alice.jpg", b"a" * 100)
    assert isinstance(photos[1], Rejected) and photos[1].origin == "Bob.jpg" and "byte limit" in photos[1].reason


def test_corrupt_zip_entry_is_refused_alone(tmp_path):
    entries = {"Alice.jpg": b"alice's photo", "Bob.jpg": b"bob's photo"}
    bundle = make_zip(tmp_path / "g.zip", entries, zipfile.ZIP_STORED)
    bundle.write_bytes(bundle.read_bytes().replace(b"bob's photo", b"bob's PHOTO"))  # stored as is: CRC now wrong
    _, photos = read(bundle)
    assert photos[0] == Photo("Alice.jpg", b"alice's photo")
    assert photos[1].origin == "Bob.jpg" and photos[1].reason.startswith("unreadable zip entry")


def test_folder_with_too_many_images_is_refused_whole(tmp_path):
    gallery(tmp_path / "in", {f"P{i}.jpg": b"x" for i in range(3)} | {"notes.txt": b"x", ".hidden.jpg": b"x"})
    assert len(read(tmp_path / "in", Limits(max_entries=3))[0]) == 3  # only images count
    with pytest.raises(BundleError, match="3 images, over the limit of 2"):
        read_bundle(tmp_path / "in", Limits(max_entries=2))
