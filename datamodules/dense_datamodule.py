"""The dense (per-frame) DataModule: long videos labeled frame by frame (Aff-Wild2 / ABAW), cut into windows.

Each clip (one person through one video) is laid out on its annotation frames ``0 .. N-1`` (``N`` =
:attr:`FrameLabels.n_frames`): every feature-store row sits on the annotation frame its image shows
(:meth:`FrameLabels.row_frames`, so a missing cropped image leaves a hole instead of shifting later frames), and a
frame without a row, or whose row is ``valid=False``, has no feature in that modality. A frame's targets are masked
for training where it has no label for the task or where no modality has a valid feature (no face).

- Training items are windows of ``window`` consecutive frames (per-frame targets need per-frame alignment: no TSN
  sampling), planned every ``stride`` frames like :func:`datamodules.windows.plan_windows`; each time a window is
  drawn its start moves by a random offset in ``[0, stride)`` (clamped so it stays inside the clip), so the
  epochs see the frames at different window positions. Windows in which no frame is trainable are left out.
- Evaluation items (val, test) are whole clips, one per item (batch size 1), so every rank scores whole videos and
  the model cuts them into windows itself (:mod:`fer_zoo.dense.lit_module`). Under DDP the evaluation sampler
  (:mod:`datamodules.eval_sampler`) gives every clip to exactly one rank. Evaluation targets are not masked by the
  face: every labeled frame is scored, as in ABAW (a frame without a face gets the model's answer from its window).

Splits (they depend only on the source, ``fold`` and ``seed``, never on the modalities, so every run of a modality
ablation uses the same videos): the test split is ABAW's validation set (the source's ``split == "val"``: the labels
of ABAW's test set are not public), or with ``fold`` (a source with ``n_folds``) the clips of that fold. The
validation split used for checkpoint selection is carved from the training clips, about ``val_fraction`` of them,
whole subjects (a video's ``_left``/``_right`` tracks stay together), seeded
(:func:`datamodules.feature_datamodule.split_clips`, the clip task's own splitter).

Everything the model is built with (``input_dims``, ``tasks``, ``class_names``, ``expr_class_weights``) is known after
``__init__``, which reads the stores' meta, index and validity masks and the clips' label files, never a feature.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.eval_sampler import EvalSampler, StandIn
from datamodules.feature_datamodule import (
    DistributedWeightedSampler,
    DroppedClip,
    FeatureDataModule,
    _dist_world,
    split_clips,
)
from datamodules.feature_stats import ColumnStats
from datamodules.feature_store import FeatureStore, StoreError
from datamodules.frame_labels import AU_NAMES, FrameLabels, frame_grid
from datamodules.labels import ABAW_EXPR
from datamodules.provenance import check_sources
from datamodules.records import ClipRecord
from datamodules.windows import plan_windows
from datamodules.worker_rng import WorkerSeededDataset

log = logging.getLogger(__name__)

TASKS = ("EXPR", "VA", "AU")
CLASS_BALANCE = ("none", "weighted_loss", "resample")
SPLITS = ("train", "val", "test")
_LABEL_FIELD = {"EXPR": "expr", "VA": "va", "AU": "au"}


class DenseSource(Protocol):
    """What this module needs from a per-frame source (``datamodules.affwild2.AffWild2Source``)."""

    name: str
    tasks: tuple[str, ...]

    @property
    def folds(self) -> list[int]: ...

    def clips(self) -> list[ClipRecord]: ...

    def frame_labels(self, clip_id: str) -> FrameLabels: ...


@dataclass(frozen=True)
class ClipGrid:
    """One clip on its annotation frames: ``labels`` (its :class:`FrameLabels`), ``rows``: modality -> int64
    ``[n_frames]``, the row of the clip in that store that shows each frame (``-1``: no row), ``face``: bool
    ``[n_frames]``, some modality has a valid feature at the frame."""

    clip_id: str
    labels: FrameLabels
    rows: dict[str, np.ndarray]
    face: np.ndarray

    @property
    def n_frames(self) -> int:
        return self.labels.n_frames


def labeled(labels: FrameLabels, task: str) -> np.ndarray:
    """bool ``[n_frames]``: frames with a label for ``task`` (VA: valence or arousal; AU: any of the 12). All False
    when the labels do not carry the task."""
    y = getattr(labels, _LABEL_FIELD[task])
    if y is None:
        return np.zeros(labels.n_frames, dtype=bool)
    if task == "EXPR":
        return y >= 0
    return ~np.isnan(y).all(axis=1) if task == "VA" else (y >= 0).any(axis=1)


def frame_targets(grid: ClipGrid, tasks: Sequence[str], start: int, stop: int, mask_faceless: bool,
                  length: int | None = None) -> dict[str, torch.Tensor]:
    """The targets of frames ``start .. stop - 1``, padded with "no label" to ``length`` frames: ``EXPR`` int64
    ``[L]`` (``-1`` = none), ``VA`` float32 ``[L, 2]`` (``NaN`` = none), ``AU`` int64 ``[L, 12]`` (``-1`` = none).
    ``mask_faceless``: frames where no modality is valid count as unlabeled (training)."""
    n = stop - start
    length = n if length is None else length
    keep = grid.face[start:stop] if mask_faceless else np.ones(n, dtype=bool)
    out: dict[str, torch.Tensor] = {}
    for task in tasks:
        y = getattr(grid.labels, _LABEL_FIELD[task])
        if task == "EXPR":
            t = np.full(length, -1, np.int64)
            t[:n] = np.where(keep, y[start:stop], -1)
        elif task == "VA":
            t = np.full((length, 2), np.nan, np.float32)
            t[:n] = np.where(keep[:, None], y[start:stop], np.nan)
        else:
            t = np.full((length, len(AU_NAMES)), -1, np.int64)
            t[:n] = np.where(keep[:, None], y[start:stop], -1)
        out[task] = torch.from_numpy(t)
    return out


def read_rows(store: FeatureStore, clip_id: str, rows: np.ndarray,
              features: bool = True) -> tuple[np.ndarray | None, np.ndarray]:
    """``(features float16 [F, D], valid bool [F])`` of a clip's rows ``rows`` (int ``[F]``, ``-1``: no row, read as
    zeros and invalid). Reads only those rows of the memory maps (a window of a long clip is not the whole clip);
    ``features=False`` reads the validity mask alone (features ``None``)."""
    feats, valid = store._open()
    i = store._row[clip_id]
    offset, length = int(store._offsets[i]), int(store._lengths[i])
    has = rows >= 0
    x = np.zeros((len(rows), store.dim), dtype=feats.dtype) if features else None
    v = np.zeros(len(rows), dtype=bool)
    if length and has.any():
        at = offset + rows[has]
        if x is not None:
            x[has] = feats[at]
        v[has] = valid[at]
    return x, v


class DenseWindows(WorkerSeededDataset):
    """Training windows: item ``i`` is window ``k`` of clip ``c`` (``self.windows[i] = (c, k)``), ``window``
    consecutive frames from ``min(k * stride + offset, max(0, N - window))`` with ``offset`` drawn in
    ``[0, stride)`` each time the item is read (the worker's generator, :class:`WorkerSeededDataset`; a seeded run
    repeats exactly). A clip shorter than
    ``window`` is one window, padded with invalid, unlabeled frames.

    Item: ``features`` {m: float32 [W, D_m]}, ``valid`` {m: bool [W]}, ``targets`` (see :func:`frame_targets`, masked
    where no modality is valid), ``clip_id``, ``start`` (int, the first frame).
    """

    def __init__(self, stores: dict[str, FeatureStore], grids: Sequence[ClipGrid], tasks: Sequence[str],
                 window: int, stride: int, seed: int = 0) -> None:
        self.stores, self.grids, self.tasks = stores, list(grids), list(tasks)
        self.window, self.stride, self.seed = int(window), int(stride), int(seed)
        self.windows: list[tuple[int, int]] = []
        for c, g in enumerate(self.grids):
            trainable = g.face & np.logical_or.reduce([labeled(g.labels, t) for t in self.tasks])
            for k in range(len(plan_windows(g.n_frames, self.window, self.stride))):
                lo = min(k * self.stride, max(0, g.n_frames - self.window))
                hi = min(g.n_frames, k * self.stride + self.stride + self.window - 1)
                if trainable[lo:hi].any():
                    self.windows.append((c, k))

    def __len__(self) -> int:
        return len(self.windows)

    def start(self, i: int, offset: int = 0) -> int:
        """First frame of window ``i`` drawn with ``offset``."""
        c, k = self.windows[i]
        return min(k * self.stride + offset, max(0, self.grids[c].n_frames - self.window))

    def __getitem__(self, i: int) -> dict[str, Any]:
        c, _ = self.windows[i]
        g = self.grids[c]
        start = self.start(i, int(self.generator().integers(self.stride)))
        stop = min(g.n_frames, start + self.window)
        pad = np.full(self.window - (stop - start), -1, np.int64)
        features, valid = {}, {}
        for m, store in self.stores.items():
            x, v = read_rows(store, g.clip_id, np.concatenate([g.rows[m][start:stop], pad]))
            features[m], valid[m] = torch.from_numpy(x).float(), torch.from_numpy(v)
        return {"features": features, "valid": valid, "clip_id": g.clip_id, "start": start,
                "targets": frame_targets(g, self.tasks, start, stop, mask_faceless=True, length=self.window)}


class DenseClips(Dataset):
    """Evaluation clips, whole: item ``i`` holds every annotation frame of clip ``i``: ``features`` {m: float16
    [N, D_m]}, ``valid`` {m: bool [N]}, ``targets`` (see :func:`frame_targets`, not masked by the face: every
    labeled frame is scored), ``face`` bool [N] (some modality valid), ``clip_id``."""

    def __init__(self, stores: dict[str, FeatureStore], grids: Sequence[ClipGrid], tasks: Sequence[str]) -> None:
        self.stores, self.grids, self.tasks = stores, list(grids), list(tasks)

    def __len__(self) -> int:
        return len(self.grids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        g = self.grids[i]
        features, valid = {}, {}
        for m, store in self.stores.items():
            x, v = read_rows(store, g.clip_id, g.rows[m])
            features[m], valid[m] = torch.from_numpy(x), torch.from_numpy(v)
        return {"features": features, "valid": valid, "clip_id": g.clip_id, "face": torch.from_numpy(g.face),
                "targets": frame_targets(g, self.tasks, 0, g.n_frames, mask_faceless=False)}


class DenseDataModule(L.LightningDataModule):
    """Per-frame features of ``modalities`` and per-frame targets of ``tasks`` for a dense source (Aff-Wild2).

    ``tasks``: among ``EXPR``, ``VA``, ``AU``; the source must read them (``AffWild2Source(task=...)``).
    ``window`` / ``stride``: training window length and spacing in frames (see :class:`DenseWindows`).
    ``class_balance`` (expression task):

    - ``"none"``: windows drawn uniformly (shuffled; under DDP Lightning's DistributedSampler);
    - ``"weighted_loss"``: ``expr_class_weights`` for the cross-entropy, inverse frequency of each class over the
      trainable training frames (labeled, with a valid feature), scaled to mean 1 over the 8 classes; a class
      without training frames gets 0;
    - ``"resample"``: each epoch draws as many windows as there are, with replacement
      (:class:`~datamodules.feature_datamodule.DistributedWeightedSampler`, one draw shared by the ranks), window
      ``w`` with probability proportional to ``mean_f 1 / n(y_f)`` over its trainable EXPR-labeled frames ``f`` (at
      offset 0), ``n(c)`` the count of trainable training frames of class ``c``: a window of rare-class frames is
      drawn as often as ``n(common) / n(rare)`` windows of a common class. Windows without an EXPR-labeled frame
      (multi-task) get the smallest weight of the others. Needs ``EXPR`` among ``tasks``.

    Stores must hold every frame: a store extracted with a ``frame_cap`` below a clip's frame count skipped frames,
    and is refused (``ValueError`` naming the store, the clip and the cap). Clips that cannot be used (label file
    unreadable, store rows that do not fit the clip's frames, extraction failed in a store, no valid frame in any
    modality) are taken out of their split after splitting with one warning naming each and why (``dropped``);
    ``strict=True`` raises ``ValueError`` with that list instead. Provenance as the clip task
    (:func:`datamodules.provenance.check_sources`; ``strict_provenance``).

    Raises ``ValueError`` for bad arguments (naming them), ``StoreError`` for a missing store.
    """

    def __init__(
        self,
        source: DenseSource,
        store_root: str,
        modalities: list[str],
        tasks: list[str] | None = None,
        window: int = 32,
        stride: int = 16,
        val_fraction: float = 0.1,
        seed: int = 42,
        fold: int | None = None,
        batch_size: int = 32,
        num_workers: int = 0,
        class_balance: str = "none",
        strict: bool = False,
        strict_provenance: bool = False,
        allow_random_weights: bool = False,
    ) -> None:
        super().__init__()
        tasks = ["EXPR"] if tasks is None else [str(t).strip().upper() for t in tasks]
        if not tasks or len(set(tasks)) != len(tasks) or any(t not in TASKS for t in tasks):
            raise ValueError(f"data.tasks must be distinct names among {list(TASKS)}, got {tasks}")
        missing = [t for t in tasks if t not in tuple(getattr(source, "tasks", ()))]
        if missing:
            raise ValueError(f"data.tasks {missing} are not read by the source (its task: "
                             f"{list(getattr(source, 'tasks', ()))}); add them to data.source.init_args.task")
        if window < 1 or stride < 1:
            raise ValueError(f"data.window and data.stride must be >= 1 frame, got {window} and {stride}")
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"data.val_fraction must be in (0, 1): checkpoints are chosen on it, got {val_fraction}")
        if class_balance not in CLASS_BALANCE:
            raise ValueError(f"data.class_balance={class_balance!r} is not one of {list(CLASS_BALANCE)}")
        if class_balance != "none" and "EXPR" not in tasks:
            raise ValueError(f"data.class_balance={class_balance!r} balances expression classes: it needs EXPR among "
                             f"data.tasks, got {tasks}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        if not modalities or len(set(modalities)) != len(modalities):
            raise ValueError(f"data.modalities must name at least one store, each once, got {modalities}")
        self.source = source
        self.store_root = str(store_root)
        self.modalities = list(modalities)
        self.tasks: list[str] = tasks
        self.window, self.stride = int(window), int(stride)
        self.val_fraction, self.seed, self.fold = float(val_fraction), int(seed), fold
        self.batch_size, self.num_workers = int(batch_size), int(num_workers)
        self.class_balance = class_balance
        self.strict_provenance = bool(strict_provenance)
        self.allow_random_weights = bool(allow_random_weights)
        self.vocabulary = ABAW_EXPR
        self.class_names: list[str] = list(ABAW_EXPR.classes)
        self.au_names: list[str] = list(AU_NAMES)

        # The clip task's store checks: one finished store per modality, built for this source, not random weights.
        try:
            self.stores, self.store_paths = FeatureDataModule._open_stores(self)  # type: ignore[arg-type]
        except StoreError as err:  # the clip task's hint names its own extraction config
            raise StoreError(str(err).replace("--config configs/extract.yaml",
                                              "--config configs/extract/abaw.yaml")) from None
        self.input_dims: dict[str, int] = {m: s.dim for m, s in self.stores.items()}

        records = source.clips()
        self.subjects = {r.clip_id: r.subject for r in records if r.subject is not None}
        self.split_ids: dict[str, list[str]] = self._split(records)
        FeatureDataModule._check_presence(self)  # type: ignore[arg-type]
        used = {c for s in SPLITS for c in self.split_ids[s]}
        self.provenance_warnings = check_sources(self.stores, [r for r in records if r.clip_id in used],
                                                 self.store_root, self.strict_provenance)
        for line in self.provenance_warnings:
            log.warning("%s", line)
        self.grids, self.dropped = self._build_grids(bool(strict))
        self._check_labeled()
        self.expr_class_weights: list[float] | None = (
            self._inverse_frequency() if class_balance == "weighted_loss" else None)
        self._datasets: dict[str, Dataset] = {}
        self._feature_stats: dict[str, ColumnStats] | None = None

    # -- construction -----------------------------------------------------------------------------------------------

    def _split(self, records: list[ClipRecord]) -> dict[str, list[str]]:
        """ABAW's validation set (or fold ``fold``) is the test split; val is carved from train (whole subjects)."""
        folds = list(self.source.folds)
        if folds:
            as_protocol = records
        else:
            bad = sorted({str(r.split) for r in records} - {"train", "val"})
            if bad:
                raise ValueError(f"{self.source.name}: clips with split {bad}; a dense source's clips are 'train' or "
                                 "'val' (ABAW's Train_Set / Validation_Set)")
            as_protocol = [dataclasses.replace(r, split="test" if r.split == "val" else "train") for r in records]
        # Not stratified by class: a video holds many classes; one constant label keeps split_clips' grouped holdout.
        labels = {r.clip_id: 0 for r in records}
        return split_clips(as_protocol, labels, folds, self.fold, 0.0, self.val_fraction, self.seed, self.source.name)

    def _build_grids(self, strict: bool) -> tuple[dict[str, ClipGrid], dict[str, DroppedClip]]:
        grids: dict[str, ClipGrid] = {}
        dropped: dict[str, DroppedClip] = {}
        health = {m: (dict(zip(s.index["clip_id"], s.index["status"])),
                      dict(zip(s.index["clip_id"], s.index["reason"]))) for m, s in self.stores.items()}
        for split in SPLITS:
            for cid in self.split_ids[split]:
                try:
                    grids[cid] = self._grid(cid, health)
                except _Unusable as err:
                    dropped[cid] = DroppedClip(cid, split, str(err))
        if dropped:
            shown = list(dropped.values())[:50]
            listing = "; ".join(f"{d.clip_id} ({d.split}: {d.reason})" for d in shown)
            more = f"; ... and {len(dropped) - len(shown)} more" if len(dropped) > len(shown) else ""
            if strict:
                raise ValueError(f"{self.source.name}: {len(dropped)} clips are unusable and strict=True: "
                                 f"{listing}{more}. Fix them, or set strict=False to drop them")
            for split in SPLITS:
                self.split_ids[split] = [c for c in self.split_ids[split] if c not in dropped]
            log.warning("%s: dropped %d unusable clips from the splits: %s%s", self.source.name, len(dropped),
                        listing, more)
        return grids, dropped

    def _grid(self, cid: str, health: dict[str, tuple[dict[str, str], dict[str, Any]]]) -> ClipGrid:
        failed = [f"extraction failed in {m}: {reason.get(cid) or 'no reason recorded'}"
                  for m, (status, reason) in health.items() if status[cid] == "failed"]
        if failed:
            raise _Unusable("; ".join(failed))
        try:
            labels = self.source.frame_labels(cid)
        except (ValueError, KeyError, OSError) as err:
            raise _Unusable(f"labels: {err}") from None
        rows: dict[str, np.ndarray] = {}
        face = np.zeros(labels.n_frames, dtype=bool)
        for m, store in self.stores.items():
            frame_indices = store.frames(cid)[0]
            files = labels.frames
            count = len(files) if files is not None else labels.n_frames
            cap = store.meta.get("frame_cap")
            if cap is not None and count > int(cap):
                # Not a per-clip problem: the whole store skipped frames. Refused outright, whatever `strict`.
                raise ValueError(
                    f"feature store {self.store_paths[m]} was extracted with frame_cap {cap}, but clip {cid!r} has "
                    f"{count} frames: frames were skipped, and a dense task needs every frame. Extract with "
                    "frame_cap: null (configs/extract/abaw.yaml) into a new store root")
            try:
                row_frames = labels.row_frames(frame_indices)
                at, present = frame_grid(np.arange(len(row_frames)), row_frames, labels.n_frames, fill=-1)
            except ValueError as err:
                raise _Unusable(f"feature store {self.store_paths[m]}: {err}") from None
            rows[m] = np.where(present, at, -1).astype(np.int64)
            face |= read_rows(store, cid, rows[m], features=False)[1]
        if not face.any():
            raise _Unusable(f"no valid frame in any modality ({', '.join(self.stores)})")
        return ClipGrid(cid, labels, rows, face)

    def _check_labeled(self) -> None:
        """Every split needs labeled frames of every task: training frames with a valid feature to learn from,
        validation frames to choose checkpoints by (else ``val/score`` is NaN and the "best" epoch is the first),
        test frames to score. Raises ``ValueError`` naming the split, the task and its clips."""
        for split in SPLITS:
            ids = self.split_ids[split]
            for task in self.tasks:
                frames = [labeled(self.grids[c].labels, task) & (self.grids[c].face if split == "train" else True)
                          for c in ids]
                if not any(f.any() for f in frames):
                    what = "labeled frame with a valid feature" if split == "train" else "labeled frame"
                    raise ValueError(
                        f"{self.source.name}: the {split} split ({len(ids)} clips: {ids[:8]}"
                        f"{' ...' if len(ids) > 8 else ''}) has no {what} for {task}"
                        + ("; checkpoints would be chosen blind: raise data.val_fraction or change data.seed"
                           if split == "val" else ""))

    def _trainable_expr(self) -> np.ndarray:
        """EXPR class of every trainable training frame (labeled, with a valid feature), int64 ``[F]``."""
        ys = [g.labels.expr[g.face & (g.labels.expr >= 0)] for c in self.split_ids["train"]
              if (g := self.grids[c]).labels.expr is not None]
        return np.concatenate(ys) if ys else np.zeros(0, np.int64)

    def _inverse_frequency(self) -> list[float]:
        counts = np.bincount(self._trainable_expr(), minlength=len(self.class_names))
        absent = [self.class_names[i] for i in np.flatnonzero(counts == 0)]
        if absent:
            log.warning("expression classes without training frames get class weight 0: %s", absent)
        if not counts.any():
            raise ValueError(f"{self.source.name}: no labeled expression frame with a valid feature in the training "
                             "split; class weights are undefined")
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        return [float(x) for x in w * len(w) / w.sum()]

    # -- statistics -------------------------------------------------------------------------------------------------

    def feature_stats(self) -> dict[str, ColumnStats]:
        """Per-column mean/std of each modality over the valid rows of the training clips only (every valid row
        of a clip is a valid frame of its grid), computed once; see :mod:`datamodules.feature_stats`."""
        if self._feature_stats is None:
            self._feature_stats = {m: FeatureDataModule._column_stats(self, m, s)  # type: ignore[arg-type]
                                   for m, s in self.stores.items()}
        return self._feature_stats

    def clip_arrays(self, clip_id: str) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """``(features {m: float32 [N, D_m]}, valid {m: bool [N]})`` of a clip on its annotation frames (what the
        per-frame baselines take)."""
        g = self.grids[clip_id]
        feats, valid = {}, {}
        for m, store in self.stores.items():
            x, v = read_rows(store, clip_id, g.rows[m])
            feats[m], valid[m] = x.astype(np.float32), v
        return feats, valid

    # -- datasets and loaders ---------------------------------------------------------------------------------------

    def dataset(self, split: str) -> Dataset:
        """Training windows (``"train"``) or whole clips (``"val"``, ``"test"``), built once."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        if split not in self._datasets:
            grids = [self.grids[c] for c in self.split_ids[split]]
            self._datasets[split] = (DenseWindows(self.stores, grids, self.tasks, self.window, self.stride, self.seed)
                                     if split == "train" else DenseClips(self.stores, grids, self.tasks))
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            self.dataset(split)

    def _pin_memory(self) -> bool:
        trainer = getattr(self, "trainer", None)
        return trainer.strategy.root_device.type == "cuda" if trainer is not None else torch.cuda.is_available()

    def resample_weights(self) -> np.ndarray:
        """Per training window, the ``resample`` weight (see the class docstring), float64 ``[len(train windows)]``."""
        ds = self.dataset("train")
        assert isinstance(ds, DenseWindows)
        counts = np.bincount(self._trainable_expr(), minlength=len(self.class_names)).astype(np.float64)
        inv = np.where(counts > 0, 1.0 / np.maximum(counts, 1.0), 0.0)
        w = np.full(len(ds), np.nan)
        for i, (c, _) in enumerate(ds.windows):
            g = ds.grids[c]
            s = ds.start(i)
            y = g.labels.expr[s:s + ds.window]
            y = y[g.face[s:s + ds.window] & (y >= 0)]
            if len(y):
                w[i] = inv[y].mean()
        if np.isnan(w).all():
            raise ValueError(f"{self.source.name}: class_balance='resample' found no training window with a labeled "
                             "expression frame")
        return np.where(np.isnan(w), np.nanmin(w), w)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        assert isinstance(ds, DenseWindows)
        ds.rank = _dist_world()[1]
        kwargs: dict[str, Any] = {"batch_size": self.batch_size, "num_workers": self.num_workers,
                                  "persistent_workers": self.num_workers > 0, "pin_memory": self._pin_memory()}
        if self.class_balance == "resample":
            sampler = DistributedWeightedSampler(self.resample_weights(), num_samples=len(ds), seed=self.seed)
            return DataLoader(ds, sampler=sampler, **kwargs)
        return DataLoader(ds, shuffle=True, **kwargs)  # Lightning swaps in a DistributedSampler under DDP

    def _eval_loader(self, split: str) -> DataLoader:
        """One whole clip per batch; every clip on exactly one rank (see :mod:`datamodules.eval_sampler`)."""
        dataset = self.dataset(split)
        world, rank = _dist_world()
        kwargs: dict[str, Any] = {"batch_size": 1, "num_workers": self.num_workers, "pin_memory": self._pin_memory()}
        if world == 1:
            return DataLoader(dataset, shuffle=False, **kwargs)
        sampler = EvalSampler(dataset, num_replicas=world, rank=rank)  # type: ignore[arg-type]
        return DataLoader(StandIn(dataset) if sampler.stand_in else dataset, sampler=sampler, **kwargs)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    # -- reporting ------------------------------------------------------------------------------------------------

    def labeled_frames(self, split: str) -> dict[str, int]:
        """Labeled frames of ``split`` per task (every one is scored in evaluation)."""
        return {t: int(sum(labeled(self.grids[c].labels, t).sum() for c in self.split_ids[split]))
                for t in self.tasks}

    @functools.cached_property
    def split_sizes(self) -> dict[str, dict[str, Any]]:
        """Per split: ``clips`` (tracks), ``videos`` (distinct videos), ``frames`` (annotation frames),
        ``faceless_frames`` (no valid feature in any modality), ``labeled_frames`` per task."""
        out = {}
        for s in SPLITS:
            ids = self.split_ids[s]
            out[s] = {"clips": len(ids), "videos": len({self.subjects.get(c, c) for c in ids}),
                      "frames": int(sum(self.grids[c].n_frames for c in ids)),
                      "faceless_frames": int(sum((~self.grids[c].face).sum() for c in ids)),
                      "labeled_frames": self.labeled_frames(s)}
        return out

    def describe(self) -> dict[str, Any]:
        """Everything needed to log what a run trained and tested on."""
        return {"source": self.source.name, "fold": self.fold, "tasks": self.tasks,
                "modalities": {m: str(p) for m, p in self.store_paths.items()}, "input_dims": dict(self.input_dims),
                "window": self.window, "stride": self.stride, "class_balance": self.class_balance,
                "expr_class_weights": self.expr_class_weights, "sizes": self.split_sizes,
                "dropped": len(self.dropped), "seed": self.seed}


class _Unusable(Exception):
    """A clip that holds nothing usable (the message says why)."""


__all__ = ["CLASS_BALANCE", "ClipGrid", "DenseClips", "DenseDataModule", "DenseWindows", "TASKS", "frame_targets",
           "labeled", "read_rows"]
