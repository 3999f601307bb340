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
