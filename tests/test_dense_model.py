"""The dense transformer, its losses and whole-clip evaluation (window averaging, ABAW metrics), on fixed tensors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fer_zoo.dense.lit_module import DenseLitModule, ccc_loss
from fer_zoo.dense.metrics import au_score, ccc, expr_score, va_score
from fer_zoo.dense.model import DenseTransformer


def inputs(b: int = 2, t: int = 8, seed: int = 0) -> tuple[dict, dict]:
    g = torch.Generator().manual_seed(seed)
    feats = {"face": torch.randn(b, t, 6, generator=g), "voice": torch.randn(b, t, 3, generator=g)}
    valid = {"face": torch.rand(b, t, generator=g) > 0.3, "voice": torch.rand(b, t, generator=g) > 0.5}
    return feats, valid


@pytest.mark.parametrize("fusion", ["early", "tokens"])
def test_one_output_per_frame_and_task_va_in_range(fusion: str) -> None:
    torch.manual_seed(0)
    net = DenseTransformer({"face": 6, "voice": 3}, ["EXPR", "VA", "AU"], d_model=16, depth=1, heads=2,
                           fusion=fusion, max_frames=8).eval()
    feats, valid = inputs()
    valid["face"][0] = False
    valid["voice"][0] = False  # a window without any valid frame still gives finite outputs
    out = net(feats, valid)
    assert out["EXPR"].shape == (2, 8, 8) and out["VA"].shape == (2, 8, 2) and out["AU"].shape == (2, 8, 12)
    assert all(torch.isfinite(o).all() for o in out.values())
    assert (out["VA"].abs() <= 1).all()


@pytest.mark.parametrize("fusion", ["early", "tokens"])
def test_invalid_frames_are_masked_keys_but_get_outputs(fusion: str) -> None:
    """Garbage at invalid frames changes nothing at the valid frames; the invalid frames still get an output."""
    torch.manual_seed(0)
    net = DenseTransformer({"face": 6, "voice": 3}, ["EXPR"], d_model=16, depth=2, heads=2, fusion=fusion,
                           max_frames=8).eval()
    feats, valid = inputs()
    garbage = {m: torch.where(valid[m][..., None], x, torch.full_like(x, 1e6)) for m, x in feats.items()}
    a, b = net(feats, valid)["EXPR"], net(garbage, valid)["EXPR"]
    torch.testing.assert_close(a, b)
    # and changing an invalid frame's features to other finite values changes nothing either
    other = {m: torch.where(valid[m][..., None], x, -x) for m, x in feats.items()}
    torch.testing.assert_close(a, net(other, valid)["EXPR"])


def test_model_errors() -> None:
    with pytest.raises(ValueError, match="dense fusion must be one of"):
        DenseTransformer({"face": 6}, ["EXPR"], fusion="late")
    with pytest.raises(ValueError, match="tasks must be distinct names"):
        DenseTransformer({"face": 6}, ["EXPR", "FOO"])
    net = DenseTransformer({"face": 6}, ["EXPR"], max_frames=4, d_model=16, heads=2)
    with pytest.raises(ValueError, match="5 frames > max_frames = 4"):
        net({"face": torch.zeros(1, 5, 6)}, {"face": torch.ones(1, 5, dtype=torch.bool)})


# ----------------------------------------------------------------------------------------------------------- losses


def test_ccc_loss_is_one_minus_lins_ccc_over_labeled_frames() -> None:
    g = np.random.default_rng(0)
    p, t = g.uniform(-1, 1, 50), g.uniform(-1, 1, 50)
    t[[3, 7]] = np.nan
    got = ccc_loss(torch.tensor(p), torch.tensor(t))
    assert float(got) == pytest.approx(1 - ccc(p, t), abs=1e-6)
    assert ccc_loss(torch.tensor([0.1, 0.2]), torch.tensor([0.5, np.nan])) is None  # 1 labeled frame


def test_losses_ignore_unlabeled_frames_and_weigh_tasks() -> None:
    lit = DenseLitModule({"face": 6}, ["EXPR", "VA", "AU"], window=8, task_weights={"AU": 0.5}, d_model=16,
                         heads=2, depth=1)
    g = torch.Generator().manual_seed(0)
    preds = {"EXPR": torch.randn(2, 8, 8, generator=g), "VA": torch.rand(2, 8, 2, generator=g) * 2 - 1,
             "AU": torch.randn(2, 8, 12, generator=g)}
    y_expr = torch.randint(0, 8, (2, 8), generator=g)
    y_expr[0, :3] = -1
    y_va = torch.rand(2, 8, 2, generator=g) * 2 - 1
    y_va[1, 2:, 0] = float("nan")
    y_au = torch.randint(0, 2, (2, 8, 12), generator=g)
    y_au[:, 5] = -1
    parts = lit.losses(preds, {"EXPR": y_expr, "VA": y_va, "AU": y_au})
    keep = y_expr >= 0
    assert float(parts["EXPR"]) == pytest.approx(float(torch.nn.functional.cross_entropy(preds["EXPR"][keep],
                                                                                         y_expr[keep])))
    v = 1 - ccc(preds["VA"][..., 0].reshape(-1).numpy(), y_va[..., 0].reshape(-1).numpy())
    a = 1 - ccc(preds["VA"][..., 1].reshape(-1).numpy(), y_va[..., 1].reshape(-1).numpy())
    assert float(parts["VA"]) == pytest.approx((v + a) / 2, abs=1e-5)
    keep = y_au >= 0
    assert float(parts["AU"]) == pytest.approx(float(torch.nn.functional.binary_cross_entropy_with_logits(
        preds["AU"][keep], y_au[keep].float())))
    none = lit.losses(preds, {"EXPR": torch.full((2, 8), -1), "VA": torch.full((2, 8, 2), float("nan")),
                              "AU": torch.full((2, 8, 12), -1)})
    assert all(float(x) == 0.0 for x in none.values())
    assert lit.task_weights == {"EXPR": 1.0, "VA": 1.0, "AU": 0.5}
    with pytest.raises(ValueError, match="task_weights must give"):
        DenseLitModule({"face": 6}, ["EXPR"], task_weights={"VA": 1.0})


def test_expr_class_weights_enter_the_cross_entropy() -> None:
    w = [0.5, 2, 1, 1, 1, 1, 1, 1]
    lit = DenseLitModule({"face": 6}, ["EXPR"], expr_class_weights=w, d_model=16, heads=2, depth=1)
    logits = torch.randn(1, 4, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([[0, 1, 1, -1]])
    got = lit.losses({"EXPR": logits}, {"EXPR": y})["EXPR"]
    ref = torch.nn.functional.cross_entropy(logits[0, :3], y[0, :3], weight=torch.tensor(w))
    assert float(got) == pytest.approx(float(ref))


# -------------------------------------------------------------------------------------------------- whole clips


def test_a_frames_answer_is_the_mean_of_the_windows_covering_it() -> None:
    torch.manual_seed(0)
    lit = DenseLitModule({"face": 6}, ["EXPR", "VA", "AU"], window=16, d_model=16, heads=2, depth=1,
                         eval_windows=3).eval()
    g = torch.Generator().manual_seed(2)
    n = 40
    feats, valid = {"face": torch.randn(n, 6, generator=g)}, {"face": torch.rand(n, generator=g) > 0.2}
    got = lit.predict_clip(feats, valid)
    # windows of 16 every 8 frames: (0,15), (8,23), (16,31), (24,39)
    outs = {}
    with torch.no_grad():
        for s in (0, 8, 16, 24):
            o = lit.model({"face": feats["face"][None, s:s + 16]}, {"face": valid["face"][None, s:s + 16]})
            outs[s] = {"EXPR": o["EXPR"][0].softmax(-1), "VA": o["VA"][0], "AU": o["AU"][0].sigmoid()}
    for task in ("EXPR", "VA", "AU"):
        assert got[task].shape == (n, {"EXPR": 8, "VA": 2, "AU": 12}[task])
        np.testing.assert_allclose(got[task][3], outs[0][task][3].numpy(), rtol=1e-5, atol=1e-6)  # one window
        mean = (outs[0][task][10] + outs[8][task][2]) / 2  # frame 10: windows 0 and 8
        np.testing.assert_allclose(got[task][10], mean.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(got[task][39], outs[24][task][15].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got["EXPR"].sum(axis=1), 1.0, rtol=1e-6)
    short = lit.predict_clip({"face": feats["face"][:5]}, {"face": valid["face"][:5]})  # shorter than a window
    with torch.no_grad():
        o = lit.model({"face": feats["face"][None, :5]}, {"face": valid["face"][None, :5]})
    np.testing.assert_allclose(short["VA"], o["VA"][0].numpy(), rtol=1e-5, atol=1e-6)


def test_validation_scores_every_labeled_frame_with_the_abaw_metrics() -> None:
    torch.manual_seed(0)
    lit = DenseLitModule({"face": 6}, ["EXPR", "VA", "AU"], window=8, d_model=16, heads=2, depth=1).eval()
    g = torch.Generator().manual_seed(3)
    clips, preds = [], []
    for n in (20, 13):
        feats = {"face": torch.randn(1, n, 6, generator=g)}
        valid = {"face": torch.rand(1, n, generator=g) > 0.3}
        y = {"EXPR": torch.randint(-1, 8, (1, n), generator=g), "VA": torch.rand(1, n, 2, generator=g) * 2 - 1,
             "AU": torch.randint(-1, 2, (1, n, 12), generator=g)}
        y["VA"][0, :3, 1] = float("nan")
        clips.append({"features": feats, "valid": valid, "targets": y, "clip_id": [f"c{n}"]})
        preds.append(lit.predict_clip({"face": feats["face"][0]}, {"face": valid["face"][0]}))
    stand_in = {**clips[0], "counted": torch.tensor([False])}
    for batch in (*clips, stand_in):  # the stand-in is never scored
        lit._eval_step(batch, "val")
    scores = lit.scores(lit._gathered("val"))
    y_expr = np.concatenate([c["targets"]["EXPR"][0].numpy() for c in clips])
    p_expr = np.concatenate([p["EXPR"].argmax(1) for p in preds])
    ref = expr_score(p_expr, y_expr)
    assert scores["EXPR"]["expr_f1"] == pytest.approx(ref.f1) and scores["EXPR"]["n_frames"] == ref.n_frames
    va = va_score(np.concatenate([p["VA"] for p in preds]),
                  np.concatenate([c["targets"]["VA"][0].numpy() for c in clips]))
    assert scores["VA"]["va_ccc"] == pytest.approx(va.ccc, abs=1e-6)
    assert scores["VA"]["arousal_ccc"] == pytest.approx(va.arousal, abs=1e-6)
    au_y = np.concatenate([c["targets"]["AU"][0].numpy() for c in clips])
    au_p = np.concatenate([p["AU"] for p in preds])
    keep = (au_y >= 0).any(axis=1)
    au = au_score(au_p[keep], au_y[keep])
    assert scores["AU"]["au_f1"] == pytest.approx(au.f1) and scores["AU"]["au_f1_labeled"] == pytest.approx(
        au.f1_labeled)
    assert sum(scores["AU"]["n_frames"].values()) == int((au_y >= 0).sum())
