"""Decoding a clip (video file, frame folder or single image) into RGB frames, with an optional uniform frame cap.

Two ways to read, with the same frames, indices and timestamps: :func:`read_frames` returns them all as one array;
:func:`stream_frames` yields them one at a time, so a consumer that works frame by frame (the extraction workers)
holds one full-size frame instead of the whole clip.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg"}
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


class ClipReadError(RuntimeError):
    """A clip could not be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = str(path)
        self.reason = reason


@dataclass
class Frames:
    """Decoded RGB frames ``[T, H, W, 3]`` uint8 with the source frame index and timestamp (s) of each."""

    rgb: np.ndarray
    indices: np.ndarray
    timestamps: np.ndarray
    fps: float | None

    def __len__(self) -> int:
        return len(self.rgb)

    def __iter__(self) -> Iterator[np.ndarray]:
        return iter(self.rgb)


def cap_indices(n: int, max_frames: int | None) -> np.ndarray:
    """Uniformly spaced indices of at most ``max_frames`` out of ``n`` (all when uncapped), first and last kept."""
    if max_frames is None or max_frames <= 0 or n <= max_frames:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max_frames)).astype(np.int64))


def upright(rgb: np.ndarray, rotation: float) -> np.ndarray:
    """A decoded frame as it is meant to be shown.

    Phone videos store frames sideways plus a display rotation (``rotation``: degrees counter-clockwise, PyAV's
    ``VideoFrame.rotation``); a face left sideways is missed by the face detectors. Quarter turns only.
    """
    k = round(rotation / 90) % 4
    return np.ascontiguousarray(np.rot90(rgb, k)) if k else rgb


def read_frames(path: str | Path, max_frames: int | None = None, threads: int = 0) -> Frames:
    """Read a clip upright (display rotation applied); raise :class:`ClipReadError` with the reason when it is
    missing, empty or corrupt.

    ``threads``: video decoder threads (0: FFmpeg picks one per core). Processes that decode side by side (the
    extraction's loader workers) use 1 each: more threads than cores only burn CPU.
    """
    p = Path(path)
    if not p.exists():
        raise ClipReadError(p, "no such file or folder")
    if p.is_dir():
        return _read_folder(p, max_frames)
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        rgb = _read_image(p)[None]
        return Frames(rgb, np.zeros(1, np.int64), np.zeros(1), None)
    return _read_video(p, max_frames, threads)


class FrameCountMismatch(Exception):
    """A capped stream chose its frames from the container's frame count, which turned out wrong.

    Raised at the end of the pass; the frames yielded were not the ones the cap should keep. Read the clip again
    with :func:`read_frames`, which counts first in that case (rare: containers that misstate their count).
    """


class FrameStream:
    """A clip's frames, decoded as they are iterated (one pass); then ``indices``, ``timestamps`` and ``fps`` say
    which frames were yielded, equal to what :func:`read_frames` returns for the same arguments."""

    def __init__(self, path: Path, max_frames: int | None, threads: int) -> None:
        self.path, self.max_frames, self.threads = path, max_frames, threads
        self.indices = np.zeros(0, np.int64)
        self.timestamps = np.zeros(0)
        self.fps: float | None = None

    def __iter__(self) -> Iterator[np.ndarray]:
        def choose(n_meta: int) -> np.ndarray | None:
            if self.max_frames is None or self.max_frames <= 0:
                return None  # every frame: no count needed
            if not n_meta:
                raise FrameCountMismatch(f"{self.path}: no frame count in the container")
            return cap_indices(n_meta, self.max_frames)

        seen = _Pass()
        for _, rgb in _decoded(self.path, choose, self.threads, seen):
            yield rgb
        if seen.wanted is not None and not np.array_equal(seen.wanted, cap_indices(len(seen.times), self.max_frames)):
            raise FrameCountMismatch(f"{self.path}: the container says {seen.stated} frames, it has {len(seen.times)}")
        self.indices = np.array(seen.got, np.int64)
        self.timestamps = np.array(seen.times)[self.indices]
        self.fps = seen.fps


def stream_frames(path: str | Path, max_frames: int | None = None, threads: int = 0) -> FrameStream | Frames:
    """The frames of a clip for one pass, with the errors of :func:`read_frames`.

    Videos decode lazily (:class:`FrameStream`: a broken stream raises while it is iterated); images and frame
    folders, which are small, are read at once (:class:`Frames`). Both iterate frame by frame and then carry
    ``indices`` and ``timestamps``.
    """
    p = Path(path)
    if p.suffix.lower() in IMAGE_SUFFIXES or p.is_dir() or not p.exists() or p.stat().st_size == 0:
        return read_frames(p, max_frames, threads)
    return FrameStream(p, max_frames, threads)


def _read_image(p: Path) -> np.ndarray:
    import cv2

    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) image")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ClipReadError(p, "not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def frame_names(folder: str | Path) -> list[str]:
    """File names of a frame folder's frames, in frame order: the one listing that :func:`read_frames` reads and a
    store's provenance fingerprints (``datamodules.provenance``), so both always see the same files."""
    return sorted(n for n in os.listdir(folder) if _suffix(n).lower() in IMAGE_SUFFIXES)


def _suffix(name: str) -> str:
    """``Path(name).suffix`` without building a Path (16k folders x 30 frames: 3x faster)."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


def _read_folder(p: Path, max_frames: int | None) -> Frames:
    files = [p / n for n in frame_names(p)]
    if not files:
        raise ClipReadError(p, "frame folder holds no images")
    keep = cap_indices(len(files), max_frames)
    frames = [_read_image(files[i]) for i in keep]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ClipReadError(p, f"frames differ in size: {sorted(shapes)}")
    return Frames(np.stack(frames), keep, keep.astype(np.float64), None)


def _read_video(p: Path, max_frames: int | None, threads: int) -> Frames:
    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) video")
    rgb, seen = _decode(p, lambda n_meta: cap_indices(n_meta, max_frames) if n_meta else None, threads)
    keep = cap_indices(len(seen.times), max_frames)
    if not np.array_equal(seen.got, keep):
        # The container's frame count was missing or wrong: decode again keeping the right frames (rare).
        rgb, seen = _decode(p, lambda _: keep, threads)
    return Frames(rgb, keep, np.array(seen.times)[keep], seen.fps)


@dataclass
class _Pass:
    """What one decoding pass learned besides the frames it yielded."""

    stated: int = 0  # the container's frame count (0: not stated)
    wanted: np.ndarray | None = None  # the frames chosen from that count (None: every frame)
    got: list[int] = field(default_factory=list)  # indices of the frames yielded
    times: list[float] = field(default_factory=list)  # timestamp of every decoded frame
    fps: float | None = None


def _decode(p: Path, choose: Callable[[int], np.ndarray | None], threads: int) -> tuple[np.ndarray, _Pass]:
    """Decode every frame but convert to RGB only the chosen ones, so a frame cap also caps memory.

    When the container states its frame count, the chosen frames go straight into one preallocated array: holding
    per-frame arrays and stacking them at the end doubled the decode time of a 960x540 clip (fresh memory faulted
    in twice).
    """
    seen = _Pass()
    loose: list[np.ndarray] = []  # frames of a stream with no stated count, stacked at the end
    rgb: np.ndarray | None = None
    slot: dict[int, int] = {}
    for i, img in _decoded(p, choose, threads, seen):
        if seen.wanted is None:
            loose.append(img)
            continue
        if rgb is None:
            slot = {int(k): j for j, k in enumerate(seen.wanted)}
            rgb = np.empty((len(slot), *img.shape), np.uint8)
        rgb[slot[i]] = img
    if seen.wanted is None:
        rgb = np.stack(loose)
    assert rgb is not None
    return rgb, seen


def _decoded(p: Path, choose: Callable[[int], np.ndarray | None], threads: int,
             seen: _Pass) -> Iterator[tuple[int, np.ndarray]]:
    """Decode ``p``, yielding ``(index, rgb)`` for the frames ``choose(container frame count)`` picks (None: all);
    ``seen`` records the rest of the pass.

    Threads, measured on the test videos: the decoder uses frame threading ("AUTO"), since PyAV's default, slice
    threading, gains nothing on single-slice streams (most phone HEVC) yet keeps every core spinning (+40% CPU);
    the RGB conversion runs on one thread, since PyAV's default (one per core, per frame) is slower even alone
    (0.035 vs 0.061 s for single_face.mp4) and leaves cores idle when processes convert side by side. The pixels
    do not depend on either.
    """
    import av

    shape: tuple[int, ...] | None = None
    times = seen.times
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise ClipReadError(p, "no video stream")
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            stream.codec_context.thread_count = threads
            fps = seen.fps = float(stream.average_rate) if stream.average_rate else None
            seen.stated = stream.frames
            seen.wanted = choose(stream.frames)
            wanted_set = None if seen.wanted is None else set(seen.wanted.tolist())
            for i, frame in enumerate(container.decode(stream)):
                t = frame.time
                times.append(float(t) if t is not None else (i / fps if fps else float(i)))
                if wanted_set is None or i in wanted_set:
                    img = upright(frame.to_ndarray(format="rgb24", threads=1), frame.rotation)
                    if shape is not None and img.shape != shape:
                        raise ClipReadError(p, f"frame {i} is {img.shape[1]}x{img.shape[0]}, earlier frames "
                                               f"{shape[1]}x{shape[0]}: the frame size changes")
                    shape = img.shape
                    seen.got.append(i)
                    yield i, img
    except ClipReadError:
        raise
    except (av.FFmpegError, ValueError, OSError) as err:  # corrupt container or truncated stream
        # Strict on purpose: a clip with a broken stream is reported as failed rather than half-used.
        raise ClipReadError(p, f"cannot decode video after {len(times)} frames ({type(err).__name__}: {err})") from err
    if not times:
        raise ClipReadError(p, "video decoded to zero frames")
