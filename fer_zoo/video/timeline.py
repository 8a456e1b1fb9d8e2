"""The timeline PNG of ``predict-video``: per person, class probabilities second by second, and the top class.

One row of panels per person (tracked face), on the video's time axis: a line per class (the mean probability of
the person's frames in each second), a strip with each second's top class, and hatched grey where the person is
on screen in no frame of that second (before, between and after their segments). Built on an Agg canvas through
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


def plot_people(seconds: dict[int, list[dict[str, Any]]], class_names: list[str], duration: float, path: str | Path,
                title: str = "", subtitle: str = "") -> Path:
    """``seconds``: per person, its second rows in time order (``second``, ``valid_frames``, ``mean``: the class
    probabilities, or None without an answer). Persons are drawn in id order, at most :data:`MAX_PEOPLE`."""
    colors = _colors(len(class_names))
    people = sorted(seconds)[:MAX_PEOPLE]
    xmax = max(duration, 1.0)
    n = max(1, len(people))
    fig = Figure(figsize=(13, 1.2 + 2.6 * n), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(2 * n, 1, sharex=True, height_ratios=[5, 1] * n, squeeze=False)[:, 0]
    handles: list[Any] = []
    for i in range(n):
        ax, strip = axes[2 * i], axes[2 * i + 1]
        ax.set_ylim(0.0, 1.0)
        ax.set_xlim(0.0, xmax)
        ax.grid(True, axis="y", alpha=0.3)
        strip.set_yticks([])
        if not people:
            ax.text(0.5, 0.5, "no face found: no prediction", transform=ax.transAxes, ha="center", va="center",
                    fontsize=14, color="0.25")
            ax.axvspan(0, xmax, zorder=0, **NO_FACE_STYLE)
            break
        pid = people[i]
        rows = seconds[pid]
        secs = np.array([r["second"] for r in rows], np.float64)
        probs = np.array([r["mean"] if r["mean"] is not None else [np.nan] * len(class_names) for r in rows],
                         np.float64).reshape(len(rows), len(class_names))
        present = set(int(s) for s, r in zip(secs, rows) if r["valid_frames"] > 0)
        for s in range(int(np.ceil(xmax))):  # seconds where this person's face is seen in no frame
            if s not in present:
                ax.axvspan(s, min(s + 1, xmax), zorder=0, **NO_FACE_STYLE)
                strip.axvspan(s, min(s + 1, xmax), zorder=2, **NO_FACE_STYLE)
        finite = np.isfinite(probs).all(axis=1)
        mean = probs[finite].mean(axis=0) if finite.any() else np.zeros(len(class_names))
        order = np.argsort(-mean, kind="stable")
        for k in order:  # line at each second's middle, broken where there is no answer
            ax.plot(secs + 0.5, probs[:, k], color=colors[k], linewidth=1.8, marker="o", markersize=2.5,
                    label=class_names[k], zorder=3)
        if class_names:
            ax.axhline(1.0 / len(class_names), color="0.4", linestyle=":", linewidth=1.0, zorder=2,
                       label=f"chance (1/{len(class_names)})")
        ax.set_ylabel(f"person {pid}\nprobability")
        for s, p, ok in zip(secs, probs, finite):
            if ok:
                strip.axvspan(s, s + 1, color=colors[int(np.argmax(p))], alpha=0.85, linewidth=0, zorder=1)
        _label_runs(strip, secs, probs, finite, class_names, xmax)
        strip.set_ylabel("top\nclass", rotation=0, ha="right", va="center", fontsize=9)
        if not handles:
            handles, _ = ax.get_legend_handles_labels()
    axes[-1].set_xlabel("time (s)")
    handles.append(Patch(label="person not on screen", **NO_FACE_STYLE))
    fig.legend(handles=handles, loc="outside right upper", title="class", frameon=False)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    if subtitle or len(seconds) > MAX_PEOPLE:
        extra = f"; {len(seconds) - MAX_PEOPLE} more people in the CSV" if len(seconds) > MAX_PEOPLE else ""
        axes[0].set_title(subtitle + extra, fontsize=9, color="0.3")
    return save_figure(fig, path)


def _label_runs(strip: Any, secs: np.ndarray, probs: np.ndarray, finite: np.ndarray, class_names: list[str],
                xmax: float) -> None:
    """Write the class name on runs of equal top class wide enough to hold it."""
    top = [int(np.argmax(p)) if ok else -1 for p, ok in zip(probs, finite)]
    i = 0
    while i < len(top):
        j = i
        while j + 1 < len(top) and top[j + 1] == top[i] and secs[j + 1] == secs[j] + 1:
            j += 1
        if top[i] >= 0 and (secs[j] + 1 - secs[i]) / xmax >= 0.06:
            strip.text((secs[i] + secs[j] + 1) / 2, 0.5, class_names[top[i]], ha="center", va="center",
                       fontsize=9, color="white", fontweight="bold",
                       transform=blended_transform_factory(strip.transData, strip.transAxes), zorder=3)
        i = j + 1
