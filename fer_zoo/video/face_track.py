"""Face detection, tracking and cropping for raw videos: the one path ``preprocess`` and ``predict-video`` share.

A video is decoded frame by frame (PyAV, RGB, never all frames in memory), every frame goes through MediaPipe face
detection, one face is tracked through the clip (:class:`FaceTracker`), and each frame where the tracked face is
found is cropped to a square around its box (:func:`crop_square`), resized and JPEG-encoded. ``preprocess`` writes
those JPEG bytes to disk; ``predict-video`` decodes the very same bytes, so the features it computes are the ones
``extract`` would compute on the output of ``preprocess`` (same crop, same JPEG round trip).

Tracking rule (one person per clip, no jumping between people):

1. Candidates are detections with confidence >= ``min_confidence``.
2. With no track, the most confident candidate starts a *tentative* track. It is confirmed once it has been matched
   in ``min_hits`` consecutive frames (its first frame included); its tentative frames then count as face frames.
   A tentative track that misses a frame is dropped and its frames are "no face" (reason ``unconfirmed``): this
   rejects the short bursts of false detections MediaPipe emits on textures (clouds, logos), 1-4 frames long on the
   bundled test videos. A clip shorter than ``min_hits`` frames whose face is found in every frame is kept.
3. A confirmed track follows, in each frame, the candidate whose box overlaps its last box best (IoU), provided the
   IoU is at least ``iou_min``; other candidates (other people) are ignored.
4. When no candidate overlaps, the frame is "no face" (reason ``no detection`` or ``other face only``) and the
   track is *lost*; it keeps its last box, so the same face coming back at the same place is picked up again. After
   ``max_lost`` consecutive lost frames the track is dropped and rule 2 starts over (re-acquisition: possibly
   another person, confirmed again).

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

Photos are 1-frame clips through the very same path (:func:`track_image`, :func:`track_media`): read as ``extract``
reads an image (``datamodules.frames.read_frames``), the same detector, the same tracker (a 1-frame clip whose only
frame has a detection keeps it: the most confident face of the photo), the same :func:`face_crop`. So a model
trained on ``preprocess``-ed photos and applied by ``predict-video`` to a video sees the same kind of pixels.
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

TRACK_VERSION = "1"
JPEG_QUALITY = 95
SNAP = 0.08  # default box grid, a fraction of the face box (see the module docstring)
#: Settings missing from a ``preprocess.json`` written before they existed, and what was done then.
LEGACY: dict[str, Any] = {"snap": 0.0}
DETECTORS = {"short": 0, "full": 1}  # MediaPipe model_selection: short range (< ~2 m, fast) or full range (< ~5 m)
CSV_COLUMNS = ["frame", "timestamp", "x0", "y0", "x1", "y1", "confidence", "face_found", "image", "reason"]


def recorded_settings(d: dict[str, Any]) -> dict[str, Any]:
    """Crop settings as a ``preprocess.json`` or a store recorded them, with every key added since filled with what
    was done before it existed (:data:`LEGACY`), not today's default."""
    return {**LEGACY, **d}


Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the decoded frame


@dataclass(frozen=True)
class TrackConfig:
    """Everything that changes which frames are face frames and what their crops look like."""

    margin: float = 0.25
    size: int = 224
    min_confidence: float = 0.5
    detector: str = "short"
    min_hits: int = 5
    max_lost: int = 10
    iou_min: float = 0.2
    jpeg_quality: int = JPEG_QUALITY
    snap: float = SNAP

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

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "version": TRACK_VERSION}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrackConfig:
        """Settings as ``to_dict`` (or ``preprocess.json``) wrote them; keys added later take the value that
        reproduces what was done before they existed (:func:`recorded_settings`), not today's default."""
        d = recorded_settings(d)
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass
class Detection:
    box: Box
    score: float


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


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


class FaceTracker:
    """The tracking rule of the module docstring, on detections only (no images): ``step`` per frame, ``finish``.

    ``step`` returns the decisions that became final with this frame, in frame order: nothing while a tentative
    track waits for confirmation, then all of its frames at once.
    """

    def __init__(self, min_confidence: float = 0.5, iou_min: float = 0.2, min_hits: int = 5, max_lost: int = 10):
        self.min_confidence, self.iou_min, self.min_hits, self.max_lost = min_confidence, iou_min, min_hits, max_lost
        self.box: Box | None = None
        self.confirmed = False
        self.lost = 0
        self.pending: list[Decision] = []
        self.frames_seen = 0

    def step(self, frame: int, detections: list[Detection]) -> list[Decision]:
        self.frames_seen += 1
        cands = [d for d in detections if d.score >= self.min_confidence]
        out: list[Decision] = []
        if self.box is not None:
            best = max(cands, key=lambda d: iou(self.box, d.box), default=None)  # type: ignore[arg-type]
            if best is not None and iou(self.box, best.box) >= self.iou_min:
                self.box, self.lost = best.box, 0
                dec = Decision(frame, best.box, best.score)
                if self.confirmed:
                    return [dec]
                self.pending.append(dec)
                if len(self.pending) >= self.min_hits:
                    self.confirmed = True
                    out, self.pending = self.pending, []
                return out
            if not self.confirmed:  # a tentative track that missed a frame: a false alarm
                out.extend(self._reject_pending())
            else:
                self.lost += 1
                if self.lost <= self.max_lost:
                    return [Decision(frame, None, 0.0, "other face only" if cands else "no detection")]
                self.box, self.confirmed = None, False  # lost too long: re-acquire from this frame on
        if not cands:
            return [*out, Decision(frame, None, 0.0, "no detection")]
        best = max(cands, key=lambda d: d.score)
        self.box, self.lost = best.box, 0
        dec = Decision(frame, best.box, best.score)
        if self.min_hits <= 1:
            self.confirmed = True
            return [*out, dec]
        self.confirmed = False
        self.pending = [dec]
        return out

    def _reject_pending(self) -> list[Decision]:
        rejected = [Decision(d.frame, None, 0.0, f"unconfirmed detection (confidence {d.confidence:.2f}, seen in "
                             f"< {self.min_hits} consecutive frames)") for d in self.pending]
        self.pending, self.box = [], None
        return rejected

    def finish(self) -> list[Decision]:
        """Settle a tentative track at the end: kept only when it covers the whole (short) clip."""
        if self.pending and self.pending[0].frame == 0 and len(self.pending) == self.frames_seen:
            out, self.pending = self.pending, []
            return out
        return self._reject_pending()


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
    """One row of ``boxes.csv``; ``jpeg`` holds the encoded crop of a face frame (``None`` otherwise)."""

    frame: int
    timestamp: float
    box: Box | None
    confidence: float
    reason: str = ""
    jpeg: bytes | None = None
    image: str = ""  # file name once written (preprocess)

    @property
    def face_found(self) -> bool:
        return self.box is not None

    def csv_row(self) -> dict[str, Any]:
        b = self.box
        return {"frame": self.frame, "timestamp": round(self.timestamp, 6),
                "x0": round(b[0], 1) if b else "", "y0": round(b[1], 1) if b else "",
                "x1": round(b[2], 1) if b else "", "y1": round(b[3], 1) if b else "",
                "confidence": round(self.confidence, 4) if b else "", "face_found": int(b is not None),
                "image": self.image, "reason": self.reason}


@dataclass
class TrackResult:
    info: VideoInfo
    records: list[FrameRecord] = field(default_factory=list)

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


def track_video(path: str | Path, cfg: TrackConfig, keep: Callable[[int], bool] | None = None,
                detector: FaceDetector | None = None, progress: Callable[[int], None] | None = None) -> TrackResult:
    """Decode, detect, track and crop one video (or photo: a 1-frame clip, see :func:`track_image`);
    ``keep(frame)`` says which face frames keep their JPEG crop.

    ``progress(n)`` is called after each decoded frame with ``n = 1`` (a progress bar's ``update``).

    Raises :class:`ClipReadError` for a missing, corrupt or truncated video. Frames stay buffered (raw RGB) only
    while the tracker has not decided on them, i.e. at most ``min_hits`` frames.
    """
    own = detector is None
    det = detector or FaceDetector(cfg)
    tracker = FaceTracker(cfg.min_confidence, cfg.iou_min, cfg.min_hits, cfg.max_lost)
    waiting: dict[int, tuple[float, np.ndarray]] = {}
    result: TrackResult | None = None

    def settle(decisions: list[Decision]) -> None:
        assert result is not None
        for d in decisions:
            ts, rgb = waiting.pop(d.frame)
            rec = FrameRecord(d.frame, ts, d.box, d.confidence, d.reason)
            if d.box is not None and (keep is None or keep(d.frame)):
                rec.jpeg = face_crop(rgb, d.box, cfg)
            result.records.append(rec)

    try:
        with (open_video(path) if not is_image(path) else _open_image(path)) as (info, frames):
            result = TrackResult(info)
            for i, ts, rgb in frames:
                waiting[i] = (ts, rgb)
                settle(tracker.step(i, det(rgb)))
                if progress is not None:
                    progress(1)
            settle(tracker.finish())
    finally:
        if own:
            det.close()
    assert result is not None and not waiting
    return result


def is_image(path: str | Path) -> bool:
    """A photo by its suffix (:data:`datamodules.frames.IMAGE_SUFFIXES`)."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


@contextlib.contextmanager
def _open_image(path: str | Path) -> Iterator[tuple[VideoInfo, Iterator[tuple[int, float, np.ndarray]]]]:
    """A photo as a 1-frame clip, read exactly as ``extract`` reads it (``read_frames``: OpenCV, RGB)."""
    rgb = read_frames(path).rgb[0]
    yield VideoInfo(Path(path), None, int(rgb.shape[1]), int(rgb.shape[0])), iter([(0, 0.0, rgb)])


def track_image(path: str | Path, cfg: TrackConfig, detector: FaceDetector | None = None) -> TrackResult:
    """:func:`track_video` for a photo: one record, the most confident face's crop (or "no detection").

    Raises :class:`ClipReadError` for a missing, empty or unreadable image."""
    if not is_image(path):
        raise ClipReadError(path, f"not an image ({', '.join(sorted(IMAGE_SUFFIXES))})")
    return track_video(path, cfg, detector=detector)


def write_boxes_csv(path: Path, records: list[FrameRecord]) -> None:
    import csv

    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=CSV_COLUMNS)
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
