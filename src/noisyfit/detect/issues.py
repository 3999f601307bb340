"""`LabelIssues`: the flagged examples with a suggested label, a score and a reason each.

Every detector (confident learning on pred_probs, a finished noisyfit run, a crowd consensus, the
cleanlab backend) returns this one shape, which the CLI writes as ``issues.csv`` / ``summary.json`` and
the report draws. It is plain numpy: ``records()`` gives a list of dicts and ``to_pandas()`` a
DataFrame when pandas happens to be installed (it is not a dependency).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from noisyfit.detect.count import NoiseEstimate

CSV_COLUMNS = ("index", "id", "given", "given_label", "suggested", "suggested_label", "suggested_confidence",
               "score", "reason")


@dataclass
class LabelIssues:
    """Result of an audit.

    Attributes
    ----------
    is_issue : ndarray of bool (N,)
        The flags.
    given, suggested : ndarray of int (N,)
        The given label and the label the detector would put instead (for unflagged examples: its best
        guess, usually the given label).
    scores : ndarray of float (N,)
        Label-quality score, higher = more likely correct (the detector's ``score_name``).
    reasons : dict of int to str
        For each flagged position: which signal fired, its value and its threshold.
    class_names : list of str
    detector, rule, score_name : str
        Who flagged, the rule in words, what the score is.
    threshold : float or None
        The cut on ``scores`` when the rule is a single threshold on them (drawn in the report).
    noise : NoiseEstimate or None
    index : ndarray of int (N,)
        Position of each example in the source data set (a run holds out validation rows, for one).
    ids : list of str or None
        File names / row ids, aligned with the examples.
    true_labels : ndarray of int (N,) or None
        Known clean labels (synthetic noise, CIFAR-N): enables :meth:`detection_metrics`.
    info : dict
        Detector details for summary.json (thresholds, cutoffs, timings, annotators, ...).
    suggested_confidence : ndarray of float (N,) or None
        The detector's probability of its suggested label (pred_probs, a run's final probabilities, a
        consensus posterior); None when it has none. Cleaning relabels above a threshold on it.
    review : ndarray of bool (N,) or None
        Examples not flagged that a person should still look at (an annotator audit: items whose kept label
        at most half of their annotators gave); None when the detector has no such notion. Their reasons
        are in ``reasons`` too; ``review.csv`` lists them.
    review_rule : str or None
        The review rule in words.
    """

    is_issue: np.ndarray
    given: np.ndarray
    suggested: np.ndarray
    scores: np.ndarray
    reasons: dict[int, str]
    class_names: list[str]
    detector: str
    rule: str
    score_name: str
    threshold: float | None = None
    noise: NoiseEstimate | None = None
    index: np.ndarray | None = None
    ids: list[str] | None = None
    true_labels: np.ndarray | None = None
    info: dict = field(default_factory=dict)
    suggested_confidence: np.ndarray | None = None
    review: np.ndarray | None = None
    review_rule: str | None = None

    def __repr__(self) -> str:
        # the dataclass repr printed every array and reason: 334,000 characters for 5,000 rows in a notebook
        return (f"LabelIssues({self.num_issues:,} of {len(self):,} flagged, estimated noise rate "
                f"{self.estimated_noise_rate:.3f}, {len(self.class_names)} classes, detector={self.detector!r}; "
                ".to_pandas() or .records() for the rows)")

    def __post_init__(self) -> None:
        self.is_issue = np.asarray(self.is_issue, dtype=bool)
        if self.review is not None:
            self.review = np.asarray(self.review, dtype=bool)
            if len(self.review) != len(self.is_issue):
                raise ValueError(f"LabelIssues.review has {len(self.review)} entries for {len(self.is_issue)} "
                                 "examples")
            if np.any(self.review & self.is_issue):
                raise ValueError("LabelIssues.review marks flagged examples; it is for examples not flagged")
        self.given = np.asarray(self.given, dtype=np.int64)
        self.suggested = np.asarray(self.suggested, dtype=np.int64)
        self.scores = np.asarray(self.scores, dtype=np.float64)
        n = len(self.is_issue)
        self.index = np.arange(n) if self.index is None else np.asarray(self.index, dtype=np.int64)
        for name in ("given", "suggested", "scores", "index"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"LabelIssues.{name} has {len(getattr(self, name))} entries for {n} examples")
        if self.ids is not None and len(self.ids) != n:
            raise ValueError(f"LabelIssues.ids has {len(self.ids)} entries for {n} examples")
        if self.true_labels is not None:
            self.true_labels = np.asarray(self.true_labels, dtype=np.int64)
        if self.suggested_confidence is not None:
            self.suggested_confidence = np.asarray(self.suggested_confidence, dtype=np.float64)
            if len(self.suggested_confidence) != n:
                raise ValueError(f"LabelIssues.suggested_confidence has {len(self.suggested_confidence)} entries "
                                 f"for {n} examples")

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return len(self.is_issue)

    @property
    def num_issues(self) -> int:
        return int(self.is_issue.sum())

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def issue_positions(self) -> np.ndarray:
        """Positions of flagged examples, lowest score (most suspicious) first; ties by position."""
        pos = np.flatnonzero(self.is_issue)
        return pos[np.argsort(self.scores[pos], kind="stable")]

    def name(self, k: int) -> str:
        return self.class_names[k] if 0 <= k < len(self.class_names) else str(k)

    def review_positions(self) -> np.ndarray:
        """Positions of the examples to review (``review``), lowest score first; empty without a review."""
        if self.review is None:
            return np.zeros(0, dtype=np.int64)
        pos = np.flatnonzero(self.review)
        return pos[np.argsort(self.scores[pos], kind="stable")]

    def records(self, top: int | None = None, *, which: str = "issues") -> list[dict]:
        """One dict per flagged example (columns as in issues.csv), most suspicious first; ``which="review"``:
        the examples to review instead (review.csv)."""
        if which not in ("issues", "review"):
            raise ValueError(f"which={which!r}; use 'issues' or 'review'")
        pos = (self.issue_positions() if which == "issues" else self.review_positions())[:top]
        conf = self.suggested_confidence
        return [{"index": int(self.index[p]), "id": self.ids[p] if self.ids is not None else str(int(self.index[p])),
                 "given": int(self.given[p]), "given_label": self.name(int(self.given[p])),
                 "suggested": int(self.suggested[p]), "suggested_label": self.name(int(self.suggested[p])),
                 "suggested_confidence": None if conf is None else float(conf[p]),
                 "score": float(self.scores[p]),
                 "reason": self.reasons.get(int(p), self.rule if which == "issues" else self.review_rule)}
                for p in pos]

    def to_pandas(self):
        """The records as a pandas DataFrame (needs pandas, which noisyfit does not install)."""
        try:
            import pandas as pd
        except ImportError as err:  # pragma: no cover - depends on the environment
            raise ImportError("to_pandas() needs pandas: pip install pandas (or use .records())") from err
        return pd.DataFrame(self.records(), columns=list(CSV_COLUMNS))

    def per_class(self) -> list[dict]:
        """Per class: examples given it, how many of those are flagged, and flags suggesting it."""
        c = self.num_classes
        given = np.bincount(self.given, minlength=c)
        flagged = np.bincount(self.given[self.is_issue], minlength=c)
        into = np.bincount(self.suggested[self.is_issue], minlength=c)
        return [{"class": k, "name": self.name(k), "examples": int(given[k]), "issues": int(flagged[k]),
                 "issue_rate": float(flagged[k] / given[k]) if given[k] else 0.0,
                 "suggested_into": int(into[k])} for k in range(c)]

    @property
    def estimated_noise_rate(self) -> float:
        return float(self.noise.noise_rate) if self.noise is not None else float(self.is_issue.mean())

    def detection_metrics(self) -> dict | None:
        """Precision / recall / F1 of the flags and AUROC / AUPRC of the scores against true labels."""
        if self.true_labels is None:
            return None
        from noisyfit.metrics import detection_metrics

        out = detection_metrics(self.given != self.true_labels, flags=self.is_issue, clean_scores=self.scores,
                                estimated_noise_rate=self.estimated_noise_rate)
        wrong = self.is_issue & (self.given != self.true_labels)
        # of the truly wrong labels we flagged, how often the suggestion is the true label
        out["suggestion_accuracy"] = (float(np.mean(self.suggested[wrong] == self.true_labels[wrong]))
                                      if wrong.any() else None)
        return out

    # ------------------------------------------------------------------ files
    def write_csv(self, path: str | Path, *, which: str = "issues") -> Path:
        """``issues.csv``: one row per flagged example, most suspicious first (``which="review"``: review.csv,
        the examples to review, same columns)."""
        path = Path(path)
        rows = self.records(which=which)
        with open(path, "w", newline="", encoding="utf-8") as f:
            w = csv.DictWriter(f, fieldnames=list(CSV_COLUMNS))
            w.writeheader()
            for r in rows:
                r["score"] = f"{r['score']:.6g}"
                conf = r["suggested_confidence"]
                r["suggested_confidence"] = "" if conf is None else f"{conf:.4g}"
                w.writerow(r)
        return path

    def summary(self) -> dict:
        """The JSON-ready summary (without file names or timings, which the caller adds)."""
        return {"detector": self.detector, "rule": self.rule, "score_name": self.score_name,
                "threshold": self.threshold, "num_examples": len(self), "num_issues": self.num_issues,
                "estimated_noise_rate": self.estimated_noise_rate, "flag_rate": float(self.is_issue.mean()),
                "class_names": list(self.class_names), "noise": self.noise.to_dict() if self.noise else None,
                "per_class": self.per_class(), "detection": self.detection_metrics(), "info": _jsonable(self.info),
                **({"num_review": int(self.review.sum()), "review_rule": self.review_rule}
                   if self.review is not None else {})}


def _jsonable(v):
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, np.generic):
        return v.item()
    return v


def names_or_indices(class_names: Sequence[str] | None, num_classes: int) -> list[str]:
    return list(class_names) if class_names is not None else [str(k) for k in range(num_classes)]
