"""How bad is each label? Per-example label-quality scores (higher = more likely correct).

Three scores, as in cleanlab's ``rank.get_label_quality_scores``, with ``p`` the predicted probabilities
and ``y`` the given label:

* ``self_confidence``: ``p_y``;
* ``normalized_margin``: ``(p_y - max_{k != y} p_k + 1) / 2``;
* ``confidence_weighted_entropy``: with ``q = H(p) / log(C) / p_y`` (normalised entropy over
  self-confidence, both floored at 1e-6), ``log(q + 1) / q``.

``adjust_pred_probs=True`` first subtracts each class's confident threshold from its column, shifts by
the largest threshold and renormalises rows, which removes a class's systematic over-confidence.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.special import xlogy

from noisyfit.detect.count import Scan, _thresholds, prepare
from noisyfit.detect.progress import progress_bar
from noisyfit.detect.validation import iter_chunks

ScoreMethod = Literal["self_confidence", "normalized_margin", "confidence_weighted_entropy"]
SCORE_METHODS = ("self_confidence", "normalized_margin", "confidence_weighted_entropy")
_FLOOR = 1e-6


def _check_method(method: str) -> None:
    if method not in SCORE_METHODS:
        raise ValueError(f"method={method!r} is not a label-quality score; use one of {', '.join(SCORE_METHODS)}")


def _scores(method: str, self_conf: np.ndarray, best_other_prob: np.ndarray, entropy: np.ndarray) -> np.ndarray:
    if method == "self_confidence":
        return np.asarray(self_conf, dtype=np.float64).copy()
    if method == "normalized_margin":
        return (self_conf - best_other_prob + 1.0) / 2.0
    q = entropy / np.maximum(self_conf, _FLOOR)
    return np.log(q + 1.0) / np.maximum(q, _FLOOR)


def scores_from_scan(sc: Scan, method: ScoreMethod = "self_confidence") -> np.ndarray:
    """Scores from a :class:`~noisyfit.detect.count.Scan` (no further pass over pred_probs)."""
    _check_method(method)
    return _scores(method, sc.self_confidence, sc.best_other_prob, sc.entropy)


def label_quality_scores(labels, pred_probs, *, method: ScoreMethod = "self_confidence",
                         adjust_pred_probs: bool = False, chunk_size: int | None = None,
                         class_names: Sequence[str] | None = None, verbose: bool = False) -> np.ndarray:
    """A score in [0, 1] per example; low scores are likely label errors.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
    pred_probs : array (N, C) or path to ``.npy``
        Out-of-sample predicted probabilities.
    method : {"self_confidence", "normalized_margin", "confidence_weighted_entropy"}
    adjust_pred_probs : bool
        Subtract per-class confident thresholds first (not for ``confidence_weighted_entropy``).
    chunk_size : int, optional
    class_names : sequence of str, optional
    verbose : bool

    Returns
    -------
    ndarray of float, shape (N,)
    """
    _check_method(method)
    if adjust_pred_probs and method == "confidence_weighted_entropy":
        raise ValueError("adjust_pred_probs is not defined for confidence_weighted_entropy; use "
                         "self_confidence or normalized_margin, or adjust_pred_probs=False")
    lab, probs = prepare(labels, pred_probs, class_names=class_names)
    # validates every row; thresholds (and so every class having examples) matter only for the adjustment
    t, _ = _thresholds(lab, probs, chunk_size, class_names, verbose, check_classes=adjust_pred_probs)
    out = np.empty(len(lab))
    log_c = np.log(probs.shape[1])
    with progress_bar(len(lab), "scoring", verbose) as bar:
        for start, p in iter_chunks(probs, chunk_size):
            if adjust_pred_probs:
                p = p - t + t.max()
                p /= p.sum(axis=1, keepdims=True)
            rows = np.arange(len(p))
            y = lab[start:start + len(p)]
            self_conf = p[rows, y]
            other = p.copy()
            other[rows, y] = -np.inf
            entropy = -xlogy(p, p).sum(axis=1) / log_c if method == "confidence_weighted_entropy" else None
            out[start:start + len(p)] = _scores(method, self_conf, other.max(axis=1), entropy)
            bar.advance(len(p))
    return out


def order_label_issues(label_issues_mask: np.ndarray, labels, pred_probs, *,
                       rank_by: ScoreMethod = "self_confidence", rank_by_kwargs: dict | None = None,
                       scores: np.ndarray | None = None) -> np.ndarray:
    """Indices of flagged examples, most severe (lowest score) first; ties keep index order.

    ``scores`` skips recomputing them when already known.
    """
    mask = np.asarray(label_issues_mask, dtype=bool)
    if scores is None:
        scores = label_quality_scores(labels, pred_probs, method=rank_by, **(rank_by_kwargs or {}))
    idx = np.flatnonzero(mask)
    return idx[np.argsort(scores[idx], kind="stable")]


def find_top_issues(quality_scores: np.ndarray, *, top: int = 10) -> np.ndarray:
    """Indices of the ``top`` lowest scores, lowest first."""
    s = np.asarray(quality_scores)
    return np.argsort(s, kind="stable")[:top]
