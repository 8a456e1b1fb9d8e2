"""The Lightning side of the extraction run: the module that runs an extractor per clip, the callback that writes
shards, the progress bar.

Kept apart from ``fer_zoo.extraction.run`` so that importing Lightning (about 2.5 s of CPU on the 2-core dev machine,
most of a no-op rerun's time) happens only when a modality has clips to extract; a rerun with nothing to do never
imports it (``benchmarks/bench_provenance.py`` times the whole command). Imports point one way: ``run`` imports this
module (lazily); both take :class:`~fer_zoo.extraction.clip_item.ClipItem` from its own module.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import BasePredictionWriter, TQDMProgressBar

from datamodules.feature_store import ClipResult, ShardWriter
from extractors import Extractor
from fer_zoo.extraction.clip_item import ClipItem


class ExtractionModule(L.LightningModule):
    """Holds the extractor so Lightning places its network on the right device; one clip per predict step."""

    def __init__(self, extractor: Extractor) -> None:
        super().__init__()
        self.extractor = extractor
        self.net = getattr(extractor, "model", None)  # registered as a submodule when the extractor is a network

    def predict_step(self, item: ClipItem, batch_idx: int) -> ClipResult:
        if item.result is not None:
            return item.result
        feats, valid = self.extractor.forward(item.pre)
        return ClipResult(item.clip_id, feats, valid, item.frame_indices, item.timestamps,
                          reason=item.reason).from_source(item.provenance)


class StoreWriter(BasePredictionWriter):
    """Writes each finished clip into this rank's shards (atomic); predictions are never held in memory."""

    def __init__(self, path: Path, request: dict[str, Any], flush_every: int) -> None:
        super().__init__(write_interval="batch")
        self.path, self.request, self.flush_every = path, request, flush_every
        self.writer: ShardWriter | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self.writer = ShardWriter(self.path, self.request, rank=trainer.global_rank, flush_every=self.flush_every)

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx,  # noqa: ANN001
                           dataloader_idx) -> None:  # noqa: ANN001
        assert self.writer is not None
        self.writer.add(prediction)

    def on_predict_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        assert self.writer is not None
        self.writer.flush()


class ClipProgressBar(TQDMProgressBar):
    """Lightning's bar, counting clips (one per step), so it reads clips/s with an ETA."""

    def __init__(self, label: str) -> None:
        super().__init__()
        self.label = label

    @property
    def predict_description(self) -> str:
        return self.label

    def init_predict_tqdm(self):  # noqa: ANN201
        bar = super().init_predict_tqdm()
        bar.unit = "clip"
        return bar
