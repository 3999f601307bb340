"""Accuracy and label-noise detection metrics.

Detection is scored against the truth "this given label is wrong": positives are mislabelled samples.
A method provides flags (a boolean set) and clean scores (higher = cleaner); AUROC/AUPRC rank samples
by ``-clean_score`` so that a larger value means "more likely noisy".
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score, roc_auc_score


def accuracy(pred: np.ndarray, target: np.ndarray) -> float:
    pred = np.asarray(pred)
    target = np.asarray(target)
    if pred.shape != target.shape:
        raise ValueError(f"accuracy: shapes differ, pred {pred.shape} vs target {target.shape}")
    return float(np.mean(pred == target)) if len(target) else float("nan")


def detection_metrics(is_noisy: np.ndarray, *, flags: np.ndarray | None = None,
                      clean_scores: np.ndarray | None = None,
                      estimated_noise_rate: float | None = None) -> dict:
    """Precision / recall / F1 of ``flags`` and AUROC / AUPRC of ``clean_scores`` against ``is_noisy``.

    Returns a dict with ``precision, recall, f1, num_flagged, auroc, auprc, f1_at_true_k,
    true_noise_rate, estimated_noise_rate, noise_rate_error`` (None where an input is missing or
    undefined: ``precision`` when nothing is flagged, ``f1`` being 0 then, as no wrong label was found).
    ``f1`` scores the method's own flag rule; ``f1_at_true_k`` scores every method by one common rule (see
    :func:`f1_at_true_k`), so that it ranks scores, not thresholds.
    """
    is_noisy = np.asarray(is_noisy, dtype=bool)
    out: dict = {"true_noise_rate": float(is_noisy.mean()) if len(is_noisy) else None,
                 "precision": None, "recall": None, "f1": None, "num_flagged": None,
                 "auroc": None, "auprc": None,
                 "estimated_noise_rate": estimated_noise_rate, "noise_rate_error": None}
    if flags is not None:
        flags = np.asarray(flags, dtype=bool)
        if flags.shape != is_noisy.shape:
            raise ValueError(f"flags shape {flags.shape} != truth shape {is_noisy.shape}")
        tp = int(np.sum(flags & is_noisy))
        n_flag = int(flags.sum())
        n_pos = int(is_noisy.sum())
        prec = tp / n_flag if n_flag else None  # nothing flagged: 0/0, undefined (not "every flag wrong")
        rec = tp / n_pos if n_pos else 0.0
        f1 = 2 * prec * rec / (prec + rec) if prec and rec else 0.0  # no flags, or none right: no wrong label found
        out.update(precision=prec, recall=rec, f1=f1, num_flagged=n_flag)
        if estimated_noise_rate is None:
            out["estimated_noise_rate"] = float(flags.mean())
    if clean_scores is not None and 0 < is_noisy.sum() < len(is_noisy):
        s = -np.asarray(clean_scores, dtype=np.float64)
        if s.shape != is_noisy.shape:
            raise ValueError(f"clean_scores shape {s.shape} != truth shape {is_noisy.shape}")
        out["auroc"] = float(roc_auc_score(is_noisy, s))
        out["auprc"] = float(average_precision_score(is_noisy, s))
    out["f1_at_true_k"] = None if clean_scores is None else f1_at_true_k(is_noisy, clean_scores)
    if out["estimated_noise_rate"] is not None and out["true_noise_rate"] is not None:
        out["noise_rate_error"] = float(out["estimated_noise_rate"] - out["true_noise_rate"])
    return out


def f1_at_true_k(is_noisy: np.ndarray, clean_scores: np.ndarray) -> float | None:
    """F1 of the common flag rule: flag the k samples with the lowest clean scores, k = the number of
    truly mislabelled samples.

    With k equal to the number of positives, precision = recall = F1 (the break-even point of the
    precision-recall curve), so one number ranks the scores of methods whose own flag rules cut at
    different thresholds. Ties at the cut are broken by sample order (a stable sort). None when there is
    no mislabelled sample.
    """
    is_noisy = np.asarray(is_noisy, dtype=bool)
    k = int(is_noisy.sum())
    if k == 0:
        return None
    order = np.argsort(np.asarray(clean_scores, dtype=np.float64), kind="stable")
    return float(is_noisy[order[:k]].sum() / k)


def health_figures(values: dict, is_noisy: np.ndarray | None) -> dict:
    """Per-epoch figures of a method's :meth:`~noisyfit.methods.base.Method.health` values.

    Scalars pass through; a boolean array over the training samples gives ``<name>_share`` and, with
    the truth, ``<name>_precision`` (share of the selected whose label is right) and ``<name>_recall``
    (share of right labels selected); a float array (higher = cleaner) gives ``<name>_auroc``.
    """
    out: dict = {}
    for name, v in values.items():
        if v is None:
            continue
        if isinstance(v, (bool, int, float, np.integer, np.floating)) or (hasattr(v, "ndim") and v.ndim == 0):
            out[name] = float(v)
            continue
        a = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        if is_noisy is not None and len(a) != len(is_noisy):
            raise ValueError(f"health value {name!r} has {len(a)} rows, the training set {len(is_noisy)}")
        if a.dtype == bool:
            out[f"{name}_share"] = float(a.mean()) if len(a) else None
            if is_noisy is not None:
                clean = ~is_noisy
                out[f"{name}_precision"] = float(clean[a].mean()) if a.any() else None
                out[f"{name}_recall"] = float(a[clean].mean()) if clean.any() else None
        elif is_noisy is not None and 0 < is_noisy.sum() < len(is_noisy):
            out[f"{name}_auroc"] = float(roc_auc_score(~is_noisy, a.astype(np.float64)))
    return out
