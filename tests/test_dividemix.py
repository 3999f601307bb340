import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_cfg, tiny_images

from noisyfit.data.training_set import TrainingSet
from noisyfit.data.labeled import DatasetSplits
from noisyfit.engine.trainer import Trainer
from noisyfit.methods.context import MethodContext
from noisyfit.methods.dividemix import DivideMix, seed_for
from noisyfit.models.backbones import create_backbone
from noisyfit.ops.gmm import gmm_split_1d, minmax_normalise
from noisyfit.ops.mixmatch import negative_entropy


def ctx_for(labels, x=None):
    """The public context around fixed tensors (rows default to one zero feature: only labels are read)."""
    labels = torch.as_tensor(labels)
    ts = TrainingSet.from_tensors(x if x is not None else torch.zeros(len(labels), 1), labels)
    return MethodContext(ts, num_epochs=10, seed=0)


def mlp_factory(c=3, d=8):
    return lambda: create_backbone("mlp", num_classes=c, input_shape=(d,), hidden=[16])


def test_each_network_trains_on_its_partners_split():
    m = DivideMix({"p_threshold": 0.5}, 3, 6, mlp_factory())
    m.clean_prob.copy_(torch.tensor([[0.9, 0.1], [0.2, 0.8], [0.6, 0.6], [0.1, 0.1], [0.7, 0.4], [0.4, 0.7]]))
    idx = torch.arange(6)
    lab0, w0 = m.labelled_mask(idx, 0)
    lab1, w1 = m.labelled_mask(idx, 1)
    assert lab0.tolist() == [False, True, True, False, False, True]  # network 0 reads column 1
    assert lab1.tolist() == [True, False, True, False, True, False]
    assert torch.equal(w0, m.clean_prob[:, 1]) and torch.equal(w1, m.clean_prob[:, 0])


def test_unlabelled_draws_cycle_through_the_partners_noisy_set():
    torch.manual_seed(0)
    m = DivideMix({}, 3, 10, mlp_factory())
    partner = torch.ones(10)
    noisy = [1, 4, 6, 7, 9]
    partner[noisy] = 0.2
    m.clean_prob[:, 1] = partner  # network 0 draws from network 1's noisy set
    m.prepare_unlabelled()
    a, b = m.draw_unlabelled(0, 2), m.draw_unlabelled(0, 2)
    first_pass = torch.cat([a, b]).tolist()
    assert len(set(first_pass)) == 4 and set(first_pass) <= set(noisy)  # without replacement within a pass
    c = m.draw_unlabelled(0, 2)  # only one left: reshuffle, as the official loader restarts
    assert set(c.tolist()) <= set(noisy) and len(set(c.tolist())) == 2
    assert sorted(m.draw_unlabelled(0, 7).tolist()[:5]) == noisy  # larger than the pool: whole passes
    assert len(m.draw_unlabelled(0, 0)) == 0


def test_selection_fits_1d_gmm_on_normalised_ce_averaged_over_the_window():
    torch.manual_seed(0)
    n = 200
    labels = torch.randint(0, 3, (n,))
    m = DivideMix({"loss_window": 2}, 3, n, mlp_factory())
    ctx = ctx_for(labels)
    outs = [torch.randn(n, 6) * s for s in (1.0, 3.0)]
    for epoch, o in enumerate(outs):
        m.fit_selection(o, ctx, epoch)
    hist = []
    for o in outs:
        ce = [F.cross_entropy(o[:, 3 * k:3 * k + 3], labels, reduction="none").numpy() for k in range(2)]
        hist.append([minmax_normalise(c) for c in ce])
    for k in range(2):
        assert np.allclose(m.loss_hist[:, k, 0].numpy(), hist[1][k], atol=1e-6)  # newest first
        assert np.allclose(m.loss_hist[:, k, 1].numpy(), hist[0][k], atol=1e-6)
        avg = m.loss_hist[:, k].mean(1).numpy()
        ref = gmm_split_1d(avg, normalise=False, random_state=seed_for(ctx, 1, k)).clean_prob
        assert np.allclose(m.clean_prob[:, k].numpy(), ref, atol=1e-6)
    assert int(m.num_fits) == 2


def test_warmup_confidence_penalty_adds_negative_entropy():
    torch.manual_seed(0)
    x = torch.randn(16, 8)
    y = torch.randint(0, 3, (16,))
    batch = TrainingSet.from_tensors(x, y).batch(torch.arange(16))
    m = DivideMix({"conf_penalty": True}, 3, 16, mlp_factory())
    loss, _ = m.warmup_loss(0, batch)
    logits = m.nets[0](batch.x)
    assert loss.item() == pytest.approx((F.cross_entropy(logits, y) + negative_entropy(logits)).item(), abs=1e-6)


def test_dividemix_learns_blobs_with_ramped_lambda_u_and_scores_noisy_labels_low(blob_splits):
    tr = Trainer(tiny_cfg("method.name=dividemix", "train.epochs=5", "method.args.warmup_epochs=2",
                          "method.args.rampup_epochs=2", "data.noise=sym:0.4"), None, splits=blob_splits)
    r = tr.fit()
    assert r["final"]["test_acc"] > 0.9
    det = r["detection"]
    assert det["auroc"] > 0.95 and det["f1"] > 0.9
    ep = r["epochs"]
    assert "lx" not in ep[1] and "ce" in ep[1]  # warm-up epochs are plain CE
    # lambda_u = 25 * clip((epoch + s * 64 / 760 - 2) / 2, 0, 1), averaged over the 11 steps s = 0..10
    for e in (2, 3, 4):
        expected = np.mean([25 * np.clip((e + s * 64 / 760 - 2) / 2, 0, 1) for s in range(11)])
        assert ep[e]["lambda_u"] == pytest.approx(expected, rel=1e-6)
    m = tr.method
    labels = tr.data.train.labels
    scores = m.clean_scores(labels)
    assert np.allclose(scores, m.clean_prob.mean(1).numpy())  # the average of the two networks' posteriors
    assert np.array_equal(m.noisy_flags(labels), ~(scores > 0.5))
    assert not torch.equal(m.clean_prob[:, 0], m.clean_prob[:, 1])  # two networks, two fits
    assert "1-D GMM" in r["method"]["flag_rule"]


def test_resume_reproduces_the_selection_state_exactly(tmp_path, blob_splits):
    over = ("method.name=dividemix", "train.epochs=4", "method.args.warmup_epochs=1", "method.args.rampup_epochs=1",
            "method.args.loss_window=2")
    full = Trainer(tiny_cfg(*over), tmp_path / "a", splits=blob_splits).fit()
    first = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits)
    assert first.fit(stop_after_epoch=2) is None
    resumed_tr = Trainer(tiny_cfg(*over), tmp_path / "b", splits=blob_splits, resume=True)
    # the checkpoint carries the selection state of epoch 1 (the first post-warm-up epoch)
    assert int(resumed_tr.method.num_fits) == 1 and resumed_tr.method.clean_prob.min() < 0.5
    resumed = resumed_tr.fit()
    assert len(resumed["epochs"]) == len(full["epochs"])  # zip would hide a short run
    for a, b in zip(full["epochs"], resumed["epochs"]):
        assert a["train_loss"] == b["train_loss"] and a["test_acc"] == b["test_acc"]
    wa = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=False)["method"]
    wb = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=False)["method"]
    assert {"clean_prob", "loss_hist", "num_fits"} <= set(wa)
    for k in wa:
        assert torch.equal(wa[k], wb[k]), k
    pa, pb = np.load(tmp_path / "a" / "per_sample.npz"), np.load(tmp_path / "b" / "per_sample.npz")
    assert np.array_equal(pa["clean_score"], pb["clean_score"]) and np.array_equal(pa["flag"], pb["flag"])


def test_dividemix_runs_on_images_in_bf16():
    splits = DatasetSplits(tiny_images(96), tiny_images(32, seed=1))
    r = Trainer(tiny_cfg("method.name=dividemix", "model.backbone=fastcnn", "model.args.widths=[8,8,8]",
                         "model.args.stem_width=8", "train.precision=bf16", "train.epochs=2", "train.batch_size=32",
                         "method.args.warmup_epochs=1", "method.args.mix_views=strong"), None, splits=splits).fit()
    assert r["compute"]["precision"] == "bf16" and all(np.isfinite(e["train_loss"]) for e in r["epochs"])
    assert r["epochs"][1]["labelled"] > 0


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match="mix_views"):
        DivideMix({"mix_views": "medium"}, 3, 4, mlp_factory())
    with pytest.raises(ValueError, match="unknown hyper-parameter"):
        DivideMix({"lambda_c": 1.0}, 3, 4, mlp_factory())


DDP_WORKER = textwrap.dedent("""
    import sys
    import numpy as np
    import torch
    sys.path.insert(0, sys.argv[2])
    from conftest import blobs, tiny_cfg
    from noisyfit.data.labeled import DatasetSplits, LabeledData
    from noisyfit.engine.trainer import Trainer

    torch.set_num_threads(1)
    x, y = blobs(512)
    xt, yt = blobs(128, seed=3)
    splits = DatasetSplits(LabeledData(x, y, list("abc")), LabeledData(xt, yt, list("abc")))
    runs = {"dividemix": ["method.args.warmup_epochs=1", "method.args.rampup_epochs=1"],
            "plremix": ["method.args.warmup_epochs=1", "method.args.rampup_epochs=1", "method.args.kappa=1"],
            "elr": []}
    for name, args in runs.items():
        cfg = tiny_cfg(f"method.name={name}", "train.epochs=3", "train.batch_size=64", "data.val_fraction=0.125",
                       "train.checkpoint=false", *args)
        t = Trainer(cfg, None, splits=splits)
        t.fit()
        state = {k: v.detach().cpu().numpy() for k, v in t.method.state_dict().items() if torch.is_tensor(v)}
        labels = t.data.train.labels
        np.savez(f"{sys.argv[1]}/{name}_rank{t.rank}.npz", clean=t.method.clean_scores(labels),
                 flags=t.method.noisy_flags(labels), world=t.world_size, **state)
""")


@pytest.mark.slow
def test_two_ranks_end_with_identical_selection_state_and_weights(tmp_path):
    worker = tmp_path / "worker.py"
    worker.write_text(DDP_WORKER)
    res = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          str(worker), str(tmp_path), str(Path(__file__).parent)],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("dividemix", "plremix", "elr"):
        a, b = np.load(tmp_path / f"{name}_rank0.npz"), np.load(tmp_path / f"{name}_rank1.npz")
        assert int(a["world"]) == 2
        # GMM posteriors, caches, prototypes, adaptive-threshold state, ELR targets, weights, BN statistics
        for key in a.files:
            assert np.array_equal(a[key], b[key]), (name, key)


@pytest.mark.parametrize("name,noise,lambda_u", [("sym20", "symall:0.2", 0), ("sym50", "symall:0.5", 25),
                                                 ("sym80", "symall:0.8", 25), ("sym90", "symall:0.9", 50),
                                                 ("asym40", "asym:0.4", 0)])
def test_per_noise_presets_carry_the_official_lambda_u(name, noise, lambda_u):
    from noisyfit.config import load_config

    cfg = load_config(f"dividemix/paper-cifar10-{name}")
    hp = DivideMix.resolve_hyper(cfg.method.args)
    assert (cfg.data.dataset, cfg.data.noise, hp.lambda_u) == ("cifar10", noise, lambda_u)
    assert hp.conf_penalty == (name == "asym40")
    assert (hp.loss_window, hp.p_threshold) == ((5, 0.6) if name == "sym90" else (1, 0.5))


def test_semi_loss_is_lx_plus_ramped_lambda_u_lu_plus_prior_penalty_with_partner_weights(monkeypatch):
    import noisyfit.methods.dividemix as dm

    torch.manual_seed(0)
    labels = torch.tensor([0, 1, 2, 0, 1, 2])
    m = DivideMix({"p_threshold": 0.5, "lambda_u": 25.0, "warmup_epochs": 1, "rampup_epochs": 2}, 3, 6,
                  mlp_factory())
    m.ctx = ctx_for(labels, x=torch.randn(6, 8))
    # network 0 trains on network 1's split: 0 and 1 labelled (weights 0.9, 0.7), 2..5 unlabelled
    m.clean_prob[:, 1] = torch.tensor([0.9, 0.7, 0.1, 0.2, 0.3, 0.4])
    m.clean_prob[:, 0] = 0.05  # network 0's own column must not weight its labels
    m.prepare_unlabelled()
    seen = {}
    real_refine = dm.co_refine

    def recording_refine(px, y, w, temperature):
        seen["w"] = w.clone()
        return real_refine(px, y, w, temperature)

    monkeypatch.setattr(dm, "co_refine", recording_refine)
    partner_modes = []
    m.nets[1].register_forward_hook(lambda mod, i, o: partner_modes.append(mod.training))
    m.train()
    batch = m.ctx.batch_of(torch.arange(6))
    # progress 2.0 epochs: lambda_u = 25 * clip((2.0 - 1) / 2, 0, 1) = 12.5
    loss, logs = m.semi_loss(0, batch, epoch=2, progress=2.0)
    assert logs["lambda_u"] == pytest.approx(12.5)
    assert logs["labelled"] == pytest.approx(2 / 6)
    assert torch.allclose(seen["w"], torch.tensor([0.9, 0.7]))
    assert partner_modes and not any(partner_modes)  # the partner guesses in eval mode
    assert m.nets[1].training  # ... and is put back in train mode
    expected = logs["lx"] + 12.5 * logs["lu"] + logs["penalty"]
    assert loss.item() == pytest.approx(float(expected), abs=1e-6)
    assert logs["lu"] > 0 and logs["penalty"] > 0  # both terms present, so dropping one would show


def test_clean_score_averages_the_two_posteriors_and_flags_at_or_below_the_threshold():
    m = DivideMix({"p_threshold": 0.5}, 3, 4, mlp_factory())
    assert m.clean_scores(np.zeros(4, dtype=int)) is None  # no GMM fit yet: no scores, no flags
    m.clean_prob.copy_(torch.tensor([[0.9, 0.7], [0.4, 0.5], [0.25, 0.75], [0.875, 0.125]]))
    m.num_fits += 1
    scores = m.clean_scores(np.zeros(4, dtype=int))
    np.testing.assert_allclose(scores, [0.8, 0.45, 0.5, 0.5], atol=1e-6)
    # exactly 0.5 (binary fractions) is not above the threshold: one confident network does not outvote the other
    np.testing.assert_array_equal(m.noisy_flags(np.zeros(4, dtype=int)), [False, True, True, True])


def test_health_is_each_networks_clean_split_after_warm_up_only():
    from noisyfit.metrics import health_figures

    m = DivideMix({"p_threshold": 0.5, "warmup_epochs": 2}, 3, 4, mlp_factory())
    m.clean_prob.copy_(torch.tensor([[0.9, 0.7], [0.4, 0.5], [0.25, 0.75], [0.875, 0.125]]))
    m.num_fits += 1
    assert m.health(1) == {}  # warm-up: no split yet
    h = m.health(2)
    assert h["clean_split_net1"].tolist() == [True, False, False, True]  # network 1's GMM; net 2 trains on it
    assert h["clean_split_net2"].tolist() == [True, False, True, False]  # 0.5 is not above the threshold
    np.testing.assert_allclose(h["clean_prob_net2"], [0.7, 0.5, 0.75, 0.125])
    noisy = np.array([False, True, False, True])
    fig = health_figures(h, noisy)
    # net 1's split keeps samples 0 (right) and 3 (wrong): precision 1/2, recall 1/2 of the right labels
    assert fig["clean_split_net1_precision"] == 0.5 and fig["clean_split_net1_recall"] == 0.5
    assert fig["clean_split_net2_precision"] == 1.0 and fig["clean_split_net2_recall"] == 1.0
    # AUROC by hand: net 2 ranks both right labels above both wrong ones; net 1 gets 2 of 4 pairs
    assert fig["clean_prob_net2_auroc"] == 1.0 and fig["clean_prob_net1_auroc"] == 0.5


@pytest.mark.parametrize("method", ["dividemix", "plremix"])
def test_backward_per_network_gives_the_joint_backwards_training_exactly(blob_splits, method):
    # the trainer offers MethodContext.backward: each network's loss is back-propagated as soon as it is
    # computed (one graph held at a time). The networks share no parameters, so the run must be the one a
    # single backward of the summed loss gives (ctx.backward = None: the plain-loop path), to the bit.
    over = (f"method.name={method}", "train.epochs=3", "method.args.warmup_epochs=1", "method.args.rampup_epochs=1",
            "optim.grad_clip=5")
    if method == "plremix":
        over += ("method.args.kappa=1",)
    runs = []
    for per_network in (True, False):
        tr = Trainer(tiny_cfg(*over), None, splits=blob_splits)
        calls = []
        if per_network:
            part = tr.ctx.backward
            tr.ctx.backward = lambda loss: (calls.append(1), part(loss))
        else:
            tr.ctx.backward = None
        r = tr.fit()
        runs.append((r, {k: v.clone() for k, v in tr.method.state_dict().items()}, len(calls)))
    (per, per_state, n_calls), (joint, joint_state, _) = runs
    assert n_calls == 2 * 3 * 11  # two networks, every step of 3 epochs (760 samples / 64: 11 full batches)
    assert [e["train_loss"] for e in per["epochs"]] == [e["train_loss"] for e in joint["epochs"]]
    assert set(per_state) == set(joint_state)
    for k in per_state:
        assert torch.equal(per_state[k], joint_state[k]), k
