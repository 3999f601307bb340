"""A run trained on embeddings (`noisyfit embed` -> `train --dataset npz:emb.npz`) predicts new images: they pass
through the embedder its training rows were made with, decoded the same way (the embeddings file records both)."""

import csv
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from noisyfit.cli import main
from noisyfit.data.folder import decode_image
from noisyfit.embed import EmbedderError, embedder_for, save_embedder
from noisyfit.predictor import PredictorError, load_predictor


class MeanColour(torch.nn.Module):
    """Embedding = the mean of each input channel (with mean 0 and std 1: the mean colour in [0, 1])."""

    def forward(self, x):
        return x.mean(dim=(2, 3))


@pytest.fixture
def trained(tmp_path, image_folder):
    """An embedder file, the embeddings of the pets folder, and a CE run trained on them."""
    model = save_embedder(MeanColour(), torch.zeros(2, 3, 12, 12), tmp_path / "colour.pt2",
                          meta={"input": "image", "input_size": [12, 12], "channels": 3, "mean": [0.0], "std": [1.0]})
    emb = tmp_path / "emb.npz"
    assert main(["embed", f"folder:{image_folder}", "--model", str(model), "--out", str(emb), "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{emb}", "--method", "ce", "--backbone", "mlp", "--epochs", "40",
                 "--out", str(run), "--no-progress", "data.val_fraction=0", "optim.lr=0.05"]) == 0
    new = tmp_path / "new"  # new photos, unlabelled, of other sizes: a red one, a green one, a blue one
    new.mkdir()
    for name, rgb, size in (("a.png", (210, 30, 30), (20, 16)), ("b.png", (30, 210, 30), (12, 12)),
                            ("c.png", (30, 30, 210), (9, 14))):
        Image.fromarray(np.full((*size, 3), rgb, dtype=np.uint8)).save(new / name)
    return model, emb, run, new


def _probs(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    return [r["id"] for r in rows], [r["predicted"] for r in rows], np.array(
        [[float(v) for k, v in r.items() if k.startswith("prob_")] for r in rows])


def test_new_images_are_embedded_as_the_training_rows_were(trained, tmp_path, image_folder, capsys):
    model_file, emb, run, new = trained
    with np.load(emb) as z:
        info = json.loads(str(z["info"]))
    assert info["image_size"] == [12, 12] and info["embedder"]["resolved_path"] == str(model_file.resolve())
    model = load_predictor(run)
    assert model.embedder_path() == str(model_file.resolve()) and "embeddings by" in model.describe_input()
    capsys.readouterr()

    # the training folder through the embedder gives exactly the probabilities of its precomputed embeddings
    assert main(["predict", str(run), f"folder:{image_folder}", "--out", str(tmp_path / "via.csv")]) == 0
    assert "24 image(s) embedded by" in capsys.readouterr().out
    assert main(["predict", str(run), f"npz:{emb}", "--out", str(tmp_path / "rows.csv")]) == 0
    ids_via, _, via = _probs(tmp_path / "via.csv")
    ids_rows, _, rows = _probs(tmp_path / "rows.csv")
    assert ids_via == ids_rows
    np.testing.assert_allclose(via, rows, rtol=1e-5)

    # new photos of other sizes: decoded at the training images' size, embedded, predicted by colour
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "new.csv")]) == 0
    out = capsys.readouterr().out
    assert "2 of 3 image(s) resized" in out and "3 image(s) embedded by" in out
    ids, predicted, probs = _probs(tmp_path / "new.csv")
    assert ids == ["a.png", "b.png", "c.png"] and predicted == ["cat", "dog", "fox"]
    # the same in Python: the recorded embedder on the images decoded at the recorded size
    x = np.stack([decode_image(open(new / i, "rb"), (12, 12)) for i in ids])
    np.testing.assert_allclose(model.predict_proba(embedder_for(model)(x)), probs, rtol=1e-5)
    # or straight into the model: it embeds images (files, mixed sizes, arrays) itself, as predict does
    np.testing.assert_allclose(model.predict_proba(x), probs, rtol=1e-5)
    with pytest.warns(UserWarning, match="2 of 3 image\\(s\\) resized"):
        np.testing.assert_allclose(model.predict_proba([new / i for i in ids]), probs, rtol=1e-5)
    with pytest.raises(PredictorError, match="dtype float32: images for the embedder of this model are uint8"):
        model.predict_proba(x.astype(np.float32) / 255)  # floats in [0, 1] would be read as 0..255 pixels
    with pytest.raises(EmbedderError, match="one image\\? Pass a batch"):
        embedder_for(model)(x[0])

    # or in two steps: `noisyfit embed` takes the new images too (ids, no labels), predict reads that file
    assert main(["embed", str(new), "--model", str(model_file), "--out", str(tmp_path / "new_emb.npz"),
                 "--no-progress"]) == 0
    assert "3 new images x 3 dimensions with ids, no labels" in capsys.readouterr().err
    assert main(["predict", str(run), str(tmp_path / "new_emb.npz"), "--out", str(tmp_path / "two.csv")]) == 0
    ids2, _, probs2 = _probs(tmp_path / "two.csv")
    assert ids2 == ids
    np.testing.assert_allclose(probs2, probs, rtol=1e-5)
    # a bare path to a labelled folder is that folder as a data set, as predict reads it
    assert main(["embed", str(image_folder), "--model", str(model_file), "--out", str(tmp_path / "bare.npz"),
                 "--no-progress"]) == 0
    with np.load(tmp_path / "bare.npz") as a, np.load(emb) as b:
        np.testing.assert_array_equal(a["x"], b["x"])
        np.testing.assert_array_equal(a["y"], b["y"])


def test_a_moved_embedder_is_named_and_can_be_given(trained, tmp_path, capsys):
    model_file, _, run, new = trained
    moved = tmp_path / "elsewhere.pt2"
    shutil.move(model_file, moved)
    capsys.readouterr()
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "p.csv")]) == 2
    err = capsys.readouterr().err
    assert "is not there any more (looked for " in err and "colour.pt2" in err and "--embedder FILE" in err
    assert "Traceback" not in err
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "p.csv"), "--embedder", str(moved)]) == 0
    assert _probs(tmp_path / "p.csv")[1] == ["cat", "dog", "fox"]


class Positional(torch.nn.Module):
    """Embedding that depends on where each pixel is (a fixed random projection of the whole image), so the
    decoding size, the resize and the normalisation all change it."""

    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.register_buffer("w", torch.randn(3 * 8 * 8, 5, generator=g))

    def forward(self, x):
        return x.flatten(1) @ self.w


def test_recorded_settings_and_decoding_size_are_the_training_rows(tmp_path, image_folder, capsys):
    # the training images are decoded at 20x20 (data.image_size), the embedder takes 8x8 with bicubic resizing and
    # a normalisation given at embedding time that is not the file's own: predict must redo all of it
    from noisyfit.data.sources import load_dataset
    from noisyfit.embed import EmbedSettings, embed_data, load_embedder

    model_file = save_embedder(Positional(), torch.zeros(2, 3, 8, 8), tmp_path / "pos.pt2",
                               meta={"input": "image", "input_size": [8, 8], "channels": 3, "mean": [0.5], "std": [0.5]})
    train = load_dataset(f"folder:{image_folder}", image_size=(20, 20)).train
    settings = EmbedSettings(mean="data", std=[0.2, 0.3, 0.4], interpolation="bicubic")
    emb = embed_data(load_embedder(model_file, settings), train, progress=False)
    emb.save(tmp_path / "emb.npz")
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{tmp_path / 'emb.npz'}", "--backbone", "mlp", "--epochs", "3",
                 "--out", str(run), "--no-progress", "data.val_fraction=0"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), f"folder:{image_folder}", "--out", str(tmp_path / "via.csv")]) == 0
    assert main(["predict", str(run), f"npz:{tmp_path / 'emb.npz'}", "--out", str(tmp_path / "rows.csv")]) == 0
    np.testing.assert_allclose(_probs(tmp_path / "via.csv")[2], _probs(tmp_path / "rows.csv")[2], rtol=1e-5)
    model = load_predictor(run)
    again = embedder_for(model)
    assert again.interpolation == "bicubic" and again.std == (0.2, 0.3, 0.4) and again.mean == tuple(emb.info[
        "embedder"]["mean"])
    # an npz data set of uint8 images (not files) is embedded too, at the recorded size
    np.savez(tmp_path / "imgs.npz", x=train.x, y=train.labels, class_names=np.array(train.class_names))
    assert main(["predict", str(run), f"npz:{tmp_path / 'imgs.npz'}", "--out", str(tmp_path / "arr.csv")]) == 0
    np.testing.assert_allclose(_probs(tmp_path / "arr.csv")[2], _probs(tmp_path / "rows.csv")[2], rtol=1e-5)
    # new images embedded by `noisyfit embed` at the embedder's 8x8, not at the training images' 20x20: refused
    new = tmp_path / "new"
    new.mkdir()
    Image.fromarray(np.full((20, 20, 3), (210, 30, 30), dtype=np.uint8)).save(new / "a.png")
    assert main(["embed", str(new), "--model", str(model_file), "--out", str(tmp_path / "n.npz"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "n.npz"), "--out", str(tmp_path / "n.csv")]) == 2
    err = capsys.readouterr().err
    assert "embedded otherwise than this run's training rows" in err and "--image-size 20,20" in err


def test_embedder_misuse_exits_2(trained, tmp_path, image_folder, capsys):
    model_file, _, run, new = trained
    image_run = tmp_path / "img_run"
    assert main(["train", "--dataset", f"folder:{image_folder}", "--backbone", "mlp", "--epochs", "1", "--out",
                 str(image_run), "--no-progress", "data.val_fraction=0"]) == 0
    capsys.readouterr()
    assert main(["predict", str(image_run), str(new), "--out", str(tmp_path / "p.csv"), "--embedder",
                 str(model_file)]) == 2
    assert "this run takes images itself" in capsys.readouterr().err
    # an embedder of another width than the run's rows is not the one that made them
    other = save_embedder(torch.nn.Flatten(), torch.zeros(2, 3, 12, 12), tmp_path / "flat.pt2",
                          meta={"input": "image", "input_size": [12, 12], "channels": 3, "mean": [0.0], "std": [1.0]})
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "p.csv"), "--embedder", str(other)]) == 2
    assert "gives 432 values per image, but this run was trained on rows of 3" in capsys.readouterr().err
    # embeddings of new images by that other file: named as such, not as a settings difference
    assert main(["embed", str(new), "--model", str(other), "--out", str(tmp_path / "flat.npz"), "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["predict", str(run), str(tmp_path / "flat.npz"), "--out", str(tmp_path / "p.csv")]) == 2
    assert "holds embeddings by flat.pt2, but this run was trained on embeddings by colour.pt2" in capsys.readouterr().err
    # train has no --embedder: said with the two commands to run, before anything is written
    assert main(["train", "--dataset", f"folder:{image_folder}", "--embedder", "net.onnx", "--out",
                 str(tmp_path / "nope")]) == 2
    assert "noisyfit embed folder:" in capsys.readouterr().err and not (tmp_path / "nope").exists()
    # settings given that differ from the recorded ones: allowed, and said
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "p.csv"), "--mean", "0.5"]) == 0
    assert "note: the embedder's mean differ from those the run's training rows were made with" in capsys.readouterr().out


def test_a_test_split_is_embedded_too_and_the_run_reports_test_accuracy(tmp_path, image_folder, capsys):
    root = tmp_path / "split"
    for f in sorted(image_folder.rglob("*.png")):  # images 0-5 of each folder train, 6-7 test
        split = "test" if int(f.stem.rsplit("-", 1)[1]) >= 6 else "train"
        (root / split / f.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(f, root / split / f.parent.name / f.name)
    model = save_embedder(MeanColour(), torch.zeros(2, 3, 12, 12), tmp_path / "colour.pt2",
                          meta={"input": "image", "input_size": [12, 12], "channels": 3, "mean": [0.0], "std": [1.0]})
    emb = tmp_path / "emb.npz"
    assert main(["embed", f"folder:{root}", "--model", str(model), "--out", str(emb), "--no-progress"]) == 0
    assert "18 examples, and the 6 of its test split x 3 dimensions" in capsys.readouterr().err
    with np.load(emb) as z:
        assert z["x"].shape == (18, 3) and z["x_test"].shape == (6, 3) and len(z["ids_test"]) == 6
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{emb}", "--backbone", "mlp", "--epochs", "2", "--out", str(run),
                 "--no-progress", "data.val_fraction=0"]) == 0
    assert json.loads((run / "results.json").read_text())["final"]["test_acc"] is not None


def test_a_two_network_run_as_embedder_keeps_the_network_it_used(tmp_path, image_folder, capsys):
    pair = tmp_path / "pair"
    assert main(["train", "--dataset", f"folder:{image_folder}", "--method", "coteaching", "--backbone", "mlp",
                 "--epochs", "1", "--out", str(pair), "--no-progress", "data.val_fraction=0"]) == 0
    emb = tmp_path / "emb.npz"
    assert main(["embed", f"folder:{image_folder}", "--model", str(pair), "--network", "1", "--out", str(emb),
                 "--no-progress"]) == 0
    run = tmp_path / "run"
    assert main(["train", "--dataset", f"npz:{emb}", "--backbone", "mlp", "--epochs", "2", "--out", str(run),
                 "--no-progress", "data.val_fraction=0"]) == 0
    assert load_predictor(run).input_source["embedder"]["network_index"] == 1
    capsys.readouterr()
    assert main(["predict", str(run), f"folder:{image_folder}", "--out", str(tmp_path / "via.csv")]) == 0
    assert main(["predict", str(run), f"npz:{emb}", "--out", str(tmp_path / "rows.csv")]) == 0
    np.testing.assert_allclose(_probs(tmp_path / "via.csv")[2], _probs(tmp_path / "rows.csv")[2], rtol=1e-5)
