"""Labeled face-photo sets in the layouts they ship in: FER2013's CSV (and FER+'s votes), RAF-DB basic, AffectNet.

Each is a clip source like those of :mod:`datamodules.sources` (a dataclass whose fields are its config; one photo =
one 1-frame :class:`~datamodules.records.ClipRecord`), so ``finetune-frames`` trains on it and ``extract`` extracts
it with no special path: the one way fer_zoo reads a photo stays ``datamodules.frames.read_frames`` on a file.

- Integer labels are read through the data set's own order (``datamodules.labels``: ``FER2013``, ``FERPLUS``,
  ``RAFDB``, ``AFFECTNET``) to class *names*, which must then be in ``vocabulary`` (any order; e.g. ``faces8`` to
  train on FER2013 with the class indices of the shared photos). A vocabulary that lacks one of the data set's
  classes raises :class:`~datamodules.sources.LabelError` instead of dropping or renaming photos.
- The official split comes with each layout: FER2013's ``Usage`` (Training -> train, PublicTest -> val,
  PrivateTest -> test), RAF-DB's file-name prefix (``train_``/``test_``), AffectNet's two lists (training -> train,
  the released validation list -> test; validation for checkpoints is then carved from train as everywhere).
- Bad input stops the listing with the file and line: a missing list file or image, an unknown label id, a pixel
  string of the wrong length, a malformed face box. A truncated image raises when it is read
  (``read_frames``: ``ClipReadError`` naming the file).
- Rows a protocol leaves out on purpose (AffectNet's ``none``/``uncertain``/``no-face``, FER+'s images without a
  majority) are counted in ``excluded`` (reason -> count), which ``extract`` prints and ``finetune-frames`` records.

FER2013 ships no image files (48x48 pixel strings in a CSV), so :class:`FER2013Source` writes each once as a PNG
(lossless) under ``images_dir`` and lists those: the only source that writes, because every reader downstream
(extraction workers, provenance, the fine-tuning data) reads files. AffectNet's faces are regions of larger images:
its records carry the face box (``ClipRecord.box``) and every reader crops to it, rather than writing 400k crops.
"""

from __future__ import annotations

import csv
import json
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from datamodules.labels import AFFECTNET, FER2013, FERPLUS, RAFDB, LabelVocabulary
from datamodules.records import ClipRecord
from datamodules.sources import LabelError, _csv_rows, _is_int, _require_file, _resolve_vocabulary, _text_rows


def _id_to_name(text: str, order: LabelVocabulary, base: int, where: str) -> str:
    """Class name of an integer label ``text`` in the data set's ``order`` (``base``: 0 or 1), or LabelError."""
    text = text.strip()
    if not _is_int(text) or not 0 <= int(text) - base < len(order):
        raise LabelError(f"{where}: label {text!r} is not a {order.name} class id ({base}..{base + len(order) - 1}: "
                         f"{', '.join(f'{i + base}={c}' for i, c in enumerate(order.classes))})")
    return order.classes[int(text) - base]


def _check_covers(vocab: LabelVocabulary, classes: tuple[str, ...], source: str) -> None:
    """The training vocabulary must hold every class the data set labels (by name, any order)."""
    missing = [c for c in classes if c not in vocab.classes]
    if missing:
        raise LabelError(f"{source}: vocabulary {vocab.name!r} {list(vocab.classes)} lacks the data set's classes "
                         f"{missing}; use a vocabulary that names all of {list(classes)}")


def _missing_images(found: list[tuple[str, Path]], what: str) -> None:
    """Raise FileNotFoundError for listed images that are not on disk, naming list file:line and path."""
    missing = [(where, p) for where, p in found if not p.is_file()]
    if missing:
        shown = "; ".join(f"{where}: {p}" for where, p in missing[:5])
        more = f" (and {len(missing) - 5} more)" if len(missing) > 5 else ""
        raise FileNotFoundError(f"{len(missing)} of {len(found)} {what} images listed but not found: {shown}{more}")


# ---------------------------------------------------------------------------------------------------------- FER2013

FER2013_USAGE = {"Training": "train", "PublicTest": "val", "PrivateTest": "test"}
FER2013_SIDE = 48
# FER+ (microsoft/FERPlus, src/ferplus.py, training_mode "majority"): the columns after `Image name`.
FERPLUS_COLUMNS = (*FERPLUS.classes, "unknown", "NF")


def ferplus_majority(votes: list[int]) -> str | None:
    """FER+'s majority label of one image's 10 vote counts (``FERPLUS_COLUMNS`` order), or ``None`` (left out).

    As ``_process_data(mode="majority")`` in microsoft/FERPlus ``src/ferplus.py``: single votes are dropped as
    outliers; the top column wins if it holds more than half of the remaining votes (ties: the first column); an
    image whose winner is ``unknown`` or ``NF`` (not a face), or that has no such majority, is left out.
    """
    kept = [v if v > 1 else 0 for v in votes]
    total = sum(kept)
    top = int(np.argmax(kept))
    if total == 0 or kept[top] <= 0.5 * total or top >= len(FERPLUS):
        return None
    return FERPLUS.classes[top]


@dataclass
class FER2013Source:
    """FER2013 from Kaggle's ``fer2013.csv`` (columns ``emotion,pixels[,Usage]``), optionally relabelled by FER+.

    ``emotion`` 0..6 = angry, disgust, fear, happy, sad, surprise, neutral (``labels.FER2013``); ``pixels``: 2,304
    space-separated grey levels 0..255 (48x48, row-major); ``Usage`` Training/PublicTest/PrivateTest gives the
    official split (train/val/test); a CSV without ``Usage`` (Kaggle's ``train.csv``) gets fit's seeded split.

    ``images_dir`` (default: ``<csv folder>/<csv stem>_images/``) receives one PNG per row, ``fer0000000.png`` for
    data row 0 (clip ids are data-row indices; FER+'s own ``Image name`` drifts from the row index after the rows
    it removed, so it is not used), written once: a stamp file (``fer2013_images.json``: the CSV's path, size and
    modification time) written after the last PNG says they are complete and current; a changed CSV or a missing
    PNG writes them again (each PNG atomically). Every pixel string is checked before any PNG is written.

    ``ferplus_csv``: FER+'s ``fer2013new.csv`` (``Usage,Image name,neutral,...,contempt,unknown,NF``, one row per
    fer2013.csv row in the same order) replaces the labels by FER+'s majority vote (:func:`ferplus_majority`,
    8 classes, ``labels.FERPLUS``); rows without an image name or a majority are counted in ``excluded``.
    ``vocabulary`` (default ``fer2013``, or ``ferplus`` with ``ferplus_csv``) must name all the labels' classes.
    """

    csv: str | Path
    images_dir: str | Path | None = None
    ferplus_csv: str | Path | None = None
    vocabulary: str | LabelVocabulary | None = None

    name: ClassVar[str] = "fer2013"
    stamp_name: ClassVar[str] = "fer2013_images.json"

    def __post_init__(self) -> None:
        order = FERPLUS if self.ferplus_csv is not None else FER2013
        self.vocabulary = _resolve_vocabulary(self.vocabulary if self.vocabulary is not None else order.name)
        _check_covers(self.vocabulary, order.classes, "FER2013Source")
        self.excluded: dict[str, int] = {}
        self._cache: tuple[tuple, list[ClipRecord]] | None = None

    @property
    def folds(self) -> list[int]:
        return []

    @property
    def image_folder(self) -> Path:
        path = Path(self.csv)
        return Path(self.images_dir) if self.images_dir is not None else path.with_name(f"{path.stem}_images")

    def _key(self) -> tuple:
        paths = [Path(self.csv)] + ([Path(self.ferplus_csv)] if self.ferplus_csv is not None else [])
        stats = [os.stat(p) for p in paths]
        return tuple((os.path.realpath(p), s.st_size, s.st_mtime_ns) for p, s in zip(paths, stats))

    def clips(self) -> list[ClipRecord]:
        layout = "fer2013.csv with columns emotion,pixels[,Usage]"
        path = _require_file(Path(self.csv), "FER2013 CSV", layout)
        if self.ferplus_csv is not None:
            _require_file(Path(self.ferplus_csv), "FER+ CSV", "fer2013new.csv from microsoft/FERPlus")
        key = self._key()
        if self._cache is not None and self._cache[0] == key:
            return list(self._cache[1])
        rows = list(_csv_rows(path, ("emotion", "pixels")))
        labels, splits = [], []
        for n, row in rows:
            where = f"{path}:{n}"
            labels.append(_id_to_name(row["emotion"], FER2013, 0, where))
            usage = row.get("Usage")
            if usage is not None and usage not in FER2013_USAGE:
                raise ValueError(f"{where}: Usage {usage!r} is not one of {list(FER2013_USAGE)}")
            splits.append(FER2013_USAGE[usage] if usage is not None else None)
        names: list[str | None] = [f"fer{i:07d}" for i in range(len(rows))]
        if self.ferplus_csv is not None:
            labels, names = self._ferplus(len(rows), splits, names)
        self._write_images(path, rows, key)
        folder = self.image_folder
        records = [ClipRecord(name, str(folder / f"fer{i:07d}.png"), label, split)
                   for i, (name, label, split) in enumerate(zip(names, labels, splits)) if name is not None]
        self._cache = (key, records)
        return sorted(records, key=lambda r: r.clip_id)

    def _ferplus(self, n_rows: int, splits: list[str | None],
                 names: list[str | None]) -> tuple[list[str], list[str | None]]:
        """FER+ labels for each fer2013.csv row (``None`` name: left out), checking the files line up."""
        path = Path(str(self.ferplus_csv))
        rows = list(_csv_rows(path, ("Usage", "Image name", *FERPLUS_COLUMNS)))
        if len(rows) != n_rows:
            raise ValueError(f"{path}: {len(rows)} rows, but {self.csv} has {n_rows}; FER+ labels fer2013.csv row "
                             "by row, so both files must be the complete originals")
        labels: list[str] = []
        kept: list[str | None] = []
        excluded: Counter[str] = Counter()
        usage_of = {v: k for k, v in FER2013_USAGE.items()}
        for i, (n, row) in enumerate(rows):
            where = f"{path}:{n}"
            if splits[i] is not None and row["Usage"] != usage_of[splits[i]]:  # type: ignore[index]
                raise ValueError(f"{where}: Usage {row['Usage']!r} but fer2013.csv row {i} is "
                                 f"{usage_of[splits[i]]!r}: the files are not in the same order")  # type: ignore[index]
            try:
                votes = [int(row[c]) for c in FERPLUS_COLUMNS]
            except ValueError:
                raise ValueError(f"{where}: vote counts must be integers, got "
                                 f"{[row[c] for c in FERPLUS_COLUMNS]}") from None
            label = ferplus_majority(votes) if row["Image name"] else None
            if not row["Image name"]:
                excluded["no image name (removed by FER+: not a face)"] += 1
            elif label is None:
                excluded["no FER+ majority (or unknown / not a face)"] += 1
            labels.append(label or "")
            kept.append(names[i] if label is not None else None)
        self.excluded = dict(excluded)
        return labels, kept

    def _write_images(self, path: Path, rows: list[tuple[int, dict[str, str]]], key: tuple) -> None:
        import cv2

        folder = self.image_folder
        stamp = folder / self.stamp_name
        files = [folder / f"fer{i:07d}.png" for i in range(len(rows))]
        if stamp.is_file():
            try:
                done = json.loads(stamp.read_text())
            except (OSError, ValueError):
                done = None
            if done == {"source": [list(k) for k in key[:1]], "rows": len(rows)} and all(f.is_file() for f in files):
                return
        pixels = np.empty((len(rows), FER2013_SIDE, FER2013_SIDE), np.uint8)
        for i, (n, row) in enumerate(rows):  # every row checked before anything is written
            where = f"{path}:{n}"
            try:
                values = np.array(row["pixels"].split(), dtype=np.int64)
            except ValueError:
                raise ValueError(f"{where}: pixels must be space-separated integers 0..255") from None
            if values.size != FER2013_SIDE ** 2:
                raise ValueError(f"{where}: {values.size} pixel values, expected {FER2013_SIDE ** 2} "
                                 f"({FER2013_SIDE}x{FER2013_SIDE} grey levels)")
            if values.min() < 0 or values.max() > 255:
                raise ValueError(f"{where}: pixel values must lie in 0..255, got {values.min()}..{values.max()}")
            pixels[i] = values.reshape(FER2013_SIDE, FER2013_SIDE)
        folder.mkdir(parents=True, exist_ok=True)
        stamp.unlink(missing_ok=True)  # the old stamp no longer vouches for the folder while it is rewritten
        for f, img in zip(files, pixels):
            tmp = f.with_name(f".{f.name}.{os.getpid()}.tmp.png")
            if not cv2.imwrite(str(tmp), img):
                raise OSError(f"could not write {tmp}")
            os.replace(tmp, f)
        tmp_stamp = stamp.with_name(f".{stamp.name}.{os.getpid()}.tmp")
        tmp_stamp.write_text(json.dumps({"source": [list(k) for k in key[:1]], "rows": len(rows)}))
        os.replace(tmp_stamp, stamp)


# ----------------------------------------------------------------------------------------------------------- RAF-DB

_RAFDB_LAYOUT = ("root/EmoLabel/list_patition_label.txt (lines 'train_00001.jpg 5', labels 1-7) and "
                 "root/Image/aligned/train_00001_aligned.jpg (or root/Image/original/train_00001.jpg)")
RAFDB_SPLITS = {"train_": "train", "test_": "test"}


@dataclass
class RAFDBSource:
    """RAF-DB basic emotions: ``EmoLabel/list_patition_label.txt`` + ``Image/aligned/`` (or ``Image/original/``).

    Label ids 1..7 = surprise, fear, disgust, happiness, sadness, anger, neutral (``labels.RAFDB``, the order of
    RAF-DB's README as used by public loaders, e.g. the ``0:Surprise, ..., 6:Neutral`` comments after ``label - 1``
    in SCN/RAN-style preprocessing). The split is the file-name prefix: ``train_`` -> train, ``test_`` -> test.
    ``aligned``: the 100x100 aligned faces (``<stem>_aligned.jpg``), else the original images.
    """

    root: str | Path
    aligned: bool = True
    vocabulary: str | LabelVocabulary = "rafdb"

    name: ClassVar[str] = "rafdb"

    def __post_init__(self) -> None:
        self.vocabulary = _resolve_vocabulary(self.vocabulary)
        _check_covers(self.vocabulary, RAFDB.classes, "RAFDBSource")

    @property
    def folds(self) -> list[int]:
        return []

    def clips(self) -> list[ClipRecord]:
        root = Path(self.root)
        labels = _require_file(root / "EmoLabel" / "list_patition_label.txt", "RAF-DB label list", _RAFDB_LAYOUT)
        records: dict[str, ClipRecord] = {}
        where_of: dict[str, str] = {}
        found: list[tuple[str, Path]] = []
        for n, fields in _text_rows(labels):
            where = f"{labels}:{n}"
            if len(fields) != 2:
                raise ValueError(f"{where}: expected '<image> <label 1-7>', got {fields}")
            image, raw = fields
            split = next((s for p, s in RAFDB_SPLITS.items() if image.startswith(p)), None)
            if split is None:
                raise ValueError(f"{where}: image {image!r} starts with neither 'train_' nor 'test_' (the split)")
            stem = Path(image).stem
            if stem in records:
                raise ValueError(f"image {image!r} is listed twice: {where_of[stem]} and {where}")
            path = (root / "Image" / "aligned" / f"{stem}_aligned.jpg") if self.aligned \
                else (root / "Image" / "original" / image)
            records[stem] = ClipRecord(stem, str(path), _id_to_name(raw, RAFDB, 1, where), split)
            where_of[stem] = where
            found.append((where, path))
        _missing_images(found, "RAF-DB")
        return [records[c] for c in sorted(records)]


# -------------------------------------------------------------------------------------------------------- AffectNet

AFFECTNET_COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
                     "expression", "valence", "arousal")
AFFECTNET_NOT_EMOTION = {8: "none", 9: "uncertain", 10: "no-face"}


@dataclass
class AffectNetSource:
    """AffectNet (manually annotated part): ``training.csv`` -> train, the released ``validation.csv`` -> test.

    Rows ``subDirectory_filePath, face_x, face_y, face_width, face_height, facial_landmarks, expression, valence,
    arousal`` (with or without that header line); images under ``root/<images_subdir>/<subDirectory_filePath>``.
    ``expression`` 0..7 = neutral, happy, sad, surprise, fear, disgust, anger, contempt (``labels.AFFECTNET``);
    8..10 = none, uncertain, no-face are not emotion classes: those rows are left out and counted in ``excluded``.
    ``drop_contempt``: the 7-class protocol (contempt rows left out and counted). The face box (``face_x``...,
    pixels) goes into each record (``ClipRecord.box``): readers crop the image to it.
    """

    root: str | Path
    train_csv: str = "Manually_Annotated_file_lists/training.csv"
    test_csv: str = "Manually_Annotated_file_lists/validation.csv"
    images_subdir: str = "Manually_Annotated_Images"
    vocabulary: str | LabelVocabulary = "affectnet"
    drop_contempt: bool = False

    name: ClassVar[str] = "affectnet"

    def __post_init__(self) -> None:
        self.vocabulary = _resolve_vocabulary(self.vocabulary)
        self.excluded: dict[str, int] = {}  # reason -> rows left out, after clips()
        wanted = tuple(c for c in AFFECTNET.classes if not (self.drop_contempt and c == "contempt"))
        _check_covers(self.vocabulary, wanted, "AffectNetSource")

    @property
    def folds(self) -> list[int]:
        return []

    def _rows(self, path: Path) -> list[tuple[int, list[str]]]:
        """(line, cells in AFFECTNET_COLUMNS order); the header line, when there is one, may order the columns."""
        with path.open(newline="", encoding="utf-8-sig") as f:
            rows = [(n, [c.strip() for c in row]) for n, row in enumerate(csv.reader(f), start=1) if any(row)]
        if rows and rows[0][1] and rows[0][1][0] == AFFECTNET_COLUMNS[0]:
            header = rows[0][1]
            missing = [c for c in AFFECTNET_COLUMNS if c not in header]
            if missing:
                raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
            pos = [header.index(c) for c in AFFECTNET_COLUMNS]
            return [(n, [row[i] for i in pos] if len(row) >= len(header) else row) for n, row in rows[1:]]
        return rows

    def clips(self) -> list[ClipRecord]:
        root = Path(self.root)
        layout = (f"root/{self.train_csv} and root/{self.test_csv} (columns {', '.join(AFFECTNET_COLUMNS)}), "
                  f"images in root/{self.images_subdir}/")
        records: dict[str, ClipRecord] = {}
        where_of: dict[str, str] = {}
        found: list[tuple[str, Path]] = []
        excluded: Counter[str] = Counter()
        for split, rel in (("train", self.train_csv), ("test", self.test_csv)):
            path = _require_file(root / rel, f"AffectNet {split} list", layout)
            for n, cells in self._rows(path):
                where = f"{path}:{n}"
                if len(cells) < len(AFFECTNET_COLUMNS):
                    raise ValueError(f"{where}: {len(cells)} columns, expected {len(AFFECTNET_COLUMNS)} "
                                     f"({', '.join(AFFECTNET_COLUMNS)})")
                image, expression = cells[0], cells[6]
                if _is_int(expression) and int(expression) in AFFECTNET_NOT_EMOTION:
                    excluded[f"expression {expression} ({AFFECTNET_NOT_EMOTION[int(expression)]})"] += 1
                    continue
                label = _id_to_name(expression, AFFECTNET, 0, where)
                if self.drop_contempt and label == "contempt":
                    excluded["contempt (7-class protocol)"] += 1
                    continue
                try:
                    box = tuple(int(float(v)) for v in cells[1:5])
                except ValueError:
                    raise ValueError(f"{where}: face box (face_x, face_y, face_width, face_height) must be "
                                     f"numbers, got {cells[1:5]}") from None
                if box[0] < 0 or box[1] < 0 or box[2] <= 0 or box[3] <= 0:
                    raise ValueError(f"{where}: face box (x, y, w, h) = {box} needs x, y >= 0 and w, h > 0")
                clip = Path(image).with_suffix("").as_posix()
                if clip in records:
                    raise ValueError(f"image {image!r} is listed twice: {where_of[clip]} and {where}")
                full = root / self.images_subdir / image
                records[clip] = ClipRecord(clip, str(full), label, split, box=box)  # type: ignore[arg-type]
                where_of[clip] = where
                found.append((where, full))
        _missing_images(found, "AffectNet")
        self.excluded = dict(excluded)
        return [records[c] for c in sorted(records)]
