"""A single classifier trained with a per-sample loss: the shape shared by CE, GCE and SCE."""

from __future__ import annotations

import torch

from noisyfit.methods.base import Method


class SingleNetworkLossMethod(Method):
    """One backbone, one loss over the weakly augmented batch. Subclasses define :meth:`loss`."""

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.net = make_backbone()

    def loss(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def training_step(self, batch, epoch):
        logits = self.net(batch.x)
        loss = self.loss(logits, batch.y).mean()
        return {"loss": loss}

    def predict_logits(self, x):
        return self.net(x)
