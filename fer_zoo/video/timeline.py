"""The timeline PNG of ``predict-video``: per person, its answers second by second.

Panels per person (tracked face), on the video's time axis: a line per class (the mean probability of the person's
frames in each second) with a strip of each second's top class; for a per-frame (dense) model also valence and
arousal in [-1, 1] and action-unit activations; hatched grey where the person is on screen in no frame of that
second (before, between and after their segments). Built on an Agg canvas through
matplotlib's object API (no pyplot), like :mod:`fer_zoo.plots`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.transforms import blended_transform_factory

from fer_zoo.plots import save_figure

NO_FACE_STYLE = {"facecolor": "0.85", "edgecolor": "0.55", "hatch": "//", "linewidth": 0.0}
MAX_PEOPLE = 8  # panels drawn; more people are listed in the subtitle


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def plot_people(points: dict[int, list[dict[str, Any]]], layout: Any, duration: float, path: str | Path,
                title: str = "", subtitle: str = "") -> Path:
    """``points``: per person, in time order, one dict per frame or per second: ``t0``, ``t1`` (the span it covers,
    seconds), ``valid`` (the person's face was seen in it), ``mean`` (the output vector in ``layout``'s column order,
    or None without an answer); ``layout``: a :class:`fer_zoo.perframe.outputs.OutputLayout`. Per person: class
    probabilities (and a top-class strip), valence/arousal in [-1, 1], action-unit activations, each in its own
    panel; hatched where the person's face is not seen. Persons in id order, at most :data:`MAX_PEOPLE`."""
    groups = [(kind, list(names)) for kind, names in (("classes", layout.classes), ("values", layout.values),
                                                       ("activations", layout.activations)) if names]
    people = sorted(points)[:MAX_PEOPLE]
    xmax = max(duration, 1.0)
    n = max(1, len(people))
    ratios = [r for kind, _ in groups for r in ([5, 1] if kind == "classes" else [4])]
    fig = Figure(figsize=(13, 1.2 + 0.55 * sum(ratios) * n), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(ratios) * n, 1, sharex=True, height_ratios=ratios * n, squeeze=False)[:, 0]
    legends: dict[str, list[Any]] = {}
    for i in range(n):
        row = list(axes[i * len(ratios):(i + 1) * len(ratios)])
        if not people:
            row[0].text(0.5, 0.5, "no face found: no prediction", transform=row[0].transAxes, ha="center",
                        va="center", fontsize=14, color="0.25")
            for ax in row:
                ax.axvspan(0, xmax, zorder=0, **NO_FACE_STYLE)
                ax.set_yticks([])
            break
        pid = people[i]
        rows = points[pid]
        t0 = np.array([r["t0"] for r in rows], np.float64)
        t1 = np.array([r["t1"] for r in rows], np.float64)
        mid = (t0 + t1) / 2
        vecs = np.array([r["mean"] if r["mean"] is not None else [np.nan] * layout.width for r in rows],
                        np.float64).reshape(len(rows), layout.width)
        absent = _absent_spans(t0, t1, np.array([bool(r["valid"]) for r in rows]), xmax)
        marker = 2.5 if len(rows) <= 300 else 0
        start = 0
        for kind, names in groups:
            block = vecs[:, start:start + len(names)]
            start += len(names)
            ax = row.pop(0)
            ax.set_xlim(0.0, xmax)
            ax.set_ylim(*((-1.05, 1.05) if kind == "values" else (0.0, 1.0)))
            ax.grid(True, axis="y", alpha=0.3)
            colors = _colors(len(names))
            finite = np.isfinite(block).all(axis=1)
            order = np.argsort(-(block[finite].mean(axis=0) if finite.any() else np.zeros(len(names))),
                               kind="stable") if kind != "values" else range(len(names))
            for k in order:
                ax.plot(mid, block[:, k], color=colors[k], linewidth=1.8 if kind == "classes" else 1.4,
                        marker="o", markersize=marker, label=names[k], zorder=3)
            if kind == "classes":
                ax.axhline(1.0 / len(names), color="0.4", linestyle=":", linewidth=1.0, zorder=2,
                           label=f"chance (1/{len(names)})")
            if kind == "values":
                ax.axhline(0.0, color="0.4", linewidth=0.8, zorder=2)
            ax.set_ylabel(f"person {pid}\n" + {"classes": "probability", "values": "value",
                                                "activations": "activation"}[kind])
            strip = row.pop(0) if kind == "classes" else None
            for ax_ in (ax, strip) if strip is not None else (ax,):
                for a, b in absent:  # the person's face is not seen: before, between and after their segments
                    ax_.axvspan(a, b, zorder=2 if ax_ is strip else 0, **NO_FACE_STYLE)
            if strip is not None:
                strip.set_yticks([])
                top = np.where(finite, np.argmax(np.nan_to_num(block, nan=-1.0), axis=1), -1)
                for a, b, k in _runs(t0, t1, top):
                    if k >= 0:
                        strip.axvspan(a, b, color=colors[k], alpha=0.85, linewidth=0, zorder=1)
                        if (b - a) / xmax >= 0.06:
                            strip.text((a + b) / 2, 0.5, names[k], ha="center", va="center", fontsize=9,
                                       color="white", fontweight="bold", zorder=3,
                                       transform=blended_transform_factory(strip.transData, strip.transAxes))
                strip.set_ylabel("top\nclass", rotation=0, ha="right", va="center", fontsize=9)
            if kind not in legends:
                legends[kind] = ax.get_legend_handles_labels()[0]
    axes[-1].set_xlabel("time (s)")
    handles = [h for hs in legends.values() for h in hs] + [Patch(label="person not on screen", **NO_FACE_STYLE)]
    fig.legend(handles=handles, loc="outside right upper", frameon=False, fontsize=8)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    if subtitle or len(points) > MAX_PEOPLE:
        extra = f"; {len(points) - MAX_PEOPLE} more people in the CSV" if len(points) > MAX_PEOPLE else ""
        axes[0].set_title(subtitle + extra, fontsize=9, color="0.3")
    return save_figure(fig, path)


def _runs(t0: np.ndarray, t1: np.ndarray, key: np.ndarray) -> list[tuple[float, float, int]]:
    """``(start, end, key)`` of runs of equal ``key`` over contiguous spans ``[t0, t1)``."""
    out: list[tuple[float, float, int]] = []
    for a, b, k in zip(t0, t1, key):
        if out and out[-1][2] == int(k) and abs(out[-1][1] - a) < 1e-6:
            out[-1] = (out[-1][0], float(b), int(k))
        else:
            out.append((float(a), float(b), int(k)))
    return out


def _absent_spans(t0: np.ndarray, t1: np.ndarray, valid: np.ndarray, xmax: float) -> list[tuple[float, float]]:
    """Spans of ``[0, xmax]`` not covered by a point where the face was seen."""
    spans, cur = [], 0.0
    for a, b in sorted((float(a), float(b)) for a, b, v in zip(t0, t1, valid) if v):
        if a > cur + 1e-6:
            spans.append((cur, a))
        cur = max(cur, b)
    if cur < xmax - 1e-6:
        spans.append((cur, xmax))
    return spans
