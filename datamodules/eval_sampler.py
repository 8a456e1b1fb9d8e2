"""Evaluation under DDP: every clip of a split scored exactly once, also when the split has fewer clips than ranks.

Lightning's ``UnrepeatedDistributedSampler`` gives the ranks uneven shares instead of padding them with repeated clips
(repeats would be counted twice in UAR/WAR), but asserts that every rank gets at least one clip: a rank that runs no
batch leaves DDP's buffer broadcast on the first evaluation forward, and every epoch-end metric sync, waiting for it,
and Lightning refuses a rank whose loader is empty. A 1-clip validation split under 2 processes therefore died on a
bare ``AssertionError`` on rank 1, and rank 0 reported "connection closed by peer" (issue 28, item 9).

:class:`EvalSampler` gives a rank left without a clip one *stand-in*: the split's first clip again, which
:class:`StandIn` marks ``counted=False`` in the batch (key :data:`COUNTED`). That rank then runs the same forward
passes and collectives as the others, and the model leaves stand-ins out of its loss and metrics
(``fer_zoo.training.lit_module``), so every clip is still counted exactly once and DDP metrics equal single-process
metrics.
"""

from __future__ import annotations

from collections.abc import Iterator, Sized
from typing import Any

from torch.utils.data import Dataset
from torch.utils.data.distributed import DistributedSampler

#: Batch key of a stand-in's flag: ``False`` means "evaluated only to keep the ranks in step, never scored".
COUNTED = "counted"


class EvalSampler(DistributedSampler):
    """Rank ``rank``'s share of an evaluation split of ``len(dataset)`` clips: indices ``rank, rank + R, ...``.

    Shares differ by at most one clip and together hold every index exactly once (no padding). When the split has
    fewer clips than ranks, a rank whose share is empty gets index 0 as a stand-in and :attr:`stand_in` is ``True``:
    its loader must wrap the dataset in :class:`StandIn`. An empty split gives every rank an empty share.

    It subclasses ``DistributedSampler`` so that Lightning sees a sampler that already handles distribution and does
    not wrap it a second time.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)  # type: ignore[arg-type]
        n = len(dataset)
        self.indices = list(range(rank, n, num_replicas))
        self.stand_in = not self.indices and n > 0
        if self.stand_in:
            self.indices = [0]
        self.num_samples = len(self.indices)
        self.total_size = n

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


class StandIn(Dataset):
    """The items of ``dataset`` (dicts) with ``counted=False`` added: what a rank evaluates when its share is empty."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, i: int) -> dict[str, Any]:
        return {**self.dataset[i], COUNTED: False}
