"""The feature store: packed float16 features + validity mask, memory-mapped, with a parquet index.

Layout of one store (one dataset x one extractor configuration)::

    <root>/<modality>/<extractor>-<hash>/
        request.json     what was asked for (written first; a different request never reuses the folder)
        shards/          finished clips while extracting, one atomic .npz per flush and rank
        features.npy     float16 [total_frames, D]   \
        valid.npy        bool    [total_frames]       > written by `pack`, each via a temporary name + rename
        index.parquet    one row per clip            /   (with the clip's provenance: source_path, source_fingerprint)
        meta.json        written last: its presence is what makes the store trusted

A kill at any moment loses at most the clips in flight: shards are renamed into place only when complete, the
packed files likewise, and a reader refuses a folder without ``meta.json``. Packing follows the source's clip order,
so the packed bytes do not depend on how the work was split over shards, ranks or reruns.

Every clip records where its features came from (``datamodules.provenance``): a rerun re-extracts the clips whose
source changed and the pack keeps, per clip, the result made from the source as it is now.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import mmap
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from datamodules.provenance import UNKNOWN, Provenance

STORE_FORMAT = 1
FEATURE_DTYPE = np.float16
INDEX_COLUMNS = ["clip_id", "offset", "length", "valid_count", "status", "reason"]  # FeatureStore.index
PROVENANCE_COLUMNS = ["source_path", "source_fingerprint"]  # FeatureStore.provenance(); absent in older stores
PROVENANCE_METHOD = "resolved path + size/mtime_ns (frame folders: of every frame); datamodules.provenance"


class StoreError(RuntimeError):
    """A store is missing, incomplete, or does not match what was asked for."""


@dataclass
class ClipResult:
    """What extraction produced for one clip (features ``None`` when it failed), and from which source
    (``source_path``/``fingerprint``: a :class:`~datamodules.provenance.Provenance`; ``""`` when unknown)."""

    clip_id: str
    features: np.ndarray | None = None
    valid: np.ndarray | None = None
    frame_indices: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    status: str = "ok"
    reason: str = ""
    source_path: str = ""
    fingerprint: str = UNKNOWN

    @classmethod
    def failed(cls, clip_id: str, reason: str) -> ClipResult:
        return cls(clip_id=clip_id, status="failed", reason=reason)

    @property
    def provenance(self) -> Provenance:
        return Provenance(self.source_path, self.fingerprint)

    def from_source(self, prov: Provenance | None) -> ClipResult:
        """This result, recorded as made from ``prov`` (the source as it was stat'ed before it was read)."""
        if prov is not None:
            self.source_path, self.fingerprint = prov.path, prov.fingerprint
        return self


def store_key(extractor_hash: str, frame_cap: int | None) -> str:
    """Hash of the extractor config plus the frame cap: everything that changes the stored numbers."""
    blob = json.dumps({"extractor": extractor_hash, "frame_cap": frame_cap, "format": STORE_FORMAT})
    return hashlib.sha256(blob.encode()).hexdigest()[:8]


def store_path(root: str | Path, modality: str, extractor_name: str, key: str) -> Path:
    return Path(root) / modality / f"{extractor_name}-{key}"


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _atomic_json(path: Path, obj: dict[str, Any]) -> None:
    _atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n").encode())


class ShardWriter:
    """Collects finished clips and writes them as atomic shards; knows which clips are already done."""

    def __init__(self, path: str | Path, request: dict[str, Any], rank: int = 0, flush_every: int = 32,
                 flush_seconds: float = 30.0) -> None:
        self.path = Path(path)
        self.shard_dir = self.path / "shards"
        self.rank = rank
        self.flush_every = flush_every
        self.flush_seconds = flush_seconds
        self._pending: list[ClipResult] = []
        self._last_flush = time.monotonic()
        self.shard_dir.mkdir(parents=True, exist_ok=True)
        check_request(self.path, request, create=True)
        existing = sorted(self.shard_dir.glob(f"shard-r{rank:03d}-*.npz"))
        self._seq = 1 + max((int(p.stem.split("-")[-1]) for p in existing), default=-1)

    def add(self, result: ClipResult) -> None:
        """Queue one finished clip; features that are not finite once cast to the store's float16 make it a failed
        clip naming it (:func:`refuse_non_finite`), so no writer stores NaN/inf."""
        self._pending.append(refuse_non_finite(result))
        if len(self._pending) >= self.flush_every or time.monotonic() - self._last_flush > self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        out = self.shard_dir / f"shard-r{self.rank:03d}-{self._seq:06d}.npz"
        tmp = out.with_name(f".{out.name}.tmp-{os.getpid()}")
        with open(tmp, "wb") as f:
            np.savez(f, **_results_to_arrays(self._pending))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, out)
        self._seq += 1
        self._pending = []
        self._last_flush = time.monotonic()


def refuse_non_finite(result: ClipResult) -> ClipResult:
    """``result``, or a failed result for its clip (its source kept) when its features hold a value that is NaN/inf
    once stored as float16: NaN/inf, or ``|x| > 65504`` (float16's largest finite value). Such a value would reach
    training as inf and fail it later without naming the clip."""
    if result.status != "ok" or result.features is None or not len(result.features):
        return result
    x = np.asarray(result.features)
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~np.isfinite(x.astype(FEATURE_DTYPE))
    if not bad.any():
        return result
    row, col = (int(i) for i in np.argwhere(bad)[0])
    return ClipResult.failed(result.clip_id, (
        f"clip {result.clip_id}: {int(bad.sum())} feature values are not finite as float16 (first: row {row}, "
        f"column {col}, value {float(x[row, col]):.6g}; float16 keeps |x| <= {float(np.finfo(FEATURE_DTYPE).max):g}, "
        "larger values must be scaled)")).from_source(result.provenance)


def check_request(path: Path, request: dict[str, Any], create: bool = False) -> None:
    """Refuse a folder that was made for a different request (a hash collision or a hand-edited folder)."""
    req_file = path / "request.json"
    canon = json.loads(json.dumps(request, sort_keys=True, default=str))
    if req_file.exists():
        have = json.loads(req_file.read_text())
        if have != canon:
            raise StoreError(
                f"{path} was built for a different extractor configuration; refusing to mix.\n"
                f"  stored:    {json.dumps(have, sort_keys=True)}\n  requested: {json.dumps(canon, sort_keys=True)}\n"
                "Move or delete that folder, or use another store root."
            )
    elif create:
        path.mkdir(parents=True, exist_ok=True)
        _atomic_json(req_file, canon)


def _results_to_arrays(results: list[ClipResult]) -> dict[str, np.ndarray]:
    ok = [r for r in results if r.status == "ok"]
    dim = ok[0].features.shape[1] if ok else 0  # type: ignore[union-attr]
    lengths = np.array([len(r.features) if r.status == "ok" else 0 for r in results], np.int64)  # type: ignore[arg-type]

    def cat(xs: list, dt: type, shape: tuple[int, ...]) -> np.ndarray:
        return np.concatenate(xs).astype(dt) if xs else np.zeros(shape, dt)

    return {
        "clip_ids": np.array([r.clip_id for r in results], dtype=np.str_),
        "status": np.array([r.status for r in results], dtype=np.str_),
        "reason": np.array([r.reason for r in results], dtype=np.str_),
        "source_paths": np.array([r.source_path for r in results], dtype=np.str_),
        "fingerprints": np.array([r.fingerprint for r in results], dtype=np.str_),
        "lengths": lengths,
        "features": cat([r.features for r in ok], FEATURE_DTYPE, (0, dim)),
        "valid": cat([r.valid for r in ok], np.bool_, (0,)),
        "frame_indices": cat([r.frame_indices for r in ok], np.int64, (0,)),
        "timestamps": cat([r.timestamps for r in ok], np.float64, (0,)),
    }


def _shard_provenance(z: Any, n: int) -> tuple[list[str], list[str]]:
    """The shard's per-clip source paths and fingerprints (unknown in shards written before they were recorded)."""
    if "fingerprints" not in z.files:
        return [""] * n, [UNKNOWN] * n
    return [str(x) for x in z["source_paths"]], [str(x) for x in z["fingerprints"]]


def _iter_shard(file: Path) -> Iterable[ClipResult]:
    with np.load(file) as z:  # no pickles: every array is numeric, bool or fixed-width unicode
        offs = np.concatenate([[0], np.cumsum(z["lengths"])])
        feats, valid, fidx, ts = z["features"], z["valid"], z["frame_indices"], z["timestamps"]
        paths, fps = _shard_provenance(z, len(z["clip_ids"]))
        for i, cid in enumerate(z["clip_ids"]):
            a, b = offs[i], offs[i + 1]
            if z["status"][i] == "ok":
                r = ClipResult(str(cid), feats[a:b], valid[a:b], fidx[a:b], ts[a:b], reason=str(z["reason"][i]))
            else:
                r = ClipResult.failed(str(cid), str(z["reason"][i]))
            yield r.from_source(Provenance(paths[i], fps[i]))


@dataclass(frozen=True)
class StoredClip:
    """One finished result of a clip, in an earlier pack or a shard: its status and the source it was made from."""

    status: str
    provenance: Provenance


def stored_clips(path: str | Path) -> dict[str, list[StoredClip]]:
    """Every finished result per clip: the packed one first (when packed), then the shards' oldest first."""
    path = Path(path)
    out: dict[str, list[StoredClip]] = {}
    if (path / "meta.json").exists():
        have = set(pq.read_schema(path / "index.parquet").names)
        cols = ["clip_id", "status", *[c for c in PROVENANCE_COLUMNS if c in have]]
        # pyarrow straight to Python lists: iterating pandas' arrow-backed string columns costs ~10x more (16k clips)
        idx = pq.read_table(path / "index.parquet", columns=cols).to_pydict()
        n = len(idx["clip_id"])
        paths = idx.get("source_path", [""] * n)
        fps = idx.get("source_fingerprint", [UNKNOWN] * n)
        for cid, status, sp, fp in zip(idx["clip_id"], idx["status"], paths, fps):
            out.setdefault(cid, []).append(StoredClip(status, Provenance(sp, fp)))
    for f in sorted((path / "shards").glob("shard-*.npz")):
        with np.load(f) as z:
            ids = [str(c) for c in z["clip_ids"]]
            paths, fps = _shard_provenance(z, len(ids))
            for cid, status, sp, fp in zip(ids, map(str, z["status"]), paths, fps):
                out.setdefault(cid, []).append(StoredClip(status, Provenance(sp, fp)))
    return out


def packed_as_now(path: str | Path, clip_ids: list[str], current: list[Provenance], ok_only: bool = False) -> bool:
    """True when the store at ``path`` is packed, holds no unpacked shard, and its index is exactly ``clip_ids`` in
    that order, each clip made from its ``current`` provenance (and, ``ok_only``, none failed): a rerun over these
    clips has nothing to do. Whole columns are compared in Arrow, with no object per clip, so this no-op check costs
    about what reading the clip ids cost before stores recorded provenance. False whenever it cannot say (an older
    store without provenance, shards, another clip list); then the per-clip plan decides."""
    import pyarrow as pa
    import pyarrow.compute as pc

    path = Path(path)
    if not (path / "meta.json").exists() or any((path / "shards").glob("shard-*.npz")):
        return False
    file = path / "index.parquet"
    cols = ["clip_id", *PROVENANCE_COLUMNS, "status"]
    if not set(cols) <= set(pq.read_schema(file).names):
        return False
    idx = pq.read_table(file, columns=cols)
    if idx.num_rows != len(clip_ids):
        return False
    wanted = [clip_ids, [p.path for p in current], [p.fingerprint for p in current]]
    for col, values in zip(cols, wanted):  # a null anywhere makes the answer null, so False (skip_nulls off)
        have = idx.column(col)
        if pc.all(pc.equal(have, pa.array(values, have.type)), skip_nulls=False).as_py() is not True:
            return False
    return not ok_only or pc.all(pc.equal(idx.column("status"), "ok"), skip_nulls=False).as_py() is True


def done_clip_ids(path: str | Path, failed: bool = True) -> set[str]:
    """Clips already finished in shards or an earlier pack, whatever their source. ``failed=False`` leaves out the
    clips that failed (with no later success). The extraction run decides per clip with :func:`stored_clips` and the
    clip's provenance (``fer_zoo.extraction.plan``)."""
    stored = stored_clips(path)
    return {c for c, rs in stored.items() if failed or any(r.status == "ok" for r in rs)}


def choose_result(results: list[ClipResult], current: Provenance | None) -> ClipResult:
    """The result a pack keeps for one clip out of every finished one (the packed one first, then the shards).

    Those made from the source as it is now (``current``) win; when none is (a source that is gone, or a clip packed
    before provenance was recorded) all of them are candidates. Among the candidates an ok result beats a failure (a
    retried clip replaces its earlier failure) and a later one an earlier (DDP samplers may repeat a clip: identical
    copies).
    """
    cands = [r for r in results if current is not None and r.provenance == current] or results
    ok = [r for r in cands if r.status == "ok"]
    return (ok or cands)[-1]


def pack(path: str | Path, clip_order: list[str], meta: dict[str, Any],
         current: dict[str, Provenance] | None = None) -> dict[str, Any]:
    """Concatenate shards (and any earlier pack) into the packed store, in ``clip_order``; returns the meta.

    ``current``: each clip's provenance as the run found it; of a clip's results the pack keeps one made from that
    source (:func:`choose_result`), so a re-extracted clip replaces its stale features.
    """
    path = Path(path)
    current = current or {}
    results: dict[str, list[ClipResult]] = {}
    if (path / "meta.json").exists():
        old = FeatureStore(path)
        prov = old.provenance()
        for i, row in enumerate(old.index.itertuples()):
            if row.status == "ok":
                f, v = old.clip(row.clip_id)
                r = ClipResult(row.clip_id, np.array(f), np.array(v), *old.frames(row.clip_id), reason=row.reason)
            else:
                r = ClipResult.failed(row.clip_id, row.reason)
            if prov is not None:
                r.from_source(Provenance(prov["source_path"].iat[i], prov["source_fingerprint"].iat[i]))
            results[row.clip_id] = [r]
    for f in sorted((path / "shards").glob("shard-*.npz")):
        for r in _iter_shard(f):
            results.setdefault(r.clip_id, []).append(r)
    missing = [c for c in clip_order if c not in results]
    if missing:
        raise StoreError(f"{path}: cannot pack, {len(missing)} clips not extracted yet (e.g. {missing[:3]})")
    ordered = [choose_result(results[c], current.get(c)) for c in clip_order]
    dim = int(meta["dim"])
    total = sum(len(r.features) for r in ordered if r.status == "ok")  # type: ignore[arg-type]
    rows, off = [], 0
    feats_tmp, valid_tmp = path / ".features.npy.tmp", path / ".valid.npy.tmp"
    feats = np.lib.format.open_memmap(feats_tmp, mode="w+", dtype=FEATURE_DTYPE, shape=(total, dim))
    valid = np.lib.format.open_memmap(valid_tmp, mode="w+", dtype=np.bool_, shape=(total,))
    for r in ordered:
        n = len(r.features) if r.status == "ok" else 0  # type: ignore[arg-type]
        if n:
            feats[off:off + n] = r.features
            valid[off:off + n] = r.valid
        rows.append({
            "clip_id": r.clip_id, "offset": off, "length": n,
            "valid_count": int(np.sum(r.valid)) if n else 0, "status": r.status, "reason": r.reason,
            "source_path": r.source_path, "source_fingerprint": r.fingerprint,
            "frame_indices": [int(i) for i in r.frame_indices] if n else [],  # type: ignore[union-attr]
            "timestamps": [float(t) for t in r.timestamps] if n else [],  # type: ignore[union-attr]
        })
        off += n
    feats.flush()
    valid.flush()
    del feats, valid
    (path / "meta.json").unlink(missing_ok=True)  # from here on the folder is untrusted until the new meta lands
    os.replace(feats_tmp, path / "features.npy")
    os.replace(valid_tmp, path / "valid.npy")
    idx_tmp = path / ".index.parquet.tmp"
    pd.DataFrame(rows).to_parquet(idx_tmp, index=False)
    os.replace(idx_tmp, path / "index.parquet")
    statuses = [r.status for r in ordered]
    meta = {**meta, "format": STORE_FORMAT, "num_clips": len(ordered), "num_ok": statuses.count("ok"),
            "num_failed": statuses.count("failed"), "total_frames": total, "dtype": "float16",
            "provenance": PROVENANCE_METHOD}
    _atomic_json(path / "meta.json", meta)
    for f in (path / "shards").glob("*shard-*"):  # finished shards and temp files a killed run left behind
        f.unlink()
    with contextlib.suppress(OSError):  # a finished store is its five files; a run that adds clips makes it again
        (path / "shards").rmdir()
    return meta


@dataclass
class FeatureStore:
    """Read side: ``store.clip(clip_id)`` is a zero-copy slice of the memory-mapped arrays.

    The arrays are opened lazily, so a store pickles cheaply into DataLoader workers and DDP ranks, which then share
    the page cache instead of copying the data.
    """

    path: Path
    meta: dict[str, Any] = field(init=False)
    index: pd.DataFrame = field(init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        meta_file = self.path / "meta.json"
        if not meta_file.exists():
            why = "extraction has not finished (no meta.json)" if self.path.exists() else "no such folder"
            raise StoreError(f"feature store {self.path}: {why}")
        self.meta = json.loads(meta_file.read_text())
        # The per-frame lists (frame_indices, timestamps) stay on disk until asked for (see ``frames``): as Python
        # objects they cost ~5 KiB per clip in every process that opens the store (DataLoader workers, DDP ranks).
        self.index = pd.read_parquet(self.path / "index.parquet", columns=INDEX_COLUMNS)
        self._frame_lists: pd.DataFrame | None = None
        self._provenance: pd.DataFrame | None = None
        self._row = {cid: i for i, cid in enumerate(self.index["clip_id"])}
        self._offsets = self.index["offset"].to_numpy()
        self._lengths = self.index["length"].to_numpy()
        self._arrays: tuple[np.ndarray, np.ndarray] | None = None
        self._prefetch: tuple[mmap.mmap | None, int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arrays": None, "_prefetch": None, "_frame_lists": None, "_provenance": None}

    @property
    def dim(self) -> int:
        return int(self.meta["dim"])

    def _open(self) -> tuple[np.ndarray, np.ndarray]:
        if self._arrays is None:
            f = np.load(self.path / "features.npy", mmap_mode="r")
            v = np.load(self.path / "valid.npy", mmap_mode="r")
            if f.shape != (self.meta["total_frames"], self.dim) or v.shape != (f.shape[0],):
                raise StoreError(f"feature store {self.path}: arrays do not match meta.json (corrupt or mixed store)")
            for m in (f, v):
                # Training reads clips in random order: without this, kernel readahead pulls ~30x more than a clip
                # from disk when the store is not in the page cache (measured in benchmarks/bench_training.py).
                with contextlib.suppress(AttributeError, OSError, ValueError):
                    m._mmap.madvise(mmap.MADV_RANDOM)  # type: ignore[attr-defined]
            # Where row 0 of the features sits in their mapping (np.memmap maps from an allocation-aligned start).
            self._prefetch = (getattr(f, "_mmap", None), getattr(f, "offset", 0) % mmap.ALLOCATIONGRANULARITY,
                              f.shape[1] * f.itemsize)
            # Plain ndarray views of the same mapping: slicing them is ~2x cheaper than slicing np.memmap objects.
            self._arrays = (np.asarray(f), np.asarray(v))
        return self._arrays

    def _will_need(self, row: int, n: int) -> None:
        """Ask the kernel for a clip's feature rows in one read-ahead before they are touched.

        With MADV_RANDOM and a cold page cache, touching a clip faults its pages in one synchronous read at a time
        (4-16 per clip); one MADV_WILLNEED over the clip's range reads them together (benchmarks/bench_extraction.py,
        part 4, cold).
        """
        mm, base, row_bytes = self._prefetch  # type: ignore[misc]
        if mm is None:  # an empty array has no mapping
            return
        start = base + row * row_bytes
        aligned = start - start % mmap.PAGESIZE
        with contextlib.suppress(OSError, ValueError):
            mm.madvise(mmap.MADV_WILLNEED, aligned, start + n * row_bytes - aligned)

    def __contains__(self, clip_id: str) -> bool:
        return clip_id in self._row

    def frames(self, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(frame_indices int64 [T], timestamps float64 [T])``: which source frames a clip's rows came from."""
        if self._frame_lists is None:
            self._frame_lists = pd.read_parquet(self.path / "index.parquet", columns=["frame_indices", "timestamps"])
        row = self._frame_lists.iloc[self._row[clip_id]]
        return np.asarray(row["frame_indices"], np.int64), np.asarray(row["timestamps"], np.float64)

    @property
    def has_provenance(self) -> bool:
        """False for a store packed before clips recorded their source (then :meth:`provenance` is ``None``)."""
        return "provenance" in self.meta

    def provenance(self) -> pd.DataFrame | None:
        """Columns ``clip_id``, ``source_path``, ``source_fingerprint`` (str), one row per clip in index order;
        read on first use (kept out of ``index``: ~100 bytes per clip in every loader worker otherwise). A clip added
        to an older store has ``""`` for both (unknown). ``None`` when the store predates provenance."""
        if not self.has_provenance:
            return None
        if self._provenance is None:
            self._provenance = pd.read_parquet(self.path / "index.parquet", columns=["clip_id", *PROVENANCE_COLUMNS])
        return self._provenance

    def status(self, clip_id: str) -> tuple[str, str]:
        row = self.index.iloc[self._row[clip_id]]
        return str(row["status"]), str(row["reason"])

    def clip(self, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        """``(features float16 [T, D], valid bool [T])`` views; T is 0 for a failed clip."""
        i = self._row[clip_id]
        f, v = self._open()
        a, n = self._offsets[i], self._lengths[i]
        if n:
            self._will_need(a, n)
        return f[a:a + n], v[a:a + n]


def find_store(root: str | Path, modality: str) -> Path:
    """The one finished store for ``modality`` under ``root`` (``modality`` or ``modality/<extractor>-<hash>``)."""
    root = Path(root)
    if "/" in modality:
        return root / modality
    found = sorted(p.parent for p in (root / modality).glob("*/meta.json"))
    if len(found) == 1:
        return found[0]
    if not found:
        raise StoreError(
            f"no feature store for modality {modality!r}: expected a finished store under {root / modality}/. "
            f"Build it with `python -m fer_zoo extract --config configs/extract.yaml --store_root {root}` "
            f"(or `make extract`), naming {modality!r} under `modalities`."
        )
    names = ", ".join(f"{modality}/{p.name}" for p in found)
    raise StoreError(f"several stores for modality {modality!r} under {root}: {names}; name one explicitly")
