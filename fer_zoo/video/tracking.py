"""Multi-face tracking with stable person ids: pure logic on detections (no images, no MediaPipe).

:class:`MultiFaceTracker` turns per-frame face detections into per-person decisions, one frame at a time, with a
bounded delay. Its caller (``face_track.track_video``, ``predict-video``) decodes frames, runs the detector on the
frames the tracker asks for (:meth:`MultiFaceTracker.wants_detection`) and crops the decided boxes.

Rules (``cfg`` is a ``face_track.TrackConfig``; frames are 0-based video frame indices, times in seconds):

1. **Candidates** are detections with ``score >= cfg.min_confidence``.
2. **Matching**, on every frame where detection ran: confirmed tracks first, then tentative ones, each group by an
   optimal one-to-one assignment (``scipy.optimize.linear_sum_assignment``, the Hungarian method) maximising the IoU
   between where a track should be and a candidate; pairs with IoU < ``cfg.iou_min`` are not matched. Where a track
   should be: its last matched box or that box moved by the track's velocity (constant velocity from its matched
   detections, smoothed), whichever overlaps more, so two faces that cross keep their ids; ``faces="legacy"``
   uses the last box only (the rule before).
3. **New tracks**: a candidate matched by no track, not overlapping (IoU >= ``iou_min``) a box matched on this
   frame, starts a *tentative* track if there is room (``faces``: "all" no limit; an integer N at most N tracks at
   once, live or lost; "largest" = 1). Candidates are taken largest first ("legacy": most confident first). A
   tentative track is confirmed once matched in ``min_hits`` consecutive frames (its first frame included) and then
   all its frames are emitted; one that misses a frame is dropped as a false alarm (MediaPipe's 1-4 frame bursts on
   textures), reported in :attr:`TrackerStep.rejected`. At :meth:`~MultiFaceTracker.finish`, a tentative track
   matched on every frame since the first one is confirmed (a clip shorter than ``min_hits`` frames).
4. **Losses**: a confirmed track not matched on a detection frame is *lost*; matched again within ``max_lost`` frames
   of its last match, its missed frames become frames without a box (``reason`` "no detection" or "other face only")
   inside its segment. Unmatched more than ``max_lost`` frames after its last match, its **segment ends** at its last
   matched frame: trailing misses are dropped, so a segment never ends with lost frames.
5. **Person ids** 1, 2, ... in order of first confirmation (faces confirmed on the same frame: the one first
   acquired, i.e. the largest, first). **Re-identification**: a newly confirmed track takes the
   id of a person whose segment ended (or who is lost right now) when it starts after that person's last match,
   within ``reid_seconds`` of it, with its first box's centre within ``reid_distance`` times the old box's width of
   the old box's centre and a size (square root of the area) ratio within ``reid_size_ratio``, and, when an
   ``appearance`` callable is given and ``reid_appearance > 0``, a colour histogram similarity (Bhattacharyya
   coefficient, as OpenCV's ``compareHist`` ``HISTCMP_BHATTACHARYYA`` uses it) of at least ``reid_appearance``
   between the new face and the mean histogram of the person. Of several such persons the nearest wins. A lost
   person re-identified this way ends its segment now. ``reid_seconds`` 0 turns re-identification off.
   ``faces="legacy"`` (the rule before ``--faces`` existed) has one id, 1, for every face it tracks.
6. **Detection every k frames** (``detect_every``): :meth:`~MultiFaceTracker.wants_detection` is true on every k-th
   frame (counted from the first frame) and on every frame while some track is tentative or lost (confirmation and
   recovery are not slowed). Frames between two matched detections of a track get the linearly interpolated box
   (``interpolated=True``, the lower of the two confidences); frames between a match and a miss get no box.

Emission: each :meth:`~MultiFaceTracker.step` returns the decisions that became final, per person in increasing
frame order; they are never revised. Delay: a confirmed face is decided ``< detect_every`` frames after its frame
(``<= max_lost + detect_every`` frames while lost), a new face ``min_hits - 1`` frames after its first frame (one
more for a re-identified person whose previous segment ended on that frame: see :class:`TrackerStep`).
:attr:`~MultiFaceTracker.horizon` says which frames a caller may forget. Memory is bounded by these delays.

Thresholds (defaults in ``TrackConfig``), measured on the shared real videos (``../shared/data/face-videos``):
re-identification within 2 s at a centre within 1 box width and a size ratio <= 1.5: a face that comes back after
a short loss is near where it left, another person rarely is. Appearance: a 4x4x4 RGB histogram of the central 80 %
of the box (:func:`colour_histogram`, 0.05 ms); the same face on frames up to 3 s apart scored >= 0.969 in
single_face.mp4, WolfgangLanger_Pexels.mp4, face_noface.mov and both halves of the composite (MediaPipe boxes,
every 6th frame; noface_face.mov's only low pairs involve its 3 false detections before the face enters), and 0.995
for the face of face_noface.mov back after 0.9 s in noface_face.mov; the two people of the two-person composite
0.65-0.71; different people on the shared photos a median 0.93 (other lighting, cameras). So the default 0.9
vetoes clearly different faces only: position and size carry the decision, the histogram is a cheap second
opinion.

Why our own code, not a tracker library: ``norfair`` 2.3.0 (Tryolabs), the well-kept candidate that installs
without ``opencv-python``, was run on the same MediaPipe detections (IoU distance 1 - ``iou_min``,
``initialization_delay`` ``min_hits - 1``, ``hit_counter_max`` ``max_lost``). It found the same tracks on the five
shared videos and the two-person composite, but reports a face only from its 5th frame on (no backfill: 68 of 72
frames where we give 72), starts a new id for a face back after a 1 s absence (no re-identification without an
embedding model), has no interpolation for detection every k frames nor bounded-delay emission, took 0.15 ms per
frame against our 0.016 ms, requires ``rich<15`` (this environment has rich 15, pulled by typer) and imports
OpenCV on import. What our code adds over it is bookkeeping around a Hungarian assignment (scipy).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from fer_zoo.video.face_track import TrackConfig

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in pixels of the decoded frame
Appearance = Callable[[Box], np.ndarray]

VELOCITY_SMOOTHING = 0.5  # weight of the newest velocity estimate (exponential smoothing of per-frame box motion)


@dataclass
class Detection:
    """One face found by the detector: ``box`` in pixels of the frame, ``score`` in [0, 1]."""

    box: Box
    score: float


@dataclass(frozen=True)
class TrackDecision:
    """A final verdict on one frame of one person's segment."""

    person: int  # 1, 2, ... stable id within the video
    frame: int  # 0-based frame index of the video
    box: Box | None  # None: the person's face was not found at this frame (a short loss inside a segment)
    confidence: float  # detector score (0 when box is None; the lower neighbour's for an interpolated box)
    reason: str = ""  # why no box ("no detection", "other face only", "detection skipped ..."), or ""
    interpolated: bool = False  # box interpolated between two detections (detect_every > 1)


@dataclass
class TrackerStep:
    """What one :meth:`MultiFaceTracker.step` (or :meth:`~MultiFaceTracker.finish`) settled.

    ``ended``: persons whose current segment ended with this step. A caller handles ``decisions`` first, then
    ``ended``: a person's decisions in the step where its segment ends belong to that segment (its last frames), and
    its next segment (re-identified) starts in a later step. ``rejected``: ``(frame, confidence)`` of detections
    dropped as a false alarm (a tentative track that missed a frame before ``min_hits``).
    """

    decisions: list[TrackDecision] = field(default_factory=list)
    ended: list[int] = field(default_factory=list)
    rejected: list[tuple[int, float]] = field(default_factory=list)


def iou(a: Box, b: Box) -> float:
    """Intersection over union of two ``(x0, y0, x1, y1)`` boxes (0 when either is empty)."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def colour_histogram(rgb: np.ndarray, box: Box, bins: int = 4, inner: float = 0.8) -> np.ndarray:
    """A cheap appearance signature: the joint RGB histogram (``bins`` levels per channel, ``bins ** 3`` float64
    values summing to 1) of the central ``inner`` fraction of ``box`` in ``rgb`` (uint8 ``[H, W, 3]``), sampled on
    a grid of about 32 x 32 pixels. An empty region (a box outside the frame) gives a uniform histogram."""
    x0, y0, x1, y1 = box
    cx, cy, hw, hh = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) * inner / 2, (y1 - y0) * inner / 2
    a0, a1 = int(max(0, cx - hw)), int(min(rgb.shape[1], cx + hw))
    b0, b1 = int(max(0, cy - hh)), int(min(rgb.shape[0], cy + hh))
    if a1 <= a0 or b1 <= b0:
        return np.full(bins ** 3, 1.0 / bins ** 3)
    region = rgb[b0:b1, a0:a1]
    s = max(1, min(region.shape[:2]) // 32)
    q = region[::s, ::s].reshape(-1, 3).astype(np.int64) * bins // 256
    h = np.bincount((q[:, 0] * bins + q[:, 1]) * bins + q[:, 2], minlength=bins ** 3).astype(np.float64)
    return h / h.sum()


def bhattacharyya(p: np.ndarray, q: np.ndarray) -> float:
    """Similarity of two histograms summing to 1: ``sum(sqrt(p * q))``, 1 for the same, 0 for disjoint."""
    return float(np.sqrt(np.clip(p, 0, None) * np.clip(q, 0, None)).sum())


def parse_faces(value: str | int) -> str:
    """``faces`` as recorded: "all", "largest", "legacy" or a positive integer as a string ("2"); raises
    :class:`ValueError` for anything else."""
    text = str(value).strip().lower()
    if text in ("all", "largest", "legacy") or (text.isdigit() and int(text) >= 1):
        return str(int(text)) if text.isdigit() else text
    raise ValueError(f"faces must be 'all', 'largest' or a number of faces >= 1 (or 'legacy'), got {value!r}")


def _area(b: Box) -> float:
    return max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])


def _centre(b: Box) -> tuple[float, float]:
    return (b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0


@dataclass
class _Entry:
    """A frame of a track not emitted yet: a match (box), a skipped frame (no detection ran) or a miss."""

    frame: int
    kind: str  # match | skip | miss
    box: Box | None = None
    score: float = 0.0
    reason: str = ""


@dataclass
class _Track:
    uid: int  # creation order (ties)
    first: int  # first frame
    start_time: float
    first_box: Box
    box: Box  # last matched box
    frame: int  # last matched frame
    time: float  # its time
    score: float
    hits: int = 1
    person: int = 0  # 0 while tentative
    missed: bool = False  # a detection since the last match did not find it
    velocity: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)  # per frame
    pending: list[_Entry] = field(default_factory=list)
    held: bool = False  # confirmed as a person whose previous segment ended in the same step: emitted next step

    def predicted(self, frame: int) -> Box:
        dt = frame - self.frame
        return tuple(c + v * dt for c, v in zip(self.box, self.velocity))  # type: ignore[return-value]


@dataclass
class _Person:
    """What re-identification needs of a person: the last match of its latest segment and its mean histogram."""

    box: Box
    frame: int
    time: float
    hist_sum: np.ndarray | None = None
    hist_n: int = 0

    def add(self, hist: np.ndarray | None) -> None:
        if hist is None:
            return
        self.hist_sum = hist.astype(np.float64) if self.hist_sum is None else self.hist_sum + hist
        self.hist_n += 1

    @property
    def hist(self) -> np.ndarray | None:
        return None if self.hist_sum is None else self.hist_sum / self.hist_n


class MultiFaceTracker:
    """The tracking rules of the module docstring; ``step`` once per frame (consecutive indices), then ``finish``.

    ``cfg``: a ``face_track.TrackConfig`` (reads ``faces``, ``detect_every``, ``min_confidence``, ``min_hits``,
    ``max_lost``, ``iou_min``, ``reid_seconds``, ``reid_distance``, ``reid_size_ratio``, ``reid_appearance``).
    Deterministic: the same detections give the same decisions.
    """

    def __init__(self, cfg: TrackConfig) -> None:
        self.cfg = cfg
        faces = parse_faces(cfg.faces)
        self._legacy = faces == "legacy"
        self._capacity = math.inf if faces == "all" else 1 if faces in ("largest", "legacy") else int(faces)
        self._k = int(cfg.detect_every)
        self._tracks: list[_Track] = []
        self._people: dict[int, _Person] = {}
        self._next_person = 1
        self._uid = 0
        self._first: int | None = None
        self._next: int | None = None
        self._seen = 0
        self._finished = False

    # ------------------------------------------------------------------------------------------------ queries

    def wants_detection(self, frame: int) -> bool:
        """Whether ``frame`` (the next one to ``step``) needs detections: every ``detect_every``-th frame counted
        from the first, and every frame while a track is tentative or lost."""
        if self._k <= 1 or self._first is None:
            return True
        if any(t.person == 0 or t.missed for t in self._tracks):
            return True
        return (frame - self._first) % self._k == 0

    @property
    def horizon(self) -> int:
        """No decision will ever be emitted for a frame ``< horizon``: a caller may drop those frames' pixels."""
        h = self._next if self._next is not None else 0
        for t in self._tracks:
            if t.person == 0:
                h = min(h, t.first)
            elif t.pending:
                h = min(h, t.pending[0].frame)
        return h

    @property
    def persons(self) -> int:
        """How many person ids were given so far."""
        return self._next_person - 1

    # ------------------------------------------------------------------------------------------------ stepping

    def step(self, frame: int, time: float, detections: list[Detection] | None,
             appearance: Appearance | None = None) -> TrackerStep:
        """Feed one frame: ``detections`` (``None``: detection did not run on this frame), ``time`` its timestamp
        in seconds, ``appearance(box)`` a histogram of that box in this frame (for re-identification; optional).

        Raises :class:`ValueError` when frames are not consecutive, when ``detections`` is ``None`` on a frame
        :meth:`wants_detection` asked for, or after :meth:`finish`."""
        if self._finished:
            raise ValueError("step() after finish()")
        if self._next is not None and frame != self._next:
            raise ValueError(f"frames must be stepped in order: expected frame {self._next}, got {frame}")
        if detections is None and self.wants_detection(frame):
            raise ValueError(f"frame {frame} needs detections (wants_detection is true), got None")
        if self._first is None:
            self._first = frame
        self._next = frame + 1
        self._seen += 1
        out = TrackerStep()
        self._release(out)
        if detections is None:
            for t in self._tracks:  # all confirmed and found at their last detection (else detection would run)
                t.pending.append(_Entry(frame, "skip"))
            return out
        cands = [d for d in detections if d.score >= self.cfg.min_confidence]
        motion = not self._legacy
        confirmed = [t for t in self._tracks if t.person]
        tentative = [t for t in self._tracks if not t.person]
        pairs, free = self._assign(confirmed, list(range(len(cands))), cands, frame, motion)
        pairs2, free = self._assign(tentative, free, cands, frame, motion)
        matched_boxes = [cands[j].box for _, j in pairs + pairs2]
        hist_cache: dict[int, np.ndarray] = {}

        def hist(j: int) -> np.ndarray | None:
            if appearance is None or not self._use_appearance:
                return None
            if j not in hist_cache:
                hist_cache[j] = np.asarray(appearance(cands[j].box), np.float64)
            return hist_cache[j]

        for t, j in pairs:
            out.decisions.extend(self._match_confirmed(t, cands[j], frame, time))
            self._people[t.person].add(hist(j))
        for t, j in pairs2:
            self._update(t, cands[j], frame, time)
            t.pending.append(_Entry(frame, "match", cands[j].box, cands[j].score))
            t.hits += 1
        done = {id(t) for t, _ in pairs + pairs2}
        reason = "other face only" if cands else "no detection"
        for t in confirmed:
            if id(t) in done:
                continue
            if frame - t.frame > self.cfg.max_lost:
                self._end(t, out)
            else:
                t.missed = True
                t.pending.append(_Entry(frame, "miss", reason=reason))
        for t in tentative:
            if id(t) not in done:
                out.rejected.extend((e.frame, e.score) for e in t.pending)
                self._tracks.remove(t)
        # confirmations (oldest first), then new tracks from what is left
        for t, j in sorted(pairs2, key=lambda p: p[0].uid):
            if t.hits >= self.cfg.min_hits:
                self._confirm(t, out, hist(j))
        order = sorted(free, key=self._priority(cands))
        started: list[Box] = []
        for j in order:
            if len(self._tracks) >= self._capacity:
                break
            box = cands[j].box
            if any(iou(box, b) >= self.cfg.iou_min for b in matched_boxes + started):
                continue  # the same face detected twice, or a face on top of a tracked one
            started.append(box)
            t = _Track(self._uid, frame, time, box, box, frame, time, cands[j].score,
                       pending=[_Entry(frame, "match", box, cands[j].score)])
            self._uid += 1
            self._tracks.append(t)
            if self.cfg.min_hits <= 1:
                self._confirm(t, out, hist(j))
        return out

    def finish(self) -> TrackerStep:
        """End of the video: a tentative track matched on every frame since the first is confirmed (a clip shorter
        than ``min_hits``), other tentative tracks are rejected, every segment ends at its last matched frame."""
        out = TrackerStep()
        if self._finished:
            return out
        self._finished = True
        self._release(out)
        for t in sorted(self._tracks, key=lambda t: t.uid):
            if t.person == 0:
                if t.first == self._first and t.hits == self._seen:
                    self._confirm(t, out, None)
                else:
                    out.rejected.extend((e.frame, e.score) for e in t.pending)
                    self._tracks.remove(t)
        for t in sorted(self._tracks, key=lambda t: t.uid):
            self._end(t, out)
        return out

    # ------------------------------------------------------------------------------------------------ internals

    @property
    def _use_appearance(self) -> bool:
        return not self._legacy and self.cfg.reid_seconds > 0 and self.cfg.reid_appearance > 0

    def _priority(self, cands: list[Detection]) -> Callable[[int], tuple]:
        if self._legacy:  # the most confident face, as the single-face tracker did
            return lambda j: (-cands[j].score, j)
        return lambda j: (-_area(cands[j].box), -cands[j].score, cands[j].box[0], cands[j].box[1], j)

    def _assign(self, tracks: list[_Track], free: list[int], cands: list[Detection], frame: int,
                motion: bool) -> tuple[list[tuple[_Track, int]], list[int]]:
        """Optimal one-to-one matching of ``tracks`` to the candidates ``free`` by IoU (>= iou_min)."""
        if not tracks or not free:
            return [], free
        from scipy.optimize import linear_sum_assignment

        m = np.array([[self._overlap(t, cands[j].box, frame, motion) for j in free] for t in tracks])
        rows, cols = linear_sum_assignment(-m)
        pairs = [(tracks[r], free[c]) for r, c in zip(rows, cols) if m[r, c] >= self.cfg.iou_min]
        taken = {j for _, j in pairs}
        return sorted(pairs, key=lambda p: p[0].uid), [j for j in free if j not in taken]

    @staticmethod
    def _overlap(t: _Track, box: Box, frame: int, motion: bool) -> float:
        """IoU of ``box`` with where ``t`` should be: its predicted box, or its last box if that overlaps more
        (a face that stopped where it vanished)."""
        last = iou(t.box, box)
        return max(last, iou(t.predicted(frame), box)) if motion else last

    def _update(self, t: _Track, d: Detection, frame: int, time: float) -> None:
        """Move ``t`` to its new match; its velocity: the per-frame box motion, smoothed once there is one."""
        dt = frame - t.frame
        if dt > 0:
            v = tuple((n - o) / dt for n, o in zip(d.box, t.box))
            a = 1.0 if t.hits <= 1 else VELOCITY_SMOOTHING
            t.velocity = tuple(a * x + (1 - a) * y for x, y in zip(v, t.velocity))  # type: ignore[assignment]
        t.box, t.frame, t.time, t.score, t.missed = d.box, frame, time, d.score, False

    def _match_confirmed(self, t: _Track, d: Detection, frame: int, time: float) -> list[TrackDecision]:
        """Emit everything up to ``frame``: skipped frames interpolated when no miss came between, misses as
        frames without a box, then the match itself."""
        out: list[TrackDecision] = []
        span = frame - t.frame
        missed = any(e.kind == "miss" for e in t.pending)
        for e in t.pending:
            if e.kind == "skip" and not missed:
                w = (e.frame - t.frame) / span
                box = tuple(a + (b - a) * w for a, b in zip(t.box, d.box))
                out.append(TrackDecision(t.person, e.frame, box, min(t.score, d.score), "", True))  # type: ignore[arg-type]
            elif e.kind == "skip":
                out.append(TrackDecision(t.person, e.frame, None, 0.0,
                                         "detection skipped (detect_every), the face was missed at the next one"))
            else:
                out.append(TrackDecision(t.person, e.frame, None, 0.0, e.reason))
        out.append(TrackDecision(t.person, frame, d.box, d.score))
        t.pending = []
        self._update(t, d, frame, time)
        t.hits += 1
        p = self._people[t.person]
        p.box, p.frame, p.time = d.box, frame, time
        return out

    def _end(self, t: _Track, out: TrackerStep) -> None:
        """End ``t``'s segment at its last matched frame (its pending skips and misses are dropped)."""
        t.pending = []
        self._tracks.remove(t)
        if t.person and t.person not in out.ended:
            out.ended.append(t.person)

    def _confirm(self, t: _Track, out: TrackerStep, hist: np.ndarray | None) -> None:
        person = self._reidentify(t, hist, out) if not self._legacy else 1 if self._people else None
        if person is None:  # a new person
            person = self._next_person
            self._next_person += 1
        t.person = person
        if person in out.ended:  # its previous segment ended in this step: the new one starts with the next step
            t.held = True
        else:
            out.decisions.extend(TrackDecision(person, e.frame, e.box, e.score) for e in t.pending)
            t.pending = []
        rec = self._people.get(person)
        if rec is None:
            rec = self._people[person] = _Person(t.box, t.frame, t.time)
        rec.box, rec.frame, rec.time = t.box, t.frame, t.time
        rec.add(hist)

    def _release(self, out: TrackerStep) -> None:
        """Emit the confirmation frames held back by :meth:`_confirm`."""
        for t in self._tracks:
            if t.held:
                out.decisions.extend(TrackDecision(t.person, e.frame, e.box, e.score) for e in t.pending)
                t.pending, t.held = [], False

    def _reidentify(self, t: _Track, hist: np.ndarray | None, out: TrackerStep) -> int | None:
        cfg = self.cfg
        if cfg.reid_seconds <= 0:
            return None
        live = {u.person: u for u in self._tracks if u.person and u is not t}
        best: tuple[float, int, int] | None = None
        for person, p in self._people.items():
            if person in live and not live[person].missed:
                continue  # on screen right now
            if not (t.first > p.frame and 0 <= t.start_time - p.time <= cfg.reid_seconds):
                continue
            width = max(p.box[2] - p.box[0], 1e-6)
            (ax, ay), (bx, by) = _centre(p.box), _centre(t.first_box)
            dist = math.hypot(ax - bx, ay - by) / width
            sa, sb = math.sqrt(_area(p.box)), math.sqrt(_area(t.first_box))
            ratio = max(sa, sb) / max(min(sa, sb), 1e-6)
            if dist > cfg.reid_distance or ratio > cfg.reid_size_ratio:
                continue
            ph = p.hist
            if (self._use_appearance and hist is not None and ph is not None
                    and bhattacharyya(hist, ph) < cfg.reid_appearance):
                continue  # another face
            key = (dist, -p.frame, person)
            if best is None or key < best:
                best = key
        if best is None:
            return None
        person = best[2]
        if person in live:  # lost right now and back elsewhere: its old segment ends at its last match
            self._end(live[person], out)
        return person
