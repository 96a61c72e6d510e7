"""Recognition accuracy per face model, and the thresholds chosen from it (results in docs/accuracy.md).

    .venv/bin/python bench/accuracy.py [DATASET_DIR] [--model yunet-sface|dlib|both] [--gallery DIR]
                                       [--tolerance T] [--margin M]

DATASET_DIR has the faces-dev layout (default: the repo's samples/faces-dev): probe/<Person>/*, strangers/*,
pairs.csv and, optionally, enroll/<Person>/*. The gallery is DATASET_DIR/enroll when it exists, else --gallery
(default samples/gallery: Authorised|Restricted/<Person>/* or <Person>.jpg); pairs.csv paths enroll/<Person>/<file>
are looked up in the gallery.

Every photo is shrunk to at most 1024 px on its longest side and its largest face, found by the model's own
detector, is encoded, as the recognizer does with gallery photos (dlib: gallery photos with HOG only and 10 jitters,
probes with HOG + profile cascade and 1 jitter). Per model:

1. identification: gallery vs probes and strangers for a sweep of tolerances and margins;
2. verification: the distance of each pairs.csv pair vs a threshold;
3. face size: each probe and stranger shrunk so its face is W px wide, pasted into a 640x360 grey frame, detected
   and matched there (the face counts as detected when a detection's centre lies in its expected box);
4. blur: the same with the face 80 px wide and the frame Gaussian-blurred, with quality.measure sharpness.

Chosen values (sections 3 and 4 use the tolerance and margin unless --tolerance / --margin are given):
- margin: the largest of 0, 0.03, 0.05, 0.10 that costs no probe named at margin 0;
- tolerance: the strictest one naming at least 98% of the probes, moved up to the middle of the gap between the
  right-person distances and the nearest stranger (one the margin does not already reject); 0.005 steps, down;
- min_face_px / min_sharpness: the lowest edge of detected box width / sharpness from which every bin of at least
  10 probes names at least 90% of them right, with no wrong name and no stranger named.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facebus.events import Category  # noqa: E402
from facebus.images import ImageError, load_photo, scale_image  # noqa: E402
from recognizer import quality  # noqa: E402
from recognizer.matching import GalleryEntry, GalleryIndex  # noqa: E402
from recognizer.models import MODEL_NAMES, Detection, FaceModel, load_model  # noqa: E402
from recognizer.photos import GALLERY_JITTERS, PHOTO_MAX_SIDE_PX  # noqa: E402

SWEEPS = {
    "yunet-sface": [0.90, 0.95, 1.00, 1.025, 1.05, 1.075, 1.10, 1.125, 1.15, 1.20],
    "dlib": [0.45, 0.50, 0.54, 0.56, 0.58, 0.60, 0.62],
}
MARGINS = [0.0, 0.03, 0.05, 0.10]
NAMED_GOAL = 0.98
FACE_WIDTHS_PX = [16, 20, 24, 28, 32, 40, 48, 64, 80]
FRAME_SIZE = (640, 360)  # width, height
BLUR_FACE_PX = 80
BLUR_SIGMAS = [0, 1, 1.5, 2, 2.5, 3, 4, 6]
WIDTH_BINS = [0, 16, 20, 24, 28, 32, 36, 40, 48, 64, 1000]
SHARPNESS_BINS = [0, 10, 20, 30, 40, 60, 80, 120, 200, float("inf")]
GATE_NAMED = 0.90  # a bin of faces is reliable when at least this share of its probes is named right...
GATE_MIN_FACES = 10  # ... counted only for bins of at least this many faces


# -- data ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    gallery: list[tuple[str, Category, Path]]  # person, category, photo
    probes: list[tuple[str, Path]]  # right person, photo
    strangers: list[Path]
    pairs: list[tuple[Path, Path, bool]]  # photo a, photo b, same person


def gallery_photos(folder: Path) -> list[tuple[str, Category, Path]]:
    """(person, category, photo) in a gallery folder: Authorised|Restricted/<Person>/* or <Person>.<ext>, or the
    enroll layout <Person>/* (all authorised)."""
    categories = {c.value: c for c in (Category.authorised, Category.restricted)}
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        category = categories.get(sub.name.lower())
        if category is None:  # enroll layout: the folder is a person
            found += [(sub.name, Category.authorised, f) for f in sorted(sub.iterdir()) if f.is_file()]
            continue
        for item in sorted(sub.iterdir()):
            if item.is_dir():
                found += [(item.name, category, f) for f in sorted(item.iterdir()) if f.is_file()]
            else:
                found.append((item.stem, category, item))
    return found


def load_dataset(root: Path, gallery_dir: Path) -> Dataset:
    gallery = gallery_photos(root / "enroll" if (root / "enroll").is_dir() else gallery_dir)
    by_name = {(person, path.name): path for person, _, path in gallery}

    def resolve(relative: str) -> Path:
        parts = Path(relative).parts
        if len(parts) == 3 and parts[0] == "enroll":
            return by_name.get((parts[1], parts[2]), root / relative)
        return root / relative

    pairs = []
    if (root / "pairs.csv").is_file():
        with open(root / "pairs.csv", newline="") as f:
            pairs = [(resolve(r["path_a"]), resolve(r["path_b"]), r["same"] == "1") for r in csv.DictReader(f)]
    probes = [(p.parent.name, p) for p in sorted(root.glob("probe/*/*")) if p.is_file()]
    strangers = sorted(p for p in root.glob("strangers/*") if p.is_file())
    return Dataset(gallery, probes, strangers, pairs)


def shown(path: Path) -> str:
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


# -- faces ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """The face measured in one image (detection and encoding None when no face was found)."""

    detection: Detection | None
    encoding: np.ndarray | None
    sharpness: float | None = None


NO_FACE = Face(None, None)


class Measurer:
    """One model, used the way the recognizer uses it on gallery photos, probe photos and frames."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.probe_model: FaceModel = load_model(name)
        self.gallery_model: FaceModel = (
            load_model(name, profiles=False, num_jitters=GALLERY_JITTERS) if name == "dlib" else self.probe_model
        )
        self._photos: dict[tuple[Path, bool], tuple[np.ndarray, Face]] = {}

    def photo(self, path: Path, gallery: bool = False) -> tuple[np.ndarray, Face]:
        """The photo (shrunk to at most 1024 px) and its largest face, as a gallery photo or a probe; cached."""
        key = (path, gallery)
        if key not in self._photos:
            try:
                rgb = load_photo(path)
            except ImageError:
                self._photos[key] = (np.zeros((1, 1, 3), np.uint8), NO_FACE)
                return self._photos[key]
            rgb = scale_image(rgb, min(1.0, PHOTO_MAX_SIDE_PX / max(rgb.shape[:2])))
            model = self.gallery_model if gallery else self.probe_model
            found = model.detect(rgb)[:1]
            self._photos[key] = (rgb, Face(found[0], model.encode(rgb, found)[0]) if found else NO_FACE)
        return self._photos[key]

    def frame(self, frame: np.ndarray, expected: tuple[int, int, int, int]) -> Face:
        """The largest detection in ``frame`` whose centre lies in the ``expected`` box, encoded in the frame."""
        top, right, bottom, left = expected
        for d in self.probe_model.detect(frame):
            cy, cx = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            if top <= cy <= bottom and left <= cx <= right:
                (encoding,) = self.probe_model.encode(frame, [d])
                return Face(d, encoding, quality.measure(frame, d).sharpness)
        return NO_FACE


def in_frame(rgb: np.ndarray, box: tuple[int, int, int, int], face_px: int):
    """``rgb`` shrunk so the face at ``box`` is ``face_px`` wide, cropped around the face to at most the frame size
    and pasted in the middle of a grey frame: (frame, the face's box in it), or None when that would enlarge."""
    top, right, bottom, left = box
    scale = face_px / (right - left)
    if scale > 1:
        return None
    small = scale_image(rgb, scale)
    fy, fx = small.shape[0] / rgb.shape[0], small.shape[1] / rgb.shape[1]
    top, bottom, left, right = top * fy, bottom * fy, left * fx, right * fx
    width, height = FRAME_SIZE
    x0 = int(np.clip((left + right - width) / 2, 0, max(0, small.shape[1] - width)))
    y0 = int(np.clip((top + bottom - height) / 2, 0, max(0, small.shape[0] - height)))
    crop = small[y0:y0 + height, x0:x0 + width]
    frame = np.full((height, width, 3), 128, np.uint8)
    ox, oy = (width - crop.shape[1]) // 2, (height - crop.shape[0]) // 2
    frame[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    dx, dy = ox - x0, oy - y0
    return frame, (round(top + dy), round(right + dx), round(bottom + dy), round(left + dx))


# -- 1. identification ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """An image's nearest gallery person, the distance to them and to the nearest other person (inf: no face)."""

    path: Path
    truth: str | None  # None for a stranger
    nearest: str | None
    distance: float
    other: float

    @property
    def margin(self) -> float:
        return self.other - self.distance

    def named(self, tolerance: float, margin: float) -> str | None:
        return self.nearest if self.distance <= tolerance and self.margin >= margin else None


def build_index(m: Measurer, data: Dataset) -> tuple[GalleryIndex, list[Path]]:
    """The gallery index, and the gallery photos left out because no face was found."""
    entries, rejected = [], []
    for person, category, path in data.gallery:
        face = m.photo(path, gallery=True)[1]
        if face.encoding is None:
            rejected.append(path)
        else:
            entries.append(GalleryEntry(person, category, str(path), face.encoding))
    return GalleryIndex(entries), rejected


def answer(index: GalleryIndex, path: Path, truth: str | None, encoding: np.ndarray | None) -> Answer:
    if encoding is None:
        return Answer(path, truth, None, float("inf"), float("inf"))
    match = index.match(encoding, float("inf"))
    return Answer(path, truth, match.nearest_person, match.distance, match.second_distance or float("inf"))


def identify(m: Measurer, data: Dataset, index: GalleryIndex) -> tuple[list[Answer], list[Answer]]:
    probes = [answer(index, p, person, m.photo(p)[1].encoding) for person, p in data.probes]
    strangers = [answer(index, p, None, m.photo(p)[1].encoding) for p in data.strangers]
    return probes, strangers


def rates(probes: list[Answer], strangers: list[Answer], tolerance: float, margin: float) -> tuple[int, int, int]:
    """(probes named right, probes given a wrong name, strangers named)."""
    names = [a.named(tolerance, margin) for a in probes]
    right = sum(1 for a, name in zip(probes, names, strict=True) if name == a.truth)
    wrong = sum(1 for a, name in zip(probes, names, strict=True) if name not in (None, a.truth))
    return right, wrong, sum(1 for a in strangers if a.named(tolerance, margin))


def choose_tolerance(probes: list[Answer], strangers: list[Answer], margin: float) -> float:
    """The strictest tolerance naming >= 98% of probes, moved up to the middle of the gap between the right-person
    distances below the nearest stranger (kept out by the margin or not) and that stranger; 0.005 steps, rounded
    down."""
    right = sorted(a.distance for a in probes if a.nearest == a.truth and a.margin >= margin)
    needed = int(np.ceil(NAMED_GOAL * len(probes)))
    if len(right) < needed:
        return right[-1] if right else 0.0
    lowest = right[needed - 1]
    above = sorted(a.distance for a in strangers if a.nearest and a.margin >= margin and a.distance > lowest)
    ceiling = above[0] if above else lowest + 0.1
    highest = max(d for d in right if d < ceiling)
    return float(np.floor(round(100 * (highest + ceiling), 6)) / 200)


def choose_margin(probes: list[Answer], tolerance: float) -> float:
    """The largest of MARGINS that still names every probe named at margin 0 (and this tolerance)."""
    named = [a.margin for a in probes if a.named(tolerance, 0.0) == a.truth]
    return max(m for m in MARGINS if all(mg >= m for mg in named))


def print_identification(m: Measurer, probes: list[Answer], strangers: list[Answer], rejected: list[Path],
                         index: GalleryIndex, chosen: float) -> None:
    print(f"gallery: {len(index)} photos of {len(index.people)} people; probes: {len(probes)}; "
          f"strangers: {len(strangers)}")
    print(f"gallery photos without a face (left out): {[shown(p) for p in rejected]}")
    print(f"probes and strangers without a face: {[shown(a.path) for a in probes + strangers if a.nearest is None]}")
    print(f"rank-1 right whatever the tolerance: {sum(a.nearest == a.truth for a in probes)}/{len(probes)}")
    print("\ncells: probes named right / probes given a wrong name / strangers named\n")
    print("| tolerance | " + " | ".join(f"margin {mg:.2f}" for mg in MARGINS) + " |")
    print("|---" * (len(MARGINS) + 1) + "|")
    for tol in sorted(set(SWEEPS[m.name]) | {chosen}):
        cells = []
        for margin in MARGINS:
            right, wrong, named = rates(probes, strangers, tol, margin)
            cells.append(f"{right}/{len(probes)} ({right / len(probes):.0%}) / {wrong} / {named}/{len(strangers)}")
        mark = " (chosen)" if tol == chosen else ""
        print(f"| {tol:.3f}{mark} | " + " | ".join(cells) + " |")
    right = sorted((a for a in probes if a.nearest == a.truth), key=lambda a: a.distance)
    print("\nright-person probes, 5 largest distances (distance, margin to the nearest other person, photo):")
    for a in right[-5:]:
        print(f"  {a.distance:.3f}  {a.margin:.3f}  {shown(a.path)}")
    print("right-person probes, 5 smallest margins: "
          + ", ".join(f"{a.margin:.3f} ({a.path.name})" for a in sorted(right, key=lambda a: a.margin)[:5]))
    print("strangers, nearest first (distance, margin, nearest gallery person, photo):")
    for a in sorted(strangers, key=lambda a: a.distance):
        print(f"  {a.distance:.3f}  {a.margin:.3f}  {a.nearest}  {shown(a.path)}")
    print("probes, 3 smallest distances to a wrong gallery person: "
          + ", ".join(f"{a.other:.3f} ({a.path.name})" for a in sorted(right, key=lambda a: a.other)[:3]))


# -- 2. verification -----------------------------------------------------------------------------------------------


def verify(m: Measurer, data: Dataset) -> list[tuple[float, bool]]:
    """(distance, same person) of each pair, an enrolled photo encoded as a gallery photo; inf without a face."""
    enrolled = {path for _, _, path in data.gallery}
    out = []
    for a, b, same in data.pairs:
        ea, eb = (m.photo(p, gallery=p in enrolled)[1].encoding for p in (a, b))
        out.append((float(np.linalg.norm(ea - eb)) if ea is not None and eb is not None else float("inf"), same))
    return out


def print_verification(m: Measurer, pairs: list[tuple[float, bool]], chosen: float) -> None:
    same, different = [d for d, s in pairs if s], [d for d, s in pairs if not s]
    if not same or not different:
        print("no pairs.csv, or no same or no different pair")
        return
    print(f"pairs: {len(same)} same, {len(different)} different; with a photo without a face: "
          f"{sum(d == float('inf') for d, _ in pairs)}")
    print("\n| threshold | same-pair accepted | different-pair accepted |\n|---|---|---|")
    for t in sorted(set(SWEEPS[m.name]) | {chosen}):
        sa, da = sum(d <= t for d in same), sum(d <= t for d in different)
        mark = " (chosen)" if t == chosen else ""
        print(f"| {t:.3f}{mark} | {sa}/{len(same)} ({sa / len(same):.0%}) | "
              f"{da}/{len(different)} ({da / len(different):.0%}) |")
    print(f"largest same-pair distance {max(d for d in same if d < float('inf')):.3f}; "
          f"smallest different-pair distance {min(different):.3f}")


# -- 3. face size and 4. blur --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One probe or stranger under one condition: the face's detected width and sharpness (None: not detected),
    and its name at the chosen tolerance."""

    stranger: bool
    width_px: int | None
    sharpness: float | None
    right: bool = False
    wrong: bool = False  # a probe given another name, or a stranger given a name


def trial(m: Measurer, index: GalleryIndex, placed, truth: str | None, tol: float, margin: float) -> Trial:
    face = m.frame(*placed)
    if face.detection is None:
        return Trial(truth is None, None, None)
    name = index.match(face.encoding, tol, margin).person
    return Trial(truth is None, face.detection.width_px, face.sharpness, name is not None and name == truth,
                 name not in (None, truth))


def subjects(m: Measurer, data: Dataset):
    """(right person or None for a stranger, photo, its largest face) of each probe and stranger with a face."""
    for truth, path in [*data.probes, *((None, p) for p in data.strangers)]:
        rgb, face = m.photo(path)
        if face.detection is not None:
            yield truth, rgb, face.detection.box


def size_trials(m: Measurer, data: Dataset, index: GalleryIndex, tol: float, margin: float) -> dict[int, list[Trial]]:
    out: dict[int, list[Trial]] = {w: [] for w in FACE_WIDTHS_PX}
    for truth, rgb, box in subjects(m, data):
        for width in FACE_WIDTHS_PX:
            placed = in_frame(rgb, box, width)
            if placed is not None:
                out[width].append(trial(m, index, placed, truth, tol, margin))
    return out


def blur_trials(m: Measurer, data: Dataset, index: GalleryIndex, tol: float, margin: float) -> dict[float, list[Trial]]:
    out: dict[float, list[Trial]] = {s: [] for s in BLUR_SIGMAS}
    for truth, rgb, box in subjects(m, data):
        placed = in_frame(rgb, box, BLUR_FACE_PX)
        if placed is None:
            continue
        frame, expected = placed
        for sigma in BLUR_SIGMAS:
            blurred = cv2.GaussianBlur(frame, (0, 0), sigma) if sigma else frame
            out[sigma].append(trial(m, index, (blurred, expected), truth, tol, margin))
    return out


def counts(trials: list[Trial]) -> tuple[list[Trial], list[Trial], int, int, int]:
    """(probe trials, stranger trials, probes named right, probes given a wrong name, strangers named)."""
    probes, strangers = [t for t in trials if not t.stranger], [t for t in trials if t.stranger]
    return (probes, strangers, sum(t.right for t in probes), sum(t.wrong for t in probes),
            sum(t.wrong for t in strangers))


def print_conditions(label: str, trials: dict) -> None:
    print(f"\n| {label} | probes detected | probes named right | wrong name | strangers named | median box px | "
          "sharpness median (p10-p90) |\n|---|---|---|---|---|---|---|")
    for key, ts in trials.items():
        probes, strangers, right, wrong, named = counts(ts)
        if not probes:
            continue
        found = [t for t in ts if t.width_px is not None]
        detected = sum(t.width_px is not None for t in probes)
        widths, sharp = [t.width_px for t in found], [t.sharpness for t in found]
        width = f"{np.median(widths):.0f}" if widths else "-"
        spread = "-"
        if sharp:
            spread = f"{np.median(sharp):.0f} ({np.percentile(sharp, 10):.0f}-{np.percentile(sharp, 90):.0f})"
        print(f"| {key} | {detected}/{len(probes)} ({detected / len(probes):.0%}) | "
              f"{right}/{len(probes)} ({right / len(probes):.0%}) | {wrong} | {named}/{len(strangers)} | "
              f"{width} | {spread} |")


def print_bins(label: str, trials: list[Trial], value, edges: list[float]) -> float | None:
    """Detected faces binned by ``value(trial)``; returns the lowest edge from which every bin of at least
    GATE_MIN_FACES probes names >= GATE_NAMED of them right with no wrong name and no stranger named."""
    found = [t for t in trials if t.width_px is not None]
    print(f"\n| {label} | probes | named right | wrong name | strangers named |\n|---|---|---|---|---|")
    reliable_from = None
    for lo, hi in zip(edges, edges[1:], strict=False):
        probes, strangers, right, wrong, named = counts([t for t in found if lo <= value(t) < hi])
        if not probes and not strangers:
            continue
        share = right / len(probes) if probes else 1.0
        print(f"| {lo:g}-{hi:g} | {len(probes)} | {right} ({share:.0%}) | {wrong} | {named}/{len(strangers)} |")
        if len(probes) >= GATE_MIN_FACES or wrong or named:
            reliable = share >= GATE_NAMED and not wrong and not named
            if not reliable:
                reliable_from = None
            elif reliable_from is None:
                reliable_from = lo
    return reliable_from


# -- main ----------------------------------------------------------------------------------------------------------


def run(name: str, data: Dataset, tolerance: float | None, margin: float | None) -> str:
    """All sections for one model: the printed report."""
    cv2.setNumThreads(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        started = time.monotonic()
        m = Measurer(name)
        index, rejected = build_index(m, data)
        probes, strangers = identify(m, data, index)
        if margin is None:
            margin = choose_margin(probes, choose_tolerance(probes, strangers, 0.0))
        chosen = choose_tolerance(probes, strangers, margin)
        tol = chosen if tolerance is None else tolerance
        print(f"\n## {name}\n\n### {name}: identification\n")
        print_identification(m, probes, strangers, rejected, index, chosen)
        right, wrong, named = rates(probes, strangers, chosen, margin)
        print(f"\nchosen tolerance {chosen:.3f} (margin {margin:.2f}): probes named {right}/{len(probes)}, "
              f"wrong names {wrong}, strangers named {named}/{len(strangers)}")
        print(f"\n### {name}: verification (pairs.csv)\n")
        print_verification(m, verify(m, data), chosen)
        where = f"tolerance {tol:.3f}, margin {margin:.2f}, frame {FRAME_SIZE[0]}x{FRAME_SIZE[1]}"
        print(f"\n### {name}: face size ({where})")
        sized = size_trials(m, data, index, tol, margin)
        print_conditions("face width px", sized)
        min_face = print_bins("detected box px", [t for ts in sized.values() for t in ts], lambda t: t.width_px,
                              WIDTH_BINS)
        print(f"\n### {name}: blur (face {BLUR_FACE_PX} px wide, {where})")
        blurred = blur_trials(m, data, index, tol, margin)
        print_conditions("sigma px", blurred)
        min_sharp = print_bins("sharpness", [t for ts in blurred.values() for t in ts], lambda t: t.sharpness,
                               SHARPNESS_BINS)
        print(f"\n{name}: chosen tolerance {chosen:.3f}, margin {margin:.2f}, min_face_px {min_face}, "
              f"min_sharpness {min_sharp}; {time.monotonic() - started:.0f} s")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=REPO / "samples" / "faces-dev",
                        metavar="DATASET_DIR")
    parser.add_argument("--model", choices=[*MODEL_NAMES, "both"], default="both")
    parser.add_argument("--gallery", type=Path, default=REPO / "samples" / "gallery",
                        help="gallery folder when DATASET_DIR has no enroll/ (default: samples/gallery)")
    parser.add_argument("--tolerance", type=float, help="tolerance for the size and blur sections (default: chosen)")
    parser.add_argument("--margin", type=float,
                        help="margin for choosing the tolerance and for sections 3-4 (default: chosen)")
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.gallery)
    names = list(MODEL_NAMES) if args.model == "both" else [args.model]
    started = time.monotonic()
    print(f"dataset {shown(args.dataset)}: {len(data.gallery)} gallery photos, {len(data.probes)} probes, "
          f"{len(data.strangers)} strangers, {len(data.pairs)} pairs")
    with ProcessPoolExecutor(max_workers=len(names)) as pool:  # one process per model: 2 cores, 2 models
        for report in pool.map(run, names, [data] * len(names), [args.tolerance] * len(names),
                               [args.margin] * len(names)):
            print(report, end="", flush=True)
    print(f"\ntotal {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
