"""What the bench keeps of a finished run: its results.json plus a small precision-recall summary.

Run folders hold checkpoints and per-sample arrays (megabytes); the results folder, which is
committed, keeps only JSON: the run's results with a ``bench`` block, and a ``.pr.json`` sidecar
with at most a few hundred precision-recall points computed from ``per_sample.npz`` at copy time.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from noisyfit.engine.checkpoint import atomic_write_json

#: precision-recall points kept per run (the full curve has one point per distinct score)
PR_POINTS = 101


def pr_points(is_noisy: np.ndarray, clean_scores: np.ndarray, *, flags: np.ndarray | None = None,
              max_points: int = PR_POINTS) -> dict | None:
    """A thinned precision-recall curve of "noisy" ranked by ascending clean score.

    Parameters
    ----------
    is_noisy : bool ndarray
        True where the given label is wrong.
    clean_scores : ndarray
        Higher = cleaner; samples are ranked by ``-clean_scores``.
    flags : bool ndarray, optional
        The method's flagged set, reported as one operating point.
    max_points : int
        Points kept, evenly spaced along the curve, both ends included.

    Returns
    -------
    dict or None
        ``precision``, ``recall`` (lists, recall descending, one point per kept threshold), ``auprc``,
        ``positives``, ``n``, ``flag_point`` (``{"precision", "recall"}``; None without flags or when none
        is flagged); None when
        there are no noisy or no clean samples (the curve is undefined).
    """
    from sklearn.metrics import average_precision_score, precision_recall_curve

    is_noisy = np.asarray(is_noisy, dtype=bool)
    if not 0 < is_noisy.sum() < len(is_noisy):
        return None
    score = -np.asarray(clean_scores, dtype=np.float64)
    precision, recall, _ = precision_recall_curve(is_noisy, score)
    # sklearn closes the curve with the convention (recall 0, precision 1), which no threshold reaches;
    # drawn, it would join a constant score's single real point to (0, 1) by a fake line.
    precision, recall = precision[:-1], recall[:-1]
    keep = np.unique(np.linspace(0, len(precision) - 1, min(max_points, len(precision))).round().astype(int))
    flag_point = None  # also when nothing is flagged: precision is 0/0 there, no point to mark
    if flags is not None and np.any(flags):
        flags = np.asarray(flags, dtype=bool)
        tp = int((flags & is_noisy).sum())
        flag_point = {"precision": tp / int(flags.sum()), "recall": tp / int(is_noisy.sum())}
    return {"precision": [round(float(v), 5) for v in precision[keep]],
            "recall": [round(float(v), 5) for v in recall[keep]],
            "auprc": float(average_precision_score(is_noisy, score)),
            "positives": int(is_noisy.sum()), "n": int(len(is_noisy)), "flag_point": flag_point}


def pr_from_per_sample(npz_path: Path) -> dict | None:
    """:func:`pr_points` from a run's ``per_sample.npz`` (None without true labels or clean scores)."""
    if not npz_path.is_file():
        return None
    with np.load(npz_path) as ps:
        if "true" not in ps or "clean_score" not in ps or "given" not in ps:
            return None
        flags = ps["flag"] if "flag" in ps else None
        return pr_points(ps["given"] != ps["true"], ps["clean_score"], flags=flags)


def collect_run(run_dir: Path, dest: Path, bench: dict) -> dict:
    """Copy ``run_dir/results.json`` to ``dest`` with a ``bench`` block, and write the PR sidecar.

    Parameters
    ----------
    run_dir : Path
        A finished run folder (results.json, per_sample.npz).
    dest : Path
        ``<results>/<suite>/<key>.json``.
    bench : dict
        Suite, method, label set, seed, preset, wall time, ... recorded under ``"bench"``.

    Returns
    -------
    dict
        The results as written.
    """
    results = json.loads((run_dir / "results.json").read_text())
    results["bench"] = dict(bench, collected=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    dest.parent.mkdir(parents=True, exist_ok=True)
    pr = pr_from_per_sample(run_dir / "per_sample.npz")
    sidecar = dest.with_name(dest.name[: -len(".json")] + ".pr.json")
    if pr is not None:
        atomic_write_json(sidecar, pr)
    # The results file is written last: its presence is what marks the run as done.
    atomic_write_json(dest, results)
    return results
