"""The recognition engine: frames of many devices in, face-track events out. No MQTT, no threads.

Per frame of a device: skip it cheaply when nothing moved and no track is live (motion), detect the faces, follow them
as tracks (:mod:`recognizer.tracking`), measure each view (:mod:`recognizer.quality`), encode only the views a track
wants (first views, better views, every ``track_resample_s``; never a face that fails the quality gate), match them
against the gallery and let each track's votes decide who it is. A track's event goes out when it is first decided,
when its identity changes and when it ends.

One engine serves the devices given to it (a worker process of the recognizer, or ``facebus faces identify``); the
state it keeps per device (tracks, the motion reference) is bounded by ``max_devices`` and ``track_max``.
"""

from __future__ import annotations

import base64
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import datetime

import cv2
import numpy as np

from facebus.events import EventType, FaceEvent, FaceQuality, TrackBox, TracksMessage, utc_now
from facebus.images import Box, crop_jpeg, decode_jpeg
from facebus.settings import RecognizerSettings
from recognizer.annotate import annotated_jpeg
from recognizer.matching import GalleryIndex
from recognizer.models import FaceModel, load_model
from recognizer.quality import Quality, measure
from recognizer.tracking import Identity, Track, Tracker, TrackPolicy

MOTION_SIZE_PX = (64, 36)  # frames are compared at this size (width, height), in grey


@dataclass(frozen=True)
class BestView:
    """The view a track's events show: its crop, box, quality and the frame's size."""

    crop_jpeg: bytes
    box: Box
    quality: Quality
    frame_size_px: tuple[int, int]  # (width, height)


@dataclass
class FrameResult:
    """What one frame gave: events to publish; the live tracks to publish (None when there are none and the
    device's previous frame had none either, so an empty scene sends nothing); whether it was skipped as still."""

    events: list[FaceEvent] = field(default_factory=list)
    tracks: TracksMessage | None = None
    annotated: bytes | None = None  # JPEG of the frame with its tracks drawn, when one is due (annotated_fps_max)
    still: bool = False
    faces: int = 0
    encoded: int = 0


@dataclass
class _Device:
    tracker: Tracker
    motion_ref: tuple[np.ndarray, np.ndarray] | None = None  # (grey 64x36, its histogram) of the last frame
    last_frame_s: float = 0.0  # monotonic time the last frame arrived
    had_tracks: bool = False  # the last processed frame showed tracks
    last_captured_at: datetime | None = None
    last_annotated_s: float = float("-inf")  # monotonic time of the last annotated frame
    best_views: dict[str, BestView] = field(default_factory=dict)  # track id -> its best view


def policy_of(settings: RecognizerSettings, model: str) -> TrackPolicy:
    """The track policy of ``settings`` for face model ``model`` (whose thresholds apply). The consistency rule asks
    for half the margin, within ``track_consistent_band`` above the tolerance."""
    limits = settings.thresholds(model)
    return TrackPolicy(
        timeout_s=settings.track_timeout_s,
        min_votes=settings.track_min_votes,
        resample_s=settings.track_resample_s,
        max_tracks=settings.track_max,
        min_face_px=limits.min_face_px,
        min_sharpness=limits.min_sharpness,
        consistent_votes=settings.track_consistent_votes,
        consistent_distance=limits.tolerance + settings.track_consistent_band,
        margin=limits.margin / 2,
    )


def model_of(settings: RecognizerSettings) -> FaceModel:
    """The face model named by ``settings.model``, configured for video frames."""
    if settings.model == "dlib":
        return load_model("dlib", settings.detect_max_width_px, upsample=settings.detect_upsample,
                          profiles=settings.detect_profiles)
    return load_model(settings.model, settings.detect_max_width_px, score_threshold=settings.detect_score)


class Engine:
    """Face tracks and their events for the devices whose frames it is given. Not thread-safe."""

    def __init__(self, settings: RecognizerSettings, model: FaceModel | None = None) -> None:
        self.settings = settings
        self.model = model or model_of(settings)
        limits = settings.thresholds(self.model.name)
        self.tolerance, self.margin = limits.tolerance, limits.margin
        self.policy = policy_of(settings, self.model.name)
        self.index = GalleryIndex([], self.model.name)
        self._devices: OrderedDict[str, _Device] = OrderedDict()

    def set_gallery(self, index: GalleryIndex) -> None:
        """Match against ``index`` from now on. Raises ValueError when its encodings come from another model."""
        if index.model != self.model.name:
            raise ValueError(f"gallery encoded with {index.model!r} cannot be matched with {self.model.name!r}")
        self.index = index

    @property
    def devices(self) -> int:
        return len(self._devices)

    def live_tracks(self) -> int:
        return sum(len(d.tracker.tracks) for d in self._devices.values())

    # -- frames ----------------------------------------------------------------------------------------------------

    def process_jpeg(self, device_id: str, jpeg: bytes, captured_at: datetime,
                     now_s: float | None = None) -> FrameResult:
        """:meth:`process` on JPEG (or PNG) bytes. Raises facebus.images.ImageError for a frame that is empty, over
        ``max_frame_bytes`` or ``max_frame_pixels``, or does not decode."""
        rgb = decode_jpeg(jpeg, self.settings.max_frame_bytes, self.settings.max_frame_pixels)
        return self.process(device_id, rgb, captured_at, now_s)

    def process(self, device_id: str, rgb: np.ndarray, captured_at: datetime,
                now_s: float | None = None) -> FrameResult:
        """One frame of ``device_id`` (RGB uint8, shape (height, width, 3)) captured at ``captured_at``; ``now_s`` is
        the monotonic arrival time (default: now), used to end the tracks of devices that went quiet."""
        result = FrameResult()
        device = self._device(device_id, result)
        device.last_frame_s = time.monotonic() if now_s is None else now_s
        if device.last_captured_at is not None and captured_at < device.last_captured_at:
            captured_at = device.last_captured_at  # a device's time never runs backwards for its tracks
        device.last_captured_at = captured_at
        motion = self._motion(device, rgb)
        if motion == "still":
            result.still = True
            return result
        if motion == "cut":
            result.events += self._end_device(device)
        detections = self.model.detect(rgb)
        assigned, ended = device.tracker.update([d.box for d in detections], captured_at)
        for track in ended:
            result.events += self._end(device, track, captured_at)
        wanted = []
        for detection, track in zip(detections, assigned, strict=True):
            if track is None:
                continue
            quality = measure(rgb, detection)
            if track.wants_sample(quality, captured_at, self.policy):
                wanted.append((detection, track, quality))
            else:
                problem = quality.problem(self.policy.min_face_px, self.policy.min_sharpness)
                if problem is not None and track.add_gated(problem, quality):
                    device.best_views[track.track_id] = self._view(rgb, detection.box, quality)
        encodings = self.model.encode(rgb, [d for d, _, _ in wanted])
        for (detection, track, quality), encoding in zip(wanted, encodings, strict=True):
            match = self.index.match(encoding, self.tolerance, self.margin)
            if track.add_sample(match, quality, captured_at, self.policy, encoding):
                device.best_views[track.track_id] = self._view(rgb, detection.box, quality)
        for track in device.tracker.tracks.values():
            if track.last_seen == captured_at:
                result.events += self._announce(device, track, track.decide(self.policy), captured_at)
        result.faces, result.encoded = len(detections), len(wanted)
        boxes = [self._track_box(t) for t in assigned if t is not None]
        if boxes or device.had_tracks:
            result.tracks = TracksMessage(device_id=device_id, captured_at=captured_at, frame_width_px=rgb.shape[1],
                                          frame_height_px=rgb.shape[0], tracks=boxes)
        device.had_tracks = bool(boxes)
        fps = self.settings.annotated_fps_max
        if fps > 0 and device.last_frame_s - device.last_annotated_s >= 1 / fps:
            device.last_annotated_s = device.last_frame_s
            result.annotated = annotated_jpeg(rgb, boxes, self.settings.annotated_max_width_px)
        return result

    def expire_idle(self, now_s: float | None = None) -> list[FaceEvent]:
        """End the tracks of devices that sent no frame for ``track_timeout_s`` (monotonic ``now_s``, default now)
        and forget such devices. Returns the events of the ended tracks."""
        now_s = time.monotonic() if now_s is None else now_s
        events = []
        for device_id, device in list(self._devices.items()):
            if now_s - device.last_frame_s >= self.policy.timeout_s:
                events += self._end_device(device)
                del self._devices[device_id]
        return events

    def finish(self) -> list[FaceEvent]:
        """End every live track of every device (end of a video, shutdown); the events of those tracks."""
        events = []
        for device in self._devices.values():
            events += self._end_device(device)
        self._devices.clear()
        return events

    # -- internals -------------------------------------------------------------------------------------------------

    def _device(self, device_id: str, result: FrameResult) -> _Device:
        """The state of ``device_id``, created when new; beyond ``max_devices`` the device quiet the longest is
        forgotten and its tracks end (their events go into ``result``)."""
        device = self._devices.get(device_id)
        if device is None:
            while len(self._devices) >= self.settings.max_devices:
                _, oldest = self._devices.popitem(last=False)
                result.events += self._end_device(oldest)
            device = self._devices[device_id] = _Device(Tracker(device_id, self.policy))
        else:
            self._devices.move_to_end(device_id)
        return device

    def _motion(self, device: _Device, rgb: np.ndarray) -> str:
        """``cut``: the grey-level histogram changed so much that the scene did (a cut in a video, a camera that was
        moved: every live track ends); ``still``: the frame hardly differs from the last processed one and no track
        is live (it is skipped and does not become the reference); else ``moving``. Measured on grey 64x36 copies:
        Bhattacharyya distance of 16-bin histograms for cuts, mean absolute difference (0-255 levels) for motion."""
        small = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), MOTION_SIZE_PX, interpolation=cv2.INTER_AREA)
        histogram = cv2.calcHist([small], [0], None, [16], [0, 256])
        histogram /= max(float(histogram.sum()), 1.0)
        ref = device.motion_ref
        device.motion_ref = (small, histogram)
        if ref is None:
            return "moving"
        if cv2.compareHist(histogram, ref[1], cv2.HISTCMP_BHATTACHARYYA) >= self.settings.scene_cut_threshold:
            return "cut"
        threshold = self.settings.motion_threshold
        if threshold > 0 and not device.tracker.tracks and float(cv2.absdiff(small, ref[0]).mean()) < threshold:
            device.motion_ref = ref
            return "still"
        return "moving"

    def _view(self, rgb: np.ndarray, box: Box, quality: Quality) -> BestView:
        return BestView(crop_jpeg(rgb, box, self.settings.crop_max_px), box, quality, (rgb.shape[1], rgb.shape[0]))

    def _track_box(self, track: Track) -> TrackBox:
        announced = track.announced
        return TrackBox(track_id=track.track_id, box=track.box, person=announced.person if announced else None,
                        category=announced.category if announced else None, samples=track.samples)

    def _announce(self, device: _Device, track: Track, identity: Identity | None, at: datetime) -> list[FaceEvent]:
        if identity is None:
            return []
        previous, track.announced = track.announced, identity
        if previous is None:
            return [self._event(device, track, EventType.decided, at)]
        if identity.person != previous.person:
            return [self._event(device, track, EventType.changed, at)]
        return []

    def _end(self, device: _Device, track: Track, at: datetime) -> list[FaceEvent]:
        events = self._announce(device, track, track.decide(self.policy, ended=True), at)
        events.append(self._event(device, track, EventType.ended, track.last_seen))
        device.best_views.pop(track.track_id, None)
        return events

    def _end_device(self, device: _Device) -> list[FaceEvent]:
        events = []
        for track in device.tracker.end_all():
            events += self._end(device, track, track.last_seen)
        return events

    def _event(self, device: _Device, track: Track, event_type: EventType, at: datetime) -> FaceEvent:
        identity, view = track.announced, device.best_views[track.track_id]
        match = identity.match
        event = FaceEvent(
            event_type=event_type,
            track_id=track.track_id,
            model=self.model.name,
            device_id=track.device_id,
            captured_at=at,
            recognized_at=utc_now(),
            first_seen=track.first_seen,
            last_seen=track.last_seen,
            person=identity.person,
            category=identity.category,
            reason=identity.reason,
            distance=match.distance if match else None,
            tolerance=self.tolerance,
            margin=self.margin,
            second_person=match.second_person if match else None,
            second_distance=match.second_distance if match else None,
            matched_image=match.image_key if match else None,
            frames=track.frames,
            samples=track.samples,
            votes=dict(track.votes),
            quality=FaceQuality(width_px=view.quality.width_px, sharpness=round(view.quality.sharpness, 1),
                                frontal=round(view.quality.frontal, 3)),
            box=view.box,
            frame_width_px=view.frame_size_px[0],
            frame_height_px=view.frame_size_px[1],
            crop_jpeg_b64=base64.b64encode(view.crop_jpeg).decode("ascii"),
        )
        if identity.person is None:
            event._encodings = list(track.encodings)  # for the visitor (recognizer.visitors), never published
        return event
