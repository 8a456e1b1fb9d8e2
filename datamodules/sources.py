"""Clip sources: every dataset layout turned into one sorted list of :class:`ClipRecord`.

A source only *lists* clips (path, canonical label name, split/fold); it never decodes them, so listing DFEW's 11k
clips is instant and a clip whose file is missing is still listed (the extraction run records it as failed instead
of the data set silently shrinking). Each source is a dataclass whose fields are its config, so LightningCLI /
jsonargparse builds it from YAML (``class_path: datamodules.sources.DFEWSource``, ``init_args: {root: ...}``).

Integers in label files are read only through the order the user names (``label_order``,
:mod:`datamodules.label_orders`), and checked against the class names a clip's path holds where the layout has them;
names go through :func:`canonical_label`. Inconsistent protocol files (a clip in two test folds, train and test
disagreeing on a label) raise instead of being resolved by "last one wins".
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Protocol, runtime_checkable

from datamodules.frames import IMAGE_SUFFIXES, MEDIA_SUFFIXES, is_hidden
from datamodules.label_orders import (
    KNOWN_ORDERS,
    IntegerLabel,
    LabelOrder,
    orders_over,
    read_integer_labels,
    resolve_order,
)
from datamodules.labels import (
    DFEW,
    FERV39K,
    MAFW,
    MAFW_ORDERS,
    LabelVocabulary,
    canonical_label,
    check_inferred_labels,
    get_vocabulary,
)
from datamodules.records import ClipRecord

SPLITS = ("train", "val", "test")


@runtime_checkable
class ClipSource(Protocol):
    """What the extraction run and the DataModule need from a data set (``name``: a stable id such as "dfew")."""

    @property
    def name(self) -> str: ...

    @property
    def vocabulary(self) -> LabelVocabulary: ...

    @property
    def folds(self) -> list[int]: ...

    def clips(self) -> list[ClipRecord]: ...


# ----------------------------------------------------------------------------------------------------------- helpers


class LabelError(KeyError):
    """A label that the vocabulary cannot map; a ``KeyError`` whose message prints plainly (no repr quoting)."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


def _resolve_vocabulary(value: str | LabelVocabulary | None) -> LabelVocabulary:
    """A vocabulary given by name (YAML) or as an object (Python); sources store the resolved object."""
    if value is None:
        raise ValueError("no label vocabulary given")
    return value if isinstance(value, LabelVocabulary) else get_vocabulary(value)


def _is_int(text: str) -> bool:
    return text.lstrip("+-").isdigit()


def _to_class(raw: object, vocab: LabelVocabulary, where: str) -> str:
    """Canonical class name of one label cell holding a class name; ``where`` is ``file:line`` so a bad row can be
    found and fixed. An integer is refused here: this file format carries no order that would give it a meaning
    (sources that take integers read them through :func:`_read_labels`)."""
    text = str(raw).strip()
    if _is_int(text):
        raise LabelError(f"{where}: integer label {text!r}, but this file needs class names {list(vocab.classes)}")
    canon = canonical_label(text)
    if canon not in vocab.classes:
        close = difflib.get_close_matches(canon, vocab.classes, n=1, cutoff=0.75)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise LabelError(f"{where}: label {text!r} is not in the {vocab.name!r} vocabulary {list(vocab.classes)}{hint}")
    return canon


def _check_dataset_classes(vocab: LabelVocabulary, official: LabelVocabulary, source: str, ints: str,
                           custom_order: bool, order: LabelOrder | None = None) -> None:
    """Refuse a vocabulary, or an integer order, of other classes than the data set's.

    A bijection to the wrong names keeps UAR/WAR intact while every class name in results, plots and predictions is
    wrong, so a vocabulary and a ``label_order`` must hold exactly the data set's classes (in any order) unless
    ``custom_order`` says the user means it. Raises :class:`LabelError` naming both class lists.
    """
    if custom_order:
        return
    if set(vocab.classes) != set(official.classes):
        raise LabelError(
            f"{source}: vocabulary {vocab.name!r} ({len(vocab)} classes: {list(vocab.classes)}) does not describe "
            f"this data set's labels {ints} ({len(official)} classes: {list(official.classes)}). Use vocabulary: "
            f"{official.name} (the official order), or set custom_order: true to use other classes on purpose."
        )
    if order is not None and set(order.classes) != set(official.classes):
        raise LabelError(
            f"{source}: label_order {order.name!r} ({len(order)} classes: {list(order.classes)}) does not describe "
            f"this data set's labels ({len(official)} classes: {list(official.classes)}); known orders over them: "
            f"{[o.name for o in orders_over(official.classes)]}, or set custom_order: true to use other classes on "
            "purpose."
        )


#: A label row as read from a split file: (clip path relative to the data root = its id, label cell, ``file:line``).
_Row = tuple[str, str, str]


def _read_labels(rows: Sequence[_Row], vocab: LabelVocabulary | None, order: LabelOrder | None,
                 candidates: Sequence[LabelOrder], hint: str = "") -> list[str]:
    """Canonical class names of ``rows``, in order: names through :func:`canonical_label`, integers only through
    ``order`` and cross-checked against the class names in their clip paths
    (:func:`~datamodules.label_orders.read_integer_labels`, which raises ``LabelOrderError`` naming the file, the
    line and the order that fits; ``candidates`` are the known orders it searches, ``hint`` a sentence on the data
    set's own order). With ``vocab``, every class must be in it (:class:`LabelError` naming the line)."""
    ints = [IntegerLabel(int(raw.strip()), where, clip) for clip, raw, where in rows if _is_int(raw.strip())]
    mapped = iter(read_integer_labels(ints, order, candidates, hint))
    out = []
    for _, raw, where in rows:
        if not _is_int(raw.strip()):
            out.append(_to_class(raw, vocab, where) if vocab is not None else canonical_label(raw))
            continue
        name = next(mapped)
        if vocab is not None and name not in vocab.classes:
            raise LabelError(f"{where}: integer label {raw.strip()!r} reads {name!r} in label_order "
                             f"{order.name!r}, which is not in the {vocab.name!r} vocabulary {list(vocab.classes)}")
        out.append(name)
    return out


def _read_fold_labels(test: dict[int, list[_Row]], train: dict[int, list[_Row]],
                      read: Callable[[list[_Row]], list[str]]) -> tuple[dict[int, list[_Row]], dict[int, list[_Row]]]:
    """``test`` and ``train`` (fold -> raw rows) with every label cell read by ``read`` in one go, so the integer
    order is checked against every file's paths at once."""
    flat = [r for d in (test, train) for k in sorted(d) for r in d[k]]
    names = iter(read(flat))

    def named(d: dict[int, list[_Row]]) -> dict[int, list[_Row]]:
        return {k: [(clip, next(names), where) for clip, _, where in d[k]] for k in sorted(d)}

    return named(test), named(train)


def check_n_folds(n_folds: int, where: str) -> None:
    """Raises ``ValueError`` naming ``where`` unless ``n_folds`` is 0 (no folds) or >= 2."""
    if n_folds < 0 or n_folds == 1:
        raise ValueError(f"{where}: n_folds must be 0 (no folds) or >= 2, got {n_folds}")


def drawn_folds(records: list[ClipRecord], n_folds: int, fold_seed: int, where: str) -> list[ClipRecord]:
    """``records`` with ``test_fold`` 1..``n_folds`` drawn once: stratified by label, whole subjects per fold where
    records name them (a record without a subject is a group of its own), shuffled with ``fold_seed``
    (scikit-learn's ``StratifiedGroupKFold``), so every clip is in exactly one test fold and every run of the
    protocol, whatever its training seed, sees the same folds. ``n_folds`` 0 returns ``records`` unchanged (no
    fold protocol: one seeded split). Raises ``ValueError`` (naming ``where``) for ``n_folds`` 1 or < 0, or more
    folds than subjects (or clips)."""
    check_n_folds(n_folds, where)
    if n_folds == 0:
        return records
    import warnings

    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    groups = [r.subject or f"\0clip:{r.clip_id}" for r in records]
    if len(set(groups)) < n_folds:
        raise ValueError(f"{where}: {n_folds} folds need at least {n_folds} subjects (or clips), got "
                         f"{len(set(groups))}")
    labels = np.array([r.label or "" for r in records])
    fold_of = np.zeros(len(records), dtype=np.int64)
    with warnings.catch_warnings():  # a class with fewer clips than folds: expected (it is absent from some folds)
        warnings.simplefilter("ignore", UserWarning)
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=int(fold_seed))
        for k, (_, test) in enumerate(splitter.split(np.zeros(len(records)), labels, groups), start=1):
            fold_of[test] = k
    return [dataclasses.replace(r, test_fold=int(k)) for r, k in zip(records, fold_of)]


def _require_root(root: Path, dataset: str, layout: str) -> None:
    if not root.is_dir():
        raise FileNotFoundError(f"{dataset} root not found: {root} (expected layout: {layout})")


def _first_existing(candidates: list[Path], what: str, layout: str) -> Path:
    for c in candidates:
        if c.exists():
            return c
    tried = " or ".join(str(c) for c in candidates)
    raise FileNotFoundError(f"{what} not found: expected {tried} (layout: {layout})")


def _require_file(path: Path, what: str, layout: str) -> Path:
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: expected {path} (layout: {layout})")
    return path


def clip_id_of(rel: str | Path) -> str:
    """A clip id from a path relative to the data root: the whole path, with only a known media suffix
    (:data:`~datamodules.frames.MEDIA_SUFFIXES`) stripped, so frame folders ``subj.1/`` and ``subj.2/`` stay two
    clips (``Path.with_suffix("")`` would make both ``subj``) while ``subj.1.mp4`` becomes ``subj.1``."""
    rel = Path(rel)
    return (rel.with_suffix("") if rel.suffix.lower() in MEDIA_SUFFIXES else rel).as_posix()


def _resolve_clip(folder: Path, stem: str) -> Path:
    """A frame folder ``folder/stem`` if there is one, else ``folder/stem.mp4``; the folder when neither exists.

    Lets one ``frames_subdir`` setting point at extracted frames or at the original videos.
    """
    as_dir = folder / stem
    if as_dir.is_dir():
        return as_dir
    as_video = folder / f"{stem}.mp4"
    return as_video if as_video.is_file() else as_dir


def _with_audio(records: list[ClipRecord], audio_root: str | Path | None) -> list[ClipRecord]:
    """Point every clip at ``audio_root/<clip_id>.wav`` (a data set that ships its audio apart from the frames).

    Listed, not checked: a missing file fails that clip in the audio store, naming the path (a wrong root shows at
    once), never the visual stores.
    """
    if audio_root is None:
        return records
    return [dataclasses.replace(r, audio=str(Path(audio_root) / f"{r.clip_id}.wav")) for r in records]


def _text_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """Non-blank lines of a whitespace-separated label file as (line number, fields)."""
    with path.open(encoding="utf-8-sig") as f:
        for n, line in enumerate(f, start=1):
            fields = line.split()
            if fields:
                yield n, fields


def _csv_rows(path: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str]]]:
    """Rows of a headed CSV as (line number, row) after checking the header names the ``required`` columns."""
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in required if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header is {header}")
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            yield reader.line_num, {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}


@dataclass
class _Listed:
    label: str
    where: str


def _merge_kfold(
    test: dict[int, list[tuple[str, str, str]]], train: dict[int, list[tuple[str, str, str]]]
) -> dict[str, tuple[str, int]]:
    """Clip id -> (label, test fold) from per-fold (clip id, label, where) lists, checking the protocol holds.

    Every clip must sit in exactly one test set, every train-listed clip must be in some other fold's test set, and
    all files must agree on its label: a broken split silently leaks test clips into training otherwise.
    """
    fold_of: dict[str, int] = {}
    seen: dict[str, _Listed] = {}

    def check_label(clip: str, label: str, where: str) -> None:
        prev = seen.get(clip)
        if prev is None:
            seen[clip] = _Listed(label, where)
        elif prev.label != label:
            raise ValueError(f"clip {clip!r} is labeled {prev.label!r} at {prev.where} but {label!r} at {where}")

    for k in sorted(test):
        for clip, label, where in test[k]:
            if clip in fold_of:
                raise ValueError(
                    f"clip {clip!r} is listed twice in the test sets: fold {fold_of[clip]} ({seen[clip].where}) "
                    f"and fold {k} ({where}); each clip must be in exactly one"
                )
            check_label(clip, label, where)
            fold_of[clip] = k
    for k in sorted(train):
        for clip, label, where in train[k]:
            if clip not in fold_of:
                raise ValueError(f"{where}: clip {clip!r} is in a train set but in no test set")
            if fold_of[clip] == k:
                raise ValueError(f"{where}: clip {clip!r} is in both the train and the test set of fold {k}")
            check_label(clip, label, where)
    return {clip: (seen[clip].label, fold_of[clip]) for clip in fold_of}


# ------------------------------------------------------------------------------------------------------------- DFEW

_DFEW_LAYOUT = (
    "root/EmoLabel_DataSplit/{train,test}(single-labeled)/set_{1..5}.csv (video_name,label with label 1-7) and "
    "root/<frames_subdir>/<5-digit clip id>/"
)


@dataclass
class DFEWSource:
    """DFEW, 5-fold: ``test(single-labeled)/set_k.csv`` gives the clips whose ``test_fold`` is k.

    The split files hold integer labels, read only through the order ``label_order`` names: ``"dfew"`` for the DFEW
    release (1-7 = Happy, Sad, Neutral, Angry, Surprise, Disgust, Fear), another key of
    :data:`~datamodules.label_orders.KNOWN_ORDERS`, or the class names listed in the order of your integers
    (0-based). With none named, reading an integer raises ``LabelOrderError`` naming the file, line and the release's
    order. ``vocabulary`` is the class order used for training (class indices), DFEW's by default.
    ``frames_subdir`` is relative to ``root``; point it at our own preprocessing output
    (``<frames_subdir>/<clip_id>/00001.jpg``) or at a video folder (``<clip_id>.mp4``).

    A vocabulary or ``label_order`` whose classes are not DFEW's seven raises :class:`LabelError` (8 classes would
    silently rename every clip), unless ``custom_order=True`` says that other classes are meant.
    """

    root: str | Path
    frames_subdir: str = "Clip/clip_224x224"
    vocabulary: str | LabelVocabulary = "dfew"
    custom_order: bool = False
    audio_root: str | Path | None = None
    label_order: str | list[str] | None = None

    name: ClassVar[str] = "dfew"
    n_folds: ClassVar[int] = 5

    def __post_init__(self) -> None:
        self.vocabulary = _resolve_vocabulary(self.vocabulary)
        self._order = resolve_order(self.label_order, "DFEW")
        _check_dataset_classes(self.vocabulary, DFEW, "DFEWSource", "1-7", self.custom_order, self._order)

    @property
    def folds(self) -> list[int]:
        return list(range(1, self.n_folds + 1))

    def _split_file(self, part: str, k: int) -> Path:
        base = Path(self.root) / "EmoLabel_DataSplit"
        # Some copies on disk drop the "(single-labeled)" suffix; accept both, prefer the official name.
        folder = _first_existing(
            [base / f"{part}(single-labeled)", base / part], f"DFEW {part} split folder", _DFEW_LAYOUT
        )
        return _require_file(folder / f"set_{k}.csv", f"DFEW {part} split", _DFEW_LAYOUT)

    def _read(self, path: Path) -> list[_Row]:
        rows = []
        for n, row in _csv_rows(path, ("video_name", "label")):
            name = row["video_name"]
            clip = name.zfill(5) if name.isdigit() else name
            rows.append((clip, row["label"], f"{path}:{n}"))
        return rows

    def _labels(self, rows: list[_Row]) -> list[str]:
        hint = f"The DFEW release numbers its classes as {KNOWN_ORDERS['dfew'].describe()}. "
        return _read_labels(rows, _resolve_vocabulary(self.vocabulary), self._order, orders_over(DFEW.classes), hint)

    def clips(self) -> list[ClipRecord]:
        root = Path(self.root)
        _require_root(root, "DFEW", _DFEW_LAYOUT)
        test = {k: self._read(self._split_file("test", k)) for k in self.folds}
        train = {k: self._read(self._split_file("train", k)) for k in self.folds}
        test, train = _read_fold_labels(test, train, self._labels)
        frames = root / self.frames_subdir
        return _with_audio([
            ClipRecord(clip, str(_resolve_clip(frames, clip)), label, None, fold)
            for clip, (label, fold) in sorted(_merge_kfold(test, train).items())
        ], self.audio_root)


# ------------------------------------------------------------------------------------------------------------- MAFW

# Split folder names seen in the wild: the official archive ("Train & Test Set"), the path MAE-DFER's preprocessing
# and the task spec use ("split"), and an underscore copy (AVF-MAE's preprocessing).
_MAFW_SPLIT_DIRS = ("Train & Test Set", "split", "Train_Test_Set")
_MAFW_LAYOUT = (
    "root/{'Train & Test Set' or 'split'}/single/no_caption/set_{1..5}/{train,test}.txt "
    "(lines '<clip>.mp4 <label>') and root/<frames_subdir>/<clip stem>/ or <clip stem>.mp4"
)
# Integer labels of every MAFW order are 0-based, as found in public files (datamodules.label_orders.KNOWN_ORDERS):
# - mafw_official: MAE-DFER's preprocess/mafw.py writes label2idx over anger..disappointment from 0.
# - mafw_dfew_first: DFER-CLIP annotation/MAFW_set_*_{train,test}.txt, Happiness=0 .. Disappointment=10.
# - mafw_alpha: sklearn's LabelEncoder numbers the sorted class names from 0.


@dataclass
class MAFWSource:
    """MAFW single-label, 5-fold: ``single/no_caption/set_k/test.txt`` gives the clips whose ``test_fold`` is k.

    The official files hold one ``<clip>.mp4 <class name>`` per line (e.g. ``00025.mp4 anger``), read by name.
    Files rewritten with integer labels are read only in the order ``label_order`` names (``mafw_official``,
    ``mafw_alpha``, ``mafw_dfew_first``: each 0-based, as in the codebases that write them; or the 11 class names
    listed in the order of your integers); with none named, an integer raises ``LabelOrderError`` naming the file,
    the line and the three orders. The vocabulary (class indices in training) is the named MAFW order, else
    ``mafw_official``.
    """

    root: str | Path
    frames_subdir: str = "data/frames"
    label_order: str | list[str] | None = None
    audio_root: str | Path | None = None

    name: ClassVar[str] = "mafw"
    n_folds: ClassVar[int] = 5

    def __post_init__(self) -> None:
        self._order = resolve_order(self.label_order, "MAFW")
        _check_dataset_classes(MAFW, MAFW, "MAFWSource", "", False, self._order)

    @property
    def vocabulary(self) -> LabelVocabulary:
        return MAFW_ORDERS.get(self.label_order, MAFW) if isinstance(self.label_order, str) else MAFW

    @property
    def folds(self) -> list[int]:
        return list(range(1, self.n_folds + 1))

    def split_dir(self) -> Path:
        """The ``.../single/no_caption`` folder of whichever split-folder name this copy of MAFW uses."""
        root = Path(self.root)
        _require_root(root, "MAFW", _MAFW_LAYOUT)
        return _first_existing(
            [root / d / "single" / "no_caption" for d in _MAFW_SPLIT_DIRS], "MAFW split folder", _MAFW_LAYOUT
        )

    def _read(self, path: Path) -> list[_Row]:
        _require_file(path, "MAFW split", _MAFW_LAYOUT)
        rows = []
        for n, fields in _text_rows(path):
            where = f"{path}:{n}"
            if len(fields) != 2:
                raise ValueError(f"{where}: expected '<clip> <label>', got {len(fields)} fields: {fields}")
            rows.append((clip_id_of(Path(fields[0]).name), fields[1], where))
        return rows

    def _labels(self, rows: list[_Row]) -> list[str]:
        hint = "MAFW's official split files hold class names; files rewritten with integers come in several orders. "
        return _read_labels(rows, self.vocabulary, self._order, orders_over(MAFW.classes), hint)

    def clips(self) -> list[ClipRecord]:
        split = self.split_dir()
        test = {k: self._read(split / f"set_{k}" / "test.txt") for k in self.folds}
        train = {k: self._read(split / f"set_{k}" / "train.txt") for k in self.folds}
        test, train = _read_fold_labels(test, train, self._labels)
        frames = Path(self.root) / self.frames_subdir
        return _with_audio([
            ClipRecord(clip, str(_resolve_clip(frames, clip)), label, None, fold)
            for clip, (label, fold) in sorted(_merge_kfold(test, train).items())
        ], self.audio_root)


# ---------------------------------------------------------------------------------------------------------- FERV39K

_FERV39K_LAYOUT = (
    "root/4_setups/All_scenes/{train_All,test_All}.csv (lines '<Scene>/<Emotion>/<clip> <label>', e.g. "
    "'Action/Sad/0010 Sad') and root/<frames_subdir>/<Scene>/<Emotion>/<clip>/"
)
_HEADER_WORDS = {"label", "labels", "emotion", "class"}


@dataclass
class FERV39KSource:
    """FERV39K, fixed train/test split (``split`` is "train"/"test", no folds).

    The official ``4_setups/All_scenes`` files hold ``<Scene>/<Emotion>/<clip> <Emotion>`` per line, space-separated
    and headerless (e.g. ``Action/Sad/0010 Sad``). Also read: comma-separated lines, one header line, and integer
    labels, but only through the order ``label_order`` names (``ferv39k_alpha``: 0-6 = Angry, Disgust, Fear, Happy,
    Neutral, Sad, Surprise, as public loaders write them; ``ferv39k``: 0-6 in DFEW's order; any key of
    :data:`~datamodules.label_orders.KNOWN_ORDERS`; or the class names listed in the order of your integers,
    0-based). Every integer's class is checked against the emotion folder of its clip path (``Action/Angry/0001``):
    with no order named, or one the paths contradict, the run stops with ``LabelOrderError`` naming the file, the
    line and the order that fits the paths. ``vocabulary`` is the class order used for training.
    """

    root: str | Path
    frames_subdir: str = "2_ClipsforFaceCrop"
    vocabulary: str | LabelVocabulary = "ferv39k"
    custom_order: bool = False
    label_order: str | list[str] | None = None

    name: ClassVar[str] = "ferv39k"

    def __post_init__(self) -> None:
        self.vocabulary = _resolve_vocabulary(self.vocabulary)
        self._order = resolve_order(self.label_order, "FERV39K")
        _check_dataset_classes(self.vocabulary, FERV39K, "FERV39KSource", "0-6", self.custom_order, self._order)

    @property
    def folds(self) -> list[int]:
        return []

    def _read(self, path: Path) -> list[_Row]:
        rows = []
        for i, (n, fields) in enumerate(_text_rows(path)):
            if len(fields) == 1 and "," in fields[0]:
                fields = [f.strip() for f in fields[0].split(",")]
            where = f"{path}:{n}"
            if i == 0 and len(fields) == 2 and fields[1].strip().lower() in _HEADER_WORDS:
                continue
            if len(fields) != 2:
                raise ValueError(f"{where}: expected '<path> <label>', got {len(fields)} fields: {fields}")
            rows.append((clip_id_of(fields[0].strip("/")), fields[1], where))
        return rows

    def clips(self) -> list[ClipRecord]:
        root = Path(self.root)
        _require_root(root, "FERV39K", _FERV39K_LAYOUT)
        setups = root / "4_setups" / "All_scenes"
        records: dict[str, ClipRecord] = {}
        where_of: dict[str, str] = {}
        frames = root / self.frames_subdir
        listed = {split: self._read(_require_file(setups / f"{split}_All.csv", f"FERV39K {split} split",
                                                  _FERV39K_LAYOUT)) for split in ("train", "test")}
        flat = listed["train"] + listed["test"]
        labels = iter(_read_labels(flat, _resolve_vocabulary(self.vocabulary), self._order,
                                   orders_over(FERV39K.classes), "FERV39K's official files hold class names. "))
        for split in ("train", "test"):
            for clip, _, where in listed[split]:
                label = next(labels)
                if clip in records:
                    raise ValueError(f"clip {clip!r} is listed twice: {where_of[clip]} and {where}")
                records[clip] = ClipRecord(clip, str(_resolve_clip(frames, clip)), label, split, None)
                where_of[clip] = where
        return [records[c] for c in sorted(records)]


# --------------------------------------------------------------------------------------------------------- manifest


@dataclass
class ManifestSource:
    """Your own clips from a CSV with header ``path,label[,split][,fold][,subject][,audio]``.

    ``path`` is relative to ``root`` (default: the CSV's folder) and ``label`` a class name, or an integer read
    through the order ``label_order`` names (a key of :data:`~datamodules.label_orders.KNOWN_ORDERS`, or your class
    names listed in the order of your integers, 0-based); integers with no order named stop with
    ``LabelOrderError``. Where a clip's folders name a class (``clips/Angry/a.mp4``), an integer's class must be
    that one, else ``LabelOrderError`` names the line and the known order that fits the paths. ``fold`` is the test
    fold of the clip in a K-fold protocol. ``subject`` (optional) names the person shown: seeded splits then keep
    each subject's clips on one side. ``audio`` (optional, relative like ``path``) names a sibling audio file
    holding the clip's soundtrack; else ``audio_root/<clip_id>.wav`` when ``audio_root`` is set; else the video's
    own audio stream. ``vocabulary=None`` takes the sorted set of labels found (integers read through
    ``label_order``), read when the source is built so the class count is fixed before any model is; labels that
    look like one class spelt several ways (``Happy``/``happy``, ``happy``/``happiness``,
    ``hapiness``/``happiness``) then stop with :class:`~datamodules.labels.LabelSpellingError` listing them and
    their counts. ``vocabulary`` may name a known vocabulary (``"faces8"``) or list your classes (``[happiness,
    neutral]``, in this order); then case and known synonyms map to them and any other label is an error naming its
    line. A row with an empty label (``preprocess`` writes the label column empty when it was given no labels) is an
    error listing the lines to fill in. ``n_folds`` / ``fold_seed``: for a manifest without ``split`` and ``fold``
    values, draw ``n_folds`` class-stratified, subject-grouped folds once (see :func:`drawn_folds`; 0: none, one
    seeded split); with either column filled it is an error (the manifest already states its protocol).
    """

    csv: str | Path
    root: str | Path | None = None
    vocabulary: str | list[str] | LabelVocabulary | None = None
    audio_root: str | Path | None = None
    n_folds: int = 0
    fold_seed: int = 0
    label_order: str | list[str] | None = None

    name: ClassVar[str] = "manifest"

    def __post_init__(self) -> None:
        self._order = resolve_order(self.label_order, "manifest")
        if self.vocabulary is None:
            rows = list(self._rows())
            self._require_labels(rows)
            counts = Counter(r["label"] for _, r in rows if not _is_int(r["label"]))
            check_inferred_labels(dict(counts), str(self.csv))
            names = self._labels(rows, None)
            self.vocabulary = LabelVocabulary("manifest", tuple(sorted(set(names))))
        elif isinstance(self.vocabulary, (list, tuple)):
            self.vocabulary = LabelVocabulary("manifest", tuple(str(c) for c in self.vocabulary))
        else:
            self.vocabulary = _resolve_vocabulary(self.vocabulary)

    def _clip(self, path_text: str) -> tuple[str, Path]:
        """(clip id, full path) of a ``path`` cell: the id is the path relative to :attr:`base` without a media
        suffix (an absolute path outside it keeps its whole path: the only stable id)."""
        rel = Path(path_text)
        full = rel if rel.is_absolute() else self.base / rel
        try:
            return clip_id_of(full.relative_to(self.base)), full
        except ValueError:
            return clip_id_of(full), full

    def _labels(self, rows: list[tuple[int, dict[str, str]]], vocab: LabelVocabulary | None) -> list[str]:
        """Class names of the rows' labels (integers through ``label_order``, checked against class folders)."""
        listed = [(self._clip(r["path"])[0], r["label"], f"{self.csv}:{n}") for n, r in rows]
        orders = list(KNOWN_ORDERS.values()) if vocab is None else orders_over(vocab.classes, exact=False)
        return _read_labels(listed, vocab, self._order, orders)

    def _require_labels(self, rows: list[tuple[int, dict[str, str]]]) -> None:
        empty = [n for n, r in rows if not r["label"]]
        if empty:
            lines = ", ".join(map(str, empty[:20])) + (", ..." if len(empty) > 20 else "")
            raise LabelError(f"{self.csv}: {len(empty)} of {len(rows)} clips have no label (lines {lines}): fill in "
                             "the label column, or delete the rows of clips you do not want to train on")

    @property
    def base(self) -> Path:
        return Path(self.root) if self.root is not None else Path(self.csv).parent

    def _rows(self) -> Iterator[tuple[int, dict[str, str]]]:
        path = _require_file(Path(self.csv), "manifest", "a CSV with header path,label[,split][,fold]")
        return _csv_rows(path, ("path", "label"))

    @property
    def folds(self) -> list[int]:
        return sorted({c.test_fold for c in self.clips() if c.test_fold is not None})

    def clips(self) -> list[ClipRecord]:
        vocab = _resolve_vocabulary(self.vocabulary)
        base = self.base
        records: dict[str, ClipRecord] = {}
        where_of: dict[str, str] = {}
        rows = list(self._rows())
        self._require_labels(rows)
        labels = self._labels(rows, vocab)
        for (n, row), label in zip(rows, labels):
            where = f"{self.csv}:{n}"
            clip, full = self._clip(row["path"])
            split = row.get("split", "").lower() or None
            if split is not None and split not in SPLITS:
                raise ValueError(f"{where}: split {row['split']!r} is not one of {SPLITS}")
            fold_text = row.get("fold", "")
            if fold_text and not (fold_text.isdigit() and int(fold_text) >= 1):
                raise ValueError(f"{where}: fold {fold_text!r} is not an integer >= 1")
            if clip in records:
                raise ValueError(f"clip {clip!r} is listed twice: {where_of[clip]} and {where}")
            audio_text = row.get("audio", "").strip()
            audio = None
            if audio_text:
                audio = str(Path(audio_text) if Path(audio_text).is_absolute() else base / audio_text)
            elif self.audio_root is not None:
                audio = str(Path(self.audio_root) / f"{clip}.wav")
            records[clip] = ClipRecord(clip, str(full), label, split, int(fold_text) if fold_text else None,
                                       row.get("subject", "").strip() or None, audio)
            where_of[clip] = where
        out = [records[c] for c in sorted(records)]
        if self.n_folds and any(r.split or r.test_fold for r in out):
            raise ValueError(f"{self.csv}: n_folds={self.n_folds} draws folds, but the manifest already has split or "
                             "fold values: clear those columns or leave n_folds 0")
        return drawn_folds(out, self.n_folds, self.fold_seed, f"manifest {self.csv}")


# ----------------------------------------------------------------------------------------------------- image folder

_IMAGE_LAYOUT = "root/<class name>/*.jpg, or images in root/ with legend=<csv with columns image,emotion>"


@dataclass
class ImageFolderSource:
    """Labeled photos as 1-frame clips: ``root/<class>/*.jpg`` or images in ``root`` named by a ``legend`` CSV.

    Labels (folder names or the legend's ``emotion`` column) may be in any case or a synonym (``HAPPINESS``,
    ``happy``); all map to one canonical class, so a mixed-case legend does not split one class into two.

    ``subject_pattern``: a regular expression matched against each photo's file stem whose first group (or whole
    match) names the person, e.g. ``"^(.+)_\\d+[a-z]*$"`` for the shared LFW-style names (``Aaron_Peirsol_0002`` ->
    ``Aaron_Peirsol``). Seeded splits then never put one person in two splits. A stem it does not match raises
    ``ValueError`` naming the file (a silent fallback would leak that person across splits).

    Hidden files (``.DS_Store``, ``._x.jpg``) are ignored; any other file in a class folder whose type is not read
    (``.heic``, ``.gif``, ``.txt``) is listed, after :meth:`clips`, in ``skipped`` as ``(file, reason)``, which the
    extraction summary prints: never dropped without a word.

    ``n_folds``: 0 (default) has no fold protocol (``data.seed`` draws one test split); ``k >= 2`` draws ``k``
    class-stratified, person-grouped folds once with ``fold_seed`` (:func:`drawn_folds`), so every photo is tested
    exactly once over ``data.fold`` 1..k, whatever the training seed (``ablate`` runs every fold). Use it when a
    class is small: with 7 photos of a class, a 20 % test split holds 1, worth 1/num_classes of UAR on its own.
    """

    root: str | Path
    vocabulary: str | LabelVocabulary = "faces8"
    legend: str | Path | None = None
    subject_pattern: str | None = None
    n_folds: int = 0
    fold_seed: int = 0

    name: ClassVar[str] = "image_folder"

    def __post_init__(self) -> None:
        self.vocabulary = _resolve_vocabulary(self.vocabulary)
        self.skipped: list[tuple[str, str]] = []  # (file, reason) of files in class folders not taken as photos
        if self.subject_pattern is not None:
            try:
                re.compile(self.subject_pattern)
            except re.error as err:
                raise ValueError(f"subject_pattern {self.subject_pattern!r} is not a regular expression: {err}") \
                    from None
        check_n_folds(self.n_folds, f"image folder {self.root}")

    @property
    def folds(self) -> list[int]:
        return list(range(1, self.n_folds + 1))

    def clips(self) -> list[ClipRecord]:
        root = Path(self.root)
        _require_root(root, "image folder", _IMAGE_LAYOUT)
        records = self._from_legend(root) if self.legend is not None else self._from_folders(root)
        out = [records[c] for c in sorted(records)]
        if self.subject_pattern is not None:
            out = [dataclasses.replace(r, subject=self._subject(r.path)) for r in out]
        return drawn_folds(out, self.n_folds, self.fold_seed, f"image folder {root}")

    def _subject(self, path: str) -> str:
        stem = Path(path).stem
        m = re.search(str(self.subject_pattern), stem)
        if m is None:
            raise ValueError(f"subject_pattern {self.subject_pattern!r} does not match the file name {stem!r} "
                             f"({path}); fix the pattern or leave it unset")
        return m.group(1) if m.groups() else m.group(0)

    def _from_folders(self, root: Path) -> dict[str, ClipRecord]:
        vocab = _resolve_vocabulary(self.vocabulary)
        class_dirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
        if not class_dirs:
            raise FileNotFoundError(f"no class folders under {root} (expected layout: {_IMAGE_LAYOUT})")
        records: dict[str, ClipRecord] = {}
        self.skipped = []
        for d in class_dirs:
            label = _to_class(d.name, vocab, str(d))
            for f in sorted(d.rglob("*")):
                if not f.is_file() or any(is_hidden(part) for part in f.relative_to(root).parts):
                    continue  # .DS_Store, AppleDouble ._x.jpg, .ipynb_checkpoints/: not photos
                if f.suffix.lower() not in IMAGE_SUFFIXES:
                    self.skipped.append((str(f), f"not an image type read here ({f.suffix or 'no suffix'}; read: "
                                                 f"{' '.join(sorted(IMAGE_SUFFIXES))})"))
                    continue
                clip = clip_id_of(f.relative_to(root))
                records[clip] = ClipRecord(clip, str(f), label)
        return records

    def _from_legend(self, root: Path) -> dict[str, ClipRecord]:
        vocab = _resolve_vocabulary(self.vocabulary)
        legend = _require_file(Path(str(self.legend)), "image legend", _IMAGE_LAYOUT)
        records: dict[str, ClipRecord] = {}
        where_of: dict[str, str] = {}
        for n, row in _csv_rows(legend, ("image", "emotion")):
            where = f"{legend}:{n}"
            label = _to_class(row["emotion"], vocab, where)
            clip = clip_id_of(row["image"])
            prev = records.get(clip)
            if prev is not None and prev.label != label:
                raise ValueError(
                    f"image {row['image']!r} is labeled {prev.label!r} at {where_of[clip]} but {label!r} at {where}"
                )
            records[clip] = ClipRecord(clip, str(root / row["image"]), label)
            where_of.setdefault(clip, where)
        return records


# ---------------------------------------------------------------------------------------------------- the sample

SAMPLE_ROOT = Path(__file__).resolve().parents[1] / "data" / "sample" / "images"


class SampleSource:
    """The bundled sample: ``data/sample/images/<class>/*.jpg``, 167 labeled photos as 1-frame clips, ``faces8``.

    The default source of ``fit`` and ``extract``. It takes no settings on purpose: when a later config switches
    ``class_path`` to another source, jsonargparse keeps every ``init_args`` value the new class also accepts, so a
    default carrying ``root``/``vocabulary`` leaked them into DFEW (labels 1-7 read through 8 class names) and into
    manifests (paths resolved against the sample folder). A source with nothing to inherit cannot leak.
    """

    name: ClassVar[str] = "image_folder"

    def __init__(self) -> None:
        self._images = ImageFolderSource(SAMPLE_ROOT, vocabulary="faces8")

    @property
    def vocabulary(self) -> LabelVocabulary:
        return _resolve_vocabulary(self._images.vocabulary)

    @property
    def folds(self) -> list[int]:
        return []

    def clips(self) -> list[ClipRecord]:
        return self._images.clips()

    @property
    def skipped(self) -> list[tuple[str, str]]:
        """Files of the sample folders that are not photos, after :meth:`clips` (see :class:`ImageFolderSource`)."""
        return self._images.skipped

    def __repr__(self) -> str:
        return f"SampleSource(root={str(SAMPLE_ROOT)!r}, vocabulary='faces8')"


# -------------------------------------------------------------------------------------------------------- registry

SOURCES: dict[str, type] = {
    cls.name: cls for cls in (DFEWSource, MAFWSource, FERV39KSource, ManifestSource, ImageFolderSource)
} | {"sample": SampleSource}


def build_source(name: str, **kwargs: object) -> ClipSource:
    """Build a source by its id (``build_source("dfew", root=...)``) with an error that lists the known ids."""
    try:
        cls = SOURCES[name]
    except KeyError:
        raise KeyError(f"unknown clip source {name!r}; known: {sorted(SOURCES)}") from None
    return cls(**kwargs)
