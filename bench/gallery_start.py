"""Recognizer start-up cost of a gallery: cold encoding cache vs warm, and one poll of the unchanged gallery.

    .venv/bin/python bench/gallery_start.py [GALLERY]        # default samples/gallery (folder or s3://bucket/prefix)

Loads the gallery exactly as the recognizer does (recognizer.photos.open_gallery: the gallery encoder with its
checks, 10 jitters per photo, the on-disk cache) with an empty cache folder, then again with the cache it filled, then
refreshes the warm loader once more (what every poll costs when nothing changed). Prints seconds and cache hits.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from facebus.settings import RecognizerSettings  # noqa: E402
from recognizer.photos import open_gallery  # noqa: E402


def timed_load(settings: RecognizerSettings):
    loader = open_gallery(settings)
    started = time.perf_counter()
    loader.refresh()
    return loader, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("gallery", nargs="?", default="samples/gallery")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        settings = RecognizerSettings(gallery=args.gallery, cache_dir=Path(cache))
        cold, cold_s = timed_load(settings)
        warm, warm_s = timed_load(settings)
        started = time.perf_counter()
        change = warm.refresh()
        poll_s = time.perf_counter() - started
    print(f"gallery {args.gallery}: {len(cold.index.people)} people, {len(cold.index)} photos, "
          f"{len(cold.rejected)} rejected")
    print(f"cold cache: {cold_s:.1f} s ({cold_s / max(len(cold.index), 1):.2f} s per photo)")
    print(f"warm cache: {warm_s:.2f} s")
    print(f"poll, nothing changed: {poll_s * 1000:.1f} ms ({'changed' if change.changed else 'no change'})")


if __name__ == "__main__":
    main()
