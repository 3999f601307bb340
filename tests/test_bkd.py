"""Blind Knowledge Distillation: loss pieces, tipping point, robust targets, and full Trainer runs."""

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_cfg, tiny_images
from noisyfit.data.labeled import DatasetSplits
from noisyfit.data.training_set import TrainingSet
from noisyfit.engine.trainer import Trainer
from noisyfit.methods.bkd import (BlindKnowledgeDistillation, agreement_log_probs, blind_compensation_loss,
                                  robust_targets)
from noisyfit.methods.context import MethodContext
from noisyfit.models.backbones import create_backbone
from noisyfit.ops.tipping_point import detect_tipping_epoch, first_strict_peak, lookback_needed


# ------------------------------------------------------------------ compensation loss
def test_compensation_loss_hand_value_and_normaliser():
    z_t = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    z_s = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    y = torch.tensor([2, 0])
    # row 0 keeps classes 0, 1: 1^2 + 2^2 = 5; row 1 keeps classes 1, 2: 1 + 1 = 2; / (B*C - 1) = 5
    assert blind_compensation_loss(z_t, z_s, y).item() == pytest.approx(7 / 5)


def test_compensation_loss_ignores_the_label_column_and_trains_both_networks():
    g = torch.Generator().manual_seed(0)
    z_t, z_s = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)
    y = torch.tensor([0, 1, 2, 3, 1, 0])
    base = blind_compensation_loss(z_t, z_s, y)
    rows = torch.arange(6)
    t2, s2 = z_t.clone(), z_s.clone()
    t2[rows, y] += 100.0
    s2[rows, y] -= 50.0
    assert blind_compensation_loss(t2, s2, y).item() == pytest.approx(base.item(), rel=1e-6)
    t3 = z_t.clone()
    t3[0, 1] += 1.0  # a non-label entry changes it
    assert blind_compensation_loss(t3, z_s, y).item() != pytest.approx(base.item(), rel=1e-3)
    zt, zs = z_t.clone().requires_grad_(), z_s.clone().requires_grad_()
    blind_compensation_loss(zt, zs, y).backward()
    assert torch.all(zt.grad[rows, y] == 0) and torch.all(zs.grad[rows, y] == 0)
    # no stop-gradient: d/dz_T = 2 (z_T - z_S) / (B*C - 1) and the student's is its negative
    expect = 2 * (z_t - z_s) / (6 * 4 - 1)
    expect[rows, y] = 0
    torch.testing.assert_close(zt.grad, expect)
    torch.testing.assert_close(zs.grad, -expect)


def test_agreement_is_the_normalised_product_of_softmaxes():
    g = torch.Generator().manual_seed(1)
    z_t, z_s = torch.randn(5, 7, generator=g), torch.randn(5, 7, generator=g)
    prod = z_t.softmax(1) * z_s.softmax(1)
    torch.testing.assert_close(agreement_log_probs(z_t, z_s).exp(), prod / prod.sum(1, keepdim=True))


# ------------------------------------------------------------------ robust targets
def test_robust_target_sharpening_exponent_by_hand():
    p_s = torch.tensor([[0.2, 0.5, 0.3]])
    t = robust_targets(torch.tensor([0]), p_s, torch.tensor([0.5]))
    mix = [0.5 + 0.5 * 0.2, 0.5 * 0.5, 0.5 * 0.3]  # (1 - a) e_y + a p_S = [0.6, 0.25, 0.15]
    powed = [m ** 1.5 for m in mix]  # exponent 1 + a
    torch.testing.assert_close(t, torch.tensor([[v / sum(powed) for v in powed]]))
    assert t[0, 0].item() == pytest.approx(0.71738, abs=1e-5)
    # a = 0: the one-hot label; a = 1: the squared student, renormalised
    torch.testing.assert_close(robust_targets(torch.tensor([1]), p_s, torch.tensor([0.0])),
                               torch.tensor([[0.0, 1.0, 0.0]]))
    sq = p_s ** 2
    torch.testing.assert_close(robust_targets(torch.tensor([1]), p_s, torch.tensor([1.0])), sq / sq.sum())


def test_robust_target_passes_gradient_to_the_student():
    p = torch.tensor([[0.2, 0.5, 0.3]], requires_grad=True)
    robust_targets(torch.tensor([0]), p, torch.tensor([0.7]))[0, 0].backward()
    assert p.grad.abs().sum() > 0


def _method(**hyper):
    torch.manual_seed(0)
    return BlindKnowledgeDistillation(hyper, 3, 10, lambda: create_backbone("mlp", num_classes=3,
                                                                            input_shape=(4,), hidden=[8]))


class _FakeBatch:
    def __init__(self, index, x, y):
        self.index, self.x, self.y = index, x, y


@pytest.mark.parametrize("detach", [False, True])
def test_robust_step_uses_each_samples_group_alpha(detach):
    m = _method(detach_student_target=detach)
    m.on_epoch_start(0, None)
    m.tipping_epoch = 2  # pretend the split happened: samples 0..3 in G1..G4
    m.groups[:4] = torch.tensor([1, 2, 3, 4], dtype=torch.int8)
    x = torch.randn(4, 4)
    y = torch.tensor([0, 1, 2, 0])
    out = m.training_step(_FakeBatch(torch.arange(4), x, y), 5)
    z_t, z_s = m.teacher(x), m.student(x)
    p_s = z_s.softmax(1)
    alpha = torch.tensor([0.30, 0.45, 0.55, 0.70])
    t = robust_targets(y, p_s, alpha)
    ce = -(t * F.log_softmax(z_t, 1)).sum(1).mean()
    torch.testing.assert_close(out["loss"], ce + blind_compensation_loss(z_t, z_s, y))
    assert out["robust"] == 1.0
    # The CE term reaches the student through the target unless detach_student_target is set: compare
    # the student's gradient of the whole loss with that of the compensation term alone.
    params = list(m.student.parameters())
    g_loss = torch.autograd.grad(out["loss"], params)
    g_comp = torch.autograd.grad(blind_compensation_loss(m.teacher(x), m.student(x), y), params)
    same = all(torch.allclose(a, b, atol=1e-7) for a, b in zip(g_loss, g_comp))
    assert same == detach


def test_phase_one_step_is_ce_plus_compensation_and_records_scores():
    m = _method()
    m.on_epoch_start(3, None)
    x, y = torch.randn(4, 4), torch.tensor([0, 1, 2, 0])
    idx = torch.tensor([7, 2, 5, 0])
    out = m.training_step(_FakeBatch(idx, x, y), 3)
    z_t, z_s = m.teacher(x), m.student(x)
    torch.testing.assert_close(out["loss"], F.cross_entropy(z_t, y) + blind_compensation_loss(z_t, z_s, y))
    col = 3 % m.slots
    agree = agreement_log_probs(z_t, z_s).exp()[torch.arange(4), y]
    torch.testing.assert_close(m.train_scores[idx, col], agree.detach())
    assert torch.isnan(m.train_scores[[1, 3], col]).all()  # not visited, nothing to carry forward
    # Next epoch starts from the previous scores, so samples it does not visit keep their last score.
    m.on_epoch_start(4, None)
    torch.testing.assert_close(m.train_scores[:, 4 % m.slots], m.train_scores[:, col], equal_nan=True)
    m.on_epoch_start(0, None)
    assert torch.isnan(m.train_scores[:, 0]).all()
    assert out["student_conf"].item() == pytest.approx(z_s.softmax(1).max(1).values.mean().item())


# ------------------------------------------------------------------ tipping point
def test_first_strict_peak_of_made_up_curves():
    assert first_strict_peak([0.1, 0.2, 0.3, 0.5, 0.4, 0.35, 0.3]) == 3
    assert first_strict_peak([0.1, 0.2, 0.5, 0.5, 0.3, 0.2, 0.1]) is None  # plateau: not strict
    assert first_strict_peak([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8]) is None  # no peak
    assert first_strict_peak([0.9, 0.8, 0.7, 0.6, 0.5, 0.4]) is None  # peak at 0 has no left window
    assert first_strict_peak([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.5]) is None  # peak too close to the end
    wiggle = [0.1, 0.3, 0.2, 0.4, 0.5, 0.45, 0.4]
    assert first_strict_peak(wiggle, window=1) == 1
    assert first_strict_peak(wiggle, window=2) == 4  # 0.3 at 1 lacks a +-2 window; 0.5 beats 0.2..0.4
    # a later higher peak does not matter: the FIRST strict peak is the tipping point
    assert first_strict_peak([0.1, 0.2, 0.6, 0.3, 0.2, 0.5, 0.9, 0.4, 0.3]) == 2


def test_detect_tipping_epoch_follows_the_official_rules_and_our_optional_fallback():
    curve = [0.1, 0.2, 0.4, 0.3, 0.25, 0.3, 0.35]
    assert detect_tipping_epoch(curve[:5]) is None  # peak at 2 is visible, but fewer than 6 epochs
    assert detect_tipping_epoch(curve[:6]) == (2, "peak")
    rising = [0.1 * i for i in range(12)]
    # official (the default): no peak, no tipping point, however long the curve
    assert all(detect_tipping_epoch(rising[:n]) is None for n in range(1, 13))
    # our fallback, when asked for: len fallback_epoch + 2 -> fallback_epoch
    assert detect_tipping_epoch(rising[:9], fallback_epoch=8) is None
    assert detect_tipping_epoch(rising[:10], fallback_epoch=8) == (8, "fallback")
    # At len 10 the fallback is checked before the peak search, so a peak at 7 confirmed by that
    # same epoch loses to epoch 8; without the fallback the peak is found.
    late = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9, 0.8, 0.75]
    assert detect_tipping_epoch(late, fallback_epoch=8) == (8, "fallback")
    assert detect_tipping_epoch(late) == (7, "peak")
    short = [0.1, 0.3, 0.2, 0.25]
    assert detect_tipping_epoch(short, window=1, min_epochs=3, fallback_epoch=None) == (1, "peak")
    assert lookback_needed(2, 6) == 4 and lookback_needed(1, 3) == 2 and lookback_needed(3, 2) == 4


def _scripted_run(n, num_epochs, m, eval_scores):
    """The public context over n samples whose feature is their own index; the method's eval predictions are
    scripted per epoch (``eval_scores[epoch]`` is p(label 0) per sample), and every prediction pass is recorded
    as (epoch, augment)."""
    ts = TrainingSet.from_tensors(torch.arange(n, dtype=torch.float32)[:, None], torch.zeros(n, dtype=torch.long))
    ctx = MethodContext(ts, num_epochs=num_epochs)
    ctx.calls = []
    real = ts.predict

    def recording_predict(fn, *, batch_size=None, augment="none"):
        ctx.calls.append((ctx.epoch, augment))
        return real(fn, batch_size=batch_size, augment=augment)

    def scripted_logits(x):
        e = eval_scores[ctx.epoch][x[:, 0].long()]
        return torch.stack([e, (1 - e) / 2, (1 - e) / 2], dim=1).log()

    ts.predict = recording_predict
    m.predict_logits = scripted_logits
    return ctx


def test_groups_come_from_the_scores_of_the_tipping_epoch():
    from noisyfit.ops.otsu import four_groups, modified_otsu

    n = 100
    spikes = np.array([0.0505] * 10 + [0.1505] * 10 + [0.8505] * 40 + [0.9505] * 40)
    rng = np.random.default_rng(0)
    train = {e: torch.tensor(rng.permutation(spikes), dtype=torch.float32) for e in range(6)}
    eval_scores = {e: torch.tensor(rng.permutation(spikes), dtype=torch.float32) for e in range(6)}
    curve = [0.5, 0.6, 0.9, 0.7, 0.65, 0.6]  # strict +-2 peak at epoch 2, decidable after epoch 5
    m = BlindKnowledgeDistillation({}, 3, n, lambda: create_backbone("mlp", num_classes=3, input_shape=(4,)))
    ctx = _scripted_run(n, 20, m, eval_scores)
    for e in range(6):
        ctx.epoch = e
        m.on_epoch_start(e, ctx)
        m.train_scores[:, e % m.slots] = train[e]  # what the training steps of epoch e would write
        m._conf_sum += curve[e] * 50
        m._conf_n += 50
        m.on_epoch_end(e, ctx)
        assert m.robust == (e == 5)
    assert m.conf_history == pytest.approx(curve)
    assert (m.tipping_epoch, m.tipping_rule, m.decided_after_epoch) == (2, "peak", 5)
    # eval passes (weak view, as the official full-set loader) only in epochs 2..4: 0 and 1 can never
    # be a peak and the deciding epoch needs none
    assert ctx.calls == [(2, "weak"), (3, "weak"), (4, "weak")]
    s2, e2 = train[2].double().numpy(), eval_scores[2].double().numpy()
    np.testing.assert_array_equal(m.training_groups(), four_groups(s2, modified_otsu(s2)))
    np.testing.assert_array_equal(m.group_of_samples(), four_groups(e2, modified_otsu(e2)))
    assert not np.array_equal(m.training_groups(), m.group_of_samples())
    np.testing.assert_allclose(m.clean_scores(ctx.labels.numpy()), e2, rtol=1e-6)
    assert m.estimated_noise_rate(ctx.labels.numpy()) == pytest.approx(0.10)  # the 10 samples at 0.0505
    assert m.detect_split.threshold == 0.151


def test_hyper_validation():
    with pytest.raises(ValueError, match="fallback_epoch=2.*never fire"):
        _method(fallback_epoch=2)
    with pytest.raises(ValueError, match="alpha4"):
        _method(alpha4=1.5)
    with pytest.raises(ValueError, match="detect_scores"):
        _method(detect_scores="both")
    assert _method(fallback_epoch=None).hp.fallback_epoch is None
    assert _method().hp.fallback_epoch is None  # the official code has no fallback



def test_health_reports_the_tipping_point_thresholds_and_groups_from_a_hand_state():
    from noisyfit.ops.otsu import OtsuSplit

    m = _method()  # 10 samples
    assert m.health(3) == {}  # before the tipping decision there is nothing to report
    m.tipping_epoch, m.tipping_rule, m.decided_after_epoch = 4, "fallback", 5
    m.train_split = OtsuSplit(0.30, 0.10, 0.60, 0.05, 0.1, "modified")
    m.detect_split = OtsuSplit(0.25, 0.08, 0.55, 0.05, 0.1, "modified", valid=False)  # not reported
    m.groups.copy_(torch.tensor([1, 1, 1, 2, 2, 3, 4, 4, 4, 4], dtype=torch.int8))
    m.detect_groups.copy_(torch.tensor([1, 1, 2, 2, 3, 3, 3, 4, 4, 1], dtype=torch.int8))
    h = m.health(6)
    assert h["tipping_epoch"] == 4 and h["tipping_by_peak"] == 0.0  # our fallback set it
    assert (h["otsu_theta"], h["otsu_mu_low"], h["otsu_mu_high"]) == (0.30, 0.10, 0.60)
    assert not any(k.startswith("detect_") and k != "detect_kept" for k in h)
    assert h["group1"].tolist() == [True] * 3 + [False] * 7
    assert h["group4"].tolist() == [False] * 6 + [True] * 4
    assert [int(h[f"group{g}"].sum()) for g in range(1, 5)] == [3, 2, 1, 4]
    assert h["detect_kept"].tolist() == [True] * 7 + [False, False, True]
    m.detect_epoch = 4
    assert "an option of ours; the official code has no fallback" in m.flag_reason()
    m.tipping_rule = "peak"
    assert m.health(6)["tipping_by_peak"] == 1.0
    # what the trainer logs from it: shares, and precision / recall against a made-up truth
    from noisyfit.metrics import health_figures

    noisy = np.array([False] * 5 + [True] * 5)
    fig = health_figures(h, noisy)
    assert fig["group1_share"] == pytest.approx(0.3) and fig["group1_precision"] == 1.0
    assert fig["group4_share"] == pytest.approx(0.4) and fig["group4_precision"] == 0.0
    # detect_kept: 8 kept, of which 5 right labels -> precision 5/8, recall 5/5
    assert fig["detect_kept_precision"] == pytest.approx(5 / 8) and fig["detect_kept_recall"] == 1.0

# ------------------------------------------------------------------ trainer runs
def test_blobs_reach_the_robust_phase_and_g4_flags_are_precise(blob_splits):
    t = Trainer(tiny_cfg("method.name=bkd", "train.epochs=10"), None, splits=blob_splits)
    r = t.fit()
    m = t.method
    assert m.robust and m.tipping_rule == "peak" and m.decided_after_epoch < 9
    assert [e["robust"] for e in r["epochs"]] == [0.0] * (m.decided_after_epoch + 1) + [1.0] * (
        9 - m.decided_after_epoch)
    labels = t.data.train.labels
    noisy = labels != t.data.train.true_labels
    flags = m.noisy_flags(labels)
    groups = m.group_of_samples()
    np.testing.assert_array_equal(flags, groups == 4)
    assert set(np.unique(groups)) == {1, 2, 3, 4}
    assert noisy[flags].mean() > 0.7  # G4 precision
    assert noisy[groups == 1].mean() < 0.1  # G1 is the cleanest group
    assert m.estimated_noise_rate(labels) == pytest.approx(flags.sum() / len(labels))
    assert r["detection"]["precision"] > 0.7
    # clean scores are the split scores: G4 <=> score < mu_low of the exported split
    s = m.clean_scores(labels)
    np.testing.assert_array_equal(s < m.detect_split.mu_low, flags)
    assert "tipping epoch" in m.flag_reason() and f"{m.detect_split.mu_low:.4f}" in m.flag_reason()
    # the exported split (eval pass) and the training split (training pass) are different score sets
    assert m.detect_epoch == m.tipping_epoch
    assert not np.array_equal(m.training_groups(), groups) or m.train_split != m.detect_split
    assert r["final"]["test_acc"] > 0.9


def test_train_pass_detection_exports_the_training_groups(blob_splits):
    t = Trainer(tiny_cfg("method.name=bkd", "method.args.detect_scores=train", "train.epochs=7"), None,
                splits=blob_splits)
    t.fit()
    m = t.method
    assert m.robust
    np.testing.assert_array_equal(m.group_of_samples(), m.training_groups())
    assert torch.isnan(m.eval_scores).all()  # no eval pass was made
    assert "the training pass" in m.flag_reason()


def test_no_tipping_point_falls_back_to_the_last_epoch_and_says_so(blob_splits):
    t = Trainer(tiny_cfg("method.name=bkd", "method.args.fallback_epoch=null", "train.epochs=4"), None,
                splits=blob_splits)
    r = t.fit()
    m = t.method
    assert not m.robust and m.tipping_epoch is None  # 4 < min_epochs: no decision possible
    assert all(e["robust"] == 0.0 for e in r["epochs"])
    assert m.detect_epoch == 3 and "NO tipping point was found in 4 epochs" in m.flag_reason()
    flags = m.noisy_flags(t.data.train.labels)
    assert flags.any() and r["method"]["flag_rule"] == m.flag_reason()
    np.testing.assert_array_equal(m.clean_scores(t.data.train.labels), m.eval_scores[:, 3 % m.slots].numpy())


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Bitwise equal, NaN matching NaN (unvisited score slots)."""
    if not a.is_floating_point():
        return torch.equal(a, b)
    return torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num())


# On 128 tiny images with window 1 and min_epochs 3, the tipping decision falls at the end of epoch 2
# (a peak at 1) or 3 (the fallback, epoch 2): the resume test stops on either side of it.
RESUME = ("model.backbone=fastcnn", "model.args.widths=[8,16,16]", "model.args.stem_width=8",
          "train.epochs=6", "train.batch_size=32", "data.noise=sym:0.3", "method.name=bkd",
          "method.args.window=1", "method.args.min_epochs=3", "method.args.fallback_epoch=2")


def test_resume_across_the_tipping_point_matches_an_uninterrupted_run(tmp_path):
    splits = DatasetSplits(tiny_images(128), tiny_images(64, seed=1))
    full_t = Trainer(tiny_cfg(*RESUME), tmp_path / "full", splits=splits)
    full = full_t.fit()
    d = full_t.method.decided_after_epoch
    assert d in (2, 3)
    ref = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=False)["method"]
    for stop, robust_at_stop in ((d, False), (d + 1, True)):  # just before / just after the decision
        out = tmp_path / f"stop{stop}"
        assert Trainer(tiny_cfg(*RESUME), out, splits=splits).fit(stop_after_epoch=stop) is None
        saved = torch.load(out / "checkpoint.pt", weights_only=False)["method"]["_extra_state"]
        assert (saved["tipping_epoch"] is not None) == robust_at_stop
        resumed_t = Trainer(tiny_cfg(*RESUME), out, splits=splits, resume=True)
        resumed = resumed_t.fit()
        assert len(resumed["epochs"]) == len(full["epochs"])  # zip would hide a short run
        for a, b in zip(full["epochs"], resumed["epochs"]):
            assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"], a["epoch"]
        got = torch.load(out / "checkpoint.pt", weights_only=False)["method"]
        for k, v in ref.items():
            if torch.is_tensor(v):
                assert _same(v, got[k]), k
        assert got["_extra_state"] == ref["_extra_state"]
        pa, pb = np.load(tmp_path / "full" / "per_sample.npz"), np.load(out / "per_sample.npz")
        for key in ("clean_score", "flag", "suggested", "bkd_group", "bkd_training_group"):
            np.testing.assert_array_equal(pa[key], pb[key])
        np.testing.assert_array_equal(pb["bkd_group"] == 4, pb["flag"])  # the groups are exported
        assert resumed["method"]["flag_rule"] == full["method"]["flag_rule"]
        assert resumed_t.method.describe() == full_t.method.describe()


def test_bf16_image_step_runs_with_finite_losses():
    splits = DatasetSplits(tiny_images(64), tiny_images(32, seed=1))
    cfg = tiny_cfg("method.name=bkd", "model.backbone=fastcnn", "model.args.widths=[8,8,8]",
                   "train.precision=bf16", "train.epochs=1", "train.batch_size=32")
    r = Trainer(cfg, None, splits=splits).fit()
    assert math.isfinite(r["epochs"][0]["train_loss"]) and math.isfinite(r["epochs"][0]["comp"])


@pytest.mark.parametrize("preset", ["bkd/cpu-cifar10n", "bkd/cpu-cifar10n-detach", "bkd/paper-cifar10n"])
def test_presets_resolve_to_valid_hyper_parameters(preset):
    from noisyfit.config import load_config

    cfg = load_config(preset)
    hp = BlindKnowledgeDistillation.resolve_hyper(cfg.method.args)
    assert cfg.method.name == "bkd" and hp.window == 2 and hp.min_epochs == 6
    if preset.startswith("bkd/paper"):
        got = (cfg.model.backbone, cfg.train.epochs, cfg.train.batch_size, cfg.optim.lr)
        assert got == ("preact_resnet18", 300, 128, 0.02)
        assert cfg.optim.milestones == [150] and not cfg.optim.nesterov and hp.fallback_epoch is None
    else:
        # our fallback, kept at 6 so the cpu-cifar10n suite's BKD rows stay reproducible
        assert cfg.train.epochs == 12 and hp.fallback_epoch == 6
