#!/usr/bin/env python
"""Training-epoch speed and memory from memory-mapped feature stores at DFEW and FERV39K scale (CPU).

1. Builds two synthetic feature stores in the real packed format (``features.npy`` float16, ``valid.npy``,
   ``index.parquet`` with frame indices and timestamps, ``meta.json``), readable by ``FeatureStore``: DFEW scale
   (11,697 clips) and FERV39K scale (38,935 clips), clip lengths uniform in 16..64 frames (seeded), three modalities
   with the real widths (resnet 512-d, pose 132-d, facemesh 1413-d), ~10% invalid frames (~1.8 and ~6 GiB). The
   ``.npy`` headers come from ``np.lib.format.open_memmap``, the features are written in chunks, so generation
   memory stays small; the stores live in a temporary folder under /tmp and are deleted at the end.
2. For each scale, in a fresh process (so that peak-RSS figures start clean): ``FeatureDataModule`` (all three
   modalities, batch_size 32, num_frames 16, num_workers 2, a fake source with random DFEW labels and an 80/20
   train/test split) and ``FERLitModule`` (default model size) through ``lightning.Trainer(accelerator="cpu",
   max_epochs=1, logger=False, enable_checkpointing=False, limit_val_batches=0)`` (+ no progress bar / model summary
   to keep the output clean). A full epoch is 265 / 876 batches; on a loaded 2-core machine that is too long, so by
   default both scales run the same ``limit_train_batches`` (``--batches``, 0 = full epochs) on the full-size stores
   and the full epoch is projected. A callback times every step: the gap between ``on_train_batch_end`` and the
   next ``on_train_batch_start`` is data wait (one ``next()`` on the loader plus loop bookkeeping), batch
   start -> end is compute. Peak memory of the main process and its loader workers is read from ``/proc`` (psutil
   is not installed): ``VmHWM`` (the kernel's peak RSS) of each process, summed, plus a sampler thread (every
   0.2 s) for anonymous RSS, file-backed RSS and PSS (``smaps_rollup``), which split private memory from pages of
   the mapped store (shared page cache, counted in every process that touched them). Each store is evicted from
   the page cache before its run, so both scales start cold: file-backed RSS then counts what the run touched, not
   what earlier work left cached (on a warm cache it grows with the store through fault-around, for old and new
   code alike). Also recorded: the share of each store in the page cache before its run (``mincore``, ~0% after
   the eviction) and the bytes read from disk during the fit.
3. After the epoch, in the same process, a single-process timing of ``FeatureDataset.__getitem__`` (first touch
   and re-read) and its parts, collation, and the model step alone (forward + backward + AdamW on one batch) with
   torch's default thread count and with 1 thread.

Torch threads in the training process: ``--torch-threads -1`` (default) = usable cores minus loader workers, at
least 1; ``0`` = torch's default (one per core, what ``python -m fer_zoo fit`` does today), which oversubscribes a
small machine next to the two workers (section 4 shows the cost); ``N`` = N.

Targets: peak RSS flat (FERV39K-scale sum of peak RSS <= 1.25x the DFEW-scale one) and epoch time linear in clips
(steady-state seconds per 1000 clips within +-30% across the scales).

``--quick`` (or ``FER_ZOO_BENCH_QUICK=1``) is a smoke run: stores of 1/10 the clips and 10 batches per epoch; its
figures are not the benchmark's and go to ``benchmarks/results/bench_training_quick.json``. A normal run writes
``benchmarks/results/bench_training.json``. Exit status 0 even when a target fails (targets are reported, not
asserted); non-zero only when the benchmark itself breaks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import REPO, evict_from_page_cache, machine_info, median, table, write_results  # noqa: E402

NAME = "bench_training"
SCALES = {"dfew": 11_697, "ferv39k": 38_935}
MODALITIES = {"resnet": 512, "pose": 132, "facemesh": 1413}
LENGTHS = (16, 64)  # inclusive
INVALID_FRACTION = 0.10
TEST_FRACTION = 0.20
BATCH_SIZE, NUM_FRAMES, NUM_WORKERS = 32, 16, 2
RSS_TARGET = 1.25  # FERV39K-scale peak RSS / DFEW-scale peak RSS, at most
LINEAR_TOL = 0.30  # steady-state seconds per clip, FERV39K / DFEW, within 1 +- this
CHUNK_FRAMES = 16_384  # rows written per chunk when generating a store
# Full epochs are 264 (DFEW) and 877 (FERV39K) batches; on a loaded 2-core machine a step takes seconds, so the
# default runs the same number of batches at both scales (the stores stay full-size) and projects the full epoch.
DEFAULT_BATCHES = 120


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def resolve_threads(arg: int) -> int:
    """``--torch-threads``: -1 = cores minus loader workers (at least 1), 0 = leave torch's default, N = N."""
    return max(1, _cores() - NUM_WORKERS) if arg < 0 else arg


def _kib(x: float) -> str:
    return f"{x / 1024:,.0f}"


# ------------------------------------------------------------------------------------------------ synthetic stores


def build_store(root: Path, name: str, n_clips: int, seed: int) -> dict[str, Any]:
    """Write one synthetic store per modality under ``root/<modality>/<name>-synthetic/``; returns sizes and times."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from datamodules.feature_store import STORE_FORMAT

    t0 = time.perf_counter()
    rng = np.random.default_rng(seed)
    lengths = rng.integers(LENGTHS[0], LENGTHS[1] + 1, size=n_clips).astype(np.int64)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    total = int(offsets[-1])
    ids = [f"{name}-{i:06d}" for i in range(n_clips)]
    # frame_indices / timestamps as the real index stores them: one list per clip (source frames 0..T-1 at 25 fps).
    local = np.arange(total, dtype=np.int64) - np.repeat(offsets[:-1], lengths)
    list_offsets = pa.array(offsets.astype(np.int32))
    frame_indices = pa.ListArray.from_arrays(list_offsets, pa.array(local))
    timestamps = pa.ListArray.from_arrays(list_offsets, pa.array(local / 25.0))
    files: list[Path] = []
    for modality, dim in MODALITIES.items():
        path = root / modality / f"{name}-synthetic"
        path.mkdir(parents=True)
        # open_memmap writes the .npy header and sizes the file; the feature chunks then go through a plain file
        # handle, so the pages written do not pile up in this process's RSS as they would through the map.
        feats = np.lib.format.open_memmap(path / "features.npy", mode="w+", dtype=np.float16, shape=(total, dim))
        data_offset = feats.offset
        del feats
        valid = np.lib.format.open_memmap(path / "valid.npy", mode="w+", dtype=np.bool_, shape=(total,))
        # A pool of random values, sliced at a random offset per chunk: real (non-sparse, non-repeating per chunk)
        # bytes on disk without paying a normal draw for every one of the ~4e9 values.
        extra = 1 << 20
        pool = rng.standard_normal(CHUNK_FRAMES * dim + extra, dtype=np.float32).astype(np.float16)
        with open(path / "features.npy", "r+b") as fh:
            fh.seek(data_offset)
            for a in range(0, total, CHUNK_FRAMES):
                n = min(CHUNK_FRAMES, total - a)
                off = int(rng.integers(0, extra))
                fh.write(memoryview(pool[off:off + n * dim]))
                valid[a:a + n] = rng.random(n) >= INVALID_FRACTION
        valid.flush()
        valid_count = np.add.reduceat(np.asarray(valid, dtype=np.int64), offsets[:-1])
        del valid, pool
        table_ = pa.table({
            "clip_id": pa.array(ids), "offset": pa.array(offsets[:-1]), "length": pa.array(lengths),
            "valid_count": pa.array(valid_count), "status": pa.array(["ok"] * n_clips),
            "reason": pa.array([""] * n_clips), "frame_indices": frame_indices, "timestamps": timestamps,
        })
        pq.write_table(table_, path / "index.parquet")
        meta = {
            "modality": modality, "extractor": f"synthetic-{modality}", "version": "bench", "config": {},
            "frame_cap": None, "dim": dim, "schema": [f"{modality}_{i}" for i in range(dim)], "store_key": "synthetic",
            "source": {"name": name, "num_clips": n_clips}, "format": STORE_FORMAT, "num_clips": n_clips,
            "num_ok": n_clips, "num_failed": 0, "total_frames": total, "dtype": "float16",
        }
        (path / "meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        files += [p for p in path.iterdir() if p.is_file()]
    return {
        "clips": n_clips, "frames": total, "mean_length": total / n_clips,
        "bytes_on_disk": sum(p.stat().st_blocks * 512 for p in files),
        "bytes_features": sum(p.stat().st_size for p in files if p.name == "features.npy"),
        "bytes_index": sum(p.stat().st_size for p in files if p.name == "index.parquet"),
        "build_s": time.perf_counter() - t0,
    }


@dataclass
class SyntheticSource:
    """The part of a clip source ``FeatureDataModule`` uses: name, vocabulary, no folds, labelled clips."""

    name: str
    n_clips: int
    seed: int
    folds: list[int] = field(default_factory=list)

    @property
    def vocabulary(self) -> Any:
        from datamodules.labels import DFEW

        return DFEW

    def clips(self) -> list[Any]:
        import numpy as np

        from datamodules.labels import DFEW
        from datamodules.records import ClipRecord

        rng = np.random.default_rng(self.seed + 1)
        labels = rng.integers(0, len(DFEW.classes), size=self.n_clips)
        test = rng.random(self.n_clips) < TEST_FRACTION
        return [ClipRecord(f"{self.name}-{i:06d}", "", DFEW.classes[y], "test" if t else "train")
                for i, (y, t) in enumerate(zip(labels, test))]


# ------------------------------------------------------------------------------------------------ /proc memory


def _proc_kb(path: str, keys: tuple[str, ...]) -> dict[str, int]:
    """The kB figures named ``keys`` in a /proc file of ``key: value kB`` lines; {} when the process is gone."""
    out: dict[str, int] = {}
    try:
        with open(path) as f:
            for line in f:
                key, _, rest = line.partition(":")
                if key in keys:
                    out[key] = int(rest.split()[0])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return {}
    return out


def _status(pid: int) -> dict[str, int]:
    return _proc_kb(f"/proc/{pid}/status", ("VmRSS", "VmHWM", "RssAnon", "RssFile", "RssShmem"))


def _pss(pid: int) -> dict[str, int]:
    return _proc_kb(f"/proc/{pid}/smaps_rollup", ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"))


def _majflt(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return int(f.read().rsplit(")", 1)[1].split()[9])
    except (FileNotFoundError, ProcessLookupError, IndexError, ValueError):
        return 0


def _read_bytes(pid: int) -> int:
    """Bytes this process caused to be read from storage (``/proc/<pid>/io``; page-cache hits do not count)."""
    try:
        with open(f"/proc/{pid}/io") as f:
            for line in f:
                if line.startswith("read_bytes:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def page_cache_share(paths: list[Path]) -> float:
    """Share of the files' pages resident in the page cache (``mincore`` on a read-only map; touches nothing)."""
    import ctypes
    import mmap

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    page = mmap.PAGESIZE
    resident = total = 0
    for p in paths:
        size = p.stat().st_size
        if size == 0:
            continue
        import numpy as np

        m = np.memmap(p, dtype=np.uint8, mode="r")  # offset 0: the map starts page-aligned
        pages = (size + page - 1) // page
        vec = np.zeros(pages, dtype=np.uint8)
        if libc.mincore(ctypes.c_void_p(m.ctypes.data), ctypes.c_size_t(size), vec.ctypes.data) != 0:
            return float("nan")
        resident += int((vec & 1).sum())
        total += pages
        del m
    return resident / total if total else float("nan")


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(FileNotFoundError, ProcessLookupError):
            kids += [int(x) for x in (task / "children").read_text().split()]
    return kids


class MemorySampler(threading.Thread):
    """Samples the main process and its children (the loader workers) every ``interval`` seconds."""

    def __init__(self, interval: float = 0.2) -> None:
        super().__init__(daemon=True)
        self.pid = os.getpid()
        self.interval = interval
        self.stop_event = threading.Event()
        self.per_pid: dict[int, dict[str, int]] = {}  # pid -> max of each figure (VmHWM: last read)
        self.peak_sum: dict[str, int] = {}
        self.majflt: dict[int, int] = {}
        self.read_bytes: dict[int, int] = {}
        self.samples = 0

    def sample(self) -> None:
        pids = [self.pid, *_children(self.pid)]
        sums: dict[str, int] = {}
        for pid in pids:
            fig = {**_status(pid), **_pss(pid)}
            if not fig:
                continue
            mine = self.per_pid.setdefault(pid, {})
            for k, v in fig.items():
                mine[k] = max(mine.get(k, 0), v)
                sums[k] = sums.get(k, 0) + v
            self.majflt[pid] = max(self.majflt.get(pid, 0), _majflt(pid))
            self.read_bytes[pid] = max(self.read_bytes.get(pid, 0), _read_bytes(pid))
        for k, v in sums.items():
            self.peak_sum[k] = max(self.peak_sum.get(k, 0), v)
        self.samples += 1

    def run(self) -> None:
        while not self.stop_event.is_set():
            self.sample()
            self.stop_event.wait(self.interval)

    def stop(self) -> None:
        self.stop_event.set()
        self.join()


# ------------------------------------------------------------------------------------------------ child: one scale


def _step_timer_cls() -> Any:
    import lightning as L

    class StepTimer(L.Callback):
        """Data wait (batch end -> next batch start) and compute (batch start -> end) per training step."""

        def __init__(self, sampler: MemorySampler) -> None:
            self.sampler = sampler
            self.t: dict[str, float] = {}
            self.wait: list[float] = []
            self.compute: list[float] = []
            self.sizes: list[int] = []
            self._last = 0.0
            self._start = 0.0

        def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
            self.t["fit_start"] = time.perf_counter()

        def on_train_start(self, trainer: Any, pl_module: Any) -> None:
            # Lightning builds the loader iterator (forks the workers) and prefetches the first batch before this.
            self.t["train_start"] = self._last = time.perf_counter()

        def on_train_batch_start(self, trainer: Any, pl_module: Any, batch: Any, batch_idx: int) -> None:
            self._start = time.perf_counter()
            self.wait.append(self._start - self._last)
            self.sizes.append(int(batch["label"].shape[0]))

        def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any, batch_idx: int) -> None:
            self._last = time.perf_counter()
            self.compute.append(self._last - self._start)

        def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
            self.t["epoch_end"] = time.perf_counter()
            self.sampler.sample()  # workers are persistent: still alive here, so their VmHWM is final

    return StepTimer


def _time_getitem(ds: Any, n: int, seed: int) -> dict[str, Any]:
    """Single-process cost of ``FeatureDataset.__getitem__`` and its parts (same calls, timed one by one)."""
    import numpy as np
    import torch
    from torch.utils.data import default_collate

    from datamodules.sampling import segment_indices

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(ds))[:n]
    for i in rng.permutation(len(ds))[:64]:  # warm-up (other clips, mostly)
        ds[int(i)]
    # First touch: this process has not mapped these clips' pages yet (as a loader worker meeting a clip for the first
    # time in an epoch: page faults, and disk reads for pages not in the page cache). Re-read: pages mapped.
    t = time.perf_counter()
    items = [ds[int(i)] for i in order]
    first = (time.perf_counter() - t) / n
    t = time.perf_counter()
    items = [ds[int(i)] for i in order]
    whole = (time.perf_counter() - t) / n

    # The parts mirror FeatureDataset.__getitem__ step by step (keep them in step with it).
    parts = dict.fromkeys(("worker generator + sub-seed", "store.clip() lookup + slice (x3)",
                           "TSN indices: default_rng + segment_indices (once per clip length)",
                           "f[idx] gather from memmap -> torch -> float32 (x3)", "v[idx] & ~pad -> torch (x3)",
                           "label tensor + dict"), 0.0)
    keys = list(parts)
    pc = time.perf_counter
    for i in order:
        i = int(i)
        t0 = pc()
        cid = ds.clip_ids[i]
        sub_seed = int(ds._generator().integers(2**63))
        t1 = pc()
        parts[keys[0]] += t1 - t0
        features, valid = {}, {}
        sampled: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        for m, store in ds.stores.items():
            a = pc()
            f, v = store.clip(cid)
            b = pc()
            if len(f) not in sampled:
                sampled[len(f)] = segment_indices(len(f), ds.num_frames, True, np.random.default_rng(sub_seed))
            idx, pad = sampled[len(f)]
            c = pc()
            features[m] = torch.from_numpy(f[idx]).float()
            d = pc()
            valid[m] = torch.from_numpy(v[idx] & ~pad)
            e = pc()
            parts[keys[1]] += b - a
            parts[keys[2]] += c - b
            parts[keys[3]] += d - c
            parts[keys[4]] += e - d
        t2 = pc()
        _ = {"features": features, "valid": valid, "label": torch.tensor(ds.labels[i], dtype=torch.int64),
             "clip_id": cid}
        parts[keys[5]] += pc() - t2

    batches = [items[k:k + BATCH_SIZE] for k in range(0, len(items) - BATCH_SIZE + 1, BATCH_SIZE)]
    t = time.perf_counter()
    for b in batches:
        default_collate(b)
    collate = (time.perf_counter() - t) / max(1, len(batches))
    return {"clips": n, "getitem_first_touch_us": first * 1e6, "getitem_us": whole * 1e6,
            "parts_us": {k: v / n * 1e6 for k, v in parts.items()},
            "collate_ms_per_batch": collate * 1e3, "sample_batch": default_collate(items[:BATCH_SIZE])}


def _time_model_step(model: Any, batch: dict[str, Any], iters: int) -> float:
    """Seconds per forward + backward + AdamW step on one batch, no loader and no Lightning loop around it."""
    import torch
    import torch.nn.functional as F

    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step() -> None:
        logits = model(batch["features"], batch["valid"])
        loss = F.cross_entropy(logits.float(), batch["label"], label_smoothing=0.1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    t = time.perf_counter()
    for _ in range(iters):
        step()
    return (time.perf_counter() - t) / iters


def child_main(args: argparse.Namespace) -> int:
    """Run one scale's epoch and write its figures to ``args.out`` (JSON)."""
    warnings.filterwarnings("ignore")
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logging.getLogger(name).setLevel(logging.ERROR)
    sampler = MemorySampler()
    sampler.sample()
    base = dict(sampler.per_pid[os.getpid()])
    import lightning as L
    import torch

    from datamodules.feature_datamodule import FeatureDataModule
    from fer_zoo.training.lit_module import FERLitModule

    after_import = _status(os.getpid())
    torch_default = torch.get_num_threads()
    threads = resolve_threads(args.torch_threads)
    if threads:
        torch.set_num_threads(threads)
    train_threads = torch.get_num_threads()
    L.seed_everything(0, verbose=False)
    source = SyntheticSource(args.scale, args.clips, seed=7)
    t = time.perf_counter()
    dm = FeatureDataModule(source, str(args.store_root), [f"{m}/{args.scale}-synthetic" for m in MODALITIES],
                           num_frames=NUM_FRAMES, batch_size=BATCH_SIZE, num_workers=NUM_WORKERS)
    dm_s = time.perf_counter() - t
    after_dm = _status(os.getpid())
    model = FERLitModule(dm.input_dims, dm.num_classes, dm.class_names)
    n_train = len(dm.split_ids["train"])
    full_batches = math.ceil(n_train / BATCH_SIZE)
    timer = _step_timer_cls()(sampler)
    trainer = L.Trainer(accelerator="cpu", max_epochs=1, logger=False, enable_checkpointing=False,
                        limit_val_batches=0, limit_train_batches=args.batches or 1.0, enable_progress_bar=False,
                        enable_model_summary=False, callbacks=[timer], default_root_dir=str(args.out.parent))
    main_pid = os.getpid()
    majflt0, read0 = _majflt(main_pid), _read_bytes(main_pid)
    sampler.start()
    load0 = os.getloadavg()[0]
    t = time.perf_counter()
    trainer.fit(model, datamodule=dm)
    fit_s = time.perf_counter() - t
    sampler.stop()
    sampler.sample()
    load1 = os.getloadavg()[0]
    main_hwm = _status(main_pid)["VmHWM"]
    workers = [p for p in sampler.per_pid if p != main_pid]
    ds = dm.dataset("train")
    del trainer
    prof = _time_getitem(ds, args.profile_clips, seed=3)
    batch = prof.pop("sample_batch")
    step_ms = {}
    for n in dict.fromkeys([torch_default, 1]):
        torch.set_num_threads(n)
        step_ms[n] = _time_model_step(model.model, batch, iters=args.step_iters) * 1e3
    res = {
        "scale": args.scale, "clips": args.clips, "train_clips": n_train, "full_batches": full_batches,
        "batches_run": len(timer.compute), "clips_run": sum(timer.sizes), "datamodule_init_s": dm_s,
        # Startup: on_fit_start -> the first on_train_batch_start (the loader iterator forks the workers in Lightning's
        # setup_data; the first batch is fetched by the first next(), i.e. in wait_s[0]).
        "fit_s": fit_s, "startup_s": timer.t["train_start"] - timer.t["fit_start"] + timer.wait[0],
        "epoch_s": timer.t["epoch_end"] - timer.t["fit_start"],
        "wait_s": timer.wait, "compute_s": timer.compute, "batch_sizes": timer.sizes,
        "loadavg_during": [load0, load1], "torch_threads_main": train_threads, "torch_threads_default": torch_default,
        "memory_kib": {
            "main_start": base, "main_after_imports": after_import, "main_after_datamodule": after_dm,
            "main_vmhwm": main_hwm, "workers_vmhwm": [sampler.per_pid[p].get("VmHWM", 0) for p in workers],
            "per_pid_max": {str(p): v for p, v in sampler.per_pid.items()}, "peak_sum_sampled": sampler.peak_sum,
            "samples": sampler.samples,
        },
        "major_faults": {"main": sampler.majflt.get(main_pid, 0) - majflt0,
                         "workers": [sampler.majflt.get(p, 0) for p in workers]},
        "disk_read_bytes": {"main": sampler.read_bytes.get(main_pid, 0) - read0,
                            "workers": [sampler.read_bytes.get(p, 0) for p in workers]},
        "page_cache_share_before": args.cached,
        "profile": prof, "model_step_ms": step_ms,
    }
    args.out.write_text(json.dumps(res, default=float) + "\n")
    return 0


# ------------------------------------------------------------------------------------------------ parent: report


def summarize(r: dict[str, Any]) -> dict[str, Any]:
    """Steady-state figures of one scale (the first step's wait, which follows on_train_start, is kept apart)."""
    import numpy as np

    wait, comp, sizes = r["wait_s"], r["compute_s"], r["batch_sizes"]
    steady_clips = sum(sizes[1:])
    steady_s = sum(wait[1:]) + sum(comp[1:])
    mem = r["memory_kib"]
    total_hwm = mem["main_vmhwm"] + sum(mem["workers_vmhwm"])
    per_clip = steady_s / steady_clips if steady_clips else float("nan")
    return {
        "clips_per_s_epoch": r["clips_run"] / r["epoch_s"],
        "clips_per_s_steady": steady_clips / steady_s if steady_s else float("nan"),
        "s_per_1000_clips_steady": per_clip * 1000,
        "s_per_1000_clips_epoch": r["epoch_s"] / r["clips_run"] * 1000,
        "wait_share": sum(wait[1:]) / steady_s if steady_s else float("nan"),
        "wait_ms_median": median(wait[1:]) * 1e3 if len(wait) > 1 else float("nan"),
        "wait_ms_p90": float(np.percentile(wait[1:], 90)) * 1e3 if len(wait) > 1 else float("nan"),
        "compute_ms_median": median(comp[1:]) * 1e3 if len(comp) > 1 else float("nan"),
        "first_wait_s": wait[0] if wait else float("nan"),
        "projected_full_epoch_s": r["startup_s"] + per_clip * r["train_clips"],
        "rss_sum_vmhwm_kib": total_hwm,
    }


def _limit_line(name: str, ok: bool, text: str) -> dict[str, Any]:
    print(f"{'PASS' if ok else 'FAIL'}  {name}: {text}")
    return {"target": name, "pass": ok, "detail": text}


def report(stores: dict[str, dict[str, Any]], runs: dict[str, dict[str, Any]], limited: bool) -> list[dict[str, Any]]:
    sm = {k: summarize(r) for k, r in runs.items()}
    names = {"dfew": "DFEW scale", "ferv39k": "FERV39K scale"}
    print()
    print(table(["store", "clips", "frames", "mean T", "on disk MiB", "features MiB", "index MiB", "build s"], [
        [names[k], s["clips"], s["frames"], f"{s['mean_length']:.1f}", s["bytes_on_disk"] / 2**20,
         s["bytes_features"] / 2**20, f"{s['bytes_index'] / 2**20:.1f}", s["build_s"]] for k, s in stores.items()],
        title="1. Synthetic stores (3 modalities: resnet 512-d + pose 132-d + facemesh 1413-d, float16, "
              f"~{INVALID_FRACTION:.0%} invalid frames, T uniform in {LENGTHS[0]}..{LENGTHS[1]}; all three "
              "modalities of a scale together)"))
    threads = next(iter(runs.values()))["torch_threads_main"]
    print()
    rows = []
    for k, r in runs.items():
        s = sm[k]
        rows.append([names[k], r["train_clips"], f"{r['batches_run']}/{r['full_batches']}", r["clips_run"],
                     r["epoch_s"], r["startup_s"], s["clips_per_s_epoch"], s["s_per_1000_clips_steady"],
                     s["projected_full_epoch_s"], f"{r['loadavg_during'][0]:.1f}/{r['loadavg_during'][1]:.1f}"])
    print(table(["scale", "train clips", "batches run/epoch", "clips run", "epoch s", "startup s", "clips/s",
                 "s/1000 clips (steady)", "full epoch s" + (" (proj.)" if limited else ""), "load before/after"],
                rows, title=f"2. One training epoch: FERLitModule (default size), all 3 modalities, batch "
                            f"{BATCH_SIZE}, {NUM_FRAMES} frames, {NUM_WORKERS} loader workers, "
                            f"Trainer(accelerator='cpu'), {threads} torch thread(s) in the training process"))
    print("   epoch s = on_fit_start -> on_train_epoch_end; startup s = on_fit_start -> first on_train_batch_start "
          "(worker fork + first batch); clips/s = clips run / epoch s; steady = all steps after the first; "
          "full epoch s = startup + steady s/clip x all train clips"
          + (" (a projection: the same number of batches was run at both scales; the stores are full-size)"
             if limited else " (the measured epoch)") + ".")
    print()
    rows = []
    for k, r in runs.items():
        s = sm[k]
        rb = r["disk_read_bytes"]
        rows.append([names[k], f"{s['wait_share']:.1%}", f"{s['wait_ms_median']:.1f}", f"{s['wait_ms_p90']:.1f}",
                     f"{s['compute_ms_median']:.1f}", f"{s['first_wait_s']:.2f}",
                     f"{r['page_cache_share_before']:.0%}",
                     f"{(rb['main'] + sum(rb['workers'])) / 2**20:,.0f}",
                     f"{r['major_faults']['main']}/{sum(r['major_faults']['workers'])}"])
    print(table(["scale", "data wait share", "wait ms median", "wait ms p90", "compute ms median",
                 "first batch wait s", "store in page cache", "disk reads MiB", "major faults main/workers"], rows,
                title="   step time split (steady steps): data wait = on_train_batch_end -> next on_train_batch_start "
                      "(one next() on the loader + loop bookkeeping), compute = on_train_batch_start -> end"))
    print("   'store in page cache' = share of the scale's store pages resident before its run (mincore); disk reads "
          "= /proc/<pid>/io read_bytes of the training process and its workers during the fit.")
    print()
    rows = []
    for k, r in runs.items():
        m = r["memory_kib"]
        p = m["peak_sum_sampled"]
        rows.append([names[k], _kib(m["main_vmhwm"]), " + ".join(_kib(x) for x in m["workers_vmhwm"]),
                     _kib(sm[k]["rss_sum_vmhwm_kib"]), _kib(p.get("RssAnon", 0)), _kib(p.get("RssFile", 0)),
                     _kib(p.get("Pss", 0)), _kib(p.get("Pss_Anon", 0)),
                     _kib(m["main_after_datamodule"]["RssAnon"] - m["main_after_imports"]["RssAnon"])])
    print(table(["scale", "main peak", "workers peak", "sum of peaks", "anon", "file-backed", "PSS", "PSS anon",
                 "datamodule anon"], rows,
                title="3. Memory, MiB: the training process + its loader workers (read from /proc; psutil is not "
                      "installed)"))
    print("   'peak' = VmHWM (the kernel's high-water RSS) of each process, read at on_train_epoch_end while the "
          "persistent workers live; 'sum of peaks' = main + workers. anon / file-backed / PSS / PSS anon = highest "
          "sum over the processes seen by a 0.2 s sampler (RssAnon and RssFile from /proc/<pid>/status, Pss from "
          "smaps_rollup, which divides shared pages among the processes sharing them). File-backed RSS includes "
          "the store pages a process touched through the memory map (page cache: shared, reclaimable); forked "
          "workers also count pages they share copy-on-write with the main process. 'datamodule anon' = anonymous "
          "RSS that FeatureDataModule(...) added to the main process (store indexes, labels, splits).")
    if set(runs) == set(SCALES):
        dm = {k: runs[k]["memory_kib"]["main_after_datamodule"]["RssAnon"]
              - runs[k]["memory_kib"]["main_after_imports"]["RssAnon"] for k in SCALES}
        per_clip = (dm["ferv39k"] - dm["dfew"]) / max(1, stores["ferv39k"]["clips"] - stores["dfew"]["clips"])
        print(f"   datamodule anon grows by {per_clip:.1f} KiB per clip in the main process "
              f"({_kib(dm['dfew'])} -> {_kib(dm['ferv39k'])} MiB); in a full epoch, file-backed RSS grows towards "
              "the size of the store pages each process touched (up to the store size), which is page cache, not "
              "a copy.")
    print()
    rows = []
    default = next(iter(runs.values()))["torch_threads_default"]
    for k, r in runs.items():
        pr = r["profile"]
        st = r["model_step_ms"]
        rows.append([names[k], f"{pr['getitem_first_touch_us']:.0f}", f"{pr['getitem_us']:.0f}",
                     f"{1e6 / pr['getitem_first_touch_us']:,.0f}", f"{pr['collate_ms_per_batch']:.2f}",
                     f"{st[str(default)]:.1f}", f"{st['1']:.1f}", f"{sm[k]['compute_ms_median']:.1f}"])
    print(table(["scale", "__getitem__ us (first touch)", "(re-read)", "clips/s 1 proc", "collate ms/batch",
                 f"model step ms, {default} thr (torch default)", "model step ms, 1 thr",
                 f"step ms in Trainer ({threads} thr)"], rows,
                title="4. Where the time goes (single process, after the epoch, no loader workers running)"))
    first = next(iter(runs.values()))["profile"]
    others = list(runs)[1:]
    print(table(["part of __getitem__ (re-read)", f"us/clip {names[next(iter(runs))]}"]
                + [f"us/clip {names[k]}" for k in others],
                [[part, f"{us:.1f}"] + [f"{runs[k]['profile']['parts_us'][part]:.1f}" for k in others]
                 for part, us in first["parts_us"].items()]))
    print("   __getitem__ first touch = clips this process has not read before (page faults on the map, disk reads "
          "for pages not cached), as a worker meets them in an epoch; re-read = the same clips again; the parts are "
          "the same calls timed one by one on the re-read. model step = forward + backward + AdamW on one collated "
          "batch with nothing else of ours running; step ms in Trainer = median compute per step in the epoch "
          f"(Lightning loop, metrics, and {NUM_WORKERS} loader workers sharing {_cores()} cores).")

    targets: list[dict[str, Any]] = []
    if set(runs) == set(SCALES):
        d, f = sm["dfew"], sm["ferv39k"]
        print()
        rss = f["rss_sum_vmhwm_kib"] / d["rss_sum_vmhwm_kib"]
        pa_d = runs["dfew"]["memory_kib"]["peak_sum_sampled"].get("Pss_Anon", 0)
        pa_f = runs["ferv39k"]["memory_kib"]["peak_sum_sampled"].get("Pss_Anon", 0)
        targets.append(_limit_line(
            "RSS flat", rss <= RSS_TARGET,
            f"sum of peak RSS (main + {NUM_WORKERS} workers) {_kib(f['rss_sum_vmhwm_kib'])} MiB at FERV39K scale vs "
            f"{_kib(d['rss_sum_vmhwm_kib'])} MiB at DFEW scale = {rss:.2f}x (target <= {RSS_TARGET:.2f}x) with "
            f"{stores['ferv39k']['clips'] / stores['dfew']['clips']:.2f}x the clips and "
            f"{stores['ferv39k']['bytes_on_disk'] / stores['dfew']['bytes_on_disk']:.2f}x the store bytes; "
            f"private (PSS anon) {_kib(pa_f)} vs {_kib(pa_d)} MiB = {pa_f / max(pa_d, 1):.2f}x"))
        ratio = f["s_per_1000_clips_steady"] / d["s_per_1000_clips_steady"]
        targets.append(_limit_line(
            "epoch time linear", abs(ratio - 1) <= LINEAR_TOL,
            f"steady {f['s_per_1000_clips_steady']:.2f} s/1000 clips at FERV39K scale vs "
            f"{d['s_per_1000_clips_steady']:.2f} at DFEW scale = {ratio:.2f}x (target {1 - LINEAR_TOL:.2f}.."
            f"{1 + LINEAR_TOL:.2f}x); with startup: {f['s_per_1000_clips_epoch']:.2f} vs "
            f"{d['s_per_1000_clips_epoch']:.2f} = {f['s_per_1000_clips_epoch'] / d['s_per_1000_clips_epoch']:.2f}x"
            + (f"; the same {runs['dfew']['batches_run']} batches at both scales" if limited else "; full epochs")))
    return targets


def run_child(args: argparse.Namespace, scale: str, clips: int, root: Path, tmp: Path) -> dict[str, Any]:
    out = tmp / f"result-{scale}.json"
    log = tmp / f"child-{scale}.log"
    files = sorted(p for p in root.glob(f"*/{scale}-synthetic/*") if p.is_file())
    # Each scale's run starts with its store out of the page cache: how much of a just-written store the kernel
    # keeps depends on what ran before, and cached pages get mapped into the readers (fault-around), so file-backed
    # RSS on a warm cache says more about the machine's history than about the code.
    evict_from_page_cache(files)
    cmd = [sys.executable, str(Path(__file__).resolve()), "--_child", "--_scale", scale, "--_clips", str(clips),
           "--_store-root", str(root), "--_out", str(out), "--profile-clips", str(args.profile_clips),
           "--step-iters", str(args.step_iters), "--torch-threads", str(args.torch_threads),
           "--_cached", str(page_cache_share(files))]
    if args.batches:
        cmd += ["--batches", str(args.batches)]
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "WANDB_MODE": os.environ.get("WANDB_MODE", "offline")}
    with open(log, "wb") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env, cwd=REPO)
    if proc.returncode != 0 or not out.exists():
        tail = log.read_text(errors="replace")[-4000:]
        raise RuntimeError(f"the {scale} run failed (exit {proc.returncode}); last output:\n{tail}")
    return json.loads(out.read_text())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", default=os.environ.get("FER_ZOO_BENCH_QUICK", "") not in ("", "0"),
                   help="smoke run: stores of 1/10 the clips, 10 batches per epoch (also FER_ZOO_BENCH_QUICK=1)")
    p.add_argument("--batches", type=int, default=DEFAULT_BATCHES,
                   help=f"limit_train_batches for both scales (default {DEFAULT_BATCHES}; 0: full epochs; --quick: 10)")
    p.add_argument("--profile-clips", type=int, default=2000, help="clips timed in the __getitem__ breakdown")
    p.add_argument("--step-iters", type=int, default=5, help="model steps timed alone (per thread setting)")
    p.add_argument("--torch-threads", type=int, default=-1,
                   help="torch threads in the training process: -1 (default) = cores - loader workers, at least 1; "
                        "0 = torch's default, as `python -m fer_zoo fit` runs today; N = N")
    p.add_argument("--tmp", type=Path, default=None, help="scratch folder for the stores (default: a new one in /tmp)")
    p.add_argument("--_child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--_scale", help=argparse.SUPPRESS)
    p.add_argument("--_clips", type=int, help=argparse.SUPPRESS)
    p.add_argument("--_store-root", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_out", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--_cached", type=float, default=float("nan"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args._child:
        args.scale, args.clips, args.store_root, args.out = args._scale, args._clips, args._store_root, args._out
        args.cached = args._cached
        return child_main(args)
    if args.quick:
        args.batches = min(args.batches, 10) if args.batches else 10
        args.profile_clips = min(args.profile_clips, 500)
        args.step_iters = min(args.step_iters, 3)
    clips = {k: (max(200, n // 10) if args.quick else n) for k, n in SCALES.items()}

    t_start = time.perf_counter()
    info = machine_info()
    print(f"== {NAME}: one training epoch from memory-mapped feature stores, DFEW vs FERV39K scale ==")
    print(f"machine: {info['cpu']} | {info['cpu_count']} cores ({info['affinity']} usable) | torch {info['torch']} "
          f"(capability {info['torch_cpu_capability']}) | python {info['python']}")
    load = info["loadavg_start"]
    print(f"load average at start: {load[0]:.2f} / {load[1]:.2f} / {load[2]:.2f} (1/5/15 min)"
          + (f"  -- busy: other processes compete for the {info['cpu_count']} cores, so absolute times are low and "
             "noisy" if info["cpu_count"] and load[0] > 0.5 * info["cpu_count"] else ""))
    if args.quick:
        print("QUICK MODE (smoke run): stores of 1/10 the clips and 10 batches per epoch; not the benchmark's figures")
    limit = f"limit_train_batches={args.batches} at both scales" if args.batches else "full epochs"
    import torch

    threads = resolve_threads(args.torch_threads)
    if args.torch_threads < 0:
        how = (f"{threads} = usable cores ({_cores()}) - loader workers ({NUM_WORKERS}), at least 1 (torch's default "
               f"would be {torch.get_num_threads()}, which oversubscribes the cores next to the workers: see "
               "section 4; --torch-threads 0 measures torch's default, as `python -m fer_zoo fit` runs today)")
    else:
        how = f"{threads}" if threads else f"torch's default ({torch.get_num_threads()})"
    print(f"torch threads in the training process: {how}")
    print(f"batches per epoch: {limit}"
          f" | source: random DFEW labels, {1 - TEST_FRACTION:.0%}/{TEST_FRACTION:.0%} train/test, 10% of train "
          "carved for validation (not run: limit_val_batches=0)")
    tmp = Path(tempfile.mkdtemp(prefix="fer_zoo_bench_training_", dir=args.tmp))
    root = tmp / "stores"
    stores: dict[str, dict[str, Any]] = {}
    runs: dict[str, dict[str, Any]] = {}
    try:
        for seed, (scale, n) in enumerate(clips.items()):
            print(f"\n[store] {scale}: writing {n:,} clips x 3 modalities under {root} ...", flush=True)
            stores[scale] = build_store(root, scale, n, seed=seed)
            s = stores[scale]
            print(f"  {s['frames']:,} frames, {s['bytes_on_disk'] / 2**30:.2f} GiB on disk, {s['build_s']:.0f} s "
                  f"(load {os.getloadavg()[0]:.1f})", flush=True)
        t = time.perf_counter()
        os.sync()  # both stores written back: neither run pays for the other's dirty pages
        print(f"  sync (write-back of both stores): {time.perf_counter() - t:.0f} s", flush=True)
        for scale, n in clips.items():
            print(f"\n[train] {scale}: one epoch in a fresh process (load {os.getloadavg()[0]:.1f}) ...", flush=True)
            runs[scale] = run_child(args, scale, n, root, tmp)
            r = runs[scale]
            print(f"  {r['batches_run']} batches, {r['clips_run']:,} clips, epoch {r['epoch_s']:.1f} s, "
                  f"fit {r['fit_s']:.1f} s (load {os.getloadavg()[0]:.1f})", flush=True)
        targets = report(stores, runs, limited=bool(args.batches))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    payload = {"machine": info, "quick": args.quick, "args": {k: str(v) for k, v in vars(args).items()
                                                              if not k.startswith("_")},
               "config": {"modalities": MODALITIES, "lengths": LENGTHS, "invalid_fraction": INVALID_FRACTION,
                          "batch_size": BATCH_SIZE, "num_frames": NUM_FRAMES, "num_workers": NUM_WORKERS,
                          "memory_method": "/proc/<pid>/status VmHWM per process (main + loader workers), summed; "
                                           "0.2 s sampler for RssAnon/RssFile/VmRSS and smaps_rollup Pss"},
               "stores": stores, "runs": {k: {**r, "summary": summarize(r)} for k, r in runs.items()},
               "targets": targets, "elapsed_s": round(elapsed, 1)}
    name = NAME + ("_quick" if args.quick else "")
    out = write_results(name, payload)
    print(f"\nwrote {out.relative_to(REPO)} in {elapsed:.0f} s (load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
