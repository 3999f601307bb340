"""Cross-entropy: the baseline every robust method is compared against.

Clean score: the model's probability of the given label after training (eval mode, no augmentation).
"""

from __future__ import annotations

import dataclasses

import torch.nn.functional as F

from noisyfit.methods.base import register_method
from noisyfit.methods.single_network import SingleNetworkLossMethod


@register_method("ce")
class CrossEntropy(SingleNetworkLossMethod):
    """Plain cross-entropy, optionally with label smoothing (0 = the standard baseline)."""

    summary = 'cross-entropy, the baseline (optional label smoothing). 1 network'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"label_smoothing": "[0, 1]"}

    @dataclasses.dataclass
    class Hyper:
        label_smoothing: float = 0.0

    def loss(self, logits, labels):
        return F.cross_entropy(logits.float(), labels, reduction="none",
                               label_smoothing=self.hp.label_smoothing)
