"""Embedders from files: torch.export, ONNX and TorchScript files give the source module's output; a run's
backbone gives the features its head was trained on; the input pipeline (resize, normalisation) by hand."""

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import tiny_images

from noisyfit.config import load_config
from noisyfit.data.labeled import DatasetSplits, LabeledData
from noisyfit.data.tabular import save_npz
from noisyfit.embed import (EmbedderError, FeatureExtractor, detect_format, embed_data, export_backbone,
                            load_embedder, save_embedder)
from noisyfit.models.backbones import create_backbone



def _needs_onnx(suffix=".onnx"):
    if suffix == ".onnx":  # in the test extra; without it only the ONNX cases skip
        pytest.importorskip("onnxruntime")
        pytest.importorskip("onnx")


def _source_module(seed=0):
    """A small CNN with BatchNorm running statistics that are not the identity (so eval mode matters)."""
    torch.manual_seed(seed)
    net = create_backbone("fastcnn", num_classes=4, input_shape=(3, 16, 16), widths=(8, 16, 16), stem_width=8)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    return FeatureExtractor(net).eval()


META = {"input": "image", "input_size": [16, 16], "channels": 3, "mean": [0.5, 0.4, 0.3], "std": [0.25, 0.2, 0.3]}


@pytest.mark.parametrize("suffix", [".pt2", ".onnx", ".ts"])
def test_file_embeddings_equal_the_source_module(tmp_path, suffix):
    _needs_onnx(suffix)
    module = _source_module()
    path = save_embedder(module, torch.zeros(2, 3, 16, 16), tmp_path / f"m{suffix}", meta=META)
    emb = load_embedder(path, batch_size=3)  # 7 images: batches of 3, 3 and 1 (the batch dimension is dynamic)
    assert emb.kind == {".pt2": "torch.export", ".onnx": "onnx", ".ts": "torchscript"}[suffix]
    assert detect_format(path) == emb.kind
    # the stored settings come back as the embedder's defaults
    assert emb.input_size == (16, 16) and emb.mean == (0.5, 0.4, 0.3) and emb.std == (0.25, 0.2, 0.3)
    x = np.random.default_rng(1).integers(0, 256, (7, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = module(emb.preprocess(x)).numpy()
    out = embed_data(emb, LabeledData(x=x, labels=np.zeros(7, int), class_names=["a", "b"]), progress=False).x
    assert out.shape == (7, 16)
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_preprocess_by_hand(tmp_path):
    """pixels / 255, then F.interpolate to the stored size, then (x - mean) / std, per channel."""
    path = save_embedder(_source_module(), torch.zeros(2, 3, 16, 16), tmp_path / "m.pt2", meta=META)
    emb = load_embedder(path)
    x = np.zeros((1, 8, 8, 3), dtype=np.uint8)
    x[..., 0], x[..., 1], x[..., 2] = 255, 51, 0  # constant channels: resizing keeps them constant
    t = emb.preprocess(x)
    assert t.shape == (1, 3, 16, 16)
    np.testing.assert_allclose(t[0, :, 5, 5].numpy(), [(1 - 0.5) / 0.25, (0.2 - 0.4) / 0.2, (0 - 0.3) / 0.3], atol=1e-6)
    # a non-constant image: the same as torch's antialiased bilinear resize of the [0, 1] image
    y = np.random.default_rng(0).integers(0, 256, (2, 8, 12, 3), dtype=np.uint8)
    ref = F.interpolate(torch.from_numpy(y).permute(0, 3, 1, 2).float() / 255, size=(16, 16), mode="bilinear",
                        align_corners=False, antialias=True)
    ref = (ref - torch.tensor(META["mean"]).view(1, 3, 1, 1)) / torch.tensor(META["std"]).view(1, 3, 1, 1)
    np.testing.assert_allclose(emb.preprocess(y).numpy(), ref.numpy(), atol=1e-6)
    # the caller's settings beat the file's; a foreign file without metadata gets ImageNet's statistics
    emb = load_embedder(path, input_size="12,10", mean="none", std="none")
    assert emb.preprocess(y).shape == (2, 3, 12, 10) and float(emb.preprocess(x)[0, 0, 0, 0]) == pytest.approx(1.0)
    bare = save_embedder(_source_module(), torch.zeros(2, 3, 16, 16), tmp_path / "bare.ts")
    emb = load_embedder(bare)
    emb.prepare(x)
    assert emb.mean == (0.485, 0.456, 0.406) and emb.defaults["mean"] == "imagenet"
    assert emb.input_size is None  # TorchScript stores no input shape: the data's own size is used


def test_static_onnx_shape_sets_size_and_fixed_batch(tmp_path):
    """An ONNX model exported for a fixed batch of 2 at 16x16: 5 images of 12x12 are resized and padded."""
    _needs_onnx()
    module = _source_module()
    path = tmp_path / "static.onnx"
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(module, (torch.zeros(2, 3, 16, 16),), str(path), dynamo=False, input_names=["images"])
    emb = load_embedder(path)
    assert emb.input_size == (16, 16) and emb.fixed_batch == 2 and "input_size" not in emb.defaults
    x = np.random.default_rng(2).integers(0, 256, (5, 12, 12, 3), dtype=np.uint8)
    out = emb(x)
    with torch.no_grad():
        ref = module(emb.preprocess(x)).numpy()
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)


def test_static_batch_torch_export_takes_pieces_of_its_batch(tmp_path):
    """A torch.export program saved without a dynamic batch dimension (batch 2 here) refuses any other batch in
    its guard; 5 images go through in pieces of 2, the last padded, and equal the source module's output."""
    module = _source_module()
    path = tmp_path / "static.pt2"
    torch.export.save(torch.export.export(module, (torch.zeros(2, 3, 16, 16),)), str(path))
    emb = load_embedder(path, mean="none", std="none")
    assert emb.fixed_batch == 2 and emb.input_size == (16, 16)
    x = np.random.default_rng(3).integers(0, 256, (5, 16, 16, 3), dtype=np.uint8)
    with torch.no_grad():
        ref = module(emb.preprocess(x)).numpy()
    np.testing.assert_allclose(emb(x), ref, rtol=1e-5, atol=1e-5)
    dynamic = load_embedder(save_embedder(module, torch.zeros(2, 3, 16, 16), tmp_path / "dyn.pt2", meta=META))
    assert dynamic.fixed_batch is None  # saved by noisyfit: any batch, one call per batch


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """A 1-epoch fastcnn CE run on 64 tiny images (npz data set), with a noisy-validation split."""
    from noisyfit.engine.trainer import Trainer

    root = tmp_path_factory.mktemp("run")
    data = tiny_images(n=64, size=12)
    data.ids = [f"img{i:02d}" for i in range(64)]
    save_npz(DatasetSplits(data), root / "tiny.npz")
    torch.manual_seed(0)
    cfg = load_config(None, [f"data.dataset=npz:{root / 'tiny.npz'}", "model.backbone=fastcnn",
                             "model.args.widths=[8,16,16]", "model.args.stem_width=8", "train.epochs=1",
                             "train.batch_size=16", "train.progress=false", "train.tensorboard=false",
                             "train.precision=fp32", "train.device=cpu", "data.val_fraction=0.25"])
    Trainer(cfg, root / "run").fit()
    return root / "run", data


def test_run_backbone_gives_the_features_its_head_was_trained_on(tiny_run):
    """The run's head on our embeddings reproduces the run's own final training probabilities (per_sample.npz):
    the weights, the normalisation (mean/std of the run's training split) and forward_features all agree."""
    run, data = tiny_run
    emb = load_embedder(run)
    assert emb.kind == "run" and emb.input_size == (12, 12) and emb.meta["network"] == "net"
    ps = np.load(run / "per_sample.npz")
    train_idx = ps["train_index"]
    feats = embed_data(emb, data, progress=False).x[train_idx]
    state = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["method"]
    logits = torch.from_numpy(feats) @ state["net.head.weight"].T + state["net.head.bias"]
    np.testing.assert_allclose(torch.softmax(logits, 1).numpy(), ps["probs"], atol=1e-4)
    # normalisation = the channel statistics of the run's training split (not of all 64 images)
    from noisyfit.data.augment import channel_stats

    mean, std = channel_stats(data.x[train_idx])
    np.testing.assert_allclose(emb.mean, mean.numpy(), rtol=1e-5)
    np.testing.assert_allclose(emb.std, std.numpy(), rtol=1e-5)
    assert load_embedder(run / "checkpoint.pt").kind == "run"
    with pytest.raises(EmbedderError, match="network 1 asked for"):
        load_embedder(run, network=1)


def test_a_run_with_weight_averaging_gives_its_averaged_weights(tmp_path):
    # train.ema (airbench's Lookahead): the run evaluates and keeps the average; its backbone must be that one,
    # not the raw weights in checkpoint.pt's method state
    from noisyfit.embed.runs import load_run_backbone
    from noisyfit.engine.trainer import Trainer

    save_npz(DatasetSplits(tiny_images(n=48, size=12)), tmp_path / "tiny.npz")
    cfg = load_config(None, [f"data.dataset=npz:{tmp_path / 'tiny.npz'}", "model.backbone=fastcnn",
                             "model.args.widths=[8,8,8]", "model.args.stem_width=8", "train.epochs=2",
                             "train.batch_size=8", "train.progress=false", "train.tensorboard=false",
                             "train.precision=fp32", "train.device=cpu", "data.val_fraction=0",
                             "train.ema=ema", "train.ema_every=1"])
    Trainer(cfg, tmp_path / "run").fit()
    kept = torch.load(tmp_path / "run" / "model.pt", weights_only=True)["weights"]  # the final, averaged model
    raw = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=False)["method"]
    module, _ = load_run_backbone(tmp_path / "run")
    got = module.backbone.state_dict()
    assert "stem.0.weight" in got and len(got) > 5
    assert not torch.equal(raw["net.stem.0.weight"], kept["net.stem.0.weight"])
    for k, v in got.items():
        assert torch.equal(v, kept[f"net.{k}"]), k


def test_a_run_gives_by_default_the_weights_predict_uses(tiny_run, tmp_path):
    # predict uses the selected epoch's weights (best_model.pt); embed / export-backbone used the last epoch's,
    # so the embedder of a run was another model than the one its predictions came from
    import shutil

    from noisyfit.embed.runs import load_run_backbone

    run = tmp_path / "run"
    shutil.copytree(tiny_run[0], run)
    best = torch.load(run / "best_model.pt", weights_only=False)
    best = {k: v * 2 if k.endswith("conv.weight") or k.endswith("stem.0.weight") else v for k, v in best.items()}
    torch.save(best, run / "best_model.pt")  # the selected epoch's weights now differ from the last's
    last = torch.load(run / "checkpoint.pt", weights_only=False)["method"]
    assert not torch.equal(best["net.stem.0.weight"], last["net.stem.0.weight"])
    for how, want, expect in (("auto", best, "best"), ("best", best, "best"), ("last", last, "last")):
        module, meta = load_run_backbone(run, checkpoint=how)
        assert meta["checkpoint"] == expect
        got = module.backbone.state_dict()
        assert all(torch.equal(v, want[f"net.{k}"]) for k, v in got.items()), how
    assert load_run_backbone(run / "model.pt")[1]["checkpoint"] == "best"  # model.pt: as auto
    (run / "best_model.pt").unlink()  # a run without a selected epoch: auto is the last
    assert load_run_backbone(run)[1]["checkpoint"] == "last"


@pytest.mark.parametrize("suffix", [".pt2", ".onnx"])
def test_exported_run_backbone_is_self_contained(tiny_run, tmp_path, suffix):
    _needs_onnx(suffix)
    run, data = tiny_run
    ref = embed_data(load_embedder(run), data, progress=False).x
    path = export_backbone(run, tmp_path / f"backbone{suffix}")
    emb = load_embedder(path)  # no run folder and no data needed: the settings are in the file
    assert emb.meta["backbone"] == "fastcnn" and emb.meta["source"] == "noisyfit run"
    assert emb.input_size == (12, 12) and emb.defaults == {}
    np.testing.assert_allclose(embed_data(emb, data, progress=False).x, ref, rtol=1e-4, atol=1e-5)
    assert json.loads(json.dumps(emb.describe()))["format"] == {".pt2": "torch.export", ".onnx": "onnx"}[suffix]
