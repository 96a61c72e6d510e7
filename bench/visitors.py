"""The visitor tolerance per face model: when an unknown face is the same stranger (visitor) as one seen before.

    .venv/bin/python bench/visitors.py [DATASET_DIR] [--model yunet-sface|dlib|both] [--no-video] [--fps N]

DATASET_DIR has the faces-dev layout (default ../shared/datasets/faces-dev next to the repo): manifest.csv,
pairs.csv, enroll/<Person>/*, probe/<Person>/*, strangers/* and video/short_hamilton_clip.mp4 with its
short_hamilton_clip_segments.csv. Results and the reasoning: docs/visitors-threshold.md.

Photos: every enroll/, probe/ and strangers/ photo of manifest.csv is encoded once with the recognizer's still-photo
path (``recognizer.photos.photo_model`` / ``photo_faces``, largest detection; photos without a face are skipped and
counted). Pairs, all scored with the engine's face distance (``recognizer.matching.GalleryIndex.distances``):

- ``pairs.csv``: the dataset's own 77 same / 77 different pairs;
- ``all photos``: every pair of encoded photos, same = same manifest identity (``true_identity`` for strangers, who
  are 9 different people), also split into pairs of enrolled people (enroll/ and probe/), enrolled vs stranger and
  stranger vs stranger.

Video (skipped with ``--no-video``): the Hamilton clip at ``--fps`` through the engine's video model
(``recognizer.engine.model_of``), its quality gate (``policy_of``) and ``recognizer.tracking.Tracker``, one tracker per
shot of the segments csv (the engine ends every track at a cut). Every gated view is encoded. A track is labelled with
the enrolled person most often nearest its views when that person is listed as visible in its shot and the median
distance is within the tolerance plus the consistency band, else unknown. Pairs of views: same track; same person in
another track (what the visitor store sees when someone comes back); different people: tracks seen in one frame
together, tracks labelled with different people, or an unknown track vs a person not visible in its shot.

The rule: the largest threshold (0.01 steps) with no false accept on any different pair (photos and, when measured,
video), minus a safety margin of 0.05 for yunet-sface and 0.03 for dlib. It must be below the enrolled tolerance: when
it is not, the enrolled tolerance minus the margin is taken. A false "same visitor" merges two strangers for good, a
missed one only splits a stranger in two ids (merged later), so only the different pairs set it.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import os
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facebus.events import Category  # noqa: E402
from facebus.settings import MODEL_DEFAULTS, RecognizerSettings  # noqa: E402
from recognizer import quality  # noqa: E402
from recognizer.engine import model_of, policy_of  # noqa: E402
from recognizer.matching import GalleryEntry, GalleryIndex  # noqa: E402
from recognizer.photos import photo_faces, photo_model  # noqa: E402
from recognizer.tracking import Tracker  # noqa: E402

DEFAULT_DATASET = REPO.parent / "shared" / "datasets" / "faces-dev"
MODELS = ("yunet-sface", "dlib")
SAFETY = {"yunet-sface": 0.05, "dlib": 0.03}
GRIDS = {
    "yunet-sface": [0.70, 0.75, 0.80, 0.85, 0.90, 0.95, 1.00, 1.04, 1.10],
    "dlib": [0.35, 0.38, 0.40, 0.42, 0.45, 0.48, 0.50, 0.54, 0.58],
}
STEP = 0.01  # the rule's threshold grid
CONSISTENT_BAND = 0.12  # video labels: RecognizerSettings.track_consistent_band
CLIP = "short_hamilton_clip"
# Photos are encoded in this many processes. A fixed number, not one per core: dlib's jitters draw from a generator
# that runs on from photo to photo in a process, so its encodings depend on which photos a process encoded before.
PHOTO_CHUNKS = 2


@dataclass
class PairSet:
    """Distances of one kind of pair: ``same`` (same person) and ``different`` (two people), float arrays; and the
    nearest different pairs as (distance, what the two faces are)."""

    same: np.ndarray
    different: np.ndarray
    nearest: list[tuple[float, str]]


def pair_set(same: list[float], different: list[tuple[float, str]], keep: int = 3) -> PairSet:
    """A PairSet of these distances (``different``: with the description of each pair)."""
    nearest = sorted(different)[:keep]
    return PairSet(np.array(same, float), np.array([d for d, _ in different], float), nearest)


@dataclass
class Result:
    """What one model gave: pair sets by name, photos skipped, video track pairs (relation, nearest distance), the
    video track table, and seconds per job."""

    model: str
    photos: int
    skipped: list[str]
    sets: dict[str, PairSet]
    track_pairs: dict[tuple[str, str], tuple[str, float]]
    video_tracks: list[str]
    seconds: dict[str, float]


# -- photos --------------------------------------------------------------------------------------------------------


def manifest_photos(dataset: Path) -> list[tuple[str, str, bool]]:
    """(path relative to ``dataset``, identity, is a stranger) of every enroll/probe/stranger photo in manifest.csv."""
    with (dataset / "manifest.csv").open(newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["split"] in ("enroll", "probe", "stranger")]
    return [(r["path"], (r["true_identity"] or r["path"]) if r["split"] == "stranger" else r["identity"],
             r["split"] == "stranger") for r in rows]


def encode_photos(model_name: str, dataset: Path, paths: list[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """Encoding of the largest face of each photo, the recognizer's still-photo way; and the paths with no face."""
    model = photo_model(RecognizerSettings(model=model_name))
    encodings, skipped = {}, []
    for path in paths:
        rgb, found = photo_faces(model, (dataset / path).read_bytes())
        if found:
            encodings[path] = model.encode(rgb, found[:1])[0]
        else:
            skipped.append(path)
    return encodings, skipped


def distance_matrix(encodings: list[np.ndarray], model_name: str) -> np.ndarray:
    """Face distance between every two encodings, with the engine's own function (GalleryIndex.distances)."""
    entries = [GalleryEntry(f"{i:06d}", Category.unknown, str(i), e) for i, e in enumerate(encodings)]
    index = GalleryIndex(entries, model_name)  # entries sort by person: the zero-padded position keeps their order
    return np.stack([index.distances(e) for e in encodings]) if encodings else np.empty((0, 0))


def photo_pair_sets(dataset: Path, encodings: dict[str, np.ndarray], model_name: str) -> dict[str, PairSet]:
    """pairs.csv pairs, and every pair of encoded photos split by kind (see the module docstring)."""
    photos = [p for p in manifest_photos(dataset) if p[0] in encodings]
    paths = [p[0] for p in photos]
    position = {path: i for i, path in enumerate(paths)}
    matrix = distance_matrix([encodings[p] for p in paths], model_name)
    kinds: dict[str, tuple[list, list]] = {k: ([], []) for k in (
        "pairs.csv", "all photos", "photos: enrolled people", "photos: enrolled vs stranger",
        "photos: stranger vs stranger")}
    with (dataset / "pairs.csv").open(newline="") as f:
        for row in csv.DictReader(f):
            a, b = row["path_a"], row["path_b"]
            if a in position and b in position:
                d = float(matrix[position[a], position[b]])
                same, different = kinds["pairs.csv"]
                same.append(d) if row["same"] == "1" else different.append((d, f"{a} vs {b}"))
    for (i, (a, who_a, stranger_a)), (j, (b, who_b, stranger_b)) in itertools.combinations(enumerate(photos), 2):
        kind = ("photos: stranger vs stranger" if stranger_a and stranger_b else
                "photos: enrolled vs stranger" if stranger_a or stranger_b else "photos: enrolled people")
        d = float(matrix[i, j])
        for name in ("all photos", kind):
            kinds[name][0].append(d) if who_a == who_b else kinds[name][1].append((d, f"{a} vs {b}"))
    return {name: pair_set(same, different) for name, (same, different) in kinds.items()}


# -- video ---------------------------------------------------------------------------------------------------------


@dataclass
class View:
    """One encoded face of the clip: its shot, track (numbered in order of appearance), frame, box and encoding."""

    shot: int
    track: str
    frame: int
    box: tuple[int, int, int, int]
    encoding: np.ndarray

    @property
    def width_px(self) -> int:
        return self.box[1] - self.box[3]


def clip_shots(dataset: Path) -> list[tuple[int, int, set[str]]]:
    """(first frame, last frame, identities visible) of each shot of the clip's segments csv."""
    with (dataset / "video" / f"{CLIP}_segments.csv").open(newline="") as f:
        return [(int(r["start_frame"]), int(r["end_frame"]), set(r["identities_visible"].split(";")))
                for r in csv.DictReader(f)]


def video_views(model_name: str, dataset: Path, fps: float) -> list[View]:
    """Every view of the clip (sampled at ``fps``) that passes the engine's quality gate, encoded with the engine's
    video model and tracked with the engine's tracker, a new tracker per shot."""
    settings = RecognizerSettings(model=model_name)
    model, policy = model_of(settings), policy_of(settings, model_name)
    shots = clip_shots(dataset)
    capture = cv2.VideoCapture(str(dataset / "video" / f"{CLIP}.mp4"))
    clip_fps = capture.get(cv2.CAP_PROP_FPS)
    step = max(1, round(clip_fps / fps))
    start, views, tracker, shot_of_tracker = datetime(2026, 12, 1, tzinfo=timezone.utc), [], None, -1
    names: dict[str, str] = {}  # tracker's random track id -> t1, t2, ... (reproducible output)
    for frame in itertools.count():
        ok, bgr = capture.read()
        if not ok:
            break
        if frame % step:
            continue
        shot = next(i for i, (first, last, _) in enumerate(shots) if first <= frame <= last)
        if shot != shot_of_tracker:
            tracker, shot_of_tracker = Tracker("clip", policy), shot
        rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        detections = model.detect(rgb)
        tracks, _ = tracker.update([d.box for d in detections], start + timedelta(seconds=frame / clip_fps))
        kept = [(d, t) for d, t in zip(detections, tracks, strict=True) if t is not None and
                quality.measure(rgb, d).problem(policy.min_face_px, policy.min_sharpness) is None]
        for (d, t), encoding in zip(kept, model.encode(rgb, [d for d, _ in kept]), strict=True):
            name = names.setdefault(t.track_id, f"t{len(names) + 1}")
            views.append(View(shot, name, frame, d.box, encoding))
    capture.release()
    return views


def label_tracks(views: list[View], gallery: GalleryIndex, shots: list, model_name: str) -> dict[str, str]:
    """Track id -> the enrolled person it shows (nearest most often, visible in its shot, median distance within
    tolerance + band), or "" for unknown."""
    limit = MODEL_DEFAULTS[model_name].tolerance + CONSISTENT_BAND
    labels = {}
    for track in dict.fromkeys(v.track for v in views):
        mine = [v for v in views if v.track == track]
        matches = [gallery.match(v.encoding, limit) for v in mine]
        person, _ = Counter(m.nearest_person for m in matches).most_common(1)[0]
        median = float(np.median([m.distance for m in matches if m.nearest_person == person]))
        labels[track] = person if person in shots[mine[0].shot][2] and median <= limit else ""
    return labels


def track_relations(views: list[View], labels: dict[str, str], shots: list) -> dict[tuple[str, str], str]:
    """(track a, track b) -> "same" (labelled the same person) or "different" (side by side in a frame, labelled
    different people, or unknown vs a person not visible in its shot); pairs of unknown relation are left out."""
    boxes: dict[str, dict[int, tuple]] = {}  # track -> frame -> box
    shot = {v.track: v.shot for v in views}
    for v in views:
        boxes.setdefault(v.track, {})[v.frame] = v.box
    relations = {}
    for a, b in itertools.combinations(boxes, 2):
        la, lb = labels[a], labels[b]
        if la and la == lb:
            relations[a, b] = "same"
        elif (side_by_side(boxes[a], boxes[b]) or (la and lb) or (lb and lb not in shots[shot[a]][2])
              or (la and la not in shots[shot[b]][2])):
            relations[a, b] = "different"
    return relations


def video_pair_sets(views: list[View], labels: dict[str, str], shots: list,
                    model_name: str) -> tuple[dict[str, PairSet], dict[tuple[str, str], tuple[str, float]]]:
    """Pairs of views (same track; same person in another track; different people), and for each pair of tracks of
    known relation: (relation, distance of their nearest two views), as a visitor store keeping every view would see."""
    matrix = distance_matrix([v.encoding for v in views], model_name)
    relations = track_relations(views, labels, shots)
    within, later, different, nearest = [], [], [], {}
    for (i, a), (j, b) in itertools.combinations(enumerate(views), 2):
        d, key = float(matrix[i, j]), (a.track, b.track)
        if a.track == b.track:
            within.append(d)
        elif key in relations:
            relation = relations[key]
            later.append(d) if relation == "same" else different.append(
                (d, f"{describe_view(a, labels)} vs {describe_view(b, labels)}"))
            nearest[key] = (relation, min(d, nearest.get(key, ("", d))[1]))
    return {"video, same track": pair_set(within, []), "video, another track": pair_set(later, different)}, nearest


def side_by_side(a: dict[int, tuple], b: dict[int, tuple]) -> bool:
    """Whether two tracks (frame -> box) share frames and their boxes never overlap in them: two people. (Overlapping
    boxes can be one face detected twice, e.g. a second box on the upper half of a face.)"""
    shared = a.keys() & b.keys()
    return bool(shared) and all(min(a[f][1], b[f][1]) <= max(a[f][3], b[f][3]) or
                                min(a[f][2], b[f][2]) <= max(a[f][0], b[f][0]) for f in shared)


def describe_view(view: View, labels: dict[str, str]) -> str:
    """'Person (shot s, track t, frame f, w px)' of one video view."""
    return (f"{labels[view.track] or 'unknown'} (shot {view.shot + 1}, track {view.track}, frame {view.frame}, "
            f"{view.width_px} px)")


def describe_tracks(views: list[View], labels: dict[str, str]) -> list[str]:
    """One line per video track: shot, views, frames, box widths, label."""
    lines = []
    for track, label in labels.items():
        mine = [v for v in views if v.track == track]
        widths = [v.width_px for v in mine]
        lines.append(f"| {mine[0].shot + 1} | {track} | {mine[0].frame}-{mine[-1].frame} | {len(mine)} | "
                     f"{min(widths)}-{max(widths)} | {label or 'unknown'} |")
    return lines


# -- one model -----------------------------------------------------------------------------------------------------


def timed(function, *args):
    """(function(*args), seconds it took): one job of the process pool."""
    started = time.perf_counter()
    return function(*args), time.perf_counter() - started


def measure(models: tuple[str, ...], dataset: Path, video: bool, fps: float) -> list[Result]:
    """Encode the photos (in PHOTO_CHUNKS chunks) and the clip with each model, in parallel processes (dlib first:
    its photos take longest), then score every pair set."""
    photos = manifest_photos(dataset)
    paths = [p[0] for p in photos]
    jobs: dict[tuple[str, str], list] = {}
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for model_name in sorted(models, key=lambda m: m != "dlib"):
            jobs[model_name, "photos"] = [pool.submit(timed, encode_photos, model_name, dataset, paths[i::PHOTO_CHUNKS])
                                          for i in range(PHOTO_CHUNKS)]
            if video:
                jobs[model_name, "video"] = [pool.submit(timed, video_views, model_name, dataset, fps)]
        done = {key: [job.result() for job in chunk] for key, chunk in jobs.items()}
    results = []
    for model_name in models:
        encodings, skipped = {}, []
        for (chunk_encodings, chunk_skipped), _ in done[model_name, "photos"]:
            encodings |= chunk_encodings
            skipped += chunk_skipped
        seconds = {job: sum(t for _, t in chunk) for (m, job), chunk in done.items() if m == model_name}
        result = Result(model_name, len(photos), sorted(skipped), photo_pair_sets(dataset, encodings, model_name),
                        {}, [], seconds)
        if video:
            (views, _), = done[model_name, "video"]
            enrolled = [GalleryEntry(who, Category.unknown, path, encodings[path])
                        for path, who, _ in photos if path.startswith("enroll/") and path in encodings]
            shots = clip_shots(dataset)
            labels = label_tracks(views, GalleryIndex(enrolled, model_name), shots, model_name)
            sets, result.track_pairs = video_pair_sets(views, labels, shots, model_name)
            result.sets |= sets
            result.video_tracks = describe_tracks(views, labels)
        results.append(result)
    return results


@dataclass(frozen=True)
class Choice:
    """The rule applied to some different pairs: the nearest one's distance, the largest 0.01-step threshold strictly
    below it, the visitor tolerance (that minus the safety margin), and whether that was not stricter than the enrolled
    tolerance, so the enrolled tolerance minus the margin was taken instead."""

    closest: float
    largest: float
    tolerance: float
    fallback: bool

    def __str__(self) -> str:
        fallback = " (enrolled tolerance minus the margin)" if self.fallback else ""
        return (f"nearest different pair {self.closest:.3f} -> largest threshold with no false accept "
                f"{self.largest:.2f} -> minus the margin {self.tolerance:.2f}{fallback}")


def choose(model_name: str, sets: list[PairSet]) -> Choice:
    """The visitor tolerance of ``model_name`` by the rule, from the different pairs of ``sets``."""
    closest = float(min(s.different.min() for s in sets if s.different.size))
    largest = round(float(np.floor((closest - 1e-9) / STEP) * STEP), 2)
    chosen, enrolled = round(largest - SAFETY[model_name], 2), MODEL_DEFAULTS[model_name].tolerance
    if chosen < enrolled:
        return Choice(closest, largest, chosen, False)
    return Choice(closest, largest, round(enrolled - SAFETY[model_name], 2), True)


# -- report --------------------------------------------------------------------------------------------------------


def rate(values: np.ndarray, threshold: float) -> str:
    """'k/n (p%)' of ``values`` at or below ``threshold``."""
    if not values.size:
        return "-"
    k = int((values <= threshold + 1e-9).sum())
    return f"{k}/{values.size} ({100 * k / values.size:.0f}%)" if k not in (0, values.size) else f"{k}/{values.size}"


def spread(values: np.ndarray) -> str:
    """'min | p5 | median | p95 | max' of ``values``."""
    return " | ".join(f"{q:.3f}" for q in np.percentile(values, [0, 5, 50, 95, 100]))


def rate_table(result: Result, names: list[str], grid: list[float], chosen: float) -> list[str]:
    """Markdown table: for each threshold of ``grid``, the same and different pairs of each set at or below it."""
    columns = [(n, c) for n in names for c in ("same", "different") if getattr(result.sets[n], c).size]
    labels = {"same": "same visitor", "different": "different visitor"}
    out = ["| threshold | " + " | ".join(f"{n}: {labels[c]}" for n, c in columns) + " |",
           "|---" * (len(columns) + 1) + "|"]
    for t in grid:
        mark = "**" if t == chosen else ""
        cells = " | ".join(rate(getattr(result.sets[n], c), t) for n, c in columns)
        out.append(f"| {mark}{t:.2f}{mark} | {cells} |")
    return out


def track_summary(track_pairs: dict[tuple[str, str], tuple[str, float]], chosen: float) -> str:
    """Per pair of video tracks, the distance of their nearest two views: every same-person pair, the nearest
    different-people pairs, and how many of each are within ``chosen`` (would be one visitor)."""
    same = sorted((d, a, b) for (a, b), (relation, d) in track_pairs.items() if relation == "same")
    different = sorted((d, a, b) for (a, b), (relation, d) in track_pairs.items() if relation == "different")
    merged, wrong = sum(d <= chosen for d, _, _ in same), sum(d <= chosen for d, _, _ in different)
    return (f"Track pairs, by their nearest two views: same person {', '.join(f'{a}-{b} {d:.3f}' for d, a, b in same)}"
            f"; different people (nearest {min(3, len(different))} of {len(different)}) "
            f"{', '.join(f'{a}-{b} {d:.3f}' for d, a, b in different[:3])}. At {chosen:.2f}, {merged}/{len(same)} "
            f"same-person track pairs would be one visitor, and {wrong}/{len(different)} different-people pairs.")


def report(result: Result) -> str:
    """The markdown tables of one model."""
    tolerance, margin = MODEL_DEFAULTS[result.model].tolerance, SAFETY[result.model]
    choice = choose(result.model, list(result.sets.values()))
    chosen = choice.tolerance
    video = [n for n in result.sets if n.startswith("video")]
    out = [f"## {result.model} (enrolled tolerance {tolerance})", "",
           f"{result.photos} photos, {result.photos - len(result.skipped)} encoded, {len(result.skipped)} without a "
           f"face{': ' + ', '.join(result.skipped) if result.skipped else ''}. Encoding time (CPU-bound jobs, run in "
           f"parallel): " + ", ".join(f"{job} {seconds:.0f} s" for job, seconds in result.seconds.items()) + ".", "",
           "### Distances", "",
           "| pairs | class | n | min | p5 | median | p95 | max |", "|---|---|---|---|---|---|---|---|"]
    for name, s in result.sets.items():
        for cls in ("same", "different"):
            values = getattr(s, cls)
            if values.size:
                out.append(f"| {name} | {cls} | {values.size} | {spread(values)} |")
    out += ["", "Nearest different pairs:", ""]
    nearest = sorted(set(itertools.chain.from_iterable(s.nearest for s in result.sets.values())))
    out += [f"- {d:.3f}: {what}" for d, what in nearest[:5]]
    grid = sorted(set(GRIDS[result.model]) | {choice.largest, chosen})
    out += ["", "### Same visitor (true accept) and different visitor (false accept): pairs at or below the threshold",
            "", *rate_table(result, ["pairs.csv", "all photos"], grid, chosen)]
    if video:
        out += ["", *rate_table(result, video, grid, chosen)]
        out += ["", "Video tracks:", "", "| shot | track | frames | views | box px | label |",
                "|---|---|---|---|---|---|"]
        out += result.video_tracks
    photos, listed = result.sets["all photos"], result.sets["pairs.csv"]
    out += ["", "### Choice", "", f"- Rule (margin {margin}): {choice}: **visitor tolerance {chosen:.2f}** "
            f"(enrolled {tolerance}).",
            f"- At {chosen:.2f}: same visitor {rate(photos.same, chosen)} of the photo same pairs "
            f"({rate(listed.same, chosen)} of pairs.csv); different visitor {rate(photos.different, chosen)} of the "
            f"photo different pairs ({rate(listed.different, chosen)} of pairs.csv)."]
    if video:
        later = result.sets["video, another track"]
        out += [f"- Video at {chosen:.2f}: same person, another track {rate(later.same, chosen)}; same track "
                f"{rate(result.sets['video, same track'].same, chosen)}; different people "
                f"{rate(later.different, chosen)}.",
                f"- {track_summary(result.track_pairs, chosen)}",
                f"- Photos alone: {choose(result.model, [s for n, s in result.sets.items() if n not in video])}."]
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", nargs="?", type=Path, default=DEFAULT_DATASET)
    parser.add_argument("--model", choices=[*MODELS, "both"], default="both")
    parser.add_argument("--no-video", action="store_true", help="photos only")
    parser.add_argument("--fps", type=float, default=10.0, help="frames per second sampled from the clip")
    args = parser.parse_args()
    models = MODELS if args.model == "both" else (args.model,)
    video = not args.no_video and (args.dataset / "video" / f"{CLIP}.mp4").is_file()
    started = time.perf_counter()
    results = measure(models, args.dataset, video, args.fps)
    for result in results:
        print(report(result), end="\n\n")
    print(f"Wall time {time.perf_counter() - started:.0f} s on {os.cpu_count()} cores.")


if __name__ == "__main__":
    main()
