"""`python -m fer_zoo fit` on the dense task: which CLI a command line picks, and a small fit on packed stores.

The fit reads the tree of tests/test_dense_datamodule.py: stores whose columns 2-3 hold each frame's expression class
(something the features really show), so a model that learns per frame must beat the majority class by far.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_dense_datamodule import build_tree

from fer_zoo.cli_errors import UsageError
from fer_zoo.dense.cli import DenseCLI
from fer_zoo.training.cli import FERCLI, cli_for_task, requested_task, run_lightning_cli

REPO = Path(__file__).resolve().parents[1]


def test_the_task_comes_from_config_files_and_task_flags_last_one_wins(tmp_path: Path) -> None:
    dense, clip = tmp_path / "d.yaml", tmp_path / "c.yaml"
    dense.write_text("task: dense\ndata: {window: 8}\n")
    clip.write_text("data: {modalities: [resnet]}\n")
    assert requested_task(["fit", "--config", str(clip)]) == "clip"
    assert requested_task(["fit", "--config", str(dense)]) == "dense"
    assert requested_task(["fit", f"--config={dense}", "--config", str(clip)]) == "dense"  # clip.yaml says nothing
    assert requested_task(["fit", "--config", str(dense), "--task", "clip"]) == "clip"
    assert requested_task(["fit", "--task=dense"]) == "dense"
    assert requested_task(["fit", "--config", str(tmp_path / "absent.yaml")]) == "clip"  # the parser names it
    with pytest.raises(UsageError, match=r"task: 'perframe' is not one of \['clip', 'dense'\]"):
        requested_task(["fit", "--task", "perframe"])
    assert cli_for_task("dense") is DenseCLI and cli_for_task("clip") is FERCLI
    assert requested_task(["fit", "--config", str(REPO / "configs/abaw_va.yaml")]) == "dense"
    assert requested_task(["fit", "--config", str(REPO / "configs/resnet_pose.yaml")]) == "clip"


def fit_args(root: Path, stores: Path, runs: Path, name: str, *more: str) -> list[str]:
    return ["fit", "--config", "configs/abaw_expr.yaml", "--data.source.init_args.root", str(root),
            "--data.store_root", str(stores), "--data.modalities", "[face]", "--data.window", "8",
            "--data.stride", "4", "--data.num_workers", "0", "--data.batch_size", "8", "--data.val_fraction", "0.2",
            "--model.d_model", "32", "--model.depth", "1", "--model.heads", "2", "--model.lr", "0.003",
            "--model.dropout", "0.0", "--runs_dir", str(runs), "--run_name", name, "--wandb", "false",
            "--trainer.max_epochs", "6", "--trainer.enable_progress_bar", "false",
            "--trainer.enable_model_summary", "false", *more]


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> dict:
    import os

    work = tmp_path_factory.mktemp("dense_fit")
    root, stores = build_tree(work / "abaw", dim=10)
    cwd = Path.cwd()
    os.chdir(REPO)
    os.environ["WANDB_MODE"] = "offline"
    try:
        cli = run_lightning_cli(fit_args(root, stores, work / "runs", "expr"))
    finally:
        os.chdir(cwd)
    return {"cli": cli, "run": work / "runs" / "expr", "root": root, "stores": stores, "runs": work / "runs"}


def test_fit_writes_results_with_official_metrics_baselines_and_split_sizes(fitted: dict) -> None:
    cli, run = fitted["cli"], fitted["run"]
    assert isinstance(cli, DenseCLI)
    res = json.loads((run / "results.json").read_text())
    assert res["task"] == "dense" and res["tasks"] == ["EXPR"] and res["modalities"] == ["face"]
    assert res["class_names"][4] == "happiness" and res["au_names"][0] == "AU1" and len(res["au_names"]) == 12
    assert set(res["metrics"]) == {"test/expr_f1", "test/score"}
    assert res["scores"]["EXPR"]["n_frames"] == 95 == res["split_sizes"]["test"]["labeled_frames"]["EXPR"]
    assert res["split_sizes"]["test"] == {"clips": 2, "videos": 2, "frames": 95, "faceless_frames": 1,
                                          "labeled_frames": {"EXPR": 95}}
    base = res["baselines"]["EXPR"]
    assert set(base) == {"majority", "probe"} and base["majority"]["score"]["n_frames"] == 95
    assert res["stores"]["face"]["meta"]["extractor"] == "fakeface"
    assert Path(res["checkpoint"]).name.startswith("best-epoch") and "-score" in res["checkpoint"]
    assert res["evaluation"]["window"] == 8 and res["evaluation"]["stride"] == 4
    # features that show the class per frame: the model recovers it, far above the majority class
    assert res["metrics"]["test/expr_f1"] > base["majority"]["expr_f1"] + 0.3, res["metrics"]
    ckpt = torch.load(res["checkpoint"], map_location="cpu", weights_only=True)
    assert ckpt["hyper_parameters"]["tasks"] == ["EXPR"] and ckpt["hyper_parameters"]["window"] == 8
    assert "model.input_stats.face.mean" in ckpt["state_dict"]


def test_testing_a_checkpoint_again_gives_the_same_metrics(fitted: dict, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    res = json.loads((fitted["run"] / "results.json").read_text())
    args = fit_args(fitted["root"], fitted["stores"], fitted["runs"], "expr")
    args[0] = "test"
    cli = run_lightning_cli([*[a for a in args if a not in ("--run_name", "expr")], "--ckpt_path", res["checkpoint"]])
    again = json.loads((cli.run_dir / "results.json").read_text())
    assert cli.run_dir.parent == fitted["run"] and again["checkpoint_policy"] is None
    assert again["metrics"] == pytest.approx(res["metrics"])


def test_multi_task_fit_logs_every_tasks_metrics(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")
    root, stores = build_tree(tmp_path / "abaw")
    run_lightning_cli(fit_args(root, stores, tmp_path / "runs", "all", "--data.source.init_args.task",
                               "[EXPR,VA,AU]", "--data.tasks", "[EXPR,VA,AU]", "--trainer.max_epochs", "2",
                               "--data.class_balance", "resample", "--checkpoint_policy", "last"))
    res = json.loads((tmp_path / "runs" / "all" / "results.json").read_text())
    assert {"test/expr_f1", "test/va_ccc", "test/valence_ccc", "test/arousal_ccc", "test/au_f1",
            "test/au_f1_labeled", "test/score"} <= set(res["metrics"])
    m = res["metrics"]
    assert m["test/score"] == pytest.approx((m["test/expr_f1"] + m["test/va_ccc"] + m["test/au_f1_labeled"]) / 3)
    assert set(res["baselines"]) == {"EXPR", "VA", "AU"} and res["baselines"]["VA"]["mean"]["va_ccc"] == 0.0
    assert res["checkpoint"].endswith("last.ckpt") and res["training"]["class_balance"] == "resample"


def test_a_clip_config_with_dense_keys_is_refused_naming_them(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                              capsys: pytest.CaptureFixture) -> None:
    from fer_zoo.__main__ import main

    monkeypatch.chdir(REPO)
    assert main(["fit", "--config", "configs/abaw_expr.yaml", "--task", "clip", "--runs_dir", str(tmp_path)]) == 2
    assert "tasks" in capsys.readouterr().err
