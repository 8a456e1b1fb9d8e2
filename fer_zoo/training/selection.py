"""The "best" checkpoint policy: the best trained epoch against the model's start, by the one-standard-error rule.

With ``probe_init`` (the default) a run starts as its own linear probe: the clip-statistics head holds the probe's
weights and the transformer's output layer is zero, so the start's logits are the probe's (LP-FT; Kumar et al.,
ICLR 2022). Fine-tuning only adds a residual, and where the training clips cannot teach that residual anything the
probe does not already know (photos, 1-frame clips, hold nothing temporal), it is noise that costs robustness: on
faces-static (issue 16) the probe alone kept 97.1 % of its photo predictions on still videos of the photos, the
trained models 94.1 +- 1.0 % over 4 seeds, at no better test UAR (``benchmarks/README.md``). So the start is saved
as ``checkpoints/start.ckpt`` before the first step and is a candidate of the "best" policy.

The rule: the best epoch (ModelCheckpoint's, by logged ``val/uar``) is tested only when its val UAR beats the
start's by more than one standard error of that difference (:func:`bootstrap_se`: paired bootstrap over the val
clips); otherwise the start is. This is the one-standard-error rule (Breiman et al., "Classification and Regression
Trees", 1984; Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", 2nd ed., section 7.10): take
the simpler model unless the data show the other is better. The best epoch's val UAR is the maximum over all epochs,
hence optimistic; on faces-static one seed's best epoch beat the start by 1.4 points on 225 val photos (standard
error 2.4) and lost 2.4 on test. On video datasets, where the transformer learns what clip statistics cannot, its
margin over the probe is many standard errors and the rule keeps it.

Both candidates are scored here by the same code (fp32, every val clip once, the torchmetrics recall behind
``val/uar``), so neither precision nor sampler can decide between them. The start's val UAR is itself somewhat
optimistic: the probe's regularisation ``C`` is chosen on the same validation split (``fer_zoo.training.probe``).
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multiclass_recall

START_CHECKPOINT = "start.ckpt"
BOOTSTRAP = 1000  # resamples for the standard error of a val UAR difference
RULE = ("the best epoch if its val UAR beats the start's by more than one bootstrap standard error of the paired "
        "difference, else the start (the one-standard-error rule)")


class StartCheckpoint(L.Callback):
    """Saves ``<dirpath>/start.ckpt`` before the first optimiser step of a fit whose model starts as its probe
    (``FERLitModule.starts_as_probe``). A resumed fit (``ckpt_path`` given) keeps the start its first fit saved; a
    new fit whose model does not start as its probe removes a ``start.ckpt`` an earlier fit left in the folder, so
    no other model's start can be tested in its place."""

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / START_CHECKPOINT

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.ckpt_path is not None:
            return
        if getattr(pl_module, "starts_as_probe", False):
            trainer.save_checkpoint(self.path)  # every rank calls it (it holds a barrier); rank 0 writes
        elif trainer.is_global_zero:
            self.path.unlink(missing_ok=True)


def val_predictions(module: Any, datamodule: Any, checkpoint: str | Path) -> tuple[Tensor, Tensor]:
    """Predicted and true classes (``int64 [N]`` each, on the CPU) of ``datamodule``'s whole validation split, every
    clip once, by the model weights stored in ``checkpoint`` (a Lightning checkpoint of ``module``'s class), in fp32
    on ``module``'s device. ``module`` itself is left untouched. Raises ``FileNotFoundError`` for a missing file."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    net = copy.deepcopy(module.model)
    net.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    device = next(net.parameters()).device
    net.eval()
    loader = DataLoader(datamodule.dataset("val"), batch_size=datamodule.batch_size, shuffle=False, num_workers=0)
    preds, targets = [], []
    with torch.inference_mode():
        for batch in loader:
            features = {m: x.to(device) for m, x in batch["features"].items()}
            valid = {m: v.to(device) for m, v in batch["valid"].items()}
            preds.append(net(features, valid).float().argmax(dim=-1).cpu())
            targets.append(batch["label"])
    return torch.cat(preds), torch.cat(targets)


def uar(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Unweighted average recall (macro recall, a fraction), by the same torchmetrics code as ``val/uar``."""
    return float(multiclass_recall(pred, target, num_classes, average="macro"))


def val_uar(module: Any, datamodule: Any, checkpoint: str | Path) -> float:
    """UAR on the whole validation split of the weights in ``checkpoint`` (see :func:`val_predictions`)."""
    return uar(*val_predictions(module, datamodule, checkpoint), datamodule.num_classes)


def bootstrap_se(pred_a: Tensor, pred_b: Tensor, target: Tensor, num_classes: int, resamples: int = BOOTSTRAP,
                 seed: int = 0) -> float:
    """Standard error of ``uar(pred_b) - uar(pred_a)`` on the same clips: the standard deviation of that difference
    over ``resamples`` bootstrap resamples of the clips (drawn with replacement, the same draw for both; a fixed
    ``seed``, so the figure is reproducible). Paired, so what both models get right or wrong alike cancels."""
    g = torch.Generator().manual_seed(seed)
    n = len(target)
    diffs = []
    for _ in range(resamples):
        i = torch.randint(0, n, (n,), generator=g)
        diffs.append(uar(pred_b[i], target[i], num_classes) - uar(pred_a[i], target[i], num_classes))
    return float(torch.tensor(diffs).std())


@dataclass
class Selection:
    """What the "best" policy chose: ``chosen`` (``"start"`` or ``"best epoch"``), its ``checkpoint``, each
    candidate's checkpoint and val UAR (fractions), and ``se``: the bootstrap standard error of the difference of
    the two val UARs (``None`` without a start to compare)."""

    chosen: str
    checkpoint: str
    candidates: dict[str, dict[str, Any]]
    se: float | None = None
    rule: str = RULE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(best_checkpoint: str, start_checkpoint: str | None, module: Any, datamodule: Any) -> Selection:
    """The best epoch when its val UAR beats the start's by more than one standard error of the difference
    (:func:`bootstrap_se`), else the start. Without a start checkpoint the best epoch is chosen unscored."""
    if not start_checkpoint or not Path(start_checkpoint).is_file():
        return Selection("best epoch", best_checkpoint, {"best epoch": {"checkpoint": best_checkpoint}})
    k = datamodule.num_classes
    start_pred, target = val_predictions(module, datamodule, start_checkpoint)
    best_pred, _ = val_predictions(module, datamodule, best_checkpoint)
    scores = {"start": uar(start_pred, target, k), "best epoch": uar(best_pred, target, k)}
    se = bootstrap_se(start_pred, best_pred, target, k)
    chosen = "best epoch" if scores["best epoch"] - scores["start"] > se else "start"
    paths = {"start": start_checkpoint, "best epoch": best_checkpoint}
    return Selection(chosen, paths[chosen], {c: {"checkpoint": paths[c], "val/uar": scores[c]} for c in scores}, se)
