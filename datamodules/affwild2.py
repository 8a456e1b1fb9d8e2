"""Aff-Wild2 in the ABAW layout: one clip per annotation file, labels per frame (expression, valence-arousal, AUs).

Sources: the Aff-Wild2 page (ibug.doc.ic.ac.uk/resources/aff-wild2: "the first line of each annotation file is
always: valence,arousal; each line after the first shows the valence and arousal values" of one frame) and the ABAW
competition papers (Kollias et al., 3rd ABAW arXiv:2202.10659, 6th ABAW arXiv:2402.19344, 7th ABAW arXiv:2407.03835:
the 7 basic expressions and "other", 12 AUs, VA in [-1, 1]). Layout::

    root/<annotations_subdir>/<task folder>/{Train_Set,Validation_Set}/<video>.txt
    root/<frames_subdir>/<video>/00001.jpg, 00002.jpg, ...      (cropped_aligned), or <video>.mp4 / .avi

Task folders: ``EXPR_Set`` / ``VA_Set`` / ``AU_Set`` (as the 1st-2nd ABAW shipped them) or
``EXPR_Recognition_Challenge`` / ``VA_Estimation_Challenge`` / ``AU_Detection_Challenge`` (3rd ABAW on);
``Training_Set`` is read as ``Train_Set``. Each annotation file has a header line, then one line per video frame:

- EXPR: header ``Neutral,Anger,Disgust,Fear,Happiness,Sadness,Surprise,Other`` (3rd-7th ABAW: 8 classes; the
  1st-2nd ABAW header without ``Other`` is read too), one integer per line, the position of the class in the
  header, ``-1`` = no label.
- VA: header ``valence,arousal``, two numbers in ``[-1, 1]`` per line, ``-5`` = no label.
- AU: header ``AU1,AU2,AU4,AU6,AU7,AU10,AU12,AU15,AU23,AU24,AU25,AU26``, twelve ``0``/``1`` per line, ``-1`` = no
  label.

Line ``k`` after the header (1-based) is video frame ``k`` and its cropped image is ``<video>/<k:05d>.jpg``: the
mapping public challenge code uses to name each line's frame in ABAW submission files (``image_location`` column,
``<video>/00001.jpg`` for the first line after the header). fer_zoo numbers frames from 0, so ``00001.jpg`` is frame
0. A missing image (the face detector found no face there) leaves its frame out of :attr:`FrameLabels.frames` and
shifts nothing.

Videos showing two people have one annotation file per person, ``<video>_left.txt`` / ``<video>_right.txt``, and one
cropped frame folder each; both are one subject (``<video>``), so any split keeps them on one side.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import numpy as np

from datamodules.frame_labels import AU_NAMES, FrameLabels
from datamodules.frames import VIDEO_SUFFIXES, frame_names, is_hidden
from datamodules.labels import ABAW_EXPR, LabelVocabulary
from datamodules.records import ClipRecord
from datamodules.sources import check_n_folds, drawn_folds

TASKS = ("EXPR", "VA", "AU")

#: Task folder names seen in the ABAW releases, in the order they are looked for.
TASK_DIRS: dict[str, tuple[str, ...]] = {
    "EXPR": ("EXPR_Set", "EXPR_Recognition_Challenge"),
    "VA": ("VA_Set", "VA_Estimation_Challenge"),
    "AU": ("AU_Set", "AU_Detection_Challenge"),
}
SPLIT_DIRS: dict[str, tuple[str, ...]] = {"train": ("Train_Set", "Training_Set"), "val": ("Validation_Set",)}

#: The EXPR headers of the ABAW releases (8 classes from the 3rd ABAW on, 7 before), each a prefix of ``abaw_expr``.
EXPR_HEADERS = (tuple(c.capitalize() for c in ABAW_EXPR.classes), tuple(c.capitalize() for c in ABAW_EXPR.classes[:7]))
VA_HEADER = ("valence", "arousal")
VA_NO_LABEL = -5.0
_TRACK = re.compile(r"^(.+)_(left|right)$")
#: Raw-video suffixes tried, in this order, when a clip has no frame folder.
_VIDEO_ORDER = (".mp4", ".avi", *sorted(VIDEO_SUFFIXES - {".mp4", ".avi"}))
_LAYOUT = ("root/<annotations_subdir>/{EXPR_Set,VA_Set,AU_Set (or *_Recognition/Estimation/Detection_Challenge)}/"
           "{Train_Set,Validation_Set}/<video>.txt and root/<frames_subdir>/<video>/00001.jpg...")


def video_of(clip_id: str) -> str:
    """The video a clip comes from: ``<video>_left`` / ``<video>_right`` -> ``<video>``, any other id unchanged."""
    m = _TRACK.match(clip_id)
    return m.group(1) if m else clip_id


@dataclass
class AffWild2Source:
    """Aff-Wild2 (ABAW layout): one :class:`ClipRecord` per annotation file, per-frame labels by :meth:`frame_labels`.

    ``task``: ``"EXPR"``, ``"VA"``, ``"AU"`` or a list of them. A clip is listed when any chosen task annotates it;
    for a chosen task it has no file for, all its frames are "no label".

    Records: ``clip_id`` = the file stem (``<video>`` or ``<video>_left``), ``path`` = its frame folder
    ``root/<frames_subdir>/<clip_id>/`` (else a video ``<clip_id>.mp4``/``.avi``/...; a ``_left``/``_right`` track
    never falls back to the video, which shows both people), ``label`` None (labels are per frame), ``split``
    ``"train"``/``"val"`` from ``Train_Set``/``Validation_Set``, ``subject`` = the video (``_left``/``_right``
    stripped), ``audio`` = ``root/<videos_subdir>/<video>.<ext>`` (the raw video's soundtrack, shared by both tracks)
    when ``videos_subdir`` is set.

    A clip whose frame folder (and video) is missing is still listed, pointing at the folder it needs, so extraction
    records it as failed naming that path instead of the data set silently shrinking; :attr:`missing` holds
    ``(clip_id, reason)`` for each after :meth:`clips`. Files in a split folder that are not ``.txt`` are listed in
    :attr:`skipped` as ``(file, reason)`` (printed by ``extract``).

    ``split_task``: ABAW's tasks have their own train/validation splits, which can put one video on different sides.
    With several tasks, a clip whose files disagree is an error naming both files, unless ``split_task`` names the
    task whose split wins (a clip without that task's file takes the split its other files agree on).

    ``n_folds``: 0 (default) keeps the official split; ``k >= 2`` also draws ``k`` folds over the clips once with
    ``fold_seed``, whole videos per fold (``_left``/``_right`` together; :func:`datamodules.sources.drawn_folds`),
    recorded in ``test_fold`` (a source with folds is split by fold; ``split`` stays the official one).

    Raises ``FileNotFoundError`` for a missing root, task folder or split folder, ``ValueError`` for a clip in both
    splits of one task, disagreeing splits (see ``split_task``) or a bad ``task`` / ``n_folds``.
    """

    root: str | Path
    task: str | list[str] = "EXPR"
    frames_subdir: str = "cropped_aligned"
    annotations_subdir: str = ""
    videos_subdir: str | None = None
    split_task: str | None = None
    n_folds: int = 0
    fold_seed: int = 0

    name: ClassVar[str] = "affwild2"
    missing: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)
    skipped: list[tuple[str, str]] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        self.tasks: tuple[str, ...] = _tasks(self.task)
        if self.split_task is not None:
            self.split_task = _tasks(self.split_task)[0]
            if self.split_task not in self.tasks:
                raise ValueError(f"split_task {self.split_task!r} is not among the chosen tasks {list(self.tasks)}")
        check_n_folds(self.n_folds, f"AffWild2Source {self.root}")
        self._files: dict[str, dict[str, tuple[str, Path]]] | None = None  # clip -> task -> (split, file)
        self._paths: dict[str, Path] = {}

    @property
    def vocabulary(self) -> LabelVocabulary:
        """``abaw_expr``: the order of :attr:`FrameLabels.expr` class indices."""
        return ABAW_EXPR

    @property
    def folds(self) -> list[int]:
        return list(range(1, self.n_folds + 1))

    # ------------------------------------------------------------------------------------------------------- listing

    def _annotation_files(self) -> dict[str, dict[str, tuple[str, Path]]]:
        root = Path(self.root)
        if not root.is_dir():
            raise FileNotFoundError(f"Aff-Wild2 root not found: {root} (expected layout: {_LAYOUT})")
        base = root / self.annotations_subdir
        files: dict[str, dict[str, tuple[str, Path]]] = {}
        self.skipped = []
        for task in self.tasks:
            task_dir = _find_dir(base, TASK_DIRS[task], f"{task} annotation folder", root)
            for split, names in SPLIT_DIRS.items():
                split_dir = _find_dir(task_dir, names, f"{task} {split} folder", None)
                for f in sorted(split_dir.iterdir()):
                    if is_hidden(f):
                        continue
                    if not f.is_file() or f.suffix.lower() != ".txt":
                        self.skipped.append((str(f), "not an annotation file (<video>.txt)"))
                        continue
                    mine = files.setdefault(f.stem, {})
                    if task in mine:
                        raise ValueError(f"{f.stem!r} is annotated for {task} in two splits: {mine[task][1]} and {f}")
                    mine[task] = (split, f)
        return files

    def _split(self, clip: str, files: dict[str, tuple[str, Path]]) -> str:
        if self.split_task in files:
            return files[self.split_task][0]
        splits = {split for split, _ in files.values()}
        if len(splits) > 1:
            where = ", ".join(f"{f} ({split})" for split, f in files.values())
            raise ValueError(f"clip {clip!r} is on both sides of ABAW's task splits: {where}; set split_task to the "
                             f"task whose split wins (one of {list(self.tasks)}), or use one task")
        return splits.pop()

    def _clip_path(self, frames_root: Path, clip: str) -> tuple[Path, str | None]:
        """(path, reason it is missing or None): the frame folder, else a video of a one-person clip."""
        folder = frames_root / clip
        if folder.is_dir():
            return folder, None
        if _TRACK.match(clip):
            return folder, (f"no frame folder {folder}: a _left/_right track needs its own cropped frames (the video "
                            f"{video_of(clip)} shows both people)")
        for suffix in _VIDEO_ORDER:
            video = frames_root / f"{clip}{suffix}"
            if video.is_file():
                return video, None
        return folder, f"no frame folder {folder} and no video {frames_root / clip}.<{'|'.join(_VIDEO_ORDER)}>"

    def _audio(self, clip: str) -> str | None:
        if self.videos_subdir is None:
            return None
        folder = Path(self.root) / self.videos_subdir
        for suffix in _VIDEO_ORDER:
            video = folder / f"{video_of(clip)}{suffix}"
            if video.is_file():
                return str(video)
        self.missing.append((clip, f"no video {folder / video_of(clip)}.<{'|'.join(_VIDEO_ORDER)}> for its audio"))
        return str(folder / f"{video_of(clip)}.mp4")

    def clips(self) -> list[ClipRecord]:
        """Every annotated clip, sorted by id (see the class docstring for each field)."""
        files = self._annotation_files()
        frames_root = Path(self.root) / self.frames_subdir
        if not frames_root.is_dir():
            raise FileNotFoundError(f"Aff-Wild2 frames folder not found: {frames_root} (frames_subdir "
                                    f"{self.frames_subdir!r}; expected layout: {_LAYOUT})")
        self.missing = []
        records = []
        for clip in sorted(files):
            path, reason = self._clip_path(frames_root, clip)
            if reason is not None:
                self.missing.append((clip, reason))
            self._paths[clip] = path
            records.append(ClipRecord(clip, str(path), None, self._split(clip, files[clip]), None, video_of(clip),
                                      self._audio(clip)))
        self._files = files
        if not self.n_folds:  # the official split: both people of a video must be on one side
            sides: dict[str, dict[str, str]] = {}
            for r in records:
                sides.setdefault(r.subject or r.clip_id, {})[r.clip_id] = r.split or ""
            split = {v: c for v, c in sides.items() if len(set(c.values())) > 1}
            if split:
                video, clips = next(iter(split.items()))
                raise ValueError(f"AffWild2Source {self.root}: the people of video {video!r} are on both sides of the "
                                 f"split ({', '.join(f'{c}: {s}' for c, s in sorted(clips.items()))}; {len(split)} "
                                 "videos in all): one person's frames would train and test; fix the annotation "
                                 "folders, or draw folds over whole videos (n_folds)")
        return drawn_folds(records, self.n_folds, self.fold_seed, f"AffWild2Source {self.root}")

    # --------------------------------------------------------------------------------------------------- labels

    def frame_labels(self, clip_id: str) -> FrameLabels:
        """The per-frame labels of one listed clip, read strictly (see the module docstring for the formats).

        ``n_frames`` is the longest of the clip's annotation files (a frame past the end of a shorter one has no
        label for that task). ``frames`` comes from the clip's frame folder (see :class:`FrameLabels`).

        Raises ``KeyError`` for a clip that is not listed; ``ValueError`` naming the file and line for a wrong
        header, a line with the wrong number of columns, a value that is not a number or out of range (EXPR outside
        ``-1..<classes - 1>``, VA outside ``[-1, 1]`` but for ``-5``, AU not in ``{-1, 0, 1}``), a blank line before
        the last label; ``ValueError`` naming the image for a frame file whose name is not a frame number (``1`` or
        more), two files with one number, or a number past the annotation's last line.
        """
        if self._files is None:
            self.clips()
        assert self._files is not None
        if clip_id not in self._files:
            raise KeyError(f"clip {clip_id!r} is not listed by AffWild2Source({self.root}) for tasks "
                           f"{list(self.tasks)}")
        read = {task: _READERS[task](path) for task, (_, path) in self._files[clip_id].items()}
        n = max(len(a) for a in read.values())
        lengths = ", ".join(f"{self._files[clip_id][t][1]} ({len(a)} frames)" for t, a in read.items())
        labels = {task: _pad(read.get(task), n, task) for task in self.tasks}
        return FrameLabels(n, labels.get("EXPR"), labels.get("VA"), labels.get("AU"),
                           _frame_numbers(self._paths[clip_id], n, lengths))


# ------------------------------------------------------------------------------------------------------- helpers


def _tasks(task: str | list[str] | tuple[str, ...]) -> tuple[str, ...]:
    names = [task] if isinstance(task, str) else list(task)
    out = []
    for t in names:
        key = str(t).strip().upper()
        if key not in TASKS:
            raise ValueError(f"unknown ABAW task {t!r}; known: {list(TASKS)}")
        if key not in out:
            out.append(key)
    if not out:
        raise ValueError(f"no ABAW task chosen; choose from {list(TASKS)}")
    return tuple(out)


def _find_dir(base: Path, names: tuple[str, ...], what: str, root: Path | None) -> Path:
    for n in names:
        if (base / n).is_dir():
            return base / n
    hint = ""
    if root is not None and root.is_dir():  # a task folder one level down: name the annotations_subdir to use
        below = sorted(d.name for d in root.iterdir() if d.is_dir() and any((d / n).is_dir() for n in names))
        if below:
            hint = f"; found under {below}: set annotations_subdir to one of them"
    raise FileNotFoundError(f"{what} not found: expected {' or '.join(str(base / n) for n in names)}{hint} "
                            f"(layout: {_LAYOUT})")


def _lines(path: Path, headers: tuple[tuple[str, ...], ...], what: str) -> tuple[tuple[str, ...], list[list[str]]]:
    """(the header read, the comma-split cells of each label line); list item ``i`` is file line ``i + 2``.

    ``headers``: the accepted headers, compared cell by cell ignoring case and surrounding spaces. Trailing blank
    lines end the file; a blank line before a label line is an error (it would shift every later frame).
    """
    text = path.read_text(encoding="utf-8-sig").splitlines()
    while text and not text[-1].strip():
        text.pop()
    got = tuple(c.strip().lower() for c in text[0].split(",")) if text else ()
    match = [h for h in headers if got == tuple(c.lower() for c in h)]
    if not match:
        want = " or ".join(repr(",".join(h)) for h in headers)
        raise ValueError(f"{path}:1: {what} header must be {want}, got {text[0] if text else '(empty file)'!r}")
    rows = []
    for n, line in enumerate(text[1:], start=2):
        if not line.strip():
            raise ValueError(f"{path}:{n}: blank line among the labels (each line is one frame)")
        rows.append([c.strip() for c in line.split(",")])
    return match[0], rows


def _columns(path: Path, rows: list[list[str]], width: int) -> None:
    for i, cells in enumerate(rows):
        if len(cells) != width:
            raise ValueError(f"{path}:{i + 2}: expected {width} comma-separated values, got {len(cells)}: "
                             f"{','.join(cells)!r}")


def _ints(path: Path, rows: list[list[str]], width: int, allowed: range, rule: str) -> np.ndarray:
    """int64 ``[N, width]`` of integer cells, each in ``allowed``; else ``ValueError`` naming the file and line."""
    cells = np.array(rows, dtype=str).reshape(len(rows), width)
    ok = np.isin(cells, [str(v) for v in allowed])  # the usual spelling; anything else is checked one by one
    for i, j in zip(*np.nonzero(~ok)):
        c = cells[i, j]
        if not re.fullmatch(r"[+-]?[0-9]+", c) or int(c) not in allowed:
            raise ValueError(f"{path}:{i + 2}: value {c!r} (column {j + 1}) is not {rule}")
    return cells.astype(np.int64)


def read_expr(path: Path) -> np.ndarray:
    """An EXPR file's labels: int64 ``[N]`` class indices in ``abaw_expr`` order (classes mapped by the header's
    names), ``-1`` = no label. Raises ``ValueError`` naming the file and line (see :meth:`AffWild2Source.frame_labels`).
    """
    header, rows = _lines(path, EXPR_HEADERS, "EXPR")
    _columns(path, rows, 1)
    to_vocab = np.array([ABAW_EXPR.index(c) for c in header], dtype=np.int64)
    raw = _ints(path, rows, 1, range(-1, len(header)), f"a class index -1..{len(header) - 1}")[:, 0]
    return np.where(raw < 0, -1, to_vocab[np.maximum(raw, 0)]).astype(np.int64)


def read_va(path: Path) -> np.ndarray:
    """A VA file's labels: float32 ``[N, 2]`` valence, arousal in ``[-1, 1]``, ``NaN`` where the file has ``-5``.
    Raises ``ValueError`` naming the file and line for a value that is not a finite number in ``[-1, 1]`` or ``-5``."""
    _, rows = _lines(path, (VA_HEADER,), "VA")
    _columns(path, rows, 2)
    out = np.empty((len(rows), 2), dtype=np.float32)
    for i, cells in enumerate(rows):
        for j, c in enumerate(cells):
            try:
                v = float(c)
            except ValueError:
                v = math.nan
            if v == VA_NO_LABEL:
                out[i, j] = np.nan
            elif math.isfinite(v) and -1.0 <= v <= 1.0:
                out[i, j] = v
            else:
                raise ValueError(f"{path}:{i + 2}: {VA_HEADER[j]} {c!r} is not in [-1, 1] (or -5 = no label)")
    return out


def read_au(path: Path) -> np.ndarray:
    """An AU file's labels: int8 ``[N, 12]`` in :data:`AU_NAMES` order, ``0``/``1``, ``-1`` = no label. Raises
    ``ValueError`` naming the file and line for a value outside ``{-1, 0, 1}``."""
    _, rows = _lines(path, (AU_NAMES,), "AU")
    _columns(path, rows, len(AU_NAMES))
    return _ints(path, rows, len(AU_NAMES), range(-1, 2), "-1, 0 or 1").astype(np.int8)


_READERS = {"EXPR": read_expr, "VA": read_va, "AU": read_au}


def _pad(a: np.ndarray | None, n: int, task: str) -> np.ndarray:
    """``a`` extended to ``n`` frames with "no label" (all of it when the clip has no file for ``task``)."""
    shape, dtype, fill = {"EXPR": ((), np.int64, -1), "VA": ((2,), np.float32, np.nan),
                          "AU": ((len(AU_NAMES),), np.int8, -1)}[task]
    out = np.full((n, *shape), fill, dtype=dtype)
    if a is not None:
        out[: len(a)] = a
    return out


def _frame_numbers(path: Path, n_frames: int, annotation: str) -> np.ndarray | None:
    """The annotation frame of each image of a frame folder (file ``00001.jpg`` -> 0), in the store's file order;
    ``None`` for a video file, empty for a folder that does not exist. ``annotation`` names the files for errors."""
    if path.is_file():
        return None
    if not path.is_dir():
        return np.empty(0, dtype=np.int64)
    names = frame_names(path)
    out = np.empty(len(names), dtype=np.int64)
    for i, name in enumerate(names):
        stem = name.rsplit(".", 1)[0]
        if not (stem.isascii() and stem.isdigit()) or int(stem) < 1:
            raise ValueError(f"{path / name}: not a frame number (ABAW frames are named 00001.jpg, 00002.jpg, ... "
                             "for annotation lines 1, 2, ...)")
        out[i] = int(stem) - 1
        if i and out[i] == out[i - 1]:
            raise ValueError(f"{path / name}: frame {int(stem)} has two files ({names[i - 1]!r} too)")
        if out[i] >= n_frames:
            raise ValueError(f"{path / name}: frame {int(stem)} is past the annotation's last frame: {annotation}")
    return out


__all__ = ["AU_NAMES", "TASKS", "AffWild2Source", "FrameLabels", "read_au", "read_expr", "read_va", "video_of"]
