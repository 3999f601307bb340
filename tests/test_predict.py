"""A finished run's model.pt predicts on raw inputs (`noisyfit predict`, noisyfit.predictor): the run's recorded
test accuracy reproduced exactly, the normalisation and the weights it holds, and the errors on a bad run folder
or inputs of the wrong shape."""

import csv
import json

import numpy as np
import pytest
import torch
from conftest import blobs, tiny_cfg, tiny_images

from noisyfit.cli import main
from noisyfit.data.labeled import DatasetSplits, LabeledData
from noisyfit.data.tabular import save_npz
from noisyfit.engine.trainer import Trainer
from noisyfit.predictor import PredictorError, load_predictor

IMAGE_NET = ["model.backbone=fastcnn", "model.args.widths=[8,16,16]", "model.args.stem_width=8"]


def read_preds(path):
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def said(capsys):
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.out + captured.err


def train(cfg, out):
    trainer = Trainer(cfg, out)
    trainer.logger.console.quiet = True
    return trainer, trainer.fit()


@pytest.fixture
def image_npz(tmp_path):
    return save_npz(DatasetSplits(tiny_images(96), tiny_images(64, seed=1)), tmp_path / "images.npz")


@pytest.fixture
def blobs_csv(tmp_path):
    """Feature rows with string labels, 150 training and 90 test rows (a split column), ids."""
    x, y = blobs(240, d=5, c=3, seed=2)
    path = tmp_path / "blobs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "f0", "f1", "f2", "f3", "f4", "label", "split"])
        for i in range(240):
            w.writerow([f"s{i}", *map(float, x[i]), ["ant", "bee", "cow"][y[i]], "train" if i < 150 else "test"])
    return path


# ------------------------------------------------------------------------------------------ exact reproduction
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_predicting_an_image_run_reproduces_its_recorded_test_accuracy(tmp_path, capsys, image_npz, precision):
    run = tmp_path / "run"
    trainer, results = train(tiny_cfg(*IMAGE_NET, f"data.dataset=npz:{image_npz}", "data.noise=null",
                                      "data.val_fraction=0.2", "train.epochs=4", f"train.precision={precision}"), run)
    best = results["selected"]
    assert best["epoch"] is not None
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), f"npz:{image_npz}", "--out", str(out), "--device", "cpu"]) == 0
    text = said(capsys)
    header, rows = read_preds(out)
    assert header == ["id", "predicted", "prob_k0", "prob_k1", "prob_k2", "prob_k3"]
    test = tiny_images(64, seed=1)
    assert len(rows) == 64 and [r[0] for r in rows] == [str(i) for i in range(64)]  # no ids stored: row numbers
    predicted = np.array([r[1] for r in rows])
    correct = int(np.sum(predicted == np.array([f"k{k}" for k in test.labels])))
    acc = correct / 64
    # model.pt holds the selected epoch's model (best_model.pt) and reproduces the accuracy the run recorded
    assert correct == round(best["test_acc"] * 64)
    assert f"accuracy against the data's labels: {acc:.4f}" in text and "selected weights" in text
    probs = np.array([[float(v) for v in r[2:]] for r in rows])
    assert np.allclose(probs.sum(1), 1.0, atol=1e-5)

    # the same logits as the trainer's own evaluation of those weights, bit for bit
    model = load_predictor(run, device="cpu")
    assert model.record["weights"] == "selected" and model.record["epoch"] == best["epoch"]
    trainer.method.load_state_dict(torch.load(run / "best_model.pt", weights_only=False))
    expected = trainer.predict_over(trainer.test_x, trainer.method.predict_logits)
    assert torch.equal(model.logits(test.x), expected)
    assert np.array_equal(probs.argmax(1), expected.argmax(1).numpy())
    # raw uint8 images in an .npy give the same predictions
    np.save(tmp_path / "test.npy", test.x)
    assert main(["predict", str(run), str(tmp_path / "test.npy"), "--out", str(tmp_path / "p2.csv")]) == 0
    assert [r[1] for r in read_preds(tmp_path / "p2.csv")[1]] == list(predicted)


def test_a_run_with_test_time_augmentation_predicts_with_its_views(tmp_path, capsys, image_npz):
    # airbench's recipe: Lookahead-averaged weights evaluated with six views; model.pt must give the recorded
    # accuracy, i.e. the averaged weights and the same views
    from noisyfit.engine.tta import with_tta

    run = tmp_path / "run"
    trainer, results = train(tiny_cfg(*IMAGE_NET, f"data.dataset=npz:{image_npz}", "data.noise=null",
                                      "data.val_fraction=0.2", "train.epochs=4", "train.ema=lookahead",
                                      "train.eval_tta=mirror_translate"), run)
    best = results["selected"]
    test = tiny_images(64, seed=1)
    model = load_predictor(run, device="cpu")
    assert model.tta == "mirror_translate"
    trainer.method.load_state_dict(torch.load(run / "best_model.pt", weights_only=False))
    fn = trainer.method.predict_logits
    with_views = trainer.predict_over(trainer.test_x, with_tta(fn, "mirror_translate"))
    one_view = trainer.predict_over(trainer.test_x, fn)
    assert torch.equal(model.logits(test.x), with_views)
    assert int((model.logits(test.x).argmax(1).numpy() == test.labels).sum()) == round(best["test_acc"] * 64)
    assert not torch.equal(with_views, one_view)
    assert torch.equal(load_predictor(run, device="cpu", tta="none").logits(test.x), one_view)
    # a model.pt written before the file recorded the views predicts as it always did: one view
    state = torch.load(run / "model.pt", weights_only=True)
    del state["input"]["eval_tta"]
    torch.save(state, tmp_path / "old.pt")
    assert load_predictor(tmp_path / "old.pt", device="cpu").tta == "none"
    # the command line takes --tta
    out = tmp_path / "p.csv"
    assert main(["predict", str(run), f"npz:{image_npz}", "--out", str(out), "--tta", "none"]) == 0
    assert [r[1] for r in read_preds(out)[1]] == [f"k{k}" for k in one_view.argmax(1).tolist()]
    with pytest.raises(PredictorError, match="tta='flip'"):
        load_predictor(run, device="cpu", tta="flip")


def test_model_file_holds_the_training_normalisation_and_no_per_sample_state(tmp_path, image_npz):
    run = tmp_path / "run"
    trainer, _ = train(tiny_cfg(*IMAGE_NET, f"data.dataset=npz:{image_npz}", "data.noise=null", "train.epochs=1",
                                "method.name=elr", "data.val_fraction=0.25"), run)
    state = torch.load(run / "model.pt", weights_only=True)  # tensors and plain values only
    rows = np.load(run / "per_sample.npz")["train_index"]
    x = tiny_images(96).x[rows].astype(np.float64) / 255.0  # the 72 training rows, not the held-out ones
    assert state["input"]["kind"] == "image" and state["input"]["shape"] == [16, 16, 3]
    assert np.allclose(state["input"]["mean"].numpy(), x.mean(axis=(0, 1, 2)), atol=1e-6)
    assert np.allclose(state["input"]["std"].numpy(), x.std(axis=(0, 1, 2)), atol=1e-6)
    assert state["class_names"] == ["k0", "k1", "k2", "k3"] and state["method"]["name"] == "elr"
    # ELR's per-sample targets [72, 4] and the final training probabilities stay out; the network is all there
    assert "target" in trainer.method.state_dict() and "target" not in state["weights"]
    assert "final_probs" not in state["weights"]
    net = {k for k in trainer.method.state_dict() if k.startswith("net.")}
    assert net and net <= set(state["weights"])
    assert state["record"]["run_created"] == json.loads((run / "results.json").read_text())["created"]


def test_predicting_a_tabular_run_with_string_labels(tmp_path, capsys, blobs_csv):
    run = tmp_path / "run"
    trainer, results = train(tiny_cfg(f"data.dataset=csv:{blobs_csv}", "data.val_fraction=0", "train.epochs=8",
                                      "train.batch_size=32"), run)
    assert results["selected"]["epoch"] is None  # no validation split: the last epoch's model
    out = tmp_path / "preds.csv"
    assert main(["predict", str(run), str(blobs_csv), "--out", str(out)]) == 0
    text = said(capsys)
    header, rows = read_preds(out)
    assert header == ["id", "predicted", "prob_ant", "prob_bee", "prob_cow"]
    assert [r[0] for r in rows] == [f"s{i}" for i in range(150, 240)]  # the test split, by id
    with open(blobs_csv, newline="") as f:
        labels = [r[-2] for r in csv.reader(f)][151:]
    correct = sum(r[1] == k for r, k in zip(rows, labels))
    acc = correct / 90
    assert correct == round(results["final"]["test_acc"] * 90) and acc > 0.9
    assert "final weights" in text and f"accuracy against the data's labels: {acc:.4f}" in text
    model = load_predictor(run / "model.pt")
    assert torch.equal(model.logits(trainer.data.test.x), trainer.predict_over(trainer.test_x,
                                                                                trainer.method.predict_logits))
    assert model.tta == "none"
    with pytest.raises(PredictorError, match="takes images; this model takes feature rows"):
        load_predictor(run, tta="mirror")
    # standardised with the training rows' mean and std, as the trainer did
    x_train = trainer.data.train.x
    state = torch.load(run / "model.pt", weights_only=True)
    assert np.allclose(state["input"]["mean"].numpy(), x_train.mean(0), atol=1e-5)
    assert np.allclose(state["input"]["std"].numpy(), x_train.std(0), atol=1e-5)

    # the same rows without labels (a CSV of features and ids): the same predictions and probabilities
    with open(blobs_csv, newline="") as f, open(tmp_path / "raw.csv", "w", newline="") as g:
        w = csv.writer(g)
        for i, r in enumerate(csv.reader(f)):
            if i == 0 or i > 150:
                w.writerow(r[:6])
    assert main(["predict", str(run), str(tmp_path / "raw.csv"), "--out", str(tmp_path / "raw_preds.csv")]) == 0
    assert read_preds(tmp_path / "raw_preds.csv")[1] == rows
    # the training split on request, compared with the (noisy) labels the run trained on
    assert main(["predict", str(run), f"csv:{blobs_csv}", "--split", "train", "--out", str(out)]) == 0
    assert len(read_preds(out)[1]) == 150


# ------------------------------------------------------------------------------------------ errors
@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("predict") / "run"
    x, y = blobs(120, d=4, c=3)
    splits = DatasetSplits(LabeledData(x, y, ["a", "b", "c"]), LabeledData(x[:30], y[:30], ["a", "b", "c"]))
    trainer = Trainer(tiny_cfg("train.epochs=1"), run, splits=splits)
    trainer.logger.console.quiet = True
    trainer.fit()
    return run


def test_without_out_the_csv_goes_to_stdout_and_the_rest_to_stderr(tmp_path, capsys, tiny_run):
    x = tmp_path / "x.npy"
    np.save(x, blobs(3, d=4, c=3, seed=9)[0])
    assert main(["predict", str(tiny_run), str(x), "--out", str(tmp_path / "p.csv")]) == 0
    in_file = (tmp_path / "p.csv").read_text().splitlines()
    assert "3 predictions of" in capsys.readouterr().out
    assert main(["predict", str(tiny_run), str(x)]) == 0  # a new-user trial: --out was required
    out, err = capsys.readouterr()
    assert out.splitlines() == in_file and in_file[0].startswith("id,predicted,prob_a")
    assert "3 predictions of" in err and "-> standard output" in err
    np.save(x, blobs(3, d=4, c=3, seed=9)[0][:1])
    assert main(["predict", str(tiny_run), str(x), "--out", "-"]) == 0
    assert "1 prediction of" in capsys.readouterr().err


@pytest.mark.parametrize("array, message", [
    (np.zeros((5, 3), np.float32), "got an array of shape [5, 3]; this model takes feature rows of 4 values"),
    (np.zeros((5, 8, 8, 3), np.uint8), "got images of shape [5, 8, 8, 3], but this model was trained on feature"),
    (np.array([[0, 1, 2, np.nan]], np.float32), "row 0 has NaN or infinite values"),
])
def test_inputs_of_the_wrong_shape_exit_2_saying_what_the_model_takes(tmp_path, capsys, tiny_run, array, message):
    np.save(tmp_path / "x.npy", array)
    out = tmp_path / "p.csv"
    assert main(["predict", str(tiny_run), str(tmp_path / "x.npy"), "--out", str(out)]) == 2
    err = said(capsys)
    assert "noisyfit predict: error:" in err and message in err
    assert not out.exists()


def test_new_images_of_any_size_in_a_flat_folder_a_file_or_an_array(tmp_path, capsys, image_npz):
    # a user's new photos: loose image files of mixed sizes (one in a subfolder), one file alone, an array of
    # another size; each is resized to the model's 16x16 as a training folder is decoded, with a note
    from PIL import Image

    from noisyfit.data.folder import decode_image

    run = tmp_path / "run"
    train(tiny_cfg(*IMAGE_NET, f"data.dataset=npz:{image_npz}", "train.epochs=1"), run)
    model = load_predictor(run, device="cpu")
    new = tmp_path / "new"
    (new / "more").mkdir(parents=True)
    rng = np.random.default_rng(3)
    files = {"b.png": (16, 16), "a.png": (24, 20), "more/c.jpg": (9, 30)}
    for name, (h, w) in files.items():
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(new / name)
    (new / "notes.txt").write_text("not an image")
    expected = np.stack([decode_image(new / n, (16, 16)) for n in ("a.png", "b.png", "more/c.jpg")])
    for data in (str(new), f"folder:{new}"):
        out = tmp_path / "p.csv"
        assert main(["predict", str(run), data, "--out", str(out)]) == 0
        assert "2 of 3 image(s) resized to the model's 16x16" in said(capsys)
        header, rows = read_preds(out)
        assert [r[0] for r in rows] == ["a.png", "b.png", "more/c.jpg"]  # sorted paths, relative to the folder
        assert [r[1] for r in rows] == [model.class_names[k] for k in model.predict(expected)]
    assert main(["predict", str(run), str(new / "a.png"), "--out", str(tmp_path / "one.csv")]) == 0
    assert [r[0] for r in read_preds(tmp_path / "one.csv")[1]] == ["a.png"]
    said(capsys)
    # an array of 8x8 images: resized (bicubic), with a note
    small = rng.integers(0, 256, (2, 8, 8, 3), dtype=np.uint8)
    np.save(tmp_path / "x.npy", small)
    assert main(["predict", str(run), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.csv")]) == 0
    assert "2 image(s) of 8x8 resized to the model's 16x16" in said(capsys)
    big = np.stack([np.asarray(Image.fromarray(im).resize((16, 16), Image.Resampling.BICUBIC)) for im in small])
    assert [r[1] for r in read_preds(tmp_path / "p.csv")[1]] == [model.class_names[k] for k in model.predict(big)]
    # what cannot be fixed by resizing still exits 2: another channel count, floats, a broken file
    np.save(tmp_path / "x.npy", np.zeros((2, 16, 16, 1), np.uint8))
    assert main(["predict", str(run), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.csv")]) == 2
    assert ("got an array of shape [2, 16, 16, 1]; this model takes uint8 images of 16x16 pixels with 3 channel(s)"
            in said(capsys))
    np.save(tmp_path / "x.npy", np.zeros((2, 16, 16, 3), np.float32))
    assert main(["predict", str(run), str(tmp_path / "x.npy"), "--out", str(tmp_path / "p.csv")]) == 2
    err = said(capsys)  # with the conversion to make (zeros: floats in [0, 1])
    assert "got images of dtype float32" in err and "so convert with (x * 255).round().astype(np.uint8)" in err
    (new / "broken.jpg").write_bytes(b"not a jpeg")
    assert main(["predict", str(run), str(new), "--out", str(tmp_path / "p2.csv")]) == 2
    assert "cannot decode image 'broken.jpg' (not an image Pillow can read)" in said(capsys)
    assert not (tmp_path / "p2.csv").exists()


def test_python_predictor_takes_image_files_and_images_of_any_size(tmp_path, image_npz):
    # what the CLI does for new photos, from Python: paths, a list of mixed sizes, an array of another size; each
    # decoded and resized as a training folder is (bicubic), with a warning naming how many were resized
    from PIL import Image

    from noisyfit.data.folder import decode_image

    run = tmp_path / "run"
    train(tiny_cfg(*IMAGE_NET, f"data.dataset=npz:{image_npz}", "train.epochs=1"), run)
    model = load_predictor(run, device="cpu")
    rng = np.random.default_rng(5)
    imgs = [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in ((16, 16), (24, 20), (9, 30))]
    for k, im in enumerate(imgs):
        Image.fromarray(im).save(tmp_path / f"{k}.png")
    expected = np.stack([decode_image(tmp_path / f"{k}.png", (16, 16)) for k in range(3)])
    want = model.predict_proba(expected)
    with pytest.warns(UserWarning, match="2 of 3 image\\(s\\) resized"):
        np.testing.assert_array_equal(model.predict_proba([tmp_path / f"{k}.png" for k in range(3)]), want)
    with pytest.warns(UserWarning, match="1 of 1 image\\(s\\) resized"):
        np.testing.assert_array_equal(model.predict_proba(str(tmp_path / "1.png")), want[1:2])
    with pytest.warns(UserWarning, match="2 of 3 image\\(s\\) resized to the model's 16x16") as caught:
        np.testing.assert_array_equal(model.predict_proba(imgs), want)  # PNG is lossless: the same pixels
    # the warning points at the user's line, not at torch's no_grad wrapper (a new-user trial)
    assert {w.filename for w in caught} == {__file__}
    with pytest.warns(UserWarning, match="2 of 3") as caught:
        model.logits(imgs)
    assert {w.filename for w in caught} == {__file__}
    with pytest.warns(UserWarning, match="1 image\\(s\\) of 24x20 resized"):
        np.testing.assert_array_equal(model.predict_proba(imgs[1][None]), want[1:2])
    with pytest.raises(PredictorError, match="cannot read as images: .*missing.png \\(missing\\)"):
        model.predict_proba(tmp_path / "missing.png")
    grey = [np.zeros((16, 16), np.uint8), np.zeros((9, 9), np.uint8)]  # mixed sizes and 1 channel: said, not numpy's
    with pytest.raises(PredictorError, match="images with 1 channel\\(s\\); this model takes 3: convert"):
        model.predict_proba(grey)


def test_bad_run_folders_exit_2_with_the_fix(tmp_path, capsys, tiny_run):
    x = tmp_path / "x.npy"
    np.save(x, np.zeros((2, 4), np.float32))

    def predict(run):
        assert main(["predict", str(run), str(x), "--out", str(tmp_path / "p.csv")]) == 2
        return said(capsys)

    assert "not found; pass the --out folder of a finished `noisyfit train` run" in predict(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    assert "is not a noisyfit run folder" in predict(tmp_path / "empty")
    (tmp_path / "unfinished").mkdir()
    (tmp_path / "unfinished" / "checkpoint.pt").write_bytes(b"")
    assert "the run has not finished" in predict(tmp_path / "unfinished")
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text((tiny_run / "results.json").read_text())
    assert "the run finished without model.pt" in predict(old)
    # a model.pt left from an earlier run in the folder is not taken for this run's
    results = json.loads((tiny_run / "results.json").read_text())
    (old / "model.pt").write_bytes((tiny_run / "model.pt").read_bytes())
    (old / "results.json").write_text(json.dumps({**results, "created": "2001-01-01T00:00:00+0000"}))
    assert "belongs to an earlier run in this folder" in predict(old)
    (old / "model.pt").write_bytes(b"not a torch file")
    assert "cannot read it as a noisyfit model file" in predict(old / "model.pt")
    with pytest.raises(PredictorError):
        load_predictor(tmp_path / "empty")
    # the good run works with the same inputs
    assert main(["predict", str(tiny_run), str(x), "--out", str(tmp_path / "p.csv")]) == 0


def test_overwrite_removes_the_model_of_the_replaced_run(tmp_path, capsys):
    out = tmp_path / "run"
    quick = ["--dataset", "digits", "--backbone", "mlp", "--epochs", "2", "--device", "cpu", "--no-progress",
             "model.args.hidden=[16]", "train.tensorboard=false", "data.train_subset=200"]
    assert main(["train", "--out", str(out), *quick]) == 0 and (out / "model.pt").is_file()
    # the new run stops after its first epoch: no model.pt yet, and the old one is gone
    assert main(["train", "--out", str(out), "--overwrite", "--stop-after", "1", "--seed", "3", *quick]) == 0
    assert not (out / "model.pt").exists()
    said(capsys)
    assert main(["predict", str(out), "digits", "--out", str(tmp_path / "p.csv")]) == 2
    assert "the run has not finished" in said(capsys)
