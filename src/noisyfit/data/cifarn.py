"""CIFAR-10N / CIFAR-100N: real human label noise on the CIFAR training sets (Wei et al., ICLR 2022).

The official files (UCSC-REAL/cifar-10-100n) are ``CIFAR-10_human.pt`` and ``CIFAR-100_human.pt``:
dicts of 50,000 labels per label set, indexed by position in the original CIFAR training order.
They are applied to an image source that is already in that order; the ``clean_label`` array must
equal the source's labels, which catches any order mix-up.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .labeled import DataError, LabeledData

CIFAR_N_FILES = {"cifar10n": "CIFAR-10_human.pt", "cifar100n": "CIFAR-100_human.pt"}
# Our label-set name -> key in the official file.
LABEL_SETS: dict[str, dict[str, str]] = {
    "cifar10n": {"aggre": "aggre_label", "random1": "random_label1", "random2": "random_label2",
                 "random3": "random_label3", "worst": "worse_label"},
    "cifar100n": {"noisy": "noisy_label"},
}
ALIASES = {"rand1": "random1", "rand2": "random2", "rand3": "random3", "worse": "worst",
           "aggregate": "aggre"}


def canonical_label_set(dataset: str, label_set: str) -> str:
    """``"rand1"`` -> ``"random1"`` etc.; raises DataError for an unknown set."""
    if dataset not in LABEL_SETS:
        raise DataError(f"unknown CIFAR-N dataset {dataset!r}; expected one of {sorted(LABEL_SETS)}.")
    key = ALIASES.get(label_set.lower(), label_set.lower())
    if key not in LABEL_SETS[dataset]:
        raise DataError(f"{dataset}: unknown label set {label_set!r}; expected one of "
                        f"{list(LABEL_SETS[dataset])}.")
    return key


def cifar_n_path(dataset: str, data_dir: str | os.PathLike) -> Path:
    """Path of the official ``.pt`` file in ``<data_dir>/cifar-n/`` or ``<data_dir>/``."""
    fname = CIFAR_N_FILES[dataset]
    for candidate in (Path(data_dir) / "cifar-n" / fname, Path(data_dir) / fname):
        if candidate.is_file():
            return candidate
    raise DataError(f"{dataset}: {fname} not found in {Path(data_dir) / 'cifar-n'} or {data_dir}; get it "
                    "from github.com/UCSC-REAL/cifar-10-100n (data/) and put it in <data dir>/cifar-n/.")


def load_cifar_n_labels(dataset: str, data_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    """All label arrays of the official file, as ``int64`` numpy arrays (``None`` entries dropped).

    Parameters
    ----------
    dataset : {"cifar10n", "cifar100n"}
    data_dir : str or path-like

    Returns
    -------
    dict of str to ndarray
        Keys as in the file: ``clean_label``, ``aggre_label``, ``random_label1``.., ``worse_label``
        (CIFAR-10N) or ``clean_label``, ``noisy_label`` (CIFAR-100N).
    """
    import torch  # the official files are torch pickles of numpy arrays

    path = cifar_n_path(dataset, data_dir)
    try:
        raw = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as err:  # torch.load wraps pickle, zip and IO errors in various types
        raise DataError(f"{path}: cannot load ({err}); replace it with the official file.") from err
    if not isinstance(raw, dict):
        raise DataError(f"{path}: expected a dict of label arrays, got {type(raw).__name__}.")
    out = {}
    for key, value in raw.items():
        arr = None if value is None else np.asarray(value)
        if arr is not None and arr.ndim == 1 and arr.dtype.kind in "iu":
            out[key] = arr.astype(np.int64)
    needed = ["clean_label", *LABEL_SETS[dataset].values()]
    missing = [k for k in needed if k not in out]
    if missing:
        raise DataError(f"{path}: no {missing[0]!r} label array (found {sorted(out)}); "
                        "use the official file.")
    return out


def with_cifar_n_labels(train: LabeledData, dataset: str, label_set: str,
                        data_dir: str | os.PathLike) -> LabeledData:
    """Put a CIFAR-N label set on a CIFAR training set that is in the original order.

    Parameters
    ----------
    train : LabeledData
        The 50,000 CIFAR training images in original order, with their clean labels.
    dataset : {"cifar10n", "cifar100n"}
    label_set : str
        ``aggre``, ``random1``..``random3``, ``worst`` (CIFAR-10N; ``rand1``.. accepted) or
        ``noisy`` (CIFAR-100N).
    data_dir : str or path-like
        Folder with ``cifar-n/CIFAR-10_human.pt`` (or the file itself).

    Returns
    -------
    LabeledData
        ``labels`` = the chosen human labels, ``true_labels`` = ``clean_label``; for CIFAR-10N
        ``extra_labels`` holds all five sets (for multi-annotator audits).

    Raises
    ------
    DataError
        If ``clean_label`` differs from ``train.labels`` (the images are not in the original order
        or come from another dataset).
    """
    label_set = canonical_label_set(dataset, label_set)
    arrays = load_cifar_n_labels(dataset, data_dir)
    clean = arrays["clean_label"]
    if len(clean) != len(train):
        raise DataError(f"{dataset}: the label file has {len(clean)} labels but {train.name} has "
                        f"{len(train)} examples; CIFAR-N needs the full original training set.")
    differ = np.flatnonzero(clean != train.labels)
    if differ.size:
        raise DataError(
            f"{dataset}: order mismatch: clean_label differs from the labels of {train.name} at "
            f"{differ.size} of {len(clean)} positions (first at {int(differ[0])}). CIFAR-N labels follow "
            "the original CIFAR order; load the images in that order (official batches, or the JPEG "
            "archive through load_cifar10_jpeg)."
        )
    sets = LABEL_SETS[dataset]
    extra = {name: arrays[key] for name, key in sets.items()} if dataset == "cifar10n" else {}
    return LabeledData(x=train.x, labels=arrays[sets[label_set]], true_labels=clean,
                       class_names=list(train.class_names), ids=train.ids,
                       name=f"{dataset}-{label_set}/train", extra_labels=extra)
