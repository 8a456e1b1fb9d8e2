"""Random draws in a map-style dataset that repeat exactly under a seed, in every DataLoader worker and process."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset


def seed_rng(*words: int) -> np.random.Generator:
    """A generator from a tuple of integers (SeedSequence: no Python ``hash``, so equal in every process)."""
    return np.random.default_rng([w & 0xFFFFFFFFFFFFFFFF for w in words])


class WorkerSeededDataset(Dataset):
    """Base of the training datasets whose items draw random numbers (frame offsets, window offsets).

    :meth:`generator` belongs to the worker: it is (re)seeded from ``self.seed`` (set by the subclass), ``rank``
    (the process's rank, set by the DataModule under DDP), the worker id and ``torch.initial_seed()``. Torch gives
    each worker a new initial seed for every epoch (non-persistent workers); persistent workers and the main process
    keep one generator whose stream continues, so every epoch draws anew and a seeded run (``seed_everything``)
    repeats exactly. The generator is not pickled to workers: each builds its own."""

    seed: int = 0
    rank: int = 0
    _gen: np.random.Generator | None = None
    _gen_key: tuple[int, int] | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_gen": None, "_gen_key": None}

    def generator(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        key = (-1 if info is None else info.id, torch.initial_seed())
        if self._gen is None or self._gen_key != key:
            self._gen = seed_rng(self.seed, self.rank, key[0] + 1, key[1])
            self._gen_key = key
        return self._gen
