import math

import pytest
import torch

from noisyfit.ops.mixmatch import (
    co_guess,
    co_refine,
    linear_rampup,
    mixup,
    negative_entropy,
    sample_mix_lambda,
    semi_losses,
    sharpen,
    uniform_prior_penalty,
)


def test_sharpen_squares_and_renormalises_at_half_temperature():
    p = torch.tensor([[0.6, 0.3, 0.1]])
    # p^(1/0.5) = [0.36, 0.09, 0.01], sum 0.46
    assert torch.allclose(sharpen(p, 0.5), torch.tensor([[0.36, 0.09, 0.01]]) / 0.46, atol=1e-6)
    assert torch.allclose(sharpen(p, 1.0), p)


def test_co_refinement_mixes_label_and_mean_prediction_by_clean_posterior():
    p1 = torch.tensor([[0.5, 0.5, 0.0], [0.5, 0.5, 0.0], [0.5, 0.5, 0.0]])
    p2 = torch.tensor([[0.7, 0.1, 0.2], [0.7, 0.1, 0.2], [0.7, 0.1, 0.2]])  # mean view = [0.6, 0.3, 0.1]
    labels = torch.tensor([2, 2, 2])
    w = torch.tensor([0.5, 1.0, 0.0])
    got = co_refine([p1, p2], labels, w, 0.5)
    # w = 0.5: 0.5 * e_2 + 0.5 * [0.6, 0.3, 0.1] = [0.3, 0.15, 0.55] -> squared [0.09, 0.0225, 0.3025] / 0.415
    assert torch.allclose(got[0], torch.tensor([0.09, 0.0225, 0.3025]) / 0.415, atol=1e-6)
    assert torch.allclose(got[1], torch.tensor([0.0, 0.0, 1.0]))  # fully trusted label
    assert torch.allclose(got[2], torch.tensor([0.36, 0.09, 0.01]) / 0.46, atol=1e-6)  # prediction only


def test_co_guessing_averages_views_and_networks_then_sharpens():
    probs = [torch.tensor([[0.8, 0.2, 0.0]]), torch.tensor([[0.4, 0.4, 0.2]]),   # network 1, views 1-2
             torch.tensor([[0.6, 0.2, 0.2]]), torch.tensor([[0.6, 0.2, 0.2]])]   # network 2, views 1-2
    # mean = [0.6, 0.25, 0.15]; squared [0.36, 0.0625, 0.0225], sum 0.445
    assert torch.allclose(co_guess(probs, 0.5), torch.tensor([[0.36, 0.0625, 0.0225]]) / 0.445, atol=1e-6)


def test_mix_lambda_is_at_least_half_and_reproducible():
    torch.manual_seed(0)
    lams = [sample_mix_lambda(4.0) for _ in range(200)]
    assert min(lams) >= 0.5 and max(lams) <= 1.0
    # Beta(4, 4) folded at 0.5 has mean 0.5 + E|X - 0.5| ~= 0.637 (X ~ Beta(4, 4), E|X - 0.5| = 0.137)
    assert sum(lams) / len(lams) == pytest.approx(0.637, abs=0.02)
    torch.manual_seed(0)
    assert sample_mix_lambda(4.0) == lams[0]
    assert sample_mix_lambda(0.0) == 1.0


def test_mixup_combines_inputs_and_targets_with_the_same_permutation():
    x = torch.tensor([[1.0], [3.0]])
    t = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mx, mt = mixup(x, t, 0.75, torch.tensor([1, 0]))
    assert torch.allclose(mx, torch.tensor([[1.5], [2.5]]))
    assert torch.allclose(mt, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_linear_rampup_of_lambda_u():
    assert linear_rampup(12.0, 10, 16) == pytest.approx(0.125)
    assert linear_rampup(9.0, 10, 16) == 0.0 and linear_rampup(40.0, 10, 16) == 1.0
    assert linear_rampup(10.0, 10, 0) == 1.0


def test_semi_losses_soft_ce_and_mse():
    logits = torch.zeros(2, 2)  # uniform predictions
    t = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    lx, lu = semi_losses(logits, t, logits, t)
    assert lx.item() == pytest.approx(math.log(2))
    assert lu.item() == pytest.approx(0.25)  # mean of (0.5 - 1)^2 and 0.5^2 over samples and classes
    _, lu_empty = semi_losses(logits, t, logits[:0], t[:0])
    assert lu_empty.item() == 0.0


def test_uniform_prior_penalty_is_kl_of_uniform_from_mean_prediction():
    logits = torch.log(torch.tensor([[0.5, 0.5], [1.0, 1e-12]]))  # mean prediction ~ [0.75, 0.25]
    expected = 0.5 * math.log(0.5 / 0.75) + 0.5 * math.log(0.5 / 0.25)
    assert uniform_prior_penalty(logits).item() == pytest.approx(expected, abs=1e-5)
    assert negative_entropy(torch.zeros(3, 4)).item() == pytest.approx(-math.log(4))
