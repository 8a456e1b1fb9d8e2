"""The run a prediction uses: its folder, checkpoint, config, and each modality's store meta; the model and the
extractors rebuilt exactly as they made the model's inputs.

``predict-video`` reads the run folder's ``config.yaml`` (modalities, store root), ``results.json`` (the store of
each modality, the checkpoint the fit tested) and each store's ``meta.json`` (extractor name, full resolved config,
frame cap); each extractor is rebuilt from exactly those (no fallback: a missing weight file is an error), then
checked against the store's key (config hash + frame cap) and width. When a store folder is gone, a copy of its
meta in ``results.json`` (``stores.<modality>.meta``) is used if the run saved one. The face-crop settings are the
training tree's (``preprocess.json``, or the stores' ``face_crops`` record), and where the model learned from other
pixels than the crops it is given here, :func:`check_training_crops` says why.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fer_zoo.video.face_track import TrackConfig, recorded_settings


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
    num_frames: int  # frames per model input: data.num_frames (clip task) or data.window (dense task)
    short_clips: str = "stretch"  # what the run's DataModule made of clips shorter than num_frames
    task: str = "clip"  # clip: one answer per window (TSN-sampled); dense: one answer per frame token
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
    task = str(config.get("task") or "clip")
    if task == "dense":  # per-frame model: windows of consecutive frames, no TSN sampling
        run = RunInfo(run_dir, ckpt, config, results, int(data.get("window") or 32), "pad", task)
    else:
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
    """The crop settings of the training tree when the run was trained on ``preprocess`` output (its source's
    ``preprocess.json``, else the one setting its stores' ``face_crops`` records), else defaults; the command line
    overrides. Only the settings that change a crop's pixels (``datamodules.crops.PIXEL_KEYS``) come from the
    training tree: whose faces are followed and how (``faces``, ``detect_every``, re-identification) are today's
    defaults unless given, so a model trained on one-face crops still answers for every person."""
    from datamodules.crops import PIXEL_KEYS

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
    pixels = {k: v for k, v in recorded_settings(base).items() if k in PIXEL_KEYS} if base else {}
    set_here = {k: v for k, v in overrides.items() if v is not None}
    if set_here:
        origin = f"{origin} + command line ({', '.join(sorted(set_here))})"
    merged = {**pixels, **set_here}
    return TrackConfig(**{k: merged[k] for k in TrackConfig.__dataclass_fields__ if k in merged}), origin


# ------------------------------------------------------------------------------------------- model + extractors


def load_model(run: RunInfo) -> Any:
    """The run's LightningModule in eval mode: ``FERLitModule`` (clip task) or ``DenseLitModule`` (dense task)."""
    if run.task == "dense":
        from fer_zoo.dense.lit_module import DenseLitModule as Module
    else:
        from fer_zoo.training.lit_module import FERLitModule as Module

    try:
        model = Module.load_from_checkpoint(str(run.ckpt), map_location="cpu")
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
