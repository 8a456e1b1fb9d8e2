"""End to end through `python -m fer_zoo fit|validate|test` on the real bundled sample (slow: real training)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from fer_zoo.training.cli import run_lightning_cli

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
CONFIGS = ["resnet", "pose", "facemesh", "resnet_pose", "resnet_facemesh", "pose_facemesh", "all", "resnet_audio"]


def fit_args(stores: Path, runs: Path, name: str, config: str = "resnet_pose", epochs: int = 2) -> list[str]:
    return ["fit", "--config", f"configs/{config}.yaml", "--data.store_root", str(stores), "--runs_dir", str(runs),
            "--run_name", name, "--trainer.max_epochs", str(epochs), "--data.num_workers", "0", "--wandb", "false",
            "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("WANDB_MODE", "offline")


@pytest.mark.parametrize("config", CONFIGS)
def test_every_modality_config_fits_and_tests(config: str, sample_stores: Path, tmp_path: Path) -> None:
    run_lightning_cli(fit_args(sample_stores, tmp_path, "r", config, epochs=1))
    run = tmp_path / "r"
    res = json.loads((run / "results.json").read_text())
    expected = json.loads(json.dumps(__import__("yaml").safe_load((REPO / f"configs/{config}.yaml").read_text())))
    assert res["modalities"] == expected["data"]["modalities"]
    assert 0.0 <= res["metrics"]["test/uar"] <= 1.0 and 0.0 <= res["metrics"]["test/war"] <= 1.0
    assert (run / "config.yaml").is_file() and (run / "checkpoints" / "last.ckpt").is_file()
    assert (run / "confusion_test.png").stat().st_size > 10_000
    metrics = pd.read_csv(run / "metrics.csv")
    assert metrics["val/uar"].notna().any()
    # The policy's checkpoint was tested: the best epoch's, or the start's when the best epoch did not beat it on val
    # by more than a standard error.
    chosen = res["candidates"]["chosen"]
    assert res["checkpoint"] == res["candidates"]["checkpoint"] == res["candidates"]["candidates"][chosen]["checkpoint"]
    assert res["checkpoint"].startswith(str(run / "checkpoints" / ("start.ckpt" if chosen == "start" else "best-")))


@pytest.mark.parametrize("fusion", ["tokens", "late"])
def test_fusion_modes_train_through_the_cli(fusion: str, sample_stores: Path, tmp_path: Path) -> None:
    run_lightning_cli([*fit_args(sample_stores, tmp_path, "f", "all", epochs=1), "--model.fusion", fusion])
    cfg = (tmp_path / "f" / "config.yaml").read_text()
    assert f"fusion: {fusion}" in cfg
    assert "test/uar" in json.loads((tmp_path / "f" / "results.json").read_text())["metrics"]


def test_checkpoint_policy_last(sample_stores: Path, tmp_path: Path) -> None:
    run_lightning_cli([*fit_args(sample_stores, tmp_path, "l", "pose"), "--checkpoint_policy", "last"])
    res = json.loads((tmp_path / "l" / "results.json").read_text())
    assert res["checkpoint"].endswith("last.ckpt") and res["checkpoint_policy"] == "last"
    assert torch.load(res["checkpoint"], map_location="cpu", weights_only=True)["epoch"] == 1  # the final epoch


def test_test_confusion_names_the_tested_checkpoint(sample_stores: Path, tmp_path: Path) -> None:
    cli = run_lightning_cli(fit_args(sample_stores, tmp_path, "c", "pose", epochs=3))
    res = json.loads((tmp_path / "c" / "results.json").read_text())
    ckpt = torch.load(res["checkpoint"], map_location="cpu", weights_only=True)
    # The figure's title: the checkpoint that was tested, not the last epoch trained (2); the start trained none.
    epoch = f", epoch {ckpt['epoch']}" if ckpt["global_step"] > 0 else ""
    assert cli.model._evaluated("test") == f"checkpoint {Path(res['checkpoint']).name}{epoch}"
    assert cli.model._evaluated("val") == f"epoch {cli.trainer.current_epoch}"  # validation: the epoch trained


def test_best_policy_weighs_the_start_against_the_best_epoch(sample_stores: Path, tmp_path: Path) -> None:
    """The start (the model as its linear probe, before any step) is saved and scored on val against the best
    epoch; in sample each score is the val/uar the loop logged (fp32 run), the rule's own score uses the head's
    out-of-fold logits, and the checkpoint the rule picks is tested."""
    from fer_zoo.training.probe import init_probe_for
    from fer_zoo.training.selection import uar, val_uar

    cli = run_lightning_cli(fit_args(sample_stores, tmp_path, "s", "pose_facemesh", epochs=3))
    run = tmp_path / "s"
    res = json.loads((run / "results.json").read_text())
    cands = res["candidates"]["candidates"]
    start = torch.load(run / "checkpoints" / "start.ckpt", map_location="cpu", weights_only=True)
    assert start["global_step"] == 0 and cands["start"]["checkpoint"] == str(run / "checkpoints" / "start.ckpt")
    # The start's transformer adds nothing: its output layer is zero, the logits are the probe's.
    assert not start["state_dict"]["model.head.weight"].any() and not start["state_dict"]["model.head.bias"].any()
    best = torch.load(cands["best epoch"]["checkpoint"], map_location="cpu", weights_only=True)
    logged = pd.read_csv(run / "metrics.csv").dropna(subset=["val/uar"]).set_index("epoch")["val/uar"]
    # In sample, each candidate's score is what the training loop logged (fp32 here, as the loop ran)...
    assert abs(cands["best epoch"]["val/uar_in_sample"] - logged[best["epoch"]]) < 1e-6
    assert cands["best epoch"]["val/uar_in_sample"] == pytest.approx(logged.max(), abs=1e-6)
    assert val_uar(cli.model, cli.datamodule, cands["start"]["checkpoint"]) == cands["start"]["val/uar_in_sample"]
    # ... and the rule's score puts the head's out-of-fold logits in place of its own: for the start, whose
    # transformer adds nothing, that is the out-of-fold probe's val UAR.
    dm = cli.datamodule
    oof = init_probe_for(dm).oof_logits
    ids = dm.dataset("val").clip_ids
    pred = torch.stack([torch.as_tensor(oof[c]) for c in ids]).argmax(dim=1)
    target = torch.tensor([dm.labels[c] for c in ids])
    assert cands["start"]["val/uar"] == pytest.approx(uar(pred, target, dm.num_classes), abs=1e-9)
    se = res["candidates"]["se"]  # the one-standard-error rule: the start unless the best epoch is clearly better
    assert se > 0 or cands["start"]["val/uar"] == cands["best epoch"]["val/uar"]  # 0: the very same answers
    chosen = "best epoch" if cands["best epoch"]["val/uar"] - cands["start"]["val/uar"] > se else "start"
    assert res["candidates"]["chosen"] == chosen and res["checkpoint"] == cands[chosen]["checkpoint"]
    # The choice is also kept beside the checkpoints: predict-video finds it without results.json (test_after_fit off)
    from fer_zoo.video.run_info import _pick_checkpoint

    kept = json.loads((run / "checkpoints" / "selection.json").read_text())
    assert kept["checkpoint"] == res["checkpoint"] and str(_pick_checkpoint(run, {})) == res["checkpoint"]

    # A new fit in that folder whose model does not start as its probe: no start to weigh, and the old one is gone.
    run_lightning_cli([*fit_args(sample_stores, tmp_path, "s", "pose_facemesh", epochs=1), "--model.probe_init",
                       "false"])
    res = json.loads((run / "results.json").read_text())
    assert res["candidates"]["chosen"] == "best epoch" and "start" not in res["candidates"]["candidates"]
    assert not (run / "checkpoints" / "start.ckpt").exists()


def test_missing_store_names_extractor_path_and_command(tmp_path: Path) -> None:
    empty = tmp_path / "nothing"
    with pytest.raises(Exception, match="python -m fer_zoo extract") as err:
        run_lightning_cli(fit_args(empty, tmp_path, "m", "resnet_pose"))
    assert str(empty / "resnet") in str(err.value)


@pytest.mark.parametrize(("args", "needle"), [
    (["--checkpoint_policy", "worst"], "checkpoint_policy"),
    (["--model.fusion", "sideways"], "fusion"),
    (["--data.class_balance", "magic"], "class_balance"),
    (["--data.num_workers", "-1"], "num_workers"),
])
def test_bad_values_are_named(args: list[str], needle: str, sample_stores: Path, tmp_path: Path,
                              capsys: pytest.CaptureFixture) -> None:
    from fer_zoo.__main__ import main

    assert main([*fit_args(sample_stores, tmp_path, "b", "pose"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("python -m fer_zoo fit: error: ") and needle in err[0], err
    assert "Traceback" not in err[0]


def test_unknown_key_is_named(sample_stores: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from fer_zoo.__main__ import main

    assert main([*fit_args(sample_stores, tmp_path, "u", "pose"), "--data.num_frame", "8"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["python -m fer_zoo fit: error: unknown key 'data.num_frame'; did you mean data.num_frames? "
                   "(every key: python -m fer_zoo fit --help)"]
    assert not (tmp_path / "u").exists()  # no run folder for a command that never started


def test_resume_continues_the_same_run(sample_stores: Path, tmp_path: Path) -> None:
    args = fit_args(sample_stores, tmp_path, "res", "pose", epochs=2)
    args[args.index("--wandb") + 1] = "true"
    run_lightning_cli(args)
    run = tmp_path / "res"
    last = run / "checkpoints" / "last.ckpt"
    first = torch.load(last, map_location="cpu", weights_only=True)
    wandb_id = (run / "wandb_id.txt").read_text()
    resume = [a for a in args if a not in ("--run_name", "res")]
    resume[resume.index("--trainer.max_epochs") + 1] = "4"
    run_lightning_cli([*resume, "--ckpt_path", str(last)])
    second = torch.load(last, map_location="cpu", weights_only=True)
    # Continued, not restarted: two more epochs on top of the first two, and the step count doubled.
    assert second["epoch"] == first["epoch"] + 2
    assert second["global_step"] == 2 * first["global_step"]
    metrics = pd.read_csv(run / "metrics.csv")
    val_epochs = metrics.loc[metrics["val/uar"].notna(), "epoch"].astype(int).tolist()
    assert {2, 3} <= set(val_epochs) and len(val_epochs) == len(set(val_epochs)), val_epochs
    assert (run / "wandb_id.txt").read_text() == wandb_id  # the same W&B run, resumed
    assert not [p for p in tmp_path.iterdir() if p.name != "res"]  # no second run folder


def test_testing_a_runs_checkpoint_leaves_the_fit_untouched(sample_stores: Path, tmp_path: Path) -> None:
    """`fer_zoo test --ckpt_path runs/<run>/checkpoints/last.ckpt` writes into its own folder inside the run: the
    fit's metrics, results.json (which predict-video reads) and plots stay as they were."""
    run_lightning_cli(fit_args(sample_stores, tmp_path, "t", "pose", epochs=2))
    run = tmp_path / "t"
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {"metrics.csv", "results.json", "confusion_test.png"} <= set(before)
    args = fit_args(sample_stores, tmp_path, "t", "pose")
    args = ["test", *[a for a in args[1:] if a not in ("--run_name", "t")]]
    run_lightning_cli([*args, "--ckpt_path", str(run / "checkpoints" / "last.ckpt")])
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before
    (evaluation,) = [p for p in run.iterdir() if p.is_dir() and p.name.startswith("test-last-")]
    res = json.loads((evaluation / "results.json").read_text())
    assert res["checkpoint"].endswith("last.ckpt") and res["checkpoint_policy"] is None
    assert set(res["metrics"]) >= {"test/uar", "test/war"} and (evaluation / "confusion_test.png").is_file()


def _validate(stores: Path, ckpt: Path, runs: Path, name: str, extra: list[str]) -> dict[str, float]:
    cmd = [sys.executable, "-m", "fer_zoo", "validate", "--config", "configs/pose_facemesh.yaml",
           "--data.store_root", str(stores), "--runs_dir", str(runs), "--run_name", name, "--wandb", "false",
           "--data.num_workers", "0", "--trainer.enable_progress_bar", "false", "--ckpt_path", str(ckpt), *extra]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    metrics = pd.read_csv(runs / name / "metrics.csv")
    return {k: float(metrics[k].dropna().iloc[-1]) for k in ("val/uar", "val/war", "val/f1")}


def test_ddp_two_processes_match_one_process(sample_stores: Path, tmp_path: Path) -> None:
    """A 2-process CPU DDP fit; its validation metrics equal one process validating the same weights.

    Tolerance 1e-6: evaluation reads every clip once per rank set (no padded repeats) and torchmetrics sums the
    per-rank states, so the numbers must agree to float precision, not just roughly.
    """
    ddp = ["--trainer.accelerator", "cpu", "--trainer.devices", "2", "--trainer.strategy", "ddp"]
    cmd = [sys.executable, "-m", "fer_zoo", *fit_args(sample_stores, tmp_path, "ddp", "pose_facemesh", 2), *ddp]
    out = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900,
                         env={**os.environ, "WANDB_MODE": "offline"})
    assert out.returncode == 0, out.stderr[-3000:]
    last = tmp_path / "ddp" / "checkpoints" / "last.ckpt"
    one = _validate(sample_stores, last, tmp_path, "v1", ["--trainer.devices", "1"])
    two = _validate(sample_stores, last, tmp_path, "v2", ddp)
    for key in one:
        assert abs(one[key] - two[key]) < 1e-6, (key, one[key], two[key])
    fit_metrics = pd.read_csv(tmp_path / "ddp" / "metrics.csv")
    assert abs(float(fit_metrics["val/uar"].dropna().iloc[-1]) - one["val/uar"]) < 1e-6


def test_facemesh_beats_majority_baseline_on_real_photos(face_photos: Path, tmp_path: Path) -> None:
    """faces-static as 1-frame clips, a seeded stratified split: face-mesh UAR must beat always-the-majority-class."""
    from datamodules.feature_datamodule import FeatureDataModule
    from fer_zoo.extraction.command import main as extract

    source = ["--source.class_path", "datamodules.sources.ImageFolderSource", "--source.init_args.root",
              str(face_photos), "--source.init_args.legend", str(face_photos.parent / "legend.csv")]
    stores = tmp_path / "features"
    assert extract(["--config", "configs/extract.yaml", *source, "--store_root", str(stores),
                    "--only", "facemesh"]) == 0
    run_lightning_cli([*fit_args(stores, tmp_path, "fs", "facemesh", epochs=15), "--data.source.class_path",
                       "datamodules.sources.ImageFolderSource", "--data.source.init_args.root", str(face_photos),
                       "--data.source.init_args.legend", str(face_photos.parent / "legend.csv"),
                       "--data.batch_size", "64", "--model.lr", "0.001"])
    res = json.loads((tmp_path / "fs" / "results.json").read_text())
    dm = FeatureDataModule(**_data_kwargs(face_photos, stores))
    train_counts = dm.class_counts("train")
    test_present = [c for c, n in dm.class_counts("test").items() if n > 0]
    majority = max(train_counts, key=train_counts.get)
    baseline_uar = (1.0 if majority in test_present else 0.0) / len(test_present)
    uar = res["metrics"]["test/uar"]
    print(f"faces-static facemesh: test UAR {uar:.3f} WAR {res['metrics']['test/war']:.3f}; "
          f"majority-class baseline UAR {baseline_uar:.3f} ({majority})")
    assert uar > baseline_uar + 0.05, (uar, baseline_uar)


def _data_kwargs(face_photos: Path, stores: Path) -> dict:
    from datamodules.sources import ImageFolderSource

    return {"source": ImageFolderSource(root=str(face_photos), legend=str(face_photos.parent / "legend.csv")),
            "store_root": str(stores), "modalities": ["facemesh"], "num_workers": 0}


def test_callbacks_of_the_config_are_kept(sample_stores: Path, tmp_path: Path) -> None:
    """A trainer.callbacks entry (EarlyStopping) reaches the Trainer beside fer_zoo's own checkpoint callbacks:
    LightningCLI merges {**trainer config, **kwargs}, so the callbacks FERCLI passes replaced the user's."""
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    cli = run_lightning_cli([*fit_args(sample_stores, tmp_path, "cb", "pose", epochs=1), "--trainer.callbacks+",
                             "EarlyStopping", "--trainer.callbacks.monitor", "val/uar",
                             "--trainer.callbacks.mode", "max"])
    kinds = [type(c) for c in cli.trainer.callbacks]
    assert EarlyStopping in kinds and ModelCheckpoint in kinds
