"""A one-unit sigmoid "indicator" (confidence) branch beside a classifier head.

Used by CAR (Lu, Bo and He, arXiv:2108.08212) and, in the same authors' released code, by NAL
(MacLLL/NAL): ``tau = sigmoid(w . h + b)`` on the backbone's pooled feature ``h``, a per-sample
confidence in (0, 1) that the given label is right.
"""

from __future__ import annotations

import torch
from torch import nn


class ConfidenceHead(nn.Module):
    """``tau = clamp(sigmoid(Linear(d -> 1)(h)), eps, 1 - eps)``, shape ``[B]``.

    Parameters
    ----------
    feature_dim : int
        Width of the backbone feature.
    bias_init : float or None
        Initial bias of the unit. None keeps the default ``nn.Linear`` init (the released code);
        a positive value (e.g. +3, tau about 0.95) starts every sample as "trusted".
    eps : float
        Clamp of tau away from 0 and 1 (released code: 1e-12) so that ``log tau`` stays finite.
    """

    def __init__(self, feature_dim: int, *, bias_init: float | None = None, eps: float = 1e-12):
        super().__init__()
        self.linear = nn.Linear(feature_dim, 1)
        if bias_init is not None:
            nn.init.constant_(self.linear.bias, float(bias_init))
        self.eps = eps

    def logit(self, h: torch.Tensor) -> torch.Tensor:
        """The pre-sigmoid confidence, ``[B]`` float32."""
        return self.linear(h).float().squeeze(1)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.logit(h)).clamp(self.eps, 1.0 - self.eps)
