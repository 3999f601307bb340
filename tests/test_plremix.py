import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cfg, tiny_images
from test_dividemix import ctx_for, mlp_factory

from noisyfit.data.labeled import DatasetSplits
from noisyfit.engine.trainer import Trainer
from noisyfit.methods.dividemix import DivideMix, seed_for
from noisyfit.methods.plr_plugin import CEPLR, PLRHyper, PLRTerm
from noisyfit.methods.plremix import PLReMix, adaptive_selection, fixed_threshold_labels
from noisyfit.models.backbones import Backbone
from noisyfit.ops.contrastive import contrastive_loss, flat_logsumexp, plr_negative_mask
from noisyfit.ops.gmm import gmm_split_2d

PLR_FAST = ("method.args.kappa=1", "method.args.warmup_epochs=2", "method.args.rampup_epochs=1",
            "data.noise=sym:0.4")


class Rows(Backbone):
    def __init__(self, d=4, c=12):
        super().__init__(d, c)

    def forward_features(self, x):
        return x


def test_plr_term_uses_source_cache_kappa_schedule_temperature_and_form():
    hp = PLRHyper(plr_temperature=0.1, plr_form="supcon", kappa=2, kappa_milestones=(3,))
    term = PLRTerm(hp, [4, 4], 6, 12)
    torch.manual_seed(0)
    cache = torch.randn(6, 2, 12)
    term.store([cache[:, 0], cache[:, 1]])
    idx, labels = torch.tensor([0, 2, 3, 5]), torch.tensor([1, 1, 7, 10])
    v1, v2 = torch.randn(4, 4), torch.randn(4, 4)
    net = Rows()
    for epoch, kappa in ((0, 2), (3, 1)):
        got = term.plr_loss(0, net, idx, labels, v1, v2, epoch, source=1)
        neg = plr_negative_mask(cache[idx, 1], labels, kappa)
        assert neg.any()
        ref = contrastive_loss(term.heads[0](v1), term.heads[0](v2), neg, temperature=0.1, form="supcon")
        assert got.item() == pytest.approx(ref.item(), abs=1e-6)
        # logged: the share of off-diagonal pairs that are negatives, and the flat form's log-sum-exp
        assert term.last_stats["plr_negatives"] == pytest.approx(neg.float().sum().item() / (4 * 3))
        lse = flat_logsumexp(term.heads[0](v1), term.heads[0](v2), neg, temperature=0.1)
        assert term.last_stats["plr_lse"] == pytest.approx(lse.item(), abs=1e-5)
    other = term.plr_loss(0, net, idx, labels, v1, v2, 0, source=0)  # the other cache gives another mask
    assert not torch.equal(plr_negative_mask(cache[idx, 0], labels, 2), plr_negative_mask(cache[idx, 1], labels, 2))
    assert other.item() != pytest.approx(term.plr_loss(0, net, idx, labels, v1, v2, 0, source=1).item())


def test_prototypes_initialise_to_class_means_and_selection_is_the_2d_gmm():
    torch.manual_seed(0)
    n, c, d = 120, 3, 128
    labels = torch.arange(n) % c
    m = PLReMix({}, c, n, mlp_factory(c))
    ctx = ctx_for(labels)
    z = [torch.randn(n, c), torch.randn(n, c)]
    q = [F.normalize(torch.randn(n, d) + 2 * F.one_hot(labels, d).float(), dim=1) for _ in range(2)]
    outs = torch.cat([z[0], q[0], z[1], q[1]], dim=1)
    m.fit_selection(outs, ctx, epoch=10)
    for k in range(2):
        means = torch.stack([q[k][labels == j].mean(0) for j in range(c)])
        assert torch.allclose(m.prototypes[k], F.normalize(means, dim=1), atol=1e-6)
        s = q[k] @ m.prototypes[k].T / 0.1
        ref = gmm_split_2d(F.cross_entropy(z[k], labels, reduction="none").numpy(),
                           F.cross_entropy(s, labels, reduction="none").numpy(), random_state=seed_for(ctx, 10, k))
        assert np.allclose(m.clean_prob[:, k].numpy(), ref.clean_prob, atol=1e-6)
        # the partner's caches for the PLR mask and the prototype update
        assert torch.equal(m.plr.cached_logits[:, k], z[k])
        assert torch.allclose(m.proto_logits[:, k], s, atol=1e-5)
        assert torch.equal(m.proj_cache[:, k], q[k])
    assert int(m.proto_ready) == 1
    before = m.prototypes.clone()
    m.fit_selection(outs, ctx, epoch=11)  # initialised once only
    assert torch.equal(m.prototypes, before)


def test_self_adaptive_threshold_hand_example():
    # classifier probabilities [0.9, 0.1], [0.6, 0.4], [0.2, 0.8]; epoch 0 -> a = 1 (classifier only)
    cls = torch.log(torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.2, 0.8]]))
    time_p, p_model = torch.tensor(0.5), torch.tensor([0.5, 0.5])
    keep = adaptive_selection(torch.zeros(3, 2), cls, 0, 10, time_p, p_model, momentum=0.5)
    # tau_g = 0.5 * 0.5 + 0.5 * mean(0.9, 0.6, 0.8) = 0.63333; p_bar = [0.53333, 0.46667] -> scale [1, 0.875]
    assert time_p.item() == pytest.approx(0.5 * 0.5 + 0.5 * (2.3 / 3), abs=1e-6)
    assert torch.allclose(p_model, torch.tensor([0.5 * 0.5 + 0.5 * 1.7 / 3, 0.5 * 0.5 + 0.5 * 1.3 / 3]), atol=1e-6)
    # thresholds 0.6333 (class 0) and 0.5542 (class 1): keep 0.9 and 0.8, drop 0.6
    assert keep.tolist() == [True, False, True]
    # at the last epoch a = 0: the prototype logits alone decide
    keep_end = adaptive_selection(cls, torch.zeros(3, 2), 10, 10, torch.tensor(0.5), torch.tensor([0.5, 0.5]), 0.5)
    assert keep_end.tolist() == [True, False, True]


def test_fixed_threshold_relabelling_of_the_initial_commit():
    proto = torch.log(torch.tensor([[0.9, 0.1], [0.3, 0.7], [0.5, 0.5]]))
    cls = torch.log(torch.tensor([[0.9, 0.1], [0.9, 0.1], [0.2, 0.8]]))
    # mixes: [0.9, 0.1] (> 0.8 -> 0), [0.6, 0.4] (-> argmax z = 0), [0.35, 0.65] (-> argmax z = 1)
    assert fixed_threshold_labels(proto, cls, 0.8).tolist() == [0, 0, 1]
    proto2 = torch.log(torch.tensor([[0.05, 0.95]]))
    cls2 = torch.log(torch.tensor([[0.3, 0.7]]))
    assert fixed_threshold_labels(proto2, cls2, 0.8).tolist() == [1]  # 0.825 > 0.8


def test_prototype_update_uses_the_partners_cache_and_skips_empty_classes():
    m = PLReMix({"proto_update": "fixed"}, 3, 4, mlp_factory(3))
    d = m.hp.proj_dim
    e = torch.eye(d)
    m.prototypes[0] = e[:3]
    m.prototypes[1] = e[3:6]
    # source network 1's cache: samples 0-1 confidently class 0, samples 2-3 confidently class 1
    m.plr.cached_logits[:, 1] = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [0, 9.0, 0], [0, 9.0, 0]])
    m.proto_logits[:, 1] = m.plr.cached_logits[:, 1]
    m.proj_cache[:, 1] = torch.stack([e[10], e[11], e[12], e[12]])
    m.proj_cache[:, 0] = torch.stack([e[20]] * 4)  # network 0's own cache must not be used
    m.update_prototypes(0, 1, epoch=5, num_epochs=10)
    mean0 = F.normalize(e[10] + e[11], dim=0)
    assert torch.allclose(m.prototypes[0, 0], F.normalize(0.99 * e[0] + 0.01 * mean0, dim=0), atol=1e-6)
    assert torch.allclose(m.prototypes[0, 1], F.normalize(0.99 * e[1] + 0.01 * e[12], dim=0), atol=1e-6)
    assert torch.equal(m.prototypes[0, 2], e[2])  # no sample of class 2: unchanged
    assert torch.equal(m.prototypes[1], e[3:6])  # the other network's prototypes are untouched


def _two_caches(source):
    """PLReMix (fixed update) whose two networks' caches agree on the classes but differ in q."""
    m = PLReMix({"proto_update": "fixed", "prototype_source": source, "warmup_epochs": 1}, 3, 4, mlp_factory(3))
    e = torch.eye(m.hp.proj_dim)
    m.prototypes[0], m.prototypes[1] = e[:3], e[3:6]
    for k in range(2):  # both networks: samples 0-1 confidently class 0, samples 2-3 class 1
        m.plr.cached_logits[:, k] = torch.tensor([[9.0, 0, 0], [9.0, 0, 0], [0, 9.0, 0], [0, 9.0, 0]])
        m.proto_logits[:, k] = m.plr.cached_logits[:, k]
    m.proj_cache[:, 0] = torch.stack([e[20], e[21], e[22], e[22]])  # network 0's own projections
    m.proj_cache[:, 1] = torch.stack([e[10], e[11], e[12], e[12]])  # network 1's
    m.on_epoch_end(5, ctx_for(torch.zeros(4, dtype=torch.long)))
    return m, e


@pytest.mark.parametrize("source", ["own", "partner"])
def test_prototype_source_own_moves_prototypes_toward_the_networks_own_projections(source):
    m, e = _two_caches(source)
    own = source == "own"
    # network 0's class-0 prototype: normalise(0.99 e0 + 0.01 normalise(q_a + q_b)) with q from network
    # 0 itself (e20, e21) under "own" and from its partner (e10, e11) under the official "partner"
    a, b = (20, 21) if own else (10, 11)
    p00 = m.prototypes[0, 0]
    norm = math.sqrt(0.99 ** 2 + 0.01 ** 2)  # |0.99 e0 + 0.01 (e_a + e_b) / sqrt 2|
    assert p00[0].item() == pytest.approx(0.99 / norm, abs=1e-6)  # 0.999949
    assert p00[a].item() == pytest.approx(0.01 / math.sqrt(2) / norm, abs=1e-6)  # 0.0071421
    assert p00[b].item() == pytest.approx(0.01 / math.sqrt(2) / norm, abs=1e-6)
    other = (10, 11) if own else (20, 21)
    assert p00[list(other)].abs().max().item() == 0.0  # nothing from the other network's space
    # class 1 of each network, and network 1 in the mirror image
    c = 22 if own else 12
    assert torch.allclose(m.prototypes[0, 1], F.normalize(0.99 * e[1] + 0.01 * e[c], dim=0), atol=1e-6)
    c1 = 12 if own else 22
    assert torch.allclose(m.prototypes[1, 1], F.normalize(0.99 * e[4] + 0.01 * e[c1], dim=0), atol=1e-6)
    assert torch.equal(m.prototypes[0, 2], e[2]) and torch.equal(m.prototypes[1, 2], e[5])  # no class 2


def test_prototype_source_is_partner_by_default_and_checked():
    assert PLReMix.Hyper().prototype_source == "partner"  # the official code
    with pytest.raises(ValueError, match="prototype_source"):
        PLReMix({"prototype_source": "both"}, 3, 4, mlp_factory(3))


def test_ownproto_preset_changes_only_the_prototype_source():
    from noisyfit.config import load_config

    base = load_config("plremix/cpu-cifar10n").to_dict()
    var = load_config("plremix/cpu-cifar10n-ownproto").to_dict()
    assert var["method"]["args"].pop("prototype_source") == "own"
    assert var == base


def test_plremix_and_dividemix_plr_report_the_clean_split_after_warm_up(blob_splits):
    for name in ("plremix", "dividemix_plr"):
        tr = Trainer(tiny_cfg(f"method.name={name}", "train.epochs=3", *PLR_FAST), None, splits=blob_splits)
        ep = tr.fit()["epochs"]
        assert "health" not in ep[1]  # warm-up (2 epochs): no split
        h = ep[2]["health"]  # the split fitted at the start of epoch 2, scored against the truth
        right = tr.data.train.labels == tr.data.train.true_labels
        assert set(h) >= {"clean_split_net1_share", "clean_split_net1_precision", "clean_split_net2_recall",
                          "clean_prob_net1_auroc"}, name
        assert 0.0 < h["clean_split_net1_share"] < 1.0 and h["clean_split_net1_precision"] > right.mean(), name


def test_plremix_learns_blobs_and_resumes_exactly(tmp_path, blob_splits):
    over = ("method.name=plremix", "train.epochs=5", *PLR_FAST)
    full_tr = Trainer(tiny_cfg(*over), tmp_path / "a", splits=blob_splits)
    full = full_tr.fit()
    assert full["final"]["test_acc"] > 0.9
    assert full["detection"]["auroc"] > 0.95
    ep = full["epochs"]
    assert ep[1]["contrastive"] == 1.0 and ep[3]["contrastive"] == 1.0  # flat value is exactly 1
    m = full_tr.method
    assert torch.allclose(m.prototypes.norm(dim=2), torch.ones(2, 3), atol=1e-5)
    assert m.sat_time_p.item() != pytest.approx(1 / 3)  # the adaptive state moved (3 epochs x 2 updates)
    assert "2-D" in full["method"]["flag_rule"]
    first = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits)
    assert first.fit(stop_after_epoch=3) is None
    resumed = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits, resume=True).fit()
    assert len(resumed["epochs"]) == len(full["epochs"])  # zip would hide a short run
    for a, b in zip(full["epochs"], resumed["epochs"]):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["method"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["method"]
    assert {"prototypes", "sat_time_p", "sat_p_model", "plr.cached_logits", "proto_logits", "proj_cache"} <= set(wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k


def test_plremix_runs_on_images_with_autoaugment_in_bf16():
    splits = DatasetSplits(tiny_images(64), tiny_images(32, seed=1))
    r = Trainer(tiny_cfg("method.name=plremix", "model.backbone=fastcnn", "model.args.widths=[8,8,8]",
                         "model.args.stem_width=8", "train.precision=bf16", "train.epochs=2", "train.batch_size=32",
                         "method.args.warmup_epochs=1", "method.args.kappa=1", "method.args.proj_dim=16"),
                None, splits=splits).fit()
    assert all(np.isfinite(e["train_loss"]) for e in r["epochs"])
    assert r["detection"]["auroc"] is not None


def test_ce_plr_learns_blobs_with_warmup_infonce_then_plr(blob_splits):
    tr = Trainer(tiny_cfg("method.name=ce_plr", "train.epochs=5", *PLR_FAST[:2], "data.noise=sym:0.4"), None,
                 splits=blob_splits)
    r = tr.fit()
    assert r["final"]["test_acc"] > 0.9 and r["detection"]["auroc"] > 0.9
    assert all(e["contrastive"] == 1.0 for e in r["epochs"])
    # PLR epochs also log what the flat value hides: the log-sum-exp and the negatives' share
    plr_epochs = [e for e in r["epochs"] if "plr_lse" in e]
    assert len(plr_epochs) == 3  # 5 epochs, 2 of warm-up
    assert all(0.0 < e["plr_negatives"] < 1.0 and math.isfinite(e["plr_lse"]) for e in plr_epochs)
    # after warm-up the cache holds the network's own eval logits of the last epoch start
    assert tr.method.plr.cached_logits.abs().sum() > 0
    assert set(tr.method.per_sample_state) == {"plr.cached_logits"}


def test_dividemix_plr_runs_and_adds_the_contrastive_term(blob_splits):
    r = Trainer(tiny_cfg("method.name=dividemix_plr", "train.epochs=4", *PLR_FAST), None, splits=blob_splits).fit()
    assert r["final"]["test_acc"] > 0.9 and r["detection"]["auroc"] > 0.95
    assert r["epochs"][3]["contrastive"] == 1.0 and "lx" in r["epochs"][3]


def test_dividemix_plr_contrasts_x_and_u_with_given_labels_and_the_partner_cache(blob_splits):
    tr = Trainer(tiny_cfg("method.name=dividemix_plr", "train.epochs=3", *PLR_FAST), None, splits=blob_splits)
    m, calls = tr.method, []
    plr_loss = m.plr.plr_loss

    def recording(k, net, index, labels, v1, v2, epoch, source):
        lab, _ = m.labelled_mask(index, k)  # the split is fixed for the epoch: read it at call time
        calls.append((k, source, lab.clone(), torch.equal(labels, tr.train_y[index]), net is m.nets[k]))
        return plr_loss(k, net, index, labels, v1, v2, epoch, source)

    m.plr.plr_loss = recording
    tr.fit()
    assert {c[0] for c in calls} == {0, 1}
    for k, source, lab, given_labels, own_net in calls:
        assert source == 1 - k and given_labels and own_net
        # X (network k's labelled samples) first, then as many draws from its unlabelled pool
        half = len(lab) // 2
        assert len(lab) == 2 * half and lab[:half].all() and not lab[half:].any()


def test_dividemix_logs_average_over_the_networks_that_logged_each_key(monkeypatch):
    m = DivideMix({"warmup_epochs": 0}, 3, 4, mlp_factory(3))
    m.ctx = ctx_for([0, 1, 2, 0])
    per_net = {0: {"labelled": 0.0}, 1: {"lx": 2.0, "labelled": 0.5}}  # network 0 had nothing labelled
    monkeypatch.setattr(m, "semi_loss", lambda k, batch, epoch, progress: (torch.tensor(1.0), per_net[k]))
    batch = type("B", (), {"__len__": lambda self: 4})()
    logs = m.training_step(batch, epoch=1)
    assert logs["lx"] == 2.0 and logs["labelled"] == 0.25 and float(logs["loss"]) == 2.0


def test_bad_plr_options_are_refused():
    with pytest.raises(ValueError, match="plr_form"):
        PLReMix({"plr_form": "simclr"}, 3, 4, mlp_factory(3))
    with pytest.raises(ValueError, match="proto_update"):
        PLReMix({"proto_update": "sometimes"}, 3, 4, mlp_factory(3))
    assert PLReMix({}, 3, 4, mlp_factory(3)).hp.mix_views == "strong"
    assert math.isclose(PLReMix({}, 3, 4, mlp_factory(3)).hp.plr_temperature, 1.0)


MY_PRESETS = ["dividemix", "plremix", "ce_plr", "dividemix_plr", "elr", "elr_plus"]


@pytest.mark.parametrize("family", MY_PRESETS)
def test_presets_load_and_keep_the_shared_cpu_protocol(family):
    from noisyfit.config import load_config
    from noisyfit.methods.base import get_method_class

    cpu, paper = load_config(f"{family}/cpu-cifar10n"), load_config(f"{family}/paper-cifar10n")
    for cfg in (cpu, paper):
        get_method_class(cfg.method.name).resolve_hyper(cfg.method.args)  # every arg is a known hyper-parameter
    assert (cpu.model.backbone, cpu.train.epochs, cpu.train.batch_size, cpu.optim.lr) == ("fastcnn", 12, 512, 0.2)
    assert cpu.method.name == paper.method.name
    if cpu.method.args.get("warmup_epochs") is not None and cpu.method.name != "elr":
        assert paper.method.args["warmup_epochs"] == 10 and cpu.method.args["warmup_epochs"] == 3


def _step_loss_with_plr_fixed_at(method_cls, lambda_c, plr_value=0.25):
    """A post-warm-up step's loss with the PLR loss replaced by a constant: what lambda_c adds."""
    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    m = method_cls({"lambda_c": lambda_c, "warmup_epochs": 1}, 3, 6, mlp_factory())
    m.ctx = ctx_for(labels, x=torch.randn(6, 8))
    m.plr.plr_loss = lambda *a, **k: torch.tensor(plr_value)
    m.plr.last_stats = {}
    batch = m.ctx.batch_of(torch.arange(6))
    if method_cls is CEPLR:
        return float(m.training_step(batch, epoch=1)["loss"].detach())
    m.clean_prob[:, 1] = torch.tensor([0.9, 0.7, 0.1, 0.2, 0.3, 0.4])
    m.prepare_unlabelled()
    return float(m.semi_loss(0, batch, epoch=1, progress=1.5)[0].detach())


@pytest.mark.parametrize("name", ["ce_plr", "dividemix_plr", "plremix"])
def test_the_plr_term_enters_the_step_loss_weighted_by_lambda_c(name):
    from noisyfit.methods.base import get_method_class

    cls = get_method_class(name)
    base = _step_loss_with_plr_fixed_at(cls, 0.0)
    assert _step_loss_with_plr_fixed_at(cls, 1.0) == pytest.approx(base + 0.25, abs=1e-6)
    assert _step_loss_with_plr_fixed_at(cls, 2.0) == pytest.approx(base + 0.5, abs=1e-6)
