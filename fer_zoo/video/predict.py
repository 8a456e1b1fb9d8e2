"""``python -m fer_zoo predict-video VIDEO_OR_FOLDER... --ckpt CHECKPOINT_OR_RUN_DIR``: emotions over time in a video.

For each video: decode, detect + track + crop the face exactly as ``preprocess`` does (:mod:`fer_zoo.video.face_track`,
same settings as the training tree's ``preprocess.json`` when the run was trained on one, else the defaults; the
crop flags override), run exactly the extractors the checkpoint was trained with, slide a window over the video and
classify each window with the checkpoint's model. Written to ``<out>/<video stem>/``:

- ``predictions.csv``: one row per window: window, start_frame, end_frame (inclusive), start_time, end_time (the
  timestamps, in seconds, of those two frames), center_time, face_frames (frames of the window with the tracked
  face), valid_frames (of the ``num_frames`` sampled slots, how many the model saw with a valid feature), one
  probability column per class, top_class, top_prob. A window without any valid frame has NO prediction: its
  probabilities and top class are empty (NaN), never made up.
- ``predictions.json``: the same windows (``probs: null`` where there is none), the status, the video, the run,
  the checkpoint, the extractors and their stores, the crop settings, ``smoothing`` (``null`` unless asked for).
- ``timeline.png``: probability per class over time, a strip with the top class, a strip with each window's
  valid frames; spans without a face shaded and labelled "no face".

Nothing is smoothed unless ``--smooth N`` asks for it: then each window also gets ``smoothed_probs`` (the mean of
the probabilities of the windows with a prediction among the ``N`` centred on it; a window without a prediction
stays without one) and ``smoothed_top_class``, in extra CSV columns ``smoothed_<class>``, ``smoothed_top_class``;
the raw columns stay as they are.
- ``boxes.csv``: the per-frame face track, same format as ``preprocess`` writes (``face_found`` per frame).

Which extractors: the run folder's ``config.yaml`` names the modalities and the store root, ``results.json`` the
store of each; each store's ``meta.json`` gives the extractor name, its full resolved config and the frame cap, and
the extractor is rebuilt from exactly those (no fallback: a missing weight file is an error), then checked against
the store's key (config hash + frame cap) and width. When a store folder is gone, a copy of its meta in
``results.json`` (``stores.<modality>.meta``) is used if the run saved one.

Windows: ``--window`` frames (default: the run's ``data.num_frames``, 16) every ``--stride`` frames (default half a
window); the first starts at frame 0 and one more window is added when needed so that the last ends at the last
frame. Each window is handled like one training clip: capped to the store's ``frame_cap`` (uniformly, like
``read_frames``), TSN-sampled in eval mode (the middle frame of each of ``num_frames`` segments, through the
DataModule's own ``FeatureDataset``), features rounded to the store's float16, frames without a face ``valid=False``.
Only the frames some window samples are run through the extractors.

Face crops vs. training inputs: the model learned from the features of whatever its training clips were (face
crops from ``preprocess``, DFEW's aligned faces, whole photos). The features here are always computed on the tracked
face crops (:func:`fer_zoo.video.face_track.face_crop`). Each store's ``meta.json`` records how its clips were
cropped (``face_crops``: how many are ``preprocess`` crops and with which settings, :mod:`datamodules.crops`), and
the crop settings default to those. When the training clips were not cropped by ``preprocess`` (whole photos: the
model saw other pixels than it sees here) or with other crop settings, predict-video says so before it starts, and
records it in ``predictions.json`` (``face_crops.mismatch``); ``--crop_mismatch error`` refuses instead (exit 2).
Photos cropped by ``python -m fer_zoo preprocess PHOTOS --out DIR`` are the same crops as those of a video frame.

MediaPipe's C++ log (and any other native library's stderr) goes to ``<out>/native_stderr.log``, not the terminal.

Exit status: 0 every video has predictions; 2 nothing could start (a path that does not exist, a file named on the
command line that is not a video by its suffix, a missing or unreadable checkpoint or run folder, an extractor of
the checkpoint that cannot be built here, e.g. openpifpaf not installed); 3 at least one video failed (one that does
not open as a video, a corrupt or truncated file, a stream that breaks part way, an error while extracting its
features): each is recorded in ``summary.json`` with the reason and the others go on; 4 none
failed but at least one video had no face at all (its ``predictions.json`` has ``"status": "no_face"`` and the
message "no face found in <video>"), or faces but no window the model could score (``"no_valid_frames"``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.frames import ClipReadError, cap_indices
from datamodules.sampling import segment_indices
from fer_zoo.native_stderr import native_stderr_to
from fer_zoo.video.face_track import (
    FaceDetector,
    InputError,
    TrackConfig,
    TrackResult,
    clip_ids,
    collect_videos,
    decode_jpeg,
    probe_video,
    recorded_settings,
    track_video,
    write_boxes_csv,
)

EXIT_OK, EXIT_USAGE, EXIT_FAILED, EXIT_NO_FACE = 0, 2, 3, 4
NATIVE_LOG = "native_stderr.log"  # in --out: MediaPipe's C++ log and tracebacks of videos that failed
CROP_NOTE = ("features computed on the tracked face crops (square, margin, resized), the same crops `preprocess` "
             "writes; the model learned from the features of its training clips")


class PredictError(RuntimeError):
    """Something that stops predict-video before any video is processed (exit status 2)."""


# ---------------------------------------------------------------------------------------------------- the run


@dataclass
class ModalitySpec:
    key: str  # the model's input name (as in the checkpoint's input_dims)
    modality: str  # as listed in the run config's data.modalities
    meta: dict[str, Any]
    meta_from: str  # the meta.json it came from, or "results.json"

    @property
    def extractor(self) -> str:
        return str(self.meta["extractor"])

    @property
    def config(self) -> dict[str, Any]:
        return dict(self.meta.get("config") or {})

    @property
    def frame_cap(self) -> int | None:
        return self.meta.get("frame_cap")


@dataclass
class RunInfo:
    run_dir: Path
    ckpt: Path
    config: dict[str, Any]
    results: dict[str, Any]
    num_frames: int
    short_clips: str = "stretch"  # what the run's DataModule made of clips shorter than num_frames
    modalities: list[ModalitySpec] = field(default_factory=list)
    track: TrackConfig = field(default_factory=TrackConfig)
    track_from: str = "defaults"
    training_crops: str = "unknown"  # preprocess | uncropped | mixed | unknown: what the model was trained on
    crop_mismatch: list[str] = field(default_factory=list)  # why the crops here differ from the training inputs


CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth")


def _locate(path: str | Path | None, run_dir: Path) -> Path | None:
    """An existing path as written in a run's files: absolute, or relative to the cwd, the project or the run."""
    if not path:
        return None
    p = Path(path)
    for cand in ([p] if p.is_absolute() else [p, run_dir.parent.parent / p, run_dir / p]):
        if cand.exists():
            return cand
    return None


def _pick_checkpoint(run_dir: Path, results: dict[str, Any]) -> Path:
    named = results.get("checkpoint")
    if named:
        p = _locate(named, run_dir) or _locate(run_dir / "checkpoints" / Path(named).name, run_dir)
        if p is not None and p.is_file():
            return p
    from fer_zoo.training.selection import SELECTION_FILE

    ck = run_dir / "checkpoints"
    chosen = ck / SELECTION_FILE  # the checkpoint policy's choice, also written when fit tested nothing
    if chosen.is_file():
        p = ck / Path(json.loads(chosen.read_text()).get("checkpoint") or "").name
        if p.is_file():
            return p
    best = sorted(ck.glob("best-*.ckpt"), key=lambda p: p.stat().st_mtime)
    if best:
        return best[-1]
    if (ck / "last.ckpt").is_file():
        return ck / "last.ckpt"
    raise PredictError(f"run folder {run_dir} has no checkpoint (looked for results.json's 'checkpoint', "
                       f"{chosen}, {ck}/best-*.ckpt and {ck}/last.ckpt)")


def resolve_run(ckpt_arg: str | Path, track_overrides: dict[str, Any] | None = None) -> RunInfo:
    """The run folder, checkpoint, config and each modality's store meta for ``--ckpt`` (a file or a run folder)."""
    import yaml

    arg = Path(ckpt_arg)
    if not arg.exists():
        raise PredictError(f"--ckpt {arg}: no such file or folder; pass a run folder (runs/<run>/) or one of its "
                           "checkpoints (runs/<run>/checkpoints/*.ckpt)")
    if arg.is_file() and arg.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise PredictError(f"--ckpt {arg}: a {arg.suffix or 'suffix-less'} file is not a checkpoint; pass the run "
                           f"folder ({arg.parent}/) or one of its checkpoints (checkpoints/*.ckpt)")
    if arg.is_dir():
        run_dir, ckpt = arg, None
    else:
        cands = [arg.parent.parent] if arg.parent.name == "checkpoints" else []
        run_dir = next((d for d in [*cands, arg.parent] if (d / "config.yaml").is_file()), None)  # type: ignore[assignment]
        ckpt = arg
        if run_dir is None:
            raise PredictError(f"{arg}: no run folder around this checkpoint (expected runs/<name>/config.yaml with "
                               "the checkpoint in runs/<name>/checkpoints/); predict-video needs the run's config to "
                               "know which extractors produced the model's inputs")
    cfg_file = run_dir / "config.yaml"
    if not cfg_file.is_file():
        raise PredictError(f"{run_dir}: not a run folder (no config.yaml)")
    config = yaml.safe_load(cfg_file.read_text()) or {}
    res_file = run_dir / "results.json"
    results = json.loads(res_file.read_text()) if res_file.is_file() else {}
    ckpt = ckpt or _pick_checkpoint(run_dir, results)
    data = config.get("data") or {}
    modalities = list(data.get("modalities") or results.get("modalities") or [])
    if not modalities:
        raise PredictError(f"{cfg_file}: no data.modalities")
    # Runs from before the option padded short clips; their config.yaml has no data.short_clips.
    run = RunInfo(run_dir, ckpt, config, results, int(data.get("num_frames") or 16),
                  str(data.get("short_clips") or "pad"))
    from datamodules.feature_datamodule import modality_keys

    keys = modality_keys(modalities)
    stores = results.get("stores") or {}
    for key, modality in zip(keys, modalities):
        run.modalities.append(_modality_meta(key, modality, stores.get(key) or {}, data.get("store_root"), run_dir))
    run.track, run.track_from = _track_config(data, run_dir, track_overrides or {}, run.modalities)
    run.training_crops, run.crop_mismatch = check_training_crops(run)
    return run


def check_training_crops(run: RunInfo) -> tuple[str, list[str]]:
    """What the model's training clips were (``preprocess`` face crops, ``uncropped``, ``mixed`` or ``unknown``)
    and, where they differ from the crops predict-video computes with ``run.track``, why (one sentence each).

    Reads each store's ``face_crops`` record (``datamodules.crops.crop_record``); stores extracted before it was
    recorded fall back to whether the run's source tree has a ``preprocess.json``."""
    from datamodules.crops import PIXEL_KEYS

    here = run.track.to_dict()
    fix = ("crop the photos or frames with `python -m fer_zoo preprocess INPUT --out DIR` (the same detector, "
           "margin and size as here) and train on DIR/manifest.csv")
    problems: list[str] = []
    kinds = set()
    for m in run.modalities:
        rec = m.meta.get("face_crops")
        if not isinstance(rec, dict):
            continue
        n_crop, n_raw = int(rec.get("cropped", 0)), int(rec.get("uncropped", 0))
        kinds.add("preprocess" if not n_raw else "uncropped" if not n_crop else "mixed")
        if n_raw:
            ex = ", ".join(rec.get("uncropped_examples") or [])
            boxed = int(rec.get("dataset_boxes") or 0)
            problems.append(
                f"modality {m.key!r}: {n_raw} of its {n_crop + n_raw} training clips were not cropped by `preprocess` "
                f"(e.g. {ex}" + (f"; {boxed} cut to the data set's own face boxes" if boxed else "")
                + "): the model learned from those pixels (whole photos or frames, or another tool's crops) "
                f"but is given tracked face crops here (margin {run.track.margin}, {run.track.size}px), so it may "
                f"predict otherwise on the same face; {fix}")
        for recorded in rec.get("settings") or []:
            st = recorded_settings(recorded)
            diff = {k: (st.get(k), here.get(k)) for k in PIXEL_KEYS if k in st and st.get(k) != here.get(k)}
            if diff:
                problems.append(f"modality {m.key!r}: trained on crops made with "
                                + ", ".join(f"{k} {a!r}" for k, (a, _) in diff.items()) + " but cropped here with "
                                + ", ".join(f"{k} {b!r}" for k, (_, b) in diff.items())
                                + f" ({run.track_from}); drop the crop flags to use the training settings")
    if not kinds:  # stores from before crops were recorded
        if run.track_from.startswith("defaults"):
            return "unknown", [
                "the run's stores do not record how their clips were cropped (extracted before fer_zoo recorded it) "
                "and its source has no preprocess.json: if the model was trained on whole photos or frames, it is "
                f"given other inputs here (tracked face crops); {fix}"]
        return "preprocess", []
    kind = kinds.pop() if len(kinds) == 1 else "mixed"
    return kind, list(dict.fromkeys(problems))


def _modality_meta(key: str, modality: str, saved: dict[str, Any], store_root: str | None,
                   run_dir: Path) -> ModalitySpec:
    from datamodules.feature_store import StoreError, find_store

    tried = []
    path = _locate(saved.get("path"), run_dir)
    tried.append(str(saved.get("path")))
    if path is None and store_root:
        root = _locate(store_root, run_dir)
        tried.append(f"{store_root}/{modality}/*")
        if root is not None:
            try:
                path = find_store(root, modality)
            except StoreError:
                path = None
    if path is not None and (path / "meta.json").is_file():
        return ModalitySpec(key, modality, json.loads((path / "meta.json").read_text()), str(path / "meta.json"))
    if isinstance(saved.get("meta"), dict) and saved["meta"].get("extractor"):
        return ModalitySpec(key, modality, saved["meta"], "results.json")
    raise PredictError(
        f"modality {key!r}: its feature store is gone (tried {', '.join(tried)}) and results.json keeps no copy of its "
        "meta (stores.<modality>.meta: extractor, config, frame_cap), so which extractor made the model's inputs "
        "is unknown. Restore the store folder (or the run's store_root).")


def _track_config(data: dict[str, Any], run_dir: Path, overrides: dict[str, Any],
                  modalities: list[ModalitySpec] | None = None) -> tuple[TrackConfig, str]:
    """The training tree's preprocess settings when the run was trained on ``preprocess`` output (its source's
    ``preprocess.json``, else the one setting its stores' ``face_crops`` records), else defaults."""
    base: dict[str, Any] = {}
    origin = "defaults"
    recorded = [st for m in modalities or [] for st in ((m.meta.get("face_crops") or {}).get("settings") or [])]
    if recorded and all(st == recorded[0] for st in recorded):
        base, origin = dict(recorded[0]), f"store meta ({modalities[0].meta_from})"  # type: ignore[index]
    source = data.get("source") or {}
    init = (source.get("init_args") or {}) if isinstance(source, dict) else {}
    # a DFEW-style tree's root, or the folder of a manifest that `preprocess` wrote next to its preprocess.json
    root = init.get("root") or (str(Path(init["csv"]).parent) if init.get("csv") else None)
    found = _locate(Path(root) / "preprocess.json", run_dir) if root else None
    if found is not None:
        base = json.loads(found.read_text())
        origin = str(found)
    set_here = {k: v for k, v in overrides.items() if v is not None}
    if set_here:
        origin = f"{origin} + command line ({', '.join(sorted(set_here))})"
    return TrackConfig.from_dict({**base, **set_here}), origin


# ------------------------------------------------------------------------------------------- model + extractors


def load_model(run: RunInfo) -> Any:
    from fer_zoo.training.lit_module import FERLitModule

    try:
        model = FERLitModule.load_from_checkpoint(str(run.ckpt), map_location="cpu")
    except Exception as err:  # a truncated file, not a Lightning checkpoint, another model class
        raise PredictError(f"cannot load checkpoint {run.ckpt}: {type(err).__name__}: {err}") from err
    model.eval()
    dims = dict(model.hparams.input_dims)
    keys = [m.key for m in run.modalities]
    if sorted(dims) != sorted(keys):
        raise PredictError(f"checkpoint {run.ckpt} takes inputs {sorted(dims)} but its run config lists modalities "
                           f"{keys}: the checkpoint does not belong to this run folder")
    return model


def build_extractors(run: RunInfo, model: Any) -> dict[str, Any]:
    """Each modality's extractor, built from its store meta and checked to compute what the store holds."""
    from datamodules.feature_store import store_key
    from extractors import get_extractor

    out = {}
    for m in run.modalities:
        what = f"modality {m.key!r}: extractor {m.extractor!r} with config {json.dumps(m.config, sort_keys=True)}"
        try:
            ext = get_extractor(m.extractor, **m.config)
        except Exception as err:  # not installed (openpifpaf), weights missing, unknown name, bad config
            raise PredictError(f"{what} (from {m.meta_from}) cannot be built here: {type(err).__name__}: {err}") \
                from err
        want_dim = int(model.hparams.input_dims[m.key])
        if ext.dim != want_dim:
            raise PredictError(f"{what} gives {ext.dim}-d features but the model takes {want_dim}-d")
        key = m.meta.get("store_key")
        if key and store_key(ext.config_hash, m.frame_cap) != key:
            raise PredictError(f"{what} here does not reproduce the store's key {key} (version "
                               f"{ext.version} vs {m.meta.get('version')!r}, or changed weights): its features would "
                               "differ from those the model was trained on")
        out[m.key] = ext
    return out


# ---------------------------------------------------------------------------------------------------- windows


def make_windows(n_frames: int, window: int, stride: int) -> list[tuple[int, int]]:
    """``(start, end)`` inclusive frame ranges every ``stride`` frames from 0; the last one ends at the last frame."""
    if n_frames <= 0:
        return []
    if n_frames <= window:
        return [(0, n_frames - 1)]
    starts = list(range(0, n_frames - window + 1, stride))
    if starts[-1] + window < n_frames:
        starts.append(n_frames - window)
    return [(s, s + window - 1) for s in starts]


def window_frames(start: int, end: int, frame_cap: int | None, num_frames: int,
                  short_clips: str = "stretch") -> tuple[np.ndarray, np.ndarray]:
    """The window's frames as a training clip of the store would hold them (capped), and the TSN eval picks."""
    held = start + cap_indices(end - start + 1, frame_cap)
    idx, pad = segment_indices(len(held), num_frames, train=False, short_clips=short_clips)
    return held, held[idx[~pad]]


class _WindowStore:
    """The part of ``FeatureStore`` that ``FeatureDataset`` uses, over one video's per-frame features."""

    def __init__(self, feats: np.ndarray, valid: np.ndarray, windows: list[tuple[int, int]], frame_cap: int | None):
        self.feats, self.valid, self.frame_cap = feats, valid, frame_cap
        self.windows = windows

    @property
    def dim(self) -> int:
        return int(self.feats.shape[1])

    def clip(self, clip_id: str) -> tuple[np.ndarray, np.ndarray]:
        s, e = self.windows[int(clip_id)]
        held = s + cap_indices(e - s + 1, self.frame_cap)
        return self.feats[held], self.valid[held]


# ---------------------------------------------------------------------------------------------------- one video


@dataclass
class VideoResult:
    video: Path
    out_dir: Path
    status: str  # ok | no_face | no_valid_frames | failed
    message: str = ""
    windows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0


def extract_features(track: TrackResult, needed: np.ndarray, run: RunInfo, extractors: dict[str, Any],
                     log: Any = print) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Per-frame features (the store's float16) and validity of every modality; frames not needed stay invalid."""
    from datamodules.feature_store import FEATURE_DTYPE

    n = track.n_frames
    face = track.face_found
    frames = np.flatnonzero(needed & face)
    crops = np.stack([decode_jpeg(track.records[i].jpeg) for i in frames]) if len(frames) else None  # type: ignore[arg-type]
    feats, valid = {}, {}
    for m in run.modalities:
        ext = extractors[m.key]
        f = np.zeros((n, ext.dim), FEATURE_DTYPE)
        v = np.zeros(n, bool)
        if ext.kind == "audio":  # the video's own soundtrack around each needed frame (a face is not needed)
            f, v = audio_features(track, np.flatnonzero(needed), ext, m.key, log)
        elif crops is not None:
            t0 = time.perf_counter()
            ef, ev = ext.extract(crops)
            f[frames] = ef.astype(FEATURE_DTYPE)
            v[frames] = ev
            log(f"  {m.key}: {ext.name} on {len(frames)} face crops, {int(ev.sum())} valid "
                f"({time.perf_counter() - t0:.1f}s)")
        feats[m.key], valid[m.key] = f, v
    return feats, valid


def audio_features(track: TrackResult, frames: np.ndarray, ext: Any, key: str,
                   log: Any = print) -> tuple[np.ndarray, np.ndarray]:
    """An audio modality's per-frame features from the video's soundtrack, decoded exactly as for the stores.

    No audio stream, or one that cannot be decoded: every frame of that modality is invalid (said in the log), and
    the other modalities still predict.
    """
    from datamodules.audio import AudioReadError
    from datamodules.feature_store import FEATURE_DTYPE
    from extractors.audio_base import AudioInput

    n = track.n_frames
    f = np.zeros((n, ext.dim), FEATURE_DTYPE)
    v = np.zeros(n, bool)
    try:
        sound = ext.read_soundtrack(track.info.path)  # the store's audio_stream
    except AudioReadError as err:
        log(f"  {key}: WARNING: {err}; audio frames invalid")
        return f, v
    t0 = time.perf_counter()
    inp = AudioInput(sound, track.timestamps[frames])
    ef, ev = ext.extract(inp)
    f[frames], v[frames] = ef.astype(FEATURE_DTYPE), ev
    why = ext.windows(inp).reason
    log(f"  {key}: {ext.name} on the soundtrack at {len(frames)} frames, {int(ev.sum())} valid "
        f"({time.perf_counter() - t0:.1f}s){'; ' + why if why else ''}")
    return f, v


def window_dataset(run: RunInfo, windows: list[tuple[int, int]], feats: dict[str, np.ndarray],
                   valid: dict[str, np.ndarray]) -> Any:
    """The model inputs of each window, item ``i`` for ``windows[i]``: a ``FeatureDataset`` (evaluation mode) over one
    video's per-frame features, with the run's ``num_frames``, frame caps and ``short_clips``, as ``test`` samples."""
    from datamodules.feature_datamodule import FeatureDataset

    stores = {m.key: _WindowStore(feats[m.key], valid[m.key], windows, m.frame_cap) for m in run.modalities}
    return FeatureDataset(stores, [str(i) for i in range(len(windows))], [0] * len(windows), run.num_frames,
                          train=False, short_clips=run.short_clips)


def score_windows(model: Any, run: RunInfo, windows: list[tuple[int, int]], feats: dict[str, np.ndarray],
                  valid: dict[str, np.ndarray], batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """``probs [W, C]`` (NaN rows where no sampled frame is valid) and ``valid_frames [W]``, DataModule contract."""
    import torch
    from torch.utils.data import DataLoader

    ds = window_dataset(run, windows, feats, valid)
    probs, counts = [], []
    with torch.inference_mode():
        for batch in DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=0):
            p = model(batch["features"], batch["valid"]).float().softmax(dim=-1)
            seen = torch.stack([v for v in batch["valid"].values()]).any(dim=0).sum(dim=1)
            probs.append(p.numpy().astype(np.float64))
            counts.append(seen.numpy())
    pr = np.concatenate(probs) if probs else np.zeros((0, len(model.class_names)))
    cnt = np.concatenate(counts) if counts else np.zeros(0, np.int64)
    pr[cnt == 0] = np.nan  # no valid frame: no evidence, no prediction
    return pr, cnt


def smooth_probs(probs: np.ndarray, n: int) -> np.ndarray:
    """Centred moving average of ``probs [W, C]`` over ``n`` windows (odd, >= 1; 1 = unchanged).

    Only windows with a prediction (finite rows) enter a mean; a row without one stays NaN, so smoothing never
    invents a prediction where the model saw no face."""
    if n < 1 or n % 2 == 0:
        raise ValueError(f"smoothing needs an odd number of windows >= 1, got {n}")
    has = np.isfinite(probs).all(axis=1)
    out = np.full_like(probs, np.nan)
    h = n // 2
    for i in np.flatnonzero(has):
        lo, hi = max(0, i - h), min(len(probs), i + h + 1)
        out[i] = probs[lo:hi][has[lo:hi]].mean(axis=0)
    return out


def predict_one(video: Path, out_dir: Path, run: RunInfo, model: Any, extractors: dict[str, Any], window: int,
                stride: int, detector: FaceDetector | None = None, log: Any = print, smooth: int = 0) -> VideoResult:
    t0 = time.perf_counter()
    class_names = list(model.class_names)
    try:
        from tqdm import tqdm

        with tqdm(desc=f"faces {video.name}", unit="frame", leave=False, dynamic_ncols=True, disable=None) as bar:
            track = track_video(video, run.track, detector=detector, progress=bar.update)
    except ClipReadError as err:
        return VideoResult(video, out_dir, "failed", f"cannot read {video}: {err.reason}",
                           seconds=time.perf_counter() - t0)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_boxes_csv(out_dir / "boxes.csv", track.records)
    n = track.n_frames
    wins = make_windows(n, window, stride)
    needed = np.zeros(n, bool)
    for s, e in wins:
        for m in run.modalities:
            needed[window_frames(s, e, m.frame_cap, run.num_frames, run.short_clips)[1]] = True
    face = track.face_found
    log(f"{video.name}: {n} frames, {int(face.sum())} with a face, {len(wins)} windows of {window} frames "
        f"(stride {stride}), {int((needed & face).sum())} face frames to extract")
    if face.any():
        feats, valid = extract_features(track, needed, run, extractors, log)
        probs, counts = score_windows(model, run, wins, feats, valid)
    else:
        probs, counts = np.full((len(wins), len(class_names)), np.nan), np.zeros(len(wins), np.int64)
    ts = track.timestamps
    smoothed = smooth_probs(probs, smooth) if smooth > 1 else None
    rows = []
    for i, (s, e) in enumerate(wins):
        p = probs[i]
        has = bool(np.isfinite(p).all())
        rows.append({
            "window": i, "start_frame": s, "end_frame": e, "start_time": float(ts[s]), "end_time": float(ts[e]),
            "center_time": float((ts[s] + ts[e]) / 2), "face_frames": int(face[s:e + 1].sum()),
            "valid_frames": int(counts[i]),
            "probs": {c: float(x) for c, x in zip(class_names, p)} if has else None,
            "top_class": class_names[int(np.argmax(p))] if has else None,
            "top_prob": float(np.max(p)) if has else None,
        })
        if smoothed is not None:
            rows[-1]["smoothed_probs"] = {c: float(x) for c, x in zip(class_names, smoothed[i])} if has else None
            rows[-1]["smoothed_top_class"] = class_names[int(np.argmax(smoothed[i]))] if has else None
    if not face.any():
        status, message = "no_face", f"no face found in {video}"
    elif not any(r["probs"] for r in rows):
        status, message = "no_valid_frames", (f"faces found in {video}, but no window has a frame the extractors "
                                              "could use: no prediction")
    else:
        missing = sum(r["probs"] is None for r in rows)
        status, message = "ok", f"{len(rows) - missing} of {len(rows)} windows predicted" + (
            f"; {missing} without a face get no prediction" if missing else "")
    result = VideoResult(video, out_dir, status, message, rows, time.perf_counter() - t0)
    _write_outputs(result, track, run, class_names, window, stride, smooth)
    return result


def _fps(track: TrackResult) -> float | None:
    if track.info.fps:
        return float(track.info.fps)
    ts = track.timestamps
    return float((len(ts) - 1) / (ts[-1] - ts[0])) if len(ts) > 1 and ts[-1] > ts[0] else None


def _write_outputs(res: VideoResult, track: TrackResult, run: RunInfo, class_names: list[str], window: int,
                   stride: int, smooth: int = 0) -> None:
    import pandas as pd

    from fer_zoo.video.timeline import plot_timeline

    flat = []
    for r in res.windows:
        row = {k: v for k, v in r.items() if k not in ("probs", "top_class", "top_prob", "smoothed_probs")}
        for c in class_names:
            row[c] = r["probs"][c] if r["probs"] else math.nan
        row["top_class"], row["top_prob"] = r["top_class"], r["top_prob"] if r["top_prob"] is not None else math.nan
        if smooth > 1:
            for c in class_names:
                row[f"smoothed_{c}"] = r["smoothed_probs"][c] if r["smoothed_probs"] else math.nan
        flat.append(row)
    cols = ["window", "start_frame", "end_frame", "start_time", "end_time", "center_time", "face_frames",
            "valid_frames", *class_names, "top_class", "top_prob"]
    if smooth > 1:
        cols += [f"smoothed_{c}" for c in class_names] + ["smoothed_top_class"]
    pd.DataFrame(flat, columns=cols).to_csv(res.out_dir / "predictions.csv", index=False, float_format="%.6g")
    fps = _fps(track)
    ts = track.timestamps
    duration = float(ts[-1] + (1.0 / fps if fps else 0.0)) if len(ts) else 0.0
    doc = {
        "status": res.status, "message": res.message, "video": str(res.video),
        "frames": track.n_frames, "fps": fps, "duration_s": duration, "face_frames": track.face_frames,
        "run_dir": str(run.run_dir), "checkpoint": str(run.ckpt), "class_names": class_names,
        "num_frames": run.num_frames, "window": window, "stride": stride,
        "sampling": "per window: store frame_cap, then TSN eval (middle frame of each of num_frames segments)",
        "short_clips": run.short_clips,
        "smoothing": ({"windows": smooth, "method": "centred moving average of the probabilities of the windows "
                       "with a prediction"} if smooth > 1 else None),
        "modalities": {m.key: {"extractor": m.extractor, "config": m.config, "frame_cap": m.frame_cap,
                               "weights_source": m.meta.get("weights_source"), "meta_from": m.meta_from}
                       for m in run.modalities},
        "face_crops": {**run.track.to_dict(), "settings_from": run.track_from, "note": CROP_NOTE,
                       "training_inputs": run.training_crops, "mismatch": run.crop_mismatch},
        "windows": res.windows,
    }
    (res.out_dir / "predictions.json").write_text(json.dumps(doc, indent=2) + "\n")
    plot_timeline(res.windows, class_names, track.face_found, ts, duration, res.out_dir / "timeline.png",
                  title=f"{res.video.name}", subtitle=f"model: {run.run_dir.name} ({run.ckpt.name}); window "
                  f"{window} frames, stride {stride}" + (f"; smoothed over {smooth} windows" if smooth > 1 else "")
                  + f"; {res.message}", num_frames=run.num_frames)


# ---------------------------------------------------------------------------------------------------- CLI


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fer_zoo predict-video", description=__doc__.split("\n\n")[0],
                                epilog="Exit status: 0 ok, 2 cannot start (bad input, checkpoint, extractor), "
                                       "3 some video failed to decode, 4 some video had no face.")
    p.add_argument("inputs", nargs="+", help="video files and/or folders of videos (searched recursively)")
    p.add_argument("--ckpt", required=True, help="a checkpoint inside a run folder, or the run folder runs/<name>/")
    p.add_argument("--out", default="predictions", help="output folder (default: ./predictions)")
    p.add_argument("--window", type=int, default=None, help="frames per window (default: the run's num_frames)")
    p.add_argument("--stride", type=int, default=None, help="frames between window starts (default: window // 2)")
    p.add_argument("--batch_size", type=int, default=64, help="windows per model call")
    p.add_argument("--smooth", type=int, default=0,
                   help="also report probabilities averaged over this many windows centred on each (odd; default 0: "
                        "no smoothing). The raw per-window columns are always written")
    crop = p.add_argument_group("face crops (default: the training tree's preprocess.json, else preprocess defaults)")
    crop.add_argument("--margin", type=float, default=None)
    crop.add_argument("--size", type=int, default=None)
    crop.add_argument("--min_confidence", type=float, default=None)
    crop.add_argument("--detector", choices=["short", "full"], default=None)
    crop.add_argument("--snap", type=float, default=None, help="face box grid (see preprocess --snap)")
    crop.add_argument("--crop_mismatch", choices=["warn", "error"], default="warn",
                      help="when the model was trained on inputs other than these face crops (whole photos, other "
                           "crop settings): warn and go on (default), or refuse (exit 2)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        videos = collect_videos(args.inputs)
        overrides = {"margin": args.margin, "size": args.size, "min_confidence": args.min_confidence,
                     "detector": args.detector, "snap": args.snap}
        run = resolve_run(args.ckpt, overrides)
        for key in ("window", "stride"):
            if getattr(args, key) is not None and getattr(args, key) < 1:
                raise InputError(f"--{key} must be >= 1 frame, got {getattr(args, key)}")
        if args.smooth < 0 or (args.smooth > 1 and args.smooth % 2 == 0):
            raise InputError(f"--smooth must be 0 (off) or an odd number of windows, got {args.smooth}")
        window = args.window if args.window is not None else run.num_frames
        stride = args.stride if args.stride is not None else max(1, window // 2)
        if run.crop_mismatch and args.crop_mismatch == "error":
            raise PredictError("the model was not trained on the face crops it would be given here (--crop_mismatch "
                               "error):\n  " + "\n  ".join(run.crop_mismatch))
        model = load_model(run)
        extractors = build_extractors(run, model)
    except (InputError, PredictError, ValueError) as err:
        print(f"predict-video: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    print(f"predict-video: {len(videos)} video(s), checkpoint {run.ckpt}\n  modalities: "
          + ", ".join(f"{m.key}={m.extractor}" for m in run.modalities)
          + f"; crops: {run.track.size}px margin {run.track.margin} ({run.track_from}); trained on: "
          + {"preprocess": "`preprocess` face crops"}.get(run.training_crops, run.training_crops))
    for why in run.crop_mismatch:
        print(f"WARNING: crop mismatch: {why}", file=sys.stderr)
    out = Path(args.out)
    names = clip_ids(videos, dfew_numbers=False)
    results: list[VideoResult] = []
    with native_stderr_to(out / NATIVE_LOG):
        detector = FaceDetector(run.track)
        try:
            for video in videos:
                res = _predict_or_record(video, out / names[video], run, model, extractors, window, stride, detector,
                                         smooth=args.smooth)
                results.append(res)
                print(f"  -> {res.status}: {res.message} ({res.seconds:.1f}s)"
                      + (f" -> {res.out_dir}" if res.status != "failed" else ""), flush=True)
        finally:
            detector.close()
    return _summary(results, out)


def _predict_or_record(video: Path, out_dir: Path, run: RunInfo, model: Any, extractors: dict[str, Any],
                       window: int, stride: int, detector: FaceDetector, smooth: int = 0) -> VideoResult:
    """:func:`predict_one`, with any failure of this one video recorded (status "failed", the reason) so the batch
    goes on, as ``extract`` and ``preprocess`` do. Interrupts (Ctrl-C) still stop the batch."""
    t0 = time.perf_counter()
    try:
        probe_video(video)  # not a video at all (wrong container, no video stream): say so before decoding
        return predict_one(video, out_dir, run, model, extractors, window, stride, detector, smooth=smooth)
    except ClipReadError as err:
        return VideoResult(video, out_dir, "failed", f"cannot read {video}: {err.reason}",
                           seconds=time.perf_counter() - t0)
    except Exception as err:  # noqa: BLE001  (one video's failure must not cost the others their predictions)
        import os
        import traceback

        os.write(2, f"{video}:\n{traceback.format_exc()}".encode())  # fd 2 is the native log here
        return VideoResult(video, out_dir, "failed", f"error while predicting {video}: {type(err).__name__}: {err} "
                           f"(traceback in {NATIVE_LOG})", seconds=time.perf_counter() - t0)


def _summary(results: list[VideoResult], out: Path) -> int:
    out.mkdir(parents=True, exist_ok=True)
    summary = [{"video": str(r.video), "status": r.status, "message": r.message,
                "out_dir": str(r.out_dir) if r.status != "failed" else None, "seconds": round(r.seconds, 2)}
               for r in results]
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    failed = [r for r in results if r.status == "failed"]
    empty = [r for r in results if r.status in ("no_face", "no_valid_frames")]
    for r in failed:
        print(f"FAILED {r.video}: {r.message}", file=sys.stderr)
    for r in empty:
        print(f"{r.message}", file=sys.stderr)
    if failed:
        return EXIT_FAILED
    return EXIT_NO_FACE if empty else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
