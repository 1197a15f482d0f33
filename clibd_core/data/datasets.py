"""PyTorch pieces over Records: image datasets with a preset's transforms and a resumable batch order.

Barcodes and taxonomy texts are tokenised per batch by the model (``dna_batch`` / ``text_batch``:
vectorised, microseconds per item), so datasets stay independent of any model; images, the slow part,
are decoded and augmented in DataLoader workers.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch.utils.data import Dataset

from clibd_core.data.records import Record


class ImageDataset(Dataset):
    """``transform(record.load_image())`` for each record (a preset's train or eval transform)."""

    def __init__(self, records: Sequence[Record], transform: Callable) -> None:
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.transform(self.records[index].load_image())


def epoch_batches(count: int, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """The global batches of one epoch: a permutation fixed by (seed, epoch), incomplete batch dropped.

    Being a pure function of its arguments, it lets a resumed run skip exactly the batches already done.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(count, generator=generator).tolist()
    return [order[start : start + batch_size] for start in range(0, count - batch_size + 1, batch_size)]


def shard(batch: list[int], rank: int, world_size: int) -> list[int]:
    """This process's part of a global batch (contiguous, so gathered features keep the global order)."""
    per_process = len(batch) // world_size
    return batch[rank * per_process : (rank + 1) * per_process]


class BatchListSampler(torch.utils.data.Sampler):
    """Yields precomputed index lists: a DataLoader's ``batch_sampler`` for one process's shards."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def balanced_batches(labels: Sequence[str], batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """An epoch of class-balanced batches: as many draws as items, each label equally likely, items of a
    label in turn (reshuffled per pass); a pure function of its arguments, like :func:`epoch_batches`."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    members: dict[str, list[int]] = {}
    for index, label in enumerate(labels):
        members.setdefault(label, []).append(index)
    names = sorted(members)
    picks = torch.randint(len(names), (len(labels),), generator=generator).tolist()
    queues: dict[str, list[int]] = {}
    order = []
    for pick in picks:
        name = names[pick]
        if not queues.get(name):
            group = members[name]
            queues[name] = [group[i] for i in torch.randperm(len(group), generator=generator).tolist()]
        order.append(queues[name].pop())
    return [order[start : start + batch_size] for start in range(0, len(order) - batch_size + 1, batch_size)]
