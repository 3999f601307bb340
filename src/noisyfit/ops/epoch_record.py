"""A per-sample record of what a method's training steps did during the current epoch.

``Method.health`` reports a mechanism's figures once per epoch (a selection's size and purity, a
confidence's ranking), but single-network and per-batch mechanisms decide at every step. This buffer
collects those per-step decisions by sample index during the epoch, so ``health`` reads them at the
end without an extra forward pass.

Why not persistent: the record describes the epoch in progress only. It is reset by the base
``Method.on_epoch_start`` and left out of ``state_dict``, so checkpoints written before it existed still load
and an epoch-boundary resume (which calls ``on_epoch_start``) is exact. Inside an epoch it is part of
the base ``Method.transient_state`` (:meth:`state` / :meth:`load`), which mid-epoch checkpoints save. List
``"<attribute>.values"`` in the method's ``per_sample_state`` so that, under DDP, each rank's rows are
gathered by sample index before ``health`` runs.

Samples the epoch never visits (the trainer drops the last partial batch) keep the fill value.
"""

from __future__ import annotations

import torch
import torch.nn as nn


class EpochRecord(nn.Module):
    """``values[i]``: what the step that visited sample ``i`` in this epoch recorded, else ``fill``.

    Parameters
    ----------
    num_samples : int
        Training-set size.
    fill : bool or float
        Value of samples not visited yet this epoch (False for a selection, NaN for a score).
    dtype : torch.dtype
    width : int or None
        None for one value per sample, else ``width`` values (e.g. one column per network).
    """

    def __init__(self, num_samples: int, *, fill, dtype: torch.dtype, width: int | None = None):
        super().__init__()
        shape = (num_samples,) if width is None else (num_samples, width)
        self.fill = fill
        self.register_buffer("values", torch.full(shape, fill, dtype=dtype), persistent=False)

    def reset(self) -> None:
        """Start a new epoch: every sample back to ``fill``."""
        self.values.fill_(self.fill)

    @torch.no_grad()
    def write(self, index: torch.Tensor, values: torch.Tensor) -> None:
        """Record ``values`` (``[B]`` or ``[B, width]``) for the samples ``index`` of a step."""
        self.values[index] = values.detach().to(self.values.dtype)

    def state(self) -> torch.Tensor:
        """A copy for ``transient_state`` (mid-epoch checkpoints)."""
        return self.values.detach().clone()

    def load(self, values: torch.Tensor | None) -> None:
        """Restore :meth:`state`; None (a checkpoint from before the record existed) resets it."""
        if values is None:
            self.reset()
        else:
            self.values.copy_(values.to(self.values.device))

    def extra_repr(self) -> str:
        return f"shape={tuple(self.values.shape)}, fill={self.fill}"
