"""Baselines every run gets for free: a linear probe on clip statistics and the majority class.

``python -m fer_zoo probe --config configs/all.yaml [fit arguments...]`` runs them alone (seconds,
:mod:`fer_zoo.training.probe_command`); ``fit`` and ``test`` write them into ``results.json`` under ``baselines``,
next to the model's test metrics.

- **Linear probe**: multinomial logistic regression (scikit-learn, L-BFGS) on one vector per clip: for every
  selected modality, the mean (and, where cross-validation says it helps, the std) of each column over the clip's
  *valid* frames (all stored frames, not the model's TSN sample). Columns are standardised with the statistics of
  the clips it is fitted on (where 1-frame clips and longer ones mix, each std column's scale is floored at its
  mean column's, see :func:`floor_std_scales`); a clip without any valid frame in a modality gets that modality's
  mean (0 after scaling). Which statistics (clip means alone, or means and stds) and the inverse regularisation
  strength ``C`` are chosen together by a 5-fold cross-validation over the training and validation clips (whole
  subjects per fold where the source names them; pooled out-of-fold UAR), and the chosen probe is refitted on
  all of them (:func:`select_probe`; why: issue 28, ``benchmarks/bench_probe.py``). The test split is never
  seen. Class weights follow the DataModule: ``class_balance`` other than ``none`` -> ``class_weight="balanced"``.
- **Majority class**: the most frequent class of the training split, predicted for every test clip.

Both use the DataModule's own split (same source, fold, seed; the same clips dropped from training) and the same
metric code as the model (torchmetrics: UAR = macro recall, WAR = accuracy, macro-F1, confusion matrix).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torchmetrics.functional.classification import (
    multiclass_accuracy,
    multiclass_confusion_matrix,
    multiclass_f1_score,
    multiclass_recall,
)

from datamodules.feature_store import FeatureStore

log = logging.getLogger(__name__)

DEFAULT_CS: tuple[float, ...] = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 1e-1, 3e-1, 1.0)
#: The C grid of :func:`select_probe` (cross-validated), a decade apart: up to 10, since a plain logistic regression
#: on clip means did best at C 1-10 on multi-frame clips (benchmarks/bench_probe.py) and 1000 was worse everywhere;
#: half decades bought nothing (the cross-validated UAR is flat within its noise over a decade or two) at twice the
#: cost (a face mesh's 2,826 columns over 1,600 photos: minutes per fit).
PROBE_CS: tuple[float, ...] = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0)
#: Which clip statistics a probe may use, in tie order (the simpler first): see :func:`select_probe`.
PROBE_STATS: tuple[str, ...] = ("mean", "mean+std")
MAX_ITER = 500
#: L-BFGS iterations per fit while searching the candidates: their ranking, not their last digits, is what counts,
#: and every C starts from the previous one's solution; the chosen candidate is refitted with MAX_ITER. A face mesh's
#: 1,413 clip means over 1,300 photos: ~3-5 s per fit to 500 iterations, ~1 s to 100.
SEARCH_MAX_ITER = 100


@dataclass
class BaselineResult:
    """Test metrics (keys ``test/uar``, ``test/war``, ``test/f1``, fractions) and confusion ``[true][pred]``."""

    metrics: dict[str, float]
    confusion: list[list[int]]
    details: dict[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {"metrics": self.metrics, "confusion": self.confusion, **self.details}


def scores(pred: np.ndarray, target: np.ndarray, num_classes: int, prefix: str = "test/") -> dict[str, float]:
    """UAR (macro recall), WAR (accuracy) and macro-F1 of integer predictions, computed by the same torchmetrics
    functions as the model's metrics (classes with neither true nor predicted clips are left out of the means)."""
    p, t = torch.as_tensor(pred, dtype=torch.int64), torch.as_tensor(target, dtype=torch.int64)
    return {f"{prefix}uar": float(multiclass_recall(p, t, num_classes, average="macro")),
            f"{prefix}war": float(multiclass_accuracy(p, t, num_classes, average="micro")),
            f"{prefix}f1": float(multiclass_f1_score(p, t, num_classes, average="macro"))}


def confusion(pred: np.ndarray, target: np.ndarray, num_classes: int) -> list[list[int]]:
    p, t = torch.as_tensor(pred, dtype=torch.int64), torch.as_tensor(target, dtype=torch.int64)
    return multiclass_confusion_matrix(p, t, num_classes).tolist()


def clip_statistics(stores: dict[str, FeatureStore], clip_ids: Sequence[str]) -> np.ndarray:
    """``float64 [N, sum_m 2 * D_m]``: per modality (in ``stores`` order) the mean then the std (ddof 0) of each
    column over the clip's valid frames; NaN where a clip has no valid frame in that modality."""
    blocks = []
    for store in stores.values():
        out = np.full((len(clip_ids), 2 * store.dim), np.nan)
        for i, cid in enumerate(clip_ids):
            f, v = store.clip(cid)
            x = np.asarray(f[np.asarray(v, dtype=bool)], dtype=np.float64)
            if len(x):
                out[i, :store.dim] = x.mean(axis=0)
                out[i, store.dim:] = x.std(axis=0)
        blocks.append(out)
    return np.concatenate(blocks, axis=1)


def majority_baseline(train_labels: Sequence[int], test_labels: Sequence[int], num_classes: int,
                      class_names: Sequence[str]) -> BaselineResult:
    """Predict the most frequent training class (ties: the lower index) for every test clip."""
    majority = int(np.bincount(np.asarray(train_labels, dtype=np.int64), minlength=num_classes).argmax())
    y = np.asarray(test_labels, dtype=np.int64)
    pred = np.full_like(y, majority)
    return BaselineResult(scores(pred, y, num_classes), confusion(pred, y, num_classes),
                          {"class": class_names[majority], "what": "most frequent training class for every clip"})


class NoVaryingColumn(ValueError):
    """Every column of the clip statistics is constant on the training split."""


@dataclass
class FittedProbe:
    """A logistic regression fitted on clip statistics, with its preprocessing, as plain arrays.

    ``fill`` (float64 ``[F]``): what a NaN cell becomes (training column mean); ``keep`` (bool ``[F]``): columns
    used (those that vary on the training split); ``mean``/``scale`` (``[K]``): the StandardScaler of the kept
    columns; ``coef`` (``[C, K]``) and ``intercept`` (``[C]``): the classifier, one row per class index
    ``0..num_classes-1`` (a class absent from the training split gets a zero row and a bias far below the others,
    so it is never predicted, as scikit-learn would not either). ``C``: the regularisation chosen on val UAR."""

    fill: np.ndarray
    keep: np.ndarray
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray
    C: float
    val_uar: float
    val_uar_by_C: dict[str, float]
    class_weight: str | None

    def standardise(self, x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), self.fill, x)
        return (x[:, self.keep] - self.mean) / self.scale

    def decision(self, x: np.ndarray) -> np.ndarray:
        """Logits ``float64 [N, num_classes]`` of clip statistics ``x`` (NaN cells allowed)."""
        return self.standardise(x) @ self.coef.T + self.intercept

    def predict(self, x: np.ndarray) -> np.ndarray:
        if not len(x):
            return np.zeros(0, dtype=np.int64)
        return self.decision(x).argmax(axis=1).astype(np.int64)


def fit_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray, num_classes: int,
              class_weight: str | None = None, cs: Sequence[float] = DEFAULT_CS,
              block_dims: Sequence[int] | None = None, columns: np.ndarray | None = None) -> FittedProbe:
    """Standardise with training stats, fit one logistic regression per ``C`` on the training rows, keep the one
    with the best validation UAR (ties: smaller ``C``). With one ``C`` (``cs=(c,)``) ``x_val`` may be empty: a
    plain fit, as :func:`select_probe` refits its choice.

    NaN cells (a modality without valid frames in that clip) become the training column mean. Columns constant on
    the training split are dropped (e.g. the std of 1-frame clips), and so are columns outside ``columns`` (bool
    ``[F]``; default all), e.g. the std columns of a clip-mean probe (:func:`stats_columns`). ``block_dims``: the
    columns are :func:`clip_statistics` blocks (per modality ``D`` means then ``D`` stds); then, in a block where
    some training clips have one frame (every std 0) and others more, each std column's scale is floored at its
    mean column's (:func:`floor_std_scales`). Raises ``ValueError`` when the training split holds fewer than 2
    classes (nothing to discriminate)."""
    if len(np.unique(y_train)) < 2:
        raise ValueError(f"the linear probe needs >= 2 classes in the training split, got {np.unique(y_train)}")
    prep = _Preprocessing.fit(x_train, block_dims, columns)
    rows = _RowSpace(prep.transform(x_train))
    x_va = prep.transform(x_val) if len(x_val) else np.zeros((0, int(prep.keep.sum())))
    best: tuple[float, float, np.ndarray, np.ndarray] | None = None
    val_uars = {}
    for c in sorted(cs):
        clf = _logistic(c, class_weight)
        _fit_quietly(clf, rows.z, y_train)
        coef, intercept = _per_class(clf, num_classes)
        coef = rows.weights(coef)
        uar = (scores((x_va @ coef.T + intercept).argmax(axis=1), y_val, num_classes)["test/uar"]
               if len(y_val) else 0.0)
        val_uars[c] = uar
        if best is None or uar > best[0] + 1e-12:
            best = (uar, c, coef, intercept)
    assert best is not None
    return FittedProbe(fill=prep.fill, keep=prep.keep, mean=prep.mean, scale=prep.scale, coef=best[2],
                       intercept=best[3], C=best[1], val_uar=best[0],
                       val_uar_by_C={str(k): v for k, v in val_uars.items()}, class_weight=class_weight)


@dataclass
class _Preprocessing:
    """What a probe does to clip statistics before its classifier: NaN -> ``fill``, keep ``keep``, standardise."""

    fill: np.ndarray
    keep: np.ndarray
    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, x: np.ndarray, block_dims: Sequence[int] | None = None,
            columns: np.ndarray | None = None) -> _Preprocessing:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN column: handled below
            fill = np.nan_to_num(np.nanmean(x, axis=0), nan=0.0)
        full = np.where(np.isnan(x), fill, x)
        keep = full.std(axis=0) > 0
        if columns is not None:
            keep &= np.asarray(columns, dtype=bool)
        if not keep.any():
            raise NoVaryingColumn(f"none of the {x.shape[1]} clip-statistics columns varies on the training "
                                  "split (a modality without a valid frame, like the audio of photos): nothing to fit")
        mean, scale = full[:, keep].mean(axis=0), full[:, keep].std(axis=0)  # StandardScaler's (ddof 0)
        if block_dims is not None:
            scale = floor_std_scales(full, keep, scale, block_dims)
        return cls(fill, keep, mean, scale)

    def transform(self, x: np.ndarray) -> np.ndarray:
        return (np.where(np.isnan(x), self.fill, x)[:, self.keep] - self.mean) / self.scale


def _logistic(c: float, class_weight: str | None, warm_start: bool = False) -> Any:
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=c, max_iter=MAX_ITER, class_weight=class_weight, warm_start=warm_start)


def _fit_quietly(clf: Any, x: np.ndarray, y: np.ndarray) -> None:
    from threadpoolctl import threadpool_limits

    # One BLAS thread: next to busy training/loader processes, multi-threaded BLAS spin-waits (10x slower on a
    # loaded 2-core machine), and a fixed thread count keeps the fit bit-for-bit reproducible.
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")  # ConvergenceWarning at large C: cross-validation judges the result
        clf.fit(x, y)


class _RowSpace:
    """Standardised rows ``x`` (``[N, F]``) in the basis of their row space, ``z = x V`` (``[N, r]``, ``r <= N``;
    thin SVD ``x = U S V^T``), when that is narrower than ``x``.

    An L2-penalised linear model's weights lie in the span of the training rows (any part orthogonal to them changes
    no logit and only adds to the penalty), so fitting on ``z`` and mapping the weights back (``w = V w_z``) gives
    the same optimum as fitting on ``x``, several times faster where clips are fewer than columns (a face mesh's
    2,826 clip statistics, a few hundred clips: ~3-4x per fit)."""

    def __init__(self, x: np.ndarray) -> None:
        if x.shape[0] < x.shape[1]:
            _, s, vt = np.linalg.svd(x, full_matrices=False)
            self.v = vt[s > s[0] * 1e-10].T if len(s) and s[0] > 0 else None
        else:
            self.v = None
        self.z = x @ self.v if self.v is not None else x

    def weights(self, coef: np.ndarray) -> np.ndarray:
        """``[C, r]`` weights of ``z`` as ``[C, F]`` weights of ``x``."""
        return coef @ self.v.T if self.v is not None else coef


def stats_columns(block_dims: Sequence[int], stats: str) -> np.ndarray:
    """Bool ``[sum_m 2 * D_m]`` over :func:`clip_statistics` columns: ``"mean"`` the clip means of every block,
    ``"mean+std"`` all columns."""
    if stats not in PROBE_STATS:
        raise ValueError(f"stats={stats!r} is not one of {list(PROBE_STATS)}")
    out = np.zeros(2 * sum(block_dims), dtype=bool)
    start = 0
    for d in block_dims:
        out[start:start + (2 * d if stats == "mean+std" else d)] = True
        start += 2 * d
    return out


@dataclass
class ProbeSelection:
    """A probe chosen by cross-validation (:func:`select_probe`): the refitted ``probe``; which clip statistics
    (``stats``), the best ``C`` and the Cs averaged (``averaged``); the pooled out-of-fold UAR of every candidate
    (``cv_uar[stats][C]``) and the binomial standard error of the best (``se``); and the out-of-fold logits of the
    probe (``oof`` ``float64 [N, num_classes]``: the mean over the averaged Cs; rows of clips whose fold could not
    be fitted (one class) are NaN)."""

    probe: FittedProbe
    stats: str
    C: float
    cv_uar: dict[str, dict[str, float]]
    oof: np.ndarray
    folds: int
    averaged: list[float] = field(default_factory=list)
    se: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {"stats": self.stats, "C": self.C, "averaged_Cs": self.averaged, "cv_se": self.se,
                "cv_uar": self.cv_uar, "folds": self.folds}


def select_probe(x: np.ndarray, y: np.ndarray, num_classes: int, folds: Sequence[tuple[np.ndarray, np.ndarray]],
                 class_weight: str | None = None, block_dims: Sequence[int] | None = None,
                 cs: Sequence[float] = PROBE_CS, stats_options: Sequence[str] = PROBE_STATS,
                 search: tuple[np.ndarray, Sequence[tuple[np.ndarray, np.ndarray]]] | None = None) -> ProbeSelection:
    """The probe every run gets: which clip statistics and which ``C`` chosen by cross-validation over all the
    clips it may learn from (``x``, ``y``: a run's training and validation clips), then refitted on all of them.

    For each candidate (clip means alone or means and stds, times each ``C``), one logistic regression per fold
    (standardised with the fold's own training rows; ``C`` from small to large, each fit warm-started from the
    previous one), its out-of-fold logits pooled over the folds and scored by UAR. The best candidate's statistics
    win (ties: the means alone, then the smaller ``C``). The probe is the average of the logits of every ``C`` of
    those statistics whose cross-validated UAR lies within one binomial standard error of the best
    (``sqrt(u (1 - u) / n)``, n the clips scored), each refitted on every row; one scaler serves them all, so the
    average is still one linear map of the clip statistics. Why: the UAR-by-C curve of real data is flat within
    noise over a decade or two, and its peak is where the noise put it (face mesh on the moving photos: the peak C
    alone trailed a plain clip-mean logistic regression by 1.3 UAR points over 5 person-grouped folds, the average
    of the Cs the data cannot tell apart did not: ``benchmarks/bench_probe.py``). ``folds``: ``(train_rows,
    test_rows)`` pairs (:func:`cv_folds`); ``block_dims`` (the widths of the :func:`clip_statistics` blocks) is
    required.

    Why not ``C`` on the validation split and the training split alone (the rule before issue 28): on multi-frame
    clips that probe trailed a plain logistic regression on the clip means, fitted on training + validation with
    a fixed ``C``, by 5-6 UAR points (``benchmarks/bench_probe.py``): the std columns double the width with what
    is mostly frame-to-frame noise (means alone: +4.6 to +8 points at the same ``C``), and ``C`` chosen on a
    validation split of a few dozen clips from a model that never saw them cost another ~3.5 points.
    Cross-validated, both choices see every clip once, and the final fit uses every clip, as the plain probe does.

    ``search``: ``(rows, folds over those rows)``: search the candidates on a subset of the rows only (large data
    sets: :func:`search_subset`); the chosen candidate's out-of-fold logits still come from ``folds`` over every
    row. Raises ``ValueError`` when ``y`` holds fewer than 2 classes, :class:`NoVaryingColumn` when no column
    varies."""
    if block_dims is None:
        raise ValueError("select_probe needs block_dims (the widths of the clip-statistics blocks)")
    if len(np.unique(y)) < 2:
        raise ValueError(f"the linear probe needs >= 2 classes in the training split, got {np.unique(y)}")
    cs = sorted(cs)
    rows_s, folds_s = search if search is not None else (np.arange(len(y)), folds)
    xs, ys = x[rows_s], y[rows_s]
    oof_s, usable = _candidates(xs, ys, num_classes, folds_s, class_weight, block_dims, cs, stats_options,
                                max_iter=SEARCH_MAX_ITER)
    if not usable:
        raise NoVaryingColumn(f"none of the {x.shape[1]} clip-statistics columns varies in the cross-validation "
                              "folds: nothing to fit")
    covered = np.isfinite(oof_s[(usable[0], cs[0])]).all(axis=1)
    cv = {st: {str(c): (scores(oof_s[(st, c)][covered].argmax(axis=1), ys[covered], num_classes)["test/uar"]
                        if covered.any() else 0.0) for c in cs} for st in usable}
    order = [(st, c) for st in usable for c in cs]  # tie order: means first, then smaller C
    st, best_c = max(order, key=lambda k: (cv[k[0]][str(k[1])], -order.index(k)))
    best = cv[st][str(best_c)]
    se = math.sqrt(best * (1.0 - best) / max(1, int(covered.sum())))
    averaged = [c for c in cs if cv[st][str(c)] >= best - se]
    # the averaged Cs' out-of-fold logits over every row, fitted to convergence like the probe itself
    oof_full = _candidates(x, y, num_classes, folds, class_weight, block_dims, averaged, [st])[0]
    oof = np.mean([oof_full[(st, c)] for c in averaged], axis=0)
    cols = stats_columns(block_dims, st)
    fits = [fit_probe(x, y, x[:0], y[:0], num_classes, class_weight, cs=(c,), block_dims=block_dims, columns=cols)
            for c in averaged]
    probe = fits[0]  # same rows, same columns: one scaler, so the mean of the logits is the mean of the weights
    probe.coef = np.mean([f.coef for f in fits], axis=0)
    probe.intercept = np.mean([f.intercept for f in fits], axis=0)
    probe.C, probe.val_uar, probe.val_uar_by_C = best_c, best, dict(cv[st])
    return ProbeSelection(probe, st, best_c, cv, oof, len(folds), averaged, se)


def _candidates(x: np.ndarray, y: np.ndarray, num_classes: int, folds: Sequence[tuple[np.ndarray, np.ndarray]],
                class_weight: str | None, block_dims: Sequence[int], cs: Sequence[float],
                stats_options: Sequence[str], max_iter: int = MAX_ITER
                ) -> tuple[dict[tuple[str, float], np.ndarray], list[str]]:
    """Out-of-fold logits ``float64 [N, num_classes]`` of every (statistics, C) candidate (NaN rows: clips of a
    fold that could not be fitted, one class), and the statistics that could be fitted at all. ``max_iter``: L-BFGS
    iterations per fit (each C warm-started from the previous one)."""
    folds = [(tr, te) for tr, te in folds if len(np.unique(y[tr])) >= 2]
    oof = {(st, c): np.full((len(y), num_classes), np.nan) for st in stats_options for c in cs}
    usable = []
    kept: list[np.ndarray] = []
    for st in stats_options:
        cols = stats_columns(block_dims, st)
        varying = cols & (np.nan_to_num(x, nan=0.0).std(axis=0) > 0)
        if any(np.array_equal(varying, k) for k in kept):  # photos: every std is 0, "mean+std" is "mean" again
            continue
        kept.append(varying)
        try:
            for tr, te in folds:
                prep = _Preprocessing.fit(x[tr], block_dims, cols)
                rows = _RowSpace(prep.transform(x[tr]))
                x_te = prep.transform(x[te])
                clf = _logistic(cs[0], class_weight, warm_start=True)
                clf.set_params(max_iter=max_iter)
                for c in cs:
                    clf.set_params(C=c)
                    _fit_quietly(clf, rows.z, y[tr])
                    coef, intercept = _per_class(clf, num_classes)
                    oof[(st, c)][te] = x_te @ rows.weights(coef).T + intercept
            usable.append(st)
        except NoVaryingColumn:  # e.g. the means of a modality that is constant in some fold: skip this option
            continue
    return oof, usable


#: Above this many training + validation clips, the probe's candidates are searched on a stratified subset of this
#: size (:func:`search_subset`): on DFEW's ~9,000 clips the full search would be 110 fits of thousands of clips
#: (tens of minutes on a CPU); the chosen one is still fitted, and its out-of-fold logits computed, on every clip.
SEARCH_CLIPS = 2000


def search_subset(ids: Sequence[str], y: np.ndarray, subjects: dict[str, str], limit: int = SEARCH_CLIPS
                  ) -> tuple[np.ndarray, list[tuple[np.ndarray, np.ndarray]]] | None:
    """``(rows, folds over them)``: a class-stratified random subset of ``limit`` clips (seed 0) and its
    :func:`cv_folds`, or None when there are no more than ``limit`` clips (search on all of them)."""
    if len(y) <= limit:
        return None
    from sklearn.model_selection import train_test_split

    counts = np.bincount(y)
    strat = y if (counts[counts > 0] >= 2).all() else None
    rows, _ = train_test_split(np.arange(len(y)), train_size=limit, stratify=strat, random_state=0)
    rows = np.sort(rows)
    return rows, cv_folds([ids[i] for i in rows], y[rows], subjects)


def floor_std_scales(x: np.ndarray, keep: np.ndarray, scale: np.ndarray, block_dims: Sequence[int]) -> np.ndarray:
    """The kept columns' scales (``scale``, ``[keep.sum()]``) with each std column floored at its mean column's scale,
    in every :func:`clip_statistics` block of ``x`` (training rows, NaN filled) that mixes 1-frame clips (all of the
    block's stds exactly 0) with longer ones.

    Why: a photo's std is 0 by construction, not by observation. When a few videos sit among many photos, a std
    column's training spread comes from those videos alone and is tiny, so standardising by it blows the videos' stds
    up (by about sqrt(clips / videos)) and the probe can tell every video by them: on the sample's 48 photos + 8
    jittered videos it weighed them 56 to 3, and sent every jittered video of a test photo to one class. Floored at
    the spread of the feature itself between clips, a within-clip std counts in the units the clip means do. Blocks
    without 1-frame clips (video datasets), or with nothing else (photo sets, whose stds are dropped as constant),
    are left as they are."""
    if 2 * sum(block_dims) != len(keep):
        raise ValueError(f"blocks of {list(block_dims)} (2 x D columns each) do not cover {len(keep)} columns")
    full = np.ones(len(keep))
    full[keep] = scale
    start = 0
    for d in block_dims:
        mean_cols = np.arange(start, start + d)
        std_cols = mean_cols + d
        single = (x[:, std_cols] == 0).all(axis=1)
        if single.any() and not single.all():
            pair = keep[mean_cols] & keep[std_cols]
            full[std_cols[pair]] = np.maximum(full[std_cols[pair]], full[mean_cols[pair]])
        start += 2 * d
    return full[keep]


def _per_class(clf: Any, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's coefficients as one row per class index. A binary fit has one row ``w`` (the logit of
    ``classes_[1]`` against ``classes_[0]``): softmax over ``(0, w.x + b)`` is the same probability."""
    classes = np.asarray(clf.classes_, dtype=np.int64)
    coef_raw, b_raw = np.asarray(clf.coef_, dtype=np.float64), np.asarray(clf.intercept_, dtype=np.float64)
    if len(classes) == 2 and coef_raw.shape[0] == 1:
        coef_raw = np.vstack([np.zeros_like(coef_raw[0]), coef_raw[0]])
        b_raw = np.array([0.0, b_raw[0]])
    coef = np.zeros((num_classes, coef_raw.shape[1]))
    intercept = np.full(num_classes, b_raw.min() - 20.0)  # absent classes: never the argmax
    coef[classes], intercept[classes] = coef_raw, b_raw
    return coef, intercept


def linear_probe(x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray, y_val: np.ndarray,
                 x_test: np.ndarray, y_test: np.ndarray, num_classes: int, class_weight: str | None = None,
                 cs: Sequence[float] = DEFAULT_CS, fitted: FittedProbe | None = None) -> BaselineResult:
    """:func:`fit_probe` (or the given ``fitted`` one) evaluated on the test rows."""
    probe = fitted or fit_probe(x_train, y_train, x_val, y_val, num_classes, class_weight, cs)
    return evaluate_probe(probe, x_test, y_test, num_classes)


def evaluate_probe(probe: FittedProbe, x_test: np.ndarray, y_test: np.ndarray, num_classes: int) -> BaselineResult:
    """Test metrics and confusion of a fitted probe, with what was chosen."""
    pred = probe.predict(x_test)
    y = np.asarray(y_test, dtype=np.int64)
    return BaselineResult(scores(pred, y, num_classes), confusion(pred, y, num_classes),
                          {"C": probe.C, "val_uar": probe.val_uar, "val_uar_by_C": probe.val_uar_by_C,
                           "class_weight": probe.class_weight, "n_features": int(probe.keep.sum()),
                           "what": "logistic regression on per-clip means (or means and stds) of valid frames, "
                                   "standardised; statistics and C chosen by cross-validation over the training and "
                                   "validation clips (logits averaged over the Cs within one standard error of the "
                                   "best), refitted on them"})


def _cache(dm: Any) -> dict[str, Any]:
    """What this module computed for one FeatureDataModule (its split never changes), kept on the DataModule."""
    if getattr(dm, "_fer_zoo_probe_cache", None) is None:
        dm._fer_zoo_probe_cache = {}
    return dm._fer_zoo_probe_cache


def _train_val(dm: Any) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """``(x, y)`` of the training and validation clips: clip statistics and labels, read from the stores once."""
    cache = _cache(dm)
    if "train_val" not in cache:
        ids = {s: dm.split_ids[s] for s in ("train", "val")}
        cache["train_val"] = ({s: clip_statistics(dm.stores, ids[s]) for s in ids},
                              {s: np.array([dm.labels[c] for c in ids[s]], dtype=np.int64) for s in ids})
    return cache["train_val"]


def _class_weight(dm: Any) -> str | None:
    """The probes' class weights follow the DataModule: ``class_balance`` other than ``none`` -> ``"balanced"``."""
    return None if dm.class_balance == "none" else "balanced"


def _pool(dm: Any) -> tuple[list[str], np.ndarray, np.ndarray, list[tuple[np.ndarray, np.ndarray]]]:
    """The clips a probe may learn from (training then validation clips), their clip statistics and labels, and the
    cross-validation folds over them (:func:`cv_folds`, whole subjects per fold where the source names them)."""
    cache = _cache(dm)
    if "pool" not in cache:
        x, y = _train_val(dm)
        ids = list(dm.split_ids["train"]) + list(dm.split_ids["val"])
        y_pool = np.concatenate([y["train"], y["val"]])
        subjects = getattr(dm, "subjects", None) or {}
        cache["pool"] = (ids, np.concatenate([x["train"], x["val"]]), y_pool, cv_folds(ids, y_pool, subjects))
        cache["search"] = search_subset(ids, y_pool, subjects)
    return cache["pool"]


def _selection(dm: Any, name: str, cols: slice, block_dims: list[int]) -> ProbeSelection:
    """:func:`select_probe` on the columns ``cols`` of the pool, computed once per DataModule."""
    cache = _cache(dm)
    key = f"selection:{name}"
    if key not in cache:
        _, x, y, folds = _pool(dm)
        cache[key] = select_probe(x[:, cols], y, dm.num_classes, folds, _class_weight(dm), block_dims,
                                  search=cache["search"])
    return cache[key]


def probe_for(dm: Any) -> FittedProbe:
    """The joint probe of a FeatureDataModule (all selected modalities' clip statistics): clip means alone or with
    stds, and ``C``, chosen by cross-validation over the training and validation clips, refitted on them
    (:func:`select_probe`; never a test clip). Computed once per DataModule and kept on it: :func:`baselines`
    reports it, and for one modality the model's clip-statistics head starts from it."""
    return _selection(dm, "joint", slice(None), [st.dim for st in dm.stores.values()]).probe


def _blocks(dm: Any) -> dict[str, slice]:
    """Column range of each modality in :func:`clip_statistics` (mean then std, in ``dm.stores`` order)."""
    out, start = {}, 0
    for m, store in dm.stores.items():
        out[m] = slice(start, start + 2 * store.dim)
        start += 2 * store.dim
    return out


def _experts(probes: dict[str, FittedProbe], blocks: dict[str, slice], width: int) -> FittedProbe:
    """One linear model whose logits are the sum of the given per-modality probes' logits (a product of experts);
    the columns of modalities not in ``probes`` are left out (weight 0)."""
    num_classes = next(iter(probes.values())).coef.shape[0]
    fill, keep = np.zeros(width), np.zeros(width, dtype=bool)
    means, scales, coefs = [], [], []
    intercept = np.zeros(num_classes)
    for m, blk in blocks.items():  # column order
        if m not in probes:
            continue
        pr = probes[m]
        fill[blk], keep[blk] = pr.fill, pr.keep
        means.append(pr.mean)
        scales.append(pr.scale)
        coefs.append(pr.coef)
        intercept = intercept + pr.intercept
    first = next(iter(probes.values()))
    return FittedProbe(fill=fill, keep=keep, mean=np.concatenate(means), scale=np.concatenate(scales),
                       coef=np.concatenate(coefs, axis=1), intercept=intercept, C=float("nan"), val_uar=float("nan"),
                       val_uar_by_C={}, class_weight=first.class_weight)


def _stacked(probes: dict[str, FittedProbe], blocks: dict[str, slice], width: int, mix: np.ndarray,
             bias: np.ndarray) -> FittedProbe:
    """One linear model whose logits are ``mix @ concat_m(z_m) + bias``, ``z_m`` the logits of modality m's probe
    (``mix``: ``[C, C * len(probes)]``, blocks in ``probes`` order): stacking (Wolpert, 1992) with a linear
    combiner, so it is still one linear map of the clip statistics. Block m's weights are ``mix_m @ coef_m``."""
    num_classes = next(iter(probes.values())).coef.shape[0]
    experts = _experts(probes, blocks, width)
    coefs, intercept = [], bias.astype(np.float64).copy()
    order = [m for m in blocks if m in probes]  # column order of the experts' concatenation
    mix_of = {m: mix[:, i * num_classes:(i + 1) * num_classes] for i, m in enumerate(probes)}
    for m in order:
        coefs.append(mix_of[m] @ probes[m].coef)
        intercept = intercept + mix_of[m] @ probes[m].intercept
    experts.coef, experts.intercept = np.concatenate(coefs, axis=1), intercept
    return experts


STACK_C = 0.1  # L2 strength of the stacking combiner (C * K * M weights on out-of-fold logits; not tuned per run)


def _fit_combiner(z: np.ndarray, y: np.ndarray, num_classes: int, class_weight: str | None
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression on concatenated per-modality logits ``z`` -> ``(mix [C, F], bias [C])``."""
    from sklearn.linear_model import LogisticRegression
    from threadpoolctl import threadpool_limits

    clf = LogisticRegression(C=STACK_C, max_iter=MAX_ITER, class_weight=class_weight)
    with warnings.catch_warnings(), threadpool_limits(limits=1):
        warnings.simplefilter("ignore")
        clf.fit(z, y)
    return _per_class(clf, num_classes)


@dataclass
class ProbeInit:
    """What the model's clip-statistics head starts from: ``probe`` (all columns of the selected stores), which
    one it is (``"joint"``: the probe of :func:`probe_for`, for one modality; ``"stack"``: the per-modality probes
    combined by a logistic regression on their out-of-fold logits) and, for reference, the cross-validated UAR of
    the stack and of plain sums of per-modality logits (``"experts:a+b"``)."""

    probe: FittedProbe
    chosen: str
    cv_uar_by_candidate: dict[str, float]
    folds: int
    # Out-of-fold logits of this very procedure (``float64 [num_classes]`` per clip id) over the training and
    # validation clips: each clip's from a fit that never saw it. The checkpoint policy scores the start on val with
    # them (fer_zoo.training.selection), because the head's own val logits are partly fitted to val labels (C, and
    # the stack's combiner). Clips of a fold that could not be fitted (one class) are absent.
    oof_logits: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    # Per modality (one entry, the joint probe, for a single modality): which clip statistics and C the
    # cross-validation chose, and the cross-validated UAR of every candidate (ProbeSelection.as_dict).
    selections: dict[str, dict[str, Any]] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "cv_uar_by_candidate": self.cv_uar_by_candidate, "folds": self.folds,
                "selections": self.selections,
                "what": "the clip-statistics head's start: one modality's probe, or for several the per-modality "
                        "probes stacked by a logistic regression fitted on their out-of-fold logits over the "
                        "training and validation clips (never test); each probe's clip statistics (means, or "
                        "means and stds) and C chosen by cross-validation over those clips, then refitted on all "
                        "of them; cv_uar_by_candidate: cross-validated UAR of the stack and of plain sums"}


CV_FOLDS = 5


def init_probe_for(dm: Any) -> ProbeInit:
    """The start of the model's clip-statistics head, fitted without the test split.

    One modality: its probe (:func:`probe_for`). Several: stacking (Wolpert, 1992). Each modality gets its own
    probe (its clip statistics and ``C`` chosen by cross-validation over the training and validation clips, then
    refitted on them: :func:`select_probe`); a multinomial logistic regression (``C = STACK_C``) learns how to
    weigh their logits from their out-of-fold logits of that same 5-fold cross-validation (folds grouped by
    subject where the source names subjects); folded into one linear map of the clip statistics, that is the
    head's start. Why not the joint probe: one regularisation strength for every column lets a wide, weak modality
    drown a strong one (bundled sample: joint probe of resnet+pose+facemesh 29 UAR, facemesh alone 34). Why not
    choose among candidates by cross-validated UAR (a rule before): on faces-static that choice was noise, classes
    with 7 photos swing it; over 6 splits the stack scored 40.3 test UAR on average and beat facemesh alone on
    every split (37.4), the cross-validated choice 37.8 (``benchmarks/README.md``, bench_accuracy section).
    Cached on ``dm``."""
    cache = _cache(dm)
    if "init" not in cache:
        cache["init"] = _stack_init(dm)
    return cache["init"]


def _stack_init(dm: Any) -> ProbeInit:
    from itertools import combinations

    names = list(dm.stores)
    blocks = _blocks(dm)
    ids, _, y_pool, folds = _pool(dm)
    width = sum(2 * st.dim for st in dm.stores.values())
    class_weight = _class_weight(dm)

    def init(probe: FittedProbe, chosen: str, oof: np.ndarray, cv: dict[str, float] | None = None,
             selections: dict[str, ProbeSelection] | None = None) -> ProbeInit:
        logits = {cid: oof[i] for i, cid in enumerate(ids) if np.isfinite(oof[i]).all()}
        return ProbeInit(probe, chosen, cv or {}, len(folds), logits,
                         {m: sel.as_dict() for m, sel in (selections or {}).items()})

    if len(names) == 1:
        joint = _selection(dm, "joint", slice(None), [st.dim for st in dm.stores.values()])
        return init(joint.probe, "joint", joint.oof, selections={names[0]: joint})
    single: dict[str, ProbeSelection] = {}
    for m in names:  # a modality that never varies on the training split (audio of photos) cannot be stacked
        try:
            single[m] = _selection(dm, m, blocks[m], [dm.stores[m].dim])
        except NoVaryingColumn:
            log.info("%s: no clip-statistics column varies on the training split; left out of the stack", m)
    names = [m for m in names if m in single]
    if not names:
        raise NoVaryingColumn(f"no clip-statistics column of {list(dm.stores)} varies on the training split")
    probes = {m: single[m].probe for m in names}
    if len(names) == 1:
        return init(_experts(probes, blocks, width), f"experts:{names[0]}", single[names[0]].oof,
                    selections=single)
    rows = np.all([np.isfinite(single[m].oof).all(axis=1) for m in names], axis=0)  # clips every fold covered
    z_pool = np.concatenate([single[m].oof for m in names], axis=1)
    oof = {"stack": np.full((len(y_pool), dm.num_classes), np.nan)}
    for tr, te in folds:  # the combiner's own out-of-fold logits, on the same folds
        tr, te = tr[rows[tr]], te[rows[te]]
        if len(np.unique(y_pool[tr])) < 2:
            continue
        mix, bias = _fit_combiner(z_pool[tr], y_pool[tr], dm.num_classes, class_weight)
        oof["stack"][te] = z_pool[te] @ mix.T + bias
    for subset in (sub for k in range(len(names), 0, -1) for sub in combinations(names, k)):
        oof["experts:" + "+".join(subset)] = sum(single[m].oof for m in subset)
    cv = {}
    for name, z in oof.items():
        ok = np.isfinite(z).all(axis=1)
        cv[name] = scores(z[ok].argmax(axis=1), y_pool[ok], dm.num_classes)["test/uar"] if ok.any() else 0.0
    mix, bias = _fit_combiner(z_pool[rows], y_pool[rows], dm.num_classes, class_weight)
    return init(_stacked(probes, blocks, width, mix, bias), "stack", oof["stack"], cv, single)


def cv_folds(ids: Sequence[str], y: np.ndarray, subjects: dict[str, str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``CV_FOLDS`` stratified folds (fewer when the data cannot fill them), whole subjects per fold when known;
    fixed shuffling seed, so a run is reproducible."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    groups = [subjects.get(c) or f"\0clip:{c}" for c in ids]
    if len(set(groups)) < 2:  # one person in all of it: folds cannot be whole persons; plain folds, and say so
        log.warning("the probe's cross-validation folds are not grouped by person: the %d training and validation "
                    "clips show one person", len(ids))
        subjects = {}
        groups = [f"\0clip:{c}" for c in ids]
    n = min(CV_FOLDS, max(2, int(np.bincount(y).max())), len(set(groups)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes smaller than the number of folds: expected on small data
        if subjects:
            splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=0)
            return list(splitter.split(np.zeros(len(y)), y, groups))
        return list(StratifiedKFold(n_splits=n, shuffle=True, random_state=0).split(np.zeros(len(y)), y))


def baselines(dm: Any) -> dict[str, Any]:
    """Probe and majority baselines on a FeatureDataModule's split: ``{"probe": {...}, "majority": {...}}`` with
    ``metrics`` (``test/uar|war|f1``), ``confusion`` and what was chosen (``stats``, ``C``, the cross-validated
    UAR of every candidate; ``val_uar`` is the chosen one's cross-validated UAR over training + validation)."""
    t0, c0 = time.perf_counter(), time.process_time()
    ids = {s: dm.split_ids[s] for s in ("train", "val", "test")}
    y = {s: np.array([dm.labels[c] for c in ids[s]], dtype=np.int64) for s in ids}
    probe = evaluate_probe(probe_for(dm), clip_statistics(dm.stores, ids["test"]), y["test"], dm.num_classes)
    probe.details.update(_selection(dm, "joint", slice(None), [st.dim for st in dm.stores.values()]).as_dict())
    probe.details["seconds"] = round(time.perf_counter() - t0, 3)  # wall clock: inflated on a loaded machine
    probe.details["cpu_seconds"] = round(time.process_time() - c0, 3)
    majority = majority_baseline(y["train"], y["test"], dm.num_classes, dm.class_names)
    return {"probe": probe.as_dict(), "majority": majority.as_dict()}


def format_table(res: dict[str, Any], model: dict[str, float] | None = None) -> str:
    rows = ([("model", model)] if model else []) + [(k, res[k]["metrics"]) for k in ("probe", "majority")]
    lines = [f"{'':10} {'UAR %':>7} {'WAR %':>7} {'F1 %':>7}"]
    for name, m in rows:
        lines.append(f"{name:10} {100 * m['test/uar']:7.1f} {100 * m['test/war']:7.1f} {100 * m['test/f1']:7.1f}")
    return "\n".join(lines)
