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

    Returns a dict with ``precision, recall, f1, num_flagged, auroc, auprc, true_noise_rate,
    estimated_noise_rate, noise_rate_error`` (None where an input is missing or undefined).
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
        prec = tp / n_flag if n_flag else 0.0
        rec = tp / n_pos if n_pos else 0.0
        out.update(precision=prec, recall=rec, f1=(2 * prec * rec / (prec + rec)) if prec + rec else 0.0,
                   num_flagged=n_flag)
        if estimated_noise_rate is None:
            out["estimated_noise_rate"] = float(flags.mean())
    if clean_scores is not None and 0 < is_noisy.sum() < len(is_noisy):
        s = -np.asarray(clean_scores, dtype=np.float64)
        if s.shape != is_noisy.shape:
            raise ValueError(f"clean_scores shape {s.shape} != truth shape {is_noisy.shape}")
        out["auroc"] = float(roc_auc_score(is_noisy, s))
        out["auprc"] = float(average_precision_score(is_noisy, s))
    if out["estimated_noise_rate"] is not None and out["true_noise_rate"] is not None:
        out["noise_rate_error"] = float(out["estimated_noise_rate"] - out["true_noise_rate"])
    return out
