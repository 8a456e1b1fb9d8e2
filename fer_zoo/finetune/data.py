"""Labeled photos for fine-tuning a frame encoder: the split, face-suited augmentation and class balancing.

The split is :func:`datamodules.feature_datamodule.split_clips`, the very function the feature DataModule uses, with
the same ``seed``/``test_fraction``/``val_fraction``: the encoder never trains on the photos a later ``fit`` on its
features tests on, and a source that names people (``subject_pattern``) keeps each person on one side.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.feature_datamodule import (
    DistributedWeightedSampler,
    class_sampling_weights,
    split_clips,
)
from datamodules.frames import ClipReadError, read_frames
from datamodules.labels import LabelVocabulary, get_vocabulary
from datamodules.records import ClipRecord
from datamodules.sources import ClipSource

log = logging.getLogger(__name__)

BALANCE = ("none", "weighted_loss", "balanced_sampler")
SPLITS = ("train", "val", "test")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def load_photo(path: str, size: int, box: tuple[int, int, int, int] | None = None) -> np.ndarray:
    """A photo (or a clip's middle frame) as uint8 RGB ``[size, size, 3]``, resized like the extractors do.

    ``cv2.resize`` bilinear, no crop beyond the record's face ``box`` (``ClipRecord.box``, AffectNet): the frame
    extractors read and resize frames exactly so, which keeps the encoder's training inputs and its inputs at
    extraction time alike.
    """
    import cv2

    frames = read_frames(path, box=box).rgb
    if len(frames) == 0:
        raise ClipReadError(path, "no frames")
    frame = frames[len(frames) // 2]
    return cv2.resize(np.ascontiguousarray(frame), (size, size), interpolation=cv2.INTER_LINEAR)


def train_transform(size: int, mean: tuple[float, ...], std: tuple[float, ...], crop_scale: float = 0.75,
                    jitter: float = 0.3, erasing: float = 0.25) -> Any:
    """Face-suited augmentation on uint8 ``[3, H, W]``: random resized crop (mild: the face stays in view), flip,
    colour jitter, then float + normalisation and random erasing (occlusion: hands, glasses, hair)."""
    from torchvision.transforms import v2

    return v2.Compose([
        v2.RandomResizedCrop(size, scale=(crop_scale, 1.0), ratio=(0.9, 1.1), antialias=True),
        v2.RandomHorizontalFlip(),
        v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter, hue=min(jitter / 6, 0.5)),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(mean, std),
        v2.RandomErasing(p=erasing, scale=(0.02, 0.15)),
    ])


def eval_transform(mean: tuple[float, ...], std: tuple[float, ...]) -> Any:
    from torchvision.transforms import v2

    return v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(mean, std)])


class PhotoDataset(Dataset):
    """Decoded, resized photos in memory (uint8 ``[N, 3, S, S]``); items ``{"image", "label", "clip_id"}``."""

    def __init__(self, images: torch.Tensor, labels: list[int], ids: list[str], transform: Any) -> None:
        self.images, self.labels, self.ids, self.transform = images, labels, ids, transform

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {"image": self.transform(self.images[i]), "label": self.labels[i], "clip_id": self.ids[i]}


class PhotoDataModule(L.LightningDataModule):
    """Labeled photos of a clip source (``ImageFolderSource``, a manifest of images, ...), split and augmented.

    Args: ``source`` (any clip source; a video clip contributes its middle frame), ``image_size`` (pixels of the
    square input), ``val_fraction``/``test_fraction``/``seed`` (as in ``fit``: the same values give the same split),
    ``class_balance`` (``none``, ``weighted_loss``: inverse-frequency loss weights, ``balanced_sampler``: every class
    equally likely per draw), ``batch_size``, ``num_workers``, augmentation strengths (``crop_scale``: smallest crop
    area share, ``jitter``: colour jitter strength, ``erasing``: random-erasing probability), ``max_photos`` (keep at
    most this many training photos, stratified; 0 = all: for quick runs), ``fold`` (a source with folds, e.g.
    ``ImageFolderSource(n_folds=5)``: the test fold whose photos are never trained on, as ``fit``'s
    ``data.fold``).
    Photos that cannot be read are listed and left out (a clear warning), never replaced.
    """

    def __init__(self, source: ClipSource, image_size: int = 224, val_fraction: float = 0.1,
                 test_fraction: float = 0.2, seed: int = 42, class_balance: str = "balanced_sampler",
                 batch_size: int = 32, num_workers: int = 0, crop_scale: float = 0.75, jitter: float = 0.3,
                 erasing: float = 0.25, max_photos: int = 0, vocabulary: str | None = None,
                 fold: int | None = None) -> None:
        super().__init__()
        if class_balance not in BALANCE:
            raise ValueError(f"data.class_balance={class_balance!r} is not one of {list(BALANCE)}")
        if image_size < 16 or batch_size < 1 or num_workers < 0:
            raise ValueError(f"data.image_size >= 16, data.batch_size >= 1, data.num_workers >= 0 needed; got "
                             f"{image_size}, {batch_size}, {num_workers}")
        if not 0.0 < crop_scale <= 1.0 or not 0.0 <= erasing <= 1.0 or jitter < 0:
            raise ValueError(f"data.crop_scale in (0, 1], data.erasing in [0, 1], data.jitter >= 0 needed; got "
                             f"{crop_scale}, {erasing}, {jitter}")
        self.source = source
        self.image_size, self.seed, self.class_balance = int(image_size), int(seed), class_balance
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.crop_scale, self.jitter, self.erasing = float(crop_scale), float(jitter), float(erasing)
        self.mean, self.std = IMAGENET_MEAN, IMAGENET_STD
        vocab: LabelVocabulary | str = vocabulary if vocabulary is not None else source.vocabulary
        self.vocabulary = vocab if isinstance(vocab, LabelVocabulary) else get_vocabulary(vocab)
        self.class_names: list[str] = list(self.vocabulary.classes)
        self.num_classes = len(self.class_names)

        records = source.clips()
        # rows a photo-set source left out on purpose (AffectNet's none/uncertain/no-face, FER+'s no majority)
        self.excluded: dict[str, int] = dict(getattr(source, "excluded", {}))
        if self.excluded:
            log.info("%s: left out %s", source.name, ", ".join(f"{n} {why}" for why, n in self.excluded.items()))
        self.records: dict[str, ClipRecord] = {r.clip_id: r for r in records}
        self.labels: dict[str, int] = {}
        for r in records:
            if r.label is None:
                raise KeyError(f"photo {r.clip_id!r} ({r.path}) has no label; fine-tuning needs labelled photos")
            self.labels[r.clip_id] = self.vocabulary.index(r.label)
        self.fold = fold
        self.split_ids = split_clips(records, self.labels, list(source.folds), fold, float(test_fraction),
                                     float(val_fraction), self.seed, source.name)
        if max_photos:
            self.split_ids["train"] = self._subsample(self.split_ids["train"], int(max_photos))
        counts = np.bincount([self.labels[c] for c in self.split_ids["train"]], minlength=self.num_classes)
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        self.class_weights: list[float] | None = (
            [float(x) for x in w * len(w) / w.sum()] if class_balance == "weighted_loss" else None)
        self._images: dict[str, torch.Tensor] = {}
        self.unreadable: dict[str, str] = {}
        self._datasets: dict[str, PhotoDataset] = {}

    def _subsample(self, ids: list[str], n: int) -> list[str]:
        from datamodules.feature_datamodule import stratified_holdout

        if n >= len(ids):
            return ids
        _, keep = stratified_holdout(ids, [self.labels[c] for c in ids], n / len(ids),
                                     np.random.default_rng(self.seed))
        return keep

    # -- fingerprint and report ------------------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """What the encoder learned from: a sha256 over the training photos' ids, labels and file sizes, and counts."""
        import os

        h = hashlib.sha256()
        for c in self.split_ids["train"]:
            r = self.records[c]
            size = os.path.getsize(r.path) if os.path.isfile(r.path) else -1
            h.update(json.dumps([c, r.label, size] + ([list(r.box)] if r.box is not None else [])).encode())
        return {"data": h.hexdigest()[:16], "source": self.source.name, "train_images": len(self.split_ids["train"]),
                "val_images": len(self.split_ids["val"]), "test_images": len(self.split_ids["test"]),
                "seed": self.seed, "fold": self.fold, "class_counts_train": self.class_counts("train"),
                **({"excluded": self.excluded} if self.excluded else {})}

    def class_counts(self, split: str) -> dict[str, int]:
        counts = Counter(self.labels[c] for c in self.split_ids[split])
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    # -- data ------------------------------------------------------------------------------------------------------

    def _decode(self, ids: list[str]) -> list[str]:
        from tqdm import tqdm

        todo = [c for c in ids if c not in self._images and c not in self.unreadable]
        for c in tqdm(todo, desc="decoding photos", unit="photo", disable=not todo):
            try:
                r = self.records[c]
                self._images[c] = torch.from_numpy(load_photo(r.path, self.image_size, r.box)).permute(2, 0, 1)
            except (ClipReadError, OSError, ValueError) as err:
                self.unreadable[c] = f"{self.records[c].path}: {err}"
        bad = [c for c in ids if c in self.unreadable]
        if bad:
            log.warning("%d photos could not be read and are left out, e.g. %s", len(bad),
                        [self.unreadable[c] for c in bad[:3]])
        return [c for c in ids if c in self._images]

    def dataset(self, split: str) -> PhotoDataset:
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        if split not in self._datasets:
            ids = self._decode(self.split_ids[split])
            if not ids:
                raise ValueError(f"the {split} split has no readable photos")
            tf = (train_transform(self.image_size, self.mean, self.std, self.crop_scale, self.jitter, self.erasing)
                  if split == "train" else eval_transform(self.mean, self.std))
            images = torch.stack([self._images[c] for c in ids])
            self._datasets[split] = PhotoDataset(images, [self.labels[c] for c in ids], ids, tf)
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            if self.split_ids[split]:
                self.dataset(split)

    def _loader(self, split: str, **kwargs: Any) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=self.batch_size, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, **kwargs)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        if self.class_balance != "balanced_sampler":
            return self._loader("train", shuffle=True, drop_last=len(ds) > self.batch_size)
        weights = class_sampling_weights(ds.labels, self.num_classes, 1.0)
        sampler = DistributedWeightedSampler(weights, num_samples=len(ds), seed=self.seed)
        return self._loader("train", sampler=sampler, drop_last=len(ds) > self.batch_size)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)
