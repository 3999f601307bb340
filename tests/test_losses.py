import math

import torch
import torch.nn.functional as F

from noisyfit.ops.losses import (generalized_cross_entropy, reverse_cross_entropy, soft_cross_entropy,
                                 symmetric_cross_entropy)


def test_rce_is_constant_times_one_minus_p_y():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 0.0, 0.0]])
    y = torch.tensor([0, 2])
    p = F.softmax(logits, 1)
    expected = -math.log(1e-4) * (1 - p[torch.arange(2), y])
    assert torch.allclose(reverse_cross_entropy(logits, y), expected, atol=1e-5)


def test_sce_combines_ce_and_rce_with_weights():
    logits = torch.randn(5, 4)
    y = torch.randint(0, 4, (5,))
    ce = F.cross_entropy(logits, y, reduction="none")
    got = symmetric_cross_entropy(logits, y, alpha=0.3, beta=2.0)
    assert torch.allclose(got, 0.3 * ce + 2.0 * reverse_cross_entropy(logits, y), atol=1e-6)


def test_gce_limits_are_mae_at_q1_and_ce_as_q_to_0():
    logits = torch.randn(6, 3)
    y = torch.randint(0, 3, (6,))
    p_y = F.softmax(logits, 1)[torch.arange(6), y]
    assert torch.allclose(generalized_cross_entropy(logits, y, q=1.0), 1 - p_y, atol=1e-6)
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(generalized_cross_entropy(logits, y, q=1e-4), ce, atol=1e-3)


def test_gce_rejects_bad_q():
    import pytest

    with pytest.raises(ValueError, match="0 < q <= 1"):
        generalized_cross_entropy(torch.zeros(1, 2), torch.tensor([0]), q=0.0)


def test_soft_cross_entropy_matches_hard_ce_on_one_hot():
    logits = torch.randn(4, 5)
    y = torch.randint(0, 5, (4,))
    assert torch.allclose(soft_cross_entropy(logits, F.one_hot(y, 5).float()),
                          F.cross_entropy(logits, y, reduction="none"), atol=1e-6)
