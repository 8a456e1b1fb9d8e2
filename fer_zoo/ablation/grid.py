"""``python -m fer_zoo ablate --config configs/ablation.yaml``: a grid of modality sets x folds x seeds, one
fit+test run per cell, one W&B group per grid, and a summary table + bar chart (``make ablate`` runs this).

What it does
------------
Every cell of ``modality_sets x folds x seeds`` is one ``python -m fer_zoo fit`` in its own process (a crash or a
memory leak stays inside its cell), run as::

    <python> -m fer_zoo fit --config <base...> <overrides...> --data.modalities=[...] [--data.fold=K]
        --seed_everything=S --data.seed=S --runs_dir=<runs_dir> --run_name=<name>/<mods>-fold<K>-seed<S>
        --wandb_group=<name> --wandb_tags=[seed<S>,ablation:<name>] ...

so each cell gets the usual run folder ``<runs_dir>/<name>/<mods>-fold<K>-seed<S>/`` (config.yaml, metrics.csv,
results.json, checkpoints/, ``wandb/offline-run-*``) and its full log next to it, ``<cell folder>.log``.
``<mods>`` is the modality set sorted and joined with "+" (``pose+resnet``), the same string the training CLI puts in
every W&B run's config under ``modalities``, so folders, table rows and dashboard groups match.

- folds: ``folds: null`` runs every fold of the source's protocol (DFEW/MAFW: 1..5). A source without folds (the
  bundled image folder, FERV39K, a manifest) has one "fold", reported as fold 0: its seeded split.
- seeds: each seed is passed to every flag in ``seed_args`` (default ``--seed_everything`` and ``--data.seed``), so
  on a source without folds each seed is also a different seeded train/val/test split (repeated random splits);
  on a k-fold source the test folds stay fixed and the seed moves initialisation, sampling and the validation carve.
  Within one (fold, seed) every modality set trains and tests on the same clips (the split never depends on the
  modalities), so the comparison between rows is paired.
- everything else comes from ``base`` (fit config files) and ``overrides`` (LightningCLI arguments for the whole
  grid, e.g. ``--trainer.max_epochs=5``); arguments after ``--`` on the command line are appended to the overrides,
  and ``env`` sets environment variables of every cell (the sample config sets ``OMP_NUM_THREADS=1``: on a small
  shared CPU one torch thread per cell is ~3x faster than two)::

      python -m fer_zoo ablate --config configs/ablation.yaml --seeds=[1,2,3] -- --data.store_root=/data/feats
      python -m fer_zoo ablate --config configs/ablation.yaml --dry_run=true      # the grid and its commands
      python -m fer_zoo ablate --config configs/ablation.yaml --summary_only=true # re-summarise, run nothing

  The base configs and overrides are parsed once by FERCLI before the first cell, so a typo stops the grid at once.

- resumable: a cell whose folder holds a results.json with test metrics is skipped; a folder without one (a crash,
  a kill) is deleted and the cell rerun from scratch; a failing cell (non-zero exit) is recorded with the tail of
  its log and the grid goes on. The exit status is 0 when every cell has results, 3 when some failed, 2 for a bad
  ablation config, 130 when interrupted (rerun the same command to resume). ``--force=true`` reruns every cell.
  A skipped cell whose recorded arguments differ from today's (changed overrides) is flagged "stale" (its results
  are still used: rerun with ``--force=true``, or under a new ``name``). One ablate process per folder (a lock).
- output, in ``<runs_dir>/<name>/``: ``commands.txt`` (the exact fit command of every cell), ``cells.csv`` (one row
  per cell: status, UAR/WAR/F1 read from its results.json, elapsed, folder, log), ``summary.csv``/``summary.md``
  (one row per modality set: n, mean and std of UAR and WAR over folds x seeds, gain in mean UAR over the best
  single modality, ranked by mean UAR) and ``summary.png`` (bars with std error bars), also logged to a summary
  W&B run (``job_type="summary"``) in the same group. See :mod:`fer_zoo.ablation.report`.

The dense (per-frame, ABAW) task
--------------------------------
A base config with ``task: dense`` (``configs/abaw_*.yaml``; ``configs/ablation_abaw.yaml`` is a grid over them)
makes every cell a dense ``fit``, and the grid scores what its results.json holds (:mod:`fer_zoo.ablation.scoring`):
``test/score`` (the mean of the configured tasks' official ABAW metrics) and each task's metric (``test/expr_f1``,
``test/va_ccc``, ``test/au_f1_labeled``; cells.csv also V and A CCC and the official 12-AU F1) in place of UAR and
WAR, the per-frame linear probe and the prior (majority class / training mean) in place of the clip probe and the
majority class. A cell is finished when its results.json is a dense run of the same tasks with a finite
``test/score`` and task metrics; one that finished with other tasks (another base config under the same ``name``)
or a NaN metric is recorded as failed with the reason and its folder kept (``--force=true`` reruns it). Folds: a
source's ``n_folds`` (``--data.source.init_args.n_folds=5``) gives folds 1..n; without it the one "fold 0" is
ABAW's official split (Validation_Set as test). The zero-shot row (``zero_shot``) scores a class per clip: a dense
grid skips it with a message.

Dashboard (W&B)
---------------
Runs are offline unless ``WANDB_MODE=online`` is set. To look at them in the W&B web UI, upload every cell and the
summary run, then open the project::

    wandb sync runs/<name>/*/wandb/offline-run-* runs/<name>/wandb/offline-run-*
    # -> https://wandb.ai/<entity>/fer_zoo  (project: wandb_project in the ablation config)

In the project's Runs table: filter ``Group = <name>`` (or click the group), then "Group" -> ``modalities`` (a
config key of every cell run); W&B then shows, per modality set, the mean (and min/max) of ``test/uar`` and
``test/war`` over its folds and seeds, and line panels of ``val/uar`` get one averaged curve per modality set.
Tags ``resnet``, ``pose``, ``fold3``, ``seed2`` filter further; ``job_type`` is ``fit`` for the cells (each fit
tests its selected checkpoint in the same run) and ``summary`` for the run holding the table and the chart.
Without uploading: ``wandb leet runs/<name>/<cell>/wandb`` browses a cell's offline run in the terminal.

Reproducing one cell of the table
---------------------------------
Copy its line from ``<runs_dir>/<name>/commands.txt`` (also printed when the cell starts) and change
``--runs_dir`` (or ``--run_name``) so the original folder is left alone; with the same seed the datamodule builds the
same split. The test metrics it prints are the cell's values in ``cells.csv``; the table row is their mean and std.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import math
import os
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from fer_zoo.ablation.scoring import CLIP, Scoring, for_task

EXIT_OK, EXIT_BAD_CONFIG, EXIT_SOME_FAILED, EXIT_INTERRUPTED = 0, 2, 3, 130
LOG_TAIL_LINES = 40
CELL_RECORD = "ablation_cell.json"  # written into a cell's run folder once it has finished well


# ------------------------------------------------------------------------------------------------------------ grid


def modality_label(modalities: Sequence[str]) -> str:
    """``["resnet", "pose"] -> "pose+resnet"``: sorted heads (a ``name/<extractor-hash>`` store pin drops its tail),
    exactly what ``fer_zoo.training.cli`` writes into each W&B run's ``config["modalities"]``."""
    return "+".join(sorted(m.split("/")[0] for m in modalities))


def all_subsets(modalities: Sequence[str]) -> list[list[str]]:
    """Every non-empty subset, singles first, each in the order of ``modalities``."""
    return [list(c) for r in range(1, len(modalities) + 1) for c in itertools.combinations(modalities, r)]


@dataclass(frozen=True)
class Cell:
    """One fit+test run of the grid."""

    modalities: tuple[str, ...]  # as passed to --data.modalities
    fold: int | None  # None: a source without folds (its seeded split, reported as fold 0)
    seed: int

    @property
    def label(self) -> str:
        return modality_label(self.modalities)

    @property
    def fold_index(self) -> int:
        return 0 if self.fold is None else self.fold

    @property
    def name(self) -> str:
        return f"{self.label}-fold{self.fold_index}-seed{self.seed}"


@dataclass(frozen=True)
class Protocol:
    """What the base configs + overrides resolve to: the data set, its folds, where its stores are, and the task
    the cells train (``clip``, or ``dense`` with its ABAW ``tasks``): what the summary scores."""

    dataset: str
    folds: list[int]
    fold_override: int | None
    store_root: str
    task: str = "clip"
    tasks: tuple[str, ...] = ()

    @property
    def scoring(self) -> Scoring:
        """What the grid's cells are scored on (:mod:`fer_zoo.ablation.scoring`)."""
        return for_task(self.task, self.tasks)


def build_cells(modality_sets: Sequence[Sequence[str]], folds: Sequence[int | None],
                seeds: Sequence[int]) -> list[Cell]:
    """Folds outermost, modality sets innermost: a grid stopped halfway still compares every set on the same splits."""
    return [Cell(tuple(mods), fold, seed) for fold in folds for seed in seeds for mods in modality_sets]


# ---------------------------------------------------------------------------------------------------------- config


def build_parser() -> ArgumentParser:
    p = ArgumentParser(prog="python -m fer_zoo ablate", description=__doc__.split("\n\n")[0], default_env=False,
                       exit_on_error=False, allow_abbrev=False)
    p.add_argument("--config", action=ActionConfigFile, help="ablation YAML (see configs/ablation.yaml)")
    p.add_argument("--name", type=str, required=True, help="ablation name: W&B group and folder <runs_dir>/<name>")
    p.add_argument("--runs_dir", type=str, default="runs")
    p.add_argument("--base", type=list[str], default=[], help="fit config files, passed as --config in this order")
    p.add_argument("--overrides", type=list[str], default=[],
                   help="LightningCLI arguments for every cell, e.g. --trainer.max_epochs=5")
    p.add_argument("--modalities", type=list[str], default=["resnet", "pose", "facemesh"],
                   help="modalities whose non-empty subsets form the grid when modality_sets is null")
    p.add_argument("--optional_modalities", type=list[str], default=[],
                   help="added to `modalities` when a finished store of theirs exists under the data's store root "
                        "(e.g. [audio]: only audio-visual data sets have one); ignored with modality_sets")
    p.add_argument("--modality_sets", type=list[list[str]] | None, default=None, help="explicit modality sets")
    p.add_argument("--folds", type=list[int] | None, default=None,
                   help="null: every fold of the source (one 'fold 0' for a source without folds)")
    p.add_argument("--seeds", type=list[int], default=[42], help="repeats per (modality set, fold)")
    p.add_argument("--seed_args", type=list[str], default=["--seed_everything", "--data.seed"],
                   help="fit flags that receive each cell's seed")
    p.add_argument("--wandb", type=bool, default=True, help="W&B runs (offline unless WANDB_MODE=online)")
    p.add_argument("--wandb_project", type=str, default="fer_zoo")
    p.add_argument("--env", type=dict[str, str], default={},
                   help="environment variables for every cell, e.g. {OMP_NUM_THREADS: '1'}")
    p.add_argument("--timeout_s", type=float | None, default=None, help="a cell running longer is killed (failed)")
    p.add_argument("--force", type=bool, default=False, help="rerun cells that already have results")
    p.add_argument("--dry_run", type=bool, default=False, help="print the grid and commands, run nothing")
    p.add_argument("--summary_only", type=bool, default=False, help="run nothing; summarise the finished cells")
    p.add_argument("--zero_shot", type=str | None, default=None,
                   help="a clip_zeroshot store's modality name: adds its zero-shot baseline (no training) on the "
                        "same test splits to the summary (see fer_zoo/ablation/zero_shot.py)")
    return p


def resolve_protocol(base: list[str], overrides: list[str], first: Cell, seed_args: list[str]) -> Protocol:
    """Parse the first cell's fit arguments (so a typo in base/overrides stops the grid before it starts) and read
    the data set's name and folds off its source, and the task (``task: dense`` configs: their ``data.tasks``)."""
    from fer_zoo.training.cli import instantiate_spec, parse_fit_config

    args = [a for b in base for a in ("--config", b)] + list(overrides)
    cfg = parse_fit_config([*args, f"--data.modalities={json.dumps(list(first.modalities))}",
                          *(f"{flag}={first.seed}" for flag in seed_args)])
    source = instantiate_spec(cfg.data.source)
    where = getattr(source, "root", None)
    dataset = f"{source.name} ({where})" if where else str(source.name)
    task = str(cfg.get("task") or "clip")
    tasks = tuple(cfg.data.get("tasks") or ()) if task == "dense" else ()
    return Protocol(dataset=dataset, folds=list(source.folds), fold_override=cfg.data.fold,
                    store_root=str(cfg.data.store_root), task=task, tasks=tasks)


def has_store(store_root: str, modality: str) -> bool:
    """Whether ``modality`` has exactly one finished store under ``store_root`` (what ``fit`` would open)."""
    from datamodules.feature_store import StoreError, find_store

    try:
        find_store(store_root, modality)
    except StoreError:
        return False
    return True


def grid_folds(requested: list[int] | None, protocol: Protocol) -> list[int | None]:
    """The folds to run: requested ones (checked against the protocol), else every fold of the protocol, else
    ``[None]``. A ``data.fold`` that a base config sets (``configs/data/dfew.yaml`` sets fold 1 for a single fit)
    does not shrink ``folds: null`` to that one fold: the grid runs every fold, and :func:`main` says so."""
    if not protocol.folds:
        if requested and any(f != 0 for f in requested):
            raise ValueError(f"{protocol.dataset} has no folds (one seeded split, reported as fold 0), but folds="
                             f"{requested}: leave folds null and repeat with seeds instead")
        return [None]
    if requested is None:
        return list(protocol.folds)
    bad = [f for f in requested if f not in protocol.folds]
    if bad:
        raise ValueError(f"folds {bad} are not folds of {protocol.dataset} (its folds: {protocol.folds})")
    return list(requested)


def cell_command(cell: Cell, cfg: Namespace) -> list[str]:
    """The cell's argv (starting with ``VAR=value`` words for ``cfg.env``, as a shell line would)."""
    cmd = [f"{k}={v}" for k, v in sorted(cfg.env.items())] + [sys.executable, "-m", "fer_zoo", "fit"]
    for file in cfg.base:
        cmd += ["--config", file]
    cmd += list(cfg.overrides)
    cmd.append(f"--data.modalities={json.dumps(list(cell.modalities), separators=(',', ':'))}")
    if cell.fold is not None:
        cmd.append(f"--data.fold={cell.fold}")
    cmd += [f"{flag}={cell.seed}" for flag in cfg.seed_args]
    tags = [f"seed{cell.seed}", f"ablation:{cfg.name}"]
    cmd += [f"--runs_dir={cfg.runs_dir}", f"--run_name={cfg.name}/{cell.name}",
            f"--wandb={'true' if cfg.wandb else 'false'}", f"--wandb_project={cfg.wandb_project}",
            f"--wandb_group={cfg.name}", f"--wandb_tags={json.dumps(tags, separators=(',', ':'))}"]
    return cmd


def split_env(cmd: list[str]) -> tuple[dict[str, str], list[str]]:
    """``["A=1", "python", ...] -> ({"A": "1"}, ["python", ...])``."""
    i = next(i for i, word in enumerate(cmd) if "=" not in word or word.startswith("-"))
    return dict(word.split("=", 1) for word in cmd[:i]), cmd[i:]


def shell_line(cmd: list[str]) -> str:
    """The command as one shell line; the interpreter is shown relative to the working directory when inside it."""
    env, argv = split_env(cmd)
    exe = Path(argv[0])
    with contextlib.suppress(ValueError):
        exe = exe.relative_to(Path.cwd())
    return shlex.join([*(f"{k}={v}" for k, v in env.items()), str(exe), *argv[1:]])


# ------------------------------------------------------------------------------------------------------ cell state


NO_RESULTS = "no results.json with test metrics"


def check_results(run_dir: Path, scoring: Scoring = CLIP) -> tuple[dict[str, Any] | None, str]:
    """(the cell's results.json, "") when it is a finished run of the grid's task: finite ``scoring.required``
    metrics (clip: test UAR and WAR; dense: ``test/score`` and each task's metric, for the grid's tasks), else
    (None, why). The clip task keeps its one reason, "no results.json with test metrics"."""
    try:
        res = json.loads((run_dir / "results.json").read_text())
    except (OSError, ValueError):
        return None, NO_RESULTS
    why = scoring.problem(res)
    if why is None:
        return res, ""
    return None, NO_RESULTS if scoring.task == "clip" else why


def read_results(run_dir: Path, scoring: Scoring = CLIP) -> dict[str, Any] | None:
    """The cell's results.json when it holds the grid's finite test metrics, else None (missing, partial, broken,
    or another task's: see :func:`check_results`)."""
    return check_results(run_dir, scoring)[0]


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _last_error_line(tail: str) -> str:
    """The most telling line of a failed cell's log: the last exception line, else the last line."""
    lines = [ln.strip() for ln in tail.splitlines() if ln.strip()]
    for ln in reversed(lines):
        if "Error" in ln or "Exception" in ln or ln.startswith("error:"):
            return ln[:300]
    return lines[-1][:300] if lines else ""


def run_cell(cmd: list[str], log_path: Path, timeout_s: float | None) -> int:
    """Run one cell with stdout+stderr into ``log_path``; returns the exit status (124 on timeout)."""
    extra, argv = split_env(cmd)
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **extra}
    env.setdefault("WANDB_MODE", "offline")
    with open(log_path, "w") as log:
        log.write(f"$ {shell_line(cmd)}\n\n")
        log.flush()
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env)
        try:
            return proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            log.write(f"\n[ablate] killed after {timeout_s:.0f} s (timeout_s)\n")
            return 124
        except BaseException:  # Ctrl-C: the child got SIGINT too; give it a moment to stop, then make sure
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise


class GridBusy(RuntimeError):
    """Another ablate process holds the ablation folder."""


@contextlib.contextmanager
def grid_lock(abl_dir: Path) -> Iterator[None]:
    """One ablate process per ablation folder: two would delete each other's "crashed" cells."""
    abl_dir.mkdir(parents=True, exist_ok=True)
    lock = abl_dir / ".lock"
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(lock.read_text().strip() or 0)
                os.kill(pid, 0)
            except (ValueError, ProcessLookupError, OSError):
                lock.unlink(missing_ok=True)  # stale: its process is gone
                continue
            raise GridBusy(f"another ablate process (pid {pid}) is running on {abl_dir}; wait for it or, if "
                               f"it is gone, delete {lock}") from None
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        break
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------------------ main


def _fmt_seconds(s: float) -> str:
    return f"{s:.0f}s" if s < 600 else f"{s / 60:.1f}min"


def main(argv: list[str] | None = None) -> int:
    from fer_zoo.cli_errors import split_passthrough

    argv, extra = split_passthrough(argv)
    from fer_zoo.cli_errors import UsageError, parse_args

    parser = build_parser()
    cfg = parse_args(parser, argv, "ablate")
    cfg.overrides = [*cfg.overrides, *extra]
    os.environ.setdefault("WANDB_MODE", "offline")

    modality_sets = [list(s) for s in (cfg.modality_sets or all_subsets(cfg.modalities))]
    if not modality_sets or any(not s for s in modality_sets):
        raise UsageError("every modality set needs at least one modality")
    labels = [modality_label(s) for s in modality_sets]
    if len(set(labels)) != len(labels):
        raise UsageError(f"a modality set is listed twice: {labels}")
    if not cfg.seeds or len(set(cfg.seeds)) != len(cfg.seeds):
        raise UsageError(f"seeds must be a non-empty list without repeats, got {cfg.seeds}")

    try:
        protocol = resolve_protocol(cfg.base, cfg.overrides, Cell(tuple(modality_sets[0]), None, cfg.seeds[0]),
                                    cfg.seed_args)
        folds = grid_folds(cfg.folds, protocol)
    except (ValueError, FileNotFoundError, TypeError, ImportError) as err:
        print(f"ablate: {err}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if cfg.folds is None and protocol.fold_override is not None and protocol.folds:
        print(f"ablate: the base configs set data.fold={protocol.fold_override}; folds: null runs every fold of "
              f"{protocol.dataset} ({protocol.folds}) (folds: [{protocol.fold_override}] runs that one only)")

    if cfg.optional_modalities and not cfg.modality_sets:
        present = [m for m in cfg.optional_modalities if m not in cfg.modalities and has_store(protocol.store_root, m)]
        for m in cfg.optional_modalities:
            print(f"ablate: optional modality {m!r} "
                  f"{'joins the grid' if m in present else 'left out: no finished store under ' + protocol.store_root}")
        modality_sets = [list(s) for s in all_subsets([*cfg.modalities, *present])]

    try:
        scoring = protocol.scoring
    except ValueError as err:
        print(f"ablate: {err}", file=sys.stderr)
        return EXIT_BAD_CONFIG
    if cfg.zero_shot and scoring.task != "clip":
        print(f"ablate: zero_shot={cfg.zero_shot!r} skipped: the zero-shot row scores a class per clip (the clip "
              f"task), this grid trains the {scoring.task} task (per frame)", file=sys.stderr)

    cells = build_cells(modality_sets, folds, cfg.seeds)
    abl_dir = Path(cfg.runs_dir) / cfg.name
    commands = {cell: cell_command(cell, cfg) for cell in cells}
    n = len(cells)
    what = "" if scoring.task == "clip" else f", {scoring.task} task {list(scoring.tasks)}: {scoring.main.label}"
    print(f"ablation {cfg.name!r} on {protocol.dataset}{what}, stores {protocol.store_root}: {n} cells = "
          f"{len(modality_sets)} modality sets x {len(folds)} fold(s) x {len(cfg.seeds)} seed(s); "
          f"folder {abl_dir}/, W&B group {cfg.name!r} ({os.environ['WANDB_MODE']})"
          + ("" if cfg.wandb else " [W&B off]"), flush=True)
    if cfg.dry_run:
        for i, cell in enumerate(cells, 1):
            print(f"[{i}/{n}] {cell.name}\n    $ {shell_line(commands[cell])}")
        return EXIT_OK

    from fer_zoo.ablation import report

    try:
        with grid_lock(abl_dir):
            (abl_dir / "commands.txt").write_text(
                f"# ablation {cfg.name}: one fit+test per cell; run from {Path.cwd()}\n"
                + "".join(f"# [{i}/{n}] {c.name}\n{shell_line(commands[c])}\n" for i, c in enumerate(cells, 1)))
            records, interrupted = _run_grid(cells, commands, abl_dir, cfg, scoring)
            meta = {"name": cfg.name, "dataset": protocol.dataset, "store_root": protocol.store_root,
                    "folds": [0 if f is None else f for f in folds], "seeds": list(cfg.seeds),
                    "modality_sets": labels, "base": list(cfg.base), "overrides": list(cfg.overrides),
                    "wandb_project": cfg.wandb_project, "wandb": cfg.wandb, "task": scoring.task,
                    "tasks": list(scoring.tasks)}
            if cfg.zero_shot and scoring.task == "clip":
                meta["zero_shot"] = _zero_shot(cfg, folds)
            elif cfg.zero_shot:
                meta["zero_shot"] = {"modality": cfg.zero_shot, "error": "the zero-shot row is clip-only (a class "
                                     f"per clip); this grid trains the {scoring.task} task"}
            out = report.write_summary(records, abl_dir, meta, scoring)
    except GridBusy as err:
        print(f"ablate: {err}", file=sys.stderr)
        return EXIT_BAD_CONFIG

    if out.table is not None:
        print("\n" + out.markdown)
    print(f"summary: {out.csv}, {out.md}" + (f", {out.png}" if out.png else "") + f"; cells: {out.cells_csv}")
    if out.wandb_dir:
        print(f"summary W&B run: {out.wandb_dir}  (upload: wandb sync {abl_dir}/*/wandb/offline-run-* "
              f"{abl_dir}/wandb/offline-run-*)")
    failed = [r for r in records if r["status"] == "failed"]
    stale = [r for r in records if r.get("stale")]
    if stale:
        print(f"note: {len(stale)} skipped cell(s) were run with another command than today's (stale): "
              f"{', '.join(r['cell'] for r in stale)}; rerun with --force=true to refresh them")
    if interrupted:
        print("interrupted: rerun the same command to resume (finished cells are skipped)", file=sys.stderr)
        return EXIT_INTERRUPTED
    if failed:
        print(f"{len(failed)} of {n} cells failed (logs: "
              + ", ".join(str(r["log"]) for r in failed) + ")", file=sys.stderr)
        return EXIT_SOME_FAILED
    return EXIT_OK


def _zero_shot(cfg: Namespace, folds: list[int | None]) -> dict[str, Any]:
    """The zero-shot baseline on every (fold, seed) split of the grid, or ``{"error": ...}`` (the cells' results are
    summarised either way)."""
    from fer_zoo.ablation import zero_shot

    fit_args = [a for b in cfg.base for a in ("--config", b)] + list(cfg.overrides)
    try:
        return zero_shot.evaluate(cfg.zero_shot, fit_args, folds, cfg.seeds, cfg.seed_args)
    except Exception as err:  # noqa: BLE001  a missing or mismatched store must not lose the grid's summary
        print(f"ablate: zero-shot baseline {cfg.zero_shot!r} failed: {type(err).__name__}: {err}", file=sys.stderr)
        return {"modality": cfg.zero_shot, "error": f"{type(err).__name__}: {err}"}


def _run_grid(cells: list[Cell], commands: dict[Cell, list[str]], abl_dir: Path, cfg: Namespace,
              scoring: Scoring = CLIP) -> tuple[list[dict[str, Any]], bool]:
    """Run (or skip) every cell in order, printing one line per cell (its ``scoring`` metrics); returns the cell
    records."""
    records: list[dict[str, Any]] = []
    n, width = len(cells), max(len(c.label) for c in cells)
    interrupted = False
    for i, cell in enumerate(cells, 1):
        run_dir, log_path = abl_dir / cell.name, abl_dir / f"{cell.name}.log"
        cmd = commands[cell]
        head = f"[{i:>{len(str(n))}}/{n}] {cell.label:<{width}}  fold {cell.fold_index}  seed {cell.seed:<4}"
        rec: dict[str, Any] = {"cell": cell.name, "modalities": cell.label, "n_modalities": len(cell.modalities),
                               "fold": cell.fold_index, "seed": cell.seed, "status": "", "rc": None,
                               "elapsed_s": float("nan"), "run_dir": str(run_dir), "log": str(log_path),
                               "error": "", "stale": False}
        done, why_not = check_results(run_dir, scoring)
        if done is None and why_not != NO_RESULTS and not cfg.force:
            # A finished run this grid cannot score (dense: other tasks, a NaN metric): kept, never deleted
            rec.update(status="failed", rc=0, error=f"{run_dir / 'results.json'}: {why_not}")
            print(f"{head}  FAILED   {rec['error']}; the folder is kept (--force=true reruns the cell)", flush=True)
            records.append(rec)
            continue
        if cfg.summary_only or (done is not None and not cfg.force):
            if done is None:
                rec.update(status="missing")
                print(f"{head}  missing  (no results.json; --summary_only runs nothing)", flush=True)
            else:
                prev = _read_json(run_dir / CELL_RECORD)
                rec.update(status="skipped", rc=0, elapsed_s=float(prev.get("elapsed_s", float("nan"))),
                           stale=bool(prev) and prev.get("args") != _args_key(cmd))
                took = rec["elapsed_s"]
                print(f"{head}  skipped  {scoring.progress(done['metrics'])}  "
                      f"{_fmt_seconds(took) if math.isfinite(took) else '?'} (earlier run; has results.json"
                      + (", STALE: run with another command" if rec["stale"] else "") + ")", flush=True)
            records.append(rec)
            continue
        if interrupted:
            rec.update(status="missing")
            records.append(rec)
            continue
        if run_dir.exists():  # a crashed, killed, failed or --force'd run: start from scratch
            shutil.rmtree(run_dir)
        print(f"{head}  running  $ {shell_line(cmd)}", flush=True)
        t0 = time.monotonic()
        try:
            rc = run_cell(cmd, log_path, cfg.timeout_s)
        except KeyboardInterrupt:
            rc, interrupted = 130, True
        elapsed = time.monotonic() - t0
        res, why_not = check_results(run_dir, scoring)
        rec.update(rc=rc, elapsed_s=elapsed)
        if rc == 0 and res is not None:
            rec["status"] = "done"
            _write_json(run_dir / CELL_RECORD, {"command": shell_line(cmd), "args": _args_key(cmd),
                                                "elapsed_s": elapsed, "finished": time.strftime("%F %T")})
            print(f"{head}  done     {scoring.progress(res['metrics'])}  {_fmt_seconds(elapsed)}", flush=True)
        else:
            tail = log_tail(log_path)
            why = (f"exit {rc}" if rc != 0 else f"exit 0 but {why_not}") + (
                " (interrupted)" if interrupted else " (timeout)" if rc == 124 else "")
            rec.update(status="missing" if interrupted else "failed", error=f"{why}: {_last_error_line(tail)}")
            word = "STOPPED " if interrupted else "FAILED  "
            print(f"{head}  {word} {why}  {_fmt_seconds(elapsed)}  log: {log_path}", flush=True)
            if not interrupted:
                print("      | " + "\n      | ".join(tail.splitlines()[-8:]), flush=True)
        records.append(rec)
    return records, interrupted


def _args_key(cmd: list[str]) -> str:
    """What makes two runs of a cell the same: its arguments, less the interpreter's path, where the runs folder
    lives and the W&B bookkeeping (none of them changes a result)."""
    env, argv = split_env(cmd)
    keep = [a for a in argv[1:] if not a.startswith(("--runs_dir=", "--wandb"))]
    return shlex.join([*(f"{k}={v}" for k, v in env.items()), *keep])


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _write_json(path: Path, obj: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


if __name__ == "__main__":
    sys.exit(main())
