"""The streaming path from a video (file, camera or stream) to per-person, per-frame answers, in flat memory.

Frames flow through one pass; nothing waits for the end of the video::

    decode ──► detect (every detect_every frames) ──► track people ──► crop each person's face
           ──► extractors (batched over people and frames) ──► windows per person ──► model(s)
           ──► per-frame means of the windows that cover each frame ──► rows (frame, window) ──► the sink

- **Tracking** (:class:`fer_zoo.video.tracking.MultiFaceTracker`) gives every person an id and, per frame, the
  person's face box or none; its decisions come with a bounded delay, so only those frames' pixels are held.
- **Crops** are made exactly as ``preprocess`` makes them (:func:`fer_zoo.video.face_track.face_crop`: snapped box,
  margin, size, JPEG round trip), so the features are those ``extract`` computes on a ``preprocess`` tree.
- **Windows** (:class:`datamodules.windows.WindowCutter`) run over each person's segment (first to last frame
  where the face was tracked; short losses inside are frames without a valid feature). Each window is sampled as
  the DataModule samples an evaluation clip (store ``frame_cap``, TSN middle frames, ``short_clips``, the store's
  float16), through the DataModule's own ``FeatureDataset``.
- **Per-frame answers** (:class:`fer_zoo.perframe.average.OverlapAverager`): the mean of the probabilities of the
  windows covering the frame; a window without a valid sampled frame gives no answer.

Memory holds the frames the tracker has not decided on, at most ``batch_frames`` face crops waiting for the
extractors, and per person the features of one window plus a stride: none of it grows with the video's length.
The caller's :class:`VideoSink` gets every row as soon as it is final.

Several models can score one pass (``scorers``) when they share extractors and crops (the still-video benchmark).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from datamodules.frames import ClipReadError, cap_indices
from datamodules.windows import WindowCutter
from fer_zoo.perframe.average import OverlapAverager
from fer_zoo.perframe.outputs import OutputLayout
from fer_zoo.video.face_track import FaceDetector, TrackConfig, decode_jpeg, face_crop
from fer_zoo.video.run_info import RunInfo
from fer_zoo.video.tracking import colour_histogram


@dataclass
class Scorer:
    """One model that scores the windows: its name (a column/key for the sink), run, model and output layout."""

    name: str
    run: RunInfo
    model: Any

    @property
    def dense(self) -> bool:
        """A per-frame (dense task) model: each window gives one output per frame token."""
        return self.run.task == "dense"

    @property
    def layout(self) -> OutputLayout:
        """The columns of its per-frame output: class probabilities; for a dense model, those of its tasks (EXPR
        class probabilities, valence and arousal in [-1, 1], action-unit activation probabilities)."""
        if not self.dense:
            return OutputLayout(classes=tuple(self.model.class_names))
        tasks = list(self.model.tasks)
        return OutputLayout(classes=tuple(self.model.class_names) if "EXPR" in tasks else (),
                            values=("valence", "arousal") if "VA" in tasks else (),
                            activations=tuple(self.model.au_names) if "AU" in tasks else ())


class VideoSink(Protocol):
    """Where the rows of one video go (the CLI's tables and live printout; a benchmark's collector)."""

    def frames(self, scorer: str, person: int, rows: list[dict[str, Any]]) -> None:
        """Settled frame rows of one person, in frame order: ``frame, time, valid, windows, vec`` (``vec``
        ``float64 [K]`` in the scorer's layout, NaN without an answer), ``arrived`` (monotonic seconds)."""

    def windows(self, scorer: str, person: int, rows: list[dict[str, Any]]) -> None:
        """Scored windows of one person: ``window, start_frame, end_frame, start_time, end_time, valid_frames,
        vec``."""

    def person_ended(self, person: int) -> None:
        """The person's current segment ended: every one of its rows so far was delivered."""

    def decisions(self, rows: list[dict[str, Any]]) -> None:
        """The tracker's decisions as they become final: ``person, frame, timestamp, x0, y0, x1, y1, confidence,
        face_found, interpolated, reason`` (boxes in pixels of the decoded frame)."""


@dataclass
class StageTimes:
    """Seconds per stage of one video, wall clock of the thread that runs it: decode, detect, track+crop and model in
    the main thread; ``extract:<modality>`` in the extraction worker thread, overlapping the main thread's stages
    (file inputs), so the stages add up to more than the wall time; ``wait:extract`` is the main thread idle,
    waiting for the worker (where extraction is the bottleneck)."""

    seconds: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, t0: float) -> float:
        now = time.perf_counter()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + now - t0
        return now


@dataclass
class VideoStats:
    frames: int = 0
    face_frames: int = 0  # (person, frame) pairs with a face crop
    people: dict[int, dict[str, Any]] = field(default_factory=dict)  # person -> frames, face_frames, first, last
    times: StageTimes = field(default_factory=StageTimes)
    duration: float = 0.0  # seconds of video (last frame time + one frame)
    fps: float | None = None
    ended_early: str = ""  # a live input that was stopped or broke: why (what was read is answered)


class _Ring:
    """One person's per-frame features of the current segment from ``base`` on (frames below are dropped as soon
    as no window can use them): ``feats[m]`` ``float16 [n, D_m]``, ``valid[m]`` ``bool [n]``, ``time``, ``face``."""

    def __init__(self, dims: dict[str, int], first: int) -> None:
        self.base = first
        self.dims = dims
        self.feats = {m: np.zeros((0, d), np.float16) for m, d in dims.items()}
        self.valid = {m: np.zeros(0, bool) for m in dims}
        self.time = np.zeros(0)
        self.face = np.zeros(0, bool)
        self.arrived = np.zeros(0)

    @property
    def end(self) -> int:  # one past the last frame held
        return self.base + len(self.time)

    def append(self, feats: dict[str, np.ndarray], valid: dict[str, np.ndarray], times: np.ndarray,
               face: np.ndarray, arrived: np.ndarray) -> None:
        for m in self.dims:
            self.feats[m] = np.concatenate([self.feats[m], feats[m]])
            self.valid[m] = np.concatenate([self.valid[m], valid[m]])
        self.time = np.concatenate([self.time, times])
        self.face = np.concatenate([self.face, face])
        self.arrived = np.concatenate([self.arrived, arrived])

    def drop_before(self, frame: int) -> None:
        k = frame - self.base
        if k <= 0:
            return
        for m in self.dims:
            self.feats[m], self.valid[m] = self.feats[m][k:], self.valid[m][k:]
        self.time, self.face, self.arrived = self.time[k:], self.face[k:], self.arrived[k:]
        self.base = frame


class _WindowStore:
    """The part of ``FeatureStore`` that ``FeatureDataset`` uses, over one person's ring: clip id ``"start:end"``
    is a window, held as a store of its ``frame_cap`` would hold it."""

    def __init__(self, ring: _Ring, modality: str, frame_cap: int | None) -> None:
        self.ring, self.m, self.frame_cap = ring, modality, frame_cap

    @property
    def dim(self) -> int:
        return self.ring.dims[self.m]

    def clip(self, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        s, e = (int(x) for x in clip_id.split(":"))
        held = s + cap_indices(e - s + 1, self.frame_cap) - self.ring.base
        return self.ring.feats[self.m][held], self.ring.valid[self.m][held]


@dataclass
class _Person:
    pid: int
    ring: _Ring
    cutter: WindowCutter
    averagers: dict[str, OverlapAverager]
    pushed: int  # next frame to push to the cutter (features known below ``ring.end``)
    windows_done: int = 0
    pending: list[tuple[int, float, bool, float]] = field(default_factory=list)  # decided, not yet in the ring
    open: bool = True


class VideoPipeline:
    """Process videos one at a time (see the module docstring).

    ``scorers`` share ``extractors`` (built from the first scorer's run) and the crop settings ``track``; ``window``
    and ``stride`` in frames; ``batch_frames``: face crops per extractor call (also the most crops ever held);
    ``max_wait_s``: for live input, extract a smaller batch once its oldest crop waited this long (latency).
    ``on_features(person, frames, feats, valid)``: optional hook with every extracted batch (benchmarks)."""

    def __init__(self, scorers: list[Scorer], extractors: dict[str, Any], track: TrackConfig, window: int,
                 stride: int, detector: FaceDetector | None = None, batch_frames: int = 32,
                 max_wait_s: float = 0.25, on_features: Callable[..., None] | None = None) -> None:
        if not scorers:
            raise ValueError("no model to score with")
        self.scorers = scorers
        self.run = scorers[0].run
        self.extractors = extractors
        self.track = track
        self.window, self.stride = window, stride
        self.detector = detector
        self.batch_frames = max(1, batch_frames)
        self.max_wait_s = max_wait_s
        self.on_features = on_features
        self.dims = {m.key: int(extractors[m.key].dim) for m in self.run.modalities}

    # ------------------------------------------------------------------------------------------------ one video

    def process(self, frames: Iterator[Any], sink: VideoSink, live: bool = False, soundtrack: Any = None,
                progress: Callable[[int], None] | None = None, fps: float | None = None) -> VideoStats:
        """Run every frame of ``frames`` (items with ``index``, ``time``, ``rgb``, ``arrived``) through the
        pipeline, rows to ``sink``. ``soundtrack``: the video's sound for audio modalities (``None``: their frames
        are invalid). Raises what decoding raises (``ClipReadError``); rows delivered before that stay delivered."""
        from fer_zoo.video.tracking import MultiFaceTracker

        own = self.detector is None
        det = self.detector or FaceDetector(self.track)
        tracker = MultiFaceTracker(self.track)
        stats = VideoStats(fps=fps)
        self._stats, self._sink, self._sound = stats, sink, soundtrack
        self._people: dict[int, _Person] = {}
        self._windows: dict[int, int] = {}  # person -> windows scored so far (window numbers go on across segments)
        self._queue: list[tuple[_Person, int, np.ndarray, float]] = []  # face crops waiting for the extractors
        self._inflight: tuple[Any, Any] | None = None  # (batch, future): features being extracted
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="extract")
        pixels: dict[int, tuple[float, np.ndarray, float]] = {}
        self._last_time = 0.0
        cfg = self.track
        histograms = cfg.faces != "legacy" and cfg.reid_seconds > 0 and cfg.reid_appearance > 0
        self._stop = False
        restore = _catch_ctrl_c(self) if live else None
        try:
            try:
                self._frames(frames, tracker, det, pixels, live, progress, histograms, stats)
                if self._stop:
                    stats.ended_early = "stopped (Ctrl-C)"
            except (KeyboardInterrupt, ClipReadError) as err:
                if not live:  # a file that breaks part way is not a result (the caller keeps its rows apart)
                    raise
                # a live input ends when it ends: what was read is answered
                stats.ended_early = "stopped (Ctrl-C)" if isinstance(err, KeyboardInterrupt) else str(err)
            step = tracker.finish()
            self._decide(step.decisions, pixels)
            for pid in step.ended:
                self._end(pid)
            for pid in list(self._people):
                self._end(pid)
        finally:
            if restore is not None:
                restore()
            self._inflight = None
            self._pool.shutdown(wait=True)
            if own:
                det.close()
        frame_s = 1.0 / stats.fps if stats.fps else 0.0
        stats.duration = self._last_time + frame_s if stats.frames else 0.0
        return stats

    def _frames(self, frames: Iterator[Any], tracker: Any, det: Any, pixels: dict, live: bool,
                progress: Callable[[int], None] | None, histograms: bool, stats: VideoStats) -> None:
        """The per-frame loop of :meth:`process`: decode, detect, track, crop; extract in batches."""
        times = stats.times
        t = time.perf_counter()
        for fr, last in _with_last(frames):
            if self._stop:  # Ctrl-C on a live input: stop between frames, never inside a batch
                break
            t = times.add("decode", t)
            # the last frame is always detected, so no person's segment ends on interpolated frames
            dets = det(fr.rgb) if tracker.wants_detection(fr.index) or last else None
            t = times.add("detect", t)
            pixels[fr.index] = (fr.time, fr.rgb, fr.arrived)
            look = (lambda box, rgb=fr.rgb: colour_histogram(rgb, box)) if histograms else None
            step = tracker.step(fr.index, fr.time, dets, look)
            self._decide(step.decisions, pixels)
            for pid in step.ended:
                self._end(pid)
            for f in [f for f in pixels if f < tracker.horizon]:
                del pixels[f]
            stats.frames += 1
            self._last_time = fr.time
            t = times.add("track+crop", t)
            if len(self._queue) >= self.batch_frames or (
                    live and self._queue and time.monotonic() - self._oldest_wait() > self.max_wait_s):
                self._flush(wait=live)
            if progress is not None:
                progress(1)
            t = time.perf_counter()

    def _oldest_wait(self) -> float:
        return self._queue[0][3]  # arrival (monotonic seconds) of the oldest queued crop's frame

    def _decide(self, decisions: list[Any], pixels: dict[int, tuple[float, np.ndarray, float]]) -> None:
        """Tracker decisions -> each person's pending frames, face crops queued for the extractors."""
        self._sink.decisions([_box_row(d, pixels[d.frame][0]) for d in decisions])
        for d in decisions:
            p = self._people.get(d.person)
            if p is None or not p.open:
                p = self._new_person(d.person, d.frame)
            ts, rgb, arrived = pixels[d.frame]
            face = d.box is not None
            p.pending.append((d.frame, ts, face, arrived))
            info = self._stats.people.setdefault(d.person, {"frames": 0, "face_frames": 0, "first_frame": d.frame,
                                                            "first_time": ts})
            info["frames"] += 1
            info["face_frames"] += int(face)
            info["last_frame"], info["last_time"] = d.frame, ts
            if face:
                self._queue.append((p, d.frame, decode_jpeg(face_crop(rgb, d.box, self.track)), arrived))
                self._stats.face_frames += 1

    def _new_person(self, pid: int, first: int) -> _Person:
        p = _Person(pid, _Ring(self.dims, first), WindowCutter(self.window, self.stride, first),
                    {s.name: OverlapAverager(s.layout.width, first) for s in self.scorers}, first,
                    windows_done=self._windows.get(pid, 0))
        self._people[pid] = p
        return p

    def _end(self, pid: int) -> None:
        p = self._people.get(pid)
        if p is None or not p.open:
            return
        self._flush()
        self._advance(p, closing=True)
        p.open = False
        self._sink.person_ended(pid)
        del self._people[pid]

    # ------------------------------------------------------------------------------------- features and windows

    def _flush(self, wait: bool = True) -> None:
        """Hand the queued crops to the extractors as one batch, with every person's frames decided so far.

        ``wait`` False (file inputs, mid-video): the batch is extracted in a worker thread while the main thread
        decodes, detects and crops the next frames (two cores busy); the previous batch's features are applied
        first, so people's frames always enter their rings in order. ``wait`` True: everything decided so far is
        extracted, applied and scored before this returns (a person's end, the end of the video, live input)."""
        if self._inflight is not None:
            t = time.perf_counter()
            done = self._inflight[1].result()
            self._stats.times.add("wait:extract", t)  # the main thread idle, waiting for the worker
            self._apply(*self._inflight[0], done)
            self._inflight = None
        batch = (list(self._queue), [(p, p.pending) for p in self._people.values() if p.pending])
        self._queue = []
        for p, _ in batch[1]:
            p.pending = []
        if not batch[0] and not batch[1]:
            return
        crops = np.stack([c for _, _, c, _ in batch[0]]) if batch[0] else None
        future = self._pool.submit(self._extract, crops)
        if wait:
            t = time.perf_counter()
            done = future.result()
            self._stats.times.add("wait:extract", t)
            self._apply(*batch, done)
        else:
            self._inflight = (batch, future)

    def _extract(self, crops: np.ndarray | None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Every image extractor on one batch of crops (worker thread): ``{modality: (float16 [n, D], bool [n])}``."""
        out: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if crops is None:
            return out
        for key, ext in self.extractors.items():
            if ext.kind == "audio":
                continue
            t = time.perf_counter()
            f, v = ext.extract(crops)
            self._stats.times.add(f"extract:{key}", t)
            out[key] = (np.asarray(f).astype(np.float16), np.asarray(v, bool))
        return out

    def _apply(self, queue: list[tuple[_Person, int, np.ndarray, float]],
               persons: list[tuple[_Person, list[tuple[int, float, bool, float]]]],
               crops: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
        """One extracted batch into the people's rings (in frame order), then their windows scored."""
        times = self._stats.times
        index = {(p.pid, f): i for i, (p, f, _, _) in enumerate(queue)}
        for p, pending in persons:
            n = len(pending)
            frames = np.array([f for f, _, _, _ in pending], np.int64)
            ts = np.array([t for _, t, _, _ in pending])
            face = np.array([fc for _, _, fc, _ in pending], bool)
            arrived = np.array([a for _, _, _, a in pending])
            feats = {m: np.zeros((n, d), np.float16) for m, d in self.dims.items()}
            valid = {m: np.zeros(n, bool) for m in self.dims}
            rows = [index.get((p.pid, int(f))) for f in frames]
            for key, ext in self.extractors.items():
                if ext.kind == "audio":
                    t = time.perf_counter()
                    feats[key], valid[key] = self._audio(ext, ts)
                    times.add(f"extract:{key}", t)
                    continue
                f, v = crops.get(key, (None, None))
                for i, r in enumerate(rows):
                    if r is not None and f is not None:
                        feats[key][i], valid[key][i] = f[r], v[r]
            bad = {m: ~np.isfinite(feats[m].astype(np.float32)).all(axis=1) for m in feats}
            for m in feats:  # features beyond float16 (an extractor's garbage): invalid, never fed as inf
                valid[m] &= ~bad[m]
            if not np.array_equal(frames, np.arange(p.ring.end, p.ring.end + n)):
                raise RuntimeError(f"person {p.pid}: decided frames {frames[:3].tolist()}... do not continue its "
                                   f"segment at frame {p.ring.end} (every frame of a segment must be decided)")
            p.ring.append(feats, valid, ts, face, arrived)
            if self.on_features is not None:
                self.on_features(p.pid, frames, feats, valid)
            self._advance(p)

    def _audio(self, ext: Any, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        from extractors.audio_base import AudioInput

        if self._sound is None:
            return np.zeros((len(ts), ext.dim), np.float16), np.zeros(len(ts), bool)
        f, v = ext.extract(AudioInput(self._sound, ts))
        return np.asarray(f).astype(np.float16), np.asarray(v, bool)

    def _advance(self, p: _Person, closing: bool = False) -> None:
        """Push the person's newly known frames to its window cutter, score the windows that completed (and the
        closing one), hand settled frames to the sink and drop features no later window needs."""
        wins: list[tuple[int, int]] = []
        while p.pushed < p.ring.end:
            wins.extend(p.cutter.push(p.pushed))
            p.pushed += 1
        if closing:
            wins.extend(p.cutter.finish())
        if wins:
            self._score(p, wins)
        settled = p.ring.end if closing else min(p.cutter.settled(), p.ring.end)
        for s in self.scorers:
            out = p.averagers[s.name].pop(settled)
            if len(out):
                k = out.frames - p.ring.base
                rows = [{"frame": int(f), "time": float(p.ring.time[i]), "valid": bool(p.ring.face[i]),
                         "windows": int(c), "vec": vec, "arrived": float(p.ring.arrived[i])}
                        for f, i, vec, c in zip(out.frames, k, out.mean, out.count)]
                self._sink.frames(s.name, p.pid, rows)
        p.ring.drop_before(settled)

    def _score(self, p: _Person, wins: list[tuple[int, int]]) -> None:
        import torch
        from torch.utils.data import default_collate

        from datamodules.feature_datamodule import FeatureDataset

        times = self._stats.times
        ids = [f"{s}:{e}" for s, e in wins]
        for sc in self.scorers:
            t = time.perf_counter()
            if sc.dense:
                self._score_dense(sc, p, wins)
                times.add("model", t)
                continue
            stores = {m.key: _WindowStore(p.ring, m.key, m.frame_cap) for m in sc.run.modalities}
            ds = FeatureDataset(stores, ids, [0] * len(ids), sc.run.num_frames, train=False,
                                short_clips=sc.run.short_clips)
            batch = default_collate([ds[i] for i in range(len(ds))])
            with torch.inference_mode():
                probs = sc.model(batch["features"], batch["valid"]).float().softmax(dim=-1).numpy()
            seen = torch.stack(list(batch["valid"].values())).any(dim=0).sum(dim=1).numpy()
            probs = probs.astype(np.float64)
            probs[seen == 0] = np.nan  # no valid frame: no evidence, no answer
            rows = []
            for (s, e), pr, n in zip(wins, probs, seen):
                p.averagers[sc.name].add(np.arange(s, e + 1), pr)
                rows.append({"window": p.windows_done + len(rows), "start_frame": s, "end_frame": e,
                             "start_time": float(p.ring.time[s - p.ring.base]),
                             "end_time": float(p.ring.time[e - p.ring.base]), "valid_frames": int(n), "vec": pr})
            times.add("model", t)
            self._sink.windows(sc.name, p.pid, rows)
        p.windows_done += len(wins)
        self._windows[p.pid] = p.windows_done

    def _score_dense(self, sc: Scorer, p: _Person, wins: list[tuple[int, int]]) -> None:
        """A dense model's windows: consecutive frames in, one output per frame token out (softmax for EXPR,
        sigmoid for AUs, values for V/A), each added to the frames it speaks for; a window row is the mean over its
        frames. Windows of equal length are batched."""
        import torch

        rows = []
        for length in sorted({e - s + 1 for s, e in wins}):
            group = [(s, e) for s, e in wins if e - s + 1 == length]
            idx = np.stack([np.arange(s, e + 1) - p.ring.base for s, e in group])
            feats = {m.key: torch.from_numpy(p.ring.feats[m.key][idx].astype(np.float32)) for m in sc.run.modalities}
            valid = {m.key: torch.from_numpy(p.ring.valid[m.key][idx]) for m in sc.run.modalities}
            with torch.inference_mode():
                out = sc.model(feats, valid)
            parts = []
            for task in sc.model.tasks:
                o = out[task].float()
                parts.append(o.softmax(dim=-1) if task == "EXPR" else o.sigmoid() if task == "AU" else o)
            values = torch.cat(parts, dim=-1).numpy().astype(np.float64)
            seen = torch.stack(list(valid.values())).any(dim=0)  # [W, T]: a token with no valid feature
            values[~seen.numpy()] = np.nan  # no evidence at that frame: it gives no answer
            for (s, e), v, ok in zip(group, values, seen.numpy()):
                p.averagers[sc.name].add(np.arange(s, e + 1), v)
                rows.append({"start_frame": s, "end_frame": e, "start_time": float(p.ring.time[s - p.ring.base]),
                             "end_time": float(p.ring.time[e - p.ring.base]), "valid_frames": int(ok.sum()),
                             "vec": np.nanmean(v, axis=0) if ok.any() else np.full(v.shape[1], np.nan)})
        rows.sort(key=lambda r: r["start_frame"])
        for i, r in enumerate(rows):
            r["window"] = p.windows_done + i
        self._sink.windows(sc.name, p.pid, rows)


def _box_row(d: Any, ts: float) -> dict[str, Any]:
    b = d.box
    return {"person": d.person, "frame": d.frame, "timestamp": round(float(ts), 6),
            "x0": round(b[0], 1) if b else "", "y0": round(b[1], 1) if b else "",
            "x1": round(b[2], 1) if b else "", "y1": round(b[3], 1) if b else "",
            "confidence": round(d.confidence, 4) if b else "", "face_found": int(b is not None),
            "interpolated": int(bool(getattr(d, "interpolated", False))), "reason": d.reason}


def window_dataset(run: RunInfo, windows: list[tuple[int, int]], feats: dict[str, np.ndarray],
                   valid: dict[str, np.ndarray]) -> Any:
    """The model inputs of ``windows`` over whole per-frame arrays (``feats[m]`` ``[n_frames, D_m]``, ``valid[m]``
    ``bool [n_frames]``), item ``i`` for ``windows[i]``: a ``FeatureDataset`` (evaluation mode), sampled exactly as
    the pipeline samples a window."""
    from datamodules.feature_datamodule import FeatureDataset

    n = len(next(iter(valid.values())))
    ring = _Ring({m: f.shape[1] for m, f in feats.items()}, 0)
    ring.append(feats, valid, np.zeros(n), np.ones(n, bool), np.zeros(n))
    stores = {m.key: _WindowStore(ring, m.key, m.frame_cap) for m in run.modalities}
    return FeatureDataset(stores, [f"{s}:{e}" for s, e in windows], [0] * len(windows), run.num_frames,
                          train=False, short_clips=run.short_clips)


def _with_last(frames: Iterator[Any]) -> Iterator[tuple[Any, bool]]:
    """``(frame, is_last)`` one frame behind the input (a live stream's last frame is known when it ends)."""
    it = iter(frames)
    prev = next(it, None)
    while prev is not None:
        nxt = next(it, None)
        yield prev, nxt is None
        prev = nxt


def _catch_ctrl_c(pipeline: VideoPipeline) -> Callable[[], None] | None:
    """While a live input runs, Ctrl-C (SIGINT) only sets ``pipeline._stop``: the frame loop stops before the next
    frame, so no batch of crops is half handed over (an interrupt there lost the batch being extracted). Returns the
    function that restores the previous handler; None off the main thread (signals are not ours to catch there)."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread():
        return None

    def stop(_signum: int, _frame: Any) -> None:
        pipeline._stop = True

    previous = signal.signal(signal.SIGINT, stop)
    return lambda: signal.signal(signal.SIGINT, previous)
