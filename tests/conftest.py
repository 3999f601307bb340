import numpy as np
import pytest
import torch

from noisyfit.config import load_config
from noisyfit.data.labeled import DatasetSplits, LabeledData


@pytest.fixture(autouse=True)
def _few_threads():
    # CI machines have 2 cores; keep each test single-threaded so timings stay stable.
    torch.set_num_threads(1)
    yield


def blobs(n=600, d=8, c=3, seed=0, sep=3.0):
    """Gaussian blobs: an easy, known problem for trainer tests."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(0, sep, (c, d))
    y = rng.integers(0, c, n)
    x = (centers[y] + rng.normal(0, 1, (n, d))).astype(np.float32)
    return x, y


@pytest.fixture
def blob_splits():
    x, y = blobs(800)
    xt, yt = blobs(300, seed=1)
    # same centres: regenerate test from the train generator's centres
    rng = np.random.default_rng(0)
    centers = rng.normal(0, 3.0, (3, 8))
    rt = np.random.default_rng(5)
    yt = rt.integers(0, 3, 300)
    xt = (centers[yt] + rt.normal(0, 1, (300, 8))).astype(np.float32)
    names = ["a", "b", "c"]
    return DatasetSplits(LabeledData(x, y, names, name="blobs"), LabeledData(xt, yt, names, name="blobs-test"))


def tiny_cfg(*overrides):
    mlp = [] if any(o.startswith("model.backbone=") for o in overrides) else ["model.args.hidden=[32]"]
    return load_config(None, ["model.backbone=mlp", *mlp, "train.epochs=3",
                              "train.batch_size=64", "train.progress=false", "train.tensorboard=false",
                              "train.precision=fp32", "train.device=cpu", "optim.lr=0.05",
                              "data.noise=sym:0.3", *overrides])


def tiny_images(n=96, c=3, size=16, classes=4, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    x = rng.integers(0, 256, (n, size, size, c), dtype=np.uint8)
    # give each class a brightness so the task is learnable
    x = np.clip(x.astype(int) // 2 + (y[:, None, None, None] * 40), 0, 255).astype(np.uint8)
    return LabeledData(x, y, [f"k{i}" for i in range(classes)], name="tiny-images")


@pytest.fixture
def image_folder(tmp_path, monkeypatch):
    """root/<class>/<file>.png, 3 classes told apart by colour; 3 images sit in a wrong class folder
    (cat 0 in dog/, dog 1 in fox/, fox 2 in cat/; each file is named true-<class>-<i>.png)."""
    from PIL import Image

    monkeypatch.setenv("NOISYFIT_CACHE_DIR", str(tmp_path / "cache"))
    root = tmp_path / "pets"
    colours = {"cat": (200, 40, 40), "dog": (40, 200, 40), "fox": (40, 40, 200)}
    rng = np.random.default_rng(0)
    misplaced = {("cat", 0): "dog", ("dog", 1): "fox", ("fox", 2): "cat"}
    for true, rgb in colours.items():
        for i in range(8):
            folder = misplaced.get((true, i), true)
            (root / folder).mkdir(parents=True, exist_ok=True)
            img = np.clip(np.array(rgb) + rng.integers(-30, 30, (12, 12, 3)), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(root / folder / f"true-{true}-{i}.png")
    return root
