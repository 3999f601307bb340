"""One entry point for every data source: ``load_dataset("cifar10n-worst")`` -> DatasetSplits."""

from __future__ import annotations

import os
import re
from dataclasses import replace
from pathlib import Path

from .cifar import find_cifar, load_cifar, read_cifar
from .cifar10_jpeg import JPEG_ARCHIVE, load_cifar10_jpeg
from .cifarn import ALIASES, LABEL_SETS, canonical_label_set, with_cifar_n_labels
from .folder import load_image_folder, parse_image_size, resize_images
from .labeled import DataError, DatasetSplits
from .paths import absolute_if_here, resolve_data_dir
from .stream_source import stream_mode
from .tabular import load_csv, load_digits_splits, load_npz

_DESCRIPTIONS = {
    "cifar10": "CIFAR-10: official python batches if in the data dir (--download fetches them: "
               "data.download=true), else cifar10-jpeg.tar.gz restored to the original order (lossy JPEG)",
    "cifar100": "CIFAR-100: official python batches or archive (--download fetches it: data.download=true)",
    **{f"cifar10n-{s}": f"CIFAR-10 with CIFAR-10N '{s}' human labels (clean test set)"
       for s in LABEL_SETS["cifar10n"]},
    "cifar100n-noisy": "CIFAR-100 with CIFAR-100N human labels (needs CIFAR-100 images)",
    "digits": "scikit-learn 8x8 digits: 64 features in [0,1], stratified 75/25 split (seed 0)",
    "folder:PATH": "image folder PATH/<split>/<class>/<file> (directory, .tar or .tar.gz)",
    "list:PATH": "CSV or JSON list of image files: path,label rows (optional true_label, split, id)",
    "csv:PATH": "CSV feature table with a label column (optional true_label, id, split columns)",
    "npz:PATH": ".npz (or folder of .npy) with x, y and optional true_labels, x_test, y_test, class_names",
}
_PATH_KINDS = ("folder", "list", "csv", "npz")


def list_datasets() -> dict[str, str]:
    """Valid dataset names (``folder:PATH`` etc. are patterns) mapped to one-line descriptions."""
    return dict(_DESCRIPTIONS)


def _unknown(name: str) -> DataError:
    aliases = ", ".join(f"cifar10n-{a}" for a in ALIASES)
    hint = ""
    path_like = "/" in name or "\\" in name or name.startswith((".", "~"))
    if path_like and not Path(name).expanduser().exists():  # a typo in a path: that first, not the name list
        return DataError(f"{name!r}: no such file or folder (nor a data set name: {', '.join(_DESCRIPTIONS)}).")
    if path_like or Path(name).expanduser().exists():
        # a path given without its kind: say which prefixes read files, and first the one this file needs
        here = Path(name).expanduser()
        kind = ("folder" if here.is_dir() else {".csv": "csv", ".npz": "npz", ".json": "list"}.get(here.suffix.lower()))
        if kind and here.exists():
            also = f" (or list:{name} if it lists image files)" if kind == "csv" else ""
            return DataError(f"{name!r} is a file or folder, not a data set name: give its kind in front, "
                             f"--dataset {kind}:{name}{also}")
        hint = " A path needs its kind in front: folder:PATH (images in class folders), csv:PATH, npz:PATH."
    return DataError(f"unknown dataset {name!r}; valid names: {', '.join(_DESCRIPTIONS)} "
                     f"(aliases: {aliases}).{hint}")


def _need_data_dir(name: str, data_dir: Path | None) -> Path:
    if data_dir is None:
        raise DataError(f"{name} needs a data dir and none was found; pass --data-dir DIR (data_dir=...) "
                        "or set NOISYFIT_DATA_DIR.")
    if not data_dir.is_dir():
        raise DataError(f"data dir {data_dir} does not exist; fix --data-dir / NOISYFIT_DATA_DIR.")
    return data_dir


def _load_cifar_images(name: str, data_dir: Path | None, download: bool) -> DatasetSplits:
    """CIFAR images in the original order: official files if present, else downloaded ones when
    ``download`` (the user asked for the lossless originals), else CIFAR-10's JPEG archive."""
    found = find_cifar(name, data_dir)
    if found is not None:
        return read_cifar(found, name)
    if download:
        return load_cifar(name, data_dir, download=True)
    if name == "cifar10" and data_dir is not None and (data_dir / JPEG_ARCHIVE).is_file():
        return load_cifar10_jpeg(data_dir)
    _need_data_dir(name, data_dir)
    return load_cifar(name, data_dir)  # raises, saying what is missing and where it looked


def _user_path(kind: str, raw: str, data_dir: Path | None) -> Path:
    """A user path as given, or else relative to the data dir (``folder:cifar10-jpeg.tar.gz``)."""
    if not raw:
        raise DataError(f"{kind}: needs a path, e.g. {kind}:my_data{'.csv' if kind == 'csv' else ''}.")
    path = Path(raw).expanduser()
    if not path.exists() and not path.is_absolute() and data_dir is not None and (data_dir / path).exists():
        return data_dir / path
    if not path.exists():
        raise DataError(f"{kind}:{raw}: {path} not found (also looked in the data dir "
                        f"{data_dir if data_dir is not None else '(none)'}).")
    return path


def absolute_spec(name: str) -> str:
    """``folder:imgs`` -> ``folder:/abs/imgs`` when ``imgs`` exists relative to the working folder; anything
    else unchanged (a name, an absolute path, a path found only in the data dir, which the run records).

    A run's ``config.yaml`` then names its data wherever the next command runs from: ``train --config``,
    ``audit --run`` and ``predict`` read it back from other folders (a relative path was read against the
    folder the run was trained from, which a new-user trial found breaks them).
    """
    kind, sep, rest = name.strip().partition(":")
    if not sep or kind.lower() not in _PATH_KINDS or not rest.strip():
        return name
    found = absolute_if_here(rest)
    return name if found == rest else f"{kind}:{found}"


def _resized(splits: DatasetSplits, size: tuple[int, int], name: str) -> DatasetSplits:
    """Every image of ``splits`` at ``size = (h, w)`` (``data.image_size`` for sources other than folders)."""
    if not splits.train.is_image:
        raise DataError(f"data.image_size={list(size)} but {name} holds feature rows, not images; remove "
                        "data.image_size.")
    parts = [d if d is None or d.x.shape[1:3] == size else replace(d, x=resize_images(d.x, size))
             for d in (splits.train, splits.test)]
    return DatasetSplits(train=parts[0], test=parts[1])


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
                 label_column: str = "label", image_size=None, stream: bool | str = "auto",
                 memory_budget_mb: float | None = None) -> DatasetSplits:
    """Load a dataset by name.

    Parameters
    ----------
    name : str
        One of :func:`list_datasets` (case-insensitive): ``cifar10``, ``cifar100``,
        ``cifar10n-{aggre,random1,random2,random3,worst}`` (``rand1``.. and ``worse`` accepted),
        ``cifar100n-noisy``, ``digits``, ``folder:PATH``, ``csv:PATH``, ``npz:PATH``.
    data_dir : str or path-like, optional
        Data folder; default ``$NOISYFIT_DATA_DIR`` or ``../shared/data`` (see
        :func:`noisyfit.data.paths.resolve_data_dir`).
    download : bool
        Fetch the official CIFAR archive (into ``cache_dir()/downloads``) when it is not in the
        data dir; for ``cifar10`` this then wins over the lossy JPEG archive.
    label_column : str
        Label column of ``csv:`` sources.
    image_size : int or (height, width), optional
        ``data.image_size``: resize every image to this size. None keeps the images as they are, except
        that an image folder of mixed sizes is resized to its median height and width (see
        :func:`noisyfit.data.folder.read_image_folder`).
    stream : bool or "auto"
        Image folders and lists only: keep the images on disk and decode batches while training (True), decode
        everything first (False), or stream when the decoded images would exceed ``memory_budget_mb`` ("auto").
        Other sources are in-memory formats and always load into memory.
    memory_budget_mb : float, optional
        See ``stream``; default a quarter of this machine's memory.

    Returns
    -------
    DatasetSplits
        Training set (noisy labels for CIFAR-N, clean ones in ``true_labels``) and test set.

    Raises
    ------
    DataError
        Unknown name (the message lists the valid ones), missing data dir or files.
    """
    size = parse_image_size(image_size)
    if size is not None and name.strip().lower().startswith(("folder:", "list:")):
        pass  # decoded straight to the size
    elif size is not None:
        return _resized(load_dataset(name, data_dir, download=download, label_column=label_column), size, name)
    stream_mode(stream)  # a bad value is an error for every source, not only for folders
    dd = resolve_data_dir(data_dir)
    kind, sep, rest = name.strip().partition(":")
    if sep and kind.lower() in _PATH_KINDS:
        kind = kind.lower()
        path = _user_path(kind, rest.strip(), dd)
        if kind == "folder":
            return load_image_folder(path, image_size=size, stream=stream, memory_budget_mb=memory_budget_mb)
        if kind == "list":
            from .image_list import load_image_list

            return load_image_list(path, label_column=label_column, image_size=size, stream=stream,
                                   memory_budget_mb=memory_budget_mb)
        if kind == "csv":
            return load_csv(path, label_column=label_column)
        return load_npz(path)

    key = name.strip().lower()
    if key == "digits":
        return load_digits_splits(seed=0)
    if key in ("cifar10", "cifar100"):
        return _load_cifar_images(key, dd, download)
    m = re.fullmatch(r"(cifar10n|cifar100n)-(\w+)", key)
    if m is None:
        raise _unknown(name)
    dataset, label_set = m.groups()
    try:
        label_set = canonical_label_set(dataset, label_set)
    except DataError:
        raise _unknown(name) from None
    labels_dir = _need_data_dir(key, dd)  # the .pt label files live only in the data dir
    images = _load_cifar_images(dataset[:-1], dd, download)
    train = with_cifar_n_labels(images.train, dataset, label_set, labels_dir)
    return DatasetSplits(train=train, test=images.test)
