"""``python -m fer_zoo import-features``: features other tools already wrote (OpenFace, py-feat, ``.npy``) -> a store.

The result is an ordinary feature store (``<store_root>/<modality>/import-<format>-<hash>/``), so imported features
train, fuse and ablate like extracted ones with no new training code. One file per clip of the source, found by
``--pattern`` (``{clip_id}`` is replaced by the clip's id) under ``--folder``. A clip without a file, or whose file
is bad (truncated, missing columns, wrong width, NaN rows, two rows on one frame, rows past the clip's video, values
beyond float16's range, a py-feat face that changes person), is recorded as failed with the reason and the run goes
on (exit 3 at the end, like ``extract``).

Every imported clip holds one row per frame of the clip (``fer_zoo.imports.alignment``): frames 0..N-1, N from the
clip's video or frame folder when it is on disk, else up to the file's last frame; frames the file has no row for
are ``valid=False`` rows, never a shift of the later rows, so TSN sampling (the same relative row position in every
modality) meets the same moment in an imported and an extracted store. The clip's ``reason`` says how many frames
had no row and, for an OpenFace file of several faces, which one face was kept (``--face_id``, else the face tracked
in the most frames) and how many others were left out.

The store hash covers the format, the selected columns and thresholds, and a fingerprint of the imported files
(name, size, modification time): a changed file makes a different store; a rerun with the same files is a no-op.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jsonargparse import ActionConfigFile, ArgumentParser

from datamodules.feature_store import ClipResult, ShardWriter, check_request, pack, store_path
from datamodules.records import ClipRecord
from fer_zoo.cli_errors import UsageError, from_config_value_error, parse_args
from fer_zoo.extraction.run import library_versions
from fer_zoo.imports.alignment import align_to_frames, missing_in_note, missing_note
from fer_zoo.imports.formats import (
    OPENFACE_GROUPS,
    PYFEAT_GROUPS,
    ImportedClip,
    ImportFileError,
    read_npy,
    read_openface,
    read_pyfeat,
)
from fer_zoo.imports.media import MediaInfo, media_info

FORMATS = ("openface", "pyfeat", "npy")
DEFAULT_COLUMNS = {"openface": ["au_r", "au_c", "gaze", "pose"], "pyfeat": ["aus", "emotions", "pose"], "npy": []}
IMPORT_VERSION = "2"  # 2: rows laid on the clip's frames, one face per clip, float16 range checked
EXIT_SOME_FAILED = 3
MAX_NOTES = 20  # clips whose note (frames without a row, the face kept) the summary prints; the index keeps all


@dataclass
class ImportSpec:
    """What to import and how; everything here is part of the store hash."""

    format: str
    columns: list[str]
    min_confidence: float = 0.5
    fps: float | None = None
    dim: int | None = None
    check_frame_count: bool = True
    face_id: int | None = None

    def read(self, path: Path, video_fps: float | None = None) -> ImportedClip:
        """The file's rows (``video_fps``: the clip's video rate in Hz, when known; places ``.npy`` rows)."""
        if self.format == "openface":
            return read_openface(path, self.columns, self.min_confidence, self.face_id)
        if self.format == "pyfeat":
            return read_pyfeat(path, self.columns, self.fps, self.min_confidence)
        return read_npy(path, self.fps, self.dim, video_fps)


def build_parser() -> ArgumentParser:
    from datamodules.sources import ClipSource  # noqa: F401  (the base type jsonargparse resolves sources against)

    p = ArgumentParser(prog="python -m fer_zoo import-features", description=__doc__.split("\n\n")[0],
                       default_env=False, exit_on_error=False, allow_abbrev=False)
    p.add_argument("--config", action=ActionConfigFile, help="YAML with any of the options below")
    p.add_argument("--source", type=ClipSource, required=True, help="the clip source the files belong to")
    p.add_argument("--store_root", type=str, required=True, help="folder of this dataset's feature stores")
    p.add_argument("--modality", type=str, required=True, help="modality name to store it under (e.g. openface)")
    p.add_argument("--format", type=str, required=True, help=f"one of {list(FORMATS)}")
    p.add_argument("--folder", type=str, required=True, help="folder holding one file per clip")
    p.add_argument("--pattern", type=str, default=None,
                   help="file name under --folder, '{clip_id}' replaced (default: {clip_id}.csv, .npy for npy)")
    p.add_argument("--columns", type=list[str] | None, default=None,
                   help=f"column groups; OpenFace: {list(OPENFACE_GROUPS)}, py-feat: {list(PYFEAT_GROUPS)}")
    p.add_argument("--min_confidence", type=float, default=0.5,
                   help="frames below it are valid=False (OpenFace confidence, py-feat FaceScore)")
    p.add_argument("--fps", type=float | None, default=None,
                   help="py-feat: the video's frame rate (timestamps = frame / fps); .npy: the rows' rate in Hz "
                        "(row i at i / fps s, unless a timestamps file says)")
    p.add_argument("--dim", type=int | None, default=None, help=".npy: the width every file must have")
    p.add_argument("--check_frame_count", type=bool, default=True,
                   help="read the clip's video (when present): a file with rows past its last frame fails, the "
                        "clip runs to its last frame, .npy rows are placed by its frame rate; false: the video is "
                        "not read and the clip ends at the file's last frame")
    p.add_argument("--face_id", type=int | None, default=None,
                   help="OpenFace: import this face_id only (default: the face tracked in the most frames)")
    return p


def fingerprint(files: list[Path | None]) -> str:
    """sha256 over (name, size, mtime_ns) of each file in order (``None`` for a clip without a file)."""
    h = hashlib.sha256()
    for f in files:
        if f is None:
            h.update(b"-\n")
        else:
            st = f.stat()
            h.update(f"{f.name}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def media_frame_count(path: str) -> int | None:
    """Frames of the clip's video or frame folder, or ``None`` when it is not on disk or cannot be counted."""
    return media_info(path).frames


def import_one(clip: ClipRecord, file: Path | None, spec: ImportSpec) -> tuple[ClipResult, list[str] | None]:
    """One clip -> its ClipResult and the file's column names (``None`` when it failed).

    The file's rows are laid on the clip's frames (:func:`~fer_zoo.imports.alignment.align_to_frames`; N from the
    clip's media unless ``check_frame_count`` is off). Any bad input fails the clip with a reason naming the file;
    an imported clip's reason names the frames without a row and the face kept, when there is something to say.
    """
    if file is None:
        return ClipResult.failed(clip.clip_id, "no feature file for this clip"), None
    media = media_info(clip.path) if spec.check_frame_count else MediaInfo()
    try:
        got = align_to_frames(spec.read(file, media.fps), file, media.frames, media.fps or spec.fps, clip.path)
    except ImportFileError as err:
        return ClipResult.failed(clip.clip_id, str(err)), None
    notes = [n for n in (got.info.get("face", ""), got.info.get("grid", ""), missing_note(got)) if n]
    reason = f"{file}: {'; '.join(notes)}" if notes else ""
    return ClipResult(clip.clip_id, got.features, got.valid, got.frame_indices, got.timestamps,
                      reason=reason), got.schema


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    argv = list(sys.argv[1:] if argv is None else argv)
    cfg = parse_args(parser, argv, "import-features")
    try:
        init = parser.instantiate_classes(cfg)
    except (ValueError, KeyError, FileNotFoundError) as err:
        raise from_config_value_error(err) from err
    if init.format not in FORMATS:
        raise UsageError(f"format: {init.format!r} is not one of {list(FORMATS)}")
    folder = Path(init.folder)
    if not folder.is_dir():
        raise UsageError(f"folder: {folder} is not a folder")
    pattern = init.pattern or ("{clip_id}.npy" if init.format == "npy" else "{clip_id}.csv")
    if "{clip_id}" not in pattern:
        raise UsageError(f"pattern: {pattern!r} must contain {{clip_id}}")
    if init.face_id is not None and init.format != "openface":
        raise UsageError(f"face_id: only OpenFace files name their faces (format {init.format!r} has no face_id)")
    spec = ImportSpec(init.format, list(init.columns if init.columns is not None else DEFAULT_COLUMNS[init.format]),
                      init.min_confidence, init.fps, init.dim, init.check_frame_count, init.face_id)
    try:
        clips = init.source.clips()
    except (ValueError, KeyError, FileNotFoundError) as err:  # a label outside the vocabulary, a missing split file
        raise from_config_value_error(err) from err
    summary = import_features(init.source, clips, init.store_root, init.modality, spec, folder, pattern)
    return EXIT_SOME_FAILED if summary["failed"] else 0


def import_features(source: Any, clips: list[ClipRecord], store_root: str | Path, modality: str, spec: ImportSpec,
                    folder: Path, pattern: str, log: Any = print) -> dict[str, Any]:
    """Import one file per clip into a packed store; returns a summary (path, counts, failed clips, extra files)."""
    files = {c.clip_id: folder / pattern.format(clip_id=c.clip_id) for c in clips}
    found = {cid: (f if f.is_file() else None) for cid, f in files.items()}
    suffix = Path(pattern).suffix
    claimed = {f.resolve() for f in found.values() if f is not None}
    extra = sorted(str(f.relative_to(folder)) for f in folder.rglob(f"*{suffix}")
                   if f.is_file() and f.resolve() not in claimed and not f.name.startswith(".")
                   and not f.stem.endswith(("_timestamps", "_timestamps_ms", "_fps")))
    config = {"format": spec.format, "columns": spec.columns, "min_confidence": spec.min_confidence,
              "fps": spec.fps, "dim": spec.dim, "check_frame_count": spec.check_frame_count,
              "face_id": spec.face_id, "pattern": pattern,
              "files": fingerprint([found[c.clip_id] for c in clips])}
    key = hashlib.sha256(json.dumps({"version": IMPORT_VERSION, **config}, sort_keys=True).encode()).hexdigest()[:8]
    name = f"import-{spec.format}"
    path = store_path(store_root, modality, name, key)
    request = {"modality": modality, "extractor": name, "version": IMPORT_VERSION, "config": config,
               "frame_cap": None, "source": source.name}
    order = [c.clip_id for c in clips]
    if (path / "meta.json").exists():
        check_request(path, request)
        log(f"[{modality}] {path}: already imported from these files (nothing changed)")
    else:
        missing = [cid for cid, f in found.items() if f is None]
        log(f"[{modality}] importing {spec.format} {spec.columns or ''} from {folder} -> {path}: "
            f"{len(clips) - len(missing)} files for {len(clips)} clips")
        writer = ShardWriter(path, request, flush_every=64)
        schema: list[str] | None = None
        for clip in clips:
            result, cols = import_one(clip, found[clip.clip_id], spec)
            if cols is not None:
                if schema is None:
                    schema = cols
                elif cols != schema:  # another OpenFace version or column set: refuse to stack unlike columns
                    result, cols = ClipResult.failed(clip.clip_id, f"{found[clip.clip_id]}: columns differ from "
                                                     f"the first file's ({len(cols)} vs {len(schema)})"), None
            writer.add(result)
        writer.flush()
        if schema is None:
            raise UsageError(f"no clip could be imported from {folder} with pattern {pattern!r} (first clip's file: "
                             f"{files[order[0]] if order else '-'})")
        meta = {**request, "dim": len(schema), "schema": schema, "store_key": key,
                "source": {"name": source.name, "num_clips": len(order)}, "libraries": library_versions(),
                "weights_source": f"imported {spec.format} files from {folder}",
                "import": {"format": spec.format, "folder": str(folder), "pattern": pattern,
                           "files_fingerprint": config["files"], "columns": spec.columns}}
        pack(path, order, meta)
    import pandas as pd

    idx = pd.read_parquet(path / "index.parquet", columns=["clip_id", "length", "valid_count", "status", "reason"])
    failed = dict(zip(idx.clip_id[idx.status == "failed"], idx.reason[idx.status == "failed"]))
    noted = (idx.status == "ok") & (idx.reason != "")
    notes = dict(zip(idx.clip_id[noted], idx.reason[noted]))
    total = int(idx.length.sum())
    no_row = sum(missing_in_note(r) for r in notes.values())
    log(f"[{modality}] {len(idx) - len(failed)} clips imported, {len(failed)} failed, "
        f"{(idx.valid_count.sum() / total if total else 0):.1%} valid frames; store {path}")
    if no_row:
        log(f"  {no_row} of {total} frames without a row in their file -> invalid (never shifted); per clip:")
    for cid, reason in list(notes.items())[:MAX_NOTES]:
        log(f"  note [{modality}] {cid}: {reason}")
    if len(notes) > MAX_NOTES:
        log(f"  ... and {len(notes) - MAX_NOTES} more clips with a note (column 'reason' of {path}/index.parquet)")
    for cid, reason in failed.items():
        log(f"  FAILED [{modality}] {cid}: {reason}")
    if extra:
        log(f"  {len(extra)} files under {folder} match no clip of {source.name!r}, e.g. {extra[:5]}")
    older = [p for p in path.parent.glob(f"{name}-*") if p != path and (p / "meta.json").exists()]
    if older:
        log(f"  note: older imports of {modality!r} (other files or settings) are still there: "
            f"{[str(p) for p in older]}; remove them, or name the store as '{modality}/{path.name}' in training")
    return {"path": path, "clips": len(idx), "failed": failed, "notes": notes, "frames_without_row": no_row,
            "extra_files": extra, "valid_frames": float(idx.valid_count.sum() / total) if total else 0.0}


if __name__ == "__main__":
    sys.exit(main())
