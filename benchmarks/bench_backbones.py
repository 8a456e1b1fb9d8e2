#!/usr/bin/env python
"""timm frame encoders on this machine: end to end vs model-only frames/s, fp32 vs bf16, memory per batch, and the
relative cost of the encoders the README recommends.

1. ViT-S/16 (``vit_small_patch16_224``) and ConvNeXt-T (``convnext_tiny``), created here with random weights, saved
   as safetensors and loaded through the extractor's file route (``pretrained: <file>``, the offline route; speed does
   not depend on weight values). For each, in fp32 and bf16 autocast: frames/s end to end through
   ``fer_zoo.extraction.run.extract_modality`` (decode in loader workers + timm preprocessing + model + shards +
   pack) and model-only (the extractor's ``forward`` on clips decoded and preprocessed beforehand), interleaved in
   each repeat. Target: end to end >= 85% of model-only; the fixed cost of a run (Trainer, extractor build, worker
   start, pack: timed on a 1-frame clip) is printed, with the ratio excluding it (a data set spreads it thin).
   Memory per batch: the peak resident memory the first ``forward`` of one ``--batch``-frame batch adds above the
   loaded model, measured in a fresh process (Linux ``VmHWM`` - ``VmRSS``; a warm process would reuse freed pages).
2. Relative cost of the recommended encoders (random init, created in memory): model-only frames/s on one batch at
   the resolved precision, relative to ConvNeXt-T; feature width and input size from timm; parameters and GFLOPs
   per frame (``torch.utils.flop_counter`` on one fp32 frame: multiply-adds x 2 of matmuls, convolutions and
   attention), a machine-independent cost proxy.

Clips: real videos (``--videos``, default ``../shared/data/face-videos``) linked several times, ``--frame-cap`` frames
each. Writes ``benchmarks/results/bench_backbones.json``. Exit 0 even when a target fails. ``--quick`` (or
``FER_ZOO_BENCH_QUICK=1``): one repeat, fewer clips, part 2 on two models only. ``--torch-threads`` and
``--workers`` set the main process's torch threads and the loader workers (on 2 cores: see benchmarks/README.md).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(1, str(Path(__file__).resolve().parents[1]))

from _common import (  # noqa: E402
    REPO,
    captured_output,
    machine_info,
    median,
    print_machine,
    quiet_libraries,
    table,
    target_line,
    write_results,
)
from bench_extraction import (  # noqa: E402
    BenchSource,
    Timing,
    _cpu,
    default_videos,
    one_frame_clip,
    time_model_only,
    torch_threads,
)

NAME = "bench_backbones"
E2E_TARGET = 0.85
MODELS = {"ViT-S/16": "vit_small_patch16_224", "ConvNeXt-T": "convnext_tiny"}
# Part 2: README's recommended encoders (timm names; CLIP towers as timm's image-only ports, same compute).
COST_MODELS = {
    "ConvNeXt-T": ("convnext_tiny", {}),
    "ResNet-50 (timm)": ("resnet50", {}),
    "ViT-S/16": ("vit_small_patch16_224", {}),
    "DINOv2 ViT-S/14 @224": ("vit_small_patch14_dinov2", {"img_size": 224}),
    "CLIP ViT-B/32": ("vit_base_patch32_clip_224", {}),
    "CLIP ViT-B/16": ("vit_base_patch16_clip_224", {}),
    "SigLIP ViT-B/16": ("vit_base_patch16_siglip_224", {}),
    "DINOv2 ViT-B/14 @224": ("vit_base_patch14_dinov2", {"img_size": 224}),
    "CLIP ViT-L/14": ("vit_large_patch14_clip_224", {}),
}
QUICK_COST = ("ConvNeXt-T", "ViT-S/16")


def make_clips(videos: Path, copies: int, tmp: Path) -> list[Any]:
    from datamodules.records import ClipRecord

    src = videos / "single_face.mp4"
    if not src.exists():
        raise SystemExit(f"no single_face.mp4 under {videos}")
    folder = tmp / "clips"
    folder.mkdir(exist_ok=True)
    out = []
    for k in range(copies):
        link = folder / f"single_face-{k:02d}.mp4"
        link.symlink_to(src.resolve())
        out.append(ClipRecord(f"c{k:02d}", str(link), "neutral"))
    return out


def e2e(records: list[Any], config: dict[str, Any], frame_cap: int, workers: int, tmp: Path, log: Path) -> Timing:
    import pandas as pd

    from fer_zoo.extraction.run import ExtractorSpec, extract_modality

    root = Path(tempfile.mkdtemp(dir=tmp))
    with captured_output(log):
        c0, t0 = _cpu(children=True), time.perf_counter()
        s = extract_modality(BenchSource(records), records, root, "m", ExtractorSpec("timm", dict(config)),
                             frame_cap=frame_cap, num_workers=workers, log=lambda *a, **k: None,
                             trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False})
        dt, cpu = time.perf_counter() - t0, _cpu(children=True) - c0
    if s.failed:
        raise RuntimeError(f"clips failed: {s.failed}")
    frames = int(pd.read_parquet(s.path / "index.parquet", columns=["length"])["length"].sum())
    shutil.rmtree(root, ignore_errors=True)
    return Timing(dt, frames, cpu, float(os.cpu_count() or 1))


def _status_kib(key: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def memory_probe(model: str, precision: str, batch: int) -> None:
    """(Run in a fresh process.) Print the MiB the first forward of a ``batch``-frame batch adds to the RSS."""
    import torch

    from extractors import get_extractor

    ext = get_extractor("timm", model=model, pretrained=False, precision=precision, batch_frames=batch)
    s = ext.describe()["data_config"]["input_size"][1]
    x = torch.randint(0, 255, (batch, 3, s, s), dtype=torch.uint8)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := current RSS (Linux >= 4.0)
    before = _status_kib("VmRSS")
    ext.forward(x)
    print(f"MEMORY_MIB {(_status_kib('VmHWM') - before) / 1024:.1f}")


def batch_memory_mib(model: str, precision: str, batch: int) -> float | None:
    import subprocess

    env = {**os.environ, "PYTHONPATH": str(REPO)}
    r = subprocess.run([sys.executable, __file__, "--memory-probe", model, precision, str(batch)],
                       capture_output=True, text=True, env=env, cwd=REPO)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("MEMORY_MIB")), None)
    return float(line.split()[1]) if line else None


def bench_pair(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    import timm
    import torch
    from safetensors.torch import save_file

    from datamodules.frames import read_frames
    from extractors import get_extractor

    records = make_clips(args.videos, args.clips, tmp)
    one = one_frame_clip(args.videos, tmp)
    log = tmp / "pipeline.log"
    out: dict[str, Any] = {}
    for label in args.models.split(",") if args.models else MODELS:
        model = MODELS[label]
        file = tmp / f"{model}.safetensors"
        torch.manual_seed(0)
        save_file(timm.create_model(model, pretrained=False).state_dict(), file)
        res: dict[str, Any] = {"model": model}
        for precision in ("fp32", "bf16"):
            cfg = {"model": model, "pretrained": str(file), "precision": precision, "batch_frames": args.batch}
            ext = get_extractor("timm", **cfg)
            inputs = [ext.preprocess(read_frames(r.path, max_frames=args.frame_cap).rgb) for r in records]
            ext.forward(inputs[0])  # warm-up (allocator, oneDNN kernels)
            e2e([one], cfg, 1, args.workers, tmp, log)  # warm-up of the pipeline (imports, page cache)
            runs_e2e, runs_model, loads = [], [], []
            for i in range(args.repeats):
                print(f"  [{label} {precision}] repeat {i + 1}/{args.repeats}", flush=True)
                runs_model.append(time_model_only(ext, inputs))
                runs_e2e.append(e2e(records, cfg, args.frame_cap, args.workers, tmp, log))
                loads.append(round(os.getloadavg()[0], 2))
            fixed = median([e2e([one], cfg, 1, args.workers, tmp, log).seconds for _ in range(2)])
            mem = batch_memory_mib(model, precision, args.batch)
            e2e_s = median([t.seconds for t in runs_e2e])
            res[precision] = {"fixed_cost_s": fixed,
                              "e2e_fps_excl_fixed": runs_e2e[0].frames / max(e2e_s - fixed, 1e-9),
                              "model_only_fps": median([t.fps for t in runs_model]),
                              "e2e_fps": median([t.fps for t in runs_e2e]),
                              "model_only_all": [round(t.fps, 2) for t in runs_model],
                              "e2e_all": [round(t.fps, 2) for t in runs_e2e],
                              "e2e_cores": median([t.cores for t in runs_e2e]), "loadavg_1min": loads,
                              "ratio_all": [round(e.fps / m.fps, 3) for e, m in zip(runs_e2e, runs_model)],
                              "ratio": median([e.fps / m.fps for e, m in zip(runs_e2e, runs_model)]),
                              "batch_frames": args.batch, "batch_peak_mib": mem,
                              "frames": runs_e2e[0].frames, "dim": ext.dim,
                              "input_size": ext.describe()["data_config"]["input_size"]}
            del ext, inputs
        out[label] = res
    return out


def bench_cost(args: argparse.Namespace) -> dict[str, Any]:
    """Model-only frames/s of each recommended encoder through the ``timm`` extractor (random init, resolved
    precision) on one preprocessed ``--cost-frames`` batch."""
    import torch

    from extractors import get_extractor

    names = args.cost_models.split(",") if args.cost_models else QUICK_COST if args.quick else tuple(COST_MODELS)
    from torch.utils.flop_counter import FlopCounterMode

    out: dict[str, Any] = {}
    for label in names:
        model, kwargs = COST_MODELS[label]
        ext = get_extractor("timm", model=model, pretrained=False, model_kwargs=kwargs, batch_frames=args.cost_frames)
        size = ext.describe()["data_config"]["input_size"]
        x = torch.randint(0, 255, (args.cost_frames, 3, size[1], size[2]), dtype=torch.uint8)
        ext.forward(x[:1])  # warm-up
        times = []
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            ext.forward(x)
            times.append(time.perf_counter() - t0)
        params = sum(p.numel() for p in ext.model.parameters()) / 1e6
        with torch.inference_mode(), FlopCounterMode(display=False) as fc:
            ext.embed(torch.zeros(1, 3, size[1], size[2]).contiguous(memory_format=torch.channels_last))
        out[label] = {"model": model, "kwargs": kwargs, "dim": ext.dim, "input_size": list(size),
                      "params_m": round(params, 1), "gflops": round(fc.get_total_flops() / 1e9, 1),
                      "fps": args.cost_frames / median(times), "precision": ext.config["precision"],
                      "loadavg": round(os.getloadavg()[0], 2)}
        print(f"  [cost] {label}: {out[label]['fps']:.2f} frames/s, {out[label]['gflops']} GFLOPs/frame", flush=True)
        del ext
    base = out.get("ConvNeXt-T", {}).get("fps")
    for r in out.values():
        r["relative_cost"] = round(base / r["fps"], 2) if base else None
    return out


def report(pair: dict[str, Any], cost: dict[str, Any], args: argparse.Namespace) -> list[dict[str, Any]]:
    rows, targets = [], []
    for label, res in pair.items():
        for precision in ("fp32", "bf16"):
            r = res[precision]
            mem = f"{r['batch_peak_mib']:.0f}" if r["batch_peak_mib"] is not None else "n/a"
            rows.append([f"{label} {precision}", r["dim"], r["frames"], r["model_only_fps"], r["e2e_fps"],
                         f"{r['ratio']:.0%}",
                         f"{r['e2e_fps_excl_fixed'] / r['model_only_fps']:.0%}", f"{r['fixed_cost_s']:.1f}",
                         f"{r['e2e_cores']:.1f}", mem])
    if rows:
        print()
        print(table(["encoder", "D", "frames", "model-only f/s", "end-to-end f/s", "e2e / model", "excl. fixed",
                     "fixed s/run", "e2e cores", f"MiB / {args.batch}-frame batch"], rows,
                    title=f"1. timm encoders, {args.clips} clips x {args.frame_cap} frames (640x360 H.264), "
                          f"{args.workers} loader worker(s), {torch_threads()} torch thread(s); median of "
                          f"{args.repeats} (e2e / model: median of the back-to-back ratios)"))
    for label, res in pair.items():
        f32, b16 = res["fp32"], res["bf16"]
        print(f"   {label}: bf16 / fp32 model-only {b16['model_only_fps'] / f32['model_only_fps']:.2f}x, "
              f"end to end {b16['e2e_fps'] / f32['e2e_fps']:.2f}x")
        for precision in ("fp32", "bf16"):
            r = res[precision]
            targets.append(target_line(f"{label} {precision} end to end / model-only", r["ratio"], E2E_TARGET, "",
                                       f"{r['e2e_fps']:.1f} vs {r['model_only_fps']:.1f} frames/s; per repeat "
                                       f"{r['ratio_all']} at load {r['loadavg_1min']}; without the fixed per-run "
                                       f"cost {r['e2e_fps_excl_fixed'] / r['model_only_fps']:.0%}"))
    if cost:
        crow = [[k, r["dim"], f"{r['input_size'][1]}x{r['input_size'][2]}", r["params_m"], r["gflops"], r["fps"],
                 f"{r['relative_cost']:.1f}x" if r["relative_cost"] else "-", r["loadavg"]] for k, r in cost.items()]
        print()
        print(table(["encoder", "D", "input", "params (M)", "GFLOPs/frame", "f/s", "cost vs ConvNeXt-T", "load"], crow,
                    title=f"2. Model-only cost, {args.cost_frames}-frame batch, precision "
                          f"{next(iter(cost.values()))['precision']} (random init; speed only)"))
    return targets


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--memory-probe"]:
        memory_probe(argv[1], argv[2], int(argv[3]))
        return 0
    quick_env = os.environ.get("FER_ZOO_BENCH_QUICK", "") not in ("", "0")
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--videos", type=Path, default=default_videos())
    p.add_argument("--clips", type=int, default=None, help="clips per run (default 6; quick 2)")
    p.add_argument("--frame-cap", type=int, default=16, help="frames per clip (uniformly spaced)")
    p.add_argument("--workers", type=int, default=1, help="loader workers of the end-to-end runs")
    p.add_argument("--torch-threads", type=int, default=None, help="torch threads of the main process (default: "
                   "torch's, i.e. OMP_NUM_THREADS or one per core)")
    p.add_argument("--models", default=None, help=f"comma-separated labels of part 1 (default: {','.join(MODELS)})")
    p.add_argument("--batch", type=int, default=16, help="frames per batch for the memory figure")
    p.add_argument("--cost-frames", type=int, default=8, help="frames per timed batch in part 2")
    p.add_argument("--repeats", type=int, default=None, help="default 2 (quick 1)")
    p.add_argument("--skip-cost", action="store_true", help="skip part 2")
    p.add_argument("--cost-models", default=None, help="comma-separated labels of part 2 (default: all)")
    p.add_argument("--quick", action="store_true", default=quick_env)
    args = p.parse_args(argv)
    args.repeats = args.repeats or (1 if args.quick else 2)
    args.clips = args.clips or (2 if args.quick else 6)
    if args.torch_threads:
        import torch

        torch.set_num_threads(args.torch_threads)
    quiet_libraries()
    t_start = time.perf_counter()
    info = machine_info()
    print(f"== {NAME}: timm encoders end to end vs model-only, fp32 vs bf16, memory, relative cost ==")
    print_machine(info)
    tmp = Path(tempfile.mkdtemp(prefix="fer_zoo_bench_bb_"))
    try:
        pair = bench_pair(args, tmp)
        targets = report(pair, {}, args)  # part 1 is printed and saved before part 2 starts
        write_results(NAME, {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                             "encoders": pair, "cost": {}, "targets": targets})
        cost = {} if args.skip_cost else bench_cost(args)
        if cost:
            report({}, cost, args)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    elapsed = time.perf_counter() - t_start
    out = write_results(NAME, {"machine": info, "args": {k: str(v) for k, v in vars(args).items()},
                               "encoders": pair, "cost": cost, "targets": targets, "elapsed_s": round(elapsed, 1)})
    print(f"\nwrote {out.relative_to(REPO)} in {elapsed:.0f} s (load average now {os.getloadavg()[0]:.1f}; the machine "
          "is shared: absolute figures are low and noisy, ratios are measured back to back)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
