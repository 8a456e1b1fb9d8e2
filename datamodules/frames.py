"""Decoding a clip (video file, frame folder or single image) into RGB frames, with an optional uniform frame cap."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
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


def cap_indices(n: int, max_frames: int | None) -> np.ndarray:
    """Uniformly spaced indices of at most ``max_frames`` out of ``n`` (all when uncapped), first and last kept."""
    if max_frames is None or max_frames <= 0 or n <= max_frames:
        return np.arange(n, dtype=np.int64)
    return np.unique(np.round(np.linspace(0, n - 1, max_frames)).astype(np.int64))


def read_frames(path: str | Path, max_frames: int | None = None) -> Frames:
    """Read a clip; raise :class:`ClipReadError` with the reason when it is missing, empty or corrupt."""
    p = Path(path)
    if not p.exists():
        raise ClipReadError(p, "no such file or folder")
    if p.is_dir():
        return _read_folder(p, max_frames)
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        rgb = _read_image(p)[None]
        return Frames(rgb, np.zeros(1, np.int64), np.zeros(1), None)
    return _read_video(p, max_frames)


def _read_image(p: Path) -> np.ndarray:
    import cv2

    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) image")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ClipReadError(p, "not a readable image")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def _read_folder(p: Path, max_frames: int | None) -> Frames:
    files = sorted(f for f in p.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ClipReadError(p, "frame folder holds no images")
    keep = cap_indices(len(files), max_frames)
    frames = [_read_image(files[i]) for i in keep]
    shapes = {f.shape for f in frames}
    if len(shapes) > 1:
        raise ClipReadError(p, f"frames differ in size: {sorted(shapes)}")
    return Frames(np.stack(frames), keep, keep.astype(np.float64), None)


def _read_video(p: Path, max_frames: int | None) -> Frames:
    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) video")
    frames, times, n, fps = _decode(p, lambda n_meta: cap_indices(n_meta, max_frames) if n_meta else None)
    keep = cap_indices(n, max_frames)
    if len(frames) != len(keep) or not np.array_equal(np.fromiter(frames, np.int64), keep):
        # The container's frame count was missing or wrong: decode again keeping the right frames (rare).
        frames, times, n, fps = _decode(p, lambda _: keep)
    rgb = np.stack([frames[i] for i in keep])
    return Frames(rgb, keep, np.array([times[i] for i in keep]), fps)


Decoded = tuple[dict[int, np.ndarray], list[float], int, float | None]


def _decode(p: Path, choose: Callable[[int], np.ndarray | None]) -> Decoded:
    """Decode every frame but convert to RGB only the chosen ones, so a frame cap also caps memory."""
    import av

    frames: dict[int, np.ndarray] = {}
    times: list[float] = []
    try:
        with av.open(str(p)) as container:
            if not container.streams.video:
                raise ClipReadError(p, "no video stream")
            stream = container.streams.video[0]
            fps = float(stream.average_rate) if stream.average_rate else None
            wanted = choose(stream.frames)
            wanted_set = None if wanted is None else set(wanted.tolist())
            for i, frame in enumerate(container.decode(stream)):
                if wanted_set is None or i in wanted_set:
                    frames[i] = frame.to_ndarray(format="rgb24")
                t = frame.time
                times.append(float(t) if t is not None else (i / fps if fps else float(i)))
    except ClipReadError:
        raise
    except (av.FFmpegError, ValueError, OSError) as err:  # corrupt container or truncated stream
        # Strict on purpose: a clip with a broken stream is reported as failed rather than half-used.
        raise ClipReadError(p, f"cannot decode video after {len(times)} frames ({type(err).__name__}: {err})") from err
    if not times:
        raise ClipReadError(p, "video decoded to zero frames")
    return frames, times, len(times), fps
