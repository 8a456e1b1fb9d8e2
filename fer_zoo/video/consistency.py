"""Still-video consistency and window stability: does a model say on video what it says on a photo (issue 16)?

- :func:`encode_still_video` writes a photo as a real video file (H.264 through PyAV), ``frames`` copies of it,
  optionally with small per-frame jitter (a shift of a few pixels, a brightness change), the way a still face
  looks on a camera.
- :func:`score_videos` runs videos through exactly the ``predict-video`` path (decode, face track and crop, the
  run's extractors, windows, the model) for one or several runs at once: the features depend only on the
  extractors, so they are computed once per video and scored by every run (all runs must share the extractors).
- :func:`flip_rate`: the fraction of adjacent windows whose top class differs (window stability).
- :func:`agreement_breakdown`: where a disagreement comes from (the clip-statistics head alone, each modality's
  video features held at the photo's, how far each modality's clip mean moved from photo to video).

``benchmarks/bench_still_video.py`` reports the full figures; ``tests/test_still_video.py`` checks a sample.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fer_zoo.video.face_track import FaceDetector, track_video
from fer_zoo.video.pipeline import window_dataset
from fer_zoo.video.run_info import RunInfo, build_extractors, load_model, resolve_run


@dataclass(frozen=True)
class Jitter:
    """Per-frame jitter of a still video: a uniform integer shift in ``[-shift_px, shift_px]`` on each axis (edge
    pixels repeated) and a brightness factor uniform in ``[1 - brightness, 1 + brightness]``."""

    shift_px: int = 3
    brightness: float = 0.10


def encode_still_video(rgb: np.ndarray, path: str | Path, frames: int = 16, fps: int = 25,
                       jitter: Jitter | None = None, seed: int = 0) -> Path:
    """Write ``rgb`` (``uint8 [H, W, 3]``) as an H.264 mp4 of ``frames`` frames at ``fps`` (yuv420p, so an odd
    width or height is cropped by one pixel). With ``jitter`` each frame is shifted and its brightness scaled
    independently (seeded by ``seed``). The same arguments give the same decoded pixels (x264 on one thread, no
    lookahead). Returns ``path``."""
    import av

    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 [H, W, 3], got {rgb.dtype} {rgb.shape}")
    h, w = rgb.shape[0] // 2 * 2, rgb.shape[1] // 2 * 2
    base = np.ascontiguousarray(rgb[:h, :w])
    rng = np.random.default_rng(seed)
    path = Path(path)
    with av.open(str(path), mode="w") as out:
        stream = out.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        # Reproducible: with its default lookahead threads, PyAV's libx264 wrote different pixels for the same
        # jittered frames on 12 of 40 shared photos (two encodes in one process); one thread, no lookahead: 0 of 200.
        stream.options = {"crf": "18", "preset": "veryfast", "x264-params": "threads=1:sync-lookahead=0:rc-lookahead=0"}
        for _ in range(frames):
            img = base
            if jitter is not None:
                dy, dx = rng.integers(-jitter.shift_px, jitter.shift_px + 1, size=2)
                img = np.pad(base, ((max(dy, 0), max(-dy, 0)), (max(dx, 0), max(-dx, 0)), (0, 0)), mode="edge")
                img = img[max(-dy, 0):max(-dy, 0) + h, max(-dx, 0):max(-dx, 0) + w]
                gain = rng.uniform(1.0 - jitter.brightness, 1.0 + jitter.brightness)
                img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            for packet in stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(img), format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


@dataclass
class VideoScores:
    """One video scored by several runs: ``probs[run]`` is ``float64 [W, C]`` (NaN rows: no prediction) and
    ``valid_frames`` ``int [W]`` (per run; equal for runs with the same ``num_frames``). With
    ``score_videos(keep_features=True)``: ``features[modality]`` (``float16 [n_frames, D]``, the store's dtype) and
    ``feature_valid[modality]`` (``bool [n_frames]``) of every frame, as the runs were scored on them (empty dicts
    for a video without a face)."""

    video: Path
    n_frames: int
    face_frames: int
    windows: list[tuple[int, int]]
    probs: dict[str, np.ndarray]
    valid_frames: dict[str, np.ndarray]
    features: dict[str, np.ndarray] | None = None
    feature_valid: dict[str, np.ndarray] | None = None

    def top(self, run: str) -> list[int | None]:
        """Top class index per window (``None`` where the window has no prediction)."""
        return [int(np.argmax(p)) if np.isfinite(p).all() else None for p in self.probs[run]]


@dataclass
class LoadedRun:
    name: str
    info: RunInfo
    model: Any


def load_runs(runs: dict[str, str | Path]) -> tuple[list[LoadedRun], dict[str, Any]]:
    """Load every run (name -> run folder or checkpoint) and one set of extractors they all share.

    Raises ``ValueError`` when two runs were trained on features of different extractors, configs or frame caps
    (their video features would differ, so they cannot share one extraction)."""
    loaded = []
    for name, arg in runs.items():
        info = resolve_run(arg)
        loaded.append(LoadedRun(name, info, load_model(info)))
    first = loaded[0]

    def key(r: LoadedRun) -> str:
        return json.dumps([(m.key, m.extractor, m.config, m.frame_cap) for m in r.info.modalities], sort_keys=True)

    for r in loaded[1:]:
        if key(r) != key(first) or r.info.track != first.info.track:
            raise ValueError(f"runs {first.name!r} and {r.name!r} use different extractors or face-crop settings; "
                             "score them in separate calls")
    return loaded, build_extractors(first.info, first.model)


class _Collector:
    """A :class:`fer_zoo.video.pipeline.VideoSink` that keeps every window row and every tracked person's face
    frames of one video."""

    def __init__(self) -> None:
        self.rows: dict[str, dict[int, list[dict[str, Any]]]] = {}
        self.face_frames: dict[int, int] = {}

    def frames(self, scorer: str, person: int, rows: list[dict[str, Any]]) -> None:
        pass

    def windows(self, scorer: str, person: int, rows: list[dict[str, Any]]) -> None:
        self.rows.setdefault(scorer, {}).setdefault(person, []).extend(rows)

    def person_ended(self, person: int) -> None:
        pass

    def decisions(self, rows: list[dict[str, Any]]) -> None:
        for r in rows:
            self.face_frames[r["person"]] = self.face_frames.get(r["person"], 0) + int(r["face_found"])


def score_videos(videos: list[Path], runs: list[LoadedRun], extractors: dict[str, Any], window: int | None = None,
                 stride: int | None = None, detector: FaceDetector | None = None,
                 keep_features: bool = False) -> list[VideoScores]:
    """Each video through the predict-video pipeline once (track, crop, extract), its windows scored by every run;
    the windows of the person seen in the most frames are kept (a still video shows one face).

    ``window`` defaults to the first run's ``num_frames``, ``stride`` to half a window (predict-video's defaults).
    ``keep_features``: keep that person's per-frame features in its :class:`VideoScores` (for
    :func:`agreement_breakdown`; ~5 KB per frame for resnet + facemesh).
    Raises ``datamodules.frames.ClipReadError`` for a video that cannot be decoded."""
    from fer_zoo.video.inputs import open_input, parse_inputs
    from fer_zoo.video.pipeline import Scorer, VideoPipeline

    first = runs[0].info
    window = window or first.num_frames
    stride = stride or max(1, window // 2)
    own = detector is None
    det = detector or FaceDetector(first.track)
    out = []
    try:
        for video in videos:
            kept: dict[int, list[tuple[np.ndarray, dict[str, np.ndarray], dict[str, np.ndarray]]]] = {}

            def hook(person: int, frames: np.ndarray, feats: dict[str, np.ndarray], valid: dict[str, np.ndarray],
                     kept: dict = kept) -> None:
                if keep_features:
                    kept.setdefault(person, []).append((frames, feats, valid))

            pipe = VideoPipeline([Scorer(r.name, r.info, r.model) for r in runs], extractors, first.track, window,
                                 stride, detector=det, on_features=hook)
            sink = _Collector()
            with open_input(parse_inputs([str(video)])[0]) as (_info, frames):
                stats = pipe.process(frames, sink)
            person = max(sink.face_frames, key=lambda p: (sink.face_frames[p], -p), default=None)
            probs, counts = {}, {}
            wins: list[tuple[int, int]] = []
            for r in runs:
                rows = sink.rows.get(r.name, {}).get(person, []) if person is not None else []
                wins = [(w["start_frame"], w["end_frame"]) for w in rows]
                probs[r.name] = (np.stack([w["vec"] for w in rows]) if rows
                                 else np.zeros((0, len(r.model.class_names))))
                counts[r.name] = np.array([w["valid_frames"] for w in rows], np.int64)
            feats, valid = {}, {}
            if keep_features and person in kept:
                for m, d in pipe.dims.items():
                    feats[m] = np.zeros((stats.frames, d), np.float16)
                    valid[m] = np.zeros(stats.frames, bool)
                    for frames_, f, v in kept[person]:
                        feats[m][frames_], valid[m][frames_] = f[m], v[m]
            out.append(VideoScores(video, stats.frames, sink.face_frames.get(person, 0) if person else 0, wins,
                                   probs, counts, feats if keep_features else None,
                                   valid if keep_features else None))
    finally:
        if own:
            det.close()
    return out


def original_media(paths: list[str]) -> list[str]:
    """For clip folders written by ``preprocess`` (face crops), the video or photo each was cropped from (the
    tree's ``clips.csv``); any other path is returned as it is. A still video must be made of the photo itself,
    never of its crop: predict-video crops it again."""
    import csv

    from datamodules.crops import preprocess_root

    tables: dict[Path, dict[str, str]] = {}
    out = []
    for p in paths:
        root = preprocess_root(p)
        if root is None or not Path(p).is_dir():
            out.append(p)
            continue
        if root not in tables:
            with open(root / "clips.csv", newline="") as f:
                tables[root] = {r["clip_id"]: r["video"] for r in csv.DictReader(f)}
        out.append(tables[root][Path(p).name])
    return out


def flip_rate(top: list[int | None]) -> float:
    """Fraction of adjacent window pairs (both with a prediction) whose top class differs; NaN without a pair."""
    pairs = [(a, b) for a, b in zip(top, top[1:]) if a is not None and b is not None]
    return float(np.mean([a != b for a, b in pairs])) if pairs else float("nan")


def run_datamodule(run: LoadedRun) -> Any:
    """The run's FeatureDataModule, rebuilt from its ``config.yaml`` (its split, stores and sampling)."""
    from jsonargparse import ArgumentParser

    from datamodules.feature_datamodule import FeatureDataModule

    parser = ArgumentParser()
    parser.add_class_arguments(FeatureDataModule, "data")
    return parser.instantiate_classes(parser.parse_object({"data": run.info.config["data"]})).data


def photo_predictions(run: LoadedRun, split: str = "test", limit: int | None = None
                      ) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """The run's own predictions on the photos of ``split``, exactly as ``test`` computes them (its DataModule,
    rebuilt from the run's ``config.yaml``). Returns ``(clip_ids, paths, labels int [N], probs float [N, C])``."""
    import torch
    from torch.utils.data import DataLoader, Subset

    dm = run_datamodule(run)
    ds = dm.dataset(split)
    ids = ds.clip_ids[:limit] if limit else ds.clip_ids
    paths = {r.clip_id: r.path for r in dm.source.clips()}
    probs = []
    with torch.inference_mode():
        for batch in DataLoader(Subset(ds, range(len(ids))), batch_size=64, shuffle=False, num_workers=0):
            probs.append(run.model(batch["features"], batch["valid"]).float().softmax(-1).numpy())
    return ids, [paths[c] for c in ids], np.array(ds.labels[:len(ids)]), np.concatenate(probs)


@dataclass
class Breakdown:
    """Where a run's still-video disagreements come from, over ``photos`` photos whose video has a prediction.

    ``full``: agreement of the model (the photo's top class against its video's first window). ``stats_head``: the
    same for the clip-statistics head alone (``None`` when the model has none). ``held_at_photo[m]``: agreement when
    the video window's modality-``m`` inputs are replaced by the photo's own (the other modalities from the video):
    the share of disagreements that modality's photo-to-video change causes. ``shift[m]``: median and 90th
    percentile of ``||mean_video - mean_photo|| / ||mean_photo||`` of modality m's clip-mean feature vector."""

    photos: int
    full: float
    stats_head: float | None
    held_at_photo: dict[str, float]
    shift: dict[str, tuple[float, float]]


def agreement_breakdown(run: LoadedRun, clip_ids: list[str], videos: list[VideoScores], split: str = "test"
                        ) -> Breakdown:
    """:class:`Breakdown` of ``run`` for the photos ``clip_ids`` of ``split`` and their videos ``videos`` (same order,
    scored with ``keep_features=True``); photos whose video has no prediction (no face) are left out.

    Raises ``ValueError`` when the videos were scored without their features or the lengths differ."""
    import torch

    if len(clip_ids) != len(videos):
        raise ValueError(f"{len(clip_ids)} photos but {len(videos)} videos")
    if any(v.features is None for v in videos):
        raise ValueError("agreement_breakdown needs videos scored with score_videos(keep_features=True)")
    ds = run_datamodule(run).dataset(split)
    pos = {c: i for i, c in enumerate(ds.clip_ids)}
    net = run.model.model
    mods = [m.key for m in run.info.modalities]
    heads: dict[str, Any] = {"full": run.model}
    if getattr(net, "stats_head", None) is not None:
        heads["stats_head"] = net.stats_head
    agree: dict[str, list[bool]] = {k: [] for k in [*heads, *mods]}
    shift: dict[str, list[float]] = {m: [] for m in mods}

    def top(head: Any, x: dict[str, torch.Tensor], v: dict[str, torch.Tensor]) -> int:
        with torch.inference_mode():
            return int(head({m: x[m][None].float() for m in x}, {m: v[m][None] for m in v}).argmax())

    for cid, vid in zip(clip_ids, videos):
        if not vid.features or not np.isfinite(vid.probs[run.name][0]).all():
            continue
        photo = ds[pos[cid]]
        item = window_dataset(run.info, vid.windows[:1], vid.features, vid.feature_valid)[0]
        px, pv, vx, vv = photo["features"], photo["valid"], item["features"], item["valid"]
        photo_top = {k: top(head, px, pv) for k, head in heads.items()}
        for k, head in heads.items():
            agree[k].append(photo_top[k] == top(head, vx, vv))
        for m in mods:
            agree[m].append(photo_top["full"] == top(run.model, {**vx, m: px[m]}, {**vv, m: pv[m]}))
            a, b = px[m][pv[m]].double().mean(0), vx[m][vv[m]].double().mean(0)
            if pv[m].any() and vv[m].any() and float(a.norm()) > 0:
                shift[m].append(float((b - a).norm() / a.norm()))
    rate = {k: float(np.mean(v)) if v else float("nan") for k, v in agree.items()}
    return Breakdown(photos=len(agree["full"]), full=rate["full"], stats_head=rate.get("stats_head"),
                     held_at_photo={m: rate[m] for m in mods},
                     shift={m: (float(np.median(s)), float(np.percentile(s, 90))) if s else (float("nan"),) * 2
                            for m, s in shift.items()})


@dataclass
class ShiftSources:
    """How far still videos move each image modality's frame features away from their photos', split into the two
    things that differ between a photo and its video: the face box (detected again on the decoded frames) and the
    pixels (the H.264 round trip). ``box[m]``: the photo's own pixels cropped with the video's detection box;
    ``codec[m]``: the decoded video frame cropped with the photo's box; ``both[m]``: the video's own crop (what
    predict-video extracts). Each is the median over ``photos`` photos of ``||f - f_photo|| / ||f_photo - mean||``,
    where ``mean`` is the mean photo feature: 1.0 means as far as a typical photo is from the mean photo."""

    photos: int
    box: dict[str, float]
    codec: dict[str, float]
    both: dict[str, float]


def shift_sources(photos: list[str], videos: list[Path], cfg: Any, extractors: dict[str, Any]) -> ShiftSources:
    """:class:`ShiftSources` of ``photos`` (image paths) and their still videos ``videos`` (same order, written by
    :func:`encode_still_video`, which keeps the photo's top-left pixels), with the face ``cfg`` (``TrackConfig``) and
    the image ``extractors`` (modality key -> extractor; audio ones are skipped). Photos where either side has no
    face, or a modality's features are not valid on all four crops, are left out of that modality.

    Raises ``ValueError`` when the lengths differ."""
    from datamodules.frames import read_frames
    from fer_zoo.video.face_track import decode_jpeg, face_crop

    if len(photos) != len(videos):
        raise ValueError(f"{len(photos)} photos but {len(videos)} videos")
    mods = {m: e for m, e in extractors.items() if getattr(e, "kind", "") != "audio"}
    feats: dict[str, list[np.ndarray]] = {m: [] for m in mods}
    det = FaceDetector(cfg)
    try:
        for photo, video in zip(photos, videos):
            tp, tv = track_video(photo, cfg, detector=det), track_video(video, cfg, detector=det)
            if not tp.face_found.any() or not tv.face_found.any():
                continue
            rp = tp.records[int(np.flatnonzero(tp.face_found)[0])]
            rv = tv.records[int(np.flatnonzero(tv.face_found)[0])]
            frame = read_frames(video).rgb[rv.frame]
            h, w = frame.shape[:2]
            pixels = read_frames(photo).rgb[0][:h, :w]
            crops = np.stack([decode_jpeg(rp.jpeg), decode_jpeg(face_crop(pixels, rv.box, cfg)),  # type: ignore[arg-type]
                              decode_jpeg(face_crop(frame, rp.box, cfg)), decode_jpeg(rv.jpeg)])  # type: ignore[arg-type]
            for m, ext in mods.items():
                f, ok = ext.extract(crops)
                if ok.all():
                    feats[m].append(f.astype(np.float64))
    finally:
        det.close()
    out: dict[str, dict[str, float]] = {"box": {}, "codec": {}, "both": {}}
    for m, fs in feats.items():
        if len(fs) < 2:
            continue
        a = np.stack(fs)  # [N, 4, D]: photo, box only, codec only, video crop
        spread = np.linalg.norm(a[:, 0] - a[:, 0].mean(0), axis=1)
        for j, k in ((1, "box"), (2, "codec"), (3, "both")):
            out[k][m] = float(np.median(np.linalg.norm(a[:, j] - a[:, 0], axis=1) / spread))
    return ShiftSources(photos=max((len(f) for f in feats.values()), default=0), **out)
