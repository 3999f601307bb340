"""Parity with cleanlab on the same pred_probs, for the options that share a definition.

Our default confident joint follows the paper (argmax over the confident classes); cleanlab takes the
argmax over all classes, so the comparisons use ``argmax_over="all"``. ``num_to_remove_per_class`` has
our own definition and is not compared.
"""

import warnings

import numpy as np
import pytest

cleanlab = pytest.importorskip("cleanlab", reason="cleanlab is not installed: pip install 'noisyfit[cleanlab]' "
                                                  "(make test installs it through the test extra)")
import cleanlab.count as cl_count
import cleanlab.filter as cl_filter
import cleanlab.rank as cl_rank

from noisyfit.detect import (
    FILTERS,
    compute_confident_joint,
    estimate_joint,
    find_label_issues,
    label_quality_scores,
    num_label_issues,
)
from noisyfit.detect.cleanlab_backend import audit_with_cleanlab


def _problem(n=2500, c=5, seed=1, noise=0.25, strength=2.5):
    rng = np.random.default_rng(seed)
    true = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), true] += strength
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    labels = true.copy()
    flip = rng.random(n) < noise
    labels[flip] = rng.integers(0, c, flip.sum())
    return labels, p


@pytest.fixture(scope="module", params=[(1, 5), (2, 3), (3, 10)], ids=["c5", "c3", "c10"])
def problem(request):
    seed, c = request.param
    return _problem(c=c, seed=seed)


def _cleanlab_mask(labels, p, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cl_filter.find_label_issues(labels, p, n_jobs=1, **kw)


@pytest.mark.parametrize("filter_by", FILTERS)
def test_same_flags_for_every_filter(problem, filter_by):
    labels, p = problem
    ours = find_label_issues(labels, p, filter_by=filter_by, argmax_over="all")
    theirs = _cleanlab_mask(labels, p, filter_by=filter_by)
    assert ours.sum() > 0
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("kwargs", [{"frac_noise": 0.6}, {"min_examples_per_class": 480},
                                    {"filter_by": "both", "frac_noise": 0.3}])
def test_same_flags_with_options(kwargs):
    labels, p = _problem()
    with warnings.catch_warnings():  # both warn that a small class is left unpruned
        warnings.simplefilter("ignore")
        ours = find_label_issues(labels, p, argmax_over="all", **kwargs)
    np.testing.assert_array_equal(ours, _cleanlab_mask(labels, p, **kwargs))


@pytest.mark.parametrize("rank_by", ["self_confidence", "normalized_margin", "confidence_weighted_entropy"])
def test_same_ranking(problem, rank_by):
    labels, p = problem
    np.testing.assert_array_equal(
        find_label_issues(labels, p, return_indices_ranked_by=rank_by, argmax_over="all"),
        _cleanlab_mask(labels, p, return_indices_ranked_by=rank_by))


def test_same_counts_joint_and_scores(problem):
    labels, p = problem
    np.testing.assert_array_equal(compute_confident_joint(labels, p, calibrate=False, argmax_over="all"),
                                  cl_count.compute_confident_joint(labels, p, calibrate=False))
    np.testing.assert_array_equal(compute_confident_joint(labels, p, argmax_over="all"),
                                  cl_count.compute_confident_joint(labels, p))
    np.testing.assert_allclose(estimate_joint(labels, p, argmax_over="all"), cl_count.estimate_joint(labels, p),
                               atol=1e-12)
    assert num_label_issues(labels, p, argmax_over="all") == cl_count.num_label_issues(labels, p)
    assert (num_label_issues(labels, p, estimation_method="off_diagonal_calibrated", argmax_over="all")
            == cl_count.num_label_issues(labels, p, estimation_method="off_diagonal_calibrated"))
    for method in ("self_confidence", "normalized_margin", "confidence_weighted_entropy"):
        np.testing.assert_allclose(label_quality_scores(labels, p, method=method),
                                   cl_rank.get_label_quality_scores(labels, p, method=method), atol=1e-12)
    for method in ("self_confidence", "normalized_margin"):
        np.testing.assert_allclose(label_quality_scores(labels, p, method=method, adjust_pred_probs=True),
                                   cl_rank.get_label_quality_scores(labels, p, method=method,
                                                                    adjust_pred_probs=True), atol=1e-12)


def test_chunked_streaming_keeps_parity():
    labels, p = _problem(n=3000, c=10, seed=4)
    np.testing.assert_array_equal(find_label_issues(labels, p, argmax_over="all", chunk_size=113),
                                  _cleanlab_mask(labels, p))


def test_cleanlab_backend_returns_cleanlabs_own_flags():
    labels, p = _problem(seed=5)
    issues = audit_with_cleanlab(labels, p, class_names=list("abcde"))
    np.testing.assert_array_equal(issues.is_issue, _cleanlab_mask(labels, p))
    assert issues.detector.startswith("cleanlab ")
    assert all("cleanlab find_label_issues" in r for r in issues.reasons.values())
    assert np.all(issues.suggested[issues.is_issue] != labels[issues.is_issue])


@pytest.mark.parametrize("filter_by", ["prune_by_noise_rate", "confident_learning", "predicted_neq_given"])
def test_multilabel_parity_flags_entries_and_scores(filter_by):
    from cleanlab.multilabel_classification import filter as cl_multilabel
    from cleanlab.multilabel_classification import get_label_quality_scores

    from noisyfit.detect import multilabel_issues

    rng = np.random.default_rng(2)
    n, k = 1500, 4
    truth = rng.random((n, k)) < 0.3
    probs = 1 / (1 + np.exp(-(np.where(truth, 2.0, -2.0) + rng.normal(0, 1.2, (n, k)))))
    given = truth ^ (rng.random((n, k)) < 0.08)
    given[:3] = False  # examples without any class
    lists = [np.flatnonzero(r).tolist() for r in given]
    ours = multilabel_issues(given, probs, filter_by=filter_by)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        flags = cl_filter.find_label_issues(lists, probs, multi_label=True, filter_by=filter_by)
        per_class = cl_multilabel.find_multilabel_issues_per_class(lists, probs, filter_by=filter_by)
        scores = get_label_quality_scores(lists, probs)
    np.testing.assert_array_equal(ours.is_issue, flags)
    np.testing.assert_array_equal(ours.entry_flags, np.asarray(per_class))
    np.testing.assert_allclose(ours.scores, scores, atol=1e-12)
