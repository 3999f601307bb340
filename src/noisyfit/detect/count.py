"""How much noise? The confident joint, the joint of given and true labels, and the noise transition.

Confident learning (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in Dataset
Labels", JAIR 2021). With out-of-sample probabilities ``p`` and given labels ``s``:

* the per-class threshold ``t_j`` is the mean of ``p_j`` over the examples labelled ``j``;
* an example is *confidently* of class ``j`` when ``p_j >= t_j``; its guessed true label is
  ``argmax`` of ``p_j`` over the confident classes (the paper's definition, eq. 2); examples with no
  confident class are not counted;
* the confident joint ``C[i, j]`` counts examples with given label ``i`` and guessed true label ``j``;
  calibrated so that row ``i`` sums to the number of examples labelled ``i`` and the whole to ``N``,
  it estimates ``N * P(given=i, true=j)``.

cleanlab (``count.compute_confident_joint``) takes the argmax over *all* classes when two or more are
confident, which differs from the paper when the overall argmax is not itself confident (cleanlab
issues #737, #823, #1248). ``argmax_over="confident"`` (default) is the paper; ``argmax_over="all"``
reproduces cleanlab. Like cleanlab, thresholds are compared with a 1e-6 tolerance, floored at 2e-6,
and each diagonal cell is raised to at least 1 (so calibration never divides by zero).

Orientation: the confident joint and ``joint`` have rows = given label, columns = true label (as in
cleanlab). The ``transition`` matrix follows noisyfit's noise models (``noisyfit.data.noise``):
``transition[j, i] = P(given=i | true=j)``, rows = true label (cleanlab's ``noise_matrix`` transposed).

All functions stream ``pred_probs`` in chunks (two passes: thresholds, then the per-example scan), so
a memory-mapped ``.npy`` of any size can be used; what is kept is ``O(N)``, never ``O(N * C)``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy.special import xlogy

from noisyfit.detect.progress import progress_bar
from noisyfit.detect.validation import (
    DetectInputError,
    check_class_counts,
    check_labels,
    check_shapes,
    iter_chunks,
    load_pred_probs,
)

ArgmaxOver = Literal["confident", "all"]
#: tolerance of the ``p_j >= t_j`` comparison and of the "model agrees with the given label" test
FUZZ = 1e-6
#: thresholds are floored here so that a class whose examples all get p = 0 is still never "confident"
THRESHOLD_FLOOR = 2 * FUZZ


@dataclass
class Scan:
    """Per-example quantities from one streamed pass over ``pred_probs`` (all ``[N]`` arrays)."""

    labels: np.ndarray
    thresholds: np.ndarray  # [C]
    label_counts: np.ndarray  # [C]
    self_confidence: np.ndarray  # p(given label)
    predicted: np.ndarray  # argmax over all classes
    best_other: np.ndarray  # argmax over the classes other than the given one
    best_other_prob: np.ndarray
    guess: np.ndarray  # confident-learning guess of the true label, -1 when no class is confident
    guess_prob: np.ndarray  # p(guess), 0 when there is no guess
    agrees: np.ndarray  # argmax, with a 1e-6 bonus for the given label, is the given label
    entropy: np.ndarray  # normalised entropy of the row, in [0, 1]
    argmax_over: str

    @property
    def num_classes(self) -> int:
        return len(self.thresholds)

    def __len__(self) -> int:
        return len(self.labels)


def prepare(labels, pred_probs, *, class_names: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Validated ``(labels int64 [N], pred_probs [N, C])``; ``pred_probs`` may be a path (memory-mapped)."""
    probs = load_pred_probs(pred_probs)
    lab = check_labels(labels)
    c = check_shapes(lab, probs)
    lab = check_labels(lab, c)
    if class_names is not None and len(class_names) != c:
        raise DetectInputError(f"{len(class_names)} class names for {c} pred_probs columns; pass one name "
                               "per column, in column order.")
    return lab, probs


def _check_argmax_over(argmax_over: str) -> None:
    if argmax_over not in ("confident", "all"):
        raise ValueError(f"argmax_over={argmax_over!r}; use 'confident' (the paper) or 'all' (cleanlab)")


def confident_thresholds(labels, pred_probs, *, chunk_size: int | None = None,
                         class_names: Sequence[str] | None = None, verbose: bool = False) -> np.ndarray:
    """Per-class threshold ``t_j`` = mean ``p_j`` over examples labelled ``j`` (first pass; validates input).

    Parameters
    ----------
    labels : array-like of int, shape (N,)
    pred_probs : array, shape (N, C), or path to ``.npy``/``.npz``
        Out-of-sample predicted probabilities.
    chunk_size : int, optional
        Rows per chunk (default: about 32 MB per chunk).
    class_names : sequence of str, optional
        Used in error messages.
    verbose : bool
        Show a progress bar.

    Returns
    -------
    ndarray of float, shape (C,)
    """
    lab, probs = prepare(labels, pred_probs, class_names=class_names)
    return _thresholds(lab, probs, chunk_size, class_names, verbose)[0]


def _thresholds(lab, probs, chunk_size, class_names, verbose, *,
                check_classes: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Validate every chunk and return (thresholds, label counts); classes without examples get a
    threshold of 2, which no probability reaches (allowed only with ``check_classes=False``)."""
    n, c = probs.shape
    sums = np.zeros(c)
    counts = np.bincount(lab, minlength=c)
    if check_classes:
        check_class_counts(counts, class_names)
    with progress_bar(n, "checking pred_probs", verbose) as bar:
        for start, chunk in iter_chunks(probs, chunk_size, validate=True):
            y = lab[start:start + len(chunk)]
            sums += np.bincount(y, weights=chunk[np.arange(len(chunk)), y], minlength=c)
            bar.advance(len(chunk))
    means = np.divide(sums, counts, out=np.full(c, 2.0), where=counts > 0)
    return np.maximum(means, THRESHOLD_FLOOR), counts


def scan(labels, pred_probs, *, thresholds: np.ndarray | None = None, argmax_over: ArgmaxOver = "confident",
         chunk_size: int | None = None, class_names: Sequence[str] | None = None,
         verbose: bool = False) -> Scan:
    """Validate, compute thresholds, then one streamed pass that keeps only ``O(N)`` per-example values.

    Parameters are as in :func:`confident_thresholds`; ``thresholds`` replaces the computed ones and
    ``argmax_over`` picks the guess among several confident classes (see the module doc).
    """
    _check_argmax_over(argmax_over)
    lab, probs = prepare(labels, pred_probs, class_names=class_names)
    t, counts = _thresholds(lab, probs, chunk_size, class_names, verbose)
    if thresholds is not None:
        thresholds = np.asarray(thresholds, dtype=np.float64)
        if thresholds.shape != t.shape:
            raise DetectInputError(f"thresholds has shape {thresholds.shape}; expected ({len(t)},), one per class.")
        t = thresholds
    n, c = probs.shape
    out = {k: np.empty(n, dtype=np.int64) for k in ("predicted", "best_other", "guess")}
    out.update({k: np.empty(n) for k in ("self_confidence", "best_other_prob", "entropy", "guess_prob")})
    agrees = np.empty(n, dtype=bool)
    log_c = np.log(c)
    with progress_bar(n, "scanning pred_probs", verbose) as bar:
        for start, p in iter_chunks(probs, chunk_size):
            sl = slice(start, start + len(p))
            rows = np.arange(len(p))
            y = lab[sl]
            out["self_confidence"][sl] = p[rows, y]
            out["predicted"][sl] = p.argmax(axis=1)
            other = p.copy()
            other[rows, y] = -np.inf
            out["best_other"][sl] = other.argmax(axis=1)
            out["best_other_prob"][sl] = other[rows, out["best_other"][sl]]
            bonus = p.copy()
            bonus[rows, y] += FUZZ  # a near-tie with the given label counts as agreement
            agrees[sl] = bonus.argmax(axis=1) == y
            confident = p >= t - FUZZ
            n_conf = confident.sum(axis=1)
            if argmax_over == "confident":
                g = np.where(confident, p, -np.inf).argmax(axis=1)
            else:
                g = np.where(n_conf > 1, p.argmax(axis=1), confident.argmax(axis=1))
            out["guess"][sl] = np.where(n_conf > 0, g, -1)
            out["guess_prob"][sl] = np.where(n_conf > 0, p[rows, g], 0.0)
            out["entropy"][sl] = -xlogy(p, p).sum(axis=1) / log_c
            bar.advance(len(p))
    return Scan(labels=lab, thresholds=t, label_counts=counts, agrees=agrees, argmax_over=argmax_over, **out)


def confident_joint_from_scan(sc: Scan) -> np.ndarray:
    """Uncalibrated confident joint counts ``[given, true]``; diagonal cells raised to >= 1."""
    c = sc.num_classes
    ok = sc.guess >= 0
    cj = np.bincount(sc.labels[ok] * c + sc.guess[ok], minlength=c * c).reshape(c, c)
    np.fill_diagonal(cj, np.maximum(np.diagonal(cj), 1))
    return cj


def round_preserving_row_totals(matrix: np.ndarray) -> np.ndarray:
    """Round each row to integers whose sum is the rounded row sum (largest remainders move first)."""
    m = np.asarray(matrix, dtype=np.float64)
    out = np.round(m)
    for r in range(m.shape[0]):
        target = np.round(m[r].sum())
        while (diff := int(target - out[r].sum())) != 0:
            step = 1 if diff > 0 else -1
            remainder = m[r] - out[r]
            # raise the cells rounded down the most, or lower those rounded up the most
            order = np.argsort(remainder)[::-1] if step > 0 else np.argsort(remainder)
            out[r, order[:min(abs(diff), m.shape[1])]] += step
    return out.astype(np.int64)


def calibrate_confident_joint(confident_joint: np.ndarray, labels=None, *,
                              label_counts: np.ndarray | None = None) -> np.ndarray:
    """Scale rows to the given-label counts and the total to N, then round preserving row totals.

    Parameters
    ----------
    confident_joint : ndarray, shape (C, C)
        Counts, rows = given label.
    labels : array-like of int, optional
        The given labels (or pass ``label_counts``).

    Returns
    -------
    ndarray of int, shape (C, C)
    """
    cj = np.asarray(confident_joint, dtype=np.float64)
    if label_counts is None:
        if labels is None:
            raise ValueError("calibrate_confident_joint needs labels or label_counts")
        label_counts = np.bincount(check_labels(labels, len(cj)), minlength=len(cj))
    counts = np.asarray(label_counts, dtype=np.float64)
    cal = cj / np.maximum(cj.sum(axis=1, keepdims=True), 1e-100) * counts[:, None]
    cal = cal / max(cal.sum(), 1e-100) * counts.sum()
    return round_preserving_row_totals(cal)


def compute_confident_joint(labels, pred_probs, *, thresholds: np.ndarray | None = None, calibrate: bool = True,
                            argmax_over: ArgmaxOver = "confident", return_indices_of_off_diagonals: bool = False,
                            chunk_size: int | None = None, verbose: bool = False):
    """The confident joint ``C[given, true]`` (cleanlab's name and options, plus ``argmax_over``).

    Returns
    -------
    ndarray of int, shape (C, C), or (ndarray, ndarray of int)
        With ``return_indices_of_off_diagonals``, also the indices of examples counted off the diagonal.
    """
    sc = scan(labels, pred_probs, thresholds=thresholds, argmax_over=argmax_over, chunk_size=chunk_size,
              verbose=verbose)
    cj = confident_joint_from_scan(sc)
    if calibrate:
        cj = calibrate_confident_joint(cj, label_counts=sc.label_counts)
    if return_indices_of_off_diagonals:
        return cj, np.flatnonzero((sc.guess >= 0) & (sc.guess != sc.labels))
    return cj


def estimate_joint(labels, pred_probs, *, confident_joint: np.ndarray | None = None,
                   argmax_over: ArgmaxOver = "confident", chunk_size: int | None = None) -> np.ndarray:
    """``P(given=i, true=j)`` estimated by the calibrated confident joint; sums to 1, rows to p(given)."""
    if confident_joint is None:
        cal = compute_confident_joint(labels, pred_probs, argmax_over=argmax_over, chunk_size=chunk_size)
    else:
        cal = calibrate_confident_joint(confident_joint, labels)
    return cal / max(float(cal.sum()), 1e-100)


@dataclass
class NoiseEstimate:
    """How much label noise there is, and of which kind.

    Attributes
    ----------
    noise_rate : float
        Estimated fraction of wrong given labels, ``1 - trace(joint)``.
    joint : ndarray (C, C)
        ``P(given=i, true=j)``, rows = given label.
    transition : ndarray (C, C)
        ``P(given=i | true=j)`` stored as ``transition[j, i]`` (rows = true label, as in noisyfit's noise
        models); each row sums to 1.
    prior_given, prior_true : ndarray (C,)
    num_label_issues : int or None
        Count estimate of examples with a wrong label (cleanlab's ``off_diagonal`` estimator for
        confident learning; the number of flags for a method's own decisions).
    method : str
        How it was estimated.
    confident_joint, thresholds : ndarray or None
        For confident learning: the uncalibrated counts and the per-class thresholds.
    """

    noise_rate: float
    joint: np.ndarray
    transition: np.ndarray
    prior_given: np.ndarray
    prior_true: np.ndarray
    method: str
    num_label_issues: int | None = None
    confident_joint: np.ndarray | None = None
    thresholds: np.ndarray | None = None

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.tolist() if isinstance(v, np.ndarray) else v
        return out

    @classmethod
    def from_joint(cls, joint_counts: np.ndarray, *, method: str, **extra) -> NoiseEstimate:
        """From (possibly fractional) counts ``[given, true]``: normalise, derive priors and transition."""
        counts = np.asarray(joint_counts, dtype=np.float64)
        joint = counts / max(counts.sum(), 1e-100)
        prior_true = joint.sum(axis=0)
        # classes that are never the true label keep an identity row, so every row is a distribution
        transition = np.where(prior_true[:, None] > 0, joint.T / np.maximum(prior_true[:, None], 1e-100),
                              np.eye(len(joint)))
        return cls(noise_rate=float(1.0 - np.trace(joint)), joint=joint, transition=transition,
                   prior_given=joint.sum(axis=1), prior_true=prior_true, method=method, **extra)


def off_diagonal_issue_count(sc: Scan) -> int:
    """cleanlab's default issue-count estimate: confidently off-diagonal, and the model disagrees."""
    return int(np.sum((sc.guess >= 0) & (sc.guess != sc.labels) & ~sc.agrees))


def noise_from_scan(sc: Scan) -> NoiseEstimate:
    cj = confident_joint_from_scan(sc)
    cal = calibrate_confident_joint(cj, label_counts=sc.label_counts)
    return NoiseEstimate.from_joint(cal, method=f"confident learning (argmax over {sc.argmax_over} classes)",
                                    num_label_issues=off_diagonal_issue_count(sc), confident_joint=cj,
                                    thresholds=sc.thresholds)


def estimate_noise(labels, pred_probs, *, argmax_over: ArgmaxOver = "confident", chunk_size: int | None = None,
                   class_names: Sequence[str] | None = None, verbose: bool = False) -> NoiseEstimate:
    """Noise rate, joint ``P(given, true)`` and transition ``P(given | true)`` by confident learning.

    Parameters
    ----------
    labels : array-like of int, shape (N,)
        The given (possibly wrong) labels.
    pred_probs : array (N, C) or path
        Out-of-sample predicted probabilities (e.g. from :func:`noisyfit.detect.out_of_fold_pred_probs`).
    argmax_over : {"confident", "all"}
        Guess among several confident classes: the paper's rule or cleanlab's (module doc).
    chunk_size : int, optional
    class_names : sequence of str, optional
    verbose : bool

    Returns
    -------
    NoiseEstimate

    Examples
    --------
    >>> est = estimate_noise(labels, pred_probs)          # doctest: +SKIP
    >>> est.noise_rate, est.transition[3]                 # P(given | true = class 3)  # doctest: +SKIP
    """
    return noise_from_scan(scan(labels, pred_probs, argmax_over=argmax_over, chunk_size=chunk_size,
                                class_names=class_names, verbose=verbose))


def num_label_issues(labels, pred_probs, *, confident_joint: np.ndarray | None = None,
                     estimation_method: str = "off_diagonal", argmax_over: ArgmaxOver = "confident",
                     chunk_size: int | None = None) -> int:
    """Estimated number of wrong labels (cleanlab's estimators ``off_diagonal``,
    ``off_diagonal_calibrated``, ``off_diagonal_custom`` with a given ``confident_joint``)."""
    if estimation_method == "off_diagonal":
        return off_diagonal_issue_count(scan(labels, pred_probs, argmax_over=argmax_over, chunk_size=chunk_size))
    if estimation_method in ("off_diagonal_calibrated", "off_diagonal_custom"):
        if estimation_method == "off_diagonal_custom" and confident_joint is None:
            raise ValueError("estimation_method='off_diagonal_custom' needs confident_joint=...")
        joint = estimate_joint(labels, pred_probs, argmax_over=argmax_over, chunk_size=chunk_size,
                               confident_joint=confident_joint if estimation_method == "off_diagonal_custom" else None)
        return int(np.rint((1.0 - np.trace(joint)) * len(np.asarray(labels))))
    raise ValueError(f"estimation_method={estimation_method!r}; use off_diagonal, off_diagonal_calibrated or "
                     "off_diagonal_custom")
