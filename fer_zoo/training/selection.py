"""The "best" checkpoint policy: the best trained epoch against the model's start, by the one-standard-error rule.

With ``probe_init`` (the default) a run starts as its own linear probe: the clip-statistics head holds the probe's
weights and the transformer's output layer is zero, so the start's logits are the probe's (LP-FT; Kumar et al.,
ICLR 2022). Fine-tuning only adds a residual, and where the training clips cannot teach that residual anything the
probe does not already know (photos, 1-frame clips, hold nothing temporal), it is noise that costs robustness: on
faces-static (issue 16) the probe alone kept 97.1 % of its photo predictions on still videos of the photos, the
trained models 94.1 +- 1.0 % over 4 seeds, at no better test UAR (``benchmarks/README.md``). So the start is saved
as ``checkpoints/start.ckpt`` before the first step and is a candidate of the "best" policy.

The rule (:func:`choose`): the best epoch (ModelCheckpoint's, by logged ``val/uar``) is tested only when its val UAR
beats the start's by more than one standard error of that difference (:func:`bootstrap_se`: paired bootstrap over
the val clips); otherwise the start is. This is the one-standard-error rule (Breiman et al., "Classification and
Regression Trees", 1984; Hastie, Tibshirani & Friedman, "The Elements of Statistical Learning", 2nd ed., section
7.10): take the simpler model unless the data show the other is better. The best epoch's val UAR is the maximum over
all epochs, hence optimistic: on faces-static one seed's best epoch beat the start by 1.3 points on 225 val photos
(standard error 2.3) and lost 2.4 on test.

Scoring is honest about the head: its regularisation ``C`` is chosen on val and, with several modalities, its
stacking combiner is fitted on out-of-fold logits over train + val, so the head's own val logits are partly
in-sample (faces-static: 49.2 val UAR in sample, 44.7 out of fold). Both candidates are therefore scored with the
head's logits replaced by the out-of-fold ones of the procedure that fitted it (``ProbeInit.oof_logits``), their
transformer residual kept; both figures are recorded. Both candidates are scored by the same code (fp32, every val
clip once, the torchmetrics recall behind ``val/uar``), rank 0 decides and every rank tests its choice.

Limits: the bootstrap resamples clips, so where several val clips share a video or a person it understates the
standard error (in favour of the best epoch). On video datasets, where the transformer can learn what clip
statistics miss, the rule is expected to keep it; that is not measured here (no labeled video set on this machine).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from torch import Tensor
from torch.utils.data import DataLoader
from torchmetrics.functional.classification import multiclass_recall

START_CHECKPOINT = "start.ckpt"
SELECTION_FILE = "selection.json"  # in checkpoints/: the choice, read by predict-video when fit wrote no results.json
BOOTSTRAP = 1000  # resamples for the standard error of a val UAR difference
RULE = ("the best epoch if its val UAR beats the start's by more than one bootstrap standard error of the paired "
        "difference, else the start (the one-standard-error rule)")


class StartCheckpoint(L.Callback):
    """Saves ``<dirpath>/start.ckpt`` before the first optimiser step of a fit whose model starts as its probe
    (``FERLitModule.starts_as_probe``). A fit resumed from a checkpoint of this folder keeps the start its first fit
    saved. Any other fit removes a ``start.ckpt`` it does not write itself (left by an earlier fit in the folder,
    or a resume from another run's checkpoint), so no other model's start can be tested in its place."""

    def __init__(self, dirpath: str | Path) -> None:
        self.path = Path(dirpath) / START_CHECKPOINT

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:  # an earlier fit's choice is not this one's
            (self.path.parent / SELECTION_FILE).unlink(missing_ok=True)
        if trainer.ckpt_path is not None:
            if Path(trainer.ckpt_path).resolve().parent != self.path.parent.resolve() and trainer.is_global_zero:
                self.path.unlink(missing_ok=True)
            return
        if getattr(pl_module, "starts_as_probe", False):
            trainer.save_checkpoint(self.path)  # every rank calls it (it holds a barrier); rank 0 writes
        elif trainer.is_global_zero:
            self.path.unlink(missing_ok=True)


def val_predictions(module: Any, datamodule: Any, checkpoint: str | Path,
                    head_logits: Mapping[str, Tensor] | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """Predicted classes of ``datamodule``'s whole validation split (every clip once) by the model weights stored in
    ``checkpoint`` (a Lightning checkpoint of ``module``'s class), in fp32 on ``module``'s device; ``module`` itself
    is left untouched. Returns ``(pred, pred_honest, target)``, ``int64 [N]`` each, on the CPU: ``pred`` is the
    model's own; ``pred_honest`` the same logits with the clip-statistics head's replaced by ``head_logits[clip id]``
    (``[num_classes]``; the transformer's residual is kept), or ``pred`` again without ``head_logits``.
    Raises ``FileNotFoundError`` for a missing checkpoint, ``KeyError`` naming a val clip ``head_logits`` lacks."""
    checkpoint = Path(checkpoint)
    if not checkpoint.is_file():
        raise FileNotFoundError(f"checkpoint {checkpoint} does not exist")
    state = torch.load(checkpoint, map_location="cpu", weights_only=True)["state_dict"]
    net = copy.deepcopy(module.model)
    net.load_state_dict({k.removeprefix("model."): v for k, v in state.items() if k.startswith("model.")})
    device = next(net.parameters()).device
    net.eval()
    loader = DataLoader(datamodule.dataset("val"), batch_size=datamodule.batch_size, shuffle=False, num_workers=0)
    preds, honest, targets = [], [], []
    with torch.inference_mode():
        for batch in loader:
            features = {m: x.to(device) for m, x in batch["features"].items()}
            valid = {m: v.to(device) for m, v in batch["valid"].items()}
            logits = net(features, valid).float().cpu()
            preds.append(logits.argmax(dim=-1))
            if head_logits is not None:
                missing = [c for c in batch["clip_id"] if c not in head_logits]
                if missing:
                    raise KeyError(f"no out-of-fold head logits for val clip {missing[0]!r}")
                own = net.stats_head({m: features[m] for m in valid}, valid).float().cpu()
                logits = logits - own + torch.stack([torch.as_tensor(head_logits[c]).float() for c in batch["clip_id"]])
            honest.append(logits.argmax(dim=-1))
            targets.append(batch["label"])
    return torch.cat(preds), torch.cat(honest), torch.cat(targets)


def uar(pred: Tensor, target: Tensor, num_classes: int) -> float:
    """Unweighted average recall (macro recall, a fraction), by the same torchmetrics code as ``val/uar``."""
    return float(multiclass_recall(pred, target, num_classes, average="macro"))


def val_uar(module: Any, datamodule: Any, checkpoint: str | Path) -> float:
    """UAR on the whole validation split of the weights in ``checkpoint`` as the model computes it (the figure the
    training loop logs as ``val/uar``; see :func:`val_predictions`)."""
    pred, _, target = val_predictions(module, datamodule, checkpoint)
    return uar(pred, target, datamodule.num_classes)


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
    """What the "best" policy chose: ``chosen`` (``"start"`` or ``"best epoch"``), its ``checkpoint``, and per
    candidate its checkpoint, ``val/uar`` (the score the rule used: the start's head logits out of fold, see
    :func:`choose`) and ``val/uar_in_sample`` (the model's own val UAR, what ``val/uar`` logged); ``se``: the
    bootstrap standard error of the difference of the two scores (``None`` without a start to compare)."""

    chosen: str
    checkpoint: str
    candidates: dict[str, dict[str, Any]]
    se: float | None = None
    rule: str = RULE

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def choose(best_checkpoint: str, start_checkpoint: str | None, module: Any, datamodule: Any,
           head_logits: Mapping[str, Tensor] | None = None) -> Selection:
    """The best epoch when its val UAR beats the start's by more than one standard error of the difference
    (:func:`bootstrap_se`), else the start. Without a start checkpoint the best epoch is chosen unscored.

    ``head_logits`` (clip id -> ``[num_classes]``; ``ProbeInit.oof_logits`` in ``fit``): out-of-fold logits of the
    procedure that fitted the clip-statistics head, used in place of the head's own logits on every val clip, for
    both candidates alike. The head's regularisation and, with several modalities, its stacking combiner are fitted
    with the val labels, so its own val logits are partly in-sample (on faces-static: 49.2 val UAR in sample, 44.7
    out of fold); what the candidates differ in, the transformer's residual, is scored against an honest head."""
    if not start_checkpoint or not Path(start_checkpoint).is_file():
        return Selection("best epoch", best_checkpoint, {"best epoch": {"checkpoint": best_checkpoint}})
    k = datamodule.num_classes
    paths = {"start": start_checkpoint, "best epoch": best_checkpoint}
    preds = {c: val_predictions(module, datamodule, p, head_logits) for c, p in paths.items()}
    target = preds["start"][2]
    scores = {c: uar(pr[1], target, k) for c, pr in preds.items()}
    se = bootstrap_se(preds["start"][1], preds["best epoch"][1], target, k)
    chosen = "best epoch" if scores["best epoch"] - scores["start"] > se else "start"
    return Selection(chosen, paths[chosen], {c: {"checkpoint": paths[c], "val/uar": scores[c],
                                                 "val/uar_in_sample": uar(preds[c][0], target, k)} for c in paths}, se)
