"""Projection head for contrastive learning (PLReMix, after SimCLR / MoCo v2).

``Linear(d, d) - ReLU - Linear(d, out_dim)`` on the backbone feature, then L2 normalisation.
PLReMix uses d = 512 (PreAct ResNet-18) and out_dim = 128; here d is the backbone's ``feature_dim``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ProjectionHead(nn.Module):
    """Two-layer MLP whose output rows are unit vectors.

    Parameters
    ----------
    in_dim : int
        Backbone feature size.
    out_dim : int
        Size of the projection (128 in PLReMix).
    hidden_dim : int, optional
        Hidden width; defaults to ``in_dim`` as in PLReMix.
    """

    def __init__(self, in_dim: int, out_dim: int = 128, hidden_dim: int | None = None):
        super().__init__()
        hidden = hidden_dim or in_dim
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        # normalise in float32: bf16 rounding of unit vectors would blur the contrastive similarities
        return F.normalize(self.net(features).float(), dim=1)
