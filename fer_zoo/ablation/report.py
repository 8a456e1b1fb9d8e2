"""The summary of a modality ablation (see :mod:`fer_zoo.ablation.grid`): table, Markdown, bar chart, summary W&B run.

Every number comes from the cells' ``results.json`` (the test metrics each run logged; a cell's ``metrics.csv`` is
read back as a cross-check and a disagreement is reported). Per modality set: ``n`` finished cells, mean and
sample std (ddof 1; undefined for n = 1) of test UAR and WAR over folds x seeds, and the gain in mean UAR over the
best single-modality set. Rows are ranked by mean UAR (ties: fewer modalities first); sets without a finished cell
come last.

Beside each set's model stand its baselines from the same runs (``results.json`` ``baselines``, same split): the
linear probe on clip statistics of the same stores (``fer_zoo.training.probe``) and the majority class. The
conclusion sentence names the best set, its gain over the best single modality and over its own probe, the spread
over folds x seeds, and warns when that spread is larger than the gap.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fer_zoo.plots import save_figure

OK = ("done", "skipped")
METRICS = {"uar": "test/uar", "war": "test/war", "f1": "test/f1"}
BASELINES = ("probe", "majority")
UAR_COLOUR, WAR_COLOUR, PROBE_COLOUR = "#1f77b4", "#ff7f0e", "#9edae5"


@dataclass
class SummaryFiles:
    table: pd.DataFrame | None
    markdown: str
    csv: Path
    md: Path
    png: Path | None
    cells_csv: Path
    wandb_dir: Path | None


# ----------------------------------------------------------------------------------------------------------- table


def cell_table(records: list[dict[str, Any]]) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per cell, metrics read from its results.json; also the class names and any cross-check warnings."""
    rows, class_names, warnings = [], [], []
    for rec in records:
        row = dict(rec)
        for key in METRICS:
            row[key] = float("nan")
            for b in BASELINES:
                row[f"{b}_{key}"] = float("nan")
        if rec["status"] in OK:
            res = json.loads((Path(rec["run_dir"]) / "results.json").read_text())
            for key, name in METRICS.items():
                row[key] = float(res["metrics"].get(name, float("nan")))
                for b in BASELINES:  # absent in runs from before the baselines existed: NaN, shown as "–"
                    row[f"{b}_{key}"] = float(((res.get("baselines") or {}).get(b) or {}).get("metrics", {})
                                              .get(name, float("nan")))
            # Which checkpoint the run tested: "start" (its linear probe), "best epoch" or "last" (checkpoint policy)
            row["tested"] = ((res.get("candidates") or {}).get("chosen")
                             or ("last" if res.get("checkpoint_policy") == "last" else "best epoch"))
            class_names = class_names or list(res.get("class_names") or [])
            logged = _logged_test_metrics(Path(rec["run_dir"]) / "metrics.csv")
            for key in ("uar", "war"):
                if key in logged and not math.isclose(logged[key], row[key], rel_tol=0, abs_tol=1e-6):
                    warnings.append(f"{rec['cell']}: results.json test/{key} {row[key]:.6f} but metrics.csv "
                                    f"logged {logged[key]:.6f}")
        rows.append(row)
    cols = ["cell", "modalities", "n_modalities", "fold", "seed", "status", "tested", "uar", "war", "f1",
            *(f"{b}_{k}" for b in BASELINES for k in METRICS), "rc", "elapsed_s", "run_dir", "log", "error", "stale"]
    return pd.DataFrame(rows).reindex(columns=cols), class_names, warnings


def _logged_test_metrics(path: Path) -> dict[str, float]:
    """The test/uar and test/war values the run's CSV logger wrote (last logged value of each)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError):
        return {}
    out = {}
    for key in ("uar", "war"):
        col = f"test/{key}"
        if col in df and df[col].notna().any():
            out[key] = float(df[col].dropna().iloc[-1])
    return out


def summary_table(cells: pd.DataFrame, order: list[str] | None = None) -> pd.DataFrame:
    """One row per modality set: n, n_failed, UAR/WAR mean and std, gain in mean UAR over the best single set, and
    the same means/stds for the set's linear probe (``probe_*``) and the majority class (``majority_*``), plus
    ``uar_gain_vs_probe`` (model mean UAR minus probe mean UAR over the same runs) and ``n_start`` (runs that tested
    the model's start, see ``fer_zoo.training.selection``)."""
    labels = order or list(dict.fromkeys(cells["modalities"]))
    ok = cells[cells["status"].isin(OK)]
    rows = []
    for label in labels:
        mine, all_mine = ok[ok["modalities"] == label], cells[cells["modalities"] == label]
        row: dict[str, Any] = {"modalities": label, "n_modalities": len(label.split("+")), "n": len(mine),
                               "n_failed": int((all_mine["status"] == "failed").sum())}
        for key in ("uar", "war"):
            for prefix in ("", *(f"{b}_" for b in BASELINES)):
                col = f"{prefix}{key}"
                vals = mine[col].to_numpy(dtype=float) if col in mine else np.array([])
                vals = vals[np.isfinite(vals)]
                row[f"{col}_mean"] = float(vals.mean()) if len(vals) else float("nan")
                row[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        row["uar_gain_vs_probe"] = row["uar_mean"] - row["probe_uar_mean"]
        # Runs whose transformer did not beat its start (the linear probe) by a standard error on val: tested as probe
        row["n_start"] = int((mine["tested"] == "start").sum()) if "tested" in mine else 0
        rows.append(row)
    table = pd.DataFrame(rows)
    singles = table[(table["n_modalities"] == 1) & (table["n"] > 0)]
    best_single = singles["uar_mean"].max() if len(singles) else float("nan")
    table["uar_gain_vs_best_single"] = table["uar_mean"] - best_single
    table["_has"] = table["n"] > 0
    table = table.sort_values(["_has", "uar_mean", "n_modalities", "modalities"],
                              ascending=[False, False, True, True], kind="stable")
    table = table.drop(columns="_has").reset_index(drop=True)
    table.insert(0, "rank", np.where(table["n"] > 0, np.arange(1, len(table) + 1), 0))
    table.attrs["best_single"] = (singles.loc[singles["uar_mean"].idxmax(), "modalities"]
                                  if len(singles) else None)
    return table


def _pct(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if math.isfinite(std) else f"{100 * mean:.1f}"


def markdown(table: pd.DataFrame, meta: dict[str, Any]) -> str:
    """The table as GitHub Markdown (percent, mean ± std), the majority-class line, and the conclusion sentence."""
    best = table.attrs.get("best_single")
    head = [f"## Modality ablation `{meta['name']}` on {meta['dataset']}", "",
            f"Test UAR / WAR in %, mean ± std (sample std, ddof 1) over n = folds x seeds runs per modality set "
            f"(folds {meta['folds']}, seeds {meta['seeds']}); ΔUAR = mean UAR minus that of the best single "
            f"modality ({best or 'none in the grid'}), in points. Probe: logistic regression on the clip mean and "
            f"std of the same stores, same runs and splits (C chosen on val); Δprobe = model minus probe, in points. "
            f"Start tested: runs whose checkpoint policy tested the model's start (its stacked linear probe, the "
            f"transformer adding nothing) because no trained epoch beat it on val by a standard error. "
            f"Base: {' + '.join(meta['base']) or '(defaults)'}; "
            f"overrides: `{' '.join(meta['overrides']) or '(none)'}`.", ""]
    cols = ["rank", "modalities", "n", "UAR %", "probe UAR %", "Δprobe", "WAR %", "probe WAR %",
            "ΔUAR vs best single", "failed", "start tested"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---:", ":---", *["---:"] * (len(cols) - 2)]) + "|"]
    for r in table.itertuples():
        cells = [str(r.rank) if r.rank else "–", f"`{r.modalities}`", str(r.n), _pct(r.uar_mean, r.uar_std),
                 _pct(r.probe_uar_mean, r.probe_uar_std), _pts(r.uar_gain_vs_probe), _pct(r.war_mean, r.war_std),
                 _pct(r.probe_war_mean, r.probe_war_std), _pts(r.uar_gain_vs_best_single), str(r.n_failed),
                 f"{r.n_start}/{r.n}"]
        lines.append("| " + " | ".join(cells) + " |")
    maj = _majority(table)
    if maj is not None:
        lines.append(f"| – | majority class | {maj[0]} | {_pct(maj[1], maj[2])} | | | {_pct(maj[3], maj[4])} | | | | |")
    return "\n".join(head + lines + ["", conclusion(table)]) + "\n"


def _pts(x: float) -> str:
    return f"{100 * x:+.1f}" if math.isfinite(x) else "–"


def _majority(table: pd.DataFrame) -> tuple[int, float, float, float, float] | None:
    """(n, UAR mean, std, WAR mean, std) of the majority class, from the set with the most runs (it does not depend
    on the modalities, only on the split)."""
    t = table[table["n"] > 0]
    if not len(t) or not np.isfinite(t["majority_uar_mean"]).any():
        return None
    r = t.loc[t["n"].idxmax()]
    return (int(r["n"]), float(r["majority_uar_mean"]), float(r["majority_uar_std"]), float(r["majority_war_mean"]),
            float(r["majority_war_std"]))


def conclusion(table: pd.DataFrame) -> str:
    """One paragraph: the best set, its gain over the best single modality and over its own probe (points of mean
    UAR), the spread (sample std over folds x seeds), and a warning for every gap smaller than the spread."""
    t = table[table["n"] > 0]
    if not len(t):
        return "No modality set has a finished run."
    top = t.iloc[0]
    spread = lambda r: float(r["uar_std"]) if math.isfinite(r["uar_std"]) else float("nan")  # noqa: E731
    parts = [f"**Best: `{top['modalities']}`**, test UAR {_pct(top['uar_mean'], top['uar_std'])} % over "
             f"{int(top['n'])} run(s)"]
    warnings: list[str] = []
    singles = t[t["n_modalities"] == 1]
    if int(top["n_modalities"]) > 1 and len(singles):
        single = singles.iloc[0]
        gap = float(top["uar_mean"] - single["uar_mean"])
        parts.append(f"{_pts(gap)} points over the best single modality `{single['modalities']}` "
                     f"({_pct(single['uar_mean'], single['uar_std'])} %)")
        sp = np.nanmax([spread(top), spread(single)])
        if math.isfinite(sp) and sp > abs(gap):
            warnings.append(f"the gain over `{single['modalities']}` ({_pts(gap)}) is smaller than the spread over "
                            f"folds x seeds ({100 * sp:.1f} points)")
    elif int(top["n_modalities"]) == 1:
        fused = t[t["n_modalities"] > 1]
        if len(fused):
            f = fused.iloc[0]
            gap = float(top["uar_mean"] - f["uar_mean"])
            parts.append(f"a single modality: the best fused set `{f['modalities']}` is {_pts(-gap)} points "
                         f"behind it ({_pct(f['uar_mean'], f['uar_std'])} %)")
            sp = np.nanmax([spread(top), spread(f)])
            if math.isfinite(sp) and sp > abs(gap):
                warnings.append(f"its lead over `{f['modalities']}` ({_pts(gap)}) is smaller than the spread "
                                f"({100 * sp:.1f} points)")
    gap_p = float(top["uar_gain_vs_probe"])
    if math.isfinite(gap_p):
        parts.append(f"{_pts(gap_p)} points over its own linear probe "
                     f"({_pct(top['probe_uar_mean'], top['probe_uar_std'])} %)")
        sp = np.nanmax([spread(top), float(top["probe_uar_std"]) if math.isfinite(top["probe_uar_std"]) else np.nan])
        if math.isfinite(sp) and sp > abs(gap_p):
            warnings.append(f"the difference to its probe ({_pts(gap_p)}) is smaller than the spread "
                            f"({100 * sp:.1f} points)")
    behind = t[t["uar_gain_vs_probe"] < 0]
    if len(behind):
        worst = behind.loc[behind["uar_gain_vs_probe"].idxmin()]
        warnings.append(f"{len(behind)} set(s) score below their linear probe, most `{worst['modalities']}` "
                        f"({_pts(worst['uar_gain_vs_probe'])} points): the model does not use those inputs fully")
    if int(top["n"]) < 2:
        warnings.append("one run per set: no spread is known, so no difference here is established")
    text = "; ".join(parts) + "."
    if warnings:
        text += " **Warning:** " + "; ".join(warnings) + "."
    return text


# ----------------------------------------------------------------------------------------------------------- chart


def chart(table: pd.DataFrame, meta: dict[str, Any], num_classes: int | None = None) -> Figure:
    """Grouped bars per modality set (UAR, WAR), std error bars, value labels, chance-level UAR line."""
    t = table[table["n"] > 0].reset_index(drop=True)
    k = len(t)
    fig = Figure(figsize=(max(7.0, 1.25 * k + 2.5), 5.6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(k)
    w = 0.27
    top = 0.0
    bars = [(-w, "uar", UAR_COLOUR, "UAR (macro recall)", None), (0.0, "probe_uar", PROBE_COLOUR,
             "linear probe UAR (same runs)", "//"), (w, "war", WAR_COLOUR, "WAR (accuracy)", None)]
    for dx, key, colour, label, hatch in bars:
        mean = 100 * t[f"{key}_mean"].to_numpy(dtype=float)
        if not np.isfinite(mean).any():
            continue
        raw_std = 100 * t[f"{key}_std"].to_numpy(dtype=float)
        has, std = np.isfinite(raw_std), np.nan_to_num(raw_std, nan=0.0)  # n = 1: no error bar at all
        ax.bar(x + dx, mean, w, color=colour, label=label, edgecolor="black", linewidth=0.5, hatch=hatch)
        if has.any():
            ax.errorbar((x + dx)[has], mean[has], yerr=std[has], fmt="none", ecolor="black", elinewidth=1.2,
                        capsize=4)
        for xi, m, s in zip(x + dx, mean, std):
            if math.isfinite(m):
                ax.text(xi, m + s + 0.8, f"{m:.1f}", ha="center", va="bottom", fontsize=7)
        top = max(top, float(np.nanmax(mean + std)) if k else 0.0)
    best = table.attrs.get("best_single")
    if best is not None and k > 1:
        ref = 100 * float(table.loc[table["modalities"] == best, "uar_mean"].iloc[0])
        ax.axhline(ref, color=UAR_COLOUR, linestyle=":", linewidth=1.2,
                   label=f"best single modality UAR ({best}, {ref:.1f}%)")
    maj = _majority(table)
    if maj is not None:
        ax.axhline(100 * maj[1], color="black", linestyle="-.", linewidth=1,
                   label=f"majority class UAR ({100 * maj[1]:.1f}%)")
    if num_classes:
        chance = 100.0 / num_classes
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1,
                   label=f"chance UAR (1/{num_classes} = {chance:.1f}%)")
    ns = sorted(set(t["n"].astype(int)))
    ticks = [lbl.replace("+", "\n+") + ("" if len(ns) == 1 else f"\n(n={n})")
             for lbl, n in zip(t["modalities"], t["n"])]
    ax.set_xticks(x, labels=ticks)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(0, min(105.0, max(top + 10.0, 20.0)))
    ax.set_ylabel("test score (%)")
    ax.set_xlabel("modality set, ranked by mean UAR")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    n_txt = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    nf, nseeds = len(meta["folds"]), len(meta["seeds"])
    grid = f"{nf} fold{'s' * (nf > 1)} × {nseeds} seed{'s' * (nseeds > 1)}"
    what = "mean ± std (error bars)" if max(ns or [0]) > 1 else "single runs (n = 1: no error bars)"
    ax.set_title(f"Modality ablation '{meta['name']}' on {meta['dataset']}\n"
                 f"test UAR / WAR, {what} over {n_txt} runs per modality set ({grid})", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------- W&B


def log_summary_run(table: pd.DataFrame, cells: pd.DataFrame, png: Path | None, abl_dir: Path,
                    meta: dict[str, Any]) -> Path | None:
    """A W&B run (``job_type="summary"``) in the ablation's group holding the table, the per-cell table and the
    chart. Offline by default; reruns reuse its id, and an offline rerun replaces the previous offline folder."""
    import wandb

    os.environ.setdefault("WANDB_MODE", "offline")
    id_file = abl_dir / "summary_wandb_id.txt"
    run_id = id_file.read_text().strip() if id_file.exists() else wandb.util.generate_id()
    id_file.write_text(run_id + "\n")
    offline = os.environ["WANDB_MODE"] == "offline"
    if offline:  # a rerun's offline run replaces the previous one; uploaded, both are the same run (same id)
        for old in (abl_dir / "wandb").glob(f"offline-run-*-{run_id}"):
            shutil.rmtree(old, ignore_errors=True)
    run = wandb.init(project=meta["wandb_project"], group=meta["name"], job_type="summary",
                     name=f"{meta['name']}-summary", id=run_id, resume=None if offline else "allow", dir=str(abl_dir),
                     tags=["summary", f"ablation:{meta['name']}"], config={**meta, "modalities": "summary"},
                     settings=wandb.Settings(console="off", silent=True))
    try:
        payload: dict[str, Any] = {"ablation/summary": wandb.Table(dataframe=_wandb_frame(table)),
                                   "ablation/cells": wandb.Table(dataframe=_wandb_frame(cells))}
        if png is not None:
            payload["ablation/chart"] = wandb.Image(str(png), caption=f"{meta['name']} on {meta['dataset']}")
        run.log(payload)
        if len(table) and table["n"].iloc[0] > 0:
            best = table.iloc[0]
            run.summary.update({"best/modalities": best["modalities"], "best/uar_mean": best["uar_mean"],
                                "best/war_mean": best["war_mean"], "best/probe_uar_mean": best["probe_uar_mean"],
                                "majority/uar_mean": best["majority_uar_mean"], "conclusion": conclusion(table),
                                "cells/total": len(cells),
                                "cells/failed": int((cells["status"] == "failed").sum())})
        run_dir = Path(run.dir).parent
    finally:
        run.finish()
    return run_dir


def _wandb_frame(df: pd.DataFrame) -> pd.DataFrame:
    """NaN -> None (JSON has no NaN) and plain Python scalars, so every W&B backend takes the table."""
    out = df.astype(object)
    return out.where(pd.notna(out), None)


# ------------------------------------------------------------------------------------------------------------ files


def write_summary(records: list[dict[str, Any]], abl_dir: Path, meta: dict[str, Any]) -> SummaryFiles:
    """cells.csv, summary.{csv,md,png} in ``abl_dir``, and the summary W&B run (when ``meta['wandb']``)."""
    abl_dir.mkdir(parents=True, exist_ok=True)
    cells, class_names, warnings = cell_table(records)
    for w in warnings:
        print(f"warning: {w}")
    cells_csv = abl_dir / "cells.csv"
    cells.to_csv(cells_csv, index=False)
    csv, md, png = abl_dir / "summary.csv", abl_dir / "summary.md", abl_dir / "summary.png"
    if not (cells["status"].isin(OK)).any():
        text = f"## Modality ablation `{meta['name']}`\n\nNo cell has finished: nothing to summarise yet.\n"
        md.write_text(text)
        pd.DataFrame().to_csv(csv, index=False)
        png.unlink(missing_ok=True)
        return SummaryFiles(None, text, csv, md, None, cells_csv, None)
    table = summary_table(cells, order=meta.get("modality_sets"))
    text = markdown(table, meta)
    if meta.get("zero_shot"):  # the zero-shot baseline (no training) as one more row, same splits
        from fer_zoo.ablation.zero_shot import add_to_markdown, add_to_table

        table, text = add_to_table(table, meta["zero_shot"]), add_to_markdown(text, meta["zero_shot"])
    table.to_csv(csv, index=False, float_format="%.6f")
    md.write_text(text)
    save_figure(chart(table, meta, len(class_names) or None), png)
    wandb_dir = None
    if meta.get("wandb", True):
        try:
            wandb_dir = log_summary_run(table, cells, png, abl_dir, meta)
        except Exception as err:  # the files above are the summary; a W&B hiccup must not lose them
            print(f"warning: the summary W&B run failed ({type(err).__name__}: {err}); summary files are written")
    return SummaryFiles(table, text, csv, md, png, cells_csv, wandb_dir)
