"""Per-column statistics of a feature store over chosen clips: the input standardisation of the model.

Why standardise: modalities live on very different scales, and within one modality the columns that carry the
expression can vary far less than the others. A face mesh's coordinates sit in a narrow band around fixed means
(x, y in [0, 1] of the face box); a per-frame LayerNorm then sees a fixed template plus tiny deviations, and a
randomly initialised projection maps that template to a near-constant token, so short schedules never learn the
mesh. Subtracting each column's training mean and dividing by its training std (what a linear probe's
``StandardScaler`` does) puts every column on the same footing before the model sees it.

Only clips of the training split enter, and within them only frames with ``valid=True`` (frames where the
extractor found nothing are stored as zeros and would drag the means toward 0). A store holds real frames only;
the padding that short clips get comes later, at sampling, and never reaches these statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from datamodules.feature_store import FeatureStore

# A column's std is floored at STD_FLOOR_REL times the median std of its modality's columns (and at STD_FLOOR_ABS):
# a column that (nearly) never moves on the training split carries no information there, and dividing by its
# ~0 std would turn a small shift at test time into a huge input. scikit-learn's StandardScaler sets such scales
# to 1; a floor relative to the modality keeps the units of the other columns.
STD_FLOOR_REL = 1e-2
STD_FLOOR_ABS = 1e-6
_CHUNK_ROWS = 65536


@dataclass
class ColumnStats:
    """``mean``/``std`` float64 ``[D]`` over ``count`` valid training frames; ``std`` is already floored."""

    mean: np.ndarray
    std: np.ndarray
    count: int
    floored: int  # how many columns had their std raised to the floor

    def as_float32(self) -> tuple[np.ndarray, np.ndarray]:
        return self.mean.astype(np.float32), self.std.astype(np.float32)


def train_rows(store: FeatureStore, clip_ids: Sequence[str]) -> np.ndarray:
    """Boolean ``[total_frames]`` mask of the rows of ``clip_ids`` that are valid frames.

    Raises ``KeyError`` naming the clip when one is not in the store.
    """
    _, valid = store._open()
    rows = np.zeros(len(valid), dtype=np.bool_)
    index = store.index.set_index("clip_id")
    missing = [c for c in clip_ids if c not in store]
    if missing:
        raise KeyError(f"feature store {store.path} lacks clips {missing[:5]} ({len(missing)} in all)")
    offsets = index.loc[list(clip_ids), "offset"].to_numpy(np.int64)
    lengths = index.loc[list(clip_ids), "length"].to_numpy(np.int64)
    for a, n in zip(offsets, lengths):
        rows[a:a + n] = True
    return rows & np.asarray(valid, dtype=np.bool_)


def column_stats(store: FeatureStore, clip_ids: Sequence[str]) -> ColumnStats:
    """Mean and std (population, ddof 0) of every column over the valid frames of ``clip_ids``.

    Accumulated in float64 chunk by chunk (Chan et al.'s pairwise update, so no catastrophic cancellation even
    for columns with a large mean and a tiny spread) over the memory-mapped float16 features.

    Raises ``ValueError`` when the clips hold no valid frame at all, or when a valid frame holds NaN/inf (it would
    poison every input of the model), naming the store.
    """
    feats, _ = store._open()
    rows = train_rows(store, clip_ids)
    count = 0
    mean = np.zeros(store.dim, np.float64)
    m2 = np.zeros(store.dim, np.float64)
    for start in range(0, len(rows), _CHUNK_ROWS):
        sel = rows[start:start + _CHUNK_ROWS]
        if not sel.any():
            continue
        x = np.asarray(feats[start:start + _CHUNK_ROWS][sel], dtype=np.float64)
        if not np.isfinite(x).all():
            bad = start + int(np.flatnonzero(sel)[np.flatnonzero(~np.isfinite(x).all(axis=1))[0]])
            raise ValueError(f"feature store {store.path}: frame row {bad} is marked valid but holds NaN/inf")
        n = len(x)
        c_mean = x.mean(axis=0)
        c_m2 = ((x - c_mean) ** 2).sum(axis=0)
        delta = c_mean - mean
        total = count + n
        mean = mean + delta * (n / total)
        m2 = m2 + c_m2 + delta**2 * (count * n / total)
        count = total
    if count == 0:
        raise ValueError(f"feature store {store.path}: the {len(clip_ids)} training clips hold no valid frame; "
                         "nothing to standardise with (did extraction fail for all of them?)")
    std = np.sqrt(m2 / count)
    floor = max(STD_FLOOR_ABS, STD_FLOOR_REL * float(np.median(std)))
    floored = int((std < floor).sum())
    return ColumnStats(mean=mean, std=np.maximum(std, floor), count=count, floored=floored)
