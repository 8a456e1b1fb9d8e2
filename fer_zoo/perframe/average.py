"""A frame's answer is the mean of the outputs of the windows that cover it.

Window outputs arrive in the order the windows end (:class:`datamodules.windows.WindowCutter`); each names the
frames it speaks for and one output vector per frame: a clip-level model's window output (class probabilities of
the whole window) speaks for every frame of the window; a dense model's window speaks for each of its sampled frames
with that frame token's output. :class:`OverlapAverager` keeps running sums for the frames not yet settled and
hands out each frame's mean once no later window can cover it, so memory holds only about one window of frames
whatever the length of the video.

What is averaged is what the caller gives: probabilities (softmax of class logits, sigmoid of action-unit logits)
and values (valence, arousal), never logits, so a frame's answer is an average of answers. A window without a
prediction (no valid frame in it: NaN outputs) is not counted; a frame that no counted window covers gets NaN and
``count`` 0.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class SettledFrames:
    """Frames whose answer is final: ``frames`` ``int64 [n]`` (increasing), ``mean`` ``float64 [n, K]`` (NaN rows:
    no counted window covers the frame) and ``count`` ``int64 [n]`` (how many windows were averaged)."""

    frames: np.ndarray
    mean: np.ndarray
    count: np.ndarray

    def __len__(self) -> int:
        return len(self.frames)


class OverlapAverager:
    """Running per-frame means of window outputs over a run of frames ``first, first + 1, ...`` (``width`` values
    per frame).

    ``add(frames, values)``: ``frames`` ``int [n]`` (each at or after the settled bound), ``values`` ``[n, width]``
    or ``[width]`` (one vector for all those frames); rows with a NaN are skipped. ``pop(before)`` returns every
    frame below ``before`` that was not returned yet (all frames from the first unreturned one, covered or not);
    ``before`` must never decrease.
    """

    def __init__(self, width: int, first: int = 0) -> None:
        if width < 1:
            raise ValueError(f"width must be >= 1, got {width}")
        self.width = width
        self.start = first  # the first frame not returned yet
        self.sums = np.zeros((0, width))
        self.counts = np.zeros(0, np.int64)

    def _grow(self, end: int) -> None:
        need = end - self.start + 1 - len(self.counts)
        if need > 0:
            self.sums = np.concatenate([self.sums, np.zeros((need, self.width))])
            self.counts = np.concatenate([self.counts, np.zeros(need, np.int64)])

    def add(self, frames: np.ndarray, values: np.ndarray) -> None:
        frames = np.asarray(frames, dtype=np.int64)
        if not len(frames):
            return
        values = np.asarray(values, dtype=np.float64)
        if values.ndim == 1:
            values = np.broadcast_to(values, (len(frames), self.width))
        if values.shape != (len(frames), self.width):
            raise ValueError(f"values of shape {values.shape} for {len(frames)} frames of width {self.width}")
        if frames.min() < self.start:
            raise ValueError(f"frame {int(frames.min())} was already settled (first open frame {self.start})")
        ok = np.isfinite(values).all(axis=1)
        if not ok.any():
            return
        frames, values = frames[ok], values[ok]
        self._grow(int(frames.max()))
        np.add.at(self.sums, frames - self.start, values)
        np.add.at(self.counts, frames - self.start, 1)

    def pop(self, before: int) -> SettledFrames:
        n = before - self.start
        if n <= 0:
            return SettledFrames(np.zeros(0, np.int64), np.zeros((0, self.width)), np.zeros(0, np.int64))
        self._grow(before - 1)
        sums, counts = self.sums[:n], self.counts[:n]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], np.nan)
        out = SettledFrames(np.arange(self.start, before, dtype=np.int64), mean, counts.copy())
        self.sums, self.counts = self.sums[n:], self.counts[n:]
        self.start = before
        return out
