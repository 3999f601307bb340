"""Out-of-fold predicted probabilities for users who bring no model: K-fold training at a cheap budget.

Confident learning needs *out-of-sample* probabilities: a model that trained on an example has
memorised its (possibly wrong) label. K-fold cross-validation gives every example a prediction from a
model that never saw it, at K times the cost of one training run, the cost cleanlab users complain
about (anchors §2.1 B). Two levers keep it cheap: few epochs (``epochs``, the budget) and noisyfit's
Trainer, which holds the data on the device and augments in batch.

Each fold trains ``cfg.method`` (CE by default) with ``cfg``'s model, optimiser and schedule on the
other folds' examples, with the *given* labels (after any noise ``cfg.data`` injects), no validation
split and no checkpoints; the held-out fold is passed as the test split and predicted once at the end.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from noisyfit.config import Config
from noisyfit.data.labeled import DataError, DatasetSplits
from noisyfit.detect.progress import progress_bar


@dataclass
class OutOfFold:
    """Out-of-fold predictions and what they are aligned with.

    Attributes
    ----------
    pred_probs : ndarray (N, C) float32
        Row i: softmax of the fold model that did not train on example i.
    labels : ndarray (N,)
        The given labels the folds trained on (after injected noise, if any).
    true_labels : ndarray (N,) or None
    index : ndarray (N,)
        Position of each row in the source training set (``cfg.data.train_subset`` keeps a subset).
    fold : ndarray (N,)
        Which fold held each example out.
    class_names, ids
    seconds : float
        Wall time of the whole K-fold run.
    info : dict
        Per-fold seconds and agreement of the fold model with the given labels on its held-out fold.
    """

    pred_probs: np.ndarray
    labels: np.ndarray
    true_labels: np.ndarray | None
    index: np.ndarray
    fold: np.ndarray
    class_names: list[str]
    ids: list[str] | None
    seconds: float
    info: dict = field(default_factory=dict)


def _fold_config(cfg: Config, epochs: int) -> Config:
    c = copy.deepcopy(cfg)
    # The folds get the noisy labels already applied; they must not add noise or hold out data again.
    c.data.noise = None
    c.data.noisy_labels_file = None
    c.data.val_fraction = 0.0
    c.data.train_subset = None
    c.train.epochs = epochs
    c.train.eval_every = epochs  # held-out accuracy only once, at the end
    c.train.checkpoint = False
    c.train.tensorboard = False
    c.train.progress = False
    return c


def _same_setup(stored: str, current: str) -> bool:
    """Whether a cached fold's fingerprint describes the current setup. The configs compare as a resume
    compares them: a setting added to noisyfit after the fold was trained counts as its default, which is
    what the fold trained with (new options keep earlier behaviour by default), so adding an option does
    not throw away hours of finished folds."""
    from noisyfit.engine.trainer import comparable_config

    if stored == current:
        return True
    try:
        a, b = json.loads(stored), json.loads(current)
    except ValueError:
        return False
    def canonical(config: dict) -> str:  # through JSON again: a filled-in default may be a tuple, JSON's a list
        return json.dumps(comparable_config(config), sort_keys=True, default=str)

    return canonical(a.pop("config", {})) == canonical(b.pop("config", {})) and a == b


def _load_fold(path: Path, held_idx: np.ndarray, fingerprint: str) -> tuple[np.ndarray, dict] | None:
    """A finished fold's held-out probabilities, if ``path`` holds that very fold of that very setup."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if not _same_setup(str(z["fingerprint"]), fingerprint) or not np.array_equal(z["held_idx"], held_idx):
                return None
            return z["probs"].astype(np.float32), json.loads(str(z["info"]))
    except (OSError, ValueError, KeyError):
        return None  # a torn or foreign file: train the fold again


def _save_fold(path: Path, held_idx: np.ndarray, fingerprint: str, probs: np.ndarray, info: dict) -> None:
    from noisyfit.engine.checkpoint import atomic_write_bytes

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(path, lambda f: np.savez(f, held_idx=held_idx, probs=probs, fingerprint=fingerprint,
                                                info=json.dumps(info)))


def out_of_fold(cfg: Config, splits: DatasetSplits | None = None, *, folds: int = 5, epochs: int | None = None,
                seed: int = 0, progress: bool = True, cache_dir: str | Path | None = None,
                log=None, log_epochs: bool = False) -> OutOfFold:
    """K-fold out-of-fold probabilities for the training set of ``cfg.data`` (or ``splits``).

    Parameters
    ----------
    cfg : Config
        Data (``dataset``, ``noise``, ``train_subset``), model, optimiser and method of every fold.
    splits : DatasetSplits, optional
        Data given directly instead of by ``cfg.data.dataset``.
    folds : int
        K >= 2; folds are stratified by the given label.
    epochs : int, optional
        Epochs per fold (default ``cfg.train.epochs``).
    seed : int
        Seed of the fold assignment (training uses ``cfg.train.seed``).
    progress : bool
        Show a progress bar over folds x epochs.
    cache_dir : path, optional
        Each finished fold's held-out probabilities are saved here (``fold<k>.npz``); a later call with
        the same config, data and fold assignment loads them instead of training again, so a killed
        K-fold run loses at most the fold in progress.
    log : callable, optional
        Gets one line per fold (start, cached, done), e.g. ``print`` when no progress bar is shown.
    log_epochs : bool
        Also give ``log`` one line per finished epoch of a fold (loss, seconds).

    Returns
    -------
    OutOfFold
    """
    from sklearn.model_selection import StratifiedKFold

    from noisyfit.engine.run_data import prepare_run_data
    from noisyfit.engine.trainer import Trainer

    if folds < 2:
        raise DataError(f"folds={folds}: out-of-fold predictions need at least 2 folds.")
    epochs = int(epochs or cfg.train.epochs)
    data_cfg = copy.deepcopy(cfg.data)
    data_cfg.val_fraction = 0.0  # every training example gets a prediction
    run = prepare_run_data(data_cfg, cfg.train.seed, splits)
    full = run.train
    counts = np.bincount(full.labels, minlength=full.num_classes)
    if counts.min() < folds:
        k = int(counts.argmin())
        raise DataError(f"class {full.class_names[k]!r} has {int(counts[k])} examples, fewer than folds={folds}; "
                        "use fewer folds (--folds) or drop the class.")
    fold_cfg = _fold_config(cfg, epochs)
    n, c = len(full), full.num_classes
    out = np.zeros((n, c), dtype=np.float32)
    fold_of = np.full(n, -1, dtype=np.int64)
    per_fold = []
    t0 = time.time()
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    say = log or (lambda _line: None)
    fingerprint = json.dumps({"config": fold_cfg.to_dict(), "n": n, "folds": folds, "seed": seed,
                              "labels_sum": int(full.labels.sum())}, sort_keys=True, default=str)
    with progress_bar(folds * epochs, f"out-of-fold {folds} folds x {epochs} epochs", progress) as bar:
        for k, (train_idx, held_idx) in enumerate(skf.split(np.zeros(n), full.labels)):
            cache = None if cache_dir is None else Path(cache_dir) / f"fold{k}.npz"
            cached = None if cache is None else _load_fold(cache, held_idx, fingerprint)
            if cached is None and cache is not None and cache.is_file():
                say(f"out-of-fold: fold {k + 1}/{folds}: {cache} is from another setup (config, data or folds "
                    "differ); training the fold again")
            if cached is not None:
                out[held_idx], info = cached
                fold_of[held_idx] = k
                per_fold.append({**info, "cached": True})
                bar.advance(epochs, info=f"fold {k + 1}/{folds} (cached)")
                say(f"out-of-fold: fold {k + 1}/{folds} loaded from {cache} ({info['seconds']:.0f} s when trained)")
                continue
            say(f"out-of-fold: fold {k + 1}/{folds}: training on {len(train_idx)} examples for {epochs} "
                f"epoch{'s' if epochs != 1 else ''}")
            tk = time.time()
            fold_splits = DatasetSplits(train=full.subset(train_idx, name=f"{full.name}/fold{k}-train"),
                                        test=full.subset(held_idx, name=f"{full.name}/fold{k}-heldout"))
            trainer = Trainer(fold_cfg, None, splits=fold_splits, command=["noisyfit", "out-of-fold"], quiet=True)
            trainer.logger.console.quiet = True  # the folds' own warnings too: the audit reports on the model
            log_epoch = trainer.logger.log_epoch

            def tick(row, _log=log_epoch, _k=k):  # advance the bar once per finished epoch
                _log(row)
                bar.advance(1, info=f"fold {_k + 1}/{folds}")
                if log_epochs:
                    loss = row.get("train_loss")
                    say(f"out-of-fold: fold {_k + 1}/{folds} epoch {row['epoch'] + 1}/{row['num_epochs']}"
                        + (f": loss {loss:.4f}" if loss is not None else "")
                        + f" ({row.get('train_seconds', 0.0):.1f} s)")

            trainer.logger.log_epoch = tick
            trainer.fit()
            logits = trainer.predict_over(trainer.test_x, trainer.method.predict_logits)
            probs = np.asarray(logits.float().softmax(dim=1).cpu().numpy(), dtype=np.float32)
            out[held_idx] = probs
            fold_of[held_idx] = k
            info = {"fold": k, "train": len(train_idx), "held_out": len(held_idx), "seconds": time.time() - tk,
                    "held_out_agreement_with_given": float(np.mean(probs.argmax(1) == full.labels[held_idx]))}
            per_fold.append(info)
            if cache is not None:
                _save_fold(cache, held_idx, fingerprint, probs, info)
            say(f"out-of-fold: fold {k + 1}/{folds} done in {info['seconds']:.0f} s (held-out agreement with "
                f"the given labels {info['held_out_agreement_with_given']:.3f})")
    return OutOfFold(pred_probs=out, labels=full.labels.copy(), true_labels=full.true_labels, index=run.train_index,
                     fold=fold_of, class_names=list(full.class_names), ids=full.ids, seconds=time.time() - t0,
                     info={"folds": folds, "epochs": epochs, "seed": seed, "method": cfg.method.name,
                           "backbone": cfg.model.backbone, "per_fold": per_fold, "noise": run.noise_info})


def out_of_fold_pred_probs(cfg: Config, splits: DatasetSplits | None = None, *, folds: int = 5,
                           epochs: int | None = None, seed: int = 0, **kwargs) -> np.ndarray:
    """``[N, C]`` out-of-fold probabilities for the training set (see :func:`out_of_fold`).

    The rows follow the training set of ``cfg.data`` in order (all of it, or ``train_subset``); the
    given labels they go with are ``out_of_fold(...).labels``.
    """
    return out_of_fold(cfg, splits, folds=folds, epochs=epochs, seed=seed, **kwargs).pred_probs
