"""The linear-probe and majority baselines: metrics equal a hand-computed case; clip statistics over valid frames;
the ablation summary shows them beside the model and concludes with the right numbers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.feature_store import ClipResult, FeatureStore, ShardWriter, pack, store_path
from fer_zoo.ablation.report import conclusion, markdown, summary_table
from fer_zoo.training.probe import (
    clip_statistics,
    fit_probe,
    floor_std_scales,
    linear_probe,
    majority_baseline,
    scores,
)


def test_scores_match_a_hand_computed_case() -> None:
    # true:  0 0 0 1 1 2      pred: 0 0 1 1 0 1
    # recall: class 0 2/3, class 1 1/2, class 2 0/1 -> UAR (2/3 + 1/2 + 0) / 3 = 7/18; WAR 3/6
    # precision: class 0 2/3, class 1 1/3, class 2 0 -> F1: 0: 2/3, 1: 2*(1/3*1/2)/(1/3+1/2) = 0.4, 2: 0
    m = scores(np.array([0, 0, 1, 1, 0, 1]), np.array([0, 0, 0, 1, 1, 2]), 3)
    assert m["test/uar"] == pytest.approx(7 / 18)
    assert m["test/war"] == pytest.approx(0.5)
    assert m["test/f1"] == pytest.approx((2 / 3 + 0.4 + 0) / 3)


def test_probe_and_majority_on_a_tiny_fixture() -> None:
    """1-d data symmetric about 0 (so intercept 0 and the boundary at 0 for any C); the last test clip is class 1
    but lies on class 0's side."""
    x_train = np.array([[-3.0], [-2.0], [-1.0], [-2.5], [1.0], [2.0], [3.0], [2.5]])
    y_train = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    x_val, y_val = np.array([[-1.5], [1.5]]), np.array([0, 1])
    x_test, y_test = np.array([[-2.0], [2.5], [0.8], [-0.9]]), np.array([0, 1, 1, 1])
    res = linear_probe(x_train, y_train, x_val, y_val, x_test, y_test, 2, cs=(0.01, 1.0, 100.0))
    # predictions 0, 1, 1, 0 -> recall class 0: 1/1, class 1: 2/3 -> UAR 5/6; WAR 3/4
    assert res.confusion == [[1, 0], [1, 2]]
    assert res.metrics["test/uar"] == pytest.approx(5 / 6)
    assert res.metrics["test/war"] == pytest.approx(0.75)
    assert res.metrics["test/f1"] == pytest.approx((2 / 3 + 0.8) / 2)  # F1 class 0: 2*1*0.5/1.5; class 1: 0.8
    assert res.details["C"] == 0.01  # every C gets val UAR 1: ties go to the strongest regularisation
    maj = majority_baseline(np.array([1, 0, 0, 0, 1]), y_test, 2, ["a", "b"])
    assert maj.details["class"] == "a"  # 3 of 5 training clips
    assert maj.metrics["test/uar"] == pytest.approx(0.5)  # recall 1 for a, 0 for b
    assert maj.metrics["test/war"] == pytest.approx(0.25)
    assert maj.confusion == [[1, 0], [3, 0]]


def test_probe_chooses_C_on_validation() -> None:
    """Noisy high-dimensional data: the chosen C is the one with the best validation UAR, never judged on test."""
    rng = np.random.default_rng(0)
    w = rng.standard_normal(40)

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        x = rng.standard_normal((n, 40))
        return x, (x @ w + 2.0 * rng.standard_normal(n) > 0).astype(np.int64)

    (xt, yt), (xv, yv), (xs, ys) = draw(60), draw(40), draw(40)
    res = linear_probe(xt, yt, xv, yv, xs, ys, 2)
    by_c = {float(k): v for k, v in res.details["val_uar_by_C"].items()}
    assert res.details["val_uar"] == max(by_c.values())
    assert res.details["C"] == min(c for c, v in by_c.items() if v == max(by_c.values()))


def _photos_and_videos(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One modality, D = 2: 40 photos (stds 0) and 4 videos (small stds), mean columns spread ~1."""
    means = rng.standard_normal((44, 2))
    stds = np.zeros((44, 2))
    stds[40:] = rng.uniform(0.05, 0.15, (4, 2))
    return np.concatenate([means, stds], axis=1), np.arange(44) % 2


def test_std_scales_are_floored_at_their_mean_column_where_photos_and_videos_mix() -> None:
    rng = np.random.default_rng(0)
    x, _ = _photos_and_videos(rng)
    keep = np.ones(4, bool)
    scale = x.std(axis=0)
    floored = floor_std_scales(x, keep, scale, [2])
    np.testing.assert_array_equal(floored[:2], scale[:2])  # mean columns untouched
    np.testing.assert_array_equal(floored[2:], scale[:2])  # the stds' spread (~0.04) is below the means' (~1)
    assert (scale[2:] < 0.1).all()
    videos = x[40:]  # only videos: every clip has a std, nothing to floor
    np.testing.assert_array_equal(floor_std_scales(videos, keep, videos.std(axis=0), [2]), videos.std(axis=0))
    photos = x[:40]  # only photos: their std columns are constant, so not kept, and nothing is floored
    np.testing.assert_array_equal(floor_std_scales(photos, np.array([True, True, False, False]), scale[:2], [2]),
                                  scale[:2])
    with pytest.raises(ValueError, match="do not cover"):
        floor_std_scales(x, keep, scale, [3])


def test_a_few_videos_among_photos_cannot_be_told_apart_by_their_std_columns() -> None:
    """Labels follow the mean columns; each video's label is the opposite of its means' side. Without the floor,
    the videos' tiny stds standardise to large values and the probe fits them through the std columns."""
    rng = np.random.default_rng(1)
    x, _ = _photos_and_videos(rng)
    y = (x[:, 0] > 0).astype(np.int64)
    y[40:] = 1 - y[40:]
    plain = fit_probe(x, y, x, y, 2, cs=(1.0,))
    floored = fit_probe(x, y, x, y, 2, cs=(1.0,), block_dims=[2])
    assert np.abs(plain.coef[:, 2:]).max() > 3 * np.abs(floored.coef[:, 2:]).max()
    np.testing.assert_array_equal(floored.scale[2:], floored.scale[:2])


def test_clip_statistics_use_valid_frames_only(tmp_path: Path) -> None:
    path = store_path(tmp_path, "face", "fakeface", "abcd1234")
    writer = ShardWriter(path, {"extractor": "face", "dim": 2}, flush_every=10)
    f = np.array([[1.0, 10.0], [3.0, 30.0], [1e4, -1e4]], np.float32)
    writer.add(ClipResult("a", f, np.array([True, True, False]), np.arange(3), np.arange(3) / 25.0))
    writer.add(ClipResult("b", np.zeros((2, 2), np.float32), np.zeros(2, bool), np.arange(2), np.arange(2) / 25.0))
    writer.flush()
    pack(path, ["a", "b"], {"dim": 2, "modality": "face", "extractor": "fakeface", "source": {"name": "fake"}})
    x = clip_statistics({"face": FeatureStore(path)}, ["a", "b"])
    np.testing.assert_allclose(x[0], [2.0, 20.0, 1.0, 10.0])  # mean, then std (ddof 0) of the 2 valid frames
    assert np.isnan(x[1]).all()  # no valid frame: imputed later with the training mean


def _cells(model: dict[str, list[float]], probe: dict[str, list[float]]) -> pd.DataFrame:
    rows = []
    for label, uars in model.items():
        for seed, (u, p) in enumerate(zip(uars, probe[label])):
            rows.append({"modalities": label, "status": "done", "uar": u, "war": u + 0.1, "seed": seed,
                         "probe_uar": p, "probe_war": p + 0.1, "majority_uar": 0.125, "majority_war": 0.3})
    return pd.DataFrame(rows)


def test_summary_shows_model_probe_majority_and_concludes() -> None:
    cells = _cells({"resnet": [0.50, 0.52], "facemesh": [0.40, 0.44], "facemesh+resnet": [0.56, 0.58]},
                   {"resnet": [0.49, 0.51], "facemesh": [0.47, 0.49], "facemesh+resnet": [0.53, 0.55]})
    table = summary_table(cells).set_index("modalities")
    assert table.loc["facemesh", "probe_uar_mean"] == pytest.approx(0.48)
    assert table.loc["facemesh", "uar_gain_vs_probe"] == pytest.approx(-0.06)
    assert table.loc["resnet", "majority_uar_mean"] == pytest.approx(0.125)
    text = conclusion(table.reset_index())
    assert "Best: `facemesh+resnet`" in text
    assert "+6.0 points over the best single modality `resnet`" in text
    assert "+3.0 points over its own linear probe" in text
    assert "1 set(s) score below their linear probe, most `facemesh` (-6.0 points)" in text
    assert "smaller than the spread" not in text  # std 1.4 points < every gap here
    md = markdown(summary_table(cells), {"name": "t", "dataset": "d", "folds": [0], "seeds": [0, 1], "base": [],
                                         "overrides": []})
    assert "| – | majority class | 2 | 12.5 ± 0.0 |" in md and "probe UAR %" in md


def test_conclusion_warns_when_the_spread_exceeds_the_gap() -> None:
    cells = _cells({"resnet": [0.40, 0.60], "facemesh+resnet": [0.45, 0.63]},
                   {"resnet": [0.50, 0.50], "facemesh+resnet": [0.52, 0.54]})
    text = conclusion(summary_table(cells))
    assert "Best: `facemesh+resnet`" in text and "+4.0 points over the best single modality" in text
    assert "**Warning:**" in text and "smaller than the spread over folds x seeds (14.1 points)" in text


def _clips(rng: np.random.Generator, n: int, signal: str) -> tuple[np.ndarray, np.ndarray]:
    """Clip statistics of one modality, D = 20 (20 means then 20 stds), 3 classes. ``signal``: which block tells
    the classes apart (``mean``: column 0-2 means; ``std``: column 0-2 stds); the other block is noise."""
    y = np.arange(n) % 3
    means = rng.standard_normal((n, 20))
    stds = rng.uniform(0.5, 1.5, (n, 20))
    if signal == "mean":
        means[np.arange(n), y] += 1.5
    else:
        stds[np.arange(n), y] += 1.0
    return np.concatenate([means, stds], axis=1), y


@pytest.mark.parametrize("signal, stats", [("mean", "mean"), ("std", "mean+std")])
def test_select_probe_keeps_the_std_columns_only_where_they_help(signal: str, stats: str) -> None:
    from fer_zoo.training.probe import cv_folds, select_probe

    rng = np.random.default_rng(0)
    x, y = _clips(rng, 150, signal)
    ids = [str(i) for i in range(len(y))]
    sel = select_probe(x, y, 3, cv_folds(ids, y, {}), block_dims=[20])
    assert sel.stats == stats
    assert sel.cv_uar[sel.stats][str(sel.C)] == max(max(v.values()) for v in sel.cv_uar.values())
    std_weights = np.abs(sel.probe.coef[:, sel.probe.keep[:20].sum():]).sum()
    assert (std_weights == 0) == (stats == "mean")  # a clip-mean probe has no std column at all
    x_test, y_test = _clips(rng, 300, signal)
    assert scores(sel.probe.predict(x_test), y_test, 3)["test/uar"] > 0.6  # chance is 1/3


def test_select_probe_out_of_fold_logits_come_from_fits_without_the_clip_and_the_final_fit_uses_all() -> None:
    """The probe averages the logits of every C within one standard error of the best cross-validated UAR: its
    out-of-fold logits are that average over fits that never saw the clip, its weights that average over fits on
    every row."""
    from fer_zoo.training.probe import cv_folds, select_probe, stats_columns

    rng = np.random.default_rng(1)
    x, y = _clips(rng, 90, "mean")
    folds = cv_folds([str(i) for i in range(len(y))], y, {})
    sel = select_probe(x, y, 3, folds, block_dims=[20], cs=(0.03, 0.1, 0.3, 1.0))
    cv = {float(c): u for c, u in sel.cv_uar[sel.stats].items()}
    assert sel.averaged == [c for c in sorted(cv) if cv[c] >= max(cv.values()) - sel.se]
    assert sel.C in sel.averaged and 0 < sel.se < 0.1
    cols = stats_columns([20], sel.stats)
    for tr, te in folds:  # each fold's logits: the mean over the averaged Cs of plain fits on the other folds
        z = np.mean([fit_probe(x[tr], y[tr], x[:0], y[:0], 3, cs=(c,), block_dims=[20], columns=cols)
                     .decision(x[te]) for c in sel.averaged], axis=0)
        # the same optimum up to L-BFGS's stopping tolerance (the selection's fit is warm-started from a smaller C)
        np.testing.assert_allclose(sel.oof[te], z, rtol=0, atol=0.05)
        assert np.abs(z).max() > 2  # logits of that scale: the tolerance is not vacuous
    full = [fit_probe(x, y, x[:0], y[:0], 3, cs=(c,), block_dims=[20], columns=cols) for c in sel.averaged]
    np.testing.assert_allclose(sel.probe.coef, np.mean([f.coef for f in full], axis=0))
    np.testing.assert_allclose(sel.probe.mean, x[:, cols].mean(axis=0))


def test_cv_folds_keep_each_subject_in_one_fold() -> None:
    from fer_zoo.training.probe import cv_folds

    ids = [f"c{i}" for i in range(60)]
    y = np.arange(60) % 3
    subjects = {c: f"s{i // 4}" for i, c in enumerate(ids)}  # 15 people, 4 clips each
    folds = cv_folds(ids, y, subjects)
    assert len(folds) == 5
    for _, te in folds:
        inside = {subjects[ids[i]] for i in te}
        outside = {subjects[ids[i]] for i in set(range(60)) - set(te.tolist())}
        assert not inside & outside


def test_fewer_clips_than_columns_fit_in_the_row_space_to_the_same_optimum() -> None:
    """An L2 logistic regression's weights lie in the span of its rows: fitting on the row-space coordinates
    (fast when clips are fewer than columns) must give the weights and logits of a fit on all columns."""
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(3)
    x = rng.standard_normal((30, 200))
    y = np.arange(30) % 3
    x[np.arange(30), y] += 2.0
    probe = fit_probe(x, y, x[:0], y[:0], 3, cs=(0.1,))
    direct = LogisticRegression(C=0.1, max_iter=5000, tol=1e-10).fit((x - x.mean(0)) / x.std(0), y)
    np.testing.assert_allclose(probe.coef, direct.coef_, atol=2e-3)
    np.testing.assert_allclose(probe.intercept, direct.intercept_, atol=2e-3)


def test_on_many_clips_the_candidates_are_searched_on_a_subset_and_the_choice_fitted_on_all() -> None:
    from fer_zoo.training.probe import cv_folds, search_subset, select_probe

    rng = np.random.default_rng(2)
    x, y = _clips(rng, 150, "mean")
    ids = [str(i) for i in range(len(y))]
    assert search_subset(ids, y, {}, limit=150) is None  # small enough: search on every clip
    rows, sub_folds = search_subset(ids, y, {}, limit=60)
    assert len(rows) == 60 and np.bincount(y[rows]).tolist() == [20, 20, 20]  # stratified
    assert sorted(np.concatenate([te for _, te in sub_folds]).tolist()) == list(range(60))  # folds of the subset
    sel = select_probe(x, y, 3, cv_folds(ids, y, {}), block_dims=[20], search=(rows, sub_folds))
    assert np.isfinite(sel.oof).all()  # the chosen candidate's out-of-fold logits cover every clip
    np.testing.assert_allclose(sel.probe.mean, x[:, :20].mean(axis=0) if sel.stats == "mean" else x.mean(axis=0))


def test_cv_folds_of_one_person_fall_back_to_plain_folds() -> None:
    """Own clips of one actor: folds cannot be whole persons; plain stratified folds instead of an error that
    switched the clip-statistics head off and failed the baselines (review finding)."""
    from fer_zoo.training.probe import cv_folds

    ids = [f"c{i}" for i in range(30)]
    y = np.arange(30) % 3
    folds = cv_folds(ids, y, {c: "anna" for c in ids})
    assert len(folds) == 5 and sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(30))


@pytest.mark.parametrize("args, needle", [(["--out"], "--out needs a file name"),
                                          (["--config", "configs/abaw_expr.yaml"], "is for the clip task")])
def test_probe_command_mistakes_are_one_line(args: list[str], needle: str, capsys: pytest.CaptureFixture[str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from fer_zoo.__main__ import main

    monkeypatch.chdir(Path(__file__).resolve().parents[1])
    assert main(["probe", *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
