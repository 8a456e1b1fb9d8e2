#!/usr/bin/env python
"""The static-to-dynamic table (issue 13): each row (a)-(d) as the model beside the linear probe and the majority
class, all three on the same person-grouped split of ``../shared/data/faces-static`` (``fit.yaml``: seed 42).

- **start**: what ``fit``'s clip-statistics head starts from on that split (one modality: its probe; several: the
  per-modality probes stacked, ``fer_zoo.training.probe.init_probe_for``), scored on the test photos.
- **probe** and **majority**: ``fer_zoo.training.probe.baselines`` on the FeatureDataModule that ``fit`` would build
  from ``fit.yaml`` with the row's modalities and ``--store_root`` (seconds per row; deterministic: L-BFGS, C chosen
  on the validation split). Stores are only read.
- **model**: the ``metrics`` of ``<runs_dir>/<modalities joined by +>-seed<k>/results.json`` (``fit.yaml``'s run
  names), mean ± half the range over the seeds found; ``-`` when no run exists. ``--fit`` first runs the missing
  ``fit``s (``--seeds``), exactly as ``fit.yaml``'s header shows. Without ``--fit`` nothing is trained.

A row whose stores are absent under ``--store_root`` is printed with the reason. Usage (repo root)::

    python benchmarks/static2dynamic/table.py --store_root features/faces_static [--runs_dir runs/s2d]
        [--rows resnet facemesh+fer2013] [--fit --seeds 1 2] [--out s2d_table.json] [-- FIT OVERRIDES]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(REPO))

FIT_YAML = HERE / "fit.yaml"
# (row label, modalities), in the order of the table in benchmarks/README.md
ROWS: list[tuple[str, list[str]]] = [
    ("(a) today's modalities", ["resnet"]),
    ("(a) today's modalities", ["facemesh"]),
    ("(a) today's best", ["resnet", "facemesh"]),
    ("(b) static FER", ["fer2013"]),
    ("(c) quick fine-tune", ["ftframes"]),
    ("(c) fine-tuned encoder", ["ftfull"]),
    ("(d)", ["fer2013", "facemesh"]),
    ("(d)", ["ftframes", "fer2013"]),
    ("(d)", ["ftframes", "fer2013", "facemesh"]),
    ("(d) best combination", ["ftfull", "fer2013"]),
    ("(d)", ["ftfull", "fer2013", "facemesh"]),
]


def fit_args(modalities: list[str], store_root: str, extra: list[str]) -> list[str]:
    return ["--config", str(FIT_YAML), "--data.modalities", json.dumps(modalities), "--data.store_root", store_root,
            *extra]


def probe_row(modalities: list[str], store_root: str, extra: list[str]) -> dict[str, Any]:
    """Linear probe, the model's start (``init_probe_for``: the stacked per-modality probes for a fused row) and
    majority class on the row's split; ``{"error": ...}`` when its stores cannot be read."""
    from fer_zoo.training.probe import baselines, clip_statistics, init_probe_for, scores
    from fer_zoo.training.probe_command import datamodule_from_args

    t0 = time.perf_counter()
    try:
        dm = datamodule_from_args(fit_args(modalities, store_root, extra))
        res = baselines(dm)
        init = init_probe_for(dm)
    except (FileNotFoundError, KeyError, ValueError) as err:
        return {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:160]}"}
    test = dm.split_ids["test"]
    start = scores(init.probe.predict(clip_statistics(dm.stores, test)), [dm.labels[c] for c in test],
                   dm.num_classes)
    return {"probe": res["probe"], "start": {"chosen": init.chosen, "metrics": start},
            "majority": res["majority"], "class_balance": dm.class_balance,
            "split_sizes": {s: len(dm.split_ids[s]) for s in ("train", "val", "test")},
            "seconds": round(time.perf_counter() - t0, 2)}


def model_runs(modalities: list[str], runs_dir: Path) -> dict[int, dict[str, float]]:
    """Seed -> test metrics of the row's finished fit runs (``<mods>-seed<k>/results.json``)."""
    out = {}
    for res in sorted(runs_dir.glob(f"{'+'.join(modalities)}-seed*/results.json")):
        seed = res.parent.name.rsplit("-seed", 1)[1]
        metrics = json.loads(res.read_text()).get("metrics") or {}
        if seed.isdigit() and "test/uar" in metrics:
            out[int(seed)] = metrics
    return out


def run_fit(modalities: list[str], seed: int, store_root: str, runs_dir: Path, extra: list[str]) -> None:
    name = f"{'+'.join(modalities)}-seed{seed}"
    cmd = [sys.executable, "-m", "fer_zoo", "fit", *fit_args(modalities, store_root, extra),
           "--seed_everything", str(seed), "--run_name", name, "--runs_dir", str(runs_dir)]
    print("+", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=REPO, check=True)


def cell(values: list[float]) -> str:
    """Mean ± half the range (and the values) in %, as in the README table."""
    if not values:
        return "-"
    v = [100 * x for x in values]
    mean = sum(v) / len(v)
    if len(v) == 1:
        return f"{mean:.1f}"
    return f"{mean:.1f} ± {(max(v) - min(v)) / 2:.1f} ({', '.join(f'{x:.1f}' for x in v)})"


def main(argv: list[str] | None = None) -> int:
    from fer_zoo.cli_errors import split_passthrough

    argv, extra = split_passthrough(argv)
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store_root", default="features/faces_static")
    ap.add_argument("--runs_dir", type=Path, default=Path("runs/s2d"))
    ap.add_argument("--rows", nargs="*", default=None,
                    help="only these rows, as modalities joined by + (e.g. ftfull+fer2013)")
    ap.add_argument("--fit", action="store_true", help="run the missing fits of --seeds first (minutes per fit)")
    ap.add_argument("--seeds", nargs="*", type=int, default=[1, 2])
    ap.add_argument("--out", type=Path, default=None, help="also write the table as JSON here")
    args = ap.parse_args(argv)
    rows = [(label, mods) for label, mods in ROWS if args.rows is None or "+".join(mods) in args.rows]
    if args.rows is not None and len(rows) != len(args.rows):
        known = ["+".join(m) for _, m in ROWS]
        ap.error(f"--rows {args.rows}: unknown row(s); known: {known}")

    out: list[dict[str, Any]] = []
    print("| | modalities | model UAR | model WAR | seeds | probe UAR | probe WAR | start UAR | start WAR | "
          "majority UAR | majority WAR |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for label, mods in rows:
        base = probe_row(mods, args.store_root, extra)
        if "error" not in base and args.fit:
            for seed in args.seeds:
                if seed not in model_runs(mods, args.runs_dir):
                    run_fit(mods, seed, args.store_root, args.runs_dir, extra)
        runs = model_runs(mods, args.runs_dir)
        seeds = sorted(runs)
        model_uar = cell([runs[s]["test/uar"] for s in seeds])
        model_war = cell([runs[s]["test/war"] for s in seeds])
        if "error" in base:
            print(f"| {label} | {' + '.join(mods)} | {model_uar} | {model_war} | {seeds or '-'} | "
                  f"no stores: {base['error']} | | | | | |")
        else:
            p, st, m = base["probe"]["metrics"], base["start"]["metrics"], base["majority"]["metrics"]
            print(f"| {label} | {' + '.join(mods)} | {model_uar} | {model_war} | "
                  f"{', '.join(map(str, seeds)) or '-'} | {100 * p['test/uar']:.1f} | {100 * p['test/war']:.1f} | "
                  f"{100 * st['test/uar']:.1f} | {100 * st['test/war']:.1f} | "
                  f"{100 * m['test/uar']:.1f} | {100 * m['test/war']:.1f} |", flush=True)
        out.append({"row": label, "modalities": mods, "model": runs, **base})
    done = [r for r in out if "error" not in r]
    if done:
        r = done[0]
        print(f"\nsplit train/val/test {r['split_sizes']} (the same for every row: fit.yaml's seed and fractions); "
              f"class_balance {r['class_balance']} (probe: class_weight "
              f"{'None' if r['class_balance'] == 'none' else 'balanced'}); probe C chosen on val by UAR; "
              f"{sum(x['seconds'] for x in done):.1f} s for {len(done)} rows")
    if args.out is not None:
        args.out.write_text(json.dumps(out, indent=2) + "\n")
        print(f"written: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
