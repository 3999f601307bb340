"""Alternating ("derandomised") horizontal flips, the flip scheme of airbench94 (Jordan 2024, section 3.6).

Random flipping mirrors each image with probability 1/2 at every epoch, so over two epochs a quarter of the
images are seen with the same orientation twice. Alternating flips draw the orientation of each image once,
at random, and then mirror it on every other epoch: every image is seen both ways in any two consecutive
epochs. Here the decision is a function of the sample index, the epoch and a seed:

    flip(i, epoch) = first(i, seed) XOR (epoch mod 2)

where ``first`` is a fixed pseudo-random bit per sample. It depends on nothing else (no generator state), so a
resumed run, a mid-epoch resume and every DDP rank make the same decisions, and the draws of the random crop
are untouched by it. airbench pre-flips the whole data set with a random mask at epoch 0 and mirrors it all on
odd epochs, which is the same rule; ours hashes the index instead of drawing a mask, because the trainer
cuts batches lazily and knows no data-set-wide mask.
"""

from __future__ import annotations

import torch

_MASK32 = 0xFFFFFFFF


def first_flip(index: torch.Tensor, seed: int) -> torch.Tensor:
    """A pseudo-random bit per sample index (bool tensor), fixed for a seed: a 32-bit integer hash
    (multipliers below 2**31, so every product fits in int64 before the mask)."""
    h = (index.to(torch.int64) * 0x61C88647 + (int(seed) & _MASK32) * 0x2545F491 + 0x3C6EF372) & _MASK32
    h = ((h ^ (h >> 16)) * 0x7FEB352D) & _MASK32
    h = ((h ^ (h >> 15)) * 0x5BD1E995) & _MASK32
    h = h ^ (h >> 16)
    return (h & 1).bool()


def alternating_flips(index: torch.Tensor, epoch: int, seed: int) -> torch.Tensor:
    """Whether each sample of ``index`` is mirrored in ``epoch``: its first flip, inverted on odd epochs."""
    first = first_flip(index, seed)
    return ~first if int(epoch) % 2 else first
