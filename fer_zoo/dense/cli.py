"""``python -m fer_zoo fit --config configs/abaw_expr.yaml``: the dense (per-frame) task through LightningCLI.

``run_lightning_cli`` (:mod:`fer_zoo.training.cli`) picks :class:`DenseCLI` when a config file says ``task: dense`` (or
the command line gives ``--task dense``). It is the clip CLI (:class:`~fer_zoo.training.cli.FERCLI`: run folders,
W&B, ``checkpoint_policy``, one test of the chosen checkpoint after ``fit``) with the dense classes
(:class:`~fer_zoo.dense.lit_module.DenseLitModule`, :class:`~datamodules.dense_datamodule.DenseDataModule`), their
links (``input_dims``, ``tasks``, ``class_names``, ``expr_class_weights``, ``window``), the checkpoint monitor
``val/score`` and its own ``results.json``: the per-frame test metrics beside the per-frame baselines
(:func:`fer_zoo.dense.baselines.dense_baselines`: majority class / training mean and a linear probe, fitted on the
same training clips and scored on the same test frames), split sizes in clips, videos and labeled frames, the tasks,
class and AU names, and each store with its meta (as the clip CLI writes it, so predict-video can rebuild the
extractors).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.dense_datamodule import DenseDataModule
from fer_zoo.dense.lit_module import MAIN_METRIC, DenseLitModule
from fer_zoo.training.cli import FERCLI

log = logging.getLogger(__name__)


class DenseCLI(FERCLI):
    """:class:`FERCLI` for ``task: dense`` (see the module docstring)."""

    task = "dense"
    monitor = "val/score"
    best_filename = "best-epoch{epoch:03d}-score{val/score:.4f}"
    test_files = "results.json"

    @classmethod
    def classes(cls) -> tuple[type, type]:
        return DenseLitModule, DenseDataModule

    def add_arguments_to_parser(self, parser: Any) -> None:
        self.add_run_arguments(parser)
        for key in ("input_dims", "tasks", "class_names", "expr_class_weights", "window"):
            source = "data.window" if key == "window" else f"data.{key}"
            parser.link_arguments(source, f"model.{key}", apply_on="instantiate" if key != "window" else "parse")
        parser.set_defaults({"trainer.max_epochs": 20, "trainer.log_every_n_steps": 5,
                             "trainer.deterministic": True})

    def _print_baselines(self) -> None:
        """The tested model beside its per-frame baselines, per task, on the same test frames."""
        res_file = self.run_dir / "results.json"
        if not res_file.is_file():
            return
        res = json.loads(res_file.read_text())
        print(format_dense_table(res))

    def after_test(self) -> None:
        self._write_results(self._cfg().get("ckpt_path"))

    def _write_results(self, ckpt_path: str | None) -> None:
        if not self.trainer.is_global_zero:
            return
        dm: DenseDataModule = self.datamodule
        model: DenseLitModule = self.model
        scores = model.last_scores.get("test", {})
        policy = self._cfg().checkpoint_policy if self.subcommand == "fit" else None
        results = {
            "task": "dense", "run_dir": str(self.run_dir), "checkpoint": ckpt_path, "checkpoint_policy": policy,
            "selection": ("the last epoch trained" if policy == "last" else
                          "best val/score on a validation split of whole training videos (never the test split)"
                          if policy == "best" else "given with --ckpt_path"),
            "tasks": dm.tasks, "modalities": dm.modalities, "fold": dm.fold,
            "class_names": dm.class_names, "au_names": dm.au_names,
            "metrics": {f"test/{k}": v for k, v in scores.get("metrics", {}).items()},
            "scores": scores.get("tasks"),
            "evaluation": {"window": model.hparams.window, "stride": max(1, model.hparams.window // 2),
                           "frames": "every labeled frame of each test clip, faceless ones included"},
            "training": {"window": dm.window, "stride": dm.stride, "class_balance": dm.class_balance,
                         "expr_class_weights": dm.expr_class_weights, "task_weights": model.task_weights},
            "stores": {m: {"path": str(Path(p).resolve()), "extractor": dm.stores[m].meta.get("extractor"),
                           "weights_source": dm.stores[m].meta.get("weights_source"),
                           "meta": {k: v for k, v in dm.stores[m].meta.items() if k != "schema"}}
                       for m, p in dm.store_paths.items()},
            "split_sizes": dm.split_sizes,
            "dropped_clips": {"count": len(dm.dropped), "clips": [dataclasses.asdict(d) for d in dm.dropped.values()]},
            "standardize": bool(model.hparams.standardize),
            "baselines": _baselines(dm),
        }
        (self.run_dir / "results.json").write_text(json.dumps(_jsonable(results), indent=2) + "\n")


def _baselines(dm: DenseDataModule) -> dict[str, Any]:
    """The per-frame prior and linear probe of each task, fitted on the training clips and scored on every labeled
    frame of the test clips (fer_zoo.dense.baselines); a failure is reported, never fatal."""
    from fer_zoo.dense.baselines import dense_baselines

    def clips(split: str) -> list[_StoreClip]:
        return [_StoreClip(dm, cid) for cid in dm.split_ids[split]]

    try:
        found = dense_baselines(clips("train"), clips("test"), dm.tasks, list(dm.stores), seed=dm.seed)
    except Exception as err:  # the model's results must still be written
        log.warning("dense baselines failed: %s: %s", type(err).__name__, err)
        return {"error": f"{type(err).__name__}: {err}"}
    out: dict[str, Any] = {}
    for task, by_name in found.items():
        out[task] = {}
        for name, res in by_name.items():
            score = dataclasses.asdict(res.score)
            main = {"EXPR": score.get("f1"), "VA": score.get("ccc"), "AU": score.get("f1_labeled")}[task]
            out[task][name] = {MAIN_METRIC[task]: main, "score": score, "n_train": res.n_train,
                               "n_fallback": res.n_fallback}
    return out


class _StoreClip:
    """A clip of the DataModule as the per-frame baselines read it (``fer_zoo.dense.baselines.ClipFrames``): labels,
    valid masks, and features of the frames asked for, read from the memory-mapped stores (never the whole split)."""

    def __init__(self, dm: DenseDataModule, clip_id: str) -> None:
        self.dm, self.clip_id = dm, clip_id
        self.labels = dm.grids[clip_id].labels

    def frame_valid(self) -> dict[str, np.ndarray]:
        from datamodules.dense_datamodule import read_rows

        g = self.dm.grids[self.clip_id]
        return {m: read_rows(st, self.clip_id, g.rows[m], features=False)[1] for m, st in self.dm.stores.items()}

    def frame_features(self, frames: np.ndarray) -> dict[str, np.ndarray]:
        from datamodules.dense_datamodule import read_rows

        g = self.dm.grids[self.clip_id]
        return {m: read_rows(st, self.clip_id, g.rows[m][frames])[0].astype(np.float32)
                for m, st in self.dm.stores.items()}


def _jsonable(x: Any) -> Any:
    """NaN/inf -> None (strict JSON), numpy scalars -> Python numbers, recursively."""
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if hasattr(x, "item") and not isinstance(x, str):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def format_dense_table(res: dict[str, Any]) -> str:
    """Per task: the model's main test metric beside the baselines' (same test frames), one line each."""
    lines = [f"test split ({res['split_sizes']['test']['clips']} clips, labeled frames "
             f"{res['split_sizes']['test']['labeled_frames']}): the model beside its per-frame baselines"]
    base = res.get("baselines") or {}
    for task in res["tasks"]:
        key = MAIN_METRIC[task]
        model = res["metrics"].get(f"test/{key}")
        row = [f"  {task:<4} {key:<14} model {_fmt(model)}"]
        for name, b in (base.get(task) or {}).items():
            row.append(f"{name} {_fmt(b.get(key))}")
        lines.append("   ".join(row))
    if "error" in base:
        lines.append(f"  baselines failed: {base['error']}")
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    return "  n/a" if v is None else f"{v:.3f}"
