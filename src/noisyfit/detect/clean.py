"""Act on an audit: a cleaned label file that ``noisyfit train --noisy-labels`` reads as it is.

The flagged examples are relabelled with the detector's suggested label, or dropped:

* ``relabel-or-drop`` (default): relabel when the detector's probability of its suggestion is at least
  ``threshold`` (default 0.5), drop the example otherwise;
* ``relabel``: relabel every flagged example (= relabel-or-drop at threshold 0);
* ``drop``: drop every flagged example (cleanlab's CleanLearning default).

A flagged example whose suggestion is its given label keeps it (``unchanged``) when relabelled; one
with no suggestion (a run's ``-1``) is dropped.

The file is a noise file (:func:`noisyfit.data.noise.save_noisy_labels`): ``labels`` are the cleaned
labels of every row of the source training set, in its order; ``keep`` marks the rows a run trains
on; ``true_labels`` are what the loader checks the file against (the data set's clean labels when it
has them, else its given labels). Rows the audit did not see (a run's validation split, rows outside
``data.train_subset``) keep the labels they had.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from noisyfit.data.labeled import DataError, LabeledData
from noisyfit.data.noise import NoiseResult, attach_noisy_labels, estimate_from_labels, load_noisy_labels
from noisyfit.detect.issues import LabelIssues

ACTIONS = ("relabel-or-drop", "relabel", "drop")
DEFAULT_THRESHOLD = 0.5


@dataclass
class Cleaning:
    """A cleaned label set and what was done to get it.

    Attributes
    ----------
    result : NoiseResult
        Labels and keep mask of every source row, ready for ``save_noisy_labels``.
    relabelled, dropped, unchanged : ndarray of int
        Source rows whose label the cleaning changed, dropped, or kept as given (flagged, but the
        suggestion is the given label itself).
    action : str
    threshold : float or None
    """

    result: NoiseResult
    relabelled: np.ndarray
    dropped: np.ndarray
    unchanged: np.ndarray
    action: str
    threshold: float | None

    @property
    def labels(self) -> np.ndarray:
        """The cleaned label of every source row (dropped rows keep theirs: see :attr:`keep`)."""
        return self.result.labels

    @property
    def keep(self) -> np.ndarray:
        """True for the rows to train on (False: dropped)."""
        return np.ones(len(self.result.labels), dtype=bool) if self.result.keep is None else self.result.keep

    def summary(self) -> dict:
        """Counts for summary.json and the console (true-label accuracy when the data set has it)."""
        r = self.result
        out = {"action": self.action, "threshold": self.threshold, "relabelled": int(len(self.relabelled)),
               "dropped": int(len(self.dropped)), "unchanged": int(len(self.unchanged)),
               "kept": int(len(r.labels) if r.keep is None else r.keep.sum()), "spec": r.spec}
        if r.info.get("labels_known"):
            rows = self.relabelled
            out["relabelled_correct"] = float(np.mean(r.labels[rows] == r.true_labels[rows])) if len(rows) else None
            out["noise_rate_after"] = r.noise_rate
        return out


def labelled_source(source: LabeledData, data_cfg, seed: int) -> tuple[LabeledData, np.ndarray | None]:
    """Every row of ``source`` with the labels a run on ``data_cfg`` trains on, and its keep mask (or None).

    The same labels as ``prepare_run_data`` gives (``data.noise`` drawn with ``seed``, or
    ``data.noisy_labels_file``), without the validation split or ``train_subset``: the cleaned file
    covers every row.
    """
    if data_cfg.noise and data_cfg.noisy_labels_file:
        raise DataError("data.noise and data.noisy_labels_file are both set; keep one of them")
    if data_cfg.noise:
        from noisyfit.data.noise import apply_noise

        return apply_noise(source, data_cfg.noise, seed=seed)[0], None
    if data_cfg.noisy_labels_file:
        loaded = load_noisy_labels(data_cfg.noisy_labels_file, num_examples=len(source),
                                   num_classes=source.num_classes)
        return attach_noisy_labels(source, loaded), loaded.keep
    return source, None


def check_threshold(action: str, threshold: float | None) -> float | None:
    """The threshold ``action`` uses (None for relabel and drop); DataError for a mismatched or bad one."""
    if action not in ACTIONS:
        raise DataError(f"clean action {action!r}; use one of {', '.join(ACTIONS)}.")
    if action != "relabel-or-drop":
        if threshold is not None:
            raise DataError(f"a threshold applies to relabel-or-drop only; {action} acts on every flagged "
                            "example. Leave the threshold out, or use relabel-or-drop.")
        return None
    t = DEFAULT_THRESHOLD if threshold is None else float(threshold)
    if not 0.0 <= t <= 1.0:
        raise DataError(f"threshold {threshold!r}: it is a probability of the suggested label, in [0, 1].")
    return t


def _labels_only(labels, issues: LabelIssues) -> LabeledData:
    """A feature-less data set around an array of class indices, so that arrays clean as a data set does."""
    y = np.asarray(labels)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(f"labels: expected a 1-D array of class indices (the labels given to the audit), got "
                        f"{y.dtype} of shape {y.shape}; map names to indices with np.unique(names, return_inverse=True).")
    return LabeledData(np.zeros((len(y), 0), dtype=np.float32), y.astype(np.int64), list(issues.class_names),
                       name="labels")


def clean_labels(issues: LabelIssues, labelled, *, action: str = "relabel-or-drop",
                 threshold: float | None = None, keep: np.ndarray | None = None) -> Cleaning:
    """Relabel or drop the flagged examples of ``issues``.

    >>> cleaned = clean_labels(issues, labels)                     # doctest: +SKIP
    >>> model.fit(x[cleaned.keep], cleaned.labels[cleaned.keep])   # doctest: +SKIP

    Parameters
    ----------
    issues : LabelIssues
        ``issues.index`` = positions in ``labelled``.
    labelled : LabeledData or array of int
        Every row of the source training set, with the labels the audit audited: a data set, or just its labels
        (class indices, as given to :func:`~noisyfit.detect.audit_label_issues`).
    action : {'relabel-or-drop', 'relabel', 'drop'}
    threshold : float, optional
        relabel-or-drop: the least probability of the suggested label that relabels (default 0.5).
    keep : ndarray of bool, optional
        Rows already dropped (an audit of a cleaned file): they stay dropped.
    """
    threshold = check_threshold(action, threshold)
    if not isinstance(labelled, LabeledData):
        labelled = _labels_only(labelled, issues)
    n = len(labelled)
    index = issues.index
    if len(index) and (index.min() < 0 or index.max() >= n):
        raise DataError(f"the audit's rows reach position {int(index.max())} but the data set has {n} rows; "
                        "it audited other data.")
    differ = np.flatnonzero(labelled.labels[index] != issues.given)
    if differ.size:
        raise DataError(f"the audit's given labels differ from the data set's at {differ.size} rows (first: row "
                        f"{int(index[differ[0]])}); the cleaned file would not match the labels it cleans.")
    conf = issues.suggested_confidence
    if action == "relabel-or-drop" and conf is None:
        raise DataError(f"{issues.detector} gives no probability for its suggested labels, so relabel-or-drop "
                        "cannot apply a threshold; use the relabel or drop action.")
    flagged = np.flatnonzero(issues.is_issue)
    rows, suggested = index[flagged], issues.suggested[flagged]
    has_suggestion = suggested >= 0
    if action == "drop":
        relabel = np.zeros(len(rows), dtype=bool)
    elif action == "relabel":
        relabel = has_suggestion
    else:
        relabel = has_suggestion & (conf[flagged] >= threshold)
    labels = labelled.labels.copy()
    labels[rows[relabel]] = suggested[relabel]
    kept = np.ones(n, dtype=bool) if keep is None else np.asarray(keep, dtype=bool).copy()
    kept[rows[~relabel]] = False
    changed = relabel & (suggested != issues.given[flagged])
    true = labelled.true_labels if labelled.true_labels is not None else labelled.labels
    c = labelled.num_classes
    rate, realised = estimate_from_labels(true[kept], labels[kept], c)
    # no nominal model behind these labels: the realised matrix, identity rows for absent classes
    nominal = realised.copy()
    empty = realised.sum(axis=1) == 0
    nominal[empty, empty] = 1.0
    spec = f"audit-clean:{action}" + (f"@{threshold:g}" if threshold is not None else "")
    info = {"action": action, "threshold": threshold, "detector": issues.detector, "rule": issues.rule,
            "audited": len(issues), "flagged": int(len(flagged)),
            "labels_known": labelled.true_labels is not None}
    result = NoiseResult(labels=labels, noise_rate=rate, transition=nominal, realised_transition=realised,
                         spec=spec, true_labels=true, seed=None, info=info, keep=None if kept.all() else kept)
    return Cleaning(result=result, relabelled=np.sort(rows[changed]), dropped=np.sort(rows[~relabel]),
                    unchanged=np.sort(rows[relabel & ~changed]), action=action, threshold=threshold)
