"""LightningModule around :class:`~fer_zoo.training.model.TemporalTransformer`: loss, metrics, optimiser, plots.

Laid out like lightning-hydra-template (one shared ``model_step``, metric objects per split, reset before training
so sanity-check batches do not leak into epoch 0). All metrics, the evaluation loss included, are torchmetrics objects,
so under DDP they are reduced over ranks before being computed; plain tensors are logged with ``sync_dist=True``.
Items marked ``counted=False`` (a DDP rank's stand-in, :mod:`datamodules.eval_sampler`) run but are never scored.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger
from torch import Tensor
from torchmetrics import MeanMetric, MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassRecall,
)

from fer_zoo.plots import confusion_figure, figure_to_array, save_figure, uar_war
from fer_zoo.training.model import TemporalTransformer


def warmup_cosine(step: int, warmup_steps: int, total_steps: int) -> float:
    """LR factor: linear warmup to 1 over ``warmup_steps``, then cosine decay reaching 0 at ``total_steps``.

    Warmup keeps AdamW's first, badly estimated updates from wrecking the freshly initialised attention.
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


class FERLitModule(L.LightningModule):
    """Train/evaluate the temporal transformer on batches of the FeatureDataModule contract.

    Batch: ``{"features": {m: [B,T,D_m]}, "valid": {m: [B,T] bool}, "label": [B] int64, "clip_id": list[str]}``.
    Logs ``{train,val,test}/{uar,war,f1}``, ``{split}/loss``, per-class recall ``{val,test}/recall/<class>`` and a
    confusion matrix image per validation/test epoch; the last matrices stay in ``self.last_confusion``.
    """

    def __init__(
        self,
        input_dims: dict[str, int],
        num_classes: int,
        class_names: list[str] | None = None,
        d_model: int = 128,
        depth: int = 2,
        heads: int = 4,
        dropout: float = 0.1,
        fusion: str = "early",
        modality_dropout: float = 0.0,
        max_frames: int = 64,
        lr: float = 3e-4,
        weight_decay: float = 0.05,
        warmup_epochs: float = 1,
        label_smoothing: float = 0.1,
        class_weights: list[float] | None = None,
        standardize: bool = True,
        input_norm: bool = True,
        input_dropout: float = 0.0,
        stats_head: bool = True,
        probe_init: bool = True,
        freeze_stats_head: bool = True,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"class_names has {len(class_names)} names but num_classes = {num_classes}")
        if class_weights is not None and len(class_weights) != num_classes:
            raise ValueError(f"class_weights has {len(class_weights)} entries but num_classes = {num_classes}")
        if warmup_epochs < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        self.class_names = list(class_names)
        self.model = TemporalTransformer(
            input_dims,
            num_classes,
            d_model=d_model,
            depth=depth,
            heads=heads,
            dropout=dropout,
            fusion=fusion,
            modality_dropout=modality_dropout,
            max_frames=max_frames,
            input_norm=input_norm,
            input_dropout=input_dropout,
            stats_head=stats_head,
        )
        # The probe's weights stay as fitted (C chosen on val); the transformer learns the residual. A trainable head
        # drifted from the probe's optimum on faces-static (issue 11 notes: 36.4 vs 41.6 test UAR, probe 39.8).
        if freeze_stats_head and probe_init and self.model.stats_head is not None:
            self.model.stats_head.requires_grad_(False)
        # Not persistent: it is rebuilt from hparams, and keeping it out of state_dict keeps checkpoints portable.
        weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", weights, persistent=False)

        metrics = MetricCollection(
            {
                "uar": MulticlassRecall(num_classes, average="macro"),
                "war": MulticlassAccuracy(num_classes, average="micro"),
                "f1": MulticlassF1Score(num_classes, average="macro"),
            }
        )
        self.train_metrics = metrics.clone(prefix="train/")
        self.val_metrics = metrics.clone(prefix="val/")
        self.test_metrics = metrics.clone(prefix="test/")
        self.val_confusion = MulticlassConfusionMatrix(num_classes)
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.val_class_recall = MulticlassRecall(num_classes, average=None)
        self.test_class_recall = MulticlassRecall(num_classes, average=None)
        # Evaluation loss as a clip-weighted mean of summed states: Lightning's sync_dist "mean" divides an integer
        # clip count by the world size (3 val clips on 2 ranks: 1, so val/loss came out 1.5x too large; 1 clip: inf).
        self.val_loss = MeanMetric()
        self.test_loss = MeanMetric()
        self.last_confusion: dict[str, np.ndarray] = {}
        self.stats_head_init: dict[str, Any] | None = None  # which probe the clip-statistics head started from
        self.checkpoint_epoch: int | None = None  # epoch of the checkpoint last loaded (what `test` evaluates)

    def _evaluated(self, split: str) -> str:
        """What the figure shows: the epoch being trained (val), or the checkpoint actually tested."""
        ckpt = getattr(self.trainer, "ckpt_path", None) if self._trainer is not None else None
        if split != "val" and ckpt:
            epoch = f", epoch {self.checkpoint_epoch}" if self.checkpoint_epoch is not None else ""
            return f"checkpoint {Path(ckpt).name}{epoch}"
        return f"epoch {self.current_epoch}"

    @property
    def starts_as_probe(self) -> bool:
        """Whether the model, before its first step, is exactly its linear probe: ``probe_init`` and the probe was
        loaded into the clip-statistics head (the transformer's output layer is then zero). The "best" checkpoint
        policy then counts that start as a candidate (:mod:`fer_zoo.training.selection`)."""
        init = self.stats_head_init
        return bool(self.hparams.probe_init) and init is not None and "error" not in init

    def forward(self, features: dict[str, Tensor], valid: dict[str, Tensor]) -> Tensor:
        return self.model(features, valid)

    def setup(self, stage: str) -> None:
        """Before fitting: standardise inputs with the training split's per-column stats (``standardize=True``).

        They come from the DataModule (``feature_stats()``: valid frames of training clips only) and land in the
        model's buffers, hence in every checkpoint. A resumed fit then restores the saved ones over them (Lightning
        restores the checkpoint after ``setup``), and ``test``/``predict-video`` on a checkpoint use the saved ones.
        """
        if stage != "fit" or not (self.hparams.standardize or self.model.stats_head is not None):
            return
        dm = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if dm is None or not hasattr(dm, "feature_stats"):  # plain dataloaders: nothing to compute stats from
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn("standardize/stats_head need the training split, but no FeatureDataModule was given: "
                           "inputs stay unstandardised and the clip-statistics head untrained-scaled (pass "
                           "datamodule=..., or set model.standardize and model.stats_head false to silence this)")
            return
        self.prepare_from(dm)

    def prepare_from(self, dm: Any) -> None:
        """Everything the model takes from the training split before the first step (``setup("fit")`` calls it):
        the per-column input standardisation (``standardize``), and for the clip-statistics head the linear probe
        fitted on the training split (C chosen on val; never a test clip): its clip-level standardisation always,
        its weights with ``probe_init`` (then the transformer's own head starts at zero, so training starts from
        the probe's predictions; LP-FT, see ``ClipStatsHead``). A resumed fit restores the checkpoint over all of it.
        """
        from fer_zoo.training.probe import init_probe_for

        if self.hparams.standardize:
            self.model.set_input_stats({m: st.as_float32() for m, st in dm.feature_stats().items()})
        head = self.model.stats_head
        if head is None:
            return
        try:
            init_choice = init_probe_for(dm)
        except ValueError as err:  # e.g. one class in the training split: the transformer alone, and say so
            from lightning.pytorch.utilities import rank_zero_warn

            rank_zero_warn(f"the clip-statistics head was not initialised from the linear probe ({err}); it is "
                           "switched off for this run (zero weights), the transformer alone classifies")
            with torch.no_grad():
                for param in head.parameters():
                    param.zero_()
                for norm in head.norm.values():
                    norm.std.fill_(1.0)
            head.requires_grad_(False)
            self.stats_head_init = {"error": f"{type(err).__name__}: {err}"}
            return
        probe = init_choice.probe
        self.stats_head_init = init_choice.as_dict()
        if list(dm.stores) != head.modalities:
            raise ValueError(f"probe columns follow the stores {list(dm.stores)}, the model {head.modalities}")
        as_t = functools.partial(torch.as_tensor, dtype=torch.float64)
        # Without probe_init: the probe's scaler only, the head's weights stay as initialised.
        head.load_probe(as_t(probe.fill), torch.as_tensor(probe.keep), as_t(probe.mean), as_t(probe.scale),
                        as_t(probe.coef), as_t(probe.intercept), weights=self.hparams.probe_init)
        if self.hparams.probe_init:
            with torch.no_grad():
                self.model.head.weight.zero_()
                self.model.head.bias.zero_()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Remember the checkpoint's epoch (for figure titles). Checkpoints from before input standardisation lack
        its buffers: they were trained on raw inputs, so the identity transform is the one they need."""
        # The start (saved before the first step) has trained no epoch: its title names the file alone.
        self.checkpoint_epoch = None if checkpoint.get("global_step") == 0 else checkpoint.get("epoch")
        state = checkpoint.get("state_dict", {})
        for name, buf in self.model.input_stats.named_buffers():
            key = f"model.input_stats.{name}"
            if key not in state:
                state[key] = torch.zeros_like(buf) if name.endswith("mean") else torch.ones_like(buf)
        # Checkpoints from before the clip-statistics head: a zero head adds nothing, i.e. their very logits.
        if self.model.stats_head is not None:
            for name, tensor in self.model.stats_head.state_dict().items():
                key = f"model.stats_head.{name}"
                if key not in state:
                    state[key] = torch.ones_like(tensor) if name.endswith("std") else torch.zeros_like(tensor)

    def on_train_start(self) -> None:
        """Drop what the sanity check accumulated so epoch 0's validation numbers are clean."""
        for metric in (self.val_metrics, self.val_confusion, self.val_class_recall, self.val_loss):
            metric.reset()

    def model_step(self, batch: dict[str, Any], stage: str, batch_idx: int) -> tuple[Tensor, Tensor, Tensor]:
        """Shared by train/val/test: logits, loss, and a hard stop on a non-finite loss."""
        logits = self(batch["features"], batch["valid"])
        targets = batch["label"]
        if "counted" in batch:  # a DDP rank's stand-in clip (datamodules.eval_sampler): run, never scored
            logits, targets = logits[batch["counted"]], targets[batch["counted"]]
        loss = F.cross_entropy(
            logits.float(), targets, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing
        ) if len(targets) else logits.float().sum() * 0.0
        bad = not bool(torch.isfinite(loss))
        if self._trainer is not None and stage == "train":
            # Training ranks step in lockstep, so they decide together (or DDP peers hang in the next all-reduce).
            # Evaluation ranks may see uneven batch counts (no repeated clips), so they must not add a collective.
            bad = self.trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            raise RuntimeError(
                f"Loss is NaN/inf (on at least one rank) at global step {self.global_step} ({stage}, batch "
                f"{batch_idx}); the run was stopped so that no garbage checkpoint is saved. Look for NaN/inf "
                "features at valid frames, or lower the learning rate."
            )
        return loss, logits.detach(), targets

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        loss, logits, targets = self.model_step(batch, "train", batch_idx)
        bs = targets.shape[0]
        self.train_metrics.update(logits, targets)
        self.log("train/loss", loss, on_step=True, on_epoch=False, prog_bar=True, batch_size=bs, sync_dist=True)
        self.log_dict(self.train_metrics, on_step=False, on_epoch=True, batch_size=bs)
        return loss

    def _eval_step(self, batch: dict[str, Any], batch_idx: int, split: str) -> None:
        loss, logits, targets = self.model_step(batch, split, batch_idx)
        bs = targets.shape[0]  # 0 for a stand-in: logged with weight 0, so every rank logs the same keys
        metrics = getattr(self, f"{split}_metrics")
        if bs:
            metrics.update(logits, targets)
            getattr(self, f"{split}_confusion").update(logits, targets)
            getattr(self, f"{split}_class_recall").update(logits, targets)
            getattr(self, f"{split}_loss").update(loss.detach(), weight=bs)
        self.log(f"{split}/loss", getattr(self, f"{split}_loss"), on_step=False, on_epoch=True, prog_bar=True)
        self.log_dict(metrics, on_step=False, on_epoch=True, prog_bar=True, batch_size=bs)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step(batch, batch_idx, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> dict[str, Any]:
        """Class probabilities with their clip ids, so a prediction writer can join them back to the manifest."""
        probs = self(batch["features"], batch["valid"]).float().softmax(dim=-1)
        keep = batch.get("counted", torch.ones(len(probs), dtype=torch.bool, device=probs.device))  # False: stand-in
        return {"probs": probs[keep], "clip_id": [c for c, k in zip(batch["clip_id"], keep.tolist()) if k]}

    def on_validation_epoch_end(self) -> None:
        self._epoch_end("val")

    def on_test_epoch_end(self) -> None:
        self._epoch_end("test")

    def _epoch_end(self, split: str) -> None:
        """Per-class recall, confusion matrix (kept, logged as an image, saved as PNG). Runs on all ranks."""
        confusion, class_recall = getattr(self, f"{split}_confusion"), getattr(self, f"{split}_class_recall")
        cm = confusion.compute().cpu().numpy()  # synced over ranks by torchmetrics
        recall = class_recall.compute()
        confusion.reset()
        class_recall.reset()
        if self.trainer.sanity_checking:
            return
        self.last_confusion[split] = cm
        for name, value in zip(self.class_names, recall):
            self.log(f"{split}/recall/{name}", value, sync_dist=True)
        # trainer.log_dir broadcasts, so it must be read on every rank before the rank-zero-only work.
        out_dir = self.trainer.log_dir or self.trainer.default_root_dir
        if not self.trainer.is_global_zero:
            return
        uar, war = uar_war(cm)
        fig = confusion_figure(cm, self.class_names, f"{split} confusion, {self._evaluated(split)}", uar, war)
        self._log_figure(f"{split}/confusion", fig)
        save_figure(fig, Path(out_dir) / f"confusion_{split}.png")

    def _log_figure(self, key: str, fig: Any) -> None:
        """Send the figure to every logger that takes images (W&B, TensorBoard); others, like CSV, are skipped."""
        for logger in self.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(key=key, images=[figure_to_array(fig)], step=self.global_step)
            elif isinstance(logger, TensorBoardLogger):
                logger.experiment.add_figure(key, fig, global_step=self.global_step, close=False)

    def configure_optimizers(self) -> dict[str, Any]:
        """AdamW (no decay on biases, norms, embeddings) + step-wise linear warmup then cosine decay to 0."""
        skip = self.model.no_weight_decay()
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            (no_decay if param.ndim < 2 or name in skip else decay).append(param)
        optimizer = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": self.hparams.weight_decay},
                {"params": no_decay, "weight_decay": 0.0},
            ],
            lr=self.hparams.lr,
        )
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the LR schedule needs a finite run: set trainer max_epochs or max_steps")
        total = int(total)
        warmup = min(total, round(self.hparams.warmup_epochs * self._steps_per_epoch(total)))
        scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, functools.partial(warmup_cosine, warmup_steps=warmup, total_steps=total)
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step", "frequency": 1}}

    def _steps_per_epoch(self, total: int) -> float:
        """Optimiser steps per epoch (per rank, after gradient accumulation), used to express warmup in epochs."""
        batches = self.trainer.num_training_batches
        if math.isfinite(batches) and batches > 0:
            return max(1.0, math.ceil(batches / self.trainer.accumulate_grad_batches))
        epochs = self.trainer.max_epochs
        return total / epochs if epochs and epochs > 0 else 0.0
