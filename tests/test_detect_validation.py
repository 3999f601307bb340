"""Bad input stops early, with a message that names the problem and the fix."""

import numpy as np
import pytest

from noisyfit.cli import main
from noisyfit.data.labeled import DataError
from noisyfit.detect import (
    DetectInputError,
    audit_label_issues,
    estimate_noise,
    find_label_issues,
    label_quality_scores,
    majority_vote,
)


def _good(n=12, c=3, seed=0):
    rng = np.random.default_rng(seed)
    p = rng.random((n, c)) + 0.1
    p /= p.sum(axis=1, keepdims=True)
    return np.arange(n) % c, p


def test_errors_are_data_errors_so_the_cli_prints_them_without_traceback():
    assert issubclass(DetectInputError, DataError)


def test_rows_not_summing_to_one_name_the_row_and_softmax():
    labels, p = _good()
    p[5] *= 3.0
    with pytest.raises(DetectInputError, match=r"row 5 sums to 3.*softmax"):
        find_label_issues(labels, p)


def test_logits_are_recognised_as_such():
    labels, p = _good()
    logits = np.log(p)  # negative entries
    with pytest.raises(DetectInputError, match=r"row 0 has negative entries.*logits.*softmax"):
        estimate_noise(labels, logits)


def test_nan_in_pred_probs_names_the_row():
    labels, p = _good()
    p[7, 1] = np.nan
    with pytest.raises(DetectInputError, match=r"row 7 contains NaN"):
        label_quality_scores(labels, p)


def test_nan_rows_found_in_a_later_chunk():
    labels, p = _good(n=50)
    p[41, 0] = np.inf
    with pytest.raises(DetectInputError, match=r"row 41 contains NaN or inf"):
        find_label_issues(labels, p, chunk_size=8)


def test_nan_labels_say_to_drop_unlabelled_examples():
    labels, p = _good()
    bad = labels.astype(float)
    bad[3] = np.nan
    with pytest.raises(DetectInputError, match=r"labels\[3\] is nan.*drop unlabelled"):
        find_label_issues(bad, p)


def test_shape_mismatch_with_labels():
    labels, p = _good()
    with pytest.raises(DetectInputError, match=r"pred_probs has 12 rows but labels has 11 entries.*same order"):
        find_label_issues(labels[:-1], p)
    with pytest.raises(DetectInputError, match=r"2-D \[N examples, C classes\]"):
        find_label_issues(labels, p[:, 0])


def test_label_outside_the_columns():
    labels, p = _good()
    labels[2] = 3
    with pytest.raises(DetectInputError, match=r"labels\[2\] = 3 is outside \[0, 3\).*pred_probs has 3 columns"):
        find_label_issues(labels, p)


def test_class_with_no_examples_says_how_to_drop_it():
    labels, p = _good()
    labels[labels == 1] = 0
    with pytest.raises(DetectInputError, match=r"class 1 \('cat'\) has no examples.*Drop its column"):
        audit_label_issues(labels, p, class_names=["dog", "cat", "cow"])
    # scores alone do not need every class (no per-class threshold involved)
    assert label_quality_scores(labels, p).shape == (12,)


def test_missing_and_unreadable_files(tmp_path):
    labels, _ = _good()
    with pytest.raises(DetectInputError, match=r"not found; pass the path of an .npy file"):
        find_label_issues(labels, tmp_path / "nope.npy")
    bad = tmp_path / "probs.txt"
    bad.write_text("0.5 0.5")
    with pytest.raises(DetectInputError, match=r"unsupported pred_probs format '.txt'.*np.save"):
        find_label_issues(labels, bad)


def test_bad_options_are_named():
    labels, p = _good()
    with pytest.raises(ValueError, match="filter_by='prune_by_magic'"):
        find_label_issues(labels, p, filter_by="prune_by_magic")
    with pytest.raises(ValueError, match="num_to_remove_per_class works with"):
        find_label_issues(labels, p, filter_by="confident_learning", num_to_remove_per_class=[1, 1, 1])
    with pytest.raises(ValueError, match="argmax_over='max'"):
        find_label_issues(labels, p, argmax_over="max")


def test_annotations_without_any_label_for_an_example():
    ann = np.array([[0, 1], [-1, -1], [2, 2]])
    with pytest.raises(DetectInputError, match=r"example 1 has no annotation.*drop unlabelled"):
        majority_vote(ann)


def test_cli_reports_a_missing_pred_probs_file(tmp_path, capsys):
    code = main(["audit", "digits", "--pred-probs", str(tmp_path / "missing.npy"), "--out", str(tmp_path / "a")])
    err = capsys.readouterr().err
    assert code == 2
    assert "missing.npy not found" in err and "Traceback" not in err


def test_cli_reports_pred_probs_of_the_wrong_length(tmp_path, capsys):
    np.save(tmp_path / "p.npy", np.full((10, 10), 0.1))
    code = main(["audit", "digits", "--pred-probs", str(tmp_path / "p.npy"), "--out", str(tmp_path / "a")])
    assert code == 2
    assert "pred_probs has 10 rows but labels has 1347 entries" in capsys.readouterr().err
