"""The auxiliary code head of Jump-teaching: backbone feature -> K outputs in (-1, 1)."""

from __future__ import annotations

import torch
from torch import nn


class CodeHead(nn.Module):
    """MLP mapping a feature to a K-bit soft code, as in the official Jump-teaching code.

    Linear(d, d) - ReLU - Dropout - Linear(d, d) - ReLU - Dropout - Linear(d, K) - tanh, with ``d`` the
    backbone's feature size (512 for PreAct ResNet-18).

    Parameters
    ----------
    in_dim : int
        Feature size d.
    bits : int
        Code length K (one output per bit).
    hidden : int or None
        Width of the two hidden layers; None uses ``in_dim`` as the official code does.
    dropout : float
        Dropout probability after each hidden layer (official: 0.5).
    """

    def __init__(self, in_dim: int, bits: int, *, hidden: int | None = None, dropout: float = 0.5):
        super().__init__()
        hidden = in_dim if hidden is None else hidden
        self.bits = bits
        self.mlp = nn.Sequential(
            nn.Linear(in_dim, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(), nn.Dropout(dropout),
            nn.Linear(hidden, bits), nn.Tanh(),
        )

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` features -> ``[B, K]`` soft code in (-1, 1)."""
        return self.mlp(features)
