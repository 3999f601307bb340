"""K-fold cross-fitted classifiers on embeddings, then confident learning: planted label errors on a separable
set are found exactly, with their true class suggested."""

import numpy as np
import pytest

from noisyfit.detect.crossfit import audit_embeddings, cross_fit
from noisyfit.detect.validation import DetectInputError
from noisyfit.embed import Embeddings

# three tight clusters far apart: any classifier that did not see an example's label predicts its cluster, and
# with points this close to their centre every example of a cluster gets about the same probabilities, so an
# example planted in another class scores its cluster's clean level, above that cluster's confident threshold
# (the mean over the examples *given* the class, which the planted ones pull down)
CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
PLANTED = {3: 1, 17: 2, 40: 0, 41: 2, 75: 0, 88: 1}  # index -> the wrong label given


def separable(n_per=30, seed=0):
    rng = np.random.default_rng(seed)
    true = np.repeat(np.arange(3), n_per)
    x = CENTRES[true] + rng.normal(0, 0.1, (len(true), 2))
    given = true.copy()
    for i, wrong in PLANTED.items():
        assert wrong != true[i]
        given[i] = wrong
    return x.astype(np.float32), given, true


@pytest.mark.parametrize("classifier", ["logreg", "mlp"])
def test_planted_errors_are_found(classifier):
    x, given, true = separable()
    issues = audit_embeddings(x, given, class_names=["a", "b", "c"], true_labels=true, folds=5,
                              classifier=classifier, ids=[f"s{i}" for i in range(len(given))])
    assert sorted(np.flatnonzero(issues.is_issue).tolist()) == sorted(PLANTED)
    assert all(issues.suggested[i] == true[i] for i in PLANTED)  # the cluster each came from
    assert {r["id"] for r in issues.records()} == {f"s{i}" for i in PLANTED}
    q = issues.info["model_quality"]
    # every out-of-fold prediction is the true cluster: agreement with the given labels = 84 / 90
    assert q["agreement"] == pytest.approx(84 / 90) and q["accuracy_true"] == 1.0 and not q["near_chance"]
    per_fold = issues.info["cross_fit"]["per_fold"]
    assert [f["held_out"] for f in per_fold] == [18] * 5
    assert sum(f["held_out_agreement_with_given"] * 18 for f in per_fold) == pytest.approx(84)
    d = issues.detection_metrics()
    assert d["precision"] == 1.0 and d["recall"] == 1.0 and d["suggestion_accuracy"] == 1.0


def test_cross_fit_is_out_of_fold_and_takes_embeddings_objects():
    x, given, true = separable()
    cf = cross_fit(x, given, folds=3, seed=1)
    assert cf.pred_probs.shape == (90, 3) and np.allclose(cf.pred_probs.sum(1), 1, atol=1e-5)
    assert sorted(np.bincount(cf.fold).tolist()) == [30, 30, 30]
    # a planted row's own (wrong) label never reached its classifier: its probability stays low
    assert all(cf.pred_probs[i, given[i]] < 0.2 for i in PLANTED)
    emb = Embeddings(x=x, labels=given, class_names=["a", "b", "c"], ids=[str(i) for i in range(90)], true_labels=true)
    issues = audit_embeddings(emb, folds=3)
    assert sorted(issues.index[issues.is_issue].tolist()) == sorted(PLANTED)


def test_bad_inputs():
    x, given, _ = separable()
    with pytest.raises(DetectInputError, match="89 labels"):
        cross_fit(x, given[:89])
    with pytest.raises(DetectInputError, match="classifier 'svm'"):
        cross_fit(x, given, classifier="svm")
    with pytest.raises(DetectInputError, match="fewer than 5 examples"):
        cross_fit(x[:6], np.array([0, 0, 1, 1, 2, 2]), folds=5)


def test_auto_c_is_chosen_on_inner_folds_and_regularises_a_few_examples_in_many_dimensions():
    """240 examples in 200 dimensions, 3 informative, 20% wrong labels: a weak penalty (C = 10) fits the wrong labels
    of the training folds; C = "auto" picks a stronger one from the grid by the given labels' inner log-loss and ranks
    the wrong labels better (AUROC of the out-of-fold p(given label))."""
    from sklearn.metrics import roc_auc_score

    from noisyfit.detect.crossfit import AUTO_CS

    rng = np.random.default_rng(0)
    true = np.repeat(np.arange(3), 80)
    x = rng.normal(0, 1, (240, 200))
    x[:, :3] += 1.5 * np.eye(3)[true]
    given = true.copy()
    flip = rng.random(240) < 0.2
    given[flip] = (true[flip] + rng.integers(1, 3, flip.sum())) % 3
    auc = {}
    for c in (10.0, 0.1, "auto"):  # 0.1: the fixed default of earlier versions
        cf = cross_fit(x, given, folds=5, C=c)
        auc[c] = roc_auc_score(given != true, -cf.pred_probs[np.arange(240), given])
    chosen = [f["C_chosen"] for f in cf.info["per_fold"]]
    assert all(ch in AUTO_CS for ch in chosen) and max(chosen) < 10.0
    assert cf.info["params"]["C"] == "auto"
    # seeded, so exact: 0.791 against 0.740 (C = 10) and 0.763 (C = 0.1)
    assert auc["auto"] > auc[10.0] + 0.03 and auc["auto"] > auc[0.1] + 0.01, auc
    with pytest.raises(DetectInputError, match="positive or 'auto'"):
        cross_fit(x, given, C="strong")
