"""Imported rows -> one row per frame of the clip, so modalities sampled at the same relative position agree.

TSN sampling (``datamodules.sampling.segment_indices``) takes the same *relative row position* in every modality of
a clip. An extracted store holds uniformly spaced frames of the whole clip (all of them, or ``frame_cap`` of them),
so an imported store must too: a file that has no row for some frames (OpenFace writes none where it found no face)
must not be stacked row after row, which would shift every later row against the other modalities. Here each row
is put on its own frame and the frames without a row are kept as ``valid=False`` rows.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from fer_zoo.imports.formats import ImportedClip, ImportFileError


def align_to_frames(clip: ImportedClip, file: Path, n_frames: int | None = None, fps: float | None = None,
                    media: str = "the clip's video") -> ImportedClip:
    """The clip laid on its grid: one row per ``clip.step`` source frames, from frame 0 to the clip's end.

    ``clip.frame_indices`` (0-based source frames, any order) say where each row belongs; grid point ``k`` is frame
    ``round(k * step)`` (``step`` 1: every frame). The grid ends at ``n_frames`` (the clip's frame count, from its
    video or frame folder) when known, else at the file's last frame (``clip.info["file_frames"]``, e.g. the last
    frame of any face in an OpenFace file, or the last row kept). Rows are copied unchanged; grid points without a
    row get zero features, ``valid=False`` and a timestamp (seconds) interpolated from the rows' timestamps (outside
    them: their mean spacing, else ``step / fps``, else the nearest row's). ``info["missing_frames"]`` and
    ``info["grid_size"]`` count them (see :func:`missing_note`).

    Raises :class:`ImportFileError` naming ``file`` for a file with no rows, rows before frame 0, two rows on one
    frame, or a row past the clip's last frame (``media`` names the video in that message).
    """
    step = float(clip.step)
    if not step >= 1.0:
        raise ValueError(f"grid step must be >= 1 source frame, got {step}")
    if len(clip.frame_indices) == 0:
        raise ImportFileError(f"{file}: no rows")
    slots = np.rint(np.asarray(clip.frame_indices, np.float64) / step).astype(np.int64)
    if slots.min() < 0:
        raise ImportFileError(f"{file}: a row before the clip's first frame (frame index {int(slots.min())})")
    uniq, counts = np.unique(slots, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1]
        raise ImportFileError(f"{file}: {len(dup)} frames have more than one row (first: frame index "
                              f"{_frame(int(dup[0]), step)}, {int(counts[counts > 1][0])} rows): a merged or edited "
                              "file?")
    last = max(int(clip.info.get("file_frames", 0)), _frame(int(slots.max()), step) + 1)  # 1-based
    if n_frames and last > n_frames:
        raise ImportFileError(f"{file}: rows reach frame {last} but {media} has {n_frames} frames (a file of another "
                              "video?)")
    end = n_frames or last
    size = math.ceil(end / step - 1e-9)
    order = np.argsort(slots)
    slots = slots[order]
    features = np.zeros((size, clip.features.shape[1]), np.float32)
    features[slots] = clip.features[order]
    valid = np.zeros(size, np.bool_)
    valid[slots] = clip.valid[order]
    grid = np.arange(size, dtype=np.int64)
    frames = np.minimum(np.rint(grid * step).astype(np.int64), end - 1)
    frames[slots] = np.asarray(clip.frame_indices, np.int64)[order]
    times = _fill_times(slots, np.asarray(clip.timestamps, np.float64)[order], size, step / fps if fps else None)
    info = {**clip.info, "missing_frames": size - len(slots), "grid_size": size, "grid_step": step}
    return ImportedClip(features=features, valid=valid, frame_indices=frames, timestamps=times, schema=clip.schema,
                        info=info, step=step)


def missing_note(clip: ImportedClip) -> str:
    """``"40 of 100 frames without a row -> invalid"`` for an aligned clip; ``""`` when every frame has a row."""
    missing, size, step = (clip.info.get(k) for k in ("missing_frames", "grid_size", "grid_step"))
    if not missing:
        return ""
    what = "frames" if step == 1 else f"grid points (one every {step:g} frames)"
    return f"{missing} of {size} {what} without a row -> invalid"


_MISSING = re.compile(r"(\d+) of \d+ (?:frames|grid points)[^;]* without a row -> invalid")


def missing_in_note(note: str) -> int:
    """How many rows a clip's reason (written with :func:`missing_note`) says were without a row; 0 when none."""
    m = _MISSING.search(note)
    return int(m.group(1)) if m else 0


def _frame(slot: int, step: float) -> int:
    return int(round(slot * step))


def _fill_times(slots: np.ndarray, times: np.ndarray, size: int, seconds_per_slot: float | None) -> np.ndarray:
    """Seconds for every grid point: the rows' own timestamps, linear in between, extended at their mean rate."""
    grid = np.arange(size, dtype=np.float64)
    out = np.interp(grid, slots, times)
    if len(slots) > 1:
        rate = (times[-1] - times[0]) / (slots[-1] - slots[0])
    else:
        rate = seconds_per_slot or 0.0
    before, after = grid < slots[0], grid > slots[-1]
    out[before] = times[0] + (grid[before] - slots[0]) * rate
    out[after] = times[-1] + (grid[after] - slots[-1]) * rate
    out[slots] = times
    return out
