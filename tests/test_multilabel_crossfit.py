"""The multi-label audit fits its own classifiers: stratified folds, out-of-fold probabilities, rare classes, CLI."""

import csv
import json

import numpy as np
import pytest

from noisyfit.detect.multilabel import multilabel_issues
from noisyfit.detect.multilabel_crossfit import audit_multilabel_features, cross_fit_multilabel, multilabel_folds
from noisyfit.detect.validation import DetectInputError


def test_iterative_stratification_deals_every_class_evenly():
    # class 0 on 5 of 10 examples, class 1 (rarest) on 2, class 2 on 3; 5 folds of 2
    y = np.zeros((10, 3), dtype=bool)
    y[[0, 1, 2, 3, 4], 0] = True
    y[[0, 5], 1] = True
    y[[6, 7, 8], 2] = True
    fold = multilabel_folds(y, 5, seed=0)
    assert np.bincount(fold, minlength=5).tolist() == [2] * 5
    assert np.bincount(fold[y[:, 0]], minlength=5).tolist() == [1] * 5  # one of class 0 per fold
    assert len(set(fold[y[:, 1]])) == 2 and len(set(fold[y[:, 2]])) == 3  # rare classes never share a fold
    assert fold.tolist() == multilabel_folds(y, 5, seed=0).tolist()  # deterministic for a seed
    # plain shuffled K-fold can leave a rare class's training split without it; here each split keeps >= 4 of 5
    rng = np.random.default_rng(0)
    big = rng.random((500, 8)) < np.array([0.5, 0.3, 0.2, 0.1, 0.05, 0.02, 0.01, 0.01])
    big[:5, 7] = True
    f = multilabel_folds(big, 5, seed=1)
    per_fold = np.stack([big[f == k].sum(axis=0) for k in range(5)])
    assert (per_fold.max(axis=0) - per_fold.min(axis=0) <= 1).all()
    with pytest.raises(DetectInputError, match="folds must be between 2"):
        multilabel_folds(y, 1)


def test_each_fold_is_predicted_by_a_classifier_fitted_on_the_others():
    from noisyfit.detect.crossfit import make_classifier

    rng = np.random.default_rng(2)
    x = rng.normal(size=(150, 4))
    y = np.stack([x[:, 0] > 0, x[:, 1] + 0.5 * x[:, 2] > 0.3, rng.random(150) < 0.3], axis=1)
    cf = cross_fit_multilabel(x, y, folds=3, C=0.5, seed=4)
    assert cf.pred_probs.shape == (150, 3) and not cf.info["skipped"]
    for f in range(3):
        tr, te = cf.fold != f, cf.fold == f
        for c in range(3):
            model = make_classifier("logreg", C=0.5).fit(x[tr], y[tr, c])
            np.testing.assert_allclose(cf.pred_probs[te, c], model.predict_proba(x[te])[:, 1], rtol=1e-5)
    assert sum(p["held_out"] for p in cf.info["per_fold"]) == 150


def test_planted_entry_errors_are_found_out_of_fold():
    # the features carry the true sets; 4% of entries switched: an in-sample fit could learn them back,
    # out-of-fold probabilities cannot
    rng = np.random.default_rng(0)
    truth = rng.random((400, 5)) < 0.3
    x = truth + rng.normal(0, 0.2, truth.shape)  # an entry misread at p = 0.5: 0.6%
    given = truth ^ (rng.random(truth.shape) < 0.04)
    found = audit_multilabel_features(x, given, true_labels=truth, folds=5, seed=0, check_quality=False)
    det = found.detection_metrics()["entries"]
    assert det["precision"] > 0.85 and det["recall"] > 0.85, det
    assert found.info["cross_fit"]["folds"] == 5 and "stratification" in found.info["cross_fit"]


def test_a_class_too_rare_to_fit_is_not_audited_nor_guessed():
    rng = np.random.default_rng(1)
    truth = rng.random((200, 3)) < 0.4
    truth[:, 2] = False
    truth[[3, 50, 120], 2] = True  # 3 examples: fewer than the 5 folds
    x = truth + rng.normal(0, 0.3, truth.shape)
    cf = cross_fit_multilabel(x, truth, folds=5, C=1.0)
    assert list(cf.info["skipped"]) == [2] and "3 example(s) with it" in cf.info["skipped"][2]
    assert np.isnan(cf.pred_probs[:, 2]).all() and np.isfinite(cf.pred_probs[:, :2]).all()
    found = audit_multilabel_features(x, truth, class_names=["a", "b", "rare"], folds=5, C=1.0, check_quality=False)
    assert not found.entry_flags[:, 2].any() and (found.class_scores[:, 2] == 1.0).all()
    assert found.per_class[2]["note"].startswith("not audited: 3 example(s) with it")
    assert found.info["model_quality"]["class_auroc"]["rare"] is None
    # multilabel_issues's skip on given probabilities: the same, and a bad index is refused
    p = np.where(truth, 0.9, 0.1)
    p[:, 2] = np.nan
    assert not multilabel_issues(truth, p, skip={2: "why"}, check_quality=False).entry_flags[:, 2].any()
    with pytest.raises(DetectInputError, match="skip names classes outside 0..2"):
        multilabel_issues(truth, p, skip={3: "why"})


def _write_table(path, x, sets, ids=None, extra=None):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow((["id"] if ids else []) + [f"f{j}" for j in range(x.shape[1])] + ["labels"] + (["note"] if extra else []))
        for i in range(len(x)):
            w.writerow(([ids[i]] if ids else []) + [repr(float(v)) for v in x[i]] + ["|".join(sets[i])]
                       + ([extra[i]] if extra else []))


def test_the_cli_cross_fits_on_the_csv_columns_or_an_embeddings_file(tmp_path, capsys):
    from noisyfit.cli import main

    rng = np.random.default_rng(5)
    names = ["cat", "dog", "sky"]
    truth = rng.random((150, 3)) < 0.4
    x = truth + rng.normal(0, 0.3, truth.shape)
    sets = [[n for n, b in zip(names, r) if b] for r in truth]
    ids = [f"img{i}.jpg" for i in range(150)]
    _write_table(tmp_path / "t.csv", x, sets, ids)
    args = ["audit", "--multi-label", str(tmp_path / "t.csv"), "--logreg-c", "1", "--folds", "3", "--seed", "2"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "cross-fitting logreg on 3-d features of 150 examples, 3 folds (the CSV columns)" in err
    summary = json.loads((tmp_path / "a" / "summary.json").read_text())
    assert summary["source"] == {"feature_columns": ["f0", "f1", "f2"]} and summary["cross_fit"]["folds"] == 3
    assert "out of fold, from logreg classifiers" in (tmp_path / "a" / "report.html").read_text()
    probs = np.load(tmp_path / "a" / "pred_probs.npz")["pred_probs"]
    # the same features as an embeddings file, in another order, with folder paths as ids: matched by file name
    np.savez(tmp_path / "e.npz", x=x[::-1], ids=np.array([f"photos/{i}" for i in ids][::-1]))
    (tmp_path / "labels.csv").write_text("id,labels\n" + "".join(f"{i},{'|'.join(s)}\n" for i, s in zip(ids, sets)))
    e_args = ["audit", "--multi-label", str(tmp_path / "labels.csv"), "--embedder", str(tmp_path / "e.npz"),
              "--logreg-c", "1", "--folds", "3", "--seed", "2"]
    assert main([*e_args, "--out", str(tmp_path / "b")]) == 0
    assert "rows matched by file name" in capsys.readouterr().err
    np.testing.assert_allclose(np.load(tmp_path / "b" / "pred_probs.npz")["pred_probs"], probs, rtol=1e-5)
    # errors, exit 2, before any folder
    np.savez(tmp_path / "short.npz", x=x[:10], ids=np.array(ids[1:11]))
    assert main([*e_args[:4], str(tmp_path / "short.npz"), "--out", str(tmp_path / "c")]) == 2
    assert "no row with id 'img0.jpg'" in capsys.readouterr().err
    _write_table(tmp_path / "bad.csv", x, sets, ids, extra=["ok"] * 150)
    assert main(["audit", "--multi-label", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "d")]) == 2
    assert "bad.csv, line 2, column 'note': 'ok' is not a number" in capsys.readouterr().err
    np.save(tmp_path / "p.npy", probs)
    assert main(["audit", "--multi-label", str(tmp_path / "t.csv"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--classifier", "mlp", "--out", str(tmp_path / "e")]) == 2
    assert "nothing is fitted: --classifier would be ignored" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()
