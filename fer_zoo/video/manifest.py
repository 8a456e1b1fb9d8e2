"""The labeled manifest ``preprocess`` writes next to its crops, ready for ``datamodules.sources.ManifestSource``.

``DIR/manifest.csv`` has the header ``path,label,subject,person`` (plus any columns you add, e.g. ``split``): one row
per clip folder that holds face crops (``Clip/clip_224x224/<clip_id>``, relative to ``DIR``); ``person`` is the
person id within its video (a video with several people has one clip per person, ``<clip_id>_p<person>``). Its
labels come from ``--labels`` (a CSV ``video,label[,subject]``; a video's row labels every person clip of it), else
from the manifest already there, else they are left empty for you to fill in (``ManifestSource`` refuses empty
labels, naming the lines; it ignores the ``person`` column). A rerun keeps what is already there:
labels you typed, rows you added (photos, clips from elsewhere) and extra columns; only the rows of this tree's
clip folders are rewritten, and ``--labels`` overrides the label of the videos it names.

Clips without a single face crop (``no_face``) or that failed to decode are left out of the manifest (extraction
would only fail on them) and listed in the summary.
"""

from __future__ import annotations

import csv
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from datamodules.labels import near_duplicate_labels
from fer_zoo.video.face_track import InputError

MANIFEST = "manifest.csv"
COLUMNS = ("path", "label", "subject", "person")


@dataclass(frozen=True)
class LabelRow:
    """One row of a ``--labels`` file: the label (and subject) of one video; ``where`` is ``file:line``."""

    video: str
    label: str
    subject: str
    where: str


@dataclass
class ManifestSummary:
    """What :func:`write_manifest` wrote: rows per clip-folder label, unlabeled clips, clips left out and why."""

    path: Path
    clips: int = 0
    labels: Counter = field(default_factory=Counter)
    unlabeled: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)  # clip id -> why (no face, failed)
    other_rows: int = 0  # rows you added that are not clip folders of this tree (kept as they were)
    all_labels: Counter = field(default_factory=Counter)  # every row's label, the rows you added included


def read_labels(path: str | Path) -> list[LabelRow]:
    """Rows of a labels CSV with header ``video,label[,subject]`` (any column order, blank lines skipped).

    ``video`` names a video by its file name (``clip01.mp4``), stem (``clip01``) or path (absolute, or relative to
    the current folder or to the labels file). Raises :class:`InputError` naming the file for a missing file, a
    missing column or a row without a label.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"--labels: file not found: {path} (a CSV with header video,label[,subject])")
    rows: list[LabelRow] = []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip().lower() for h in reader.fieldnames or []]
        reader.fieldnames = header
        missing = [c for c in ("video", "label") if c not in header]
        if missing:
            raise InputError(f"--labels {path}: missing column(s) {missing}; the header must be video,label[,subject] "
                             f"(found {header})")
        for row in reader:
            cells = {k: (v or "").strip() for k, v in row.items() if isinstance(k, str)}
            if not any(cells.values()):
                continue
            where = f"{path}:{reader.line_num}"
            if not cells["video"] or not cells["label"]:
                raise InputError(f"{where}: a row needs both a video and a label, got {cells}")
            rows.append(LabelRow(cells["video"], cells["label"], cells.get("subject", ""), where))
    return rows


def match_labels(videos: list[Path], ids: dict[Path, str], rows: list[LabelRow],
                 labels_file: str | Path) -> tuple[dict[str, LabelRow], list[LabelRow]]:
    """Label rows matched to the videos being preprocessed: ``({clip_id: row}, rows that match no video)``.

    A row matches a video by path (as given, resolved from the current folder or from the labels file's folder),
    file name, stem or clip id. Raises :class:`InputError` when a row matches two videos (name them by path then)
    or two rows match one video.
    """
    base = Path(labels_file).resolve().parent
    keys: dict[str, list[Path]] = {}
    for v in videos:
        for k in {str(v), str(v.resolve()), v.name, v.stem, ids[v]}:
            keys.setdefault(k, []).append(v)
    matched: dict[str, LabelRow] = {}
    unmatched: list[LabelRow] = []
    for row in rows:
        hits: list[Path] = []
        for k in (row.video, str(Path(row.video).resolve()), str((base / row.video).resolve())):
            hits = sorted(set(keys.get(k, [])))
            if hits:
                break
        if not hits:
            unmatched.append(row)
            continue
        if len(hits) > 1:
            raise InputError(f"{row.where}: {row.video!r} matches {len(hits)} videos ({', '.join(map(str, hits))}); "
                             "name it by its path")
        cid = ids[hits[0]]
        if cid in matched:
            raise InputError(f"{row.where}: video {hits[0]} is already labeled at {matched[cid].where}")
        matched[cid] = row
    return matched, unmatched


def _read_manifest(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    if not path.is_file():
        return list(COLUMNS), []
    with path.open(newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in reader.fieldnames or []]
        reader.fieldnames = header
        if "path" not in header or "label" not in header:
            raise InputError(f"{path} exists but is not a manifest (header {header}; needs path,label): move it away")
        rows = [{k: (v or "").strip() for k, v in r.items() if isinstance(k, str)} for r in reader]
    return header + [c for c in COLUMNS if c not in header], [r for r in rows if any(r.values())]


def write_manifest(out: Path, frames_subdir: str, index: list[dict[str, str]],
                   labels: dict[str, LabelRow]) -> ManifestSummary:
    """Write ``out/manifest.csv`` (atomically) from the tree's ``clips.csv`` rows and this run's matched labels.

    ``index``: the rows of ``clips.csv`` (clip_id, status, reason, person, ...); clips with status ``ok`` get a row
    ``<frames_subdir>/<clip_id>,<label>,<subject>,<person>``; ``labels`` is keyed by clip id (every person clip of
    a labeled video). Rows already in the manifest keep their order, their labels
    (unless ``labels`` names that clip) and their other columns; rows that are not clip folders of this tree are
    kept untouched; new clips are appended in clip-id order.
    """
    path = out / MANIFEST
    header, old = _read_manifest(path)
    prefix = Path(frames_subdir).as_posix().strip("/") + "/"
    ok = {r["clip_id"]: r for r in index if r["status"] == "ok"}
    summary = ManifestSummary(path, left_out={r["clip_id"]: r["reason"] or r["status"] for r in index
                                              if r["status"] != "ok"})

    def fill(row: dict[str, str], cid: str) -> dict[str, str]:
        row["person"] = str(ok[cid].get("person") or "")
        if cid in labels:
            row["label"], row["subject"] = labels[cid].label, labels[cid].subject or row.get("subject", "")
        summary.clips += 1
        if row.get("label"):
            summary.labels[row["label"]] += 1
        else:
            summary.unlabeled.append(cid)
        return row

    rows: list[dict[str, str]] = []
    seen: set[str] = set()
    for r in old:
        p = Path(r["path"]).as_posix()
        cid = p[len(prefix):] if p.startswith(prefix) else None
        if cid is None or "/" in cid:
            rows.append(r)
            summary.other_rows += 1
        elif cid in ok and cid not in seen:  # a clip folder now without crops (rerun with --overwrite) drops out
            rows.append(fill(r, cid))
            seen.add(cid)
    for cid in sorted(set(ok) - seen):
        rows.append(fill({"path": prefix + cid, "label": "", "subject": ""}, cid))
    summary.all_labels = Counter(r["label"] for r in rows if r.get("label"))
    tmp = path.with_name(f".{MANIFEST}.tmp")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=header, extrasaction="ignore", restval="")
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)
    return summary


def print_summary(s: ManifestSummary, labels_given: bool, unmatched: list[LabelRow]) -> None:
    """The manifest part of ``preprocess``'s summary: what was written and what the user must do next."""
    for row in unmatched:
        print(f"  LABELS  {row.where}: {row.video!r} matches none of the input videos (by path, file name or stem); "
              "row ignored")
    for cid, why in sorted(s.left_out.items()):
        print(f"  NOT IN MANIFEST {cid}: {why}")
    counts = ", ".join(f"{k} {n}" for k, n in sorted(s.labels.items()))
    other = f" and {s.other_rows} rows you added" if s.other_rows else ""
    print(f"manifest: {s.path} ({s.clips} clip folders{other}; labels: {counts or 'none yet'})")
    groups = near_duplicate_labels(dict(s.all_labels))
    if groups:
        found = "; ".join(", ".join(f"{k!r} x{n}" for k, n in g.items()) for g in groups)
        print(f"  LABELS look like one class spelt several ways: {found}. `extract` and `fit` stop on this unless "
              f"you fix the spellings in {s.path} or name the classes (vocabulary: [...] in your config)")
    if s.unlabeled:
        shown = ", ".join(s.unlabeled[:10]) + (", ..." if len(s.unlabeled) > 10 else "")
        print(f"  {len(s.unlabeled)} clips have no label yet ({shown}): "
              + ("the --labels file does not name them; " if labels_given else "")
              + f"fill in the label column of {s.path} (one class name per clip) before `extract` and `fit`")
