"""Multi-label audit: one-vs-rest confident learning, the per-example score, files and input errors."""

import numpy as np
import pytest

from noisyfit.detect.multilabel import aggregate_scores, label_matrix, multilabel_issues
from noisyfit.detect.validation import DetectInputError


def test_one_vs_rest_flags_by_hand():
    # class 0: p = [.9 .8 .1 .2 .95], given bits [1 1 0 0 0]: t(has) = .85, t(not) = mean(.9 .8 .05) = .583;
    #   example 4 lacks it with p .95 >= .85 -> add 0; nothing else crosses a threshold
    # class 1: p = [.1 .7 .2 .9 .1], bits [0 0 0 1 1]: t(has) = .5, t(not) = mean(.9 .3 .8) = .667;
    #   example 1 lacks it with p .7 >= .5 -> add 1; example 4 has it with 1 - p = .9 >= .667 -> remove 1
    probs = np.array([[.9, .1], [.8, .7], [.1, .2], [.2, .9], [.95, .1]])
    labels = [[0], [0], [], [1], [1]]
    found = multilabel_issues(labels, probs, class_names=["cat", "dog"], filter_by="confident_learning")
    assert found.is_issue.tolist() == [False, True, False, False, True]
    assert found.entry_flags.tolist() == [[False, False], [False, True], [False, False], [False, False], [True, True]]
    assert found.suggested[4].tolist() == [True, False] and found.suggested[1].tolist() == [True, True]
    # scores: the given bits' probabilities, highest first, EMA with alpha .8: example 4 [.1, .05] -> .06,
    # example 1 [.8, .3] -> .4; the lowest first in the records
    assert found.scores[4] == pytest.approx(0.8 * 0.05 + 0.2 * 0.1) and found.scores[1] == pytest.approx(0.4)
    rows = found.records()
    assert [(r["index"], r["given_labels"], r["suggested_labels"], r["remove"], r["add"]) for r in rows] == [
        (4, "dog", "cat", "dog", "cat"), (1, "cat", "cat|dog", "", "dog")]
    assert rows[0]["reason"] == "cat missing, p=0.950; dog given, p=0.100"
    assert [(c["remove"], c["add"]) for c in found.per_class] == [(0, 1), (1, 1)]


def test_class_aurocs_equal_scikit_learns():
    from sklearn.metrics import roc_auc_score

    from noisyfit.detect.multilabel import class_aurocs

    rng = np.random.default_rng(4)
    given = rng.random((300, 3)) < 0.4
    probs = np.round(np.clip(given * 0.3 + rng.random((300, 3)) * 0.7, 0, 1), 2)  # rounded: ties on purpose
    auc = class_aurocs(given, probs)
    want = [[roc_auc_score(given[:, k], probs[:, j]) for j in range(3)] for k in range(3)]
    np.testing.assert_allclose(auc, want, atol=1e-12)
    assert np.isnan(class_aurocs(np.ones((4, 1), bool), np.random.default_rng(0).random((4, 1))))[0, 0]


def test_aggregators_and_label_forms():
    s = np.array([[0.9, 0.2, 0.5]])
    # sorted high to low .9 .5 .2: ema = .9 -> .8 * .5 + .2 * .9 = .58 -> .8 * .2 + .2 * .58 = .276
    assert aggregate_scores(s)[0] == pytest.approx(0.276) and aggregate_scores(s, aggregator="min")[0] == 0.2
    np.testing.assert_array_equal(label_matrix([[0, 2], [], [1]], 3), [[1, 0, 1], [0, 0, 0], [0, 1, 0]])
    np.testing.assert_array_equal(label_matrix(np.array([[1, 0, 1]])), [[True, False, True]])
    with pytest.raises(DetectInputError, match="example 1 has class 3"):
        label_matrix([[0], [3]], 3)
    with pytest.raises(DetectInputError, match="single-label"):
        label_matrix(np.array([0, 1, 2]), 3)
    with pytest.raises(DetectInputError, match="holds 0/1"):
        label_matrix(np.array([[0, 2]]), 2)
    with pytest.raises(DetectInputError, match="not logits"):
        multilabel_issues([[0], [1]], np.array([[2.0, -1.0], [0.1, 0.3]]))


def test_planted_entry_errors_are_found_and_scored():
    rng = np.random.default_rng(0)
    n, k = 3000, 5
    truth = rng.random((n, k)) < 0.3
    # a decent out-of-sample model: the true bit shifts the logit by 4
    probs = 1 / (1 + np.exp(-(np.where(truth, 2.0, -2.0) + rng.normal(0, 1.2, (n, k)))))
    flip = rng.random((n, k)) < 0.08
    given = truth ^ flip
    found = multilabel_issues(given, probs, true_labels=truth)
    det = found.detection_metrics()
    assert det["entries"]["precision"] > 0.8 and det["entries"]["recall"] > 0.6, det["entries"]
    assert det["examples"]["auroc"] > 0.9, det["examples"]
    # the flagged entries are mostly the flipped ones, and switching them fixes more entries than it breaks
    assert (found.suggested != truth).sum() < 0.5 * (given != truth).sum()


def test_the_cli_audits_a_label_file_with_its_probabilities(tmp_path, capsys):
    import json

    from noisyfit.cli import main

    # the hand example above, as files: class order from labels.classes.txt (dog before cat here)
    (tmp_path / "labels.csv").write_text("id,labels,true_labels\na,cat,cat\nb,cat,cat|dog\nc,,\nd,dog,dog\n"
                                         "e,dog,cat\n")
    (tmp_path / "labels.classes.txt").write_text("dog\ncat\n")
    np.save(tmp_path / "p.npy", np.array([[.1, .9], [.7, .8], [.2, .1], [.9, .2], [.1, .95]]))
    out = tmp_path / "audit"
    assert main(["audit", "--multi-label", str(tmp_path / "labels.csv"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--filter-by", "confident_learning", "--out", str(out)]) == 0
    assert "2 of 5 examples flagged (3 entries); entries: precision 1.000, recall 1.000" in capsys.readouterr().err
    rows = (out / "issues.csv").read_text().splitlines()
    assert rows[0] == "index,id,given_labels,suggested_labels,remove,add,score,reason"
    assert rows[1].startswith("4,e,dog,cat,dog,cat,0.06,") and rows[2].startswith("1,b,cat,dog|cat,,dog,0.4,")
    summary = json.loads((out / "summary.json").read_text())
    assert summary["multi_label"] and summary["num_flagged_entries"] == 3
    assert "id='flagged'" in (out / "report.html").read_text()
    # errors: no probabilities, a class outside the declared list, a row count that does not match
    assert main(["audit", "--multi-label", str(tmp_path / "labels.csv"), "--out", str(tmp_path / "x")]) == 2
    assert "add --pred-probs" in capsys.readouterr().err
    (tmp_path / "labels.classes.txt").write_text("dog\n")
    assert main(["audit", "--multi-label", str(tmp_path / "labels.csv"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--out", str(tmp_path / "y")]) == 2
    assert ("5 label(s) are not one of the 1 declared classes (dog): line 2: 'cat', line 3: 'cat', line 2 in column "
            "'true_labels': 'cat'" in capsys.readouterr().err)


def test_columns_out_of_order_and_numeric_class_names(tmp_path, capsys):
    from noisyfit.cli import main

    rng = np.random.default_rng(1)
    n, k = 600, 12
    truth = rng.random((n, k)) < 0.3
    probs = 1 / (1 + np.exp(-(np.where(truth, 2.5, -2.5) + rng.normal(0, 1.0, (n, k)))))
    # classes named 0..11: their columns follow numeric order (text order put 10 and 11 before 2: a reviewer's trial)
    (tmp_path / "l.csv").write_text("labels\n" + "".join("|".join(str(c) for c in np.flatnonzero(r)) + "\n"
                                                         for r in truth))
    np.save(tmp_path / "p.npy", probs)
    args = ["audit", "--multi-label", str(tmp_path / "l.csv"), "--pred-probs", str(tmp_path / "p.npy")]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    err = capsys.readouterr().err
    assert "sorted order (0, 1, 2, 3, 4, 5, 6, 7...)" in err and "warning" not in err
    # two columns swapped: the audit says so instead of flagging in silence
    swapped = probs.copy()
    swapped[:, [0, 1]] = swapped[:, [1, 0]]
    np.save(tmp_path / "s.npy", swapped)
    assert main(["audit", "--multi-label", str(tmp_path / "l.csv"), "--pred-probs", str(tmp_path / "s.npy"),
                 "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "warning: the probability column of '1' ranks class '0' better than that class's own column" in err
    assert "Before you act on these flags" in (tmp_path / "b" / "report.html").read_text()
    # options that a multi-label audit would ignore are refused before any folder is made
    assert main([*args, "--clean", "relabel", "--out", str(tmp_path / "c")]) == 2
    assert "it does not take --clean" in capsys.readouterr().err and not (tmp_path / "c").exists()
    # a label that is a torch tensor or a 0/1 Python list is not misread as index lists
    import torch

    found = multilabel_issues(torch.tensor(truth.astype(int)), probs, check_quality=False)
    assert found.given.tolist() == truth.tolist()
    with pytest.raises(DetectInputError, match="ambiguous|reads as a 0/1 matrix"):
        multilabel_issues(truth.astype(int).tolist(), probs)
    with pytest.raises(DetectInputError, match="ids has 1 entries for 600"):
        multilabel_issues(truth, probs, ids=["a"])


@pytest.mark.filterwarnings("ignore:the probabilities of class")  # random rows: no class is predicted, and
@pytest.mark.filterwarnings("ignore:.* of the examples are flagged")  # most are flagged
def test_softmax_rows_and_per_class_pairs_are_named(tmp_path, capsys):
    from noisyfit.cli import main
    from noisyfit.detect.guardrails import QualityWarning

    rng = np.random.default_rng(3)
    p = rng.dirichlet(np.ones(4), 200)  # softmax rows
    given = rng.random((200, 4)) < 0.4
    with pytest.warns(QualityWarning, match="sums to 1, as a single-label model's softmax"):
        multilabel_issues(given, p)
    (tmp_path / "l.csv").write_text("labels\n" + "".join("|".join("abcd"[c] for c in np.flatnonzero(r)) + "\n"
                                                         for r in given))
    np.save(tmp_path / "p.npy", np.stack([1 - p, p], axis=2).transpose(1, 0, 2))  # [K, N, 2]
    assert main(["audit", "--multi-label", str(tmp_path / "l.csv"), "--pred-probs", str(tmp_path / "p.npy"),
                 "--out", str(tmp_path / "a")]) == 2
    assert "np.stack([p[:, 1] for p in probs], axis=1)" in capsys.readouterr().err
