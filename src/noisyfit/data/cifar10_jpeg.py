"""CIFAR-10 from ``cifar10-jpeg.tar.gz`` (one JPEG per image), put back in the original order.

CIFAR-N labels are indexed by position in the original CIFAR-10 training set, so the folder order
(class, then file name) is not enough. The data README gives the rule: the k-th file of class c
(sorted by name) is the k-th image of class c in the original order. Given the original labels
``y`` that is a stable sort by class, inverted. Train labels come from CIFAR-10N's ``clean_label``,
test labels from ``y_test_full`` of ``cifar10_lossless_partial.npz``.

The JPEGs are lossy (median PSNR ~30.5 dB against the original pixels).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .cifarn import load_cifar_n_labels
from .folder import read_image_folder
from .labeled import DataError, DatasetSplits, LabeledData

CIFAR10_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
JPEG_ARCHIVE = "cifar10-jpeg.tar.gz"
LOSSLESS_PARTIAL = "cifar10_lossless_partial.npz"


def restore_order(data: LabeledData, original_labels: np.ndarray, name: str) -> LabeledData:
    """Reorder folder-ordered data so that position i holds the i-th original image.

    Parameters
    ----------
    data : LabeledData
        Examples ordered by class index, then file name (the image-folder default order).
    original_labels : ndarray
        The labels in the original order; per class, the counts must equal the file counts.
    name : str
        Name of the result.

    Returns
    -------
    LabeledData
        ``data`` permuted; its labels then equal ``original_labels``.
    """
    y = np.asarray(original_labels, dtype=np.int64)
    c = data.num_classes
    if np.any(np.diff(data.labels) < 0):
        raise DataError(f"{data.name}: examples are not ordered by class; load the folder with its "
                        "default order before restoring the original one.")
    if len(y) and (y.min() < 0 or y.max() >= c):
        raise DataError(f"{data.name}: original labels outside [0, {c}); the label file belongs to "
                        "another dataset.")
    have, want = np.bincount(data.labels, minlength=c), np.bincount(y, minlength=c)
    if not np.array_equal(have, want):
        k = int(np.flatnonzero(have != want)[0])
        raise DataError(
            f"{data.name}: class {data.class_names[k]!r} has {have[k]} files but the original labels "
            f"have {want[k]} examples of it; files are missing or the label file belongs to another "
            "dataset. Restore the archive from its source."
        )
    # Stable sort by class lists each class's positions in original order: the j-th entry of
    # that sorted list is the j-th file overall in (class, name) order. Invert it.
    by_class = np.argsort(y, kind="stable")
    index = np.empty_like(by_class)
    index[by_class] = np.arange(len(y))
    return data.subset(index, name=name)


def load_cifar10_jpeg(data_dir: str | os.PathLike, *, cache: bool = True,
                      progress: bool = True) -> DatasetSplits:
    """Load ``cifar10-jpeg.tar.gz`` from ``data_dir`` in the original CIFAR-10 order.

    Parameters
    ----------
    data_dir : str or path-like
        Holds ``cifar10-jpeg.tar.gz``, ``cifar-n/CIFAR-10_human.pt`` (train order) and
        ``cifar10_lossless_partial.npz`` (test order).
    cache, progress : bool
        Passed to :func:`noisyfit.data.folder.read_image_folder`.

    Returns
    -------
    DatasetSplits
        50,000 train and 10,000 test ``uint8 [N, 32, 32, 3]`` images, named ``cifar10-jpeg/...``;
        ids are the files (``train/cat/0001.jpg``).
    """
    data_dir = Path(data_dir)
    archive = data_dir / JPEG_ARCHIVE
    if not archive.is_file():
        raise DataError(f"{archive}: not found; put {JPEG_ARCHIVE} (or the official cifar-10-batches-py) "
                        "in the data dir, or use --download (data.download=true) for the official CIFAR-10.")
    partial = data_dir / LOSSLESS_PARTIAL
    if not partial.is_file():
        raise DataError(f"{partial}: not found; it holds y_test_full, the original test order that "
                        f"{JPEG_ARCHIVE} needs. Copy it next to the archive.")
    train_y = load_cifar_n_labels("cifar10n", data_dir)["clean_label"]
    with np.load(partial) as z:
        if "y_test_full" not in z.files:
            raise DataError(f"{partial}: no 'y_test_full' array (found {z.files}); use the original file.")
        test_y = z["y_test_full"]
    splits = read_image_folder(archive, class_names=CIFAR10_CLASSES, cache=cache, progress=progress,
                               name="cifar10-jpeg")
    missing = {"train", "test"} - set(splits)
    if missing:
        raise DataError(f"{archive}: no {sorted(missing)[0]!r} folder; expected cifar10-jpeg/train "
                        "and cifar10-jpeg/test.")
    return DatasetSplits(
        train=restore_order(splits["train"], train_y, "cifar10-jpeg/train"),
        test=restore_order(splits["test"], test_y, "cifar10-jpeg/test"),
    )
