"""Placing decoded audio on the clip's clock by its timestamps: runs, gaps and overlaps.

A soundtrack is decoded frame by frame (``datamodules.audio``); each decoded audio frame carries its presentation
time ``pts x time_base`` (s, on the container clock) and its number of samples. This module decides which frames
belong together and where their samples go:

- **Runs**: consecutive frames whose times continue each other (the frame starts where the run so far ends, within
  :func:`tolerance`) form one *run*, resampled as one block. A frame that starts later than the run's end by more
  than the tolerance opens a new run after a **gap** (lost packets); one that starts earlier by more than the
  tolerance opens a new run that **overlaps** time already heard (duplicated packets, a clock stepping back).
  A frame without a pts continues the run (nothing says otherwise), as does timestamp jitter within the tolerance
  (muxers round pts to their time base: Matroska to 1 ms). A change of sample rate, format or layout also opens a
  new run (a fresh resampler), placed right after the previous one when its time continues it.
- **Placement** (:func:`place`): the runs go onto one 16 kHz grid starting at the earliest run's time; run ``r``
  starts at sample ``round((t_r - start) * 16000)``. Samples that land where an earlier-decoded run already put
  samples are **dropped** (the first decoded keeps its place) and counted, never mixed or averaged. Grid samples no
  run reaches stay 0.0 and are **not covered**: :attr:`Placed.segments` lists the covered sample ranges, and
  nothing downstream may read the uncovered ones as heard (``extractors.audio_base`` keeps windows out of them).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

MIN_TOLERANCE_S = 0.001  # timestamp jitter below 1 ms is rounding, not a gap (1/33 of a 30 fps frame)
MAX_UNCOVERED_S = 600.0  # more time without audio than this inside one soundtrack is a broken clock, not a gap


def tolerance(time_base: Fraction | None) -> float:
    """Seconds by which a frame's time may differ from its run's end and still continue it: ``max(1 ms, 2 ticks
    of the stream's time base)`` (a pts rounded to its time base is off by at most half a tick, the run's start by
    as much again)."""
    tick = float(time_base) if time_base else 0.0
    return max(MIN_TOLERANCE_S, 2.0 * tick)


@dataclass
class Run:
    """Audio decoded without a break in its timestamps: ``samples`` float32 ``[N]`` mono at the grid rate, the first
    one playing at ``start`` s on the container clock; ``follows``: the run continues the previous one in time (a
    new run only because the input format changed), so it is placed right after it."""

    start: float
    samples: np.ndarray
    follows: bool = False


@dataclass
class Placed:
    """Runs on one grid: ``samples`` float32 ``[N]`` (0.0 where not covered), ``samples[0]`` at ``start`` s;
    ``segments`` int64 ``[K, 2]`` covered ``[a, b)`` sample ranges, sorted and disjoint, adjacent ones merged;
    ``dropped`` samples of later runs that fell on time already covered."""

    samples: np.ndarray
    start: float
    segments: np.ndarray
    dropped: int


def segments_of(covered: np.ndarray) -> np.ndarray:
    """int64 ``[K, 2]`` ``[a, b)`` ranges where the bool ``[N]`` mask ``covered`` is True."""
    edges = np.diff(np.concatenate([[0], covered.astype(np.int8), [0]]))
    return np.stack([np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)], axis=1).astype(np.int64)


def place(runs: list[Run], rate: int) -> Placed:
    """Put ``runs`` (in decoding order) on one grid at ``rate`` Hz (rules in the module docstring).

    Raises ``ValueError`` when there are no samples, or when the grid would hold more than ``MAX_UNCOVERED_S``
    seconds without audio (a timestamp jump, not lost packets; the caller names the file).
    """
    runs = [r for r in runs if len(r.samples)]
    if not runs:
        raise ValueError("audio stream decoded to zero samples")
    if len(runs) == 1:  # no break in the timestamps (the usual case): the run is the grid
        x = runs[0].samples
        return Placed(x, runs[0].start, np.array([[0, len(x)]], np.int64), 0)
    origin = min(r.start for r in runs)
    where: list[int] = []
    for r in runs:
        a = int(round((r.start - origin) * rate))
        if r.follows and where:
            a = where[-1] + len(runs[len(where) - 1].samples)
        where.append(a)
    n = max(a + len(r.samples) for a, r in zip(where, runs))
    heard = sum(len(r.samples) for r in runs)
    if (n - heard) / rate > MAX_UNCOVERED_S:
        raise ValueError(f"audio timestamps span {n / rate:.1f} s for {heard / rate:.1f} s of sound (more than "
                         f"{MAX_UNCOVERED_S:g} s without audio: a broken clock, not lost packets)")
    samples = np.zeros(n, np.float32)
    covered = np.zeros(n, bool)
    dropped = 0
    for a, r in zip(where, runs):
        free = ~covered[a:a + len(r.samples)]
        dropped += int((~free).sum())
        samples[a:a + len(r.samples)][free] = r.samples[free]
        covered[a:a + len(r.samples)] = True
    return Placed(samples, origin, segments_of(covered), dropped)
