"""Recognition accuracy on a faces-dev style dataset: identification of probe/ and rejection of strangers/.

    python bench/accuracy.py [DATASET_DIR] [--gallery-jitters N] [--probe-jitters N]

Gallery = enroll/<Person>/*; probes = probe/<Person>/* (the right answer is Person); strangers = strangers/* (the
right answer is unknown). For each tolerance it prints: rank-1 identification rate of probes (nearest gallery person
is right and within tolerance), wrong-person accepts among probes, and the stranger false-accept rate.
Results are committed in docs/accuracy.md.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from facebus.events import Category  # noqa: E402
from facebus.images import ImageError, load_photo  # noqa: E402
from facebus.settings import RecognizerSettings  # noqa: E402
from recognizer import faces  # noqa: E402
from recognizer.identify import identify  # noqa: E402
from recognizer.matching import GalleryEntry, GalleryIndex  # noqa: E402

TOLERANCES = [0.45, 0.50, 0.54, 0.56, 0.58, 0.60, 0.62]
MARGINS = [0.0, 0.03, 0.05]


def nearest(index: GalleryIndex, paths: list[Path], settings: RecognizerSettings) -> list[tuple[Path, str | None, float, float]]:
    """(path, nearest person, distance, margin to the nearest other person) of the largest face of each image, found
    and matched exactly as the recognizer does (detect + identify, near misses refined); person None: no face."""
    out = []
    for path in paths:
        rgb = load_photo(path)
        boxes = faces.detect(rgb, settings.detect_max_width_px, settings.detect_upsample, settings.detect_profiles)
        if not boxes:
            out.append((path, None, float("inf"), 0.0))
            continue
        (m,) = identify(rgb, boxes[:1], index, settings)
        out.append((path, m.nearest_person, m.distance, m.second_distance - m.distance))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset", nargs="?", default="../shared/datasets/faces-dev")
    parser.add_argument("--gallery-jitters", type=int, default=faces.GALLERY_JITTERS)
    parser.add_argument("--refine-jitters", type=int, default=RecognizerSettings().refine_jitters)
    args = parser.parse_args()
    root = Path(args.dataset)

    probe_paths, stranger_paths = sorted(root.glob("probe/*/*")), sorted(root.glob("strangers/*"))
    entries = []
    for path in sorted(root.glob("enroll/*/*")):
        try:
            encoding = faces.encode_photo(path.read_bytes(), num_jitters=args.gallery_jitters)
        except ImageError as exc:
            print(f"enroll rejected {path}: {exc}")
            continue
        entries.append(GalleryEntry(path.parent.name, Category.authorised, str(path), encoding))
    index = GalleryIndex(entries)
    # The refinement depends on the tolerance: measure each tolerance with its own settings (margin 0 here; the
    # margin rule is applied below on the recorded margins).
    settings = {t: RecognizerSettings(tolerance=t, margin=0.0, refine_jitters=args.refine_jitters) for t in TOLERANCES}
    results = {t: (nearest(index, probe_paths, s), nearest(index, stranger_paths, s)) for t, s in settings.items()}
    probes, strangers = results[RecognizerSettings().tolerance]
    no_face = [p for p, person, _, _ in probes + strangers if person is None]

    print(f"gallery: {len(index)} images of {len(index.people)} people (jitters {args.gallery_jitters}); "
          f"probes: {len(probes)}; strangers: {len(strangers)}; near misses refined with {args.refine_jitters} jitters")
    print(f"no face found in: {[str(p.relative_to(root)) for p in no_face]}")
    print("| tolerance | margin | probe rank-1 identified | probe wrong person accepted | stranger false accepts |")
    print("|---|---|---|---|---|")
    for tol in TOLERANCES:
        probes, strangers = results[tol]
        for margin in MARGINS:
            ok = lambda d, m: d <= tol and m >= margin  # noqa: E731
            right = sum(1 for p, person, d, m in probes if person == p.parent.name and ok(d, m))
            wrong = sum(1 for p, person, d, m in probes if person not in (None, p.parent.name) and ok(d, m))
            false_accepts = sum(1 for _, person, d, m in strangers if person is not None and ok(d, m))
            print(f"| {tol:.2f} | {margin:.2f} | {right}/{len(probes)} ({right / len(probes):.0%}) | {wrong}/{len(probes)} | "
                  f"{false_accepts}/{len(strangers)} ({false_accepts / len(strangers):.0%}) |")
    probes, strangers = results[RecognizerSettings().tolerance]
    print(f"at tolerance {RecognizerSettings().tolerance}: stranger (distance, margin): {sorted((round(d, 3), round(m, 3)) for _, p, d, m in strangers if p)}")
    right = sorted((round(d, 3), round(m, 3)) for p, person, d, m in probes if person == p.parent.name)
    print(f"right-person probes, 8 largest distances (distance, margin): {right[-8:]}")
    print(f"right-person probes, 8 smallest margins: {sorted(right, key=lambda x: x[1])[:8]}")
    wrong = sorted((str(p.relative_to(root)), person, round(d, 3)) for p, person, d, m in probes if person not in (None, p.parent.name))
    print(f"probes nearest to the wrong person: {wrong}")

if __name__ == "__main__":
    main()
