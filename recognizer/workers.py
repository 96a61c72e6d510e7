"""Worker processes: one :class:`~recognizer.engine.Engine` per process, so recognition uses every core.

A device always goes to the same worker (:class:`DeviceOwners`: the least loaded when it is first seen), so its
tracks live in one place.
Each worker has a latest-frame-wins slot per device in the parent (:class:`~recognizer.slots.LatestSlots`) and one
frame in flight at a time over a pipe: when frames outrun the cores, the older waiting frame of a device is
replaced and counted as dropped, so latency and memory stay bounded. The gallery is sent to a worker before its
next frame whenever it changes. A worker that dies (a crash in native code) is started again with the gallery and
its in-flight frame is counted as bad.

The parent never decodes or detects: the MQTT thread only puts frames into slots.
"""

from __future__ import annotations

import logging
import multiprocessing
import threading
import traceback
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime

from facebus.images import ImageError
from facebus.settings import RecognizerSettings
from recognizer.matching import GalleryIndex
from recognizer.slots import LatestSlots

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Frame:
    """A received frame waiting in its device's slot: MQTT topic, device, JPEG bytes, capture time, and the monotonic
    time it arrived."""

    topic: str
    device_id: str
    jpeg: bytes
    captured_at: datetime
    received_s: float


@dataclass(frozen=True)
class Reply:
    """A worker's answer: ``kind`` is ``result`` (``value`` a FrameResult, or a list of FaceEvents for a tick or
    stop), ``bad`` (``value`` why the frame was refused: ImageError's message) or ``error`` (a traceback)."""

    kind: str
    value: object


def _serve(conn, settings_fields: dict) -> None:
    """Body of a worker process: build the engine, then answer requests until ``stop`` or the pipe closes."""
    import cv2

    from recognizer.engine import Engine

    cv2.setNumThreads(1)  # one core per worker: OpenCV's own threads would fight the other workers
    engine = Engine(RecognizerSettings(**settings_fields))
    conn.send(Reply("ready", engine.model.name))
    while True:
        try:
            request = conn.recv()
        except EOFError:
            return
        kind = request[0]
        try:
            if kind == "gallery":
                engine.set_gallery(GalleryIndex(request[1], request[2]))
                reply = Reply("result", [])
            elif kind == "frame":
                _, device_id, jpeg, captured_at, received_s = request
                reply = Reply("result", engine.process_jpeg(device_id, jpeg, captured_at, received_s))
            elif kind == "tick":
                reply = Reply("result", engine.expire_idle(request[1]))
            else:  # stop
                conn.send(Reply("result", engine.finish()))
                return
        except ImageError as exc:
            reply = Reply("bad", str(exc))
        except Exception:  # noqa: BLE001 - reported to the parent, which logs and counts it; the worker goes on
            reply = Reply("error", traceback.format_exc())
        conn.send(reply)


class Worker:
    """One worker process and the slots of its devices. ``request`` is called by one thread at a time."""

    def __init__(self, number: int, settings: RecognizerSettings) -> None:
        self.number = number
        self.settings = settings
        self.slots: LatestSlots[Frame] = LatestSlots(settings.max_queued_bytes // settings.worker_count(),
                                                     lambda frame: len(frame.jpeg))
        self.restarts = 0
        self._gallery: GalleryIndex | None = None
        self._gallery_sent = True
        self._lock = threading.Lock()
        self._start()

    def _start(self) -> None:
        context = multiprocessing.get_context("spawn")  # no fork of a process that runs paho's threads
        self._conn, child = context.Pipe()
        fields = self.settings.model_dump()
        self.process = context.Process(target=_serve, args=(child, fields), name=f"recognizer-worker-{self.number}",
                                       daemon=True)
        self.process.start()
        child.close()
        reply = self._conn.recv()
        if reply.kind != "ready":
            raise RuntimeError(f"worker {self.number} failed to start: {reply.value}")
        self._gallery_sent = self._gallery is None

    def set_gallery(self, index: GalleryIndex) -> None:
        """Have the worker match against ``index`` from its next frame on."""
        with self._lock:
            self._gallery, self._gallery_sent = index, False

    def request(self, *message) -> Reply:
        """Send one request and wait for its reply; a pending gallery goes first. A worker that died is restarted and
        the request answered with ``error``."""
        try:
            with self._lock:
                gallery, pending = self._gallery, not self._gallery_sent
                self._gallery_sent = True
            if pending:
                self._conn.send(("gallery", gallery.entries, gallery.model))
                reply = self._conn.recv()
                if reply.kind != "result":
                    log.error("worker %d refused the gallery: %s", self.number, reply.value)
            self._conn.send(message)
            return self._conn.recv()
        except (EOFError, OSError, BrokenPipeError) as exc:
            self.restarts += 1
            log.error("worker %d died (%s, exit code %s); starting it again", self.number, exc, self.process.exitcode)
            self.process.join(timeout=1)
            self._start()
            return Reply("error", f"worker died: {exc}")

    def stop(self, timeout_s: float = 5.0) -> list:
        """End the worker; the events of the tracks still live (ended now)."""
        events = []
        try:
            self._conn.send(("stop",))
            if self._conn.poll(timeout_s):
                events = self._conn.recv().value
        except (EOFError, OSError):
            pass
        self.process.join(timeout=timeout_s)
        if self.process.is_alive():
            self.process.kill()
        return events


class DeviceOwners:
    """Which worker owns each device: a device seen for the first time goes to the worker that owns the fewest, and
    stays there, so its tracks live in one place and devices spread evenly (hashing put 3 of 4 cameras on one of two
    workers).

    Bounded: at most ``capacity`` devices at once. A new device beyond that is refused (:meth:`owner` returns None)
    until :meth:`expire` forgets the devices unseen for ``idle_s`` (their tracks have ended long before: a worker
    ends a quiet device's tracks after ``track_timeout_s``). Not thread-safe: the MQTT thread calls it.
    """

    def __init__(self, workers: int, capacity: int, idle_s: float = 300.0) -> None:
        self.capacity, self.idle_s = capacity, idle_s
        self.load = [0] * workers
        self._owner: OrderedDict[str, tuple[int, float]] = OrderedDict()  # device -> (worker, last seen), LRU order

    def owner(self, device_id: str, now_s: float) -> int | None:
        """Index of the worker that owns ``device_id`` (assigned now when it is new); None when it is new and
        ``capacity`` devices are known."""
        known = self._owner.get(device_id)
        if known is not None:
            worker = known[0]
            self._owner.move_to_end(device_id)
        elif len(self._owner) >= self.capacity:
            return None
        else:
            worker = min(range(len(self.load)), key=self.load.__getitem__)
            self.load[worker] += 1
        self._owner[device_id] = (worker, now_s)
        return worker

    def expire(self, now_s: float) -> list[str]:
        """Forget the devices unseen for ``idle_s`` seconds (monotonic ``now_s``); returns their ids."""
        forgotten = []
        while self._owner:
            device_id, (worker, seen_s) = next(iter(self._owner.items()))
            if now_s - seen_s < self.idle_s:
                break
            del self._owner[device_id]
            self.load[worker] -= 1
            forgotten.append(device_id)
        return forgotten

    def __len__(self) -> int:
        return len(self._owner)
