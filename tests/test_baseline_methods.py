"""The single-network baselines wire in the loss their name promises (hand values per method)."""

import math

import pytest
import torch
from torch import nn

from noisyfit.data.augment import Augmenter
from noisyfit.data.batches import Batch
from noisyfit.methods.base import get_method_class
from noisyfit.models.backbones import Backbone


class RowsAreLogits(Backbone):
    """The logits are the input rows themselves."""

    def __init__(self, c=2):
        super().__init__(c, c)
        self.head = nn.Identity()

    def forward_features(self, x):
        return x


def step_loss(name, hyper, logits, labels):
    method = get_method_class(name)(hyper, 2, len(labels), lambda: RowsAreLogits())
    aug = Augmenter(torch.zeros(1), torch.ones(1), is_image=False)
    batch = Batch(index=torch.arange(len(labels)), y=torch.tensor(labels),
                  raw=torch.tensor(logits, dtype=torch.float32), augmenter=aug)
    return method.training_step(batch, epoch=0)["loss"].item()


LN3 = math.log(3.0)  # logits [0, ln 3] give p = [0.25, 0.75]


def test_gce_step_is_the_generalized_loss_not_ce():
    # (1 - p_y^q) / q with p_y = 0.25, q = 0.5: (1 - 0.5) / 0.5 = 1.0 (plain CE would give ln 4 = 1.386)
    assert step_loss("gce", {"q": 0.5}, [[0.0, LN3]], [0]) == pytest.approx(1.0, abs=1e-5)


def test_sce_step_is_alpha_ce_plus_beta_rce_with_log_zero_clipped():
    # uniform p: CE = ln 2; RCE = -0.5 * log(1e-4) (the wrong class's log 0 clipped)
    expected = 0.1 * math.log(2) + 1.0 * 0.5 * -math.log(1e-4)  # 4.6745
    assert step_loss("sce", {"alpha": 0.1, "beta": 1.0}, [[0.0, 0.0]], [0]) == pytest.approx(expected, abs=1e-4)


def test_ce_step_applies_label_smoothing():
    # targets [0.9, 0.1] for label 0 with smoothing 0.2 over 2 classes: -(0.9 ln .25 + 0.1 ln .75) = 1.2764
    expected = -(0.9 * math.log(0.25) + 0.1 * math.log(0.75))
    assert step_loss("ce", {"label_smoothing": 0.2}, [[0.0, LN3]], [0]) == pytest.approx(expected, abs=1e-5)
    assert step_loss("ce", {}, [[0.0, LN3]], [0]) == pytest.approx(math.log(4), abs=1e-5)
