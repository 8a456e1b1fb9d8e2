"""The zero-shot baseline of an ablation: CLIP's per-frame class probabilities, no training, on each cell's test split.

A store extracted with the ``clip_zeroshot`` extractor holds, per frame, probabilities over the source's classes in
its vocabulary order (``meta.json`` ``class_names``). A clip's prediction is the argmax of the mean probability over
its valid frames; UAR (macro recall) and WAR (accuracy) are computed with the same torchmetrics classes as the
trained model's ``test/uar`` and ``test/war``, on the same test clips: for every (fold, seed) of the grid the
FeatureDataModule is built from the same fit arguments, so the split is the cells' split (splits never depend on
the modalities). A clip without any valid frame gets the uniform distribution (its argmax: the first class) and is
counted in ``no_valid_frame``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class ZeroShotScore:
    """Zero-shot UAR/WAR of one (fold, seed) test split."""

    fold: int
    seed: int
    n_test: int
    no_valid_frame: int
    uar: float
    war: float


def clip_probabilities(store: Any, clip_ids: Sequence[str], num_classes: int) -> tuple[np.ndarray, int]:
    """``[N, C]`` float64 mean per-frame probabilities over valid frames; and how many clips had no valid frame."""
    out = np.full((len(clip_ids), num_classes), 1.0 / num_classes)
    empty = 0
    for i, cid in enumerate(clip_ids):
        feats, valid = store.clip(cid)
        if feats.shape[1] != num_classes:
            raise ValueError(f"zero-shot store {store.path}: {feats.shape[1]} columns, expected {num_classes} classes")
        if valid.any():
            out[i] = feats[valid].astype(np.float64).mean(axis=0)
        else:
            empty += 1
    return out, empty


def uar_war(probs: np.ndarray, labels: Sequence[int], num_classes: int) -> tuple[float, float]:
    """UAR (macro recall) and WAR (accuracy) of ``argmax(probs)``, as ``FERLitModule`` computes its test metrics."""
    from torchmetrics.classification import MulticlassAccuracy, MulticlassRecall

    p, y = torch.as_tensor(probs, dtype=torch.float32), torch.as_tensor(list(labels), dtype=torch.long)
    uar = MulticlassRecall(num_classes, average="macro")(p, y)
    war = MulticlassAccuracy(num_classes, average="micro")(p, y)
    return float(uar), float(war)


def check_class_order(store_meta: dict[str, Any], class_names: Sequence[str], where: Any) -> None:
    """The store's probability columns must be the data module's classes in the same order: else refuse."""
    stored = list(store_meta.get("class_names") or [])
    if stored != list(class_names):
        raise ValueError(f"zero-shot store {where}: class_names {stored} do not match the data's vocabulary "
                         f"{list(class_names)} (order included); re-extract it for this source")


def score_split(dm: Any, modality: str, fold: int, seed: int) -> ZeroShotScore:
    """Zero-shot UAR/WAR of ``dm``'s test split from its store ``modality`` (a FeatureDataModule key)."""
    store = dm.stores[modality]
    check_class_order(store.meta, dm.class_names, dm.store_paths[modality])
    ids = dm.split_ids["test"]
    probs, empty = clip_probabilities(store, ids, dm.num_classes)
    uar, war = uar_war(probs, [dm.labels[c] for c in ids], dm.num_classes)
    return ZeroShotScore(fold, seed, len(ids), empty, uar, war)


def evaluate(modality: str, fit_args: list[str], folds: Sequence[int | None], seeds: Sequence[int],
             seed_args: Sequence[str]) -> dict[str, Any]:
    """The zero-shot baseline over the grid's (fold, seed) splits; ``fit_args`` are the cells' base + overrides.

    Returns ``{"modality", "store", "n", "uar_mean", "uar_std", "war_mean", "war_std", "runs": [...]}`` (std:
    sample std, ddof 1, NaN for one run). Raises ``StoreError`` (no such store), ``ValueError`` (class order).
    """
    from datamodules.feature_datamodule import FeatureDataModule
    from fer_zoo.training.cli import instantiate_spec, parse_fit_config

    runs, store = [], None
    for fold in folds:
        for seed in seeds:
            extra = [f"--data.modalities={json.dumps([modality])}", *(f"{flag}={seed}" for flag in seed_args)]
            if fold is not None:
                extra.append(f"--data.fold={fold}")
            cfg = parse_fit_config([*fit_args, *extra])
            data = cfg.data.as_dict()
            data["source"] = instantiate_spec(cfg.data.source)
            dm = FeatureDataModule(**data)
            key = next(iter(dm.stores))
            store = str(dm.store_paths[key])
            runs.append(score_split(dm, key, 0 if fold is None else fold, seed))
    out: dict[str, Any] = {"modality": modality, "store": store, "n": len(runs), "runs": [asdict(r) for r in runs]}
    for k in ("uar", "war"):
        vals = np.array([getattr(r, k) for r in runs], dtype=float)
        out[f"{k}_mean"] = float(vals.mean()) if len(vals) else math.nan
        out[f"{k}_std"] = float(vals.std(ddof=1)) if len(vals) > 1 else math.nan
    return out


def label(zs: dict[str, Any]) -> str:
    return f"zero-shot {zs['modality']} (no training)"


def add_to_table(table: Any, zs: dict[str, Any]) -> Any:
    """The summary table with the zero-shot baseline appended as one unranked row (``rank`` 0, ``n_modalities`` 0);
    columns the baseline has no value for stay NaN. An errored baseline adds nothing."""
    import pandas as pd

    if "error" in zs:
        return table
    row = {c: math.nan for c in table.columns}
    row.update({"rank": 0, "modalities": label(zs), "n_modalities": 0, "n": zs["n"], "n_failed": 0, "n_start": 0,
                **{k: zs[k] for k in ("uar_mean", "uar_std", "war_mean", "war_std")}})
    out = pd.concat([table, pd.DataFrame([row])], ignore_index=True)
    out.attrs = dict(table.attrs)
    return out


def _pct(mean: float, std: float) -> str:
    if not math.isfinite(mean):
        return "–"
    return f"{100 * mean:.1f} ± {100 * std:.1f}" if math.isfinite(std) else f"{100 * mean:.1f}"


def add_to_markdown(text: str, zs: dict[str, Any]) -> str:
    """``text`` (the summary Markdown) with the baseline as a row under the first table, filling the columns named
    ``modalities``, ``n``, ``UAR %`` and ``WAR %`` (whatever other columns the table has), plus a note under it."""
    lines = text.split("\n")
    head = next((i for i, ln in enumerate(lines) if ln.startswith("| ") and "UAR %" in ln), None)
    if head is None:
        return text
    end = head + 2
    while end < len(lines) and lines[end].startswith("|"):
        end += 1
    if "error" in zs:
        note = f"Zero-shot baseline `{zs['modality']}`: not computed ({zs['error']})."
        return "\n".join([*lines[:end], "", note, *lines[end:]])
    cols = [c.strip() for c in lines[head].strip().strip("|").split("|")]
    values = {"rank": "–", "modalities": label(zs), "n": str(zs["n"]), "UAR %": _pct(zs["uar_mean"], zs["uar_std"]),
              "WAR %": _pct(zs["war_mean"], zs["war_std"])}
    row = "| " + " | ".join(values.get(c, "") for c in cols) + " |"
    empty = sum(r["no_valid_frame"] for r in zs["runs"])
    note = (f"Zero-shot: CLIP per-frame class probabilities from store `{zs['store']}`, averaged over each clip's "
            f"valid frames, argmax; no training; same test splits (every fold x seed of the grid)"
            + (f"; {empty} test clip(s) without a valid frame counted as the first class" if empty else "") + ".")
    return "\n".join([*lines[:end], row, "", note, *lines[end:]])
