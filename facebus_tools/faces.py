"""``facebus faces …``: the gallery from the command line, on a folder or ``s3://bucket/prefix`` alike
(``--gallery`` or ``FACEBUS_RECOGNIZER_GALLERY``). A running recognizer picks every change up at its next poll.

    facebus faces add NAME IMAGE... [--restricted]       check each photo, then store them all (or none)
    facebus faces remove NAME                            delete every photo of a person
    facebus faces move NAME --to authorised|restricted
    facebus faces list [--json]                          person, category, usable photos, problems
    facebus faces import DIR|ZIP [--restricted]          bulk add; Person.jpg, Person/*.jpg or the gallery layout
    facebus faces identify PATH... [--crops DIR] [--fps N]
                                                         name the faces: a JSON line per face (photos) or track (videos)
    facebus faces forget NAME [--purge-history]          remove from the gallery (+ crops and InfluxDB entries)
    facebus faces visitors [--json]                      the visitor store: recurring strangers (docs/visitors-cli.md)
    facebus faces promote VISITOR_ID NAME [--restricted] a visitor's crops become NAME's gallery photos
    facebus faces forget-visitor VISITOR_ID              delete a visitor, their crops and their InfluxDB entries
    facebus faces search PHOTO [--since 30d] [--tolerance X] [--limit N]
                                                         seen before? archived entries whose crop shows this face

``identify`` prints, for a photo, one JSON line per face found (``file``, ``box`` [top, right, bottom, left] in pixels
of the image, ``person`` (null when unknown), ``category``, ``reason``, ``distance``, ``second_person``,
``second_distance``, ``matched_image``, ``quality``); a photo with no face gives one line with ``person`` and ``box``
null; an unreadable file one line with ``error``. For a video (``--fps N`` samples N frames per second) it prints one
line per face track (recognizer.identify). Same engine, model and settings as the recognizer.

``visitors --json`` and ``search`` print JSON lines (see their functions); ``search`` adds a summary line on stderr.

The other actions print what they changed on stdout and each refused photo, with its reason, on stderr; the exit
status is 1 when anything was refused or failed (``promote``: when no crop at all could be promoted), 2 for an
invalid setting.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

from facebus import settings as cfg
from facebus.events import VISITOR_ID_PATTERN, Category, format_time, utc_now
from facebus.images import IMAGE_SUFFIXES, VIDEO_SUFFIXES, ImageError, crop_jpeg, load_photo
from facebus.settings import RecognizerSettings
from recognizer.gallery import Rejected

log = logging.getLogger(__name__)


def image_files(paths: list[str]) -> Iterator[Path]:
    """The files named, and the images and videos (by suffix) under the folders named, in sorted order."""
    for name in paths:
        path = Path(name)
        if path.is_dir():
            suffixes = IMAGE_SUFFIXES + VIDEO_SUFFIXES
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


def _print_written(result) -> None:
    """One line per photo a gallery add wrote, or found already there."""
    for key in result.written:
        print(f"added {key}")
    for key in result.present:
        print(f"already there {key}")


def cmd_add(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.gallery import open_source
    from recognizer.photos import gallery_encoder

    person = store.person_id(args.name)
    category = Category.restricted if args.restricted else Category.authorised
    photos: list[store.Photo | Rejected] = []
    for path in args.images:
        try:
            photos.append(store.Photo(path, Path(path).read_bytes()))
        except OSError as exc:
            photos.append(Rejected(path, f"unreadable: {exc.strerror or exc}"))
    result = store.add(
        open_source(settings.gallery), person, category, _progress(photos, f"checking {person}"),
        gallery_encoder(settings), settings.gallery_max_photo_bytes,
    )
    _refused("add", result.refused)
    if result.refused:
        print(f"facebus faces add: nothing added for {person}: {len(result.refused)} of {len(photos)} photos refused",
              file=sys.stderr)
        return 1
    _print_written(result)
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
            print(f"ignored {key}: not in the gallery layout (<Category>/<Person>.jpg or "
                  "<Category>/<Person>/<any>.jpg)")
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
    refused: list[Rejected] = []
    for item in _progress(photos, "reading"):
        place = store.placement(item.origin, default) if isinstance(item, store.Photo) else None
        if isinstance(item, Rejected):
            refused.append(item)
        elif place is None:
            refused.append(Rejected(item.origin, "not in the layout: Person.jpg, Person/any.jpg or "
                                                      "Authorised|Restricted/… expected"))
        else:
            by_person.setdefault(place, []).append(item)
    in_both = {person for _, person in by_person if (Category.authorised, person) in by_person
               and (Category.restricted, person) in by_person}
    written = 0
    for (category, person), person_photos in _progress(sorted(by_person.items()), "importing"):
        if person in in_both:
            refused += [Rejected(p.origin, f"{person} is in both categories in this import") for p in person_photos]
            continue
        try:
            result = store.add(source, person, category, person_photos, encode, settings.gallery_max_photo_bytes,
                               all_or_nothing=False)
        except store.GalleryError as exc:
            refused += [Rejected(p.origin, str(exc)) for p in person_photos]
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


# -- visitors ------------------------------------------------------------------------------------------------------


def visitor_id(text: str) -> str:
    """A visitor id as typed (``v-`` and 6-16 lowercase hex digits, e.g. ``v-7f3a9c``); argparse type."""
    if not re.fullmatch(VISITOR_ID_PATTERN, text.strip()):
        raise argparse.ArgumentTypeError(f"{text!r} is not a visitor id (v- and 6-16 hex digits, e.g. v-7f3a9c)")
    return text.strip()


def store_location(source, key: str) -> str:
    """Where a store key is, for a person to open it: the file's path for a folder store, ``s3://bucket/key`` (the
    object's full key) for S3."""
    from recognizer.gallery import FolderSource, S3Source

    if isinstance(source, FolderSource):
        return str(source.root / key)
    if isinstance(source, S3Source):
        return f"s3://{source.bucket}/{source.prefix}{key}"
    return key


def visitor_crop_keys(visitors, vid: str, listing) -> list[str]:
    """The JPEG crops of visitor ``vid`` in the store listing (``Visitors/<id>/*.jpg``), by key: oldest first, the
    store names them by capture time."""
    folder = visitors.key(vid, "")
    return sorted(k for k in listing if k.startswith(folder) and k.lower().endswith((".jpg", ".jpeg")))


def visitor_summary(visitors, record, listing) -> dict:
    """One line of ``facebus faces visitors``: id, visits, first and last seen, cameras, the crops kept, the best
    crop's location (the first crop the record lists that is in the store: each crop is the best view of its
    sighting as the recognizer chose it) and how many ids were merged into this one (aliases)."""
    present = set(visitor_crop_keys(visitors, record.visitor_id, listing))
    crops = [k for k in record.crops if k in present] + sorted(present - set(record.crops))
    return {
        "visitor_id": record.visitor_id, "visits": record.visits, "first_seen": format_time(record.first_seen),
        "last_seen": format_time(record.last_seen), "cameras": record.cameras, "crops": len(crops),
        "best_crop": store_location(visitors.source, crops[0]) if crops else None, "aliases": len(record.aliases),
        "model": record.model,
    }


def open_visitors(args: argparse.Namespace, settings: RecognizerSettings):
    from recognizer.visitors import VisitorStore

    return VisitorStore.open(cfg.load(cfg.VisitorSettings, args), settings.gallery)


def store_listing(visitors) -> dict[str, str]:
    """The store's keys; a folder that does not exist yet is an empty store (as for the recognizer). Raises when
    the source cannot be listed (S3 down)."""
    try:
        return visitors.source.list_images()
    except FileNotFoundError:
        return {}


def cmd_visitors(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    visitors = open_visitors(args, settings)
    listing = store_listing(visitors)
    records = sorted(visitors.load(), key=lambda r: (r.last_seen, r.visitor_id), reverse=True)
    rows = [visitor_summary(visitors, record, listing) for record in records]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"{'visitor':<10} {'visits':>6}  {'first seen':<24}  {'last seen':<24}  {'cameras':<20} {'aliases':>7}  "
          "best crop")
    for row in rows:
        print(f"{row['visitor_id']:<10} {row['visits']:>6}  {row['first_seen']:<24}  {row['last_seen']:<24}  "
              f"{','.join(row['cameras']):<20} {row['aliases']:>7}  {row['best_crop'] or '-'}")
    print(f"{len(rows)} visitors in {store_location(visitors.source, visitors.prefix)}")
    return 0


def cmd_promote(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from recognizer import store
    from recognizer.gallery import open_source
    from recognizer.photos import gallery_encoder

    person = store.person_id(args.name)
    category = Category.restricted if args.restricted else Category.authorised
    visitors = open_visitors(args, settings)
    vid = args.visitor_id
    keys = visitor_crop_keys(visitors, vid, store_listing(visitors))
    if not keys:
        where = store_location(visitors.source, visitors.prefix)
        raise store.GalleryError(f"{vid} has no crop in the visitor store {where} (not a visitor, already promoted "
                                 "or forgotten, or kept without crops: FACEBUS_VISITORS_MAX_CROPS=0)")
    photos = [store.Photo(key, visitors.source.read(key)) for key in keys]
    result = store.add(
        open_source(settings.gallery), person, category, _progress(photos, f"checking {vid}"),
        gallery_encoder(settings), settings.gallery_max_photo_bytes, all_or_nothing=False,
    )
    _refused("promote", result.refused)
    if not result.written and not result.present:
        print(f"facebus faces promote: nothing promoted: all {len(photos)} crops of {vid} were refused; {vid} stays "
              "in the visitor store", file=sys.stderr)
        if any(r.reason.startswith("face too small") for r in result.refused):
            print(f"facebus faces promote: a visitor's crops show the face as the camera saw it, never enlarged: at "
                  f"most {settings.crop_max_px} px (FACEBUS_RECOGNIZER_CROP_MAX_PX) including a 25% margin on each "
                  f"side, so a face at most about {round(settings.crop_max_px / 1.5)} px wide, and only as large as "
                  f"it was in the frame; a gallery photo needs a face at least {settings.gallery_min_face_px} px "
                  f"wide (FACEBUS_RECOGNIZER_GALLERY_MIN_FACE_PX), which the recognizer checks again when it loads "
                  f"the gallery. This visitor was seen too small for that: add a real photo of them instead, "
                  f"`facebus faces add {person} PHOTO.jpg`, then `facebus faces forget-visitor {vid}`",
                  file=sys.stderr)
        return 1
    _print_written(result)
    for key in visitors.delete(vid):
        print(f"deleted {key}")
    print(f"promoted {vid} to {person} ({category.value}): {len(result.written) + len(result.present)} of "
          f"{len(photos)} crops in the gallery; a running recognizer names them at its next gallery poll")
    return 0


def cmd_forget_visitor(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from archiver.history import purge_visitor
    from archiver.influx import make_writer
    from recognizer.visitors import RECORD_FILE, VisitorRecord

    visitors = open_visitors(args, settings)
    vid = args.visitor_id
    listing = store_listing(visitors)
    record = None
    if visitors.key(vid, RECORD_FILE) in listing:
        try:
            record = VisitorRecord.from_json(visitors.source.read(visitors.key(vid, RECORD_FILE)))
        except (ValueError, KeyError, TypeError) as exc:
            print(f"facebus faces forget-visitor: {vid}'s record is unreadable ({exc}): deleting it with the rest",
                  file=sys.stderr)
    ids = [vid, *(record.aliases if record else [])]
    if record is None and not any(k.startswith(visitors.key(vid, "")) for k in listing):
        merged_into = [r.visitor_id for r in visitors.load() if vid in r.aliases]
        if merged_into:
            print(f"{vid} was merged into {merged_into[0]}: its own entries are deleted below; forget "
                  f"{merged_into[0]} to forget the visitor (`facebus faces forget-visitor {merged_into[0]}`)")
        else:
            print(f"{vid} is not in the visitor store {store_location(visitors.source, visitors.prefix)}")
    archiver_settings = cfg.load(cfg.ArchiverSettings, args)
    writer = make_writer(cfg.load(cfg.InfluxSettings, args))
    try:  # the history first: when InfluxDB fails the store still lists the aliases for the next try
        purged = purge_visitor(ids, archiver_settings.crops_dir, archiver_settings.measurement, writer)
    finally:
        writer.close()
    for path in purged.crops:
        print(f"deleted crop {path}")
    deleted = [key for v in ids for key in visitors.delete(v)]
    for key in deleted:
        print(f"deleted {key}")
    aliases = f" (and the ids merged into it: {', '.join(ids[1:])})" if len(ids) > 1 else ""
    print(f"deleted {len(deleted)} store files, {len(purged.crops)} crops and {purged.entries} InfluxDB entries of "
          f"{vid}{aliases}")
    return 0


def cmd_search(args: argparse.Namespace, settings: RecognizerSettings) -> int:
    from archiver.influx import make_writer
    from facebus_tools import search
    from recognizer.photos import photo_model

    try:
        since = search.parse_since(args.since, utc_now())
    except ValueError as exc:
        print(f"facebus faces search: --since: {exc}", file=sys.stderr)
        return 2
    tolerance = settings.thresholds(settings.model).tolerance
    model = photo_model(settings)
    try:
        probe = search.probe_encoding(model, args.photo)
    except (ImageError, OSError) as exc:
        print(f"facebus faces search: {args.photo}: {getattr(exc, 'strerror', None) or exc}", file=sys.stderr)
        return 1
    archiver_settings = cfg.load(cfg.ArchiverSettings, args)
    writer = make_writer(cfg.load(cfg.InfluxSettings, args))
    try:
        found, tally = search.search(model, probe, writer, archiver_settings.measurement,
                                     archiver_settings.crops_dir, since, tolerance,
                                     lambda entries: _progress(entries, "encoding crops"))
    finally:
        writer.close()
    shown = found if args.limit is None else found[: args.limit]
    for item in shown:
        print(json.dumps(item.to_dict()), flush=True)
    print(f"facebus faces search: {tally.entries} entries since {format_time(since)}, {tally.encoded} crops encoded, "
          f"{tally.skipped} skipped (no face found), {tally.missing} without a crop file in "
          f"{archiver_settings.crops_dir}; {len(found)} within tolerance {tolerance:g}"
          + (f", {len(shown)} shown" if len(shown) < len(found) else ""), file=sys.stderr)
    return 0


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


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

    p = actions.add_parser("visitors", help="the visitor store: one line per recurring stranger (id, visits, "
                                            "first/last seen, cameras, aliases, best crop)")
    p.add_argument("--json", action="store_true", help="JSON lines instead of a table")
    cfg.add_arguments(p, cfg.VisitorSettings)
    p.set_defaults(handler=cmd_visitors)

    p = actions.add_parser("promote", help="a visitor's crops become a person's gallery photos (the checks of add); "
                                           "the visitor is then deleted from the store")
    p.add_argument("visitor_id", type=visitor_id, metavar="VISITOR_ID", help="e.g. v-7f3a9c (facebus faces visitors)")
    p.add_argument("name", metavar="NAME", help="person id or name ('Alice Smith' is stored as Alice_Smith)")
    p.add_argument("--restricted", action="store_true", help="add to Restricted/ (default: Authorised/)")
    cfg.add_arguments(p, cfg.VisitorSettings)
    p.set_defaults(handler=cmd_promote)

    p = actions.add_parser("forget-visitor", help="delete a visitor from the store, with their crops and InfluxDB "
                                                  "entries (field visitor_id; also the ids merged into them)")
    p.add_argument("visitor_id", type=visitor_id, metavar="VISITOR_ID")
    cfg.add_arguments(p, cfg.VisitorSettings)
    cfg.add_arguments(p, cfg.ArchiverSettings)
    cfg.add_arguments(p, cfg.InfluxSettings)
    p.set_defaults(handler=cmd_forget_visitor)

    p = actions.add_parser("search", help="seen before? the archived entries whose crop shows the face in a photo, "
                                          "nearest first (JSON lines; --tolerance: largest distance, default the "
                                          "model's)")
    p.add_argument("photo", type=Path, metavar="PHOTO", help="a photo of the face (the largest face is searched)")
    p.add_argument("--since", default="30d", metavar="DURATION_OR_TIME",
                   help="entries captured since: 30d, 12h, 90m, 1d12h, 2026-11-01 or 2026-11-01T08:00:00Z "
                        "(default 30d)")
    p.add_argument("--limit", type=_positive_int, metavar="N", help="print at most N entries (default: all)")
    cfg.add_arguments(p, cfg.ArchiverSettings)
    cfg.add_arguments(p, cfg.InfluxSettings)
    p.set_defaults(handler=cmd_search)

    for p in actions.choices.values():
        cfg.add_arguments(p, RecognizerSettings)


def main(args: argparse.Namespace) -> int:
    from botocore.exceptions import BotoCoreError, ClientError

    from archiver.influx import InfluxError
    from recognizer.bundle import BundleError
    from recognizer.models import ModelFileError
    from recognizer.store import GalleryError

    settings = cfg.load(RecognizerSettings, args)
    try:
        return args.handler(args, settings)
    except (GalleryError, BundleError, ModelFileError) as exc:
        print(f"facebus faces {args.action}: {exc}", file=sys.stderr)
    except (OSError, BotoCoreError, ClientError) as exc:
        print(f"facebus faces {args.action}: gallery {settings.gallery}: {exc}", file=sys.stderr)
    except InfluxError as exc:
        print(f"facebus faces {args.action}: InfluxDB: {exc}", file=sys.stderr)
    return 1
