"""Batches by sample index, sharded across DDP ranks.

An epoch is a seeded permutation of sample indices cut into global batches, and each rank takes its
slice of every global batch. Every batch carries the *sample index* (position in the training set)
because most methods keep per-sample state. The examples come from a store
(:mod:`noisyfit.data.store`): a tensor on the device, or images decoded from disk ahead of each step;
the indices, and so the batches, are the same either way.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Iterator

import torch

from noisyfit.data.augment import Augmenter


@dataclass
class Batch:
    """One mini-batch. ``x`` is a weak view drawn on first access; ask for more views as needed."""

    index: torch.Tensor  # [B] long, position in the training set
    y: torch.Tensor  # [B] long, given (possibly wrong) labels
    raw: torch.Tensor  # stored examples (uint8 NCHW images or float rows)
    augmenter: Augmenter
    _x: torch.Tensor | None = field(default=None, repr=False)

    @property
    def x(self) -> torch.Tensor:
        if self._x is None:
            self._x = self.augmenter.weak(self.raw, self.index)
        return self._x

    def weak(self) -> torch.Tensor:
        """A fresh weakly augmented view (crop + flip)."""
        return self.augmenter.weak(self.raw, self.index)

    def strong(self) -> torch.Tensor:
        """A fresh strongly augmented view (crop + flip, then AutoAugment/RandAugment)."""
        return self.augmenter.strong(self.raw, self.index)

    def plain(self) -> torch.Tensor:
        """The normalised examples without augmentation."""
        return self.augmenter.normalize(self.raw)

    def __len__(self) -> int:
        return len(self.index)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's sample order: a function of (seed, epoch) only, so resume reproduces it exactly."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=g)


def epoch_index_batches(n: int, *, batch_size: int, seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                        drop_last: bool = True, device: torch.device | str = "cpu") -> list[torch.Tensor]:
    """This rank's sample indices for every step of one epoch, in order.

    ``batch_size`` is the global batch; each rank gets ``batch_size // world_size`` samples so the
    averaged gradient equals the single-process one (up to batch-norm statistics).
    """
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by world size {world_size}")
    if batch_size > n:
        batch_size = n - n % world_size
    perm = epoch_permutation(n, seed, epoch).to(device)
    per_rank = batch_size // world_size
    stop = (n // batch_size) * batch_size if drop_last else n
    out = []
    for start in range(0, stop, batch_size):
        glob = perm[start:start + batch_size]
        idx = glob[rank * per_rank:(rank + 1) * per_rank] if world_size > 1 else glob
        if len(idx):
            out.append(idx)
    return out


def iterate_batches(data, labels: torch.Tensor, augmenter: Augmenter, *, batch_size: int,
                    seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                    drop_last: bool = True, start_step: int = 0) -> Iterator[Batch]:
    """Yield this rank's share of each global batch of one epoch, from step ``start_step`` on.

    ``data`` is a store (:mod:`noisyfit.data.store`) or a tensor of examples. Steps before ``start_step``
    are not loaded at all (a run resumed inside an epoch), and their indices are the same as in a full pass.
    """
    from .store import TensorStore

    store = data if hasattr(data, "batches") else TensorStore(data)
    index = epoch_index_batches(len(labels), batch_size=batch_size, seed=seed, epoch=epoch, rank=rank,
                                world_size=world_size, drop_last=drop_last, device=labels.device)[start_step:]
    for idx, raw in zip(index, store.batches(index)):
        yield Batch(index=idx, y=labels[idx], raw=raw, augmenter=augmenter)


def num_batches(num_samples: int, batch_size: int, drop_last: bool = True) -> int:
    batch_size = min(batch_size, num_samples)
    return num_samples // batch_size if drop_last else -(-num_samples // batch_size)
