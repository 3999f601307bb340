"""Sample selection for your own PyTorch training loop: Co-teaching's small-loss exchange and the jump.

* :class:`CoTeachingSelector` -- Co-teaching (Han et al., NeurIPS 2018): each of two networks keeps the
  small-loss part of the batch and its *peer* trains on it; the kept fraction follows the forget-rate
  schedule. With ``num_samples`` it becomes J-Co-teaching (the jump below).
* :class:`JumpSelection` -- the jump-manner selection of Jump-teaching (Ji et al., arXiv:2405.17137):
  a per-sample table that applies the decision taken at a sample's previous visit.
* :func:`small_loss_mask`, :func:`coteaching_forget_rate` -- the functions both rest on.

These are the pieces the ``coteaching`` and ``j_coteaching`` methods use (``noisyfit.ops.small_loss``,
``noisyfit.ops.jump``), with the same defaults. Robust losses are in :mod:`noisyfit.losses`.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from noisyfit.methods.coteaching import CoTeaching, JCoTeaching
from noisyfit.ops.jump import JumpSelection
from noisyfit.ops.small_loss import coteaching_forget_rate, small_loss_mask

__all__ = ["CoTeachingPicks", "CoTeachingSelector", "JumpSelection", "coteaching_forget_rate",
           "small_loss_mask"]

# The registered methods' defaults (the official code's), so that both stay one number.
_COT = CoTeaching.Hyper()
_JCOT = JCoTeaching.Hyper()


class CoTeachingPicks(NamedTuple):
    """Positions in the batch each network trains on (``LongTensor``s), and the masks behind them.

    ``net1`` are the samples network 2 kept (its small-loss picks) and ``net2`` those network 1 kept:
    the exchange. ``kept`` is the ``[B, 2]`` bool mask, column j = kept by network j+1.
    """

    net1: torch.Tensor
    net2: torch.Tensor
    kept: torch.Tensor


class CoTeachingSelector(nn.Module):
    """Co-teaching's small-loss selection and exchange, with its forget-rate schedule.

    Han, B., Yao, Q., Yu, X., Niu, G., Xu, M., Hu, W., Tsang, I. W. and Sugiyama, M. "Co-teaching: Robust
    Training of Deep Neural Networks with Extremely Noisy Labels." NeurIPS 2018. At (0-based) epoch t each
    network keeps the ``floor(R(t) * B)`` samples of the batch with the smallest loss under its own
    predictions, ``R(t) = 1 - min(t / T_k, 1) * forget_rate`` (all kept at t = 0), and each network is
    updated on the samples its peer kept. Ties are broken by position, so picks are deterministic.

    J-Co-teaching (the Jump-teaching paper's Co-teaching variant, Ji et al., arXiv:2405.17137): give
    ``num_samples`` and pass ``index`` to ``forward``; the picks computed now are stored per sample and,
    with probability ``jump_rate`` per batch, the batch trains on the picks stored at the samples'
    previous visit (never-visited samples count as kept). This is :class:`JumpSelection` around the same
    selector, as in the ``j_coteaching`` method.

    Parameters
    ----------
    forget_rate : float, default 0.2
        eps, the final fraction of each batch dropped: the paper sets it to the (estimated) noise rate;
        0.2 is the official code's default.
    num_gradual : int, default 10
        T_k, epochs of the linear ramp from 0 to ``forget_rate`` (0: ``forget_rate`` from the start).
    num_samples : int, optional
        Training-set size; turns on the jump (J-Co-teaching).
    jump_rate : float, default 1.0
        With ``num_samples``: probability that a batch uses the stored picks (1.0 = the Jump-teaching
        code's behaviour, 0.0 = plain Co-teaching).

    Notes
    -----
    A batch smaller than ``1 / R(t)`` keeps nobody; drop a short last batch (``drop_last=True``, as the
    official code does) or skip empty picks. The official code's Adam learning-rate and beta1 decay is a
    matter of your optimiser; see ``noisyfit.methods.coteaching.adam_decay_plan``.

    Examples
    --------
    >>> selector = CoTeachingSelector(forget_rate=0.4, num_gradual=10)
    >>> for epoch in range(30):                       # doctest: +SKIP
    ...     for xb, yb in loader:
    ...         l1 = F.cross_entropy(net1(xb), yb, reduction="none")
    ...         l2 = F.cross_entropy(net2(xb), yb, reduction="none")
    ...         picks = selector(l1, l2, epoch)
    ...         loss = l1[picks.net1].mean() + l2[picks.net2].mean()
    ...         opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, forget_rate: float = _COT.forget_rate, num_gradual: int = _COT.num_gradual, *,
                 num_samples: int | None = None, jump_rate: float = _JCOT.jump_rate):
        super().__init__()
        coteaching_forget_rate(0, forget_rate, num_gradual)  # validates forget_rate
        self.forget_rate, self.num_gradual = float(forget_rate), int(num_gradual)
        self.jump = (None if num_samples is None
                     else JumpSelection(num_samples, jump_rate=jump_rate, initial=True, width=2))

    def forget_rate_at(self, epoch: int) -> float:
        """Fraction of each batch dropped at the 0-based ``epoch``."""
        return coteaching_forget_rate(epoch, self.forget_rate, self.num_gradual)

    def keep_rate(self, epoch: int) -> float:
        """R(t), the fraction of each batch each network keeps at the 0-based ``epoch``."""
        return 1.0 - self.forget_rate_at(epoch)

    def kept(self, losses1: torch.Tensor, losses2: torch.Tensor, epoch: int) -> torch.Tensor:
        """Fresh small-loss picks ``[B, 2]``: column j = kept by network j+1 on its own per-sample loss."""
        keep = self.keep_rate(epoch)
        return torch.stack([small_loss_mask(losses1, keep), small_loss_mask(losses2, keep)], dim=1)

    def forward(self, losses1: torch.Tensor, losses2: torch.Tensor, epoch: int,
                index: torch.Tensor | None = None) -> CoTeachingPicks:
        """Which samples of the batch each network trains on.

        Parameters
        ----------
        losses1, losses2 : Tensor
            ``[B]`` per-sample losses of network 1 and network 2 on the same batch (e.g. CE with
            ``reduction="none"``); they are not differentiated here.
        epoch : int
            0-based epoch (the schedule's t).
        index : Tensor, optional
            ``[B]`` training-set indices of the batch; required with the jump (``num_samples``).

        Returns
        -------
        CoTeachingPicks
            ``net1``: positions network 1 trains on (network 2's picks), ``net2``: the converse,
            ``kept``: the ``[B, 2]`` mask applied.
        """
        kept = self.kept(losses1, losses2, epoch)
        if self.jump is not None:
            if index is None:
                raise ValueError("CoTeachingSelector with num_samples (the jump) needs the batch's index")
            kept = self.jump(torch.as_tensor(index, device=self.jump.flags.device), kept)
        kept = kept.to(losses1.device)
        return CoTeachingPicks(net1=kept[:, 1].nonzero().squeeze(1), net2=kept[:, 0].nonzero().squeeze(1),
                               kept=kept)

    def extra_repr(self) -> str:
        return f"forget_rate={self.forget_rate}, num_gradual={self.num_gradual}"
