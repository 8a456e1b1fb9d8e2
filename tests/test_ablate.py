"""``python -m fer_zoo ablate``: the grid, resumability, failure handling and the summary, end to end on the bundled
sample (slow), plus the table arithmetic and grid helpers on made-up cells (fast)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fer_zoo.ablation import grid as ablate
from fer_zoo.ablation import scoring
from fer_zoo.ablation.report import summary_table, write_summary

REPO = Path(__file__).resolve().parents[1]
NAME = "t_abl"
SETS = [["resnet"], ["resnet", "pose"]]
SEEDS = [1, 2]


# ------------------------------------------------------------------------------------------------- fast: helpers


def test_labels_and_subsets() -> None:
    assert ablate.modality_label(["resnet", "pose"]) == "pose+resnet"
    assert ablate.modality_label(["resnet/mobilenet_v2-7942fbba", "facemesh"]) == "facemesh+resnet"
    subsets = ablate.all_subsets(["resnet", "pose", "facemesh"])
    assert len(subsets) == 7 and subsets[:3] == [["resnet"], ["pose"], ["facemesh"]]
    assert subsets[-1] == ["resnet", "pose", "facemesh"]


def test_grid_folds_follow_the_protocol() -> None:
    kfold = ablate.Protocol("dfew", [1, 2, 3, 4, 5], None, "features/dfew")
    assert ablate.grid_folds(None, kfold) == [1, 2, 3, 4, 5]
    assert ablate.grid_folds([2, 4], kfold) == [2, 4]
    # a base config's data.fold (configs/data/dfew.yaml sets 1 for single fits) does not shrink folds: null to one
    # fold: the grid ran only that fold without a word when the README's command composed dfew.yaml
    assert ablate.grid_folds(None, ablate.Protocol("dfew", [1, 2, 3, 4, 5], 3, "f")) == [1, 2, 3, 4, 5]
    with pytest.raises(ValueError, match="not folds"):
        ablate.grid_folds([0], kfold)
    flat = ablate.Protocol("image_folder", [], None, "features/sample")
    assert ablate.grid_folds(None, flat) == [None] and ablate.grid_folds([0], flat) == [None]
    with pytest.raises(ValueError, match="no folds"):
        ablate.grid_folds([1, 2], flat)
    cells = ablate.build_cells([["pose"], ["resnet", "pose"]], [None], [1, 2])
    assert [c.name for c in cells] == ["pose-fold0-seed1", "pose+resnet-fold0-seed1", "pose-fold0-seed2",
                                       "pose+resnet-fold0-seed2"]


def test_summary_table_arithmetic() -> None:
    rows = []
    values = {"pose": [0.30, 0.40], "resnet": [0.50, 0.70], "pose+resnet": [0.65, 0.75], "facemesh": []}
    for label, uars in values.items():
        for seed, uar in enumerate(uars):
            rows.append({"modalities": label, "status": "done", "uar": uar, "war": uar + 0.1, "seed": seed})
    rows.append({"modalities": "facemesh", "status": "failed", "uar": math.nan, "war": math.nan, "seed": 0})
    table = summary_table(pd.DataFrame(rows)).set_index("modalities")
    assert list(table.index) == ["pose+resnet", "resnet", "pose", "facemesh"]  # ranked; no result last
    assert table.loc["resnet", "uar_mean"] == pytest.approx(0.60)
    assert table.loc["resnet", "uar_std"] == pytest.approx(pd.Series([0.5, 0.7]).std())  # sample std
    assert table.loc["pose+resnet", "uar_gain_vs_best_single"] == pytest.approx(0.10)
    assert table.loc["pose", "uar_gain_vs_best_single"] == pytest.approx(-0.25)
    assert table.loc["facemesh", "n"] == 0 and table.loc["facemesh", "n_failed"] == 1
    assert table.loc["pose+resnet", "n_modalities"] == 2 and table.loc["pose+resnet", "rank"] == 1


# ------------------------------------------------------------------------------------- fast: fake cell folders


def write_cell(abl: Path, label: str, fold: int, seed: int, res: dict | None, status: str = "done",
               logged: dict[str, float] | None = None) -> dict:
    """A cell record as the grid makes it; its folder ``<abl>/<label>-fold<k>-seed<s>/`` gets ``res`` as
    results.json (None: no folder, a failed cell) and ``logged`` as the last row of a metrics.csv."""
    name = f"{label}-fold{fold}-seed{seed}"
    run_dir = abl / name
    if res is not None:
        run_dir.mkdir(parents=True)
        (run_dir / "results.json").write_text(json.dumps(res))
        if logged:
            pd.DataFrame([{k: math.nan for k in logged}, logged]).to_csv(run_dir / "metrics.csv", index=False)
    return {"cell": name, "modalities": label, "n_modalities": len(label.split("+")), "fold": fold, "seed": seed,
            "status": status if res is not None else "failed", "rc": 0 if res is not None else 1,
            "elapsed_s": 12.5, "run_dir": str(run_dir), "log": str(abl / f"{name}.log"),
            "error": "" if res is not None else "exit 1: ValueError: x", "stale": False}


def clip_results(uar: float, war: float, f1: float, probe: bool = True, chosen: str = "best epoch") -> dict:
    res = {"metrics": {"test/uar": uar, "test/war": war, "test/f1": f1}, "candidates": {"chosen": chosen},
           "class_names": list("abcdefg")}
    if probe:
        res["baselines"] = {"probe": {"metrics": {"test/uar": uar - 0.05, "test/war": war - 0.02, "test/f1": f1}},
                            "majority": {"metrics": {"test/uar": 1 / 7, "test/war": 0.3, "test/f1": 0.05}}}
    return res


def dense_results(expr: float | None = None, va: float | None = None, au: float | None = None,
                  probe_drop: float = 0.05, baselines_error: str | None = None) -> dict:
    """A dense results.json as fer_zoo.dense.cli writes it, for the tasks given a value (in EXPR, VA, AU order):
    the model's metrics, the probe ``probe_drop`` below on each task, the prior at 0.1 (EXPR, AU) / 0.0 (VA)."""
    given = {"EXPR": expr, "VA": va, "AU": au}
    tasks = [t for t, v in given.items() if v is not None]
    metrics: dict[str, float | None] = {"test/score": sum(given[t] for t in tasks) / len(tasks)}
    if expr is not None:
        metrics["test/expr_f1"] = expr
    if va is not None:
        metrics.update({"test/va_ccc": va, "test/valence_ccc": va + 0.1, "test/arousal_ccc": va - 0.1})
    if au is not None:
        metrics.update({"test/au_f1": None, "test/au_f1_labeled": au})  # official F1 NaN: an AU without labels

    def record(task: str, v: float) -> dict:
        score = {"EXPR": {"f1": v, "per_class": {}, "n_frames": 95},
                 "VA": {"ccc": v, "valence": v + 0.1, "arousal": v - 0.1, "n_frames": [95, 95]},
                 "AU": {"f1": None, "f1_labeled": v, "per_au": {}, "n_frames": {}}}[task]
        key = {"EXPR": "expr_f1", "VA": "va_ccc", "AU": "au_f1_labeled"}[task]
        return {key: v, "score": score, "n_train": 300, "n_fallback": 2}

    prior = {"EXPR": ("majority", 0.1), "VA": ("mean", 0.0), "AU": ("majority", 0.1)}
    baselines = {"error": baselines_error} if baselines_error else {
        t: {prior[t][0]: record(t, prior[t][1]), "probe": record(t, given[t] - probe_drop)} for t in tasks}
    return {"task": "dense", "tasks": tasks, "metrics": metrics, "baselines": baselines, "checkpoint_policy": "best",
            "class_names": ["neutral", "anger", "disgust", "fear", "happiness", "sadness", "surprise", "other"]}


def _meta(name: str, sets: list[str], folds: list[int], seeds: list[int], **more) -> dict:
    return {"name": name, "dataset": "affwild2 (/data/Aff-Wild2)", "store_root": "features/abaw", "folds": folds,
            "seeds": seeds, "modality_sets": sets, "base": ["configs/abaw_expr.yaml"], "overrides": [],
            "wandb_project": "fer_zoo", "wandb": False, **more}


# What the clip summary wrote before the dense task existed, for the cells of _clip_cells (must stay byte-identical)
CLIP_SUMMARY_MD = (
    '## Modality ablation `gold` on image_folder (data/sample)\n'
    '\n'
    'Test UAR / WAR in %, mean ± std (sample std, ddof 1) over n = folds x seeds runs per modality set '
    '(folds [0], seeds [1, 2]); ΔUAR = mean UAR minus that of the best single modality (resnet), in '
    'points. Probe: logistic regression on the clip mean and std of the same stores, same runs and splits'
    ' (C chosen on val); Δprobe = model minus probe, in points. Start tested: runs whose checkpoint '
    "policy tested the model's start (its stacked linear probe, the transformer adding nothing) because "
    'no trained epoch beat it on val by a standard error. Base: configs/demo.yaml; overrides: '
    '`--trainer.max_epochs=2`.\n'
    '\n'
    '| rank | modalities | n | UAR % | probe UAR % | Δprobe | WAR % | probe WAR % | ΔUAR vs best single |'
    ' failed | start tested |\n'
    '|---:|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n'
    '| 1 | `pose+resnet` | 2 | 70.0 ± 7.1 | 65.0 ± 7.1 | +5.0 | 75.0 ± 7.1 | 73.0 ± 7.1 | +10.0 | 0 | 0/2'
    ' |\n'
    '| 2 | `resnet` | 2 | 60.0 ± 14.1 | 55.0 ± 14.1 | +5.0 | 66.5 ± 7.8 | 64.5 ± 7.8 | +0.0 | 0 | 0/2 |\n'
    '| 3 | `pose` | 2 | 35.0 ± 7.1 | 30.0 ± 7.1 | +5.0 | 44.0 ± 4.2 | 42.0 ± 4.2 | -25.0 | 0 | 1/2 |\n'
    '| 4 | `facemesh` | 1 | 20.0 | – | – | 30.0 | – | -40.0 | 1 | 0/1 |\n'
    '| – | `facemesh+pose` | 0 | – | – | – | – | – | – | 2 | 0/0 |\n'
    '| – | majority class | 2 | 14.3 ± 0.0 | | | 30.0 ± 0.0 | | | | |\n'
    '\n'
    '**Best: `pose+resnet`**, test UAR 70.0 ± 7.1 % over 2 run(s); +10.0 points over the best single '
    'modality `resnet` (60.0 ± 14.1 %); +5.0 points over its own linear probe (65.0 ± 7.1 %). '
    '**Warning:** the gain over `resnet` (+10.0) is smaller than the spread over folds x seeds (14.1 '
    'points); the difference to its probe (+5.0) is smaller than the spread (7.1 points).\n'
)
CLIP_SUMMARY_CSV = (
    'rank,modalities,n_modalities,n,n_failed,uar_mean,uar_std,probe_uar_mean,probe_uar_std,majority_uar_m'
    'ean,majority_uar_std,war_mean,war_std,probe_war_mean,probe_war_std,majority_war_mean,majority_war_st'
    'd,uar_gain_vs_probe,n_start,uar_gain_vs_best_single\n'
    '1,pose+resnet,2,2,0,0.700000,0.070711,0.650000,0.070711,0.142857,0.000000,0.750000,0.070711,0.730000'
    ',0.070711,0.300000,0.000000,0.050000,0,0.100000\n'
    '2,resnet,1,2,0,0.600000,0.141421,0.550000,0.141421,0.142857,0.000000,0.665000,0.077782,0.645000,0.07'
    '7782,0.300000,0.000000,0.050000,0,0.000000\n'
    '3,pose,1,2,0,0.350000,0.070711,0.300000,0.070711,0.142857,0.000000,0.440000,0.042426,0.420000,0.0424'
    '26,0.300000,0.000000,0.050000,1,-0.250000\n'
    '4,facemesh,1,1,1,0.200000,,,,,,0.300000,,,,,,,0,-0.400000\n'
    '0,facemesh+pose,2,0,2,,,,,,,,,,,,,,0,\n'
)
CLIP_CELLS_CSV_HEAD = ("cell,modalities,n_modalities,fold,seed,status,tested,uar,war,f1,probe_uar,probe_war,probe_f1,"
                       "majority_uar,majority_war,majority_f1,rc,elapsed_s,run_dir,log,error,stale")


def _clip_cells(abl: Path) -> list[dict]:
    values = {"pose": [(0.30, 0.41, 0.28), (0.40, 0.47, 0.33)], "resnet": [(0.50, 0.61, 0.44), (0.70, 0.72, 0.6)],
              "pose+resnet": [(0.65, 0.70, 0.5), (0.75, 0.8, 0.7)], "facemesh": [(0.2, 0.3, 0.1)],
              "facemesh+pose": []}
    records = []
    for label, runs in values.items():
        for seed in (1, 2):
            res = None if seed > len(runs) else clip_results(
                *runs[seed - 1], probe=label != "facemesh", chosen="start" if (label, seed) == ("pose", 1) else
                "best epoch")
            logged = res and {"test/uar": res["metrics"]["test/uar"], "test/war": res["metrics"]["test/war"]}
            records.append(write_cell(abl, label, 0, seed, res, "done" if seed == 1 else "skipped", logged))
    return records


def test_clip_summary_files_are_what_they_were(tmp_path: Path) -> None:
    """The clip task's summary.md / summary.csv / cells.csv, byte for byte as before the dense task (the expected
    text was written by the report of commit 4c258a7 for the same cells)."""
    meta = {"name": "gold", "dataset": "image_folder (data/sample)", "store_root": "features/sample", "folds": [0],
            "seeds": [1, 2], "modality_sets": ["pose", "resnet", "pose+resnet", "facemesh", "facemesh+pose"],
            "base": ["configs/demo.yaml"], "overrides": ["--trainer.max_epochs=2"], "wandb_project": "fer_zoo",
            "wandb": False}
    out = write_summary(_clip_cells(tmp_path), tmp_path, meta)
    assert (tmp_path / "summary.md").read_text() == CLIP_SUMMARY_MD
    assert (tmp_path / "summary.csv").read_text() == CLIP_SUMMARY_CSV
    assert (tmp_path / "cells.csv").read_text().splitlines()[0] == CLIP_CELLS_CSV_HEAD
    assert out.png is not None and out.png.stat().st_size > 20_000


DENSE_VALUES = {  # modality set -> [(EXPR macro F1, VA CCC)] of folds 1, 2 x seeds 1, 2 (fold outermost)
    "fer2013": [(0.40, 0.30), (0.44, 0.34), (0.50, 0.20), (0.46, 0.24)],
    "facemesh+fer2013": [(0.50, 0.40), (0.52, 0.42), (0.56, 0.36), (0.54, 0.38)],
    "facemesh": [(0.20, 0.10), (0.22, 0.12), (0.18, 0.14), None],  # the last cell failed
}


def _dense_cells(abl: Path, broken_probe: str = "fer2013-fold1-seed1") -> list[dict]:
    records = []
    for label, runs in DENSE_VALUES.items():
        for i, run in enumerate(runs):
            fold, seed = 1 + i // 2, 1 + i % 2
            name = f"{label}-fold{fold}-seed{seed}"
            res = run and dense_results(expr=run[0], va=run[1], probe_drop=0.05,
                                        baselines_error="ValueError: EXPR: no labeled training frame"
                                        if name == broken_probe else None)
            logged = res and {k: v for k, v in res["metrics"].items() if v is not None}
            records.append(write_cell(abl, label, fold, seed, res, logged=logged))
    return records


def test_dense_summary_scores_the_abaw_metrics_beside_probe_and_prior(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    meta = _meta("abaw", list(DENSE_VALUES), [1, 2], [1, 2], task="dense", tasks=["EXPR", "VA"])
    out = write_summary(_dense_cells(tmp_path), tmp_path, meta)
    table = pd.read_csv(tmp_path / "summary.csv").set_index("modalities")
    assert list(table.index) == ["facemesh+fer2013", "fer2013", "facemesh"]  # ranked by mean ABAW score
    fused = table.loc["facemesh+fer2013"]
    # score per run = (EXPR F1 + VA CCC) / 2 = 0.45, 0.47, 0.46, 0.46: mean 0.46, sample std sqrt(0.0002 / 3)
    assert fused["score_mean"] == pytest.approx(0.46, abs=1e-6)
    assert fused["score_std"] == pytest.approx(math.sqrt(0.0002 / 3), abs=1e-6)
    assert fused["expr_f1_mean"] == pytest.approx(0.53, abs=1e-6)
    assert fused["va_ccc_mean"] == pytest.approx(0.39, abs=1e-6)
    assert fused["probe_score_mean"] == pytest.approx(0.41, abs=1e-6)  # the probe 0.05 below on both tasks
    assert fused["probe_expr_f1_mean"] == pytest.approx(0.48, abs=1e-6)
    assert fused["prior_score_mean"] == pytest.approx(0.05, abs=1e-6)  # (majority 0.1 + training mean's CCC 0) / 2
    assert fused["prior_va_ccc_mean"] == pytest.approx(0.0, abs=1e-9)
    assert fused["score_gain_vs_probe"] == pytest.approx(0.05, abs=1e-6)
    # best single: fer2013, scores 0.35, 0.39, 0.35, 0.35 -> 0.36 ± 0.02
    assert table.loc["fer2013", "score_mean"] == pytest.approx(0.36, abs=1e-6)
    assert table.loc["fer2013", "score_std"] == pytest.approx(0.02, abs=1e-6)
    assert fused["score_gain_vs_best_single"] == pytest.approx(0.10, abs=1e-6)
    # one fer2013 run's baselines failed: its probe is left out (3 runs), never counted as 0
    assert table.loc["fer2013", "probe_score_mean"] == pytest.approx((0.39 + 0.35 + 0.35) / 3 - 0.05, abs=1e-6)
    assert table.loc["fer2013", "score_gain_vs_probe"] == pytest.approx(0.05, abs=1e-6)  # paired, same 3 runs
    assert table.loc["facemesh", "n"] == 3 and table.loc["facemesh", "n_failed"] == 1
    assert table.loc["facemesh", "score_mean"] == pytest.approx((0.15 + 0.17 + 0.16) / 3, abs=1e-6)

    cells = pd.read_csv(tmp_path / "cells.csv").set_index("cell")
    row = cells.loc["facemesh+fer2013-fold2-seed1"]
    assert (row["score"], row["expr_f1"], row["va_ccc"]) == pytest.approx((0.46, 0.56, 0.36))
    assert (row["valence_ccc"], row["arousal_ccc"], row["prior_valence_ccc"]) == pytest.approx((0.46, 0.26, 0.1))
    assert math.isnan(cells.loc["fer2013-fold1-seed1", "probe_score"])
    assert not {"uar", "war"} & set(cells.columns)

    md = (tmp_path / "summary.md").read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| rank"))
    assert head == ("| rank | modalities | n | ABAW score (mean of EXPR macro F1, VA CCC) | probe score | Δprobe | "
                    "EXPR macro F1 | probe EXPR F1 | VA CCC | probe VA CCC | Δscore vs best single | failed |")
    assert ("| 1 | `facemesh+fer2013` | 4 | 0.460 ± 0.008 | 0.410 ± 0.008 | +0.050 | 0.530 ± 0.026 | "
            "0.480 ± 0.026 | 0.390 ± 0.026 | 0.340 ± 0.026 | +0.100 | 0 |") in md
    assert "| – | prior (EXPR: majority class, VA: training mean) | 4 | 0.050 ± 0.000 | | | 0.100 ± 0.000 | | " \
           "0.000 ± 0.000 | | | |" in md
    assert ("**Best: `facemesh+fer2013`**, test ABAW score (mean of EXPR macro F1, VA CCC) 0.460 ± 0.008 over 4 "
            "run(s); +0.100 over the best single modality `fer2013` (0.360 ± 0.020); +0.050 over its own "
            "per-frame linear probe (0.410 ± 0.008).") in md
    assert "fer2013-fold1-seed1: its baselines failed in the run (ValueError: EXPR: no labeled training frame)" in md
    assert "UAR" not in md and "WAR" not in md and " %" not in md
    assert "baselines failed" in capsys.readouterr().out
    assert out.png is not None and out.png.stat().st_size > 20_000


def test_dense_summary_of_one_track_names_its_metric(tmp_path: Path) -> None:
    records = [write_cell(tmp_path, label, 0, 1, dense_results(au=v))
               for label, v in (("fer2013", 0.52), ("facemesh", 0.31), ("facemesh+fer2013", 0.49))]
    meta = _meta("au", ["fer2013", "facemesh", "facemesh+fer2013"], [0], [1], task="dense", tasks=["AU"])
    write_summary(records, tmp_path, meta)
    md = (tmp_path / "summary.md").read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| rank"))
    assert head == ("| rank | modalities | n | ABAW score (mean of AU F1 (AUs with labels)) | probe score | Δprobe | "
                    "Δscore vs best single | failed |")
    assert "| 1 | `fer2013` | 1 | 0.520 | 0.470 | +0.050 | +0.000 | 0 |" in md
    assert "| – | majority per AU | 1 | 0.100 | | | | |" in md
    assert ("**Best: `fer2013`**, test ABAW score (mean of AU F1 (AUs with labels)) 0.520 over 1 run(s); a single "
            "modality: the best fused set `facemesh+fer2013` is -0.030 behind it (0.490)") in md
    assert "fold 0: the source's official split, ABAW's Validation_Set as test" in md
    cells = pd.read_csv(tmp_path / "cells.csv").set_index("cell")
    assert cells.loc["fer2013-fold0-seed1", "au_f1_labeled"] == pytest.approx(0.52)
    assert math.isnan(cells.loc["fer2013-fold0-seed1", "au_f1"])  # the official 12-AU F1 was NaN: kept NaN


def test_finished_cells_are_the_grids_own_task(tmp_path: Path) -> None:
    """What makes a cell finished: clip grids need finite test UAR and WAR, dense grids a dense run of the same
    tasks with a finite score and task metrics; the reason names the file's problem."""
    expr_va = scoring.dense(["EXPR", "VA"])

    def check(res: dict | None, sc: scoring.Scoring = expr_va) -> tuple[bool, str]:
        d = tmp_path / f"r{len(list(tmp_path.iterdir()))}"
        d.mkdir()
        if res is not None:
            (d / "results.json").write_text(json.dumps(res))
        found, why = ablate.check_results(d, sc)
        return found is not None, why

    assert check(dense_results(expr=0.5, va=0.3)) == (True, "")
    assert check(dense_results(expr=0.5, va=0.3), scoring.CLIP) == (False, ablate.NO_RESULTS)
    assert check(clip_results(0.5, 0.6, 0.4)) == (False, "results.json is a 'clip' run, the grid scores the "
                                                          "'dense' task")
    assert check(clip_results(0.5, 0.6, 0.4), scoring.CLIP) == (True, "")
    ok, why = check(dense_results(expr=0.5))
    assert not ok and "tasks ['EXPR'], the grid scores ['EXPR', 'VA']" in why
    nan_va = dense_results(expr=0.5, va=0.3)
    nan_va["metrics"].update({"test/va_ccc": None, "test/score": None})
    assert check(nan_va) == (False, "results.json test/score is NaN (not a finite number)")
    assert check(None) == (False, ablate.NO_RESULTS)
    assert ablate.read_results(tmp_path / "r0", expr_va)["tasks"] == ["EXPR", "VA"]


def test_dense_scoring_follows_the_dense_module() -> None:
    """The score's parts are the metrics the dense LightningModule averages into test/score."""
    from fer_zoo.dense.lit_module import MAIN_METRIC

    assert {t: ms[0].key for t, ms in scoring.DENSE_METRICS.items()} == MAIN_METRIC
    assert all(m.name == f"test/{m.key}" for ms in scoring.DENSE_METRICS.values() for m in ms)
    with pytest.raises(ValueError, match="dense tasks"):
        scoring.dense(["EXPR", "FACS"])


def test_ablation_abaw_config_is_a_dense_grid_over_the_abaw_stores(capsys: pytest.CaptureFixture) -> None:
    spec = yaml.safe_load((REPO / "configs/ablation_abaw.yaml").read_text())
    extract = yaml.safe_load((REPO / "configs/extract/abaw.yaml").read_text())
    assert spec["modalities"] == list(extract["modalities"]) and spec["base"] == ["configs/abaw_expr.yaml"]
    protocol = ablate.resolve_protocol(spec["base"], spec["overrides"], ablate.Cell(("fer2013",), None, 1),
                                       spec["seed_args"])
    assert protocol.dataset.startswith("affwild2") and protocol.store_root == "features/abaw"
    assert (protocol.task, protocol.tasks, protocol.folds) == ("dense", ("EXPR",), [1, 2, 3, 4, 5])
    assert protocol.scoring.main.label == "ABAW score (mean of EXPR macro F1)"
    assert ablate.main(["--config", "configs/ablation_abaw.yaml", "--dry_run=true", "--zero_shot=clip"]) == 0
    out = capsys.readouterr()
    assert "70 cells = 7 modality sets x 5 fold(s) x 2 seed(s)" in out.out and "dense task ['EXPR']" in out.out
    assert "--data.fold=5" in out.out and "zero_shot='clip' skipped" in out.err


def test_dense_grid_summarises_finished_cells_and_keeps_a_foreign_one(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    """``--summary_only`` over fake dense cells through the real config: progress lines name the ABAW metrics, a
    cell holding another track's results is failed with the reason and its folder kept, never rerun or deleted."""
    abl = tmp_path / "abaw"
    _dense_cells(abl)
    foreign = abl / "facemesh-fold2-seed2"
    foreign.mkdir()
    (foreign / "results.json").write_text(json.dumps(dense_results(expr=0.9)))  # an EXPR-only run
    rc = ablate.main(["--config", "configs/ablation_abaw.yaml", "--name", "abaw", "--runs_dir", str(tmp_path),
                      "--folds=[1,2]", "--seeds=[1,2]", "--wandb=false", "--summary_only=true",
                      "--modality_sets=[[fer2013],[facemesh,fer2013],[facemesh]]",
                      "--", "--data.tasks=[EXPR,VA]", "--data.source.init_args.task=[EXPR,VA]"])
    out = capsys.readouterr()
    assert rc == ablate.EXIT_SOME_FAILED, out.out + out.err
    lines = [ln for ln in out.out.splitlines() if ln.startswith("[")]
    assert sum(" skipped  score " in ln and " EXPR F1 " in ln and " VA CCC " in ln for ln in lines) == 11, lines
    bad = next(ln for ln in lines if "facemesh " in ln and "fold 2  seed 2" in ln)
    assert " FAILED " in bad and "tasks ['EXPR'], the grid scores ['EXPR', 'VA']" in bad
    assert (foreign / "results.json").is_file()
    table = pd.read_csv(abl / "summary.csv").set_index("modalities")
    assert table.loc["facemesh+fer2013", "score_mean"] == pytest.approx(0.46, abs=1e-6)
    assert table.loc["facemesh", "n"] == 3 and table.loc["facemesh", "n_failed"] == 1
    assert "ABAW score (mean of EXPR macro F1, VA CCC)" in (abl / "summary.md").read_text()


# --------------------------------------------------------------------------------------------- slow: end to end


def _config(path: Path, stores: Path, runs: Path, modality_sets: list[list[str]]) -> Path:
    path.write_text(yaml.safe_dump({
        "name": NAME, "runs_dir": str(runs), "base": ["configs/demo.yaml"],
        "overrides": ["--trainer.max_epochs=2", "--trainer.enable_progress_bar=false",
                      "--trainer.enable_model_summary=false", "--data.num_workers=0", "--model.d_model=16",
                      "--model.depth=1", f"--data.store_root={stores}"],
        "modality_sets": modality_sets, "seeds": SEEDS, "wandb": True, "env": {"OMP_NUM_THREADS": "1"},
    }))
    return path


def _ablate(config: Path, capsys: pytest.CaptureFixture) -> tuple[int, str, float]:
    t0 = time.monotonic()
    rc = ablate.main(["--config", str(config)])
    out = capsys.readouterr()
    return rc, out.out + out.err, time.monotonic() - t0


def _wandb_run_header(offline_run: Path) -> dict | None:
    """Group, job type, tags and config of an offline W&B run, read back from its ``run-*.wandb`` log (None when
    this wandb version's reader is not where it used to be)."""
    try:
        from wandb.proto import wandb_internal_pb2 as pb
        from wandb.sdk.internal import datastore
    except ImportError:
        return None
    ds = datastore.DataStore()
    ds.open_for_scan(str(next(offline_run.glob("run-*.wandb"))))
    while (data := ds.scan_data()) is not None:
        rec = pb.Record()
        rec.ParseFromString(data)
        if rec.WhichOneof("record_type") == "run":
            return {"group": rec.run.run_group, "job_type": rec.run.job_type, "tags": set(rec.run.tags),
                    "config": {u.key: json.loads(u.value_json) for u in rec.run.config.update}}
    return None


@pytest.fixture(scope="module")
def sample_store_root(sample_stores: Path) -> Path:
    """The bundled sample's stores, shared with the other end-to-end tests (built once per session)."""
    return sample_stores


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("ablation_runs")


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.fixture(scope="module")
def first_run(sample_store_root: Path, runs: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The 2 sets x 2 seeds grid, run once for the module (output captured by hand: capsys is per test)."""
    config = _config(tmp_path_factory.mktemp("cfg") / "ablation.yaml", sample_store_root, runs, SETS)
    rc, out = run_grid(config)
    return {"rc": rc, "out": out, "config": config, "dir": runs / NAME, "stores": sample_store_root}


def run_grid(config: Path) -> tuple[int, str]:
    """``ablate.main`` on ``config`` from the repository root with W&B offline, for a module-scoped fixture (no
    ``monkeypatch`` fixture there): its exit status and everything it printed."""
    buf = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setenv("WANDB_MODE", "offline")
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = ablate.main(["--config", str(config)])
    return rc, buf.getvalue()


@pytest.mark.slow
def test_grid_runs_every_cell_and_summarises_what_they_logged(first_run: dict) -> None:
    out, abl = first_run["out"], first_run["dir"]
    assert first_run["rc"] == 0, out
    grid = [(ablate.modality_label(s), seed) for seed in SEEDS for s in SETS]
    cells = [f"{label}-fold0-seed{seed}" for label, seed in grid]
    lines = out.splitlines()
    for i, (label, seed) in enumerate(grid, 1):  # one progress line per cell: modalities, fold, seed, status, UAR
        assert any(ln.startswith(f"[{i}/4] {label} ") and f"fold 0  seed {seed}" in ln and " done " in ln
                   and "UAR " in ln for ln in lines), out
    for name in ("summary.csv", "summary.md", "summary.png", "commands.txt", "cells.csv"):
        assert (abl / name).is_file(), name
    assert (abl / "summary.png").stat().st_size > 20_000
    commands = (abl / "commands.txt").read_text()
    assert all(f"--run_name={NAME}/{c}" in commands for c in cells)

    # one offline W&B run per cell, in the ablation's group, modality set in its config; plus the summary run
    for cell, (label, seed) in zip(cells, grid):
        runs = list((abl / cell / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, (cell, runs)
        assert (abl / f"{cell}.log").is_file()
        header = _wandb_run_header(runs[0])
        if header is not None:
            assert header["group"] == NAME and header["job_type"] == "fit", header
            assert header["config"]["modalities"] == label
            assert {*label.split("+"), "fold0", f"seed{seed}"} <= header["tags"]
    summary_runs = list((abl / "wandb").glob("offline-run-*"))
    assert len(summary_runs) == 1
    header = _wandb_run_header(summary_runs[0])
    assert header is None or (header["group"] == NAME and header["job_type"] == "summary"), header
    media = {p.name for p in summary_runs[0].rglob("*") if p.is_file()}
    assert any(n.endswith(".png") for n in media) and any(n.endswith(".table.json") for n in media), media

    # the table's numbers are the means/stds of what each cell wrote to results.json and logged to metrics.csv
    table = pd.read_csv(abl / "summary.csv").set_index("modalities")
    assert set(table.index) == {ablate.modality_label(s) for s in SETS}
    for mods in SETS:
        label = ablate.modality_label(mods)
        dirs = [abl / f"{label}-fold0-seed{seed}" for seed in SEEDS]
        res = [json.loads((d / "results.json").read_text()) for d in dirs]
        assert all(r["modalities"] == mods for r in res)
        logged = [pd.read_csv(d / "metrics.csv") for d in dirs]
        for key in ("uar", "war"):
            from_json = pd.Series([r["metrics"][f"test/{key}"] for r in res])
            from_csv = pd.Series([m[f"test/{key}"].dropna().iloc[-1] for m in logged])
            assert table.loc[label, f"{key}_mean"] == pytest.approx(from_json.mean(), abs=1e-6)
            assert table.loc[label, f"{key}_mean"] == pytest.approx(from_csv.mean(), abs=1e-6)
            assert table.loc[label, f"{key}_std"] == pytest.approx(from_json.std(ddof=1), abs=1e-6)
        assert table.loc[label, "n"] == len(SEEDS)
        # how many runs tested the model's start (its linear probe) rather than a trained epoch
        chosen = [r["candidates"]["chosen"] for r in res]
        assert set(chosen) <= {"start", "best epoch"}
        assert table.loc[label, "n_start"] == chosen.count("start")
    cells_csv = pd.read_csv(abl / "cells.csv")
    assert set(cells_csv["tested"]) <= {"start", "best epoch"}
    gain = table.loc["pose+resnet", "uar_mean"] - table.loc["resnet", "uar_mean"]
    assert table.loc["pose+resnet", "uar_gain_vs_best_single"] == pytest.approx(gain, abs=1e-6)
    md = (abl / "summary.md").read_text()
    assert "`pose+resnet`" in md and "± " in md and "image_folder" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| ") and "`pose+resnet`" in ln)
    assert row.rstrip(" |").endswith(f"{int(table.loc['pose+resnet', 'n_start'])}/{len(SEEDS)}")  # start tested


@pytest.mark.slow
def test_rerun_skips_and_a_crashed_cell_is_rerun_alone(first_run: dict, capsys: pytest.CaptureFixture) -> None:
    abl, config = first_run["dir"], first_run["config"]
    rc, out, seconds = _ablate(config, capsys)
    assert rc == 0, out
    progress = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert len(progress) == 4 and all(" skipped " in ln for ln in progress), out
    assert seconds < 120  # no cell is run again: only config parsing and the summary

    crashed = abl / "pose+resnet-fold0-seed2"
    (crashed / "results.json").unlink()  # as if the process had died mid-cell
    stamp = {c: (abl / c / "results.json").stat().st_mtime_ns for c in
             ("resnet-fold0-seed1", "pose+resnet-fold0-seed1", "resnet-fold0-seed2")}
    rc, out, _ = _ablate(config, capsys)
    assert rc == 0, out
    progress = [ln for ln in out.splitlines() if ln.startswith("[")]
    ran = [ln for ln in progress if " done " in ln]
    assert len(ran) == 1 and "pose+resnet" in ran[0] and "seed 2" in ran[0], out
    assert sum(" skipped " in ln for ln in progress) == 3
    assert (crashed / "results.json").is_file()
    assert len(list((crashed / "wandb").glob("offline-run-*"))) == 1  # the crashed folder was started afresh
    assert stamp == {c: (abl / c / "results.json").stat().st_mtime_ns for c in stamp}


@pytest.mark.slow
def test_failing_cell_is_recorded_and_the_grid_goes_on(first_run: dict, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture) -> None:
    config = _config(tmp_path / "ablation.yaml", first_run["stores"], first_run["dir"].parent,
                     [["nonexistent"], ["resnet"]])
    rc, out, _ = _ablate(config, capsys)
    assert rc == ablate.EXIT_SOME_FAILED, out
    progress = [ln for ln in out.splitlines() if ln.startswith("[")]
    assert sum(" FAILED " in ln for ln in progress) == 2 and sum(" skipped " in ln for ln in progress) == 2, out
    abl = first_run["dir"]
    log = abl / "nonexistent-fold0-seed1.log"
    assert "nonexistent" in log.read_text()
    cells = pd.read_csv(abl / "cells.csv")
    failed = cells[cells["status"] == "failed"]
    assert set(failed["modalities"]) == {"nonexistent"} and failed["error"].str.contains("exit").all()
    table = pd.read_csv(abl / "summary.csv").set_index("modalities")
    assert table.loc["resnet", "n"] == 2 and table.loc["nonexistent", "n"] == 0
    assert table.loc["nonexistent", "n_failed"] == 2
