"""Input standardisation: statistics from the training split's valid frames only, floored stds, and checkpoints that
carry the transform (``test``/``predict-video`` after reloading give the very logits of the trained module)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from datamodules.feature_datamodule import FeatureDataModule
from datamodules.feature_stats import STD_FLOOR_REL, column_stats
from datamodules.feature_store import ClipResult, FeatureStore, ShardWriter, pack, store_path
from datamodules.sources import ManifestSource
from fer_zoo.training.model import TemporalTransformer

CLASSES = ("anger", "happiness")
SPLITS = {"train": 12, "val": 4, "test": 4}
GARBAGE = 1.0e4  # what invalid frames hold: it must never reach the statistics


def _clips() -> list[tuple[str, str, int]]:
    """(clip_id, split, label) in a fixed order."""
    out, k = [], 0
    for split, n in SPLITS.items():
        for _ in range(n):
            out.append((f"{split}{k:02d}", split, k % 2))
            k += 1
    return out


def _frames(cid: str, split: str, dim: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Train clips: values around 1 (column j: 1 + j + noise); val/test clips: around 500, so a leak shows.
    Every clip has some invalid frames holding GARBAGE."""
    n = 3 + int(cid[-2:]) % 4
    base = (1.0 if split == "train" else 500.0) + np.arange(dim, dtype=np.float32)
    feats = (base + rng.standard_normal((n, dim))).astype(np.float32)
    valid = np.ones(n, dtype=bool)
    valid[n // 2] = False
    feats[~valid] = GARBAGE
    feats[:, -1] = 7.0  # a constant column: zero variance on the training split
    feats[~valid, -1] = GARBAGE
    return feats, valid


def build(root: Path, dim: int = 5) -> tuple[Path, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """A manifest CSV (``path,label,split``) and one "face" store over its clips; returns the CSV and the frames."""
    rng = np.random.default_rng(0)
    clips = _clips()
    csv = root / "manifest.csv"
    csv.write_text("path,label,split\n" + "".join(f"{cid}.mp4,{CLASSES[y]},{s}\n" for cid, s, y in clips))
    path = store_path(root / "stores", "face", "fakeface", "abcd1234")
    writer = ShardWriter(path, {"extractor": "face", "dim": dim}, flush_every=10_000)
    data = {}
    for cid, split, _ in clips:
        f, v = _frames(cid, split, dim, rng)
        data[cid] = (f, v)
        writer.add(ClipResult(cid, f, v, np.arange(len(f)), np.arange(len(f)) / 25.0))
    writer.flush()
    pack(path, [c for c, _, _ in clips], {"dim": dim, "modality": "face", "extractor": "fakeface",
                                          "source": {"name": "manifest", "num_clips": len(clips)}})
    return csv, data


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("std_stores")
    return build(root)


def make_dm(csv: Path, **kw: object) -> FeatureDataModule:
    return FeatureDataModule(source=ManifestSource(csv), store_root=str(csv.parent / "stores"), modalities=["face"],
                             num_frames=16, batch_size=8, num_workers=0, **kw)


def test_stats_come_from_valid_training_frames_only(fixture: tuple) -> None:
    csv, data = fixture
    dm = make_dm(csv)
    assert set(dm.split_ids["val"]) and set(dm.split_ids["test"])
    stats = dm.feature_stats()["face"]
    # By hand: stack the valid frames of the training clips (float16 as stored), float64 mean/std.
    train = [c for c, s, _ in _clips() if s == "train"]
    assert sorted(dm.split_ids["train"]) == sorted(train)
    rows = np.concatenate([data[c][0][data[c][1]].astype(np.float16).astype(np.float64) for c in train])
    assert stats.count == len(rows) == sum(int(data[c][1].sum()) for c in train)
    np.testing.assert_allclose(stats.mean, rows.mean(axis=0), rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(stats.std[:-1], rows.std(axis=0)[:-1], rtol=1e-9)
    # Val/test clips sit around 500 and invalid frames hold 1e4: either leaking would move the means far off.
    assert np.all(stats.mean[:-1] < 10.0)
    assert stats.mean[-1] == pytest.approx(7.0)


def test_a_leak_of_val_or_test_clips_would_change_the_stats(fixture: tuple) -> None:
    """The test above is sharp: the statistics over all clips differ grossly from the training-only ones."""
    csv, _ = fixture
    dm = make_dm(csv)
    store = next(iter(dm.stores.values()))
    everything = column_stats(store, [c for s in ("train", "val", "test") for c in dm.split_ids[s]])
    assert np.all(np.abs(everything.mean[:-1] - dm.feature_stats()["face"].mean[:-1]) > 50.0)


def test_padded_slots_do_not_enter_the_stats(fixture: tuple) -> None:
    """Clips of 3-6 frames are padded to num_frames=16 when sampled (short_clips "pad"; "stretch" repeats them, which
    must not count either); the stats count each stored valid frame once."""
    csv, data = fixture
    dm = make_dm(csv, short_clips="pad")
    batch = dm.dataset("train")[0]
    assert (~batch["valid"]["face"]).sum() >= 10  # padding exists in what the model sees ...
    n_valid = sum(int(data[c][1].sum()) for c in dm.split_ids["train"])
    assert dm.feature_stats()["face"].count == n_valid  # ... but not in the statistics
    assert make_dm(csv, short_clips="stretch").feature_stats()["face"].count == n_valid  # nor repeated frames


def test_zero_variance_columns_get_a_floored_std(fixture: tuple) -> None:
    csv, _ = fixture
    stats = make_dm(csv).feature_stats()["face"]
    assert stats.floored == 1  # the constant column, and only it
    assert stats.std[-1] == pytest.approx(STD_FLOOR_REL * float(np.median(np.r_[stats.std[:-1], 0.0])))
    assert np.isfinite(stats.std).all() and stats.std[-1] > 0
    model = TemporalTransformer({"face": len(stats.std)}, 2, d_model=16, heads=2)
    model.set_input_stats({"face": stats.as_float32()})
    x = torch.full((1, 2, len(stats.std)), 1.0)
    x[..., -1] = 7.5  # a small shift of the constant column stays a bounded input
    z = model.input_stats["face"](x)
    assert torch.isfinite(z).all() and z[..., -1].abs().max() < 1e3


def test_invalid_frames_with_garbage_do_not_reach_the_model(fixture: tuple) -> None:
    csv, _ = fixture
    dm = make_dm(csv)
    model = TemporalTransformer({"face": 5}, 2, d_model=16, heads=2).eval()
    model.set_input_stats({"face": dm.feature_stats()["face"].as_float32()})
    x = torch.randn(2, 4, 5)
    v = torch.tensor([[True, True, False, False]] * 2)
    y = x.clone()
    y[~v] = float("inf")
    assert torch.equal(model({"face": x}, {"face": v}), model({"face": y}, {"face": v}))


def test_column_stats_refuse_a_split_without_valid_frames(tmp_path: Path) -> None:
    path = store_path(tmp_path, "face", "fakeface", "abcd1234")
    writer = ShardWriter(path, {"extractor": "face", "dim": 3}, flush_every=10)
    writer.add(ClipResult("a", np.zeros((2, 3), np.float32), np.zeros(2, bool), np.arange(2), np.arange(2) / 25.0))
    writer.flush()
    pack(path, ["a"], {"dim": 3, "modality": "face", "extractor": "fakeface", "source": {"name": "fake"}})
    with pytest.raises(ValueError, match="no valid frame"):
        column_stats(FeatureStore(path), ["a"])


# ---------------------------------------------------------------------------------- checkpoints carry the transform


@pytest.mark.slow
def test_reloaded_checkpoint_applies_the_saved_transform(fixture: tuple, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """fit -> checkpoint -> (a) FERLitModule.load_from_checkpoint, as `test` and `predict-video` load it, gives the
    same logits as the trained module; (b) its buffers are the training split's stats, not the identity."""
    import json

    import yaml

    from fer_zoo.training.cli import run_lightning_cli
    from fer_zoo.training.lit_module import FERLitModule
    from fer_zoo.video.run_info import load_model, resolve_run

    csv, _ = fixture
    monkeypatch.setenv("WANDB_MODE", "offline")
    src_file = tmp_path / "source.yaml"
    src_file.write_text(yaml.safe_dump({"data": {"source": {
        "class_path": "datamodules.sources.ManifestSource", "init_args": {"csv": str(csv)}}}}))
    cli = run_lightning_cli([
        "fit", "--config", str(src_file), f"--data.store_root={csv.parent / 'stores'}",
        "--data.modalities=[face]", "--data.num_frames=8", "--data.batch_size=8", "--data.num_workers=0",
        "--model.d_model=16", "--model.depth=1", "--model.heads=2", "--model.lr=0.01",
        # the transformer must be what is tested (not the start, its probe head, which ignores the input transform)
        "--model.probe_init=false",
        "--trainer.max_epochs=2", "--trainer.accelerator=cpu", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--wandb=false", f"--runs_dir={tmp_path / 'runs'}",
        "--run_name=std"])
    run_dir = tmp_path / "runs" / "std"
    results = json.loads((run_dir / "results.json").read_text())
    ckpt = results["checkpoint"]
    dm = cli.datamodule
    trained = cli.model.eval()
    want = dm.feature_stats()["face"]
    np.testing.assert_allclose(trained.model.input_stats["face"].mean.numpy(), want.mean, rtol=1e-6)
    reloaded = FERLitModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
    np.testing.assert_allclose(reloaded.model.input_stats["face"].std.numpy(), want.std, rtol=1e-6)
    batch = next(iter(dm.test_dataloader()))
    with torch.no_grad():
        a = trained(batch["features"], batch["valid"])
        b = reloaded(batch["features"], batch["valid"])
        video_model = load_model(resolve_run(run_dir))
        c = video_model(batch["features"], batch["valid"])
        identity = FERLitModule.load_from_checkpoint(ckpt, map_location="cpu").eval()
        identity.model.input_stats["face"].mean.zero_()
        identity.model.input_stats["face"].std.fill_(1.0)
        d = identity(batch["features"], batch["valid"])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert not torch.allclose(a, d, atol=1e-3), "the saved transform made no difference: the test proves nothing"
    assert "baselines" in results and "probe" in results["baselines"]

