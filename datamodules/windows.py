"""Windows: how a long run of frames (a person's track in a video, a long labelled video) is cut into model inputs.

A window is an inclusive frame range ``(start, end)``. Windows of ``length`` frames start every ``stride`` frames
from the first frame; when the last regular window stops short of the last frame, one more window ends exactly at
the last frame, so every frame, the first and the last included, is covered by at least one window. A run shorter
than ``length`` is one window over all of it.

:func:`plan_windows` gives the windows of a run whose length is known (a store's clip); :class:`WindowCutter` gives
the same windows one at a time as frames arrive (a live video), each as soon as its last frame is in, and the
closing window at :meth:`WindowCutter.finish`. Both produce exactly the same list (tested), so an offline and a
streaming answer for the same frames are the same.
"""

from __future__ import annotations


def _check(length: int, stride: int) -> None:
    if length < 1 or stride < 1:
        raise ValueError(f"window length and stride must be >= 1 frame, got {length} and {stride}")


def plan_windows(n_frames: int, length: int, stride: int, first: int = 0) -> list[tuple[int, int]]:
    """``(start, end)`` inclusive frame ranges over frames ``first .. first + n_frames - 1``: every ``stride`` frames
    from ``first``; the last ends at the last frame. ``[]`` for ``n_frames <= 0``. Raises ``ValueError`` for a
    length or stride below 1."""
    _check(length, stride)
    cutter = WindowCutter(length, stride, first)
    out = []
    for f in range(first, first + max(0, n_frames)):
        out.extend(cutter.push(f))
    return out + cutter.finish()


class WindowCutter:
    """The windows of :func:`plan_windows`, emitted as frames arrive.

    ``push(frame)`` takes the frames of the run in order (``first``, ``first + 1``, ...; a frame may be skipped
    only by passing a later one, which then stands for the frames between) and returns the windows that end at it.
    ``finish()`` returns the window that closes the run (ending at its last frame) if no regular window ended
    there, or the single window of a run shorter than ``length``. ``next_start`` is the start of the next regular
    window: no window emitted later starts before ``min(next_start, last + 1 - length)`` (``last``: the last
    frame pushed), so frames before that are covered by every window they will ever be in (:meth:`settled`).
    """

    def __init__(self, length: int, stride: int, first: int = 0) -> None:
        _check(length, stride)
        self.length, self.stride, self.first = length, stride, first
        self.next_start = first
        self.last: int | None = None
        self.emitted_end: int | None = None  # end of the last window emitted

    def push(self, frame: int) -> list[tuple[int, int]]:
        if self.last is not None and frame <= self.last:
            raise ValueError(f"frames must arrive in increasing order: {frame} after {self.last}")
        if self.last is None and frame != self.first:
            raise ValueError(f"the run starts at frame {self.first}, got {frame} first")
        self.last = frame
        out = []
        while self.next_start + self.length - 1 <= frame:
            end = self.next_start + self.length - 1
            out.append((self.next_start, end))
            self.emitted_end = end
            self.next_start += self.stride
        return out

    def finish(self) -> list[tuple[int, int]]:
        """The closing window, if the run needs one (nothing when no frame was pushed)."""
        if self.last is None or self.emitted_end == self.last:
            return []
        start = max(self.first, self.last - self.length + 1)
        self.emitted_end = self.last
        return [(start, self.last)]

    def settled(self) -> int:
        """Frames below this are in no window emitted from now on (``first`` before any frame was pushed)."""
        if self.last is None:
            return self.first
        return max(self.first, min(self.next_start, self.last + 1 - self.length))
