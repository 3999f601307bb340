import math

import numpy as np
import pytest
import torch
from conftest import tiny_cfg
from torch import nn

from noisyfit.data.augment import Augmenter
from noisyfit.data.batches import Batch
from noisyfit.engine.trainer import Trainer
from noisyfit.methods.elr import ELR, ELRPlus, elr_regulariser, elr_target_update, sigmoid_rampup
from noisyfit.models.backbones import Backbone


class FixedLogits(Backbone):
    """A 'backbone' whose logits are the input rows themselves (feature_dim = num_classes)."""

    def __init__(self, c=3):
        super().__init__(c, c)
        self.head = nn.Identity()
        self.scale = nn.Parameter(torch.ones(()))

    def forward_features(self, x):
        return x * self.scale


def rows_batch(index, x, y):
    aug = Augmenter(torch.zeros(1), torch.ones(1), is_image=False)
    return Batch(index=torch.tensor(index), y=torch.tensor(y), raw=torch.tensor(x, dtype=torch.float32), augmenter=aug)


def softmax_np(z):
    e = np.exp(np.asarray(z, dtype=np.float64))
    return e / e.sum(1, keepdims=True)


def test_target_ema_and_regulariser_hand_values():
    t0 = torch.tensor([[0.2, 0.3, 0.5]])
    p = torch.tensor([[0.6, 0.3, 0.1]])
    t1 = elr_target_update(t0, p, beta=0.7)
    assert torch.allclose(t1, torch.tensor([[0.32, 0.30, 0.38]]))  # 0.7 * t0 + 0.3 * p
    # <t1, p> = 0.192 + 0.09 + 0.038 = 0.32 -> log(0.68)
    assert elr_regulariser(t1, p).item() == pytest.approx(math.log(0.68), abs=1e-6)


def test_elr_step_updates_only_the_batch_targets_and_returns_ce_plus_lambda_reg():
    m = ELR({"beta": 0.7, "lam": 3.0}, 3, 5, lambda: FixedLogits())
    z = [[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    out = m.training_step(rows_batch([1, 3], z, [0, 2]), epoch=0)
    p = softmax_np(z)
    t = 0.3 * p  # targets start at zero
    ce = -np.mean(np.log(p[[0, 1], [0, 2]]))
    reg = np.mean(np.log(1 - (t * p).sum(1)))
    assert out["loss"].item() == pytest.approx(ce + 3.0 * reg, abs=1e-5)
    assert torch.allclose(m.target[[1, 3]], torch.tensor(t, dtype=torch.float32), atol=1e-6)
    assert m.target[[0, 2, 4]].abs().sum() == 0
    # second visit of sample 1: t <- 0.7 t + 0.3 p
    m.training_step(rows_batch([1], [z[0]], [0]), epoch=0)
    assert torch.allclose(m.target[1], torch.tensor(0.7 * t[0] + 0.3 * p[0], dtype=torch.float32), atol=1e-6)


def test_elr_learns_blobs_and_targets_are_ema_of_visits(blob_splits):
    tr = Trainer(tiny_cfg("method.name=elr", "train.epochs=6"), None, splits=blob_splits)
    r = tr.fit()
    assert r["final"]["test_acc"] > 0.9
    assert r["detection"]["auroc"] > 0.9
    # a target row visited k times sums to 1 - 0.7^k (it starts at zero); drop_last leaves some visits out
    sums = tr.method.target.sum(1).numpy()
    allowed = 1 - 0.7 ** np.arange(0, 7)
    assert np.all(np.min(np.abs(sums[:, None] - allowed[None, :]), axis=1) < 1e-4)
    assert np.mean(np.isclose(sums, 1 - 0.7 ** 6, atol=1e-4)) > 0.3


def test_elr_target_clean_score_option(blob_splits):
    tr = Trainer(tiny_cfg("method.name=elr", "train.epochs=4", "method.args.clean_score=target"), None,
                 splits=blob_splits)
    r = tr.fit()
    labels = tr.data.train.labels
    scores = tr.method.clean_scores(labels)
    assert np.allclose(scores, tr.method.target.numpy()[np.arange(len(labels)), labels])
    assert r["detection"]["auroc"] > 0.9
    assert "target mass" in r["method"]["flag_rule"]


def test_sigmoid_rampup_values():
    assert sigmoid_rampup(0, 10) == pytest.approx(math.exp(-5))
    assert sigmoid_rampup(5, 10) == pytest.approx(math.exp(-1.25))
    assert sigmoid_rampup(20, 10) == 1.0 and sigmoid_rampup(3, 0) == 1.0


def test_elr_plus_ema_update_follows_the_ramped_decay():
    m = ELRPlus({"ema_alpha": 0.9, "ema_step": 4}, 3, 5, lambda: FixedLogits())
    with torch.no_grad():
        m.nets[0].scale.fill_(2.0)
        m.emas[0].scale.fill_(1.0)
    m.after_optimizer_step(0)  # global_step 1 -> decay = sigmoid_rampup(2, 4) * 0.9 = exp(-1.25) * 0.9
    d = math.exp(-1.25) * 0.9
    assert m.emas[0].scale.item() == pytest.approx(d * 1.0 + (1 - d) * 2.0, abs=1e-6)
    assert not any(p.requires_grad for p in m.emas.parameters())
    assert all(p.requires_grad for p in m.nets.parameters())


def test_elr_plus_targets_come_from_the_partner_ema():
    m = ELRPlus({"beta": 0.7, "mixup_alpha": 0.0}, 3, 4, lambda: FixedLogits())  # alpha 0: no mixing
    with torch.no_grad():
        m.emas[1].scale.fill_(2.0)  # network 0's targets come from EMA 1 (logits x 2)
        m.emas[0].scale.fill_(0.0)  # network 1's from EMA 0 (uniform)
    z = [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]
    m.training_step(rows_batch([0, 2], z, [0, 2]), epoch=0)
    assert torch.allclose(m.target[[0, 2], 0], torch.tensor(0.3 * softmax_np(2 * np.array(z)), dtype=torch.float32),
                          atol=1e-6)
    assert torch.allclose(m.target[[0, 2], 1], torch.full((2, 3), 0.1), atol=1e-6)


def test_elr_plus_learns_blobs(blob_splits):
    r = Trainer(tiny_cfg("method.name=elr_plus", "train.epochs=6"), None, splits=blob_splits).fit()
    assert r["final"]["test_acc"] > 0.9 and r["detection"]["auroc"] > 0.9


def test_elr_plus_mixes_inputs_labels_and_targets_with_one_lam_and_perm(monkeypatch):
    # lam fixed at 0.6; the permutations are torch's next two draws after seeding (one per network)
    monkeypatch.setattr("noisyfit.methods.elr.sample_mix_lambda", lambda alpha: 0.6)
    m = ELRPlus({"beta": 0.7, "lam": 3.0}, 3, 3, lambda: FixedLogits())
    with torch.no_grad():
        m.emas[1].scale.fill_(2.0)  # network 0's targets: softmax(2x)
        m.emas[0].scale.fill_(0.5)  # network 1's targets: softmax(x / 2)
    x = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 3.0]])
    y = [0, 1, 0]
    torch.manual_seed(3)
    perms = [torch.randperm(3).numpy() for _ in range(2)]
    assert all((p != np.arange(3)).any() for p in perms)  # the seed gives a real mix for both networks
    torch.manual_seed(3)
    out = m.training_step(rows_batch([0, 1, 2], x.tolist(), y), epoch=0)

    onehot = np.eye(3)[y]
    expected = 0.0
    for k, (scale, perm) in enumerate(zip([2.0, 0.5], perms)):
        xm = 0.6 * x + 0.4 * x[perm]  # FixedLogits: the logits are the mixed inputs
        ym = 0.6 * onehot + 0.4 * onehot[perm]
        t = 0.3 * softmax_np(scale * x)  # targets start at zero; from the unmixed input
        q = 0.6 * t + 0.4 * t[perm]
        p = np.clip(softmax_np(xm), 1e-4, 1 - 1e-4)
        ce = -np.mean((ym * np.log(softmax_np(xm))).sum(1))
        expected += ce + 3.0 * np.mean(np.log(1 - (q * p).sum(1)))
        assert np.allclose(m.target[:, k].numpy(), t, atol=1e-6)  # stored unmixed
    assert out["loss"].item() == pytest.approx(expected, abs=1e-5)
