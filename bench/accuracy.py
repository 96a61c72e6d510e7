"""Recognition accuracy per face model, and the thresholds chosen from it (docs/accuracy.md).

    .venv/bin/python bench/accuracy.py [DATASET_DIR] [--model yunet-sface|dlib|both] [--gallery DIR]
                                       [--tolerance T] [--margin M]

DATASET_DIR has the faces-dev layout (default: the repo's samples/faces-dev): probe/<Person>/*, strangers/*,
pairs.csv and, optionally, enroll/<Person>/*. The gallery is DATASET_DIR/enroll when it exists, else --gallery
(default samples/gallery: Authorised|Restricted/<Person>/* or <Person>.jpg); pairs.csv paths enroll/<Person>/<file>
are looked up in the gallery.

Every photo is shrunk to at most 1024 px on its longest side and its largest face, found by the model's own
detector, is encoded, as the recognizer does with gallery photos (dlib: gallery photos HOG only with 10 jitters,
probes HOG + profile cascade with 1 jitter; near-miss refinement is not applied). Sections, per model:

1. identification: gallery vs probes and strangers for a sweep of tolerances and margins;
2. verification: distance of each pairs.csv pair vs threshold;
3. face size: each probe shrunk so its face is W px wide, pasted into a 640x360 grey frame, detected and matched
   there (the face counts as detected when a detection's centre lies in its expected box);
4. blur: each probe in the frame with its face 96 px wide, Gaussian-blurred, with quality.measure sharpness.

Sections 3 and 4 use the tolerance chosen in section 1 (or --tolerance/--margin): the strictest one that names at
least 98% of probes, names no stranger and gives no wrong name, moved up to the middle of the gap between the
right-person distances it accepts and the nearest stranger or wrong person.
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
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

PHOTO_MAX_SIDE_PX = 1024
GALLERY_JITTERS = 10  # recognizer.faces.GALLERY_JITTERS (not imported: that module loads dlib)
SWEEPS = {
    "yunet-sface": [0.90, 0.95, 1.00, 1.025, 1.05, 1.075, 1.10, 1.125, 1.15, 1.20],
    "dlib": [0.45, 0.50, 0.54, 0.56, 0.58, 0.60, 0.62],
}
MARGINS = [0.0, 0.03, 0.05]
NAMED_GOAL = 0.98
FACE_WIDTHS_PX = [16, 20, 24, 32, 40, 48, 64, 80]
FRAME_SIZE = (640, 360)  # width, height
BLUR_FACE_PX = 96
BLUR_SIGMAS = [0, 1, 1.5, 2, 3, 4, 6]
SHARPNESS_BINS = [0, 10, 20, 30, 40, 60, 80, 120, 200, float("inf")]


# -- data ----------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    root: Path
    gallery: list[tuple[str, Category, Path]]  # person, category, photo
    probes: list[tuple[str, Path]]  # right person, photo
    strangers: list[Path]
    pairs: list[tuple[Path, Path, bool]]  # photo a, photo b, same person


def gallery_photos(folder: Path) -> list[tuple[str, Category, Path]]:
    """(person, category, photo) of a gallery folder: Authorised|Restricted/<Person>/* or <Person>.<ext>, or an
    enroll-style <Person>/* (all authorised)."""
    categories = {c.value: c for c in (Category.authorised, Category.restricted)}
    found = []
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        category = categories.get(sub.name.lower())
        if category is None:  # enroll layout: the folder is a person
            found += [(sub.name, Category.authorised, f) for f in sorted(sub.iterdir()) if f.is_file()]
            continue
        for item in sorted(sub.iterdir()):
            files = sorted(f for f in item.iterdir() if f.is_file()) if item.is_dir() else [item]
            found += [(item.stem if item.is_file() else item.name, category, f) for f in files]
    return found


def load_dataset(root: Path, gallery_dir: Path) -> Dataset:
    gallery_dir = root / "enroll" if (root / "enroll").is_dir() else gallery_dir
    gallery = gallery_photos(gallery_dir)
    by_name = {(person, path.name): path for person, _, path in gallery}
    probes = [(p.parent.name, p) for p in sorted(root.glob("probe/*/*")) if p.is_file()]
    strangers = sorted(p for p in root.glob("strangers/*") if p.is_file())

    def resolve(relative: str) -> Path:
        parts = Path(relative).parts
        if parts[0] == "enroll" and len(parts) == 3:
            return by_name.get((parts[1], parts[2]), root / relative)
        return root / relative

    pairs = []
    if (root / "pairs.csv").is_file():
        with open(root / "pairs.csv", newline="") as f:
            pairs = [(resolve(r["path_a"]), resolve(r["path_b"]), r["same"] == "1") for r in csv.DictReader(f)]
    return Dataset(root, gallery, probes, strangers, pairs)


# -- faces ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Face:
    """The face measured in one image: its detection and encoding (both None when no face was found)."""

    detection: Detection | None
    encoding: np.ndarray | None
    sharpness: float | None = None


class Measurer:
    """One model, used the way the recognizer uses it for gallery photos, probe photos and frames."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.probe_model: FaceModel = load_model(name)
        self.gallery_model: FaceModel = (
            load_model(name, profiles=False, num_jitters=GALLERY_JITTERS) if name == "dlib" else self.probe_model
        )
        self._photos: dict[tuple[Path, bool], tuple[np.ndarray, Face]] = {}

    def photo(self, path: Path, gallery: bool = False) -> tuple[np.ndarray, Face]:
        """The photo (shrunk to at most 1024 px) and its largest face; cached."""
        key = (path, gallery)
        if key not in self._photos:
            rgb = load_photo(path)
            rgb = scale_image(rgb, min(1.0, PHOTO_MAX_SIDE_PX / max(rgb.shape[:2])))
            model = self.gallery_model if gallery else self.probe_model
            found = model.detect(rgb)[:1]
            face = Face(found[0], model.encode(rgb, found)[0]) if found else Face(None, None)
            self._photos[key] = (rgb, face)
        return self._photos[key]


    def frame(self, frame: np.ndarray, expected: tuple[int, int, int, int]) -> Face:
        """The largest detection of ``frame`` whose centre lies in the ``expected`` box, encoded in the frame."""
        top, right, bottom, left = expected
        for d in self.probe_model.detect(frame):
            cy, cx = (d.box[0] + d.box[2]) / 2, (d.box[1] + d.box[3]) / 2
            if top <= cy <= bottom and left <= cx <= right:
                (encoding,) = self.probe_model.encode(frame, [d])
                return Face(d, encoding, quality.measure(frame, d).sharpness)
        return Face(None, None)


def in_frame(rgb: np.ndarray, box: tuple[int, int, int, int], face_px: int):
    """``rgb`` shrunk so the face at ``box`` is ``face_px`` wide, cropped around the face to at most the frame size
    and pasted in the middle of a grey frame: (frame, expected face box in it), or None when that would enlarge."""
    top, right, bottom, left = box
    scale = face_px / (right - left)
    if scale > 1:
        return None
    small = scale_image(rgb, scale)
    fy, fx = small.shape[0] / rgb.shape[0], small.shape[1] / rgb.shape[1]
    top, bottom, left, right = top * fy, bottom * fy, left * fx, right * fx
    width, height = FRAME_SIZE
    x0 = int(np.clip((left + right) / 2 - width / 2, 0, max(0, small.shape[1] - width)))
    y0 = int(np.clip((top + bottom) / 2 - height / 2, 0, max(0, small.shape[0] - height)))
    crop = small[y0:y0 + height, x0:x0 + width]
    frame = np.full((height, width, 3), 128, np.uint8)
    ox, oy = (width - crop.shape[1]) // 2, (height - crop.shape[0]) // 2
    frame[oy:oy + crop.shape[0], ox:ox + crop.shape[1]] = crop
    dx, dy = ox - x0, oy - y0
    return frame, (round(top + dy), round(right + dx), round(bottom + dy), round(left + dx))


# -- 1. identification ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Answer:
    """A probe's nearest gallery person, distance to them and to the nearest other person (inf: no face)."""

    path: Path
    truth: str | None  # None for a stranger
    nearest: str | None
    distance: float
    other: float

    def named(self, tolerance: float, margin: float) -> str | None:
        return self.nearest if self.distance <= tolerance and self.other - self.distance >= margin else None


def build_index(m: Measurer, data: Dataset) -> tuple[GalleryIndex, list[Path]]:
    """The gallery index, and the gallery photos where no face was found (left out)."""
    entries, rejected = [], []
    for person, category, path in data.gallery:
        try:
            face = m.photo(path, gallery=True)[1]
        except ImageError:
            face = Face(None, None)
        if face.encoding is None:
            rejected.append(path)
        else:
            entries.append(GalleryEntry(person, category, str(path), face.encoding))
    return GalleryIndex(entries), rejected


def answer(index: GalleryIndex, path: Path, truth: str | None, encoding: np.ndarray | None) -> Answer:
    if encoding is None:
        return Answer(path, truth, None, float("inf"), float("inf"))
    match = index.match(encoding, float("inf"))
    return Answer(path, truth, match.nearest_person, match.distance, match.second_distance)


def identify(m: Measurer, data: Dataset, index: GalleryIndex) -> tuple[list[Answer], list[Answer]]:
    probes = [answer(index, p, person, m.photo(p)[1].encoding) for person, p in data.probes]
    strangers = [answer(index, p, None, m.photo(p)[1].encoding) for p in data.strangers]
    return probes, strangers


def rates(probes: list[Answer], strangers: list[Answer], tolerance: float, margin: float) -> tuple[int, int, int]:
    """(probes rightly named, probes wrongly named, strangers named)."""
    right = sum(1 for a in probes if a.named(tolerance, margin) == a.truth)
    wrong = sum(1 for a in probes if a.named(tolerance, margin) not in (None, a.truth))
    return right, wrong, sum(1 for a in strangers if a.named(tolerance, margin))


def impostor_distances(probes: list[Answer], strangers: list[Answer]) -> list[tuple[float, float, Answer]]:
    """(distance, margin, answer) of every face that must not be named: strangers, and probes whose nearest gallery
    person is the wrong one."""
    bad = [a for a in strangers if a.nearest] + [a for a in probes if a.nearest not in (None, a.truth)]
    return sorted((a.distance, a.other - a.distance, a) for a in bad)


def choose_tolerance(probes: list[Answer], strangers: list[Answer], margin: float) -> float:
    """The strictest tolerance (0.005 steps) naming >= 98% of probes with no wrong name and no stranger named,
    moved up to the middle of the gap up to the nearest impostor (stranger or wrong person) it must keep out."""
    right = sorted(a.distance for a in probes if a.nearest == a.truth and a.other - a.distance >= margin)
    needed = int(np.ceil(NAMED_GOAL * len(probes)))
    if len(right) < needed:
        return right[-1] if right else 0.0
    lowest = right[needed - 1]
    impostors = [d for d, mg, _ in impostor_distances(probes, strangers) if mg >= margin and d > lowest]
    ceiling = impostors[0] if impostors else lowest + 0.1
    accepted = [d for d in right if d < ceiling]
    return float(np.floor(200 * (accepted[-1] + ceiling) / 2) / 200)


def print_identification(m: Measurer, data: Dataset, probes: list[Answer], strangers: list[Answer],
                         rejected: list[Path], index: GalleryIndex) -> None:
    rel = lambda p: str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)  # noqa: E731
    print(f"gallery: {len(index)} photos of {len(index.people)} people; probes: {len(probes)}; "
          f"strangers: {len(strangers)}")
    print(f"gallery photos without a face (left out): {[rel(p) for p in rejected]}")
    print(f"probes/strangers without a face: {[rel(a.path) for a in probes + strangers if a.nearest is None]}")
    rank1 = sum(1 for a in probes if a.nearest == a.truth)
    print(f"rank-1 right ignoring the tolerance: {rank1}/{len(probes)}")
    print("\n| tolerance | margin | probes named | probes wrong name | strangers named |\n|---|---|---|---|---|")
    for tol in SWEEPS[m.name]:
        for margin in MARGINS:
            right, wrong, named = rates(probes, strangers, tol, margin)
            print(f"| {tol:.3f} | {margin:.2f} | {right}/{len(probes)} ({right / len(probes):.0%}) | {wrong} | "
                  f"{named}/{len(strangers)} |")
    right = sorted((a.distance, a.other - a.distance, a) for a in probes if a.nearest == a.truth)
    print("\nright-person probes, 5 largest distances (distance, margin to the next person, photo):")
    for d, mg, a in right[-5:]:
        print(f"  {d:.3f}  {mg:.3f}  {rel(a.path)}")
    print("right-person probes, 5 smallest margins: "
          + ", ".join(f"{mg:.3f} ({a.path.name})" for _, mg, a in sorted(right, key=lambda r: r[1])[:5]))
    print("impostors (strangers, wrong-person nearest), 6 smallest distances (distance, margin, nearest, photo):")
    for d, mg, a in impostor_distances(probes, strangers)[:6]:
        print(f"  {d:.3f}  {mg:.3f}  {a.nearest}  {rel(a.path)}")
    print("probes: distance to the nearest wrong gallery person, 3 smallest: "
          + ", ".join(f"{a.other:.3f} ({a.path.name})" for a in sorted(probes, key=lambda a: a.other)[:3]))


# -- 2. verification -----------------------------------------------------------------------------------------------


def verify(m: Measurer, data: Dataset) -> list[tuple[float, bool]]:
    """(distance, same person) of each pair; inf when either photo shows no face."""
    enrolled = {path for _, _, path in data.gallery}
    encoding = lambda p: m.photo(p, gallery=p in enrolled)[1].encoding  # noqa: E731
    out = []
    for a, b, same in data.pairs:
        ea, eb = encoding(a), encoding(b)
        out.append((float(np.linalg.norm(ea - eb)) if ea is not None and eb is not None else float("inf"), same))
    return out


def print_verification(m: Measurer, pairs: list[tuple[float, bool]], chosen: float) -> None:
    same = [d for d, s in pairs if s]
    different = [d for d, s in pairs if not s]
    if not pairs:
        print("no pairs.csv")
        return
    print(f"pairs: {len(same)} same, {len(different)} different; without a face: "
          f"{sum(1 for d, _ in pairs if d == float('inf'))}")
    print("\n| threshold | same-pair accepted | different-pair accepted |\n|---|---|---|")
    for t in sorted(set(SWEEPS[m.name]) | {chosen}):
        sa, da = sum(d <= t for d in same), sum(d <= t for d in different)
        star = "**" if t == chosen else ""
        print(f"| {star}{t:.3f}{star} | {sa}/{len(same)} ({sa / len(same):.0%}) | "
              f"{da}/{len(different)} ({da / len(different):.1%}) |")
    finite = [d for d in same if d != float("inf")]
    print(f"largest same-pair distance {max(finite):.3f}; smallest different-pair distance {min(different):.3f}")


# -- 3. face size and 4. blur --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Trial:
    """One probe under one condition: found (target face detected), answer at the chosen tolerance, sharpness."""

    found: bool
    right: bool
    wrong: bool
    width_px: int | None
    sharpness: float | None


def trial(m: Measurer, index: GalleryIndex, frame: np.ndarray, box, truth: str, tol: float, margin: float) -> Trial:
    face = m.frame(frame, box)
    if face.detection is None:
        return Trial(False, False, False, None, None)
    name = index.match(face.encoding, tol, margin).person
    return Trial(True, name == truth, name not in (None, truth), face.detection.width_px, face.sharpness)


def size_trials(m: Measurer, data: Dataset, index: GalleryIndex, tol: float, margin: float) -> dict[int, list[Trial]]:
    out: dict[int, list[Trial]] = {w: [] for w in FACE_WIDTHS_PX}
    for person, path in data.probes:
        rgb, face = m.photo(path)
        if face.detection is None:
            continue
        for width in FACE_WIDTHS_PX:
            placed = in_frame(rgb, face.detection.box, width)
            if placed is not None:
                out[width].append(trial(m, index, *placed, person, tol, margin))
    return out


def blur_trials(m: Measurer, data: Dataset, index: GalleryIndex, tol: float, margin: float) -> dict[float, list[Trial]]:
    out: dict[float, list[Trial]] = {s: [] for s in BLUR_SIGMAS}
    for person, path in data.probes:
        rgb, face = m.photo(path)
        placed = in_frame(rgb, face.detection.box, BLUR_FACE_PX) if face.detection is not None else None
        if placed is None:
            continue
        frame, box = placed
        for sigma in BLUR_SIGMAS:
            blurred = cv2.GaussianBlur(frame, (0, 0), sigma) if sigma else frame
            out[sigma].append(trial(m, index, blurred, box, person, tol, margin))
    return out


def summary(trials: list[Trial]) -> str:
    n = len(trials)
    found = sum(t.found for t in trials)
    right, wrong = sum(t.right for t in trials), sum(t.wrong for t in trials)
    sharp = [t.sharpness for t in trials if t.sharpness is not None]
    widths = [t.width_px for t in trials if t.width_px is not None]
    fmt = lambda xs: f"{np.median(xs):.0f}" if xs else "-"  # noqa: E731
    return (f"{n} | {found}/{n} ({found / n:.0%}) | {right}/{n} ({right / n:.0%}) | {wrong} | {fmt(widths)} | "
            f"{fmt(sharp)} ({np.percentile(sharp, 10):.0f}-{np.percentile(sharp, 90):.0f})" if sharp else
            f"{n} | {found}/{n} | {right}/{n} | {wrong} | - | -")


def print_trials(label: str, trials: dict) -> None:
    print(f"\n| {label} | probes | target face detected | named right | wrong name | median box width px | "
          "sharpness median (p10-p90) |\n|---|---|---|---|---|---|---|")
    for key, ts in trials.items():
        if ts:
            print(f"| {key} | {summary(ts)} |")


def print_by_sharpness(trials: list[Trial]) -> None:
    """Detected faces of the blur section pooled and binned by their measured sharpness."""
    found = [t for t in trials if t.found]
    print("\n| sharpness | faces | named right | wrong name |\n|---|---|---|---|")
    for lo, hi in zip(SHARPNESS_BINS, SHARPNESS_BINS[1:]):
        ts = [t for t in found if lo <= t.sharpness < hi]
        if ts:
            right, wrong = sum(t.right for t in ts), sum(t.wrong for t in ts)
            print(f"| {lo:.0f}-{hi:.0f} | {len(ts)} | {right}/{len(ts)} ({right / len(ts):.0%}) | {wrong} |")


# -- main ----------------------------------------------------------------------------------------------------------


def run(name: str, data: Dataset, tolerance: float | None, margin: float | None) -> None:
    started = time.monotonic()
    print(f"\n## {name}\n")
    m = Measurer(name)
    index, rejected = build_index(m, data)
    probes, strangers = identify(m, data, index)
    print_identification(m, data, probes, strangers, rejected, index)
    margin = MARGINS[-1] if margin is None else margin
    tol = choose_tolerance(probes, strangers, margin) if tolerance is None else tolerance
    right, wrong, named = rates(probes, strangers, tol, margin)
    print(f"\nchosen tolerance {tol:.3f} at margin {margin:.2f}: probes named {right}/{len(probes)}, wrong {wrong}, "
          f"strangers named {named}/{len(strangers)}")
    print(f"\n### {name}: verification (pairs.csv)\n")
    print_verification(m, verify(m, data), tol)
    print(f"\n### {name}: face size (frame {FRAME_SIZE[0]}x{FRAME_SIZE[1]}, tolerance {tol:.3f}, margin {margin:.2f})")
    print_trials("face width px", size_trials(m, data, index, tol, margin))
    print(f"\n### {name}: blur (face {BLUR_FACE_PX} px wide in the frame, tolerance {tol:.3f}, margin {margin:.2f})")
    blurred = blur_trials(m, data, index, tol, margin)
    print_trials("sigma px", blurred)
    print_by_sharpness([t for ts in blurred.values() for t in ts])
    print(f"\n{name}: {time.monotonic() - started:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", type=Path, default=REPO / "samples" / "faces-dev")
    parser.add_argument("--model", choices=[*MODEL_NAMES, "both"], default="both")
    parser.add_argument("--gallery", type=Path, default=REPO / "samples" / "gallery",
                        help="gallery folder when DATASET_DIR has no enroll/")
    parser.add_argument("--tolerance", type=float, help="tolerance for the size and blur sections (default: chosen)")
    parser.add_argument("--margin", type=float, help=f"margin (default {MARGINS[-1]})")
    args = parser.parse_args()
    data = load_dataset(args.dataset, args.gallery)
    cv2.setNumThreads(1)
    for name in MODEL_NAMES if args.model == "both" else [args.model]:
        run(name, data, args.tolerance, args.margin)


if __name__ == "__main__":
    main()
