"""Otsu-style splits of per-sample scores in [0, 1], and BKD's four noise groups.

Two criteria are offered:

* :func:`modified_otsu` is the split of Blind Knowledge Distillation (Kaiser et al., 2022) as its
  official code computes it (TimoK93/blind_knowledge_distillation, ``otsu``): a 1000-bin histogram on
  [0, 1], each bin represented by its *left edge* ``k/1000``, the global mean ``mu`` taken from the
  *raw* scores, and the criterion

      Q(k) = [n1 (mu1 - mu)^2 + n2 (mu2 - mu)^2] / (n1 sigma1 + n2 sigma2),   k = 2 .. 997,

  i.e. the between-class scatter divided by the count-weighted standard deviations (not variances:
  this is not classic Otsu). Each side's variance is clamped below at 1e-5 before the square root.
  The threshold is ``theta = argmax_k Q(k) / 1000``; ``mu1`` / ``mu2`` become ``mu_low`` / ``mu_high``.
* :func:`classic_otsu` is the textbook between-class-variance threshold (scikit-image's
  ``threshold_otsu``), with ``mu_low`` / ``mu_high`` the means of the raw scores on each side.

:func:`four_groups` turns a split into BKD's groups: G1 ``s >= mu_high`` (most likely clean),
G2 ``theta <= s < mu_high``, G3 ``mu_low <= s < theta``, G4 ``s < mu_low`` (most likely noisy).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

#: numbers of bins and the range of split bins searched by the official code (``range(2, 998)``)
OTSU_BINS = 1000
FIRST_SPLIT, LAST_SPLIT = 2, 997
#: lower clamp of each side's variance before the square root, as in the official code
VAR_FLOOR = 1e-5


@dataclass(frozen=True)
class OtsuSplit:
    """A two-class split of scores: threshold and the two class means / standard deviations.

    ``valid`` is False when no split leaves scores on both sides (then nothing is below ``mu_low``).
    ``q`` is the criterion at the chosen split (modified Otsu only; NaN otherwise).
    """

    threshold: float
    mu_low: float
    mu_high: float
    sigma_low: float
    sigma_high: float
    criterion: str
    valid: bool = True
    q: float = float("nan")

    def as_dict(self) -> dict:
        return asdict(self)


def _clean(scores) -> np.ndarray:
    s = np.asarray(scores, dtype=np.float64).ravel()
    return s[np.isfinite(s)]


def score_histogram(scores, bins: int = OTSU_BINS) -> np.ndarray:
    """Counts of ``scores`` in ``bins`` equal bins on [0, 1]; bin ``k`` holds ``[k/bins, (k+1)/bins)``.

    Like ``torch.histc(s, bins, 0, 1)``: a score of exactly 1 goes to the last bin, scores outside
    [0, 1] (and NaN) are not counted.
    """
    s = _clean(scores)
    s = s[(s >= 0.0) & (s <= 1.0)]
    k = np.minimum(np.floor(s * bins).astype(np.int64), bins - 1)
    return np.bincount(k, minlength=bins).astype(np.float64)


def modified_otsu_criterion(hist: np.ndarray, mu: float) -> np.ndarray:
    """``Q(k)`` of BKD's modified Otsu for every split bin ``k`` (see the module docstring).

    Parameters
    ----------
    hist : ndarray, shape (bins,)
        Histogram counts; bin ``j`` is represented by its left edge ``j / bins``.
    mu : float
        The mean of the raw scores (not of the binned values).

    Returns
    -------
    ndarray, shape (LAST_SPLIT + 1,)
        ``Q(k)`` for ``k = 0 .. 997``; ``k = 0, 1`` hold 0 and splits with an empty side -1e7, the
        values the official code puts in those places.
    """
    hist = np.asarray(hist, dtype=np.float64)
    bins = len(hist)
    edges = np.arange(bins) / bins
    last = min(LAST_SPLIT, bins - 1)
    q = np.zeros(last + 1)  # like the official list: two zeros for k = 0, 1, then Q(2) .. Q(997)
    ks = np.arange(FIRST_SPLIT, last + 1)
    below = np.arange(bins)[None, :] < ks[:, None]  # [K, bins]: bin j lies left of split k
    w1 = np.where(below, hist[None, :], 0.0)
    w2 = np.where(below, 0.0, hist[None, :])
    n1, n2 = w1.sum(1), w2.sum(1)
    ok = (n1 > 0) & (n2 > 0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mu1 = (w1 * edges).sum(1) / n1
        mu2 = (w2 * edges).sum(1) / n2
        # two-pass variances, as written in the official code (not E[x^2] - E[x]^2)
        var1 = (w1 * (edges[None, :] - mu1[:, None]) ** 2).sum(1) / n1
        var2 = (w2 * (edges[None, :] - mu2[:, None]) ** 2).sum(1) / n2
        sig1, sig2 = np.sqrt(np.maximum(var1, VAR_FLOOR)), np.sqrt(np.maximum(var2, VAR_FLOOR))
        qk = (n1 * (mu1 - mu) ** 2 + n2 * (mu2 - mu) ** 2) / (n1 * sig1 + n2 * sig2)
    q[ks] = np.where(ok, qk, -1e7)
    return q


def _side_stats(hist: np.ndarray, k: int) -> tuple[float, float, float, float]:
    edges = np.arange(len(hist)) / len(hist)
    h1, e1, h2, e2 = hist[:k], edges[:k], hist[k:], edges[k:]
    mu1 = float((h1 * e1).sum() / h1.sum())
    mu2 = float((h2 * e2).sum() / h2.sum())
    s1 = float(np.sqrt(max((h1 * (e1 - mu1) ** 2).sum() / h1.sum(), VAR_FLOOR)))
    s2 = float(np.sqrt(max((h2 * (e2 - mu2) ** 2).sum() / h2.sum(), VAR_FLOOR)))
    return mu1, mu2, s1, s2


def modified_otsu(scores) -> OtsuSplit:
    """BKD's modified Otsu split of scores in [0, 1] (official-code semantics).

    Parameters
    ----------
    scores : array-like
        Per-sample scores (BKD: agreement probability of the given label). NaN entries are ignored.

    Returns
    -------
    OtsuSplit
        ``threshold = k*/1000`` with ``k* = argmax Q(k)`` (first maximum on ties), ``mu_low`` /
        ``mu_high`` the bin-left-edge means below / above it. When every split leaves one side
        empty (all scores in bins 0-1 or 998-999) the split is invalid: threshold and means are 0,
        so :func:`four_groups` puts every sample in G1 and flags none (the official code would crash).
    """
    s = _clean(scores)
    hist = score_histogram(s)
    mu = float(s.mean()) if len(s) else 0.0
    q = modified_otsu_criterion(hist, mu)
    k = int(np.argmax(q))
    if k < FIRST_SPLIT or q[k] < 0:
        return OtsuSplit(0.0, 0.0, 0.0, 0.0, 0.0, "modified", valid=False)
    mu1, mu2, s1, s2 = _side_stats(hist, k)
    return OtsuSplit(k / OTSU_BINS, mu1, mu2, s1, s2, "modified", q=float(q[k]))


def classic_otsu(scores, nbins: int = 256) -> OtsuSplit:
    """Classic Otsu (max between-class variance, scikit-image ``threshold_otsu``).

    ``mu_low`` / ``mu_high`` are the means of the raw scores below / at-or-above the threshold, the
    sigmas their standard deviations. Constant scores give an invalid split (nothing flagged).
    """
    from skimage.filters import threshold_otsu

    s = _clean(scores)
    if len(s) == 0 or s.min() == s.max():
        return OtsuSplit(0.0, 0.0, 0.0, 0.0, 0.0, "classic", valid=False)
    t = float(threshold_otsu(s, nbins=nbins))
    lo, hi = s[s < t], s[s >= t]
    if len(lo) == 0 or len(hi) == 0:
        return OtsuSplit(0.0, 0.0, 0.0, 0.0, 0.0, "classic", valid=False)
    return OtsuSplit(t, float(lo.mean()), float(hi.mean()), float(lo.std()), float(hi.std()), "classic")


def otsu_split(scores, criterion: str = "modified") -> OtsuSplit:
    """Dispatch to :func:`modified_otsu` (BKD's official criterion) or :func:`classic_otsu`."""
    if criterion == "modified":
        return modified_otsu(scores)
    if criterion == "classic":
        return classic_otsu(scores)
    raise ValueError(f"unknown Otsu criterion {criterion!r}; use 'modified' or 'classic'")


def four_groups(scores, split: OtsuSplit) -> np.ndarray:
    """BKD's noise groups 1..4 (int8) from a split; G1 most likely clean, G4 most likely noisy.

    G4: ``s < mu_low``; G3: ``mu_low <= s < theta``; G2: ``theta <= s < mu_high``; G1: ``s >= mu_high``.
    The tests are applied in the official order (G4, G3 from what is not G4, then G1, G2 from what is
    not G1), so the groups cover every finite score even if the means and the threshold were unordered.
    NaN scores get group 0 (no group).
    """
    s = np.asarray(scores, dtype=np.float64)
    g = np.zeros(s.shape, dtype=np.int8)
    g4 = s < split.mu_low
    g3 = ~g4 & (s < split.threshold)
    g1 = s >= split.mu_high
    g2 = ~g1 & (s >= split.threshold)
    for label, mask in ((1, g1), (2, g2), (3, g3), (4, g4)):  # later groups win, as in the official code
        g[mask] = label
    return g
