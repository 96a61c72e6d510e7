"""``facebus faces …``: the gallery from the command line. For now ``identify``; add/remove/move/list/import/forget
follow (issue 3).

    facebus faces identify PATH... [--gallery DIR|s3://bucket/prefix] [--crops DIR]

One JSON line per face found (``file``, ``box`` [top, right, bottom, left] in pixels of the image, ``person`` (null
when unknown), ``category``, ``distance``, ``second_person``, ``second_distance``, ``matched_image``); a file with no
face gives one line with ``person`` and ``box`` null; an unreadable file one line with ``error``. Same detector,
matcher and settings as the recognizer.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from pathlib import Path

from facebus import settings as cfg
from facebus.images import ImageError, crop_jpeg, load_photo
from facebus.settings import RecognizerSettings

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(paths: list[str]) -> Iterator[Path]:
    """The files named, and the images (by suffix) under the folders named, in sorted order."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            yield path


def identify_files(paths: list[str], settings: RecognizerSettings, crops_dir: Path | None = None) -> Iterator[dict]:
    """One result dict per face (see the module docstring), loading the gallery of ``settings`` once."""
    from recognizer import faces
    from recognizer.identify import identify
    from recognizer.service import load_index

    index, _ = load_index(settings)
    for path in image_files(paths):
        try:
            rgb = load_photo(path)
        except (ImageError, OSError) as exc:
            yield {"file": str(path), "box": None, "person": None, "error": str(exc)}
            continue
        boxes = faces.detect(rgb, settings.detect_max_width_px, settings.detect_upsample, settings.detect_profiles)
        if not boxes:
            yield {"file": str(path), "box": None, "person": None, "category": "unknown", "distance": None,
                   "second_person": None, "second_distance": None, "matched_image": None}
            continue
        for i, (box, match) in enumerate(zip(boxes, identify(rgb, boxes, index, settings))):
            result = {
                "file": str(path), "box": list(box), "person": match.person, "category": match.category.value,
                "distance": match.distance, "second_person": match.second_person,
                "second_distance": match.second_distance, "matched_image": match.image_key,
            }
            if crops_dir is not None:
                crop = crops_dir / f"{path.stem}_{i}_{match.person or 'unknown'}.jpg"
                crop.parent.mkdir(parents=True, exist_ok=True)
                crop.write_bytes(crop_jpeg(rgb, box, max_side_px=max(box[2] - box[0], box[1] - box[3]) * 2))
                result["crop"] = str(crop)
            yield result


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    p = actions.add_parser("identify", help="name the faces in image files or folders (one JSON line per face)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image files or folders")
    p.add_argument("--crops", type=Path, help="save each face found to this folder")
    cfg.add_arguments(p, RecognizerSettings)


def main(args: argparse.Namespace) -> int:
    settings = cfg.load(RecognizerSettings, args)
    if args.action == "identify":
        for result in identify_files(args.paths, settings, args.crops):
            print(json.dumps(result), flush=True)
    return 0


