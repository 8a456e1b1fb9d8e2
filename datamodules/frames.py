"""Decoding a clip (video file, frame folder or single image) into RGB frames, with an optional uniform frame cap.

Two ways to read, with the same frames, indices and timestamps: :func:`read_frames` returns them all as one array;
:func:`stream_frames` yields them one at a time, so a consumer that works frame by frame (the extraction workers)
holds one full-size frame instead of the whole clip.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

VIDEO_SUFFIXES = {".mp4", ".mov", ".avi", ".webm", ".mkv", ".m4v", ".mpg", ".mpeg"}
# Every suffix OpenCV's imread reads in the pinned build (checked in tests/test_frames.py); ".jfif" is JPEG.
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".jfif", ".png", ".bmp", ".webp", ".tif", ".tiff"}
MEDIA_SUFFIXES = VIDEO_SUFFIXES | IMAGE_SUFFIXES

#: How frame files of a folder are ordered; recorded in every store's request and meta (provenance), so a store
#: built under another rule is never mixed with this one. "natural": the numbers in file names compared as
#: integers (1.jpg, 2.jpg, ..., 10.jpg; 00002.jpg before 10.jpg), hidden files (``.*``: macOS ``._00001.jpg``,
#: ``.DS_Store``) ignored.
FRAME_ORDER = "natural"


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


def natural_key(name: str) -> tuple:
    """Sort key that compares the digit runs of ``name`` as integers: ``2.jpg`` < ``10.jpg``, ``00002`` < ``10``.

    Text runs compare case-insensitively; two names whose numbers are equal (``1.jpg``, ``01.jpg``) get equal keys.
    """
    parts = re.split(r"(\d+)", name)  # text, number, text, number, ...: types match position by position
    return tuple(int(x) if i % 2 else x.lower() for i, x in enumerate(parts))


def is_hidden(path: str | Path) -> bool:
    """Hidden files and folders (``.DS_Store``, AppleDouble ``._00001.jpg``, ``.ipynb_checkpoints``)."""
    return Path(path).name.startswith(".")


def list_frame_files(folder: str | Path) -> list[Path]:
    """The frame images of a frame folder in time order (:data:`FRAME_ORDER`): image files by suffix, hidden files
    skipped, natural numeric order.

    Raises :class:`ClipReadError` when two files carry the same frame number (``1.jpg`` and ``01.jpg``): their
    order would be a guess.
    """
    p = Path(folder)
    names = frame_names(p)
    for a, b in zip(names, names[1:]):
        if natural_key(a) == natural_key(b):
            raise ClipReadError(p, f"frames {a!r} and {b!r} have the same number: their order is unknown")
    return [p / n for n in names]


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


def read_frames(path: str | Path, max_frames: int | None = None, threads: int = 0,
                box: tuple[int, int, int, int] | None = None) -> Frames:
    """Read a clip upright (display rotation applied); raise :class:`ClipReadError` with the reason when it is
    missing, empty, corrupt or truncated.

    ``threads``: video decoder threads (0: FFmpeg picks one per core). Processes that decode side by side (the
    extraction's loader workers) use 1 each: more threads than cores only burn CPU.
    ``box``: ``(x, y, width, height)`` in pixels, a face region of a single image (``ClipRecord.box``): the image is
    cropped to it (clipped at the image's edges; a box with no pixel inside the image raises). Only for images.
    """
    p = Path(path)
    if not p.exists():
        raise ClipReadError(p, "no such file or folder")
    if box is not None:
        if p.is_dir() or p.suffix.lower() not in IMAGE_SUFFIXES:
            raise ClipReadError(p, f"a face box {tuple(box)} is only applied to single images")
        rgb = crop_box(_read_image(p), box, p)[None]
        return Frames(rgb, np.zeros(1, np.int64), np.zeros(1), None)
    if p.is_dir():
        return _read_folder(p, max_frames)
    suffix = p.suffix.lower()
    if suffix in IMAGE_SUFFIXES:
        rgb = _read_image(p)[None]
        return Frames(rgb, np.zeros(1, np.int64), np.zeros(1), None)
    try:
        return _read_video(p, max_frames, threads)
    except ClipReadError as err:
        if suffix in VIDEO_SUFFIXES:
            raise
        raise ClipReadError(p, f"{err.reason}; {suffix or 'no suffix'} is not a known video or image type "
                               f"(videos: {' '.join(sorted(VIDEO_SUFFIXES))}; images: "
                               f"{' '.join(sorted(IMAGE_SUFFIXES))})") from err


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


def stream_frames(path: str | Path, max_frames: int | None = None, threads: int = 0,
                  box: tuple[int, int, int, int] | None = None) -> FrameStream | Frames:
    """The frames of a clip for one pass, with the errors of :func:`read_frames` (``box``: as there, images only).

    Videos decode lazily (:class:`FrameStream`: a broken stream raises while it is iterated); images and frame
    folders, which are small, are read at once (:class:`Frames`). Both iterate frame by frame and then carry
    ``indices`` and ``timestamps``.
    """
    p = Path(path)
    if box is not None or p.suffix.lower() not in VIDEO_SUFFIXES or p.is_dir() or not p.exists() \
            or p.stat().st_size == 0:
        return read_frames(p, max_frames, threads, box)  # images, folders, files of unknown type (a clear error)
    return FrameStream(p, max_frames, threads)


def crop_box(rgb: np.ndarray, box: tuple[int, int, int, int], path: str | Path) -> np.ndarray:
    """``rgb[y:y+h, x:x+w]`` of an image ``[H, W, 3]`` for a box ``(x, y, w, h)`` in pixels, clipped at the image's
    edges; :class:`ClipReadError` naming ``path`` when the box is not positive or has no pixel inside the image."""
    x, y, w, h = (int(v) for v in box)
    if w <= 0 or h <= 0:
        raise ClipReadError(path, f"face box (x, y, w, h) = {tuple(box)} has no area")
    x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + w, rgb.shape[1]), min(y + h, rgb.shape[0])
    if x1 <= x0 or y1 <= y0:
        raise ClipReadError(path, f"face box (x, y, w, h) = {tuple(box)} lies outside the {rgb.shape[1]}x"
                                  f"{rgb.shape[0]} image")
    return np.ascontiguousarray(rgb[y0:y1, x0:x1])


JPEG_SUFFIXES = {".jpg", ".jpeg", ".jfif"}


def _jpeg_complete(p: Path) -> bool:
    """Whether a JPEG file holds its whole image: OpenCV decodes a truncated JPEG without an error (libjpeg fills
    the missing rows grey and only warns on stderr), so a cut-off download would silently become a half-grey photo.

    Cheap path: the file ends with the end-of-image marker ``FF D9`` (trailing zero padding allowed). Files with data
    after the marker (camera trailers) are decoded once more by Pillow, which raises on a truncated stream.
    """
    with p.open("rb") as f:
        f.seek(max(0, p.stat().st_size - 64))
        if f.read().rstrip(b"\x00").endswith(b"\xff\xd9"):
            return True
    from PIL import Image, ImageFile

    if ImageFile.LOAD_TRUNCATED_IMAGES:  # another library relaxed Pillow globally: its answer would mean nothing
        return False
    try:
        with Image.open(p) as im:
            im.load()
    except (OSError, SyntaxError):
        return False
    return True


def _read_image(p: Path) -> np.ndarray:
    import cv2

    if p.stat().st_size == 0:
        raise ClipReadError(p, "empty (0-byte) image")
    bgr = cv2.imread(str(p), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ClipReadError(p, "not a readable image (corrupt, truncated or not an image)")
    if p.suffix.lower() in JPEG_SUFFIXES and not _jpeg_complete(p):
        raise ClipReadError(p, "truncated JPEG (the image data stops before its end: an interrupted download or "
                               "copy?)")
    return np.ascontiguousarray(bgr[:, :, ::-1])


def frame_names(folder: str | Path | int) -> list[str]:
    """File names of a frame folder's frames, in frame order (natural numeric order, hidden files skipped): the one
    listing that :func:`read_frames` reads and a store's provenance fingerprints (``datamodules.provenance``), so
    both always see the same files. Names only (no stat per file): 16k folders x 30 frames stay quick.

    ``folder``: a path, or a file descriptor of an open folder (the provenance lists and stats through one).
    """
    names = [n for n in os.listdir(folder) if n[:1] != "." and n.lower().endswith(_IMAGE_ENDINGS)]
    return natural_sorted(names)


_IMAGE_ENDINGS = tuple(sorted(IMAGE_SUFFIXES))  # str.endswith over a tuple: one C call per name
_DIGITS_AS_ZERO = str.maketrans("123456789", "000000000")


def natural_sorted(names: list[str]) -> list[str]:
    """``sorted(names, key=natural_key)``, sorted in place and returned.

    Fast path for the usual frame folder (``00001.jpg``, ``frame_0001.png``: names alike but for their ASCII digits):
    when every name has the same shape (equal once each digit is read as 0), digit runs line up and have equal
    lengths and the text between them is equal, so plain string order is natural order (no two such names have
    equal keys). 30 names: ~10x cheaper than building the keys. Other folders take :func:`natural_key`.
    """
    if len(names) > 1:
        shape = names[0].translate(_DIGITS_AS_ZERO)
        # "/" never occurs in a file name, so the joined strings are equal only when every name has that shape.
        if "/".join(names).translate(_DIGITS_AS_ZERO) == "/".join([shape] * len(names)):
            names.sort()
            return names
    names.sort(key=natural_key)
    return names


def _read_folder(p: Path, max_frames: int | None) -> Frames:
    files = list_frame_files(p)
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
    if len(seen.got) < len(rgb):  # fewer frames than the container stated: never hand out unfilled slots
        rgb = rgb[[slot[i] for i in seen.got]]
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
            stream = open_video_stream(container, p, threads)
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
            check_complete(p, stream, times)
    except ClipReadError:
        raise
    except (av.FFmpegError, ValueError, OSError) as err:  # corrupt container or truncated stream
        # Strict on purpose: a clip with a broken stream is reported as failed rather than half-used.
        raise ClipReadError(p, f"cannot decode video after {len(times)} frames ({type(err).__name__}: {err})") from err
    if not times:
        raise ClipReadError(p, "video decoded to zero frames")


#: A decoded stream may end this many frame durations before the duration its container declares; a shorter
#: stream is truncated. Good files end within one frame of it (measured on the shared videos: 0.00-0.04 s at
#: 24-30 fps; no_face.mp4 states 98 frames and decodes 95, an edit list, yet ends 0.01 s after its duration);
#: the first half of WolfgangLanger_Pexels.mp4 ends at 9.55 s of a declared 19.69 s.
TRUNCATION_TOLERANCE_FRAMES = 3


def open_video_stream(container: Any, p: Path, threads: int = 0) -> Any:
    """The clip's video stream in an open PyAV container, set up for strict, threaded decoding.

    The stream: the one with the most stated frames among those that are not an attached picture (the 1-frame
    cover or thumbnail some files carry as their first video stream), else FFmpeg's best guess
    (``streams.best``). Decoder errors are not concealed: FFmpeg's ``err_detect=explode`` makes a corrupt packet
    raise instead of being patched over with guessed pixels (on a garbled H.264 file, PyAV then stops at frame 16
    instead of 38). Raises :class:`ClipReadError` when there is no video stream (or only a cover picture).
    """
    import av

    video = list(container.streams.video)
    moving = [s for s in video if not s.disposition & av.stream.Disposition.attached_pic]
    if not moving:
        raise ClipReadError(p, "no video stream" + (" (only a still cover picture)" if video else ""))
    stated = [s.frames for s in moving]
    if len(moving) == 1 or max(stated) > 0:
        stream = moving[stated.index(max(stated))]
    else:  # no stream states a count (Matroska): FFmpeg's choice, if it is not a cover
        best = container.streams.best("video")
        stream = best if best in moving else moving[0]
    stream.thread_type = "AUTO"
    stream.codec_context.thread_count = threads
    stream.codec_context.options = {**stream.codec_context.options, "err_detect": "explode"}
    return stream


def check_complete(p: Path, stream: Any, times: list[float]) -> None:
    """Raise :class:`ClipReadError` when the decoded frames stop well before the duration the container declares.

    A download cut short keeps an MP4's index (moov atom at the front), which still lists every frame: FFmpeg
    then ends the stream quietly where the bytes end (it logs "partial file" but raises nothing). The frame count
    alone cannot tell (edit lists make good files decode a few frames fewer than they state); the time the frames
    cover can: see :data:`TRUNCATION_TOLERANCE_FRAMES`.
    """
    fps = float(stream.average_rate) if stream.average_rate else None
    if not times or not fps or stream.duration is None or stream.time_base is None:
        return  # no duration of this stream's own (Matroska): nothing to compare with. Never the container's
        # duration: an audio track or a cover picture can outlast the video of a good file.
    declared = float(stream.duration * stream.time_base)
    start = float(stream.start_time * stream.time_base) if stream.start_time is not None else 0.0
    covered = times[-1] + 1.0 / fps - start
    if declared - covered > TRUNCATION_TOLERANCE_FRAMES / fps and not (0 < stream.frames <= len(times)):
        raise ClipReadError(p, f"truncated or corrupt video: the frames decoded ({len(times)}"
                               + (f" of {stream.frames} stated" if stream.frames else "")
                               + f") end at {covered:.2f} s of a declared {declared:.2f} s (file size "
                               f"{p.stat().st_size} bytes; an interrupted download or copy?)")
