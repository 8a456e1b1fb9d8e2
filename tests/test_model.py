"""TemporalTransformer: shapes, learning, and above all that invalid/padded frames cannot influence the logits."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from fer_zoo.training.model import TemporalTransformer

FUSIONS = ["early", "tokens", "late"]
DIMS = {"resnet": 8, "pose": 5}


def tiny(fusion: str, **kw) -> TemporalTransformer:
    torch.manual_seed(0)
    args = dict(d_model=16, depth=2, heads=2, ff_mult=2, dropout=0.0, fusion=fusion, max_frames=16) | kw
    return TemporalTransformer(DIMS, num_classes=3, **args)


def batch(b: int = 4, t: int = 10, seed: int = 0) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Random features with varied lengths (padding) and random missed detections per modality."""
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(1, t + 1, (b,), generator=g)
    lengths[0] = t
    in_clip = torch.arange(t)[None] < lengths[:, None]
    feats = {m: torch.randn(b, t, d, generator=g) for m, d in DIMS.items()}
    valid = {m: in_clip & (torch.rand(b, t, generator=g) > 0.3) for m in DIMS}
    return feats, valid


def with_garbage(feats: dict[str, Tensor], valid: dict[str, Tensor], value: float | None) -> dict[str, Tensor]:
    """Copy of ``feats`` whose invalid positions hold ``value`` (None: fresh random numbers)."""
    out = {}
    for m, x in feats.items():
        fill = torch.randn_like(x) * 100 if value is None else torch.full_like(x, value)
        out[m] = torch.where(valid[m][..., None], x, fill)
    return out


@pytest.mark.parametrize("fusion", FUSIONS)
def test_shape_and_finite(fusion: str) -> None:
    model = tiny(fusion)
    feats, valid = batch()
    logits = model(feats, valid)
    assert logits.shape == (4, 3)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("fusion", FUSIONS)
def test_a_few_steps_reduce_the_loss(fusion: str) -> None:
    """Class is written into the mean of the resnet features: linearly separable after temporal pooling."""
    torch.manual_seed(1)
    model = tiny(fusion, depth=1)
    labels = torch.arange(24) % 3
    feats, valid = batch(b=24, t=6, seed=1)
    feats["resnet"][:, :, :3] += 3.0 * torch.nn.functional.one_hot(labels, 3)[:, None, :].float()
    valid["resnet"][:, 0] = True  # every clip has at least one frame carrying the signal
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(20):
        loss = torch.nn.functional.cross_entropy(model(feats, valid), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


@pytest.mark.parametrize("fusion", FUSIONS)
@pytest.mark.parametrize("value", [None, 1e30, float("inf"), float("nan")])
def test_invalid_positions_do_not_change_the_output(fusion: str, value: float | None) -> None:
    model = tiny(fusion).eval()
    feats, valid = batch()
    ref = model(feats, valid)
    out = model(with_garbage(feats, valid, value), valid)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-6)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_padded_clip_equals_unpadded_clip(fusion: str) -> None:
    """Guards the attention mask itself, not just the zero-fill: padded tokens exist but must be ignored."""
    model = tiny(fusion).eval()
    feats, valid = batch(b=1, t=5)
    valid = {m: torch.ones_like(v) for m, v in valid.items()}
    padded_feats = {m: torch.cat([x, x[:, -1:].expand(-1, 7, -1)], dim=1) for m, x in feats.items()}
    padded_valid = {m: torch.cat([v, torch.zeros(1, 7, dtype=torch.bool)], dim=1) for m, v in valid.items()}
    torch.testing.assert_close(model(padded_feats, padded_valid), model(feats, valid), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("fusion", FUSIONS)
def test_modality_invalid_in_one_sample_equals_missing_modality(fusion: str) -> None:
    model = tiny(fusion).eval()
    feats, valid = batch()
    valid["pose"][1] = False
    feats_garbage = with_garbage(feats, valid, 1e6)
    both = model(feats_garbage, valid)
    resnet_only = model({"resnet": feats["resnet"]}, {"resnet": valid["resnet"]})
    torch.testing.assert_close(both[1], resnet_only[1], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(both[0], resnet_only[0]), "pose should still matter where it is valid"


@pytest.mark.parametrize("fusion", FUSIONS)
def test_clip_without_valid_frames_gives_finite_logits(fusion: str) -> None:
    model = tiny(fusion, modality_dropout=0.5)
    feats, valid = batch()
    valid = {m: v.clone() for m, v in valid.items()}
    for v in valid.values():
        v[2] = False
    feats = with_garbage(feats, valid, float("nan"))
    for mode in (True, False):
        model.train(mode)
        assert torch.isfinite(model(feats, valid)).all()


def test_modality_dropout_keeps_a_present_modality_and_is_off_in_eval() -> None:
    torch.manual_seed(0)
    model = TemporalTransformer({"a": 2, "b": 2, "c": 2}, 3, d_model=8, heads=2, modality_dropout=0.9)
    b, t = 4000, 3
    valid = {m: torch.rand(b, t) > 0.4 for m in "abc"}
    valid["c"][: b // 2] = False  # half the samples lack a stream entirely
    present = torch.stack([v.any(1) for v in valid.values()], 1)

    model.train()
    dropped = model.drop_modalities(valid)
    kept = torch.stack([v.any(1) for v in dropped.values()], 1)
    assert (kept <= present).all(), "dropout may only remove frames, never add them"
    assert kept.any(1)[present.any(1)].all(), "a sample lost all of its modalities"
    for m in "abc":
        assert ((dropped[m] == valid[m]) | ~dropped[m].any(1, keepdim=True)).all(), "drops whole streams only"
    frac_dropped = 1 - kept.sum() / present.sum()
    assert 0.5 < frac_dropped < 0.9, frac_dropped

    model.eval()
    same = model.drop_modalities(valid)
    assert all(torch.equal(same[m], valid[m]) for m in "abc")
    feats = {m: torch.randn(8, t, 2) for m in "abc"}
    small = {m: v[:8] for m, v in valid.items()}
    assert torch.equal(model(feats, small), model(feats, small))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"fusion": "middle"}, r"'middle'.*early, tokens, late"),
        ({"modality_dropout": 1.0}, "modality_dropout"),
        ({"d_model": 10, "heads": 4}, "divisible"),
        ({"input_dims": {}}, "input_dims"),
        ({"input_dims": {"a.b": 3}}, "'a.b'"),
    ],
)
def test_bad_constructor_arguments(kwargs: dict, match: str) -> None:
    args = {"input_dims": DIMS, "num_classes": 3, "d_model": 16, "heads": 2} | kwargs
    with pytest.raises(ValueError, match=match):
        TemporalTransformer(**args)


def test_bad_forward_arguments_name_the_modality_and_sizes() -> None:
    model = tiny("early")
    feats, valid = batch(t=8)
    with pytest.raises(ValueError, match=r"'audio'.*not in input_dims"):
        model(feats | {"audio": torch.zeros(4, 8, 3)}, valid | {"audio": torch.ones(4, 8, dtype=torch.bool)})
    with pytest.raises(ValueError, match=r"'pose'.*width 7.*= 5"):
        model(feats | {"pose": torch.zeros(4, 8, 7)}, valid)
    long_feats = {m: torch.zeros(4, 17, d) for m, d in DIMS.items()}
    long_valid = {m: torch.ones(4, 17, dtype=torch.bool) for m in DIMS}
    with pytest.raises(ValueError, match=r"'resnet'.*17 frames > max_frames = 16"):
        model(long_feats, long_valid)
    with pytest.raises(ValueError, match=r"'pose'.*no validity mask"):
        model(feats, {"resnet": valid["resnet"]})
    with pytest.raises(ValueError, match=r"'pose'.*valid has shape \(4, 7\)"):
        model(feats, valid | {"pose": valid["pose"][:, :7]})
