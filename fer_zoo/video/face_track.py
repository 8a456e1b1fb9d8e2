"""Face detection, tracking and cropping for raw videos: the one path ``preprocess`` and ``predict-video`` share.

A video is decoded frame by frame (PyAV, RGB, never all frames in memory), every frame goes through MediaPipe face
detection, one face is tracked through the clip (:class:`FaceTracker`), and each frame where the tracked face is
found is cropped to a square around its box (:func:`crop_square`), resized and JPEG-encoded. ``preprocess`` writes
those JPEG bytes to disk; ``predict-video`` decodes the very same bytes, so the features it computes are the ones
``extract`` would compute on the output of ``preprocess`` (same crop, same JPEG round trip).

Tracking (:mod:`fer_zoo.video.tracking`, :class:`~fer_zoo.video.tracking.MultiFaceTracker`): every face is
tracked with a stable person id (``faces="all"``, the default), or at most N faces at once (``faces="2"``), or one
(``faces="largest"``); candidates are detections with confidence >= ``min_confidence``, matched to tracks by IoU
(>= ``iou_min``, optimal assignment), confirmed after ``min_hits`` consecutive frames (rejecting MediaPipe's short
false bursts on clouds and logos), kept through losses of up to ``max_lost`` frames, re-identified after longer
losses by position, size and colour (``reid_*``), optionally detected only every ``detect_every`` frames (boxes in
between interpolated). :func:`track_video` returns one :class:`PersonTrack` per person.

``faces="legacy"`` is the rule before ``faces`` existed, which trees preprocessed then were made with (:data:`LEGACY`):
one track at a time, the most confident candidate when acquired, followed by IoU with its last box (other faces
ignored), kept while lost for up to ``max_lost`` frames, then dropped and re-acquired (possibly another person,
in the same clip, person 1). :class:`FaceTracker` is that rule with per-frame decisions.

Crop: the detection box is first snapped to a grid (``snap``, :func:`snap_box`), then cut as a square of side
``max(w, h) * (1 + 2 * margin)`` centred on it (``margin`` is the fraction of the box size added on each side),
filled with black where it extends past the frame edge (the face stays centred and at the same scale instead of
being shifted), resized to ``size`` x ``size`` (area filter when shrinking), JPEG-encoded (:func:`face_crop`, the one
function that makes every crop).

Why snap: the detector's box moves by a pixel or two whenever the pixels change at all (a photo and the same photo
decoded from H.264: 1-2 px on a 300 px face), and frame encoders move with the smallest shift of their input (the
offline MobileNetV2 by 0.25-0.3 of the spread between different photos for a 0.5-2 px shift; the FER2013
mini-Xception by 0.22 for the re-detected box, 0.05 for the codec itself). Snapped, the same face gets the very same
crop unless the box crosses a cell edge (82 % of still videos of the shared photos at ``snap`` 0.08), at the price of
placing the face up to ``snap / 2`` of its size off-centre and scaling it by up to ``(1 + snap) ** 0.5``, well inside
the margin. Measured in ``benchmarks/bench_still_video.py`` (``shift_sources``). ``snap`` 0 crops at the detected
box (trees preprocessed before ``snap`` existed are read as 0).

Photos are 1-frame clips through the very same path (:func:`track_image`): read as ``extract`` reads an image
(``datamodules.frames.read_frames``), the same detector, the same :func:`face_crop`, and one crop: the most
confident face of the photo (the tracking rule of ``faces="legacy"`` on a 1-frame clip, whatever ``faces`` says).
So a model trained on ``preprocess``-ed photos and applied by ``predict-video`` to a video sees the same kind of
pixels.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.frames import (
    IMAGE_SUFFIXES,
    VIDEO_SUFFIXES,
    ClipReadError,
    check_complete,
    is_hidden,
    open_video_stream,
    read_frames,
    upright,
)
from fer_zoo.video.tracking import Box, Detection, MultiFaceTracker, TrackerStep, colour_histogram, parse_faces
from fer_zoo.video.tracking import iou as iou  # re-exported: callers import it from here

TRACK_VERSION = "1"
JPEG_QUALITY = 95
SNAP = 0.08  # default box grid, a fraction of the face box (see the module docstring)
#: Settings missing from a ``preprocess.json`` written before they existed, and what was done then: crops at the
#: detected box (``snap`` 0), one face at a time by the old rule (``faces`` "legacy"), detection on every frame. The
#: re-identification settings read as today's defaults: "legacy" never re-identifies (one id), so they change nothing.
LEGACY: dict[str, Any] = {"snap": 0.0, "faces": "legacy", "detect_every": 1, "reid_seconds": 2.0, "reid_distance": 1.0,
                          "reid_size_ratio": 1.5, "reid_appearance": 0.9}
DETECTORS = {"short": 0, "full": 1}  # MediaPipe model_selection: short range (< ~2 m, fast) or full range (< ~5 m)
CSV_COLUMNS = ["frame", "timestamp", "x0", "y0", "x1", "y1", "confidence", "face_found", "image", "reason"]
PERSON_COLUMNS = ["person", "interpolated"]  # boxes.csv's last columns: whose face, box interpolated (detect_every)


def recorded_settings(d: dict[str, Any]) -> dict[str, Any]:
    """Crop settings as a ``preprocess.json`` or a store recorded them, with every key added since filled with what
    was done before it existed (:data:`LEGACY`), not today's default."""
    return {**LEGACY, **d}


@dataclass(frozen=True)
class TrackConfig:
    """Everything that changes which frames are face frames, whose face they hold and what their crops look like.

    Tracking (:mod:`fer_zoo.video.tracking`): ``faces`` "all" (every face, one person id each), "largest" (one face
    at a time, the largest when acquired), a number N as a string ("2": at most N at once, the largest), or "legacy"
    (the rule before ``faces`` existed: one at a time, the most confident when acquired, one id); ``detect_every``
    (frames, >= 1) runs the detector on every k-th frame only and interpolates boxes between; ``min_hits``
    (consecutive frames to confirm a face), ``max_lost`` (frames a face may be missing inside a segment), ``iou_min``.
    Re-identification of a face that comes back: within ``reid_seconds`` (seconds; 0: never), centre within
    ``reid_distance`` box widths, size ratio <= ``reid_size_ratio``, colour histogram similarity >=
    ``reid_appearance`` (Bhattacharyya coefficient in [0, 1]; 0: position and size only).
    Raises :class:`ValueError` naming the setting for a value out of range."""

    margin: float = 0.25
    size: int = 224
    min_confidence: float = 0.5
    detector: str = "short"
    min_hits: int = 5
    max_lost: int = 10
    iou_min: float = 0.2
    jpeg_quality: int = JPEG_QUALITY
    snap: float = SNAP
    faces: str = "all"
    detect_every: int = 1
    reid_seconds: float = 2.0
    reid_distance: float = 1.0
    reid_size_ratio: float = 1.5
    reid_appearance: float = 0.9

    def __post_init__(self) -> None:
        if self.margin < 0:
            raise ValueError(f"margin must be >= 0, got {self.margin}")
        if self.size < 16:
            raise ValueError(f"size must be >= 16 pixels, got {self.size}")
        if not 0.0 < self.min_confidence <= 1.0:
            raise ValueError(f"min_confidence must be in (0, 1], got {self.min_confidence}")
        if self.detector not in DETECTORS:
            raise ValueError(f"detector must be one of {sorted(DETECTORS)}, got {self.detector!r}")
        if self.min_hits < 1 or self.max_lost < 0:
            raise ValueError(f"min_hits must be >= 1 and max_lost >= 0, got {self.min_hits}, {self.max_lost}")
        if not 0.0 < self.iou_min <= 1.0:
            raise ValueError(f"iou_min must be in (0, 1], got {self.iou_min}")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality must be in [1, 100], got {self.jpeg_quality}")
        if not 0.0 <= self.snap <= 0.25:
            raise ValueError(f"snap must be in [0, 0.25] (a fraction of the face box), got {self.snap}")
        object.__setattr__(self, "faces", parse_faces(self.faces))  # "2" and 2 are one setting
        if isinstance(self.detect_every, bool) or int(self.detect_every) != self.detect_every or self.detect_every < 1:
            raise ValueError(f"detect_every must be an integer >= 1 (frames), got {self.detect_every!r}")
        object.__setattr__(self, "detect_every", int(self.detect_every))
        if not 0.0 <= self.reid_seconds <= 60.0:
            raise ValueError(f"reid_seconds must be in [0, 60] seconds (0: no re-identification), "
                             f"got {self.reid_seconds}")
        if not self.reid_distance > 0 or not self.reid_size_ratio >= 1.0:
            raise ValueError(f"reid_distance must be > 0 (box widths) and reid_size_ratio >= 1, got "
                             f"{self.reid_distance}, {self.reid_size_ratio}")
        if not 0.0 <= self.reid_appearance <= 1.0:
            raise ValueError(f"reid_appearance must be in [0, 1] (0: no appearance check), got {self.reid_appearance}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": TRACK_VERSION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackConfig:
        """Settings as ``to_dict`` (or ``preprocess.json``) wrote them; keys added later take the value that
        reproduces what was done before they existed (:func:`recorded_settings`), not today's default."""
        d = recorded_settings(d)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Decision:
    """The verdict on one frame: the tracked face's box and confidence, or why there is none."""

    frame: int
    box: Box | None
    confidence: float
    reason: str = ""

    @property
    def face_found(self) -> bool:
        return self.box is not None


class FaceTracker:
    """The single-face rule trees were made with before ``faces`` existed (``faces="legacy"`` of
    :class:`~fer_zoo.video.tracking.MultiFaceTracker`), with one :class:`Decision` per frame.

    ``step`` returns the decisions that became final with this frame, in frame order (nothing while a tentative
    track waits for confirmation or a lost one for its return); ``finish`` the rest. Every frame is decided once.
    """

    def __init__(self, min_confidence: float = 0.5, iou_min: float = 0.2, min_hits: int = 5, max_lost: int = 10):
        cfg = TrackConfig(min_confidence=min_confidence, iou_min=iou_min, min_hits=min_hits, max_lost=max_lost,
                          faces="legacy")
        self._tracker = MultiFaceTracker(cfg)
        self._ledger = FrameLedger(cfg)
        self._done = 0

    def step(self, frame: int, detections: list[Detection]) -> list[Decision]:
        self._ledger.note(frame, float(frame), detections)
        return self._settle(self._tracker.step(frame, float(frame), detections), self._tracker.horizon)

    def finish(self) -> list[Decision]:
        return self._settle(self._tracker.finish(), self._ledger.frames)

    def _settle(self, step: TrackerStep, upto: int) -> list[Decision]:
        self._ledger.add(step)
        out = []
        for f in range(self._done, upto):
            rec = self._ledger.record(f, 1)
            out.append(Decision(f, rec.box, rec.confidence, rec.reason))
        self._done = max(self._done, upto)
        return out


def snap_box(box: Box, snap: float) -> Box:
    """The square box a crop is cut around: side ``max(w, h)`` rounded to a power of ``1 + snap``, centre rounded to
    multiples of ``snap`` times that side. Boxes that differ by less than a cell give the very same crop; ``snap`` 0
    returns ``box`` unchanged. Pixels of the decoded frame in, pixels out."""
    if snap <= 0:
        return box
    side = max(box[2] - box[0], box[3] - box[1])
    if side <= 0:
        return box
    step = math.log1p(snap)
    s = math.exp(round(math.log(side) / step) * step)
    cell = snap * s
    cx = round((box[0] + box[2]) / 2.0 / cell) * cell
    cy = round((box[1] + box[3]) / 2.0 / cell) * cell
    return (cx - s / 2.0, cy - s / 2.0, cx + s / 2.0, cy + s / 2.0)


def crop_square(rgb: np.ndarray, box: Box, margin: float, size: int) -> np.ndarray:
    """A ``size`` x ``size`` RGB crop: the square around ``box`` enlarged by ``margin``, black past the edges."""
    import cv2

    h, w = rgb.shape[:2]
    side = max(box[2] - box[0], box[3] - box[1]) * (1.0 + 2.0 * margin)
    n = max(1, int(round(side)))
    cx, cy = (box[0] + box[2]) / 2.0, (box[1] + box[3]) / 2.0
    x0, y0 = int(round(cx - n / 2.0)), int(round(cy - n / 2.0))
    canvas = np.zeros((n, n, 3), np.uint8)
    sx0, sy0, sx1, sy1 = max(x0, 0), max(y0, 0), min(x0 + n, w), min(y0 + n, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = rgb[sy0:sy1, sx0:sx1]
    interp = cv2.INTER_AREA if n > size else cv2.INTER_LINEAR
    return cv2.resize(canvas, (size, size), interpolation=interp)


def face_crop(rgb: np.ndarray, box: Box, cfg: TrackConfig) -> bytes:
    """The JPEG bytes of the face crop of one frame or photo (``rgb`` uint8 ``[H, W, 3]``, ``box`` in its pixels):
    :func:`crop_square` of the box snapped with ``cfg.snap`` (:func:`snap_box`), with ``cfg.margin`` and
    ``cfg.size``, encoded at ``cfg.jpeg_quality``. Every crop that ``preprocess`` writes and ``predict-video``
    extracts from, of a video frame or of a photo, is made here."""
    return encode_jpeg(crop_square(rgb, snap_box(box, cfg.snap), cfg.margin, cfg.size), cfg.jpeg_quality)


def encode_jpeg(rgb: np.ndarray, quality: int = JPEG_QUALITY) -> bytes:
    import cv2

    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(rgb[:, :, ::-1]), [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise RuntimeError("JPEG encoding failed")
    return buf.tobytes()


def decode_jpeg(data: bytes) -> np.ndarray:
    """RGB uint8 from JPEG bytes, exactly as ``datamodules.frames.read_frames`` reads a written frame file."""
    import cv2

    bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    return np.ascontiguousarray(bgr[:, :, ::-1])


# ---------------------------------------------------------------------------------------------------- decoding


@dataclass
class VideoInfo:
    path: Path
    fps: float | None
    width: int  # as coded, before any display rotation
    height: int


@contextlib.contextmanager
def open_video(path: str | Path) -> Iterator[tuple[VideoInfo, Iterator[tuple[int, float, np.ndarray]]]]:
    """``(info, frames)`` where ``frames`` yields ``(index, timestamp_s, rgb)``; errors are :class:`ClipReadError`.

    Strict like ``read_frames``: a stream that breaks part way raises (the clip is reported, not half used).
    Timestamps are the frame's presentation time when the container has one, else ``index / fps``.
    """
    import av

    p = Path(path)
    if not p.exists():
        raise ClipReadError(p, "no such file")
    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) video")
    try:
        container = av.open(str(p))
    except (av.FFmpegError, ValueError, OSError) as err:
        raise ClipReadError(p, f"not a readable video ({type(err).__name__}: {err})") from err
    with container:
        stream = open_video_stream(container, p)  # the real video, not a cover picture; strict decoding
        fps = float(stream.average_rate) if stream.average_rate else None
        info = VideoInfo(p, fps, int(stream.codec_context.width), int(stream.codec_context.height))

        def frames() -> Iterator[tuple[int, float, np.ndarray]]:
            n = 0
            times: list[float] = []
            try:
                for frame in container.decode(stream):
                    t = frame.time
                    ts = float(t) if t is not None else (n / fps if fps else float(n))
                    times.append(ts)
                    # one conversion thread and the display rotation applied: see datamodules/frames.py
                    yield n, ts, upright(frame.to_ndarray(format="rgb24", threads=1), frame.rotation)
                    n += 1
                if n:
                    check_complete(p, stream, times)
            except (av.FFmpegError, ValueError, OSError) as err:
                raise ClipReadError(p, f"cannot decode video after {n} frames ({type(err).__name__}: {err})") from err
            if n == 0:
                raise ClipReadError(p, "video decoded to zero frames")

        yield info, frames()


def probe_video(path: str | Path) -> None:
    """Raise :class:`ClipReadError` unless ``path`` opens as a container with a video stream (nothing decoded)."""
    import av

    p = Path(path)
    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) file")
    try:
        with av.open(str(p)) as container:
            open_video_stream(container, p)
    except (av.FFmpegError, ValueError, OSError) as err:
        raise ClipReadError(p, f"not a readable video ({type(err).__name__}: {err})") from err


class FaceDetector:
    """MediaPipe face detection (legacy solution, models bundled in the wheel: works offline)."""

    def __init__(self, cfg: TrackConfig) -> None:
        from extractors._mediapipe import mediapipe as mp

        self._fd = mp.solutions.face_detection.FaceDetection(
            model_selection=DETECTORS[cfg.detector], min_detection_confidence=cfg.min_confidence)

    def __call__(self, rgb: np.ndarray) -> list[Detection]:
        h, w = rgb.shape[:2]
        res = self._fd.process(np.ascontiguousarray(rgb))
        out = []
        for d in res.detections or []:
            b = d.location_data.relative_bounding_box
            out.append(Detection((b.xmin * w, b.ymin * h, (b.xmin + b.width) * w, (b.ymin + b.height) * h),
                                 float(d.score[0])))
        return out

    def close(self) -> None:
        self._fd.close()


# ---------------------------------------------------------------------------------------------------- one video


@dataclass
class FrameRecord:
    """One row of ``boxes.csv``; ``jpeg`` holds the encoded crop of a face frame (``None`` otherwise).

    ``person``: the person id whose face the row is about (0: none, a video without anyone); ``interpolated``: the box
    was interpolated between two detections (``detect_every`` > 1)."""

    frame: int
    timestamp: float
    box: Box | None
    confidence: float
    reason: str = ""
    jpeg: bytes | None = None
    image: str = ""  # file name once written (preprocess)
    person: int = 0
    interpolated: bool = False

    @property
    def face_found(self) -> bool:
        return self.box is not None

    def csv_row(self) -> dict[str, Any]:
        b = self.box
        return {"frame": self.frame, "timestamp": round(self.timestamp, 6),
                "x0": round(b[0], 1) if b else "", "y0": round(b[1], 1) if b else "",
                "x1": round(b[2], 1) if b else "", "y1": round(b[3], 1) if b else "",
                "confidence": round(self.confidence, 4) if b else "", "face_found": int(b is not None),
                "image": self.image, "reason": self.reason, "person": self.person or "",
                "interpolated": int(self.interpolated) if b else ""}


class _Rows:
    """Per-frame views of ``records`` (one :class:`FrameRecord` per decoded frame, in frame order)."""

    records: list[FrameRecord]

    @property
    def n_frames(self) -> int:
        return len(self.records)

    @property
    def face_frames(self) -> int:
        return sum(r.face_found for r in self.records)

    @property
    def face_found(self) -> np.ndarray:
        return np.array([r.face_found for r in self.records], bool)

    @property
    def timestamps(self) -> np.ndarray:
        return np.array([r.timestamp for r in self.records], np.float64)


@dataclass
class PersonTrack(_Rows):
    """One person of a video: ``records`` has one row per decoded frame (the video's frame numbers), with this
    person's box on the frames where their face was tracked (``face_found``) and why not on the others."""

    person: int
    records: list[FrameRecord] = field(default_factory=list)


@dataclass
class TrackResult(_Rows):
    """Every person tracked in one video (``people``, by id) and, in ``frames``, one row per frame for a video
    without anyone (why no face).

    ``records``: person 1's rows (or ``frames`` when nobody was found), what a single-face caller reads; with
    ``faces="legacy"`` (and for photos) person 1 is the one tracked face, as before ``faces`` existed."""

    info: VideoInfo
    people: list[PersonTrack] = field(default_factory=list)
    frames: list[FrameRecord] = field(default_factory=list)

    @property
    def records(self) -> list[FrameRecord]:  # type: ignore[override]
        return self.people[0].records if self.people else self.frames


class FrameLedger:
    """What ``boxes.csv`` needs per frame: its timestamp, whether detection ran and found candidates, false alarms
    (:attr:`TrackerStep.rejected`), and every person's decided rows; :meth:`record` gives a person's row of a frame."""

    def __init__(self, cfg: TrackConfig) -> None:
        self.cfg = cfg
        self.times: list[float] = []
        self.cands: list[int] = []  # candidates (score >= min_confidence) per frame; -1: detection skipped
        self.rejected: dict[int, float] = {}
        self.claimed: dict[int, dict[int, FrameRecord]] = {}

    @property
    def frames(self) -> int:
        return len(self.times)

    def note(self, frame: int, time: float, detections: list[Detection] | None) -> None:
        if frame != len(self.times):
            raise ValueError(f"frames must come in order from 0: expected {len(self.times)}, got {frame}")
        self.times.append(time)
        self.cands.append(-1 if detections is None else
                          sum(d.score >= self.cfg.min_confidence for d in detections))

    def add(self, step: TrackerStep, jpeg: Callable[[Any], bytes | None] | None = None) -> None:
        """Record a step's decisions; ``jpeg(decision)`` gives the crop of a decision with a box."""
        self.rejected.update(step.rejected)
        for d in step.decisions:
            rec = FrameRecord(d.frame, self.times[d.frame], d.box, d.confidence, d.reason, person=d.person,
                              interpolated=d.interpolated)
            if d.box is not None and jpeg is not None:
                rec.jpeg = jpeg(d)
            self.claimed.setdefault(d.person, {})[d.frame] = rec

    def reason(self, frame: int) -> str:
        """Why a frame has no box for a person the tracker said nothing about at that frame."""
        if frame in self.rejected:
            return (f"unconfirmed detection (confidence {self.rejected[frame]:.2f}, seen in < {self.cfg.min_hits} "
                    "consecutive frames)")
        n = self.cands[frame]
        if n < 0:
            return f"detection skipped (detect_every {self.cfg.detect_every})"
        return "other face only" if n else "no detection"

    def record(self, frame: int, person: int) -> FrameRecord:
        rec = self.claimed.get(person, {}).get(frame)
        return rec if rec is not None else FrameRecord(frame, self.times[frame], None, 0.0, self.reason(frame),
                                                       person=person)

    def result(self, info: VideoInfo) -> TrackResult:
        n = self.frames
        people = [PersonTrack(p, [self.record(f, p) for f in range(n)]) for p in sorted(self.claimed)]
        return TrackResult(info, people, [self.record(f, 0) for f in range(n)])


def _with_last(frames: Iterator[tuple[int, float, np.ndarray]]) -> Iterator[tuple[int, float, np.ndarray, bool]]:
    """``frames`` with a flag on the last one (decoded one frame ahead)."""
    it = iter(frames)
    prev = next(it, None)
    while prev is not None:
        nxt = next(it, None)
        yield (*prev, nxt is None)
        prev = nxt


def track_video(path: str | Path, cfg: TrackConfig, keep: Callable[[int], bool] | None = None,
                detector: FaceDetector | None = None, progress: Callable[[int], None] | None = None) -> TrackResult:
    """Decode, detect, track and crop one video (or photo: a 1-frame clip, see :func:`track_image`): one
    :class:`PersonTrack` per person (``cfg.faces``), each with a row per decoded frame and the JPEG crop of its face
    frames; ``keep(frame)`` says which face frames keep their crop (default: all).

    Detection runs on the frames :meth:`MultiFaceTracker.wants_detection` asks for (every ``cfg.detect_every``-th,
    every frame while a face is new or lost) and on the last frame. A photo is tracked with ``faces="legacy"``: its
    most confident face. ``progress(n)`` is called after each decoded frame with ``n = 1`` (a progress bar's
    ``update``).

    Raises :class:`ClipReadError` for a missing, corrupt or truncated video. Frames stay buffered (raw RGB) only
    while the tracker may still decide on them (:attr:`MultiFaceTracker.horizon`: at most ``min_hits`` frames, or
    ``max_lost + detect_every`` while a face is lost).
    """
    import dataclasses

    own = detector is None
    det = detector or FaceDetector(cfg)
    tcfg = dataclasses.replace(cfg, faces="legacy") if is_image(path) else cfg
    tracker = MultiFaceTracker(tcfg)
    ledger = FrameLedger(tcfg)
    waiting: dict[int, np.ndarray] = {}
    low = 0
    histograms = tcfg.faces != "legacy" and tcfg.reid_seconds > 0 and tcfg.reid_appearance > 0

    def crop(d: Any) -> bytes | None:
        return face_crop(waiting[d.frame], d.box, cfg) if keep is None or keep(d.frame) else None

    try:
        with (open_video(path) if not is_image(path) else _open_image(path)) as (info, frames):
            for i, ts, rgb, last in _with_last(frames):
                waiting[i] = rgb
                dets = det(rgb) if tracker.wants_detection(i) or last else None
                ledger.note(i, ts, dets)
                look = (lambda box, rgb=rgb: colour_histogram(rgb, box)) if histograms else None
                ledger.add(tracker.step(i, ts, dets, look), crop)
                while low < tracker.horizon:
                    waiting.pop(low, None)
                    low += 1
                if progress is not None:
                    progress(1)
            ledger.add(tracker.finish(), crop)
    finally:
        if own:
            det.close()
    return ledger.result(info)


def is_image(path: str | Path) -> bool:
    """A photo by its suffix (:data:`datamodules.frames.IMAGE_SUFFIXES`)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def _open_image(path: str | Path) -> Iterator[tuple[VideoInfo, Iterator[tuple[int, float, np.ndarray]]]]:
    """A photo as a 1-frame clip, read exactly as ``extract`` reads it (``read_frames``: OpenCV, RGB)."""
    rgb = read_frames(path).rgb[0]
    yield VideoInfo(Path(path), None, int(rgb.shape[1]), int(rgb.shape[0])), iter([(0, 0.0, rgb)])


def track_image(path: str | Path, cfg: TrackConfig, detector: FaceDetector | None = None) -> TrackResult:
    """:func:`track_video` for a photo: one record, the most confident face's crop (or "no detection"), whatever
    ``cfg.faces`` says.

    Raises :class:`ClipReadError` for a missing, empty or unreadable image."""
    if not is_image(path):
        raise ClipReadError(path, f"not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return track_video(path, cfg, detector=detector)


def write_boxes_csv(path: Path, records: list[FrameRecord]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS + PERSON_COLUMNS)
        w.writeheader()
        for r in records:
            w.writerow(r.csv_row())


# ---------------------------------------------------------------------------------------------------- inputs


class InputError(ValueError):
    """The command line names something that cannot be processed at all (exit status 2)."""


def collect_videos(inputs: list[str | Path], photos: bool = False) -> list[Path]:
    """Video files named directly or found (recursively, sorted) in folders; a non-video file given by name raises.

    ``photos``: images (:data:`datamodules.frames.IMAGE_SUFFIXES`) count as inputs too (each one a 1-frame clip)."""
    suffixes = VIDEO_SUFFIXES | IMAGE_SUFFIXES if photos else VIDEO_SUFFIXES
    what = "videos or photos" if photos else "videos"
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                           and not any(is_hidden(part) for part in f.relative_to(p).parts))
            if not found:
                raise InputError(f"{p}: folder holds no {what} ({', '.join(sorted(suffixes))})")
            out.extend(found)
        elif p.is_file():
            if p.suffix.lower() not in suffixes:
                raise InputError(f"{p}: not a {'video or photo' if photos else 'video'} file (suffix "
                                 f"{p.suffix or '(none)'!r}; expected one of {', '.join(sorted(suffixes))})")
            out.append(p)
        else:
            raise InputError(f"{p}: no such file or folder")
    if not out:
        raise InputError(f"no input {what} given")
    seen: set[Path] = set()
    return [p for p in out if not (p.resolve() in seen or seen.add(p.resolve()))]  # type: ignore[func-returns-value]


def clip_ids(videos: list[Path], dfew_numbers: bool = True) -> dict[Path, str]:
    """One id per video: the file stem, made unique (``_<ext>``, then ``_2``, ... on a clash).

    ``dfew_numbers``: zero-pad numeric stems to 5 digits, as DFEW's clip ids are (``123.mp4`` -> ``00123``).
    """
    def base(p: Path) -> str:
        return p.stem.zfill(5) if dfew_numbers and p.stem.isdigit() else p.stem

    counts: dict[str, int] = {}
    for v in videos:
        counts[base(v)] = counts.get(base(v), 0) + 1
    ids: dict[Path, str] = {}
    used: set[str] = set()
    for v in videos:
        cid = base(v) if counts[base(v)] == 1 else f"{base(v)}_{v.suffix.lstrip('.').lower()}"
        k, unique = 2, cid
        while unique in used:
            unique, k = f"{cid}_{k}", k + 1
        used.add(unique)
        ids[v] = unique
    return ids
