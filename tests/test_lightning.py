"""A noisyfit method inside PyTorch Lightning matches the same method in noisyfit's own Trainer."""

import importlib.util
import warnings

import numpy as np
import pytest
import torch
from conftest import tiny_cfg

pytestmark = pytest.mark.skipif(importlib.util.find_spec("lightning") is None, reason="lightning not installed")

OVER = ("method.name=coteaching", "method.args.num_gradual=2", "optim.name=adam", "optim.lr=0.001",
        "data.val_fraction=0", "train.epochs=4", "train.checkpoint=false")


def test_coteaching_in_lightning_matches_the_native_run(blob_splits):
    import lightning as L

    from noisyfit.data.training_set import TrainingSet
    from noisyfit.engine.trainer import Trainer
    from noisyfit.integrations.lightning import NoisyMethodModule
    from noisyfit.methods.base import get_method_class
    from noisyfit.models.backbones import create_backbone

    cfg = tiny_cfg(*OVER)
    native = Trainer(cfg, None, splits=blob_splits)
    x, y = native.train_x.x.clone(), native.train_y.clone()  # the native run's (standardised) rows and noisy labels
    result = native.fit()

    # the same initial weights: the native trainer seeds torch with train.seed right before building the method
    torch.manual_seed(cfg.train.seed)
    make = lambda: create_backbone("mlp", num_classes=3, input_shape=(8,), hidden=[32])  # noqa: E731
    method = get_method_class("coteaching")(dict(cfg.method.args), 3, len(y), make)
    module = NoisyMethodModule(method, TrainingSet.from_tensors(x, y), num_epochs=4, batch_size=cfg.train.batch_size,
                               optim={"name": "adam", "lr": 0.001}, seed=cfg.train.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Lightning's advice on workers and loggers
        L.Trainer(max_epochs=4, accelerator="cpu", devices=1, logger=False, enable_checkpointing=False,
                  enable_progress_bar=False, enable_model_summary=False).fit(module)

    # the same training: weights, the method's per-sample selection record and its verdicts
    for a, b in zip(native.method.parameters(), module.method.parameters()):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)
    labels = y.numpy()
    np.testing.assert_allclose(module.method.clean_scores(labels), native.method.clean_scores(labels), atol=1e-5)
    np.testing.assert_array_equal(module.method.noisy_flags(labels), native.method.noisy_flags(labels))
    module.eval()  # batch-norm running statistics, as the native evaluation
    with torch.no_grad():
        acc = float((module(native.test_x.x).argmax(1) == native.test_y).float().mean())
    assert acc == pytest.approx(result["final"]["test_acc"], abs=1e-6)
    logged = float(module.trainer.callback_metrics["train_loss"])
    assert logged == pytest.approx(result["epochs"][-1]["train_loss"], rel=1e-4)


@pytest.mark.slow
def test_elr_under_lightning_ddp_keeps_its_per_sample_targets_like_one_process(tmp_path):
    """Two ranks (torchrun, Lightning's DDP strategy on CPU): each rank writes ELR's targets only for the samples
    it visited; after every epoch the adapter gathers them, so both ranks end with the one-process run's targets,
    weights and final probabilities (up to float summation order, the tolerance of tests/test_distributed.py)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    worker = Path(__file__).with_name("lightning_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one, two = tmp_path / "one", tmp_path / "two"
    for cmd, out in (([sys.executable, str(worker)], one),
                     ([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                       str(worker)], two)):
        out.mkdir()
        res = subprocess.run([*cmd, str(out)], env=env, capture_output=True, text=True, timeout=300)
        assert res.returncode == 0, res.stderr[-3000:]
    a, r0, r1 = (np.load(p) for p in (one / "rank0.npz", two / "rank0.npz", two / "rank1.npz"))
    assert int(a["world"]) == 1 and int(r0["world"]) == 2
    np.testing.assert_array_equal(r0["weights"], r1["weights"])
    np.testing.assert_array_equal(r0["targets"], r1["targets"])  # gathered: the same full table on both ranks
    assert np.abs(r0["targets"]).sum(1).min() > 0  # every sample's row was written (by one rank or the other)
    np.testing.assert_allclose(r0["weights"], a["weights"], atol=1e-4)
    np.testing.assert_allclose(r0["targets"], a["targets"], atol=1e-4)
    np.testing.assert_allclose(r0["probs"], a["probs"], atol=1e-4)


def test_lightning_optimiser_honours_the_per_module_lr_options():
    # configure_optimizers passes the method to build_optimizer, as the native trainer does: the head's and the
    # BatchNorm biases' own learning rates (optim.head_lr_scale, optim.bn_bias_lr_scale) and Muon's filter groups
    from noisyfit.data.training_set import TrainingSet
    from noisyfit.integrations.lightning import NoisyMethodModule

    ts = TrainingSet.from_tensors(torch.randint(0, 256, (8, 3, 16, 16), dtype=torch.uint8), torch.arange(8) % 2)
    m = NoisyMethodModule.create("ce", ts, backbone="fastcnn", num_epochs=2, batch_size=4,
                                 backbone_args=dict(widths=[8, 8, 8], head_bias=False),
                                 optim=dict(name="muon", lr=1.0, weight_decay=1e-3, head_lr_scale=4.0,
                                            bn_bias_lr_scale=2.0))
    opt = m.configure_optimizers()
    head = m.method.net.head.weight
    group = next(g for g in opt.param_groups if any(p is head for p in g["params"]))
    assert group["lr"] == 4.0 and group["weight_decay"] == pytest.approx(1e-3 / 4)
    assert {g["lr"] for g in opt.param_groups if not g["muon"]} == {1.0, 2.0, 4.0}
    assert sum(len(g["params"]) for g in opt.param_groups if g["muon"]) == 7  # the stem's and 6 group convs
