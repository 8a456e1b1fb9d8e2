#!/usr/bin/env python
"""Multi-frame clips: the tested model and its built-in probe beside a plain clip-mean logistic regression (issue 28).

The check the issue asks for: on labeled multi-frame clips, over person-grouped folds and seeds, is the model
``fit`` tests (which starts as, and often is, its built-in linear probe) at least as good as a plain multinomial
logistic regression on the clip means of the same stores, fitted on the same training clips? The clips are the
shared real face photos filmed by a drifting camera (``benchmarks/moving_photos.py``: 24-frame H.264 videos, 6
classes), cut by ``preprocess`` and extracted by ``extract`` exactly as a user's videos are.

Per modality set, fold and seed: ``fit`` (in this process, W&B off; ``configs/demo.yaml`` schedule unless
overridden after ``--``), and from the same DataModule split:

- **model**: the test UAR of the checkpoint ``fit`` tested (its start or a trained epoch: the ``tested`` column);
- **probe**: the built-in probe (``results.json`` ``baselines.probe``: clip statistics and C chosen by
  cross-validation over training + validation clips, refitted on them);
- **plain**: ``StandardScaler`` + ``LogisticRegression`` (L-BFGS, no class weights, max_iter 5000) on the clip means
  of the valid frames, fitted on training + validation clips, at two fixed strengths: an L2 penalty of 1e-3 on the
  mean log-loss (sklearn ``C = 1 / (1e-3 * n)``) and sklearn's default ``C = 1``; the better of the two is the
  target's reference;
- **majority**: the most frequent training class.

Target: per modality set, the model's mean test UAR over folds x seeds is not more than 1 point below the better
plain regression's. ``--quick`` (or ``FER_ZOO_BENCH_QUICK=1``): one set, two folds, one seed, 3 epochs (checks that
it runs; figures meaningless). Data and stores are built on first use into ``--root`` (default
``features/moving-photos``: ~2 min to film, ~1 min to crop, ~10-25 min to extract on 2 cores).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from _common import REPO, machine_info, print_machine, table, target_line, write_results  # noqa: E402

PHOTOS = Path(os.environ.get("FER_ZOO_SHARED_DATA", REPO.parent / "shared" / "data")) / "faces-static"
SETS = [["facemesh"], ["resnet"], ["fer2013"], ["resnet", "facemesh"]]
MAX_GAP = 1.0  # UAR points the model may trail the plain regression by
EXTRACT = {"resnet": {"name": "resnet18", "config": {"weights": "IMAGENET1K_V1"}, "fallback": {"name": "mobilenet_v2"}},
           "facemesh": {"name": "facemesh", "config": {"refine_landmarks": False, "geometry": True}},
           "fer2013": {"name": "fer2013", "config": {"output": "both"}}}


def ensure_data(root: Path, modalities: set[str]) -> Path:
    """Film the photos, crop them with ``preprocess``, extract the stores; returns the crops' manifest."""
    import subprocess

    import yaml
    from moving_photos import build

    manifest = root / "crops" / "manifest.csv"
    log = root / "build.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "offline"}
    if not manifest.is_file():
        labels = build(PHOTOS / "images", PHOTOS / "legend.csv", root)
        print("cropping the faces (preprocess) ...", flush=True)
        with open(log, "ab") as f:
            rc = subprocess.run([sys.executable, "-m", "fer_zoo", "preprocess", str(root / "videos"), "--out",
                                 str(root / "crops"), "--labels", str(labels)], cwd=REPO, env=env, stdout=f,
                                stderr=f).returncode
        if rc not in (0, 4):  # 4: some video without a face, left out of the manifest
            raise SystemExit(f"preprocess failed (exit {rc}); see {log}")
    missing = [m for m in sorted(modalities) if not list((root / "features" / m).glob("*/meta.json"))]
    if missing:
        cfg = {"source": {"class_path": "datamodules.sources.ManifestSource",
                          "init_args": {"csv": str(manifest), "n_folds": 5}},
               "store_root": str(root / "features"), "frame_cap": 64, "num_workers": 2, "decoder_threads": 1,
               "modalities": {m: EXTRACT[m] for m in missing}}
        (root / "extract.yaml").write_text(yaml.safe_dump(cfg))
        print(f"extracting {', '.join(missing)} (minutes) ...", flush=True)
        with open(log, "ab") as f:
            rc = subprocess.run([sys.executable, "-m", "fer_zoo", "extract", "--config", str(root / "extract.yaml")],
                                cwd=REPO, env=env, stdout=f, stderr=f).returncode
        if rc not in (0, 3):
            raise SystemExit(f"extract failed (exit {rc}); see {log}")
    return manifest


def fit_args(manifest: Path, root: Path, mods: list[str], fold: int, seed: int, extra: list[str]) -> list[str]:
    return ["--config", "configs/demo.yaml", "--data.source.class_path", "datamodules.sources.ManifestSource",
            "--data.source.init_args.csv", str(manifest), "--data.source.init_args.n_folds", "5",
            "--data.store_root", str(root / "features"), f"--data.modalities={json.dumps(mods)}",
            f"--data.fold={fold}", f"--data.seed={seed}", f"--seed_everything={seed}", *extra]


def plain_probes(dm: Any) -> dict[str, float]:
    """Test UAR of the plain clip-mean regressions (module docstring) on ``dm``'s split."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from fer_zoo.training.probe import clip_statistics, scores, stats_columns

    dims = [st.dim for st in dm.stores.values()]
    cols = stats_columns(dims, "mean")
    ids = {s: dm.split_ids[s] for s in ("train", "val", "test")}
    x = {s: clip_statistics(dm.stores, ids[s])[:, cols] for s in ids}
    y = {s: np.array([dm.labels[c] for c in ids[s]]) for s in ids}
    pool_x, pool_y = np.concatenate([x["train"], x["val"]]), np.concatenate([y["train"], y["val"]])
    fill = np.nanmean(pool_x, axis=0)
    pool_x = np.where(np.isnan(pool_x), fill, pool_x)
    test_x = np.where(np.isnan(x["test"]), fill, x["test"])
    keep = pool_x.std(axis=0) > 0
    scaler = StandardScaler().fit(pool_x[:, keep])
    out = {}
    for name, c in (("plain_l2", 1.0 / (1e-3 * len(pool_y))), ("plain_C1", 1.0)):
        clf = LogisticRegression(C=c, max_iter=5000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            clf.fit(scaler.transform(pool_x[:, keep]), pool_y)
        out[name] = scores(clf.predict(scaler.transform(test_x[:, keep])), y["test"], dm.num_classes)["test/uar"]
    return out


def run_cell(args: list[str], run_dir: Path) -> dict[str, Any]:
    """One ``fit`` in this process; its results.json, the tested candidate and the plain probes on its split."""
    from _common import captured_output

    from fer_zoo.training.cli import run_lightning_cli
    from fer_zoo.training.probe_command import datamodule_from_args

    run_dir.parent.mkdir(parents=True, exist_ok=True)
    argv = ["fit", *args, f"--runs_dir={run_dir.parent}", f"--run_name={run_dir.name}", "--wandb=false",
            "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]
    t0 = time.perf_counter()
    if not (run_dir / "results.json").is_file():
        with captured_output(run_dir.parent / f"{run_dir.name}.log"):
            run_lightning_cli(argv)
    res = json.loads((run_dir / "results.json").read_text())
    with captured_output(run_dir.parent / f"{run_dir.name}.plain.log"):
        dm = datamodule_from_args(args)
        dm.setup("fit")
        plain = plain_probes(dm)
    base = res.get("baselines") or {}
    return {"model": res["metrics"]["test/uar"], "probe": base["probe"]["metrics"]["test/uar"],
            "majority": base["majority"]["metrics"]["test/uar"], **plain,
            "tested": (res.get("candidates") or {}).get("chosen", "?"),
            "probe_stats": base["probe"].get("stats"), "probe_C": base["probe"].get("C"),
            "split": res.get("split_sizes"), "elapsed_s": round(time.perf_counter() - t0, 1)}


def main(argv: list[str] | None = None) -> int:
    import numpy as np

    from fer_zoo.cli_errors import split_passthrough

    argv, extra = split_passthrough(argv)
    quick = os.environ.get("FER_ZOO_BENCH_QUICK") == "1"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", default=quick)
    p.add_argument("--sets", nargs="+", default=None, help="modality sets as a+b (default: facemesh resnet fer2013 "
                   "resnet+facemesh)")
    p.add_argument("--folds", nargs="+", type=int, default=[1, 2, 3, 4, 5])
    p.add_argument("--seeds", nargs="+", type=int, default=[1, 2])
    p.add_argument("--root", type=Path, default=REPO / "features" / "moving-photos")
    p.add_argument("--runs", type=Path, default=None, help="where the runs go (default: a temporary folder)")
    args = p.parse_args(argv)
    if not PHOTOS.is_dir():
        print(f"SKIP: {PHOTOS} is absent (the shared labeled photos); nothing to measure")
        return 0
    sets = [s.split("+") for s in args.sets] if args.sets else SETS
    if args.quick:
        sets, args.folds, args.seeds, extra = sets[:1], args.folds[:2], args.seeds[:1], ["--trainer.max_epochs=3",
                                                                                          *extra]
    os.environ.setdefault("WANDB_MODE", "offline")
    os.chdir(REPO)
    info = machine_info()
    print_machine(info)
    manifest = ensure_data(args.root.resolve(), {m for s in sets for m in s})
    tmp = tempfile.TemporaryDirectory(prefix="bench_probe-") if args.runs is None else None
    runs = Path(tmp.name) if tmp else args.runs
    print(f"runs: {runs}; folds {args.folds}; seeds {args.seeds}; extra fit args: {' '.join(extra) or '(none)'}",
          flush=True)
    cells, targets, rows = [], [], []
    for mods in sets:
        label = "+".join(mods)
        mine = []
        for fold in args.folds:
            for seed in args.seeds:
                cell = {"modalities": label, "fold": fold, "seed": seed,
                        **run_cell(fit_args(manifest, args.root.resolve(), mods, fold, seed, extra),
                                   runs / f"{label}-fold{fold}-seed{seed}")}
                mine.append(cell)
                print(f"  {label:<18} fold {fold} seed {seed}: model {100 * cell['model']:5.1f} ({cell['tested']}), "
                      f"probe {100 * cell['probe']:5.1f} ({cell['probe_stats']}, C {cell['probe_C']:g}), plain "
                      f"{100 * cell['plain_l2']:5.1f} / {100 * cell['plain_C1']:5.1f}, majority "
                      f"{100 * cell['majority']:5.1f} [{cell['elapsed_s']:.0f}s]", flush=True)
        cells.extend(mine)
        mean = {k: float(np.mean([c[k] for c in mine])) for k in ("model", "probe", "plain_l2", "plain_C1",
                                                                  "majority")}
        plain = max(mean["plain_l2"], mean["plain_C1"])
        starts = sum(c["tested"] == "start" for c in mine)
        rows.append([label, len(mine), f"{100 * mean['model']:.1f}", f"{100 * mean['probe']:.1f}",
                     f"{100 * mean['plain_l2']:.1f}", f"{100 * mean['plain_C1']:.1f}", f"{100 * mean['majority']:.1f}",
                     f"{100 * (mean['model'] - plain):+.1f}", f"{starts}/{len(mine)}"])
        targets.append(target_line(f"{label}: model - best plain clip-mean regression (UAR points)",
                                   100 * (mean["model"] - plain), -MAX_GAP, "pt"))
    print(table(["modalities", "runs", "model", "built-in probe", "plain (L2 1e-3)", "plain (C 1)", "majority",
                 "model - plain", "start tested"], rows,
                title="test UAR %, mean over folds x seeds (moving photos, 6 classes, person-grouped folds)"))
    write_results("bench_probe", {"machine": info, "cells": cells, "targets": targets, "extra_args": extra,
                                  "folds": args.folds, "seeds": args.seeds})
    return 0


if __name__ == "__main__":
    with warnings.catch_warnings():
        sys.exit(main())
