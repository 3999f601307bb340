"""Small-loss selection (Co-teaching family) and Co-teaching's forget-rate schedule."""

from __future__ import annotations

import torch


def small_loss_mask(losses: torch.Tensor, keep_rate: float) -> torch.Tensor:
    """Boolean mask of the ``floor(keep_rate * B)`` samples with the smallest loss in the batch.

    Parameters
    ----------
    losses : Tensor
        ``[B]`` per-sample losses.
    keep_rate : float
        Fraction to keep, in [0, 1]. The count is rounded down, as in the official Co-teaching code.

    Returns
    -------
    Tensor
        ``[B]`` bool; ties are broken by position (stable sort), so the result is deterministic.
    """
    if not 0.0 <= keep_rate <= 1.0:
        raise ValueError(f"keep_rate must be in [0, 1], got {keep_rate}")
    n = losses.shape[0]
    k = int(keep_rate * n)
    mask = torch.zeros(n, dtype=torch.bool, device=losses.device)
    if k > 0:
        order = torch.argsort(losses.detach().float(), stable=True)
        mask[order[:k]] = True
    return mask


def coteaching_forget_rate(epoch: int, forget_rate: float, num_gradual: int) -> float:
    """Fraction of each batch Co-teaching drops at a (0-based) epoch: ``min(epoch / T_k, 1) * eps``.

    The keep rate is ``R(t) = 1 - min(t / T_k * eps, eps)`` (Han et al. 2018, with c = 1): all samples
    are kept in the first epoch, and the dropped fraction grows linearly to ``eps`` at epoch ``T_k``.

    Parameters
    ----------
    epoch : int
        0-based epoch t.
    forget_rate : float
        eps, the final fraction dropped (the paper sets it to the noise rate).
    num_gradual : int
        T_k, epochs of the linear ramp (0 means ``eps`` from the start).
    """
    if not 0.0 <= forget_rate < 1.0:
        raise ValueError(f"forget_rate must be in [0, 1), got {forget_rate}")
    if num_gradual <= 0:
        return float(forget_rate)
    return float(forget_rate) * min(epoch / num_gradual, 1.0)
