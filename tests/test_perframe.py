"""Per-frame answers from windows: the window plan, its streaming cutter, overlap averaging, per-second rows."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.windows import WindowCutter, plan_windows
from fer_zoo.perframe.average import OverlapAverager
from fer_zoo.perframe.outputs import OutputLayout, SecondBinner


def _old_make_windows(n_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """predict-video's window rule before the streaming rewrite (kept here as the reference)."""
    if n_frames <= 0:
        return []
    if n_frames <= window:
        return [(0, n_frames - 1)]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return [(s, s + window - 1) for s in starts]


@pytest.mark.parametrize("n", [0, 1, 5, 15, 16, 17, 23, 24, 25, 100, 471])
@pytest.mark.parametrize("window, stride", [(16, 8), (16, 16), (16, 5), (1, 1), (32, 7)])
def test_the_window_plan_covers_every_frame_and_equals_the_old_rule(n: int, window: int, stride: int) -> None:
    wins = plan_windows(n, window, stride)
    assert wins == _old_make_windows(n, window, stride)
    covered = np.zeros(n, int)
    for s, e in wins:
        assert 0 <= s <= e < n and e - s + 1 == min(window, n)
        covered[s:e + 1] += 1
    assert (covered >= 1).all()  # first and last frame included


@pytest.mark.parametrize("n, window, stride, first", [(100, 16, 8, 0), (37, 16, 5, 12), (9, 16, 8, 3)])
def test_the_streaming_cutter_gives_the_plan_and_never_covers_a_settled_frame(n: int, window: int, stride: int,
                                                                            first: int) -> None:
    cutter = WindowCutter(window, stride, first)
    got: list[tuple[int, int]] = []
    settled_at: list[tuple[int, int]] = []  # (settled bound, number of windows emitted so far)
    for f in range(first, first + n):
        got.extend(cutter.push(f))
        settled_at.append((cutter.settled(), len(got)))
    got.extend(cutter.finish())
    assert got == plan_windows(n, window, stride, first=first)
    for bound, k in settled_at:  # no window emitted after that moment starts below the bound
        assert all(s >= bound for s, _ in got[k:])
    c = WindowCutter(4, 2)
    c.push(0)
    with pytest.raises(ValueError, match="increasing"):
        c.push(0)


def test_a_frame_gets_the_mean_of_the_windows_that_cover_it() -> None:
    avg = OverlapAverager(2, first=10)
    avg.add(np.arange(10, 14), np.array([1.0, 0.0]))  # window 10-13
    avg.add(np.arange(12, 16), np.array([0.0, 1.0]))  # window 12-15
    avg.add(np.arange(14, 18), np.array([np.nan, np.nan]))  # a window without an answer: not counted
    out = avg.pop(16)
    assert out.frames.tolist() == [10, 11, 12, 13, 14, 15]
    np.testing.assert_allclose(out.mean, [[1, 0], [1, 0], [.5, .5], [.5, .5], [0, 1], [0, 1]])
    assert out.count.tolist() == [1, 1, 2, 2, 1, 1]
    rest = avg.pop(18)  # covered only by the window without an answer
    assert rest.frames.tolist() == [16, 17] and np.isnan(rest.mean).all() and rest.count.tolist() == [0, 0]
    with pytest.raises(ValueError, match="already settled"):
        avg.add(np.array([17]), np.array([1.0, 0.0]))


def test_dense_outputs_average_per_frame() -> None:
    avg = OverlapAverager(1)
    avg.add(np.array([0, 1, 2]), np.array([[0.1], [0.2], [0.3]]))
    avg.add(np.array([1, 2, 3]), np.array([[0.3], [0.4], [0.5]]))
    np.testing.assert_allclose(avg.pop(4).mean[:, 0], [0.1, 0.25, 0.35, 0.5])


def test_seconds_are_binned_by_the_frames_own_times() -> None:
    """Variable frame rate: frames at uneven times land in the second their own timestamp falls in."""
    b = SecondBinner(2)
    times = [0.0, 0.4, 0.99, 1.0, 1.7, 3.2]  # nothing in second 2
    vecs = [np.array([1.0, 0.0]), None, np.array([0.0, 1.0]), np.array([1.0, 0.0]), np.array([1.0, 0.0]),
            np.array([0.0, 1.0])]
    rows = []
    for t, v in zip(times, vecs):
        rows += b.add(t, v is not None, v)
    rows += b.flush()
    assert [r["second"] for r in rows] == [0, 1, 3]
    assert [(r["frames"], r["valid_frames"]) for r in rows] == [(3, 2), (2, 2), (1, 1)]
    np.testing.assert_allclose(rows[0]["mean"], [0.5, 0.5])
    assert rows[0]["start_time"] == 0.0 and rows[0]["end_time"] == 0.99


def test_the_layout_names_columns_and_gives_no_class_without_an_answer() -> None:
    lay = OutputLayout(classes=("anger", "joy"), values=("valence",))
    assert lay.header("frame")[-5:] == ["anger", "joy", "valence", "top_class", "top_prob"]
    c = lay.cells(np.array([0.2, 0.8, -0.3]))
    assert c["top_class"] == "joy" and c["top_prob"] == pytest.approx(0.8) and c["valence"] == pytest.approx(-0.3)
    empty = lay.cells(np.array([np.nan, np.nan, np.nan]))
    assert empty["top_class"] == "" and np.isnan(empty["anger"])
