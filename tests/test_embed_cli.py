"""`noisyfit embed`, `noisyfit audit --embedder` and their errors (exit 2, one message, no traceback)."""

import csv
import json
import sys

import numpy as np
import pytest
import torch

from noisyfit.cli import main
from noisyfit.data.sources import load_dataset
from noisyfit.embed import EmbedderError, load_embeddings, save_embedder



class MeanColour(torch.nn.Module):
    """Embedding = the mean of each input channel: with mean 0 and std 1, an image's mean colour in [0, 1]."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


@pytest.fixture
def colour_model(tmp_path):
    return save_embedder(MeanColour(), torch.zeros(2, 3, 12, 12), tmp_path / "colour.pt2",
                         meta={"input": "image", "input_size": [12, 12], "channels": 3, "mean": [0.0], "std": [1.0]})


def test_embed_writes_ids_labels_and_embeddings_in_row_order(tmp_path, image_folder, colour_model, capsys):
    out = tmp_path / "emb.npz"
    assert main(["embed", f"folder:{image_folder}", "--model", str(colour_model), "--out", str(out)]) == 0
    train = load_dataset(f"folder:{image_folder}").train
    with np.load(out) as z:
        assert z["x"].shape == (24, 3) and z["x"].dtype == np.float32
        assert list(z["ids"]) == train.ids  # by class folder, then file name (the README's row order)
        assert train.ids[:3] == ["cat/true-cat-1.png", "cat/true-cat-2.png", "cat/true-cat-3.png"]
        np.testing.assert_array_equal(z["y"], train.labels)
        assert list(z["class_names"]) == ["cat", "dog", "fox"]
        np.testing.assert_allclose(z["x"], train.x.reshape(24, -1, 3).mean(1) / 255.0, atol=1e-6)
        info = json.loads(str(z["info"]))
    assert info["embedder"]["format"] == "torch.export" and info["embedder"]["input_size"] == [12, 12]
    assert "24 examples x 3 dimensions" in capsys.readouterr().err
    # the file is also a data set (npz:) with the same ids
    assert load_dataset(f"npz:{out}").train.ids == train.ids
    assert load_embeddings(out).ids == train.ids


def _issues(out):
    with open(out / "issues.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_audit_with_an_embedder_in_one_step(tmp_path, image_folder, colour_model, capsys):
    out = tmp_path / "audit"
    assert main(["audit", f"folder:{image_folder}", "--embedder", str(colour_model), "--folds", "4", "--out", str(out),
                 "--no-progress"]) == 0
    rows = _issues(out)
    assert sorted(r["id"] for r in rows) == ["cat/true-fox-2.png", "dog/true-cat-0.png", "fox/true-dog-1.png"]
    assert all(r["suggested_label"] == r["id"].split("true-")[1].split("-")[0] for r in rows)
    s = json.loads((out / "summary.json").read_text())
    q = s["model_quality"]
    assert q["agreement"] == pytest.approx(21 / 24) and len(q["per_fold"]) == 4 and not q["near_chance"]
    assert s["embedder"]["format"] == "torch.export" and s["cross_fit"]["classifier"] == "logreg"
    assert s["embedder"]["embeddings"].endswith("embeddings.npz")
    with np.load(out / "pred_probs.npz") as z:  # every output carries the ids
        assert z["pred_probs"].shape == (24, 3) and list(z["ids"]) == load_dataset(f"folder:{image_folder}").train.ids
    err = capsys.readouterr().err
    assert "model quality: cross-fitted logreg on 3-d embeddings" in err and "per fold" in err
    # the embeddings file written by the audit is an input of its own: same flags without a model
    out2 = tmp_path / "audit2"
    assert main(["audit", "--embedder", str(out / "embeddings.npz"), "--folds", "4", "--out", str(out2),
                 "--no-progress"]) == 0
    assert sorted(r["id"] for r in _issues(out2)) == sorted(r["id"] for r in rows)


def _fails(argv, capsys, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.count("\n") == 1, err
    for n in needles:
        assert n in err, err
    return err


def test_errors_exit_2_with_a_message(tmp_path, image_folder, colour_model, capsys, monkeypatch):
    data = f"folder:{image_folder}"
    out = str(tmp_path / "e.npz")
    _fails(["embed", data, "--model", str(tmp_path / "missing.pt2"), "--out", out], capsys,
           "noisyfit embed: error: model", "missing.pt2: no such file or folder")
    (tmp_path / "model.bin").write_bytes(b"not a model")
    _fails(["embed", data, "--model", str(tmp_path / "model.bin"), "--out", out], capsys, "unknown format", ".onnx")
    torch.save({"w": torch.zeros(2)}, tmp_path / "weights.pt")
    _fails(["embed", data, "--model", str(tmp_path / "weights.pt"), "--out", out], capsys, "a torch.save file",
           "torch.export.save")
    _fails(["audit", data, "--embedder", str(tmp_path / "missing.onnx"), "--out", str(tmp_path / "a1")], capsys,
           "noisyfit audit: error: model", "no such file")
    # said before any data are read (decoding a large folder first would waste minutes)
    _fails(["audit", f"folder:{tmp_path / 'not-there'}", "--embedder", str(tmp_path / "missing.onnx"), "--out",
            str(tmp_path / "a1b")], capsys, "noisyfit audit: error: model", "no such file")
    (tmp_path / "m.onnx").write_bytes(b"\x08\x07")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if onnxruntime were not installed
    _fails(["embed", data, "--model", str(tmp_path / "m.onnx"), "--out", out], capsys,
           "needs onnxruntime, which is not installed", "pip install 'noisyfit[onnx]'")
    _fails(["audit", data, "--embedder", str(tmp_path / "m.onnx"), "--out", str(tmp_path / "a2")], capsys,
           "needs onnxruntime")
    # embeddings of another row order are refused, naming the first row that differs
    emb = tmp_path / "emb.npz"
    assert main(["embed", data, "--model", str(colour_model), "--out", str(emb)]) == 0
    capsys.readouterr()
    with np.load(emb) as z:
        arrays = {k: z[k] for k in z.files}
    order = np.arange(24)[::-1]
    np.savez(tmp_path / "reversed.npz", **{k: (v[order] if k in ("x", "y", "ids", "index") else v)
                                           for k, v in arrays.items()})
    _fails(["audit", data, "--embedder", str(tmp_path / "reversed.npz"), "--out", str(tmp_path / "a3")], capsys,
           "row 0 is 'fox/true-fox-7.png'", "not in the data set's row order")


def test_writing_onnx_without_the_onnx_package(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(EmbedderError, match=r"needs the onnx package: pip install 'noisyfit\[onnx\]'"):
        save_embedder(MeanColour(), torch.zeros(2, 3, 4, 4), tmp_path / "m.onnx")
