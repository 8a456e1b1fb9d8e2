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


def _stack(clips: Sequence[DenseClip], modalities: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(features float32 [F, sum D], valid bool [F]) over all frames of ``clips``, modalities side by side."""
    feats, valid = [], []
    for c in clips:
        missing = [m for m in modalities if m not in c.features]
        if missing:
            raise ValueError(f"{c.clip_id}: no features for modalities {missing}")
        feats.append(np.concatenate([np.asarray(c.features[m], np.float32) for m in modalities], axis=1))
        valid.append(np.logical_and.reduce([c.valid[m] for m in modalities]))
    return np.concatenate(feats), np.concatenate(valid)


def _labels(clips: Sequence[DenseClip], task: str) -> np.ndarray:
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


def _classify(x_tr: np.ndarray, y_tr: np.ndarray, x_ev: np.ndarray) -> np.ndarray:
    """int64 predictions on ``x_ev`` of a balanced logistic regression fitted on (``x_tr``, ``y_tr``); the one class
    when the training rows hold only one."""
    classes = np.unique(y_tr)
    if len(classes) == 1 or not len(x_ev):
        return np.full(len(x_ev), classes[0], dtype=np.int64)
    model = LogisticRegression(C=1.0, max_iter=1000, class_weight="balanced").fit(x_tr, y_tr)
    return model.predict(x_ev).astype(np.int64)


def dense_baselines(train: Sequence[DenseClip], val: Sequence[DenseClip], tasks: Sequence[str] | None = None,
                    modalities: Sequence[str] | None = None, max_train_frames: int = MAX_TRAIN_FRAMES,
                    seed: int = 0) -> dict[str, dict[str, BaselineResult]]:
    """The prior and the linear probe of each task, fitted on ``train`` and scored on ``val``.

    ``tasks``: among EXPR, VA, AU (default: every task the clips' labels carry); ``modalities``: the features used by
    the probe, concatenated in this order (default: the first training clip's, sorted). Returns
    ``{task: {"majority" (EXPR, AU) or "mean" (VA): result, "probe": result}}``. Raises ``ValueError`` for a task
    without labeled training or evaluation frames, or clips lacking a modality or a task's labels.
    """
    if not train or not val:
        raise ValueError(f"baselines need training and evaluation clips, got {len(train)} and {len(val)}")
    if tasks is None:
        tasks = [t for t, f in zip(TASKS, ("expr", "va", "au")) if getattr(train[0].labels, f) is not None]
    mods = list(modalities) if modalities is not None else sorted(train[0].features)
    if not mods:
        raise ValueError("baselines need at least one feature modality")
    x_tr, ok_tr = _stack(train, mods)
    x_ev, ok_ev = _stack(val, mods)
    out: dict[str, dict[str, BaselineResult]] = {}
    for task in tasks:
        y_tr, y_ev = _labels(train, task), _labels(val, task)
        labeled_tr = _labeled(task, y_tr)
        if not labeled_tr.any():
            raise ValueError(f"{task}: no labeled training frame")
        rows = _subsample(np.flatnonzero(labeled_tr & ok_tr), max_train_frames, seed)
        if len(rows):
            scaler = StandardScaler().fit(x_tr[rows])
            z_tr = scaler.transform(x_tr[rows])
            z_ev = scaler.transform(x_ev[ok_ev]) if ok_ev.any() else np.empty((0, x_ev.shape[1]))
        else:  # no valid labeled training frame: the probe is the prior everywhere
            z_tr, z_ev = None, np.empty((0, x_ev.shape[1]))
        n_fallback = int((_labeled(task, y_ev) & ~ok_ev).sum()) if z_tr is not None else \
            int(_labeled(task, y_ev).sum())
        out[task] = _task_baselines(task, y_tr, labeled_tr, y_ev, rows, z_tr, z_ev, ok_ev, n_fallback)
    return out


def _task_baselines(task: str, y_tr: np.ndarray, labeled_tr: np.ndarray, y_ev: np.ndarray, rows: np.ndarray,
                    z_tr: np.ndarray | None, z_ev: np.ndarray, ok_ev: np.ndarray,
                    n_fallback: int) -> dict[str, BaselineResult]:
    """The prior's and the probe's predictions on every evaluation frame, scored (see :func:`dense_baselines`)."""
    n_ev, n_prior = len(y_ev), int(labeled_tr.sum())
    if task == "EXPR":
        prior = np.full(n_ev, int(np.argmax(np.bincount(y_tr[labeled_tr]))), dtype=np.int64)  # ties: lowest index
        probe = prior.copy()
        if z_tr is not None:
            probe[ok_ev] = _classify(z_tr, y_tr[rows], z_ev)
        return {"majority": BaselineResult(task, "majority", expr_score(prior, y_ev), n_prior, 0),
                "probe": BaselineResult(task, "probe", expr_score(probe, y_ev), len(rows), n_fallback)}
    if task == "VA":
        prior = np.tile(np.nanmean(y_tr, axis=0).astype(np.float64), (n_ev, 1))  # per column, over its labels
        probe = prior.copy()
        for j in range(2):
            fit = ~np.isnan(y_tr[rows, j])
            if z_tr is not None and fit.any() and len(z_ev):
                model = Ridge(alpha=1.0).fit(z_tr[fit], y_tr[rows, j][fit])
                probe[ok_ev, j] = np.clip(model.predict(z_ev), -1.0, 1.0)
        return {"mean": BaselineResult(task, "mean", va_score(prior, y_ev), n_prior, 0),
                "probe": BaselineResult(task, "probe", va_score(probe, y_ev), len(rows), n_fallback)}
    prior = np.zeros((n_ev, len(AU_NAMES)), dtype=np.float64)
    probe = prior.copy()
    for j in range(len(AU_NAMES)):
        col = y_tr[:, j][y_tr[:, j] >= 0]
        prior[:, j] = probe[:, j] = float((col == 1).sum() > (col == 0).sum())  # ties: inactive
        fit = y_tr[rows, j] >= 0
        if z_tr is not None and fit.any():
            probe[ok_ev, j] = _classify(z_tr[fit], y_tr[rows, j][fit], z_ev)
    return {"majority": BaselineResult(task, "majority", au_score(prior, y_ev), n_prior, 0),
            "probe": BaselineResult(task, "probe", au_score(probe, y_ev), len(rows), n_fallback)}
