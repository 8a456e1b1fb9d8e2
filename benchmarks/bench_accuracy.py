#!/usr/bin/env python
"""Accuracy benchmark: does the temporal transformer use each modality at least as well as a linear probe?

For each data set (the bundled sample; the shared ``faces-static`` photos with a person-grouped split) and each
modality set (resnet, facemesh, pose alone, and all three), ``fit`` runs once per seed (the seed also draws the
split: repeated random splits) exactly as ``python -m fer_zoo fit`` does (in-process, W&B off), and its
``results.json`` gives the model's test metrics next to the linear probe's and the majority class's on the same
split (see ``fer_zoo/training/probe.py``). Printed: mean ± std over seeds of test UAR/WAR for the model, the
probe and the majority class.

Targets (issue 11): for every (data set, modality set) the model's mean test UAR is not below its probe's mean by
more than 1 point; per data set the best fused set's mean UAR is at least the best single modality's.

Stores: the sample's are built by ``make extract`` (``features/sample``). faces-static's are built on first use into
``--faces-static-stores`` (default ``features/faces_static``, a few minutes on 2 cores) and reused afterwards.

faces-static runs its 5 person-grouped folds (``ImageFolderSource(n_folds=5)``, fold k trained with seed k), so
every photo is tested once; a seeded 20 % split holds 1 of the 7 contempt and 3 of the 16 fear photos, and one photo
then moves that split's UAR by 12.5 points. The table gives the mean over repeats and the UAR of all repeats' test
predictions pooled (over folds: every class's recall over all its photos). The sample: 5 seeded splits.

Usage: ``python benchmarks/bench_accuracy.py [--datasets sample faces_static] [--seeds 1 2 3 4 5] [-- FIT ARGS]``;
``FER_ZOO_BENCH_QUICK=1``: one seed, 3 epochs (checks that it runs; figures meaningless).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import REPO, machine_info, print_machine, table, target_line, write_results  # noqa: E402

FACES_STATIC = Path(os.environ.get("FER_ZOO_SHARED_DATA", REPO.parent / "shared" / "data")) / "faces-static"
SUBJECT_PATTERN = r"^(.+)_\d+[a-z]*$"
SETS = [["resnet"], ["facemesh"], ["pose"], ["resnet", "pose", "facemesh"]]
MAX_GAP_POINTS = 1.0  # the model may trail its probe by at most this many UAR points


def faces_static_source(n_folds: int = 0) -> dict[str, Any]:
    """The shared photos, person-grouped; ``n_folds`` >= 2: that many folds drawn once (``fold_seed`` 0)."""
    return {"class_path": "datamodules.sources.ImageFolderSource",
            "init_args": {"root": str(FACES_STATIC / "images"), "legend": str(FACES_STATIC / "legend.csv"),
                          "vocabulary": "faces8", "subject_pattern": SUBJECT_PATTERN, "n_folds": n_folds}}


def ensure_faces_static_stores(root: Path, modalities: set[str]) -> float:
    """Build the missing stores of ``modalities`` once (``python -m fer_zoo extract --only ...``; resumable);
    returns the seconds it took (0 if all were there). Do not run two of these on one root at a time."""
    missing = sorted(m for m in modalities if not any((root / m).glob("*/meta.json")))
    if not missing:
        return 0.0
    import yaml

    cfg = yaml.safe_load((REPO / "configs" / "extract.yaml").read_text())
    cfg["source"] = faces_static_source()
    cfg["store_root"] = str(root)
    root.mkdir(parents=True, exist_ok=True)
    cfg_file = root / "extract_faces_static.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg, sort_keys=False))
    print(f"building the faces-static stores {missing} in {root} (once; a few minutes) ...", flush=True)
    t0 = time.perf_counter()
    with open(root / "extract.log", "w") as log:
        rc = subprocess.run([sys.executable, "-m", "fer_zoo", "extract", "--config", str(cfg_file), "--only",
                             *missing], cwd=REPO, stdout=log, stderr=subprocess.STDOUT).returncode
    if rc not in (0, 3):  # 3: some photos failed (recorded in the store), the rest is usable
        raise SystemExit(f"extraction of faces-static failed (exit {rc}); see {root / 'extract.log'}")
    return time.perf_counter() - t0


def dataset_args(name: str, faces_static_stores: Path, n_folds: int = 0) -> list[str]:
    if name == "sample":
        return ["--config", "configs/demo.yaml", "--data.store_root=features/sample"]
    return ["--config", "configs/demo.yaml", f"--data.source={json.dumps(faces_static_source(n_folds))}",
            f"--data.store_root={faces_static_stores}"]


def repeats(name: str, seeds: list[int], n_folds: int) -> list[tuple[int | None, int]]:
    """``(fold, seed)`` of each repeat: the sample (no folds) one seeded split per seed; faces-static with
    ``n_folds`` >= 2 each fold once, trained with seed = fold number (every photo tested exactly once)."""
    if name == "faces_static" and n_folds >= 2:
        return [(k, k) for k in range(1, n_folds + 1)]
    return [(None, s) for s in seeds]


def pooled_uar(confusions: list[list[list[int]] | None]) -> float:
    """UAR of the repeats' test predictions pooled (confusions ``[true][pred]`` summed): over folds, every photo
    is tested once, so each class's recall is over all its photos (7 contempt, 16 fear on faces-static) instead of
    the 1-3 of one split. Over seeded splits of equal per-class counts it equals the mean."""
    import numpy as np

    if not confusions or any(c is None for c in confusions):
        return float("nan")
    total = np.sum([np.asarray(c, dtype=np.int64) for c in confusions], axis=0)
    support = total.sum(axis=1)
    return float(np.mean(np.diag(total)[support > 0] / support[support > 0]))


def run_fit(args: list[str], run_dir: Path) -> dict[str, Any]:
    """One ``fit`` in this process (what ``python -m fer_zoo fit`` runs), output kept in ``<run_dir>.log``."""
    from _common import captured_output

    from fer_zoo.training.cli import run_lightning_cli

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    argv = ["fit", *args, f"--runs_dir={run_dir.parent}", f"--run_name={run_dir.name}", "--wandb=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    t0 = time.perf_counter()
    with captured_output(run_dir.parent / f"{run_dir.name}.log"):
        run_lightning_cli(argv)
    res = json.loads((run_dir / "results.json").read_text())
    res["elapsed_s"] = time.perf_counter() - t0
    return res


def mean_std(xs: list[float]) -> tuple[float, float]:
    import numpy as np

    a = np.asarray(xs, dtype=float)
    return float(a.mean()), float(a.std(ddof=1)) if len(a) > 1 else float("nan")


def min_class_support(confusions: list[list[list[int]] | None]) -> int:
    """Fewest test clips of one present class in any seed's split."""
    import numpy as np

    sizes = [np.asarray(c).sum(axis=1) for c in confusions if c is not None]
    return int(min((s[s > 0].min() for s in sizes), default=0))


def pct(m: float, s: float) -> str:
    return f"{100 * m:.1f} ± {100 * s:.1f}" if s == s else f"{100 * m:.1f}"


def main(argv: list[str] | None = None) -> int:
    from fer_zoo.cli_errors import split_passthrough

    argv, extra = split_passthrough(argv)
    quick = os.environ.get("FER_ZOO_BENCH_QUICK") == "1"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", default=["sample", "faces_static"], choices=["sample", "faces_static"])
    p.add_argument("--seeds", nargs="+", type=int, default=[1] if quick else [1, 2, 3, 4, 5])
    p.add_argument("--sets", nargs="+", default=None, help="modality sets as a+b+c (default: resnet facemesh pose "
                   "resnet+pose+facemesh)")
    p.add_argument("--faces-static-stores", type=Path, default=REPO / "features" / "faces_static")
    p.add_argument("--faces-static-folds", type=int, default=1 if quick else 5,
                   help="faces-static: run each of this many person-grouped folds once (seed = fold; every photo "
                        "tested once); 0 or 1: one seeded split per --seeds value instead")
    p.add_argument("--runs", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    p.add_argument("--name", default="bench_accuracy", help="results file benchmarks/results/<name>.json")
    args = p.parse_args(argv)
    if quick:
        extra = ["--trainer.max_epochs=3", *extra]
    sets = [s.split("+") for s in args.sets] if args.sets else SETS
    os.environ.setdefault("WANDB_MODE", "offline")
    os.chdir(REPO)
    info = machine_info()
    print_machine(info)
    extract_s = 0.0
    if "faces_static" in args.datasets:
        if not FACES_STATIC.is_dir():
            print(f"skipping faces_static: {FACES_STATIC} is absent")
            args.datasets = [d for d in args.datasets if d != "faces_static"]
        else:
            extract_s = ensure_faces_static_stores(args.faces_static_stores.resolve(), {m for s in sets for m in s})
    tmp = tempfile.TemporaryDirectory(prefix="bench_accuracy-") if args.runs is None else None
    runs = Path(tmp.name) if tmp else args.runs
    print(f"runs: {runs}; seeds {args.seeds}; extra fit args: {' '.join(extra) or '(none)'}", flush=True)

    cells: list[dict[str, Any]] = []
    t_all = time.perf_counter()
    for ds in args.datasets:
        for fold, seed in repeats(ds, args.seeds, args.faces_static_folds):
            for mods in sets:
                label = "+".join(mods)
                fit_args = [*dataset_args(ds, args.faces_static_stores.resolve(), args.faces_static_folds),
                            f"--data.modalities={json.dumps(mods)}", f"--seed_everything={seed}",
                            f"--data.seed={seed}", *([f"--data.fold={fold}"] if fold else []), *extra]
                res = run_fit(fit_args, runs / ds / f"{label}-{f'fold{fold}-' if fold else ''}seed{seed}")
                base = res.get("baselines") or {}
                cell = {"dataset": ds, "modalities": label, "fold": fold, "seed": seed,
                        "elapsed_s": round(res["elapsed_s"], 1),
                        "model": res["metrics"], "probe": base.get("probe", {}).get("metrics", {}),
                        "probe_C": base.get("probe", {}).get("C"),
                        "majority": base.get("majority", {}).get("metrics", {}), "split_sizes": res["split_sizes"],
                        "model_confusion": res.get("confusion"),
                        "probe_confusion": base.get("probe", {}).get("confusion")}
                cells.append(cell)
                where = f"fold {fold} seed {seed}" if fold else f"seed {seed}"
                print(f"  {ds:<12} {label:<22} {where}: model UAR {100 * cell['model']['test/uar']:5.1f}  "
                      f"probe {100 * cell['probe'].get('test/uar', float('nan')):5.1f}  "
                      f"majority {100 * cell['majority'].get('test/uar', float('nan')):5.1f}  "
                      f"({cell['elapsed_s']:.0f} s)", flush=True)
    total_s = time.perf_counter() - t_all

    rows, summary, targets = [], [], []
    for ds in args.datasets:
        best_single, best_fused = (None, -1.0), (None, -1.0)
        pooled_of: dict[str, float] = {}
        for mods in sets:
            label = "+".join(mods)
            mine = [c for c in cells if c["dataset"] == ds and c["modalities"] == label]
            stat = {k: {m: mean_std([c[k][f"test/{m}"] for c in mine]) for m in ("uar", "war")}
                    for k in ("model", "probe", "majority")}
            gap = stat["model"]["uar"][0] - stat["probe"]["uar"][0]
            pooled = {k: pooled_uar([c.get(f"{k}_confusion") for c in mine]) for k in ("model", "probe")}
            support = min_class_support([c.get("model_confusion") for c in mine])
            summary.append({"dataset": ds, "modalities": label, "n": len(mine), **{
                f"{k}_{m}_{w}": v for k in stat for m in stat[k] for w, v in zip(("mean", "std"), stat[k][m])},
                "model_minus_probe_uar": gap, "model_uar_pooled": pooled["model"],
                "probe_uar_pooled": pooled["probe"], "min_test_clips_per_class": support})
            rows.append([ds, label, len(mine), pct(*stat["model"]["uar"]), pct(*stat["probe"]["uar"]),
                         pct(*stat["majority"]["uar"]), f"{100 * gap:+.1f}", pct(*stat["model"]["war"]),
                         pct(*stat["probe"]["war"]), f"{100 * pooled['model']:.1f}", f"{100 * pooled['probe']:.1f}",
                         support])
            targets.append(target_line(f"{ds} {label}: model UAR minus probe UAR (points)", 100 * gap,
                                       -MAX_GAP_POINTS, detail=f"mean over {len(mine)} repeats"))
            if len(mods) == 1 and stat["model"]["uar"][0] > best_single[1]:
                best_single = (label, stat["model"]["uar"][0])
            if len(mods) > 1 and stat["model"]["uar"][0] > best_fused[1]:
                best_fused = (label, stat["model"]["uar"][0])
            pooled_of[label] = pooled["model"]
        if best_single[0] and best_fused[0]:
            targets.append(target_line(
                f"{ds}: best fused ({best_fused[0]}) minus best single ({best_single[0]}) model UAR (points)",
                100 * (best_fused[1] - best_single[1]), 0.0))
            targets.append(target_line(
                f"{ds}: the same on the pooled UAR ({pooled_of[best_fused[0]] * 100:.1f} vs "
                f"{pooled_of[best_single[0]] * 100:.1f})",
                100 * (pooled_of[best_fused[0]] - pooled_of[best_single[0]]), 0.0))
    print()
    print(table(["data set", "modalities", "repeats", "model UAR %", "probe UAR %", "majority UAR %",
                 "model-probe", "model WAR %", "probe WAR %", "model UAR pooled", "probe UAR pooled",
                 "min clips/class"], rows,
                title="test UAR/WAR, mean ± std over repeats (sample: seeded splits; faces-static: folds); same "
                      "split for all three; pooled: UAR of all repeats' test predictions together; min clips/class: "
                      "the smallest test class of any repeat (one clip of it is worth 100/num_classes UAR points)"))
    print(f"\n{len(cells)} fits in {total_s:.0f} s"
          + (f"; faces-static stores built in {extract_s:.0f} s" if extract_s else ""))
    out = write_results(args.name, {"machine": info, "seeds": args.seeds, "extra_args": extra, "quick": quick,
                                    "cells": cells, "summary": summary, "targets": targets,
                                    "fits_seconds": round(total_s, 1), "extract_seconds": round(extract_s, 1)})
    print(f"results: {out}")
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
