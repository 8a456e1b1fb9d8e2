"""The ABAW configs resolve to what they mean, as the CLI parses them (nothing instantiated but the source)."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_documented_configs import _readme_commands

from datamodules.affwild2 import AffWild2Source
from fer_zoo.training.cli import instantiate_spec, parse_fit_config

REPO = Path(__file__).resolve().parents[1]
TRACKS = {"abaw_expr.yaml": "EXPR", "abaw_va.yaml": "VA", "abaw_au.yaml": "AU"}


@pytest.fixture(autouse=True)
def _in_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)


def _check(cfg, task: str) -> None:
    assert cfg.task == "dense"
    assert cfg.data.tasks == [task] and cfg.model.window == cfg.data.window
    source = instantiate_spec(cfg.data.source)
    assert isinstance(source, AffWild2Source) and source.tasks == (task,) and source.name == "affwild2"
    assert source.vocabulary.name == "abaw_expr"
    assert cfg.data.fold is None and cfg.data.val_fraction > 0


@pytest.mark.parametrize(("config", "task"), sorted(TRACKS.items()))
def test_each_track_config_is_the_dense_task_on_aff_wild2(config: str, task: str) -> None:
    cfg = parse_fit_config(["--config", f"configs/{config}"])
    _check(cfg, task)
    assert cfg.data.source.init_args.root == "/data/Aff-Wild2" and cfg.data.store_root == "features/abaw"
    assert cfg.data.class_balance == ("weighted_loss" if task == "EXPR" else "none")
    folds = parse_fit_config(["--config", f"configs/{config}", "--data.source.init_args.n_folds", "5",
                              "--data.fold", "3"])
    assert instantiate_spec(folds.data.source).n_folds == 5 and folds.data.fold == 3


def test_extract_config_stores_every_frame_of_the_three_tracks() -> None:
    from fer_zoo.extraction.command import build_parser

    cfg = build_parser().parse_args(["--config", "configs/extract/abaw.yaml"])
    assert cfg.frame_cap is None and cfg.store_root == "features/abaw"
    source = instantiate_spec(cfg.source)
    assert isinstance(source, AffWild2Source) and source.tasks == ("EXPR", "VA", "AU")
    # the training configs read the stores this config makes: same store root, modalities among its own
    for config in TRACKS:
        fit = parse_fit_config(["--config", f"configs/{config}"])
        assert fit.data.store_root == cfg.store_root and set(fit.data.modalities) <= set(cfg.modalities)


def test_documented_dense_commands_resolve() -> None:
    """The fit/test commands of README.md and docs/*.md that name an ABAW config (left out of
    tests/test_documented_configs.py) resolve to that track."""
    for cmd in _readme_commands():
        configs = [a for a in cmd if Path(a).name in TRACKS]
        if cmd[0] in {"fit", "validate", "test"} and configs:
            _check(parse_fit_config([a for a in cmd[1:] if not a.startswith("--print_config")]),
                   TRACKS[Path(configs[-1]).name])
