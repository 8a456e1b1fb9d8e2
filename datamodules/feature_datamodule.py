"""The feature DataModule: cached per-frame features of the selected modalities, split, sampled and balanced.

Everything the model must be built with (``input_dims``, ``num_classes``, ``class_names``, ``class_weights``) is
computed in ``__init__`` from ``meta.json`` and the store index only, so LightningCLI can link it into the model
before any feature is read. Splits depend only on the source, ``fold`` and ``seed`` (never on the selected
modalities), so every run of a modality ablation trains, selects and tests on the same clips.
"""

from __future__ import annotations

import functools
import logging
import math
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import lightning as L
import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torch.utils.data.distributed import DistributedSampler

from datamodules.eval_sampler import EvalSampler, StandIn
from datamodules.feature_stats import ColumnStats, column_stats, train_rows
from datamodules.feature_store import FeatureStore, find_store
from datamodules.labels import LabelVocabulary, get_vocabulary
from datamodules.provenance import check_sources
from datamodules.records import ClipRecord
from datamodules.sampling import SHORT_CLIPS, segment_indices
from datamodules.worker_rng import WorkerSeededDataset, seed_rng

log = logging.getLogger(__name__)

CLASS_BALANCE = ("none", "weighted_loss", "balanced_sampler", "dynamic")
SPLITS = ("train", "val", "test")


class _Source(Protocol):
    """The part of a clip source this module uses (see ``datamodules.sources.ClipSource``)."""

    name: str

    @property
    def vocabulary(self) -> LabelVocabulary | str: ...

    @property
    def folds(self) -> list[int]: ...

    def clips(self) -> list[ClipRecord]: ...


# ------------------------------------------------------------------------------------------------------- splitting


def stratified_holdout(
    ids: Sequence[str], labels: Sequence[int], fraction: float, rng: np.random.Generator,
    groups: Sequence[str | None] | None = None,
) -> tuple[list[str], list[str]]:
    """Split ``ids`` into ``(keep, held)`` with about ``fraction`` of them held out, stratified by label.

    Without ``groups``: exactly ``round(fraction * len(ids))`` held out. Per-class quotas use largest remainders, so
    small classes are represented as fairly as the total allows, and a class never loses its last clip to the
    held-out part (it must stay learnable).

    With ``groups`` (one subject name per id): whole groups are held out, so no subject is on both sides. The held
    part is the first fold of scikit-learn's ``StratifiedGroupKFold`` with ``round(1 / fraction)`` folds, which keeps
    the class proportions as close as whole groups allow; the held count is then only about ``fraction``. Ids
    whose group is ``None`` form a group each.

    Classes are visited in sorted order and ids in input order, so the result depends only on the inputs and the
    generator's seed: every process and every rerun computes the same split. Both outputs keep the input order.
    """
    if not 0.0 <= fraction < 1.0:
        raise ValueError(f"a held-out fraction must be in [0, 1), got {fraction}")
    if groups is not None and fraction > 0.0 and len(ids) > 1:
        return _grouped_holdout(ids, labels, fraction, rng, groups)
    members: dict[int, list[str]] = {}
    for cid, y in zip(ids, labels):
        members.setdefault(int(y), []).append(cid)
    quota = {c: fraction * len(m) for c, m in members.items()}
    take = {c: min(math.floor(q), len(members[c]) - 1) for c, q in quota.items()}
    remaining = round(fraction * len(ids)) - sum(take.values())
    for c in sorted(members, key=lambda c: (-(quota[c] - math.floor(quota[c])), c)):
        if remaining <= 0:
            break
        if take[c] < len(members[c]) - 1:
            take[c] += 1
            remaining -= 1
    held: set[str] = set()
    for c in sorted(members):
        perm = rng.permutation(len(members[c]))
        held.update(members[c][i] for i in perm[: take[c]])
    return [c for c in ids if c not in held], [c for c in ids if c in held]


def _grouped_holdout(ids: Sequence[str], labels: Sequence[int], fraction: float, rng: np.random.Generator,
                     groups: Sequence[str | None]) -> tuple[list[str], list[str]]:
    from sklearn.model_selection import StratifiedGroupKFold

    names = [g if g is not None else f"\0clip:{cid}" for cid, g in zip(ids, groups)]
    n_groups = len(set(names))
    if n_groups < 2:
        raise ValueError(f"a subject-grouped split needs at least 2 subjects, got {n_groups}")
    y = np.asarray(labels, dtype=np.int64)
    # StratifiedGroupKFold refuses more folds than the largest class has clips (a small own data set with a
    # subject column: 8 clips per class and val_fraction 0.1 asked for 10): hold out one of fewer, larger folds.
    biggest = int(np.bincount(y).max())
    if biggest < 2:
        raise ValueError(f"a subject-grouped split of {len(ids)} clips needs a class with at least 2 clips; every "
                         "class has 1")
    n_splits = min(max(2, round(1.0 / fraction)), n_groups, biggest)
    # StratifiedGroupKFold warns when a class has fewer members than folds; that is expected on small data sets.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=int(rng.integers(2**31 - 1)))
        _, held_idx = next(splitter.split(np.zeros(len(ids)), y, names))
    held = {ids[i] for i in held_idx}
    return [c for c in ids if c not in held], [c for c in ids if c in held]


def split_clips(records: Sequence[ClipRecord], labels: dict[str, int], folds: Sequence[int], fold: int | None,
                test_fraction: float, val_fraction: float, seed: int, source_name: str) -> dict[str, list[str]]:
    """Clip ids of ``train``/``val``/``test`` for a source's protocol: its folds, its fixed split, or a seeded
    stratified (subject-grouped, where records name subjects) test split; validation is carved from the training pool.

    The one definition of the split: the feature DataModule and ``finetune-frames`` both call it, so a frame encoder
    fine-tuned on a seed's training photos never saw that seed's test photos.
    """
    subjects = {r.clip_id: r.subject for r in records if r.subject is not None}

    def groups(ids: list[str]) -> list[str | None] | None:
        return [subjects.get(c) for c in ids] if subjects else None

    name = source_name
    if folds:
        if fold not in folds:
            raise ValueError(f"{name} is a {len(folds)}-fold protocol: set fold to one of {folds} "
                             f"(got {fold})")
        test = [r.clip_id for r in records if r.test_fold == fold]
        pool = [r.clip_id for r in records if r.test_fold != fold]
        if not test:
            raise ValueError(f"{name}: fold {fold} has no test clips")
        explicit_val: list[str] = []
    else:
        if fold is not None:
            raise ValueError(f"{name} has no folds, but fold={fold} was given: leave fold unset "
                             "(running several 'folds' would repeat the same split)")
        if any(r.split for r in records):
            test = [r.clip_id for r in records if r.split == "test"]
            explicit_val = [r.clip_id for r in records if r.split == "val"]
            pool = [r.clip_id for r in records if r.split not in ("test", "val")]
        else:  # no protocol (image folders): a seeded stratified test split
            ids = [r.clip_id for r in records]
            pool, test = stratified_holdout(ids, [labels[c] for c in ids], test_fraction,
                                            seed_rng(seed, 0), groups(ids))
            explicit_val = []
    if explicit_val:
        log.info("%s: using the source's %d clips with split='val' for validation (val_fraction unused)",
                 name, len(explicit_val))
        train, val = pool, explicit_val
    else:
        train, val = stratified_holdout(pool, [labels[c] for c in pool], val_fraction,
                                        seed_rng(seed, 1, fold or 0), groups(pool))
    return {"train": train, "val": val, "test": test}


# ------------------------------------------------------------------------------------------------------- balancing


def class_sampling_weights(labels: Sequence[int], num_classes: int, balance: float) -> np.ndarray:
    """Per-sample weights whose class totals follow ``w_c ∝ n_c ** (1 - balance)``.

    ``balance`` 0 is the natural distribution (every clip equally likely), 1 is class-balanced (every class equally
    likely); in between interpolates. Per sample that is ``n_c ** -balance``.
    """
    y = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(y, minlength=num_classes).astype(np.float64)
    per_class = np.where(counts > 0, np.maximum(counts, 1.0) ** -float(balance), 0.0)
    return per_class[y]


def dynamic_sampling_weights(epoch: int, labels: Sequence[int], num_classes: int, max_epochs: int) -> np.ndarray:
    """The "dynamic" schedule: ``w_c ∝ n_c ** (1 - e / E)`` at epoch ``e`` of ``E = max_epochs``.

    Early epochs see the natural distribution (learn the common, well-sampled classes and a good representation),
    later ones move towards balanced sampling (stop neglecting rare classes, which UAR weighs as much as common
    ones). ``e / E`` is clamped to [0, 1], so epochs beyond ``max_epochs`` stay balanced.
    """
    return class_sampling_weights(labels, num_classes, min(max(epoch / max_epochs, 0.0), 1.0))


def _dist_world() -> tuple[int, int]:
    """``(num_replicas, rank)`` from torch.distributed when initialised, else a single process."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class DistributedWeightedSampler(DistributedSampler):
    """Weighted sampling with replacement, one draw per epoch shared by all ranks, each rank taking a disjoint share.

    Every rank draws the same ``num_samples`` indices from a generator seeded by ``seed + epoch``, then keeps
    positions ``rank, rank + R, ...``: the ranks' shares partition the epoch's sample. ``weights`` is an array of
    per-sample weights or a function ``epoch -> weights`` (for schedules such as "dynamic").

    It subclasses ``DistributedSampler`` so that Lightning sees a sampler that already handles distribution and does
    not wrap it a second time; Lightning calls ``set_epoch`` at every epoch start.
    """

    def __init__(
        self,
        weights: Sequence[float] | np.ndarray | Callable[[int], np.ndarray],
        num_samples: int,
        num_replicas: int | None = None,
        rank: int | None = None,
        seed: int = 0,
    ) -> None:
        # DistributedSampler.__init__ insists on an initialised process group; this one also works without one.
        world, own_rank = _dist_world()
        self.num_replicas = world if num_replicas is None else int(num_replicas)
        self.rank = own_rank if rank is None else int(rank)
        if not 0 <= self.rank < self.num_replicas:
            raise ValueError(f"rank {self.rank} is outside [0, {self.num_replicas})")
        self._weights = weights
        self.epoch = 0
        self.seed = int(seed)
        self.shuffle = True
        self.drop_last = False
        self.num_samples = math.ceil(int(num_samples) / self.num_replicas)  # per rank
        self.total_size = self.num_samples * self.num_replicas

    def weights(self, epoch: int) -> np.ndarray:
        w = self._weights(epoch) if callable(self._weights) else self._weights
        return np.asarray(w, dtype=np.float64)

    def epoch_indices(self) -> list[int]:
        """The whole epoch's sample (all ranks), in the order the ranks interleave it."""
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        w = torch.from_numpy(self.weights(self.epoch))
        return torch.multinomial(w, self.total_size, replacement=True, generator=g).tolist()

    def __iter__(self) -> Iterator[int]:
        return iter(self.epoch_indices()[self.rank:self.total_size:self.num_replicas])

    def __len__(self) -> int:
        return self.num_samples

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


# --------------------------------------------------------------------------------------------------------- dataset


class FeatureDataset(WorkerSeededDataset):
    """Clips of one split: TSN-sampled slices of every selected store, read from the memory maps on demand.

    Training draws the random frame offsets from the worker's generator (:class:`WorkerSeededDataset`: every epoch
    sees other frames, and a seeded run repeats exactly). The same offsets are used for every modality of a clip, so
    the modalities stay aligned in time.

    ``short_clips`` ("stretch" or "pad") says what a clip shorter than ``num_frames`` becomes (see
    :func:`datamodules.sampling.segment_indices`): stretched, a photo is a still video of ``num_frames`` valid
    copies of its frame. ``frame_jitter`` (training only, default 0) adds independent Gaussian noise to every
    sampled frame of every modality, ``frame_jitter * std(frame) * N(0, 1)`` per column with ``std(frame)`` the
    standard deviation over that frame's columns: the copies of a stretched photo then differ a little, as the
    frames of a still video do (codec noise, small moves, light), instead of being bit-identical.
    """

    def __init__(
        self,
        stores: dict[str, FeatureStore],
        clip_ids: Sequence[str],
        labels: Sequence[int],
        num_frames: int,
        train: bool,
        seed: int = 0,
        short_clips: str = "stretch",
        frame_jitter: float = 0.0,
    ) -> None:
        if len(clip_ids) != len(labels):
            raise ValueError(f"{len(clip_ids)} clip ids but {len(labels)} labels")
        if short_clips not in SHORT_CLIPS:
            raise ValueError(f"short_clips={short_clips!r} is not one of {list(SHORT_CLIPS)}")
        if not 0.0 <= frame_jitter < 10.0 or not math.isfinite(frame_jitter):
            raise ValueError(f"frame_jitter must be in [0, 10), got {frame_jitter}")
        self.stores = stores
        self.clip_ids = list(clip_ids)
        self.labels = [int(y) for y in labels]
        self.num_frames = int(num_frames)
        self.train = train
        self.seed = int(seed)
        self.short_clips = short_clips
        self.frame_jitter = float(frame_jitter)

    def __len__(self) -> int:
        return len(self.clip_ids)

    def __getitem__(self, i: int) -> dict[str, Any]:
        cid = self.clip_ids[i]
        sub_seed = int(self.generator().integers(2**63)) if self.train else None
        features: dict[str, torch.Tensor] = {}
        valid: dict[str, torch.Tensor] = {}
        sampled: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # by clip length: modalities usually share one
        for m, store in self.stores.items():
            f, v = store.clip(cid)
            n = len(f)
            if n == 0:  # a failed or empty clip: all slots padded, nothing to read
                features[m] = torch.zeros(self.num_frames, store.dim, dtype=torch.float32)
                valid[m] = torch.zeros(self.num_frames, dtype=torch.bool)
                continue
            if n not in sampled:  # every length draws from the same sub-seed: modalities stay aligned in time
                rng = np.random.default_rng(sub_seed) if sub_seed is not None else None
                sampled[n] = segment_indices(n, self.num_frames, self.train, rng, self.short_clips)
            idx, pad = sampled[n]
            features[m] = torch.from_numpy(f[idx]).float()  # float16 -> float32 in torch: ~4x faster than numpy's
            valid[m] = torch.from_numpy(v[idx] & ~pad)
            if self.train and self.frame_jitter > 0.0:
                features[m] = self._jitter(features[m], sub_seed, m)
        return {"features": features, "valid": valid, "label": torch.tensor(self.labels[i], dtype=torch.int64),
                "clip_id": cid}

    def _jitter(self, x: torch.Tensor, sub_seed: int | None, modality: str) -> torch.Tensor:
        """``x [T, D]`` plus per-frame Gaussian noise scaled by each frame's own spread (seeded per clip draw)."""
        g = torch.Generator().manual_seed((int(sub_seed or 0) + sum(map(ord, modality))) % 2**63)
        scale = torch.nan_to_num(x.std(dim=1, keepdim=True), nan=0.0, posinf=0.0) * self.frame_jitter
        return x + scale * torch.randn(x.shape, generator=g)


# ------------------------------------------------------------------------------------------------------ datamodule


@dataclass(frozen=True)
class DroppedClip:
    """A clip taken out of its split because it holds nothing usable (``split``: where the split had put it)."""

    clip_id: str
    split: str
    reason: str


def is_random_weights_store(meta: dict[str, Any]) -> bool:
    """A store whose extractor ran with random weights (meta ``random_weights``; older stores: their
    ``weights_source`` says "random init")."""
    return bool(meta.get("random_weights")) or "random init" in str(meta.get("weights_source") or "")


def modality_keys(modalities: Sequence[str]) -> list[str]:
    """Batch keys of the selected stores: the modality name without a ``/<extractor>-<hash>`` pin, unless two
    entries share a name (two extractors of one modality), then the full strings. Models and predict-video use
    the same keys, so they must come from here."""
    heads = [m.split("/")[0] for m in modalities]
    return heads if len(set(heads)) == len(heads) else list(modalities)


class FeatureDataModule(L.LightningDataModule):
    """Cached features of ``modalities`` for one clip source and fold.

    ``class_balance``:
      - ``"none"``: plain shuffling (under DDP Lightning injects its DistributedSampler).
      - ``"weighted_loss"``: only computes ``class_weights`` (inverse frequency, mean 1) for the loss.
      - ``"balanced_sampler"``: each epoch draws ``len(train)`` clips with replacement, every class equally likely.
      - ``"dynamic"``: like the balanced sampler, but class probabilities move from natural to balanced over
        training, ``w_c ∝ n_c ** (1 - e / E)`` with ``E = trainer.max_epochs`` (see :func:`dynamic_sampling_weights`).

    Validation (checkpoint selection) is always carved from the training pool, never from the test clips; a source
    whose records carry ``split == "val"`` (a manifest) supplies its own validation clips instead.

    Unusable clips (extraction failed in a selected store, or no valid frame in any of them) are dropped from every
    split after splitting, with one warning naming each clip, its split and the reason; they are listed in
    ``dropped`` (and in the run's ``results.json``). ``strict=True`` raises ``ValueError`` with that list instead.
    Classes that end up missing from a non-empty split are logged and listed in ``short_classes``.

    Provenance (``datamodules.provenance.check_sources``): stores that hold one clip extracted from different files
    are refused (``ProvenanceError``, naming the clip and both stores); clips whose source changed since extraction
    (another file under the same relative path, modified, gone) are reported in one warning line with the command that
    refreshes them, and refused when ``strict_provenance`` (``--data.strict_provenance true``), which also refuses
    stores packed before provenance was recorded.

    ``short_clips``: ``"stretch"`` (default) spreads a clip shorter than ``num_frames`` over every slot, all valid (a
    photo becomes a still video of ``num_frames`` copies, as a video window of it would be); ``"pad"`` shows its
    frames once and masks the rest (a photo is one valid token). ``frame_jitter``: per-frame Gaussian feature noise
    in training, as a fraction of each frame's feature spread (default 0). See :class:`FeatureDataset`.
    """

    def __init__(
        self,
        source: _Source,
        store_root: str,
        modalities: list[str],
        num_frames: int = 16,
        fold: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 42,
        batch_size: int = 32,
        num_workers: int = 2,
        class_balance: str = "none",
        vocabulary: str | None = None,
        strict: bool = False,
        strict_provenance: bool = False,
        allow_random_weights: bool = False,
        short_clips: str = "stretch",
        frame_jitter: float = 0.0,
    ) -> None:
        super().__init__()
        if short_clips not in SHORT_CLIPS:
            raise ValueError(f"short_clips={short_clips!r} is not one of {list(SHORT_CLIPS)}")
        if not 0.0 <= frame_jitter < 10.0:
            raise ValueError(f"frame_jitter must be in [0, 10), got {frame_jitter}")
        if class_balance not in CLASS_BALANCE:
            raise ValueError(f"class_balance={class_balance!r} is not one of {list(CLASS_BALANCE)}")
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        if batch_size < 1 or num_workers < 0:
            raise ValueError(f"batch_size must be >= 1 and num_workers >= 0, got {batch_size} and {num_workers}")
        if not modalities:
            raise ValueError("modalities is empty: name at least one feature store (e.g. ['resnet18'])")
        if len(set(modalities)) != len(modalities):
            raise ValueError(f"a modality is listed twice: {modalities}")
        self.source = source
        self.store_root = str(store_root)
        self.modalities = list(modalities)
        self.num_frames = int(num_frames)
        self.fold = fold
        self.val_fraction = float(val_fraction)
        self.test_fraction = float(test_fraction)
        self.seed = int(seed)
        self.batch_size = int(batch_size)
        self.num_workers = int(num_workers)
        self.class_balance = class_balance
        self.strict_provenance = bool(strict_provenance)
        self.allow_random_weights = bool(allow_random_weights)
        self.short_clips = short_clips
        self.frame_jitter = float(frame_jitter)

        vocab: LabelVocabulary | str = vocabulary if vocabulary is not None else source.vocabulary
        self.vocabulary = vocab if isinstance(vocab, LabelVocabulary) else get_vocabulary(vocab)
        self.class_names: list[str] = list(self.vocabulary.classes)
        self.num_classes: int = len(self.class_names)

        self.stores, self.store_paths = self._open_stores()
        self.input_dims: dict[str, int] = {m: s.dim for m, s in self.stores.items()}

        records = source.clips()
        self.labels: dict[str, int] = {r.clip_id: self._label_index(r) for r in records}
        self.subjects: dict[str, str] = {r.clip_id: r.subject for r in records if r.subject is not None}
        self.split_ids: dict[str, list[str]] = self._split(records, list(source.folds))
        self._check_presence()
        used = {c for s in SPLITS for c in self.split_ids[s]}
        self.provenance_warnings = check_sources(self.stores, [r for r in records if r.clip_id in used],
                                                 self.store_root, self.strict_provenance)
        for line in self.provenance_warnings:
            log.warning("%s", line)
        self.dropped: dict[str, DroppedClip] = self._drop_unusable(strict)
        self.short_classes: dict[str, dict[str, int]] = self._report_short_classes()
        self.class_weights: list[float] | None = (
            self._inverse_frequency() if class_balance == "weighted_loss" else None
        )
        self._datasets: dict[str, FeatureDataset] = {}
        self._feature_stats: dict[str, ColumnStats] | None = None

    # -- construction helpers -------------------------------------------------------------------------------------

    def _open_stores(self) -> tuple[dict[str, FeatureStore], dict[str, Path]]:
        """Open (meta + index only) each store; keys are the modality names without ``/<extractor>-<hash>``."""
        keys = modality_keys(self.modalities)
        stores: dict[str, FeatureStore] = {}
        paths: dict[str, Path] = {}
        for key, m in zip(keys, self.modalities):
            path = find_store(self.store_root, m)  # StoreError naming the path and the extract command
            store = FeatureStore(path)
            built_for = (store.meta.get("source") or {}).get("name")
            if built_for != self.source.name:
                raise ValueError(
                    f"feature store {path} was built for dataset {built_for!r}, but the source is "
                    f"{self.source.name!r}. Point store_root at the stores of {self.source.name!r}, or extract them: "
                    f"`python -m fer_zoo extract --store_root <new root>` with this source."
                )
            if is_random_weights_store(store.meta) and not self.allow_random_weights:
                raise ValueError(
                    f"feature store {path} was extracted with randomly initialised weights "
                    f"({store.meta.get('weights_source')!r}): its features are not a frozen pretrained encoder's, so "
                    "a model trained on them means nothing. Extract with pretrained weights, or pass "
                    "allow_random_weights=True (--data.allow_random_weights true) in a test."
                )
            stores[key], paths[key] = store, path
        return stores, paths

    def _label_index(self, r: ClipRecord) -> int:
        if r.label is None:
            raise KeyError(f"clip {r.clip_id!r} has no label; the feature DataModule needs labelled clips")
        try:
            return self.vocabulary.index(r.label)
        except KeyError:
            raise KeyError(f"clip {r.clip_id!r}: label {r.label!r} is not in the {self.vocabulary.name!r} "
                           f"vocabulary {self.class_names}") from None

    def _split(self, records: list[ClipRecord], folds: list[int]) -> dict[str, list[str]]:
        return split_clips(records, self.labels, folds, self.fold, self.test_fraction, self.val_fraction, self.seed,
                           self.source.name)

    def _groups(self, ids: list[str]) -> list[str | None] | None:
        """Subjects of ``ids`` when the source names any (then seeded splits keep each subject on one side)."""
        return [self.subjects.get(c) for c in ids] if self.subjects else None

    def _check_presence(self) -> None:
        needed = [c for s in SPLITS for c in self.split_ids[s]]
        for m, store in self.stores.items():
            missing = [c for c in needed if c not in store]
            if missing:
                raise ValueError(
                    f"feature store {self.store_paths[m]} lacks {len(missing)} of the {len(needed)} clips of "
                    f"{self.source.name!r} (fold {self.fold}), e.g. {missing[:5]}. Clips added to the source since "
                    "extraction (new manifest rows)? Run the same `extract` again: it extracts only the missing "
                    "clips. A store built for another dataset or fold layout? Extract into a fresh store root."
                )

    @functools.cached_property
    def _store_health(self) -> dict[str, tuple[dict[str, str], dict[str, int]]]:
        return {m: (dict(zip(s.index["clip_id"], s.index["status"])),
                    dict(zip(s.index["clip_id"], s.index["valid_count"].astype(int))))
                for m, s in self.stores.items()}

    def _unusable(self, clip_id: str) -> str | None:
        """Why a clip holds nothing to learn from or score, else ``None``: extraction failed in any store (with the
        store's recorded reason), or not a single valid frame in any store (no face / body found anywhere)."""
        failed = [f"extraction failed in {m}: {self._reasons[m].get(clip_id) or 'no reason recorded'}"
                  for m, (status, _) in self._store_health.items() if status[clip_id] == "failed"]
        if failed:
            return "; ".join(failed)
        if all(count[clip_id] == 0 for _, count in self._store_health.values()):
            return f"no valid frame in any modality ({', '.join(self._store_health)})"
        return None

    @functools.cached_property
    def _reasons(self) -> dict[str, dict[str, str]]:
        return {m: {c: str(r) for c, r in zip(s.index["clip_id"], s.index["reason"]) if isinstance(r, str) and r}
                for m, s in self.stores.items()}

    def _drop_unusable(self, strict: bool) -> dict[str, DroppedClip]:
        """Take unusable clips out of every split (after splitting, so the split itself never depends on which
        modalities are selected), with one log line naming each and why; ``strict`` stops the run instead.

        An unusable clip kept in val or test would be scored as an all-padding input, silently moving the metrics.
        """
        dropped = {c: DroppedClip(c, split, why) for split in SPLITS for c in self.split_ids[split]
                   if (why := self._unusable(c)) is not None}
        if not dropped:
            return dropped
        shown = list(dropped.values())[:50]  # a whole broken data set would make an unreadable line
        listing = "; ".join(f"{d.clip_id} ({d.split}: {d.reason})" for d in shown)
        more = len(dropped) - len(shown)
        per_split = ", ".join(f"{n} {s}" for s in SPLITS if (n := sum(d.split == s for d in dropped.values())))
        if strict:
            tail = f"; ... and {more} more" if more else ""
            raise ValueError(f"{self.source.name}: {len(dropped)} clips are unusable ({per_split}) and strict=True: "
                             f"{listing}{tail}. Fix their files or paths and re-extract with --retry_failed true, "
                             "or remove them from the source, or set strict=False to drop them")
        for split in SPLITS:
            self.split_ids[split] = [c for c in self.split_ids[split] if c not in dropped]
        log.warning("%s: dropped %d unusable clips from the splits (%s): %s%s", self.source.name, len(dropped),
                    per_split, listing, f"; ... and {more} more (all in the run's results.json)" if more else "")
        return dropped

    def _report_short_classes(self) -> dict[str, dict[str, int]]:
        """Classes missing from a split they need to be in (too few clips for train, val and test to hold one
        each): their recall there is undefined and UAR averages over the classes present. Logged once, returned
        as ``{class: {split: clips}}``."""
        needed = [s for s in SPLITS if self.split_ids[s]]  # an empty split (val_fraction 0) needs nothing
        counts = {s: self.class_counts(s) for s in SPLITS}
        total = {c: sum(counts[s][c] for s in SPLITS) for c in self.class_names}
        short = {c: {s: counts[s][c] for s in SPLITS} for c in self.class_names
                 if any(counts[s][c] == 0 for s in needed)}
        if short:
            what = "; ".join(f"{c!r}: {total[c]} clips (" + ", ".join(f"{n} {s}" for s, n in v.items()) + ")"
                             for c, v in short.items())
            log.warning("%s: classes with too few clips for the split (train, val and test need one each; their "
                        "recall is undefined where they are missing): %s", self.source.name, what)
        return short

    def _inverse_frequency(self) -> list[float]:
        counts = np.bincount([self.labels[c] for c in self.split_ids["train"]], minlength=self.num_classes)
        absent = [self.class_names[i] for i in np.flatnonzero(counts == 0)]
        if absent:
            log.warning("classes without training clips get class weight 0: %s", absent)
        w = np.where(counts > 0, 1.0 / np.maximum(counts, 1), 0.0)
        return [float(x) for x in w * len(w) / w.sum()]

    def feature_stats(self) -> dict[str, ColumnStats]:
        """Per-column mean/std of every modality over the valid frames of the training split only (never val or
        test clips), computed once per DataModule; see :mod:`datamodules.feature_stats`. The model keeps them as
        buffers, so its checkpoints carry the transform."""
        if self._feature_stats is None:
            self._feature_stats = {m: self._column_stats(m, s) for m, s in self.stores.items()}
            for m, st in self._feature_stats.items():
                if st.floored:
                    log.info("%s: %d of %d columns barely vary on the training split; their std is floored",
                             m, st.floored, len(st.std))
        return self._feature_stats

    def _column_stats(self, modality: str, store: FeatureStore) -> ColumnStats:
        """A modality with no valid training frame at all (audio of photos: no soundtrack) is masked everywhere, so
        it carries no information to standardise: identity statistics and one warning, instead of stopping a run
        whose other modalities are fine. Any valid frame with NaN/inf still raises."""
        valid = train_rows(store, self.split_ids["train"])
        if not valid.any():
            log.warning("%s: no valid frame in the %d training clips (store %s): the model sees this modality fully "
                        "masked; its inputs are left unstandardised", modality, len(self.split_ids["train"]),
                        self.store_paths.get(modality, store.path))
            return ColumnStats(mean=np.zeros(store.dim), std=np.ones(store.dim), count=0, floored=0)
        return column_stats(store, self.split_ids["train"])

    # -- datasets and loaders -------------------------------------------------------------------------------------

    def dataset(self, split: str) -> FeatureDataset:
        """The dataset of ``split`` ("train", "val" or "test"), built once."""
        if split not in SPLITS:
            raise ValueError(f"split {split!r} is not one of {SPLITS}")
        if split not in self._datasets:
            ids = self.split_ids[split]
            self._datasets[split] = FeatureDataset(self.stores, ids, [self.labels[c] for c in ids],
                                                   self.num_frames, train=split == "train", seed=self.seed,
                                                   short_clips=self.short_clips, frame_jitter=self.frame_jitter)
        return self._datasets[split]

    def setup(self, stage: str | None = None) -> None:
        for split in SPLITS:
            self.dataset(split)

    def _pin_memory(self) -> bool:
        trainer = self._trainer_or_none()
        if trainer is not None:
            return trainer.strategy.root_device.type == "cuda"
        return torch.cuda.is_available()

    def _trainer_or_none(self) -> L.Trainer | None:
        return getattr(self, "trainer", None)

    def _loader(self, split: str, persistent: bool, dataset: Dataset | None = None, **kwargs: Any) -> DataLoader:
        return DataLoader(self.dataset(split) if dataset is None else dataset, batch_size=self.batch_size,
                          num_workers=self.num_workers, persistent_workers=persistent and self.num_workers > 0,
                          pin_memory=self._pin_memory(), drop_last=False, **kwargs)

    def train_sampler(self) -> DistributedWeightedSampler | None:
        """The epoch sampler of the chosen class balance; ``None`` means plain shuffling."""
        if self.class_balance not in ("balanced_sampler", "dynamic"):
            return None
        labels = np.array([self.labels[c] for c in self.split_ids["train"]], dtype=np.int64)
        weights: np.ndarray | Callable[[int], np.ndarray]
        if self.class_balance == "balanced_sampler":
            weights = class_sampling_weights(labels, self.num_classes, 1.0)
        else:
            trainer = self._trainer_or_none()
            max_epochs = trainer.max_epochs if trainer is not None else None
            if not max_epochs or max_epochs < 1:
                raise ValueError("class_balance='dynamic' needs a finite trainer.max_epochs (the schedule reaches "
                                 f"balanced sampling at the last epoch); got {max_epochs}")
            weights = functools.partial(dynamic_sampling_weights, labels=labels, num_classes=self.num_classes,
                                        max_epochs=max_epochs)
        return DistributedWeightedSampler(weights, num_samples=len(labels), seed=self.seed)

    def train_dataloader(self) -> DataLoader:
        ds = self.dataset("train")
        ds.rank = _dist_world()[1]
        sampler = self.train_sampler()
        if sampler is None:  # Lightning swaps in a DistributedSampler(shuffle=True) under DDP
            return self._loader("train", persistent=True, shuffle=True)
        return self._loader("train", persistent=True, sampler=sampler)

    def _eval_loader(self, split: str, persistent: bool) -> DataLoader:
        """Evaluation reads every clip exactly once, also under DDP.

        Lightning's default DistributedSampler pads the last rank with repeated clips, which would count those
        clips twice in UAR/WAR; :class:`~datamodules.eval_sampler.EvalSampler` gives ranks uneven shares instead,
        and torchmetrics sums the per-rank states, so DDP metrics equal single-process metrics. A split with fewer
        clips than ranks (1 validation clip, 2 processes) gives each rank left without a clip one stand-in that the
        model does not count (``counted=False`` in the batch), so that rank still runs every forward and collective.
        """
        world, rank = _dist_world()
        if world == 1:
            return self._loader(split, persistent=persistent, shuffle=False)
        dataset = self.dataset(split)
        sampler = EvalSampler(dataset, num_replicas=world, rank=rank)
        return self._loader(split, persistent=persistent, dataset=StandIn(dataset) if sampler.stand_in else None,
                            sampler=sampler)

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val", persistent=True)

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test", persistent=False)

    def predict_dataloader(self) -> DataLoader:
        return self._eval_loader("test", persistent=False)

    # -- reporting ------------------------------------------------------------------------------------------------

    def class_counts(self, split: str) -> dict[str, int]:
        counts = Counter(self.labels[c] for c in self.split_ids[split])
        return {name: counts.get(i, 0) for i, name in enumerate(self.class_names)}

    def describe(self) -> dict[str, Any]:
        """Everything needed to log what a run trained and tested on."""
        return {
            "source": self.source.name,
            "fold": self.fold,
            "vocabulary": self.vocabulary.name,
            "modalities": {m: str(p) for m, p in self.store_paths.items()},
            "input_dims": dict(self.input_dims),
            "num_frames": self.num_frames,
            "short_clips": self.short_clips,
            "frame_jitter": self.frame_jitter,
            "class_balance": self.class_balance,
            "class_weights": self.class_weights,
            "sizes": {s: len(self.split_ids[s]) for s in SPLITS},
            "dropped": len(self.dropped),
            "class_counts": {s: self.class_counts(s) for s in SPLITS},
            "seed": self.seed,
        }
