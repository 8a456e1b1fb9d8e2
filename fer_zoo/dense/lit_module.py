"""LightningModule around :class:`~fer_zoo.dense.model.DenseTransformer`: per-frame losses, whole-video evaluation.

Training batches are windows (:class:`datamodules.dense_datamodule.DenseWindows`); the loss is a weighted sum over the
configured tasks (``task_weights``, default 1 each) of:

- ``EXPR``: cross-entropy over the frames with a label (``-1`` masked), optional class weights and label smoothing
  (``torch.nn.functional.cross_entropy``, mean over the labeled frames, weighted as torch weighs it);
- ``VA``: ``1 - CCC`` (Lin's concordance correlation coefficient, population moments, as the ABAW metric) of valence
  and of arousal, each over the batch's frames with that label, the two averaged (a column with fewer than 2 labeled
  frames in the batch is left out); the CCC loss of the ABAW VA entries (e.g. Kollias & Zafeiriou, "Expression,
  Affect, Action Unit Recognition: Aff-Wild2, Multi-Task Learning and ArcFace", BMVC 2019, section 4);
- ``AU``: binary cross-entropy with logits over the (frame, AU) pairs with a label.

Evaluation batches are whole clips (batch size 1). A clip is cut into windows of ``window`` frames every
``window // 2`` frames (:func:`datamodules.windows.plan_windows`, the plan predict-video uses), run in batches of
``eval_windows``, and each frame's answer is the mean over the windows that cover it
(:class:`fer_zoo.perframe.average.OverlapAverager`) of: class probabilities (softmax) for EXPR, values for VA, and
activation probabilities (sigmoid) for AUs. Every labeled frame is then scored, those without a face included (as
ABAW scores every annotated frame), with ABAW's metrics (:mod:`fer_zoo.dense.metrics`): the EXPR class is the
argmax of the averaged probabilities, an AU is active where its averaged probability exceeds 0.5.

The per-frame predictions and targets are gathered with ``torchmetrics.CatMetric`` (DDP-safe: each rank scores
whole clips, the states are concatenated over ranks before the metrics are computed), because ABAW's macro F1
(absent classes count 0) and Lin's CCC differ from torchmetrics' defaults. Logged per split (``val``, ``test``):
``<split>/expr_f1``, ``<split>/va_ccc``, ``<split>/valence_ccc``, ``<split>/arousal_ccc``, ``<split>/au_f1``
(official: NaN when an AU has no labeled frame in the split), ``<split>/au_f1_labeled`` (over the AUs that have
labels) and ``<split>/score``, the mean over the configured tasks of expr_f1, va_ccc and au_f1_labeled: the checkpoint
monitor. Items marked ``counted=False`` (a DDP rank's stand-in) run but are never scored.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torchmetrics import MetricCollection
from torchmetrics.aggregation import CatMetric

from datamodules.frame_labels import AU_NAMES
from datamodules.windows import plan_windows
from fer_zoo.dense.metrics import EXPR_CLASSES, au_score, expr_score, va_score
from fer_zoo.dense.model import TASK_WIDTH, DenseTransformer
from fer_zoo.perframe.average import OverlapAverager
from fer_zoo.training.lit_module import warmup_cosine

#: The metric each task contributes to ``<split>/score``.
MAIN_METRIC = {"EXPR": "expr_f1", "VA": "va_ccc", "AU": "au_f1_labeled"}


def ccc_loss(pred: Tensor, target: Tensor) -> Tensor | None:
    """``1 - CCC`` of float ``pred`` ``[N]`` against ``target`` ``[N]`` (``NaN`` = no label), population moments, over
    the labeled entries; ``None`` with fewer than 2 of them."""
    keep = ~torch.isnan(target)
    if int(keep.sum()) < 2:
        return None
    p, t = pred[keep].float(), target[keep].float()
    mp, mt = p.mean(), t.mean()
    cov = ((p - mp) * (t - mt)).mean()
    denom = p.var(unbiased=False) + t.var(unbiased=False) + (mp - mt) ** 2
    return 1.0 - 2.0 * cov / denom.clamp(min=1e-8)


class DenseLitModule(L.LightningModule):
    """Train and evaluate the dense transformer on :class:`~datamodules.dense_datamodule.DenseDataModule` batches.

    ``tasks``, ``input_dims``, ``class_names``, ``expr_class_weights`` and ``window`` come from the DataModule (the
    CLI links them); ``window`` is the training window and the evaluation window (the model's ``max_frames``).
    ``task_weights``: task -> weight of its loss in the sum (default 1 each). ``eval_windows``: windows per forward
    when evaluating a whole clip. AdamW (no decay on biases, norms, embeddings) with step-wise linear warmup over
    ``warmup_epochs`` and cosine decay to 0 (:func:`fer_zoo.training.lit_module.warmup_cosine`).
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        tasks: list[str] | None = None,
        class_names: list[str] | None = None,
        expr_class_weights: list[float] | None = None,
        window: int = 32,
        task_weights: dict[str, float] | None = None,
        d_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        fusion: str = "early",
        modality_dropout: float = 0.0,
        lr: float = 3e-4,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1,
        label_smoothing: float = 0.0,
        standardize: bool = True,
        input_norm: bool = True,
        input_dropout: float = 0.0,
        eval_windows: int = 64,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        tasks = ["EXPR"] if tasks is None else list(tasks)
        if class_names is not None and list(class_names) != list(EXPR_CLASSES):
            raise ValueError(f"class_names must be ABAW's {list(EXPR_CLASSES)} (abaw_expr order), got {class_names}")
        if expr_class_weights is not None and len(expr_class_weights) != len(EXPR_CLASSES):
            raise ValueError(f"expr_class_weights has {len(expr_class_weights)} entries, not {len(EXPR_CLASSES)}")
        weights = {t: 1.0 for t in tasks} | dict(task_weights or {})
        unknown = sorted(set(weights) - set(tasks))
        if unknown or any(not (math.isfinite(w) and w >= 0) for w in weights.values()):
            raise ValueError(f"task_weights must give finite weights >= 0 to tasks among {tasks}, got {task_weights}")
        if warmup_epochs < 0 or eval_windows < 1 or window < 1:
            raise ValueError(f"warmup_epochs must be >= 0, eval_windows and window >= 1; got {warmup_epochs}, "
                             f"{eval_windows}, {window}")
        self.tasks = tasks
        self.task_weights = weights
        self.class_names = list(EXPR_CLASSES)
        self.au_names = list(AU_NAMES)
        self.model = DenseTransformer(input_dims, tasks, d_model=d_model, depth=depth, heads=heads, dropout=dropout,
                                      fusion=fusion, modality_dropout=modality_dropout, max_frames=window,
                                      input_norm=input_norm, input_dropout=input_dropout)
        cw = None if expr_class_weights is None else torch.tensor(expr_class_weights, dtype=torch.float32)
        self.register_buffer("expr_class_weights", cw, persistent=False)
        # Per-frame predictions / targets of the scored frames, flattened (1-D states gather evenly over ranks).
        self.gathered = torch.nn.ModuleDict({
            split: MetricCollection({name: CatMetric(nan_strategy="disable") for name in self._state_names()},
                                    compute_groups=False)
            for split in ("val", "test")})
        self.last_scores: dict[str, dict[str, Any]] = {}
        self.checkpoint_epoch: int | None = None

    #: The model starts from random weights: no start checkpoint competes with the best epoch.
    starts_as_probe = False

    def _state_names(self) -> list[str]:
        names = {"EXPR": ["expr_pred", "expr_true"], "VA": ["va_pred", "va_true"], "AU": ["au_prob", "au_true"]}
        return [n for t in self.tasks for n in names[t]]

    def forward(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> dict[str, Tensor]:
        return self.model(features, valid)

    # -- fitting --------------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        """Before fitting: the training split's per-column input standardisation into the model's buffers (hence
        every checkpoint; a resumed fit restores the saved ones over them)."""
        if stage != "fit" or not self.hparams.standardize:
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "feature_stats"):
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn("standardize needs the training split, but no DenseDataModule was given: inputs stay "
                           "unstandardised (pass datamodule=..., or set model.standardize false)")
            return
        self.model.set_input_stats({m: st.as_float32() for m, st in dm.feature_stats().items()})

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.checkpoint_epoch = checkpoint.get("epoch")

    def losses(self, preds: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
        """Per-task losses of window predictions ``{task: [B, T, K]}`` against targets (see the module docstring);
        a task without a labeled frame in the batch gives 0 (still connected to the graph)."""
        out: dict[str, Tensor] = {}
        for task in self.tasks:
            p, y = preds[task], targets[task]
            zero = p.sum() * 0.0
            if task == "EXPR":
                keep = y >= 0
                out[task] = F.cross_entropy(p[keep].float(), y[keep], weight=self.expr_class_weights,
                                            label_smoothing=self.hparams.label_smoothing) if keep.any() else zero
            elif task == "VA":
                parts = [c for j in range(2) if (c := ccc_loss(p[..., j].reshape(-1), y[..., j].reshape(-1)))
                         is not None]
                out[task] = torch.stack(parts).mean() if parts else zero
            else:
                keep = y >= 0
                out[task] = F.binary_cross_entropy_with_logits(p[keep].float(), y[keep].float()) if keep.any() \
                    else zero
        return out

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        parts = self.losses(self(batch["features"], batch["valid"]), batch["targets"])
        loss = sum(self.task_weights[t] * v for t, v in parts.items())
        bad = not bool(torch.isfinite(loss))
        if self._trainer is not None:  # ranks decide together, or DDP peers hang in the next all-reduce
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise RuntimeError(f"Loss is NaN/inf (on at least one rank) at global step {self.global_step} (batch "
                               f"{batch_idx}, clips {list(batch['clip_id'])[:4]}); the run was stopped so that no "
                               "garbage checkpoint is saved. Look for NaN/inf features at valid frames, or lower the "
                               "learning rate.")
        bs = len(batch["clip_id"])
        self.log("train/loss", loss, on_step=True, on_epoch=True, prog_bar=True, batch_size=bs, sync_dist=True)
        for t, v in parts.items():
            self.log(f"train/loss_{t.lower()}", v, on_step=False, on_epoch=True, batch_size=bs, sync_dist=True)
        return loss

    # -- whole-clip evaluation ------------------------------------------------------------------------------------

    @torch.no_grad()
    def predict_clip(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> dict[str, np.ndarray]:
        """Per-frame answers for one whole clip: ``features`` {m: [N, D_m]}, ``valid`` {m: [N]} (one clip, no batch
        dimension). Returns float64 arrays over the N frames: ``EXPR`` class probabilities ``[N, 8]``, ``VA``
        ``[N, 2]``, ``AU`` activation probabilities ``[N, 12]`` (only the model's tasks), each frame's the mean over
        the windows covering it (see the module docstring)."""
        n = next(iter(valid.values())).shape[0]
        w = int(self.hparams.window)
        windows = plan_windows(n, w, max(1, w // 2))
        widths = [TASK_WIDTH[t] for t in self.tasks]
        avg = OverlapAverager(sum(widths))
        for i in range(0, len(windows), self.hparams.eval_windows):
            chunk = windows[i:i + self.hparams.eval_windows]
            idx = torch.stack([torch.arange(s, e + 1, device=self.device) for s, e in chunk])  # equal lengths
            out = self({m: x[idx].float() for m, x in features.items()}, {m: v[idx] for m, v in valid.items()})
            parts = []
            for t in self.tasks:
                o = out[t].float()
                parts.append(o.softmax(dim=-1) if t == "EXPR" else o.sigmoid() if t == "AU" else o)
            values = torch.cat(parts, dim=-1).cpu().numpy()
            for (s, e), v in zip(chunk, values):
                avg.add(np.arange(s, e + 1), v)
        settled = avg.pop(n)
        if (settled.count == 0).any():
            raise RuntimeError(f"{int((settled.count == 0).sum())} frames of a {n}-frame clip got no window output")
        bounds = np.cumsum([0, *widths])
        return {t: settled.mean[:, a:b] for t, a, b in zip(self.tasks, bounds[:-1], bounds[1:])}

    def _eval_step(self, batch: dict[str, Any], split: str) -> None:
        if "counted" in batch and not bool(batch["counted"][0]):
            return  # a DDP rank's stand-in (datamodules.eval_sampler): run nothing that could be scored
        features = {m: x[0] for m, x in batch["features"].items()}
        valid = {m: v[0] for m, v in batch["valid"].items()}
        preds = self.predict_clip(features, valid)
        states = self.gathered[split]
        for t in self.tasks:
            y = batch["targets"][t][0].cpu()
            keep = (y >= 0) if t == "EXPR" else ~torch.isnan(y).all(dim=1) if t == "VA" else (y >= 0).any(dim=1)
            p = torch.from_numpy(preds[t])[keep.numpy()]
            y = y[keep]
            if t == "EXPR":
                states["expr_pred"].update(p.argmax(dim=1).float().to(self.device))
                states["expr_true"].update(y.float().to(self.device))
            elif t == "VA":
                states["va_pred"].update(p.reshape(-1).float().to(self.device))
                states["va_true"].update(y.reshape(-1).float().to(self.device))
            else:
                states["au_prob"].update(p.reshape(-1).float().to(self.device))
                states["au_true"].update(y.reshape(-1).float().to(self.device))

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """One clip's per-frame answers (see :meth:`predict_clip`) with its id; ``None`` for a stand-in."""
        if "counted" in batch and not bool(batch["counted"][0]):
            return {}
        preds = self.predict_clip({m: x[0] for m, x in batch["features"].items()},
                                  {m: v[0] for m, v in batch["valid"].items()})
        return {"clip_id": batch["clip_id"][0], **preds}

    def on_train_start(self) -> None:
        self.gathered["val"].reset()  # the sanity check's clips must not leak into epoch 0

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _gathered(self, split: str) -> dict[str, np.ndarray]:
        """Every rank's scored frames, concatenated (a collective: runs on all ranks)."""
        out = {}
        for name, metric in self.gathered[split].items():
            value = metric.compute() if metric.update_count or self._distributed() else torch.zeros(0)
            out[name] = value.detach().cpu().double().numpy().reshape(-1)
        self.gathered[split].reset()
        return out

    def _distributed(self) -> bool:
        return self._trainer is not None and self.trainer.world_size > 1

    def scores(self, g: dict[str, np.ndarray]) -> dict[str, Any]:
        """The ABAW scores of gathered frames ``g`` per task (NaN where a task has no scored frame)."""
        out: dict[str, Any] = {}
        if "EXPR" in self.tasks:
            if len(g["expr_true"]):
                s = expr_score(g["expr_pred"].astype(np.int64), g["expr_true"].astype(np.int64))
                out["EXPR"] = {"expr_f1": s.f1, "per_class": s.per_class, "n_frames": s.n_frames}
            else:
                out["EXPR"] = {"expr_f1": math.nan, "per_class": {}, "n_frames": 0}
        if "VA" in self.tasks:
            p, y = g["va_pred"].reshape(-1, 2), g["va_true"].reshape(-1, 2)
            try:
                s = va_score(p, y)
                out["VA"] = {"va_ccc": s.ccc, "valence_ccc": s.valence, "arousal_ccc": s.arousal,
                             "n_frames": list(s.n_frames)}
            except ValueError:  # fewer than 2 labeled frames for V or A
                out["VA"] = {"va_ccc": math.nan, "valence_ccc": math.nan, "arousal_ccc": math.nan,
                             "n_frames": [int((~np.isnan(y[:, j])).sum()) for j in range(2)]}
        if "AU" in self.tasks:
            p, y = g["au_prob"].reshape(-1, len(AU_NAMES)), g["au_true"].reshape(-1, len(AU_NAMES))
            if len(y):
                s = au_score(p, y.astype(np.int64))
                out["AU"] = {"au_f1": s.f1, "au_f1_labeled": s.f1_labeled, "per_au": s.per_au,
                             "n_frames": s.n_frames}
            else:
                out["AU"] = {"au_f1": math.nan, "au_f1_labeled": math.nan, "per_au": {}, "n_frames": {}}
        return out

    def _epoch_end(self, split: str) -> None:
        scores = self.scores(self._gathered(split))
        flat = {k: float(v) for t in scores.values() for k, v in t.items() if isinstance(v, float)}
        flat["score"] = float(np.mean([scores[t][MAIN_METRIC[t]] for t in self.tasks]))
        if self.trainer.sanity_checking:
            return
        self.last_scores[split] = {"metrics": flat, "tasks": scores}
        for k, v in flat.items():  # equal on every rank (computed from the gathered frames): no reduction needed
            self.log(f"{split}/{k}", v, prog_bar=k == "score", rank_zero_only=False, sync_dist=False)

    # -- optimiser ------------------------------------------------------------------------------------------------

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on biases, norms, embeddings) + step-wise linear warmup then cosine decay to 0."""
        skip = self.model.no_weight_decay()
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if param.requires_grad:
                (no_decay if param.ndim < 2 or name in skip else decay).append(param)
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.hparams.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.hparams.lr)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the LR schedule needs a finite run: set trainer max_epochs or max_steps")
        total = int(total)
        batches = self.trainer.num_training_batches
        per_epoch = max(1.0, math.ceil(batches / self.trainer.accumulate_grad_batches)) \
            if math.isfinite(batches) and batches > 0 else total / max(1, self.trainer.max_epochs or 1)
        warmup = min(total, round(self.hparams.warmup_epochs * per_epoch))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(warmup_cosine, warmup_steps=warmup, total_steps=total))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}
