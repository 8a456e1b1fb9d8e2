"""Readers for per-frame features other tools wrote: OpenFace 2.x CSV, py-feat CSV, one ``.npy`` per video.

Each reader turns one file into an :class:`ImportedClip` (features ``float32 [T, D]``, valid mask ``bool [T]``,
0-based frame indices ``int64 [T]`` and timestamps in seconds ``float64 [T]``) or raises :class:`ImportFileError`
with a reason that names the file; the import run records that clip as failed and goes on.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np


class ImportFileError(ValueError):
    """A feature file that cannot be imported (truncated, missing columns, wrong width, NaN rows, ...)."""


@dataclass
class ImportedClip:
    """One clip's imported features; ``schema`` names the ``D`` columns."""

    features: np.ndarray
    valid: np.ndarray
    frame_indices: np.ndarray
    timestamps: np.ndarray
    schema: list[str]
    info: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------------------------------------------- OpenFace 2.x

# Column groups of OpenFace 2.x's FeatureExtraction / FaceLandmarkVidMulti CSV (OpenFace wiki, "Output Format").
OPENFACE_GROUPS: dict[str, re.Pattern[str]] = {
    "au_r": re.compile(r"^AU\d\d_r$"),  # action unit intensities, 0-5
    "au_c": re.compile(r"^AU\d\d_c$"),  # action unit presence, 0/1
    "gaze": re.compile(r"^gaze_(\d_[xyz]|angle_[xy])$"),  # gaze direction vectors (and angles, OpenFace >= 2.1)
    "pose": re.compile(r"^pose_[TR][xyz]$"),  # head pose: translation (mm) and rotation (radians)
    "landmarks_2d": re.compile(r"^[xy]_\d+$"),  # 68 facial landmarks in pixels
    "landmarks_3d": re.compile(r"^[XYZ]_\d+$"),  # 68 facial landmarks in mm, camera frame
    "pdm": re.compile(r"^p_(scale|r[xyz]|t[xy]|\d+)$"),  # point distribution model: rigid + non-rigid shape
}
OPENFACE_REQUIRED = ("frame", "timestamp", "confidence", "success")


def read_openface(path: Path, groups: list[str], min_confidence: float = 0.5) -> ImportedClip:
    """OpenFace 2.x CSV -> an imported clip.

    OpenFace writes headers with a leading space (``frame, timestamp, ...``): names are stripped. ``frame`` is
    1-based and becomes a 0-based frame index; ``timestamp`` is in seconds. A frame is valid when ``success == 1``
    and ``confidence >= min_confidence``; its features are kept as written either way (the valid mask hides them).
    Several faces per frame (FaceLandmarkVidMulti, a ``face_id`` column): the face with the highest confidence in
    each frame is kept. Columns are taken in the file's order within each group, groups in the order asked.
    """
    import pandas as pd

    df, columns = _read_groups(path, groups, OPENFACE_GROUPS, OPENFACE_REQUIRED, "an OpenFace 2.x CSV")
    if "face_id" in df.columns:
        df = df.sort_values(["frame", "confidence"], ascending=[True, False]).drop_duplicates("frame")
    frames = pd.to_numeric(df["frame"], errors="coerce").to_numpy()
    if np.isnan(frames).any() or (np.diff(frames) <= 0).any():
        raise ImportFileError(f"{path}: the frame column is not increasing integers (a truncated or edited file?)")
    values = df[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if np.isnan(values).any():
        rows = sorted(set(np.nonzero(np.isnan(values))[0].tolist()))
        raise ImportFileError(f"{path}: {len(rows)} rows with missing or non-numeric values (first at frame "
                              f"{int(frames[rows[0]])}): a truncated file?")
    success = pd.to_numeric(df["success"], errors="coerce").fillna(0).to_numpy() == 1
    confidence = pd.to_numeric(df["confidence"], errors="coerce").fillna(0).to_numpy()
    return ImportedClip(
        features=values.astype(np.float32), valid=success & (confidence >= min_confidence),
        frame_indices=frames.astype(np.int64) - 1,
        timestamps=pd.to_numeric(df["timestamp"], errors="coerce").fillna(0).to_numpy(np.float64),
        schema=columns)


def _read_groups(path: Path, groups: list[str], known: dict[str, re.Pattern[str]], required: tuple[str, ...],
                 what: str) -> tuple[Any, list[str]]:
    """The CSV and the names of its columns in ``groups`` (file order within a group, groups in the order asked)."""
    unknown = [g for g in groups if g not in known]
    if unknown or not groups:
        raise ImportFileError(f"unknown column groups {unknown}; choose from {list(known)}")
    df = _read_csv(path)
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise ImportFileError(f"{path}: not {what}, missing columns {missing}")
    columns: list[str] = []
    for g in groups:
        found = [c for c in df.columns if known[g].match(c)]
        if not found:
            raise ImportFileError(f"{path}: no columns of group {g!r} (the tool ran without that output?)")
        columns += found
    return df, columns


def _read_csv(path: Path) -> Any:
    import pandas as pd

    try:
        df = pd.read_csv(path, skipinitialspace=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ImportFileError(f"{path}: unreadable CSV ({' '.join(str(err).split())})") from None
    df.columns = [str(c).strip() for c in df.columns]
    if df.empty:
        raise ImportFileError(f"{path}: no rows")
    return df


# --------------------------------------------------------------------------------------------------------- py-feat

# py-feat's Fex result CSV (``detector.detect_video(...).to_csv``): column groups by name pattern.
PYFEAT_GROUPS: dict[str, re.Pattern[str]] = {
    "aus": re.compile(r"^AU\d\d$"),
    "emotions": re.compile(r"^(anger|disgust|fear|happiness|sadness|surprise|neutral)$"),
    "landmarks": re.compile(r"^[xy]_\d+$"),
    "pose": re.compile(r"^(Pitch|Roll|Yaw)$"),
    "box": re.compile(r"^FaceRect(X|Y|Width|Height)$"),
}
PYFEAT_REQUIRED = ("frame", "FaceRectWidth", "FaceRectHeight", "FaceScore")


def read_pyfeat(path: Path, groups: list[str], fps: float | None = None, min_score: float = 0.5) -> ImportedClip:
    """py-feat result CSV -> an imported clip.

    Several faces per frame: the face with the **largest box** (``FaceRectWidth * FaceRectHeight``) is kept in
    every frame (the subject of a face video is usually the nearest face); ties go to the higher ``FaceScore``.
    A frame is valid when that face's ``FaceScore >= min_score`` and its values are finite (py-feat writes NaN when
    no face was found). ``frame`` is 0-based as py-feat writes it; timestamps are ``frame / fps`` when ``fps`` is
    given, else the ``approx_time`` column when present, else NaN-free frame numbers divided by 30 (stated in meta).
    """
    import pandas as pd

    df, columns = _read_groups(path, groups, PYFEAT_GROUPS, PYFEAT_REQUIRED, "a py-feat result CSV")
    df = df.assign(_area=df["FaceRectWidth"].fillna(0) * df["FaceRectHeight"].fillna(0),
                   _score=df["FaceScore"].fillna(-1))
    df = df.sort_values(["frame", "_area", "_score"], ascending=[True, False, False]).drop_duplicates("frame")
    frames = pd.to_numeric(df["frame"], errors="coerce").to_numpy()
    if np.isnan(frames).any():
        raise ImportFileError(f"{path}: non-numeric frame numbers")
    values = df[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    finite = np.isfinite(values).all(axis=1)
    valid = finite & (df["_score"].to_numpy() >= min_score)
    if fps:
        times, rule = frames / float(fps), f"frame / {fps}"
    elif "approx_time" in df.columns:
        times, rule = pd.to_numeric(df["approx_time"], errors="coerce").fillna(0).to_numpy(), "approx_time column"
    else:
        times, rule = frames / 30.0, "frame / 30 (no fps given)"
    return ImportedClip(features=np.where(finite[:, None], values, 0.0).astype(np.float32), valid=valid,
                        frame_indices=frames.astype(np.int64), timestamps=np.asarray(times, np.float64),
                        schema=columns, info={"timestamps": rule, "face_rule": "largest box, then FaceScore"})


# ------------------------------------------------------------------------------------------------------ .npy files


def read_npy(path: Path, fps: float | None = None, dim: int | None = None) -> ImportedClip:
    """``[T, D]`` array (one per video, e.g. v-iashin/video_features' ``<video>_<feature>.npy``) -> an imported clip.

    Timestamps: a sibling ``<stem>_timestamps.npy`` (seconds, or milliseconds when named ``*_timestamps_ms.npy``)
    wins; else a sibling ``<stem>_fps.npy`` / ``fps`` argument gives ``frame / fps``. A 1-D array is one feature per
    frame. Rows with NaN/inf are refused (they would be silently zero-filled downstream), as is a width other than
    ``dim`` when given (features of another extractor).
    """
    try:
        arr = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ImportFileError(f"{path}: unreadable .npy ({err})") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or len(arr) == 0:
        raise ImportFileError(f"{path}: expected a [T, D] array, got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ImportFileError(f"{path}: {arr.shape[1]} columns, but this import expects {dim}")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ImportFileError(f"{path}: {int(bad.sum())} of {len(arr)} rows hold NaN/inf (first: row {first})")
    stem = path.with_suffix("")
    ts_file, ms_file, fps_file = (Path(f"{stem}_timestamps.npy"), Path(f"{stem}_timestamps_ms.npy"),
                                  Path(f"{stem}_fps.npy"))
    if ts_file.is_file() or ms_file.is_file():
        ts = np.load(ts_file if ts_file.is_file() else ms_file).astype(np.float64).ravel()
        ts = ts if ts_file.is_file() else ts / 1000.0
        if len(ts) != len(arr):
            raise ImportFileError(f"{path}: {len(arr)} rows but {len(ts)} timestamps in its timestamps file")
        rule = "timestamps file"
    else:
        rate = float(np.load(fps_file).ravel()[0]) if fps_file.is_file() else fps
        if not rate:
            raise ImportFileError(f"{path}: no timestamps file beside it and no fps given (--fps)")
        ts, rule = np.arange(len(arr)) / rate, f"frame / {rate}"
    return ImportedClip(features=arr.astype(np.float32), valid=np.ones(len(arr), bool),
                        frame_indices=np.arange(len(arr), dtype=np.int64), timestamps=ts,
                        schema=[f"f{i}" for i in range(arr.shape[1])], info={"timestamps": rule})
