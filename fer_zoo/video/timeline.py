"""The timeline PNG of ``predict-video``: class probabilities over time, with the spans without a face shaded.

Built on an Agg canvas through matplotlib's object API (no pyplot), like :mod:`fer_zoo.plots`.
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


def no_face_spans(face_found: np.ndarray, timestamps: np.ndarray, duration: float) -> list[tuple[float, float]]:
    """``(t0, t1)`` of each run of frames without a face; a run ends where the next frame starts."""
    spans = []
    n = len(face_found)
    i = 0
    while i < n:
        if face_found[i]:
            i += 1
            continue
        j = i
        while j + 1 < n and not face_found[j + 1]:
            j += 1
        spans.append((float(timestamps[i]), float(timestamps[j + 1]) if j + 1 < n else duration))
        i = j + 1
    return spans


def _colors(n: int) -> list[Any]:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(n)]


def _probs(windows: list[dict[str, Any]], class_names: list[str], key: str) -> np.ndarray:
    return np.array([[w[key][c] if w.get(key) else np.nan for c in class_names] for w in windows],
                    np.float64).reshape(len(windows), len(class_names))


def plot_timeline(windows: list[dict[str, Any]], class_names: list[str], face_found: np.ndarray,
                  timestamps: np.ndarray, duration: float, path: str | Path, title: str = "",
                  subtitle: str = "", num_frames: int | None = None) -> Path:
    """Lines: each class's probability at each window's centre (gaps where a window has no prediction); below them
    a strip with the top class of the nearest window, and a strip with each window's ``valid_frames`` (of
    ``num_frames`` sampled slots, how many the model saw with a face); hatched grey spans where the tracked face
    is missing. Windows smoothed by ``predict-video --smooth`` (``smoothed_probs``, ``smoothed_top_class``) are
    drawn solid with the raw probabilities faint behind them, and the top-class strip shows the smoothed class."""
    colors = _colors(len(class_names))
    centers = np.array([w["center_time"] for w in windows], np.float64)
    raw = _probs(windows, class_names, "probs")
    smoothed = any(w.get("smoothed_probs") for w in windows)
    probs = _probs(windows, class_names, "smoothed_probs") if smoothed else raw
    spans = no_face_spans(np.asarray(face_found, bool), np.asarray(timestamps, np.float64), duration)
    xmax = max(duration, 1e-3)

    fig = Figure(figsize=(13, 5.6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax, strip, vstrip = fig.subplots(3, 1, sharex=True, height_ratios=[6, 1, 1])
    for t0, t1 in spans:
        ax.axvspan(t0, t1, zorder=0, **NO_FACE_STYLE)
        strip.axvspan(t0, t1, zorder=2, **NO_FACE_STYLE)  # over the top-class colours: no face, no class
        if (t1 - t0) / xmax >= 0.04:  # label spans wide enough to hold the words
            ax.text((t0 + t1) / 2, 0.5, "no face", transform=blended_transform_factory(ax.transData, ax.transAxes),
                    ha="center", va="center", fontsize=11, color="0.3", fontweight="bold",
                    bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.3", "alpha": 0.9})
    finite = np.isfinite(probs).all(axis=1)
    mean = probs[finite].mean(axis=0) if finite.any() else np.zeros(len(class_names))
    for k in np.argsort(-mean, kind="stable"):  # legend sorted by mean probability: the dominant classes first
        if smoothed:
            ax.plot(centers, raw[:, k], color=colors[k], linewidth=1.0, alpha=0.35, zorder=3)
        ax.plot(centers, probs[:, k], color=colors[k], linewidth=2.0, marker="o", markersize=3.0,
                label=class_names[k], zorder=3)
    if class_names:
        ax.axhline(1.0 / len(class_names), color="0.4", linestyle=":", linewidth=1.2, zorder=2,
                   label=f"chance (1/{len(class_names)})")
    ax.set_ylim(0.0, 1.0)
    ax.set_xlim(0.0, xmax)
    ax.set_ylabel("probability")
    ax.grid(True, axis="y", alpha=0.3)
    ax.grid(True, axis="x", alpha=0.15)
    if not finite.any():
        ax.text(0.5, 0.8, "no prediction: no face found" if not np.any(face_found) else "no prediction",
                transform=ax.transAxes, ha="center", va="center", fontsize=14, color="0.25",
                bbox={"facecolor": "white", "edgecolor": "0.6", "boxstyle": "round,pad=0.4"})

    # Top-class strip: each window owns the time nearest to its centre; runs of one class are labelled.
    edges = np.concatenate([[0.0], (centers[1:] + centers[:-1]) / 2, [xmax]]) if len(windows) else np.zeros(1)
    top = [(w["smoothed_top_class"] if smoothed else w["top_class"]) if w["probs"] else None for w in windows]
    i = 0
    while i < len(windows):
        j = i
        while j + 1 < len(windows) and top[j + 1] == top[i]:
            j += 1
        if top[i] is not None:
            k = class_names.index(top[i])
            strip.axvspan(edges[i], edges[j + 1], color=colors[k], alpha=0.8, linewidth=0, zorder=1)
            if (edges[j + 1] - edges[i]) / xmax >= 0.06:
                strip.text((edges[i] + edges[j + 1]) / 2, 0.5, top[i], ha="center", va="center", fontsize=9,
                           color="white", fontweight="bold", transform=blended_transform_factory(
                               strip.transData, strip.transAxes), zorder=3)
        i = j + 1
    strip.set_yticks([])
    strip.set_ylabel("smoothed\ntop class" if smoothed else "top\nclass", rotation=0, ha="right", va="center",
                     fontsize=9)

    # Valid frames per window: how much evidence each prediction rests on.
    counts = np.array([w.get("valid_frames", 0) for w in windows], np.float64)
    top_count = float(num_frames or (counts.max() if len(counts) else 1) or 1)
    if len(windows):
        vstrip.stairs(counts, edges, color="0.35", fill=True, alpha=0.5)
    vstrip.set_ylim(0, top_count)
    vstrip.set_yticks([0, top_count])
    vstrip.set_ylabel("valid\nframes", rotation=0, ha="right", va="center", fontsize=9)
    vstrip.set_xlabel("time (s)")

    handles, _ = ax.get_legend_handles_labels()
    if spans:
        handles.append(Patch(label="no face", **NO_FACE_STYLE))
    fig.legend(handles=handles, loc="outside right upper", title="class", frameon=False)
    fig.suptitle(title, fontsize=13, fontweight="bold")
    if subtitle:
        ax.set_title(subtitle, fontsize=9, color="0.3")
    return save_figure(fig, path)
