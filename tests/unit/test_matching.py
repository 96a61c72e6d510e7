"""Gallery matching with synthetic 128-d encodings (recognizer.matching)."""

import numpy as np
import pytest

from facebus.events import Category
from recognizer.matching import ENCODING_DIM, GalleryEntry, GalleryIndex

ORIGIN = np.zeros(ENCODING_DIM)


def axis(i: int, length: float) -> np.ndarray:
    """A vector at ``length`` from the origin (the probe), so its face distance is exactly ``length``."""
    v = np.zeros(ENCODING_DIM)
    v[i] = length
    return v


def entry(person, encoding, category=Category.authorised, key=None):
    return GalleryEntry(person, category, key or f"Authorised/{person}.jpg", np.asarray(encoding))


def test_distances_equal_numpy_norm():
    rng = np.random.default_rng(7)
    encodings = rng.normal(0, 0.09, (20, ENCODING_DIM))
    index = GalleryIndex([entry(f"p{i:02d}", e) for i, e in enumerate(encodings)])
    probe = rng.normal(0, 0.09, ENCODING_DIM)
    ordered = np.stack([e.encoding for e in index.entries])
    got = index.distances(probe)
    assert got.shape == (20,) and got.dtype == np.float32
    np.testing.assert_allclose(got, np.linalg.norm(ordered - probe, axis=1), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(index.distances(encodings[3])[3], 0.0, atol=2e-3)  # itself: ~0, never NaN


def test_nearest_person_accepted_within_tolerance():
    index = GalleryIndex([entry("Alice", axis(0, 0.25)), entry("Bob", axis(1, 0.75), Category.restricted)])
    match = index.match(ORIGIN, tolerance=0.5, margin=0.05)
    assert (match.person, match.category, match.distance) == ("Alice", Category.authorised, 0.25)
    assert (match.nearest_person, match.image_key) == ("Alice", "Authorised/Alice.jpg")
    assert (match.second_person, match.second_distance) == ("Bob", 0.75)


def test_tolerance_is_inclusive_and_rejects_above():
    index = GalleryIndex([entry("Alice", axis(0, 0.5))])
    assert index.match(ORIGIN, tolerance=0.5).person == "Alice"
    match = index.match(ORIGIN, tolerance=0.4375)
    assert (match.person, match.category, match.distance) == (None, Category.unknown, 0.5)
    assert (match.nearest_person, match.image_key) == ("Alice", "Authorised/Alice.jpg")  # kept for diagnosis


def test_margin_makes_ambiguous_match_unknown():
    index = GalleryIndex([entry("Alice", axis(0, 0.25)), entry("Bob", axis(1, 0.3125))])
    ambiguous = index.match(ORIGIN, tolerance=0.5, margin=0.125)
    assert (ambiguous.person, ambiguous.category) == (None, Category.unknown)
    assert (ambiguous.nearest_person, ambiguous.distance, ambiguous.second_distance) == ("Alice", 0.25, 0.3125)
    assert index.match(ORIGIN, tolerance=0.5, margin=0.0625).person == "Alice"  # margin reached exactly
    assert index.match(ORIGIN, tolerance=0.5, margin=0.0).person == "Alice"


def test_second_is_nearest_other_person_not_another_image_of_the_same():
    index = GalleryIndex(
        [
            entry("Alice", axis(0, 0.25), key="Authorised/Alice/1.jpg"),
            entry("Alice", axis(1, 0.375), key="Authorised/Alice/2.jpg"),
            entry("Bob", axis(2, 0.875)),
            entry("Carol", axis(3, 0.5)),
            entry("Carol", axis(4, 0.625), key="Authorised/Carol/2.jpg"),
        ]
    )
    match = index.match(ORIGIN, tolerance=0.5, margin=0.125)
    assert (match.person, match.image_key, match.distance) == ("Alice", "Authorised/Alice/1.jpg", 0.25)
    assert (match.second_person, match.second_distance) == ("Carol", 0.5)
    assert index.people == ["Alice", "Bob", "Carol"] and len(index) == 5


def test_nearest_image_of_a_person_with_several():
    index = GalleryIndex(
        [entry("Alice", axis(0, 0.75), key="A/far.jpg"), entry("Alice", axis(1, 0.25), key="A/near.jpg")]
    )
    match = index.match(ORIGIN, tolerance=0.5, margin=0.5)
    assert (match.person, match.image_key, match.distance) == ("Alice", "A/near.jpg", 0.25)
    assert (match.second_person, match.second_distance) == (None, None)  # one person: margin cannot apply


def test_empty_gallery():
    index = GalleryIndex([])
    assert len(index) == 0 and index.people == []
    match = index.match(ORIGIN, tolerance=0.6, margin=0.05)
    assert (match.person, match.category, match.distance) == (None, Category.unknown, None)
    assert (match.nearest_person, match.image_key, match.second_person, match.second_distance) == (None,) * 4


@pytest.mark.parametrize("category", [Category.authorised, Category.restricted])
def test_category_carried_from_entry(category):
    index = GalleryIndex([entry("Mallory", axis(0, 0.25), category), entry("Bob", axis(1, 0.75))])
    assert index.match(ORIGIN, tolerance=0.5).category is category


def test_input_order_does_not_matter():
    entries = [entry("Zed", axis(0, 0.25)), entry("Amy", axis(1, 0.5)), entry("Zed", axis(2, 0.375), key="Z/2.jpg")]
    a, b = GalleryIndex(entries).match(ORIGIN, 0.4, 0.1), GalleryIndex(entries[::-1]).match(ORIGIN, 0.4, 0.1)
    assert a == b and (a.person, a.second_person, a.second_distance) == ("Zed", "Amy", 0.5)
