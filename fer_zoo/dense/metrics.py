"""The ABAW challenge metrics on flat per-frame arrays (all labeled frames of a split, concatenated).

Definitions (Kollias et al., "The 6th Affective Behavior Analysis in-the-wild (ABAW) Competition", arXiv:2402.19344,
and the 3rd ABAW paper, arXiv:2202.10659, "Evaluation metrics"):

- Expression: ``P_EXPR = sum_c F1_c / 8``, the F1 of each of the 8 classes averaged with a fixed denominator 8. A
  class absent from both predictions and labels therefore counts as F1 = 0 (not skipped): scikit-learn's
  ``f1_score(labels=range(8), average="macro", zero_division=0)`` is exactly this, and is used. torchmetrics'
  ``MulticlassF1Score(average="macro")`` is NOT: it leaves such a class out of the mean.
- Valence-arousal: ``P_VA = (CCC_V + CCC_A) / 2`` with Lin's concordance correlation coefficient (Lin 1989,
  Biometrics 45:255-268) ``2 s_pt / (s_p^2 + s_t^2 + (m_p - m_t)^2)`` over population (1/N) moments, as ABAW writes
  it (``2 rho s_p s_t / (...)`` with standard deviations). Computed here with numpy: torchmetrics'
  ``ConcordanceCorrCoef`` divides the variances by N - 1 but not the mean term (0.9777 instead of 0.9768 on its own
  docstring example) and returns NaN for a constant prediction, where Lin's formula gives 0.
- Action units: ``P_AU = sum_AU F1_AU / 12``, the binary F1 of each of the 12 AUs, an AU active where its probability
  is above the threshold (0.5; strictly above, as torchmetrics' and scikit-learn's binarisation). An AU with labeled
  frames but no positive label and no positive prediction has F1 = 0 (scikit-learn, ``zero_division=0``).

Frames without a label (EXPR ``-1``, VA ``NaN``, AU ``-1``) are left out; ``mask`` (bool ``[N]``) leaves out more
(e.g. frames of another split). Inputs are numpy arrays (or anything ``np.asarray`` reads: CPU tensors, lists).
Every function raises ``ValueError`` for arrays of the wrong shape, labels out of range, a prediction that is out of
range or not finite on a scored frame, or nothing to score.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from datamodules.frame_labels import AU_NAMES
from datamodules.labels import ABAW_EXPR

EXPR_CLASSES: tuple[str, ...] = ABAW_EXPR.classes


@dataclass(frozen=True)
class ExprScore:
    """``f1``: ABAW's expression score (macro F1 over the 8 classes, absent ones 0); ``per_class``: class name ->
    F1; ``n_frames``: frames scored."""

    f1: float
    per_class: dict[str, float]
    n_frames: int


@dataclass(frozen=True)
class VAScore:
    """``ccc``: ABAW's VA score, the mean of ``valence`` and ``arousal`` (each Lin's CCC, NaN where undefined: both
    series constant and equal); ``n_frames``: frames scored for valence and for arousal."""

    ccc: float
    valence: float
    arousal: float
    n_frames: tuple[int, int]


@dataclass(frozen=True)
class AUScore:
    """``f1``: ABAW's AU score (mean binary F1 over the 12 AUs), NaN when an AU has no labeled frame (the official
    score is then undefined; ``f1_labeled`` is the mean over the AUs that have labels); ``per_au``: AU name -> F1
    (NaN without labels); ``n_frames``: AU name -> frames scored."""

    f1: float
    f1_labeled: float
    per_au: dict[str, float]
    n_frames: dict[str, int]


def _mask(mask: object, n: int) -> np.ndarray:
    if mask is None:
        return np.ones(n, dtype=bool)
    m = np.asarray(mask)
    if m.dtype != bool or m.shape != (n,):
        raise ValueError(f"mask must be bool [{n}], got {m.dtype} {list(m.shape)}")
    return m


def _pair(pred: object, target: object, shape: tuple[int, ...], what: str) -> tuple[np.ndarray, np.ndarray]:
    p, t = np.asarray(pred), np.asarray(target)
    if p.shape != t.shape or p.ndim != len(shape) or any(s != -1 and s != d for s, d in zip(shape, t.shape)):
        want = "[N" + "".join(f", {s}" for s in shape[1:]) + "]"
        raise ValueError(f"{what}: pred and target must both be {want}, got {list(p.shape)} and {list(t.shape)}")
    return p, t


def expr_score(pred: object, target: object, mask: object = None) -> ExprScore:
    """ABAW expression score of class predictions ``pred`` (int ``[N]``, 0..7 in ``abaw_expr`` order) against
    ``target`` (int ``[N]``, ``-1`` = no label), over labeled frames where ``mask`` holds."""
    p, t = _pair(pred, target, (-1,), "expr")
    if not np.issubdtype(t.dtype, np.integer) or not np.issubdtype(p.dtype, np.integer):
        raise ValueError(f"expr: pred and target must be integer class indices, got {p.dtype} and {t.dtype}")
    if len(t) and (t.min() < -1 or t.max() >= len(EXPR_CLASSES)):
        raise ValueError(f"expr: target values must be -1..{len(EXPR_CLASSES) - 1}, got {t.min()}..{t.max()}")
    keep = (t >= 0) & _mask(mask, len(t))
    if not keep.any():
        raise ValueError("expr: no labeled frame to score")
    p, t = p[keep], t[keep]
    if p.min() < 0 or p.max() >= len(EXPR_CLASSES):
        raise ValueError(f"expr: predictions on scored frames must be 0..{len(EXPR_CLASSES) - 1}, got "
                         f"{p.min()}..{p.max()}")
    per = f1_score(t, p, labels=range(len(EXPR_CLASSES)), average=None, zero_division=0)
    return ExprScore(float(np.mean(per)), dict(zip(EXPR_CLASSES, map(float, per))), int(keep.sum()))


def expr_f1(pred: object, target: object, mask: object = None) -> float:
    """ABAW's expression score: macro F1 over the 8 classes (see :func:`expr_score`)."""
    return expr_score(pred, target, mask).f1


def ccc(pred: object, target: object, mask: object = None) -> float:
    """Lin's concordance correlation coefficient of float ``pred`` ``[N]`` against ``target`` ``[N]`` (``NaN`` = no
    label) over labeled frames where ``mask`` holds: ``2 cov / (var_p + var_t + (mean_p - mean_t)^2)``, population
    moments, in float64. A constant prediction scores exactly 0 against a varying target; NaN when the denominator
    is 0 (both constant and equal). Raises ``ValueError`` for fewer than 2 frames or a non-finite prediction."""
    p, t = _pair(pred, target, (-1,), "ccc")
    p, t = p.astype(np.float64), t.astype(np.float64)
    keep = ~np.isnan(t) & _mask(mask, len(t))
    if keep.sum() < 2:
        raise ValueError(f"ccc: needs at least 2 labeled frames, got {int(keep.sum())}")
    p, t = p[keep], t[keep]
    if not (np.isfinite(p).all() and np.isfinite(t).all()):
        raise ValueError("ccc: predictions (and labels) on scored frames must be finite")
    mp, mt = p.mean(), t.mean()
    # a constant series has covariance 0 exactly (its mean can differ from its value in the last bit)
    cov = 0.0 if (p == p[0]).all() or (t == t[0]).all() else np.mean((p - mp) * (t - mt))
    denom = p.var() + t.var() + (mp - mt) ** 2
    return float(2.0 * cov / denom) if denom > 0 else float("nan")


def va_score(pred: object, target: object, mask: object = None) -> VAScore:
    """ABAW's VA score of ``pred`` float ``[N, 2]`` (valence, arousal) against ``target`` ``[N, 2]`` (``NaN`` = no
    label, per column), over frames where ``mask`` holds: the mean of the two CCCs (:func:`ccc`)."""
    p, t = _pair(pred, target, (-1, 2), "va")
    m = _mask(mask, len(t))
    v, a = ccc(p[:, 0], t[:, 0], m), ccc(p[:, 1], t[:, 1], m)
    labeled = ~np.isnan(np.asarray(t, np.float64)) & m[:, None]
    return VAScore((v + a) / 2.0, v, a, (int(labeled[:, 0].sum()), int(labeled[:, 1].sum())))


def va_ccc(pred: object, target: object, mask: object = None) -> float:
    """ABAW's VA score: the mean of the valence and arousal CCCs (see :func:`va_score`)."""
    return va_score(pred, target, mask).ccc


def au_score(prob: object, target: object, threshold: float = 0.5, mask: object = None) -> AUScore:
    """ABAW's AU score of activation probabilities ``prob`` float ``[N, 12]`` (columns in ``AU_NAMES`` order; 0/1
    hard predictions work too) against ``target`` int ``[N, 12]`` (``0``/``1``, ``-1`` = no label, per AU), over
    frames where ``mask`` holds: an AU is predicted active where ``prob > threshold``; mean binary F1 over the AUs."""
    p, t = _pair(prob, target, (-1, len(AU_NAMES)), "au")
    if not np.isin(t, (-1, 0, 1)).all():
        raise ValueError("au: target values must be -1, 0 or 1")
    m = _mask(mask, len(t))
    per: dict[str, float] = {}
    counts: dict[str, int] = {}
    for j, name in enumerate(AU_NAMES):
        keep = (t[:, j] >= 0) & m
        counts[name] = int(keep.sum())
        if not keep.any():
            per[name] = float("nan")
            continue
        pj = np.asarray(p[keep, j], np.float64)
        if not np.isfinite(pj).all():
            raise ValueError(f"au: {name} predictions on scored frames must be finite")
        per[name] = float(f1_score(t[keep, j], (pj > threshold).astype(np.int64), zero_division=0))
    if not any(counts.values()):
        raise ValueError("au: no labeled frame to score")
    values = np.array(list(per.values()))
    labeled = values[~np.isnan(values)]
    return AUScore(float(values.mean()), float(labeled.mean()), per, counts)


def au_f1(prob: object, target: object, threshold: float = 0.5, mask: object = None) -> float:
    """ABAW's AU score: mean binary F1 over the 12 AUs (see :func:`au_score`; NaN when an AU has no label)."""
    return au_score(prob, target, threshold, mask).f1
