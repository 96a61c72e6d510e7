"""Matching speed: one probe face encoding against a gallery of N encodings on one core.

    OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 .venv/bin/python bench/matching.py [--encodings 100000] [--people 20000]

Random unit-scale 128-d encodings (the matcher's cost does not depend on their values). Prints the median and p99 of
GalleryIndex.match over 300 probes, and the index build time and memory. Target: < 10 ms at 100,000 encodings.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from facebus.events import Category  # noqa: E402
from recognizer.matching import GalleryEntry, GalleryIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--encodings", type=int, default=100_000)
    parser.add_argument("--people", type=int, default=20_000)
    parser.add_argument("--probes", type=int, default=300)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    vectors = rng.normal(0, 0.09, (args.encodings, 128))
    entries = [
        GalleryEntry(f"person_{i % args.people:06d}", Category.authorised, f"Authorised/p{i}.jpg", vectors[i])
        for i in range(args.encodings)
    ]
    started = time.perf_counter()
    index = GalleryIndex(entries)
    build_s = time.perf_counter() - started
    probes = rng.normal(0, 0.09, (args.probes, 128))
    timings_ms = []
    for probe in probes:
        started = time.perf_counter()
        index.match(probe, 0.58, 0.05)
        timings_ms.append((time.perf_counter() - started) * 1000)
    print(f"gallery: {args.encodings} encodings of {len(index.people)} people; index built in {build_s:.2f} s; "
          f"matrix {index.encodings.nbytes / 2**20:.1f} MiB float32")
    print(f"match one face: median {np.median(timings_ms):.2f} ms, p99 {np.percentile(timings_ms, 99):.2f} ms "
          f"over {args.probes} probes (threads: OMP={os.environ['OMP_NUM_THREADS']})")


if __name__ == "__main__":
    main()
