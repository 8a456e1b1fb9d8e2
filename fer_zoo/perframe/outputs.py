"""What a per-frame answer holds, and the tidy tables it is written to: one row per frame, per second or per window.

A model's per-frame output is one vector laid out by an :class:`OutputLayout`: class probabilities (one column per
class name, summing to 1), regressed values (valence and arousal, in [-1, 1]) and activations (one probability per
action unit). Tables are tidy (one observation per row, one variable per column; Wickham, "Tidy Data", J. Stat.
Software 2014) so a whole folder of videos is one CSV that pandas reads as it is:

- ``frame`` rows: ``video, person, frame, time, valid, windows, <outputs>, top_class, top_prob``. ``time`` is the
  frame's own presentation time in seconds (variable frame rate included); ``valid`` is 1 where the person's face
  was found in that frame; ``windows`` is how many windows' outputs were averaged (0: no answer, outputs empty).
- ``second`` rows: ``video, person, second, start_time, end_time, frames, valid_frames, <outputs>, top_class,
  top_prob``: the frames whose time falls in ``[second, second + 1)``; outputs are the mean over those of its frames
  that have an answer.
- ``window`` rows: ``video, person, window, start_frame, end_frame, start_time, end_time, valid_frames, <outputs>,
  top_class, top_prob``: each window's own output (``valid_frames``: of the sampled slots, how many held a valid
  feature).
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import numpy as np

PER = ("frame", "second", "window")
KEYS = {"frame": ["video", "person", "frame", "time", "valid", "windows"],
        "second": ["video", "person", "second", "start_time", "end_time", "frames", "valid_frames"],
        "window": ["video", "person", "window", "start_frame", "end_frame", "start_time", "end_time", "valid_frames"]}


@dataclass(frozen=True)
class OutputLayout:
    """The columns of a per-frame output vector, in this order: ``classes`` (probabilities over class names),
    ``values`` (regressed, e.g. ``valence``, ``arousal``), ``activations`` (independent probabilities, e.g.
    ``AU01``)."""

    classes: tuple[str, ...] = ()
    values: tuple[str, ...] = ()
    activations: tuple[str, ...] = ()

    @property
    def columns(self) -> list[str]:
        return [*self.classes, *self.values, *self.activations]

    @property
    def width(self) -> int:
        return len(self.columns)

    def header(self, per: str) -> list[str]:
        if per not in PER:
            raise ValueError(f"per={per!r} is not one of {list(PER)}")
        return KEYS[per] + self.columns + (["top_class", "top_prob"] if self.classes else [])

    def cells(self, vec: np.ndarray | None) -> dict[str, Any]:
        """The output columns of one row (and ``top_class``/``top_prob``), empty where ``vec`` is None or NaN."""
        has = vec is not None and bool(np.isfinite(vec).all())
        out: dict[str, Any] = {c: (float(v) if has else math.nan) for c, v in
                               zip(self.columns, vec if has else [math.nan] * self.width)}  # type: ignore[arg-type]
        if self.classes:
            probs = np.asarray(vec[:len(self.classes)]) if has else None  # type: ignore[index]
            out["top_class"] = self.classes[int(np.argmax(probs))] if probs is not None else ""
            out["top_prob"] = float(np.max(probs)) if probs is not None else math.nan
        return out


class TidyCsv:
    """Rows appended to a CSV as they come (flushed after every batch, so a live run's file is always readable and
    a killed run keeps what was written). ``None`` cells and NaN are written empty."""

    def __init__(self, path: Path, header: list[str]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path, self.header = path, header
        self._f: TextIO = open(path, "w", newline="")  # noqa: SIM115 (kept open while rows stream in)
        self._w = csv.DictWriter(self._f, fieldnames=header, extrasaction="ignore")
        self._w.writeheader()
        self.rows = 0

    def write(self, rows: Iterable[dict[str, Any]]) -> None:
        n = 0
        for r in rows:
            self._w.writerow({k: _cell(v, k in TIME_COLUMNS) for k, v in r.items()})
            n += 1
        if n:
            self.rows += n
            self._f.flush()

    def close(self) -> None:
        self._f.close()


#: Columns in seconds: written to the microsecond (``%.6f``), whatever the length of the video; other floats keep six
#: significant digits.
TIME_COLUMNS = frozenset({"time", "start_time", "end_time", "timestamp"})


def _cell(v: Any, is_time: bool = False) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, float):
        return f"{v:.6f}" if is_time else f"{v:.6g}"
    return v


@dataclass
class _Second:
    second: int
    start_time: float
    end_time: float
    frames: int = 0
    valid: int = 0
    answered: int = 0
    total: np.ndarray | None = None


@dataclass
class SecondBinner:
    """Per-second rows of one person from its settled frame rows, in time order: a second is complete once a frame
    of a later second arrives (or at :meth:`flush`). ``width``: the output vector's width."""

    width: int
    current: _Second | None = None
    done: list[dict[str, Any]] = field(default_factory=list)

    def add(self, time: float, valid: bool, vec: np.ndarray | None) -> list[dict[str, Any]]:
        """Take one frame (its time in seconds, whether the face was found, its answer or None); return the seconds
        this frame completed (as dicts: ``second, start_time, end_time, frames, valid_frames, mean``)."""
        sec = int(math.floor(time))
        out = []
        if self.current is not None and sec != self.current.second:
            out.append(self._row(self.current))
            self.current = None
        if self.current is None:
            self.current = _Second(sec, time, time, total=np.zeros(self.width))
        cur = self.current
        cur.end_time = time
        cur.frames += 1
        cur.valid += int(valid)
        if vec is not None and np.isfinite(vec).all():
            cur.answered += 1
            cur.total = cur.total + vec  # type: ignore[operator]
        return out

    def flush(self) -> list[dict[str, Any]]:
        out = [self._row(self.current)] if self.current is not None else []
        self.current = None
        return out

    @staticmethod
    def _row(s: _Second) -> dict[str, Any]:
        mean = s.total / s.answered if s.answered and s.total is not None else None
        return {"second": s.second, "start_time": s.start_time, "end_time": s.end_time, "frames": s.frames,
                "valid_frames": s.valid, "mean": mean}
