"""The "best" checkpoint policy's choice between the best epoch and the start (fer_zoo.training.selection)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fer_zoo.training import selection


def _preds(target: torch.Tensor, wrong: int) -> torch.Tensor:
    """``target`` with the first ``wrong`` clips of each class sent to the next class."""
    pred = target.clone()
    for c in target.unique():
        idx = (target == c).nonzero().flatten()[:wrong]
        pred[idx] = (c + 1) % 2
    return pred


TARGET = torch.arange(200) % 2  # 100 clips per class


START = _preds(TARGET, 30)  # 70 % right


def _changed(fixed: int, broken: int) -> torch.Tensor:
    """START with ``fixed`` of its mistakes per class corrected and ``broken`` of its right answers per class made
    wrong (the last clips of each class, which START gets right)."""
    pred = _preds(TARGET, 30 - fixed)
    for c in TARGET.unique():
        idx = (c == TARGET).nonzero().flatten()[len((c == TARGET).nonzero()) - broken:]
        pred[idx] = (c + 1) % 2
    return pred


@pytest.mark.parametrize(("fixed", "broken", "chosen"), [
    (25, 0, "best epoch"),  # 25 points better: many standard errors
    (6, 5, "start"),  # 1 point better with 22 changed answers: within one standard error, the simpler start stays
    (2, 0, "best epoch"),  # 2 points better, every changed answer a fix: a small gain, but a sure one
    (0, 0, "start"),  # the same answers
    (0, 5, "start"),  # worse
])
def test_the_best_epoch_must_beat_the_start_by_more_than_one_standard_error(
        fixed: int, broken: int, chosen: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    start, best = tmp_path / "start.ckpt", tmp_path / "best-epoch002.ckpt"
    start.touch()
    best.touch()
    preds = {start: START, best: _changed(fixed, broken)}
    # the model's own predictions (in sample) differ from the scored ones (head out of fold): the rule uses the latter
    monkeypatch.setattr(selection, "val_predictions",
                        lambda module, dm, ckpt, head: (TARGET, preds[Path(ckpt)], TARGET))
    dm = type("DM", (), {"num_classes": 2})()
    sel = selection.choose(str(best), str(start), None, dm)
    assert sel.chosen == chosen and sel.checkpoint == str(start if chosen == "start" else best)
    assert sel.candidates["start"] == {"checkpoint": str(start), "val/uar": pytest.approx(0.70),
                                       "val/uar_in_sample": 1.0}
    assert sel.candidates["best epoch"]["val/uar"] == pytest.approx(0.70 + (fixed - broken) / 100)
    assert (sel.se > 0) == (fixed + broken > 0) and sel.se < 0.05 and sel.as_dict()["rule"] == selection.RULE


def test_bootstrap_se_is_paired_reproducible_and_shrinks_with_more_clips() -> None:
    a, b = _preds(TARGET, 30), _preds(TARGET, 20)
    se = selection.bootstrap_se(a, b, TARGET, 2)
    assert se == selection.bootstrap_se(a, b, TARGET, 2)  # a fixed seed
    assert selection.bootstrap_se(a, a, TARGET, 2) == 0.0  # the same predictions: no difference to be unsure of
    # b fixes 10 of a's mistakes per class and breaks none: the difference is 10 flips in 200 clips. Its paired
    # binomial standard error is about sqrt(20 * 0.05 * 0.95) / 100 ~ 0.022; four times the clips halve it.
    assert 0.015 < se < 0.03
    four = selection.bootstrap_se(a.repeat(4), b.repeat(4), TARGET.repeat(4), 2)
    assert four == pytest.approx(se / 2, rel=0.2)


def test_without_a_start_the_best_epoch_is_chosen_unscored(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def never(*args: object) -> None:
        raise AssertionError("nothing to compare: no candidate is scored")

    monkeypatch.setattr(selection, "val_predictions", never)
    sel = selection.choose("best.ckpt", str(tmp_path / "start.ckpt"), None, None)  # a run resumed from before starts
    assert sel.chosen == "best epoch" and sel.checkpoint == "best.ckpt" and "start" not in sel.candidates
    assert sel.se is None


def test_val_predictions_name_a_missing_checkpoint(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        selection.val_predictions(None, None, tmp_path / "nope.ckpt")


@pytest.mark.parametrize(("resumed_from", "kept"), [("here", True), ("elsewhere", False), (None, False)])
def test_the_start_file_belongs_to_the_run_that_wrote_it(resumed_from: str | None, kept: bool, tmp_path: Path) -> None:
    """Resumed from this folder's checkpoint: its start stays. A resume from another run's checkpoint, or a new fit
    whose model does not start as its probe, removes a start.ckpt an earlier fit left here."""
    here, elsewhere = tmp_path / "run" / "checkpoints", tmp_path / "other" / "checkpoints"
    here.mkdir(parents=True)
    (here / "start.ckpt").write_bytes(b"an earlier fit's start")
    ckpt = {"here": here / "last.ckpt", "elsewhere": elsewhere / "last.ckpt", None: None}[resumed_from]
    trainer = type("T", (), {"ckpt_path": ckpt and str(ckpt), "is_global_zero": True,
                             "save_checkpoint": lambda self, path: pytest.fail("no start to save")})()
    module = type("M", (), {"starts_as_probe": False})()
    selection.StartCheckpoint(here).on_train_start(trainer, module)
    assert (here / "start.ckpt").exists() == kept
