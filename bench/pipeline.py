"""Frames per second and names: the prototypes' naive pipeline vs the facebus engine, then a live load case.

    .venv/bin/python bench/pipeline.py [--live-s 60] [--no-live | --live] [--repeats N]

``--no-live`` runs part 1 only, ``--live`` part 2 only; both run by default (about 2 min 30 s with the defaults).

Part 1, the same frames on one core: the Hamilton clip (samples/faces-dev/video) sampled at 10 fps, each frame
encoded to JPEG (q85) once up front. Each repetition of each pipeline runs in a fresh process pinned to core 0 (every
thread, cv2.setNumThreads(1)); the two pipelines alternate (ABBA), so neither gets the quieter minutes.

- naive, as the original prototypes: ``face_recognition.load_image_file`` (PIL) on the JPEG, HOG ``face_locations``
  (upsample 1, whole frame), ``face_encodings`` of every face, nearest gallery photo (one encoding per photo of
  samples/gallery, its largest face), named when the distance is at most 0.6;
- engine: ``facebus.images.decode_jpeg`` then ``recognizer.engine.Engine.process`` with default settings, then
  ``finish()``; a person is named by a decided or changed event.

Names are checked per segment of short_hamilton_clip_segments.csv: the naive pipeline per frame, the engine per track
(a track belongs to the segments its first_seen..last_seen overlaps). A name is wrong when the person is not in the
segment's identities_visible (for a track spanning segments: in none of them).

Part 2 (``--live``, run after part 1 unless ``--no-live``): a private Mosquitto, the real recognizer
(``facebus recognizer``, default workers = one per core) and four cameras cam1..cam4 publishing the clip's
frames (looping, each from another offset) at 5 fps for ``--live-s`` seconds with the capture_time user property.
Reported: frames sent / processed (the recognizer's frames_processed + frames_still) / dropped, capture-to-result
latency (tracks messages as received here, and the recognizer's own stats), RSS of the recognizer and its workers
(sampled every 5 s), per-core and per-process CPU. Scratch files live in a temporary folder, removed at the end; the
gallery encoding cache in /tmp/facebus-bench-cache is kept so later runs start warm.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing
import os
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from facebus.events import CAPTURE_TIME_PROPERTY, format_time, parse_time, utc_now  # noqa: E402
from facebus.images import decode_jpeg, encode_jpeg  # noqa: E402
from facebus.mqtt import Message, MqttClient  # noqa: E402
from facebus.settings import MqttSettings, RecognizerSettings  # noqa: E402
from facebus.topics import ONLINE, Topics  # noqa: E402
from facebus_tools import devservers  # noqa: E402
from recognizer.identify import video_frames  # noqa: E402

CLIP = REPO / "samples/faces-dev/video/short_hamilton_clip.mp4"
SEGMENTS_CSV = REPO / "samples/faces-dev/video/short_hamilton_clip_segments.csv"
GALLERY = REPO / "samples/gallery"
CACHE_DIR = Path("/tmp/facebus-bench-cache")
BENCH_FPS = 10.0
JPEG_QUALITY = 85
NAIVE_TOLERANCE = 0.6
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)  # video time 0 as a capture time (as facebus faces identify)
LIVE_DEVICES = ("cam1", "cam2", "cam3", "cam4")
LIVE_FPS = 5.0
STATS_INTERVAL_S = 5.0
SAMPLE_INTERVAL_S = 5.0


# -- tables ----------------------------------------------------------------------------------------------------------

def print_table(title: str, headers: list[str], rows: list[list]) -> None:
    """A plain table: first column left-aligned, the others right-aligned unless they hold text."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    numeric = [i > 0 and all(_is_number(r[i]) for r in cells) for i in range(len(headers))]

    def line(values: list[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w)
                         for v, w, num in zip(values, widths, numeric, strict=True)).rstrip()

    print(f"\n{title}\n")
    print(line(headers))
    print(line(["-" * w for w in widths]))
    for row in cells:
        print(line(row))


def _is_number(text: str) -> bool:
    try:
        float(text.rstrip("%x").replace(",", ""))
        return True
    except ValueError:
        return text in ("-", "")


# -- data ------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Segment:
    number: int
    start_s: float  # first frame's time
    end_s: float  # the next segment's first frame's time
    visible: frozenset[str]  # people who should be named ("unknown" removed)

    def holds(self, time_s: float) -> bool:
        return self.start_s - 1e-6 <= time_s < self.end_s - 1e-6

    def overlaps(self, first_s: float, last_s: float) -> bool:
        return first_s < self.end_s - 1e-6 and last_s >= self.start_s - 1e-6


def clip_fps() -> float:
    capture = cv2.VideoCapture(str(CLIP))
    try:
        return capture.get(cv2.CAP_PROP_FPS) or 30.0
    finally:
        capture.release()


def load_segments() -> list[Segment]:
    fps = clip_fps()
    with SEGMENTS_CSV.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [Segment(n, int(r["start_frame"]) / fps, (int(r["end_frame"]) + 1) / fps,
                    frozenset(p for p in r["identities_visible"].split(";") if p and p != "unknown"))
            for n, r in enumerate(rows, 1)]


def clip_jpegs(fps: float) -> list[tuple[float, bytes]]:
    """(time in s, JPEG q85) of the clip sampled at ``fps``."""
    return [(t, encode_jpeg(rgb, JPEG_QUALITY)) for t, rgb in video_frames(CLIP, fps)]


def gallery_photos(root: Path) -> list[tuple[str, Path]]:
    """(person, photo) of a Authorised|Restricted/<Person>/* or <Person>.jpg gallery."""
    photos = []
    for category in sorted(p for p in root.iterdir() if p.is_dir()):
        for entry in sorted(category.iterdir()):
            files = sorted(entry.iterdir()) if entry.is_dir() else [entry]
            person = entry.name if entry.is_dir() else entry.stem
            photos += [(person, f) for f in files if f.suffix.lower() in (".jpg", ".jpeg", ".png")]
    return photos


def engine_settings() -> RecognizerSettings:
    return RecognizerSettings(gallery=str(GALLERY), cache_dir=CACHE_DIR)


# -- part 1: one pipeline in a process pinned to one core ------------------------------------------------------------

def pin_to_core(core: int = 0) -> None:
    """Pin every thread of this process to ``core`` (sched_setaffinity(0) moves only the calling thread)."""
    for tid in os.listdir("/proc/self/task"):
        os.sched_setaffinity(int(tid), {core})
    cv2.setNumThreads(1)


def naive_gallery() -> tuple[list[str], np.ndarray]:
    """One face_recognition encoding per gallery photo (its largest HOG face), as the prototypes built it."""
    import face_recognition

    names, encodings = [], []
    for person, path in gallery_photos(GALLERY):
        rgb = face_recognition.load_image_file(str(path))
        boxes = face_recognition.face_locations(rgb)
        if not boxes:
            continue
        largest = max(boxes, key=lambda b: (b[2] - b[0]) * (b[1] - b[3]))
        names.append(person)
        encodings.append(face_recognition.face_encodings(rgb, [largest])[0])
    return names, np.array(encodings)


def run_naive(frames: list[tuple[float, bytes]], gallery: tuple[list[str], np.ndarray]) -> dict:
    """The naive pipeline over ``frames``; per frame the (person or None) of each face."""
    import face_recognition

    pin_to_core()
    names, encodings = gallery
    named = []
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for time_s, jpeg in frames:
        rgb = face_recognition.load_image_file(io.BytesIO(jpeg))
        boxes = face_recognition.face_locations(rgb)
        faces = []
        for encoding in face_recognition.face_encodings(rgb, boxes):
            distances = face_recognition.face_distance(encodings, encoding)
            nearest = int(np.argmin(distances))
            faces.append(names[nearest] if distances[nearest] <= NAIVE_TOLERANCE else None)
        named.append((time_s, faces))
    return {"wall_s": time.perf_counter() - started_wall, "cpu_s": time.process_time() - started_cpu,
            "frames": len(frames), "named": named}


def run_engine(frames: list[tuple[float, bytes]]) -> dict:
    """The engine over ``frames`` (gallery loaded before the clock starts); its events as plain tuples."""
    from recognizer.engine import Engine
    from recognizer.photos import load_index

    pin_to_core()
    settings = engine_settings()
    engine = Engine(settings)
    engine.set_gallery(load_index(settings)[0])
    events, faces, encoded = [], 0, 0
    started_wall, started_cpu = time.perf_counter(), time.process_time()
    for time_s, jpeg in frames:
        rgb = decode_jpeg(jpeg, settings.max_frame_bytes, settings.max_frame_pixels)
        result = engine.process("video", rgb, EPOCH + timedelta(seconds=time_s), now_s=time_s)
        events += result.events
        faces, encoded = faces + result.faces, encoded + result.encoded
    events += engine.finish()
    wall_s, cpu_s = time.perf_counter() - started_wall, time.process_time() - started_cpu

    def seconds(moment: datetime) -> float:
        return round((moment - EPOCH).total_seconds(), 3)

    rows = [(e.event_type.value, e.track_id, e.person, e.category.value, e.reason.value, seconds(e.captured_at),
             seconds(e.first_seen), seconds(e.last_seen), e.frames, e.samples, dict(e.votes)) for e in events]
    return {"wall_s": wall_s, "cpu_s": cpu_s, "frames": len(frames), "events": rows, "faces": faces,
            "encoded": encoded}


def in_fresh_process(function, *args):
    """``function(*args)`` in a new spawned process (imports and caches of one run never help the next)."""
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(function, *args).result()


def run_part1(repeats: int) -> None:
    segments = load_segments()
    frames = clip_jpegs(BENCH_FPS)
    print(f"part 1: {CLIP.name}, {len(frames)} frames at {BENCH_FPS:g} fps, JPEG q{JPEG_QUALITY}; "
          f"{repeats} runs of each pipeline alternating, each in a fresh process pinned to core 0", flush=True)
    started = time.perf_counter()
    gallery = in_fresh_process(naive_gallery)
    print(f"naive gallery: {len(gallery[0])} photo encodings of {len(set(gallery[0]))} people "
          f"({time.perf_counter() - started:.0f} s, not timed)", flush=True)
    runs: dict[str, list[dict]] = {"naive": [], "engine": []}
    for n in range(repeats):
        order = ("naive", "engine") if n % 2 == 0 else ("engine", "naive")
        for name in order:
            args = (run_naive, frames, gallery) if name == "naive" else (run_engine, frames)
            result = in_fresh_process(*args)
            runs[name].append(result)
            print(f"  run {n + 1} {name:<6} {result['frames'] / result['wall_s']:6.2f} frames/s", flush=True)
    report_speed(runs)
    report_names(segments, runs["naive"][0], runs["engine"][0])
    report_tracks(runs["engine"][0])
    for name, rs in runs.items():
        if any(_outcome(r) != _outcome(rs[0]) for r in rs[1:]):
            print(f"note: the {name} pipeline named differently in some runs; the tables show run 1")


def _outcome(result: dict) -> list:
    """What a run named, comparable across runs (track ids, and so the order of a frame's events, differ)."""
    if "named" in result:
        return result["named"]
    return sorted(repr((kind, person, first_s, last_s))
                  for kind, _, person, _, _, _, first_s, last_s, *_ in result["events"])


def report_speed(runs: dict[str, list[dict]]) -> None:
    """frames/s of wall time (the core was ours alone only if nothing else ran) and per CPU second (robust to a
    neighbour taking turns on the core); medians over the runs."""
    wall = {name: [r["frames"] / r["wall_s"] for r in rs] for name, rs in runs.items()}
    cpu = {name: [r["frames"] / r["cpu_s"] for r in rs] for name, rs in runs.items()}
    rows = []
    for name, rs in runs.items():
        busy = sum(r["cpu_s"] for r in rs) / sum(r["wall_s"] for r in rs)
        rows.append([name, rs[0]["frames"], len(rs), f"{np.median(wall[name]):.2f}",
                     f"{min(wall[name]):.2f}-{max(wall[name]):.2f}", f"{np.median(cpu[name]):.2f}",
                     f"{1000 / np.median(cpu[name]):.1f}", f"{busy:.2f}"])
    rows.append(["engine / naive", "", "", f"{np.median(wall['engine']) / np.median(wall['naive']):.1f}x", "",
                 f"{np.median(cpu['engine']) / np.median(cpu['naive']):.1f}x", "", ""])
    print_table("Part 1: speed on one core (medians of the runs)",
                ["pipeline", "frames", "runs", "frames/s", "range", "frames/cpu-s", "cpu ms/frame", "cpu/wall"], rows)
    engine = runs["engine"][0]
    print(f"engine run 1: {engine['faces']} face detections, {engine['encoded']} encoded "
          f"({engine['encoded'] / max(engine['faces'], 1):.0%}); cpu/wall below 1 means the core was shared")


def naive_by_segment(segments: list[Segment], named: list) -> dict[int, tuple[dict, dict]]:
    """Per segment: ({person: faces named right}, {person: faces named wrongly}) over every frame."""
    out = {s.number: ({}, {}) for s in segments}
    for time_s, faces in named:
        segment = next(s for s in segments if s.holds(time_s) or s is segments[-1])
        right, wrong = out[segment.number]
        for person in faces:
            if person is not None:
                bucket = right if person in segment.visible else wrong
                bucket[person] = bucket.get(person, 0) + 1
    return out


def engine_tracks(events: list) -> dict[str, dict]:
    """Per track: its span (from its last event) and the people its decided/changed events named."""
    tracks: dict[str, dict] = {}
    for kind, track_id, person, category, reason, _at_s, first_s, last_s, frames, samples, votes in events:
        track = tracks.setdefault(track_id, {"named": [], "final": None})
        track |= {"first_s": first_s, "last_s": last_s, "frames": frames, "samples": samples, "votes": votes}
        if kind in ("decided", "changed") and person and person not in track["named"]:
            track["named"].append(person)
        if kind == "ended":
            track["final"] = (person, category, reason)
    return tracks


def tracks_by_segment(segments: list[Segment], tracks: list[tuple[list[str], list[Segment]]]) -> dict[int, tuple]:
    """Per segment: ({person: tracks named right}, {person: tracks named wrongly}), from (people a track named, the
    segments it spans) pairs. A name is wrong when the person is visible in none of the track's segments."""
    out = {s.number: ({}, {}) for s in segments}
    for named, spanned in tracks:
        for person in named:
            for segment in spanned:
                if person in segment.visible:
                    bucket = out[segment.number][0]
                elif not any(person in s.visible for s in spanned):
                    bucket = out[segment.number][1]
                else:
                    continue  # a track reaching into the next segment: counted where the person is
                bucket[person] = bucket.get(person, 0) + 1
    return out


def engine_by_segment(segments: list[Segment], events: list) -> dict[int, tuple[dict, dict]]:
    spans = [(t["named"], [s for s in segments if s.overlaps(t["first_s"], t["last_s"])])
             for t in engine_tracks(events).values()]
    return tracks_by_segment(segments, spans)


def summarize_names(name: str, segments: list[Segment], by: dict[int, tuple]) -> None:
    wanted = set().union(*(s.visible for s in segments))
    found = set().union(*(set(by[s.number][0]) for s in segments))
    wrong = sum(sum(by[s.number][1].values()) for s in segments)
    print(f"{name}: named {len(found & wanted)} of {len(wanted)} people "
          f"({', '.join(sorted(found & wanted)) or 'none'}); {wrong} wrong names")


def _counts(counts: dict) -> str:
    return ", ".join(f"{p} {n}" for p, n in sorted(counts.items())) or "-"


def report_names(segments: list[Segment], naive: dict, engine: dict) -> None:
    by_naive, by_engine = naive_by_segment(segments, naive["named"]), engine_by_segment(segments, engine["events"])
    rows = []
    for s in segments:
        rows.append([f"{s.number} {s.start_s:.2f}-{s.end_s:.2f}", ", ".join(sorted(s.visible)),
                     _counts(by_naive[s.number][0]), _counts(by_naive[s.number][1]),
                     _counts(by_engine[s.number][0]), _counts(by_engine[s.number][1])])
    print_table("Part 1: people named per clip segment (naive: faces over frames; engine: tracks)",
                ["segment (s)", "should be named", "naive named", "naive wrong", "engine named", "engine wrong"], rows)
    summarize_names("naive", segments, by_naive)
    summarize_names("engine", segments, by_engine)


def report_tracks(engine: dict) -> None:
    rows = []
    for track_id, t in engine_tracks(engine["events"]).items():
        person, category, reason = t["final"] or (None, "-", "-")
        votes = ", ".join(f"{p or '(none)'} {n}" for p, n in sorted(t["votes"].items(), key=lambda kv: -kv[1])) or "-"
        rows.append([track_id, f"{t['first_s']:.1f}-{t['last_s']:.1f}", t["frames"], t["samples"],
                     ", ".join(t["named"]) or "-", f"{person or 'unknown'} ({reason})", votes])
    print_table("Part 1: engine tracks (run 1)",
                ["track", "span (s)", "frames", "samples", "named", "at end", "votes"], rows)


# -- part 2: the live recognizer -------------------------------------------------------------------------------------

def tree_pids(root: int) -> list[int]:
    """``root`` and all its descendants (by /proc/<pid>/stat parent ids)."""
    parents: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            parents[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    pids, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        pids += frontier
    return pids


def rss_mib(pids: list[int]) -> float:
    total_kib = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
        except OSError:
            pass
    return total_kib / 1024


def cpu_seconds(pid: int) -> float:
    """utime + stime of ``pid`` (0 when it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def core_times() -> dict[str, tuple[int, int]]:
    """Per core from /proc/stat: (busy jiffies, total jiffies)."""
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name.startswith("cpu") and name != "cpu":
            numbers = [int(v) for v in values[:8]]
            idle = numbers[3] + numbers[4]
            out[name] = (sum(numbers) - idle, sum(numbers))
    return out


def busy_percent(before: dict, after: dict) -> dict[str, float]:
    return {core: 100 * (after[core][0] - before[core][0]) / max(after[core][1] - before[core][1], 1)
            for core in before}


@dataclass
class Recorder:
    """What the bench's subscriber saw: tracks latencies, face events, the recognizer's stats and availability.
    The handlers run on paho's network thread; the main thread only reads."""

    tracks_latency_ms: list[float] = field(default_factory=list)
    tracks_per_device: dict[str, int] = field(default_factory=dict)
    faces: list[dict] = field(default_factory=list)
    stats: list[tuple[float, dict]] = field(default_factory=list)  # (monotonic arrival, message)
    online: threading.Event = field(default_factory=threading.Event)

    def on_tracks(self, message: Message) -> None:
        arrived = time.time()
        body = json.loads(message.payload)
        self.tracks_latency_ms.append((arrived - parse_time(body["captured_at"]).timestamp()) * 1000)
        device = body["device_id"]
        self.tracks_per_device[device] = self.tracks_per_device.get(device, 0) + 1

    def on_face(self, message: Message) -> None:
        self.faces.append(json.loads(message.payload))

    def on_stats(self, message: Message) -> None:
        self.stats.append((time.monotonic(), json.loads(message.payload)))

    def on_availability(self, message: Message) -> None:
        if message.payload.decode(errors="replace") == ONLINE:
            self.online.set()
        else:
            self.online.clear()

    def device_totals(self, device: str | None = None) -> dict[str, int]:
        """The per-device counters summed over every stats message (of one device, or of all)."""
        sums: dict[str, int] = {}
        for _, message in list(self.stats):
            for name, counters in message["devices"].items():
                if device is None or name == device:
                    for counter, value in counters.items():
                        sums[counter] = sums.get(counter, 0) + value
        return sums

    def handled(self) -> int:
        """Frames the stats account for so far: processed, still or dropped."""
        totals = self.device_totals()
        return sum(totals.get(k, 0) for k in ("frames_processed", "frames_still", "frames_dropped"))


class Sampler(threading.Thread):
    """RSS of the recognizer's process tree (MiB), now and every ``SAMPLE_INTERVAL_S`` until stopped."""

    def __init__(self, pid: int) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid = pid
        self.rss: list[float] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            self.rss.append(rss_mib(tree_pids(self.pid)))
            if self.stopped.wait(SAMPLE_INTERVAL_S):
                return


@dataclass
class LiveRun:
    """The measurements of the sending window."""

    sent: dict[str, int]
    clip_time_of: dict[tuple[str, str], float]  # (device, capture time as format_time) -> clip time of the frame
    started_s: float  # monotonic time the first frame was due
    send_s: float
    cores: dict[str, float]  # core -> busy %
    cpu_s: dict[str, float]  # process (group) -> CPU seconds
    rss: list[float] = field(default_factory=list)


def camera(client: MqttClient, device: str, frames: list[tuple[float, bytes]], offset: int, start_s: float,
           duration_s: float, sent: dict[str, int], clip_time_of: dict[tuple[str, str], float]) -> None:
    """Publish ``frames`` from ``offset`` on, looping, at LIVE_FPS from monotonic ``start_s`` for ``duration_s``."""
    topic = Topics().frame(device)
    for k in range(int(duration_s * LIVE_FPS)):
        delay = start_s + k / LIVE_FPS - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        clip_s, jpeg = frames[(offset + k) % len(frames)]
        stamp = format_time(utc_now())
        clip_time_of[(device, stamp)] = clip_s
        client.publish(topic, jpeg, qos=0, properties={CAPTURE_TIME_PROPERTY: stamp})
        sent[device] += 1


def wait_for(condition, timeout_s: float, what: str, process: subprocess.Popen | None = None) -> None:
    """Poll ``condition`` until true; TimeoutError after ``timeout_s``, RuntimeError as soon as ``process`` exits."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"the recognizer exited with code {process.returncode} while waiting for {what}")
        if time.monotonic() > deadline:
            raise TimeoutError(f"no {what} within {timeout_s:g} s")
        time.sleep(0.05)


def start_recognizer(port: int, log_path: Path) -> subprocess.Popen:
    env = dict(os.environ, FACEBUS_MQTT_HOST="127.0.0.1", FACEBUS_MQTT_PORT=str(port), FACEBUS_LOG_JSON="0",
               FACEBUS_RECOGNIZER_CACHE_DIR=str(CACHE_DIR), FACEBUS_STATS_INTERVAL_S=str(STATS_INTERVAL_S),
               FACEBUS_VISITORS_STORE=str(log_path.parent / "visitors"))  # not in the repo's sample gallery
    with log_path.open("wb") as log:
        return subprocess.Popen([sys.executable, "-m", "facebus_tools", "recognizer", "--gallery", str(GALLERY)],
                                cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen, timeout_s: float = 20.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def run_part2(live_s: float) -> None:
    frames = clip_jpegs(LIVE_FPS)
    workers = RecognizerSettings().worker_count()
    mean_kib = np.mean([len(jpeg) for _, jpeg in frames]) / 1024
    print(f"\npart 2: {len(LIVE_DEVICES)} cameras x {LIVE_FPS:g} fps for {live_s:g} s, {len(frames)} looping 640x360 "
          f"JPEG frames (mean {mean_kib:.0f} KiB); recognizer with {workers} workers "
          "(a new camera goes to the least loaded)",
          flush=True)
    with tempfile.TemporaryDirectory(prefix="facebus-bench-") as scratch:
        state = Path(scratch)
        mosquitto = devservers.start_mosquitto(state / "mosquitto")
        recognizer = None
        clients: list[MqttClient] = []
        try:
            recognizer = start_recognizer(mosquitto.port, state / "recognizer.log")
            recorder = Recorder()
            try:
                run = live(mosquitto, recognizer, recorder, frames, live_s, clients)
            except BaseException:
                print(f"recognizer log (tail):\n{(state / 'recognizer.log').read_text(errors='replace')[-3000:]}")
                raise
        finally:
            for client in clients:
                client.stop()
            if recognizer is not None:
                stop_process(recognizer)
            mosquitto.stop()
    report_intervals(recorder, run)
    report_cameras(recorder, run)
    report_live_names(recorder, run)
    report_live_summary(recorder, run)


def connect(settings: MqttSettings, availability_topic: str, name: str, clients: list[MqttClient]) -> MqttClient:
    client = MqttClient(settings, availability_topic, name)
    clients.append(client)  # stopped by the caller, also on failure
    return client


def live(mosquitto: devservers.Server, recognizer: subprocess.Popen, recorder: Recorder,
         frames: list[tuple[float, bytes]], live_s: float, clients: list[MqttClient]) -> LiveRun:
    """Wait for the recognizer, run the cameras, wait until its stats account for every frame sent."""
    settings, topics = MqttSettings(host="127.0.0.1", port=mosquitto.port), Topics()
    watcher = connect(settings, topics.service_availability("bench"), "bench", clients)
    watcher.subscribe(topics.service_availability("recognizer"), recorder.on_availability, qos=1)
    watcher.subscribe(topics.service_stats("recognizer"), recorder.on_stats)
    watcher.subscribe(topics.all_tracks, recorder.on_tracks)
    watcher.subscribe(topics.all_faces, recorder.on_face, qos=1)
    watcher.start()
    started = time.monotonic()
    wait_for(recorder.online.is_set, 300, "recognizer online", recognizer)
    print(f"recognizer online after {time.monotonic() - started:.1f} s", flush=True)
    cams = [connect(settings, topics.device_availability(d), f"bench-{d}", clients) for d in LIVE_DEVICES]
    for cam in cams:
        cam.start()
    wait_for(lambda: all(c.connected for c in cams), 10, "camera connections")

    sampler = Sampler(recognizer.pid)
    sampler.start()
    children = {p: _role(p) for p in tree_pids(recognizer.pid) if p != recognizer.pid}
    watched = {"recognizer main": [recognizer.pid], **{f"{role} pid {p}": [p] for p, role in children.items()},
               "mosquitto": [mosquitto.process.pid], "bench (cameras, subscriber)": [os.getpid()]}
    cpu_before = {k: sum(cpu_seconds(p) for p in v) for k, v in watched.items()}
    cores_before, started_s = core_times(), time.monotonic() + 0.5
    sent, clip_time_of = {d: 0 for d in LIVE_DEVICES}, {}
    threads = [threading.Thread(target=camera, name=d, args=(cam, d, frames, n * len(frames) // len(cams),
                                                             started_s + n * 0.05, live_s, sent, clip_time_of))
               for n, (cam, d) in enumerate(zip(cams, LIVE_DEVICES, strict=True))]  # cameras out of phase by 50 ms
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    send_s = time.monotonic() - started_s
    cores = busy_percent(cores_before, core_times())
    cpu_s = {k: sum(cpu_seconds(p) for p in v) - cpu_before[k] for k, v in watched.items()}
    cpu_s["all others on the machine"] = max(0.0, sum(cores.values()) / 100 * send_s - sum(cpu_s.values()))
    wait_for(lambda: recorder.handled() >= sum(sent.values()), 3 * STATS_INTERVAL_S + 10,
             "stats accounting for every frame sent", recognizer)
    sampler.stopped.set()
    sampler.join()
    return LiveRun(sent, clip_time_of, started_s, send_s, cores, cpu_s, sampler.rss)


def _role(pid: int) -> str:
    """What a child of the recognizer is, by its command line."""
    try:
        command = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return "child"
    return "resource tracker" if "resource_tracker" in command else "worker" if "spawn_main" in command else "child"


COUNTERS = ("frames_in", "frames_processed", "frames_still", "frames_dropped")


def report_intervals(recorder: Recorder, run: LiveRun) -> None:
    rows = []
    for at_s, message in recorder.stats:
        figures = message["service_stats"]
        got = {k: sum(d.get(k, 0) for d in message["devices"].values()) for k in COUNTERS}
        if any(got.values()):
            rows.append([f"{at_s - run.started_s:.1f}", *got.values(), figures.get("queue_depth", "-"),
                         _ms(figures.get("latency_p50_ms")), _ms(figures.get("latency_p99_ms"))])
    print_table(f"Part 2: the recognizer's stats per {STATS_INTERVAL_S:g} s interval with traffic "
                "(t: arrival, s after the first frame)",
                ["t (s)", "in", "processed", "still", "dropped", "queue", "p50 ms", "p99 ms"], rows)


def report_cameras(recorder: Recorder, run: LiveRun) -> None:
    rows = []
    for device, sent in run.sent.items():
        counts = recorder.device_totals(device)
        done = counts.get("frames_processed", 0) + counts.get("frames_still", 0)
        rows.append([device, sent, counts.get("frames_in", 0), done, f"{100 * done / max(sent, 1):.1f}%",
                     counts.get("frames_dropped", 0), recorder.tracks_per_device.get(device, 0)])
    print_table("Part 2: per camera",
                ["device", "sent", "received", "processed", "% processed", "dropped", "tracks msgs"], rows)


def report_live_names(recorder: Recorder, run: LiveRun) -> None:
    """The live face events per clip segment: a track's first and last capture times are mapped back to the clip
    times of the frames sent then (a track over a loop's end spans the clip's end and start)."""
    segments = load_segments()
    tracks: dict[str, dict] = {}
    for event in recorder.faces:
        track = tracks.setdefault(event["track_id"], {"named": []})
        track |= {"device": event["device_id"], "first": event["first_seen"], "last": event["last_seen"]}
        if event["event_type"] != "ended" and event["person"] and event["person"] not in track["named"]:
            track["named"].append(event["person"])
    spans, unmapped = [], 0
    for track in tracks.values():
        first, last = (run.clip_time_of.get((track["device"], format_time(parse_time(track[key]))))
                       for key in ("first", "last"))
        if first is None or last is None:
            unmapped += 1
            continue
        ranges = [(first, last)] if first <= last else [(first, segments[-1].end_s), (0.0, last)]
        spans.append((track["named"], [s for s in segments if any(s.overlaps(a, b) for a, b in ranges)]))
    by = tracks_by_segment(segments, spans)
    rows = [[f"{s.number} {s.start_s:.2f}-{s.end_s:.2f}", ", ".join(sorted(s.visible)), _counts(by[s.number][0]),
             _counts(by[s.number][1])] for s in segments]
    print_table(f"Part 2: people named per clip segment, tracks of all cameras ({len(spans)} tracks"
                + (f", {unmapped} not mapped to the clip)" if unmapped else ")"),
                ["segment (s)", "should be named", "named (tracks)", "wrong (tracks)"], rows)
    summarize_names("live", segments, by)


def report_live_summary(recorder: Recorder, run: LiveRun) -> None:
    totals, sent = recorder.device_totals(), sum(run.sent.values())
    processed = totals.get("frames_processed", 0) + totals.get("frames_still", 0)
    dropped = totals.get("frames_dropped", 0)
    own = [m["service_stats"] for _, m in recorder.stats if "latency_p99_ms" in m["service_stats"]]
    here = np.percentile(recorder.tracks_latency_ms, [50, 99, 100]) if recorder.tracks_latency_ms else None
    decided = [f for f in recorder.faces if f["event_type"] != "ended"]
    named: dict[str, int] = {}
    for event in decided:
        if event["person"]:
            named[event["person"]] = named.get(event["person"], 0) + 1
    rows = [
        ["frames sent", f"{sent} in {run.send_s:.1f} s ({sent / run.send_s:.1f}/s)"],
        ["frames processed (processed + still)",
         f"{processed} ({100 * processed / max(sent, 1):.1f}%), {totals.get('frames_still', 0)} of them still"],
        ["frames dropped", f"{dropped} ({100 * dropped / max(sent, 1):.1f}%)"],
        ["latency capture->tracks msg here, p50 / p99 / max", "-" if here is None else
         f"{here[0]:.0f} / {here[1]:.0f} / {here[2]:.0f} ms ({len(recorder.tracks_latency_ms)} msgs)"],
        ["latency recognizer stats, median p50 / max p99", "-" if not own else
         f"{np.median([s['latency_p50_ms'] for s in own]):.0f} / {max(s['latency_p99_ms'] for s in own):.0f} ms"],
        ["RSS recognizer + workers, first / max / last", "-" if not run.rss else
         f"{run.rss[0]:.0f} / {max(run.rss):.0f} / {run.rss[-1]:.0f} MiB ({len(run.rss)} samples, 5 s apart)"],
        ["RSS samples (MiB; the first before any frame)", " ".join(f"{v:.0f}" for v in run.rss) or "-"],
        ["cores busy while sending", ", ".join(f"{c} {p:.0f}%" for c, p in run.cores.items())],
        *[[f"CPU {name}", f"{s:.1f} s ({100 * s / run.send_s:.0f}% of a core)"] for name, s in run.cpu_s.items()],
        ["face events", f"{len(decided)} decided/changed, {len(recorder.faces) - len(decided)} ended"],
        ["decided/changed naming someone", ", ".join(f"{p} {n}" for p, n in sorted(named.items())) or "-"],
    ]
    print_table("Part 2: live summary", ["measure", "value"], rows)


def _ms(value) -> str:
    return "-" if value is None else f"{value:.0f}"


def code_version() -> str:
    """The commit measured, with ``+changes`` when recognizer/ or facebus/ differ from it."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + (" +changes" if git("status", "--porcelain", "recognizer", "facebus") else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--repeats", type=int, default=4, help="runs of each pipeline in part 1 (default 4)")
    parser.add_argument("--live-s", type=float, default=60.0, help="seconds the cameras publish in part 2")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--live", action="store_true", help="run only part 2")
    only.add_argument("--no-live", action="store_true", help="run only part 1")
    args = parser.parse_args()
    print(f"bench/pipeline.py {utc_now():%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores, code {code_version()}")
    if not args.live:
        run_part1(args.repeats)
    if not args.no_live:
        run_part2(args.live_s)


if __name__ == "__main__":
    main()
