"""BKD's modified Otsu split and its four groups, on histograms whose answers are known by hand."""

import math

import numpy as np
import pytest
import torch

from noisyfit.ops.otsu import (OtsuSplit, classic_otsu, four_groups, modified_otsu, modified_otsu_criterion,
                               otsu_split, score_histogram)

# Two clusters of two spikes each. Bins (width 1/1000) are represented by their LEFT edges, so the
# spikes count as 0.05, 0.15 | 0.85, 0.95 although the raw scores are 0.0005 higher.
SPIKES = {0.0505: 10, 0.1505: 10, 0.8505: 40, 0.9505: 40}


def spike_scores():
    return np.concatenate([np.full(n, v) for v, n in SPIKES.items()])


def test_histogram_bins_are_left_closed_like_torch_histc():
    s = np.array([0.0, 0.0004, 0.001, 0.5, 0.9999, 1.0, -0.1, 1.2, np.nan])
    h = score_histogram(s)
    assert h.sum() == 6  # outside [0, 1] and NaN are not counted
    assert h[0] == 2 and h[1] == 1 and h[500] == 1 and h[999] == 2  # 1.0 joins the last bin
    rng = np.random.default_rng(0)
    r = rng.random(5000).astype(np.float32)
    np.testing.assert_array_equal(score_histogram(r), torch.histc(torch.from_numpy(r), 1000, 0, 1).numpy())


def test_criterion_uses_left_edges_raw_mean_and_std_denominator():
    s = spike_scores()
    q = modified_otsu_criterion(score_histogram(s), float(s.mean()))
    assert len(q) == 998 and q[0] == 0 and q[1] == 0
    # Any split between the clusters: left edges give mu1 = 0.10, mu2 = 0.90, sigma1 = sigma2 = 0.05,
    # while mu is the mean of the RAW scores, 74.05 / 100.
    mu = (0.0505 * 10 + 0.1505 * 10 + 0.8505 * 40 + 0.9505 * 40) / 100
    expected = (20 * (0.10 - mu) ** 2 + 80 * (0.90 - mu) ** 2) / (20 * 0.05 + 80 * 0.05)
    assert mu == pytest.approx(0.7405)
    assert q[151] == pytest.approx(expected, rel=1e-12)
    assert q[500] == q[151] == q[850]
    # With the binned mean (0.74) the value differs: mu must come from the raw scores.
    binned = (20 * (0.10 - 0.74) ** 2 + 80 * (0.90 - 0.74) ** 2) / 5.0
    assert abs(q[151] - binned) > 1e-6
    # A split inside the low cluster: n1 = 10 at 0.05 (variance clamped to 1e-5), n2 = 90.
    mu2 = (10 * 0.15 + 40 * 0.85 + 40 * 0.95) / 90
    var2 = (10 * (0.15 - mu2) ** 2 + 40 * (0.85 - mu2) ** 2 + 40 * (0.95 - mu2) ** 2) / 90
    inside = (10 * (0.05 - mu) ** 2 + 90 * (mu2 - mu) ** 2) / (10 * math.sqrt(1e-5) + 90 * math.sqrt(var2))
    assert q[100] == pytest.approx(inside, rel=1e-12)
    assert q[40] == -1e7  # nothing below bin 40: empty side


def test_criterion_matches_a_direct_loop_on_random_histogram():
    rng = np.random.default_rng(1)
    s = np.clip(np.concatenate([rng.normal(0.2, 0.1, 300), rng.normal(0.8, 0.05, 700)]), 0, 1)
    hist = score_histogram(s)
    q = modified_otsu_criterion(hist, float(s.mean()))
    edges = np.arange(1000) / 1000
    for k in (2, 137, 400, 640, 997):
        h1, h2 = hist[:k], hist[k:]
        if h1.sum() == 0 or h2.sum() == 0:
            assert q[k] == -1e7
            continue
        m1, m2 = (h1 * edges[:k]).sum() / h1.sum(), (h2 * edges[k:]).sum() / h2.sum()
        v1 = max((h1 * (edges[:k] - m1) ** 2).sum() / h1.sum(), 1e-5)
        v2 = max((h2 * (edges[k:] - m2) ** 2).sum() / h2.sum(), 1e-5)
        ref = (h1.sum() * (m1 - s.mean()) ** 2 + h2.sum() * (m2 - s.mean()) ** 2) / (
            h1.sum() * math.sqrt(v1) + h2.sum() * math.sqrt(v2))
        assert q[k] == pytest.approx(ref, rel=1e-10), k


def test_split_and_four_groups_on_known_histogram():
    s = spike_scores()
    sp = modified_otsu(s)
    # Q ties for every split bin 151..850; the first maximum wins, theta = 151/1000.
    assert sp.threshold == 0.151 and sp.valid and sp.criterion == "modified"
    assert sp.mu_low == pytest.approx(0.10) and sp.mu_high == pytest.approx(0.90)
    assert sp.sigma_low == pytest.approx(0.05) and sp.sigma_high == pytest.approx(0.05)
    mu = 0.7405  # the raw mean, not the binned one (0.74)
    assert sp.q == pytest.approx((20 * (0.10 - mu) ** 2 + 80 * (0.90 - mu) ** 2) / 5.0, rel=1e-12)
    g = four_groups(s, sp)
    # G4: s < 0.10 | G3: 0.10 <= s < 0.151 | G2: 0.151 <= s < 0.90 | G1: s >= 0.90
    expected = {0.0505: 4, 0.1505: 3, 0.8505: 2, 0.9505: 1}
    for v, grp in expected.items():
        assert set(g[s == v]) == {grp}
    assert np.bincount(g, minlength=5).tolist() == [0, 40, 40, 10, 10]


def test_two_spikes_give_clamped_sigma_and_first_tied_split():
    s = np.array([0.3] * 30 + [0.7] * 70)
    sp = modified_otsu(s)
    assert sp.threshold == 0.301  # 0.3 is in bin 300; k = 301 is the first split with it on the left
    assert sp.sigma_low == pytest.approx(math.sqrt(1e-5)) and sp.sigma_high == pytest.approx(math.sqrt(1e-5))
    g = four_groups(s, sp)
    assert (g[s == 0.7] == 1).all()  # at mu_high
    assert set(g[s == 0.3]) <= {3, 4}


def test_group_boundaries_are_half_open():
    sp = OtsuSplit(threshold=0.5, mu_low=0.2, mu_high=0.8, sigma_low=0.1, sigma_high=0.1, criterion="x")
    s = np.array([0.1999, 0.2, 0.4999, 0.5, 0.7999, 0.8, 1.0, np.nan])
    assert four_groups(s, sp).tolist() == [4, 3, 3, 2, 2, 1, 1, 0]


def test_no_valid_split_flags_nothing():
    for s in (np.full(50, 0.9995), np.full(50, 0.0005), np.array([])):
        sp = modified_otsu(s)
        assert not sp.valid
        assert (four_groups(s, sp) == 1).all()
    assert not classic_otsu(np.full(10, 0.4)).valid


def test_classic_otsu_uses_raw_means_and_differs_from_modified():
    s = spike_scores()
    sp = otsu_split(s, "classic")
    assert 0.1505 < sp.threshold <= 0.8505 and sp.criterion == "classic"
    assert sp.mu_low == pytest.approx(0.1005) and sp.mu_high == pytest.approx(0.9005)  # raw, not left edges
    # Classic Otsu maximises between-class variance; the modified criterion divides by the sides' spread,
    # so with a tight clean mode it prefers to cut that mode off on its own (here: above a middle mode).
    rng = np.random.default_rng(3)
    three = np.clip(np.concatenate([rng.normal(0.1, 0.03, 300), rng.normal(0.5, 0.1, 300),
                                    rng.normal(0.95, 0.01, 1400)]), 0, 1)
    assert classic_otsu(three).threshold < 0.65 < 0.75 < modified_otsu(three).threshold
    with pytest.raises(ValueError, match="modified.*classic"):
        otsu_split(s, "nope")
