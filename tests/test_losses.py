import math
import re

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from noisyfit.losses import ELRLoss, GCELoss, SCELoss
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


# ------------------------------------------------------------------- the nn.Module losses' input checks
def test_elr_loss_leaves_its_targets_alone_without_gradients():
    # a user's trial: a validation loss under no_grad with the training criterion moved the training targets
    logits, y, i = torch.tensor([[0.25, 0.75]]).log(), torch.tensor([1]), torch.tensor([0])
    # beta 0.7, lam 3; from zero targets t = 0.3 p = [0.075, 0.225], <t, p> = 0.3 * (0.0625 + 0.5625) = 0.1875
    first = -math.log(0.75) + 3.0 * math.log(1 - 0.1875)
    for reduction in ("mean", "none"):
        crit = ELRLoss(num_samples=2, num_classes=2, reduction=reduction)
        with torch.no_grad():
            assert crit(logits, y, i).item() == pytest.approx(first, abs=1e-5)  # what a training call returns
        assert torch.equal(crit.target, torch.zeros(2, 2))
        assert crit(logits, y, i).item() == pytest.approx(first, abs=1e-5)  # gradients on: the update happens
        want = torch.tensor([[0.075, 0.225], [0.0, 0.0]])
        torch.testing.assert_close(crit.target, want)
        # a second visit would give t = 0.7 [0.075, 0.225] + 0.3 [0.25, 0.75] = [0.1275, 0.3825], <t, p> = 0.31875
        with torch.inference_mode():
            assert crit(logits, y, i).item() == pytest.approx(-math.log(0.75) + 3.0 * math.log(1 - 0.31875),
                                                              abs=1e-5)
        torch.testing.assert_close(crit.target, want)


def test_elr_loss_refuses_an_index_outside_its_targets_and_logits_of_another_width():
    crit, logits, y = ELRLoss(num_samples=10, num_classes=3), torch.zeros(2, 3), torch.tensor([0, 1])
    for index, bad in (([4, -1], "-1 at position 1"), ([10, 2], "10 at position 0")):
        with pytest.raises(ValueError, match=re.escape(f"ELRLoss: index must lie in [0, num_samples) = [0, 10), "
                                                       f"got {bad}; the loader must yield each sample's index")):
            crit(logits, y, torch.tensor(index))
    with pytest.raises(ValueError, match=re.escape("index must be the samples' integer indices [batch] (2 here), "
                                                   "got torch.float32 of shape [2]")):
        crit(logits, y, torch.tensor([1.0, 2.0]))
    assert torch.equal(crit.target, torch.zeros(10, 3))  # -1 used to write the last sample's target
    with pytest.raises(ValueError, match="ELRLoss was built for 3 classes, got logits with 4 columns"):
        crit(torch.zeros(2, 4), y, torch.tensor([0, 1]))


@pytest.mark.parametrize("kw, message", [
    # the elr method's own intervals (ELR.hyper_ranges): one rule for the loss module and the method
    ({"lam": -1}, "ELRLoss: lam=-1 is outside its allowed range [0, inf)"),
    ({"clip": 0.5}, "ELRLoss: clip=0.5 is outside its allowed range (0, 0.5)"),
    ({"lam": float("nan")}, "ELRLoss: lam=nan is outside its allowed range [0, inf)"),
    ({"beta": 1.0}, "ELRLoss: beta=1.0 is outside its allowed range [0, 1)"),  # was refused already
    ({"num_samples": 0}, "ELRLoss needs num_samples >= 1 (the training-set size) and num_classes >= 2, got "
                         "num_samples=0, num_classes=3"),
    ({"num_classes": 1}, "ELRLoss needs num_samples >= 1 (the training-set size) and num_classes >= 2, got "
                         "num_samples=10, num_classes=1"),
])
def test_elr_loss_refuses_bad_arguments_when_built(kw, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        ELRLoss(**{"num_samples": 10, "num_classes": 3, **kw})


def test_the_loss_modules_refuse_labels_that_are_not_tensors():
    # a user's trial: GCELoss()(logits, numpy labels) gave an AttributeError about numpy's dtype
    logits, labels = torch.zeros(2, 3), np.array([0, 2])
    for name, call in (("GCELoss", lambda: GCELoss()(logits, labels)), ("SCELoss", lambda: SCELoss()(logits, labels)),
                       ("ELRLoss", lambda: ELRLoss(4, 3)(logits, labels, torch.tensor([0, 1])))):
        with pytest.raises(TypeError, match=re.escape(f"{name}: labels must be a torch tensor of integer class "
                                                      "indices, got ndarray; pass torch.as_tensor(labels)")):
            call()
    assert GCELoss()(logits, torch.as_tensor(labels)).shape == ()


def test_sce_loss_repr_names_its_reduction_as_the_others_do():
    assert repr(SCELoss(num_classes=3, reduction="sum")) == (
        "SCELoss(alpha=0.1, beta=1.0, num_classes=3, reduction='sum')")
    for other in (GCELoss(reduction="sum"), ELRLoss(4, 3, reduction="sum")):
        assert "reduction='sum'" in repr(other)
