"""What ``predict-video`` reads: video files and folders, cameras, and live stream URLs, one interface for all.

:func:`parse_inputs` turns command-line arguments into :class:`InputSpec` records: files and folders exactly as
:func:`fer_zoo.video.face_track.collect_videos` finds them, camera indices (``0``: all digits and not an existing
file or folder), camera devices (``/dev/video0``, or any character device under ``/dev`` on Linux; ``video=<name>``
on Windows) and URLs with a scheme in :data:`URL_SCHEMES` (``rtsp://host:554/stream``), kept exactly as given
(never passed through :mod:`pathlib`, which turned ``rtsp://`` into ``rtsp:/``).

:func:`open_input` opens one: ``(info, frames)`` where ``frames`` yields :class:`Frame` records (upright RGB, a
time in seconds, the moment it arrived). Files go through :func:`fer_zoo.video.face_track.open_video` (strict
decoding, truncation check: unchanged). Cameras and URLs are read live with PyAV (FFmpeg), frame by frame as they
arrive; a live input that cannot be opened or gives no frame raises :class:`~fer_zoo.video.face_track.InputError`
with one line naming it and the cause; one that breaks or stalls after some frames raises
:class:`~datamodules.frames.ClipReadError` (the frames already yielded stay valid); one that ends normally simply
ends the iterator.

Live timing: ``Frame.time`` is the frame's presentation time (PTS) relative to the input's first frame (a stream's
PTS start anywhere; v4l2 cameras stamp the system clock). Times are strictly increasing: a frame whose PTS is not
after the previous frame's is kept and given the previous time plus one frame duration, and the frames after it
follow from there (a stream whose clock jumped back is re-anchored, not dropped); a frame without PTS gets the
previous time plus one frame duration (``1 / fps``; the arrival-time gap when the rate is unknown). Both are
counted in :class:`StreamStats` (``info.stats``), never silent.

Latency choices for live inputs (measured on the loopback MPEG-TS stream of ``tests/stream_server.py``, 640x360
H.264 at 30 fps):

- one decoder thread: FFmpeg's frame threading holds back a frame per extra thread (measured: frames came 0.03-0.05 s
  later with FFmpeg's thread count on 2 cores, 0.22 vs 0.25-0.27 s after their time from the connection);
- FFmpeg's stream probing is capped at 1 s (``analyzeduration``; FFmpeg's default allows 5 s). It takes 0.8 s on
  that stream, once, and loses nothing: the probed packets are decoded first and the reader is at the live edge
  within a few frames;
- NOT ``fflags=nobuffer``: it discards the packets read while probing, i.e. the stream's first keyframe; on that
  stream not one frame decoded (0 of 72);
- RTSP over TCP (``rtsp_transport=tcp``): no packet loss, so decoding stays strict (``err_detect=explode``) as for
  files. Packets before the first keyframe (joining a stream mid-GOP) are skipped, counted in ``stats``.

Frames are decoded when the consumer asks for the next one: a consumer slower than the source falls behind (the
stream's data waits in socket and FFmpeg buffers); ``stats.behind_s`` measures how far (how much later a frame
arrived than the promptest frame, relative to their times).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import itertools
import os
import re
import stat
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from datamodules.frames import ClipReadError, open_video_stream, upright
from fer_zoo.video.face_track import InputError, VideoInfo, clip_ids, collect_videos, is_image, open_video

#: URL schemes read as live streams (FFmpeg protocols). Anything else written ``scheme://...`` is refused.
URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "udp", "tcp", "srt", "rtp")
KINDS = ("file", "camera", "url")
OPEN_TIMEOUT_S = 10.0
READ_TIMEOUT_S = 10.0
#: FFmpeg's stream probing for live inputs, microseconds (see the module docstring).
ANALYZE_DURATION_US = 1_000_000
LIVE_DECODER_THREADS = 1

_URL = re.compile(r"([A-Za-z][A-Za-z0-9+.-]+)://")  # 2+ letters: a Windows drive (C://x) is not a scheme
_DIGITS = re.compile(r"[0-9]+")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class InputSpec:
    """One input of ``predict-video``.

    ``kind``: ``"file"`` (a video or photo file), ``"camera"`` (an index such as ``"0"``, a device such as
    ``"/dev/video0"``, or ``"video=<name>"`` on Windows) or ``"url"`` (a live stream). ``target``: the path, device
    or URL exactly as given (a file found in a folder: its path). ``label``: a filesystem-safe name, unique among the
    inputs of one :func:`parse_inputs` call, for output folders and the ``video`` column.
    """

    kind: str
    target: str
    label: str

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")

    @property
    def live(self) -> bool:
        """A camera or a stream: read as it comes, no end known in advance."""
        return self.kind != "file"

    @property
    def shown(self) -> str:
        """The target for messages: a URL's password replaced by ``***``; a camera index as ``camera N``."""
        if self.kind == "url":
            return redact(self.target)
        if self.kind == "camera" and _DIGITS.fullmatch(self.target):
            return f"camera {self.target}"
        return self.target


@dataclass
class StreamStats:
    """What reading one input did besides yielding frames (updated as frames are yielded).

    ``frames``: frames yielded. ``retimed``: frames whose PTS was not after the previous frame's, given the previous
    time + one frame duration (later frames follow from there). ``no_pts``: frames without PTS, timed the same way.
    ``skipped_packets``: video packets before the first keyframe (joining a live stream mid-GOP: not decodable).
    ``first_frame_s``: seconds from the start of opening to the first frame. ``behind_s`` / ``max_behind_s``
    (live only): how much later the last / worst frame arrived than the promptest one, relative to their times,
    in seconds: ``(arrived - time) - min over earlier frames of (arrived - time)``; about 0 while the reader keeps
    up with the source, growing when the consumer is slower than it (0 for files, not read in real time).
    """

    frames: int = 0
    retimed: int = 0
    no_pts: int = 0
    skipped_packets: int = 0
    first_frame_s: float = 0.0
    behind_s: float = 0.0
    max_behind_s: float = 0.0

    def notes(self) -> list[str]:
        """One sentence per thing a user should know about these frames' timing (empty when there is none)."""
        out = []
        if self.retimed:
            out.append(f"{self.retimed} of {self.frames} frames had a timestamp not after the previous frame's: "
                       "each was placed one frame after it and the frames after it shifted with it")
        if self.no_pts:
            out.append(f"{self.no_pts} of {self.frames} frames had no timestamp: each was placed one frame after "
                       "the previous one")
        if self.skipped_packets:
            out.append(f"{self.skipped_packets} video packets before the first keyframe were skipped (joined "
                       "mid-stream)")
        return out


@dataclass
class InputInfo(VideoInfo):
    """:class:`~fer_zoo.video.face_track.VideoInfo` of any input: ``path`` is the file's :class:`~pathlib.Path`,
    or a live input's target string as given (never through pathlib). ``fps``: the container's average rate (for a
    live input, FFmpeg's estimate while probing; None when unknown). ``width`` x ``height``: pixels as coded, before
    any display rotation. ``spec``: the input. ``stats``: :class:`StreamStats`, filled as frames are read."""

    path: Path | str  # type: ignore[assignment]
    spec: InputSpec
    stats: StreamStats


@dataclass(frozen=True)
class Frame:
    """One decoded frame. ``index``: 0, 1, 2, ... in the order yielded. ``time``: seconds (see the module
    docstring: a file's presentation time as ``open_video`` gives it; a live input's relative to its first frame,
    strictly increasing). ``rgb``: uint8 ``[H, W, 3]``, upright (display rotation applied). ``arrived``:
    ``time.monotonic()`` right after the frame was decoded (seconds; latency = now - arrived)."""

    index: int
    time: float
    rgb: np.ndarray
    arrived: float


# ---------------------------------------------------------------------------------------------------- parsing


def redact(url: str) -> str:
    """``url`` with the password of its user info replaced by ``***`` (messages and logs never show it)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        host = parts.netloc.rsplit("@", 1)[1]
        return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
    except ValueError:
        return url


def safe_name(text: str, fallback: str) -> str:
    """``text`` as a file name: runs of characters other than ``A-Za-z0-9._-`` become ``_``, at most 100 long."""
    name = _UNSAFE.sub("_", text).strip("._-")[:100]
    return name or fallback


def url_label(url: str) -> str:
    """``host_port_path`` of a URL, filesystem-safe (never its user info or query: they may hold credentials)."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    pieces = [safe_name(p, "") for p in (parts.hostname or "", str(port) if port is not None else "", parts.path)]
    return "_".join(p for p in pieces if p)[:100] or "stream"


def classify(arg: str) -> str:
    """``"url"``, ``"camera"`` or ``"file"`` (a file or folder, or a path that does not exist) for one argument.

    Raises :class:`InputError` for a ``scheme://`` argument whose scheme is not in :data:`URL_SCHEMES`."""
    m = _URL.match(arg)
    if m:
        if m.group(1).lower() not in URL_SCHEMES:
            raise InputError(f"{redact(arg)}: unsupported URL scheme {m.group(1)!r} (live streams: "
                             f"{', '.join(URL_SCHEMES)}; a local file is given by its path)")
        return "url"
    if _DIGITS.fullmatch(arg) and not os.path.exists(arg):
        return "camera"
    if arg.startswith("/dev/video") or (sys.platform == "win32" and arg.startswith("video=")):
        return "camera"
    if sys.platform.startswith("linux") and arg.startswith("/dev/"):
        with contextlib.suppress(OSError):
            if stat.S_ISCHR(os.stat(arg).st_mode):  # a camera's stable name, e.g. /dev/v4l/by-id/usb-...
                return "camera"
    return "file"


def camera_label(target: str) -> str:
    """``camera<N>`` for an index or ``/dev/video<N>``; a safe name of the device otherwise."""
    if _DIGITS.fullmatch(target):
        return f"camera{int(target)}"
    m = re.fullmatch(r"/dev/video([0-9]+)", target)
    if m:
        return f"camera{int(m.group(1))}"
    return safe_name(target.removeprefix("video=").rsplit("/", 1)[-1], "camera")


def _identity(spec: InputSpec) -> str:
    """What makes two live inputs the same source (a duplicate is read once, as ``collect_videos`` does for files)."""
    if spec.kind == "camera" and sys.platform.startswith("linux"):
        return "camera:" + (f"/dev/video{int(spec.target)}" if _DIGITS.fullmatch(spec.target)
                            else os.path.realpath(spec.target))
    return f"{spec.kind}:{spec.target}"


def parse_inputs(args: list[str], photos: bool = False) -> list[InputSpec]:
    """The inputs named on a command line, in order: files and folders as :func:`collect_videos` finds them (videos,
    plus photos when ``photos``; folders searched recursively; the same file named twice read once), camera indices
    and devices, stream URLs (see the module docstring for which argument is which).

    Labels: a file's stem (made unique as :func:`clip_ids` does, without DFEW's zero-padding), ``camera<N>``, or
    ``host_port_path`` of a URL; a label taken by an earlier input gets ``_2``, ``_3``, ...

    Raises :class:`InputError` (one line naming the argument): a path that does not exist, a file that is not a
    video (or photo), a folder with none, an unsupported URL scheme, no argument at all.
    """
    entries: list[InputSpec | Path] = []
    seen: set[str] = set()
    for arg in args:
        kind = classify(arg)
        if kind == "file":
            try:
                found = collect_videos([arg], photos=photos)
            except InputError as err:
                if _DIGITS.fullmatch(arg):  # a digit name that exists: the file wins, say how to get the camera
                    how = (f"give its device, e.g. /dev/video{int(arg)}" if sys.platform.startswith("linux")
                           else "run from another folder")
                    raise InputError(f"{err} ('{arg}' names an existing file or folder here; for camera {arg} "
                                     f"{how})") from err
                raise
            for p in found:
                key = f"file:{p.resolve()}"
                if key not in seen:
                    seen.add(key)
                    entries.append(p)
            continue
        label = url_label(arg) if kind == "url" else camera_label(arg)
        spec = InputSpec(kind, arg, label)
        if _identity(spec) not in seen:
            seen.add(_identity(spec))
            entries.append(spec)
    if not entries:
        raise InputError(f"no input {'videos or photos' if photos else 'videos'}, cameras or stream URLs given")
    file_ids = clip_ids([e for e in entries if isinstance(e, Path)], dfew_numbers=False)
    out: list[InputSpec] = []
    used: set[str] = set()
    for e in entries:
        base = file_ids[e] if isinstance(e, Path) else e.label
        label, k = base, 2
        while label in used:
            label, k = f"{base}_{k}", k + 1
        used.add(label)
        out.append(InputSpec("file", str(e), label) if isinstance(e, Path) else InputSpec(e.kind, e.target, label))
    return out


def add_input_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--open_timeout`` and ``--read_timeout`` (seconds, for cameras and streams) to a command's parser; its
    positional inputs then go through :func:`parse_inputs` and each one through :func:`open_input`."""
    parser.add_argument("--open_timeout", type=float, default=OPEN_TIMEOUT_S, metavar="S",
                        help="cameras and stream URLs: seconds to wait for the source to open and its first frame "
                             f"(default {OPEN_TIMEOUT_S:g})")
    parser.add_argument("--read_timeout", type=float, default=READ_TIMEOUT_S, metavar="S",
                        help="cameras and stream URLs: a source that sends no video for this many seconds has "
                             f"stalled and its input ends with an error (default {READ_TIMEOUT_S:g})")


#: Help text for a command's positional inputs.
INPUTS_HELP = ("video files or folders of videos; camera indices (0, 1, ...) or devices (/dev/video0); live stream "
               f"URLs ({', '.join(s + '://' for s in URL_SCHEMES)})")


# ---------------------------------------------------------------------------------------------------- opening


@dataclass(frozen=True)
class _Source:
    """How FFmpeg opens a live input: its URL or device string, the input format (None: guessed), options."""

    url: str
    format: str | None
    options: dict[str, str]
    shown: str


def camera_source(target: str, platform: str | None = None) -> _Source:
    """The FFmpeg device for a camera by platform: ``v4l2`` with ``/dev/video<N>`` (Linux), ``avfoundation`` with
    ``<N>:none`` at 30 fps (macOS: AVFoundation refuses FFmpeg's default 29.97), ``dshow`` with ``video=<name>``
    (Windows; an index is looked up among DirectShow's video devices). Raises :class:`InputError` when the platform
    has no such camera (a ``/dev`` device off Linux, an index DirectShow does not list)."""
    platform = platform or sys.platform
    index = int(target) if _DIGITS.fullmatch(target) else None
    if platform.startswith("linux"):
        device = f"/dev/video{index}" if index is not None else target
        shown = f"camera {index} ({device})" if index is not None else f"camera {device}"
        return _Source(device, "v4l2", {}, shown)
    if platform == "darwin":
        if index is None:
            raise InputError(f"camera {target}: macOS cameras are given by index (0, 1, ...)")
        return _Source(f"{index}:none", "avfoundation", {"framerate": "30"}, f"camera {index}")
    if platform == "win32":
        if index is None:
            return _Source(target, "dshow", {}, f"camera {target}")
        import av

        try:
            names = [d.name for d in av.enumerate_input_devices("dshow") if "video" in d.media_types]
        except (av.FFmpegError, ValueError, NotImplementedError) as err:
            raise InputError(f"camera {index}: cannot list DirectShow cameras ({err}); give the camera by name: "
                             "video=<name>") from err
        if index >= len(names):
            raise InputError(f"camera {index}: no such device (DirectShow lists {len(names)} camera(s))")
        return _Source(f"video={names[index]}", "dshow", {}, f"camera {index} (video={names[index]})")
    raise InputError(f"camera {target}: cameras are not supported on {platform}")


def url_source(url: str) -> _Source:
    """The FFmpeg options of a live stream URL (see the module docstring): probing capped, RTSP over TCP."""
    options = {"analyzeduration": str(ANALYZE_DURATION_US)}
    if urlsplit(url).scheme.lower() in ("rtsp", "rtsps"):
        options["rtsp_transport"] = "tcp"
    return _Source(url, None, options, redact(url))


_ERRNO_CAUSES = {
    errno.ENOENT: "no such device",
    errno.ENODEV: "no such device",
    errno.ENXIO: "no such device",
    errno.EBUSY: "device busy (another program is using it?)",
    errno.EACCES: "permission denied (on Linux: is the user in the 'video' group?)",
    errno.ENOTTY: "not a video capture device",
    errno.ECONNREFUSED: "connection refused",
    errno.ECONNRESET: "connection reset by the server",
    errno.ETIMEDOUT: "timed out",
    errno.EHOSTUNREACH: "host unreachable",
    errno.ENETUNREACH: "network unreachable",
}


def describe_error(err: BaseException, timeout_s: float, ffmpeg_log: str = "") -> str:
    """The cause of a PyAV error in a few words (one line): ``connection refused``, ``no such device``, ``no answer
    within 2 s (timed out)``, ...; for a cause not known here, FFmpeg's own last error message is added."""
    import av

    if isinstance(err, av.ExitError):  # PyAV's timeout: its interrupt callback stopped the blocking call
        return f"no answer within {timeout_s:g} s (timed out)"
    if isinstance(err, av.ProtocolNotFoundError):
        return f"this FFmpeg build (PyAV {av.__version__}) cannot read this protocol"
    if isinstance(err, av.InvalidDataError):
        return "not a video stream FFmpeg recognises (invalid data)"
    if isinstance(err, av.FFmpegError) and err.errno in _ERRNO_CAUSES:
        return _ERRNO_CAUSES[err.errno]
    if isinstance(err, av.FFmpegError):
        cause = (err.strerror or type(err).__name__).rstrip(".")
        cause = cause[:1].lower() + cause[1:]
    else:
        cause = f"{type(err).__name__}: {err}"
    log = " ".join(ffmpeg_log.split())  # a generic cause ("input/output error"): FFmpeg's log says what happened
    if log and log.lower() not in cause.lower():
        cause += f" (FFmpeg: {log.rstrip('.')})"
    return " ".join(cause.split())


@contextlib.contextmanager
def _ffmpeg_errors() -> Iterator[list[tuple[int, str, str]]]:
    """FFmpeg's error messages logged inside the block (PyAV logs nothing by default: the level is raised to ERROR
    for the block only and restored after). Used around ``av.open`` only, a block that never yields: PyAV's
    captures are a per-thread stack and its level is global, so a block held open across a generator's yields
    would tangle with other readers."""
    import av.logging

    before = av.logging.get_level()
    av.logging.set_level(av.logging.ERROR)
    try:
        with av.logging.Capture() as logs:
            yield logs
    finally:
        av.logging.set_level(before)


def _last_error(logs: list[tuple[int, str, str]]) -> str:
    import av.logging

    errors = [msg for level, _, msg in logs if level <= av.logging.ERROR and msg.strip()]
    return errors[-1].strip() if errors else ""


def _open_container(src: _Source, open_timeout_s: float, read_timeout_s: float,
                    options: Mapping[str, str] | None) -> Any:
    """``av.open`` of a live source; :class:`InputError` (one line) when it does not open."""
    import av

    opts = {**src.options, **(options or {})}
    with _ffmpeg_errors() as logs:
        try:
            return av.open(src.url, format=src.format, container_options=opts,
                           timeout=(open_timeout_s, read_timeout_s))
        except ValueError as err:
            if src.format and not isinstance(err, av.FFmpegError):  # the build lacks the device format
                raise InputError(f"{src.shown}: this FFmpeg build (PyAV {av.__version__}) has no {src.format!r} "
                                 "input") from err
            raise InputError(f"{src.shown}: {describe_error(err, open_timeout_s, _last_error(logs))}") from err
        except (av.FFmpegError, OSError) as err:
            raise InputError(f"{src.shown}: {describe_error(err, open_timeout_s, _last_error(logs))}") from err


class LiveClock:
    """The time of each frame of a live input (seconds from its first frame, strictly increasing), from its PTS
    (seconds, or None) and its arrival (``time.monotonic()``); the rule of the module docstring. Counts what it
    fixes, and the lag, in ``stats``.

    ``fps``: the stream's rate (Hz) for one frame duration; None: the arrival-time gap (at least 1 ms) instead.
    """

    def __init__(self, fps: float | None, stats: StreamStats) -> None:
        self.fps, self.stats = fps, stats
        self.offset: float | None = None  # PTS minus Frame.time
        self.last_t = 0.0
        self.last_arrived: float | None = None
        self.earliest: float | None = None  # min over frames of (arrived - time): the promptest frame

    def place(self, pts: float | None, arrived: float) -> float:
        first = self.last_arrived is None
        if first:
            nxt = 0.0
        else:
            step = 1.0 / self.fps if self.fps else max(arrived - self.last_arrived, 1e-3)  # type: ignore[operator]
            nxt = self.last_t + step
        if pts is None:
            self.stats.no_pts += 1
            t = nxt
        else:
            if self.offset is None:
                self.offset = float(pts) - nxt
            t = float(pts) - self.offset
            if not first and t <= self.last_t:  # not after the previous frame: one frame after it, re-anchored
                self.stats.retimed += 1
                self.offset, t = float(pts) - nxt, nxt
        self.last_t, self.last_arrived = t, arrived
        self.earliest = arrived - t if self.earliest is None else min(self.earliest, arrived - t)
        self.stats.behind_s = (arrived - t) - self.earliest
        self.stats.max_behind_s = max(self.stats.max_behind_s, self.stats.behind_s)
        return t


class _LiveReader:
    """Decodes one open live container frame by frame, timing and checking as the module docstring says."""

    def __init__(self, container: Any, src: _Source, read_timeout_s: float, stats: StreamStats,
                 started: float, open_stalled: str = "") -> None:
        self.container, self.src, self.read_timeout_s, self.stats = container, src, read_timeout_s, stats
        self.started = started
        # FFmpeg ends its stream probing quietly when the open timeout interrupts it, and every read after that
        # fails at once: say that the source stalled while opening, not that a read waited read_timeout_s.
        self.open_stalled = open_stalled
        self.coded: tuple[int, int] | None = None  # width, height of the first frame as coded
        self.stream: Any = None
        self.fps: float | None = None

    def select(self) -> None:
        try:
            self.stream = open_video_stream(self.container, self.src.shown, LIVE_DECODER_THREADS)  # type: ignore[arg-type]
        except ClipReadError as err:
            raise InputError(str(err)) from err
        rate = self.stream.average_rate or self.stream.guessed_rate
        self.fps = float(rate) if rate else None

    def _fail(self, cause: str) -> Exception:
        n = self.stats.frames
        if n == 0:
            return InputError(f"{self.src.shown}: {cause}")
        return ClipReadError(self.src.shown, f"{cause} after {n} frames")

    def frames(self) -> Iterator[Frame]:
        import av

        video = self.stream.index
        opened = last_video = time.monotonic()
        clock = LiveClock(self.fps, self.stats)
        keyed = False
        packets = self.container.demux()  # every stream: video stalled while audio flows is a stall too
        while True:
            asked = time.monotonic()
            try:
                packet = next(packets)
            except StopIteration:
                break
            except av.ExitError as err:
                if self.open_stalled and time.monotonic() - asked < 0.5 * self.read_timeout_s:
                    raise self._fail(self.open_stalled) from err
                raise self._fail(f"stalled: no data for {self.read_timeout_s:g} s (read timeout)") from err
            except (av.FFmpegError, OSError, ValueError) as err:
                raise self._fail("cannot read the stream: " + describe_error(err, self.read_timeout_s)) from err
            now = time.monotonic()
            if self.stats.frames == 0 and now - opened > self.read_timeout_s:  # packets, but nothing to show
                raise self._fail(f"no video frame within {self.read_timeout_s:g} s of opening"
                                 + (f" ({self.stats.skipped_packets} video packets came, none a keyframe)"
                                    if self.stats.skipped_packets else ""))
            if packet.stream.index != video:
                if now - last_video > self.read_timeout_s:
                    raise self._fail(f"stalled: no video for {self.read_timeout_s:g} s while other streams "
                                     "go on (read timeout)")
                continue
            last_video = now
            flush = packet.size == 0  # demux ends with an empty packet per stream: it flushes the decoder
            if not keyed:
                if flush:
                    continue
                if not packet.is_keyframe:
                    self.stats.skipped_packets += 1
                    continue
                keyed = True
            try:
                decoded = self.stream.decode(packet)
            except (av.FFmpegError, ValueError) as err:
                raise self._fail("cannot decode the stream: " + describe_error(err, self.read_timeout_s)) from err
            for frame in decoded:
                arrived = time.monotonic()
                if self.stats.frames == 0:
                    self.stats.first_frame_s = arrived - self.started
                    self.coded = (int(frame.width), int(frame.height))
                elif (frame.width, frame.height) != self.coded:
                    raise self._fail(f"the frame size changes from {self.coded[0]}x{self.coded[1]} to "
                                     f"{frame.width}x{frame.height}")
                t = clock.place(frame.time, arrived)
                rgb = upright(frame.to_ndarray(format="rgb24", threads=1), frame.rotation)
                out = Frame(self.stats.frames, t, rgb, arrived)
                self.stats.frames += 1
                yield out
        if self.stats.frames == 0:
            raise self._fail("the stream ended before its first video frame")


@contextlib.contextmanager
def open_input(spec: InputSpec, open_timeout_s: float = OPEN_TIMEOUT_S, read_timeout_s: float = READ_TIMEOUT_S,
               options: Mapping[str, str] | None = None) -> Iterator[tuple[InputInfo, Iterator[Frame]]]:
    """Open one input: ``(info, frames)``, ``frames`` yielding :class:`Frame` records one at a time.

    Files: :func:`fer_zoo.video.face_track.open_video` (photos: a 1-frame clip read as ``extract`` reads it), its
    errors unchanged (:class:`ClipReadError`, raised while opening or iterating).

    Cameras and URLs: opened with PyAV (``av.open`` with ``timeout=(open_timeout_s, read_timeout_s)``, seconds) and
    read until the first frame before this returns, so everything that stops an input before its first frame
    (camera missing or busy, connection refused, host unreachable, no answer within ``open_timeout_s``, not a
    video, no frame within ``read_timeout_s``) raises :class:`InputError` here, one line naming the input and the
    cause. While iterating: no video data for ``read_timeout_s`` seconds, a decoding error or a frame size change
    raises :class:`ClipReadError` (message ``<input>: <cause> after N frames``); a stream that ends normally ends
    the iterator. ``options``: FFmpeg options overriding the defaults (e.g. ``{"framerate": "15"}`` for a camera,
    ``{"rtsp_transport": "udp"}``). ``info.stats`` (:class:`StreamStats`) is filled as frames are read.
    """
    if spec.kind == "file":
        opener = _open_photo if is_image(spec.target) else open_video
        with opener(spec.target) as (vinfo, decoded):
            info = InputInfo(vinfo.path, vinfo.fps, vinfo.width, vinfo.height, spec, StreamStats())

            def file_frames() -> Iterator[Frame]:
                for i, t, rgb in decoded:
                    f = Frame(i, t, rgb, time.monotonic())
                    info.stats.frames += 1
                    yield f

            yield info, file_frames()
        return
    started = time.monotonic()
    src = camera_source(spec.target) if spec.kind == "camera" else url_source(spec.target)
    container = _open_container(src, open_timeout_s, read_timeout_s, options)
    open_stalled = (f"stalled while opening: no data for {open_timeout_s:g} s (open timeout)"
                    if time.monotonic() - started >= open_timeout_s else "")
    with container:
        stats = StreamStats()
        reader = _LiveReader(container, src, read_timeout_s, stats, started, open_stalled)
        reader.select()
        frames = reader.frames()
        first = next(frames)  # raises InputError when no frame comes (the reader never returns without one)
        assert reader.coded is not None
        info = InputInfo(spec.target, reader.fps, reader.coded[0], reader.coded[1], spec, stats)
        try:
            yield info, itertools.chain([first], frames)
        finally:
            frames.close()


@contextlib.contextmanager
def _open_photo(path: str) -> Iterator[tuple[VideoInfo, Iterator[tuple[int, float, np.ndarray]]]]:
    from fer_zoo.video.face_track import _open_image

    with _open_image(path) as opened:
        yield opened
