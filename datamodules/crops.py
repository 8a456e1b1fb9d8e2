"""Which clips of a store are face crops made by ``python -m fer_zoo preprocess``, and with which settings.

``preprocess`` writes ``preprocess.json`` (its face-crop settings: margin, size, detector, ...) at the root of every
tree it makes; a clip folder under such a root is a face crop made with those settings, for a video and for a photo
alike. ``predict-video`` always computes features on such crops of the tracked face, so a model trained on anything
else (whole photos, whole frames) sees other inputs there. :func:`crop_record` summarises this for the clips of an
extraction (written into the store's ``meta.json`` as ``face_crops``) so ``predict-video`` can say so.

No import of ``fer_zoo`` here (one-way data flow); the settings are read as plain JSON.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

PREPROCESS_SETTINGS = "preprocess.json"
#: The settings that change the pixels of a crop (the tracking settings only decide which frames have one).
PIXEL_KEYS = ("margin", "size", "detector", "min_confidence", "jpeg_quality", "snap", "version")


def preprocess_root(path: str | Path, cache: dict[Path, Path | None] | None = None) -> Path | None:
    """The nearest folder above ``path`` (a clip folder, video or image) that holds ``preprocess.json``, or None."""
    cache = {} if cache is None else cache
    seen: list[Path] = []
    found: Path | None = None
    for d in Path(path).absolute().parents:
        if d in cache:
            found = cache[d]
            break
        seen.append(d)
        if (d / PREPROCESS_SETTINGS).is_file():
            found = d
            break
    for d in seen:
        cache[d] = found
    return found


def crop_record(paths: Iterable[str | Path], dataset_boxes: int = 0) -> dict[str, Any]:
    """How the clips at ``paths`` were cropped, for a store's ``meta.json``::

        {"cropped": int, "uncropped": int, "settings": [preprocess.json contents, one per distinct setting],
         "roots": [the preprocess trees], "uncropped_examples": [up to 3 paths], "dataset_boxes": int}

    ``cropped``: clips under a ``preprocess`` tree; ``uncropped``: the others (whole photos, frames or videos as
    they were given, or crops made by another tool, e.g. a dataset's aligned faces); ``dataset_boxes``: how many
    of them the reader cropped to the data set's own face box (``ClipRecord.box``, AffectNet), as the caller counts.
    """
    cache: dict[Path, Path | None] = {}
    roots: dict[Path, dict[str, Any]] = {}
    cropped, uncropped, examples = 0, 0, []
    for p in paths:
        root = preprocess_root(p, cache)
        if root is None:
            uncropped += 1
            if len(examples) < 3:
                examples.append(str(p))
            continue
        cropped += 1
        if root not in roots:
            try:
                roots[root] = json.loads((root / PREPROCESS_SETTINGS).read_text())
            except (OSError, ValueError):
                roots[root] = {}
    settings: list[dict[str, Any]] = []
    for s in roots.values():
        if s not in settings:
            settings.append(s)
    return {"cropped": cropped, "uncropped": uncropped, "settings": settings,
            "roots": sorted(str(r) for r in roots), "uncropped_examples": examples, "dataset_boxes": dataset_boxes}
