"""Array and table sources: ``.npz`` / folders of ``.npy``, CSV feature tables, scikit-learn digits.

Array keys (the same in an ``.npz`` or as ``<key>.npy`` files in a folder)::

    x, y (or labels)                  required: inputs and given labels
    true_labels, ids                  optional
    x_test, y_test (or labels_test)   optional test split; true_labels_test, ids_test optional
    class_names                       optional (a folder may use class_names.txt, one per line)
    extra_<name>                      optional further label columns (CIFAR-N annotators, ...)

``x`` may be features ``[N, D]`` (stored as float32), images ``uint8 [N, H, W, C]``, or
grayscale images ``uint8 [N, H, W]`` (a channel axis is added).
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np

from .labeled import DataError, DatasetSplits, LabeledData

_LABEL_KEYS = ("y", "labels")


# ---------------------------------------------------------------------------------------- arrays
def _as_inputs(x: np.ndarray, where: str) -> np.ndarray:
    if x.ndim == 2:
        return np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 3 and x.dtype == np.uint8:  # grayscale images without a channel axis
        return x[..., None]
    if x.ndim == 4:
        return x  # LabeledData checks the dtype and says how to fix it
    raise DataError(f"{where}: x has shape {x.shape}; expected features [N, D] or uint8 images "
                    "[N, H, W, C] / [N, H, W].")


def _read_arrays(path: Path) -> dict[str, np.ndarray]:
    """Arrays of an ``.npz`` file, or of the ``<key>.npy`` files (and class_names.txt) in a folder."""
    try:
        if path.is_dir():
            arrays = {p.stem: np.load(p, allow_pickle=False) for p in sorted(path.glob("*.npy"))}
            names_txt = path / "class_names.txt"
            if "class_names" not in arrays and names_txt.is_file():
                arrays["class_names"] = np.array(names_txt.read_text().splitlines())
            return arrays
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as err:  # object arrays need pickle, which could run code: refuse
        raise DataError(f"{path}: holds object arrays ({err}); save strings as a unicode array "
                        "(np.array(names, dtype=str)) and numbers as numeric arrays.") from err
    except (OSError, EOFError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected an .npz file or a folder of "
                        ".npy files.") from err


def _first(arrays: dict[str, np.ndarray], keys: tuple[str, ...]) -> np.ndarray | None:
    return next((arrays[k] for k in keys if k in arrays), None)


def _labels(arr: np.ndarray, key: str, where: str) -> np.ndarray:
    if arr.dtype.kind not in "iub" and not (arr.dtype.kind == "f" and np.all(arr == np.round(arr))):
        raise DataError(f"{where}: {key} has dtype {arr.dtype}; labels must be integer class indices "
                        "(map string labels to 0..C-1 and store class_names).")
    return arr.astype(np.int64).reshape(-1)


def load_npz(path: str | os.PathLike) -> DatasetSplits:
    """Load arrays from an ``.npz`` file or a folder of ``.npy`` files (keys in the module doc).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    DatasetSplits
        Train split from ``x``/``y``; test split from ``x_test``/``y_test`` if present. Class names
        default to ``"0".."C-1"`` with C one more than the largest label.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; pass an .npz file or a folder of .npy files.")
    a = _read_arrays(path)
    where = str(path)
    if "x" not in a or _first(a, _LABEL_KEYS) is None:
        raise DataError(f"{where}: needs arrays 'x' and 'y' (or 'labels'); found {sorted(a)}. Save with "
                        "np.savez(path, x=inputs, y=labels).")
    parts = {"train": ("x", _LABEL_KEYS, "true_labels", "ids", ""),
             "test": ("x_test", ("y_test", "labels_test"), "true_labels_test", "ids_test", "_test")}
    raw: dict[str, dict] = {}
    for split, (xk, yks, tk, ik, _) in parts.items():
        if xk not in a:
            continue
        y = _first(a, yks)
        if y is None:
            raise DataError(f"{where}: has {xk!r} but no {yks[0]!r}; store the test labels too.")
        raw[split] = dict(
            x=_as_inputs(a[xk], where), labels=_labels(y, yks[0], where),
            true_labels=_labels(a[tk], tk, where) if tk in a else None,
            ids=[str(i) for i in a[ik]] if ik in a else None,
        )
    raw["train"]["extra_labels"] = {k[len("extra_"):]: _labels(v, k, where)
                                    for k, v in a.items() if k.startswith("extra_")}
    if "class_names" in a:
        class_names = [str(c) for c in a["class_names"]]
    else:  # the largest label seen anywhere defines the class count
        top = max(int(v.max()) for r in raw.values() for v in (r["labels"], r["true_labels"])
                  if v is not None and v.size)
        class_names = [str(i) for i in range(max(top + 1, 2))]
    name = path.stem if path.is_file() else path.name
    data = {s: LabeledData(class_names=class_names, name=f"{name}/{s}", **r) for s, r in raw.items()}
    return DatasetSplits(train=data["train"], test=data.get("test"))


def save_npz(splits: DatasetSplits, path: str | os.PathLike) -> Path:
    """Write splits to an ``.npz`` that :func:`load_npz` reads back unchanged."""
    out: dict[str, np.ndarray] = {"class_names": np.array(splits.train.class_names, dtype=str)}
    for data, suffix in ((splits.train, ""), (splits.test, "_test")):
        if data is None:
            continue
        out["x" + suffix], out["y" + suffix] = data.x, data.labels
        if data.true_labels is not None:
            out["true_labels" + suffix] = data.true_labels
        if data.ids is not None:
            out["ids" + suffix] = np.array(data.ids, dtype=str)
    out.update({f"extra_{k}": v for k, v in splits.train.extra_labels.items()})
    path = Path(path)
    np.savez_compressed(path, **out)
    # np.savez adds .npz when missing; return the real file.
    return path if path.suffix == ".npz" else path.with_name(path.name + ".npz")


# ---------------------------------------------------------------------------------------- CSV
def _parse_labels(values: list[str], true_values: list[str] | None) -> tuple[list[int], list[int] | None,
                                                                             list[str]]:
    """Integer labels stay class indices; anything else maps to sorted unique names."""
    every = values + (true_values or [])
    try:
        ints = [int(v) for v in every]
        names = [str(i) for i in range(max(max(ints) + 1, 2))]
        n = len(values)
        return ints[:n], ints[n:] if true_values is not None else None, names
    except ValueError:
        names = sorted(set(every))
        index = {c: i for i, c in enumerate(names)}
        return ([index[v] for v in values],
                [index[v] for v in true_values] if true_values is not None else None, names)


def load_csv(path: str | os.PathLike, *, label_column: str = "label", true_label_column: str = "true_label",
             id_column: str = "id", split_column: str = "split") -> DatasetSplits:
    """Load a CSV feature table.

    Parameters
    ----------
    path : str or path-like
        CSV with a header row.
    label_column : str
        Column with the given labels (integers used as class indices, or strings mapped to their
        sorted unique values).
    true_label_column, id_column : str
        Optional columns with clean labels and example ids (default: ``row0``, ``row1``...).
    split_column : str
        Optional column with ``train``/``test`` per row; without it all rows are training rows.

    Returns
    -------
    DatasetSplits
        Every other column is a numeric feature: ``float32 [N, D]``.

    Raises
    ------
    DataError
        Missing label column, a non-numeric or empty feature cell, ragged rows; the message names
        the file, the column and the row.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # -sig: Excel's byte-order mark
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 CSV file with a header row.") from err
    if not rows:
        raise DataError(f"{path}: empty file; expected a header row and data rows.")
    header = [h.strip() for h in rows[0]]
    body = [r for r in rows[1:] if any(c.strip() for c in r)]  # blank lines are not examples
    if label_column not in header:
        raise DataError(f"{path}: no label column {label_column!r} (columns: {', '.join(header)}). Rename "
                        "the label column to 'label' or pass label_column=... (--label-column).")
    if not body:
        raise DataError(f"{path}: no data rows under the header.")
    for k, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}: data row {k + 1} has {len(r)} fields but the header has "
                            f"{len(header)}; fix the row (quote fields that contain commas).")
    col = {h: [r[i].strip() for r in body] for i, h in enumerate(header)}
    special = {label_column, true_label_column, id_column, split_column}
    features = [h for h in header if h not in special]
    if not features:
        raise DataError(f"{path}: no feature columns besides {sorted(special & set(header))}.")
    x = np.empty((len(body), len(features)), dtype=np.float32)
    for j, h in enumerate(features):
        for k, v in enumerate(col[h]):
            try:
                x[k, j] = float(v)
            except ValueError:
                what = "is empty" if v == "" else f"is {v!r}"
                raise DataError(
                    f"{path}: column {h!r} must be numeric but data row {k + 1} {what}. Every column "
                    f"except {label_column!r}/{true_label_column!r}/{id_column!r}/{split_column!r} is a "
                    "feature: encode it as numbers (e.g. one-hot), fill missing values, or drop the column."
                ) from None
    for h in (label_column, true_label_column):
        if h in col and "" in col[h]:
            raise DataError(f"{path}: column {h!r} is empty in data row {col[h].index('') + 1}; every row "
                            "needs a label.")
    labels, true, names = _parse_labels(col[label_column], col.get(true_label_column))
    ids = col[id_column] if id_column in col else [f"row{k}" for k in range(len(body))]
    split = np.array([s.lower() for s in col.get(split_column, ["train"] * len(body))])
    bad = sorted(set(split) - {"train", "test"})
    if bad:
        raise DataError(f"{path}: column {split_column!r} has {bad[0]!r}; use 'train' or 'test'.")
    out = {}
    for s in ("train", "test"):
        idx = np.flatnonzero(split == s)
        if idx.size:
            out[s] = LabeledData(x=x[idx], labels=np.asarray(labels)[idx], class_names=names,
                                 true_labels=None if true is None else np.asarray(true)[idx],
                                 ids=[ids[i] for i in idx], name=f"{path.stem}/{s}")
    if "train" not in out:
        raise DataError(f"{path}: column {split_column!r} marks no row as 'train'.")
    return DatasetSplits(train=out["train"], test=out.get("test"))


# ---------------------------------------------------------------------------------------- digits
def load_digits_splits(seed: int = 0, test_size: float = 0.25) -> DatasetSplits:
    """scikit-learn's bundled 8x8 digits (1,797 images) as features, split 75/25 stratified.

    Parameters
    ----------
    seed : int
        Seed of the split (the default 0 gives the standard noisyfit split).
    test_size : float
        Fraction held out for testing.

    Returns
    -------
    DatasetSplits
        ``float32 [N, 64]`` features in [0, 1] (pixel / 16); ids ``digits/<original index>``;
        both splits keep the original row order.
    """
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = (d.data / 16.0).astype(np.float32), d.target.astype(np.int64)
    train_idx, test_idx = train_test_split(np.arange(len(y)), test_size=test_size, stratify=y,
                                           random_state=seed)
    names = [str(c) for c in d.target_names]

    def part(idx: np.ndarray, split: str) -> LabeledData:
        idx = np.sort(idx)
        return LabeledData(x=x[idx], labels=y[idx], class_names=names, ids=[f"digits/{i}" for i in idx],
                           name=f"digits/{split}")

    return DatasetSplits(train=part(train_idx, "train"), test=part(test_idx, "test"))
