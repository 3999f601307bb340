"""From a data config to the tensors a run trains on: load, add noise, hold out a noisy validation split.

The validation split is cut from the *noisy* training set (its labels are as noisy as the training
labels): model selection uses it, never the test set (anchors §6.4).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from noisyfit.config import DataConfig
from noisyfit.data.labeled import DataError, DatasetSplits, LabeledData


@dataclass
class RunData:
    train: LabeledData  # what the method trains on (noisy labels)
    val: LabeledData | None  # held-out noisy split for model selection
    test: LabeledData | None  # clean test set
    train_index: np.ndarray  # positions of `train` rows in the source training set
    val_index: np.ndarray
    noise_info: dict  # spec, realised rate, ... of injected noise (empty if none)
    source_name: str


def prepare_run_data(cfg: DataConfig, seed: int, splits: DatasetSplits | None = None) -> RunData:
    if splits is None:
        from noisyfit.data.sources import load_dataset

        splits = load_dataset(cfg.dataset, cfg.data_dir, download=cfg.download, label_column=cfg.label_column,
                              image_size=cfg.image_size, stream=cfg.stream, memory_budget_mb=cfg.memory_budget_mb)
    full = splits.train
    noise_info: dict = {}
    loaded = None  # a label file's contents (a cleaned one of `noisyfit audit --clean` may drop rows)
    if cfg.noise and cfg.noisy_labels_file:
        raise DataError("data.noise and data.noisy_labels_file are both set; keep one of them")
    if cfg.noise:
        from noisyfit.data.noise import apply_noise

        full, result = apply_noise(full, cfg.noise, seed=seed)
        noise_info = {"spec": cfg.noise, "seed": seed, "realised_rate": float(result.noise_rate)}
    elif cfg.noisy_labels_file:
        from noisyfit.data.noise import attach_noisy_labels, load_noisy_labels

        loaded = load_noisy_labels(cfg.noisy_labels_file, num_examples=len(full), num_classes=full.num_classes)
        full = attach_noisy_labels(full, loaded)
        # the file's realised rate: over the rows it keeps (a cleaned file drops some)
        noise_info = {"file": cfg.noisy_labels_file, "spec": loaded.spec, "realised_rate": loaded.noise_rate,
                      "dropped": 0 if loaded.keep is None else int((~loaded.keep).sum())}

    rng = np.random.default_rng(seed)
    order = np.arange(len(full))
    if cfg.train_subset is not None:
        if cfg.train_subset <= 0:
            raise DataError(f"data.train_subset must be positive, got {cfg.train_subset}")
        order = np.sort(rng.permutation(len(full))[: cfg.train_subset])
    if not 0.0 <= cfg.val_fraction < 0.5:
        raise DataError(f"data.val_fraction={cfg.val_fraction} must be in [0, 0.5)")
    n_val = int(round(cfg.val_fraction * len(order)))
    shuffled = rng.permutation(order)
    val_index = np.sort(shuffled[:n_val])
    train_index = np.sort(shuffled[n_val:])
    if loaded is not None:  # dropped after the split is drawn, so every other row keeps its split
        from noisyfit.data.noise import kept_rows

        train_index, val_index = kept_rows(train_index, loaded), kept_rows(val_index, loaded)
    train = full.subset(train_index, name=f"{full.name}/train")
    val = full.subset(val_index, name=f"{full.name}/val") if n_val else None
    _check_classes_present(train, full, val_index=val_index, subset=order if cfg.train_subset is not None else None,
                           dropped=None if loaded is None or loaded.keep is None else ~loaded.keep)
    return RunData(train=train, val=val, test=splits.test, train_index=train_index, val_index=val_index,
                   noise_info=noise_info, source_name=full.name)


def _check_classes_present(train: LabeledData, full: LabeledData, *, val_index: np.ndarray, subset: np.ndarray | None,
                           dropped: np.ndarray | None) -> None:
    """Every class has a training example; else the error says where that class's rows went: the validation split,
    outside ``data.train_subset`` or dropped by the label file (``subset``: the rows the subset kept, None without
    one; ``dropped``: a mask of the rows the label file drops, or None), with the fixes that apply. A class of one
    example drawn into the validation split had been blamed on the test split and the class list (a user trial)."""
    counts = np.bincount(train.labels, minlength=train.num_classes)
    missing = np.flatnonzero(counts == 0)
    if not missing.size:
        return
    from noisyfit.data.labels import some

    def per_class(rows) -> np.ndarray:
        return np.bincount(full.labels[np.asarray(rows, dtype=np.int64)], minlength=full.num_classes)

    in_source = per_class(np.arange(len(full)))
    held_out = [int(i) for i in missing if in_source[i] > 0]
    if not held_out:
        names = [repr(train.class_names[i]) for i in missing]
        raise DataError(f"{full.name}: no training example has class(es) {some(names)} of the "
                        f"{train.num_classes} classes ({some(train.class_names, 10)}); they occur only in the test "
                        "split, the noise file or the declared class list. Add training examples of them, or "
                        "remove them there (a class with no examples cannot be learned or audited).")
    places = [(per_class(val_index), "in the validation split",
               "train without a hold-out (data.val_fraction=0) or with a larger one")]
    if subset is not None:
        outside = np.setdiff1d(np.arange(len(full)), subset)
        places.append((per_class(outside), "outside data.train_subset", "a larger data.train_subset, or none"))
    if dropped is not None:
        if subset is not None:  # a row outside the subset is said there, not twice
            dropped = dropped & np.isin(np.arange(len(full)), subset)
        places.append((per_class(np.flatnonzero(dropped)), "dropped by the label file",
                       "a label file that keeps them"))
    went, fixes = [], []
    for counts_there, where, fix in places:
        here = [f"{counts_there[i]} of {train.class_names[i]!r}" for i in held_out if counts_there[i]]
        if here:
            went.append(f"{', '.join(here)} {where}")
            fixes.append(fix)
    names = [repr(train.class_names[i]) for i in held_out]
    raise DataError(f"{full.name}: class(es) {some(names)} have no training example; their rows: "
                    f"{'; '.join(went)}. Add examples of them, or use {' or '.join(fixes)}.")


def to_device_tensor(data: LabeledData, device: torch.device) -> torch.Tensor:
    """uint8 NHWC images -> uint8 NCHW on the device (normalised per batch); features -> float32."""
    if data.is_image:
        return torch.from_numpy(np.ascontiguousarray(data.x)).permute(0, 3, 1, 2).contiguous().to(device)
    return torch.from_numpy(np.asarray(data.x, dtype=np.float32)).to(device)


def feature_stats(x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-feature mean/std for tabular inputs (standardisation happens in the backbone's input)."""
    mean = torch.tensor(x.mean(0), dtype=torch.float32)
    std = torch.tensor(x.std(0), dtype=torch.float32).clamp(min=1e-6)
    return mean, std
