"""Per-frame targets of one clip (one person through one video): expression, valence-arousal, action units.

The record a dense (per-frame) source hands out, :class:`FrameLabels`, plus the two mappings every consumer needs:
which annotation frame each feature-store row shows (:meth:`FrameLabels.row_frames`) and a per-row array laid out
on the annotation frames (:func:`frame_grid`). Frame numbers are 0-based positions in the annotation (frame ``k`` is
the ``k``-th line after the header); they are never re-derived from the order of the files on disk, so a missing
image leaves a hole instead of shifting every later label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

#: The 12 action units of Aff-Wild2 / ABAW, in the column order of its ``AU_Set`` files (header
#: ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26``; Kollias et al., "The 6th Affective Behavior Analysis
#: in-the-wild (ABAW) Competition", arXiv:2402.19344, section on the AU Detection Challenge).
AU_NAMES: tuple[str, ...] = ("AU1", "AU2", "AU4", "AU6", "AU7", "AU10", "AU12", "AU15", "AU23", "AU24", "AU25",
                             "AU26")


@dataclass(frozen=True)
class FrameLabels:
    """Per-frame labels of one clip, indexed by annotation frame ``0..n_frames-1``.

    - ``n_frames``: how many frames the annotation covers (the longest of the clip's annotation files; line ``k``
      after the header is frame ``k - 1``).
    - ``expr``: int64 ``[n_frames]``, the class index in the source vocabulary's order, ``-1`` = no label; ``None``
      when the expression task was not chosen.
    - ``va``: float32 ``[n_frames, 2]``, valence and arousal in ``[-1, 1]`` (unitless), ``NaN`` = no label (each
      column on its own); ``None`` when not chosen.
    - ``au``: int8 ``[n_frames, 12]``, ``0``/``1`` per action unit in :data:`AU_NAMES` order, ``-1`` = no label;
      ``None`` when not chosen.
    - ``frames``: int64 ``[M]``, for a frame folder: the annotation frame of each of its image files in natural
      order (``datamodules.frames.frame_names``, the order a feature store reads them), taken from the file NAME
      (``00001.jpg`` -> frame 0), strictly increasing; a missing image is a frame absent from ``frames``. Empty when
      the clip's frame folder does not exist. ``None`` for a clip that is a video file: decoded frame ``k`` is
      annotation frame ``k``.

    Raises ``ValueError`` when the arrays do not have these shapes, dtypes and ranges.
    """

    n_frames: int
    expr: np.ndarray | None
    va: np.ndarray | None
    au: np.ndarray | None
    frames: np.ndarray | None

    def __post_init__(self) -> None:
        n = self.n_frames
        if n < 0:
            raise ValueError(f"n_frames must be >= 0, got {n}")
        _check(self.expr, "expr", (n,), np.int64, lambda a: bool((a >= -1).all()), ">= -1")
        _check(self.va, "va", (n, 2), np.float32,
               lambda a: bool((np.isnan(a) | (np.abs(a) <= 1)).all()), "in [-1, 1] or NaN")
        _check(self.au, "au", (n, len(AU_NAMES)), np.int8, lambda a: bool(np.isin(a, (-1, 0, 1)).all()),
               "in {-1, 0, 1}")
        if self.frames is not None:
            f = self.frames
            if f.dtype != np.int64 or f.ndim != 1:
                raise ValueError(f"frames must be int64 [M], got {f.dtype} {f.shape}")
            if len(f) and (f[0] < 0 or f[-1] >= n or (np.diff(f) <= 0).any()):
                raise ValueError(f"frames must increase strictly within 0..{n - 1}, got {f[:10].tolist()}...")

    def row_frames(self, frame_indices: np.ndarray) -> np.ndarray:
        """The annotation frame (int64 ``[R]``) of each row of the clip's feature store.

        ``frame_indices``: the store's ``frame_indices`` of the clip (``FeatureStore.frames(clip_id)[0]``): for a frame
        folder the position of the row's file in the folder listing (so rows map through :attr:`frames`, whatever
        ``frame_cap`` kept), for a video the decoded frame number. Raises ``ValueError`` when a row points past the
        folder listing or past the annotation (a video with more frames than annotation lines).
        """
        idx = np.asarray(frame_indices, dtype=np.int64)
        if self.frames is not None:
            if len(idx) and (idx.min() < 0 or idx.max() >= len(self.frames)):
                raise ValueError(f"store rows point at file {int(idx.max())} of a frame folder listing "
                                 f"{len(self.frames)} files: the store was not built from this folder as it is")
            return self.frames[idx]
        if len(idx) and (idx.min() < 0 or idx.max() >= self.n_frames):
            raise ValueError(f"store rows hold decoded frame {int(idx.max())}, past the {self.n_frames} frames the "
                             "annotation covers")
        return idx


def frame_grid(values: np.ndarray, row_frames: np.ndarray, n_frames: int,
               fill: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Per-row values laid out on the annotation frames: ``(grid [n_frames, ...], present bool [n_frames])``.

    ``values``: ``[R, ...]`` one entry per store row; ``row_frames``: int ``[R]``, each row's annotation frame
    (:meth:`FrameLabels.row_frames`). Frames no row covers get ``fill`` and ``present`` False. Raises ``ValueError``
    for a row frame outside ``0..n_frames-1`` or two rows on one frame.
    """
    values = np.asarray(values)
    rf = np.asarray(row_frames, dtype=np.int64)
    if len(rf) != len(values):
        raise ValueError(f"{len(values)} rows but {len(rf)} row frames")
    if len(rf) and (rf.min() < 0 or rf.max() >= n_frames):
        raise ValueError(f"a row is on frame {int(rf.min() if rf.min() < 0 else rf.max())}, outside 0..{n_frames - 1}")
    if len(np.unique(rf)) != len(rf):
        raise ValueError("two rows are on the same annotation frame")
    grid = np.full((n_frames, *values.shape[1:]), fill, dtype=values.dtype)
    grid[rf] = values
    present = np.zeros(n_frames, dtype=bool)
    present[rf] = True
    return grid, present


def _check(a: np.ndarray | None, name: str, shape: tuple[int, ...], dtype: type,
           ok: Callable[[np.ndarray], bool], rule: str) -> None:
    if a is None:
        return
    if a.shape != shape or a.dtype != dtype:
        raise ValueError(f"{name} must be {np.dtype(dtype)} {list(shape)}, got {a.dtype} {list(a.shape)}")
    if not ok(a):
        raise ValueError(f"{name} values must be {rule}")
