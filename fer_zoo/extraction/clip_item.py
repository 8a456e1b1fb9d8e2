"""What a loader worker hands to the model in the extraction run (``fer_zoo.extraction.run`` builds it,
``fer_zoo.extraction.lightning_parts`` consumes it): kept apart so those two modules import it, never each other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from datamodules.feature_store import ClipResult
from datamodules.provenance import Provenance


@dataclass
class ClipItem:
    """Preprocessed frames (``pre``), finished features (``result``: a failed clip, or a CPU extractor's output), the
    frame indices ``[T]`` (int) and timestamps ``[T]`` (seconds, float) of the frames kept, the clip's provenance, and
    ``reason``: why some frames are invalid (audio: no stream, outside the soundtrack, silent)."""

    clip_id: str
    pre: Any = None
    result: ClipResult | None = None
    frame_indices: np.ndarray | None = None
    timestamps: np.ndarray | None = None
    provenance: Provenance | None = None
    reason: str = ""
