"""Two-component Gaussian mixtures that split training samples into clean and noisy by their losses.

* :func:`gmm_split_1d` is DivideMix's selection (Li, Socher and Hoi, ICLR 2020): min-max normalise the
  per-sample cross-entropy over the training set, fit a 2-component GMM, and take each sample's posterior
  of the component with the *lower mean* as its clean probability.
* :func:`gmm_split_2d` is PLReMix's selection (Liu et al., WACV 2025): min-max normalise the classifier
  loss and the prototype loss separately, fit a full-covariance 2-component GMM on the 2-D points, and
  take the posterior of the component whose mean is *nearest the origin* (smallest squared norm).

Both use the settings of the official code (scikit-learn ``GaussianMixture`` with ``max_iter=10``,
``tol=1e-2``, ``reg_covar=5e-4``). One departure: the official code leaves ``random_state`` unset, so
the k-means initialisation differs from run to run; here it is fixed by the caller so that a resumed
run and every DDP rank fit exactly the same mixture.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

#: GaussianMixture settings of DivideMix / PLReMix (official code)
GMM_SETTINGS = {"max_iter": 10, "tol": 1e-2, "reg_covar": 5e-4}


@dataclass
class GMMSplit:
    """Result of a clean/noisy mixture fit.

    Attributes
    ----------
    clean_prob : ndarray [N]
        Posterior probability of the clean component for each sample.
    means : ndarray [2, D]
        Component means (in the normalised space the mixture was fitted in).
    clean_component : int
        Index of the component taken as clean.
    """

    clean_prob: np.ndarray
    means: np.ndarray
    clean_component: int


def minmax_normalise(values: np.ndarray) -> np.ndarray:
    """Scale ``values`` to [0, 1] over the data set (constant input maps to zeros)."""
    v = np.asarray(values, dtype=np.float64)
    lo, hi = v.min(), v.max()
    if hi - lo <= 0:  # all losses equal: no information, keep the GMM fit defined
        return np.zeros_like(v)
    return (v - lo) / (hi - lo)


def _fit(points: np.ndarray, covariance_type: str, random_state: int | None):
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.mixture import GaussianMixture

    gmm = GaussianMixture(n_components=2, covariance_type=covariance_type, random_state=random_state,
                          **GMM_SETTINGS)
    with warnings.catch_warnings():
        # max_iter=10 is the official setting; sklearn would warn on most fits
        warnings.simplefilter("ignore", ConvergenceWarning)
        gmm.fit(points)
    return gmm


def gmm_split_1d(losses: np.ndarray, *, normalise: bool = True, random_state: int | None = 0) -> GMMSplit:
    """DivideMix's clean probability: posterior of the lower-mean component of a 1-D GMM on losses.

    Parameters
    ----------
    losses : array [N]
        Per-sample losses (e.g. CE of the given label, eval mode).
    normalise : bool
        Min-max normalise first (DivideMix does; pass False for an already normalised loss history).
    random_state : int or None
        Seed of the k-means initialisation (fixed for reproducible resume and DDP).

    Returns
    -------
    GMMSplit
    """
    x = np.asarray(losses, dtype=np.float64).reshape(-1, 1)
    if normalise:
        x = minmax_normalise(x)
    gmm = _fit(x, "full", random_state)
    clean = int(np.argmin(gmm.means_[:, 0]))
    prob = gmm.predict_proba(x)[:, clean]
    return GMMSplit(prob, gmm.means_.copy(), clean)


def gmm_split_2d(loss_a: np.ndarray, loss_b: np.ndarray, *, normalise: bool = True,
                 random_state: int | None = 0) -> GMMSplit:
    """PLReMix's clean probability: 2-D full-covariance GMM, clean component = mean nearest the origin.

    Parameters
    ----------
    loss_a, loss_b : array [N]
        Two per-sample losses (PLReMix: classifier CE and prototype CE of the given label).
    normalise : bool
        Min-max normalise each coordinate separately first (PLReMix does).
    random_state : int or None
        Seed of the k-means initialisation.

    Returns
    -------
    GMMSplit
    """
    a = np.asarray(loss_a, dtype=np.float64)
    b = np.asarray(loss_b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two losses differ in shape: {a.shape} vs {b.shape}")
    if normalise:
        a, b = minmax_normalise(a), minmax_normalise(b)
    pts = np.column_stack([a, b])
    gmm = _fit(pts, "full", random_state)
    clean = int(np.argmin((gmm.means_ ** 2).sum(axis=1)))
    prob = gmm.predict_proba(pts)[:, clean]
    return GMMSplit(prob, gmm.means_.copy(), clean)
