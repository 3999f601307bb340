"""Confident learning: hand-computed joints and scores, planted-noise recovery, streaming, explanations."""

import tracemalloc

import numpy as np
import pytest
from conftest import blobs
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_predict

from noisyfit.data.noise import symmetric_flip
from noisyfit.detect import (
    audit_label_issues,
    compute_confident_joint,
    confident_thresholds,
    estimate_noise,
    find_label_issues,
    label_quality_scores,
    prune_counts,
)


# ------------------------------------------------------------------------------------------ hand-computed
def test_thresholds_and_confident_joint_by_hand():
    # 3 classes; thresholds are the mean p(j) over the examples labelled j
    labels = np.array([0, 0, 1, 1, 2, 2])
    p = np.array([[0.8, 0.1, 0.1],   # 0, confidently 0
                  [0.2, 0.7, 0.1],   # labelled 0, confidently 1 -> off-diagonal (0, 1)
                  [0.1, 0.9, 0.0],   # 1, confidently 1
                  [0.1, 0.5, 0.4],   # labelled 1: p1 = 0.5 < t1 = 0.7, p2 = 0.4 < t2 = 0.45 -> not counted
                  [0.0, 0.1, 0.9],   # 2
                  [0.3, 0.7, 0.0]])  # labelled 2, confidently 1 -> (2, 1)
    t = confident_thresholds(labels, p)
    np.testing.assert_allclose(t, [(0.8 + 0.2) / 2, (0.9 + 0.5) / 2, (0.9 + 0.0) / 2])
    cj = compute_confident_joint(labels, p, calibrate=False)
    expected = np.array([[1, 1, 0],
                         [0, 1, 0],
                         [0, 1, 1]])
    np.testing.assert_array_equal(cj, expected)
    # calibrated: rows scaled to the label counts (2 each), total 6
    cal = compute_confident_joint(labels, p, calibrate=True)
    np.testing.assert_array_equal(cal.sum(axis=1), [2, 2, 2])
    np.testing.assert_array_equal(cal, [[1, 1, 0], [0, 2, 0], [0, 1, 1]])


def test_paper_argmax_over_confident_classes_differs_from_cleanlab_rule():
    # Class 0 examples are very confident, so t0 is high; one example labelled 1 has p = (0.5, 0.3, 0.2):
    # classes 1 and 2 clear their low thresholds, class 0 (its overall argmax) does not.
    labels = np.array([0, 0, 1, 1, 2, 2, 1])
    p = np.array([[0.96, 0.02, 0.02], [0.94, 0.03, 0.03],
                  [0.10, 0.30, 0.60], [0.30, 0.25, 0.45],
                  [0.60, 0.25, 0.15], [0.50, 0.40, 0.10],
                  [0.50, 0.30, 0.20]])
    t = confident_thresholds(labels, p)
    assert p[6, 0] < t[0] and p[6, 1] >= t[1] and p[6, 2] >= t[2]
    paper = compute_confident_joint(labels, p, calibrate=False, argmax_over="confident")
    cleanlab_rule = compute_confident_joint(labels, p, calibrate=False, argmax_over="all")
    # the paper counts example 6 as (given 1, true 1): argmax over the confident classes {1, 2};
    # cleanlab's rule counts it as (given 1, true 0): argmax over all classes
    assert paper[1, 0] == 0 and cleanlab_rule[1, 0] == 1
    _, off_paper = compute_confident_joint(labels, p, return_indices_of_off_diagonals=True)
    _, off_all = compute_confident_joint(labels, p, argmax_over="all", return_indices_of_off_diagonals=True)
    assert set(off_all.tolist()) - set(off_paper.tolist()) == {6}


def test_label_quality_scores_by_hand():
    labels = np.array([0, 1])
    p = np.array([[0.7, 0.2, 0.1], [0.6, 0.3, 0.1]])
    np.testing.assert_allclose(label_quality_scores(labels, p, method="self_confidence"), [0.7, 0.3])
    np.testing.assert_allclose(label_quality_scores(labels, p, method="normalized_margin"),
                               [(0.7 - 0.2 + 1) / 2, (0.3 - 0.6 + 1) / 2])
    h = -(p * np.log(p)).sum(axis=1) / np.log(3)
    q = h / np.array([0.7, 0.3])
    np.testing.assert_allclose(label_quality_scores(labels, p, method="confidence_weighted_entropy"),
                               np.log(q + 1) / q)


def test_estimate_noise_is_exact_when_the_model_knows_the_truth():
    # p puts 0.9 on the true class: every example is confident in exactly its true class, so the
    # confident joint is the (given, true) count matrix and the estimates are exact.
    rng = np.random.default_rng(0)
    c, n = 4, 2000
    true = rng.integers(0, c, n)
    given = symmetric_flip(true, 0.3, c, seed=1).labels
    p = np.full((n, c), 0.1 / (c - 1))
    p[np.arange(n), true] = 0.9
    est = estimate_noise(given, p)
    counts = np.bincount(given * c + true, minlength=c * c).reshape(c, c)
    np.testing.assert_allclose(est.joint, counts / n, atol=1e-12)
    assert est.noise_rate == pytest.approx(np.mean(given != true), abs=1e-12)
    realised = counts.T / counts.sum(axis=0)[:, None]  # P(given | true), rows = true
    np.testing.assert_allclose(est.transition, realised, atol=1e-12)
    np.testing.assert_allclose(est.transition.sum(axis=1), 1.0)
    assert est.num_label_issues == int(np.sum(given != true))


def test_prune_counts_min_examples_and_frac_noise_by_hand():
    cal = np.array([[6, 4], [2, 8]])
    np.testing.assert_array_equal(prune_counts(cal, [10, 10]), cal)
    # frac_noise 0.5: off-diagonal halved (rounded down), the rest moved to the diagonal
    np.testing.assert_array_equal(prune_counts(cal, [10, 10], frac_noise=0.5), [[8, 2], [1, 9]])
    # keep at least 7 in class 0: its diagonal rises 6 -> 7, taken from its one non-zero off-diagonal cell
    np.testing.assert_array_equal(prune_counts(cal, [10, 10], min_examples_per_class=7), [[7, 3], [2, 8]])


# ------------------------------------------------------------------------------------------ planted noise
@pytest.fixture(scope="module")
def planted():
    """Blobs with 25% symmetric noise and 5-fold out-of-sample probabilities of a logistic regression."""
    x, true = blobs(n=1500, d=8, c=4, seed=3, sep=2.5)
    given = symmetric_flip(true, 0.25, 4, seed=7).labels
    probs = cross_val_predict(LogisticRegression(max_iter=500), x, given, cv=5, method="predict_proba")
    return given, true, probs


def _f1(flags, wrong):
    tp = np.sum(flags & wrong)
    return 2 * tp / (flags.sum() + wrong.sum())


@pytest.mark.parametrize("filter_by,min_f1", [("prune_by_noise_rate", 0.85), ("both", 0.85),
                                              ("confident_learning", 0.85), ("low_self_confidence", 0.85),
                                              ("prune_by_class", 0.80), ("predicted_neq_given", 0.80)])
def test_planted_noise_is_recovered(planted, filter_by, min_f1):
    given, true, probs = planted
    wrong = given != true
    flags = find_label_issues(given, probs, filter_by=filter_by)
    assert _f1(flags, wrong) >= min_f1


def test_audit_suggests_the_true_label_and_estimates_the_rate(planted):
    given, true, probs = planted
    issues = audit_label_issues(given, probs, class_names=["a", "b", "c", "d"], true_labels=true)
    wrong = given != true
    caught = issues.is_issue & wrong
    assert np.mean(issues.suggested[caught] == true[caught]) >= 0.9
    assert issues.estimated_noise_rate == pytest.approx(wrong.mean(), abs=0.04)
    # the estimated transition is close to the realised one (symmetric 25%: 0.75 on the diagonal)
    assert np.abs(np.diag(issues.noise.transition) - 0.75).max() < 0.08
    det = issues.detection_metrics()
    assert det["f1"] >= 0.85 and det["auroc"] >= 0.95


def test_every_flag_carries_signal_value_and_threshold(planted):
    given, _, probs = planted
    issues = audit_label_issues(given, probs, class_names=["a", "b", "c", "d"])
    recs = issues.records()
    assert len(recs) == issues.num_issues > 0
    assert [r["score"] for r in recs] == sorted(r["score"] for r in recs)  # most suspicious first
    for r in recs[:20]:
        assert r["reason"].startswith("prune_by_noise_rate: ")
        assert f"p({r['suggested_label']}) - p({r['given_label']})" in r["reason"] and "cutoff" in r["reason"]
        assert r["suggested"] != r["given"]
    cl = audit_label_issues(given, probs, filter_by="confident_learning", class_names=["a", "b", "c", "d"])
    r = cl.records()[0]
    assert f">= t({r['suggested_label']}) = " in r["reason"]
    low = audit_label_issues(given, probs, filter_by="low_self_confidence")
    assert low.threshold is not None and np.all(low.scores[low.is_issue] <= low.threshold)


def test_ranked_indices_and_frac_noise(planted):
    given, _, probs = planted
    mask = find_label_issues(given, probs)
    ranked = find_label_issues(given, probs, return_indices_ranked_by="self_confidence")
    assert sorted(ranked.tolist()) == np.flatnonzero(mask).tolist()
    sc = probs[ranked, given[ranked]]
    assert np.all(np.diff(sc) >= 0)
    half = find_label_issues(given, probs, frac_noise=0.5)
    assert half.sum() < mask.sum() and np.all(mask[half])
    assert abs(half.sum() - mask.sum() / 2) <= 0.1 * mask.sum()


# ------------------------------------------------------------------------------------------ streaming
def test_chunked_and_memory_mapped_results_are_identical(planted, tmp_path):
    given, _, probs = planted
    path = tmp_path / "pred_probs.npy"
    np.save(path, probs)
    for fb in ("prune_by_noise_rate", "prune_by_class", "confident_learning", "low_normalized_margin"):
        whole = find_label_issues(given, probs, filter_by=fb)
        np.testing.assert_array_equal(find_label_issues(given, probs, filter_by=fb, chunk_size=37), whole)
        np.testing.assert_array_equal(find_label_issues(given, str(path), filter_by=fb, chunk_size=100), whole)
    np.testing.assert_allclose(estimate_noise(given, path, chunk_size=64).joint, estimate_noise(given, probs).joint)


def test_memory_stays_below_the_size_of_pred_probs(tmp_path):
    # 40,000 x 50 float32 on disk; as float64 in memory it would be 16 MB. Streaming in chunks of
    # 2,000 rows keeps the peak of numpy allocations to the O(N) per-example arrays plus a few chunks.
    n, c = 40_000, 50
    rng = np.random.default_rng(0)
    path = tmp_path / "big.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(n, c))
    for s in range(0, n, 5000):
        block = rng.random((5000, c)).astype(np.float32) ** 4
        mm[s:s + 5000] = block / block.sum(axis=1, keepdims=True)
    mm.flush()
    del mm
    labels = rng.integers(0, c, n)
    tracemalloc.start()
    try:
        flags = find_label_issues(labels, str(path), chunk_size=2000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert flags.shape == (n,)
    # reading the array whole would cost 8 MB (float32) or 16 MB (float64) on its own
    assert peak < 0.5 * n * c * 8, f"peak {peak / 1e6:.1f} MB"


def test_label_issues_print_as_one_line():
    from noisyfit.detect import audit_label_issues

    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, 5000)
    probs = np.full((5000, 3), 0.1)
    probs[np.arange(5000), np.where(rng.random(5000) < 0.1, (labels + 1) % 3, labels)] = 0.8
    issues = audit_label_issues(labels, probs, check_quality=False)
    text = repr(issues)
    assert text.startswith(f"LabelIssues({issues.num_issues:,} of 5,000 flagged, estimated noise rate ")
    assert len(text) < 300 and "\n" not in text  # the dataclass repr printed every array and reason
