"""Per-frame baselines for the ABAW tasks, scored with the official metrics on the same split as the model.

For each task, two references a dense model must beat, fitted on the training clips and scored on every labeled
frame of the evaluation clips (:mod:`fer_zoo.dense.metrics`):

- a prior: the majority class (EXPR), the training mean of valence and of arousal (VA; a constant prediction has
  CCC 0 against any varying target, so this scores 0 by construction: it is the floor, not a competitor), the
  majority value of each AU (AU; ties go to 0, i.e. "inactive");
- a per-frame linear probe on standardised features (zero mean, unit variance per dimension, fitted on the training
  rows): multinomial logistic regression (EXPR), one logistic regression per AU (AU), both with balanced class
  weights because the metric is macro F1; ridge regression per dimension clipped to ``[-1, 1]`` (VA). scikit-learn's
  ``LogisticRegression`` (lbfgs, ``C=1``) and ``Ridge`` (``alpha=1``). An AU (or EXPR) with one class among the
  training rows is predicted as that class.

The probe trains on frames that are labeled for the task and valid in every chosen modality, at most
``max_train_frames`` of them (default 50,000), drawn uniformly without replacement with ``seed`` when there are more.
Evaluation frames that are labeled but not valid in every modality (no face) still count, as in ABAW's protocol
(every annotated frame is scored): the probe predicts the prior there; how many is reported as ``n_fallback``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.preprocessing import StandardScaler

from datamodules.frame_labels import AU_NAMES, FrameLabels
from fer_zoo.dense.metrics import AUScore, ExprScore, VAScore, au_score, expr_score, va_score

MAX_TRAIN_FRAMES = 50_000
TASKS = ("EXPR", "VA", "AU")


@dataclass(frozen=True)
class DenseClip:
    """One clip's per-frame inputs, every array indexed by annotation frame ``0..labels.n_frames-1``.

    ``features``: modality -> float ``[n_frames, D_m]`` (a store's rows laid out on the annotation frames, e.g. by
    :func:`datamodules.frame_labels.frame_grid`); ``valid``: modality -> bool ``[n_frames]``, False where the
    modality has no usable row (no image, no face). Raises ``ValueError`` for mismatched modalities or shapes.
    """

    clip_id: str
    labels: FrameLabels
    features: dict[str, np.ndarray]
    valid: dict[str, np.ndarray]

    def __post_init__(self) -> None:
        n = self.labels.n_frames
        if set(self.features) != set(self.valid):
            raise ValueError(f"{self.clip_id}: features {sorted(self.features)} and valid {sorted(self.valid)} name "
                             "different modalities")
        for m, x in self.features.items():
            if x.ndim != 2 or len(x) != n or self.valid[m].shape != (n,) or self.valid[m].dtype != bool:
                raise ValueError(f"{self.clip_id}: modality {m!r} needs features [{n}, D] and valid bool [{n}], got "
                                 f"{list(x.shape)} and {self.valid[m].dtype} {list(self.valid[m].shape)}")

    def frame_valid(self) -> dict[str, np.ndarray]:
        return self.valid

    def frame_features(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        return {m: x[frames] for m, x in self.features.items()}


class ClipFrames(Protocol):
    """What :func:`dense_baselines` reads of a clip, one clip at a time: its labels, each modality's valid mask
    (``bool [n_frames]``), and the features of the frames asked for (``float [len(frames), D_m]``), so only the
    sampled training rows and one evaluation clip are ever in memory (:class:`DenseClip` holds them all; a
    DataModule-backed clip reads rows from the memory-mapped stores)."""

    clip_id: str
    labels: FrameLabels

    def frame_valid(self) -> dict[str, np.ndarray]: ...

    def frame_features(self, frames: np.ndarray) -> dict[str, np.ndarray]: ...


@dataclass(frozen=True)
class BaselineResult:
    """One baseline's score: ``task`` (EXPR/VA/AU), ``name`` (``majority``, ``mean`` or ``probe``), ``score`` (the
    metric record), ``n_train`` (training frames it was fitted on), ``n_fallback`` (scored frames predicted by the
    prior for want of valid features; 0 for the priors themselves)."""

    task: str
    name: str
    score: ExprScore | VAScore | AUScore
    n_train: int
    n_fallback: int


def _ok(clip: ClipFrames, modalities: Sequence[str]) -> np.ndarray:
    """bool ``[n_frames]``: valid in every modality (a face, a feature row)."""
    valid = clip.frame_valid()
    missing = [m for m in modalities if m not in valid]
    if missing:
        raise ValueError(f"{clip.clip_id}: no features for modalities {missing}")
    return np.logical_and.reduce([np.asarray(valid[m], bool) for m in modalities])


def _rows(clip: ClipFrames, frames: np.ndarray, modalities: Sequence[str]) -> np.ndarray:
    """float32 ``[len(frames), sum D]``: the modalities' features of those frames, side by side."""
    feats = clip.frame_features(frames)
    return np.concatenate([np.asarray(feats[m], np.float32) for m in modalities], axis=1)


def _labels(clips: Sequence[ClipFrames], task: str) -> np.ndarray:
    field = {"EXPR": "expr", "VA": "va", "AU": "au"}[task]
    arrays = [getattr(c.labels, field) for c in clips]
    lacking = [c.clip_id for c, a in zip(clips, arrays) if a is None]
    if lacking:
        raise ValueError(f"{task}: clips {lacking[:5]} have no {task} labels (the source was not asked for {task})")
    return np.concatenate(arrays)


def _subsample(rows: np.ndarray, cap: int, seed: int) -> np.ndarray:
    if len(rows) <= cap:
        return rows
    return np.sort(np.random.default_rng(seed).choice(rows, size=cap, replace=False))


def _labeled(task: str, y: np.ndarray) -> np.ndarray:
    """bool ``[F]``: frames with a label for ``task`` (VA: valence or arousal; AU: any of the 12)."""
    if task == "EXPR":
        return y >= 0
    return ~np.isnan(y).all(axis=1) if task == "VA" else (y >= 0).any(axis=1)


def _classifier(x_tr: np.ndarray, y_tr: np.ndarray) -> Any:
    """A function giving int64 predictions of a balanced logistic regression fitted on (``x_tr``, ``y_tr``); the one
    class when the training rows hold only one."""
    classes = np.unique(y_tr)
    if len(classes) == 1:
        return lambda z: np.full(len(z), classes[0], dtype=np.int64)
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(x_tr, y_tr)
    return lambda z: model.predict(z).astype(np.int64) if len(z) else np.zeros(0, np.int64)


def dense_baselines(train: Sequence[ClipFrames], val: Sequence[ClipFrames], tasks: Sequence[str] | None = None,
                    modalities: Sequence[str] | None = None, max_train_frames: int = MAX_TRAIN_FRAMES,
                    seed: int = 0) -> dict[str, dict[str, BaselineResult]]:
    """The prior and the linear probe of each task, fitted on ``train`` and scored on ``val``.

    ``tasks``: among EXPR, VA, AU (default: every task the clips' labels carry); ``modalities``: the features used by
    the probe, concatenated in this order (default: the first training clip's, sorted). Memory: labels and valid
    masks of every clip, the (at most ``max_train_frames``) sampled training rows, and one evaluation clip's valid
    rows at a time; never the whole split's features (Aff-Wild2: ~10^6 frames x thousands of columns). Returns
    ``{task: {"majority" (EXPR, AU) or "mean" (VA): result, "probe": result}}``. Raises ``ValueError`` for a task
    without labeled training or evaluation frames, or clips lacking a modality or a task's labels.
    """
    if not train or not val:
        raise ValueError(f"baselines need training and evaluation clips, got {len(train)} and {len(val)}")
    if tasks is None:
        tasks = [t for t, f in zip(TASKS, ("expr", "va", "au")) if getattr(train[0].labels, f) is not None]
    mods = list(modalities) if modalities is not None else sorted(train[0].frame_valid())
    if not mods:
        raise ValueError("baselines need at least one feature modality")
    ok_tr_clips = [_ok(c, mods) for c in train]
    ok_ev_clips = [_ok(c, mods) for c in val]
    ok_tr, ok_ev = np.concatenate(ok_tr_clips), np.concatenate(ok_ev_clips)
    starts = np.cumsum([0] + [len(o) for o in ok_tr_clips])
    out: dict[str, dict[str, BaselineResult]] = {}
    for task in tasks:
        y_tr, y_ev = _labels(train, task), _labels(val, task)
        labeled_tr = _labeled(task, y_tr)
        if not labeled_tr.any():
            raise ValueError(f"{task}: no labeled training frame")
        rows = _subsample(np.flatnonzero(labeled_tr & ok_tr), max_train_frames, seed)
        if len(rows):
            clip_of = np.searchsorted(starts, rows, side="right") - 1  # rows are sorted: read clip by clip
            x_tr = np.concatenate([_rows(train[k], rows[clip_of == k] - starts[k], mods)
                                   for k in np.unique(clip_of)])
            scaler = StandardScaler().fit(x_tr)
            z_tr = scaler.transform(x_tr)
            del x_tr

            def z_eval(k: int, scaler: StandardScaler = scaler, width: int = z_tr.shape[1]) -> np.ndarray:
                frames = np.flatnonzero(ok_ev_clips[k])
                return scaler.transform(_rows(val[k], frames, mods)) if len(frames) else np.empty((0, width))
        else:  # no valid labeled training frame: the probe is the prior everywhere
            z_tr, z_eval = None, None
        n_fallback = int((_labeled(task, y_ev) & ~ok_ev).sum()) if z_tr is not None else \
            int(_labeled(task, y_ev).sum())
        out[task] = _task_baselines(task, y_tr, labeled_tr, y_ev, rows, z_tr, z_eval, len(val), ok_ev, n_fallback)
    return out


def _task_baselines(task: str, y_tr: np.ndarray, labeled_tr: np.ndarray, y_ev: np.ndarray, rows: np.ndarray,
                    z_tr: np.ndarray | None, z_eval: Any, n_clips: int, ok_ev: np.ndarray,
                    n_fallback: int) -> dict[str, BaselineResult]:
    """The prior's and the probe's predictions on every evaluation frame, scored (see :func:`dense_baselines`);
    ``z_eval(k)``: standardised features of evaluation clip k's valid frames (read when needed)."""
    n_ev, n_prior = len(y_ev), int(labeled_tr.sum())

    def predict(fit: Any) -> np.ndarray:
        """``fit(z)`` on every evaluation clip's valid frames, in frame order (clip by clip)."""
        return np.concatenate([fit(z_eval(k)) for k in range(n_clips)]) if n_clips else np.empty(0)
    if task == "EXPR":
        prior = np.full(n_ev, int(np.argmax(np.bincount(y_tr[labeled_tr]))), dtype=np.int64)  # ties: lowest index
        probe = prior.copy()
        if z_tr is not None:
            model = _classifier(z_tr, y_tr[rows])
            probe[ok_ev] = predict(model)
        return {"majority": BaselineResult(task, "majority", expr_score(prior, y_ev), n_prior, 0),
                "probe": BaselineResult(task, "probe", expr_score(probe, y_ev), len(rows), n_fallback)}
    if task == "VA":
        prior = np.tile(np.nanmean(y_tr, axis=0).astype(np.float64), (n_ev, 1))  # per column, over its labels
        probe = prior.copy()
        models = []
        for j in range(2):
            fit = ~np.isnan(y_tr[rows, j]) if z_tr is not None else np.zeros(0, bool)
            models.append(Ridge(alpha=1.0).fit(z_tr[fit], y_tr[rows, j][fit]) if fit.any() else None)
        if any(m is not None for m in models) and ok_ev.any():
            both = predict(lambda z: np.stack([np.clip(m.predict(z), -1.0, 1.0) if m is not None and len(z)
                                               else np.full(len(z), np.nan) for m in models], axis=1))
            for j, m in enumerate(models):
                if m is not None:
                    probe[ok_ev, j] = both[:, j]
        return {"mean": BaselineResult(task, "mean", va_score(prior, y_ev), n_prior, 0),
                "probe": BaselineResult(task, "probe", va_score(probe, y_ev), len(rows), n_fallback)}
    prior = np.zeros((n_ev, len(AU_NAMES)), dtype=np.float64)
    probe = prior.copy()
    models: list[Any] = []
    for j in range(len(AU_NAMES)):
        col = y_tr[:, j][y_tr[:, j] >= 0]
        prior[:, j] = probe[:, j] = float((col == 1).sum() > (col == 0).sum())  # ties: inactive
        fit = y_tr[rows, j] >= 0 if z_tr is not None else np.zeros(0, bool)
        models.append(_classifier(z_tr[fit], y_tr[rows, j][fit]) if fit.any() else None)
    if any(m is not None for m in models) and ok_ev.any():
        every = predict(lambda z: np.stack([m(z) if m is not None else np.zeros(len(z)) for m in models], axis=1))
        for j, m in enumerate(models):
            if m is not None:
                probe[ok_ev, j] = every[:, j]
    return {"majority": BaselineResult(task, "majority", au_score(prior, y_ev), n_prior, 0),
            "probe": BaselineResult(task, "probe", au_score(probe, y_ev), len(rows), n_fallback)}
