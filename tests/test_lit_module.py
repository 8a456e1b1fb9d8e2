"""FERLitModule: a real (tiny, CPU) Trainer run on in-memory batches of the FeatureDataModule contract."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from lightning.pytorch.loggers import CSVLogger
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from fer_zoo.training.lit_module import FERLitModule, warmup_cosine

DIMS = {"resnet": 6, "pose": 4}
CLASSES = ["happy", "sad", "neutral"]
T = 8


class ToyClips(Dataset):
    """Separable toy clips: the class shifts the resnet features; short clips padded by repeating the last frame."""

    def __init__(self, n: int, seed: int, nan_at: int | None = None) -> None:
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.arange(n) % len(CLASSES)
        lengths = torch.randint(3, T + 1, (n,), generator=g)
        in_clip = torch.arange(T)[None] < lengths[:, None]
        self.valid = {m: in_clip.clone() for m in DIMS}
        self.valid["pose"] &= torch.rand(n, T, generator=g) > 0.3  # body not always found
        self.feats = {m: torch.randn(n, T, d, generator=g) for m, d in DIMS.items()}
        self.feats["resnet"][:, :, :3] += 2.0 * nn.functional.one_hot(self.labels, 3)[:, None].float()
        for m in DIMS:  # padding repeats the last real frame, as the real DataModule does
            last = self.feats[m][torch.arange(n), lengths - 1]
            self.feats[m] = torch.where(in_clip[..., None], self.feats[m], last[:, None])
        if nan_at is not None:
            self.feats["resnet"][nan_at, 0, 0] = float("nan")  # frame 0 is always valid

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> dict:
        return {
            "features": {m: x[i] for m, x in self.feats.items()},
            "valid": {m: v[i] for m, v in self.valid.items()},
            "label": self.labels[i],
            "clip_id": f"clip{i:03d}",
        }


def collate(items: list[dict]) -> dict:
    return {
        "features": {m: torch.stack([it["features"][m] for it in items]) for m in DIMS},
        "valid": {m: torch.stack([it["valid"][m] for it in items]) for m in DIMS},
        "label": torch.stack([it["label"] for it in items]).long(),
        "clip_id": [it["clip_id"] for it in items],
    }


class ToyData(L.LightningDataModule):
    def __init__(self, nan_at: int | None = None) -> None:
        super().__init__()
        self.train, self.val, self.test = ToyClips(24, 0, nan_at), ToyClips(12, 1), ToyClips(12, 2)

    def _loader(self, ds: Dataset, shuffle: bool = False) -> DataLoader:
        return DataLoader(ds, batch_size=8, shuffle=shuffle, collate_fn=collate)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test)


def tiny_module(**kw) -> FERLitModule:
    args = dict(d_model=16, depth=1, heads=2, dropout=0.0, max_frames=T, lr=3e-3, warmup_epochs=1) | kw
    return FERLitModule(DIMS, num_classes=3, class_names=CLASSES, **args)


def trainer(tmp_path: Path, **kw) -> L.Trainer:
    args = (
        dict(
            accelerator="cpu",
            max_epochs=2,
            logger=CSVLogger(tmp_path),
            enable_progress_bar=False,
            enable_model_summary=False,
            default_root_dir=tmp_path,
            log_every_n_steps=1,
        )
        | kw
    )
    return L.Trainer(**args)


def read_metrics_csv(trainer: L.Trainer) -> list[dict[str, str]]:
    with open(Path(trainer.logger.log_dir) / "metrics.csv") as f:
        return list(csv.DictReader(f))


def test_fit_validate_test_predict_log_everything(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module, data, tr = tiny_module(fusion="tokens", class_weights=[1.0, 2.0, 1.0]), ToyData(), trainer(tmp_path)
    tr.fit(module, datamodule=data)
    for key in ["train/loss", "val/loss", "val/uar", "val/war", "val/f1", *(f"val/recall/{c}" for c in CLASSES)]:
        assert key in tr.callback_metrics, key
        assert math.isfinite(float(tr.callback_metrics[key])), key
    assert module.last_confusion["val"].shape == (3, 3)
    assert module.last_confusion["val"].sum() == len(data.val)
    assert (Path(tr.log_dir) / "confusion_val.png").is_file()
    groups = tr.optimizers[0].param_groups
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert groups[0]["lr"] == pytest.approx(0.0, abs=1e-9), "cosine should reach 0 at the last step"

    results = tr.test(module, datamodule=data)
    for key in ["test/uar", "test/war", "test/f1", "test/loss", *(f"test/recall/{c}" for c in CLASSES)]:
        assert key in results[0], key
    assert module.last_confusion["test"].sum() == len(data.test)
    png = Path(tr.log_dir) / "confusion_test.png"
    assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    rows = read_metrics_csv(tr)
    columns = set(rows[0])
    for key in [
        "train/loss",
        "train/uar",
        "val/loss",
        "val/uar",
        "val/war",
        "val/f1",
        "val/recall/sad",
        "test/uar",
        "test/war",
        "test/f1",
        "test/recall/happy",
    ]:
        assert key in columns, key
    val_uar = [float(r["val/uar"]) for r in rows if r["val/uar"]]
    assert len(val_uar) == 2  # one per epoch; the sanity check must not log
    assert all(0.0 <= u <= 1.0 for u in val_uar)

    preds = tr.predict(module, datamodule=data)
    probs = torch.cat([p["probs"] for p in preds])
    assert probs.shape == (12, 3)
    torch.testing.assert_close(probs.sum(1), torch.ones(12))
    assert [c for p in preds for c in p["clip_id"]] == [f"clip{i:03d}" for i in range(12)]


def test_nan_features_stop_the_run_without_a_checkpoint(tmp_path: Path) -> None:
    tr = trainer(tmp_path, num_sanity_val_steps=0)
    with pytest.raises(RuntimeError, match=r"NaN.*step \d+.*no garbage checkpoint"):
        tr.fit(tiny_module(), datamodule=ToyData(nan_at=5))
    assert not list(tmp_path.rglob("*.ckpt"))


class LogitsFromFeatures(nn.Module):
    """Stand-in model: returns the logits stored in the first frame, to drive the real steps with known outputs."""

    def forward(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        return features["resnet"][:, 0, :3]


TARGETS = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2])
PREDS = torch.tensor([0, 1, 0, 1, 1, 2, 0, 2, 1])


def hand_metrics() -> tuple[list[float], float, float, np.ndarray]:
    cm = np.zeros((3, 3), dtype=np.int64)
    for t, p in zip(TARGETS.tolist(), PREDS.tolist()):
        cm[t, p] += 1
    recalls = [cm[c, c] / cm[c].sum() for c in range(3)]  # 2/3, 2/2, 2/4
    return recalls, sum(recalls) / 3, float(np.trace(cm) / cm.sum()), cm


def test_metric_objects_match_hand_computed_uar_war() -> None:
    module = tiny_module()
    logits = nn.functional.one_hot(PREDS, 3).float() * 5.0
    module.val_metrics.update(logits, TARGETS)
    module.val_class_recall.update(logits, TARGETS)
    out = module.val_metrics.compute()
    recalls, uar, war, _ = hand_metrics()
    assert float(out["val/uar"]) == pytest.approx(uar)
    assert float(out["val/war"]) == pytest.approx(war)
    torch.testing.assert_close(module.val_class_recall.compute(), torch.tensor(recalls, dtype=torch.float32))


def test_validation_step_wiring_with_known_logits(tmp_path: Path) -> None:
    """Known logits through validation_step: logged UAR/WAR/recall and the kept confusion match the hand values."""
    module = tiny_module()
    module.model = LogitsFromFeatures()
    n = len(TARGETS)
    feats = torch.zeros(n, T, DIMS["resnet"])
    feats[:, 0, :3] = nn.functional.one_hot(PREDS, 3).float() * 5.0
    items = [
        {
            "features": {"resnet": feats[i], "pose": torch.zeros(T, DIMS["pose"])},
            "valid": {m: torch.ones(T, dtype=torch.bool) for m in DIMS},
            "label": TARGETS[i],
            "clip_id": str(i),
        }
        for i in range(n)
    ]
    tr = trainer(tmp_path)
    tr.validate(module, DataLoader(items, batch_size=4, collate_fn=collate))
    recalls, uar, war, cm = hand_metrics()
    assert float(tr.callback_metrics["val/uar"]) == pytest.approx(uar)
    assert float(tr.callback_metrics["val/war"]) == pytest.approx(war)
    for name, r in zip(CLASSES, recalls):
        assert float(tr.callback_metrics[f"val/recall/{name}"]) == pytest.approx(r)
    np.testing.assert_array_equal(module.last_confusion["val"], cm)


def test_warmup_then_cosine_to_zero() -> None:
    factors = [warmup_cosine(s, warmup_steps=4, total_steps=20) for s in range(21)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[4:], factors[5:]))
    assert factors[20] == pytest.approx(0.0)


def test_bad_lit_arguments() -> None:
    with pytest.raises(ValueError, match="class_names has 2 names"):
        FERLitModule(DIMS, num_classes=3, class_names=["a", "b"])
    with pytest.raises(ValueError, match="class_weights has 1 entries"):
        FERLitModule(DIMS, num_classes=3, class_weights=[1.0])
