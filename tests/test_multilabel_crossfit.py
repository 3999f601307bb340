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
    assert "no row matches id 'img0.jpg'" in capsys.readouterr().err
    _write_table(tmp_path / "bad.csv", x, sets, ids, extra=["ok"] * 150)
    assert main(["audit", "--multi-label", str(tmp_path / "bad.csv"), "--out", str(tmp_path / "d")]) == 2
    assert "bad.csv, line 2, column 'note': 'ok' is not a number" in capsys.readouterr().err
    np.save(tmp_path / "p.npy", probs)
    assert main(["audit", "--multi-label", str(tmp_path / "t.csv"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--classifier", "mlp", "--out", str(tmp_path / "e")]) == 2
    assert "nothing is fitted: --classifier would be ignored" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def test_auto_C_is_chosen_per_class_on_inner_folds_of_each_training_split():
    from sklearn.linear_model import LogisticRegressionCV
    from sklearn.model_selection import StratifiedKFold

    from noisyfit.detect.crossfit import AUTO_CS, GlobalScaler

    rng = np.random.default_rng(3)
    x = rng.normal(size=(120, 6))
    y = np.stack([x[:, 0] + rng.normal(0, 1.5, 120) > 0, x[:, 1] > 0.2], axis=1)
    cf = cross_fit_multilabel(x, y, folds=3, seed=7)
    for f in range(3):
        tr, te = cf.fold != f, cf.fold == f
        scaler = GlobalScaler().fit(x[tr])
        ref = LogisticRegressionCV(Cs=list(AUTO_CS), cv=StratifiedKFold(4, shuffle=True, random_state=7 + f),
                                   scoring="neg_log_loss", max_iter=1000).fit(scaler.transform(x[tr]), y[tr, 0])
        assert cf.info["per_fold"][f]["C_chosen"][0] == pytest.approx(float(ref.C_[0]))
        np.testing.assert_allclose(cf.pred_probs[te, 0], ref.predict_proba(scaler.transform(x[te]))[:, 1], rtol=1e-4)


def test_mlp_columns_are_their_classes_and_one_fittable_class_works():
    rng = np.random.default_rng(6)
    truth = rng.random((300, 3)) < 0.4
    x = truth + rng.normal(0, 0.3, truth.shape)
    cf = cross_fit_multilabel(x, truth, folds=3, classifier="mlp", max_iter=300)
    from sklearn.metrics import roc_auc_score

    aurocs = [[roc_auc_score(truth[:, k], cf.pred_probs[:, j]) for j in range(3)] for k in range(3)]
    assert all(aurocs[k][k] > 0.95 and max(aurocs[k][j] for j in range(3) if j != k) < 0.7 for k in range(3))
    one = truth.copy()
    one[:, 1:] = False
    one[:2, 1] = True  # class 1: 2 examples for 3 folds (skipped), class 2: none (skipped): one class left
    cf1 = cross_fit_multilabel(x, one, folds=3, classifier="mlp", max_iter=300)
    assert sorted(cf1.info["skipped"]) == [1, 2] and np.isfinite(cf1.pred_probs[:, 0]).all()


def test_a_class_missing_from_a_training_split_is_skipped_not_crashed():
    from noisyfit.detect.multilabel_crossfit import unfittable_classes

    # the reviewer's case: with 2 folds, the dealing leaves some class without an example (or a non-example) in
    # one training split, which logistic regression cannot fit
    y = np.array([[1, 1, 0], [0, 0, 0], [1, 0, 1], [0, 1, 1]], dtype=bool)
    for seed in range(5):
        fold = multilabel_folds(y, 2, seed=seed)
        skipped = unfittable_classes(y, fold, 2)
        assert skipped  # every dealing of these four rows leaves some class one-sided in a training split
        for c in range(3):
            sides = [set(y[fold != f, c].tolist()) for f in range(2)]
            assert (c in skipped) == any(s != {False, True} for s in sides)
    cf = cross_fit_multilabel(np.arange(8.0).reshape(4, 2) ** 2, y, folds=2, C=1.0)
    assert list(cf.info["skipped"]) == [2] and "hold no example with it" in cf.info["skipped"][2]
    assert np.isnan(cf.pred_probs[:, 2]).all() and np.isfinite(cf.pred_probs[:, :2]).all()


def test_cli_rare_classes_ids_and_given_columns(tmp_path, capsys):
    from noisyfit.cli import main

    rng = np.random.default_rng(8)
    truth = rng.random((60, 2)) < 0.5
    x = truth + rng.normal(0, 0.3, truth.shape)
    ids = [f"img{i:03d}.jpg" for i in range(60)]
    # every class too rare to fit: a clean error, not a traceback
    (tmp_path / "rare.csv").write_text("labels,f0\n" + "".join(f"{'abc'[i % 3] if i < 12 else ''},{i}\n"
                                                             for i in range(12)))
    assert main(["audit", "--multi-label", str(tmp_path / "rare.csv"), "--out", str(tmp_path / "r")]) == 2
    assert "can be audited" in capsys.readouterr().err
    # one class only, some rows without it: a valid label-set file
    (tmp_path / "one.csv").write_text("labels,f0\n" + "".join(f"{'cat' if b else ''},{v:.3f}\n"
                                                            for b, v in zip(truth[:, 0], x[:, 0])))
    assert main(["audit", "--multi-label", str(tmp_path / "one.csv"), "--folds", "3", "--out", str(tmp_path / "o")]) == 0
    capsys.readouterr()
    # ids: duplicated rows in the embeddings, a missing id named as it is, pred_probs.npz keyed by the CSV's ids
    sets = ["|".join(n for n, b in zip("pq", r) if b) for r in truth]
    (tmp_path / "l.csv").write_text("id,labels\n" + "".join(f"{i},{s}\n" for i, s in zip(ids, sets)))
    np.savez(tmp_path / "dup.npz", x=np.concatenate([x, x[:1]]), ids=np.array([f"a/{i}" for i in ids] + ["b/img000.jpg"]))
    base = ["audit", "--multi-label", str(tmp_path / "l.csv"), "--folds", "3", "--embedder"]
    assert main([*base, str(tmp_path / "dup.npz"), "--out", str(tmp_path / "d")]) == 2
    assert "more than one row matches id 'img000.jpg'" in capsys.readouterr().err
    np.savez(tmp_path / "miss.npz", x=x[1:], ids=np.array([f"a/{i}" for i in ids[1:]]))
    assert main([*base, str(tmp_path / "miss.npz"), "--out", str(tmp_path / "m")]) == 2
    assert "no row matches id 'img000.jpg'" in capsys.readouterr().err
    np.savez(tmp_path / "ok.npz", x=x[::-1], ids=np.array(ids[::-1]))
    assert main([*base, str(tmp_path / "ok.npz"), "--out", str(tmp_path / "k")]) == 0
    saved = np.load(tmp_path / "k" / "pred_probs.npz")
    assert saved["ids"].tolist() == ids
    # knn's own k is used; --knn-k 0 and knn's --seed refused
    assert main(["audit", "--multi-label", str(tmp_path / "l.csv"), "--embedder", str(tmp_path / "ok.npz"),
                 "--classifier", "knn", "--knn-k", "4", "--out", str(tmp_path / "n")]) == 0
    assert json.loads((tmp_path / "n" / "summary.json").read_text())["cross_fit"]["params"]["k"] == 4
    for extra, said in ((["--knn-k", "0"], "--knn-k 0: at least 1"), (["--seed", "1"], "knn does not use --seed"),
                        (["--folds", "3"], "knn does not use --folds")):
        assert main(["audit", "--multi-label", str(tmp_path / "l.csv"), "--classifier", "knn", *extra,
                     "--out", str(tmp_path / "e")]) == 2
        assert said in capsys.readouterr().err
    # a saved pred_probs.npz with a class it could not fit (a NaN column) goes back in as --pred-probs
    probs = saved["pred_probs"].copy()
    probs[:, 1] = np.nan
    np.save(tmp_path / "p.npy", probs)
    assert main(["audit", "--multi-label", str(tmp_path / "l.csv"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--out", str(tmp_path / "g")]) == 0
    assert "class 'q' is not audited: no probabilities in --pred-probs" in capsys.readouterr().err


def test_a_bad_value_names_its_line_past_blank_lines(tmp_path, capsys):
    from noisyfit.cli import main

    (tmp_path / "t.csv").write_text("labels,f0\na,1\n\nb,2\n\na,x\n")
    assert main(["audit", "--multi-label", str(tmp_path / "t.csv"), "--out", str(tmp_path / "a")]) == 2
    assert "t.csv, line 6, column 'f0': 'x' is not a number" in capsys.readouterr().err


def test_too_rare_classes_names_the_side_that_falls_short():
    from noisyfit.detect.multilabel_crossfit import too_rare_classes

    y = np.zeros((10, 3), dtype=bool)
    y[:2, 0] = True   # 2 with it
    y[:9, 1] = True   # 1 without it
    y[:5, 2] = True   # 5 and 5: enough
    assert too_rare_classes(y, 3, "too few") == {0: "2 example(s) with it, too few",
                                                 1: "1 example(s) without it, too few"}
