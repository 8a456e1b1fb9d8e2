"""The extraction run: clips -> frames -> extractor -> shards -> packed store, through ``Trainer.predict``.

One path for every scale: on this laptop it is one process whose DataLoader workers decode (and, for CPU-bound
extractors such as MediaPipe, also extract, which makes them a process pool); on GPUs or nodes the same code runs
under DDP, each rank writing its own shards. Decoding overlaps with the model because it happens in the workers.
"""

from __future__ import annotations

import contextlib
import functools
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from datamodules.crops import crop_record
from datamodules.feature_store import ClipResult, check_request, pack, store_key, store_path
from datamodules.frames import FRAME_ORDER, ClipReadError, FrameCountMismatch, read_frames, stream_frames
from datamodules.labels import canonical_label
from datamodules.provenance import Provenance, clips_provenance
from datamodules.records import ClipRecord
from extractors import Extractor, get_extractor
from extractors.registry import extractor_class
from extractors.weights import WeightsUnavailableError
from fer_zoo.extraction.clip_item import ClipItem
from fer_zoo.extraction.plan import plan_store_rerun
from fer_zoo.library_log import LibraryLog
from fer_zoo.native_stderr import native_stderr_to

WORKER_LOG = "worker_stderr.log"  # in the store folder: what extraction workers (or, with 0 workers, MediaPipe
# running in the main process) wrote to stderr
RANDOM_LABEL = "RANDOM"  # in a random-weights store's folder name: <extractor>-RANDOM-<key> (tests only)
LIBRARY_LOG = "extract.log"  # in the store folder: Lightning's messages (devices, tips) and Python warnings


@dataclass
class ExtractorSpec:
    """An extractor by registry name and config; ``fallback`` (same shape) is used only when the requested
    pretrained weights cannot be had here, and the store then says so (it is named after what really ran)."""

    name: str
    config: dict[str, Any] = field(default_factory=dict)
    fallback: dict[str, Any] | None = None


def with_class_names(spec: ExtractorSpec, source: Any) -> ExtractorSpec:
    """``spec`` with ``class_names`` set from ``source.vocabulary`` (its order) when the extractor needs them
    (zero-shot) and the config does not name them; a config that names them must match the vocabulary exactly."""
    if not getattr(extractor_class(spec.name), "needs_class_names", False):
        return spec
    vocab = getattr(source, "vocabulary", None)
    classes = list(vocab.classes) if vocab is not None and hasattr(vocab, "classes") else None
    given = spec.config.get("class_names")
    if given is None:
        if classes is None:
            raise ValueError(f"extractor {spec.name!r} needs class names: the source {getattr(source, 'name', '?')!r}"
                             " has no label vocabulary, so set `class_names` in the modality's config")
        return ExtractorSpec(spec.name, {**spec.config, "class_names": classes}, spec.fallback)
    if classes is not None and [canonical_label(c) for c in given] != classes:
        raise ValueError(f"extractor {spec.name!r}: config class_names {list(given)} differ from the source's "
                         f"{vocab.name!r} vocabulary {classes} (order included); probabilities would be read "
                         "against the wrong classes. Drop `class_names` to use the vocabulary's.")
    return spec


class ExtractorBuildError(Exception):
    """A modality's extractor cannot be built (bad config value, weights missing, cut short or not fitting...):
    ``str()`` is one line naming the modality, the extractor and the cause; ``__cause__`` is the original error."""

    def __init__(self, modality: str, extractor: str, err: BaseException) -> None:
        self.modality, self.extractor = modality, extractor
        text = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
        text = " ".join(str(text).split()) or type(err).__name__
        if not isinstance(err, ValueError | KeyError | TypeError | OSError | WeightsUnavailableError):
            text = f"{type(err).__name__}: {text}"  # e.g. ImportError: a backend that is not installed
        super().__init__(f"modality {modality!r}: extractor {extractor!r} cannot be built: {text}")


def build_extractor(spec: ExtractorSpec, log: Any = print) -> tuple[Extractor, dict[str, Any]]:
    """Build the extractor, falling back loudly when weights are unavailable; returns it and a note for the meta."""
    try:
        return get_extractor(spec.name, **spec.config), {}
    except WeightsUnavailableError as err:
        if not spec.fallback:
            raise
        fb = ExtractorSpec(spec.fallback["name"], dict(spec.fallback.get("config", {})))
        log(f"WARNING: {err}\n  -> falling back to `{fb.name}` as configured; the store records this.")
        ext, _ = build_extractor(fb, log)
        return ext, {"requested": {"name": spec.name, "config": spec.config}, "fallback_reason": str(err)}


class ClipFrames(Dataset):
    """Decodes clips in loader workers; CPU-bound extractors also run here (one instance per worker process).

    ``sources``: each clip's provenance, stat'ed by the run before any clip is read, recorded with its result (a
    file that changes after that stat no longer matches it, so the next run extracts it again).
    """

    def __init__(self, clips: list[ClipRecord], extractor: Extractor, frame_cap: int | None,
                 decoder_threads: int = 1, sources: list[Provenance] | None = None) -> None:
        self.clips, self.extractor, self.frame_cap = clips, extractor, frame_cap
        self.decoder_threads = decoder_threads
        self.sources = sources

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> ClipItem:
        clip = self.clips[i]
        prov = self.sources[i] if self.sources is not None else None
        try:
            try:
                return self._item(clip, stream_frames(clip.path, self.frame_cap, self.decoder_threads, clip.box),
                                  prov)
            except FrameCountMismatch:  # the container misstated its frame count: read it whole, counting first
                return self._item(clip, read_frames(clip.path, self.frame_cap, self.decoder_threads, clip.box),
                                  prov)
        except ClipReadError as err:  # the reason names the file: a wrong root shows at once in the summary
            failed = ClipResult.failed(clip.clip_id, f"{err.reason} ({err.path})").from_source(prov)
            return ClipItem(clip.clip_id, result=failed, provenance=prov)

    def _item(self, clip: ClipRecord, frames: Any, prov: Provenance | None) -> ClipItem:
        """Frames are consumed as they decode (one full-size frame in memory); indices are known after the pass."""
        if self.extractor.kind == "audio":
            return self._audio_item(clip, frames, prov)
        if self.extractor.runs_in_workers:
            feats, valid = self.extractor.extract(frames)
            res = ClipResult(clip.clip_id, feats, valid, frames.indices, frames.timestamps).from_source(prov)
            return ClipItem(clip.clip_id, result=res, provenance=prov)
        pre = self.extractor.preprocess(frames)
        return ClipItem(clip.clip_id, pre, None, frames.indices, frames.timestamps, prov)

    def _audio_item(self, clip: ClipRecord, frames: Any, prov: Provenance | None) -> ClipItem:
        """An audio store holds the rows the visual stores hold: the same frame pass (same cap, indices, times)
        chooses the frames, then each frame gets the window of the soundtrack around its timestamp."""
        from extractors.audio_base import AudioInput

        for _ in frames:  # the pass that fixes which frames (and when) every store of this clip holds
            pass
        track = self.extractor.read_soundtrack(clip.path, clip.audio)  # its audio_stream; AudioReadError fails
        # this store only (a ClipReadError)
        seconds = getattr(frames, "fps", None) is not None
        pre = self.extractor.preprocess(AudioInput(track, np.asarray(frames.timestamps, np.float64), seconds))
        return ClipItem(clip.clip_id, pre, None, frames.indices, frames.timestamps, prov, reason=pre.reason)


def _one(batch: list[ClipItem]) -> ClipItem:
    return batch[0]


def _worker_context(extractor: Extractor) -> Any:
    """Start method of the loader workers.

    MediaPipe does not survive fork: once this process has run a graph (an earlier modality with num_workers=0, a
    notebook, a test), forked workers abort. Extractors that run in the workers therefore get workers forked from a
    clean forkserver with the heavy modules preloaded (spawn works too but costs ~5 s per run, measured in
    benchmarks/bench_extraction.py). Network extractors keep fork: their workers only decode.
    """
    if not extractor.runs_in_workers:
        return None
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    # Importing MediaPipe (0.5 s) is safe to share; running a graph is what breaks a fork, and the server never does.
    ctx.set_forkserver_preload(["torch", "cv2", "av", "fer_zoo.extraction.run", "extractors._mediapipe",
                                "extractors.facemesh", "extractors.pose"])
    return ctx


def _worker_init(_: int, stderr_log: str | None = None) -> None:
    """A worker is one core's worth of work: the workers are the parallelism (see ``decoder_threads``).

    ``stderr_log``: where the worker's stderr goes. MediaPipe's C++ code logs two warnings per clip (a graph per
    clip) straight to file descriptor 2, which buried the progress bar; errors still reach the main process, as
    Python exceptions through the DataLoader.
    """
    import os

    import cv2

    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    if stderr_log:
        os.makedirs(os.path.dirname(stderr_log), exist_ok=True)
        fd = os.open(stderr_log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 2)
        os.close(fd)


def library_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version()}
    for pkg in ("torch", "torchvision", "mediapipe", "numpy", "opencv-contrib-python", "av", "openpifpaf",
                "kaldi-native-fbank", "transformers", "timm", "open_clip_torch", "huggingface_hub"):
        with contextlib.suppress(md.PackageNotFoundError):
            out[pkg] = md.version(pkg)
    return out


@dataclass
class StoreSummary:
    """One modality's run; ``extracted``: reason (new, changed, retry) -> clips; ``changed``: clip -> how its source
    changed; ``gone``: clip -> its vanished source (features kept); ``unknown``: clips kept with no provenance."""

    modality: str
    path: Path
    clips: int
    skipped: int
    ok: int
    failed: dict[str, str]
    valid_frames: float
    extracted: dict[str, int] = field(default_factory=dict)
    changed: dict[str, str] = field(default_factory=dict)
    gone: dict[str, str] = field(default_factory=dict)
    unknown: int = 0
    extractor: str = ""  # the extractor that ran: the configured fallback's name when the requested one could not
    requested: str = ""  # the extractor the config asked for, when the fallback ran instead (else empty)
    fallback_reason: str = ""  # why it could not: the first sentence of the reason (in full in meta.json)


def extract_modality(source: Any, clips: list[ClipRecord], store_root: str | Path, modality: str,
                     spec: ExtractorSpec, frame_cap: int | None = None, trainer_kwargs: dict[str, Any] | None = None,
                     num_workers: int = 2, flush_every: int = 16, decoder_threads: int = 1,
                     retry_failed: bool = False, log: Any = print,
                     current: dict[str, Provenance] | None = None) -> StoreSummary:
    """Extract one modality over ``clips`` into its store (skipping finished clips) and pack it.

    ``num_workers`` loader processes decode (and run MediaPipe extractors), each with ``decoder_threads`` video
    decoder threads (0: FFmpeg's choice, one per core). Scale with workers, one per core: with as many workers as
    cores, more decoder threads only add CPU time (measured in benchmarks/bench_extraction.py). Clips that failed
    in an earlier run are skipped like finished ones unless ``retry_failed`` (after fixing a path or a file).

    A clip whose source changed since its features were extracted (``fer_zoo.extraction.plan``) is extracted again
    and replaces the old result at the pack; with nothing to extract and nothing unpacked, no Trainer is built.
    ``current``: every clip's provenance when the caller has it (one stat pass shared by all modalities of a run).
    Raises :class:`ExtractorBuildError` (one line: modality, extractor, cause) when the extractor cannot be built;
    nothing is written then.
    """
    try:
        extractor, fallback_note = build_extractor(with_class_names(spec, source), log)
    except Exception as err:  # any cause: the command prints one line (FER_ZOO_DEBUG=1: the traceback)
        raise ExtractorBuildError(modality, spec.name, err) from err
    key = store_key(extractor.config_hash, frame_cap)
    random_weights = bool(extractor.random_weights)
    if random_weights:
        log(f"WARNING: [{modality}] {extractor.name} has randomly initialised weights (tests only): the store is "
            f"named *-{RANDOM_LABEL}-* and `fit` refuses it unless --data.allow_random_weights true")
    label = f"{extractor.name}-{RANDOM_LABEL}" if random_weights else extractor.name
    path = store_path(store_root, modality, label, key)
    request = {"modality": modality, "extractor": extractor.name, "version": extractor.version,
               "config": extractor.config, "frame_cap": frame_cap, "source": source.name,
               "frame_order": FRAME_ORDER}  # how frame folders were ordered: part of the provenance
    if path.exists():  # a folder made for another request is refused, even when all of its clips look done
        check_request(path, request)
    order = [c.clip_id for c in clips]
    if current is None:
        current = dict(zip(order, clips_provenance(clips)))  # stat calls only
    plan = plan_store_rerun(path, clips, current, retry_failed)
    todo = plan.todo
    log(f"[{modality}] {extractor.name} -> {path}: {len(todo)} to extract, {len(order) - len(todo)} already done"
        f"{plan.note()}")
    if plan.unknown:
        log(f"[{modality}] {len(plan.unknown)} clips were packed before stores recorded their source: kept unchecked "
            "(extract into a new --store_root to record where every clip came from)")
    unpacked = any((path / "shards").glob("shard-*.npz")) if path.exists() else False
    ran = {"extractor": extractor.name, **fallback_words(fallback_note)}
    if not todo and not unpacked and (path / "meta.json").exists():  # a no-op rerun: no Trainer, no pack
        return summarize(modality, path, len(order), plan, **ran)
    import lightning as L  # only when there is work (see fer_zoo.extraction.lightning_parts)

    from fer_zoo.extraction.lightning_parts import ClipProgressBar, ExtractionModule, StoreWriter
    from fer_zoo.lightning_progress import LineProgressBar, wants_line_progress

    # Lightning's device lines and tips, and Python warnings, go to the store's extract.log, not the terminal
    # (Lightning is imported first: its import gives its loggers their console handlers, which this then holds).
    with LibraryLog() as library_log:
        library_log.to_file(path / LIBRARY_LOG)
        kwargs = {"accelerator": "auto", "devices": 1, "logger": False, "enable_checkpointing": False,
                  "enable_model_summary": False, **(trainer_kwargs or {})}
        callbacks: list[Any] = [StoreWriter(path, request, flush_every)]
        label = f"extract {modality}"
        if wants_line_progress(kwargs.get("enable_progress_bar"), callbacks):  # piped, in a log file: plain lines
            callbacks.append(LineProgressBar(predict_label=label, predict_unit="clip"))
        elif kwargs.get("enable_progress_bar", True) is not False:  # Lightning refuses a bar callback when bars are off
            callbacks.append(ClipProgressBar(label))
        trainer = L.Trainer(callbacks=callbacks, **kwargs)
        if todo:
            context = _worker_context(extractor) if num_workers else None
            stderr_log = str(path / WORKER_LOG) if extractor.runs_in_workers else None
            init = functools.partial(_worker_init, stderr_log=stderr_log) if num_workers else None
            sources = [current[c.clip_id] for c in todo]
            loader = DataLoader(ClipFrames(todo, extractor, frame_cap, decoder_threads, sources), batch_size=1,
                                collate_fn=_one,
                                num_workers=num_workers, worker_init_fn=init,
                                multiprocessing_context=context, persistent_workers=False)
            # With 0 workers MediaPipe runs here: its C++ log goes to the workers' file, not the terminal.
            quiet = native_stderr_to(path / WORKER_LOG) if stderr_log and not num_workers else contextlib.nullcontext()
            with quiet:
                trainer.predict(ExtractionModule(extractor), loader, return_predictions=False)
        elif not (path / "meta.json").exists():
            check_request(path, request, create=True)  # nothing to extract but never packed: put the request on disk
        trainer.strategy.barrier()
        # Packs also when only shards are new: a run killed after its last shard, before the pack, left them unpacked.
        if trainer.is_global_zero and (todo or unpacked or not (path / "meta.json").exists()):
            meta = {**request, "dim": extractor.dim, "schema": extractor.schema, "store_key": key,
                    "source": {"name": source.name, "num_clips": len(order)}, "libraries": library_versions(),
                    **extractor.describe(), "random_weights": random_weights, **fallback_note,
                    # which clips are `preprocess` face crops (predict-video compares them with its own crops)
                    "face_crops": crop_record((c.path for c in clips), sum(c.box is not None for c in clips))}
            pack(path, order, meta, current)
        trainer.strategy.barrier()
    logs = f"Lightning's messages and warnings: {path / LIBRARY_LOG}"
    if todo and extractor.runs_in_workers and (path / WORKER_LOG).exists():
        logs += f"; MediaPipe's C++ log (native stderr): {path / WORKER_LOG}"
    log(f"[{modality}] logs: {logs}")
    return summarize(modality, path, len(order), plan, **ran)


def fallback_words(note: dict[str, Any]) -> dict[str, str]:
    """``build_extractor``'s note as the summary's ``requested`` (the extractor the config asked for) and
    ``fallback_reason`` (the first sentence of why it could not run: it names the weights and the cause); empty
    when nothing fell back."""
    if not note:
        return {}
    reason = " ".join(str(note.get("fallback_reason", "")).split())
    first = re.split(r"(?<=[.)])\s+(?=[A-Z])", reason, maxsplit=1)[0].rstrip(".")
    return {"requested": str(note["requested"]["name"]), "fallback_reason": first}


def summarize(modality: str, path: Path, num_clips: int, plan: Any, extractor: str = "", requested: str = "",
              fallback_reason: str = "") -> StoreSummary:
    """The packed store's counts plus what ``plan`` (a ``RerunPlan``) extracted, kept and found gone; ``extractor``
    ran, instead of ``requested`` for ``fallback_reason`` when the configured fallback ran (:func:`fallback_words`)."""
    import pandas as pd

    idx = pd.read_parquet(path / "index.parquet", columns=["clip_id", "length", "valid_count", "status", "reason"])
    failed = dict(zip(idx.clip_id[idx.status == "failed"], idx.reason[idx.status == "failed"]))
    total = int(idx.length.sum())
    return StoreSummary(modality, path, len(idx), num_clips - len(plan.todo), int((idx.status == "ok").sum()),
                        failed, float(idx.valid_count.sum() / total) if total else 0.0, plan.counts(),
                        dict(plan.changes), dict(plan.gone), len(plan.unknown), extractor, requested,
                        fallback_reason)
