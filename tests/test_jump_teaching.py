"""Jump-teaching and the jump-selection wrapper.

Also a torchrun worker: ``python -m torch.distributed.run ... tests/test_jump_teaching.py OUT`` (see the
DDP test at the end).
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from conftest import blobs, tiny_cfg, tiny_images  # noqa: E402
from noisyfit.data.batches import Batch, epoch_permutation  # noqa: E402
from noisyfit.data.labeled import DatasetSplits, LabeledData  # noqa: E402
from noisyfit.engine.trainer import Trainer  # noqa: E402
from noisyfit.methods.base import register_method  # noqa: E402
from noisyfit.methods.jump_teaching import JumpTeaching, jump_teaching_clean, max_bit_variance  # noqa: E402
from noisyfit.models.backbones import create_backbone  # noqa: E402
from noisyfit.ops.hadamard import bitwise_bce, hadamard_codes  # noqa: E402
from noisyfit.ops.jump import JumpSelection  # noqa: E402


def decision(epoch: int, index: torch.Tensor) -> torch.Tensor:
    """A selector whose answer for a sample changes every epoch (so stale and fresh are distinguishable)."""
    return (3 * index + epoch) % 4 == 0


# ------------------------------------------------------------------------------- the wrapper
def test_flags_used_at_a_visit_were_decided_at_the_previous_visit():
    n, bs = 30, 7  # 30 % 7 = 2 samples skipped per epoch, so some "previous visits" are 2 epochs back
    jump = JumpSelection(n, jump_rate=1.0, initial=False)
    last = {}  # sample -> decision at its last visit
    for epoch in range(5):
        perm = epoch_permutation(n, seed=3, epoch=epoch)
        differs = 0
        for s in range(0, n - n % bs, bs):
            idx = perm[s:s + bs]
            used = jump.select(idx, decision, epoch, idx)
            expected = torch.tensor([last.get(int(i), False) for i in idx])
            assert torch.equal(used, expected)
            differs += int((used != decision(epoch, idx)).sum())
            for i in idx.tolist():
                last[i] = bool(decision(epoch, torch.tensor(i)))
        if epoch > 0:
            assert differs > 0  # the current step's decision was not the one applied
    assert torch.equal(jump.flags, torch.tensor([last.get(i, False) for i in range(n)]))


def test_jump_rate_extremes_and_middle():
    idx = torch.arange(6)
    old = torch.tensor([True, False, True, False, True, False])
    new = ~old
    for rate, expect in ((1.0, old), (0.0, new)):
        jump = JumpSelection(6, jump_rate=rate)
        jump(idx, old)
        state = torch.get_rng_state()
        assert torch.equal(jump(idx, new), expect)
        assert torch.equal(torch.get_rng_state(), state)  # the extremes draw no random number
        assert torch.equal(jump.flags, new)  # fresh flags are stored either way
    torch.manual_seed(0)
    jump = JumpSelection(6, jump_rate=0.3)
    stale = 0
    for _ in range(400):
        jump(idx, old)
        stale += jump.last_was_stale
    assert 0.24 < stale / 400 < 0.36  # binomial(400, 0.3): sd 0.023
    with pytest.raises(ValueError, match="jump_rate"):
        JumpSelection(3, jump_rate=1.5)


def test_wide_table_and_initial_value():
    jump = JumpSelection(4, initial=True, width=2)
    assert jump.flags.shape == (4, 2) and bool(jump.flags.all())
    got = jump(torch.tensor([2, 0]), torch.tensor([[True, False], [False, False]]))
    assert bool(got.all())  # never seen: the initial value
    assert jump.flags.tolist() == [[False, False], [True, True], [True, False], [True, True]]


# ------------------------------------------------------------------------------- the criterion
def test_variance_criterion_and_prediction_recovery_on_hand_made_loss_vectors():
    losses = torch.tensor([
        [0.10, 0.10, 0.10, 0.10],  # var 0                                   -> clean
        [0.02, 0.02, 0.04, 0.04],  # var (4 * 1e-4) / 3 = 1.33e-4 < 1e-3      -> clean
        [0.00, 0.00, 0.06, 0.06],  # unbiased var 0.0036 / 3 = 1.2e-3 -> noisy (biased 9e-4: clean)
        [0.00, 0.00, 0.10, 0.10],  # var 0.01 / 3 = 3.3e-3                    -> noisy
        [0.00, 0.00, 0.10, 0.10],  # same, but the classifier agrees          -> clean (recovery)
    ])
    labels = torch.tensor([0, 1, 2, 0, 1])
    logits = torch.zeros(5, 3)
    logits[torch.arange(5), torch.tensor([1, 2, 0, 2, 1])] = 5.0  # only row 4 predicts its label
    clean = jump_teaching_clean(losses, logits, labels, tau=1e-3)
    assert clean.tolist() == [True, True, False, False, True]


def test_code_space_loss_distribution_separates_a_wrong_label():
    codes = hadamard_codes(10, 32)
    h = torch.stack([codes[3] * 0.99, codes[3] * 0.99, torch.zeros(32)])  # confident 3 (x2), undecided
    given = torch.tensor([3, 5, 5])
    lv = bitwise_bce(h, codes[given])
    var = lv.var(dim=1)
    # label 3 = output: every bit ~ -log(0.995); label 5: 16 bits right, 16 bits at -log(0.005)
    assert var[0] < 1e-6
    right, wrong = -np.log(0.995), -np.log(0.005)
    assert float(var[1]) == pytest.approx(((wrong - right) / 2) ** 2 * 32 / 31, rel=1e-3)
    assert float(var[2]) < 1e-10  # an undecided output is "clean" by variance alone: the rule's blind spot
    assert float(var.max()) < max_bit_variance(32)


# ------------------------------------------------------------------------------- the training step
@register_method("_jt_probe")
class JumpProbe(JumpTeaching):
    """Jump-teaching whose fresh decision is ``decision(epoch, index)``, so the applied one is observable."""

    def __init__(self, *a):
        super().__init__(*a)
        self.log = []  # (epoch, index, used)

    def fresh_flags(self, batch, z, bit_losses):
        return decision(self._epoch, batch.index)

    def training_step(self, batch, epoch):
        self._epoch = epoch
        out = super().training_step(batch, epoch)
        self.log.append((epoch, batch.index.clone(), self.last_selection.clone()))
        return out


class _Aug:
    """Feature rows: every view is the row itself."""

    def weak(self, x, index=None):
        return x.float()

    def strong(self, x, index=None):
        return x.float()


def _make(n=20, c=3, **hyper):
    x, y = blobs(n, c=c)

    def make():
        return create_backbone("mlp", num_classes=c, input_shape=(8,), hidden=[16], batchnorm=False)

    m = JumpProbe(dict(code_dropout=0.0, **hyper), c, n, make)
    return m, torch.from_numpy(x), torch.from_numpy(y)


def test_step_loss_uses_all_samples_in_warm_up_then_last_visit_flags_scaled_by_S_over_B():
    m, x, y = _make(warmup_epochs=1)
    idx = torch.arange(20)

    def batch():
        return Batch(index=idx, y=y[idx], raw=x[idx], augmenter=_Aug())

    def per_sample():
        z, h = m.forward_heads(x)
        return (torch.nn.functional.cross_entropy(z, y, reduction="none")
                + bitwise_bce(h, m.codes[y]).mean(dim=1))

    with torch.no_grad():
        ref = per_sample()
    out0 = m.training_step(batch(), 0)  # warm-up: all samples, plain mean
    assert torch.allclose(out0["loss"], ref.mean(), atol=1e-6)
    assert m.last_selection.all()
    out1 = m.training_step(batch(), 1)  # selection: the flags decided at epoch 0
    s = decision(0, idx)
    assert torch.equal(m.last_selection, s) and not torch.equal(s, decision(1, idx))
    assert torch.allclose(out1["loss"], (s.sum() / 20) * ref[s].mean(), atol=1e-6)
    out1["loss"].backward()  # the loss has a graph
    m.jump.flags.zero_()
    out2 = m.training_step(batch(), 2)
    assert out2["loss"] == 0 and out2["loss"].requires_grad  # empty S: zero loss, still a graph


def test_blend_of_weak_and_strong_views_with_weak_dominating():
    m, _, _ = _make(warmup_epochs=1)

    class Views:
        x = torch.zeros(4, 8)

        def strong(self):
            return torch.ones(4, 8)

    class NoStrong(Views):
        def strong(self):
            raise AssertionError("warm-up must not draw a strong view")

    assert torch.equal(m._input(NoStrong(), warm=True), torch.zeros(4, 8))
    torch.manual_seed(0)
    lams = []
    for _ in range(300):
        blended = m._input(Views(), warm=False)
        assert torch.allclose(blended, blended[0, 0].expand(4, 8))  # one lambda per batch
        lams.append(1.0 - float(blended[0, 0]))
    lams = np.array(lams)
    assert lams.min() >= 0.5 and lams.max() <= 1.0
    # E[max(L, 1 - L)] for L ~ Beta(5, 5) = 319/512 = 0.6230 (by integration); 300 draws: sd ~ 0.005
    assert lams.mean() == pytest.approx(0.623, abs=0.02)


# ------------------------------------------------------------------------------- in the trainer
def test_in_the_trainer_the_applied_selection_is_the_previous_visits_decision(blob_splits):
    t = Trainer(tiny_cfg("method.name=_jt_probe", "train.epochs=4", "method.args.warmup_epochs=1"), None,
                splits=blob_splits)
    r = t.fit()
    last: dict = {}
    checked = 0
    for epoch, idx, used in t.method.log:
        if epoch >= 1:
            expected = torch.tensor([last.get(int(i), False) for i in idx])
            assert torch.equal(used, expected)
            checked += len(idx)
        else:
            assert used.all()
        for i, d in zip(idx.tolist(), decision(epoch, idx).tolist(), strict=True):
            last[i] = d
    assert checked > 0
    n = t.method.num_samples
    assert torch.equal(t.method.jump.flags, torch.tensor([last.get(i, False) for i in range(n)]))
    # the health row of the last epoch is the selection its steps applied, scored against the truth
    applied = np.zeros(n, dtype=bool)
    for epoch, idx, used in t.method.log:
        if epoch == 3:
            applied[idx[used].numpy()] = True
    right = t.data.train.labels == t.data.train.true_labels
    health = r["epochs"][3]["health"]
    assert health["selected_share"] == pytest.approx(applied.mean())
    assert health["selected_precision"] == pytest.approx(right[applied].mean())
    assert health["rule_clean_share"] == pytest.approx(t.method.jump.flags.float().mean().item())
    assert "selected_share" not in r["epochs"][0]["health"]  # warm-up: everyone trains


def test_health_is_the_applied_selection_after_warm_up_and_the_rules_latest_decision():
    m, x, y = _make(warmup_epochs=1)  # 20 samples; the batch visits the first 16
    idx = torch.arange(16)

    def step(epoch):
        m.on_epoch_start(epoch, None)
        m.training_step(Batch(index=idx, y=y[idx], raw=x[idx], augmenter=_Aug()), epoch)
        return m.health(epoch)

    h0 = step(0)  # warm-up: no selection to report; the rule's decision (i % 4 == 0) is stored
    assert "selected" not in h0
    assert np.flatnonzero(h0["rule_clean"]).tolist() == [0, 4, 8, 12]
    h1 = step(1)  # applied: the epoch-0 decisions; fresh (stored for epoch 2): i % 4 == 1
    assert np.flatnonzero(h1["selected"]).tolist() == [0, 4, 8, 12]
    assert np.flatnonzero(h1["rule_clean"]).tolist() == [1, 5, 9, 13]
    saved = m.transient_state()
    m.on_epoch_start(2, None)  # a new epoch starts with nothing selected ...
    assert not m.health(2)["selected"].any()
    m.load_transient_state(saved)  # ... and a mid-epoch resume restores what was
    assert np.flatnonzero(m.health(2)["selected"]).tolist() == [0, 4, 8, 12]


def test_flags_are_per_sample_state_in_the_checkpoint():
    m, _, _ = _make()
    assert m.per_sample_state == ("jump.flags", "epoch_selected.values")
    assert "epoch_selected.values" not in m.state_dict()  # the epoch's record is transient
    buf = m.get_buffer("jump.flags")  # how the trainer finds it to gather across ranks
    assert buf.shape == (20,) and buf.dtype == torch.bool
    assert "jump.flags" in m.state_dict()


def test_jump_teaching_learns_blobs_with_30pct_noise_and_detects_it(blob_splits):
    t = Trainer(tiny_cfg("method.name=jump_teaching", "train.epochs=12", "method.args.warmup_epochs=3"),
                None, splits=blob_splits)
    r = t.fit()
    last = r["epochs"][-1]
    assert r["final"]["test_acc"] > 0.9 and last["test_acc_code"] > 0.9  # both heads
    det = r["detection"]
    assert det["auroc"] > 0.8 and det["f1"] > 0.8
    assert det["estimated_noise_rate"] == pytest.approx(det["true_noise_rate"], abs=0.08)
    labels = t.data.train.labels
    assert np.array_equal(t.method.noisy_flags(labels), ~t.method.jump.flags.numpy())
    # scores: the rule as a ranking -> score > -tau exactly when the final pass calls the sample clean
    s = t.method.clean_scores(labels)
    var = t.method.final_variance.numpy()
    agrees = t.method.final_probs.argmax(1).numpy() == labels
    assert np.array_equal(s > -1e-3, (var < 1e-3) | agrees)
    assert "Hadamard" in r["method"]["flag_rule"]


def test_images_in_bf16_blend_views_and_log_both_accuracies():
    splits = DatasetSplits(tiny_images(64), tiny_images(32, seed=1))
    r = Trainer(tiny_cfg("method.name=jump_teaching", "model.backbone=fastcnn", "model.args.widths=[8,8,8]",
                         "model.args.stem_width=8", "train.precision=bf16", "train.epochs=2",
                         "train.batch_size=32", "method.args.warmup_epochs=1"), None, splits=splits).fit()
    e = r["epochs"][-1]
    assert np.isfinite(e["train_loss"]) and 0.0 <= e["test_acc_code"] <= 1.0
    assert e["stale_batch"] == 1.0 and 0.0 <= e["selected"] <= 1.0


# ------------------------------------------------------------------------------- DDP
WORKER_CFG = ("method.name=jump_teaching", "model.args.batchnorm=false", "train.epochs=3",
              "train.batch_size=64", "data.val_fraction=0.125", "train.checkpoint=false",
              "method.args.warmup_epochs=1", "method.args.code_dropout=0")


def _worker(out: str) -> None:
    torch.set_num_threads(1)
    x, y = blobs(512)
    xt, yt = blobs(128, seed=3)
    names = ["a", "b", "c"]
    splits = DatasetSplits(LabeledData(x, y, names), LabeledData(xt, yt, names))
    t = Trainer(tiny_cfg(*WORKER_CFG), None, splits=splits)
    t.fit()
    np.savez(f"{out}/rank{t.rank}.npz", flags=t.method.jump.flags.numpy(), world=t.world_size)


@pytest.mark.slow
def test_two_process_ddp_gathers_the_flags_by_sample_index(tmp_path):
    def run(cmd):
        res = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]

    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    run([sys.executable, __file__, str(tmp_path / "one")])
    run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", __file__,
         str(tmp_path / "two")])
    a = np.load(tmp_path / "one" / "rank0.npz")
    r0, r1 = np.load(tmp_path / "two" / "rank0.npz"), np.load(tmp_path / "two" / "rank1.npz")
    assert int(r0["world"]) == 2
    # every rank holds every sample's flag (each wrote only its own half of each batch)
    np.testing.assert_array_equal(r0["flags"], r1["flags"])
    # and they are the single-process flags (no batch norm, no dropout: same model up to float order)
    assert (r0["flags"] == a["flags"]).mean() > 0.98


@pytest.mark.parametrize("protocol,epochs,warmup,momentum", [("cpu", 12, 2, 0.9), ("paper", 200, 30, 0.0)])
def test_presets(protocol, epochs, warmup, momentum):
    from noisyfit.config import load_config

    cfg = load_config(f"jump_teaching/{protocol}-cifar10n")
    hp = JumpTeaching.resolve_hyper(cfg.method.args)
    assert cfg.method.name == "jump_teaching" and cfg.train.epochs == epochs
    got = (hp.warmup_epochs, hp.tau, hp.temperature, hp.code_bits, hp.blend_alpha)
    assert got == (warmup, 1e-3, 2.0, 32, 5.0)
    assert (cfg.optim.name, cfg.optim.lr, cfg.optim.momentum) == ("sgd", 0.2, momentum)


def test_classifier_logits_are_divided_by_the_temperature_in_training_and_prediction():
    m, x, _ = _make(warmup_epochs=1)  # default T = 2
    assert m.hp.temperature == 2.0
    with torch.no_grad():
        z_raw = m.net(x).float()
        assert torch.allclose(m.forward_heads(x)[0], z_raw / 2, atol=1e-6)
        assert torch.allclose(m.predict_logits(x), z_raw / 2, atol=1e-6)


if __name__ == "__main__":
    _worker(sys.argv[1])

