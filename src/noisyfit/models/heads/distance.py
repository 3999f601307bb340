"""Distance-based classifier head and the potential-energy regulariser of PEMM.

Wang, Yang, Liu and Jia, "Potential Energy based Mixture Model for Noisy Label Learning",
arXiv:2405.01186 (official code Ralph-Finn/PEMM). A logit is the negative squared Euclidean distance
from the feature to a learnable class centre, so softmax(logits) is the posterior of an isotropic,
equal-prior Gaussian mixture with those centres as means.

The head works on any backbone feature: :meth:`DistanceHead.replace_head` swaps it in for a
backbone's linear ``head`` (so ``backbone(x)`` returns distance logits), or use it on features
directly (``DistanceHead(d, C)(h)``).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def _fp32(x: torch.Tensor) -> torch.Tensor:
    """Upcast 16-bit tensors to float32; leave float32/float64 alone."""
    return x.float() if x.dtype in (torch.float16, torch.bfloat16) else x


def squared_distances(h: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """``||h_i - mu_c||^2`` for all rows of ``h [B, d]`` and ``centres [C, d]``, in float32.

    Uses the expansion ``||h||^2 + ||mu||^2 - 2 h.mu`` (one matmul, as the official code does) with
    autocast disabled: under bf16 the expansion cancels catastrophically. Tiny negative values from
    rounding are clamped to 0.
    """
    with torch.autocast(device_type=h.device.type, enabled=False):
        h, m = _fp32(h), _fp32(centres)
        if h.dtype != m.dtype:
            h, m = h.float(), m.float()
        d2 = (h * h).sum(1, keepdim=True) + (m * m).sum(1)[None, :] - 2.0 * (h @ m.t())
    return d2.clamp_min(0.0)


class DistanceHead(nn.Module):
    """``logits_c = -||h - mu_c||^2`` with optional ReLU and (train-mode-only) dropout on ``h``.

    Parameters
    ----------
    feature_dim, num_classes : int
        Feature width ``d`` and class count ``C``; the centres are a ``[C, d]`` parameter.
    dropout : float
        Dropout on the (rectified) feature before the distances. PEMM: 0.2. Applied in training mode
        only (the official code's functional dropout stays on at test time; see ``noisyfit.methods.pemm``).
    feature_relu : bool
        Rectify the feature first (PEMM's backbones end in a ReLU, so features and centres live near
        the positive orthant).

    Notes
    -----
    Centres are initialised like a bias-free ``nn.Linear`` weight, uniform in ``±1/sqrt(d)``, as in
    the official code (the centres *are* a linear layer's weight there).
    """

    def __init__(self, feature_dim: int, num_classes: int, *, dropout: float = 0.0,
                 feature_relu: bool = True):
        super().__init__()
        bound = 1.0 / math.sqrt(feature_dim)
        self.centres = nn.Parameter(torch.empty(num_classes, feature_dim).uniform_(-bound, bound))
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.feature_relu = feature_relu

    def features(self, h: torch.Tensor) -> torch.Tensor:
        """The feature the distances are measured from: ``dropout(relu(h))`` (dropout in train mode)."""
        if self.feature_relu:
            h = F.relu(h)
        return self.dropout(h)

    def logits_from(self, h: torch.Tensor) -> torch.Tensor:
        """Logits of an already processed feature (no ReLU, no dropout)."""
        return -squared_distances(h, self.centres)

    def forward_with_features(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(processed feature, logits)``: PEMM's alignment term needs the dropped-out feature."""
        z = self.features(h)
        return z, self.logits_from(z)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.logits_from(self.features(h))

    @classmethod
    def replace_head(cls, backbone: nn.Module, num_classes: int, **kwargs) -> DistanceHead:
        """Put a distance head in place of ``backbone.head`` (a noisyfit Backbone) and return it."""
        head = cls(backbone.feature_dim, num_classes, **kwargs)
        backbone.head = head
        return head


# ------------------------------------------------------------------------------------------------
# Potential energy on the centres
def potential(r: torch.Tensor, s: float = 3.0, t: float = 2.0) -> torch.Tensor:
    """``phi(r) = r^-s - r^-t``. For (s, t) = (3, 2): minimum at r = s/t = 1.5 with phi = -4/27.

    Repulsive (phi' < 0) below the minimum, weakly attractive above it.
    """
    return r.pow(-s) - r.pow(-t)


def potential_energy(centres: torch.Tensor, *, s: float = 3.0, t: float = 2.0, clip_min: float = -1.5,
                     clip_max: float = 1000.0) -> torch.Tensor:
    """PEMM's regulariser: ``mean_c clip(phi(||mu_c||)) + mean_{i<j} clip(phi(||mu_i - mu_j||))``.

    The first term is each centre's potential with the origin, the second every pair's. The clip
    (official: [-1.5, 1000]) stops blow-up for r below about 0.1, where it also zeroes the gradient;
    the lower bound is never reached for (s, t) = (3, 2) since min phi = -4/27.

    Parameters
    ----------
    centres : tensor ``[C, d]``
    s, t : float
        Exponents of ``phi``.
    clip_min, clip_max : float
        Bounds applied to each term before averaging.
    """
    with torch.autocast(device_type=centres.device.type, enabled=False):
        m = _fp32(centres)
        norms = m.norm(dim=1)
        e0 = potential(norms, s, t).clamp(clip_min, clip_max).mean()
        if m.shape[0] < 2:
            return e0
        pair = F.pdist(m)
        return e0 + potential(pair, s, t).clamp(clip_min, clip_max).mean()
