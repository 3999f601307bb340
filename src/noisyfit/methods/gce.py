"""Generalized cross-entropy.

Zhang, Z. and Sabuncu, M. R. "Generalized Cross Entropy Loss for Training Deep Neural Networks with
Noisy Labels." NeurIPS 2018. Loss ``(1 - p_y^q)/q`` with the paper's default q = 0.7. The paper's
truncated variant (L_q with pruning threshold k) is not implemented.

Provenance: we know of no code released by the authors, so this follows the paper's formula (eq. 6), not a code
base. Departures (ours): p_y is clamped at 1e-7 before the power, so the gradient q * p_y^(q-1) stays finite when
a softmax underflows to 0 (it only matters there); the backbone, optimiser, schedule and epochs are the presets'
(configs/gce/: the protocols CE, GCE and SCE share), not the paper's training setup.
"""

from __future__ import annotations

import dataclasses

from noisyfit.methods.base import register_method
from noisyfit.methods.single_network import SingleNetworkLossMethod
from noisyfit.ops.losses import generalized_cross_entropy


@register_method("gce")
class GeneralizedCrossEntropy(SingleNetworkLossMethod):
    summary = "Generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018): a loss between CE and MAE, q = 0.7. 1 network, CE's cost"

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"q": "(0, 1]"}

    @dataclasses.dataclass
    class Hyper:
        q: float = 0.7

    def loss(self, logits, labels):
        return generalized_cross_entropy(logits, labels, q=self.hp.q)
