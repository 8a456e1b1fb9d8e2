"""``python -m fer_zoo fit|validate|test|predict``: LightningCLI over the FeatureDataModule and FERLitModule.

What this adds to plain LightningCLI, and why:
- the model is built from the data (input widths, classes, class weights are linked), so configs name modalities once;
- every run gets its own folder ``runs/<run_name>/`` with the resolved ``config.yaml``, ``checkpoints/``,
  ``metrics.csv``, ``results.json``, confusion-matrix PNGs and the offline W&B run;
- the checkpoint policy is explicit (``--checkpoint_policy best|last``): "best" means best ``val/uar`` on the
  validation split carved from the training fold, never the test fold, among the trained epochs and the model's
  start (its linear probe, :mod:`fer_zoo.training.selection`); ``fit`` then tests that checkpoint once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any

from jsonargparse import Namespace
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger

from datamodules.feature_datamodule import FeatureDataModule
from fer_zoo.cli_errors import (
    UsageError,
    check_config_files,
    from_argument_error,
    from_config_value_error,
    parser_keys,
)
from fer_zoo.library_log import LibraryLog
from fer_zoo.lightning_progress import LineProgressBar, wants_line_progress
from fer_zoo.progress import line_buffered_stdout
from fer_zoo.training.lit_module import FERLitModule
from fer_zoo.training.selection import SELECTION_FILE, START_CHECKPOINT, Selection, StartCheckpoint, choose

log = logging.getLogger(__name__)

# The default source takes no init_args, so a config that switches class_path has nothing to inherit (see SampleSource).
SAMPLE_SOURCE = {"class_path": "datamodules.sources.SampleSource"}
POLICIES = ("best", "last")
LIGHTNING_COMMANDS = ("fit", "validate", "test", "predict")


class FERCLI(LightningCLI):
    """LightningCLI with linked model/data arguments, run folders, W&B and the checkpoint policy."""

    library_log: LibraryLog | None = None  # set by run_lightning_cli(quiet=True)
    #: The top-level ``task`` this CLI runs (configs say ``task: dense`` for the per-frame task; see run_lightning_cli).
    task = "clip"
    #: What the "best" checkpoint maximises, and its file name.
    monitor = "val/uar"
    best_filename = "best-epoch{epoch:03d}-uar{val/uar:.4f}"
    #: What a tested fit adds to its run folder (printed at the end of `fit`).
    test_files = "results.json, confusion PNGs"

    @classmethod
    def classes(cls) -> tuple[type, type]:
        """``(LightningModule class, LightningDataModule class)`` this CLI builds."""
        return FERLitModule, FeatureDataModule

    def add_arguments_to_parser(self, parser: Any) -> None:
        self.add_run_arguments(parser)
        parser.link_arguments("data.input_dims", "model.input_dims", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.class_weights", "model.class_weights", apply_on="instantiate")
        parser.set_defaults({
            "data.source": SAMPLE_SOURCE,
            "data.store_root": "features/sample",
            "trainer.max_epochs": 30,
            "trainer.log_every_n_steps": 5,
            "trainer.deterministic": True,
        })

    def add_run_arguments(self, parser: Any) -> None:
        """The arguments every fer_zoo training CLI has (run folder, checkpoint policy, W&B, ``task``)."""
        parser.add_argument("--task", type=str, default=self.task,
                            help=f"'clip' (one label per clip) or 'dense' (labels per frame, e.g. ABAW); "
                                 f"`python -m fer_zoo` picks the CLI from it (default here: {self.task})")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder name under --runs_dir (default: <modalities>-fold<k>-<time>)")
        parser.add_argument("--runs_dir", type=str, default="runs")
        parser.add_argument("--checkpoint_policy", type=str, default="best",
                            help=f"which checkpoint `fit` tests: 'best' (best {self.monitor}) or 'last'")
        parser.add_argument("--test_after_fit", type=bool, default=True)
        parser.add_argument("--wandb", type=bool, default=True, help="log to W&B (offline unless WANDB_MODE=online)")
        parser.add_argument("--wandb_project", type=str, default="fer_zoo")
        parser.add_argument("--wandb_group", type=str | None, default=None)
        parser.add_argument("--wandb_tags", type=list[str], default=[])

    # -- run folder, loggers, callbacks --------------------------------------------------------------------------

    def _cfg(self) -> Any:
        return self.config[self.subcommand] if self.subcommand else self.config

    # -- mistakes as one line (fer_zoo.cli_errors): parsing, then building the source / data module / model -------

    def parse_arguments(self, parser: Any, args: Any) -> None:
        from jsonargparse import ArgumentError

        argv = [str(a) for a in args] if isinstance(args, list | tuple) else sys.argv[1:]
        check_config_files(argv)
        try:
            super().parse_arguments(parser, args)
        except ArgumentError as err:
            command = argv[0] if argv and argv[0] in LIGHTNING_COMMANDS else "fit"
            sub = getattr(parser, "_subcommands_action", None)
            sub_parser = sub._name_parser_map.get(command) if sub is not None else None
            raise from_argument_error(err, command, argv, parser_keys(sub_parser or parser)) from None

    def instantiate_classes(self) -> None:
        from datamodules.feature_store import StoreError
        from datamodules.sources import LabelError

        try:
            super().instantiate_classes()
        except (ValueError, KeyError, LabelError, FileNotFoundError, StoreError) as err:
            raise from_config_value_error(err) from err

    def before_instantiate_classes(self) -> None:
        cfg = self._cfg()
        if cfg.task != self.task:
            raise UsageError(f"task: {cfg.task!r} runs through another CLI than this one ({self.task!r}); give it "
                             f"in a --config file or as --task on the command line of `python -m fer_zoo`")
        if cfg.checkpoint_policy not in POLICIES:
            raise UsageError(f"checkpoint_policy: {cfg.checkpoint_policy!r} is not one of {list(POLICIES)}")
        ckpt = cfg.get("ckpt_path")
        if cfg.run_name is None and ckpt and Path(ckpt).parent.name == "checkpoints":
            run = Path(ckpt).parent.parent
            # Resuming a fit stays in its folder. Evaluating a run's checkpoint gets a folder of its own inside the
            # run, so the fit's metrics.csv, results.json and plots (which predict-video reads) stay as they were.
            self.run_dir = run if self.subcommand == "fit" else \
                run / f"{self.subcommand}-{Path(ckpt).stem}-{time.strftime('%Y%m%d-%H%M%S')}"
        else:
            name = cfg.run_name or "{}-fold{}-{}".format(
                "+".join(m.split("/")[0] for m in cfg.data.modalities), cfg.data.fold or 0,
                time.strftime("%Y%m%d-%H%M%S"))
            self.run_dir = Path(cfg.runs_dir) / name
        cfg.trainer.default_root_dir = str(self.run_dir)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self._cfg()
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.library_log is not None:
            self.library_log.to_file(self.run_dir / f"{self.subcommand or 'run'}.log")
        loggers: list[Logger] = [CSVLogger(save_dir=str(self.run_dir), name="", version="")]
        if cfg.wandb:
            loggers.append(self._wandb_logger(cfg))
        ckpt_dir = str(self.run_dir / "checkpoints")
        # Two callbacks on purpose: Lightning's save_last only refreshes last.ckpt when a new *best* is saved, so a
        # "last" policy (or a resume) would silently get a stale epoch. This one writes last.ckpt every epoch.
        self.last_checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor=None, save_top_k=1, filename="last",
                                               enable_version_counter=False)
        extra = [ModelCheckpoint(dirpath=ckpt_dir, monitor=self.monitor, mode="max", save_top_k=1,
                                 filename=self.best_filename, auto_insert_metric_name=False),
                 self.last_checkpoint, StartCheckpoint(ckpt_dir), LearningRateMonitor(logging_interval="epoch")]
        # The config's own trainer.callbacks (an EarlyStopping, say): LightningCLI merges {**trainer config,
        # **kwargs}, so callbacks passed here would replace them without a word; they are kept in front.
        configured = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
        configured = list(configured) if isinstance(configured, list | tuple) else [configured]
        ours = [*kwargs.get("callbacks", []), *extra]
        if wants_line_progress(cfg.trainer.get("enable_progress_bar"), [*configured, *ours]):
            ours.append(LineProgressBar())  # piped or in a log file: plain lines, not a bar redrawn with \r
        kwargs["callbacks"] = [*configured, *ours]
        trainer = super().instantiate_trainer(**kwargs)
        trainer.loggers = loggers
        _share_cpu_cores(trainer, cfg.data.num_workers)
        return trainer

    def _wandb_logger(self, cfg: Any) -> Logger:
        from lightning.pytorch.loggers import WandbLogger

        os.environ.setdefault("WANDB_MODE", "offline")  # online only when the user asks for it
        id_file = self.run_dir / "wandb_id.txt"
        if id_file.exists():
            run_id = id_file.read_text().strip()
        else:
            import wandb

            run_id = wandb.util.generate_id()
            id_file.write_text(run_id + "\n")
        mods = [m.split("/")[0] for m in cfg.data.modalities]
        tags = [*cfg.wandb_tags, *mods, f"fold{cfg.data.fold or 0}"]
        logger = WandbLogger(project=cfg.wandb_project, name=self.run_dir.name, id=run_id, resume="allow",
                             save_dir=str(self.run_dir), group=cfg.wandb_group, tags=tags, job_type=self.subcommand,
                             config={"modalities": "+".join(sorted(mods)), "fold": cfg.data.fold or 0,
                                     "seed": cfg.data.seed, "seed_everything": cfg.seed_everything})
        # Lightning always passes `anonymous` (None by default); wandb >= 0.19 then prints a deprecation warning on
        # the terminal for a setting nobody asked for. Dropping the unset key changes nothing else.
        if getattr(logger, "_wandb_init", {}).get("anonymous", "set") is None:
            logger._wandb_init.pop("anonymous")
        return logger

    # -- after fit: test the policy's checkpoint once, write results.json -----------------------------------------

    def after_fit(self) -> None:
        cfg = self._cfg()
        if self.trainer.interrupted:
            return
        best = self.trainer.checkpoint_callback  # the first ModelCheckpoint: best val/uar
        path = best.best_model_path if cfg.checkpoint_policy == "best" else self.last_checkpoint.best_model_path
        self.selection: Selection | None = None
        if cfg.checkpoint_policy == "best" and path:
            self.selection = self.trainer.strategy.broadcast(self._choose(path) if self.trainer.is_global_zero
                                                             else None)  # rank 0 scores, every rank tests its choice
            path = self.selection.checkpoint
            if self.trainer.is_global_zero:
                (Path(path).parent / SELECTION_FILE).write_text(json.dumps(self.selection.as_dict(), indent=2) + "\n")
        if cfg.test_after_fit:
            # verbose=False: Lightning's table of test metrics would repeat the one _print_baselines prints
            self.trainer.test(self.model, datamodule=self.datamodule, ckpt_path=path or None, verbose=False)
            self._write_results(path)
        if self.trainer.is_global_zero:
            if self.selection is not None and "start" in self.selection.candidates:
                sel = self.selection
                print("checkpoint: " + ", ".join(f"{k} val UAR {100 * c['val/uar']:.1f}" for k, c in
                                                 sel.candidates.items())
                      + f" (head out of fold; standard error of the difference {100 * sel.se:.1f}) -> {sel.chosen} "
                        f"({Path(sel.checkpoint).name}; the best epoch must win by more than one standard error)")
            self._selection_to_wandb()
            self._print_baselines()
            print(f"run folder: {self.run_dir} (config.yaml, metrics.csv, checkpoints/"
                  + (f", {self.test_files})" if cfg.test_after_fit else ")"))
            if self.library_log is not None and self.library_log.path is not None:
                print(f"library messages (Lightning, W&B, warnings): {self.library_log.path}")
            wandb_runs = sorted((self.run_dir / "wandb").glob("offline-run-*"))
            if wandb_runs:
                print(f"W&B offline run: {wandb_runs[-1]}  (upload: wandb sync {wandb_runs[-1]})")

    def _choose(self, best_checkpoint: str) -> Selection:
        """The "best" policy's checkpoint (fer_zoo.training.selection): the best epoch or, when the model started as
        its probe, possibly that start, scored with the head's out-of-fold val logits."""
        if not self.model.starts_as_probe:
            return choose(best_checkpoint, None, self.model, self.datamodule)
        from fer_zoo.training.probe import init_probe_for

        start = self.run_dir / "checkpoints" / START_CHECKPOINT
        oof = init_probe_for(self.datamodule).oof_logits  # cached on the DataModule since setup: no refit
        return choose(best_checkpoint, str(start), self.model, self.datamodule, head_logits=oof)

    def _selection_to_wandb(self) -> None:
        """The checkpoint choice in the W&B run's summary, so a dashboard can show which model was tested."""
        from lightning.pytorch.loggers import WandbLogger

        sel = self.selection
        if sel is None or "start" not in sel.candidates:
            return
        summary = {"checkpoint/chosen": sel.chosen, "checkpoint/se": sel.se,
                   **{f"checkpoint/{k.replace(' ', '_')}/val_uar": c["val/uar"] for k, c in sel.candidates.items()}}
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.summary.update(summary)

    def _print_baselines(self) -> None:
        """The tested model beside its linear probe and the majority class, on the same test split; the model alone
        (and why) when the baselines failed. The only table of test results ``fit`` prints."""
        from fer_zoo.training.probe import format_table

        res_file = self.run_dir / "results.json"
        if not res_file.is_file():
            return
        res = json.loads(res_file.read_text())
        base, metrics = res.get("baselines") or {}, res.get("metrics") or {}
        if "test/uar" not in metrics:
            return
        n = res["split_sizes"]["test"]
        if "probe" in base and "majority" in base:
            print(f"test split ({n} clips): the model beside its baselines\n" + format_table(base, metrics))
        else:
            print(f"test split ({n} clips): model UAR {100 * metrics['test/uar']:.1f}%, WAR "
                  f"{100 * metrics['test/war']:.1f}%, F1 {100 * metrics['test/f1']:.1f}% (no baselines: "
                  f"{base.get('error', 'not computed')})")

    def after_test(self) -> None:
        self._write_results(self._cfg().get("ckpt_path"))

    def _write_results(self, ckpt_path: str | None) -> None:
        if not self.trainer.is_global_zero:
            return
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items() if k.startswith("test/")}
        dm: FeatureDataModule = self.datamodule
        results = {
            "run_dir": str(self.run_dir), "checkpoint": ckpt_path,
            **({"checkpoint_policy": self._cfg().checkpoint_policy,
                "selection": _selection_text(self._cfg().checkpoint_policy, getattr(self, "selection", None)),
                "candidates": sel.as_dict() if (sel := getattr(self, "selection", None)) else None}
               if self.subcommand == "fit" else {"checkpoint_policy": None, "selection": "given with --ckpt_path"}),
            "modalities": dm.modalities, "fold": dm.fold, "class_names": dm.class_names, "metrics": metrics,
            "confusion": getattr(self.model, "last_confusion", {}).get("test", None),
            # A copy of each store's meta: predict-video rebuilds the exact extractors from it even if the store moved.
            "stores": {m: {"path": str(Path(p).resolve()), "extractor": dm.stores[m].meta.get("extractor"),
                           "weights_source": dm.stores[m].meta.get("weights_source"),
                           "meta": {k: v for k, v in dm.stores[m].meta.items() if k != "schema"}}
                       for m, p in dm.store_paths.items()},
            "split_sizes": {k: len(v) for k, v in dm.split_ids.items()},
            # Clips taken out of the splits (extraction failed / no valid frame), and classes a split lacks.
            "dropped_clips": {"count": len(dm.dropped),
                              "clips": [dataclasses.asdict(d) for d in dm.dropped.values()]},
            "short_classes": dm.short_classes,
            "standardize": bool(getattr(self.model.hparams, "standardize", False)),
            # The same split, the same metric code: what a linear model on clip statistics and a constant get.
            "baselines": _baselines(dm),
            "stats_head_init": getattr(self.model, "stats_head_init", None),
        }
        if results["confusion"] is not None:
            results["confusion"] = results["confusion"].tolist()
        (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")


def _selection_text(policy: str, selection: Selection | None) -> str:
    """How results.json's checkpoint was chosen, in words."""
    if policy == "last":
        return "the last epoch trained"
    text = "best val/uar on a stratified validation split of the training fold (never the test fold)"
    if selection is not None and "start" in selection.candidates:
        text += (", unless it beats the start (the linear probe the model starts as, scored with the head's "
                 "out-of-fold val logits) by no more than one bootstrap standard error: then the start")
    return text


def _baselines(dm: FeatureDataModule) -> dict[str, Any] | None:
    """The linear probe and majority baselines (fer_zoo.training.probe); a failure is reported, never fatal."""
    from fer_zoo.training.probe import baselines

    try:
        return baselines(dm)
    except Exception as err:  # the model's results must still be written
        log.warning("baselines failed: %s: %s", type(err).__name__, err)
        return {"error": f"{type(err).__name__}: {err}"}


def _share_cpu_cores(trainer: Any, num_workers: int) -> None:
    """On a single-process CPU run, leave one core per loader worker.

    torch's default (one thread per core) next to busy loader workers oversubscribes the cores, and its OpenMP
    threads then spin: one step took ~1 s instead of ~50 ms on 2 cores with 2 workers (benchmarks/bench_training.py).
    DDP on CPU is left alone: Lightning already divides the cores among the ranks.
    """
    import torch
    from lightning.pytorch.accelerators import CPUAccelerator

    single_cpu = isinstance(trainer.accelerator, CPUAccelerator) and trainer.world_size == 1
    if single_cpu and "OMP_NUM_THREADS" not in os.environ:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
        torch.set_num_threads(max(1, cores - num_workers))


# One place for how fer_zoo builds its LightningCLI (the ablation grid parses configs with the same settings).
CLI_KWARGS: dict[str, Any] = {"save_config_kwargs": {"overwrite": True}, "seed_everything_default": 42,
                              "parser_kwargs": {"default_env": False, "allow_abbrev": False, "exit_on_error": False,
                                                "prog": "python -m fer_zoo"}}


def run_lightning_cli(argv: list[str], cli_class: type[FERCLI] = FERCLI, quiet: bool = False) -> FERCLI:
    """Run ``fit|validate|test|predict`` with ``argv``. ``quiet`` (what ``python -m fer_zoo`` uses) keeps library
    chatter out of the terminal: it goes to ``<run folder>/<command>.log``; progress (a bar on a terminal, plain lines
    with rate and ETA otherwise: :mod:`fer_zoo.lightning_progress`) and results stay.

    When ``argv`` is the process's own command line, LightningCLI reads ``sys.argv`` itself: DDP re-launches each
    rank with ``sys.argv``, so it must stay whole (and then LightningCLI has nothing to warn about).
    """
    args = None if list(argv) == sys.argv[1:] else list(argv)
    if cli_class is FERCLI:
        cli_class = cli_for_task(requested_task(list(argv)))
    library_log = LibraryLog() if quiet else None
    if quiet:
        line_buffered_stdout()  # under nohup / `> log 2>&1`, results arrive in order with the progress lines
    with library_log or contextlib.nullcontext(), warnings.catch_warnings():
        # In-process callers (the ablation's parse-only check, tests) pass their own args beside pytest's argv.
        warnings.filterwarnings("ignore", message="LightningCLI's args parameter is intended")
        cls = type(cli_class.__name__, (cli_class,), {"library_log": library_log}) if quiet else cli_class
        model_class, data_class = cli_class.classes()
        return cls(model_class, data_class, args=args, **CLI_KWARGS)


TASKS = ("clip", "dense")


def requested_task(argv: list[str]) -> str:
    """The ``task`` a command line asks for: the last of ``--task X`` / ``--task=X`` and the top-level ``task:`` of
    each ``--config`` file, in order (as jsonargparse applies them); ``"clip"`` when none says. Raises
    :class:`UsageError` for a task that is not one of :data:`TASKS` (a missing or broken config file is left to the
    parser, which names it)."""
    import yaml

    task = "clip"
    i = 0
    while i < len(argv):
        arg = str(argv[i])
        key, eq, value = arg.partition("=")
        if key in ("--task", "--config"):
            if not eq:
                i += 1
                value = str(argv[i]) if i < len(argv) else ""
            if key == "--task":
                task = value
            else:
                try:
                    loaded = yaml.safe_load(Path(value).read_text())
                except (OSError, yaml.YAMLError):
                    loaded = None
                if isinstance(loaded, dict) and "task" in loaded:
                    task = str(loaded["task"])
        i += 1
    if task not in TASKS:
        raise UsageError(f"task: {task!r} is not one of {list(TASKS)}")
    return task


def cli_for_task(task: str) -> type[FERCLI]:
    """The CLI class of a task: :class:`FERCLI` for ``clip``, ``fer_zoo.dense.cli.DenseCLI`` for ``dense``."""
    if task == "dense":
        from fer_zoo.dense.cli import DenseCLI  # imports this module: loaded only when asked for

        return DenseCLI
    return FERCLI


class _Parsed(Exception):
    def __init__(self, config: Any) -> None:
        super().__init__("parsed")
        self.config = config


def parse_fit_config(args: list[str]) -> Any:
    """The resolved ``fit`` config of ``args`` (config files and overrides), parsed by FERCLI itself but never
    instantiated: no run folder, no W&B run, no store opened. The ablation grid checks its cells with it, and the
    tests resolve every documented command with it."""

    class _ParseOnly(cli_for_task(requested_task(["fit", *args]))):  # type: ignore[misc]
        def before_instantiate_classes(self) -> None:
            raise _Parsed(self._cfg())

    try:
        run_lightning_cli(["fit", *args], cli_class=_ParseOnly)
    except _Parsed as parsed:
        return parsed.config
    raise RuntimeError("FERCLI returned without reaching before_instantiate_classes")


def instantiate_spec(spec: Any) -> Any:
    """A ``class_path``/``init_args`` Namespace (as jsonargparse leaves it after parsing) -> the object."""
    if not isinstance(spec, Namespace | dict):
        return spec
    spec = spec.as_dict() if isinstance(spec, Namespace) else dict(spec)
    module, _, name = spec["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**(spec.get("init_args") or {}))
