"""The jump-manner selection of Jump-teaching, as a wrapper any per-sample selector can use.

Jump-teaching (Ji et al., arXiv:2405.17137) decouples selection from the update: the clean/noisy
decision used to update on a sample comes from an *earlier* state of the network, namely the one that
saw the sample at its previous visit (about one epoch ago), never from the current step. The released
code (ky-ji/Jump-teaching) does this with a per-sample flag table: at each step the batch is trained on
the flags stored at the samples' last visit, and the flags computed from the current forward pass are
written back for the next visit.

:class:`JumpSelection` is that table. Wrap any selector whose decision is a boolean per sample (or a
row of booleans, e.g. one column per network in Co-teaching)::

    jump = JumpSelection(num_samples, jump_rate=1.0)
    use = jump.select(batch.index, small_loss_mask, losses, keep_rate)   # flags from the last visit

Jump rate r (our reading of the paper, [RECON]): the v4 / ICLR papers ablate a "jump rate r" that the
released code does not have. We read it as the probability that a batch is trained on the stale
(last-visit) flags rather than the fresh flags of the current forward pass, drawn once per batch from
torch's global generator (checkpointed by the trainer, so resume is exact). r = 1 is the released
code's behaviour; r = 0 is ordinary same-step selection (plain Co-teaching, for instance). Either way
the fresh flags are stored for the next visit.

The table is a buffer of first dimension ``num_samples``: list ``"<attribute>.flags"`` in the method's
``per_sample_state`` so the trainer gathers it across DDP ranks by sample index and checkpoints it.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn as nn


class JumpSelection(nn.Module):
    """Per-sample selection decided at one visit and applied at the next.

    Parameters
    ----------
    num_samples : int
        Training-set size (rows of the flag table).
    jump_rate : float
        r in [0, 1]: probability that a batch uses the stored (stale) flags instead of fresh ones.
        1 reproduces the official code; 0 disables the jump.
    initial : bool
        Flag of a sample never visited yet (the official Jump-teaching code starts from False, i.e.
        excluded; Co-teaching keeps everything in its first epoch, so J-Co-teaching starts from True).
    width : int or None
        None for one flag per sample, else ``width`` flags per sample (a ``[N, width]`` table).

    Examples
    --------
    Any rule that marks samples clean, here a small-loss rule, applied one visit late in a plain loop whose
    loader yields ``(x, y, index)`` (``noisyfit.selection`` re-exports this class):

    >>> jump = JumpSelection(num_samples=len(y), jump_rate=1.0, initial=True)
    >>> for epoch in range(30):                       # doctest: +SKIP
    ...     for xb, yb, ib in loader:
    ...         losses = F.cross_entropy(model(xb), yb, reduction="none")
    ...         use = jump.select(ib, small_loss_mask, losses, 0.6)   # picks of the last visit
    ...         loss = (losses * use).sum() / len(yb)
    ...         opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, num_samples: int, *, jump_rate: float = 1.0, initial: bool = False,
                 width: int | None = None):
        super().__init__()
        if not 0.0 <= jump_rate <= 1.0:
            raise ValueError(f"jump_rate must be in [0, 1], got {jump_rate}")
        self.jump_rate = float(jump_rate)
        shape = (num_samples,) if width is None else (num_samples, width)
        self.register_buffer("flags", torch.full(shape, bool(initial), dtype=torch.bool))
        #: whether the last call returned stale flags (for logging the realised jump rate)
        self.last_was_stale = False

    def forward(self, index: torch.Tensor, fresh: torch.Tensor) -> torch.Tensor:
        """Store ``fresh`` for these samples' next visit; return the flags to use in this step.

        Parameters
        ----------
        index : Tensor
            ``[B]`` sample indices of the batch.
        fresh : Tensor
            ``[B]`` (or ``[B, width]``) bool decisions computed in the current step.

        Returns
        -------
        Tensor
            The flags stored at the samples' previous visit (with probability ``jump_rate``), else ``fresh``.
        """
        fresh = fresh.detach().to(torch.bool)
        stale = self.flags[index]  # advanced indexing copies, so the write below cannot leak into it
        self.flags[index] = fresh
        self.last_was_stale = self._draw_stale()
        return stale if self.last_was_stale else fresh

    def select(self, index: torch.Tensor, selector: Callable[..., torch.Tensor], *args,
               **kwargs) -> torch.Tensor:
        """Run ``selector(*args, **kwargs)`` (fresh bool flags for the batch) and apply the jump."""
        return self(index, selector(*args, **kwargs))

    def _draw_stale(self) -> bool:
        # The extremes draw nothing, so r = 0 and r = 1 leave the random stream untouched.
        if self.jump_rate >= 1.0:
            return True
        if self.jump_rate <= 0.0:
            return False
        return bool(torch.rand(()) < self.jump_rate)

    def extra_repr(self) -> str:
        return f"num_samples={self.flags.shape[0]}, jump_rate={self.jump_rate}"
