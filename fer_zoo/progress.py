"""Progress of long steps that reads well both in a terminal and in a log file.

In a terminal: a tqdm bar (rate, ETA). Piped to a file (``nohup``, a batch job, CI): no carriage-return redraws,
which arrive all at once and unreadable, but one plain line every ``every_s`` seconds and a last one at the end::

    interview.mp4: 4500/45000 frames (10%), 61.2 frames/s, 0:01:13 elapsed, ETA 0:11:01

The interval defaults to 10 seconds; the environment variable ``FER_ZOO_PROGRESS_INTERVAL`` (seconds, ``0``: a line
per update) changes it for every command. Lightning's loops get the same lines from
:mod:`fer_zoo.lightning_progress`.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from typing import Any, TextIO

INTERVAL_ENV = "FER_ZOO_PROGRESS_INTERVAL"
DEFAULT_INTERVAL_S = 10.0


def hms(s: float) -> str:
    """Seconds as ``H:MM:SS`` (rounded to the second; negative counts as 0)."""
    s = int(round(max(0.0, s)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


def plural(unit: str) -> str:
    """``frame`` -> ``frames``, ``batch`` -> ``batches``."""
    return unit + ("es" if unit.endswith(("s", "x", "ch", "sh")) else "s")


def progress_interval() -> float:
    """Seconds between two plain progress lines: ``$FER_ZOO_PROGRESS_INTERVAL``, else 10.

    Raises ``ValueError`` naming the variable when it is not a number >= 0 (a typo must not silently mean 10 s)."""
    raw = os.environ.get(INTERVAL_ENV, "").strip()
    if not raw:
        return DEFAULT_INTERVAL_S
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise ValueError(f"{INTERVAL_ENV}={raw!r}: expected a number of seconds >= 0 (0: a progress line per update)")
    return value


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (standard error by default) is a terminal: bars there, plain lines anywhere else."""
    stream = stream or sys.stderr
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


def line_buffered_stdout() -> None:
    """Send each line of standard output as it is printed, also into a pipe or a file.

    Python buffers a redirected stdout in blocks of 8 KiB: under ``nohup`` or ``> log 2>&1`` a command's messages
    then arrived at its end, after the progress lines (stderr, unbuffered) they precede. No-op for a stream that
    cannot be reconfigured (a test's capture)."""
    reconfigure = getattr(sys.stdout, "reconfigure", None)
    if reconfigure is not None:
        with contextlib.suppress(ValueError, OSError):
            reconfigure(line_buffering=True)


class Progress:
    """``update(n)`` after each unit of work; ``close()`` at the end (also as a context manager).

    ``total``: the number of units when known (then an ETA is given). ``unit``: singular noun ("frame", "clip");
    the rate is in units per second. ``stream``: where it writes (standard error). ``every_s``: seconds between
    plain lines (default :func:`progress_interval`). ``tty``: force the bar (True) or the plain lines (False);
    default: whether ``stream`` is a terminal. ``initial``: units already done before this run (a resumed fit):
    counted in the total, not in the rate. Raises ``ValueError`` for a bad ``$FER_ZOO_PROGRESS_INTERVAL``.
    """

    def __init__(self, desc: str, total: int | None = None, unit: str = "frame", stream: TextIO | None = None,
                 every_s: float | None = None, tty: bool | None = None, initial: int = 0) -> None:
        self.desc, self.total, self.unit = desc, total or None, unit
        self.stream = stream or sys.stderr
        self.every_s = progress_interval() if every_s is None else every_s
        self.n = self.initial = initial
        self.postfix = ""
        self._closed = False
        self.t0 = self.last = time.monotonic()
        self.tty = is_terminal(self.stream) if tty is None else tty
        self._bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, total=self.total, unit=unit, leave=False, dynamic_ncols=True,
                             file=self.stream, initial=initial)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(now)

    def set_postfix(self, text: str) -> None:
        """Text after the numbers (the current file, a loss): on the bar, and at the end of the plain lines."""
        self.postfix = text
        if self._bar is not None:
            self._bar.set_postfix_str(text)

    def write(self, message: str, file: TextIO | None = None) -> None:
        """A message line (to ``file``, default standard output, as tqdm's ``write``) that does not break the bar:
        on a terminal the bar is cleared, the line written and the bar redrawn; otherwise a plain print."""
        file = file or sys.stdout
        if self._bar is not None:
            self._bar.write(message, file=file)
        else:
            print(message, file=file, flush=True)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self.t0
        rate = (self.n - self.initial) / elapsed if elapsed > 0 else 0.0
        units = plural(self.unit)
        done = f"{self.n}/{self.total} {units} ({100 * self.n / self.total:.0f}%)" if self.total else \
            f"{self.n} {units}"
        eta = ""
        if self.total and rate > 0 and not final:
            eta = f", ETA {hms((self.total - self.n) / rate)}"
        post = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {done}, {rate:.1f} {units}/s, {hms(elapsed)} elapsed{eta}{post}" +
              (" (done)" if final else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif not self._closed and self.n > self.initial and time.monotonic() - self.t0 >= self.every_s:
            self._line(time.monotonic(), final=True)
        self._closed = True

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
