"""PEMM: distance head, potential energy, alignment term, and a short Trainer run (hand-computed cases)."""

import math

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

from noisyfit.config import load_config
from noisyfit.engine.optim import build_optimizer
from noisyfit.engine.trainer import Trainer
from noisyfit.methods.pemm import PEMM, alignment_loss
from noisyfit.models.backbones import create_backbone
from noisyfit.models.heads.distance import DistanceHead, potential, potential_energy, squared_distances
from noisyfit.ops.losses import symmetric_cross_entropy


def _pemm(backbone="mlp", input_shape=(4,), num_classes=3, **hyper):
    make = lambda: create_backbone(backbone, num_classes=num_classes, input_shape=input_shape,
                                   **({"hidden": (8,)} if backbone == "mlp" else
                                      {"widths": (8, 8, 8), "stem_width": 4}))
    return PEMM(hyper, num_classes, 10, make)


# ------------------------------------------------------------------ distance head
def test_logits_are_minus_squared_distance_to_each_centre():
    head = DistanceHead(2, 3, dropout=0.0, feature_relu=False)
    with torch.no_grad():
        head.centres.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0], [3.0, 2.0]]))
    h = torch.tensor([[1.0, 2.0], [0.0, 0.0]])
    # ||(1,2)-(0,0)||^2 = 5, ||(1,2)-(1,1)||^2 = 1, ||(1,2)-(3,2)||^2 = 4; from the origin: 0, 2, 13
    assert torch.equal(head(h), torch.tensor([[-5.0, -1.0, -4.0], [0.0, -2.0, -13.0]]))


def test_distances_stay_exact_under_bf16_autocast():
    # Large features, small differences: the ||h||^2 + ||mu||^2 - 2 h.mu expansion must not run in bf16.
    h = torch.full((1, 16), 30.0)
    centres = torch.stack([torch.full((16,), 30.0), torch.full((16,), 30.5)])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d2 = squared_distances(h, centres)
    assert d2.dtype == torch.float32
    assert torch.allclose(d2, torch.tensor([[0.0, 16 * 0.25]]), atol=1e-2)


def test_relu_then_dropout_in_training_mode_only():
    head = DistanceHead(64, 3, dropout=0.5, feature_relu=True)
    h = torch.randn(32, 64)
    head.eval()
    z_eval = head.features(h)
    assert torch.equal(z_eval, torch.relu(h))  # ReLU, no dropout at test time
    assert torch.equal(head(h), head(h))  # deterministic predictions
    head.train()
    z_train = head.features(h)
    dropped = (z_train == 0) & (torch.relu(h) > 0)
    assert 0.3 < dropped.float().sum() / (torch.relu(h) > 0).float().sum() < 0.7
    kept = z_train > 0
    assert torch.allclose(z_train[kept], 2.0 * torch.relu(h)[kept])  # inverted-dropout scaling 1/(1-p)


@pytest.mark.parametrize("backbone,shape", [("mlp", (4,)), ("fastcnn", (3, 8, 8))])
def test_head_replaces_the_linear_head_of_any_backbone(backbone, shape):
    m = _pemm(backbone, shape).eval()
    assert isinstance(m.net.head, DistanceHead) and m.centres.shape == (3, m.net.feature_dim)
    x = torch.randn(5, *shape)
    h = torch.relu(m.net.forward_features(x))
    expected = -((h[:, None, :] - m.centres[None]) ** 2).sum(-1)
    assert torch.allclose(m.predict_logits(x), expected, atol=1e-4)
    # the centres are trained: they get a gradient from every loss term
    m.train()
    m.losses(x, torch.tensor([0, 1, 2, 0, 1]))["loss"].backward()
    assert m.centres.grad is not None and m.centres.grad.abs().sum() > 0


# ------------------------------------------------------------------ potential energy
def test_phi_has_its_minimum_minus_4_27_at_r_1_5():
    r = torch.linspace(0.5, 5.0, 90001, dtype=torch.float64)
    phi = potential(r)
    assert r[phi.argmin()].item() == pytest.approx(1.5, abs=1e-4)
    assert potential(torch.tensor(1.5, dtype=torch.float64)).item() == pytest.approx(-4 / 27, abs=1e-12)
    x = torch.tensor([1.0, 1.5, 2.0], dtype=torch.float64, requires_grad=True)
    potential(x).sum().backward()
    # phi'(r) = -3 r^-4 + 2 r^-3: -1 at r=1 (repulsive), 0 at 1.5, +1/16 at 2 (attractive)
    assert torch.allclose(x.grad, torch.tensor([-1.0, 0.0, 1 / 16], dtype=torch.float64), atol=1e-12)


def _two_centres_on_the_1_5_circle(distance):
    half = math.asin(distance / 2 / 1.5)  # both at norm 1.5, where the origin term has zero gradient
    return torch.tensor([[1.5 * math.cos(half), 1.5 * math.sin(half)],
                         [1.5 * math.cos(half), -1.5 * math.sin(half)]], dtype=torch.float64)


@pytest.mark.parametrize("d0", [0.5, 2.9])
def test_one_sgd_step_on_the_potential_moves_centres_toward_distance_1_5(d0):
    m = torch.nn.Parameter(_two_centres_on_the_1_5_circle(d0))
    opt = torch.optim.SGD([m], lr=0.01)
    potential_energy(m).backward()
    opt.step()
    d1 = torch.dist(m[0], m[1]).item()
    # One pair, mean over one term: each centre moves lr*|phi'(d)| along the pair axis, so
    # d1 = d0 - 2 lr phi'(d0). phi'(0.5) = -48 + 16 = -32 -> 0.5 + 0.64 = 1.14 (pushed apart);
    # phi'(2.9) = -3/2.9^4 + 2/2.9^3 > 0 -> pulled slightly together.
    dphi = -3 * d0 ** -4 + 2 * d0 ** -3
    assert d1 == pytest.approx(d0 - 2 * 0.01 * dphi, abs=1e-9)
    if d0 < 1.5:
        assert d1 == pytest.approx(1.14, abs=1e-9) and d1 > d0
    else:
        assert d1 < d0


def test_potential_is_clipped_and_the_clip_stops_the_gradient():
    m = torch.nn.Parameter(_two_centres_on_the_1_5_circle(0.05))
    # pair: phi(0.05) = 8000 - 400 = 7600 -> clipped to 1000; origin terms: phi(1.5) = -4/27 each
    e = potential_energy(m)
    assert e.item() == pytest.approx(1000 - 4 / 27, abs=1e-9)
    e.backward()
    assert torch.allclose(m.grad, torch.zeros_like(m), atol=1e-12)  # clipped pair, origin terms at rest
    # the lower bound (-1.5 by default) is never active for phi = r^-3 - r^-2; a tighter one is
    far = torch.tensor([[1.5, 0.0], [-1.5, 0.0]], dtype=torch.float64)
    expected = -0.1 + potential(torch.tensor(3.0)).item()
    assert potential_energy(far, clip_min=-0.1).item() == pytest.approx(expected, abs=1e-6)
    assert potential_energy(far).item() == pytest.approx(-4 / 27 + (1 / 27 - 1 / 9), abs=1e-9)


# ------------------------------------------------------------------ alignment and total loss
def test_alignment_is_mse_between_feature_and_posterior_mixture_of_centres():
    h = torch.tensor([[1.0, 0.0]])
    p = torch.tensor([[0.5, 0.5]])
    centres = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    assert alignment_loss(h, p, centres).item() == pytest.approx(0.5)  # mixture (1, 1); errors 0 and 1


def test_total_loss_is_sce_plus_2_pe_plus_ga_on_the_dropped_feature():
    torch.manual_seed(0)
    m = _pemm().train()
    x, y = torch.randn(6, 4), torch.tensor([0, 1, 2, 0, 1, 2])
    torch.manual_seed(1)
    out = m.losses(x, y)
    torch.manual_seed(1)  # same dropout mask
    h = m.head.features(m.net.forward_features(x))
    logits = -squared_distances(h, m.centres)
    sce = symmetric_cross_entropy(logits, y, alpha=0.1, beta=1.0).mean()
    ga = alignment_loss(h, torch.softmax(logits, 1), m.centres)
    pe = potential_energy(m.centres)
    assert torch.allclose(out["loss"], sce + 2 * pe + ga, atol=1e-5)


def test_centre_weight_decay_option_gives_the_centres_their_own_group():
    cfg = load_config(None, ["optim.weight_decay=1e-2"])
    default = build_optimizer(_pemm().param_groups(), cfg.optim)
    assert len(default.param_groups) == 1 and default.param_groups[0]["weight_decay"] == 1e-2
    m = _pemm(centre_weight_decay=0.0)
    opt = build_optimizer(m.param_groups(), cfg.optim)
    wd = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
    assert wd[id(m.centres)] == 0.0
    assert all(v == 1e-2 for k, v in wd.items() if k != id(m.centres))
    assert len(wd) == len(list(m.parameters()))


# ------------------------------------------------------------------ trainer
def test_pemm_learns_noisy_blobs_and_separates_wrong_labels(blob_splits):
    cfg = tiny_cfg("method.name=pemm", "train.epochs=15", "optim.grad_clip=5")  # official clip
    tr = Trainer(cfg, None, splits=blob_splits)
    r = tr.fit()
    assert r["final"]["test_acc"] > 0.9  # 30% symmetric noise on well separated blobs
    det = r["detection"]
    assert det["auroc"] > 0.9 and det["f1"] > 0.8
    # the clean score is the posterior of the given label
    labels = tr.data.train.labels
    probs = tr.method.final_probs.numpy()
    assert np.allclose(tr.method.clean_scores(labels), probs[np.arange(len(labels)), labels])
    # the potential has moved the centres from their ~0.1 init to the equilibrium scale
    norms = tr.method.centres.detach().norm(dim=1)
    assert ((norms > 0.8) & (norms < 2.5)).all(), norms
    assert r["method"]["hyper"]["pe_weight"] == 2.0 and "argmax" in r["method"]["flag_rule"]


def test_flags_are_given_label_not_the_posterior_argmax_not_a_half_threshold():
    m = _pemm()
    m.final_probs = torch.tensor([[0.45, 0.30, 0.25], [0.30, 0.45, 0.25]])
    # sample 0: p(given) = 0.45 < 0.5 but its label is the argmax -> kept; sample 1: argmax 1 != 0 -> flagged
    np.testing.assert_array_equal(m.noisy_flags(np.array([0, 0])), [False, True])
    np.testing.assert_allclose(m.clean_scores(np.array([0, 0])), [0.45, 0.30], rtol=1e-6)


def test_health_is_the_minimum_centre_distance_and_the_mean_centre_norm():
    m = _pemm()  # 3 centres in the 8-d feature space of the MLP
    c = torch.zeros(3, m.centres.shape[1])
    c[0, 0] = 1.5
    c[1, 1] = 2.0
    c[2, 0], c[2, 2] = 1.5, 0.5
    with torch.no_grad():
        m.centres.copy_(c)
    h = m.health(0)
    # distances: |c0 - c1| = sqrt(1.5^2 + 2^2) = 2.5, |c0 - c2| = 0.5, |c1 - c2| = sqrt(6.5) = 2.55
    assert h["centre_dist_min"] == pytest.approx(0.5, abs=1e-6)
    assert h["centre_norm_mean"] == pytest.approx((1.5 + 2.0 + math.sqrt(2.5)) / 3, abs=1e-6)
    with torch.no_grad():
        m.centres[2] = m.centres[0]  # two classes merged
    assert m.health(1)["centre_dist_min"] == 0.0
