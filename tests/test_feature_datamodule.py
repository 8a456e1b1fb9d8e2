"""TSN sampling and the feature DataModule, on small real stores built with ShardWriter + pack."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
from torch.utils.data import RandomSampler
from torch.utils.data.distributed import DistributedSampler

from datamodules.feature_datamodule import (
    DistributedWeightedSampler,
    FeatureDataModule,
    class_sampling_weights,
    dynamic_sampling_weights,
    stratified_holdout,
)
from datamodules.feature_store import ClipResult, ShardWriter, StoreError, pack, store_path
from datamodules.labels import LabelVocabulary
from datamodules.records import ClipRecord
from datamodules.sampling import segment_indices

VOCAB = LabelVocabulary("fake3", ("anger", "happiness", "neutral"))
DIMS = {"face": 6, "pose": 4}
N_CLIPS = 60
FAILED = "c007"  # extraction failed in the "face" store
ALL_INVALID = "c011"  # extracted, but no valid frame in either store


@dataclass
class FakeSource:
    """The interface of datamodules.sources: name, vocabulary, folds, clips()."""

    records: list[ClipRecord]
    name: str = "fake"
    vocabulary: LabelVocabulary = VOCAB
    folds: list[int] = field(default_factory=list)

    def clips(self) -> list[ClipRecord]:
        return list(self.records)


def _label(i: int) -> str:  # imbalanced 3:2:1
    return VOCAB.classes[0 if i % 6 < 3 else 1 if i % 6 < 5 else 2]


def _fold(i: int) -> int:  # whole blocks of 6 per fold: every fold keeps the 3:2:1 imbalance
    return 1 + (i // 6) % 3


def _length(i: int) -> int:
    return [3, 16, 40, 1, 25, 9, 64][i % 7]


def kfold_source(name: str = "fake") -> FakeSource:
    recs = [ClipRecord(f"c{i:03d}", f"/clips/c{i:03d}.mp4", _label(i), None, _fold(i)) for i in range(N_CLIPS)]
    return FakeSource(recs, name=name, folds=[1, 2, 3])


def build_store(root: Path, modality: str, dim: int, clip_ids: list[str], dataset: str = "fake") -> Path:
    rng = np.random.default_rng(dim)
    path = store_path(root, modality, f"fake{modality}", "abcd1234")
    writer = ShardWriter(path, {"extractor": modality, "dim": dim}, flush_every=10_000)
    for cid in clip_ids:
        i = int(cid[1:])
        if cid == FAILED and modality == "face":
            writer.add(ClipResult.failed(cid, "decoder error"))
            continue
        n = _length(i)
        valid = rng.random(n) > 0.2
        if cid == ALL_INVALID:
            valid[:] = False
        # column 0 holds the frame number, column 1 the clip number (exact in float16), so tests see what was read
        feats = rng.standard_normal((n, dim)).astype(np.float32)
        feats[:, 0], feats[:, 1] = np.arange(n), i
        writer.add(ClipResult(cid, feats, valid, np.arange(n), np.arange(n) / 25.0))
    writer.flush()
    pack(path, clip_ids, {"dim": dim, "modality": modality, "extractor": f"fake{modality}",
                          "source": {"name": dataset, "num_clips": len(clip_ids)}})
    return path


@pytest.fixture(scope="module")
def store_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("stores")
    ids = [f"c{i:03d}" for i in range(N_CLIPS)]
    for m, d in DIMS.items():
        build_store(root, m, d, ids)
    return root


def make_dm(store_root: Path, source: FakeSource | None = None, **kw: object) -> FeatureDataModule:
    args: dict = dict(source=source or kfold_source(), store_root=str(store_root), modalities=["face", "pose"],
                      num_frames=8, fold=1, val_fraction=0.2, batch_size=4, num_workers=0)
    args.update(kw)
    return FeatureDataModule(**args)


def made(dm: FeatureDataModule, split: str) -> set[str]:
    """The clips of ``split`` as the split made it, before unusable clips were dropped from it."""
    return set(dm.split_ids[split]) | {d.clip_id for d in dm.dropped.values() if d.split == split}


# ----------------------------------------------------------------------------------------------------- sampling


def test_eval_takes_segment_middles() -> None:
    idx, pad = segment_indices(32, 8, train=False, rng=None)
    assert idx.dtype == np.int64 and pad.dtype == np.bool_
    assert idx.tolist() == [2, 6, 10, 14, 18, 22, 26, 30]
    assert not pad.any()
    idx2, _ = segment_indices(32, 8, train=False, rng=np.random.default_rng(0))
    assert idx2.tolist() == idx.tolist()


def test_train_draws_one_frame_inside_each_segment() -> None:
    rng = np.random.default_rng(0)
    length, n = 37, 8
    seen: list[set[int]] = [set() for _ in range(n)]
    for _ in range(300):
        idx, pad = segment_indices(length, n, train=True, rng=rng)
        assert not pad.any() and np.all(np.diff(idx) > 0)
        for k, j in enumerate(idx):
            lo, hi = k * length // n, (k + 1) * length // n
            assert lo <= j < hi
            seen[k].add(int(j))
    for k in range(n):  # every frame of every segment is reachable
        assert seen[k] == set(range(k * length // n, (k + 1) * length // n))


def test_short_and_empty_clips_are_padded() -> None:
    for train in (False, True):
        idx, pad = segment_indices(3, 5, train=train, rng=np.random.default_rng(1), short_clips="pad")
        assert idx.tolist() == [0, 1, 2, 2, 2]
        assert pad.tolist() == [False, False, False, True, True]
    idx, pad = segment_indices(0, 4, train=False, rng=None)
    assert pad.all() and idx.shape == (4,)
    idx, pad = segment_indices(8, 8, train=False, rng=None)
    assert idx.tolist() == list(range(8)) and not pad.any()


@pytest.mark.parametrize("length,n", [(1, 16), (3, 5), (5, 16), (15, 16)])
def test_short_clips_are_stretched_over_every_slot(length: int, n: int) -> None:
    """The default: a short clip fills all slots, in order, every frame about n/length times; a photo (length 1)
    becomes n valid copies of its frame, as a still video would."""
    idx, pad = segment_indices(length, n, train=False, rng=None)
    assert not pad.any() and idx.dtype == np.int64
    assert np.all(np.diff(idx) >= 0) and idx[0] == 0 and idx[-1] == length - 1
    counts = np.bincount(idx, minlength=length)
    assert counts.min() >= n // length and counts.max() <= -(-n // length)
    assert idx.tolist() == [int((k + 0.5) * length / n) for k in range(n)]
    rng = np.random.default_rng(0)
    for _ in range(50):  # training: a random point inside each slot's span, still in order and complete
        tidx, tpad = segment_indices(length, n, train=True, rng=rng)
        assert not tpad.any() and np.all(np.diff(tidx) >= 0)
        assert all(k * length // n <= j <= ((k + 1) * length - 1) // n for k, j in enumerate(tidx))
    if length == 1:
        assert idx.tolist() == [0] * n


def test_unknown_short_clip_mode_is_refused(store_root: Path) -> None:
    with pytest.raises(ValueError, match="short_clips"):
        segment_indices(3, 8, train=False, short_clips="loop")
    with pytest.raises(ValueError, match="short_clips"):
        make_dm(store_root, short_clips="repeat")
    with pytest.raises(ValueError, match="frame_jitter"):
        make_dm(store_root, frame_jitter=-0.1)


def test_training_needs_an_rng() -> None:
    with pytest.raises(ValueError, match="rng"):
        segment_indices(10, 4, train=True, rng=None)


# ------------------------------------------------------------------------------------------------ batches


def test_batch_shapes_and_dtypes(store_root: Path) -> None:
    dm = make_dm(store_root)
    assert dm.input_dims == DIMS
    assert dm.num_classes == 3 and dm.class_names == list(VOCAB.classes)
    assert dm.class_weights is None
    for loader in (dm.train_dataloader(), dm.val_dataloader(), dm.test_dataloader(), dm.predict_dataloader()):
        assert loader.pin_memory is False
        batch = next(iter(loader))
        b = len(batch["clip_id"])
        assert isinstance(batch["clip_id"], list) and all(isinstance(c, str) for c in batch["clip_id"])
        for m, d in DIMS.items():
            assert batch["features"][m].shape == (b, 8, d) and batch["features"][m].dtype == torch.float32
            assert batch["valid"][m].shape == (b, 8) and batch["valid"][m].dtype == torch.bool
        assert batch["label"].shape == (b,) and batch["label"].dtype == torch.int64
    assert isinstance(dm.train_dataloader().sampler, RandomSampler)  # "none": Lightning adds DDP sharding itself


def test_padded_slots_are_invalid_and_eval_reads_middles(store_root: Path) -> None:
    dm = make_dm(store_root, short_clips="pad")
    test = dm.dataset("test")
    for i, cid in enumerate(test.clip_ids):
        item = test[i]
        n = _length(int(cid[1:]))
        for m, store in dm.stores.items():
            f, v = store.clip(cid)
            if len(f) == 0:
                assert not item["valid"][m].any()
                continue
            idx, pad = segment_indices(len(f), 8, train=False, rng=None, short_clips="pad")
            assert item["valid"][m].tolist() == (np.asarray(v[idx]) & ~pad).tolist()
            assert not item["valid"][m][n:].any()
            assert item["features"][m][:, 0].tolist() == idx.astype(float).tolist()
            assert (item["features"][m][:, 1] == int(cid[1:])).all()


def test_a_photo_becomes_a_still_video_of_valid_copies(store_root: Path) -> None:
    """Default short_clips="stretch": a 1-frame clip is num_frames valid copies of its frame (eval and train);
    frame_jitter perturbs each training copy independently, by about the asked fraction of the frame's spread,
    and never touches evaluation."""
    dm = make_dm(store_root, frame_jitter=0.1)
    assert dm.describe()["short_clips"] == "stretch" and dm.describe()["frame_jitter"] == 0.1
    for split in ("test", "train"):
        ds = dm.dataset(split)
        i = next(k for k, c in enumerate(ds.clip_ids) if _length(int(c[1:])) == 1 and dm.stores["face"].clip(c)[1][0])
        f, v = dm.stores["face"].clip(ds.clip_ids[i])
        item = ds[i]
        assert item["valid"]["face"].all() and item["valid"]["face"].shape == (8,)
        x = item["features"]["face"]
        ref = torch.from_numpy(np.asarray(f[0], np.float32)).expand(8, -1)
        if split == "test":
            assert torch.equal(x, ref)
        else:
            noise = x - ref
            assert not torch.equal(x[0], x[1])  # copies differ
            rel = float(noise.std() / ref[0].std())
            assert 0.05 < rel < 0.2, rel


def test_training_items_vary_and_stay_aligned_across_modalities(store_root: Path) -> None:
    dm = make_dm(store_root)
    train = dm.dataset("train")
    i = next(k for k, c in enumerate(train.clip_ids) if _length(int(c[1:])) == 64)
    draws = [train[i] for _ in range(5)]
    frames = [tuple(d["features"]["face"][:, 0].tolist()) for d in draws]
    assert len(set(frames)) > 1  # another draw, other frames
    for d in draws:  # same frames read from both stores
        assert d["features"]["face"][:, 0].tolist() == d["features"]["pose"][:, 0].tolist()


def test_worker_processes_read_the_stores(store_root: Path) -> None:
    dm = make_dm(store_root, num_workers=2)
    loader = dm.train_dataloader()
    assert loader.persistent_workers
    seen = [c for batch in loader for c in batch["clip_id"]]
    assert sorted(seen) == sorted(dm.split_ids["train"])


# --------------------------------------------------------------------------------------------------- splits


def test_kfold_splits_disjoint_stratified_deterministic(store_root: Path) -> None:
    src = kfold_source()
    for fold in src.folds:
        a, b = make_dm(store_root, fold=fold), make_dm(store_root, fold=fold)
        assert a.split_ids == b.split_ids  # same ids on every instantiation
        train, val, test = (made(a, s) for s in ("train", "val", "test"))
        assert not (train & val) and not (train & test) and not (val & test)
        assert test == {r.clip_id for r in src.records if r.test_fold == fold}  # test clips never in val
        assert train | val | test == {r.clip_id for r in src.records}
        pool = [a.labels[c] for c in train | val]
        pool_counts = Counter(pool)
        val_counts = Counter(a.labels[c] for c in val)
        assert sum(val_counts.values()) == round(0.2 * len(pool))
        for c, n in pool_counts.items():  # stratified: each class within one clip of its share
            assert abs(val_counts[c] - 0.2 * n) <= 1
    assert make_dm(store_root, seed=1).split_ids["val"] != make_dm(store_root, seed=2).split_ids["val"]


def test_stratified_holdout_keeps_a_clip_of_every_class() -> None:
    ids = [f"x{i}" for i in range(11)]
    labels = [0] * 9 + [1, 2]
    keep, held = stratified_holdout(ids, labels, 0.5, np.random.default_rng(0))
    assert len(held) == 5  # round(5.5) = 6 wanted, but classes 1 and 2 cannot give up their only clip
    assert {labels[ids.index(c)] for c in keep} == {0, 1, 2}
    assert keep == [c for c in ids if c in set(keep)]  # input order kept


def test_grouped_holdout_never_splits_a_subject() -> None:
    # 30 subjects with 1-6 clips each, 3 classes; the held part must take whole subjects only.
    rng = np.random.default_rng(0)
    ids, labels, groups = [], [], []
    for s in range(30):
        for k in range(int(rng.integers(1, 7))):
            ids.append(f"s{s}_{k}")
            labels.append(int(rng.integers(0, 3)))
            groups.append(f"s{s}")
    keep, held = stratified_holdout(ids, labels, 0.2, np.random.default_rng(5), groups)
    subj = dict(zip(ids, groups))
    assert held and keep and not {subj[c] for c in keep} & {subj[c] for c in held}
    assert sorted(keep + held) == sorted(ids)
    assert 0.08 <= len(held) / len(ids) <= 0.35  # about the fraction (whole subjects only)
    again = stratified_holdout(ids, labels, 0.2, np.random.default_rng(5), groups)
    assert again == (keep, held)  # deterministic for a seed


def test_grouped_holdout_of_a_small_set_with_a_few_subjects() -> None:
    """16 clips, 8 per class, 3 named subjects and 13 clips without one: val_fraction 0.1 asks for 10 folds, more
    than either class has clips (scikit-learn refuses); one of 8 folds is held out instead."""
    ids = [f"c{i}" for i in range(16)]
    labels = [i % 2 for i in range(16)]
    groups = ["s1", "s2", "s2"] + [None] * 13
    keep, held = stratified_holdout(ids, labels, 0.1, np.random.default_rng(0), groups)
    assert 1 <= len(held) <= 3 and sorted(keep + held) == sorted(ids)
    assert not ({"c1", "c2"} & set(held) and {"c1", "c2"} & set(keep))  # subject s2 stays on one side
    with pytest.raises(ValueError, match="needs a class with at least 2 clips; every class has 1"):
        stratified_holdout(["a", "b", "c"], [0, 1, 2], 0.5, np.random.default_rng(0), ["x", "y", None])


def test_fold_is_required_for_kfold_sources(store_root: Path) -> None:
    for fold in (None, 4):
        with pytest.raises(ValueError, match=r"\[1, 2, 3\]"):
            make_dm(store_root, fold=fold)


def test_train_test_source_and_no_protocol_source(store_root: Path) -> None:
    recs = [ClipRecord(f"c{i:03d}", "p", _label(i), "test" if i % 4 == 0 else "train") for i in range(N_CLIPS)]
    dm = make_dm(store_root, source=FakeSource(recs), fold=None)
    assert made(dm, "test") == {r.clip_id for r in recs if r.split == "test"}
    assert not made(dm, "val") & made(dm, "test")
    assert len(made(dm, "val")) == round(0.2 * len(recs) * 3 / 4)

    plain = [ClipRecord(r.clip_id, r.path, r.label) for r in recs]
    a = make_dm(store_root, source=FakeSource(plain), fold=None, test_fraction=0.25)
    b = make_dm(store_root, source=FakeSource(plain), fold=None, test_fraction=0.25)
    assert a.split_ids == b.split_ids
    assert len(made(a, "test")) == 15
    assert Counter(a.labels[c] for c in made(a, "test")) == {0: 8, 1: 5, 2: 2}  # 7.5, 5, 2.5: largest remainder
    with pytest.raises(ValueError, match="no folds"):
        make_dm(store_root, source=FakeSource(plain), fold=1)


# ----------------------------------------------------------------------------------------------- stores


def test_a_clip_missing_from_a_store_says_to_run_extract_again(store_root: Path) -> None:
    src = kfold_source()
    src.records.append(ClipRecord("c999", "/clips/new.mp4", "anger", None, 1))  # a row added after extraction
    with pytest.raises(ValueError, match=r"lacks 1 of the 61 clips of 'fake' \(fold 1\), e.g. \['c999'\]\. Clips "
                                         r"added to the source since extraction .* Run the same `extract` again"):
        make_dm(store_root, source=src)


def test_wrong_source_name(store_root: Path) -> None:
    with pytest.raises(ValueError) as err:
        make_dm(store_root, source=kfold_source(name="dfew"))
    msg = str(err.value)
    assert "'fake'" in msg and "'dfew'" in msg and str(store_root) in msg and "extract" in msg


def test_missing_modality_names_the_path(store_root: Path) -> None:
    with pytest.raises(StoreError) as err:
        make_dm(store_root, modalities=["face", "mesh"])
    assert str(store_root / "mesh") in str(err.value)


def test_store_lacking_clips(tmp_path: Path) -> None:
    build_store(tmp_path, "face", 6, [f"c{i:03d}" for i in range(30)])
    with pytest.raises(ValueError, match="another dataset or fold layout"):
        make_dm(tmp_path, modalities=["face"])


def test_explicit_store_folder(store_root: Path) -> None:
    dm = make_dm(store_root, modalities=["face/fakeface-abcd1234"])
    assert dm.input_dims == {"face": 6}


def test_label_outside_vocabulary(store_root: Path) -> None:
    src = kfold_source()
    src.records[5] = ClipRecord("c005", "p", "contempt", None, 3)
    with pytest.raises(KeyError, match="c005.*contempt"):
        make_dm(store_root, source=src)


@pytest.mark.parametrize("val_fraction", [0.0, 0.2])
@pytest.mark.parametrize("fold", [1, 2, 3])
def test_unusable_clips_are_dropped_from_every_split_with_one_line(store_root: Path, fold: int, val_fraction: float,
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="datamodules.feature_datamodule"):
        dm = make_dm(store_root, fold=fold, val_fraction=val_fraction)
    assert set(dm.dropped) == {FAILED, ALL_INVALID}
    for split in ("train", "val", "test"):
        assert not {FAILED, ALL_INVALID} & set(dm.split_ids[split]), f"an unusable clip stayed in {split}"
        assert not {FAILED, ALL_INVALID} & set(dm.dataset(split).clip_ids)
    assert dm.dropped[FAILED].reason == "extraction failed in face: decoder error"
    assert dm.dropped[ALL_INVALID].reason == "no valid frame in any modality (face, pose)"
    where = {c: ("test" if _fold(int(c[1:])) == fold else ("train", "val")) for c in (FAILED, ALL_INVALID)}
    assert all(dm.dropped[c].split in (w if isinstance(w, tuple) else (w,)) for c, w in where.items())
    lines = [r.getMessage() for r in caplog.records if "dropped" in r.getMessage()]
    assert len(lines) == 1, lines
    assert lines[0].startswith("fake: dropped 2 unusable clips from the splits")
    for c in (FAILED, ALL_INVALID):
        assert f"{c} ({dm.dropped[c].split}: {dm.dropped[c].reason})" in lines[0]
    assert dm.describe()["dropped"] == 2


def test_strict_stops_on_unusable_clips_naming_them(store_root: Path) -> None:
    with pytest.raises(ValueError, match=r"2 clips are unusable .* and strict=True: .*c007 \(\w+: extraction failed "
                                         r"in face: decoder error\); c011 \(\w+: no valid frame in any modality"):
        make_dm(store_root, strict=True)


def test_a_clip_valid_in_one_modality_is_kept(store_root: Path) -> None:
    """No valid frame in the pose store alone is not "nothing to learn from" when the face store has frames."""
    dm = make_dm(store_root, fold=1, modalities=["pose"])
    assert set(dm.dropped) == {ALL_INVALID, *[c for c in dm.labels if dm.stores["pose"].index.set_index(
        "clip_id").loc[c, "valid_count"] == 0]}
    assert FAILED not in dm.dropped  # it failed in the face store only, which is not selected


def test_a_class_too_small_for_the_split_is_reported(store_root: Path, caplog: pytest.LogCaptureFixture) -> None:
    recs = [ClipRecord(f"c{i:03d}", "p", "anger" if i < 20 else "happiness") for i in range(22)]
    recs.append(ClipRecord("c030", "p", "neutral"))  # one clip: it stays in train (never lost to a held-out part)
    ids = [r.clip_id for r in recs]
    src = FakeSource(recs, name="small")
    root = store_root.parent / "small_stores"
    if not root.exists():
        for m, d in DIMS.items():
            build_store(root, m, d, ids, dataset="small")
    with caplog.at_level("WARNING", logger="datamodules.feature_datamodule"):
        dm = make_dm(root, source=src, fold=None, val_fraction=0.2)
    assert dm.short_classes == {"happiness": {"train": 1, "val": 0, "test": 1},
                                "neutral": {"train": 1, "val": 0, "test": 0}}
    msg = next(r.getMessage() for r in caplog.records if "too few clips" in r.getMessage())
    assert "'neutral': 1 clips (1 train, 0 val, 0 test)" in msg and "'happiness': 2 clips" in msg
    assert "'anger'" not in msg


# -------------------------------------------------------------------------------------------------- balance


def test_class_weights_inverse_frequency(store_root: Path) -> None:
    dm = make_dm(store_root, class_balance="weighted_loss")
    counts = np.array(list(dm.class_counts("train").values()))
    w = np.array(dm.class_weights)
    assert w.shape == (3,) and np.isclose(w.mean(), 1.0)
    assert np.allclose(w * counts, (w * counts)[0])  # w_c ∝ 1 / n_c
    assert w[2] > w[1] > w[0]


def test_unknown_class_balance(store_root: Path) -> None:
    with pytest.raises(ValueError, match="class_balance.*balanced_sampler"):
        make_dm(store_root, class_balance="oversample")


def test_balanced_sampler_roughly_balances(store_root: Path) -> None:
    dm = make_dm(store_root, class_balance="balanced_sampler")
    loader = dm.train_dataloader()
    sampler = loader.sampler
    assert isinstance(sampler, DistributedWeightedSampler) and len(sampler) == len(dm.split_ids["train"])
    assert isinstance(sampler, DistributedSampler)  # so Lightning's DDP setup does not wrap it a second time
    labels = dm.dataset("train").labels
    natural = Counter(labels)
    assert natural[0] >= 2.5 * natural[2]
    counts: Counter[int] = Counter()
    for epoch in range(30):
        sampler.set_epoch(epoch)
        counts.update(labels[i] for i in sampler)
    total = sum(counts.values())
    assert all(abs(counts[c] / total - 1 / 3) < 0.05 for c in range(3))
    batch = next(iter(loader))  # the loader still yields batches through the sampler
    assert len(batch["clip_id"]) == 4


def test_dynamic_weights_move_from_natural_to_balanced() -> None:
    labels = [0] * 30 + [1] * 10
    w0 = dynamic_sampling_weights(0, labels, 2, 10)
    assert np.allclose(w0, w0[0])  # natural: every clip alike
    w10 = dynamic_sampling_weights(10, labels, 2, 10)
    assert np.isclose(w10[:30].sum(), w10[30:].sum())  # balanced: classes alike
    w5 = dynamic_sampling_weights(5, labels, 2, 10)
    share = w5[:30].sum() / w5.sum()
    assert 0.5 < share < 0.75
    assert np.allclose(class_sampling_weights(labels, 2, 1.0), w10)


def test_dynamic_needs_max_epochs(store_root: Path) -> None:
    dm = make_dm(store_root, class_balance="dynamic")
    with pytest.raises(ValueError, match="max_epochs"):
        dm.train_dataloader()


def test_distributed_weighted_sampler_shards_are_disjoint() -> None:
    weights = np.linspace(1, 3, 25)
    shards = [DistributedWeightedSampler(weights, num_samples=25, num_replicas=2, rank=r, seed=7) for r in (0, 1)]
    for s in shards:
        s.set_epoch(3)
    full = shards[0].epoch_indices()
    assert full == shards[1].epoch_indices() and len(full) == 26
    a, b = list(shards[0]), list(shards[1])
    assert len(a) == len(b) == len(shards[0]) == 13
    assert a == full[0::2] and b == full[1::2]  # disjoint positions that together make the epoch's sample
    merged = [x for pair in zip(a, b) for x in pair]
    assert merged == full
    shards[0].set_epoch(4)
    assert list(shards[0]) != a
    with pytest.raises(ValueError):
        DistributedWeightedSampler(weights, num_samples=25, num_replicas=2, rank=2)


class _Probe(L.LightningModule):
    """Counts the labels a fit sees, to check the wiring with a real Trainer."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: list[int] = []

    def training_step(self, batch: dict, _: int) -> torch.Tensor:
        self.seen.extend(batch["label"].tolist())
        return self.w.sum()  # lr 0: only the data path is under test

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_dynamic_sampler_under_a_trainer(store_root: Path) -> None:
    dm = make_dm(store_root, class_balance="dynamic")
    probe = _Probe()
    trainer = L.Trainer(max_epochs=3, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    trainer.fit(probe, datamodule=dm)
    sampler = trainer.train_dataloader.sampler
    assert isinstance(sampler, DistributedWeightedSampler) and sampler.epoch == 2
    assert len(probe.seen) == 3 * len(dm.split_ids["train"])
    d = dm.describe()
    assert d["sizes"]["train"] == len(dm.split_ids["train"]) and set(d["modalities"]) == {"face", "pose"}
    assert sum(d["class_counts"]["test"].values()) == d["sizes"]["test"]


# --------------------------------------------- issue 28, item 9: DDP evaluation of a split smaller than the ranks


def _eval_ids(dm: FeatureDataModule, split: str, world: int, monkeypatch: pytest.MonkeyPatch
              ) -> list[list[tuple[str, bool]]]:
    """Per rank: the (clip id, counted) pairs its evaluation loader yields when ``world`` processes run."""
    import datamodules.feature_datamodule as fdm

    out = []
    for rank in range(world):
        monkeypatch.setattr(fdm, "_dist_world", lambda rank=rank: (world, rank))
        loader = dm.val_dataloader() if split == "val" else dm.test_dataloader()
        out.append([(c, bool(k)) for b in loader
                    for c, k in zip(b["clip_id"], b.get("counted", torch.ones(len(b["clip_id"]))))])
    return out


def test_ddp_eval_of_a_one_clip_split_gives_every_rank_a_batch_and_counts_the_clip_once(
        store_root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 1-clip val and test split under 2 processes: rank 1 died on the unrepeated sampler's bare assert. Now rank 1
    evaluates a stand-in (the same clip, counted=False): every rank runs a batch, the clip counts once."""
    recs = [ClipRecord(f"c{i:03d}", "p", _label(i), "val" if i == 1 else "test" if i == 2 else "train")
            for i in range(6)]
    dm = make_dm(store_root, source=FakeSource(recs), fold=None)
    assert dm.split_ids["val"] == ["c001"] and dm.split_ids["test"] == ["c002"]
    assert _eval_ids(dm, "val", 2, monkeypatch) == [[("c001", True)], [("c001", False)]]
    assert _eval_ids(dm, "test", 2, monkeypatch) == [[("c002", True)], [("c002", False)]]
    assert _eval_ids(dm, "test", 3, monkeypatch) == [[("c002", True)], [("c002", False)], [("c002", False)]]
    # A split at least as large as the world: uneven shares, no stand-in, every clip once.
    three = [ClipRecord(r.clip_id, "p", r.label, "val" if r.clip_id in ("c003", "c004") else r.split) for r in recs]
    plain = make_dm(store_root, source=FakeSource(three), fold=None)
    assert plain.split_ids["val"] == ["c001", "c003", "c004"]
    assert _eval_ids(plain, "val", 2, monkeypatch) == [[("c001", True), ("c004", True)], [("c003", True)]]
