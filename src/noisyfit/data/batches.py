"""In-memory batches by sample index, sharded across DDP ranks.

The training set lives on the device as one tensor; an epoch is a seeded permutation of sample
indices cut into global batches, and each rank takes its slice of every global batch. Every batch
carries the *sample index* (position in the training set) because most methods keep per-sample state.
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
            self._x = self.augmenter.weak(self.raw)
        return self._x

    def weak(self) -> torch.Tensor:
        """A fresh weakly augmented view (crop + flip)."""
        return self.augmenter.weak(self.raw)

    def strong(self) -> torch.Tensor:
        """A fresh strongly augmented view (crop + flip, then AutoAugment/RandAugment)."""
        return self.augmenter.strong(self.raw)

    def plain(self) -> torch.Tensor:
        """The normalised examples without augmentation."""
        return self.augmenter.normalize(self.raw)

    def __len__(self) -> int:
        return len(self.index)


def epoch_permutation(num_samples: int, seed: int, epoch: int) -> torch.Tensor:
    """The epoch's sample order: a function of (seed, epoch) only, so resume reproduces it exactly."""
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(num_samples, generator=g)


def iterate_batches(data: torch.Tensor, labels: torch.Tensor, augmenter: Augmenter, *, batch_size: int,
                    seed: int, epoch: int, rank: int = 0, world_size: int = 1,
                    drop_last: bool = True) -> Iterator[Batch]:
    """Yield this rank's share of each global batch of one epoch.

    ``batch_size`` is the global batch; each rank gets ``batch_size // world_size`` samples so the
    averaged gradient equals the single-process one (up to batch-norm statistics).
    """
    n = len(labels)
    if batch_size % world_size:
        raise ValueError(f"batch_size {batch_size} is not divisible by world size {world_size}")
    if batch_size > n:
        batch_size = n - n % world_size
    perm = epoch_permutation(n, seed, epoch).to(labels.device)
    per_rank = batch_size // world_size
    stop = (n // batch_size) * batch_size if drop_last else n
    for start in range(0, stop, batch_size):
        glob = perm[start:start + batch_size]
        idx = glob[rank * per_rank:(rank + 1) * per_rank] if world_size > 1 else glob
        if len(idx) == 0:
            continue
        yield Batch(index=idx, y=labels[idx], raw=data[idx], augmenter=augmenter)


def num_batches(num_samples: int, batch_size: int, drop_last: bool = True) -> int:
    batch_size = min(batch_size, num_samples)
    return num_samples // batch_size if drop_last else -(-num_samples // batch_size)
