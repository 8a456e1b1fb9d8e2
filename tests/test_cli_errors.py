"""Command-line and config mistakes: one line naming the key, file or line, exit 2, no usage dump or traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from fer_zoo.__main__ import COMMANDS, LIGHTNING, main

REPO = Path(__file__).resolve().parents[1]


def _one_error_line(capsys: pytest.CaptureFixture, command: str) -> str:
    err = [ln for ln in capsys.readouterr().err.strip().splitlines() if ln]
    assert len(err) == 1, err
    assert err[0].startswith(f"python -m fer_zoo {command}: error: "), err
    return err[0].split(": error: ", 1)[1]


def test_help_lists_every_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name in (*LIGHTNING, *COMMANDS):
        assert any(line.split()[:1] == [name] and len(line.split()) > 2 for line in out.splitlines()), name


def test_unknown_command(capsys: pytest.CaptureFixture) -> None:
    assert main(["fitt"]) == 2
    assert "unknown command 'fitt'" in capsys.readouterr().err


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  modalities: [resnet\n  batch_size: 4\n")
    assert main(["fit", "--config", str(bad)]) == 2
    msg = _one_error_line(capsys, "fit")
    assert msg.startswith(f"{bad}:3:") and "YAML error" in msg, msg


def test_unknown_key_in_a_yaml_file_names_the_file(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    bad = tmp_path / "typo.yaml"
    bad.write_text("data:\n  batchsize: 4\n")
    assert main(["fit", "--config", "configs/resnet_pose.yaml", "--config", str(bad)]) == 2
    msg = _one_error_line(capsys, "fit")
    assert msg == (f"{bad}: unknown key 'data.batchsize'; did you mean data.batch_size? "
                   "(every key: python -m fer_zoo fit --help)")


def test_missing_config_file(capsys: pytest.CaptureFixture) -> None:
    assert main(["fit", "--config", "configs/no_such.yaml"]) == 2
    assert _one_error_line(capsys, "fit") == "--config configs/no_such.yaml: no such file"


def test_bad_type_names_the_key(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["fit", "--config", "configs/resnet_pose.yaml", "--data.batch_size", "many"]) == 2
    msg = _one_error_line(capsys, "fit")
    assert msg.startswith("data.batch_size: ") and "many" in msg, msg


def test_extract_unknown_key_and_bad_only(capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["extract", "--config", "configs/extract.yaml", "--num_worker", "1"]) == 2
    assert "unknown key 'num_worker'; did you mean num_workers?" in _one_error_line(capsys, "extract")
    assert main(["extract", "--config", "configs/extract.yaml", "--only", "smell"]) == 2
    assert "--only names modalities ['smell']" in _one_error_line(capsys, "extract")


def test_ablate_unknown_key_in_overrides(tmp_path: Path, capsys: pytest.CaptureFixture,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    assert main(["ablate", "--config", "configs/ablation.yaml", "--runs_dir", str(tmp_path), "--dry_run=true",
                 "--", "--trainer.max_epoch=3"]) == 2
    msg = _one_error_line(capsys, "ablate")
    assert "unknown key 'trainer.max_epoch'; did you mean trainer.max_epochs" in msg, msg


def test_extract_label_outside_a_named_vocabulary_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """From a new user's trial: with vocabulary named, a misspelt label was an 18-line traceback from extract."""
    monkeypatch.chdir(REPO)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label\na.jpg,happiness\nb.jpg,hapiness\n")
    assert main(["extract", "--config", "configs/extract.yaml", f"--store_root={tmp_path / 'f'}",
                 "--source.class_path=datamodules.sources.ManifestSource", f"--source.init_args.csv={manifest}",
                 "--source.init_args.vocabulary=[happiness, sadness]"]) == 2
    msg = _one_error_line(capsys, "extract")
    assert msg.startswith("data.source: ") or msg.startswith(f"{manifest}:3"), msg
    assert f"{manifest}:3: label 'hapiness' is not in" in msg and "did you mean 'happiness'?" in msg, msg


def test_split_passthrough_keeps_everything_after_the_first_double_dash() -> None:
    from fer_zoo.cli_errors import split_passthrough

    assert split_passthrough(["--seeds", "1", "--", "--trainer.max_epochs=2", "--", "x"]) == (
        ["--seeds", "1"], ["--trainer.max_epochs=2", "--", "x"])
    assert split_passthrough(["--seeds", "1"]) == (["--seeds", "1"], [])
