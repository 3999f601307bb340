"""Issue 21's training-recipe options (airbench94's tricks): each mechanism against hand-computed values, the
defaults against the results of the code before the options existed, and exact resume with all of them on."""

import hashlib

import numpy as np
import pytest
import torch
import torch.nn as nn

from conftest import tiny_cfg, tiny_images
from noisyfit.config import ConfigError, load_config
from noisyfit.data.altflip import alternating_flips, first_flip
from noisyfit.data.augment import Augmenter
from noisyfit.data.batches import iterate_batches
from noisyfit.data.labeled import DatasetSplits
from noisyfit.engine.ema import WeightAverage
from noisyfit.engine.optim import build_optimizer, lr_factor
from noisyfit.engine.trainer import Trainer
from noisyfit.engine.tta import TTA_VIEWS, View, apply_view, tta_logits, with_tta
from noisyfit.models.backbones import create_backbone
from noisyfit.models.whitening import PatchWhitening, patch_second_moment, whitening_filters

IMAGE_RUN = ("model.backbone=fastcnn", "model.args.widths=[8,16,16]", "model.args.stem_width=8",
             "train.epochs=2", "train.batch_size=32", "data.noise=sym:0.2")
ALL_ON = ("model.args.whiten=true", "model.args.whiten_bias_epochs=1", "model.args.dirac=true",
          "optim.bn_bias_lr_scale=8", "train.flip=alternate", "train.ema=lookahead", "train.ema_every=2",
          "train.eval_tta=mirror_translate", "model.args.bn=airbench", "model.args.logit_scale=0.2",
          "model.args.head_bias=false", "train.crop_pad=2", "optim.schedule=triangle", "optim.warmup_epochs=0")


def _splits():
    return DatasetSplits(tiny_images(128), tiny_images(64, seed=1))


def _weights_digest(state: dict) -> str:
    h = hashlib.sha256()
    for k, v in state.items():
        h.update(k.encode())
        h.update(v.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ------------------------------------------------------------------------------------------------ defaults
# This run made by the code before the options existed (commit 08b08cd), with one thread: its per-epoch losses
# and test accuracies as floats, and a digest of every tensor of the final state_dict. Exact only for the same
# torch build and CPU kernels, so elsewhere the test skips (the next one still compares with and without).
BEFORE = {"losses": [1.3980079889297485, 1.2281618515650432], "test_acc": [0.234375, 0.28125],
          "sha256": "30d86cd2eb210025305658533a395e05261341181f818fe9c2cdd1ab9d3dcccd"}


@pytest.mark.skipif(torch.__version__ != "2.13.0+cpu" or torch.backends.cpu.get_cpu_capability() != "AVX512",
                    reason="the reference digest was recorded with torch 2.13.0+cpu on AVX512 kernels")
def test_defaults_reproduce_the_run_made_before_the_options_existed():
    tr = Trainer(tiny_cfg(*IMAGE_RUN), None, splits=_splits())
    r = tr.fit()
    assert [e["train_loss"] for e in r["epochs"]] == BEFORE["losses"]
    assert [e["test_acc"] for e in r["epochs"]] == BEFORE["test_acc"]
    assert _weights_digest(tr.method.state_dict()) == BEFORE["sha256"]


def test_options_at_their_defaults_change_nothing():
    explicit = ("model.args.whiten=false", "model.args.dirac=false", "optim.bn_bias_lr_scale=1.0",
                "train.flip=random", "train.ema=none", "train.eval_tta=none", "method.args.label_smoothing=0.0",
                "model.args.bn=torch", "model.args.logit_scale=1.0", "model.args.head_bias=true", "train.crop_pad=4",
                "optim.triangle=[0.5,0.5,0.5]")  # unused unless optim.schedule=triangle
    a = Trainer(tiny_cfg(*IMAGE_RUN), None, splits=_splits())
    ra = a.fit()
    b = Trainer(tiny_cfg(*IMAGE_RUN, *explicit), None, splits=_splits())
    rb = b.fit()
    assert [e["train_loss"] for e in ra["epochs"]] == [e["train_loss"] for e in rb["epochs"]]
    assert _weights_digest(a.method.state_dict()) == _weights_digest(b.method.state_dict())
    assert b.weight_avg is None and len(b.optimizer.param_groups) == len(a.optimizer.param_groups) == 1


# ------------------------------------------------------------------------------------------------ whitening
def test_whitening_filters_of_one_channel_are_the_inverse_rms_and_its_negative():
    # 1x1 patches of one channel, values +-1 and +-3: E[x^2] = 5, so the filters are +-1/sqrt(5 + eps)
    x = torch.tensor([1.0, -1.0, 3.0, -3.0]).view(4, 1, 1, 1)
    layer = PatchWhitening(1, kernel_size=1)
    layer.init_from_data(x)
    expected = 1 / np.sqrt(5 + 5e-4)
    assert layer.conv.weight.flatten().tolist() == pytest.approx([expected, -expected], rel=1e-6)


def test_whitening_eps_is_an_option_of_the_stem_and_of_fastcnn():
    # E[x^2] = 5 as above; eps 0.5 gives +-1/sqrt(5.5). fastcnn passes model.args.whiten_eps to its stem.
    x = torch.tensor([1.0, -1.0, 3.0, -3.0]).view(4, 1, 1, 1)
    layer = PatchWhitening(1, kernel_size=1, eps=0.5)
    layer.init_from_data(x)
    assert layer.conv.weight.flatten().tolist() == pytest.approx([1 / np.sqrt(5.5), -1 / np.sqrt(5.5)], rel=1e-6)
    net = create_backbone("fastcnn", num_classes=3, input_shape=(3, 8, 8), widths=(8, 8, 8), whiten=True,
                          whiten_eps=2e-3)
    assert net.stem.eps == 2e-3
    assert create_backbone("fastcnn", num_classes=3, input_shape=(3, 8, 8), whiten=True).stem.eps == 5e-4
    with pytest.raises(ValueError, match="must be positive"):
        PatchWhitening(1, eps=0)


def test_whitening_layer_whitens_a_hand_made_patch_set():
    # 2x2 RGB patches (12 numbers): a random rotation of independent coordinates with standard deviations
    # from 0.3 to 6, so strongly correlated, with variances from 0.09 to 36
    g = torch.Generator().manual_seed(0)
    rotation = torch.linalg.qr(torch.randn(12, 12, generator=g))[0]
    mix = rotation * torch.logspace(np.log10(0.3), np.log10(6.0), 12)
    patches = (torch.randn(20000, 12, generator=g) @ mix.T).view(-1, 3, 2, 2)  # one patch per 2x2 image
    raw = patches.flatten(1)
    assert (raw.T @ raw / len(raw) - torch.eye(12)).abs().max() > 1.0  # far from white before
    layer = PatchWhitening(3)
    layer.init_from_data(patches)
    assert layer.conv.weight.shape == (24, 3, 2, 2)
    out = layer.conv(patches).flatten(1).double()  # the conv before its GELU; bias 0
    cov = out.T @ out / len(out)
    eye = torch.eye(12, dtype=torch.float64)
    # exactly diag(lambda / (lambda + eps)) on the set it was fitted to: >= 0.994 for the smallest lambda here
    lam = torch.linalg.eigvalsh(patch_second_moment(patches, 2)).flip(0)
    assert torch.allclose(cov[:12, :12], torch.diag(lam / (lam + 5e-4)), atol=1e-5)
    assert torch.allclose(cov[:12, :12], eye, atol=1e-2)
    assert torch.allclose(cov[12:, 12:], eye, atol=1e-2) and torch.allclose(cov[:12, 12:], -eye, atol=1e-2)
    # largest eigenvalue first: the first filter is the top principal direction
    top = torch.linalg.eigh(patch_second_moment(patches, 2))[1][:, -1]
    w0 = layer.conv.weight[0].flatten().double()
    assert abs(float(w0 @ top) / float(w0.norm())) == pytest.approx(1.0, abs=1e-6)


def test_patch_moment_covers_every_window_of_larger_images():
    x = torch.randn(3, 2, 5, 4, generator=torch.Generator().manual_seed(1))
    rows = [x[n, :, i:i + 2, j:j + 2].flatten() for n in range(3) for i in range(4) for j in range(3)]
    p = torch.stack(rows).double()
    assert torch.allclose(patch_second_moment(x, 2, chunk=2), p.T @ p / len(p))


def test_whitening_stem_in_training_frozen_weights_and_bias_trained_for_n_epochs(tmp_path):
    over = (*IMAGE_RUN, "model.args.whiten=true", "model.args.whiten_bias_epochs=1", "train.epochs=3")
    tr = Trainer(tiny_cfg(*over), tmp_path / "run", splits=_splits())
    stem = tr.method.net.stem
    # the filters are those of the first training images, normalised as the network sees them
    x = tr.augmenter.normalize(tr.train_x.take(torch.arange(len(tr.train_y))) if hasattr(tr.train_x, "take")
                               else tr.train_x)
    expected = whitening_filters(patch_second_moment(x, 2), 3, 2).float()
    assert torch.allclose(stem.conv.weight, expected, atol=1e-6)
    w0, b0 = stem.conv.weight.detach().clone(), stem.conv.bias.detach().clone()
    assert tr.fit(stop_after_epoch=1) is None
    b1 = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["method"]["net.stem.conv.bias"]
    assert not torch.equal(b1, b0)  # trained during epoch 1
    resumed = Trainer(tiny_cfg(*over), tmp_path / "run", splits=_splits(), resume=True)
    resumed.fit()
    stem = resumed.method.net.stem
    assert torch.equal(stem.conv.bias, b1) and torch.equal(stem.conv.weight, w0)  # frozen since
    assert not stem.conv.weight.requires_grad and not stem.conv.bias.requires_grad


def test_whitening_stem_refuses_to_train_uninitialised():
    net = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[4, 4, 4], whiten=True)
    with pytest.raises(RuntimeError, match="init_from_data"):
        net(torch.randn(2, 3, 16, 16))
    net.init_from_data(torch.randn(4, 3, 16, 16))
    assert net(torch.randn(2, 3, 16, 16)).shape == (2, 3)
    net.eval()  # loaded weights (a saved predictor) need no data
    fresh = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[4, 4, 4], whiten=True)
    fresh.load_state_dict(net.state_dict())
    fresh.train()
    assert torch.equal(fresh.stem.conv.weight, net.stem.conv.weight) and fresh(torch.randn(2, 3, 16, 16)).shape == (2, 3)


# ------------------------------------------------------------------------------------------------ dirac
def test_dirac_makes_second_convs_identities_and_first_convs_pass_their_inputs():
    net = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 16, 16], stem_width=4,
                          dirac=True)
    x4 = torch.randn(2, 4, 6, 6)
    g0 = net.groups[0]
    assert torch.allclose(g0.conv1(x4)[:, :4], x4, atol=1e-6)  # first c_in filters: identity
    assert not torch.allclose(g0.conv1(x4)[:, 4:], torch.zeros(2, 4, 6, 6))  # the rest: default init
    x8 = torch.randn(2, 8, 6, 6)
    assert torch.allclose(g0.conv2(x8), x8, atol=1e-6)
    plain = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 16, 16], stem_width=4)
    assert not torch.allclose(plain.groups[0].conv2(x8), x8)


# ------------------------------------------------------------------------------------------------ airbench's
# BatchNorm, output scale, crop translation and lr schedule
def test_airbench_batchnorm_has_a_fixed_unit_scale_and_its_momentum():
    net = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], stem_width=4,
                          bn="airbench")
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(bns) == 7 and all(m.momentum == 0.4 and m.eps == 1e-12 for m in bns)
    assert all(not m.weight.requires_grad and m.bias.requires_grad for m in bns)
    opt = torch.optim.SGD([p for p in net.parameters() if p.requires_grad], lr=0.5, weight_decay=0.1)
    net(torch.randn(4, 3, 16, 16)).square().sum().backward()
    opt.step()
    assert all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in bns)  # untouched by step and decay
    assert not all(torch.equal(m.bias, torch.zeros_like(m.bias)) for m in bns)
    # running mean after one batch: 0.4 of the batch mean (PyTorch convention; airbench writes 0.6)
    fresh = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], stem_width=4,
                            bn="airbench").stem[1]
    x = torch.randn(5, 4, 3, 3) + 2.0
    fresh(x)
    assert torch.allclose(fresh.running_mean, 0.4 * x.mean(dim=(0, 2, 3)), atol=1e-6)
    default_bn = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16)).stem[1]
    assert default_bn.momentum == 0.1 and default_bn.weight.requires_grad  # the protocol's network unchanged
    with pytest.raises(ValueError, match="bn must be one of"):
        create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), bn="layer")


def test_logit_scale_without_head_bias_scales_the_logits_exactly():
    kw = dict(num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], stem_width=4, head_bias=False)
    plain = create_backbone("fastcnn", **kw).eval()
    scaled = create_backbone("fastcnn", logit_scale=1 / 9, **kw).eval()
    scaled.load_state_dict(plain.state_dict())
    assert plain.head.bias is None
    x = torch.randn(3, 3, 16, 16)
    assert torch.allclose(scaled(x), plain(x) / 9, atol=1e-6)
    with pytest.raises(ValueError, match="logit_scale must be positive"):
        create_backbone("fastcnn", logit_scale=0.0, **kw)


def test_crop_pad_bounds_the_translation():
    # each image is a ramp of unique values: a crop's top-left value tells its shift exactly
    x = torch.arange(16 * 16, dtype=torch.float32).view(1, 1, 16, 16).expand(400, 1, 16, 16).contiguous()
    torch.manual_seed(0)
    aug = Augmenter(torch.zeros(1), torch.ones(1), is_image=True, pad=2, flip=False, channels_last=False)
    out = aug.crop_flip(x)
    padded = torch.nn.functional.pad(x[:1], (2, 2, 2, 2), mode="reflect")[0, 0]
    shifts = set()
    for img in out[:, 0]:
        hits = [(dy, dx) for dy in range(5) for dx in range(5) if torch.equal(padded[dy:dy + 16, dx:dx + 16], img)]
        assert len(hits) == 1
        shifts.add(hits[0])
    assert shifts == {(dy, dx) for dy in range(5) for dx in range(5)}  # every shift in [-2, 2]^2, none beyond
    with pytest.raises(ConfigError, match="crop_pad"):  # before any data: the data set named does not exist
        Trainer(tiny_cfg(*IMAGE_RUN, "train.crop_pad=-1", "data.dataset=folder:/nonexistent/x"), None)


def test_triangle_schedule_by_hand():
    cfg = load_config(None, ["optim.schedule=triangle", "optim.warmup_epochs=0"]).optim
    assert lr_factor(cfg, 0.0, 10) == pytest.approx(0.2)
    assert lr_factor(cfg, 2.3, 10) == pytest.approx(1.0)
    assert lr_factor(cfg, 1.15, 10) == pytest.approx(0.6)  # halfway up: 0.2 + 0.8 / 2
    assert lr_factor(cfg, 10.0, 10) == pytest.approx(0.07)
    assert lr_factor(cfg, 6.15, 10) == pytest.approx(0.535)  # halfway down: (1 + 0.07) / 2
    with pytest.raises(ConfigError, match="own warm-up"):
        lr_factor(load_config(None, ["optim.schedule=triangle", "optim.warmup_epochs=1"]).optim, 0.5, 10)
    with pytest.raises(ConfigError, match="peak_at"):
        lr_factor(load_config(None, ["optim.schedule=triangle", "optim.warmup_epochs=0",
                                     "optim.triangle=[0.2,1.5,0.1]"]).optim, 0.5, 10)
    with pytest.raises(ConfigError, match="own warm-up"):  # refused before any data is loaded
        Trainer(tiny_cfg("optim.schedule=triangle", "optim.warmup_epochs=1", "data.dataset=folder:/nonexistent/x"),
                None)


# ------------------------------------------------------------------------------------------------ BN bias lr
def test_bn_bias_lr_scale_moves_bn_biases_to_their_own_group():
    net = create_backbone("fastcnn", num_classes=3, input_shape=(3, 16, 16), widths=[8, 8, 8], stem_width=4)
    cfg = load_config(None, ["optim.lr=0.2", "optim.weight_decay=5e-4", "optim.bn_bias_lr_scale=64"])
    params = [p for p in net.parameters() if p.requires_grad]
    opt = build_optimizer([{"params": params}], cfg.optim, module=net)
    bn_biases = {id(m.bias) for m in net.modules() if isinstance(m, nn.BatchNorm2d)}
    assert len(opt.param_groups) == 2
    rest, biases = opt.param_groups
    assert {id(p) for p in biases["params"]} == bn_biases and len(bn_biases) == 7
    assert biases["lr"] == pytest.approx(12.8) and biases["weight_decay"] == pytest.approx(5e-4 / 64)
    assert rest["lr"] == 0.2 and rest["weight_decay"] == 5e-4
    assert len(rest["params"]) + len(biases["params"]) == len(params)
    # a group's own lr / weight decay is what gets scaled
    opt = build_optimizer([{"params": params, "lr": 0.1, "weight_decay": 1e-3}], cfg.optim, module=net)
    assert opt.param_groups[1]["lr"] == pytest.approx(6.4) and opt.param_groups[1]["weight_decay"] == 1e-3 / 64


def test_label_smoothing_is_its_own_preset_not_inside_ce():
    ls, ce = load_config("ce/cpu-cifar10n-ls"), load_config("ce/cpu-cifar10n")
    assert ls.method.args == {"label_smoothing": 0.2} and ce.method.args == {}
    a, b = ls.to_dict(), ce.to_dict()
    a.pop("method"), b.pop("method")
    assert a == b  # the same protocol otherwise


# ------------------------------------------------------------------------------------------------ EMA
def test_weight_average_update_by_hand():
    net = nn.Sequential(nn.Linear(1, 1, bias=False), nn.BatchNorm1d(1))
    with torch.no_grad():
        net[0].weight.fill_(1.0)
    avg = WeightAverage(net, mode="ema", decay=0.5, every=2, ramp=0.0)
    with torch.no_grad():
        net[0].weight.fill_(3.0)
    avg.step(net, 0.5)  # step 1: not an update step
    assert avg.average["0.weight"].item() == 1.0
    with torch.no_grad():
        net[0].weight.fill_(5.0)
        net[1].running_mean.fill_(2.0)
    avg.step(net, 0.5)  # step 2: 0.5 * 1 + 0.5 * 5
    assert avg.average["0.weight"].item() == 3.0 and net[0].weight.item() == 5.0  # ema: not written back
    assert avg.average["1.running_mean"].item() == 1.0  # 0.5 * 0 + 0.5 * 2
    assert "1.num_batches_tracked" not in avg.average
    with avg.swapped(net):
        assert net[0].weight.item() == 3.0
    assert net[0].weight.item() == 5.0
    # the decay ramps as airbench's: decay * progress**ramp
    assert WeightAverage(net, decay=0.8, ramp=3.0).decay_at(0.5) == pytest.approx(0.1)


def test_lookahead_resets_the_weights_to_the_average():
    net = nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        net.weight.fill_(2.0)
    avg = WeightAverage(net, mode="lookahead", decay=0.8, every=1, ramp=1.0)
    with torch.no_grad():
        net.weight.fill_(12.0)
    avg.step(net, 0.25)  # decay 0.8 * 0.25 = 0.2: 0.2 * 2 + 0.8 * 12 = 10
    assert avg.average["weight"].item() == pytest.approx(10.0) and net.weight.item() == pytest.approx(10.0)


def test_ema_is_the_evaluated_and_kept_model(tmp_path):
    tr = Trainer(tiny_cfg(*IMAGE_RUN, "train.ema=ema", "train.ema_every=1", "train.ema_ramp=0",
                          "train.ema_decay=0.9"), tmp_path / "run", splits=_splits())
    r = tr.fit()
    final = {k: v for k, v in tr.method.state_dict().items() if k in tr.weight_avg.average}
    assert all(torch.equal(final[k], tr.weight_avg.average[k]) for k in final)
    best = torch.load(tmp_path / "run" / "best_model.pt", weights_only=False)
    sel = r["selected"]["epoch"]
    if sel == 1:  # the last epoch selected: best_model.pt holds the same averaged weights
        assert all(torch.equal(best[k], final[k]) for k in final)
    acc = tr.accuracy_on(tr.test_x, tr.test_y)
    assert acc == r["final"]["test_acc"]


# ------------------------------------------------------------------------------------------------ flips
def test_alternating_flips_flip_each_image_on_alternate_epochs():
    aug = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, pad=0, channels_last=False,
                    flip_mode="alternate", flip_seed=7)
    x = torch.rand(64, 3, 4, 5)
    index = torch.arange(100, 164)
    views = []
    for epoch in range(4):
        aug.epoch = epoch
        views.append(aug.crop_flip(x, index))
    first = torch.tensor([torch.equal(v, xi.flip(-1)) for v, xi in zip(views[0], x)])
    assert 0.3 < first.float().mean() < 0.7  # a random first orientation
    assert torch.equal(first, first_flip(index, 7))
    for e in range(3):
        assert torch.equal(views[e + 1], views[e].flip(-1))  # every image mirrored from one epoch to the next
    assert torch.equal(views[2], views[0])
    # the decision belongs to the sample, not to its place in the batch
    perm = torch.randperm(64)
    aug.epoch = 1
    assert torch.equal(aug.crop_flip(x[perm], index[perm]), views[1][perm])
    assert torch.equal(alternating_flips(index, 3, 7), ~first_flip(index, 7))


def test_training_batches_carry_their_indices_to_the_flips():
    aug = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, pad=0, channels_last=False,
                    flip_mode="alternate", flip_seed=0)
    data = torch.randint(0, 255, (40, 3, 4, 4), dtype=torch.uint8)
    labels = torch.zeros(40, dtype=torch.long)
    for epoch in (0, 1):
        aug.epoch = epoch
        for b in iterate_batches(data, labels, aug, batch_size=8, seed=0, epoch=epoch):
            flips = alternating_flips(b.index, epoch, 0)
            expect = torch.where(flips[:, None, None, None], b.raw.flip(-1), b.raw).float() / 255.0
            assert torch.allclose(b.x, expect) and torch.allclose(b.weak(), expect)


def test_random_flips_ignore_indices():
    aug = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, channels_last=False)
    x = torch.rand(16, 3, 8, 8)
    torch.manual_seed(3)
    a = aug.crop_flip(x)
    torch.manual_seed(3)
    assert torch.equal(aug.crop_flip(x, torch.arange(16)), a)


# ------------------------------------------------------------------------------------------------ TTA
X3 = torch.tensor([[1.0, 2, 3], [4, 5, 6], [7, 8, 9]]).view(1, 1, 3, 3)
# the views of X3 written out by hand: view[i, j] = x[i + dy, j + dx], reflected at the border
HAND = {View(False, 0, 0, 0): [[1, 2, 3], [4, 5, 6], [7, 8, 9]],
        View(True, 0, 0, 0): [[3, 2, 1], [6, 5, 4], [9, 8, 7]],
        View(False, -1, -1, 0): [[5, 4, 5], [2, 1, 2], [5, 4, 5]],
        View(False, 1, 1, 0): [[5, 6, 5], [8, 9, 8], [5, 6, 5]],
        View(True, 1, 1, 0): [[5, 6, 5], [8, 9, 8], [5, 6, 5]]}


def test_tta_views_by_hand():
    for v, want in HAND.items():
        assert apply_view(X3, v)[0, 0].tolist() == want, v


def test_tta_averages_exactly_the_listed_views():
    def pixels_as_logits(x):
        return x.flatten(1)

    # mirror + translate: 1/4 (x + mirror) + 1/8 (four shifted views, each symmetric left-right here)
    out = tta_logits(pixels_as_logits, X3, TTA_VIEWS["mirror_translate"]).view(3, 3)
    assert out.tolist() == [[3.5] * 3, [5.0] * 3, [6.5] * 3]
    out = with_tta(pixels_as_logits, "mirror")(X3).view(3, 3)
    assert out.tolist() == [[2.0] * 3, [5.0] * 3, [8.0] * 3]
    assert with_tta(pixels_as_logits, "none") is pixels_as_logits
    assert sum(v.weight for v in TTA_VIEWS["mirror_translate"]) == 1.0 and len(TTA_VIEWS["mirror_translate"]) == 6
    calls = []
    tta_logits(lambda x: calls.append(x) or x.flatten(1), X3, TTA_VIEWS["mirror_translate"])
    assert len(calls) == 6  # one forward pass per listed view, no more


def test_eval_tta_is_the_recorded_test_accuracy_and_needs_images(blob_splits):
    tr = Trainer(tiny_cfg(*IMAGE_RUN, "train.eval_tta=mirror_translate"), None, splits=_splits())
    r = tr.fit()
    x = tr.augmenter.normalize(tr.test_x.take(torch.arange(len(tr.test_y))) if hasattr(tr.test_x, "take")
                               else tr.test_x)
    tr.method.eval()
    with torch.no_grad():
        logits = tta_logits(tr.method.predict_logits, x, TTA_VIEWS["mirror_translate"])
    assert float((logits.argmax(1) == tr.test_y).float().mean()) == r["final"]["test_acc"]
    seen = []
    plain = tr.method.predict_logits
    tr.method.predict_logits = lambda xb: seen.append(xb.shape) or plain(xb)
    assert tr.accuracy_on(tr.test_x, tr.test_y) == r["final"]["test_acc"]
    assert len(seen) == 6  # the test set in one chunk, six views of it
    plain_run = Trainer(tiny_cfg(*IMAGE_RUN), None, splits=_splits())
    rp = plain_run.fit()  # TTA changes the evaluation only: the same training, the same weights
    assert [e["train_loss"] for e in rp["epochs"]] == [e["train_loss"] for e in r["epochs"]]
    assert _weights_digest(plain_run.method.state_dict()) == _weights_digest(tr.method.state_dict())
    with pytest.raises(ConfigError, match="eval_tta"):
        Trainer(tiny_cfg("train.eval_tta=mirror"), None, splits=blob_splits)


# ------------------------------------------------------------------------------------------------ resume
@pytest.mark.parametrize("cut", ["epoch", "step"])
def test_resume_with_every_option_on_equals_an_uninterrupted_run(tmp_path, cut):
    over = (*IMAGE_RUN, *ALL_ON, "train.epochs=3")
    full = Trainer(tiny_cfg(*over), tmp_path / "a", splits=_splits())
    rf = full.fit()
    first = Trainer(tiny_cfg(*over), tmp_path / "b", splits=_splits())
    if cut == "epoch":
        assert first.fit(stop_after_epoch=1) is None
    else:
        assert first.fit(stop_at_step=(1, 2)) is None  # inside epoch 2, after 2 of its 3 steps
    second = Trainer(tiny_cfg(*over), tmp_path / "b", splits=_splits(), resume=True)
    rs = second.fit()
    for a, b in zip(rf["epochs"], rs["epochs"], strict=True):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    assert _weights_digest(full.method.state_dict()) == _weights_digest(second.method.state_dict())
    assert full.weight_avg.steps == second.weight_avg.steps == 9
    assert full.augmenter.epoch == second.augmenter.epoch == 2  # the flips knew the epoch
    assert all(torch.equal(full.weight_avg.average[k], v) for k, v in second.weight_avg.average.items())


def test_a_checkpoint_written_before_the_options_existed_still_resumes(tmp_path):
    over = (*IMAGE_RUN, "train.epochs=3")
    full = Trainer(tiny_cfg(*over), tmp_path / "a", splits=_splits()).fit()
    assert Trainer(tiny_cfg(*over), tmp_path / "b", splits=_splits()).fit(stop_after_epoch=1) is None
    path = tmp_path / "b" / "checkpoint.pt"
    ck = torch.load(path, weights_only=False)
    for sec, keys in (("optim", ["bn_bias_lr_scale"]),
                      ("train", ["flip", "ema", "ema_decay", "ema_every", "ema_ramp", "eval_tta"])):
        for k in keys:
            del ck["config"][sec][k]  # as an older noisyfit wrote it
    ck.pop("weight_average")
    torch.save(ck, path)
    resumed = Trainer(tiny_cfg(*over), tmp_path / "b", splits=_splits(), resume=True).fit()
    assert [e["train_loss"] for e in resumed["epochs"]] == [e["train_loss"] for e in full["epochs"]]
    with pytest.raises(ConfigError, match="train.flip"):  # a key that differs from its default still counts
        Trainer(tiny_cfg(*over, "train.flip=alternate"), tmp_path / "b", splits=_splits(), resume=True)


def test_ablation_script_plans_and_skips_a_run_another_process_holds(tmp_path):
    # benchmarks/recipe_ablation.py runs through the bench machinery; run it as a user would (it once
    # imported a helper the bench no longer had, and nothing noticed)
    import subprocess
    import sys
    from pathlib import Path

    from noisyfit.bench.runner import run_lock

    script = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_ablation.py"
    common = [sys.executable, str(script), "--rows", "base,all", "--label-sets", "clean",
              "--results", str(tmp_path / "results"), "--runs", str(tmp_path / "runs"),
              "--table", str(tmp_path / "table.md")]
    dry = subprocess.run([*common, "--dry-run"], capture_output=True, text=True, timeout=120)
    assert dry.returncode == 0, dry.stderr
    assert "2 run(s), 2 to go" in dry.stdout and "ce-all" in dry.stdout
    assert not (tmp_path / "runs").exists()  # a dry run starts nothing
    # both runs held by this process: the script skips them by name and runs nothing
    held = [tmp_path / "runs" / "recipe-ablation" / row / "clean" / "seed0" for row in ("ce", "ce-all")]
    with run_lock(held[0]), run_lock(held[1]):  # (bf16 rows: allowed on a CPU without bf16 kernels too)
        run = subprocess.run([*common, "--allow-emulated-bf16"], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.count("is running it, skip") == 2
    assert (tmp_path / "table.md").is_file() and not (tmp_path / "results" / "recipe-ablation").exists()
    # the table lists every row, not only the two this call was asked to run
    listed = [line.split("`")[1] for line in (tmp_path / "table.md").read_text().splitlines() if line.startswith("| `")]
    assert listed[:2] == ["ce", "ce-all"] and "ce-airbench-but-ls" in listed and len(listed) > 5


def _ablation_module():
    """benchmarks/recipe_ablation.py, imported from its file."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "recipe_ablation.py"
    spec = importlib.util.spec_from_file_location("recipe_ablation", path)
    ablation = importlib.util.module_from_spec(spec)
    sys.modules["recipe_ablation"] = ablation  # its dataclasses look their module up there
    try:
        spec.loader.exec_module(ablation)
    finally:
        del sys.modules["recipe_ablation"]
    return ablation


def test_the_airbench_suite_protocol_is_the_ablation_row_it_was_chosen_from():
    # suite cpu-cifar10n-airbench runs the recipe ablation's row airbench-but-ls as its protocol: the two must
    # resolve to the same settings, or the suite is not what the ablation measured

    from noisyfit.bench.suites import get_suite
    from noisyfit.config import load_config

    ablation = _ablation_module()
    row = {r.name: r for r in ablation.ROWS}["airbench-but-ls"]
    suite = get_suite("cpu-cifar10n-airbench")
    assert load_config(suite.preset.format(method="ce")).to_dict() == load_config(row.preset, list(row.overrides)).to_dict()
    # the whitening-floor probe is the fp32 twin's protocol (its reference, the oracle) but for the floor
    probe = {r.name: r for r in ablation.ROWS}["airbench-but-ls-fp32-eps"]
    twin = load_config(get_suite("cpu-cifar10n-airbench-fp32").preset.format(method="ce"),
                       list(get_suite("cpu-cifar10n-airbench-fp32").overrides)).to_dict()
    probed = load_config(probe.preset, list(probe.overrides)).to_dict()
    assert probed["model"]["args"].pop("whiten_eps") == 5e-3 and twin["model"]["args"].pop("whiten_eps", 5e-4) == 5e-4
    assert probed == twin
    # and its label-smoothing row `ce-ls` is the ablation's whole-recipe row `airbench`
    whole = {r.name: r for r in ablation.ROWS}["airbench"]
    assert (load_config("ce/cpu-cifar10n-airbench-ls").to_dict()
            == load_config(whole.preset, list(whole.overrides)).to_dict())


def test_the_fp32_airbench_suite_differs_from_the_bf16_one_only_in_its_arithmetic(tmp_path):
    # cpu-cifar10n-airbench-fp32 exists for CPUs that emulate bf16: the same runs with the same settings, in
    # float32, in a run folder of its own (never pooled with the bf16 suite's)
    from pathlib import Path

    from noisyfit.bench.plan import expand_suite, runnable_methods
    from noisyfit.bench.suites import get_suite
    from noisyfit.config import load_config

    def runs(name):
        plans = expand_suite(get_suite(name), registered=runnable_methods(), results_root=tmp_path)
        return [r for p in plans for r in p.runs]

    bf16, fp32 = runs("cpu-cifar10n-airbench"), runs("cpu-cifar10n-airbench-fp32")
    assert [r.key for r in bf16] == [r.key for r in fp32] and len(bf16) == 23
    for a, b in zip(bf16, fp32):
        ca = load_config(a.config, list(a.overrides)).to_dict()
        cb = load_config(b.config, list(b.overrides)).to_dict()
        assert ca["train"].pop("precision") == "bf16" and cb["train"].pop("precision") == "fp32"
        assert ca == cb, a.key
        assert a.run_dir(Path("runs")).parts[1] == "cpu-cifar10n-airbench"
        assert b.run_dir(Path("runs")).parts[1] == "cpu-cifar10n-airbench-fp32"


def test_ablation_float32_rows_are_compared_with_the_float32_protocol_only(tmp_path):
    # a float32 row's delta and time ratio are against `ce-fp32` (the protocol in float32), never against the
    # bf16 base: the arithmetic alone moves the accuracy and (on an AVX2 CPU) the time severalfold
    import json

    ablation = _ablation_module()
    fp32_rows = [r for r in ablation.ROWS if "train.precision=fp32" in r.overrides]
    assert {r.name for r in fp32_rows} >= {"fp32", "airbench-fp32", "airbench-but-ls-fp32-eps"}
    assert all(r.ref == "fp32" for r in fp32_rows if r.name != "fp32")
    assert all(r.ref == "base" for r in ablation.ROWS if r not in fp32_rows)

    def write(method, acc, secs, cpu):
        (tmp_path / f"{method}__clean__seed0.json").write_text(json.dumps({
            "schema": "noisyfit.results/1", "final": {"test_acc": acc}, "selected": {"test_acc": acc},
            "compute": {"seconds_per_epoch_median": secs}, "machine": {"cpu": cpu, "cpu_capability": "AVX2"}}))

    def cells():  # row name -> its table cells after the name
        return {line.split("|")[1].strip(): [c.strip() for c in line.split("|")[2:-1]]
                for line in ablation.table(tmp_path, ablation.ROWS, ()).splitlines() if line.startswith("| `")}

    write("ce", 0.8800, 200.0, "A")
    write("ce-whiten", 0.8900, 220.0, "A")
    write("ce-airbench-fp32", 0.9036, 300.0, "B")
    rows = cells()
    assert rows["`ce-whiten`"][2:3] == ["+1.00"] and rows["`ce-whiten`"][8] == "1.10"
    assert rows["`ce-airbench-fp32`"][2] == "–" and rows["`ce-airbench-fp32`"][8] == "–"  # no fp32 reference yet
    write("ce-fp32", 0.8750, 400.0, "B")
    rows = cells()
    assert rows["`ce-airbench-fp32`"][2] == "+2.86" and rows["`ce-airbench-fp32`"][8] == "0.75"
    # the float32 protocol itself is the arithmetic's effect, against the bf16 base; timed on another CPU here
    assert rows["`ce-fp32`"][2] == "-0.50" and rows["`ce-fp32`"][8] == "other CPU"


def test_evaluating_less_often_trains_the_same_model():
    # the recipe ablation's 12-epoch Muon row evaluates every 4th epoch to save time: evaluation (with TTA and
    # the fit tracking) must draw no random numbers and leave weights and BatchNorm statistics alone
    over = (*IMAGE_RUN, "train.epochs=3", "train.eval_tta=mirror_translate", "train.track_fit=true")
    every = Trainer(tiny_cfg(*over), None, splits=_splits())
    r1 = every.fit()
    sparse = Trainer(tiny_cfg(*over, "train.eval_every=3"), None, splits=_splits())
    r3 = sparse.fit()
    assert _weights_digest(every.method.state_dict()) == _weights_digest(sparse.method.state_dict())
    assert r1["epochs"][-1]["test_acc"] == r3["epochs"][-1]["test_acc"]
    assert "test_acc" in r1["epochs"][0] and r3["epochs"][0].get("test_acc") is None


def test_the_muon_suite_protocol_is_the_ablation_row_it_was_chosen_from():
    from noisyfit.bench.suites import get_suite
    from noisyfit.config import load_config

    ablation = _ablation_module()
    # the 12-epoch row, which the suite evaluates every epoch (evaluation changes no weight: the test above)
    row = {r.name: r for r in ablation.ROWS}["muon12-but-ls-fp32"]
    suite = get_suite("cpu-cifar10n-airbench-muon-fp32")
    row_overrides = [o for o in row.overrides if o != "train.eval_every=4"]
    assert len(row_overrides) == len(row.overrides) - 1
    assert (load_config(suite.preset.format(method="ce"), list(suite.overrides)).to_dict()
            == load_config(row.preset, row_overrides).to_dict())


def test_ablation_curves_count_training_time_only_and_skip_unevaluated_epochs():
    ablation = _ablation_module()
    data = {"epochs": [{"epoch": 0, "train_seconds": 120, "eval_seconds": 600},
                       {"epoch": 1, "train_seconds": 60, "eval_seconds": 0, "test_acc": None},
                       {"epoch": 2, "train_seconds": 180, "eval_seconds": 600, "test_acc": 0.905}]}
    data["epochs"][0]["test_acc"] = 0.61
    assert ablation.training_curve(data) == ([1, 3], [2.0, 6.0], [61.0, 90.5])
