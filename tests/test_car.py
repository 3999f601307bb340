"""CAR: confidence-interpolated loss, penalty, target estimation, outputs and resume (hand-computed cases)."""

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cfg

from noisyfit.data.labeled import DatasetSplits, LabeledData
from noisyfit.engine.trainer import Trainer
from noisyfit.methods.car import CAR
from noisyfit.models.backbones import create_backbone


def _car(num_classes=3, num_samples=10, labels=None, **hyper):
    make = lambda: create_backbone("mlp", num_classes=num_classes, input_shape=(4,), hidden=(8,))
    m = CAR(hyper, num_classes, num_samples, make)
    labels = torch.arange(num_samples) % num_classes if labels is None else labels
    m.reset_targets(labels)
    return m, labels


def _grad_on_logits(m, logits, tau, t):
    z = logits.clone().requires_grad_(True)
    terms = m.loss_terms(z, tau, t)
    (terms["loss_main"] + m.hp.beta * terms["loss_aux"]).backward()  # the penalty has no logit path
    return z.grad


# ------------------------------------------------------------------ the loss
def test_gradient_on_logits_scales_as_tau_py_over_q_and_vanishes_as_tau_goes_to_0():
    # Recon variant, no auxiliary term: exact hard target, L = -log(tau p_y + 1 - tau), so
    # dL/dz = r (p - e_y) with r = tau p_y / (tau p_y + 1 - tau): CE's gradient times r.
    m, _ = _car(variant="recon", beta=0.0)
    logits = torch.tensor([[2.0, 0.5, -1.0]] * 4)
    y = torch.tensor([1, 1, 1, 1])
    t = F.one_hot(y, 3).float()
    tau = torch.tensor([1.0, 0.5, 1e-3, 1e-12])
    g = _grad_on_logits(m, logits, tau, t) * 4  # undo the batch mean
    p = torch.softmax(logits, 1)
    ce_grad = p - t
    r = tau * p[:, 1] / (tau * p[:, 1] + 1 - tau)
    assert torch.allclose(g, r[:, None] * ce_grad, atol=1e-6)
    assert torch.allclose(g[0], ce_grad[0], atol=1e-6)  # tau = 1: plain CE
    assert g[3].abs().max() < 1e-10  # tau -> 0: no gradient reaches the classifier


def test_released_variant_also_silences_the_logits_as_tau_goes_to_0():
    m, _ = _car(beta=0.1)  # code variant, with the auxiliary reverse CE on q switched on
    logits = torch.tensor([[2.0, 0.5, -1.0], [0.0, 3.0, 1.0]])
    t = F.one_hot(torch.tensor([1, 0]), 3).float().clamp(1e-4, 1)
    norms = [_grad_on_logits(m, logits, torch.full((2,), tau), t).norm().item()
             for tau in (0.9, 0.1, 1e-4, 1e-12)]
    assert norms[0] > norms[1] > norms[2] > norms[3]
    assert norms[3] < 1e-9


def test_released_loss_hand_computed():
    m, _ = _car(beta=0.5, lam=10.0)
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25]]))  # p = (1/2, 1/4, 1/4)
    tau = torch.tensor([0.8])
    t = torch.tensor([[1e-4, 1.0, 1e-4]])  # given label 1, clamped one-hot
    out = m.loss_terms(logits, tau, t)
    q = 0.8 * torch.tensor([0.5, 0.25, 0.25]) + 0.2 * t[0]
    assert out["loss_main"].item() == pytest.approx(-(t[0] * q.log()).sum().item(), rel=1e-5)
    assert out["loss_penalty"].item() == pytest.approx(-np.log(0.8), rel=1e-6)
    # reverse CE of q: -(q_0 + q_2) log 1e-4 (the label column has log 1 = 0)
    assert out["loss_aux"].item() == pytest.approx(-(q[0] + q[2]).item() * np.log(1e-4), rel=1e-5)


# ------------------------------------------------------------------ target estimation
def _batch(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(x=torch.randn(n, 4, generator=g), index=torch.tensor([7, 2, 5, 0, 9, 3][:n]),
                           y=torch.tensor([1, 2, 2, 0, 0, 0][:n]))


def test_ema_target_update_follows_the_rule_and_starts_at_epoch_es():
    torch.manual_seed(0)
    m, _ = _car(es=3, update_every=1, m=0.9)
    m.train()
    b = _batch()
    before = m.targets.clone()
    # Epochs are counted from 1 as in the released script: trainer epochs 0 and 1 are the 1st and 2nd.
    for epoch in (0, 1):
        m.training_step(b, epoch)
        assert torch.equal(m.targets, before), f"targets changed before es (trainer epoch {epoch})"
    logits, _ = m.forward_heads(b.x)  # train-mode forward, as inside the step
    m.training_step(b, 2)  # the 3rd epoch
    expected = (0.9 * before[b.index] + 0.1 * torch.softmax(logits.detach(), 1)).clamp(1e-4, 1.0)
    assert torch.allclose(m.targets[b.index], expected, atol=1e-7)
    others = torch.ones(10, dtype=torch.bool)
    others[b.index] = False
    assert torch.equal(m.targets[others], before[others])  # unvisited samples keep their targets
    # hand-computed row: clamped one-hot (1e-4, 1, 1e-4) and p = (0.5, 0.25, 0.25)
    m.update_targets(torch.tensor([1]), torch.log(torch.tensor([[0.5, 0.25, 0.25]])), torch.tensor([0.7]))
    assert torch.allclose(m.targets[1], torch.tensor([0.9e-4 + 0.05, 0.9 + 0.025, 0.9e-4 + 0.025]))


def test_released_schedule_updates_only_in_epochs_divisible_by_10_from_es():
    m, _ = _car()  # es = 60, update_every = 10
    active = [e + 1 for e in range(100) if m.updates_targets(e)]
    assert active == [60, 70, 80, 90, 100]
    assert not m.estimation_active(58) and m.estimation_active(59)


def test_samples_with_tau_at_or_below_delta_keep_their_targets():
    m, _ = _car(delta=0.5)
    before = m.targets.clone()
    mask = m.update_targets(torch.tensor([0, 1]), torch.zeros(2, 3), torch.tensor([0.4, 0.6]))
    assert mask.tolist() == [False, True]
    assert torch.equal(m.targets[0], before[0]) and not torch.equal(m.targets[1], before[1])


def test_recon_variant_defaults_and_normalised_targets():
    m, labels = _car(variant="recon")
    assert (m.hp.lam, m.hp.beta, m.hp.update_every, m.hp.conf_bias_init) == (0.5, 3.0, 1, 3.0)
    assert torch.equal(m.targets, F.one_hot(labels, 3).float())  # exact one-hot, no clamp
    assert m.conf_head.linear.bias.item() == 3.0
    m.update_targets(torch.tensor([0]), torch.tensor([[1.0, 0.0, -1.0]]), torch.tensor([0.9]))
    assert m.targets[0].sum().item() == pytest.approx(1.0, abs=1e-6)
    code, _ = _car()
    assert (code.hp.lam, code.hp.beta, code.hp.update_every, code.hp.conf_bias_init) == (10.0, 0.0, 10, None)
    with pytest.raises(ValueError, match="variant"):
        _car(variant="paper")


# ------------------------------------------------------------------ training on blobs
def _separable_blobs(n=400, noise_dims=32, sep=8.0, seed=0):
    """3 blobs in 8 dims plus independent Gaussian dimensions.

    The indicator branch sees only x, never the label, and label noise here is independent of x: it
    can give a mislabelled sample a lower tau only if the network can tell individual samples apart
    (as a CNN can on images). The extra dimensions make each sample identifiable.
    """
    centres = np.random.default_rng(seed).normal(0, sep, (3, 8))

    def draw(m, s):
        rng = np.random.default_rng(s)
        y = rng.integers(0, 3, m)
        x = np.concatenate([centres[y] + rng.normal(0, 1, (m, 8)), rng.normal(0, 1, (m, noise_dims))], 1)
        return x.astype(np.float32), y

    (x, y), (xt, yt) = draw(n, seed + 10), draw(300, seed + 20)
    return DatasetSplits(LabeledData(x, y, list("abc"), name="blobs"),
                         LabeledData(xt, yt, list("abc"), name="blobs-test"))


def test_penalty_keeps_tau_from_collapsing_on_clean_blobs():
    splits = _separable_blobs(noise_dims=0)
    over = ("method.name=car", "data.noise=null", "train.epochs=6", "method.args.es=1000")
    with_penalty = Trainer(tiny_cfg(*over), None, splits=splits)
    with_penalty.fit()
    without = Trainer(tiny_cfg(*over, "method.args.lam=0"), None, splits=splits)
    without.fit()
    assert with_penalty.method.final_tau.mean() > 0.9
    # without -log tau, tau -> 0 minimises -log(tau p_y + 1 - tau) for every sample with p_y < 1
    assert without.method.final_tau.mean() < 0.2


def test_car_on_noisy_blobs_tau_flags_wrong_labels_and_targets_correct_them():
    # lam = 0.5 is one of the released choices (0.5 / 10 / 50). With the default 10 the branch only
    # lowers tau where the network gives the label p_y < 1/(1 + lam) = 0.09, which a 3-class toy
    # problem rarely reaches in 20 epochs (tau stays at 1 for nearly every sample).
    tr = Trainer(tiny_cfg("method.name=car", "model.args.hidden=[512]", "train.epochs=20",
                          "method.args.lam=0.5",
                          "method.args.es=12", "method.args.update_every=1"), None, splits=_separable_blobs())
    r = tr.fit()
    assert r["final"]["test_acc"] > 0.9
    assert r["detection"]["auroc"] > 0.8  # clean score = tau
    data = tr.data.train
    noisy = data.labels != data.true_labels
    tau = tr.method.clean_scores(data.labels)
    assert tau[noisy].mean() < tau[~noisy].mean() - 0.1
    # the estimated targets moved toward the true class: their argmax is right more often than the labels
    suggested = tr.method.suggested_labels()
    assert (suggested == data.true_labels).mean() > (data.labels == data.true_labels).mean() + 0.1
    assert tr.method.corrected_targets().shape == (len(data), 3)
    assert r["detection"]["f1"] > 0.6


def test_resume_reproduces_the_per_sample_targets(tmp_path):
    splits = _separable_blobs(n=200, noise_dims=8)
    over = ("method.name=car", "train.epochs=5", "method.args.es=2", "method.args.update_every=1")
    Trainer(tiny_cfg(*over), tmp_path / "a", splits=splits).fit()
    first = Trainer(tiny_cfg(*over), tmp_path / "b", splits=splits)
    assert first.fit(stop_after_epoch=3) is None  # targets were already estimated in epochs 2 and 3
    stopped = first.method.targets.clone()
    resumed = Trainer(tiny_cfg(*over), tmp_path / "b", splits=splits, resume=True)
    assert torch.equal(resumed.method.targets, stopped)  # loaded, not re-initialised from the labels
    resumed.fit()
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["method"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["method"]
    initial = F.one_hot(torch.from_numpy(first.data.train.labels), 3).float().clamp(1e-4, 1)
    assert not torch.equal(a["targets"], initial)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    pa, pb = np.load(tmp_path / "a" / "per_sample.npz"), np.load(tmp_path / "b" / "per_sample.npz")
    assert np.array_equal(pa["clean_score"], pb["clean_score"])
    assert np.array_equal(pa["suggested"], pb["suggested"])
    # the corrected targets are exported with the per-sample outputs
    assert np.array_equal(pa["corrected_target"], a["targets"].numpy())
    assert np.array_equal(pa["tau"], pa["clean_score"])
    assert np.array_equal(pa["suggested"], pa["corrected_target"].argmax(1))


def test_target_clean_score_is_the_normalised_target_mass_of_the_given_label_and_flags_stay_on_tau():
    m, labels = _car(num_samples=3, clean_score="target", flag_rule="tau", flag_tau=0.5)
    m.targets.copy_(torch.tensor([[0.6, 0.2, 0.2], [0.1, 0.1, 0.3], [0.25, 0.25, 0.5]]))
    given = np.array([0, 2, 1])
    np.testing.assert_allclose(m.clean_scores(given), [0.6, 0.3 / 0.5, 0.25], rtol=1e-6)
    m.final_tau = torch.tensor([0.9, 0.2, 0.7])
    # flags and their reason still come from tau (the score option only changes the ranking)
    np.testing.assert_array_equal(m.noisy_flags(given), [False, True, False])
    assert "tau < 0.5" in m.flag_reason()
    with pytest.raises(ValueError, match="clean_score must be one of"):
        _car(clean_score="margin")


def test_default_flags_either_low_tau_or_a_corrected_target_with_tau_halfway_to_the_loss_ceiling():
    m, _ = _car(num_samples=3)
    assert m.hp.lam == 10 and m.hp.flag_rule == "either"
    assert m.hp.flag_tau == pytest.approx(0.5 * (1 + 10 / 11))  # 0.954545
    m.targets.copy_(torch.tensor([[0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]]))
    m.final_tau = torch.tensor([0.99, 0.99, 0.95])
    given = np.array([0, 0, 2])  # sample 1: confident tau, but its target moved to class 1; sample 2: tau low
    np.testing.assert_array_equal(m.noisy_flags(given), [False, True, True])
    m.hp.flag_rule = "tau"
    np.testing.assert_array_equal(m.noisy_flags(given), [False, False, True])
    m.hp.flag_rule = "target"
    np.testing.assert_array_equal(m.noisy_flags(given), [False, True, False])


# ------------------------------------------------------------------ mechanism health
class _Ctx:
    def __init__(self, labels):
        self.labels = torch.as_tensor(labels)


def test_health_reads_this_epochs_training_tau_and_the_targets_that_left_their_label():
    m, labels = _car(num_samples=6)  # labels 0, 1, 2, 0, 1, 2
    m.attach(_Ctx(labels))
    m.on_epoch_start(0, None)
    nearly_one = float(np.nextafter(np.float32(1.0), np.float32(0.0)))  # 0.99999994: not saturated
    m.epoch_tau.write(torch.tensor([4, 0, 2, 1]), torch.tensor([1.0, 0.5, 1.0, nearly_one]))
    m.targets[3] = torch.tensor([0.2, 0.7, 0.1])  # label 0, target argmax 1: left its label
    m.targets[5] = torch.tensor([0.3, 0.3, 0.4])  # label 2, still argmax 2
    h = m.health(0)
    assert h["tau_one_share"] == 0.5  # 2 of the 4 visited samples are exactly 1.0 in float32
    fill = (1.0 + 0.5 + 1.0 + nearly_one) / 4  # samples 3 and 5 were not visited this epoch
    np.testing.assert_allclose(h["tau"], [0.5, nearly_one, 1.0, fill, 1.0, fill], rtol=1e-7)
    assert h["target_left_label"].tolist() == [False, False, False, True, False, False]
    # a training step records the tau of its own forward pass; the next epoch starts afresh
    b = _batch(n=3)  # indices 7, 2, 5 of a 10-sample method
    m10, labels10 = _car()
    m10.attach(_Ctx(labels10))
    m10.train()
    m10.on_epoch_start(0, None)
    _, tau = m10.forward_heads(b.x)
    m10.training_step(b, 0)
    assert torch.equal(m10.epoch_tau.values[b.index], tau.detach())
    assert torch.isnan(m10.epoch_tau.values[[0, 1, 3]]).all()
    # a mid-epoch checkpoint carries the record (transient state) to the resumed method
    other, _ = _car()
    other.load_transient_state(m10.transient_state())
    assert torch.equal(other.epoch_tau.values.isnan(), m10.epoch_tau.values.isnan())
    m10.on_epoch_start(1, None)
    assert torch.isnan(m10.epoch_tau.values).all()
    assert "epoch_tau" not in "".join(m10.state_dict())  # not in checkpoints: old ones still load


def _tau_loss(m, s, p_y=0.3, classes=10):
    """CAR's released per-sample loss (beta 0) as a function of the indicator's logit s, for a sample
    whose label (class 0) gets probability p_y from a fixed classifier."""
    p = torch.full((1, classes), (1 - p_y) / (classes - 1))
    p[0, 0] = p_y
    t = F.one_hot(torch.tensor([0]), classes).float().clamp(1e-4, 1.0)
    tau = torch.sigmoid(s).clamp(1e-12, 1 - 1e-12)  # as the ConfidenceHead
    terms = m.loss_terms(p.log(), tau.reshape(1), t)
    return terms["loss_main"] + m.hp.lam * terms["loss_penalty"], tau


@pytest.mark.parametrize("lam, saturates", [(10.0, True), (0.5, False)])
def test_released_lambda_10_saturates_tau_to_exactly_1_and_0_5_does_not(lam, saturates):
    m, _ = _car(num_classes=10, lam=lam)
    # Closed form: L(tau) = -log(1 - tau (1 - p_y)) - lam log tau is least at
    # tau* = lam / ((1 + lam)(1 - p_y)), capped at 1; for p_y = 0.3: 1.299 (-> 1) and 0.476.
    star = min(lam / ((1 + lam) * 0.7), 1.0)
    grid = torch.linspace(0.01, 1.0, 991)
    losses = torch.stack([_tau_loss(m, torch.logit(g.double()).float().clamp(-30, 30))[0] for g in grid])
    assert grid[losses.argmin()].item() == pytest.approx(star, abs=0.011)
    # A few optimisation steps on the logit alone. Sign steps of fixed size stand in for training, whose
    # step on the indicator's logit is not bounded by this one sample's gradient (the unit's weights
    # and the features move too); a vanishing gradient still stops them dead (sign(0) = 0).
    s_star = math.log(star / (1 - star)) if star < 1 else math.inf
    s = torch.zeros((), requires_grad=True)
    for _ in range(60):
        s.grad = None
        _tau_loss(m, s)[0].backward()
        with torch.no_grad():
            s -= 0.5 * torch.sign(s.grad)
    s.grad = None
    loss, tau = _tau_loss(m, s)
    loss.backward()
    if saturates:
        # s walked up to ~17.5, where sigmoid(s) is exactly 1.0 in float32, and stopped: the loss
        # would still fall with larger tau (dL/dtau = 0.7 - 10 < 0 at tau = 1), but the gradient
        # reaching s is exactly 0.
        assert tau.item() == 1.0 and s.grad.item() == 0.0
        assert 17.0 <= s.item() <= 20.0
    else:
        # s oscillates within one step of logit(tau*) and keeps a gradient
        assert abs(s.item() - s_star) <= 0.5 and s.grad.item() != 0.0
        assert tau.item() < 0.65


def test_lambda_05_variant_preset_changes_only_lambda():
    from noisyfit.config import load_config

    base, var = load_config("car/cpu-cifar10n").to_dict(), load_config("car/cpu-cifar10n-lam05").to_dict()
    assert var["method"]["args"].pop("lam") == 0.5 and "lam" not in base["method"]["args"]
    assert var == base  # grad_clip 5, es 7, update_every 1 and the protocol are inherited unchanged
    m = CAR(load_config("car/cpu-cifar10n-lam05").method.args, 10, 4,
            lambda: create_backbone("mlp", num_classes=10, input_shape=(4,), hidden=(8,)))
    assert m.hp.lam == 0.5 and m.hp.flag_tau == pytest.approx(2 / 3)
