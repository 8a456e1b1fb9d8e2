"""Multi-face tracking (``fer_zoo.video.tracking``): stable person ids, re-identification, false bursts, detection
every k frames, ``faces`` limits, bounded delay; on synthetic detections (fast), and on a real two-person composite
built from the shared videos (slow: MediaPipe, preprocess)."""

from __future__ import annotations

import csv
import random
from pathlib import Path

import numpy as np
import pytest
from video_data import COMPOSITE_SHIFT, two_person_composite

from fer_zoo.video.face_track import TrackConfig
from fer_zoo.video.tracking import (
    Detection,
    MultiFaceTracker,
    TrackDecision,
    TrackerStep,
    bhattacharyya,
    colour_histogram,
    parse_faces,
)

FPS = 30.0


def _box(x: float, y: float = 100.0, s: float = 100.0) -> tuple[float, float, float, float]:
    return (float(x), float(y), float(x + s), float(y + s))


class Run:
    """A tracker fed a list of per-frame detection lists; everything it said, with the step that said it."""

    def __init__(self, frames: list[list[Detection] | None], appearance=None, **cfg) -> None:
        self.tracker = MultiFaceTracker(TrackConfig(**cfg))
        self.steps: list[TrackerStep] = []
        self.asked: list[bool] = []
        self.horizons: list[int] = []
        for i, dets in enumerate(frames):
            self.asked.append(self.tracker.wants_detection(i))
            look = appearance(i) if appearance else None
            self.steps.append(self.tracker.step(i, i / FPS, dets if self.asked[-1] or dets is None else dets, look))
            self.horizons.append(self.tracker.horizon)
        self.steps.append(self.tracker.finish())

    @property
    def decisions(self) -> list[TrackDecision]:
        return [d for s in self.steps for d in s.decisions]

    def person(self, p: int) -> dict[int, TrackDecision]:
        return {d.frame: d for d in self.decisions if d.person == p}

    @property
    def persons(self) -> list[int]:
        return sorted({d.person for d in self.decisions})

    def emitted_at(self) -> dict[tuple[int, int], int]:
        return {(d.person, d.frame): k for k, s in enumerate(self.steps) for d in s.decisions}


def _feed(n: int, *people, false: dict[int, tuple] | None = None, score: float = 0.9) -> list[list[Detection]]:
    """``n`` frames; each person is a function frame -> box or None (not detected)."""
    frames = []
    for i in range(n):
        dets = [Detection(b, score) for b in (p(i) for p in people) if b is not None]
        if false and i in false:
            dets.append(Detection(false[i], 0.6))
        frames.append(dets)
    return frames


# ------------------------------------------------------------------------------------------------ basics


def test_two_people_get_two_ids_in_order_of_confirmation_with_their_own_boxes() -> None:
    left = lambda i: _box(50 + i % 3)  # noqa: E731  (detector jitter)
    right = lambda i: _box(400 - i % 2) if i >= 10 else None  # noqa: E731  enters at frame 10
    run = Run(_feed(40, right, left), min_hits=5)
    assert run.persons == [1, 2]
    one, two = run.person(1), run.person(2)
    assert sorted(one) == list(range(40)) and sorted(two) == list(range(10, 40))
    assert all(one[f].box == left(f) for f in one) and all(two[f].box == right(f) for f in two)
    assert all(d.confidence == 0.9 and not d.interpolated and d.reason == "" for d in run.decisions)


def test_crossing_people_keep_their_ids() -> None:
    """Two faces walk through each other: at the crossing they overlap fully, and for 4 frames the detector sees
    only the front face (as MediaPipe's suppression does). The ids follow the motion, not the nearest last box."""
    a = lambda i: _box(100 + 8 * i)  # noqa: E731  moves right
    b = lambda i: _box(572 - 8 * i) if not 28 <= i < 32 else None  # noqa: E731  moves left, hidden at the crossing
    run = Run(_feed(60, a, b), min_hits=3, max_lost=10)
    assert run.persons == [1, 2]
    one, two = run.person(1), run.person(2)
    assert all(one[f].box == a(f) for f in range(60)), "person 1 jumped to the other face"
    assert [f for f in two if two[f].box is None] == [28, 29, 30, 31]
    assert all(two[f].box == b(f) for f in two if f not in (28, 29, 30, 31))
    assert {two[f].reason for f in (28, 29, 30, 31)} == {"other face only"}  # a short loss inside the segment


def test_legacy_follows_one_moving_face_by_its_last_box() -> None:
    """faces="legacy" (the old single-face rule) matches the last box only: it follows one face as before."""
    a = lambda i: _box(100 + 8 * i)  # noqa: E731
    run = Run(_feed(30, a), faces="legacy", min_hits=3)
    assert run.persons == [1] and all(run.person(1)[f].box == a(f) for f in range(30))


def test_false_bursts_never_become_people_and_are_reported() -> None:
    """MediaPipe's false detections on textures last 1-4 frames: rejected (min_hits 5), named in ``rejected``."""
    face = lambda i: _box(50)  # noqa: E731
    burst = {i: _box(500, 300, 40) for i in (3, 10, 11, 12, 13, 30)}
    run = Run(_feed(40, face, false=burst), min_hits=5)
    assert run.persons == [1] and sorted(run.person(1)) == list(range(40))
    rejected = sorted(f for s in run.steps for f, _ in s.rejected)
    assert rejected == [3, 10, 11, 12, 13, 30]
    assert all(c == pytest.approx(0.6) for s in run.steps for _, c in s.rejected)


def test_a_clip_shorter_than_min_hits_keeps_a_face_seen_on_every_frame() -> None:
    assert Run(_feed(3, lambda i: _box(50)), min_hits=5).persons == [1]
    assert Run(_feed(3, lambda i: _box(50) if i else None), min_hits=5).persons == []


# ------------------------------------------------------------------------------------------------ losses, re-id


def test_a_short_loss_stays_inside_the_segment_and_a_segment_never_ends_with_lost_frames() -> None:
    face = lambda i: None if 10 <= i < 14 or i >= 30 else _box(50)  # noqa: E731
    run = Run(_feed(60, face), min_hits=3, max_lost=8)
    p = run.person(1)
    assert sorted(p) == list(range(30)), "trailing losses are dropped: the segment ends at its last match"
    assert [f for f in p if p[f].box is None] == [10, 11, 12, 13]
    assert all(p[f].reason == "no detection" and p[f].confidence == 0.0 for f in range(10, 14))
    ended = [k for k, s in enumerate(run.steps) if 1 in s.ended]
    assert ended == [38], "ended once, on the first frame more than max_lost after its last match (29 + 8 + 1)"


def test_a_person_who_leaves_and_comes_back_soon_near_where_they_left_keeps_their_id() -> None:
    """Gone 1 s (30 frames, longer than max_lost): a new segment of person 1, not person 2; gone 3 s, or back
    two box widths away: another person."""
    back_soon = lambda i: None if 20 <= i < 50 else _box(50 + (5 if i >= 50 else 0))  # noqa: E731
    run = Run(_feed(80, back_soon), min_hits=5, max_lost=10)
    assert run.persons == [1]
    assert sorted(run.person(1)) == list(range(20)) + list(range(50, 80))
    assert [k for k, s in enumerate(run.steps) if 1 in s.ended] == [30, 80]  # two segments, each flushed
    back_late = lambda i: None if 20 <= i < 110 else _box(50)  # noqa: E731
    assert Run(_feed(130, back_late), min_hits=5, max_lost=10).persons == [1, 2]
    elsewhere = lambda i: None if 20 <= i < 50 else _box(50 if i < 20 else 260)  # noqa: E731
    assert Run(_feed(80, elsewhere), min_hits=5, max_lost=10).persons == [1, 2]
    bigger = lambda i: None if 20 <= i < 50 else _box(50, s=100 if i < 20 else 170)  # noqa: E731
    assert Run(_feed(80, bigger), min_hits=5, max_lost=10).persons == [1, 2]
    no_reid = Run(_feed(80, back_soon), min_hits=5, max_lost=10, reid_seconds=0)
    assert no_reid.persons == [1, 2]


def test_appearance_vetoes_a_different_face_in_the_same_place() -> None:
    """With an ``appearance`` callable, a face back at the same place but with other colours is someone else."""
    face = lambda i: None if 20 <= i < 50 else _box(50)  # noqa: E731
    red, blue = np.eye(4)[0], np.eye(4)[3]
    same = Run(_feed(80, face), appearance=lambda i: (lambda box: red), min_hits=5)
    other = Run(_feed(80, face), appearance=lambda i: (lambda box: red if i < 20 else blue), min_hits=5)
    off = Run(_feed(80, face), appearance=lambda i: (lambda box: red if i < 20 else blue), min_hits=5,
              reid_appearance=0.0)
    assert same.persons == [1] and other.persons == [1, 2] and off.persons == [1]


def test_a_lost_person_back_elsewhere_is_reidentified_and_the_steps_stay_in_order() -> None:
    """Lost, then back 90 px away (no overlap left) before max_lost ran out: the lost track's segment ends and the
    new track takes the id. Its frames come in a later step than the end, so callers that handle decisions and then
    ``ended`` see the segments in order."""
    face = lambda i: None if 10 <= i < 13 else _box(50 if i < 10 else 140)  # noqa: E731
    run = Run(_feed(40, face), min_hits=3, max_lost=20)
    assert run.persons == [1]
    p = run.person(1)
    assert sorted(p) == list(range(10)) + list(range(13, 40)) and all(p[f].box is not None for f in p)
    end_step = next(k for k, s in enumerate(run.steps) if 1 in s.ended)
    assert end_step == 15 and all(d.frame < 10 for s in run.steps[:end_step + 1] for d in s.decisions)
    assert min(d.frame for d in run.steps[end_step + 1].decisions) == 13


# ------------------------------------------------------------------------------------------------ legacy


class _SingleFaceRule:
    """The single-face tracker as it was before ``faces`` existed (fer_zoo 0b56d92, ``face_track.FaceTracker``),
    kept here verbatim in logic as the reference that ``faces="legacy"`` must reproduce frame for frame."""

    def __init__(self, min_confidence: float, iou_min: float, min_hits: int, max_lost: int) -> None:
        from fer_zoo.video.tracking import iou

        self.iou, self.min_confidence, self.iou_min, self.min_hits, self.max_lost = (iou, min_confidence, iou_min,
                                                                                    min_hits, max_lost)
        self.box, self.confirmed, self.lost, self.pending, self.frames_seen = None, False, 0, [], 0

    def step(self, frame: int, detections: list[Detection]) -> list[tuple]:
        self.frames_seen += 1
        cands = [d for d in detections if d.score >= self.min_confidence]
        out: list[tuple] = []
        if self.box is not None:
            best = max(cands, key=lambda d: self.iou(self.box, d.box), default=None)
            if best is not None and self.iou(self.box, best.box) >= self.iou_min:
                self.box, self.lost = best.box, 0
                dec = (frame, best.box, best.score, "")
                if self.confirmed:
                    return [dec]
                self.pending.append(dec)
                if len(self.pending) >= self.min_hits:
                    self.confirmed = True
                    out, self.pending = self.pending, []
                return out
            if not self.confirmed:
                out.extend(self._reject())
            else:
                self.lost += 1
                if self.lost <= self.max_lost:
                    return [(frame, None, 0.0, "other face only" if cands else "no detection")]
                self.box, self.confirmed = None, False
        if not cands:
            return [*out, (frame, None, 0.0, "no detection")]
        best = max(cands, key=lambda d: d.score)
        self.box, self.lost = best.box, 0
        dec = (frame, best.box, best.score, "")
        if self.min_hits <= 1:
            self.confirmed = True
            return [*out, dec]
        self.confirmed, self.pending = False, [dec]
        return out

    def _reject(self) -> list[tuple]:
        rejected = [(f, None, 0.0, f"unconfirmed detection (confidence {c:.2f}, seen in < {self.min_hits} "
                     "consecutive frames)") for f, _, c, _ in self.pending]
        self.pending, self.box = [], None
        return rejected

    def finish(self) -> list[tuple]:
        if self.pending and self.pending[0][0] == 0 and len(self.pending) == self.frames_seen:
            out, self.pending = self.pending, []
            return out
        return self._reject()


def test_faces_legacy_reproduces_the_single_face_tracker_of_before_frame_for_frame() -> None:
    """Trees preprocessed before ``faces`` existed read as ``faces="legacy"`` (face_track.LEGACY): on 400 random
    scenes (1-3 moving, flickering faces, false detections, random settings) it decides every frame as the old
    tracker did: same box, confidence and reason, one person id."""
    from fer_zoo.video.face_track import FaceTracker

    rng = random.Random(7)
    for _ in range(400):
        people = [(rng.uniform(0, 500), rng.uniform(40, 150), rng.gauss(0, 4)) for _ in range(rng.randint(1, 3))]
        frames = []
        for i in range(rng.randint(1, 60)):
            dets = [Detection(_box(x + v * i + rng.gauss(0, 3), 100, s), rng.uniform(0.3, 1.0))
                    for x, s, v in people if rng.random() < 0.8]
            if rng.random() < 0.1:
                dets.append(Detection(_box(rng.uniform(0, 600), 300, 50), rng.uniform(0.4, 0.8)))
            rng.shuffle(dets)
            frames.append(dets)
        kw = dict(min_confidence=rng.choice([0.3, 0.5]), iou_min=rng.choice([0.1, 0.2, 0.5]),
                  min_hits=rng.randint(1, 6), max_lost=rng.randint(0, 8))
        old, new = _SingleFaceRule(**kw), FaceTracker(**kw)
        want, got = [], []
        for i, dets in enumerate(frames):
            want += old.step(i, dets)
            got += [(d.frame, d.box, d.confidence, d.reason) for d in new.step(i, dets)]
        want += old.finish()
        got += [(d.frame, d.box, d.confidence, d.reason) for d in new.finish()]
        assert got == want, kw
        assert Run(frames, faces="legacy", **kw).persons in ([], [1])


# ------------------------------------------------------------------------------------------------ faces=


def test_faces_largest_and_n_take_the_largest_faces() -> None:
    small, mid, big = (lambda i: _box(20, s=60)), (lambda i: _box(200, s=90)), (lambda i: _box(400, s=150))
    frames = _feed(20, small, mid, big)
    assert Run(frames, faces="all").persons == [1, 2, 3]
    largest = Run(frames, faces="largest")
    assert largest.persons == [1] and largest.person(1)[0].box == big(0)
    two = Run(frames, faces=2)
    assert two.persons == [1, 2] and {two.person(1)[5].box, two.person(2)[5].box} == {big(5), mid(5)}
    # "legacy": the most confident face when acquired, one id for whoever it follows
    conf = [[Detection(small(i), 0.99), Detection(big(i), 0.7)] for i in range(20)]
    assert Run(conf, faces="legacy").person(1)[0].box == small(0)
    assert Run(conf, faces="largest").person(1)[0].box == big(0)


def test_faces_largest_keeps_its_face_while_a_larger_one_appears_and_takes_one_after_a_loss() -> None:
    mine = lambda i: _box(50) if i < 30 else None  # noqa: E731
    larger = lambda i: _box(400, s=200) if i >= 10 else None  # noqa: E731
    run = Run(_feed(80, mine, larger), faces="largest", min_hits=3, max_lost=5)
    assert sorted(run.person(1)) == list(range(30))
    assert sorted(run.person(2)) == list(range(35, 80))  # acquired once mine was lost > max_lost (29 + 5 + 1)


def test_faces_setting_is_parsed_and_checked() -> None:
    assert [parse_faces(v) for v in ("all", "LARGEST", 3, "02", "legacy")] == ["all", "largest", "3", "2", "legacy"]
    for bad in ("0", "-1", "most", ""):
        with pytest.raises(ValueError, match="faces must be"):
            TrackConfig(faces=bad)
    assert TrackConfig(faces=2) == TrackConfig(faces="2")
    for key, bad in (("detect_every", 0), ("detect_every", 1.5), ("reid_seconds", -1.0), ("reid_size_ratio", 0.9),
                     ("reid_appearance", 1.5), ("reid_distance", 0.0)):
        with pytest.raises(ValueError, match=key):
            TrackConfig(**{key: bad})


# ------------------------------------------------------------------------------------------------ detect_every


def test_detect_every_interpolates_between_detections_and_detects_every_frame_while_new() -> None:
    """k = 4: detection on frames 0-2 (the new face is tentative until min_hits 3), then on every 4th frame; the
    frames between get the box on the line between the two detections and the lower of their confidences."""
    face = lambda i: _box(10 + 3 * i, 100 + (i % 3))  # noqa: E731  moves 3 px/frame right, jitters 2 px
    conf = lambda i: 0.9 - 0.005 * i  # noqa: E731
    tracker = MultiFaceTracker(TrackConfig(detect_every=4, min_hits=3, max_lost=10))
    asked, out = [], []
    for i in range(40):
        asked.append(tracker.wants_detection(i))
        out += tracker.step(i, i / FPS, [Detection(face(i), conf(i))] if asked[-1] else None).decisions
    out += tracker.finish().decisions
    assert [i for i in range(40) if asked[i]] == [0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    p = {d.frame: d for d in out}
    assert sorted(p) == list(range(37)), "frames after the last detection (36) are not guessed"
    detected = [0, 1, 2, 4, 8, 12, 16, 20, 24, 28, 32, 36]
    for f in range(37):
        if f in detected:
            assert not p[f].interpolated and p[f].box == face(f) and p[f].confidence == conf(f)
            continue
        lo, hi = max(d for d in detected if d < f), min(d for d in detected if d > f)
        w = (f - lo) / (hi - lo)
        want = tuple(x + (y - x) * w for x, y in zip(face(lo), face(hi)))
        assert p[f].interpolated and p[f].box == pytest.approx(want) and p[f].confidence == conf(hi)
    assert p[22].box == pytest.approx((76.0, 101.0, 176.0, 201.0))  # halfway between frames 20 and 24


def test_detect_every_asks_every_frame_while_a_face_is_lost_and_gives_no_box_before_a_miss() -> None:
    k = 5
    face = lambda i: _box(50) if not 7 <= i < 12 else None  # noqa: E731
    tracker = MultiFaceTracker(TrackConfig(detect_every=k, min_hits=2, max_lost=10))
    asked, out = [], []
    for i in range(25):
        want = tracker.wants_detection(i)
        asked.append(want)
        out += tracker.step(i, i / FPS, ([Detection(face(i), 0.9)] if face(i) else []) if want else None).decisions
    out += tracker.finish().decisions
    assert [i for i in range(25) if asked[i]] == [0, 1, 5, 10, 11, 12, 15, 20]
    p = {d.frame: d for d in out}
    # 6-9: between the match at 5 and the miss at 10, never seen: no box (nothing invented); 10-11 missed
    assert [f for f in p if p[f].box is None] == [6, 7, 8, 9, 10, 11]
    assert p[6].reason.startswith("detection skipped") and p[10].reason == "no detection"
    assert p[2].interpolated and p[13].interpolated and sorted(p) == list(range(21))


def test_detect_every_refuses_a_missing_detection_where_one_was_asked_for_and_frames_out_of_order() -> None:
    tracker = MultiFaceTracker(TrackConfig(detect_every=3))
    with pytest.raises(ValueError, match="frame 0 needs detections"):
        tracker.step(0, 0.0, None)
    tracker.step(0, 0.0, [])
    with pytest.raises(ValueError, match="expected frame 1, got 2"):
        tracker.step(2, 0.1, [])
    tracker.finish()
    with pytest.raises(ValueError, match="after finish"):
        tracker.step(1, 0.1, [])


# ------------------------------------------------------------------------------------------------ emission


def _random_scene(seed: int, n: int = 300) -> list[list[Detection]]:
    rng = random.Random(seed)
    people = [(rng.uniform(0, 800), rng.uniform(40, 160), rng.uniform(-3, 3), rng.randrange(0, n // 2),
               rng.randrange(n // 2, n)) for _ in range(4)]
    frames = []
    for i in range(n):
        dets = []
        for x, s, v, start, stop in people:
            if start <= i < stop and rng.random() < 0.85:
                dets.append(Detection(_box(x + v * i + rng.gauss(0, 2), 100, s), rng.uniform(0.5, 1.0)))
        if rng.random() < 0.05:
            dets.append(Detection(_box(rng.uniform(0, 800), 300, 40), 0.6))
        rng.shuffle(dets)
        frames.append(dets)
    return frames


@pytest.mark.parametrize("k", [1, 3])
def test_decisions_are_final_in_order_with_bounded_delay_and_respect_the_horizon(k: int) -> None:
    cfg = dict(min_hits=4, max_lost=6, detect_every=k)
    for seed in range(8):
        frames = _random_scene(seed)
        tracker = MultiFaceTracker(TrackConfig(**cfg))
        seen: dict[int, list[int]] = {}
        horizon = 0
        for i, dets in enumerate(frames):
            step = tracker.step(i, i / FPS, dets if tracker.wants_detection(i) else None)
            for d in step.decisions:
                assert d.frame >= horizon, "a decision for a frame the caller was allowed to forget"
                assert i - d.frame <= cfg["max_lost"] + k + cfg["min_hits"], "delay not bounded"
                seen.setdefault(d.person, []).append(d.frame)
            assert tracker.horizon >= horizon
            horizon = tracker.horizon
            assert horizon >= i + 1 - (cfg["max_lost"] + k + cfg["min_hits"])
        for d in tracker.finish().decisions:
            seen.setdefault(d.person, []).append(d.frame)
        assert seen, seed
        for person, fr in seen.items():
            assert fr == sorted(fr) and len(fr) == len(set(fr)), f"person {person}: frames out of order or twice"
        assert sorted(seen) == list(range(1, len(seen) + 1))


def test_deterministic_whatever_the_order_of_the_detections() -> None:
    frames = _random_scene(3)
    flipped = [list(reversed(f)) for f in frames]
    a = [(d.person, d.frame, d.box) for d in Run(frames, min_hits=4).decisions]
    b = [(d.person, d.frame, d.box) for d in Run(frames, min_hits=4).decisions]
    c = [(d.person, d.frame, d.box) for d in Run(flipped, min_hits=4).decisions]
    assert a == b and sorted(a) == sorted(c) and len({p for p, _, _ in a}) >= 3


def test_colour_histogram_tells_different_colours_apart_and_ignores_the_border() -> None:
    img = np.zeros((200, 400, 3), np.uint8)
    img[:, :200] = (200, 150, 120)  # a skin-like patch
    img[:, 200:] = (40, 60, 200)
    img[90:110, 60:140] = (10, 10, 10)  # a dark detail inside the face
    left, right = colour_histogram(img, (50, 50, 150, 150)), colour_histogram(img, (250, 50, 350, 150))
    assert left.shape == (64,) and left.sum() == pytest.approx(1.0)
    assert bhattacharyya(left, left) == pytest.approx(1.0) and bhattacharyya(left, right) < 0.1
    framed = img.copy()
    framed[50:60, 50:150] = (0, 255, 0)  # the outer 10 % of the box: outside the central 80 % that is read
    assert np.array_equal(colour_histogram(framed, (50, 50, 150, 150)), left)
    assert colour_histogram(img, (500, 500, 600, 600)).sum() == pytest.approx(1.0)  # outside the frame: uniform


# ------------------------------------------------------------------------------------------------ real footage

SHIFT = COMPOSITE_SHIFT  # columns of WolfgangLanger_Pexels.mp4 cut away on the left; it starts at x = 640


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_two_people_in_a_real_composite_give_two_tracks_with_the_right_boxes(face_videos: Path, tmp_path: Path,
                                                                             capsys: pytest.CaptureFixture[str]
                                                                             ) -> None:
    from fer_zoo.video.face_track import FaceDetector, open_video, track_video
    from fer_zoo.video.preprocess import main

    video = two_person_composite(face_videos, tmp_path / "in" / "two.mp4")
    cfg = TrackConfig()
    det = FaceDetector(cfg)
    try:
        res = track_video(video, cfg, detector=det)
        with open_video(video) as (_, it):  # what the detector says on the composite itself
            seen = [sorted(d.box for d in det(rgb)) for _, _, rgb in it]
        alone = {}
        for name, dx in (("single_face.mp4", 0), ("WolfgangLanger_Pexels.mp4", 640 - SHIFT)):
            with open_video(face_videos / name) as (_, it):
                alone[name] = [np.array(det(rgb)[0].box) + [dx, 0, dx, 0] for i, _, rgb in it if i < 72]
    finally:
        det.close()
    assert res.n_frames == 72 and [p.person for p in res.people] == [1, 2]
    # both confirmed on frame 4: ids largest face first, so person 1 is the right (larger) face
    right, left = ({r.frame: r for r in p.records if r.face_found} for p in res.people)
    assert sorted(left) == sorted(right) == list(range(72)), "both faces on every frame (was: one ignored)"
    for f in range(72):
        lb, rb = left[f].box, right[f].box
        assert lb[2] < 640 and rb[0] > 640, f"frame {f}: boxes not in their halves: {lb}, {rb}"
        assert [lb, rb] == seen[f], "the tracker's boxes are the detector's boxes of that frame"
        # the same faces detected in their own videos, shifted by the composite offset. MediaPipe runs at 128x128:
        # in a frame 1.6x as wide each face is smaller in its input, so its box is not the very same (measured:
        # centres 4.6 / 5.7 px apart (median), 6.5 / 11.3 px at most, on 174 / 228 px faces; widths x0.82-1.11)
        for box, ref in ((lb, alone["single_face.mp4"][f]), (rb, alone["WolfgangLanger_Pexels.mp4"][f])):
            b, w = np.array(box), ref[2] - ref[0]
            assert np.hypot(*((b[:2] + b[2:]) - (ref[:2] + ref[2:])) / 2) < 0.07 * w, (f, box, ref)
            assert 0.75 < (b[2] - b[0]) / w < 1.25, (f, box, ref)
    assert all(r.jpeg is not None for p in res.people for r in p.records if r.face_found)

    labels = tmp_path / "labels.csv"
    labels.write_text("video,label,subject\ntwo.mp4,happiness,s1\n")
    out = tmp_path / "tree"
    assert main([str(video), "--out", str(out), "--labels", str(labels)]) == 0
    assert "1 people" not in capsys.readouterr().out
    root = out / "Clip" / "clip_224x224"
    assert sorted(p.name for p in root.iterdir()) == ["two_p1", "two_p2"]
    for clip, person, rec in (("two_p1", "1", right), ("two_p2", "2", left)):
        rows = _rows(root / clip / "boxes.csv")
        assert [int(r["frame"]) for r in rows] == list(range(72)) and {r["person"] for r in rows} == {person}
        assert [float(r["x0"]) for r in rows] == [round(rec[f].box[0], 1) for f in range(72)]
        assert len(list((root / clip).glob("*.jpg"))) == 72
    manifest = _rows(out / "manifest.csv")
    assert [(r["path"], r["label"], r["subject"], r["person"]) for r in manifest] == [
        ("Clip/clip_224x224/two_p1", "happiness", "s1", "1"), ("Clip/clip_224x224/two_p2", "happiness", "s1", "2")]
    index = {r["clip_id"]: r for r in _rows(out / "clips.csv")}
    assert sorted(index) == ["two_p1", "two_p2"] and index["two_p2"]["person"] == "2"
    assert main([str(video), "--out", str(out)]) == 0
    assert "1 skipped" in capsys.readouterr().out  # the video is done: both clips written
    # --faces largest on another tree: one clip under the video's own id, the larger face (the right one)
    assert main([str(video), "--out", str(tmp_path / "one"), "--faces", "largest"]) == 0
    rows = _rows(tmp_path / "one" / "Clip" / "clip_224x224" / "two" / "boxes.csv")
    assert all(float(r["x0"]) > 640 for r in rows) and {r["person"] for r in rows} == {"1"}


@pytest.mark.slow
def test_a_real_face_that_leaves_and_comes_back_keeps_its_id(face_videos: Path, tmp_path: Path) -> None:
    """face_noface.mov until its face has been gone 24 frames (0.9 s), then noface_face.mov from the frame its face
    enters (the same person at the same place): one person, two segments, with colour histograms on; with
    re-identification off, two people."""
    import av

    from fer_zoo.video.face_track import open_video, track_video

    def frames(name: str) -> list[np.ndarray]:
        with open_video(face_videos / name) as (_, it):
            return [rgb for _, _, rgb in it]

    both = frames("face_noface.mov")[:96] + frames("noface_face.mov")[96:168]
    video = tmp_path / "back.mp4"
    with av.open(str(video), "w") as c:
        s = c.add_stream("libx264", rate=25)
        s.width, s.height, s.pix_fmt = both[0].shape[1], both[0].shape[0], "yuv420p"
        s.options = {"crf": "18", "preset": "veryfast", "x264-params": "threads=1:sync-lookahead=0:rc-lookahead=0"}
        for rgb in both:
            for p in s.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")):
                c.mux(p)
        for p in s.encode():
            c.mux(p)
    res = track_video(video, TrackConfig())
    assert [p.person for p in res.people] == [1]
    found = res.people[0].face_found
    assert found[:72].all() and not found[72:96].any() and found[96:168].all()
    assert {r.reason for r in res.people[0].records[72:96]} == {"no detection"}
    off = track_video(video, TrackConfig(reid_seconds=0))
    assert [p.person for p in off.people] == [1, 2]
    assert off.people[0].face_found[:72].all() and not off.people[0].face_found[72:].any()
    assert off.people[1].face_found[96:168].all() and not off.people[1].face_found[:96].any()
