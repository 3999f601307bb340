"""Which examples are mislabelled? Confident-learning filters over ``(labels, pred_probs)``.

``find_label_issues`` takes cleanlab's arguments (``filter_by``, ``frac_noise``,
``num_to_remove_per_class``, ``min_examples_per_class``, ``return_indices_ranked_by``,
``rank_by_kwargs``, ``confident_joint``; ``n_jobs`` is accepted and ignored: one process, no fork) and
returns the same thing: a boolean mask, or flagged indices ranked by a score.
``audit_label_issues`` runs the same filter and returns :class:`~noisyfit.detect.issues.LabelIssues`,
where every flag carries a suggested label, a score and the reason (signal, value, threshold).

Filters (``C`` = calibrated confident joint, rows given ``k``, columns true ``j``; see ``count.py``):

``prune_by_noise_rate`` (default)
    For each off-diagonal cell ``(k, j)``, flag the ``C[k, j]`` examples labelled ``k`` with the largest
    margin ``p_j - p_k``.
``prune_by_class``
    For each class ``k``, flag the ``N_k - C[k, k]`` examples labelled ``k`` with the lowest ``p_k``.
``both``
    Flagged by both of the above.
``confident_learning``
    Off-diagonal examples of the (uncalibrated) confident joint: confidently another class.
``predicted_neq_given``
    ``argmax p != given``.
``low_self_confidence`` / ``low_normalized_margin``
    The ``n`` lowest scores, ``n`` = the off-diagonal count estimate of the number of issues.

As in cleanlab, all filters but the ``low_*`` ones then drop examples whose argmax (with a 1e-6
bonus for the given label) is the given label. ``frac_noise`` scales the off-diagonal cells (and, our
extension, ``n`` of the ``low_*`` filters). ``min_examples_per_class``: a class with no more examples
than this is not pruned, and pruning leaves at least this many per class.

``num_to_remove_per_class`` (our definition, not parity-tested): remove exactly ``r_k`` examples
labelled ``k``; for ``prune_by_noise_rate`` they are shared across true classes ``j`` in proportion to
the off-diagonal confident joint of row ``k``.

Memory: ``pred_probs`` is streamed (three passes for ``prune_by_noise_rate``); the per-cell top-``n``
selection keeps only the current candidates, so memory is ``O(N + flagged)``, never ``O(N * C)``.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from typing import Literal

import numpy as np

from noisyfit.detect.count import (
    ArgmaxOver,
    Scan,
    calibrate_confident_joint,
    confident_joint_from_scan,
    noise_from_scan,
    off_diagonal_issue_count,
    round_preserving_row_totals,
    scan,
)
from noisyfit.detect.issues import LabelIssues, names_or_indices
from noisyfit.detect.progress import progress_bar
from noisyfit.detect.rank import ScoreMethod, label_quality_scores, scores_from_scan
from noisyfit.detect.validation import iter_chunks, load_pred_probs

FilterBy = Literal["prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
                   "low_normalized_margin", "low_self_confidence"]
FILTERS = ("prune_by_noise_rate", "prune_by_class", "both", "confident_learning", "predicted_neq_given",
           "low_normalized_margin", "low_self_confidence")
_PRUNING = ("prune_by_noise_rate", "prune_by_class", "both")


class _Found:
    """Flags, the suggested class per flagged position (-1 elsewhere) and, when explaining, the reasons."""

    def __init__(self, n: int, explain: bool):
        self.mask = np.zeros(n, dtype=bool)
        self.suggested = np.full(n, -1, dtype=np.int64)
        self.explain = explain
        self.reasons: dict[int, str] = {}
        self.threshold: float | None = None
        self.info: dict = {}

    def flag(self, idx: np.ndarray, suggested: np.ndarray, reason=None) -> None:
        """Flag ``idx``; ``reason(i)`` builds the text of position i (only called when explaining)."""
        self.mask[idx] = True
        self.suggested[idx] = suggested
        if self.explain and reason is not None:
            for i in np.asarray(idx).tolist():
                self.reasons[i] = reason(i)


# ---------------------------------------------------------------------------------------- counts to prune
def prune_counts(calibrated_joint: np.ndarray, label_counts: np.ndarray, *, min_examples_per_class: int = 1,
                 frac_noise: float = 1.0, num_to_remove_per_class: Sequence[int] | None = None) -> np.ndarray:
    """How many examples to flag per cell ``[given k, true j]`` (diagonal: how many to keep).

    Raises each diagonal to ``min_examples_per_class``, taking the difference evenly from the non-zero
    off-diagonal cells of the row; multiplies off-diagonal cells by ``frac_noise`` (moving the rest to the
    diagonal); rounds down. With ``num_to_remove_per_class``, row ``k``'s off-diagonal cells are
    rescaled to sum to ``r_k``.
    """
    p = np.asarray(calibrated_joint, dtype=np.float64).copy()
    c = len(p)
    diag = np.diagonal(p).copy()
    raised = np.maximum(diag, min_examples_per_class)
    nonzero_off = np.maximum(np.count_nonzero(p, axis=1) - 1.0, 1.0)
    p -= ((raised - diag) / nonzero_off)[:, None]
    p[p < 0] = 0.0
    np.fill_diagonal(p, raised)
    off = ~np.eye(c, dtype=bool)
    reduced = np.where(off, p * frac_noise, p)
    np.fill_diagonal(reduced, raised + np.where(off, p - reduced, 0.0).sum(axis=1))
    out = reduced.astype(np.int64)  # truncation, as cleanlab does
    if num_to_remove_per_class is not None:
        r = np.asarray(num_to_remove_per_class, dtype=np.float64)
        if r.shape != (c,):
            raise ValueError(f"num_to_remove_per_class needs {c} entries (one per class), got {r.shape}")
        share = np.where(off, np.asarray(calibrated_joint, dtype=np.float64), 0.0)
        rows = share.sum(axis=1, keepdims=True)
        share = np.where(rows > 0, share / np.maximum(rows, 1e-100), off / (c - 1.0))
        cells = share * r[:, None]
        np.fill_diagonal(cells, np.asarray(label_counts, dtype=np.float64) - r)
        out = round_preserving_row_totals(cells)
    return out


# ---------------------------------------------------------------------------------------- the filters
def _by_noise_rate(sc: Scan, probs: np.ndarray, prune: np.ndarray, min_examples: int, names: list[str],
                   chunk_size: int | None, verbose: bool, explain: bool) -> _Found:
    c = sc.num_classes
    cells = {k: [(j, int(prune[k, j])) for j in range(c) if j != k and prune[k, j] > 0]
             for k in range(c) if sc.label_counts[k] > min_examples}
    cells = {k: v for k, v in cells.items() if v}
    best_val: dict[tuple[int, int], np.ndarray] = {(k, j): np.empty(0) for k, v in cells.items() for j, _ in v}
    best_idx: dict[tuple[int, int], np.ndarray] = {key: np.empty(0, dtype=np.int64) for key in best_val}
    # current cutoff per cell: a new margin can only enter a full cell by beating it
    cut = {key: -np.inf for key in best_val}
    with progress_bar(len(sc), "pruning by noise rate", verbose) as bar:
        for start, p in iter_chunks(probs, chunk_size):
            y = sc.labels[start:start + len(p)]
            for k, targets in cells.items():
                rows = np.flatnonzero(y == k)
                if rows.size == 0:
                    continue
                js = np.array([j for j, _ in targets])
                margins = p[np.ix_(rows, js)] - p[rows, k][:, None]  # [rows, cells of k]
                cuts = np.array([cut[k, j] for j in js])
                for col in np.flatnonzero((margins > cuts).any(axis=0) | np.isneginf(cuts)):
                    j, n = targets[col]
                    vals = np.concatenate([best_val[k, j], margins[:, col]])
                    idx = np.concatenate([best_idx[k, j], start + rows])
                    if len(vals) > n:  # keep the n largest margins; ties go to the lower index
                        keep = np.lexsort((idx, -vals))[:n]
                        vals, idx = vals[keep], idx[keep]
                    best_val[k, j], best_idx[k, j] = vals, idx
                    if len(vals) == n:
                        cut[k, j] = float(vals.min())
            bar.advance(len(p))
    found = _Found(len(sc), explain)
    # explain each flag by its strongest cell: the largest margin over the cells that selected it
    best_m = np.full(len(sc), -np.inf)
    best_j = np.full(len(sc), -1, dtype=np.int64)
    for (k, j), idx in best_idx.items():
        better = best_val[k, j] > best_m[idx]
        best_m[idx[better]] = best_val[k, j][better]
        best_j[idx[better]] = j
    cutoff = {key: float(v.min()) for key, v in best_val.items() if len(v)}
    flagged = np.flatnonzero(best_j >= 0)

    def reason(i: int) -> str:
        k, j = int(sc.labels[i]), int(best_j[i])
        return (f"prune_by_noise_rate: p({names[j]}) - p({names[k]}) = {best_m[i]:+.3f} is among the "
                f"{int(prune[k, j])} largest for label {names[k]} -> {names[j]} (cutoff {cutoff[k, j]:+.3f})")

    found.flag(flagged, best_j[flagged], reason)
    found.info["cells"] = {f"{names[k]}->{names[j]}": int(prune[k, j]) for k, v in cells.items() for j, _ in v}
    return found


def _by_class(sc: Scan, prune: np.ndarray, min_examples: int, names: list[str], explain: bool) -> _Found:
    found = _Found(len(sc), explain)
    for k in range(sc.num_classes):
        if sc.label_counts[k] <= min_examples:
            continue
        num = int(sc.label_counts[k] - prune[k, k])
        if num < 1:
            continue
        idx = np.flatnonzero(sc.labels == k)
        chosen = idx[np.lexsort((idx, sc.self_confidence[idx]))[:num]]
        cutoff = float(sc.self_confidence[chosen].max())
        found.flag(chosen, sc.best_other[chosen],
                   lambda i, k=k, num=num, cutoff=cutoff: (
                       f"prune_by_class: p({names[k]}) = {sc.self_confidence[i]:.3f} is among the {num} lowest in "
                       f"class {names[k]} (cutoff {cutoff:.3f})"))
    return found


def _by_confident_joint(sc: Scan, names: list[str], explain: bool) -> _Found:
    found = _Found(len(sc), explain)
    off = np.flatnonzero((sc.guess >= 0) & (sc.guess != sc.labels))
    t, g, y = sc.thresholds, sc.guess, sc.labels
    found.flag(off, g[off], lambda i: (
        f"confident_learning: p({names[g[i]]}) = {sc.guess_prob[i]:.3f} >= t({names[g[i]]}) = {t[g[i]]:.3f} "
        f"(confidently {names[g[i]]}), given {names[y[i]]} with p = {sc.self_confidence[i]:.3f} "
        f"(t = {t[y[i]]:.3f})"))
    return found


def _by_argmax(sc: Scan, names: list[str], explain: bool) -> _Found:
    found = _Found(len(sc), explain)
    idx = np.flatnonzero(sc.predicted != sc.labels)
    k, y = sc.predicted, sc.labels
    found.flag(idx, k[idx], lambda i: (
        f"predicted_neq_given: argmax p = {names[k[i]]} ({sc.best_other_prob[i]:.3f}) != given {names[y[i]]} "
        f"({sc.self_confidence[i]:.3f})"))
    return found


def _by_low_score(sc: Scan, method: str, frac_noise: float, names: list[str], explain: bool) -> _Found:
    found = _Found(len(sc), explain)
    scores = scores_from_scan(sc, method)
    num = int(off_diagonal_issue_count(sc) * frac_noise)
    if num == 0:
        return found
    chosen = np.argsort(scores, kind="stable")[:num]
    cutoff = float(scores[chosen[-1]])
    found.threshold = cutoff
    what = "p(given)" if method == "self_confidence" else "normalized margin"
    found.flag(chosen, sc.best_other[chosen], lambda i: (
        f"low_{method}: {what} of {names[sc.labels[i]]} = {scores[i]:.3f} <= {cutoff:.3f}, the cutoff flagging "
        f"the {num} lowest (the estimated number of label issues)"))
    return found


def _check_options(filter_by, frac_noise, num_to_remove_per_class, confident_joint, min_examples_per_class) -> None:
    if filter_by not in FILTERS:
        raise ValueError(f"filter_by={filter_by!r}; use one of {', '.join(FILTERS)}")
    if not 0.0 <= frac_noise <= 1.0:
        raise ValueError(f"frac_noise={frac_noise} must be in [0, 1] (the fraction of estimated issues to return)")
    if min_examples_per_class < 0:
        raise ValueError(f"min_examples_per_class={min_examples_per_class} must be >= 0")
    if num_to_remove_per_class is not None and filter_by not in _PRUNING:
        raise ValueError(f"num_to_remove_per_class works with filter_by in {_PRUNING}, not {filter_by!r}")
    if frac_noise != 1.0 and filter_by in ("confident_learning", "predicted_neq_given"):
        warnings.warn(f"frac_noise is ignored with filter_by={filter_by!r}", stacklevel=3)
    if confident_joint is not None and filter_by == "confident_learning":
        warnings.warn("the supplied confident_joint is ignored with filter_by='confident_learning' (it is "
                      "recomputed from labels and pred_probs)", stacklevel=3)


def _run(sc: Scan, probs, filter_by, frac_noise, num_to_remove_per_class, min_examples_per_class, confident_joint,
         names, chunk_size, verbose, explain) -> _Found:
    if filter_by in _PRUNING:
        cj = confident_joint if confident_joint is not None else confident_joint_from_scan(sc)
        cal = calibrate_confident_joint(cj, label_counts=sc.label_counts)
        prune = prune_counts(cal, sc.label_counts, min_examples_per_class=min_examples_per_class,
                             frac_noise=frac_noise, num_to_remove_per_class=num_to_remove_per_class)
        small = [names[k] for k in range(sc.num_classes) if sc.label_counts[k] <= min_examples_per_class]
        if small:
            warnings.warn(f"classes {small[:5]} have <= min_examples_per_class={min_examples_per_class} "
                          "examples and are not pruned", stacklevel=3)
        if filter_by == "prune_by_class":
            found = _by_class(sc, prune, min_examples_per_class, names, explain)
        else:
            found = _by_noise_rate(sc, probs, prune, min_examples_per_class, names, chunk_size, verbose, explain)
            if filter_by == "both":
                by_class = _by_class(sc, prune, min_examples_per_class, names, explain)
                found.mask &= by_class.mask
                found.reasons = {i: f"{r}; {by_class.reasons[i]}" for i, r in found.reasons.items() if found.mask[i]}
        found.info["prune_counts"] = prune
    elif filter_by == "confident_learning":
        found = _by_confident_joint(sc, names, explain)
    elif filter_by == "predicted_neq_given":
        found = _by_argmax(sc, names, explain)
    else:
        found = _by_low_score(sc, filter_by[len("low_"):], frac_noise, names, explain)
    if not filter_by.startswith("low_"):
        found.mask &= ~sc.agrees  # the model agrees with the given label: not an issue
    found.suggested[~found.mask] = -1
    found.reasons = {i: r for i, r in found.reasons.items() if found.mask[i]}
    return found


# ---------------------------------------------------------------------------------------- public API
def find_label_issues(labels, pred_probs, *, return_indices_ranked_by: ScoreMethod | None = None,
                      rank_by_kwargs: dict | None = None, filter_by: FilterBy = "prune_by_noise_rate",
                      frac_noise: float = 1.0, num_to_remove_per_class: Sequence[int] | None = None,
                      min_examples_per_class: int = 1, confident_joint: np.ndarray | None = None,
                      n_jobs: int | None = None, verbose: bool = False, argmax_over: ArgmaxOver = "confident",
                      chunk_size: int | None = None) -> np.ndarray:
    """Flag likely label errors by confident learning (cleanlab's ``filter.find_label_issues``).

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        Given labels, ``0..C-1``.
    pred_probs : array (N, C) or path to ``.npy`` / ``.npz``
        Out-of-sample predicted probabilities (rows sum to 1). A path is memory-mapped.
    return_indices_ranked_by : {"self_confidence", "normalized_margin", "confidence_weighted_entropy"}, optional
        Return flagged indices sorted by this score (most suspicious first) instead of a mask.
    rank_by_kwargs : dict, optional
        Passed to :func:`~noisyfit.detect.rank.label_quality_scores` (e.g. ``adjust_pred_probs``).
    filter_by : str
        See the module doc.
    frac_noise : float
        Return about this fraction of the estimated issues (pruning and ``low_*`` filters).
    num_to_remove_per_class : sequence of int, optional
        Exactly this many flags per given class (pruning filters).
    min_examples_per_class : int
        Leave at least this many examples per class.
    confident_joint : ndarray (C, C), optional
        A precomputed (uncalibrated) confident joint for the pruning filters.
    n_jobs : int, optional
        Accepted for cleanlab compatibility; ignored (one process).
    verbose : bool
        Progress bars.
    argmax_over : {"confident", "all"}
        The confident-joint guess among several confident classes (``count.py``); ``"all"`` = cleanlab.
    chunk_size : int, optional
        Rows per streamed chunk.

    Returns
    -------
    ndarray
        Boolean mask ``(N,)``, or int indices ranked by ``return_indices_ranked_by``.
    """
    del n_jobs
    _check_options(filter_by, frac_noise, num_to_remove_per_class, confident_joint, min_examples_per_class)
    probs = load_pred_probs(pred_probs)
    sc = scan(labels, probs, argmax_over=argmax_over, chunk_size=chunk_size, verbose=verbose)
    found = _run(sc, probs, filter_by, frac_noise, num_to_remove_per_class, min_examples_per_class, confident_joint,
                 names_or_indices(None, sc.num_classes), chunk_size, verbose, explain=False)
    if return_indices_ranked_by is None:
        return found.mask
    kwargs = dict(rank_by_kwargs or {})
    if kwargs.get("adjust_pred_probs"):
        scores = label_quality_scores(sc.labels, probs, method=return_indices_ranked_by, chunk_size=chunk_size, **kwargs)
    else:
        scores = scores_from_scan(sc, return_indices_ranked_by)
    idx = np.flatnonzero(found.mask)
    return idx[np.argsort(scores[idx], kind="stable")]


def audit_label_issues(labels, pred_probs, *, filter_by: FilterBy = "prune_by_noise_rate",
                       rank_by: ScoreMethod = "self_confidence", rank_by_kwargs: dict | None = None,
                       frac_noise: float = 1.0, num_to_remove_per_class: Sequence[int] | None = None,
                       min_examples_per_class: int = 1, argmax_over: ArgmaxOver = "confident",
                       class_names: Sequence[str] | None = None, ids: Sequence[str] | None = None,
                       true_labels=None, index: np.ndarray | None = None, chunk_size: int | None = None,
                       verbose: bool = False, check_quality: bool = True) -> LabelIssues:
    """:func:`find_label_issues` with explanations: flags, suggested labels, scores, reasons and the noise estimate.

    ``pred_probs`` must be out-of-sample: each row predicted by a model that did not train on it (e.g.
    ``sklearn.model_selection.cross_val_predict(model, x, labels, method="predict_proba")``). A model's
    predictions on its own training rows have memorised the labels and hide the wrong ones.

    Parameters
    ----------
    labels, pred_probs, filter_by, frac_noise, num_to_remove_per_class, min_examples_per_class, argmax_over,
    chunk_size, verbose
        As in :func:`find_label_issues`.
    rank_by, rank_by_kwargs
        The per-example score stored in ``LabelIssues.scores`` (and the ranking of ``records()``).
    class_names, ids : sequence of str, optional
        Names for reasons and reports; file names / row ids per example.
    true_labels : array-like of int, optional
        Known clean labels, for detection metrics.
    index : ndarray of int, optional
        Position of each row in the source data set.
    check_quality : bool
        Check the probabilities (:func:`noisyfit.detect.guardrails.check_pred_probs`): a
        :class:`~noisyfit.detect.guardrails.QualityWarning` when they look in-sample, misaligned with the rows, or
        near chance; the figures and messages go to ``info["model_quality"]`` (and the report's cautions).

    Returns
    -------
    LabelIssues
    """
    t0 = time.time()
    _check_options(filter_by, frac_noise, num_to_remove_per_class, None, min_examples_per_class)
    probs = load_pred_probs(pred_probs)
    sc = scan(labels, probs, argmax_over=argmax_over, chunk_size=chunk_size, class_names=class_names,
              verbose=verbose)
    names = names_or_indices(class_names, sc.num_classes)
    quality = None
    if check_quality:
        from noisyfit.detect.guardrails import check_pred_probs

        quality = check_pred_probs(sc.labels, probs, chunk_size=chunk_size, stacklevel=4)
    found = _run(sc, probs, filter_by, frac_noise, num_to_remove_per_class, min_examples_per_class, None, names,
                 chunk_size, verbose, explain=True)
    kwargs = dict(rank_by_kwargs or {})
    if kwargs.get("adjust_pred_probs"):
        scores = label_quality_scores(sc.labels, probs, method=rank_by, chunk_size=chunk_size, **kwargs)
    else:
        scores = scores_from_scan(sc, rank_by)
    # flagged: the class named by the signal that fired; unflagged: the model's argmax
    suggested = np.where(found.mask, found.suggested, sc.predicted)
    # a cut on the scores exists only for the low_* filters, and is drawn when the scores are the same kind
    threshold = found.threshold if filter_by == f"low_{rank_by}" else None
    info = {"filter_by": filter_by, "argmax_over": argmax_over, "frac_noise": frac_noise,
            "min_examples_per_class": min_examples_per_class, "rank_by": rank_by,
            "thresholds": {names[k]: float(t) for k, t in enumerate(sc.thresholds)},
            "seconds": time.time() - t0, **found.info}
    if quality is not None:
        info["model_quality"] = quality
    return LabelIssues(
        is_issue=found.mask, given=sc.labels, suggested=suggested, scores=scores, reasons=found.reasons,
        class_names=names, detector=f"confident learning ({filter_by})",
        rule=_RULES[filter_by], score_name=rank_by, threshold=threshold, noise=noise_from_scan(sc),
        index=index, ids=list(ids) if ids is not None else None, true_labels=true_labels, info=info,
        suggested_confidence=probs[np.arange(len(suggested)), suggested])


_RULES = {
    "prune_by_noise_rate": "per off-diagonal cell (given k, true j) of the calibrated confident joint, the "
                           "examples labelled k with the largest p(j) - p(k)",
    "prune_by_class": "per class k, the examples labelled k with the lowest p(k), as many as the confident joint "
                      "says are wrong",
    "both": "flagged by both prune_by_noise_rate and prune_by_class",
    "confident_learning": "p(j) >= t(j) for a class j other than the given one (t = mean self-confidence of j)",
    "predicted_neq_given": "argmax of pred_probs differs from the given label",
    "low_normalized_margin": "the lowest normalized margins, as many as the estimated number of issues",
    "low_self_confidence": "the lowest p(given label), as many as the estimated number of issues",
}
