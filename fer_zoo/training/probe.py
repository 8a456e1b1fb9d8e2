"""Baselines every run gets for free: a linear probe on clip statistics and the majority class.

``python -m fer_zoo probe --config configs/all.yaml [fit arguments...]`` runs them alone (seconds); ``fit`` and
``test`` write them into ``results.json`` under ``baselines``, next to the model's test metrics.

- **Linear probe**: multinomial logistic regression (scikit-learn, L-BFGS) on one vector per clip: for every
  selected modality, the mean and the std over the clip's *valid* frames (all stored frames, not the model's TSN
  sample), concatenated. Columns are standardised with training-split statistics (``StandardScaler``; where
  1-frame clips and longer ones mix, each std column's scale is floored at its mean column's, see
  :func:`floor_std_scales`); a clip without any valid frame in a modality gets that modality's training mean (0
  after scaling). The inverse
  regularisation strength ``C`` is chosen on the validation split by UAR (ties: the smaller ``C``), the model is
  refitted on nothing else: it is trained on the training split only, exactly as the transformer is. Class weights
  follow the DataModule: ``class_balance`` other than ``none`` -> ``class_weight="balanced"``.
- **Majority class**: the most frequent class of the training split, predicted for every test clip.

Both use the DataModule's own split (same source, fold, seed; the same clips dropped from training) and the same
metric code as the model (torchmetrics: UAR = macro recall, WAR = accuracy, macro-F1, confusion matrix).
"""

from __future__ import annotations

import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
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
MAX_ITER = 500


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
              block_dims: Sequence[int] | None = None) -> FittedProbe:
    """Standardise with training stats, fit one logistic regression per ``C`` on the training rows, keep the one
    with the best validation UAR (ties: smaller ``C``).

    NaN cells (a modality without valid frames in that clip) become the training column mean. Columns constant on
    the training split are dropped (e.g. the std of 1-frame clips). ``block_dims``: the columns are
    :func:`clip_statistics` blocks (per modality ``D`` means then ``D`` stds); then, in a block where some training
    clips have one frame (every std 0) and others more, each std column's scale is floored at its mean column's
    (:func:`floor_std_scales`). Raises ``ValueError`` when the training split holds fewer than 2 classes (nothing to
    discriminate)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler
    from threadpoolctl import threadpool_limits

    if len(np.unique(y_train)) < 2:
        raise ValueError(f"the linear probe needs >= 2 classes in the training split, got {np.unique(y_train)}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmean of an all-NaN column: handled below
        fill = np.nan_to_num(np.nanmean(x_train, axis=0), nan=0.0)
    x_tr_full = np.where(np.isnan(x_train), fill, x_train)
    keep = x_tr_full.std(axis=0) > 0
    if not keep.any():
        raise NoVaryingColumn(f"none of the {x_train.shape[1]} clip-statistics columns varies on the training "
                              "split (a modality without a valid frame, like the audio of photos): nothing to fit")
    scaler = StandardScaler().fit(x_tr_full[:, keep])
    if block_dims is not None:
        scaler.scale_ = floor_std_scales(x_tr_full, keep, scaler.scale_, block_dims)
    x_tr = scaler.transform(x_tr_full[:, keep])
    x_va = scaler.transform(np.where(np.isnan(x_val), fill, x_val)[:, keep]) if len(x_val) else x_val[:, keep]
    best: tuple[float, float, Any] | None = None
    val_uars = {}
    for c in sorted(cs):
        clf = LogisticRegression(C=c, max_iter=MAX_ITER, class_weight=class_weight)
        # One BLAS thread: next to busy training/loader processes, multi-threaded BLAS spin-waits (10x slower on a
        # loaded 2-core machine), and a fixed thread count keeps the fit bit-for-bit reproducible.
        with warnings.catch_warnings(), threadpool_limits(limits=1):
            warnings.simplefilter("ignore")  # ConvergenceWarning at large C: the val split judges the result
            clf.fit(x_tr, y_train)
        uar = scores(_predict(clf, x_va), y_val, num_classes)["test/uar"] if len(y_val) else 0.0
        val_uars[c] = uar
        if best is None or uar > best[0] + 1e-12:
            best = (uar, c, clf)
    assert best is not None
    coef, intercept = _per_class(best[2], num_classes)
    return FittedProbe(fill=fill, keep=keep, mean=scaler.mean_, scale=scaler.scale_, coef=coef, intercept=intercept,
                       C=best[1], val_uar=best[0], val_uar_by_C={str(k): v for k, v in val_uars.items()},
                       class_weight=class_weight)


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
                           "what": "logistic regression on per-clip mean+std of valid frames, standardised with "
                                   "training stats, C chosen on val UAR"})


def _predict(clf: Any, x: np.ndarray) -> np.ndarray:
    return clf.predict(x).astype(np.int64) if len(x) else np.zeros(0, dtype=np.int64)


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


def probe_for(dm: Any) -> FittedProbe:
    """The probe fitted on a FeatureDataModule's training split (C chosen on its val split), computed once per
    DataModule and kept on it: the model's clip-statistics head starts from it (``FERLitModule.probe_init``) and
    :func:`baselines` reports the very same fit."""
    cache = _cache(dm)
    if "joint" not in cache:
        x, y = _train_val(dm)
        cache["joint"] = fit_probe(x["train"], y["train"], x["val"], y["val"], dm.num_classes,
                                   class_weight=_class_weight(dm), block_dims=[st.dim for st in dm.stores.values()])
    return cache["joint"]


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

    def as_dict(self) -> dict[str, Any]:
        return {"chosen": self.chosen, "cv_uar_by_candidate": self.cv_uar_by_candidate, "folds": self.folds,
                "what": "the clip-statistics head's start: one modality's probe, or for several the per-modality "
                        "probes stacked by a logistic regression fitted on their out-of-fold logits over the "
                        "training and validation clips (never test); cv_uar_by_candidate: cross-validated UAR of "
                        "the stack and of plain sums, for reference"}


CV_FOLDS = 5


def init_probe_for(dm: Any) -> ProbeInit:
    """The start of the model's clip-statistics head, fitted without the test split.

    One modality: its probe (:func:`probe_for`). Several: stacking (Wolpert, 1992). Each modality gets its own
    probe (fitted on the training split, its own ``C`` chosen on val); a multinomial logistic regression
    (``C = STACK_C``) learns how to weigh their logits from out-of-fold logits of a 5-fold cross-validation over the
    training and validation clips (folds grouped by subject where the source names subjects); folded into one
    linear map of the clip statistics, that is the head's start. Why not the joint probe: one regularisation
    strength for every column lets a wide, weak modality drown a strong one (bundled sample: joint probe of
    resnet+pose+facemesh 29 UAR, facemesh alone 34). Why not choose among candidates by cross-validated UAR (the
    previous rule): on faces-static that choice is noise, classes with 7 photos swing it; over 6 splits the stack
    scored 40.3 test UAR on average and beat facemesh alone on every split (37.4), the cross-validated choice 37.8
    (``benchmarks/README.md``, bench_accuracy section). Cached on ``dm``."""
    cache = _cache(dm)
    if "init" not in cache:
        cache["init"] = _stack_init(dm)
    return cache["init"]


def _stack_init(dm: Any) -> ProbeInit:
    from itertools import combinations

    names = list(dm.stores)
    blocks = _blocks(dm)
    ids = {s: dm.split_ids[s] for s in ("train", "val")}
    x, y = _train_val(dm)
    width = x["train"].shape[1]
    class_weight = _class_weight(dm)
    # Out-of-fold logits over train+val (5 folds, whole subjects per fold where known), each fit at the C chosen
    # for the start: for the stack's combiner and for an honest val score of the start (ProbeInit.oof_logits).
    pool_ids = ids["train"] + ids["val"]
    x_pool, y_pool = np.concatenate([x["train"], x["val"]]), np.concatenate([y["train"], y["val"]])
    folds = [(tr, te) for tr, te in _cv_folds(pool_ids, y_pool, getattr(dm, "subjects", None) or {})
             if len(np.unique(y_pool[tr])) >= 2]
    covered = np.zeros(len(y_pool), dtype=bool)
    for _, te in folds:
        covered[te] = True

    def out_of_fold(cols: slice, c: float, block_dims: list[int]) -> np.ndarray:
        z = np.zeros((len(y_pool), dm.num_classes))
        for tr, te in folds:
            fold = fit_probe(x_pool[tr][:, cols], y_pool[tr], x_pool[te][:0, cols], y_pool[:0], dm.num_classes,
                             class_weight, cs=(c,), block_dims=block_dims)
            z[te] = fold.decision(x_pool[te][:, cols])
        return z

    def init(probe: FittedProbe, chosen: str, oof: np.ndarray, cv: dict[str, float] | None = None) -> ProbeInit:
        logits = {cid: oof[i] for i, cid in enumerate(pool_ids) if covered[i]}
        return ProbeInit(probe, chosen, cv or {}, len(folds), logits)

    if len(names) == 1:
        joint = probe_for(dm)
        return init(joint, "joint", out_of_fold(slice(None), joint.C, [st.dim for st in dm.stores.values()]))
    single = {}
    for m in names:  # a modality that never varies on the training split (audio of photos) cannot be stacked
        try:
            single[m] = fit_probe(x["train"][:, blocks[m]], y["train"], x["val"][:, blocks[m]], y["val"],
                                  dm.num_classes, class_weight=class_weight, block_dims=[dm.stores[m].dim])
        except NoVaryingColumn:
            log.info("%s: no clip-statistics column varies on the training split; left out of the stack", m)
    names = [m for m in names if m in single]
    if not names:
        raise NoVaryingColumn(f"no clip-statistics column of {list(dm.stores)} varies on the training split")
    oof_single = {m: out_of_fold(blocks[m], single[m].C, [dm.stores[m].dim]) for m in names}
    if len(names) == 1:
        return init(_experts(single, blocks, width), f"experts:{names[0]}", oof_single[names[0]])
    z_pool = np.concatenate([oof_single[m] for m in names], axis=1)
    oof = {"stack": np.zeros((len(y_pool), dm.num_classes))}
    for tr, te in folds:  # the combiner's own out-of-fold logits, on the same folds
        mix, bias = _fit_combiner(z_pool[tr], y_pool[tr], dm.num_classes, class_weight)
        oof["stack"][te] = z_pool[te] @ mix.T + bias
    for subset in (sub for k in range(len(names), 0, -1) for sub in combinations(names, k)):
        oof["experts:" + "+".join(subset)] = sum(oof_single[m] for m in subset)
    cv = {name: scores(z.argmax(axis=1), y_pool, dm.num_classes)["test/uar"] for name, z in oof.items()}
    mix, bias = _fit_combiner(z_pool, y_pool, dm.num_classes, class_weight)
    return init(_stacked({m: single[m] for m in names}, blocks, width, mix, bias), "stack", oof["stack"], cv)


def _cv_folds(ids: Sequence[str], y: np.ndarray, subjects: dict[str, str]) -> list[tuple[np.ndarray, np.ndarray]]:
    """``CV_FOLDS`` stratified folds (fewer when the data cannot fill them), whole subjects per fold when known;
    fixed shuffling seed, so a run is reproducible."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    groups = [subjects.get(c) or f"\0clip:{c}" for c in ids]
    n = min(CV_FOLDS, max(2, int(np.bincount(y).max())), len(set(groups)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # classes smaller than the number of folds: expected on small data
        if subjects:
            splitter = StratifiedGroupKFold(n_splits=n, shuffle=True, random_state=0)
            return list(splitter.split(np.zeros(len(y)), y, groups))
        return list(StratifiedKFold(n_splits=n, shuffle=True, random_state=0).split(np.zeros(len(y)), y))


def baselines(dm: Any) -> dict[str, Any]:
    """Probe and majority baselines on a FeatureDataModule's split: ``{"probe": {...}, "majority": {...}}`` with
    ``metrics`` (``test/uar|war|f1``), ``confusion`` and what was chosen (``C``, ``val_uar``, ...)."""
    t0, c0 = time.perf_counter(), time.process_time()
    ids = {s: dm.split_ids[s] for s in ("train", "val", "test")}
    y = {s: np.array([dm.labels[c] for c in ids[s]], dtype=np.int64) for s in ids}
    probe = evaluate_probe(probe_for(dm), clip_statistics(dm.stores, ids["test"]), y["test"], dm.num_classes)
    probe.details["seconds"] = round(time.perf_counter() - t0, 3)  # wall clock: inflated on a loaded machine
    probe.details["cpu_seconds"] = round(time.process_time() - c0, 3)
    majority = majority_baseline(y["train"], y["test"], dm.num_classes, dm.class_names)
    return {"probe": probe.as_dict(), "majority": majority.as_dict()}


def datamodule_from_args(args: list[str]) -> Any:
    """A FeatureDataModule from ``fit`` arguments (config files and overrides), parsed exactly as ``fit`` would."""
    from datamodules.feature_datamodule import FeatureDataModule
    from fer_zoo.training.cli import instantiate_spec, parse_fit_config

    data = parse_fit_config(args).data.as_dict()
    data["source"] = instantiate_spec(data["source"])
    return FeatureDataModule(**data)


def format_table(res: dict[str, Any], model: dict[str, float] | None = None) -> str:
    rows = ([("model", model)] if model else []) + [(k, res[k]["metrics"]) for k in ("probe", "majority")]
    lines = [f"{'':10} {'UAR %':>7} {'WAR %':>7} {'F1 %':>7}"]
    for name, m in rows:
        lines.append(f"{name:10} {100 * m['test/uar']:7.1f} {100 * m['test/war']:7.1f} {100 * m['test/f1']:7.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``python -m fer_zoo probe [--out FILE.json] <fit arguments>``: print (and optionally save) the baselines."""
    argv = list(sys.argv[1:] if argv is None else argv)
    out: Path | None = None
    if "--out" in argv:
        i = argv.index("--out")
        out = Path(argv[i + 1])
        argv = argv[:i] + argv[i + 2:]
    if any(a in ("-h", "--help") for a in argv):
        print("usage: python -m fer_zoo probe [--out FILE.json] --config FIT_CONFIG [--data.* overrides]\n"
              + (__doc__ or "").split("\n\n")[1])
        return 0
    dm = datamodule_from_args(argv)
    res = baselines(dm)
    sizes = "/".join(str(len(dm.split_ids[s])) for s in ("train", "val", "test"))
    print(f"baselines on {dm.source.name} fold {dm.fold or 0} seed {dm.seed}, modalities {'+'.join(dm.stores)} "
          f"(train/val/test {sizes} clips; probe C={res['probe']['C']:g}, {res['probe']['seconds']:.1f} s wall, "
          f"{res['probe']['cpu_seconds']:.1f} s CPU)")
    print(format_table(res))
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps({"modalities": dm.modalities, "fold": dm.fold, "seed": dm.seed,
                                   "class_names": dm.class_names, "split_sizes": sizes, "baselines": res},
                                  indent=2) + "\n")
        print(f"written: {out}")
    return 0
