"""Where a clip's features came from: the resolved source path and a cheap fingerprint of what was read there.

A store records one :class:`Provenance` per clip (index columns ``source_path`` and ``source_fingerprint``). An
extraction rerun compares it with the clip's current provenance and re-extracts the clips whose source changed; the
feature DataModule compares it across the modalities' stores of a clip (never mixed) and with the files on disk
(stale features are reported, or refused with ``strict_provenance``).

The fingerprint is stat-based, like ``make`` and ``rsync``'s default check: size and modification time (ns) of a
file; for a frame folder, the names, sizes and modification times of the frames the reader reads
(:func:`datamodules.frames.frame_names`), hashed: ``frames:<count>:<sha256[:16]>`` of the lines
``<name>\\0<st_size>\\0<st_mtime_ns>`` joined by ``\\n`` in frame order; an image with a face box adds
``:box=<x>,<y>,<w>,<h>`` (:func:`clips_provenance`). No byte is read, so a no-op rerun over DFEW's
16k clip folders costs one listing per folder and one stat per frame (a touched or rewritten frame changes only its
own inode, not its folder's mtime, so nothing cheaper sees it); figures in ``benchmarks/bench_provenance.py``. Not
seen: a replacement that keeps both size and mtime (``cp -p``/``rsync -a`` of a same-size file over another); a path
that now names another file is seen (the path is part of the provenance).
"""

from __future__ import annotations

import hashlib
import os
import stat
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from datamodules.frames import frame_names
from datamodules.records import ClipRecord

UNKNOWN = ""  # the fingerprint of a clip packed before provenance was recorded
MISSING = "missing"


class Provenance(NamedTuple):  # a tuple: it rides in ClipItem through Lightning's batch transfer (no dataclasses)
    """``path``: the clip's source resolved (``os.path.realpath``: absolute, symlinks followed); ``fingerprint``:
    ``file:<size>:<mtime_ns>``, ``frames:<count>:<sha256[:16] of name, size, mtime_ns per frame>``, ``missing``,
    ``error:<reason>`` (unreadable), or ``""`` (unknown: packed before provenance was recorded)."""

    path: str
    fingerprint: str

    @property
    def known(self) -> bool:
        return self.fingerprint != UNKNOWN

    @property
    def missing(self) -> bool:
        return self.fingerprint == MISSING


def source_provenance(path: str | Path) -> Provenance:
    """The current provenance of one clip's source (a video file, an image, or a frame folder); never raises."""
    return sources_provenance([path])[0]


def sources_provenance(paths: Iterable[str | Path]) -> list[Provenance]:
    """:func:`source_provenance` of many clips; resolves each parent folder once (16k clips share a few)."""
    parents: dict[str, str] = {}
    out = []
    for path in paths:
        head, tail = os.path.split(os.path.abspath(path))
        if head not in parents:
            parents[head] = os.path.realpath(head)
        out.append(_provenance(os.path.join(parents[head], tail)))
    return out


def clips_provenance(clips: Iterable[ClipRecord]) -> list[Provenance]:
    """:func:`sources_provenance` of clips, with a clip's face box (``ClipRecord.box``) part of its fingerprint
    (``file:<size>:<mtime_ns>:box=<x>,<y>,<w>,<h>``): the same image cropped to another box is another source, so a
    corrected box list re-extracts those clips instead of keeping features of the old crop."""
    clips = list(clips)
    out = sources_provenance(c.path for c in clips)
    return [p if c.box is None or not p.fingerprint.startswith("file:")
            else Provenance(p.path, f"{p.fingerprint}:box={','.join(str(int(v)) for v in c.box)}")
            for c, p in zip(clips, out)]


def _provenance(path: str) -> Provenance:
    """``path``'s parent is resolved already; the leaf may still be a symlink."""
    try:
        st = os.lstat(path)
        if stat.S_ISLNK(st.st_mode):
            path = os.path.realpath(path)
            st = os.stat(path)
    except FileNotFoundError:  # also a dangling symlink
        return Provenance(os.path.realpath(path), MISSING)
    except OSError as err:
        return Provenance(path, f"error:{type(err).__name__}")
    if not stat.S_ISDIR(st.st_mode):
        return Provenance(path, f"file:{st.st_size}:{st.st_mtime_ns}")
    try:  # list and stat relative to the open folder: no path walk per frame (~25% less time on 16k folders)
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
        try:
            names = frame_names(fd)
            stats = [os.stat(n, dir_fd=fd) for n in names]
        finally:
            os.close(fd)
    except FileNotFoundError:  # a frame deleted while listing: it is changing; the next look says how
        return Provenance(path, "error:changing")
    except OSError as err:
        return Provenance(path, f"error:{type(err).__name__}")
    rows = "\n".join([f"{n}\0{s.st_size}\0{s.st_mtime_ns}" for n, s in zip(names, stats)])
    return Provenance(path, f"frames:{len(names)}:{hashlib.sha256(rows.encode()).hexdigest()[:16]}")


def how_changed(stored: Provenance, current: Provenance) -> str:
    """A few words on why ``current`` differs from ``stored``: ``gone``, ``other file`` or ``modified``."""
    if current.missing and not stored.missing:
        return "gone"
    if stored.path != current.path:
        return "other file"
    return "modified"


class ProvenanceError(ValueError):
    """Stores disagree on where a clip came from, or (strict) a clip's source changed since it was extracted."""


def refresh_command(store_root: str | Path) -> str:
    return f"python -m fer_zoo extract --config <the extract config of this source> --store_root {store_root}"


def check_sources(stores: Mapping[str, Any], clips: Sequence[ClipRecord], store_root: str | Path,
                  strict: bool = False) -> list[str]:
    """Check the stores a model reads against each other and against the files on disk; returns warning lines.

    ``stores``: modality -> ``FeatureStore`` (``.path``, ``.provenance()``); ``clips``: the clips that will be read.

    - Raises :class:`ProvenanceError` when two stores hold one clip extracted from different sources (another file,
      or the same file in two states): a model would pair one clip's modalities from two different videos.
    - One warning line (``strict``: :class:`ProvenanceError`) when two stores reached a clip through different
      folders but from a file of the same name, size and modification time (a tree moved between extractions; ``mv``
      keeps them): the same file, read as such. Another file name is another file: refused as above.
    - One warning line (``strict``: :class:`ProvenanceError`) when clips' sources changed since they were extracted
      (modified, gone, or the source's path now names another file: the same relative paths under another root).
    - One warning line per store packed before provenance was recorded (``strict``: an error), which cannot be checked.

    Stores made by ``import-features`` are left out: their clips come from feature files (OpenFace CSVs, .npy), whose
    fingerprints are part of the store's key, so changed files make a new store.

    Cost: one :func:`sources_provenance` over ``clips`` (stat calls only) and a few vectorised comparisons.
    """
    import pandas as pd

    warnings: list[str] = []
    known: dict[str, pd.DataFrame] = {}
    for m, store in stores.items():
        if "import" in (getattr(store, "meta", None) or {}):  # import-features: its store key fingerprints the files
            continue
        prov = store.provenance()
        if prov is None:
            line = (f"feature store {store.path} ({m}) was packed before stores recorded each clip's source: whether "
                    f"its clips' files changed since is unknown (refresh: extract into a new store root)")
            if strict:
                raise ProvenanceError(line + "; strict_provenance refuses it")
            warnings.append(line)
        else:
            known[m] = prov.set_index("clip_id")
    if not known:
        return warnings
    ids = [c.clip_id for c in clips]
    stored = pd.DataFrame(index=pd.Index(ids, name="clip_id"))
    stored["path"], stored["fingerprint"], stored["store"] = "", UNKNOWN, ""
    for m, prov in known.items():
        rows = prov.reindex(ids)
        has = rows["source_fingerprint"].fillna(UNKNOWN).ne(UNKNOWN).to_numpy()
        if not has.all():  # clips packed before provenance was recorded, then more clips added to the store
            line = (f"feature store {stores[m].path} ({m}): {int((~has).sum())} of {len(ids)} clips were packed before "
                    "stores recorded each clip's source, so whether their files changed since is unknown (refresh: "
                    "extract into a new store root)")
            if strict:
                raise ProvenanceError(line + "; strict_provenance refuses it")
            warnings.append(line)
        first = has & stored["fingerprint"].eq(UNKNOWN).to_numpy()
        same_state = rows["source_fingerprint"].to_numpy() == stored["fingerprint"].to_numpy()
        new_path = rows["source_path"].to_numpy() != stored["path"].to_numpy()
        same_name = np.array([os.path.basename(str(a)) == os.path.basename(str(b))
                              for a, b in zip(rows["source_path"].to_numpy(), stored["path"].to_numpy())], dtype=bool)
        # Another folder, the same file name, size and modification time: one file whose tree moved. Another name
        # is another file, even of equal size and mtime (images of one size unpacked from one archive), so a clash.
        moved = has & ~first & same_state & new_path & same_name
        if moved.any():
            i = int(np.flatnonzero(moved)[0])
            other = stored["store"].iat[i]
            line = (f"{int(moved.sum())} clips were extracted through different paths in two stores, each time from a "
                    f"file of the same name, size and modification time (e.g. {ids[i]!r}: modality {other!r} from "
                    f"{stored['path'].iat[i]}, modality {m!r} ({stores[m].path}) from {rows['source_path'].iat[i]}); "
                    "they are read as the same files in a moved folder")
            if strict:
                raise ProvenanceError(line + "; strict_provenance refuses it: re-extract one store from the "
                                      "other's paths")
            warnings.append(line)
        clash = has & ~first & (~same_state | (new_path & ~same_name))
        if clash.any():
            i = int(np.flatnonzero(clash)[0])
            other = stored["store"].iat[i]
            raise ProvenanceError(
                f"clip {ids[i]!r} was extracted from different sources in two stores: modality {other!r} "
                f"({stores[other].path}) from {stored['path'].iat[i]} [{stored['fingerprint'].iat[i]}], modality "
                f"{m!r} ({stores[m].path}) from {rows['source_path'].iat[i]} [{rows['source_fingerprint'].iat[i]}]; "
                f"{int(clash.sum())} clips in all. Refusing to pair one clip's modalities from different files: "
                f"refresh the stores with `{refresh_command(store_root)}` (it re-extracts the clips whose source "
                "changed)")
        stored.loc[first, "path"] = rows["source_path"].to_numpy()[first]
        stored.loc[first, "fingerprint"] = rows["source_fingerprint"].to_numpy()[first]
        stored.loc[first, "store"] = m
    checked = stored["fingerprint"].ne(UNKNOWN).to_numpy()
    now = clips_provenance(c for c, k in zip(clips, checked) if k)
    old = stored[checked]
    stale = [(cid, Provenance(p, f), n) for cid, p, f, n in zip(old.index, old["path"], old["fingerprint"], now)
             if (p, f) != (n.path, n.fingerprint)]
    if stale:
        kinds = Counter(how_changed(o, n) for _, o, n in stale)
        cid, o, n = stale[0]
        line = (f"{len(stale)} of {len(ids)} clips' sources changed since their features were extracted "
                f"({', '.join(f'{k} {v}' for k, v in sorted(kinds.items()))}; e.g. {cid!r}: {how_changed(o, n)}, "
                f"extracted from {o.path}, now {n.path}) in the stores under {store_root}; refresh them with "
                f"`{refresh_command(store_root)}`")
        if strict:
            raise ProvenanceError(line + "; strict_provenance refuses stale features")
        warnings.append(line)
    return warnings
