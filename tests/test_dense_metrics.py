"""ABAW metrics (fer_zoo.dense.metrics) against hand-computed values, scikit-learn and a numpy reference CCC; the
per-frame baselines (fer_zoo.dense.baselines) on features built to separate the classes."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import f1_score

from datamodules.frame_labels import AU_NAMES, FrameLabels
from fer_zoo.dense.baselines import DenseClip, dense_baselines
from fer_zoo.dense.metrics import au_f1, au_score, ccc, expr_f1, expr_score, va_ccc, va_score


def reference_ccc(p: np.ndarray, t: np.ndarray) -> float:
    """Lin (1989) with population moments, written independently of the module."""
    cov = np.cov(p, t, bias=True)[0, 1]
    return float(2 * cov / (np.var(p) + np.var(t) + (np.mean(p) - np.mean(t)) ** 2))


# ---------------------------------------------------------------------------------------------------------- EXPR


def test_expr_f1_by_hand_absent_classes_count_as_zero() -> None:
    target = np.array([0, 0, 1, 1, 2, 2, -1, -1])
    pred = np.array([0, 1, 1, 1, 2, 0, 5, -1])  # unlabeled frames' predictions are never looked at
    # class 0: tp 1, fp 1, fn 1 -> 1/2; class 1: tp 2, fp 1 -> P 2/3, R 1 -> 4/5; class 2: tp 1, fn 1 -> 2/3;
    # classes 3..7: in neither labels nor predictions -> 0, and the mean is over all 8 (ABAW: sum F1 / 8)
    expected = (1 / 2 + 4 / 5 + 2 / 3) / 8
    score = expr_score(pred, target)
    assert score.f1 == pytest.approx(expected, abs=1e-12)
    assert expr_f1(pred, target) == pytest.approx(expected, abs=1e-12)
    assert score.n_frames == 6
    assert score.per_class["neutral"] == pytest.approx(0.5) and score.per_class["anger"] == pytest.approx(0.8)
    assert score.per_class["disgust"] == pytest.approx(2 / 3) and score.per_class["other"] == 0.0
    keep = target >= 0
    assert score.f1 == pytest.approx(f1_score(target[keep], pred[keep], labels=range(8), average="macro",
                                              zero_division=0), abs=1e-12)
    # what the module must NOT be: a macro that skips absent classes (torchmetrics' MulticlassF1Score) gives 3x more
    import torch
    from torchmetrics.functional.classification import multiclass_f1_score

    skipping = float(multiclass_f1_score(torch.tensor(pred[keep]), torch.tensor(target[keep]), 8, average="macro"))
    assert skipping == pytest.approx((1 / 2 + 4 / 5 + 2 / 3) / 3, abs=1e-6) and skipping != pytest.approx(score.f1)


def test_expr_f1_matches_sklearn_on_random_arrays_and_mask() -> None:
    rng = np.random.default_rng(0)
    target = rng.integers(-1, 8, size=500)
    pred = rng.integers(0, 8, size=500)
    mask = rng.random(500) < 0.7
    keep = (target >= 0) & mask
    want = f1_score(target[keep], pred[keep], labels=range(8), average="macro", zero_division=0)
    assert expr_f1(pred, target, mask) == pytest.approx(want, abs=1e-12)
    assert expr_score(pred, target, mask).n_frames == int(keep.sum())


def test_expr_class_never_predicted_scores_zero() -> None:
    target = np.array([4, 4, 4, 0, 0])
    pred = np.array([4, 4, 4, 4, 4])  # neutral never predicted
    score = expr_score(pred, target)
    assert score.per_class["neutral"] == 0.0
    assert score.per_class["happiness"] == pytest.approx(2 * 0.6 / 1.6)  # P 3/5, R 1
    assert score.f1 == pytest.approx(2 * 0.6 / 1.6 / 8)


def test_expr_errors() -> None:
    with pytest.raises(ValueError, match="no labeled frame"):
        expr_f1(np.array([1, 2]), np.array([-1, -1]))
    with pytest.raises(ValueError, match="target values"):
        expr_f1(np.array([1, 2]), np.array([8, 0]))
    with pytest.raises(ValueError, match="predictions on scored frames"):
        expr_f1(np.array([1, 8]), np.array([1, 0]))
    with pytest.raises(ValueError, match="integer"):
        expr_f1(np.array([1.0, 0.0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="must both be"):
        expr_f1(np.array([1, 0, 0]), np.array([1, 0]))
    with pytest.raises(ValueError, match="mask"):
        expr_f1(np.array([1, 0]), np.array([1, 0]), mask=np.array([1, 0]))


# ----------------------------------------------------------------------------------------------------------- CCC


def test_ccc_by_hand_and_not_torchmetrics() -> None:
    p, t = np.array([2.5, 0.0, 2.0, 8.0]), np.array([3.0, -0.5, 2.0, 7.0])
    # means 3.125 / 2.875, population variances 8.796875 / 7.296875, covariance 7.890625, mean gap^2 0.0625
    assert ccc(p, t) == pytest.approx(2 * 7.890625 / (8.796875 + 7.296875 + 0.0625), abs=1e-12)
    import torch
    from torchmetrics.functional.regression import concordance_corrcoef

    # torchmetrics divides the variances by N - 1: 0.9777 on this, its own docstring example
    assert float(concordance_corrcoef(torch.tensor(p), torch.tensor(t))) == pytest.approx(0.9777, abs=1e-4)
    assert ccc(p, t) == pytest.approx(0.97679, abs=1e-5)


def test_ccc_matches_reference_on_random_arrays() -> None:
    rng = np.random.default_rng(1)
    t = rng.uniform(-1, 1, 300)
    p = 0.6 * t + rng.normal(0.1, 0.3, 300)
    assert ccc(p, t) == pytest.approx(reference_ccc(p, t), abs=1e-12)
    assert ccc(t, t) == pytest.approx(1.0)
    centred = t - t.mean()
    assert ccc(-centred, centred) == pytest.approx(-1.0)


def test_ccc_constant_prediction_is_zero_nan_labels_skipped() -> None:
    t = np.array([0.1, 0.5, np.nan, -0.3, 0.9])
    assert ccc(np.full(5, 0.2), t) == 0.0
    # exactly 0 even where the mean of the constant differs from it in the last bit (100 x 0.1)
    assert ccc(np.full(100, 0.1), np.random.default_rng(5).uniform(-1, 1, 100)) == 0.0
    # frames without a label (NaN) are left out, whatever the prediction there
    p = np.array([0.2, 0.4, 99.0, -0.1, 0.8])
    keep = ~np.isnan(t)
    assert ccc(p, t) == pytest.approx(reference_ccc(p[keep], t[keep]), abs=1e-12)
    # both constant and equal: Lin's formula is 0/0
    assert math.isnan(ccc(np.full(3, 0.5), np.full(3, 0.5)))
    # a mask leaves out more frames
    mask = np.array([True, True, True, True, False])
    keep &= mask
    assert ccc(p, t, mask) == pytest.approx(reference_ccc(p[keep], t[keep]), abs=1e-12)


def test_ccc_errors() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        ccc(np.array([0.1, 0.2]), np.array([0.3, np.nan]))
    with pytest.raises(ValueError, match="finite"):
        ccc(np.array([0.1, np.nan, 0.3]), np.array([0.3, 0.2, 0.1]))


def test_va_ccc_is_mean_of_valence_and_arousal() -> None:
    rng = np.random.default_rng(2)
    t = rng.uniform(-1, 1, (200, 2)).astype(np.float32)
    t[:20, 0] = np.nan  # valence unlabeled on 20 frames, arousal labeled there
    t[50:60] = np.nan
    p = np.clip(t + rng.normal(0, 0.4, t.shape), -1, 1)
    p[np.isnan(p)] = 0.0
    kv, ka = ~np.isnan(t[:, 0]), ~np.isnan(t[:, 1])
    v, a = reference_ccc(p[kv, 0], t[kv, 0]), reference_ccc(p[ka, 1], t[ka, 1])
    score = va_score(p, t)
    assert score.valence == pytest.approx(v, abs=1e-6) and score.arousal == pytest.approx(a, abs=1e-6)
    assert score.ccc == pytest.approx((v + a) / 2, abs=1e-6) and va_ccc(p, t) == score.ccc
    assert score.n_frames == (170, 190)
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        va_ccc(p[:, :1], t[:, :1])


# ------------------------------------------------------------------------------------------------------------ AU


def test_au_f1_by_hand_threshold_strict_and_unlabeled_au() -> None:
    n = 6
    target = np.zeros((n, 12), dtype=np.int8)
    prob = np.zeros((n, 12))
    target[:, 0] = [1, 1, 0, 0, -1, 1]
    prob[:, 0] = [0.9, 0.4, 0.6, 0.1, 0.99, 0.5]  # 0.5 is not above the threshold: inactive
    # AU1 on its 5 labeled frames: predicted [1, 0, 1, 0, 0] vs [1, 1, 0, 0, 1]: tp 1, fp 1, fn 2 -> P 1/2, R 1/3
    au1 = 2 * (1 / 2) * (1 / 3) / (1 / 2 + 1 / 3)
    target[:, 1] = [1, 1, 1, 0, 0, 0]
    prob[:, 1] = [0.8, 0.7, 0.6, 0.2, 0.3, 0.1]  # perfect
    # AUs 3..12: all labels 0 and nothing predicted: F1 0 (no positives), as scikit-learn with zero_division=0
    score = au_score(prob, target)
    assert score.per_au["AU1"] == pytest.approx(au1) and score.per_au["AU2"] == 1.0
    assert score.per_au["AU26"] == 0.0 and score.n_frames["AU1"] == 5 and score.n_frames["AU2"] == 6
    assert score.f1 == pytest.approx((au1 + 1.0) / 12) and au_f1(prob, target) == score.f1
    for j, name in enumerate(AU_NAMES):
        keep = target[:, j] >= 0
        assert score.per_au[name] == pytest.approx(
            f1_score(target[keep, j], (prob[keep, j] > 0.5).astype(int), zero_division=0))
    # an AU without a single label: its F1 and the official mean are undefined (NaN); the mean over the rest is kept
    target[:, 5] = -1
    score = au_score(prob, target)
    assert math.isnan(score.per_au["AU10"]) and math.isnan(score.f1) and score.n_frames["AU10"] == 0
    assert score.f1_labeled == pytest.approx((au1 + 1.0) / 11)
    # another threshold
    assert au_score(prob, target, threshold=0.45).per_au["AU1"] == pytest.approx(
        f1_score([1, 1, 0, 0, 1], [1, 0, 1, 0, 1]))


def test_au_errors() -> None:
    t = np.zeros((3, 12), dtype=np.int8)
    with pytest.raises(ValueError, match="-1, 0 or 1"):
        au_f1(np.zeros((3, 12)), t + 2)
    with pytest.raises(ValueError, match="no labeled frame"):
        au_f1(np.zeros((3, 12)), t - 1)
    with pytest.raises(ValueError, match="finite"):
        au_f1(np.full((3, 12), np.nan), t)
    with pytest.raises(ValueError, match=r"\[N, 12\]"):
        au_f1(np.zeros((3, 11)), t[:, :11])


# ------------------------------------------------------------------------------------------------------ baselines


def synthetic_clip(clip_id: str, classes: list[int], rng: np.random.Generator, invalid: int = 0) -> DenseClip:
    """Frames in segments of ``classes`` (20 each, then 5 unlabeled): a feature that separates the classes, valence
    a linear function of a feature, AU12 active in happiness frames; the first ``invalid`` frames have no face."""
    expr = np.concatenate([np.r_[np.full(20, c), np.full(5, -1)] for c in classes]).astype(np.int64)
    n = len(expr)
    x = rng.normal(0, 0.3, (n, 6)).astype(np.float32)
    x[np.arange(n), np.maximum(expr, 0)] += 3.0 * (expr >= 0)
    va = np.full((n, 2), np.nan, dtype=np.float32)
    va[expr >= 0, 0] = np.clip(x[expr >= 0, 5] / 2, -1, 1)
    va[expr >= 0, 1] = rng.uniform(-1, 1, int((expr >= 0).sum()))  # arousal: noise no feature predicts
    au = np.full((n, 12), -1, dtype=np.int8)
    au[expr >= 0] = 0
    au[expr == 4, AU_NAMES.index("AU12")] = 1
    valid = np.ones(n, dtype=bool)
    valid[:invalid] = False
    labels = FrameLabels(n, expr, va, au, np.arange(n, dtype=np.int64))
    return DenseClip(clip_id, labels, {"face": x}, {"face": valid})


def test_baselines_prior_by_hand_probe_learns_fallback_counted() -> None:
    rng = np.random.default_rng(0)
    train = [synthetic_clip("t1", [0, 4, 4], rng, invalid=3), synthetic_clip("t2", [5, 0, 4], rng)]
    val = [synthetic_clip("v1", [4, 5], rng, invalid=4), synthetic_clip("v2", [0, 0, 5], rng)]
    out = dense_baselines(train, val)
    assert set(out) == {"EXPR", "VA", "AU"}
    # EXPR majority: happiness (60 training frames); on val 20 of 100 labeled frames are happiness -> P 0.2, R 1
    maj = out["EXPR"]["majority"]
    assert maj.score.f1 == pytest.approx(2 * 0.2 / 1.2 / 8) and maj.n_train == 120 and maj.n_fallback == 0
    probe = out["EXPR"]["probe"]
    assert probe.n_train == 117 and probe.n_fallback == 4  # t1's 3 faceless frames out; v1's 4 predicted by the prior
    assert probe.score.per_class["neutral"] > 0.95 and probe.score.per_class["sadness"] > 0.9
    assert probe.score.f1 > 0.35 > maj.score.f1  # 3 of 8 classes present: 3/8 is the ceiling
    # VA: the training mean is a constant -> CCC 0 exactly
    mean = out["VA"]["mean"].score
    assert mean.valence == 0.0 and mean.arousal == 0.0 and mean.ccc == 0.0 and mean.n_frames == (100, 100)
    assert out["VA"]["probe"].score.valence > 0.9
    # AU: every AU's majority is "inactive" -> F1 0 everywhere; the probe finds AU12 in happiness frames
    assert out["AU"]["majority"].score.f1 == 0.0
    # ... except on v1's 4 faceless frames (happiness, AU12 on), where it falls back to the prior: tp 16, fn 4
    assert out["AU"]["probe"].score.per_au["AU12"] == pytest.approx(2 * 16 / (2 * 16 + 4))
    assert out["AU"]["probe"].n_fallback == 4
    # subsampling: at most max_train_frames rows, the same ones for one seed
    capped = dense_baselines(train, val, tasks=["EXPR"], max_train_frames=50, seed=1)
    assert set(capped) == {"EXPR"} and capped["EXPR"]["probe"].n_train == 50
    assert capped["EXPR"]["probe"].score == dense_baselines(train, val, ["EXPR"], max_train_frames=50,
                                                            seed=1)["EXPR"]["probe"].score


def test_baselines_errors() -> None:
    rng = np.random.default_rng(0)
    clip = synthetic_clip("t", [0], rng)
    with pytest.raises(ValueError, match="training and evaluation clips"):
        dense_baselines([clip], [])
    with pytest.raises(ValueError, match="no features for modalities"):
        dense_baselines([clip], [clip], modalities=["audio"])
    bare = DenseClip("b", FrameLabels(clip.labels.n_frames, clip.labels.expr, None, None, None), clip.features,
                     clip.valid)
    with pytest.raises(ValueError, match=r"clips \['b'\] have no VA labels"):
        dense_baselines([clip], [bare], tasks=["VA"])
    with pytest.raises(ValueError, match="needs features"):
        DenseClip("x", clip.labels, {"face": clip.features["face"][:3]}, clip.valid)


def test_baselines_read_only_the_sampled_training_rows_and_one_evaluation_clip_at_a_time() -> None:
    """Memory stays bounded on Aff-Wild2-sized splits: the training features read are the sampled rows (never a
    whole split), evaluation clips are read one at a time, and the scores equal those of clips held in memory."""
    rng = np.random.default_rng(3)
    train = [synthetic_clip(f"t{i}", [0, 4, 1], rng) for i in range(6)]
    val = [synthetic_clip(f"v{i}", [4, 0], rng, invalid=3) for i in range(2)]

    class Counting:
        reads: list[int] = []

        def __init__(self, clip: DenseClip) -> None:
            self.clip, self.clip_id, self.labels = clip, clip.clip_id, clip.labels

        def frame_valid(self) -> dict[str, np.ndarray]:
            return self.clip.valid

        def frame_features(self, frames: np.ndarray) -> dict[str, np.ndarray]:
            Counting.reads.append(len(frames))
            return self.clip.frame_features(frames)

    out = dense_baselines([Counting(c) for c in train], [Counting(c) for c in val], ["EXPR"], max_train_frames=40,
                          seed=2)
    train_reads, eval_reads = Counting.reads[:-len(val)], Counting.reads[-len(val):]
    assert sum(train_reads) == 40  # the sampled rows only
    assert eval_reads == [int(c.valid["face"].sum()) for c in val]  # one clip at a time, its valid frames
    held = dense_baselines(train, val, ["EXPR"], max_train_frames=40, seed=2)
    assert out["EXPR"]["probe"].score == held["EXPR"]["probe"].score
