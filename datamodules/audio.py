"""A clip's soundtrack, decoded the one way every audio store uses: mono, 16 kHz, float32, on the clip's clock.

Exactly (recorded as :data:`AUDIO_DECODING` in every audio store's ``meta.json`` and config, so it is hashed):

1. **Where from**: a sibling audio file when the source names one (``ClipRecord.audio``: a manifest's ``audio``
   column, or ``audio_root/<clip_id>.wav``), else the clip's own video file. Photos and frame folders without a
   sibling file have no soundtrack (``None``: every frame ``valid=False``, "no audio stream").
2. **Which stream** (``stream``, the audio extractors' ``audio_stream`` config key): ``"auto"`` reads the first
   audio stream carrying the ``default`` disposition (``AV_DISPOSITION_DEFAULT``: Matroska's FlagDefault, an MP4
   track's "enabled" flag), else the first audio stream; an integer ``i`` reads audio stream ``i`` (0-based among
   the audio streams, FFmpeg's ``-map 0:a:i``). Which one was read, and why, is in :attr:`Soundtrack.stream`, and
   in :attr:`Soundtrack.notes` (so in the clip's ``reason``) when the file has several.
3. **Decoder**: FFmpeg through PyAV (``container.decode(audio_stream)``), every frame of the stream; a decoding error
   raises :class:`AudioReadError` (the clip fails in the audio store only; the visual stores never read audio).
4. **Clock**: each decoded frame is placed by its own presentation time (``frame.time``: pts x the stream's time
   base, on the container's clock, the clock of the video frames' timestamps in ``datamodules.frames``). Frames
   whose times continue each other form a run; a jump by more than ``max(1 ms, 2 time-base ticks)`` starts a new
   run. A gap between runs (lost packets) is left **not covered**, never filled as if heard; a run that overlaps
   time already decoded loses its overlapping samples (the first decoded keeps its place) and the clip's reason
   says how much was dropped. Details: ``datamodules.audio_clock``. A sibling file's clock is shifted so that its
   first sample plays at 0 s, the first frame of the video.
5. **Resampler**: per run, PyAV's ``av.AudioResampler(format="fltp", layout=<the stream's own layout>, rate=16000)``,
   i.e. FFmpeg's libswresample with its defaults (windowed-sinc, 32-tap filter, phase shift 10, cutoff 0.97, Kaiser
   beta 9), flushed at the end of the run so no tail samples are lost (a soundtrack without breaks is one run:
   exactly the samples of one resampler over the whole stream). Channels are kept through the resampler.
6. **Downmix**: the arithmetic mean of all channels (``L/2 + R/2`` for stereo), done by us after resampling, not
   FFmpeg's rematrix (which weighs stereo by 1/sqrt(2) each and can exceed full scale).
7. **Sample format**: float32 in [-1, 1] (full scale = 1.0), on one 16 kHz grid: sample ``i`` plays at
   ``start + i / 16000`` s; :attr:`Soundtrack.segments` says which samples were heard.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.frames import IMAGE_SUFFIXES, ClipReadError

SAMPLE_RATE = 16000
AUDIO_DECODING: dict[str, Any] = {
    "sample_rate": SAMPLE_RATE,
    "channels": "mono: arithmetic mean of all channels, after resampling",
    "sample_format": "float32 in [-1, 1]",
    "resampler": "PyAV av.AudioResampler(format='fltp', layout=<input layout>, rate=16000) = FFmpeg libswresample "
                 "defaults, one per run of contiguous timestamps, flushed",
    "source": "sibling audio file (ClipRecord.audio) if named, else the video file; audio_stream auto: the first "
              "audio stream with the default disposition, else the first; an int: that audio stream",
    "time_base": "each decoded audio frame's pts on the container clock (sibling file: 0 s = first video frame); "
                 "a jump > max(1 ms, 2 ticks) starts a new run; gaps not covered; overlaps: first decoded kept",
    "version": 2,
}
AUTO = "auto"


class AudioReadError(ClipReadError):
    """A soundtrack that exists could not be decoded (corrupt stream, missing sibling file, no such audio stream,
    a broken clock); names file and reason."""


@dataclass
class Soundtrack:
    """Decoded soundtrack: ``samples`` float32 ``[N]`` mono at ``sample_rate`` Hz, ``samples[i]`` at
    ``start + i / sample_rate`` s.

    ``segments``: int64 ``[K, 2]``, the ``[a, b)`` sample ranges that were heard (sorted, disjoint; ``None`` given:
    all ``N`` samples); samples outside them are 0.0 placeholders of a gap and must not be read as sound.
    ``stream``: what was read (codec, original rate, channels, layout, ``index`` among the audio streams,
    ``audio_streams`` in the file, ``chosen``: why that one). ``dropped``: seconds of decoded audio left out because
    their timestamps overlap audio decoded before them (``datamodules.audio_clock``). ``notes``: what a clip's
    reason should say about the decoding (which stream when there are several, audio dropped as overlapping).
    """

    samples: np.ndarray
    sample_rate: int
    start: float
    path: str
    stream: dict[str, Any] = field(default_factory=dict)
    segments: np.ndarray | None = None
    dropped: float = 0.0
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.segments is None:
            self.segments = np.array([[0, len(self.samples)]] if len(self.samples) else [], np.int64).reshape(-1, 2)

    @property
    def duration(self) -> float:
        """Seconds from the first to the last heard sample's end, gaps included."""
        return len(self.samples) / self.sample_rate

    @property
    def end(self) -> float:
        return self.start + self.duration

    @property
    def heard(self) -> float:
        """Seconds of audio actually decoded (``duration`` less the gaps)."""
        assert self.segments is not None
        return float((self.segments[:, 1] - self.segments[:, 0]).sum()) / self.sample_rate

    def gaps(self) -> list[tuple[float, float]]:
        """``(from, to)`` seconds of each stretch without audio between ``start`` and ``end``."""
        assert self.segments is not None
        sr = self.sample_rate
        return [(self.start + b / sr, self.start + a / sr) for (_, b), (a, _) in zip(self.segments, self.segments[1:])]


def read_soundtrack(clip_path: str | Path, audio_path: str | Path | None = None,
                    stream: str | int = AUTO) -> Soundtrack | None:
    """The clip's soundtrack (see the module docstring), or ``None`` when the clip has no audio stream.

    ``stream``: ``"auto"`` or an audio stream index (module docstring, step 2). Raises :class:`AudioReadError` for a
    named sibling file that is missing, an audio stream index the file does not have, a stream that fails to decode
    or decodes to zero samples, and timestamps leaving more than ``audio_clock.MAX_UNCOVERED_S`` s uncovered.
    """
    if not (stream == AUTO or (isinstance(stream, int) and not isinstance(stream, bool) and stream >= 0)):
        raise ValueError(f"audio_stream must be 'auto' or an audio stream index >= 0, got {stream!r}")
    if audio_path is not None:
        p = Path(audio_path)
        if not p.is_file():
            raise AudioReadError(p, "audio file not found")
        track = _decode(p, stream)
        if track is None:
            raise AudioReadError(p, "audio file has no audio stream")
        track.start = 0.0  # a separate file has no shared clock with the video: it starts with the first frame
        return track
    p = Path(clip_path)
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        return None
    return _decode(p, stream)


def _choose(p: Path, streams: list[Any], wanted: str | int) -> tuple[int, str]:
    """Index among the audio streams to read, and why (module docstring, step 2)."""
    import av

    if wanted != AUTO:
        assert isinstance(wanted, int)
        if wanted >= len(streams):
            raise AudioReadError(p, f"audio_stream: {wanted} asked for, the file has {len(streams)} audio stream(s) "
                                    f"(0-based)")
        return wanted, f"audio_stream: {wanted} in the config"
    if len(streams) == 1:
        return 0, "the only audio stream"
    default = [i for i, s in enumerate(streams) if s.disposition & av.stream.Disposition.default]
    if default:
        return default[0], "default disposition"
    return 0, "the first: none carries the default disposition"


class _RunBuilder:
    """Frames of one run through one resampler (``audio_clock`` rules); ``finish`` flushes it into a Run."""

    def __init__(self, start: float, key: tuple[str, str, int], follows: bool) -> None:
        import av

        self.start, self.key, self.follows = start, key, follows
        self.n_in = 0
        self.chunks: list[np.ndarray] = []
        self.resampler = av.AudioResampler(format="fltp", layout=key[1], rate=SAMPLE_RATE)

    @property
    def end(self) -> float:
        return self.start + self.n_in / self.key[2]

    def add(self, frame: Any) -> None:
        self.n_in += frame.samples
        self.chunks.extend(out.to_ndarray() for out in self.resampler.resample(frame))

    def finish(self) -> Any:
        from datamodules.audio_clock import Run

        self.chunks.extend(out.to_ndarray() for out in self.resampler.resample(None))
        if not self.chunks:
            return Run(self.start, np.zeros(0, np.float32), self.follows)
        x = np.concatenate(self.chunks, axis=1).astype(np.float32).mean(axis=0, dtype=np.float32)
        return Run(self.start, x, self.follows)


def _decode(p: Path, wanted: str | int) -> Soundtrack | None:
    import av

    from datamodules.audio_clock import place, tolerance

    runs: list[Any] = []
    run: _RunBuilder | None = None
    decoded = 0.0
    try:
        with av.open(str(p)) as container:
            streams = list(container.streams.audio)
            if not streams:
                return None
            which, why = _choose(p, streams, wanted)
            stream = streams[which]
            ctx = stream.codec_context
            info = {"codec": ctx.name, "rate": ctx.sample_rate, "channels": ctx.channels,
                    "layout": ctx.layout.name if ctx.layout else None, "index": which,
                    "audio_streams": len(streams), "chosen": why}
            tol = tolerance(stream.time_base)
            for frame in container.decode(stream):
                if not frame.samples:
                    continue
                decoded += frame.samples / frame.sample_rate
                key = (frame.format.name, frame.layout.name, int(frame.sample_rate))
                t = float(frame.time) if frame.time is not None else (run.end if run is not None else 0.0)
                if run is None or key != run.key or abs(t - run.end) > tol:
                    follows = run is not None and abs(t - run.end) <= tol
                    if run is not None:
                        runs.append(run.finish())
                    run = _RunBuilder(t, key, follows)
                run.add(frame)
            if run is not None:
                runs.append(run.finish())
    except (av.FFmpegError, ValueError, OSError) as err:
        raise AudioReadError(p, f"cannot decode audio after {decoded:.2f} s ({type(err).__name__}: {err})") from err
    try:
        placed = place(runs, SAMPLE_RATE)
    except ValueError as err:
        raise AudioReadError(p, str(err)) from err
    notes = []
    if len(streams) > 1:
        notes.append(f"audio stream a:{which} of {len(streams)} read ({why})")
    dropped = placed.dropped / SAMPLE_RATE
    if placed.dropped:
        notes.append(f"{dropped:.3f} s of audio dropped: its timestamps overlap audio decoded before (the first "
                     "decoded kept)")
    return Soundtrack(placed.samples, SAMPLE_RATE, placed.start, str(p), info, placed.segments, dropped, notes)
