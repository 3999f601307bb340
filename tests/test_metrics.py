import numpy as np
import pytest

from noisyfit.metrics import accuracy, detection_metrics


def test_detection_prf_on_hand_case():
    truth = np.array([1, 1, 1, 0, 0, 0, 0, 0], bool)
    flags = np.array([1, 1, 0, 1, 0, 0, 0, 0], bool)  # tp=2, fp=1, fn=1
    m = detection_metrics(truth, flags=flags)
    assert m["precision"] == pytest.approx(2 / 3)
    assert m["recall"] == pytest.approx(2 / 3)
    assert m["f1"] == pytest.approx(2 / 3)
    assert m["num_flagged"] == 3
    assert m["estimated_noise_rate"] == pytest.approx(3 / 8)
    assert m["noise_rate_error"] == pytest.approx(0.0)


def test_nothing_flagged_has_no_precision_and_zero_f1():
    truth = np.array([1, 1, 0, 0], bool)
    m = detection_metrics(truth, flags=np.zeros(4, bool))
    assert m["precision"] is None  # 0/0: undefined, not "every flag wrong"
    assert m["recall"] == 0.0 and m["f1"] == 0.0 and m["num_flagged"] == 0
    assert m["estimated_noise_rate"] == 0.0
    wrong = detection_metrics(truth, flags=np.array([0, 0, 1, 0], bool))  # one flag, and it is wrong
    assert wrong["precision"] == 0.0 and wrong["f1"] == 0.0


def test_auroc_ranks_low_clean_scores_as_noisy():
    truth = np.array([1, 1, 0, 0], bool)
    perfect = np.array([0.1, 0.2, 0.8, 0.9])  # noisy samples have the lowest clean scores
    assert detection_metrics(truth, clean_scores=perfect)["auroc"] == pytest.approx(1.0)
    assert detection_metrics(truth, clean_scores=1 - perfect)["auroc"] == pytest.approx(0.0)


def test_shapes_are_checked():
    with pytest.raises(ValueError, match="shape"):
        detection_metrics(np.zeros(3, bool), flags=np.zeros(4, bool))
    with pytest.raises(ValueError, match="shapes differ"):
        accuracy(np.zeros(2), np.zeros(3))


def test_f1_at_true_k_flags_the_k_lowest_scores_hand_case():
    from noisyfit.metrics import f1_at_true_k

    truth = np.array([1, 1, 0, 0, 0], bool)  # k = 2 wrong labels
    # the two lowest clean scores are samples 0 (wrong) and 2 (right): 1 of 2 found
    assert f1_at_true_k(truth, np.array([0.1, 0.5, 0.2, 0.9, 0.8])) == pytest.approx(0.5)
    assert f1_at_true_k(truth, np.array([0.1, 0.05, 0.2, 0.9, 0.8])) == pytest.approx(1.0)
    assert f1_at_true_k(np.zeros(3, bool), np.zeros(3)) is None
    m = detection_metrics(truth, clean_scores=np.array([0.1, 0.5, 0.2, 0.9, 0.8]))
    assert m["f1_at_true_k"] == pytest.approx(0.5)


def test_health_figures_score_masks_and_scores_against_the_truth():
    from noisyfit.metrics import health_figures

    noisy = np.array([1, 1, 0, 0, 0], bool)
    sel = np.array([0, 1, 1, 1, 0], bool)  # 3 selected: 2 clean (precision 2/3) of 3 clean (recall 2/3)
    tau = np.array([0.1, 0.5, 0.2, 0.9, 0.8])  # clean above noisy in 5 of 6 pairs
    out = health_figures({"selected": sel, "tau": tau, "tipping_epoch": 3, "skip": None}, noisy)
    assert out == pytest.approx({"selected_share": 0.6, "selected_precision": 2 / 3, "selected_recall": 2 / 3,
                                 "tau_auroc": 5 / 6, "tipping_epoch": 3.0})
    assert health_figures({"selected": sel}, None) == {"selected_share": 0.6}  # no truth: share only
    with pytest.raises(ValueError, match="rows"):
        health_figures({"selected": sel[:3]}, noisy)
