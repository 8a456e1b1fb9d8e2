"""``python -m fer_zoo ablate`` on the dense (per-frame, ABAW) task, end to end (slow): the ABAW-format tree of
tests/test_dense_e2e.py (segments of real face footage labeled per frame, holes, faceless frames, a _left/_right
pair) -> ``extract`` (facemesh + fer2013, every frame) -> a grid of 2 modality sets x ABAW's official split (fold 0)
x 1 seed, each cell a real dense ``fit`` on EXPR + VA -> summary.md / summary.csv / cells.csv / the W&B summary run,
whose numbers must be the ones each cell wrote to its results.json, under the ABAW metrics' names.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml
from test_ablate import run_grid
from test_dense_e2e import _frames, build_abaw

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
SETS = [["fer2013"], ["facemesh", "fer2013"]]
SCORE = "ABAW score (mean of EXPR macro F1, VA CCC)"


@pytest.fixture(scope="module")
def grid(face_videos: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    work = tmp_path_factory.mktemp("abaw_ablation")
    build_abaw(work / "abaw", _frames())
    stores = work / "features"
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "fer_zoo", "extract", "--config", "configs/extract/abaw.yaml",
                          "--source.init_args.root", str(work / "abaw"), "--store_root", str(stores), "--only",
                          "facemesh", "fer2013", "--num_workers", "0"], cwd=REPO, capture_output=True, text=True,
                         timeout=900, env={**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    extract_s = time.perf_counter() - t0
    config = work / "ablation.yaml"
    config.write_text(yaml.safe_dump({
        "name": "abaw_t", "runs_dir": str(work / "runs"), "base": ["configs/abaw_expr.yaml"],
        "overrides": [f"--data.source.init_args.root={work / 'abaw'}", f"--data.store_root={stores}",
                      "--data.tasks=[EXPR,VA]", "--data.source.init_args.task=[EXPR,VA]", "--data.window=16",
                      "--data.stride=8", "--data.batch_size=16", "--data.num_workers=0", "--data.val_fraction=0.2",
                      "--model.d_model=64", "--model.lr=0.001", "--trainer.max_epochs=12",
                      "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"],
        "modality_sets": SETS, "seeds": [1], "wandb": True, "env": {"OMP_NUM_THREADS": "1"},
    }))
    t0 = time.perf_counter()
    rc, out = run_grid(config)
    return {"rc": rc, "out": out, "dir": work / "runs" / "abaw_t", "extract_s": extract_s,
            "ablate_s": time.perf_counter() - t0}


def test_dense_grid_summarises_each_cells_abaw_metrics_probe_and_prior(grid: dict) -> None:
    out, abl = grid["out"], grid["dir"]
    assert grid["rc"] == 0, out
    assert "dense task ['EXPR', 'VA']" in out
    done = [ln for ln in out.splitlines() if ln.startswith("[") and " done " in ln]
    assert len(done) == 2 and all("score " in ln and "EXPR F1 " in ln and "VA CCC " in ln for ln in done), out

    table = pd.read_csv(abl / "summary.csv").set_index("modalities")
    cells = pd.read_csv(abl / "cells.csv").set_index("modalities")
    assert set(table.index) == {"fer2013", "facemesh+fer2013"} and set(cells["status"]) == {"done"}
    lines = []
    for label in table.index:
        res = json.loads((abl / f"{label}-fold0-seed1" / "results.json").read_text())
        assert res["task"] == "dense" and res["tasks"] == ["EXPR", "VA"]
        row, base = table.loc[label], res["baselines"]
        assert row["n"] == 1 and row["score_mean"] == pytest.approx(res["metrics"]["test/score"], abs=1e-6)
        assert row["expr_f1_mean"] == pytest.approx(res["metrics"]["test/expr_f1"], abs=1e-6)
        assert row["va_ccc_mean"] == pytest.approx(res["metrics"]["test/va_ccc"], abs=1e-6)
        probe = (base["EXPR"]["probe"]["expr_f1"] + base["VA"]["probe"]["va_ccc"]) / 2
        prior = (base["EXPR"]["majority"]["expr_f1"] + base["VA"]["mean"]["va_ccc"]) / 2
        assert row["probe_score_mean"] == pytest.approx(probe, abs=1e-6)
        assert row["prior_score_mean"] == pytest.approx(prior, abs=1e-6)
        assert row["score_gain_vs_probe"] == pytest.approx(res["metrics"]["test/score"] - probe, abs=1e-6)
        assert cells.loc[label, "valence_ccc"] == pytest.approx(res["metrics"]["test/valence_ccc"], abs=1e-6)
        assert row["score_mean"] > prior + 0.2, (label, row["score_mean"], prior)  # it learned, per frame
        lines.append(f"{label}: score {row['score_mean']:.3f} (EXPR F1 {row['expr_f1_mean']:.3f}, VA CCC "
                     f"{row['va_ccc_mean']:.3f}), probe {probe:.3f}, prior {prior:.3f}")
    print(f"\n{chr(10).join(lines)}\nextraction {grid['extract_s']:.0f} s, ablation (2 cells) {grid['ablate_s']:.0f} s")

    md = (abl / "summary.md").read_text()
    head = next(ln for ln in md.splitlines() if ln.startswith("| rank"))
    assert head.startswith(f"| rank | modalities | n | {SCORE} | probe score | Δprobe | EXPR macro F1 | "
                           "probe EXPR F1 | VA CCC | probe VA CCC | Δscore vs best single |")
    assert "`fer2013`" in md and "`facemesh+fer2013`" in md and "| – | prior (EXPR: majority class, VA: " in md
    assert f"test {SCORE}" in md and "UAR" not in md and "WAR" not in md
    assert (abl / "summary.png").stat().st_size > 20_000

    assert "summary W&B run failed" not in out, out
    summary_runs = list((abl / "wandb").glob("offline-run-*"))
    assert len(summary_runs) == 1
    tables = list(summary_runs[0].rglob("*.table.json"))
    assert tables, "the summary W&B run holds no table"
    logged = [json.loads(p.read_text()) for p in tables]
    assert any("score_mean" in t["columns"] and "prior_score_mean" in t["columns"] for t in logged)
