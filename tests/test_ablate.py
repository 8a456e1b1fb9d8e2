"""``python -m fer_zoo ablate``: the grid, resumability, failure handling and the summary, end to end on the bundled
sample (slow), plus the table arithmetic and grid helpers on made-up cells (fast)."""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from fer_zoo.ablation import grid as ablate
from fer_zoo.ablation.report import summary_table

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
    assert ablate.grid_folds(None, ablate.Protocol("dfew", [1, 2, 3, 4, 5], 3, "f")) == [3]
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
    cwd, mode = Path.cwd(), os.environ.get("WANDB_MODE")
    os.chdir(REPO)
    os.environ["WANDB_MODE"] = "offline"
    config = _config(tmp_path_factory.mktemp("cfg") / "ablation.yaml", sample_store_root, runs, SETS)
    buf = io.StringIO()
    try:
        with contextlib.redirect_stdout(buf), contextlib.redirect_stderr(buf):
            rc = ablate.main(["--config", str(config)])
    finally:
        os.chdir(cwd)
        if mode is None:
            os.environ.pop("WANDB_MODE", None)
        else:
            os.environ["WANDB_MODE"] = mode
    return {"rc": rc, "out": buf.getvalue(), "config": config, "dir": runs / NAME, "stores": sample_store_root}


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
