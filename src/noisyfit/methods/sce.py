"""Symmetric cross-entropy.

Wang, Y., Ma, X., Chen, Z., Luo, Y., Yi, J. and Bailey, J. "Symmetric Cross Entropy for Robust Learning
with Noisy Labels." ICCV 2019. ``alpha*CE + beta*RCE`` with log(0) clipped to log(1e-4); defaults are
the paper's CIFAR-10 values (alpha 0.1, beta 1.0). The paper uses alpha 6.0, beta 0.1 on CIFAR-100.

Provenance: the loss follows the authors' code (the Keras release YisenWang/symmetric_cross_entropy_for_noisy_labels
and the PyTorch reproduction HanxunH/SCELoss-Reproduce by a co-author): the softmax clamped to [1e-7, 1] and the
one-hot label to [1e-4, 1] inside RCE, CE on the logits, per-sample sum alpha * CE + beta * RCE averaged over the
batch (``noisyfit.ops.losses.symmetric_cross_entropy``). Departures (ours): none in the loss; the optimiser, schedule
and epochs are the presets' (configs/sce/: the protocols CE, GCE and SCE share), not the paper's training setup.
"""

from __future__ import annotations

import dataclasses

from noisyfit.methods.base import register_method
from noisyfit.methods.single_network import SingleNetworkLossMethod
from noisyfit.ops.losses import symmetric_cross_entropy


@register_method("sce")
class SymmetricCrossEntropy(SingleNetworkLossMethod):
    summary = "Symmetric cross-entropy (Wang et al., ICCV 2019): CE plus reverse CE. 1 network, CE's cost"

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"alpha": "[0, inf)", "beta": "[0, inf)"}

    @dataclasses.dataclass
    class Hyper:
        alpha: float = 0.1
        beta: float = 1.0

    def loss(self, logits, labels):
        return symmetric_cross_entropy(logits, labels, alpha=self.hp.alpha, beta=self.hp.beta)
