"""Audio extractors: one feature row per stored video frame, from a window of the soundtrack centred on its time.

An audio store holds the same rows as the visual stores of the clip (the same frame cap, frame indices and
timestamps: the extraction run makes the same frame pass), so audio stacks, masks and fuses like any other modality.

The soundtrack (``datamodules.audio``) is a 16 kHz grid from ``start`` to ``end`` s whose heard samples form one or
more *stretches* (``Soundtrack.segments``), separated by gaps where the stream's timestamps say no audio was
recorded (lost packets). The window of frame ``t`` (its timestamp in seconds, on the soundtrack's clock), with
``W = round(window x 16000)`` samples and ``c = round((t - start) x 16000)`` its centre sample:

- ``t`` outside ``[start, end]`` (half a sample of slack): invalid, "outside the soundtrack" (a soundtrack shorter
  than the video);
- ``c`` in no stretch (between two stretches): invalid, "no audio (gap in the soundtrack ...)": never zero-filled
  as if heard, whatever part of its window the neighbouring stretches could fill;
- the window width is ``w = min(W, longest stretch)``: a soundtrack (or, with gaps, its longest stretch) shorter
  than the window gives windows of that length (documented, not dropped; without gaps: the whole soundtrack);
- ``c`` in a stretch shorter than ``w`` (between gaps): invalid, "in a stretch of sound shorter than the window";
- otherwise the window is the ``w`` samples centred on ``c``, shifted to lie wholly inside ``c``'s stretch (near
  a stretch's ends, e.g. at 0 s or just after a gap, it keeps its full width on the heard side): a window never
  spans a gap, so no feature ever sees the placeholder zeros of one;
- also invalid (features zero, never "heard") when the clip has no audio stream; the longest stretch is shorter
  than the extractor's receptive field (``min_samples``); or the window is silent (RMS below ``silence_dbfs``, dB
  re full scale).

The clip's ``reason`` in the store index says which and how many, after what the decoding noted (the audio stream
read when the file has several, audio dropped as overlapping).

Frame folders and photos carry frame numbers, not times: ``folder_fps`` converts them (required when such a clip has
a sibling audio file).
"""

from __future__ import annotations

from abc import abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from extractors.base import Extractor

NO_AUDIO = "no audio stream"


@dataclass
class AudioInput:
    """What an audio extractor is given for one clip.

    ``soundtrack``: a ``datamodules.audio.Soundtrack`` (mono float32 samples, rate, start, heard segments) or
    ``None`` (no audio stream); read it with :meth:`AudioExtractor.read_soundtrack` so its ``audio_stream``
    applies. ``timestamps``: float64 ``[T]``, the stored frames' times (s) as the frame decoder gave them;
    ``seconds`` False when they are frame numbers (frame folders, photos).
    """

    soundtrack: Any
    timestamps: np.ndarray
    seconds: bool = True


@dataclass
class Windows:
    """Where each frame's window lies in the soundtrack: ``start`` int64 ``[T]`` sample offsets, ``length`` samples
    (one width per clip), ``valid`` bool ``[T]``, ``reason`` (empty when every frame is valid and the decoding noted
    nothing). Windows of valid frames lie wholly inside heard audio."""

    samples: np.ndarray  # float32 [N], the soundtrack (empty when there is none)
    start: np.ndarray
    length: int
    valid: np.ndarray
    reason: str

    def cut(self, i: int) -> np.ndarray:
        return self.samples[self.start[i]:self.start[i] + self.length]


class AudioExtractor(Extractor):
    """Base of audio extractors: ``extract(AudioInput) -> (features float32 [T, D], valid bool [T])``.

    Common config: ``window`` (s, default 1.0), ``silence_dbfs`` (default -60), ``folder_fps`` (default None),
    ``audio_stream`` (``"auto"``: the audio stream with the ``default`` disposition, else the first; or an index
    among the file's audio streams, 0-based; see ``datamodules.audio``). All are in the store's config, so hashed.
    Subclasses give ``min_samples`` (receptive field) and ``features(windows) -> float32 [T, D]`` (rows of invalid
    frames are ignored and zeroed).
    """

    kind: ClassVar[str] = "audio"

    def __init__(self, window: float = 1.0, silence_dbfs: float = -60.0, folder_fps: float | None = None,
                 audio_stream: str | int = "auto", decoding: dict[str, Any] | None = None, **config: Any) -> None:
        from datamodules.audio import AUDIO_DECODING, AUTO

        if decoding is not None and decoding != AUDIO_DECODING:  # rebuilt from a store's meta (predict-video)
            raise ValueError(f"{self.name}: the store's audio was decoded as {decoding}, this fer_zoo decodes as "
                             f"{AUDIO_DECODING}; its features would differ")
        if not window > 0:
            raise ValueError(f"{self.name}: window must be > 0 seconds, got {window!r}")
        if folder_fps is not None and not folder_fps > 0:
            raise ValueError(f"{self.name}: folder_fps must be > 0, got {folder_fps!r}")
        if not (audio_stream == AUTO or (isinstance(audio_stream, int) and not isinstance(audio_stream, bool)
                                         and audio_stream >= 0)):
            raise ValueError(f"{self.name}: audio_stream must be 'auto' or an audio stream index >= 0, got "
                             f"{audio_stream!r}")
        super().__init__(window=float(window), silence_dbfs=float(silence_dbfs), folder_fps=folder_fps,
                         audio_stream=audio_stream, decoding=AUDIO_DECODING, **config)

    @property
    @abstractmethod
    def min_samples(self) -> int:
        """The shortest soundtrack (samples at 16 kHz) the extractor can describe: its receptive field."""

    def read_soundtrack(self, clip_path: str, audio_path: str | None = None) -> Any:
        """``datamodules.audio.read_soundtrack`` with this extractor's ``audio_stream``: a ``Soundtrack`` or None."""
        from datamodules.audio import read_soundtrack

        return read_soundtrack(clip_path, audio_path, stream=self.config.get("audio_stream", "auto"))

    def windows(self, inp: AudioInput) -> Windows:
        """Each frame's window and validity (rules in the module docstring)."""
        ts = np.asarray(inp.timestamps, np.float64)
        n_frames = len(ts)
        track = inp.soundtrack
        empty = np.zeros(0, np.float32)
        none = np.zeros(n_frames, bool)
        if track is None:
            return Windows(empty, np.zeros(n_frames, np.int64), 0, none, NO_AUDIO)
        if not inp.seconds:
            fps = self.config["folder_fps"]
            if fps is None:
                raise ValueError(f"{self.name}: frames of a folder or photo have no time base; set folder_fps to "
                                 "align them with the soundtrack")
            ts = ts / fps
        x, sr = track.samples, track.sample_rate
        n = len(x)
        seg = np.asarray(track.segments if track.segments is not None else [[0, n]], np.int64).reshape(-1, 2)
        lens = seg[:, 1] - seg[:, 0]
        longest = int(lens.max()) if len(lens) else 0
        notes = list(getattr(track, "notes", []))
        want = int(round(self.config["window"] * sr))
        if want < self.min_samples:
            raise ValueError(f"{self.name}: window {self.config['window']} s is shorter than the receptive field "
                             f"({self.min_samples} samples)")
        if longest < self.min_samples:
            what = (f"soundtrack of {longest} samples ({longest / sr:.3f} s)" if len(seg) <= 1 else
                    f"longest stretch of sound between gaps, {longest} samples ({longest / sr:.3f} s),")
            notes.append(f"{what} is shorter than the receptive field of {self.name} ({self.min_samples} samples): "
                         f"all {n_frames} frames invalid")
            return Windows(x, np.zeros(n_frames, np.int64), 0, none, "; ".join(notes))
        w = min(want, longest)
        centre = np.round((ts - track.start) * sr).astype(np.int64)
        inside = (ts >= track.start - 0.5 / sr) & (ts <= track.end + 0.5 / sr)
        c = np.clip(centre, 0, n)
        k = np.minimum(np.searchsorted(seg[:, 1], c, side="left"), len(seg) - 1)  # first stretch ending at/after c
        in_stretch = inside & (seg[k, 0] <= c) & (c <= seg[k, 1])
        gap = inside & ~in_stretch
        short = in_stretch & (lens[k] < w)
        ok = in_stretch & ~short
        start = np.clip(centre - w // 2, 0, n - w)
        start[ok] = np.clip(centre[ok] - w // 2, seg[k[ok], 0], seg[k[ok], 1] - w)
        rms = np.zeros(n_frames)
        rms[ok] = [np.sqrt(np.mean(np.square(x[s:s + w], dtype=np.float64))) for s in start[ok]]
        dbfs = 20 * np.log10(np.maximum(rms, 1e-12))
        loud = dbfs >= self.config["silence_dbfs"]
        valid = ok & loud
        if w < want:
            notes.append(f"soundtrack ({n / sr:.2f} s) shorter than the {self.config['window']:g} s window: each "
                         "frame's window is the whole soundtrack" if len(seg) == 1 else
                         f"longest stretch of sound between gaps ({w / sr:.2f} s) shorter than the "
                         f"{self.config['window']:g} s window: windows are {w / sr:.2f} s long")
        if (~inside).any():
            notes.append(f"{int((~inside).sum())} of {n_frames} frames outside the soundtrack "
                         f"({track.start:.2f}-{track.end:.2f} s)")
        if len(seg) > 1:
            gaps = [(track.start + b / sr, track.start + a / sr) for b, a in zip(seg[:-1, 1], seg[1:, 0])]
            where = ", ".join(f"{g0:.2f}-{g1:.2f} s" for g0, g1 in gaps[:3])
            more = f" and {len(gaps) - 3} more" if len(gaps) > 3 else ""
            notes.append(f"{int(gap.sum())} of {n_frames} frames have no audio (gap in the soundtrack at {where}"
                         f"{more})")
        if short.any():
            notes.append(f"{int(short.sum())} of {n_frames} frames in a stretch of sound shorter than the "
                         f"{w / sr:.2f} s window between gaps")
        if (ok & ~loud).any():
            notes.append(f"{int((ok & ~loud).sum())} of {n_frames} frames silent "
                         f"(window RMS < {self.config['silence_dbfs']:g} dBFS)")
        return Windows(x, start.astype(np.int64), w, valid, "; ".join(notes))

    def preprocess(self, frames: Any) -> Any:  # noqa: D102  (see windows / features)
        return self.windows(self._checked_input(frames))

    def forward(self, pre: Windows) -> tuple[np.ndarray, np.ndarray]:
        feats = np.zeros((len(pre.valid), self.dim), np.float32)
        if pre.valid.any():
            out = np.asarray(self.features(pre), np.float32)
            feats[pre.valid] = out[pre.valid]
        return feats, pre.valid.copy()

    @abstractmethod
    def features(self, win: Windows) -> np.ndarray:
        """float32 ``[T, D]`` for the frames' windows (only rows with ``win.valid`` are kept)."""

    def extract(self, frames: Any) -> tuple[np.ndarray, np.ndarray]:
        feats, valid = self.forward(self.preprocess(frames))
        return np.asarray(feats, dtype=np.float32), np.asarray(valid, dtype=bool)

    def _checked_input(self, inp: Any) -> AudioInput:
        if not isinstance(inp, AudioInput):
            raise TypeError(f"{self.name} is an audio extractor: extract() takes an AudioInput (soundtrack + frame "
                            f"timestamps), got {type(inp).__name__}")
        return inp
