"""What an ablation scores, per task kind: which ``results.json`` metrics make a cell finished, which ones the table
summarises, where each baseline's value sits, and how the numbers and their names are written.

- ``clip`` (DFEW-style, one label per clip): ranked by test UAR (macro recall), beside it WAR (accuracy); cells also
  keep macro F1. Baselines from ``results.json`` ``baselines``: ``probe`` (logistic regression on clip statistics)
  and ``majority`` (the majority class), each ``{"metrics": {"test/uar": ...}}``. Values in percent.
- ``dense`` (ABAW on Aff-Wild2, one answer per frame; :mod:`fer_zoo.dense`): ranked by ``test/score``, the mean over
  the configured tasks of each task's official ABAW metric (EXPR: macro F1 over the 8 classes, ``expr_f1``; VA:
  Lin's CCC, mean of valence and arousal, ``va_ccc``; AU: mean F1 over the AUs with labels at threshold 0.5,
  ``au_f1_labeled``; the main metrics of ``fer_zoo.dense.lit_module.MAIN_METRIC``), beside it each task's metric.
  Baselines from ``results.json`` ``baselines[task]`` (:func:`fer_zoo.dense.cli._baselines`): ``probe`` (the
  per-frame linear probe) and ``prior``: ``majority`` for EXPR and AU, ``mean`` for VA (a constant has CCC 0). A
  baseline's ``score`` is put on the model's scale the way the model's is: the mean over the same tasks of its main
  metrics (NaN when one of them is missing). Values as they are (F1 and CCC, 3 decimals), gains in the same units.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

TASK_KINDS = ("clip", "dense")
DENSE_TASKS = ("EXPR", "VA", "AU")
#: The dense baseline ``prior`` as ``results.json`` names it per task.
DENSE_PRIOR = {"EXPR": "majority", "VA": "mean", "AU": "majority"}
DENSE_PRIOR_LABEL = {"EXPR": "majority class", "VA": "training mean", "AU": "majority per AU"}


@dataclass(frozen=True)
class Metric:
    """One scored number. ``key``: column stem in cells.csv / summary.csv (``uar``, ``score``, ``expr_f1``);
    ``name``: its key in ``results.json`` ``metrics`` (``test/uar``); ``label``: its name in sentences and titles;
    ``short``: in progress lines; ``column``: the Markdown column head. Dense only: ``task``, the ABAW task whose
    baselines hold it (None: the mean over the grid's tasks, i.e. the score) and ``field``, its field in a
    baseline's ``score`` record (``ExprScore``/``VAScore``/``AUScore`` of :mod:`fer_zoo.dense.metrics`)."""

    key: str
    name: str
    label: str
    short: str
    column: str
    task: str | None = None
    field: str | None = None


#: Per dense task, its metrics in results.json, the main one (the one in ``test/score``) first.
DENSE_METRICS: dict[str, tuple[Metric, ...]] = {
    "EXPR": (Metric("expr_f1", "test/expr_f1", "EXPR macro F1", "EXPR F1", "EXPR macro F1", "EXPR", "f1"),),
    "VA": (Metric("va_ccc", "test/va_ccc", "VA CCC", "VA CCC", "VA CCC", "VA", "ccc"),
           Metric("valence_ccc", "test/valence_ccc", "valence CCC", "V CCC", "valence CCC", "VA", "valence"),
           Metric("arousal_ccc", "test/arousal_ccc", "arousal CCC", "A CCC", "arousal CCC", "VA", "arousal")),
    "AU": (Metric("au_f1_labeled", "test/au_f1_labeled", "AU F1 (AUs with labels)", "AU F1", "AU F1", "AU",
                  "f1_labeled"),
           Metric("au_f1", "test/au_f1", "AU F1 (official, all 12 AUs)", "AU F1 (12)", "AU F1 (12 AUs)", "AU", "f1")),
}


def _num(x: Any) -> float:
    """A results.json number as float; None (a NaN written as JSON null) and anything unreadable -> NaN."""
    try:
        return float(x) if x is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


@dataclass(frozen=True)
class Scoring:
    """What a grid of one task kind scores (see the module docstring).

    ``main``: the ranking metric; ``table``: the metrics summarised per modality set (main first); ``cells``: the
    metrics of cells.csv (table ones first); ``baselines``: baseline names, probe first; ``prior_label``: the
    prior's row in the table; ``scale``/``decimals``/``unit``/``gain_unit``: how a value (``scale`` x value, e.g.
    100 for percent) and a difference are written; ``probe_name``: the probe in sentences; ``tasks``: the dense
    tasks (empty for clip)."""

    task: str
    tasks: tuple[str, ...]
    main: Metric
    table: tuple[Metric, ...]
    cells: tuple[Metric, ...]
    baselines: tuple[str, ...]
    prior_label: str
    scale: float
    decimals: int
    unit: str
    gain_unit: str
    probe_name: str

    @property
    def prior(self) -> str:
        """The baseline that predicts without features (``majority`` / ``prior``)."""
        return self.baselines[-1]

    @property
    def required(self) -> tuple[str, ...]:
        """The results.json metrics that must be finite for a cell to count as finished."""
        if self.task == "clip":
            return ("test/uar", "test/war")
        return (self.main.name, *(DENSE_METRICS[t][0].name for t in self.tasks))

    # -- reading results.json -------------------------------------------------------------------------------------

    def problem(self, res: Any) -> str | None:
        """Why ``res`` (a parsed results.json) is not a finished cell of this grid, or None when it is."""
        if not isinstance(res, dict) or not isinstance(res.get("metrics"), dict):
            return "results.json holds no metrics"
        kind = res.get("task", "clip")
        if kind != self.task:
            return f"results.json is a {kind!r} run, the grid scores the {self.task!r} task"
        if self.task == "dense" and tuple(res.get("tasks") or ()) != self.tasks:
            return (f"results.json scored tasks {list(res.get('tasks') or [])}, the grid scores {list(self.tasks)} "
                    "(another base config?)")
        for name in self.required:
            if name not in res["metrics"]:
                return f"results.json has no {name}"
            if not math.isfinite(_num(res["metrics"][name])):
                value = res["metrics"][name]
                return f"results.json {name} is {'NaN' if value is None else value} (not a finite number)"
        return None

    def value(self, res: dict[str, Any], metric: Metric) -> float:
        """The model's ``metric`` in ``res`` (NaN when absent or null)."""
        return _num(res["metrics"].get(metric.name))

    def baseline(self, res: dict[str, Any], baseline: str, metric: Metric) -> float:
        """Baseline ``baseline``'s ``metric`` in ``res`` (NaN when the run has none, e.g. its baselines failed)."""
        base = res.get("baselines") or {}
        if self.task == "clip":
            return _num(((base.get(baseline) or {}).get("metrics") or {}).get(metric.name))
        if metric.task is None:  # the score: the mean of the tasks' main metrics, as the model's test/score
            vals = [self.baseline(res, baseline, DENSE_METRICS[t][0]) for t in self.tasks]
            return float(sum(vals) / len(vals)) if vals and all(math.isfinite(v) for v in vals) else math.nan
        name = DENSE_PRIOR[metric.task] if baseline == "prior" else baseline
        record = (base.get(metric.task) or {}).get(name) or {}
        score = record.get("score") or {}
        return _num(score[metric.field] if metric.field in score else record.get(metric.key))

    def baseline_error(self, res: dict[str, Any]) -> str | None:
        """The reason a run's baselines are missing, when results.json gives one."""
        base = res.get("baselines")
        if isinstance(base, dict) and "error" in base:
            return str(base["error"])
        return None

    # -- writing ---------------------------------------------------------------------------------------------------

    def fmt(self, mean: float, std: float) -> str:
        """``mean ± std`` on the display scale; ``–`` without a mean, the mean alone without a std."""
        if not math.isfinite(mean):
            return "–"
        d, s = self.decimals, self.scale
        return f"{s * mean:.{d}f} ± {s * std:.{d}f}" if math.isfinite(std) else f"{s * mean:.{d}f}"

    def gain(self, x: float) -> str:
        """A signed difference on the display scale (``+7.5`` points, ``+0.034``); ``–`` when undefined."""
        return f"{self.scale * x:+.{self.decimals}f}" if math.isfinite(x) else "–"

    def probe_column(self, metric: Metric) -> str:
        """The Markdown column head of the probe's ``metric`` (``probe UAR %``, ``probe score``)."""
        return f"probe {metric.column if self.task == 'clip' else metric.short}"

    def spread(self, sp: float) -> str:
        return f"{self.scale * sp:.{self.decimals}f}{self.gain_unit}"

    def progress(self, metrics: Mapping[str, Any]) -> str:
        """A finished cell's metrics in its progress line: ``UAR 0.512  WAR 0.600``, ``score 0.412  EXPR F1 0.412``."""
        return "  ".join(f"{m.short} {_num(metrics.get(m.name)):.3f}" for m in self.table)


UAR = Metric("uar", "test/uar", "UAR", "UAR", "UAR %")
WAR = Metric("war", "test/war", "WAR", "WAR", "WAR %")
F1 = Metric("f1", "test/f1", "macro F1", "F1", "F1 %")
CLIP = Scoring(task="clip", tasks=(), main=UAR, table=(UAR, WAR), cells=(UAR, WAR, F1),
               baselines=("probe", "majority"), prior_label="majority class", scale=100.0, decimals=1, unit=" %",
               gain_unit=" points", probe_name="linear probe")


def dense(tasks: Sequence[str]) -> Scoring:
    """The scoring of a dense grid over ``tasks`` (ABAW tracks, in the order results.json lists them). Raises
    ``ValueError`` for an empty list, a repeat or a task that is not one of EXPR, VA, AU."""
    tasks = tuple(tasks)
    bad = [t for t in tasks if t not in DENSE_TASKS]
    if not tasks or bad or len(set(tasks)) != len(tasks):
        raise ValueError(f"dense tasks must be a non-empty list of distinct {list(DENSE_TASKS)}, got {list(tasks)}")
    of = ", ".join(DENSE_METRICS[t][0].label for t in tasks)
    main = Metric("score", "test/score", f"ABAW score (mean of {of})", "score", f"ABAW score (mean of {of})")
    prior = (DENSE_PRIOR_LABEL[tasks[0]] if len(tasks) == 1 else
             "prior (" + ", ".join(f"{t}: {DENSE_PRIOR_LABEL[t]}" for t in tasks) + ")")
    return Scoring(task="dense", tasks=tasks, main=main, table=(main, *(DENSE_METRICS[t][0] for t in tasks)),
                   cells=(main, *(m for t in tasks for m in DENSE_METRICS[t])), baselines=("probe", "prior"),
                   prior_label=prior, scale=1.0, decimals=3, unit="", gain_unit="",
                   probe_name="per-frame linear probe")


def for_task(task: str, tasks: Sequence[str] | None = None) -> Scoring:
    """The scoring of a grid whose cells run ``task`` (``clip`` or ``dense``; dense needs its ``tasks``)."""
    if task == "clip":
        return CLIP
    if task == "dense":
        return dense(tasks or ())
    raise ValueError(f"task {task!r} is not one of {list(TASK_KINDS)}")
