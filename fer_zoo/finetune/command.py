"""``python -m fer_zoo finetune-frames --config configs/finetune/sample.yaml``: fine-tune a frame encoder on photos.

Conventions of ``fit``: jsonargparse/LightningCLI config files and overrides, a run folder ``runs/<run_name>/``
(resolved ``config.yaml``, ``checkpoints/``, ``metrics.csv``, ``results.json``, the offline W&B run), progress bars,
and a checkpoint policy that never looks at the test split: ``best`` = best ``val/uar`` on a validation split carved
from the training photos, or ``last``. That checkpoint is tested once and exported as the run's encoder file
``runs/<run>/encoder.safetensors`` + ``encoder.json`` (and copied to ``--encoder_out`` when given), which frame
extractors load with ``weights: runs/<run>/encoder.safetensors``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.loggers import CSVLogger, Logger

from fer_zoo.finetune.data import PhotoDataModule
from fer_zoo.finetune.module import FrameEncoderModule
from fer_zoo.training.cli import CLI_KWARGS, POLICIES, _share_cpu_cores

SAMPLE_SOURCE = {"class_path": "datamodules.sources.SampleSource"}  # fit's default source: the same split


class FinetuneCLI(LightningCLI):
    """LightningCLI (no subcommands) with the run folder, W&B, checkpoint policy and encoder export."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="run folder name under --runs_dir (default: finetune-<arch>-<time>)")
        parser.add_argument("--runs_dir", type=str, default="runs")
        parser.add_argument("--checkpoint_policy", type=str, default="best",
                            help="which checkpoint is tested and exported: 'best' (best val/uar) or 'last'")
        parser.add_argument("--encoder_out", type=str | None, default=None,
                            help="also copy the encoder file (and its JSON) here, e.g. weights/fer.safetensors")
        parser.add_argument("--wandb", type=bool, default=True, help="log to W&B (offline unless WANDB_MODE=online)")
        parser.add_argument("--wandb_project", type=str, default="fer_zoo")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")
        parser.link_arguments("data.class_names", "model.class_names", apply_on="instantiate")
        parser.link_arguments("data.class_weights", "model.class_weights", apply_on="instantiate")
        parser.set_defaults({"data.source": SAMPLE_SOURCE, "trainer.max_epochs": 5, "trainer.log_every_n_steps": 5,
                             "trainer.deterministic": False})

    def before_instantiate_classes(self) -> None:
        cfg = self.config
        if cfg.checkpoint_policy not in POLICIES:
            raise ValueError(f"--checkpoint_policy must be one of {POLICIES}, got {cfg.checkpoint_policy!r}")
        if cfg.encoder_out is not None and not str(cfg.encoder_out).endswith(".safetensors"):
            raise ValueError(f"--encoder_out must end in .safetensors, got {cfg.encoder_out!r}")
        name = cfg.run_name or f"finetune-{cfg.model.arch}-{time.strftime('%Y%m%d-%H%M%S')}"
        self.run_dir = Path(cfg.runs_dir) / name
        cfg.trainer.default_root_dir = str(self.run_dir)

    def instantiate_trainer(self, **kwargs: Any) -> Any:
        cfg = self.config
        self.run_dir.mkdir(parents=True, exist_ok=True)
        loggers: list[Logger] = [CSVLogger(save_dir=str(self.run_dir), name="", version="")]
        if cfg.wandb:
            from lightning.pytorch.loggers import WandbLogger

            os.environ.setdefault("WANDB_MODE", "offline")
            loggers.append(WandbLogger(project=cfg.wandb_project, name=self.run_dir.name, save_dir=str(self.run_dir),
                                       job_type="finetune-frames", tags=["finetune-frames", cfg.model.arch]))
        ckpt_dir = str(self.run_dir / "checkpoints")
        self.best_checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor="val/uar", mode="max", save_top_k=1,
                                               filename="best-epoch{epoch:03d}-uar{val/uar:.4f}",
                                               auto_insert_metric_name=False)
        self.last_checkpoint = ModelCheckpoint(dirpath=ckpt_dir, monitor=None, save_top_k=1, filename="last",
                                               enable_version_counter=False)
        configured = self._get(self.config_init, "trainer", default={}).get("callbacks") or []  # kept: see FERCLI
        configured = list(configured) if isinstance(configured, list | tuple) else [configured]
        kwargs["callbacks"] = [*configured, *kwargs.get("callbacks", []), self.best_checkpoint, self.last_checkpoint]
        trainer = super().instantiate_trainer(**kwargs)
        trainer.loggers = loggers
        _share_cpu_cores(trainer, cfg.data.num_workers)
        return trainer

    def config_fingerprint(self) -> str:
        """sha256 over what shapes the encoder: model, data (source, split, augmentation), epochs, seed."""
        cfg = self.config.as_dict()
        keep = {k: cfg.get(k) for k in ("model", "data", "seed_everything")}
        keep["max_epochs"] = cfg["trainer"].get("max_epochs")
        keep["max_steps"] = cfg["trainer"].get("max_steps")
        return hashlib.sha256(json.dumps(keep, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def run(self) -> Path:
        """fit, test the policy's checkpoint once, export the encoder file; returns its path."""
        import torch

        cfg, dm, model, trainer = self.config, self.datamodule, self.model, self.trainer
        started, cpu_started = time.perf_counter(), time.process_time()
        trainer.fit(model, datamodule=dm)
        fit_seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
        if trainer.interrupted:
            raise SystemExit(130)
        ckpt = (self.best_checkpoint if cfg.checkpoint_policy == "best" else self.last_checkpoint).best_model_path
        if not ckpt:  # no validation metric was ever logged (e.g. an empty val split)
            ckpt = self.last_checkpoint.best_model_path
        state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
        model.load_state_dict(state)
        test = trainer.test(model, datamodule=dm, verbose=True)[0] if dm.split_ids["test"] else {}
        epochs = max(1, trainer.current_epoch)
        n_train = len(dm.dataset("train"))
        cost = {"fit_seconds": round(fit_seconds, 1), "cpu_seconds": round(cpu_seconds, 1), "epochs": epochs,
                "train_images": n_train, "image_size": dm.image_size,
                "train_images_per_second": round(n_train * epochs / fit_seconds, 2),
                "minutes_per_epoch": round(fit_seconds / epochs / 60, 3),
                "note": "wall time of trainer.fit (photo decoding and validation included) on a shared machine; "
                        "cpu_seconds: this process's CPU time; torch threads: " + str(torch.get_num_threads())}
        fingerprint = {**dm.fingerprint(), "config": self.config_fingerprint()}
        enc = model.export(self.run_dir / "encoder.safetensors", dm.image_size, dm.mean, dm.std, fingerprint,
                           {"checkpoint": str(ckpt), "checkpoint_policy": cfg.checkpoint_policy,
                            "test_metrics": {k: float(v) for k, v in test.items()},
                            "created_by": "python -m fer_zoo finetune-frames", "run_dir": str(self.run_dir)})
        if cfg.encoder_out:
            out = Path(cfg.encoder_out)
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(enc.with_suffix(".json"), out.with_suffix(".json"))
            shutil.copyfile(enc, out)
        results = {"run_dir": str(self.run_dir), "checkpoint": ckpt, "checkpoint_policy": cfg.checkpoint_policy,
                   "selection": "best val/uar on a validation split of the training photos (never the test split)"
                   if cfg.checkpoint_policy == "best" else "last epoch",
                   "class_names": dm.class_names, "metrics": {k: float(v) for k, v in test.items()},
                   "confusion": None if model.last_confusion is None else model.last_confusion.tolist(),
                   "split_sizes": {k: len(v) for k, v in dm.split_ids.items()}, "unreadable": dm.unreadable,
                   "cost": cost, "encoder_file": str(enc), "encoder_out": cfg.encoder_out,
                   "fingerprint": fingerprint, "split_ids": dm.split_ids}
        (self.run_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
        print(f"encoder file: {enc} (+ {enc.with_suffix('.json').name}); use it with "
              f"`{{name: {model.hparams.arch}, config: {{weights: {enc}}}}}`")
        print(f"fine-tuning cost: {cost['train_images_per_second']} images/s, {cost['minutes_per_epoch']} min/epoch "
              f"({n_train} training photos); run folder: {self.run_dir}")
        return enc


def main(argv: list[str] | None = None) -> int:
    kwargs = {**CLI_KWARGS, "save_config_kwargs": {"overwrite": True}}
    cli = FinetuneCLI(FrameEncoderModule, PhotoDataModule, args=argv, run=False, **kwargs)
    cli.run()
    return 0
