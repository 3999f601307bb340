"""`noisyfit audit` end to end: an image folder, a CSV of features, built-in digits; every evidence source."""

import csv
import importlib.util
import json

import numpy as np
import pytest
from conftest import blobs

from noisyfit.cli import main
from noisyfit.data.sources import load_dataset

TRAIN_FLAGS = ["--epochs", "3", "--device", "cpu", "--precision", "fp32", "--no-progress",
               "model.args.hidden=[32]", "train.batch_size=64", "optim.lr=0.05", "train.tensorboard=false"]


def _read_csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _outputs(out):
    summary = json.loads((out / "summary.json").read_text())
    return _read_csv(out / "issues.csv"), summary, (out / "report.html").read_text()


def test_image_folder_with_pred_probs(tmp_path, image_folder):
    train = load_dataset(f"folder:{image_folder}").train
    names = train.class_names
    true = np.array([names.index(i.split("true-")[1].split("-")[0]) for i in train.ids])
    probs = np.full((len(train), 3), 0.05)
    probs[np.arange(len(train)), true] = 0.9
    np.save(tmp_path / "p.npy", probs)
    out = tmp_path / "audit"
    assert main(["audit", f"folder:{image_folder}", "--pred-probs", str(tmp_path / "p.npy"), "--out", str(out),
                 "--no-progress"]) == 0
    rows, summary, page = _outputs(out)
    assert sorted(r["id"] for r in rows) == ["cat/true-fox-2.png", "dog/true-cat-0.png", "fox/true-dog-1.png"]
    for r in rows:
        assert r["given_label"] == r["id"].split("/")[0]
        assert r["suggested_label"] == r["id"].split("true-")[1].split("-")[0]
        assert r["reason"].startswith("prune_by_noise_rate: ")
    assert list(rows[0]) == ["index", "id", "given", "given_label", "suggested", "suggested_label",
                            "suggested_confidence", "score", "reason"]
    assert [float(r["suggested_confidence"]) for r in rows] == [0.9, 0.9, 0.9]
    assert summary["num_issues"] == 3 and summary["estimated_noise_rate"] == pytest.approx(3 / 24)
    t = np.array(summary["noise"]["transition"])
    assert t.shape == (3, 3) and np.allclose(t.sum(axis=1), 1.0)
    assert [c["issues"] for c in summary["per_class"]] == [1, 1, 1]
    assert summary["detection"] is None  # an image folder has no true labels
    assert page.count("class='thumb'") == 3


def test_builtin_digits_with_planted_noise_and_pred_probs(tmp_path):
    # --noise plants the same flips as `noisyfit train --noise` with the same seed; a model that knows the
    # clean digits recovers exactly the planted ones.
    clean = load_dataset("digits").train.labels
    probs = np.full((len(clean), 10), 0.01)
    probs[np.arange(len(clean)), clean] = 0.91
    np.save(tmp_path / "p.npy", probs)
    out = tmp_path / "audit"
    assert main(["audit", "digits", "--noise", "sym:0.2", "--seed", "3", "--pred-probs", str(tmp_path / "p.npy"),
                 "--out", str(out), "--no-progress"]) == 0
    rows, summary, page = _outputs(out)
    det = summary["detection"]
    assert det["true_noise_rate"] == pytest.approx(0.2, abs=0.002)
    assert det["precision"] == 1.0 and det["recall"] == 1.0 and det["suggestion_accuracy"] == 1.0
    assert summary["estimated_noise_rate"] == pytest.approx(det["true_noise_rate"])
    assert rows[0]["id"].startswith("digits/")
    # digits' 64 features are an 8x8 image: the gallery shows them (24 by default), every flag is in the table
    assert "Rows drawn as 8x8 grey images" in page and page.count("class='thumb'") == 24
    assert "<table id='suspect-rows'>" not in page and page.count("<tr data-given=") == summary["num_issues"]


@pytest.fixture
def blobs_csv(tmp_path):
    x, true = blobs(n=300, d=6, c=3, seed=2)
    given = true.copy()
    given[:30] = (true[:30] + 1) % 3
    path = tmp_path / "blobs.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *[f"f{j}" for j in range(6)], "label", "true_label"])
        for i in range(len(x)):
            w.writerow([f"s{i}", *[f"{v:.4f}" for v in x[i]], given[i], true[i]])
    return path


def test_csv_with_method_then_the_same_run(tmp_path, blobs_csv):
    out = tmp_path / "audit"
    assert main(["audit", f"csv:{blobs_csv}", "--method", "ce", "--out", str(out), *TRAIN_FLAGS]) == 0
    rows, summary, page = _outputs(out)
    assert summary["detector"] == "noisyfit method ce"
    assert summary["num_examples"] == 300  # no validation split: every example audited
    assert summary["detection"]["true_noise_rate"] == pytest.approx(0.1)
    assert all(r["id"].startswith("s") and r["reason"].startswith("ce: p(given label) < 0.5") for r in rows)
    assert "<th>f0</th>" in page  # feature names from the CSV header
    again = tmp_path / "again"
    assert main(["audit", "--run", str(out / "run"), "--out", str(again), "--no-progress"]) == 0
    rows2, summary2, _ = _outputs(again)
    assert summary2["data"] == f"csv:{blobs_csv}"  # taken from the run's config
    assert [r["index"] for r in rows2] == [r["index"] for r in rows]


def test_without_a_source_the_default_detector_runs_and_says_why(tmp_path, blobs_csv):
    from noisyfit.commands.audit import DEFAULT_METHOD

    out = tmp_path / "audit"
    assert main(["audit", f"csv:{blobs_csv}", "--out", str(out), *TRAIN_FLAGS]) == 0
    _, summary, _ = _outputs(out)
    assert DEFAULT_METHOD == "elr" and summary["detector_choice"]["chosen"] == "default"
    assert summary["mode"].startswith("method elr") and "AUDIT.md" in summary["detector_choice"]["why"]
    assert (out / "run" / "results.json").is_file() and not (out / "pred_probs.npy").exists()
    assert summary["model_quality"]["what"] == "the elr run" and summary["model_quality"]["warnings"] == []
    assert "Why this detector: no detector was named" in (out / "report.html").read_text()
    assert summary["detection"]["f1"] > 0.8  # 30 planted flips on separable blobs


def test_the_default_mlp_on_images_is_named_and_a_conv_backbone_is_suggested(tmp_path, image_folder, blobs_csv,
                                                                              capsys):
    # a new user's photo folder with no --backbone trains an MLP on raw pixels: the audit must say so
    from noisyfit.engine.trainer import PIXEL_MLP_WARNING

    flags = ["--epochs", "1", "--device", "cpu", "--precision", "fp32", "--no-progress", "train.tensorboard=false"]
    assert main(["audit", f"folder:{image_folder}", "--out", str(tmp_path / "a"), *flags]) == 0
    err = capsys.readouterr().err
    assert f"warning: {PIXEL_MLP_WARNING}" in err and "--backbone fastcnn" in PIXEL_MLP_WARNING
    # and the report a person reads says it before anything else, as summary.json does
    _, summary, html = _outputs(tmp_path / "a")
    assert PIXEL_MLP_WARNING in summary["model_quality"]["warnings"]
    assert html.index("id='cautions'") < html.index("id='summary'") and "treats each pixel as a separate" in html
    from noisyfit.config import load_config
    from noisyfit.engine.trainer import Trainer

    Trainer(load_config(None, [f"data.dataset=folder:{image_folder}", "model.backbone=fastcnn", "train.device=cpu",
                               "train.tensorboard=false"]), None)  # built, not trained: the warning comes first
    assert "model.backbone=mlp" not in capsys.readouterr().err
    assert main(["audit", f"csv:{blobs_csv}", "--out", str(tmp_path / "c"), *flags]) == 0  # feature rows: fine
    assert "model.backbone=mlp" not in capsys.readouterr().err
    assert "id='cautions'" not in _outputs(tmp_path / "c")[2]


def test_folds_ask_for_the_out_of_fold_audit_and_clash_with_a_named_source(tmp_path, blobs_csv, capsys):
    assert main(["audit", f"csv:{blobs_csv}", "--method", "ce", "--folds", "3", "--out", str(tmp_path / "a"),
                 *TRAIN_FLAGS]) == 2
    assert "--folds / --oof-method ask for the out-of-fold audit" in capsys.readouterr().err


def test_csv_out_of_fold(tmp_path, blobs_csv):
    out = tmp_path / "audit"
    assert main(["audit", f"csv:{blobs_csv}", "--folds", "3", "--out", str(out), *TRAIN_FLAGS]) == 0
    _, summary, _ = _outputs(out)
    assert "detector_choice" not in summary and summary["mode"].startswith("out-of-fold ce")
    assert np.load(out / "pred_probs.npy").shape == (300, 3)
    assert summary["out_of_fold"]["folds"] == 3 and summary["out_of_fold"]["epochs"] == 3
    assert summary["detection"]["f1"] > 0.8  # 30 planted flips on separable blobs


@pytest.mark.skipif(importlib.util.find_spec("cleanlab") is None, reason="cleanlab not installed")
def test_cleanlab_detector(tmp_path, blobs_csv):
    true = np.array([int(r["true_label"]) for r in _read_csv(blobs_csv)])
    probs = np.full((300, 3), 0.05)
    probs[np.arange(300), true] = 0.9
    np.save(tmp_path / "p.npy", probs)
    out = tmp_path / "audit"
    assert main(["audit", f"csv:{blobs_csv}", "--pred-probs", str(tmp_path / "p.npy"), "--detector", "cleanlab",
                 "--out", str(out), "--no-progress"]) == 0
    rows, summary, _ = _outputs(out)
    assert summary["detector"].startswith("cleanlab ") and len(rows) == 30
    assert summary["detection"]["f1"] == 1.0


def test_annotators_against_consensus(tmp_path, capsys):
    rng = np.random.default_rng(0)
    n, c = 400, 3
    true = rng.integers(0, c, n)
    ann = {k: np.where(rng.random(n) < acc, true, (true + 1) % c) for k, acc in (("a", .8), ("b", .8), ("c", .3))}
    given = ann["c"]  # audit the weak annotator's labels
    np.savez(tmp_path / "crowd.npz", x=rng.normal(size=(n, 4)).astype(np.float32), y=given, true_labels=true,
             **{f"extra_{k}": v for k, v in ann.items()})
    out = tmp_path / "audit"
    assert main(["audit", f"npz:{tmp_path / 'crowd.npz'}", "--annotators", "a,b,c", "--crowd-backend", "builtin",
                 "--out", str(out), "--no-progress"]) == 0
    _, summary, page = _outputs(out)
    assert [a["annotator"] for a in summary["info"]["annotators"]] == ["a", "b", "c"]
    acc = summary["info"]["consensus_accuracy"]
    assert acc["dawid_skene"] > acc["majority_vote"]
    assert summary["detection"]["f1"] > 0.85
    assert "<section id='annotators'>" in page
    bad = main(["audit", f"npz:{tmp_path / 'crowd.npz'}", "--annotators", "a,zz", "--out", str(tmp_path / "bad")])
    assert bad == 2 and "no annotator column(s) ['zz']" in capsys.readouterr().err


def test_annotator_columns_of_a_csv(tmp_path, capsys):
    # crowd labels in a CSV: columns extra_<name>, class names as text, as in an .npz's extra_<name> arrays
    rng = np.random.default_rng(1)
    n, names = 300, ["ant", "bee", "cow"]
    true = rng.integers(0, 3, n)
    ann = {k: np.where(rng.random(n) < acc, true, (true + 1) % 3) for k, acc in (("a", .85), ("b", .85), ("c", .5))}
    path = tmp_path / "crowd.csv"
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "f0", "f1", "label", "true_label", "extra_a", "extra_b", "extra_c"])
        for i in range(n):
            w.writerow([f"r{i}", *rng.normal(size=2).round(3), names[ann["c"][i]], names[true[i]],
                        *(names[ann[k][i]] for k in "abc")])
    train = load_dataset(f"csv:{path}").train
    assert train.x.shape == (n, 2) and sorted(train.extra_labels) == ["a", "b", "c"]
    np.testing.assert_array_equal(train.extra_labels["a"], ann["a"])
    out = tmp_path / "audit"
    assert main(["audit", f"csv:{path}", "--annotators", "a,b,c", "--crowd-backend", "builtin", "--out", str(out),
                 "--no-progress"]) == 0
    _, summary, _ = _outputs(out)
    assert summary["detection"]["f1"] > 0.8  # the weak annotator's errors, found by the two good ones
    # a text column that is not named extra_ is still a feature, and the message says how to mark it
    path.write_text(path.read_text().replace("extra_a", "ann_a", 1))
    with pytest.raises(Exception, match="name it 'extra_ann_a'"):
        load_dataset(f"csv:{path}")
