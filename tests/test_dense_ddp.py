"""The dense task under DDP (slow): 2 CPU processes (gloo) score whole clips, each on one rank, and their gathered
per-frame metrics equal one process's on the same weights (validation: 1 clip for 2 ranks, so one rank runs a
stand-in that is never scored)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from test_dense_datamodule import build_tree

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
DDP = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
ONE = ["--trainer.accelerator", "cpu", "--trainer.devices", "1"]


def _run(command: str, root: Path, stores: Path, runs: Path, name: str, *extra: str) -> Path:
    cmd = [sys.executable, "-m", "fer_zoo", command, "--config", "configs/abaw_au.yaml",
           "--data.source.init_args.root", str(root), "--data.source.init_args.task", "[EXPR,VA,AU]",
           "--data.tasks", "[EXPR,VA,AU]", "--data.store_root", str(stores), "--data.modalities", "[face]",
           "--data.window", "8", "--data.stride", "4", "--data.num_workers", "0", "--data.batch_size", "8",
           "--data.val_fraction", "0.15", "--model.d_model", "16", "--model.depth", "1", "--model.heads", "2",
           "--runs_dir", str(runs), "--run_name", name, "--wandb", "false", "--trainer.enable_progress_bar",
           "false", "--trainer.enable_model_summary", "false", *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-4000:]
    return runs / name


def _last(run: Path, prefix: str) -> dict[str, float]:
    m = pd.read_csv(run / "metrics.csv")
    return {k: float(m[k].dropna().iloc[-1]) for k in m.columns if k.startswith(prefix)}


def test_two_processes_score_like_one(tmp_path: Path) -> None:
    root, stores = build_tree(tmp_path / "abaw", dim=10)
    runs = tmp_path / "runs"
    run = _run("fit", root, stores, runs, "ddp", "--trainer.max_epochs", "2", *DDP)
    res = json.loads((run / "results.json").read_text())
    assert res["split_sizes"]["val"]["clips"] == 1 and res["split_sizes"]["test"]["clips"] == 2
    # every test frame scored once, not once per rank
    assert res["scores"]["EXPR"]["n_frames"] == res["split_sizes"]["test"]["labeled_frames"]["EXPR"]
    one_test = _last(_run("test", root, stores, runs, "t1", "--ckpt_path", res["checkpoint"], *ONE), "test/")
    assert set(one_test) == set(res["metrics"])
    for key, value in one_test.items():
        assert abs(value - res["metrics"][key]) < 1e-6, (key, value, res["metrics"][key])
    ckpt = str(run / "checkpoints" / "last.ckpt")
    one = _last(_run("validate", root, stores, runs, "v1", "--ckpt_path", ckpt, *ONE), "val/")
    two = _last(_run("validate", root, stores, runs, "v2", "--ckpt_path", ckpt, *DDP), "val/")
    assert set(one) == set(two) and "val/score" in one
    for key in one:
        assert abs(one[key] - two[key]) < 1e-6, (key, one[key], two[key])
