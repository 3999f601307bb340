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
