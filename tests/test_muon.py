"""Muon (noisyfit.engine.muon) and airbench94_muon's recipe options: hand-computed steps, the groups, the
schedules, a short training run and its resume."""

import math

import pytest
import torch
import torch.nn as nn

from conftest import tiny_cfg, tiny_images
from noisyfit.config import ConfigError, load_config
from noisyfit.data.labeled import DatasetSplits
from noisyfit.engine.muon import NS_COEFFS, MuonSGD, orthogonalize
from noisyfit.engine.optim import build_optimizer, lr_factor, set_lr
from noisyfit.engine.trainer import Trainer
from noisyfit.models.backbones import create_backbone


def _quintic(s: float, steps: int) -> float:
    a, b, c = NS_COEFFS
    for _ in range(steps):
        s = a * s + b * s ** 3 + c * s ** 5
    return s


def test_orthogonalize_applies_the_quintic_to_each_singular_value():
    # a diagonal matrix's singular values are its entries; after scaling to unit Frobenius norm each one goes
    # through s -> a s + b s^3 + c s^5 on its own
    d = torch.tensor([3.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    out = orthogonalize(torch.diag(d), steps=3, dtype=torch.float64, eps=0.0)
    scaled = d / d.norm()
    expected = torch.tensor([_quintic(float(s), 3) for s in scaled], dtype=torch.float64)
    assert torch.allclose(out, torch.diag(expected), atol=1e-12)
    # the values the quintic reaches: about 0.7-1.2, not exactly 1 (what the coefficients trade for speed)
    assert expected.min() > 0.6 and expected.max() < 1.25


def test_orthogonalize_keeps_the_singular_vectors_and_works_on_tall_and_4d_tensors():
    torch.manual_seed(0)
    g = torch.randn(6, 3, 2, 2, dtype=torch.float64)  # a filter bank: 6 x 12
    out = orthogonalize(g, steps=5, dtype=torch.float64)
    assert out.shape == g.shape and out.dtype == g.dtype
    u, s, vh = torch.linalg.svd(g.reshape(6, -1), full_matrices=False)
    # U^T out V is diagonal: the same singular vectors, new singular values
    core = u.T @ out.reshape(6, -1) @ vh.T
    assert torch.allclose(core, torch.diag(torch.diagonal(core)), atol=1e-10)
    assert torch.all(torch.diagonal(core) > 0.6)
    # a tall matrix gives the transpose of its wide transpose's result (the iteration runs on the wide
    # orientation only for speed: the smaller Gram matrix)
    tall = orthogonalize(g.reshape(6, -1).T.contiguous(), steps=5, dtype=torch.float64)  # 12 x 6
    assert torch.allclose(tall, out.reshape(6, -1).T, atol=1e-12)


def test_muon_step_by_hand():
    torch.manual_seed(1)
    w = nn.Parameter(torch.randn(4, 2, 3, 3))
    opt = MuonSGD([{"params": [w], "muon": True}], lr=0.1, momentum=0.5, nesterov=True, ns_dtype="fp64")
    w0 = w.detach().clone()
    g1, g2 = torch.randn(4, 2, 3, 3), torch.randn(4, 2, 3, 3)
    w.grad = g1.clone()
    opt.step()
    # first step: buffer = g1; Nesterov direction g1 + 0.5 g1; the weight rescaled to norm sqrt(4) = 2 first
    w1 = w0 * (2.0 / w0.norm()) - 0.1 * orthogonalize(g1 + 0.5 * g1, dtype=torch.float64).float()
    assert torch.allclose(w, w1, atol=1e-6)
    w.grad = g2.clone()
    opt.step()
    buf = 0.5 * g1 + g2
    w2 = w1 * (2.0 / w1.norm()) - 0.1 * orthogonalize(g2 + 0.5 * buf, dtype=torch.float64).float()
    assert torch.allclose(w, w2, atol=1e-6)
    # the step's size does not depend on the gradient's scale (a summed or a mean loss alike)
    v = nn.Parameter(w0.clone())
    opt2 = MuonSGD([{"params": [v], "muon": True}], lr=0.1, momentum=0.5, nesterov=True, ns_dtype="fp64")
    v.grad = 1000.0 * g1
    opt2.step()
    assert torch.allclose(v, w0 * (2.0 / w0.norm()) - 0.1 * orthogonalize(1.5 * g1, dtype=torch.float64).float(),
                          atol=1e-6)


def test_sgd_groups_match_torch_sgd():
    torch.manual_seed(2)
    a = [nn.Parameter(torch.randn(5)), nn.Parameter(torch.randn(3, 4))]
    b = [nn.Parameter(p.detach().clone()) for p in a]
    ours = MuonSGD(a, lr=0.3, momentum=0.85, nesterov=True, weight_decay=1e-2)
    ref = torch.optim.SGD(b, lr=0.3, momentum=0.85, nesterov=True, weight_decay=1e-2)
    for _ in range(4):
        grads = [torch.randn_like(p) for p in a]
        for p, q, g in zip(a, b, grads):
            p.grad, q.grad = g.clone(), g.clone()
        ours.step()
        ref.step()
    for p, q in zip(a, b):
        assert torch.allclose(p, q, atol=1e-6)


def test_muon_refuses_a_bias_in_its_group():
    with pytest.raises(ValueError, match="matrices and filter banks only"):
        MuonSGD([{"params": [nn.Parameter(torch.zeros(3))], "muon": True}], lr=0.1)
    with pytest.raises(ValueError, match="ns_dtype"):
        MuonSGD([nn.Parameter(torch.zeros(3))], lr=0.1, ns_dtype="fp8")


def _whitened_net():
    return create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], whiten=True,
                           bn="airbench", head_bias=False, logit_scale=1 / 8, head_init_std=1.0)


def test_muon_recipe_groups_filters_biases_head_and_whitening_bias():
    net = _whitened_net()
    cfg = load_config("ce/cpu-cifar10n-airbench-muon").optim
    params = [p for p in net.parameters() if p.requires_grad]
    opt = build_optimizer([{"params": params}], cfg, module=net)
    assert isinstance(opt, MuonSGD)
    by_id = {id(p): g for g in opt.param_groups for p in g["params"]}
    assert len(by_id) == len(params)  # every trained tensor in exactly one group
    convs = [m.weight for m in net.modules() if isinstance(m, nn.Conv2d) and m.weight.requires_grad]
    assert len(convs) == 6
    for w in convs:
        g = by_id[id(w)]
        assert g["muon"] and g["lr"] == 0.24 and g["momentum"] == 0.6 and g["weight_decay"] == 0.0
        assert g["nesterov"] and g["ns_steps"] == 3 and g["normalize"]
    for g in opt.param_groups:
        if not g["muon"]:
            assert g["momentum"] == 0.85 and g["nesterov"]
    head = by_id[id(net.head.weight)]
    assert not head["muon"] and head["lr"] == pytest.approx(106 * 0.67 / 0.053)
    assert head["lr"] * head["weight_decay"] == pytest.approx(0.004)  # 2e-6 x batch 2000 per step
    bias = by_id[id(net.stem.conv.bias)]
    assert bias["lr"] == 106.0 and bias["lr_decay_epochs"] == 3.0
    assert bias["lr"] * bias["weight_decay"] == pytest.approx(0.004)
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            g = by_id[id(m.bias)]
            assert not g["muon"] and g["lr"] == 106.0 and g["lr"] * g["weight_decay"] == pytest.approx(0.004)


def test_whitening_bias_lr_falls_to_zero_over_its_epochs_while_the_rest_follows_the_schedule():
    net = _whitened_net()
    cfg = load_config("ce/cpu-cifar10n-airbench-muon").optim
    opt = build_optimizer([{"params": [p for p in net.parameters() if p.requires_grad]}], cfg, module=net)
    bias_group = next(g for g in opt.param_groups if "lr_decay_epochs" in g)
    head_group = next(g for g in opt.param_groups if any(p is net.head.weight for p in g["params"]))
    for done, bias_factor in [(0.0, 1.0), (1.5, 0.5), (3.0, 0.0), (6.0, 0.0)]:
        set_lr(opt, lr_factor(cfg, done, 8), done)
        assert bias_group["lr"] == pytest.approx(106.0 * bias_factor)
        assert head_group["lr"] == pytest.approx(head_group["base_lr"] * (1 - done / 8))  # linear to 0 in 8
    with pytest.raises(ConfigError, match="needs a whitening stem"):
        plain = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8])
        build_optimizer([{"params": list(plain.parameters())}], cfg, module=plain)


def test_head_init_std_rescales_the_initial_head_only():
    torch.manual_seed(3)
    a = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], head_bias=False)
    torch.manual_seed(3)
    b = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], head_bias=False,
                        head_init_std=1.0)
    assert b.head.weight.std().item() == pytest.approx(1.0)
    assert torch.allclose(b.head.weight, a.head.weight / a.head.weight.std())  # same draw, rescaled
    sa, sb = a.state_dict(), b.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith("head"))


MUON_RUN = ("model.backbone=fastcnn", "model.args.widths=[8,16,16]", "model.args.whiten=true",
            "model.args.whiten_bias_epochs=1", "model.args.dirac=true", "model.args.bn=airbench",
            "model.args.head_bias=false", "model.args.logit_scale=0.0625", "model.args.head_init_std=1.0",
            "optim.name=muon", "optim.lr=1.0", "optim.momentum=0.85", "optim.weight_decay=1e-4",
            "optim.schedule=linear", "optim.warmup_epochs=0", "optim.whiten_bias_lr=decay", "optim.muon_ns_dtype=fp32",
            "train.epochs=3", "train.batch_size=32", "data.noise=sym:0.2")


def _splits():
    return DatasetSplits(tiny_images(128), tiny_images(64, seed=1))


def test_a_muon_run_keeps_filter_norms_and_resumes_exactly(tmp_path):
    whole = Trainer(tiny_cfg(*MUON_RUN), tmp_path / "whole", splits=_splits())
    r = whole.fit()
    assert all(math.isfinite(e["train_loss"]) for e in r["epochs"])
    # each filter bank was rescaled to norm sqrt(c_out) before the last step, which then moved it by at most
    # lr x the orthogonalised update's norm (singular values < 1.25)
    last_lr = next(g["lr"] for g in whole.optimizer.param_groups if g["muon"])
    for m in whole.method.modules():
        if isinstance(m, nn.Conv2d) and m.weight.requires_grad:
            w = m.weight
            bound = last_lr * 1.25 * math.sqrt(min(w.shape[0], w[0].numel()))
            assert abs(w.norm().item() - math.sqrt(w.shape[0])) <= bound
    assert not whole.method.net.stem.conv.bias.requires_grad  # frozen after its epoch
    cut = Trainer(tiny_cfg(*MUON_RUN), tmp_path / "cut", splits=_splits())
    assert cut.fit(stop_after_epoch=1) is None
    resumed = Trainer(tiny_cfg(*MUON_RUN), tmp_path / "cut", splits=_splits(), resume=True)
    resumed.fit()
    a, b = whole.method.state_dict(), resumed.method.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_muon_settings_are_refused_before_any_data():
    with pytest.raises(ConfigError, match="muon_ns_dtype"):
        Trainer(tiny_cfg(*MUON_RUN, "optim.muon_ns_dtype=fp8", "data.dataset=folder:/nonexistent/x"), None)
    with pytest.raises(ConfigError, match="muon_momentum"):
        Trainer(tiny_cfg(*MUON_RUN, "optim.muon_momentum=1.5", "data.dataset=folder:/nonexistent/x"), None)
