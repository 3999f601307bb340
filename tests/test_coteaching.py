"""Co-teaching, J-Co-teaching and the small-loss pieces they share."""

import math
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from conftest import tiny_cfg  # noqa: E402
from noisyfit.data.batches import Batch  # noqa: E402
from noisyfit.engine.trainer import Trainer  # noqa: E402
from noisyfit.methods.coteaching import CoTeaching, JCoTeaching, adam_decay_plan, masked_mean  # noqa: E402
from noisyfit.ops.jump import JumpSelection  # noqa: E402
from noisyfit.ops.small_loss import coteaching_forget_rate, small_loss_mask  # noqa: E402


# ------------------------------------------------------------------------------- pieces
def test_small_loss_mask_keeps_the_floor_of_R_times_B_smallest():
    losses = torch.tensor([0.5, 0.1, 0.9, 0.3, 0.7])
    assert small_loss_mask(losses, 0.4).tolist() == [False, True, False, True, False]
    assert small_loss_mask(losses, 0.79).tolist() == [True, True, False, True, False]  # floor(3.95) = 3 kept
    assert small_loss_mask(losses, 1.0).all() and not small_loss_mask(losses, 0.0).any()
    ties = torch.tensor([1.0, 1.0, 1.0, 0.0])
    assert small_loss_mask(ties, 0.5).tolist() == [True, False, False, True]  # stable: earliest tie wins


def test_forget_rate_schedule_values():
    # R(t) = 1 - min(t / T_k * eps, eps): eps 0.4, T_k 10
    got = [coteaching_forget_rate(t, 0.4, 10) for t in (0, 1, 5, 9, 10, 11, 150)]
    assert got == pytest.approx([0.0, 0.04, 0.2, 0.36, 0.4, 0.4, 0.4])
    assert coteaching_forget_rate(0, 0.3, 0) == pytest.approx(0.3)  # no ramp
    m = CoTeaching({"forget_rate": 0.4, "num_gradual": 2}, 3, 4, lambda: nn.Linear(1, 3))
    assert [m.keep_rate(t) for t in (0, 1, 2, 7)] == pytest.approx([1.0, 0.8, 0.6, 0.6])
    with pytest.raises(ValueError, match="forget_rate"):
        coteaching_forget_rate(0, 1.0, 10)


def test_adam_plan_is_the_official_lr_and_beta1_decay():
    # E = 200, decay from 80: lr * (200 - t) / 120, beta1 0.1
    assert adam_decay_plan(79, 200, 80) == (1.0, 0.9)
    assert adam_decay_plan(80, 200, 80) == (1.0, 0.1)
    assert adam_decay_plan(140, 200, 80) == (0.5, 0.1)
    assert adam_decay_plan(199, 200, 80) == (pytest.approx(1 / 120), 0.1)
    assert adam_decay_plan(150, 200, None) == (1.0, 0.9)


def test_masked_mean_of_empty_mask_is_zero_with_graph():
    v = torch.tensor([1.0, 2.0, 6.0], requires_grad=True)
    assert float(masked_mean(v, torch.tensor([True, False, True])).detach()) == 3.5
    z = masked_mean(v, torch.zeros(3, dtype=torch.bool))
    assert float(z.detach()) == 0.0 and z.requires_grad


# ------------------------------------------------------------------------------- the exchange
class TableNet(nn.Module):
    """A fake network: logits of sample i are row i of a parameter table (input = the sample id)."""

    def __init__(self, table):
        super().__init__()
        self.table = nn.Parameter(torch.tensor(table, dtype=torch.float32))

    def forward(self, x):
        return self.table[x[:, 0].long()]


class _Aug:
    def weak(self, x, index=None):
        return x.float()


# label 0 for all; net A has small losses on samples 0, 1, net B on samples 2, 3
A = [[5.0, 0.0], [4.0, 0.0], [0.0, 3.0], [0.0, 4.0]]
B = [[0.0, 4.0], [0.0, 3.0], [4.0, 0.0], [5.0, 0.0]]


def _pair(cls, tables, **hyper):
    it = iter(tables)
    m = cls(dict(forget_rate=0.5, num_gradual=0, **hyper), 2, 4, lambda: TableNet(next(it)))
    idx = torch.arange(4)
    batch = Batch(index=idx, y=torch.zeros(4, dtype=torch.long), raw=idx[:, None].float(), augmenter=_Aug())
    return m, batch


def _grad_rows(net):
    return (net.table.grad.abs().sum(1) > 0).nonzero().flatten().tolist()


def test_each_network_is_updated_on_its_peers_small_loss_picks():
    m, batch = _pair(CoTeaching, [A, B])
    out = m.training_step(batch, epoch=5)
    out["loss"].backward()
    assert _grad_rows(m.net1) == [2, 3]  # net 2 kept {2, 3}: net 1 learns from those
    assert _grad_rows(m.net2) == [0, 1]  # net 1 kept {0, 1}
    ce_a = F.cross_entropy(torch.tensor(A), torch.zeros(4, dtype=torch.long), reduction="none")
    ce_b = F.cross_entropy(torch.tensor(B), torch.zeros(4, dtype=torch.long), reduction="none")
    # loss = mean CE_1 over {2, 3} + mean CE_2 over {0, 1}; by hand, CE of [0, 3] is log(1 + e^3) = 3.0486
    assert float(ce_a[2]) == pytest.approx(math.log1p(math.exp(3.0)), rel=1e-6)
    assert float(out["loss"].detach()) == pytest.approx(float(ce_a[2:].mean() + ce_b[:2].mean()), rel=1e-6)
    assert m.selection.flags.tolist() == [[True, False], [True, False], [False, True], [False, True]]
    assert m.selection.jump_rate == 0.0  # plain Co-teaching: fresh picks, no jump
    # neither network kept a sample -> flagged; here each sample was kept by one of them
    assert not m.noisy_flags(np.zeros(4, int)).any()


def test_j_coteaching_applies_the_picks_of_the_previous_visit_through_the_jump_wrapper():
    m, batch = _pair(JCoTeaching, [A, B])
    assert isinstance(m.selection, JumpSelection) and m.selection.jump_rate == 1.0
    m.training_step(batch, epoch=0)["loss"].backward()  # first visit: nothing stored, everyone kept
    assert _grad_rows(m.net1) == [0, 1, 2, 3] and _grad_rows(m.net2) == [0, 1, 2, 3]
    # Swap the networks' opinions: the fresh picks would now be net1 {2, 3}, net2 {0, 1} ...
    with torch.no_grad():
        m.net1.table.copy_(torch.tensor(B))
        m.net2.table.copy_(torch.tensor(A))
    m.zero_grad()
    m.training_step(batch, epoch=1)["loss"].backward()
    # ... but the update uses the picks of the previous visit: net 2 had kept {2, 3}, net 1 {0, 1}
    assert _grad_rows(m.net1) == [2, 3] and _grad_rows(m.net2) == [0, 1]
    # and this visit's picks are stored for the next one
    assert m.selection.flags.tolist() == [[False, True], [False, True], [True, False], [True, False]]


def test_flags_and_clean_scores():
    m, batch = _pair(CoTeaching, [A, B])
    m.selection.flags.copy_(torch.tensor([[True, False], [False, True], [False, False], [True, True]]))
    assert m.noisy_flags(np.zeros(4, int)).tolist() == [False, False, True, False]
    ctx = SimpleNamespace(labels=torch.zeros(4, dtype=torch.long),
                          predict_train=lambda fn: fn(torch.arange(4)[:, None].float()))
    m.on_fit_end(ctx)
    y = torch.zeros(4, dtype=torch.long)
    expected = -0.5 * (F.cross_entropy(torch.tensor(A), y, reduction="none")
                       + F.cross_entropy(torch.tensor(B), y, reduction="none"))
    np.testing.assert_allclose(m.clean_scores(np.zeros(4, int)), expected.numpy(), rtol=1e-6)
    assert torch.allclose(m.final_probs, torch.softmax(torch.tensor(A), 1))  # network 1's probabilities
    assert "forget rate 0.5" in m.flag_reason()


def test_per_sample_state_is_the_selection_table_and_the_epochs_picks():
    m, _ = _pair(JCoTeaching, [A, B])
    assert m.per_sample_state == ("selection.flags", "epoch_picks.values")
    assert m.get_buffer("selection.flags").shape == (4, 2) and "selection.flags" in m.state_dict()
    # the epoch's record is gathered under DDP but not checkpointed (transient state inside an epoch)
    assert m.get_buffer("epoch_picks.values").shape == (4, 2) and "epoch_picks.values" not in m.state_dict()


def _health_pair(cls):
    """Six samples, a batch of the first four: samples 4 and 5 are not visited."""
    extra = [[1.0, 0.0], [1.0, 0.0]]
    it = iter([A + extra, B + extra])
    m = cls(dict(forget_rate=0.5, num_gradual=0), 2, 6, lambda: TableNet(next(it)))
    idx = torch.arange(4)
    batch = Batch(index=idx, y=torch.zeros(4, dtype=torch.long), raw=idx[:, None].float(), augmenter=_Aug())
    ctx = SimpleNamespace(optimizer=SimpleNamespace(param_groups=[]), num_epochs=10)
    return m, batch, ctx


def test_health_is_the_picks_applied_this_epoch_per_network_and_their_union():
    from noisyfit.metrics import health_figures

    m, batch, ctx = _health_pair(CoTeaching)
    m.on_epoch_start(5, ctx)
    m.training_step(batch, epoch=5)
    h = m.health(5)
    assert h["selected_by_net1"].tolist() == [True, True, False, False, False, False]  # net 1's small losses
    assert h["selected_by_net2"].tolist() == [False, False, True, True, False, False]
    assert h["selected_by_either"].tolist() == [True, True, True, True, False, False]  # 4, 5 not visited
    noisy = np.array([False, False, False, True, True, False])
    fig = health_figures(h, noisy)
    assert fig["selected_by_net2_share"] == pytest.approx(2 / 6)
    assert fig["selected_by_net2_precision"] == 0.5 and fig["selected_by_net2_recall"] == 0.25
    assert fig["selected_by_net1_precision"] == 1.0 and fig["selected_by_either_recall"] == 0.75
    saved = m.transient_state()
    m.on_epoch_start(6, ctx)  # a new epoch starts with nothing selected
    assert not any(v.any() for v in m.health(6).values())
    m.load_transient_state(saved)  # a mid-epoch resume brings the epoch's picks back
    assert m.health(6)["selected_by_either"].tolist() == h["selected_by_either"].tolist()

    # J-Co-teaching: the picks recorded are the applied (stale) ones, not this visit's fresh ones
    j, batch, ctx = _health_pair(JCoTeaching)
    j.on_epoch_start(0, ctx)
    j.training_step(batch, epoch=0)  # first visit: everyone was kept (initial flags)
    assert j.health(0)["selected_by_net1"].tolist() == [True] * 4 + [False] * 2
    with torch.no_grad():  # swap the networks' opinions: fresh picks would be net1 {2, 3}, net2 {0, 1}
        j.net1.table[:4].copy_(torch.tensor(B))
        j.net2.table[:4].copy_(torch.tensor(A))
    j.on_epoch_start(1, ctx)
    j.training_step(batch, epoch=1)
    assert j.health(1)["selected_by_net1"].tolist() == [True, True, False, False, False, False]
    assert j.health(1)["selected_by_net2"].tolist() == [False, False, True, True, False, False]


# ------------------------------------------------------------------------------- in the trainer
ADAM = ("optim.name=adam", "optim.lr=0.01", "optim.weight_decay=0", "optim.schedule=constant",
        "method.args.forget_rate=0.3", "method.args.num_gradual=3", "method.args.epoch_decay_start=8")


@pytest.mark.parametrize("method", ["coteaching", "j_coteaching"])
def test_learns_blobs_with_30pct_noise_and_detects_it(method, blob_splits):
    t = Trainer(tiny_cfg(f"method.name={method}", "train.epochs=12", *ADAM), None, splits=blob_splits)
    r = t.fit()
    assert r["final"]["test_acc"] > 0.9 and r["epochs"][-1]["test_acc_net2"] > 0.9
    det = r["detection"]
    assert det["auroc"] > 0.8 and det["f1"] > 0.8
    assert det["estimated_noise_rate"] == pytest.approx(0.3, abs=0.06)
    # the official Adam plan: lr constant to epoch 8, then 0.01 * (12 - t) / 4; beta1 0.1 from epoch 8
    lrs = [e["lr"] for e in r["epochs"]]
    assert lrs == pytest.approx([0.01] * 8 + [0.01, 0.0075, 0.005, 0.0025])
    assert t.optimizer.param_groups[0]["betas"] == (0.1, 0.999)
    assert [e["keep_rate"] for e in r["epochs"][:4]] == pytest.approx([1.0, 0.9, 0.8, 0.7])


def test_flag_reason_states_the_keep_rate_of_the_last_epoch_when_the_ramp_is_unfinished(blob_splits):
    # 2 epochs of a 10-epoch ramp to eps = 0.4: the last epoch kept 1 - 0.4 * 1/10 = 96%, not 60%
    t = Trainer(tiny_cfg("method.name=coteaching", "train.epochs=2", *ADAM[:4], "method.args.forget_rate=0.4",
                         "method.args.num_gradual=10"), None, splits=blob_splits)
    r = t.fit()
    assert r["epochs"][-1]["keep_rate"] == pytest.approx(0.96)
    assert "among the 96% smallest-loss" in r["method"]["flag_rule"]


def test_resume_restores_picks_and_the_adam_plan(tmp_path, blob_splits):
    over = ("method.name=j_coteaching", "train.epochs=4", *ADAM[:4], "method.args.forget_rate=0.3",
            "method.args.num_gradual=1", "method.args.epoch_decay_start=2")
    full = Trainer(tiny_cfg(*over), tmp_path / "a", splits=blob_splits)
    ra = full.fit()
    first = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits)
    assert first.fit(stop_after_epoch=2) is None
    resumed = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits, resume=True)
    rb = resumed.fit()
    assert [e["lr"] for e in ra["epochs"]] == [e["lr"] for e in rb["epochs"]] == pytest.approx(
        [0.01, 0.01, 0.01, 0.005])
    for (k, a), b in zip(full.method.state_dict().items(), resumed.method.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert resumed.optimizer.param_groups[0]["betas"][0] == 0.1


@pytest.mark.parametrize("method", ["coteaching", "j_coteaching"])
@pytest.mark.parametrize("protocol,epochs,decay,ramp", [("cpu", 12, 5, 2), ("paper", 200, 80, 10)])
def test_presets(method, protocol, epochs, decay, ramp):
    from noisyfit.config import load_config
    from noisyfit.methods.base import get_method_class

    cfg = load_config(f"{method}/{protocol}-cifar10n")
    hp = get_method_class(cfg.method.name).resolve_hyper(cfg.method.args)
    assert cfg.method.name == method and cfg.train.epochs == epochs
    o = cfg.optim
    assert (o.name, o.lr, o.weight_decay, o.schedule) == ("adam", 0.001, 0.0, "constant")
    assert (hp.epoch_decay_start, hp.num_gradual, hp.forget_rate) == (decay, ramp, 0.4)
    assert getattr(hp, "jump_rate", 1.0) == 1.0


def test_in_a_users_own_loop_with_a_plain_optimiser_the_adam_plan_applies_to_its_lr():
    # a researcher's trial: with torch.optim.Adam(method.param_groups()) the first on_epoch_start raised
    # KeyError 'base_lr' (only noisyfit's optimiser builder set it)
    import torch

    from noisyfit.data.training_set import TrainingSet
    from noisyfit.methods import get_method_class
    from noisyfit.methods.context import MethodContext
    from noisyfit.models.backbones import create_backbone

    x, y = torch.randn(64, 4), torch.randint(0, 2, (64,))
    ts = TrainingSet.from_tensors(x, y)
    make = lambda: create_backbone("mlp", num_classes=2, input_shape=(4,), hidden=[8])  # noqa: E731
    method = get_method_class("coteaching")({"epoch_decay_start": 2}, 2, len(ts), make)
    opt = torch.optim.Adam(method.param_groups(), lr=1e-3)
    ctx = MethodContext(ts, num_epochs=4, optimizer=opt)
    method.attach(ctx)
    ts.model = method
    seen = []
    for epoch in range(4):
        ctx.epoch = epoch
        method.on_epoch_start(epoch, ctx)
        seen.append((opt.param_groups[0]["lr"], opt.param_groups[0]["betas"][0]))
        for index in torch.arange(64).split(32):
            loss = method.training_step(ts.batch(index), epoch)["loss"]
            opt.zero_grad()
            loss.backward()
            opt.step()
        method.on_epoch_end(epoch, ctx)
    # the official plan by hand: lr x (E - t) / (E - start) from epoch 2 of 4, beta1 0.9 then 0.1
    assert seen == pytest.approx([(1e-3, 0.9), (1e-3, 0.9), (1e-3, 0.1), (5e-4, 0.1)])
