"""The cleanlab row of a bench suite: out-of-fold CE probabilities -> ``find_label_issues``.

Run as ``python -m noisyfit.bench.cleanlab_row --config ce/cpu-cifar10n --dataset cifar10n-worst
--seed 0 --out RUN_DIR``. The out-of-fold probabilities come from ``noisyfit.detect.oof`` at CE's
budget (same protocol and epochs per fold); cleanlab flags label issues with its default rule
(``filter_by="prune_by_noise_rate"``) and ranks samples by its default label-quality score
(self-confidence, the out-of-fold probability of the given label). Detection is scored on the
same training rows the methods are scored on (the noisy-validation split excluded), so the row
reads like any method's. It writes ``results.json`` and ``per_sample.npz`` like a training run.
"""

from __future__ import annotations

import argparse
import copy
import importlib
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

RESULTS_SCHEMA = "noisyfit.bench.cleanlab/1"
FOLDS = 5


def unavailable_reason() -> str | None:
    """Why the cleanlab row cannot run here, or None when it can."""
    if importlib.util.find_spec("cleanlab") is None:
        return "the cleanlab package is not installed (pip install 'noisyfit[cleanlab]')"
    try:
        mod = importlib.import_module("noisyfit.detect.oof")
    except Exception as e:  # a missing module or a broken one: either way the row cannot run
        return f"noisyfit.detect.oof is not available ({type(e).__name__}: {e})"
    if not callable(getattr(mod, "out_of_fold", None)):
        return "noisyfit.detect.oof has no out_of_fold"
    return None


def rows_of(train_index: np.ndarray, source_index: np.ndarray) -> np.ndarray:
    """Positions in ``source_index`` (sorted source positions of the out-of-fold rows) of ``train_index``.

    The out-of-fold rows cover the whole training set (or ``train_subset``); the methods are scored
    on that minus the noisy-validation split, so the row picks the same samples.
    """
    pos = np.searchsorted(source_index, train_index)
    found = source_index[np.minimum(pos, len(source_index) - 1)]
    if np.any(pos >= len(source_index)) or np.any(found != train_index):
        raise ValueError("the run's training rows are not a subset of the out-of-fold rows")
    return pos


def cleanlab_detection(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """cleanlab's default flags and label-quality scores for ``(labels, pred_probs)``."""
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    flags = np.asarray(find_label_issues(labels=labels, pred_probs=probs), dtype=bool)
    scores = np.asarray(get_label_quality_scores(labels=labels, pred_probs=probs), dtype=np.float64)
    return flags, scores


def run_cleanlab_row(cfg, out_dir: Path | None, *, folds: int = FOLDS, command: list[str] | None = None,
                     splits=None) -> dict:
    """Out-of-fold CE at ``cfg``'s budget, cleanlab's flags, and the bench's detection metrics.

    Parameters
    ----------
    cfg : noisyfit.config.Config
        CE's config for the label set (``train.epochs`` is the per-fold budget).
    out_dir : Path or None
        Where ``results.json`` and ``per_sample.npz`` go (None: return only).
    folds : int
    command : list of str, optional
        Recorded in the results.
    splits : DatasetSplits, optional
        Data given directly instead of by ``cfg.data.dataset``.

    Returns
    -------
    dict
        A results dict shaped like a training run's (no accuracy: cleanlab trains no final model).
    """
    import torch

    from noisyfit.engine.checkpoint import atomic_write_bytes, atomic_write_json
    from noisyfit.engine.machine import peak_memory_mb
    from noisyfit.engine.results import results_envelope
    from noisyfit.engine.run_data import prepare_run_data
    from noisyfit.engine.trainer import resolve_device
    from noisyfit.metrics import detection_metrics

    seed = cfg.train.seed
    if cfg.train.threads:
        torch.set_num_threads(int(cfg.train.threads))
    t0 = time.time()
    if splits is None:
        from noisyfit.data.sources import load_dataset

        d = cfg.data
        splits = load_dataset(d.dataset, d.data_dir, download=d.download, label_column=d.label_column)
    run = prepare_run_data(cfg.data, seed, splits)  # the rows (and noisy labels) methods are scored on
    # Folds over the whole noisy training set: no row is held out for model selection here.
    oof_cfg = copy.deepcopy(cfg)
    oof_cfg.data.val_fraction = 0.0
    # Finished folds are kept in the run folder: a killed row resumes at the fold in progress.
    cache = None if out_dir is None else Path(out_dir) / "folds"
    from noisyfit.detect.oof import out_of_fold

    oof = out_of_fold(oof_cfg, splits, folds=folds, epochs=cfg.train.epochs, seed=seed, progress=False,
                      cache_dir=cache, log=lambda line: print(line, flush=True))
    probs = np.asarray(oof.pred_probs, dtype=np.float64)
    # folds trained in an earlier session count with the time they took then
    earlier = sum(f["seconds"] for f in oof.info["per_fold"] if f.get("cached"))
    full = prepare_run_data(oof_cfg.data, seed, splits)  # every row the folds predicted, source order
    if probs.ndim != 2 or len(probs) not in (len(full.train), len(run.train)):
        raise ValueError(f"out_of_fold_pred_probs returned shape {probs.shape}; expected "
                         f"({len(full.train)}, C) (the whole training set) or ({len(run.train)}, C) "
                         "(the run's training split)")
    if len(probs) == len(full.train):
        # cleanlab's thresholds are per-class statistics: compute them on every row, then score ours.
        flags_all, scores_all = cleanlab_detection(full.train.labels, probs)
        rows = rows_of(run.train_index, full.train_index)
        flags, scores, probs = flags_all[rows], scores_all[rows], probs[rows]
    else:
        flags, scores = cleanlab_detection(run.train.labels, probs)
    tr = run.train
    detection = None
    if tr.true_labels is not None:
        detection = detection_metrics(tr.labels != tr.true_labels, flags=flags, clean_scores=scores)
    seconds = time.time() - t0
    device = resolve_device(cfg.train.device)
    compute = {"device": str(device), "precision": cfg.train.precision, "world_size": 1, "folds": folds,
               "seconds_per_epoch": None, "train_seconds_total": seconds + earlier,
               "wall_seconds_this_session": seconds,
               "fold_seconds": [round(f["seconds"], 1) for f in oof.info["per_fold"]]}
    compute.update(peak_memory_mb(device))
    results = {
        **results_envelope(schema=RESULTS_SCHEMA, command=command, device=device, seed=seed, config=cfg.to_dict()),
        "method": {"name": "cleanlab", "hyper": {"folds": folds, "epochs_per_fold": cfg.train.epochs},
                   "flag_rule": f"cleanlab.filter.find_label_issues on {folds}-fold out-of-fold CE "
                                "probabilities (default prune_by_noise_rate); scores: self-confidence"},
        "data": {"source": run.source_name, "num_classes": tr.num_classes, "num_train": len(tr),
                 "num_val": 0 if run.val is None else len(run.val), "train_noise_rate": tr.noise_rate,
                 "noise": run.noise_info},
        "epochs": [],
        "final": {"epoch": None, "test_acc": None, "val_acc": None},
        "selected": {"epoch": None, "val_acc": None, "test_acc": None, "rule": "none (no final model)"},
        "detection": detection,
        "compute": compute,
        "files": {"per_sample": "per_sample.npz"},
    }
    if out_dir is not None:
        ps = {"train_index": run.train_index, "given": tr.labels, "clean_score": scores, "flag": flags,
              "probs": probs.astype(np.float32)}
        if tr.true_labels is not None:
            ps["true"] = tr.true_labels
        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(out_dir / "per_sample.npz", lambda f: np.savez_compressed(f, **ps))
        atomic_write_json(out_dir / "results.json", results)
    return results


def main(argv: list[str] | None = None) -> int:
    from noisyfit.cli import _user_errors
    from noisyfit.config import load_config

    p = argparse.ArgumentParser(prog="python -m noisyfit.bench.cleanlab_row",
                                description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="CE's preset or YAML (its epochs are the per-fold budget)")
    p.add_argument("--dataset")
    p.add_argument("--noise")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--folds", type=int, default=FOLDS)
    p.add_argument("--out", required=True)
    p.add_argument("overrides", nargs="*")
    args = p.parse_args(argv)
    reason = unavailable_reason()
    if reason:
        print(f"cleanlab row: unavailable: {reason}", file=sys.stderr)
        return 3
    flags: dict = {"train": {"seed": args.seed}}
    if args.dataset:
        flags["data"] = {"dataset": args.dataset}
    if args.noise:
        flags.setdefault("data", {})["noise"] = args.noise
    try:
        cfg = load_config(args.config, args.overrides, flags=flags)
        r = run_cleanlab_row(cfg, Path(args.out), folds=args.folds,
                             command=["python", "-m", "noisyfit.bench.cleanlab_row", *(argv or sys.argv[1:])])
    except _user_errors() as e:
        print(f"cleanlab row: error: {e}", file=sys.stderr)
        return 2
    det = r["detection"] or {}
    print(f"cleanlab row: F1 {det.get('f1')}, AUROC {det.get('auroc')}; "
          f"results: {Path(args.out) / 'results.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
