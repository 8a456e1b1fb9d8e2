"""Audio extractors: one feature row per stored video frame, from a window of the soundtrack centred on its time.

An audio store holds the same rows as the visual stores of the clip (the same frame cap, frame indices and
timestamps: the extraction run makes the same frame pass), so audio stacks, masks and fuses like any other modality.

The window of frame ``t`` (its timestamp in seconds, on the soundtrack's clock; see ``datamodules.audio``):

- ``window`` seconds (``w`` samples) centred on ``t``; near the ends of the soundtrack it is shifted inside it so
  it keeps its full width (frames at 0 s see the first ``window`` seconds, not half a window of nothing);
- a soundtrack shorter than the window: every frame's window is the whole soundtrack (documented, not dropped);
- frame ``valid=False`` (features zero, never "heard") when: the clip has no audio stream; ``t`` lies outside the
  soundtrack (a soundtrack shorter than the video); the soundtrack is shorter than the extractor's receptive field
  (``min_samples``); or the window is silent (RMS below ``silence_dbfs``, dB re full scale).
  The clip's ``reason`` in the store index says which and how many.

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

    ``soundtrack``: a ``datamodules.audio.Soundtrack`` (mono float32 samples, rate, start) or ``None`` (no audio
    stream). ``timestamps``: float64 ``[T]``, the stored frames' times (s) as the frame decoder gave them;
    ``seconds`` False when they are frame numbers (frame folders, photos).
    """

    soundtrack: Any
    timestamps: np.ndarray
    seconds: bool = True


@dataclass
class Windows:
    """Where each frame's window lies in the soundtrack: ``start`` int64 ``[T]`` sample offsets, ``length`` samples
    (one width per clip), ``valid`` bool ``[T]``, ``reason`` (empty when every frame is valid)."""

    samples: np.ndarray  # float32 [N], the soundtrack (empty when there is none)
    start: np.ndarray
    length: int
    valid: np.ndarray
    reason: str

    def cut(self, i: int) -> np.ndarray:
        return self.samples[self.start[i]:self.start[i] + self.length]


class AudioExtractor(Extractor):
    """Base of audio extractors: ``extract(AudioInput) -> (features float32 [T, D], valid bool [T])``.

    Common config: ``window`` (s, default 1.0), ``silence_dbfs`` (default -60), ``folder_fps`` (default None).
    Subclasses give ``min_samples`` (receptive field) and ``features(windows) -> float32 [T, D]`` (rows of invalid
    frames are ignored and zeroed).
    """

    kind: ClassVar[str] = "audio"

    def __init__(self, window: float = 1.0, silence_dbfs: float = -60.0, folder_fps: float | None = None,
                 decoding: dict[str, Any] | None = None, **config: Any) -> None:
        from datamodules.audio import AUDIO_DECODING

        if decoding is not None and decoding != AUDIO_DECODING:  # rebuilt from a store's meta (predict-video)
            raise ValueError(f"{self.name}: the store's audio was decoded as {decoding}, this fer_zoo decodes as "
                             f"{AUDIO_DECODING}; its features would differ")
        if not window > 0:
            raise ValueError(f"{self.name}: window must be > 0 seconds, got {window!r}")
        if folder_fps is not None and not folder_fps > 0:
            raise ValueError(f"{self.name}: folder_fps must be > 0, got {folder_fps!r}")
        super().__init__(window=float(window), silence_dbfs=float(silence_dbfs), folder_fps=folder_fps,
                         decoding=AUDIO_DECODING, **config)

    @property
    @abstractmethod
    def min_samples(self) -> int:
        """The shortest soundtrack (samples at 16 kHz) the extractor can describe: its receptive field."""

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
        if round(self.config["window"] * sr) < self.min_samples:
            raise ValueError(f"{self.name}: window {self.config['window']} s is shorter than the receptive field "
                             f"({self.min_samples} samples)")
        if n < self.min_samples:
            why = (f"soundtrack of {n} samples ({n / sr:.3f} s) is shorter than the receptive field of {self.name} "
                   f"({self.min_samples} samples): all {n_frames} frames invalid")
            return Windows(x, np.zeros(n_frames, np.int64), 0, none, why)
        w = min(int(round(self.config["window"] * sr)), n)
        centre = np.round((ts - track.start) * sr).astype(np.int64)
        start = np.clip(centre - w // 2, 0, n - w)
        inside = (ts >= track.start - 0.5 / sr) & (ts <= track.end + 0.5 / sr)
        rms = np.array([np.sqrt(np.mean(np.square(x[s:s + w], dtype=np.float64))) for s in start])
        dbfs = 20 * np.log10(np.maximum(rms, 1e-12))
        loud = dbfs >= self.config["silence_dbfs"]
        valid = inside & loud
        notes = []
        if w < int(round(self.config["window"] * sr)):
            notes.append(f"soundtrack ({n / sr:.2f} s) shorter than the {self.config['window']:g} s window: each "
                         "frame's window is the whole soundtrack")
        if (~inside).any():
            notes.append(f"{int((~inside).sum())} of {n_frames} frames outside the soundtrack "
                         f"({track.start:.2f}-{track.end:.2f} s)")
        if (inside & ~loud).any():
            notes.append(f"{int((inside & ~loud).sum())} of {n_frames} frames silent "
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
