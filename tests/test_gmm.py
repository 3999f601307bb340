import numpy as np
import pytest

from noisyfit.ops.gmm import gmm_split_1d, gmm_split_2d, minmax_normalise


def planted_losses(n_clean=700, n_noisy=300, seed=0):
    rng = np.random.default_rng(seed)
    clean = rng.gamma(2.0, 0.1, n_clean)  # small losses, right-skewed like real CE
    noisy = rng.normal(2.5, 0.4, n_noisy)
    losses = np.concatenate([noisy, clean])  # noisy first: the clean component must not rely on order
    is_clean = np.concatenate([np.zeros(n_noisy, bool), np.ones(n_clean, bool)])
    return losses, is_clean


def test_minmax_normalise_maps_to_unit_interval_and_constant_to_zero():
    assert np.allclose(minmax_normalise(np.array([2.0, 4.0, 3.0])), [0.0, 1.0, 0.5])
    assert np.array_equal(minmax_normalise(np.full(4, 7.0)), np.zeros(4))


def test_1d_gmm_recovers_a_planted_clean_noisy_mixture():
    losses, is_clean = planted_losses()
    split = gmm_split_1d(losses, random_state=0)
    pred_clean = split.clean_prob > 0.5
    assert np.mean(pred_clean == is_clean) > 0.98
    # the clean component is the one with the lower mean, whatever sklearn's component order
    assert split.means[split.clean_component, 0] < split.means[1 - split.clean_component, 0]
    assert split.clean_prob[is_clean].mean() > 0.95 and split.clean_prob[~is_clean].mean() < 0.05


def test_1d_gmm_is_affine_invariant_through_normalisation_and_seeded():
    losses, _ = planted_losses(seed=1)
    a = gmm_split_1d(losses, random_state=3)
    b = gmm_split_1d(10.0 * losses + 4.0, random_state=3)  # min-max removes scale and shift
    c = gmm_split_1d(minmax_normalise(losses), normalise=False, random_state=3)
    assert np.allclose(a.clean_prob, b.clean_prob, atol=1e-6)
    assert np.allclose(a.clean_prob, c.clean_prob, atol=1e-12)


def test_2d_gmm_picks_the_component_nearest_the_origin():
    rng = np.random.default_rng(0)
    # cluster A: low first coordinate but far from the origin, |mean|^2 = 0.1^2 + 0.85^2 = 0.7325
    a = rng.normal([0.10, 0.85], 0.04, (400, 2))
    # cluster B: nearer the origin, |mean|^2 = 0.35^2 + 0.15^2 = 0.145, although its first coordinate is larger
    b = rng.normal([0.35, 0.15], 0.04, (600, 2))
    pts = np.vstack([a, b])
    split = gmm_split_2d(pts[:, 0], pts[:, 1], normalise=False, random_state=0)
    in_b = np.r_[np.zeros(400, bool), np.ones(600, bool)]
    assert np.allclose(split.means[split.clean_component], [0.35, 0.15], atol=0.02)
    assert np.mean((split.clean_prob > 0.5) == in_b) > 0.99
    # a "lowest first coordinate" rule would have picked A: the norm rule is what decides here
    assert np.argmin(split.means[:, 0]) != split.clean_component


def test_2d_gmm_normalises_each_coordinate_separately():
    rng = np.random.default_rng(1)
    x = np.r_[rng.normal(0.2, 0.05, 300), rng.normal(0.8, 0.05, 200)]
    y = np.r_[rng.normal(0.3, 0.05, 300), rng.normal(0.7, 0.05, 200)]
    raw = gmm_split_2d(100 * x, 0.01 * y + 5, random_state=0)
    pre = gmm_split_2d(minmax_normalise(x), minmax_normalise(y), normalise=False, random_state=0)
    assert np.allclose(raw.clean_prob, pre.clean_prob, atol=1e-6)
    assert (raw.clean_prob[:300] > 0.5).mean() > 0.99 and (raw.clean_prob[300:] < 0.5).mean() > 0.99


def test_2d_gmm_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="differ in shape"):
        gmm_split_2d(np.zeros(3), np.zeros(4))
