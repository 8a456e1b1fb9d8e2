"""Confusion-matrix figures for loggers and PNG files.

Figures are built with matplotlib's object API on an Agg canvas, never through ``pyplot``: no display is needed,
nothing is registered in pyplot's global figure list (so long runs do not leak figures), and the process-wide
backend of a caller (a notebook, say) is left alone.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def uar_war(cm: np.ndarray) -> tuple[float, float]:
    """UAR (macro recall) and WAR (accuracy) from a confusion matrix (rows = true class).

    Like torchmetrics' macro recall, a class that is neither in the targets nor in the predictions is left out of
    the mean; a class only predicted counts with recall 0.
    """
    cm = np.asarray(cm, dtype=np.float64)
    total = cm.sum()
    if total == 0:
        return 0.0, 0.0
    support = cm.sum(axis=1)
    recall = np.divide(np.diag(cm), support, out=np.zeros_like(support), where=support > 0)
    seen = (support > 0) | (cm.sum(axis=0) > 0)
    return float(recall[seen].mean()), float(np.trace(cm) / total)


def confusion_figure(
    cm: np.ndarray,
    class_names: list[str],
    title: str,
    uar: float | None = None,
    war: float | None = None,
) -> Figure:
    """Heat map of the row-normalised matrix (each cell: recall share, raw count below), true class on the rows.

    Row normalisation makes classes of very different sizes comparable (DFEW's Fear is ~10x rarer than Happy);
    the raw count keeps the absolute picture visible.
    """
    cm = np.asarray(cm)
    n = len(class_names)
    if cm.shape != (n, n):
        raise ValueError(f"confusion matrix shape {cm.shape} does not match {n} class names")
    counts = cm.astype(np.int64)
    support = counts.sum(axis=1, keepdims=True)
    norm = np.divide(counts, support, out=np.zeros(cm.shape, dtype=np.float64), where=support > 0)

    size = max(4.0, 0.75 * n + 2.5)
    fig = Figure(figsize=(size + 1.0, size), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    image = ax.imshow(norm, cmap="Blues", vmin=0.0, vmax=1.0)
    fig.colorbar(image, ax=ax, shrink=0.8, label="recall (row-normalised)")
    ax.set_xticks(range(n), labels=class_names, rotation=45, ha="right", rotation_mode="anchor")
    ax.set_yticks(range(n), labels=class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    fontsize = 9 if n <= 8 else 8
    for i in range(n):
        for j in range(n):
            colour = "white" if norm[i, j] > 0.5 else "black"
            ax.text(
                j, i, f"{norm[i, j]:.2f}\n({counts[i, j]})", ha="center", va="center", color=colour, fontsize=fontsize
            )
    extras = [f"{k} {v:.3f}" for k, v in (("UAR", uar), ("WAR", war)) if v is not None]
    ax.set_title(f"{title}  ({', '.join(extras)})" if extras else title)
    return fig


def figure_to_array(fig: Figure) -> np.ndarray:
    """Render to an RGB uint8 array ``[H, W, 3]``: the format every image logger accepts without extra deps."""
    canvas = fig.canvas if isinstance(fig.canvas, FigureCanvasAgg) else FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_figure(fig: Figure, path: str | os.PathLike[str]) -> Path:
    """Write a PNG atomically (temporary name, then rename) so a reader never sees a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
