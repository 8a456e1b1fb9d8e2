"""The feature store: atomic shards, packing in source order, memory-mapped zero-copy reads, refusal to mix."""

from __future__ import annotations

import hashlib
import json
import mmap
import pickle
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from datamodules.feature_store import (
    ClipResult,
    FeatureStore,
    ShardWriter,
    StoreError,
    done_clip_ids,
    find_store,
    pack,
    store_key,
    store_path,
)

DIM = 6
REQUEST = {
    "modality": "face",
    "extractor": "facemesh",
    "version": "1",
    "config": {"geometry": True},
    "frame_cap": 16,
    "source": "manifest",
}
META = {**REQUEST, "dim": DIM, "schema": [f"c{i}" for i in range(DIM)]}
ORDER = ["a", "b", "c", "d", "e"]  # the source's clip order
FAILED = {"c": "empty (0-byte) video"}


def _clip(clip_id: str, length: int, seed: int) -> ClipResult:
    rng = np.random.default_rng(seed)
    valid = rng.random(length) > 0.3
    feats = rng.normal(size=(length, DIM)).astype(np.float32) * valid[:, None]  # invalid frames are zero
    idx = np.arange(0, 3 * length, 3)
    return ClipResult(clip_id, feats, valid, idx, idx / 30.0)


def _results() -> dict[str, ClipResult]:
    out = {cid: _clip(cid, length, seed) for seed, (cid, length) in enumerate(zip(ORDER, (4, 1, 0, 7, 3)))}
    out.update({cid: ClipResult.failed(cid, reason) for cid, reason in FAILED.items()})
    return out


def _write(path: Path, shards: list[list[str]], rank_of: list[int] | None = None) -> None:
    """Write ``shards`` (lists of clip ids) through ShardWriters, shard i by rank ``rank_of[i]``."""
    res = _results()
    for i, ids in enumerate(shards):
        w = ShardWriter(path, REQUEST, rank=rank_of[i] if rank_of else 0, flush_every=10_000)
        for cid in ids:
            w.add(res[cid])
        w.flush()


def _digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _is_file_view(arr: np.ndarray, store: FeatureStore) -> bool:
    """True when ``arr`` is a zero-copy slice of the store's memory-mapped features or validity file."""
    base = arr
    while base.base is not None and not isinstance(base, np.memmap):
        base = base.base
    return isinstance(base, (np.memmap, mmap.mmap)) or any(
        np.shares_memory(arr, a) for a in store._open())


def test_roundtrip_float16_memmap_views_and_failed_clips(tmp_path: Path) -> None:
    path = tmp_path / "face" / "facemesh-x"
    _write(path, [["d", "a"], ["c", "e", "b"]])
    meta = pack(path, ORDER, META)
    assert meta["num_clips"] == 5 and meta["num_ok"] == 4 and meta["num_failed"] == 1
    assert meta["total_frames"] == 4 + 1 + 7 + 3 and meta["dtype"] == "float16"
    assert not (path / "shards").exists(), "shards are removed once packed"
    assert sorted(p.name for p in path.iterdir()) == ["features.npy", "index.parquet", "meta.json", "request.json",
                                                      "valid.npy"]

    store = FeatureStore(path)
    assert store.dim == DIM and store.meta["schema"] == META["schema"]
    assert list(store.index["clip_id"]) == ORDER
    expected = _results()
    for cid in ORDER:
        feats, valid = store.clip(cid)
        assert cid in store
        if cid in FAILED:
            assert store.status(cid) == ("failed", FAILED[cid])
            assert feats.shape == (0, DIM) and valid.shape == (0,)
            continue
        assert store.status(cid) == ("ok", "")
        exp = expected[cid]
        assert feats.dtype == np.float16 and valid.dtype == np.bool_
        np.testing.assert_array_equal(feats, exp.features.astype(np.float16))
        np.testing.assert_array_equal(valid, exp.valid)
        assert _is_file_view(feats, store) and _is_file_view(valid, store), "a clip must be a view of the mapped file"
        assert not feats.flags.writeable
        row = store.index.set_index("clip_id").loc[cid]
        assert row["length"] == len(exp.features) and row["valid_count"] == exp.valid.sum()
        fidx, ts = store.frames(cid)
        np.testing.assert_array_equal(fidx, exp.frame_indices)
        np.testing.assert_allclose(ts, exp.timestamps)
    # The views really are slices of one mapped file, not copies.
    whole = np.load(path / "features.npy", mmap_mode="r")
    assert whole.shape == (meta["total_frames"], DIM)
    offs = store.index.set_index("clip_id")["offset"]
    np.testing.assert_array_equal(store.clip("d")[0], whole[offs["d"] : offs["d"] + 7])
    assert "zzz" not in store
    # Only scalar columns are held per process; the per-frame lists are read when asked for.
    assert all(store.index[c].map(np.isscalar).all() for c in store.index.columns)


def test_pack_order_follows_clip_order_not_shards_or_ranks(tmp_path: Path) -> None:
    one = tmp_path / "one"
    _write(one, [ORDER])
    pack(one, ORDER, META)
    # Same clips split differently: rank 1 wrote first, reversed order, several shards per rank.
    split = tmp_path / "split"
    _write(split, [["e", "d"], ["b"], ["c", "a"]], rank_of=[1, 0, 1])
    pack(split, ORDER, META)
    for name in ("features.npy", "valid.npy", "index.parquet", "meta.json"):
        assert (one / name).read_bytes() == (split / name).read_bytes(), f"{name} depends on how work was split"
    idx = pd.read_parquet(split / "index.parquet")
    assert list(idx["clip_id"]) == ORDER
    assert (np.diff(idx["offset"]) >= 0).all()
    assert list(idx["offset"] + idx["length"])[-1] == FeatureStore(split).meta["total_frames"]


def test_duplicate_clips_from_ddp_padding_collapse(tmp_path: Path) -> None:
    path = tmp_path / "ddp"
    # A distributed sampler pads by repeating clips: "a" and "b" reach both ranks.
    _write(path, [["a", "c", "e", "b"], ["b", "d", "a"]], rank_of=[0, 1])
    meta = pack(path, ORDER, META)
    idx = pd.read_parquet(path / "index.parquet")
    assert list(idx["clip_id"]) == ORDER and meta["num_clips"] == len(ORDER)
    assert meta["total_frames"] == 4 + 1 + 7 + 3
    ref = tmp_path / "ref"
    _write(ref, [ORDER])
    pack(ref, ORDER, META)
    assert (path / "features.npy").read_bytes() == (ref / "features.npy").read_bytes()


def test_pack_refuses_while_clips_are_missing(tmp_path: Path) -> None:
    path = tmp_path / "partial"
    _write(path, [["a", "b"]])
    with pytest.raises(StoreError, match="3 clips not extracted"):
        pack(path, ORDER, META)
    assert not (path / "meta.json").exists()


def test_folder_without_meta_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "unfinished"
    _write(path, [["a", "b"]])
    with pytest.raises(StoreError, match="no meta.json"):
        FeatureStore(path)
    # Even with packed-looking arrays in place (a kill between the renames and meta.json), it is not trusted.
    np.save(path / "features.npy", np.zeros((5, DIM), np.float16))
    pd.DataFrame({"clip_id": ["a"], "offset": [0], "length": [5]}).to_parquet(path / "index.parquet")
    with pytest.raises(StoreError, match="no meta.json"):
        FeatureStore(path)
    with pytest.raises(StoreError, match="no such folder"):
        FeatureStore(tmp_path / "nowhere")


def test_arrays_that_do_not_match_meta_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _write(path, [ORDER])
    pack(path, ORDER, META)
    np.save(path / "features.npy", np.zeros((3, DIM), np.float16))  # someone overwrote the array
    store = FeatureStore(path)
    with pytest.raises(StoreError, match="do not match meta.json"):
        store.clip("a")


def test_request_mismatch_raises_and_nothing_is_mixed(tmp_path: Path) -> None:
    path = tmp_path / "face" / "facemesh-x"
    _write(path, [["a", "b"]])
    before = _digest(path)
    other = {**REQUEST, "config": {"geometry": False}}
    with pytest.raises(StoreError, match="different extractor configuration") as info:
        ShardWriter(path, other)
    assert '"geometry": false' in str(info.value) and '"geometry": true' in str(info.value)  # both are shown
    assert _digest(path) == before, "a refused request must not touch the folder"
    # The matching request still continues the same folder.
    w = ShardWriter(path, json.loads(json.dumps(REQUEST)))
    w.add(_results()["c"])
    w.flush()
    assert done_clip_ids(path) == {"a", "b", "c"}


def test_store_key_and_path() -> None:
    k = store_key("abc123", 16)
    assert k == store_key("abc123", 16) and len(k) == 8
    assert k != store_key("abc123", None) and k != store_key("abc124", 16)
    assert store_path("/r", "face", "facemesh", k) == Path("/r/face") / f"facemesh-{k}"


def test_done_clip_ids_after_a_partial_write_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "s"
    res = _results()
    w = ShardWriter(path, REQUEST, flush_every=2)
    for cid in ("a", "b", "c"):
        w.add(res[cid])
    # The process dies here: "c" was still in memory, "a" and "b" were flushed as one complete shard.
    assert done_clip_ids(path) == {"a", "b"}
    shards = sorted((path / "shards").glob("shard-*.npz"))
    assert [p.name for p in shards] == ["shard-r000-000000.npz"]
    assert not list((path / "shards").glob(".*")), "no temporary file is left after a completed flush"

    # A rerun skips what is done and never overwrites an existing shard.
    w2 = ShardWriter(path, REQUEST, flush_every=2)
    for cid in ORDER:
        if cid not in done_clip_ids(path):
            w2.add(res[cid])
    w2.flush()
    assert sorted(p.name for p in (path / "shards").glob("shard-*.npz")) == [
        "shard-r000-000000.npz",
        "shard-r000-000001.npz",
        "shard-r000-000002.npz",
    ]
    assert done_clip_ids(path) == set(ORDER)
    pack(path, ORDER, META)
    assert done_clip_ids(path) == set(ORDER)  # from the packed index now that the shards are gone
    ref = tmp_path / "ref"
    _write(ref, [ORDER])
    pack(ref, ORDER, META)
    assert (path / "features.npy").read_bytes() == (ref / "features.npy").read_bytes()


def test_pack_again_adds_new_clips_to_an_existing_store(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _write(path, [["a", "b", "c"]])
    pack(path, ["a", "b", "c"], META)
    _write(path, [["e", "d"]])  # the source grew; a rerun extracted only the new clips
    pack(path, ORDER, META)
    ref = tmp_path / "ref"
    _write(ref, [ORDER])
    pack(ref, ORDER, META)
    for name in ("features.npy", "valid.npy", "index.parquet", "meta.json"):
        assert (path / name).read_bytes() == (ref / name).read_bytes(), name


def test_a_store_of_failed_clips_only(tmp_path: Path) -> None:
    path = tmp_path / "s"
    w = ShardWriter(path, REQUEST)
    w.add(ClipResult.failed("x", "no such file or folder"))
    w.flush()
    meta = pack(path, ["x"], META)
    assert meta["total_frames"] == 0 and meta["num_failed"] == 1
    store = FeatureStore(path)
    feats, valid = store.clip("x")
    assert feats.shape == (0, DIM) and valid.shape == (0,)
    assert store.status("x") == ("failed", "no such file or folder")


def test_store_pickles_without_its_arrays(tmp_path: Path) -> None:
    """Loader workers and DDP ranks get the index and the path, never a copy of the features."""
    path, dim, frames = tmp_path / "big", 512, 50  # a ResNet-18-sized store
    rng = np.random.default_rng(0)
    w = ShardWriter(path, REQUEST, flush_every=10_000)
    order = [f"clip{i:03d}" for i in range(40)]
    for cid in order:
        w.add(
            ClipResult(
                cid,
                rng.normal(size=(frames, dim)).astype(np.float32),
                np.ones(frames, bool),
                np.arange(frames),
                np.arange(frames) / 25.0,
            )
        )
    w.flush()
    pack(path, order, {**META, "dim": dim, "schema": [f"c{i}" for i in range(dim)]})
    store = FeatureStore(path)
    ref_feats = np.array(store.clip("clip007")[0])  # opens the memmaps
    blob = pickle.dumps(store)
    array_bytes = (path / "features.npy").stat().st_size
    assert len(blob) < array_bytes / 20, f"pickle is {len(blob)} bytes for {array_bytes} bytes of features"
    copy = pickle.loads(blob)
    assert copy._arrays is None  # reopened lazily where it lands
    feats, _ = copy.clip("clip007")
    assert _is_file_view(feats, copy)
    np.testing.assert_array_equal(feats, ref_feats)


def test_find_store(tmp_path: Path) -> None:
    root = tmp_path / "features"
    with pytest.raises(StoreError) as info:
        find_store(root, "face")
    msg = str(info.value)
    assert str(root / "face") in msg and "python -m fer_zoo extract" in msg, msg

    one = store_path(root, "face", "facemesh", "aaaa1111")
    _write(one, [ORDER])
    with pytest.raises(StoreError, match="no feature store"):  # an unfinished store is not a store
        find_store(root, "face")
    pack(one, ORDER, META)
    assert find_store(root, "face") == one
    assert find_store(root, "face/facemesh-aaaa1111") == one

    two = store_path(root, "face", "facemesh", "bbbb2222")
    _write(two, [ORDER])
    pack(two, ORDER, META)
    with pytest.raises(StoreError) as info:
        find_store(root, "face")
    msg = str(info.value)
    assert "face/facemesh-aaaa1111" in msg and "face/facemesh-bbbb2222" in msg, msg
