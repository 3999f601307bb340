"""Label errors in multi-label data: each example may carry several classes, or none.

A multi-label label is a set of classes per example, here a boolean matrix ``[N, K]`` (or a list of class-index
lists); the model's probabilities are one independent probability per class (``sigmoid`` outputs), so rows need
not sum to 1. The audit treats every class as its own binary problem (one-vs-rest), as cleanlab's
``multilabel_classification`` does: confident learning (:func:`~noisyfit.detect.audit_label_issues`) on the
given "has class k" bit with the probabilities ``[1 - p_k, p_k]``. An entry ``(i, k)`` is flagged when that binary
audit flags example ``i``: class k given but probably absent (*remove*), or absent but probably there (*add*).
An example is a label issue when any of its entries is flagged.

Per-example score (higher = more likely right): the per-class self-confidences (the probability of each given
bit) aggregated as cleanlab documents its default, an exponential moving average over the scores sorted from
highest to lowest with weight ``alpha = 0.8`` on each newer term, so the least confident class weighs most
(``aggregator="min"``: just the lowest). This follows cleanlab's documentation (multilabel_classification.rank);
the code is ours. tests/test_detect_parity.py checks that the example flags, the entry flags and the scores equal
cleanlab 2.x's (``find_label_issues(..., multi_label=True)``, ``find_multilabel_issues_per_class``,
``get_label_quality_scores``) for three filters.
"""

from __future__ import annotations

import csv
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from noisyfit.detect.validation import DetectInputError

MULTILABEL_CSV_COLUMNS = ("index", "id", "given_labels", "suggested_labels", "remove", "add", "score", "reason")


def label_matrix(labels, num_classes: int | None = None, *, name: str = "labels") -> np.ndarray:
    """``bool [N, K]`` from a 0/1 (or bool) matrix (numpy, torch, pandas or scipy sparse) or a Python list of
    class-index lists (``[[0, 2], [], [1]]``). A Python list whose rows all hold K values of 0/1 is refused as
    ambiguous (a matrix, or index lists?): pass ``np.asarray(labels)`` for a matrix."""
    if hasattr(labels, "toarray"):  # scipy sparse
        labels = labels.toarray()
    if not isinstance(labels, (list, tuple)):  # an array-like: numpy, torch, pandas
        arr = np.asarray(labels.to_numpy() if hasattr(labels, "to_numpy") else labels)
        if arr.ndim != 2:
            raise DetectInputError(f"{name}: got shape {list(arr.shape)}; a multi-label audit takes a set of classes "
                                   "per example: a 0/1 matrix [N, K] or lists of class indices (one label per "
                                   "example is single-label: use audit_label_issues)")
        if arr.dtype.kind not in "biuf" or not np.isin(arr, (0, 1)).all():
            found = sorted(set(np.unique(arr).tolist()) - {0, 1}, key=str)[:3]
            raise DetectInputError(f"{name}: a multi-label matrix holds 0/1 (or bool) per class; found {found}")
        if num_classes is not None and arr.shape[1] != num_classes:
            raise DetectInputError(f"{name}: {arr.shape[1]} columns for {num_classes} classes")
        return arr.astype(bool)
    rows = []
    for i, r in enumerate(labels):
        if np.ndim(r) != 1:
            raise DetectInputError(f"{name}: example {i} is {r!r}; each example needs a list of class indices (a "
                                   "label per example is single-label: use audit_label_issues)")
        rows.append(list(r))
    k = num_classes if num_classes is not None else max((max(r) for r in rows if r), default=-1) + 1
    if rows and all(len(r) == k for r in rows) and all(v in (0, 1) for r in rows for v in r) and k > 1:
        raise DetectInputError(f"{name}: every row holds {k} values of 0/1, which reads as a 0/1 matrix and as class "
                               "index lists alike; pass np.asarray(labels) for a matrix")
    for i, r in enumerate(rows):
        for c in r:
            if isinstance(c, (str, bool, np.bool_)) or not float(c).is_integer() or not 0 <= int(c) < k:
                raise DetectInputError(f"{name}: example {i} has class {c!r}; classes are indices 0..{k - 1} (map "
                                       "class names to their column of pred_probs first)")
    return sets_to_matrix(rows, k)


def sets_to_matrix(sets: Sequence[Sequence[int]], num_classes: int) -> np.ndarray:
    """``bool [N, K]`` with row i true at the (valid, integer) class indices of ``sets[i]``."""
    out = np.zeros((len(sets), num_classes), dtype=bool)
    for i, r in enumerate(sets):
        out[i, [int(c) for c in r]] = True
    return out


def aggregate_scores(class_scores: np.ndarray, *, aggregator: Literal["ema", "min"] = "ema",
                     alpha: float = 0.8) -> np.ndarray:
    """One score per example from ``[N, K]`` per-class scores: ``min``, or the exponential moving average over
    each row sorted from highest to lowest (``ema = s_1``, then ``ema = alpha s_t + (1 - alpha) ema``)."""
    if aggregator == "min":
        return class_scores.min(axis=1)
    if aggregator != "ema":
        raise ValueError(f"aggregator={aggregator!r}; use 'ema' or 'min'")
    if not 0.0 < alpha <= 1.0:
        raise ValueError(f"alpha must be in (0, 1], got {alpha}")
    ordered = -np.sort(-class_scores, axis=1)  # highest first: the lowest comes last and weighs most
    ema = ordered[:, 0].copy()
    for t in range(1, ordered.shape[1]):
        ema = alpha * ordered[:, t] + (1.0 - alpha) * ema
    return ema


def class_aurocs(given: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """``[K, K]``: entry (k, j) is the AUROC of probability column j for the given bit of class k (rank formula,
    ties averaged; NaN where every example has, or lacks, class k). The diagonal is each column on its own class."""
    from scipy.stats import rankdata

    ranks = rankdata(probs, axis=0)
    pos = given.sum(axis=0).astype(np.float64)
    neg = len(given) - pos
    with np.errstate(invalid="ignore", divide="ignore"):
        return (given.T.astype(np.float64) @ ranks - (pos * (pos + 1) / 2)[:, None]) / (pos * neg)[:, None]


def check_multilabel_probs(given: np.ndarray, probs: np.ndarray, names: Sequence[str], *,
                           warn: bool = True) -> dict:
    """Guardrails of a multi-label audit: each probability column against its class, and columns that fit another
    class better (columns out of class order ruin an audit without a sound). Returns ``class_auroc`` and
    ``warnings`` (also emitted as :class:`~noisyfit.detect.guardrails.QualityWarning` when ``warn``)."""
    import warnings as _warnings

    from noisyfit.detect.guardrails import QualityWarning

    auc = class_aurocs(given, probs)
    own = np.diag(auc)
    messages = []
    for k in range(len(names)):
        if not np.isfinite(own[k]):
            continue
        others = np.where(np.arange(len(names)) == k, -np.inf, np.nan_to_num(auc[k], nan=-np.inf))
        j = int(np.argmax(others))
        if others[j] > 0.6 and others[j] >= own[k] + 0.1:
            messages.append(f"the probability column of {names[j]!r} ranks class {names[k]!r} better than that "
                            f"class's own column (AUROC {others[j]:.2f} against {own[k]:.2f}): are the columns of "
                            "pred_probs in the order of the classes?")
        elif own[k] < 0.55:
            messages.append(f"the probabilities of class {names[k]!r} barely separate the examples given it from the "
                            f"others (AUROC {own[k]:.2f}): its flags are mostly guesses")
    if probs.shape[1] > 2 and np.allclose(probs.sum(axis=1), 1.0, atol=1e-3):
        messages.append("every row of pred_probs sums to 1, as a single-label model's softmax does; a multi-label "
                        "model gives each class its own probability (a sigmoid per class)")
    if warn:
        for m in messages:
            _warnings.warn(QualityWarning(m), stacklevel=3)
    return {"class_auroc": {n: (None if not np.isfinite(a) else float(a)) for n, a in zip(names, own)},
            "warnings": messages}


@dataclass
class MultiLabelIssues:
    """Result of a multi-label audit.

    Attributes
    ----------
    is_issue : ndarray of bool (N,)
        Examples with at least one flagged entry.
    given, suggested : ndarray of bool (N, K)
        The given label sets and the sets with every flagged entry switched.
    entry_flags : ndarray of bool (N, K)
        Which (example, class) entries look wrong.
    class_scores : ndarray (N, K)
        Probability of each given bit (``p_k`` where k is given, ``1 - p_k`` where not).
    scores : ndarray (N,)
        Per-example score (aggregated ``class_scores``; lower = more suspicious).
    class_names : list of str
    reasons : dict of int to str
    per_class : list of dict
        Per class: examples given it, entries flagged for removal / addition, the binary audit's noise estimate.
    ids : list of str, optional
    true_labels : ndarray of bool (N, K), optional
    info : dict
    """

    is_issue: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    entry_flags: np.ndarray
    class_scores: np.ndarray
    scores: np.ndarray
    class_names: list[str]
    reasons: dict[int, str]
    per_class: list[dict]
    ids: list[str] | None = None
    true_labels: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __repr__(self) -> str:
        return (f"MultiLabelIssues({self.num_issues:,} of {len(self):,} examples flagged, "
                f"{int(self.entry_flags.sum()):,} entries, {len(self.class_names)} classes; .records() for the rows)")

    def __len__(self) -> int:
        return len(self.is_issue)

    @property
    def num_issues(self) -> int:
        return int(self.is_issue.sum())

    def _names(self, row: np.ndarray) -> str:
        return "|".join(self.class_names[k] for k in np.flatnonzero(row))

    def records(self, top: int | None = None) -> list[dict]:
        """One dict per flagged example, lowest score first: the label sets as ``a|b``, the classes to remove and
        to add, the score and the reason."""
        pos = np.flatnonzero(self.is_issue)
        pos = pos[np.argsort(self.scores[pos], kind="stable")][:top]
        return [{"index": int(i), "id": self.ids[i] if self.ids is not None else str(int(i)),
                 "given_labels": self._names(self.given[i]), "suggested_labels": self._names(self.suggested[i]),
                 "remove": self._names(self.entry_flags[i] & self.given[i]),
                 "add": self._names(self.entry_flags[i] & ~self.given[i]),
                 "score": float(self.scores[i]), "reason": self.reasons.get(int(i), "")} for i in pos]

    def write_csv(self, path: str | Path) -> Path:
        """``issues.csv`` of a multi-label audit (columns :data:`MULTILABEL_CSV_COLUMNS`)."""
        path = Path(path)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(MULTILABEL_CSV_COLUMNS))
            w.writeheader()
            for r in self.records():
                w.writerow({**r, "score": f"{r['score']:.6g}"})
        return path

    def detection_metrics(self) -> dict | None:
        """Against ``true_labels``: precision / recall / F1 of the flagged entries and of the flagged examples,
        the AUROC of the example scores, and the true share of wrong entries and examples."""
        if self.true_labels is None:
            return None
        from noisyfit.metrics import detection_metrics

        wrong_entry = self.given != self.true_labels
        entries = detection_metrics(wrong_entry.ravel(), flags=self.entry_flags.ravel(),
                                    clean_scores=self.class_scores.ravel())
        examples = detection_metrics(wrong_entry.any(axis=1), flags=self.is_issue, clean_scores=self.scores)
        return {"entries": entries, "examples": examples}

    def summary(self) -> dict:
        return {"detector": self.info.get("detector"), "rule": self.info.get("rule"), "multi_label": True,
                "num_examples": len(self), "num_issues": self.num_issues,
                "num_flagged_entries": int(self.entry_flags.sum()), "flag_rate": float(self.is_issue.mean()),
                "class_names": list(self.class_names), "per_class": self.per_class,
                "detection": self.detection_metrics(),
                "info": {k: v for k, v in self.info.items() if k not in ("detector", "rule")}}


def multilabel_issues(labels, pred_probs, *, class_names: Sequence[str] | None = None,
                      filter_by: str = "prune_by_noise_rate", min_examples_per_class: int = 1,
                      aggregator: Literal["ema", "min"] = "ema", alpha: float = 0.8, ids: Sequence[str] | None = None,
                      true_labels=None, skip: Mapping[int, str] | None = None,
                      check_quality: bool = True) -> MultiLabelIssues:
    """Audit multi-label data one class at a time (one-vs-rest confident learning).

    Parameters
    ----------
    labels : bool/0-1 array (N, K), or list of class-index lists
        The given label sets.
    pred_probs : array (N, K)
        Out-of-sample probability of each class (independent, e.g. sigmoid outputs; rows need not sum to 1).
    class_names : sequence of str, optional
    filter_by : str
        The confident-learning filter of every binary audit (see :func:`~noisyfit.detect.find_label_issues`).
    min_examples_per_class : int
        Per binary audit: leave at least this many examples with and without the class.
    aggregator, alpha
        The per-example score (module doc).
    ids : sequence of str, optional
    true_labels : like ``labels``, optional
        The true label sets, for :meth:`MultiLabelIssues.detection_metrics`.
    skip : mapping of class index to str, optional
        Classes not to audit, each with the reason (e.g. too rare to fit out of fold): their ``pred_probs`` column
        may hold NaN, none of their entries is flagged, their ``per_class`` note gives the reason, their
        self-confidence counts as 1 in the example score (no evidence either way) and they are left out of the
        quality checks.
    check_quality : bool
        Warn (:class:`~noisyfit.detect.guardrails.QualityWarning`) when a probability column fits another class
        better than its own (columns out of order), barely separates its class, or when over half the examples
        are flagged; the figures and messages are in ``info["model_quality"]`` either way.

    Returns
    -------
    MultiLabelIssues
    """
    from noisyfit.detect.filter import audit_label_issues

    probs = np.asarray(pred_probs, dtype=np.float64)
    if probs.ndim != 2:
        raise DetectInputError(f"pred_probs must be [N examples, K classes], got shape {probs.shape}")
    n, k = probs.shape
    skip = {int(c): str(why) for c, why in (skip or {}).items()}
    if any(not 0 <= c < k for c in skip):
        raise DetectInputError(f"skip names classes outside 0..{k - 1}: {sorted(skip)}")
    keep = np.array([c not in skip for c in range(k)])
    if skip:  # a skipped column's given bits stand in for it: self-confidence 1, never flagged
        probs = probs.copy()
        probs[:, ~keep] = label_matrix(labels, k)[:, ~keep]
    if not np.isfinite(probs).all() or probs.min() < 0 or probs.max() > 1:
        raise DetectInputError("pred_probs must be probabilities in [0, 1] (one sigmoid per class), not logits")
    if n == 0:
        raise DetectInputError("pred_probs has no rows: nothing to audit")
    given = label_matrix(labels, k)
    if len(given) != n:
        raise DetectInputError(f"labels has {len(given)} rows but pred_probs has {n}")
    if ids is not None and len(ids) != n:
        raise DetectInputError(f"ids has {len(ids)} entries for {n} examples")
    truth = label_matrix(true_labels, k, name="true_labels") if true_labels is not None else None
    names = list(class_names) if class_names is not None else [str(c) for c in range(k)]
    if len(names) != k:
        raise DetectInputError(f"{len(names)} class names for {k} columns of pred_probs")
    flags = np.zeros((n, k), dtype=bool)
    per_class, reasons_by_row = [], {}
    for c in range(k):
        bits = given[:, c].astype(np.int64)
        binary = np.stack([1.0 - probs[:, c], probs[:, c]], axis=1)
        entry = {"class": c, "name": names[c], "examples": int(bits.sum())}
        if c in skip:
            per_class.append({**entry, "remove": 0, "add": 0, "estimated_noise_rate": None,
                              "note": f"not audited: {skip[c]}"})
            continue
        if bits.min() == bits.max():  # every example has (or lacks) the class: nothing to contrast
            per_class.append({**entry, "remove": 0, "add": 0, "estimated_noise_rate": None,
                              "note": "every example has the same bit; not audited"})
            continue
        found = audit_label_issues(bits, binary, filter_by=filter_by, min_examples_per_class=min_examples_per_class,
                                   class_names=[f"not {names[c]}", names[c]], check_quality=False)
        flags[:, c] = found.is_issue
        per_class.append({**entry, "remove": int((found.is_issue & (bits == 1)).sum()),
                          "add": int((found.is_issue & (bits == 0)).sum()),
                          "estimated_noise_rate": float(found.estimated_noise_rate)})
        for i in np.flatnonzero(found.is_issue).tolist():
            what = (f"{names[c]} given, p={probs[i, c]:.3f}" if bits[i] else f"{names[c]} missing, p={probs[i, c]:.3f}")
            reasons_by_row.setdefault(i, []).append(what)
    kept = np.flatnonzero(keep)
    quality = check_multilabel_probs(given[:, kept], probs[:, kept], [names[c] for c in kept], warn=check_quality)
    quality["class_auroc"] = {names[c]: quality["class_auroc"].get(names[c]) if keep[c] else None for c in range(k)}
    if skip:
        quality["skipped"] = {names[c]: why for c, why in skip.items()}
    if flags.any(axis=1).mean() > 0.5:
        msg = (f"{flags.any(axis=1).mean():.0%} of the examples are flagged: more than half, which usually means "
               "probabilities that do not belong to these rows or a weak model, not that many labels are wrong")
        quality["warnings"].append(msg)
        if check_quality:
            import warnings as _warnings

            from noisyfit.detect.guardrails import QualityWarning

            _warnings.warn(QualityWarning(msg), stacklevel=2)
    class_scores = np.where(given, probs, 1.0 - probs)
    scores = aggregate_scores(class_scores, aggregator=aggregator, alpha=alpha)
    reasons = {i: "; ".join(parts) for i, parts in reasons_by_row.items()}
    return MultiLabelIssues(is_issue=flags.any(axis=1), given=given, suggested=given ^ flags, entry_flags=flags,
                            class_scores=class_scores, scores=scores, class_names=names, reasons=reasons,
                            per_class=per_class, ids=list(ids) if ids is not None else None, true_labels=truth,
                            info={"detector": f"one-vs-rest confident learning ({filter_by})",
                                  "rule": "an entry is flagged when the binary audit of its class flags the example",
                                  "aggregator": aggregator, "alpha": alpha, "model_quality": quality})
