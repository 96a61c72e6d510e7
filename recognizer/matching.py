"""Matching face encodings against the gallery: pure numpy, no I/O.

A face encoding is a 128-dimensional vector from dlib's ResNet (face_recognition.face_encodings).
The face distance is the Euclidean distance between two encodings; lower means more alike.
Two photos of one person typically lie at 0.23-0.43, different people at 0.76-0.91 (docs/accuracy.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facebus.events import Category

ENCODING_DIM = 128


@dataclass(frozen=True)
class GalleryEntry:
    """One enrolled image: who it shows, their category, where it came from, and its 128-d face encoding."""

    person: str
    category: Category
    image_key: str
    encoding: np.ndarray


@dataclass(frozen=True)
class Match:
    """Result of matching one probe encoding against the gallery.

    ``person``/``category``: the nearest gallery person when the match is accepted, else None / unknown.
    ``distance``: face distance to the nearest gallery encoding (None for an empty gallery).
    ``nearest_person``, ``nearest_category`` and ``image_key``: that nearest person, their category and image,
    accepted or not.
    ``second_person``/``second_distance``: the nearest *other* person (None with fewer than two people).
    ``reason``: ``matched``; or why not: ``no_match`` (nearest beyond the tolerance), ``ambiguous`` (within it, but
    the nearest other person is less than the margin farther), ``empty_gallery``.
    """

    person: str | None
    category: Category
    distance: float | None
    nearest_person: str | None = None
    image_key: str | None = None
    second_person: str | None = None
    second_distance: float | None = None
    reason: str = "matched"
    nearest_category: Category | None = None


class GalleryIndex:
    """Encodings of every gallery image as one float32 matrix with precomputed squared norms.

    ``distances(q)`` is one matrix-vector product: ||g - q||^2 = ||g||^2 + ||q||^2 - 2 g.q.
    Rows are grouped by person so the nearest distance per person is one ``np.minimum.reduceat``.
    ``encodings`` (shape (N, 128)) is stored column-major: OpenBLAS's sgemv then streams it 2.5x faster than
    row-major on the 2-core dev machine (3.6 vs 9.8 ms at N = 100,000; docs/performance.md).
    """

    def __init__(self, entries: list[GalleryEntry], model: str = "") -> None:
        self.model = model  # name of the face model that made the encodings (recognizer.models)
        self.entries = sorted(entries, key=lambda e: (e.person, e.image_key))
        self.encodings = (
            np.asfortranarray(np.stack([e.encoding for e in self.entries]), np.float32)
            if self.entries
            else np.empty((0, ENCODING_DIM), np.float32)
        )
        self.norms_sq = np.einsum("ij,ij->i", self.encodings, self.encodings)
        persons = [e.person for e in self.entries]
        self._starts = np.array([i for i, p in enumerate(persons) if i == 0 or p != persons[i - 1]], dtype=np.intp)
        self.people = [persons[i] for i in self._starts]
        self._position = {person: i for i, person in enumerate(self.people)}

    def __len__(self) -> int:
        return len(self.entries)

    def squared_distances(self, encoding: np.ndarray) -> np.ndarray:
        """Squared face distance from ``encoding`` (shape (128,)) to every gallery encoding: float32, shape (N,).

        May hold tiny negatives from rounding where the true value is 0; :func:`_root` clips them.
        """
        probe = np.asarray(encoding, np.float32)
        squared = self.encodings @ probe
        squared *= -2.0
        squared += self.norms_sq
        squared += probe @ probe
        return squared

    def distances(self, encoding: np.ndarray) -> np.ndarray:
        """Face distance from ``encoding`` (shape (128,)) to every gallery encoding: float32 array of shape (N,)."""
        return _root(self.squared_distances(encoding))

    def match(self, encoding: np.ndarray, tolerance: float, margin: float = 0.0) -> Match:
        """Match ``encoding`` (shape (128,)) against the gallery.

        Accepted when the nearest distance is at most ``tolerance`` **and** the nearest other person is at least
        ``margin`` farther away (two people almost equally near means we cannot tell them apart: unknown).
        Minima are taken on squared distances (same order), so only the two answers pay for a square root.
        """
        if not self.entries:
            return Match(None, Category.unknown, None, reason="empty_gallery")
        squared = self.squared_distances(encoding)
        best_row = int(np.argmin(squared))
        entry, distance = self.entries[best_row], float(_root(squared[best_row]))
        second_person = second_distance = None
        if len(self.people) > 1:
            per_person = np.minimum.reduceat(squared, self._starts)
            per_person[self._position[entry.person]] = np.inf
            second = int(np.argmin(per_person))
            second_person, second_distance = self.people[second], float(_root(per_person[second]))
        within = distance <= tolerance
        accepted = within and (second_distance is None or second_distance - distance >= margin)
        return Match(
            entry.person if accepted else None,
            entry.category if accepted else Category.unknown,
            distance,
            entry.person,
            entry.image_key,
            second_person,
            second_distance,
            "matched" if accepted else "ambiguous" if within else "no_match",
            entry.category,
        )


def _root(squared: np.ndarray | np.floating) -> np.ndarray | np.floating:
    """Square root of squared distances, rounding negatives (-1e-7 for a probe equal to a gallery image) to 0."""
    return np.sqrt(np.maximum(squared, np.float32(0.0)))


def lookalikes(index: GalleryIndex, tolerance: float) -> dict[str, tuple[str, float]]:
    """For each gallery person with an image within ``tolerance`` of another person's image: (that other person, the
    smallest such face distance). Such pairs are one person under two names, or two people the matcher cannot tell
    apart (the margin rule then answers unknown for both). Each image is matched against the gallery: O(N^2)."""
    found: dict[str, tuple[str, float]] = {}
    for entry in index.entries:
        match = index.match(entry.encoding, tolerance)
        if match.nearest_person == entry.person:  # the usual case: its own image; the nearest other is second
            other, distance = match.second_person, match.second_distance
        else:  # another person's image is at least as near as its own
            other, distance = match.nearest_person, match.distance
        if other is not None and distance <= tolerance and distance < found.get(entry.person, ("", np.inf))[1]:
            found[entry.person] = (other, distance)
    return found
