"""Face tracks of one camera and the identity vote of each track: pure, no I/O, no model.

A :class:`Tracker` associates each frame's detections with the live tracks of its device (greedy, by IoU with the
box each track is predicted at by its velocity, or by centre distance for fast motion); a detection left over starts
a track, a track unseen for ``timeout_s`` (capture time) ends. The engine encodes a track only when :meth:`Track.
wants_sample` says so (no sample yet, still collecting votes, a better view, or ``resample_s`` elapsed) and feeds
each match back as a vote; :meth:`Track.decide` turns the votes into the track's identity.

Times are the frames' capture times (aware datetimes); boxes are (top, right, bottom, left) in pixels of the frame.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime

import numpy as np

from facebus.events import Category
from facebus.images import Box, iou
from recognizer.matching import Match
from recognizer.quality import Quality, view_score

UNKNOWN_VOTE = ""  # the vote of a sample that matched nobody


@dataclass(frozen=True)
class TrackPolicy:
    """How tracks are kept and decided (from RecognizerSettings).

    ``timeout_s``: a track unseen this long (capture time) ends. ``min_votes``: samples a track needs before it is
    decided, and votes a person needs to be named. ``resample_s``: a decided track is encoded again after this long.
    ``better_view``: a view whose :func:`view_score` beats the best so far by this factor is encoded at once.
    ``max_tracks``: live tracks per device (the smallest new detections beyond it are not tracked).
    ``min_face_px``/``min_sharpness``: the quality gate; a face below it is never encoded or named.
    ``consistent_votes``/``consistent_distance``/``margin``: the consistency rule (``margin`` is its own, not the
    matching margin). A sample whose nearest person P lies within ``consistent_distance`` (above the tolerance) with
    the margin met is a *consistent* vote for P; a track with at least ``consistent_votes`` such votes for P from
    distinct views (encodings at least ``DISTINCT_DISTANCE`` apart: a still photo sent again is one view), making
    three quarters of its samples, is P. 0 votes turns the rule off.
    """

    timeout_s: float = 1.0
    min_votes: int = 2
    resample_s: float = 1.0
    better_view: float = 1.25
    max_tracks: int = 32
    min_face_px: int = 32
    min_sharpness: float = 0.0
    consistent_votes: int = 4
    consistent_distance: float = 0.0
    margin: float = 0.0


MAX_ENCODINGS = 5  # distinct views' encodings a track keeps (for visitors: the first and the newest)
DISTINCT_DISTANCE = 0.02  # face distance below which two samples of a track are the same view (a repeated frame)


@dataclass(frozen=True)
class Identity:
    """What a track is decided to be.

    ``person``/``category``: the named person, or None / unknown. ``reason``: ``matched`` (votes within the
    tolerance), ``consistent`` (the consistency rule of :class:`TrackPolicy`), or why not: ``no_match``
    (nearest beyond the tolerance), ``ambiguous`` (two people almost equally near), ``too_small``, ``too_blurred``
    (quality gate), ``empty_gallery``. ``match``: the sample match behind the decision (nearest distance, second
    person), None when nothing was encoded.
    """

    person: str | None
    category: Category
    reason: str
    match: Match | None


@dataclass
class Track:
    """One face followed across the frames of one device."""

    track_id: str
    device_id: str
    first_seen: datetime
    last_seen: datetime
    box: Box
    velocity_px_s: tuple[float, float] = (0.0, 0.0)  # centre (dy, dx) per second
    frames: int = 1
    samples: int = 0
    votes: Counter = field(default_factory=Counter)  # person (or UNKNOWN_VOTE) -> samples
    reasons: Counter = field(default_factory=Counter)  # why samples and gated frames were not named
    nearest: dict[str, Match] = field(default_factory=dict)  # vote -> its sample with the smallest distance
    consistent: Counter = field(default_factory=Counter)  # person -> distinct samples nearest them (consistency rule)
    consistent_match: dict[str, Match] = field(default_factory=dict)  # person -> their nearest such sample
    last_encoding: np.ndarray | None = field(default=None, repr=False)
    encodings: list[np.ndarray] = field(default_factory=list, repr=False)  # distinct views: the first + the newest
    last_sample_at: datetime | None = None
    best_view: float = -1.0
    announced: Identity | None = None  # the identity last published for this track

    def predicted(self, at: datetime) -> Box:
        """The box moved by the track's velocity to capture time ``at``."""
        dt_s = (at - self.last_seen).total_seconds()
        dy, dx = (round(v * dt_s) for v in self.velocity_px_s)
        top, right, bottom, left = self.box
        return (top + dy, right + dx, bottom + dy, left + dx)

    def update(self, box: Box, at: datetime) -> None:
        dt_s = (at - self.last_seen).total_seconds()
        if dt_s > 0:
            (cy0, cx0), (cy1, cx1) = centre(self.box), centre(box)
            measured = ((cy1 - cy0) / dt_s, (cx1 - cx0) / dt_s)
            self.velocity_px_s = tuple(0.5 * old + 0.5 * new
                                       for old, new in zip(self.velocity_px_s, measured, strict=True))
        self.box, self.last_seen = box, at
        self.frames += 1

    def wants_sample(self, quality: Quality, at: datetime, policy: TrackPolicy) -> bool:
        """Whether this view should be encoded: it passes the quality gate and the track is not decided yet, offers a
        view ``better_view`` times better than its best, or was last encoded ``resample_s`` ago."""
        if quality.problem(policy.min_face_px, policy.min_sharpness) is not None:
            return False
        if self.announced is None or self.last_sample_at is None:
            return True
        if view_score(quality) > self.best_view * policy.better_view:
            return True
        return (at - self.last_sample_at).total_seconds() >= policy.resample_s

    def add_sample(
        self, match: Match, quality: Quality, at: datetime, policy: TrackPolicy, encoding: np.ndarray | None = None
    ) -> bool:
        """Count one encoded view's match (of ``encoding``) as a vote; True when it is the best view so far (keep
        its crop)."""
        vote = match.person if match.person is not None else UNKNOWN_VOTE
        distinct = encoding is None or self.last_encoding is None or (
            float(np.linalg.norm(encoding - self.last_encoding)) >= DISTINCT_DISTANCE)
        if encoding is not None:
            self.last_encoding = encoding
            if distinct:
                self.encodings.append(encoding)
                if len(self.encodings) > MAX_ENCODINGS:
                    del self.encodings[1]  # keep the first view and the newest
        if distinct and _consistent(match, policy):
            self.consistent[match.nearest_person] += 1
            best = self.consistent_match.get(match.nearest_person)
            if best is None or match.distance < best.distance:
                self.consistent_match[match.nearest_person] = match
        self.samples += 1
        self.votes[vote] += 1
        if match.person is None:
            self.reasons[match.reason] += 1
        if match.distance is not None and (vote not in self.nearest or match.distance < self.nearest[vote].distance):
            self.nearest[vote] = match
        self.last_sample_at = at
        score = view_score(quality)
        if self.samples == 1 or score > self.best_view:  # the first sampled view beats any gated one
            self.best_view = score
            return True
        return False

    def add_gated(self, problem: str, quality: Quality) -> bool:
        """Count a frame whose view failed the quality gate (``too_small`` / ``too_blurred``); True when, with no
        sample yet, it is the best of the track's views so far (its crop is what the track's events show)."""
        self.reasons[problem] += 1
        score = view_score(quality)
        if self.samples == 0 and score > self.best_view:
            self.best_view = score
            return True
        return False

    def decide(self, policy: TrackPolicy, ended: bool = False) -> Identity | None:
        """The track's identity from its votes, or None while undecided: fewer than ``min_votes`` samples (for a track
        never sampled, fewer than ``min_votes`` frames), or someone leads without being named yet and fewer than
        ``max(3 * min_votes, 2 * consistent_votes)`` samples were taken. An ended track is always decided.

        A person is named when they have at least ``min_votes`` votes (fewer for a short track whose every frame was
        sampled, when all agree) and more than half of all samples, or by the consistency rule of
        :class:`TrackPolicy`: a stranger who lands within the tolerance of someone now and then stays unknown, a
        person the model sees only from the side or small (just beyond the tolerance, but the same nearest person in
        view after view) is named, and a track that was unknown becomes known once better views outvote the early
        ones.
        """
        enough = self.samples >= policy.min_votes or (self.samples == 0 and self.frames >= policy.min_votes)
        if not (enough or ended):
            return None
        named = [(n, person) for person, n in self.votes.items() if person != UNKNOWN_VOTE]
        # A track that ended having every one of its frames sampled, fewer than min_votes (a still photo, a camera
        # sending a frame every few seconds), had no chance to collect more votes: it is named when they all agree.
        needed = (self.samples if ended and self.samples == self.frames and self.samples < policy.min_votes
                  else policy.min_votes)
        if named:
            n, person = max(named)
            if n >= needed and 2 * n > self.samples:
                match = self.nearest[person]
                return Identity(person, match.category, "matched", match)
        if policy.consistent_votes and self.consistent:
            n, person = max((n, person) for person, n in self.consistent.items())
            if n >= policy.consistent_votes and 4 * n >= 3 * self.samples:
                match = self.consistent_match[person]
                return Identity(person, match.nearest_category, "consistent", match)
        leading = bool(named) or bool(self.consistent)
        patience = max(3 * policy.min_votes, 2 * policy.consistent_votes)
        if leading and not ended and self.announced is None and self.samples < patience:
            return None  # someone leads: look a little longer before calling the track unknown
        reason = self.reasons.most_common(1)[0][0] if self.reasons else "no_match"
        nearest = min(self.nearest.values(), key=lambda m: m.distance, default=None)
        return Identity(None, Category.unknown, reason, nearest)


def _consistent(match: Match, policy: TrackPolicy) -> bool:
    """Whether a sample counts for the consistency rule: nearest within ``consistent_distance``, margin met."""
    if match.distance is None or match.distance > policy.consistent_distance:
        return False
    return match.second_distance is None or match.second_distance - match.distance >= policy.margin


def centre(box: Box) -> tuple[float, float]:
    top, right, bottom, left = box
    return (top + bottom) / 2, (left + right) / 2


def affinity(track_box: Box, box: Box) -> float:
    """How well ``box`` continues a track predicted at ``track_box``: the IoU when they overlap by at least 0.2;
    else, for boxes of similar size (within 2x) whose centres lie within one box width, a small positive score
    falling with that distance (fast motion between two frames); 0 when they cannot be the same face."""
    overlap = iou(track_box, box)
    if overlap >= 0.2:
        return overlap
    width_a, width_b = track_box[1] - track_box[3], box[1] - box[3]
    if not (0.5 <= width_b / max(width_a, 1) <= 2.0):
        return 0.0
    (ya, xa), (yb, xb) = centre(track_box), centre(box)
    distance = ((ya - yb) ** 2 + (xa - xb) ** 2) ** 0.5 / max(width_a, width_b, 1)
    return 0.2 * (1 - distance) if distance < 1 else 0.0


class Tracker:
    """The live tracks of one device. Not thread-safe: one worker owns a device."""

    def __init__(self, device_id: str, policy: TrackPolicy) -> None:
        self.device_id = device_id
        self.policy = policy
        self.tracks: dict[str, Track] = {}

    def update(self, boxes: list[Box], at: datetime) -> tuple[list[Track | None], list[Track]]:
        """Associate ``boxes`` (largest first) of the frame captured at ``at``. Returns (the track of each box, in
        order, None for a box beyond ``max_tracks``; the tracks that ended, unseen for ``timeout_s``)."""
        ended = self.expire(at)
        live = list(self.tracks.values())
        pairs = sorted(
            ((affinity(t.predicted(at), box), ti, bi) for ti, t in enumerate(live) for bi, box in enumerate(boxes)),
            reverse=True,
        )
        assigned: list[Track | None] = [None] * len(boxes)
        used = set()
        for score, ti, bi in pairs:
            if score <= 0:
                break
            if ti in used or assigned[bi] is not None:
                continue
            used.add(ti)
            live[ti].update(boxes[bi], at)
            assigned[bi] = live[ti]
        for bi, box in enumerate(boxes):
            if assigned[bi] is None and len(self.tracks) < self.policy.max_tracks:
                track = Track(uuid.uuid4().hex[:12], self.device_id, at, at, box)
                self.tracks[track.track_id] = track
                assigned[bi] = track
        return assigned, ended

    def expire(self, now: datetime) -> list[Track]:
        """Remove and return the tracks unseen for ``timeout_s`` at capture time ``now``."""
        ended = [t for t in self.tracks.values() if (now - t.last_seen).total_seconds() >= self.policy.timeout_s]
        for track in ended:
            del self.tracks[track.track_id]
        return ended

    def end_all(self) -> list[Track]:
        """Remove and return every live track (camera gone idle, end of a video, shutdown)."""
        ended, self.tracks = list(self.tracks.values()), {}
        return ended
