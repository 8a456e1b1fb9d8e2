"""The clip-statistics head: the linear probe inside the model (LP-FT start), exact where it must be.

- a probe-initialised model predicts exactly what the probe predicts (same logits) before any training step;
- the head's output does not depend on the length of a still video (a photo and 16 copies of it agree);
- it takes the probe fitted on the training split only;
- checkpoints from before the head load with a head that adds nothing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.feature_datamodule import FeatureDataModule
from datamodules.feature_store import ClipResult, ShardWriter, pack, store_path
from datamodules.sources import ManifestSource
from fer_zoo.training.lit_module import FERLitModule
from fer_zoo.training.model import ClipStatsHead
from fer_zoo.training.probe import clip_statistics, init_probe_for, probe_for

CLASSES = ("anger", "happiness", "sadness")
DIMS = {"face": 6, "body": 3}
GARBAGE = 1.0e4  # invalid frames hold it: it must never reach the statistics


def build(root: Path, mute: bool = False) -> Path:
    """A manifest (60 train, 15 val, 15 test clips, 3 classes) and two stores whose column means carry the class
    (noisily) and whose clips have 1 to 5 frames, one of them invalid when there are several."""
    rng = np.random.default_rng(0)
    rows, clips = [], []
    for split, n in (("train", 60), ("val", 15), ("test", 15)):
        for k in range(n):
            cid, y = f"{split}{k:02d}", k % 3
            rows.append(f"{cid}.mp4,{CLASSES[y]},{split}\n")
            clips.append((cid, y))
    csv = root / "manifest.csv"
    csv.write_text("path,label,split\n" + "".join(rows))
    for modality, dim in (DIMS | {"mute": 2} if mute else DIMS).items():
        path = store_path(root / "stores", modality, f"fake{modality}", "abcd1234")
        writer = ShardWriter(path, {"extractor": modality, "dim": dim}, flush_every=10_000)
        for i, (cid, y) in enumerate(clips):
            n = 1 + i % 5
            feats = (rng.standard_normal((n, dim)) + 0.8 * y * np.eye(dim)[y % dim] + 3.0).astype(np.float32)
            valid = np.full(n, modality != "mute")  # "mute": like the audio of photos, never a valid frame
            if n > 2:
                valid[1] = False
                feats[1] = GARBAGE
            writer.add(ClipResult(cid, feats, valid, np.arange(n), np.arange(n) / 25.0))
        writer.flush()
        pack(path, [c for c, _ in clips], {"dim": dim, "modality": modality, "extractor": f"fake{modality}",
                                           "source": {"name": "manifest", "num_clips": len(clips)}})
    return csv


@pytest.fixture(scope="module")
def dm(tmp_path_factory: pytest.TempPathFactory) -> FeatureDataModule:
    csv = build(tmp_path_factory.mktemp("stats_head"))
    # short_clips="pad": every stored frame once, so the model's clip statistics are the probe's exactly.
    return FeatureDataModule(source=ManifestSource(csv), store_root=str(csv.parent / "stores"),
                             modalities=list(DIMS), num_frames=8, batch_size=64, num_workers=0, short_clips="pad")


def lit_for(dm: FeatureDataModule, **kw: object) -> FERLitModule:
    torch.manual_seed(0)
    lit = FERLitModule(input_dims=dm.input_dims, num_classes=dm.num_classes, class_names=dm.class_names,
                       d_model=16, depth=1, heads=2, **kw)
    lit.prepare_from(dm)
    return lit.eval()


def test_a_probe_initialised_model_gives_the_probe_logits(dm: FeatureDataModule) -> None:
    probe = init_probe_for(dm).probe
    lit = lit_for(dm)
    ids = dm.split_ids["test"]
    x = probe.standardise(clip_statistics(dm.stores, ids))
    want = x @ probe.coef.T + probe.intercept
    batch = next(iter(dm.test_dataloader()))
    assert list(batch["clip_id"]) == list(ids)
    with torch.no_grad():
        got = lit(batch["features"], batch["valid"]).double().numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(got.argmax(axis=1), probe.predict(clip_statistics(dm.stores, ids)))
    assert len(set(got.argmax(axis=1))) > 1, "a constant prediction would make this test weak"


def test_without_probe_init_the_head_is_scaled_but_not_the_probe(dm: FeatureDataModule) -> None:
    probe = probe_for(dm)
    lit = lit_for(dm, probe_init=False)
    head = lit.model.stats_head
    keep = torch.as_tensor(probe.keep)
    mean = torch.cat([head.norm[m].mean for m in head.modalities])
    np.testing.assert_allclose(mean[keep].numpy(), probe.mean, rtol=1e-5)
    assert not np.allclose(head.linear.weight[:, keep].detach().numpy(), probe.coef, atol=1e-3)
    assert lit.model.head.weight.abs().sum() > 0  # the transformer head keeps its own initialisation


def test_the_probe_learns_from_training_and_validation_clips_never_test(dm: FeatureDataModule) -> None:
    """The probe is refitted on the training + validation clips it was cross-validated on (issue 28: a probe fitted
    on the training split alone, C chosen on a few dozen val clips, trailed a plain clip-mean regression)."""
    pool = clip_statistics(dm.stores, dm.split_ids["train"] + dm.split_ids["val"])
    probe = probe_for(dm)
    np.testing.assert_allclose(probe.mean, np.nanmean(pool, axis=0)[probe.keep], rtol=1e-9)
    for leaked_ids in (dm.split_ids["train"], dm.split_ids["train"] + dm.split_ids["val"] + dm.split_ids["test"]):
        leaked = clip_statistics(dm.stores, leaked_ids)
        assert not np.allclose(probe.mean, np.nanmean(leaked, axis=0)[probe.keep], rtol=1e-6)


def test_a_still_video_gets_the_head_output_of_its_photo() -> None:
    torch.manual_seed(0)
    head = ClipStatsHead({"face": 4}, 3).eval()
    photo = torch.randn(2, 1, 4)
    still = photo.expand(2, 16, 4).clone()
    with torch.no_grad():
        a = head({"face": photo}, {"face": torch.ones(2, 1, dtype=torch.bool)})
        b = head({"face": still}, {"face": torch.ones(2, 16, dtype=torch.bool)})
        padded = torch.cat([photo, torch.full((2, 15, 4), GARBAGE)], dim=1)
        c = head({"face": padded}, {"face": torch.arange(16)[None].expand(2, 16) < 1})
    torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(a, c, rtol=0, atol=1e-5)


def test_a_clip_without_valid_frames_gets_the_training_mean() -> None:
    head = ClipStatsHead({"face": 2}, 2)
    head.norm["face"].set(torch.tensor([1.0, 2.0, 0.5, 0.5]), torch.ones(4))
    z = head.statistics({"face": torch.full((1, 3, 2), float("nan"))}, {"face": torch.zeros(1, 3, dtype=torch.bool)})
    torch.testing.assert_close(z, torch.zeros(1, 4))


def test_a_checkpoint_from_before_the_head_loads_with_a_head_that_adds_nothing(dm: FeatureDataModule) -> None:
    lit = lit_for(dm, probe_init=False)
    state = {k: v for k, v in lit.state_dict().items() if ".stats_head." not in k}
    checkpoint = {"state_dict": state, "epoch": 3}
    fresh = lit_for(dm)
    fresh.on_load_checkpoint(checkpoint)
    fresh.load_state_dict(checkpoint["state_dict"])
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        assert fresh.model.stats_head(batch["features"], batch["valid"]).abs().max() == 0


def test_the_probe_head_stays_fixed_unless_asked(dm: FeatureDataModule) -> None:
    frozen, trained = lit_for(dm), lit_for(dm, freeze_stats_head=False)
    assert not any(p.requires_grad for p in frozen.model.stats_head.parameters())
    assert all(p.requires_grad for p in trained.model.stats_head.parameters())
    assert all(p.requires_grad for p in lit_for(dm, probe_init=False).model.stats_head.parameters())


def test_a_fused_head_starts_from_the_stacked_probes(dm: FeatureDataModule) -> None:
    """Several modalities: the head starts from the per-modality probes stacked by a combiner fitted on
    out-of-fold logits over train+val (never test); the cross-validated UAR of the stack and of plain sums is
    recorded; the model computes exactly the stacked probe."""
    init = init_probe_for(dm)
    assert init.chosen == "stack"
    assert set(init.cv_uar_by_candidate) == {"stack", "experts:face+body", "experts:face", "experts:body"}
    assert all(0.0 <= v <= 1.0 for v in init.cv_uar_by_candidate.values())
    assert init.folds == 5
    lit = lit_for(dm)
    assert lit.stats_head_init["chosen"] == "stack"
    ids = dm.split_ids["test"]
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        got = lit(batch["features"], batch["valid"]).double().numpy()
    np.testing.assert_allclose(got, init.probe.decision(clip_statistics(dm.stores, ids)), rtol=1e-4, atol=1e-4)


def test_the_choice_never_sees_the_test_split(dm: FeatureDataModule, monkeypatch: pytest.MonkeyPatch) -> None:
    """Scramble the test clips' features: the chosen candidate and its CV figures stay the same."""
    import fer_zoo.training.probe as probe_mod

    before = init_probe_for(dm)
    test = set(dm.split_ids["test"])
    real = probe_mod.clip_statistics

    def scrambled(stores: dict, clip_ids: list) -> np.ndarray:
        x = real(stores, clip_ids)
        rows = [i for i, c in enumerate(clip_ids) if c in test]
        x[rows] = np.random.default_rng(3).standard_normal((len(rows), x.shape[1])) * 50
        return x

    monkeypatch.setattr(probe_mod, "clip_statistics", scrambled)
    monkeypatch.setattr(dm, "_fer_zoo_probe_cache", {})  # recompute everything, reading the stores again
    after = init_probe_for(dm)
    assert after.chosen == before.chosen and after.cv_uar_by_candidate == before.cv_uar_by_candidate
    np.testing.assert_array_equal(after.probe.coef, before.probe.coef)


def test_experts_over_one_modality_ignore_the_others(dm: FeatureDataModule) -> None:
    """The "experts:face" candidate must not look at the body columns: changing them changes no prediction."""
    from fer_zoo.training.probe import _blocks, _experts, fit_probe

    blocks = _blocks(dm)
    ids = dm.split_ids["train"]
    y = np.array([dm.labels[c] for c in ids])
    x = clip_statistics(dm.stores, ids)
    face = fit_probe(x[:, blocks["face"]], y, x[:, blocks["face"]], y, dm.num_classes)
    combined = _experts({"face": face}, blocks, x.shape[1])
    noisy = x.copy()
    noisy[:, blocks["body"]] = np.random.default_rng(1).standard_normal(noisy[:, blocks["body"]].shape) * 100
    np.testing.assert_array_equal(combined.predict(x), combined.predict(noisy))
    np.testing.assert_array_equal(combined.predict(x), face.predict(x[:, blocks["face"]]))


def test_the_stacked_probe_is_the_combiner_over_the_per_modality_logits(dm: FeatureDataModule) -> None:
    """"stack": a logistic regression on the per-modality probes' concatenated logits, folded into one linear map
    of the clip statistics; its logits equal combiner(probe logits) computed the long way, and a combiner that
    keeps only one modality's block gives exactly that modality's probe."""
    from fer_zoo.training.probe import _blocks, _stacked, fit_probe

    blocks = _blocks(dm)
    ids = dm.split_ids["train"]
    y = np.array([dm.labels[c] for c in ids])
    x = clip_statistics(dm.stores, ids)
    probes = {m: fit_probe(x[:, b], y, x[:, b], y, dm.num_classes) for m, b in blocks.items()}
    rng = np.random.default_rng(5)
    k = dm.num_classes
    mix, bias = rng.standard_normal((k, 2 * k)), rng.standard_normal(k)
    z = np.concatenate([probes[m].decision(x[:, blocks[m]]) for m in blocks], axis=1)
    stacked = _stacked(probes, blocks, x.shape[1], mix, bias)
    np.testing.assert_allclose(stacked.decision(x), z @ mix.T + bias, rtol=1e-10, atol=1e-10)
    face_only = np.concatenate([np.eye(k), np.zeros((k, k))], axis=1)
    np.testing.assert_allclose(_stacked(probes, blocks, x.shape[1], face_only, np.zeros(k)).decision(x),
                               probes["face"].decision(x[:, blocks["face"]]), rtol=1e-10, atol=1e-10)


def test_a_modality_without_any_valid_frame_is_no_candidate(tmp_path: Path) -> None:
    """resnet + audio of photos: the audio columns never vary, so no per-modality probe exists for it; the fused
    head still starts from the probes of the others and gives finite logits (CI caught this one)."""
    csv = build(tmp_path, mute=True)
    dm3 = FeatureDataModule(source=ManifestSource(csv), store_root=str(tmp_path / "stores"),
                            modalities=[*DIMS, "mute"], num_frames=8, batch_size=64, num_workers=0)
    init = init_probe_for(dm3)
    assert not any("mute" in name for name in init.cv_uar_by_candidate)
    lit = lit_for(dm3)
    batch = next(iter(dm3.test_dataloader()))
    with torch.no_grad():
        assert torch.isfinite(lit(batch["features"], batch["valid"])).all()


def test_a_probe_that_cannot_be_fitted_switches_the_head_off(dm: FeatureDataModule,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import fer_zoo.training.probe as probe_mod

    def broken(_dm: object) -> None:
        raise ValueError("the linear probe needs >= 2 classes in the training split")

    monkeypatch.setattr(probe_mod, "init_probe_for", broken)
    with pytest.warns(UserWarning, match="switched off"):
        lit = lit_for(dm)
    assert "error" in lit.stats_head_init
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        assert lit.model.stats_head(batch["features"], batch["valid"]).abs().max() == 0
    assert lit.model.head.weight.abs().sum() > 0  # the transformer keeps its own head
