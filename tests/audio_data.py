"""Audio-visual test clips, built in the tests from the real face videos in ``../shared/data/face-videos``.

How (so a reader can rebuild them by hand):

- speech: ``espeak-ng`` (Debian package ``espeak-ng`` 1.51) speaks a sentence to a 22.05 kHz mono 16-bit WAV
  (``espeak-ng -w out.wav "..."``); when espeak-ng is not installed the speech tests skip, saying so;
- the video stream of a real face video is copied packet for packet (no re-encoding) with PyAV, and the soundtrack is
  encoded with FFmpeg's AAC encoder through PyAV at the rate and channel layout asked for (8 / 16 / 44.1 / 48 kHz,
  mono or stereo); PCM WAV siblings are written with PyAV's ``pcm_s16le``;
- a corrupt audio stream: a real AAC stream whose packets after the first ten are replaced by random bytes;
- audio clocks: AAC packets left out (lost packets: the stream's timestamps jump, a gap) or written with times that
  advance by less than a packet lasts (overlapping timestamps), through ``mux(retime=...)``; several audio streams
  with the ``default`` disposition on one of them (``mux_streams``);
- tones: a 1 kHz sine at -6 dBFS starting at a known second, over a -40 dBFS white-noise floor (so every frame
  before the tone has heard, non-silent audio).
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import numpy as np


def have_espeak() -> bool:
    return shutil.which("espeak-ng") is not None


def speak(text: str, out: Path) -> Path:
    """A spoken sentence as a WAV (espeak-ng)."""
    subprocess.run(["espeak-ng", "-w", str(out), text], check=True, capture_output=True)
    return out


def read_wav(path: Path) -> tuple[np.ndarray, int]:
    """float32 ``[C, N]`` in [-1, 1] and the sample rate, decoded with PyAV (no resampling)."""
    import av

    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        chunks = [f.to_ndarray() for f in c.decode(s)]
        rate = s.codec_context.sample_rate
    x = np.concatenate(chunks, axis=1)
    if x.dtype == np.int16:
        x = x.astype(np.float32) / 32768.0
    return x.astype(np.float32), rate


def resample_linear(x: np.ndarray, rate: int, new_rate: int) -> np.ndarray:
    """Plain linear interpolation (test-data only: makes a track at another rate from a known signal)."""
    n = int(round(x.shape[-1] * new_rate / rate))
    t_new = np.arange(n) / new_rate
    t_old = np.arange(x.shape[-1]) / rate
    return np.stack([np.interp(t_new, t_old, ch) for ch in np.atleast_2d(x)]).astype(np.float32)


def tone_track(duration: float, rate: int, tone_start: float, freq: float = 1000.0, seed: int = 0) -> np.ndarray:
    """float32 ``[1, N]``: -40 dBFS white noise, plus a -6 dBFS sine from ``tone_start`` s on."""
    rng = np.random.default_rng(seed)
    n = int(round(duration * rate))
    t = np.arange(n) / rate
    x = rng.standard_normal(n) * 0.01
    x += np.where(t >= tone_start, 0.5 * np.sin(2 * np.pi * freq * t), 0.0)
    return x[None].astype(np.float32)


def _layout(channels: int) -> str:
    return {1: "mono", 2: "stereo"}[channels]


def _encode(stream: object, audio: np.ndarray, rate: int) -> list:
    """Packets of ``audio`` (float32 ``[C, N]``) encoded by ``stream`` (an output audio stream), flushed."""
    import av

    ctx = stream.codec_context  # type: ignore[attr-defined]
    fmt = ctx.format.name
    size = ctx.frame_size or 1024
    packets = []
    for a in range(0, audio.shape[1], size):
        chunk = np.ascontiguousarray(audio[:, a:a + size])
        data = chunk if fmt.endswith("p") else np.ascontiguousarray(chunk.T.reshape(1, -1))
        if fmt.startswith("s16"):
            data = np.clip(data * 32767, -32768, 32767).astype(np.int16)
        frame = av.AudioFrame.from_ndarray(data, format=fmt, layout=_layout(audio.shape[0]))
        frame.sample_rate = rate
        frame.pts = a
        packets.extend(stream.encode(frame))  # type: ignore[attr-defined]
    packets.extend(stream.encode(None))  # type: ignore[attr-defined]
    return packets


def _copy_video(src: object, dst: object, vout: object) -> None:
    """Copy the video packets of ``src`` into ``dst``'s stream ``vout`` (no re-encoding)."""
    for packet in src.demux(src.streams.video[0]):  # type: ignore[attr-defined]
        if packet.dts is None:
            continue
        packet.stream = vout
        dst.mux(packet)  # type: ignore[attr-defined]


def mux(video: Path, out: Path, audio: np.ndarray | None = None, rate: int = 16000, codec: str = "aac",
        corrupt: bool = False, retime: Callable[[float], list[float]] | None = None) -> Path:
    """Copy ``video``'s video stream into ``out`` (mp4 / mkv by suffix) with ``audio`` (float32 ``[C, N]``) encoded
    as ``codec`` at ``rate``; ``audio=None``: no audio stream; ``corrupt``: audio packets after the tenth are
    replaced by random bytes; ``retime``: maps each audio packet's presentation time (s) to the times it is
    written with: ``[]`` leaves it out (lost packets: those after keep their times, so the stream has a gap),
    ``[t, t]`` writes it twice (a duplicated packet: timestamps that overlap). Times must not decrease."""
    import av

    rng = np.random.default_rng(1)
    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        vout = dst.add_stream_from_template(src.streams.video[0])
        aout = None
        if audio is not None:
            aout = dst.add_stream(codec, rate=rate, layout=_layout(audio.shape[0]))
        _copy_video(src, dst, vout)
        if aout is not None:
            assert audio is not None
            for i, p in enumerate(_encode(aout, audio, rate)):
                if corrupt and i >= 10:
                    garbage = av.Packet(rng.integers(0, 256, p.size, dtype=np.uint8).tobytes())
                    garbage.pts, garbage.dts, garbage.time_base = p.pts, p.dts, p.time_base
                    p = garbage
                times = [None] if retime is None or p.pts is None else retime(float(p.pts * p.time_base))
                for t in times:
                    q = p if t is None else av.Packet(bytes(p))
                    if t is not None:
                        q.pts = q.dts = int(round(t / p.time_base))
                        q.time_base = p.time_base
                    q.stream = aout
                    dst.mux(q)
    return out


def mux_streams(video: Path, out: Path, tracks: list[np.ndarray], rate: int, default: int | None) -> Path:
    """``video``'s video stream with one AAC audio stream per entry of ``tracks`` (float32 ``[C, N]`` each, in that
    order), only stream ``default`` carrying the ``default`` disposition (``None``: no audio stream carries it)."""
    import av

    with av.open(str(video)) as src, av.open(str(out), "w") as dst:
        vout = dst.add_stream_from_template(src.streams.video[0])
        outs = [dst.add_stream("aac", rate=rate, layout=_layout(t.shape[0])) for t in tracks]
        for i, s in enumerate(outs):
            s.disposition = av.stream.Disposition.default if i == default else av.stream.Disposition(0)
        _copy_video(src, dst, vout)
        for s, t in zip(outs, tracks):
            for p in _encode(s, t, rate):
                p.stream = s
                dst.mux(p)
    return out


def write_wav(path: Path, audio: np.ndarray, rate: int) -> Path:
    """16-bit PCM WAV of float32 ``[C, N]``."""
    import av

    with av.open(str(path), "w") as dst:
        s = dst.add_stream("pcm_s16le", rate=rate, layout=_layout(audio.shape[0]))
        data = np.clip(audio * 32767, -32768, 32767).astype(np.int16)
        data = np.ascontiguousarray(data.T.reshape(1, -1))
        frame = av.AudioFrame.from_ndarray(data, format="s16", layout=_layout(audio.shape[0]))
        frame.sample_rate = rate
        frame.pts = 0
        for p in s.encode(frame):
            dst.mux(p)
        for p in s.encode(None):
            dst.mux(p)
    return path
