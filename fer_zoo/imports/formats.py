"""Readers for per-frame features other tools wrote: OpenFace 2.x CSV, py-feat CSV, one ``.npy`` per video.

Each reader turns one file into an :class:`ImportedClip` (features ``float32 [T, D]``, valid mask ``bool [T]``,
0-based source frame indices ``int64 [T]`` and timestamps in seconds ``float64 [T]``), one row per row of the file
(of the one face kept), or raises :class:`ImportFileError` with a reason that names the file; the import run records
that clip as failed and goes on. :func:`fer_zoo.imports.alignment.align_to_frames` then lays the rows on the clip's
frames, so a frame without a row is an invalid row instead of a shift of every later row.

Every reader refuses values the store cannot keep: it holds float16, whose finite range is ``|x| <= 65504``
(:data:`FLOAT16_MAX`); a larger value would be stored as ``inf``.
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
    """One clip's imported features; ``schema`` names the ``D`` columns; ``step``: source frames per row of the
    clip's grid (1 when the tool wrote a row per frame; more for a file that holds every n-th frame)."""

    features: np.ndarray
    valid: np.ndarray
    frame_indices: np.ndarray
    timestamps: np.ndarray
    schema: list[str]
    info: dict[str, Any] = field(default_factory=dict)
    step: float = 1.0


FLOAT16_MAX = float(np.finfo(np.float16).max)  # 65504: the largest finite value of the store's dtype


def check_float16_range(path: Path, values: np.ndarray, schema: list[str]) -> None:
    """Raise :class:`ImportFileError` naming ``path``, the column and its largest ``|x|`` when a finite value of
    ``values [T, D]`` is beyond :data:`FLOAT16_MAX` (the store would keep it as ``inf``). NaN/inf are left to each
    reader's own rule."""
    with np.errstate(invalid="ignore"):
        big = np.isfinite(values) & (np.abs(values) > FLOAT16_MAX)
    if not big.any():
        return
    cols = np.flatnonzero(big.any(axis=0))
    peaks = np.where(big, np.abs(values), 0.0).max(axis=0)[cols]
    worst = int(cols[np.argmax(peaks)])
    more = f" ({len(cols)} columns in all)" if len(cols) > 1 else ""
    raise ImportFileError(f"{path}: column {schema[worst]!r} reaches |x| = {float(peaks.max()):.6g}{more}, beyond "
                          f"the float16 range the store keeps (|x| <= {FLOAT16_MAX:g}; it would become inf): scale "
                          "it before importing (e.g. divide by 1000)")


def _frame_numbers(path: Path, column: Any, first: int) -> np.ndarray:
    """The ``frame`` column as ``int64``; :class:`ImportFileError` when a value is not a whole number >= ``first``."""
    import pandas as pd

    frames = pd.to_numeric(column, errors="coerce").to_numpy(np.float64)
    if np.isnan(frames).any() or (frames != np.round(frames)).any() or (frames < first).any():
        raise ImportFileError(f"{path}: the frame column holds values that are not frame numbers >= {first} (a "
                              "truncated or edited file?)")
    return frames.astype(np.int64)


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


def read_openface(path: Path, groups: list[str], min_confidence: float = 0.5,
                  face_id: int | None = None) -> ImportedClip:
    """OpenFace 2.x CSV -> an imported clip, one row per row of the one face kept.

    OpenFace writes headers with a leading space (``frame, timestamp, ...``): names are stripped. ``frame`` is
    1-based and becomes a 0-based frame index; ``timestamp`` is in seconds. A frame is valid when ``success == 1``
    and ``confidence >= min_confidence``; its features are kept as written either way (the valid mask hides them).

    One identity per clip, never a mix: with a ``face_id`` column (FaceLandmarkVidMulti; FeatureExtraction since
    OpenFace 2.2) only one face's rows are kept: ``face_id`` when given, else the face tracked (valid, as above) in
    the most frames, ties to the lower id. ``info["face"]`` names the choice and the faces left out. A file without
    the column is one face, id 0. ``info["file_frames"]``: the file's last frame number (any face), where the clip
    ends when its video cannot be counted. Columns are taken in the file's order within each group, groups in the
    order asked.

    Raises :class:`ImportFileError` naming ``path`` for missing columns, non-numeric frames or values, a ``face_id``
    not in the file, or a value beyond float16's range.
    """
    import pandas as pd

    df, columns = _read_groups(path, groups, OPENFACE_GROUPS, OPENFACE_REQUIRED, "an OpenFace 2.x CSV")
    frames = _frame_numbers(path, df["frame"], 1)
    confidence = pd.to_numeric(df["confidence"], errors="coerce").fillna(0).to_numpy()
    success = pd.to_numeric(df["success"], errors="coerce").fillna(0).to_numpy() == 1
    tracked = success & (confidence >= min_confidence)
    keep, note = _one_openface_face(path, df, frames, tracked, face_id)
    file_frames = int(frames.max())  # the file's last frame, whichever face has it: where the clip ends
    df, frames, tracked = df[keep], frames[keep], tracked[keep]
    values = df[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    if np.isnan(values).any():
        rows = sorted(set(np.nonzero(np.isnan(values))[0].tolist()))
        raise ImportFileError(f"{path}: {len(rows)} rows with missing or non-numeric values (first at frame "
                              f"{int(frames[rows[0]])}): a truncated file?")
    check_float16_range(path, values, columns)
    return ImportedClip(
        features=values.astype(np.float32), valid=tracked, frame_indices=frames - 1,
        timestamps=pd.to_numeric(df["timestamp"], errors="coerce").fillna(0).to_numpy(np.float64),
        schema=columns, info={"file_frames": file_frames, **({"face": note} if note else {})})


def _one_openface_face(path: Path, df: Any, frames: np.ndarray, tracked: np.ndarray,
                       face_id: int | None) -> tuple[np.ndarray, str]:
    """The rows of the one face to keep (``bool [rows]``) and a note naming it and the faces left out (``""`` for a
    file of one face)."""
    import pandas as pd

    if "face_id" not in df.columns:
        if face_id not in (None, 0):
            raise ImportFileError(f"{path}: no face_id column (a one-face file, face 0): no face_id {face_id} in it")
        return np.ones(len(df), bool), ""
    ids = pd.to_numeric(df["face_id"], errors="coerce").to_numpy(np.float64)
    bad = np.isnan(ids) | (ids != np.round(ids))
    if bad.any():
        raise ImportFileError(f"{path}: face_id values that are not whole numbers (first at frame "
                              f"{int(frames[np.argmax(bad)])})")
    ids = ids.astype(np.int64)
    present = sorted(set(ids.tolist()))
    covered = {i: len(set(frames[(ids == i) & tracked].tolist())) for i in present}
    if face_id is not None:
        if face_id not in covered:
            raise ImportFileError(f"{path}: no face_id {face_id} in this file (its faces: {present})")
        chosen, rule = face_id, "asked for"
    else:
        chosen, rule = max(present, key=lambda i: (covered[i], -i)), "tracked in the most frames"
    if len(present) == 1:
        return ids == chosen, ""
    others = [i for i in present if i != chosen]
    listed = ", ".join(f"face_id {i} in {covered[i]}" for i in others[:5]) + (", ..." if len(others) > 5 else "")
    return ids == chosen, (f"face_id {chosen} kept ({rule}: {covered[chosen]} frames), {len(others)} other "
                           f"face{'s' if len(others) > 1 else ''} left out ({listed})")


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
PYFEAT_REQUIRED = ("frame", "FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight", "FaceScore")


def read_pyfeat(path: Path, groups: list[str], fps: float | None = None, min_score: float = 0.5) -> ImportedClip:
    """py-feat result CSV -> an imported clip, one row per frame of the file.

    Several faces per frame: the face with the **largest box** (``FaceRectWidth * FaceRectHeight``) is kept in
    every frame (the subject of a face video is usually the nearest face); ties go to the higher ``FaceScore``.
    py-feat writes no identity column, so the clip is refused when the kept face changes person: between two frames
    with a kept box it moves by more than half its width while another face of those frames lies nearer (the
    largest box jumped to someone else). A frame is valid when that face's ``FaceScore >= min_score`` and its values
    are finite (py-feat writes NaN when no face was found). ``frame`` is 0-based as py-feat writes it; a file whose
    frames are all multiples of one step (py-feat's ``skip_frames``) gets one row per step (``clip.step``).
    Timestamps are ``frame / fps`` when ``fps`` is given, else the ``approx_time`` column when present, else frame
    numbers divided by 30 (stated in ``info``).

    Raises :class:`ImportFileError` naming ``path`` for missing columns, non-numeric frames, a person switch, or a
    value beyond float16's range.
    """
    import pandas as pd

    df, columns = _read_groups(path, groups, PYFEAT_GROUPS, PYFEAT_REQUIRED, "a py-feat result CSV")
    box = df[["FaceRectX", "FaceRectY", "FaceRectWidth", "FaceRectHeight"]].apply(pd.to_numeric, errors="coerce")
    df = df.assign(frame=_frame_numbers(path, df["frame"], 0),
                   _area=box["FaceRectWidth"].fillna(0) * box["FaceRectHeight"].fillna(0),
                   _score=pd.to_numeric(df["FaceScore"], errors="coerce").fillna(-1),
                   _cx=box["FaceRectX"] + box["FaceRectWidth"] / 2, _cy=box["FaceRectY"] + box["FaceRectHeight"] / 2,
                   _w=box["FaceRectWidth"])
    kept = df.sort_values(["frame", "_area", "_score"], ascending=[True, False, False], kind="stable")
    kept = kept.drop_duplicates("frame")
    switches = _person_switches(df, kept)
    if switches:
        a, b, pa, pb = switches[0]
        raise ImportFileError(
            f"{path}: the largest face changes person {len(switches)} times (first between frames {a} and {b}: it "
            f"jumps from ({pa[0]:.0f}, {pa[1]:.0f}) to ({pb[0]:.0f}, {pb[1]:.0f}) px while another face stays "
            "nearer); py-feat writes no identity to keep one person by: crop the clips to one person, or use "
            "OpenFace and its face_id")
    frames = kept["frame"].to_numpy(np.int64)
    values = kept[columns].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
    check_float16_range(path, values, columns)
    finite = np.isfinite(values).all(axis=1)
    valid = finite & (kept["_score"].to_numpy() >= min_score)
    if fps:
        times, rule = frames / float(fps), f"frame / {fps}"
    elif "approx_time" in kept.columns:
        times, rule = pd.to_numeric(kept["approx_time"], errors="coerce").fillna(0).to_numpy(), "approx_time column"
    else:
        times, rule = frames / 30.0, "frame / 30 (no fps given)"
    step = _skip_step(frames)
    info = {"timestamps": rule, "face_rule": "largest box, then FaceScore"}
    if step > 1:
        info["grid"] = f"rows every {step} frames (py-feat skip_frames)"
    return ImportedClip(features=np.where(finite[:, None], values, 0.0).astype(np.float32), valid=valid,
                        frame_indices=frames, timestamps=np.asarray(times, np.float64), schema=columns, info=info,
                        step=float(step))


def _person_switches(faces: Any, kept: Any) -> list[tuple[int, int, tuple[float, float], tuple[float, float]]]:
    """``(frame_a, frame_b, center_a, center_b)`` of each pair of consecutive kept boxes where the kept face became
    another person: it moved by more than half its width, and another face of frame ``a`` is nearer its new place,
    or another face of frame ``b`` nearer its old one."""
    import pandas as pd

    boxed = np.isfinite(faces["_cx"]) & np.isfinite(faces["_cy"])
    others = faces[boxed].drop(index=kept.index, errors="ignore")[["frame", "_cx", "_cy"]]
    kept = kept[np.isfinite(kept["_cx"]) & np.isfinite(kept["_cy"])]
    if others.empty or len(kept) < 2:
        return []
    k = kept[["frame", "_cx", "_cy", "_w"]].to_numpy(np.float64)
    pairs = pd.DataFrame({"a": k[:-1, 0], "b": k[1:, 0], "ax": k[:-1, 1], "ay": k[:-1, 2], "bx": k[1:, 1],
                          "by": k[1:, 2], "moved": np.hypot(k[1:, 1] - k[:-1, 1], k[1:, 2] - k[:-1, 2]),
                          "w": np.maximum(k[1:, 3], k[:-1, 3])})
    pairs = pairs[pairs.moved > 0.5 * pairs.w].reset_index(names="pair")
    others = others.astype({"frame": np.float64})
    near = []
    for here, there in (("a", "b"), ("b", "a")):  # another face where the kept one was, near where it is now
        m = pairs.merge(others, left_on=here, right_on="frame")
        hit = np.hypot(m._cx - m[f"{there}x"], m._cy - m[f"{there}y"]) < m.moved
        near.append(m.pair[hit])
    jumped = pairs[pairs.pair.isin(pd.concat(near))]
    return [(int(r.a), int(r.b), (float(r.ax), float(r.ay)), (float(r.bx), float(r.by)))
            for r in jumped.itertuples()]


def _skip_step(frames: np.ndarray) -> int:
    """The step of a file that holds every ``s``-th frame from 0 (py-feat's ``skip_frames``), else 1."""
    if len(frames) < 3:
        return 1
    s = int(np.diff(np.sort(frames)).min())
    return s if s > 1 and not (frames % s).any() else 1


# ------------------------------------------------------------------------------------------------------ .npy files


def read_npy(path: Path, fps: float | None = None, dim: int | None = None,
             video_fps: float | None = None) -> ImportedClip:
    """``[T, D]`` array (one per video, e.g. v-iashin/video_features' ``<video>_<feature>.npy``) -> an imported clip.

    Timestamps: a sibling ``<stem>_timestamps.npy`` (seconds, or milliseconds when named ``*_timestamps_ms.npy``)
    wins; else row ``i`` is at ``i / fps`` seconds. ``fps`` (Hz) is the rows' rate: a sibling ``<stem>_fps.npy``,
    else the ``fps`` argument, else (with a timestamps file) the median spacing of the timestamps. Rows are put on
    the clip's frames by their time: row ``k`` of the rows' grid (``t = t0 + k / fps``; a first row off the grid, as
    with window centres, shifts every row by less than half a row, stated in ``info``) is frame
    ``round(k * video_fps / fps)``, so rows at a lower rate than the video give one row per ``video_fps / fps``
    frames (``clip.step``); ``video_fps`` is the clip's video rate in Hz, and when it is unknown one row per frame
    is assumed. Timestamps keep the file's values. A 1-D array is one feature per row.

    Raises :class:`ImportFileError` naming ``path`` for rows with NaN/inf (they would be silently zero-filled
    downstream), a width other than ``dim`` when given (features of another extractor), timestamps that are not
    evenly spaced at the rows' rate, rows faster than the video, no rate at all, or a value beyond float16's range.
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
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ImportFileError(f"{path}: dtype {arr.dtype} is not real numbers")
    bad = ~np.isfinite(arr).all(axis=1)
    if bad.any():
        first = int(np.argmax(bad))
        raise ImportFileError(f"{path}: {int(bad.sum())} of {len(arr)} rows hold NaN/inf (first: row {first})")
    schema = [f"f{i}" for i in range(arr.shape[1])]
    check_float16_range(path, arr.astype(np.float64), schema)
    stem = path.with_suffix("")
    ts_file, ms_file, fps_file = (Path(f"{stem}_timestamps.npy"), Path(f"{stem}_timestamps_ms.npy"),
                                  Path(f"{stem}_fps.npy"))
    rate = float(np.load(fps_file).ravel()[0]) if fps_file.is_file() else fps
    if ts_file.is_file() or ms_file.is_file():
        ts = np.load(ts_file if ts_file.is_file() else ms_file).astype(np.float64).ravel()
        ts = ts if ts_file.is_file() else ts / 1000.0
        if len(ts) != len(arr):
            raise ImportFileError(f"{path}: {len(arr)} rows but {len(ts)} timestamps in its timestamps file")
        rule = "timestamps file"
        if not rate and len(ts) > 1 and np.median(np.diff(ts)) > 0:
            rate = 1.0 / float(np.median(np.diff(ts)))
        rate = rate or video_fps
        if not rate:
            raise ImportFileError(f"{path}: one timestamp and no rate to place it on a frame (--fps)")
    else:
        if not rate:
            raise ImportFileError(f"{path}: no timestamps file beside it and no fps given (--fps)")
        ts, rule = np.arange(len(arr)) / rate, f"frame / {rate}"
    slots = ts * rate
    phase = float(slots[0] - np.rint(slots[0]))  # rows at t0 + k / rate (window centres): a constant shift is kept
    slots = slots - phase
    off = np.abs(slots - np.rint(slots))
    if off.max() > 0.25:
        i = int(np.argmax(off))
        raise ImportFileError(f"{path}: timestamps are not evenly spaced at {rate:g} Hz (row {i}, at {ts[i]:.4f} s, "
                              f"is {off[i]:.2f} rows off that rate): give the rows' rate with --fps")
    step = 1.0
    if video_fps:
        step = video_fps / rate
        if step < 0.99:
            raise ImportFileError(f"{path}: rows at {rate:g} Hz, faster than the clip's video ({video_fps:g} fps): "
                                  "one row per frame at most")
        step = 1.0 if abs(step - 1.0) <= 0.01 else step
    info: dict[str, Any] = {"timestamps": rule, "rows_hz": rate}
    if abs(phase) > 0.01:
        info["shift"] = f"rows placed {phase / rate:.4f} s before their timestamps (on the rows' grid)"
    if step > 1:
        info["grid"] = f"rows every {step:g} frames ({rate:g} Hz on a {video_fps:g} fps video)"
    return ImportedClip(features=arr.astype(np.float32), valid=np.ones(len(arr), bool),
                        frame_indices=np.rint(np.rint(slots) * step).astype(np.int64), timestamps=ts, schema=schema,
                        info=info, step=step)
