"""``facebus faces …``: the gallery from the command line, on a folder or ``s3://bucket/prefix`` alike
(``--gallery`` or ``FACEBUS_RECOGNIZER_GALLERY``). A running recognizer picks every change up at its next poll.

    facebus faces add NAME IMAGE... [--restricted]       check each photo, then store them all (or none)
    facebus faces remove NAME                            delete every photo of a person
    facebus faces move NAME --to authorised|restricted
    facebus faces list [--json]                          person, category, usable photos, problems
    facebus faces import DIR|ZIP [--restricted]          bulk add; Person.jpg, Person/*.jpg or the gallery layout
    facebus faces identify PATH... [--crops DIR] [--fps N]   name the faces: a JSON line per face (photos) or track (videos)
    facebus faces forget NAME [--purge-history]          remove from the gallery (+ crops and InfluxDB entries)

``identify`` prints, for a photo, one JSON line per face found (``file``, ``box`` [top, right, bottom, left] in pixels
of the image, ``person`` (null when unknown), ``category``, ``reason``, ``distance``, ``second_person``,
``second_distance``, ``matched_image``, ``quality``); a photo with no face gives one line with ``person`` and ``box``
null; an unreadable file one line with ``error``. For a video (``--fps N`` samples N frames per second) it prints one
line per face track (recognizer.identify). Same engine, model and settings as the recognizer.

The other actions print what they changed on stdout and each refused photo, with its reason, on stderr; the exit
status is 1 when anything was refused or failed, 2 for an invalid setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from facebus import settings as cfg
from facebus.events import Category
from facebus.images import ImageError, crop_jpeg, load_photo
from facebus.settings import RecognizerSettings
from recognizer.identify import VIDEO_SUFFIXES

log = logging.getLogger(__name__)

PHOTO_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


def image_files(paths: list[str]) -> Iterator[Path]:
    """The files named, and the images and videos (by suffix) under the folders named, in sorted order."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            suffixes = PHOTO_SUFFIXES + VIDEO_SUFFIXES
            yield from sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in suffixes)
        else:
            yield path


def identify_files(
    paths: list[str], settings: RecognizerSettings, crops_dir: Path | None = None, fps: float | None = None
) -> Iterator[dict]:
    """One result dict per face of each photo and per face track of each video (see the module docstring), loading
    the gallery of ``settings`` once."""
    from recognizer.engine import Engine
    from recognizer.identify import identify_photo, identify_video
    from recognizer.photos import load_index

    index, _ = load_index(settings)
    engine = Engine(settings)
    engine.set_gallery(index)
    for path in image_files(paths):
        if path.suffix.lower() in VIDEO_SUFFIXES:
            try:
                yield from identify_video(engine, path, fps, crops_dir)
            except (ImageError, OSError) as exc:
                yield {"file": str(path), "track_id": None, "person": None, "error": str(exc)}
            continue
        try:
            rgb = load_photo(path)
        except (ImageError, OSError) as exc:
            yield {"file": str(path), "box": None, "person": None, "error": str(exc)}
            continue
        faces = identify_photo(engine, rgb)
        if not faces:
            yield {"file": str(path), "box": None, "person": None, "category": "unknown", "reason": None,
                   "distance": None, "second_person": None, "second_distance": None, "matched_image": None}
        for i, result in enumerate(faces):
            result = {"file": str(path)} | result
            if crops_dir is not None:
                top, right, bottom, left = box = tuple(result["box"])
                crop = crops_dir / f"{path.stem}_{i}_{result['person'] or 'unknown'}.jpg"
                crop.parent.mkdir(parents=True, exist_ok=True)
                crop.write_bytes(crop_jpeg(rgb, box, max_side_px=max(bottom - top, right - left) * 2))
                result["crop"] = str(crop)
            yield result


def _progress(items, desc: str):
    """A tqdm progress bar on stderr when it is a terminal; the items unchanged otherwise."""
    from tqdm import tqdm

    return tqdm(items, desc=desc, unit="photo", file=sys.stderr, disable=None, leave=False)


def _refused(action: str, refused) -> None:
    for item in refused:
        print(f"facebus faces {action}: {item.origin}: {item.reason}", file=sys.stderr)


def cmd_add(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.gallery import open_source
    from recognizer.photos import gallery_encoder

    person = store.person_id(args.name)
    category = Category.restricted if args.restricted else Category.authorised
    photos: list[store.Photo | store.Refused] = []
    for path in args.images:
        try:
            photos.append(store.Photo(path, Path(path).read_bytes()))
        except OSError as exc:
            photos.append(store.Refused(path, f"unreadable: {exc.strerror or exc}"))
    result = store.add(
        open_source(settings.gallery), person, category, _progress(photos, f"checking {person}"),
        gallery_encoder(settings), settings.gallery_max_photo_bytes,
    )
    _refused("add", result.refused)
    if result.refused:
        print(f"facebus faces add: nothing added for {person}: {len(result.refused)} of {len(photos)} photos refused",
              file=sys.stderr)
        return 1
    for key in result.written:
        print(f"added {key}")
    for key in result.present:
        print(f"already there {key}")
    return 0


def cmd_remove(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.gallery import open_source

    for key in store.remove(open_source(settings.gallery), store.person_id(args.name)):
        print(f"removed {key}")
    return 0


def cmd_move(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.gallery import open_source

    person = store.person_id(args.name)
    moves = store.move(open_source(settings.gallery), person, Category(args.to))
    for old, new in moves:
        print(f"moved {old} -> {new}")
    if not moves:
        print(f"{person} is already {args.to}")
    return 0


def cmd_list(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.matching import lookalikes
    from recognizer.photos import open_gallery

    loader = open_gallery(settings)
    loader.refresh(lambda keys: _progress(keys, "checking photos"))
    lookalike = lookalikes(loader.index, settings.thresholds(settings.model).tolerance)
    rows = store.summarize(loader.listed, loader.rejected, lookalike)
    ignored = store.outside_layout(loader.listed)
    if args.json:
        print(json.dumps({"people": [asdict(row) for row in rows], "ignored": ignored}, indent=2))
    else:
        width = max([len(row.person) for row in rows] + [6])
        print(f"{'person':<{width}}  {'category':<12} {'images':>6}  problems")
        for row in rows:
            print(f"{row.person:<{width}}  {row.category:<12} {row.images:>6}  {'; '.join(row.problems)}")
        for key in ignored:
            print(f"ignored {key}: not in the gallery layout (<Category>/<Person>.jpg or <Category>/<Person>/<any>.jpg)")
        print(f"{len(rows)} people, {sum(row.images for row in rows)} usable photos")
    return 1 if any(row.problems for row in rows) else 0


def cmd_import(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.bundle import Limits, read_bundle
    from recognizer.gallery import open_source
    from recognizer.photos import gallery_encoder

    limits = Limits(max_zip_bytes=args.max_zip_bytes, max_entries=args.max_entries,
                    max_photo_bytes=settings.gallery_max_photo_bytes)
    default = Category.restricted if args.restricted else Category.authorised
    names, photos = read_bundle(args.source, limits)
    source, encode = open_source(settings.gallery), gallery_encoder(settings)
    by_person: dict[tuple[Category, str], list[store.Photo]] = {}
    refused: list[store.Refused] = []
    for item in _progress(photos, "reading"):
        place = store.placement(item.origin, default) if isinstance(item, store.Photo) else None
        if isinstance(item, store.Refused):
            refused.append(item)
        elif place is None:
            refused.append(store.Refused(item.origin, "not in the layout: Person.jpg, Person/any.jpg or "
                                                      "Authorised|Restricted/… expected"))
        else:
            by_person.setdefault(place, []).append(item)
    in_both = {person for _, person in by_person if (Category.authorised, person) in by_person
               and (Category.restricted, person) in by_person}
    written = 0
    for (category, person), person_photos in _progress(sorted(by_person.items()), "importing"):
        if person in in_both:
            refused += [store.Refused(p.origin, f"{person} is in both categories in this import") for p in person_photos]
            continue
        try:
            result = store.add(source, person, category, person_photos, encode, settings.gallery_max_photo_bytes,
                               all_or_nothing=False)
        except store.GalleryError as exc:
            refused += [store.Refused(p.origin, str(exc)) for p in person_photos]
            continue
        refused += result.refused
        written += len(result.written)
        for key in result.written:
            print(f"added {key}")
        for key in result.present:
            print(f"already there {key}")
    _refused("import", sorted(refused, key=lambda r: r.origin))
    print(f"imported {written} photos of {len(by_person)} people from {len(names)} files; {len(refused)} refused")
    return 1 if refused else 0


def cmd_forget(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.gallery import open_source
    from recognizer.photos import gallery_cache

    person = store.person_id(args.name)
    source, cache = open_source(settings.gallery), gallery_cache(settings)
    photos = {key: source.read(key) for keys in store.people_keys(source.list_images()).get(person, {}).values()
              for key in keys}
    try:
        for key in store.remove(source, person):
            print(f"removed {key}")
    except store.GalleryError:
        if not args.purge_history:
            raise
        print(f"{person} is not in the gallery")
    cached = sum(cache.discard(data) for data in photos.values())
    print(f"deleted {cached} cached face encodings of {person} from {cache.directory} (this machine only)")
    if args.purge_history:
        from archiver.history import purge_person
        from archiver.influx import make_writer

        archiver_settings = cfg.load(cfg.ArchiverSettings, args)
        writer = make_writer(cfg.load(cfg.InfluxSettings, args))
        try:
            purged = purge_person(person, archiver_settings.crops_dir, archiver_settings.measurement, writer)
        finally:
            writer.close()
        for path in purged.crops:
            print(f"deleted crop {path}")
        print(f"deleted {len(purged.crops)} crops and {purged.entries} InfluxDB entries of {person}")
    return 0


def cmd_identify(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    for result in identify_files(args.paths, settings, args.crops, args.fps):
        print(json.dumps(result), flush=True)
    return 0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")

    p = actions.add_parser("add", help="check photos of one person and add them all (or none) to the gallery")
    p.add_argument("name", metavar="NAME", help="person id or name ('Alice Smith' is stored as Alice_Smith)")
    p.add_argument("images", nargs="+", metavar="IMAGE", help="photo files, each showing exactly this person's face")
    p.add_argument("--restricted", action="store_true", help="add to Restricted/ (default: Authorised/)")
    p.set_defaults(handler=cmd_add)

    p = actions.add_parser("remove", help="delete every photo of a person from the gallery")
    p.add_argument("name", metavar="NAME")
    p.set_defaults(handler=cmd_remove)

    p = actions.add_parser("move", help="move a person to the other category")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--to", required=True, choices=[Category.authorised.value, Category.restricted.value])
    p.set_defaults(handler=cmd_move)

    p = actions.add_parser("list", help="people, categories, usable photos and problems (exit 1 if any problem)")
    p.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    p.set_defaults(handler=cmd_list)

    p = actions.add_parser("import", help="bulk add from a folder or zip (Person.jpg, Person/*.jpg, Authorised/…)")
    p.add_argument("source", type=Path, metavar="DIR|ZIP")
    p.add_argument("--restricted", action="store_true", help="people outside a category folder go to Restricted/")
    p.add_argument("--max-zip-bytes", type=int, default=1024 * 1024 * 1024, help="largest zip accepted (bytes)")
    p.add_argument("--max-entries", type=int, default=10_000, help="most files accepted in a zip or folder")
    p.set_defaults(handler=cmd_import)

    p = actions.add_parser("identify", help="name the faces in photos (a JSON line per face) and videos (per track)")
    p.add_argument("paths", nargs="+", metavar="PATH", help="image or video files, or folders")
    p.add_argument("--crops", type=Path, help="save each face (photos) or each track's best view (videos) here")
    p.add_argument("--fps", type=float, help="videos: sample this many frames per second (default: every frame)")
    p.set_defaults(handler=cmd_identify)

    p = actions.add_parser("forget", help="remove a person from the gallery and, with --purge-history, their history")
    p.add_argument("name", metavar="NAME")
    p.add_argument("--purge-history", action="store_true",
                   help="also delete their face crops and their InfluxDB entries (archiver settings below)")
    cfg.add_arguments(p, cfg.ArchiverSettings)
    cfg.add_arguments(p, cfg.InfluxSettings)
    p.set_defaults(handler=cmd_forget)

    for p in actions.choices.values():
        cfg.add_arguments(p, RecognizerSettings)


def main(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from archiver.influx import InfluxError
    from recognizer.bundle import BundleError
    from recognizer.store import GalleryError

    settings = cfg.load(RecognizerSettings, args)
    try:
        return args.handler(args, settings)
    except (GalleryError, BundleError) as exc:
        print(f"facebus faces {args.action}: {exc}", file=sys.stderr)
    except (OSError, BotoCoreError, ClientError) as exc:
        print(f"facebus faces {args.action}: gallery {settings.gallery}: {exc}", file=sys.stderr)
    except InfluxError as exc:
        print(f"facebus faces {args.action}: InfluxDB: {exc}", file=sys.stderr)
    return 1
