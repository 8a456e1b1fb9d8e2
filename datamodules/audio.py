"""A clip's soundtrack, decoded the one way every audio store uses: mono, 16 kHz, float32, on the clip's clock.

Exactly (recorded as :data:`AUDIO_DECODING` in every audio store's ``meta.json`` and config, so it is hashed):

1. **Where from**: a sibling audio file when the source names one (``ClipRecord.audio``: a manifest's ``audio``
   column, or ``audio_root/<clip_id>.wav``), else the first audio stream of the clip's own video file. Photos and
   frame folders without a sibling file have no soundtrack (``None``: every frame ``valid=False``, "no audio
   stream").
2. **Decoder**: FFmpeg through PyAV (``container.decode(audio_stream)``), every frame of the stream; a decoding error
   raises :class:`AudioReadError` (the clip fails in the audio store only; the visual stores never read audio).
3. **Resampler**: PyAV's ``av.AudioResampler(format="fltp", layout=<the stream's own layout>, rate=16000)``, i.e.
   FFmpeg's libswresample with its defaults (windowed-sinc, 32-tap filter, phase shift 10, cutoff 0.97, Kaiser
   beta 9), flushed at the end so no tail samples are lost. Channels are kept through the resampler.
4. **Downmix**: the arithmetic mean of all channels (``L/2 + R/2`` for stereo), done by us after resampling, not
   FFmpeg's rematrix (which weighs stereo by 1/sqrt(2) each and can exceed full scale).
5. **Sample format**: float32 in [-1, 1] (full scale = 1.0).
6. **Time base**: ``start`` is the first decoded audio frame's presentation time (``frame.time``: pts x the
   stream's time base) on the container's clock, the same clock as the video frames' timestamps
   (``datamodules.frames``), so sample ``i`` plays at ``start + i / 16000`` s. A sibling file starts at 0 s, the
   first frame of the video. Gaps in the audio pts are not filled (the samples are taken as contiguous).
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
                 "defaults",
    "source": "sibling audio file (ClipRecord.audio) if named, else the video file's first audio stream",
    "time_base": "first decoded audio frame's pts on the container clock (sibling file: 0 s = first video frame)",
    "version": 1,
}


class AudioReadError(ClipReadError):
    """A soundtrack that exists could not be decoded (corrupt stream, missing sibling file); names file and reason."""


@dataclass
class Soundtrack:
    """Decoded soundtrack: ``samples`` float32 ``[N]`` mono at ``sample_rate`` Hz, ``samples[0]`` at ``start`` s."""

    samples: np.ndarray
    sample_rate: int
    start: float
    path: str
    stream: dict[str, Any] = field(default_factory=dict)  # codec, original rate, channels, layout

    @property
    def duration(self) -> float:
        return len(self.samples) / self.sample_rate

    @property
    def end(self) -> float:
        return self.start + self.duration


def read_soundtrack(clip_path: str | Path, audio_path: str | Path | None = None) -> Soundtrack | None:
    """The clip's soundtrack (see the module docstring), or ``None`` when the clip has no audio stream.

    Raises :class:`AudioReadError` for a named sibling file that is missing, and for a stream that fails to decode
    or decodes to zero samples.
    """
    if audio_path is not None:
        p = Path(audio_path)
        if not p.is_file():
            raise AudioReadError(p, "audio file not found")
        track = _decode(p)
        if track is None:
            raise AudioReadError(p, "audio file has no audio stream")
        track.start = 0.0  # a separate file has no shared clock with the video: it starts with the first frame
        return track
    p = Path(clip_path)
    if p.is_dir() or p.suffix.lower() in IMAGE_SUFFIXES:
        return None
    return _decode(p)


def _decode(p: Path) -> Soundtrack | None:
    import av

    chunks: list[np.ndarray] = []
    start: float | None = None
    decoded = 0.0
    try:
        with av.open(str(p)) as container:
            if not container.streams.audio:
                return None
            stream = container.streams.audio[0]
            ctx = stream.codec_context
            info = {"codec": ctx.name, "rate": ctx.sample_rate, "channels": ctx.channels,
                    "layout": ctx.layout.name if ctx.layout else None}
            resampler = None
            for frame in container.decode(stream):
                if start is None:
                    start = float(frame.time) if frame.time is not None else 0.0
                if resampler is None:
                    resampler = av.AudioResampler(format="fltp", layout=frame.layout.name, rate=SAMPLE_RATE)
                decoded += frame.samples / frame.sample_rate
                chunks.extend(out.to_ndarray() for out in resampler.resample(frame))
            if resampler is not None:
                chunks.extend(out.to_ndarray() for out in resampler.resample(None))
    except (av.FFmpegError, ValueError, OSError) as err:
        raise AudioReadError(p, f"cannot decode audio after {decoded:.2f} s ({type(err).__name__}: {err})") from err
    if not chunks or not sum(c.shape[1] for c in chunks):
        raise AudioReadError(p, "audio stream decoded to zero samples")
    samples = np.concatenate(chunks, axis=1).astype(np.float32).mean(axis=0, dtype=np.float32)
    return Soundtrack(samples, SAMPLE_RATE, float(start or 0.0), str(p), info)
