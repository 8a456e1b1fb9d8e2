"""Progress of long steps that reads well both in a terminal and in a log file.

In a terminal: a tqdm bar (rate, ETA). Piped to a file (``nohup``, a batch job, CI): no carriage-return redraws,
which arrive all at once and unreadable, but one plain line every ``every_s`` seconds and a last one at the end::

    interview.mp4: 4500/45000 frames (10%), 61.2 frames/s, 0:01:13 elapsed, ETA 0:11:01
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


def _hms(s: float) -> str:
    s = int(round(max(0.0, s)))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


class Progress:
    """``update(n)`` after each unit of work; ``close()`` at the end (also as a context manager). ``total``: the
    number of units when known (then an ETA is given). ``stream``: where it writes (standard error)."""

    def __init__(self, desc: str, total: int | None = None, unit: str = "frame", stream: TextIO | None = None,
                 every_s: float = 10.0, tty: bool | None = None) -> None:
        self.desc, self.total, self.unit = desc, total or None, unit
        self.stream = stream or sys.stderr
        self.every_s = every_s
        self.n = 0
        self.t0 = self.last = time.monotonic()
        self.tty = self.stream.isatty() if tty is None else tty
        self._bar: Any = None
        if self.tty:
            from tqdm import tqdm

            self._bar = tqdm(desc=desc, total=self.total, unit=unit, leave=False, dynamic_ncols=True,
                             file=self.stream)

    def update(self, n: int = 1) -> None:
        self.n += n
        if self._bar is not None:
            self._bar.update(n)
            return
        now = time.monotonic()
        if now - self.last >= self.every_s:
            self.last = now
            self._line(now)

    def _line(self, now: float, final: bool = False) -> None:
        elapsed = now - self.t0
        rate = self.n / elapsed if elapsed > 0 else 0.0
        done = f"{self.n}/{self.total} {self.unit}s ({100 * self.n / self.total:.0f}%)" if self.total else \
            f"{self.n} {self.unit}s"
        eta = ""
        if self.total and rate > 0 and not final:
            eta = f", ETA {_hms((self.total - self.n) / rate)}"
        print(f"{self.desc}: {done}, {rate:.1f} {self.unit}s/s, {_hms(elapsed)} elapsed{eta}" +
              (" (done)" if final else ""), file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        elif self.n and time.monotonic() - self.t0 >= self.every_s:
            self._line(time.monotonic(), final=True)

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
