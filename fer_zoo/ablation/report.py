"""The summary of a modality ablation (see :mod:`fer_zoo.ablation.grid`): table, Markdown, bar chart, summary W&B run.

What is scored depends on the task the cells ran (:mod:`fer_zoo.ablation.scoring`): the clip task (test UAR, then
WAR; values in percent) or the dense per-frame task (``test/score``, the mean of the configured ABAW tasks' official
metrics, then each task's metric: EXPR macro F1, VA CCC, AU F1; values as they are). Below, "the main metric" is UAR
or the ABAW score.

Every number comes from the cells' ``results.json`` (the test metrics each run logged; a cell's ``metrics.csv`` is
read back as a cross-check and a disagreement is reported). Per modality set: ``n`` finished cells, mean and
sample std (ddof 1; undefined for n = 1) of each summarised metric over folds x seeds, and the gain in the mean of
the main metric over the best single-modality set. Rows are ranked by the mean of the main metric (ties: fewer
modalities first); sets without a finished cell come last.

Beside each set's model stand its baselines from the same runs (``results.json`` ``baselines``, same split): the
linear probe on the same stores (clip: on clip statistics, ``fer_zoo.training.probe``; dense: per frame,
``fer_zoo.dense.baselines``) and the prior (clip: the majority class; dense: the majority class / training mean per
task, mapped to the score the way the model's is). The conclusion sentence names the metric, the best set, its gain
over the best single modality and over its own probe, the spread over folds x seeds, and warns when that spread is
larger than the gap.
"""

from __future__ import annotations

import json
import math
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fer_zoo.ablation.scoring import CLIP, DENSE_PRIOR_LABEL, Metric, Scoring, for_task
from fer_zoo.plots import save_figure

OK = ("done", "skipped")
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


def cell_table(records: list[dict[str, Any]],
               scoring: Scoring = CLIP) -> tuple[pd.DataFrame, list[str], list[str]]:
    """One row per cell, ``scoring``'s metrics (and each baseline's, ``<baseline>_<key>``) read from its
    results.json; also the class names and warnings (metrics.csv disagreeing, baselines that failed)."""
    rows, class_names, warnings = [], [], []
    for rec in records:
        row = dict(rec)
        for m in scoring.cells:
            row[m.key] = float("nan")
            for b in scoring.baselines:
                row[f"{b}_{m.key}"] = float("nan")
        if rec["status"] in OK:
            res = json.loads((Path(rec["run_dir"]) / "results.json").read_text())
            for m in scoring.cells:
                row[m.key] = scoring.value(res, m)
                for b in scoring.baselines:  # absent in runs from before the baselines existed: NaN, shown as "–"
                    row[f"{b}_{m.key}"] = scoring.baseline(res, b, m)
            # Which checkpoint the run tested: "start" (its linear probe), "best epoch" or "last" (checkpoint policy)
            row["tested"] = ((res.get("candidates") or {}).get("chosen")
                             or ("last" if res.get("checkpoint_policy") == "last" else "best epoch"))
            class_names = class_names or list(res.get("class_names") or [])
            error = scoring.baseline_error(res)
            if error:
                warnings.append(f"{rec['cell']}: its baselines failed in the run ({error}): its probe and "
                                f"{scoring.prior_label} are missing (–)")
            logged = _logged_test_metrics(Path(rec["run_dir"]) / "metrics.csv", scoring.table)
            for m in scoring.table:
                if m.key in logged and not math.isclose(logged[m.key], row[m.key], rel_tol=0, abs_tol=1e-6):
                    warnings.append(f"{rec['cell']}: results.json {m.name} {row[m.key]:.6f} but metrics.csv "
                                    f"logged {logged[m.key]:.6f}")
        rows.append(row)
    keys = [m.key for m in scoring.cells]
    cols = ["cell", "modalities", "n_modalities", "fold", "seed", "status", "tested", *keys,
            *(f"{b}_{k}" for b in scoring.baselines for k in keys), "rc", "elapsed_s", "run_dir", "log", "error",
            "stale"]
    return pd.DataFrame(rows).reindex(columns=cols), class_names, warnings


def _logged_test_metrics(path: Path, metrics: Sequence[Metric] = CLIP.table) -> dict[str, float]:
    """The values of ``metrics`` (e.g. test/uar, test/war) the run's CSV logger wrote (last logged value of each)."""
    try:
        df = pd.read_csv(path)
    except (OSError, ValueError):
        return {}
    out = {}
    for m in metrics:
        if m.name in df and df[m.name].notna().any():
            out[m.key] = float(df[m.name].dropna().iloc[-1])
    return out


def summary_table(cells: pd.DataFrame, order: list[str] | None = None, scoring: Scoring = CLIP) -> pd.DataFrame:
    """One row per modality set: n, n_failed, mean and std of each of ``scoring.table`` (clip: ``uar``, ``war``;
    dense: ``score`` and each task's metric), the gain in the main metric's mean over the best single set
    (``<main>_gain_vs_best_single``), and the same means/stds for the set's linear probe (``probe_*``) and the
    prior (``majority_*`` / ``prior_*``), plus ``<main>_gain_vs_probe`` (model minus probe over the same runs, see
    :func:`_gain_vs_probe`) and ``n_start`` (runs that tested the model's start, see ``fer_zoo.training.selection``;
    the clip task)."""
    labels = order or list(dict.fromkeys(cells["modalities"]))
    main = scoring.main.key
    ok = cells[cells["status"].isin(OK)]
    rows = []
    for label in labels:
        mine, all_mine = ok[ok["modalities"] == label], cells[cells["modalities"] == label]
        row: dict[str, Any] = {"modalities": label, "n_modalities": len(label.split("+")), "n": len(mine),
                               "n_failed": int((all_mine["status"] == "failed").sum())}
        for m in scoring.table:
            for prefix in ("", *(f"{b}_" for b in scoring.baselines)):
                col = f"{prefix}{m.key}"
                vals = mine[col].to_numpy(dtype=float) if col in mine else np.array([])
                vals = vals[np.isfinite(vals)]
                row[f"{col}_mean"] = float(vals.mean()) if len(vals) else float("nan")
                row[f"{col}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else float("nan")
        row[f"{main}_gain_vs_probe"] = _gain_vs_probe(mine, main)
        # Runs whose transformer did not beat its start (the linear probe) by a standard error on val: tested as probe
        row["n_start"] = int((mine["tested"] == "start").sum()) if "tested" in mine else 0
        rows.append(row)
    table = pd.DataFrame(rows)
    singles = table[(table["n_modalities"] == 1) & (table["n"] > 0)]
    best_single = singles[f"{main}_mean"].max() if len(singles) else float("nan")
    table[f"{main}_gain_vs_best_single"] = table[f"{main}_mean"] - best_single
    table["_has"] = table["n"] > 0
    table = table.sort_values(["_has", f"{main}_mean", "n_modalities", "modalities"],
                              ascending=[False, False, True, True], kind="stable")
    table = table.drop(columns="_has").reset_index(drop=True)
    table.insert(0, "rank", np.where(table["n"] > 0, np.arange(1, len(table) + 1), 0))
    table.attrs["best_single"] = (singles.loc[singles[f"{main}_mean"].idxmax(), "modalities"]
                                  if len(singles) else None)
    return table


def _gain_vs_probe(runs: pd.DataFrame, key: str) -> float:
    """Mean ``key`` minus mean ``probe_<key>`` over the same runs: the difference of the two means when every run has
    both, else the mean paired difference over the runs that have both (a run whose baselines are missing would
    otherwise compare the model on n runs with its probe on fewer); NaN when none has both."""
    model = runs[key].to_numpy(dtype=float) if key in runs else np.array([])
    probe = runs[f"probe_{key}"].to_numpy(dtype=float) if f"probe_{key}" in runs else np.full(len(model), np.nan)
    both = np.isfinite(model) & np.isfinite(probe)
    if not both.any():
        return float("nan")
    if both.sum() == np.isfinite(model).sum() == np.isfinite(probe).sum():
        return float(model[both].mean()) - float(probe[both].mean())
    return float((model[both] - probe[both]).mean())


def _intro(table: pd.DataFrame, meta: dict[str, Any], scoring: Scoring) -> str:
    """The paragraph above the table: what each number is."""
    best = table.attrs.get("best_single")
    tail = f"Base: {' + '.join(meta['base']) or '(defaults)'}; overrides: `{' '.join(meta['overrides']) or '(none)'}`."
    if scoring.task == "clip":
        return (f"Test UAR / WAR in %, mean ± std (sample std, ddof 1) over n = folds x seeds runs per modality set "
                f"(folds {meta['folds']}, seeds {meta['seeds']}); ΔUAR = mean UAR minus that of the best single "
                f"modality ({best or 'none in the grid'}), in points. Probe: logistic regression on the clip mean "
                f"and std of the same stores, same runs and splits (C chosen on val); Δprobe = model minus probe, in "
                f"points. Start tested: runs whose checkpoint policy tested the model's start (its stacked linear "
                f"probe, the transformer adding nothing) because no trained epoch beat it on val by a standard "
                f"error. " + tail)
    per_task = "" if len(scoring.tasks) == 1 else (
        "; beside it each task's metric (" + ", ".join(m.label for m in scoring.table[1:]) + ")")
    folds = ("fold 0: the source's official split, ABAW's Validation_Set as test" if meta["folds"] == [0]
             else f"folds {meta['folds']} of the source's n_folds")
    return (f"Dense (per-frame) task, ABAW tasks {list(scoring.tasks)}: test {scoring.main.label}{per_task}, "
            f"each an official ABAW metric on every labeled frame of the test clips (EXPR: macro F1 over the 8 "
            f"classes; VA: Lin's CCC, mean of valence and arousal; AU: mean F1 at 0.5 over the AUs with labels), as "
            f"fractions, mean ± std (sample std, ddof 1) over n = folds x seeds runs per modality set "
            f"({folds}, seeds {meta['seeds']}); Δscore = mean score minus that of the best single modality "
            f"({best or 'none in the grid'}). Probe: per-frame linear probe on the same stores (logistic regression "
            f"for EXPR and each AU, ridge for V and A), fitted on the same training clips and scored on the same "
            f"frames, its score the mean of its task metrics as the model's; Δprobe = model minus probe. "
            f"Prior ({', '.join(f'{t}: {DENSE_PRIOR_LABEL[t]}' for t in scoring.tasks)}): fitted on the same "
            f"training clips and scored on the same frames (a constant V/A has CCC 0). " + tail)


def markdown(table: pd.DataFrame, meta: dict[str, Any], scoring: Scoring = CLIP, notes: Sequence[str] = ()) -> str:
    """The table as GitHub Markdown (mean ± std; percent for the clip task), the prior's line (majority class /
    mean), the conclusion sentence, and ``notes`` (one bullet each) under it."""
    main = scoring.main
    others = list(scoring.table[1:]) if scoring.task == "clip" or len(scoring.tasks) > 1 else []
    cols = ["rank", "modalities", "n", main.column, scoring.probe_column(main), "Δprobe"]
    for m in others:
        cols += [m.column, scoring.probe_column(m)]
    cols += [f"Δ{main.short} vs best single", "failed", *(["start tested"] if scoring.task == "clip" else [])]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join(["---:", ":---", *["---:"] * (len(cols) - 2)]) + "|"]
    for r in table.itertuples():
        cells = [str(r.rank) if r.rank else "–", f"`{r.modalities}`", str(r.n),
                 scoring.fmt(getattr(r, f"{main.key}_mean"), getattr(r, f"{main.key}_std")),
                 scoring.fmt(getattr(r, f"probe_{main.key}_mean"), getattr(r, f"probe_{main.key}_std")),
                 scoring.gain(getattr(r, f"{main.key}_gain_vs_probe"))]
        for m in others:
            cells += [scoring.fmt(getattr(r, f"{m.key}_mean"), getattr(r, f"{m.key}_std")),
                      scoring.fmt(getattr(r, f"probe_{m.key}_mean"), getattr(r, f"probe_{m.key}_std"))]
        cells += [scoring.gain(getattr(r, f"{main.key}_gain_vs_best_single")), str(r.n_failed)]
        if scoring.task == "clip":
            cells.append(f"{r.n_start}/{r.n}")
        lines.append("| " + " | ".join(cells) + " |")
    prior = _prior(table, scoring)
    if prior is not None:
        n, values = prior
        cells = ["–", scoring.prior_label, str(n), scoring.fmt(*values[main.key]), "", ""]
        for m in others:
            cells += [scoring.fmt(*values[m.key]), ""]
        cells += [""] * (len(cols) - len(cells))
        lines.append("|" + "".join(f" {c} |" if c else " |" for c in cells))
    head = [f"## Modality ablation `{meta['name']}` on {meta['dataset']}", "", _intro(table, meta, scoring), ""]
    tail = ["", conclusion(table, scoring)]
    if notes:
        tail += ["", *(f"- {note}" for note in notes)]
    return "\n".join(head + lines + tail) + "\n"


def _prior(table: pd.DataFrame, scoring: Scoring = CLIP) -> tuple[int, dict[str, tuple[float, float]]] | None:
    """(n, metric key -> (mean, std)) of the prior (majority class / mean), from the set with the most runs (it
    does not depend on the modalities, only on the split)."""
    t = table[table["n"] > 0]
    p = scoring.prior
    if not len(t) or not np.isfinite(t[f"{p}_{scoring.main.key}_mean"]).any():
        return None
    r = t.loc[t["n"].idxmax()]
    return int(r["n"]), {m.key: (float(r[f"{p}_{m.key}_mean"]), float(r[f"{p}_{m.key}_std"])) for m in scoring.table}


def _nanmax(values: Sequence[float]) -> float:
    """The largest finite value, NaN when there is none (``np.nanmax`` without its all-NaN warning)."""
    finite = [float(v) for v in values if math.isfinite(v)]
    return max(finite) if finite else float("nan")


def conclusion(table: pd.DataFrame, scoring: Scoring = CLIP) -> str:
    """One paragraph: the metric and the best set, its gain over the best single modality and over its own probe
    (in the main metric's mean), the spread (sample std over folds x seeds), and a warning for every gap smaller
    than the spread."""
    t = table[table["n"] > 0]
    if not len(t):
        return "No modality set has a finished run."
    key, s = scoring.main.key, scoring
    mean, std = f"{key}_mean", f"{key}_std"
    top = t.iloc[0]
    spread = lambda r: float(r[std]) if math.isfinite(r[std]) else float("nan")  # noqa: E731
    parts = [f"**Best: `{top['modalities']}`**, test {s.main.label} {s.fmt(top[mean], top[std])}{s.unit} over "
             f"{int(top['n'])} run(s)"]
    warnings: list[str] = []
    singles = t[t["n_modalities"] == 1]
    if int(top["n_modalities"]) > 1 and len(singles):
        single = singles.iloc[0]
        gap = float(top[mean] - single[mean])
        parts.append(f"{s.gain(gap)}{s.gain_unit} over the best single modality `{single['modalities']}` "
                     f"({s.fmt(single[mean], single[std])}{s.unit})")
        sp = _nanmax([spread(top), spread(single)])
        if math.isfinite(sp) and sp > abs(gap):
            warnings.append(f"the gain over `{single['modalities']}` ({s.gain(gap)}) is smaller than the spread over "
                            f"folds x seeds ({s.spread(sp)})")
    elif int(top["n_modalities"]) == 1:
        fused = t[t["n_modalities"] > 1]
        if len(fused):
            f = fused.iloc[0]
            gap = float(top[mean] - f[mean])
            parts.append(f"a single modality: the best fused set `{f['modalities']}` is {s.gain(-gap)}{s.gain_unit} "
                         f"behind it ({s.fmt(f[mean], f[std])}{s.unit})")
            sp = _nanmax([spread(top), spread(f)])
            if math.isfinite(sp) and sp > abs(gap):
                warnings.append(f"its lead over `{f['modalities']}` ({s.gain(gap)}) is smaller than the spread "
                                f"({s.spread(sp)})")
    gap_p = float(top[f"{key}_gain_vs_probe"])
    if math.isfinite(gap_p):
        probe_std = float(top[f"probe_{std}"])
        parts.append(f"{s.gain(gap_p)}{s.gain_unit} over its own {s.probe_name} "
                     f"({s.fmt(top[f'probe_{mean}'], probe_std)}{s.unit})")
        sp = _nanmax([spread(top), probe_std])
        if math.isfinite(sp) and sp > abs(gap_p):
            warnings.append(f"the difference to its probe ({s.gain(gap_p)}) is smaller than the spread "
                            f"({s.spread(sp)})")
    behind = t[t[f"{key}_gain_vs_probe"] < 0]
    if len(behind):
        worst = behind.loc[behind[f"{key}_gain_vs_probe"].idxmin()]
        warnings.append(f"{len(behind)} set(s) score below their {s.probe_name}, most `{worst['modalities']}` "
                        f"({s.gain(worst[f'{key}_gain_vs_probe'])}{s.gain_unit}): the model does not use those "
                        f"inputs fully")
    if int(top["n"]) < 2:
        warnings.append("one run per set: no spread is known, so no difference here is established")
    text = "; ".join(parts) + "."
    if warnings:
        text += " **Warning:** " + "; ".join(warnings) + "."
    return text


# ----------------------------------------------------------------------------------------------------------- chart


def _bars(scoring: Scoring) -> list[tuple[float, str, str, str, str | None]]:
    """(x offset, column stem, colour, legend label, hatch) of each bar group: the model's main metric, its probe's
    and (clip) WAR."""
    w, main = 0.27, scoring.main
    if scoring.task == "clip":
        return [(-w, "uar", UAR_COLOUR, "UAR (macro recall)", None),
                (0.0, "probe_uar", PROBE_COLOUR, "linear probe UAR (same runs)", "//"),
                (w, "war", WAR_COLOUR, "WAR (accuracy)", None)]
    return [(-w / 2, main.key, UAR_COLOUR, main.label, None),
            (w / 2, f"probe_{main.key}", PROBE_COLOUR, f"{scoring.probe_name} {main.short} (same runs)", "//")]


def chart(table: pd.DataFrame, meta: dict[str, Any], num_classes: int | None = None,
          scoring: Scoring = CLIP) -> Figure:
    """Grouped bars per modality set (clip: UAR, probe UAR, WAR; dense: score, probe score), std error bars, value
    labels, the best single modality's and the prior's lines, and (``num_classes``) the chance-level UAR line."""
    t = table[table["n"] > 0].reset_index(drop=True)
    k = len(t)
    sc, d, main = scoring.scale, scoring.decimals, scoring.main
    pct = "%" if sc == 100 else ""
    fig = Figure(figsize=(max(7.0, 1.25 * k + 2.5), 5.6), dpi=120, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = np.arange(k)
    w = 0.27
    top, low = 0.0, 0.0
    for dx, key, colour, label, hatch in _bars(scoring):
        mean = sc * t[f"{key}_mean"].to_numpy(dtype=float)
        if not np.isfinite(mean).any():
            continue
        raw_std = sc * t[f"{key}_std"].to_numpy(dtype=float)
        has, std = np.isfinite(raw_std), np.nan_to_num(raw_std, nan=0.0)  # n = 1: no error bar at all
        ax.bar(x + dx, mean, w, color=colour, label=label, edgecolor="black", linewidth=0.5, hatch=hatch)
        if has.any():
            ax.errorbar((x + dx)[has], mean[has], yerr=std[has], fmt="none", ecolor="black", elinewidth=1.2,
                        capsize=4)
        for xi, m, s in zip(x + dx, mean, std):
            if math.isfinite(m):
                ax.text(xi, m + s + 0.008 * sc, f"{m:.{d}f}", ha="center", va="bottom", fontsize=7)
        top = max(top, float(np.nanmax(mean + std)) if k else 0.0)
        low = min(low, float(np.nanmin(mean - std)) if k else 0.0)
    best = table.attrs.get("best_single")
    if best is not None and k > 1:
        ref = sc * float(table.loc[table["modalities"] == best, f"{main.key}_mean"].iloc[0])
        ax.axhline(ref, color=UAR_COLOUR, linestyle=":", linewidth=1.2,
                   label=f"best single modality {main.short} ({best}, {ref:.{d}f}{pct})")
    prior = _prior(table, scoring)
    if prior is not None:
        level = sc * prior[1][main.key][0]
        ax.axhline(level, color="black", linestyle="-.", linewidth=1,
                   label=f"{scoring.prior_label} {main.short} ({level:.{d}f}{pct})")
        low = min(low, level)
    if num_classes:
        chance = 100.0 / num_classes
        ax.axhline(chance, color="grey", linestyle="--", linewidth=1,
                   label=f"chance UAR (1/{num_classes} = {chance:.1f}%)")
    ns = sorted(set(t["n"].astype(int)))
    ticks = [lbl.replace("+", "\n+") + ("" if len(ns) == 1 else f"\n(n={n})")
             for lbl, n in zip(t["modalities"], t["n"])]
    ax.set_xticks(x, labels=ticks)
    ax.set_xlim(-0.6, k - 0.4)
    ax.set_ylim(0 if low >= 0 else low - 0.1 * sc, min(1.05 * sc, max(top + 0.1 * sc, 0.2 * sc)))
    ax.set_ylabel("test score (%)" if pct else "test score")
    ax.set_xlabel(f"modality set, ranked by mean {main.short}")
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.legend(loc="upper right", fontsize=8, framealpha=0.9)
    n_txt = f"n = {ns[0]}" if len(ns) == 1 else f"n = {ns[0]}–{ns[-1]}"
    nf, nseeds = len(meta["folds"]), len(meta["seeds"])
    grid = f"{nf} fold{'s' * (nf > 1)} × {nseeds} seed{'s' * (nseeds > 1)}"
    what = "mean ± std (error bars)" if max(ns or [0]) > 1 else "single runs (n = 1: no error bars)"
    metric = "UAR / WAR" if scoring.task == "clip" else main.label
    ax.set_title(f"Modality ablation '{meta['name']}' on {meta['dataset']}\n"
                 f"test {metric}, {what} over {n_txt} runs per modality set ({grid})", fontsize=10)
    return fig


# ----------------------------------------------------------------------------------------------------------- W&B


def log_summary_run(table: pd.DataFrame, cells: pd.DataFrame, png: Path | None, abl_dir: Path,
                    meta: dict[str, Any], scoring: Scoring = CLIP) -> Path | None:
    """A W&B run (``job_type="summary"``) in the ablation's group holding the table, the per-cell table and the
    chart (``ablation/summary``, ``ablation/cells``, ``ablation/chart``), and in its summary the best set's means
    (``best/<metric>_mean`` for each of ``scoring.table``, ``best/probe_<main>_mean``, ``<prior>/<main>_mean``),
    the conclusion and the cell counts. Offline by default; reruns reuse its id, and an offline rerun replaces the
    previous offline folder."""
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
            best, main, prior = table.iloc[0], scoring.main.key, scoring.prior
            run.summary.update({"best/modalities": best["modalities"],
                                **{f"best/{m.key}_mean": best[f"{m.key}_mean"] for m in scoring.table},
                                f"best/probe_{main}_mean": best[f"probe_{main}_mean"],
                                f"{prior}/{main}_mean": best[f"{prior}_{main}_mean"],
                                "conclusion": conclusion(table, scoring), "cells/total": len(cells),
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


def write_summary(records: list[dict[str, Any]], abl_dir: Path, meta: dict[str, Any],
                  scoring: Scoring | None = None) -> SummaryFiles:
    """cells.csv, summary.{csv,md,png} in ``abl_dir``, and the summary W&B run (when ``meta['wandb']``).

    ``scoring``: what the cells are scored on; by default the one of ``meta['task']`` (``clip`` when absent) and
    ``meta['tasks']`` (the dense task's ABAW tasks). The zero-shot row (``meta['zero_shot']``) is the clip task's:
    a dense summary says that it was not computed instead."""
    scoring = scoring or for_task(meta.get("task", "clip"), meta.get("tasks"))
    abl_dir.mkdir(parents=True, exist_ok=True)
    cells, class_names, warnings = cell_table(records, scoring)
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
    table = summary_table(cells, order=meta.get("modality_sets"), scoring=scoring)
    if scoring.task == "clip":
        text = markdown(table, meta)
        if meta.get("zero_shot"):  # the zero-shot baseline (no training) as one more row, same splits
            from fer_zoo.ablation.zero_shot import add_to_markdown, add_to_table

            table, text = add_to_table(table, meta["zero_shot"]), add_to_markdown(text, meta["zero_shot"])
    else:
        notes = list(warnings)
        if meta.get("zero_shot"):
            zs = meta["zero_shot"]
            notes.append(f"Zero-shot baseline `{zs.get('modality')}`: not computed "
                         f"({zs.get('error', 'the zero-shot row is the clip task: class per clip')}).")
        text = markdown(table, meta, scoring, notes)
    table.to_csv(csv, index=False, float_format="%.6f")
    md.write_text(text)
    save_figure(chart(table, meta, (len(class_names) or None) if scoring.task == "clip" else None, scoring), png)
    wandb_dir = None
    if meta.get("wandb", True):
        try:
            wandb_dir = log_summary_run(table, cells, png, abl_dir, meta, scoring)
        except Exception as err:  # the files above are the summary; a W&B hiccup must not lose them
            print(f"warning: the summary W&B run failed ({type(err).__name__}: {err}); summary files are written")
    return SummaryFiles(table, text, csv, md, png, cells_csv, wandb_dir)
