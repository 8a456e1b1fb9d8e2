"""The small protocol every frame-level extractor follows."""

from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, ClassVar

import numpy as np

#: A clip's frames: a uint8 RGB array ``[T, H, W, 3]``, or any iterable of ``[H, W, 3]`` frames (a decoder stream).
FrameSource = np.ndarray | Iterable[np.ndarray]


def config_hash(name: str, version: str, config: dict[str, Any]) -> str:
    """Short stable hash of everything that changes an extractor's output (name, version, full config)."""
    blob = json.dumps({"name": name, "version": version, "config": config}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:10]


class Extractor(ABC):
    """A frozen per-frame feature extractor.

    ``extract(frames)`` maps uint8 RGB frames ``[T, H, W, 3]`` (an array, or frames one at a time from a decoder:
    see :data:`FrameSource`) to ``(features float32 [T, D], valid bool [T])``.
    It is split in two so the extraction run can overlap work: ``preprocess`` runs in DataLoader worker processes
    (CPU, numpy/torch only), ``forward`` runs where the model lives. CPU-bound extractors (MediaPipe) set
    ``runs_in_workers`` and do everything in ``preprocess``-side workers, which makes the worker pool a process pool.
    Frames where nothing is found come back ``valid=False`` with zero features, never dropped.
    """

    name: ClassVar[str]
    version: ClassVar[str] = "1"
    runs_in_workers: ClassVar[bool] = False
    #: What ``extract`` takes: ``"frames"`` (RGB frames) or ``"audio"`` (``extractors.audio_base.AudioInput``).
    kind: ClassVar[str] = "frames"
    #: The extractor's output depends on the dataset's classes (zero-shot): the extraction run passes the source's
    #: label vocabulary as ``class_names`` (in vocabulary order) unless the config names them.
    needs_class_names: ClassVar[bool] = False

    #: sha256 of a weights file loaded by path, when there is one: re-saving a file at the same path (fine-tuned
    #: again) changes the features, so the content is hashed too (see :attr:`config_hash`).
    weights_sha256: str | None = None

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = dict(config)

    @property
    @abstractmethod
    def dim(self) -> int:
        """Width D of one frame's feature vector."""

    @property
    @abstractmethod
    def schema(self) -> list[str]:
        """What each of the D columns means (one name per column)."""

    @property
    def config_hash(self) -> str:
        if self.weights_sha256 is None or self.config.get("weights_sha256") == self.weights_sha256:
            return config_hash(self.name, self.version, self.config)
        return config_hash(self.name, self.version, {**self.config, "weights_sha256": self.weights_sha256})

    @property
    def random_weights(self) -> bool:
        """A network with randomly initialised weights (tests only): its store is labelled and ``fit`` refuses it."""
        return False

    def describe(self) -> dict[str, Any]:
        """Metadata recorded in the store: where weights came from, etc. Extend in subclasses."""
        return {}

    def preprocess(self, frames: FrameSource) -> Any:
        """CPU work that can run in a loader worker; default: the frames as given.

        What it returns crosses to the model's process when ``runs_in_workers`` is false, so an extractor whose
        ``forward`` runs elsewhere must return something picklable here (an array, not a stream).
        """
        return frames

    @abstractmethod
    def forward(self, pre: Any) -> tuple[np.ndarray, np.ndarray]:
        """Model work on what ``preprocess`` returned."""

    def extract(self, frames: FrameSource) -> tuple[np.ndarray, np.ndarray]:
        """Features and validity for a clip's frames (see class docstring)."""
        if isinstance(frames, np.ndarray):
            if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
                raise ValueError(f"{self.name}: expected uint8 frames [T, H, W, 3], got {frames.dtype} {frames.shape}")
        else:
            frames = self._checked(frames)
        feats, valid = self.forward(self.preprocess(frames))
        return np.asarray(feats, dtype=np.float32), np.asarray(valid, dtype=bool)

    def _checked(self, frames: Iterable[np.ndarray]) -> Iterator[np.ndarray]:
        for f in frames:
            if f.ndim != 3 or f.shape[-1] != 3 or f.dtype != np.uint8:
                raise ValueError(f"{self.name}: expected uint8 frames [H, W, 3], got {f.dtype} {f.shape}")
            yield f
