import math

import pytest
import torch
import torch.nn.functional as F

from noisyfit.methods.plr_plugin import kappa_at
from noisyfit.ops.contrastive import contrastive_loss, flat_logsumexp, info_nce, plr_negative_mask

# Four samples, five classes. Top-1 classes: 0, 1, 2, 4; second-best classes: 1, 0, 3, 3.
LOGITS = torch.tensor([[5.0, 4.0, 0.0, 0.0, 0.0],
                       [4.0, 5.0, 0.0, 0.0, 0.0],
                       [0.0, 0.0, 5.0, 4.0, 0.0],
                       [0.0, 0.0, 0.0, 4.0, 5.0]])
LABELS = torch.tensor([0, 2, 2, 3])


def test_plr_mask_top1_plus_given_label():
    # kappa = 1: T0 = {0}, T1 = {1, 2} (label 2 added), T2 = {2}, T3 = {4, 3}
    got = plr_negative_mask(LOGITS, LABELS, 1)
    expected = torch.tensor([[0, 1, 1, 1],
                             [1, 0, 0, 1],   # 1 and 2 overlap only through sample 1's given label
                             [1, 0, 0, 1],
                             [1, 1, 1, 0]], dtype=torch.bool)
    assert torch.equal(got, expected)


def test_plr_mask_top2_overlaps_and_no_self_pairs():
    # kappa = 2: T0 = {0, 1}, T1 = {1, 0, 2}, T2 = {2, 3}, T3 = {4, 3}
    got = plr_negative_mask(LOGITS, LABELS, 2)
    expected = torch.tensor([[0, 0, 1, 1],
                             [0, 0, 0, 1],
                             [1, 0, 0, 0],   # 2 and 3 now share class 3
                             [1, 1, 0, 0]], dtype=torch.bool)
    assert torch.equal(got, expected)
    assert not got.diagonal().any()


def test_plr_mask_kappa0_is_top1_without_label():
    got = plr_negative_mask(LOGITS, LABELS, 0)
    assert torch.equal(got, ~torch.eye(4, dtype=torch.bool))  # four distinct top-1 classes


def test_kappa_schedule_3_2_1():
    assert [kappa_at(3, (40, 70), e) for e in (0, 39, 40, 69, 70, 300)] == [3, 3, 2, 2, 1, 1]
    assert [kappa_at(2, (40, 70), e) for e in (0, 40, 70)] == [2, 1, 1]
    assert kappa_at(0, (40, 70), 100) == 0


def _views(b=4, d=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    q1 = F.normalize(torch.randn(b, d, generator=g), dim=1).requires_grad_()
    q2 = F.normalize(torch.randn(b, d, generator=g), dim=1).requires_grad_()
    return q1, q2


def _loop_terms(q1, q2, neg, tau):
    """Independent reference: per-anchor (s_pos, [s_neg...]) by explicit enumeration over 2B rows."""
    b = q1.shape[0]
    z = torch.cat([q1, q2])
    out = []
    for i in range(2 * b):
        pos = (i + b) % (2 * b)
        negs = [z[i] @ z[j] for j in range(2 * b) if j not in (i, pos) and bool(neg[i % b, j % b])]
        out.append((z[i] @ z[pos], negs))
    return out


def test_flat_plr_value_is_one_and_gradient_is_that_of_mean_logsumexp():
    q1, q2 = _views()
    neg = plr_negative_mask(LOGITS, LABELS, 1)
    tau = 0.5
    loss = contrastive_loss(q1, q2, neg, temperature=tau, form="flat")
    assert loss.item() == 1.0
    g_flat = torch.autograd.grad(loss, (q1, q2))
    # reference: mean over anchors with negatives of v_i = log sum_neg exp((s_ij - s_pos) / tau)
    vs = [torch.logsumexp(torch.stack([(s - sp) / tau for s in negs]), 0)
          for sp, negs in _loop_terms(q1, q2, neg, tau) if negs]
    ref = torch.stack(vs).mean()
    g_ref = torch.autograd.grad(ref, (q1, q2))
    for a, b in zip(g_flat, g_ref):
        assert torch.allclose(a, b, atol=1e-6)
    assert flat_logsumexp(q1, q2, neg, temperature=tau).item() == pytest.approx(ref.item(), abs=1e-6)


def test_flat_plr_drops_anchors_without_negatives():
    q1, q2 = _views()
    neg = torch.zeros(4, 4, dtype=torch.bool)
    neg[0, 1] = neg[1, 0] = True  # samples 2 and 3 have no negative
    loss = contrastive_loss(q1, q2, neg, temperature=1.0, form="flat")
    g = torch.autograd.grad(loss, (q1, q2))
    # gradient of mean over the 4 anchors of samples 0 and 1 only (both views)
    vs = [torch.logsumexp(torch.stack([s - sp for s in negs]), 0) for sp, negs in _loop_terms(q1, q2, neg, 1.0)
          if negs]
    assert len(vs) == 4
    g_ref = torch.autograd.grad(torch.stack(vs).mean(), (q1, q2))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g, g_ref))
    none = contrastive_loss(q1, q2, torch.zeros(4, 4, dtype=torch.bool), form="flat")
    assert none.item() == 0.0 and none.requires_grad


def test_supcon_plr_matches_explicit_formula():
    q1, q2 = _views(seed=3)
    neg = plr_negative_mask(LOGITS, LABELS, 1)
    tau = 0.5
    got = contrastive_loss(q1, q2, neg, temperature=tau, form="supcon")
    terms = []
    for sp, negs in _loop_terms(q1, q2, neg, tau):
        den = math.exp(sp.item() / tau) + sum(math.exp(s.item() / tau) for s in negs)
        terms.append(-math.log(math.exp(sp.item() / tau) / den))
    # the code scales by tau / base_tau with base_tau = 1
    assert got.item() == pytest.approx(tau * sum(terms) / len(terms), abs=1e-5)


def test_info_nce_uses_every_other_sample_as_negative():
    q1, q2 = _views(b=3, seed=5)
    z = torch.cat([q1, q2]).detach()
    sim = z @ z.T / 0.1
    n = 6
    logits = [torch.cat([sim[i, (i + 3) % n].view(1), sim[i, [j for j in range(n) if j not in (i, (i + 3) % n)]]])
              for i in range(n)]
    ce = F.cross_entropy(torch.stack(logits), torch.zeros(n, dtype=torch.long))
    assert info_nce(q1, q2, temperature=0.1, flat=False).item() == pytest.approx(ce.item(), abs=1e-5)
    assert info_nce(q1, q2, temperature=0.1, flat=True).item() == 1.0


def test_bad_inputs_are_refused():
    q1, q2 = _views()
    with pytest.raises(ValueError, match="form"):
        contrastive_loss(q1, q2, torch.ones(4, 4, dtype=torch.bool), form="simclr")
    with pytest.raises(ValueError, match="negative mask"):
        contrastive_loss(q1, q2, torch.ones(3, 3, dtype=torch.bool))


@pytest.mark.parametrize("form", ["flat", "supcon"])
def test_similarities_stay_float32_under_bf16_autocast(form):
    # the training step runs under bf16 autocast; a bf16 similarity matmul would cost ~2 % of each
    # logit at tau = 0.1 (warm-up InfoNCE) and the flat loss's gradient with it
    q1, q2 = _views(b=8, d=16, seed=7)
    neg = ~torch.eye(8, dtype=torch.bool)
    ref = contrastive_loss(q1, q2, neg, temperature=0.1, form=form)
    g_ref = torch.autograd.grad(ref, (q1, q2))
    lse_ref = flat_logsumexp(q1, q2, neg, temperature=0.1)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = contrastive_loss(q1, q2, neg, temperature=0.1, form=form)
        lse = flat_logsumexp(q1, q2, neg, temperature=0.1)
    assert got.dtype == torch.float32 and lse.dtype == torch.float32
    assert lse.item() == pytest.approx(lse_ref.item(), abs=1e-6)
    g = torch.autograd.grad(got, (q1, q2))
    assert all(torch.allclose(a, b, atol=1e-6) for a, b in zip(g, g_ref))
