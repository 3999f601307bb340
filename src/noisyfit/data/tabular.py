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
import json
import os
from pathlib import Path

import numpy as np

from .labeled import DataError, DatasetSplits, LabeledData
from .labels import check_labels, encode_with_annotators, some

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


def _label_array(arr: np.ndarray) -> np.ndarray:
    arr = arr.reshape(-1) if arr.ndim > 1 and arr.size == len(arr) else arr
    return arr.astype(str) if arr.dtype.kind == "S" else arr


def _annotation_missing(v: np.ndarray) -> np.ndarray:
    """Which entries of a numeric annotator array are "not annotated": NaN or -1 (the consensus audit's convention)."""
    if v.dtype.kind == "f":
        return ~np.isfinite(v) | (v == -1)
    if v.dtype.kind in "iu":
        return v == -1
    return np.zeros(len(v), dtype=bool)  # text: encode_with_annotators reads empty cells as missing


def _npz_labels(a: dict[str, np.ndarray], keys: dict[str, str], ids: dict[str, list[str] | None],
                where: str) -> tuple[dict[str, np.ndarray], list[str]]:
    """Every label array of an .npz as class indices with one mapping, and the class names.

    With ``class_names`` stored, numeric labels are indices into it (a value outside is an error naming the
    entry) and text labels are matched to the names; without, the distinct values are the classes.
    """
    columns = {k: _label_array(a[k]) for k in keys}

    def row(col: str, i: int) -> str:
        split_ids = ids.get(keys[col])
        return f"{col}[{i}]" + (f", id {split_ids[i]!r}" if split_ids is not None and i < len(split_ids) else "")

    annotators = [k for k in columns if k.startswith("extra_")]  # may skip items: -1 or NaN there is "not annotated"
    skipped = {k: _annotation_missing(columns[k]) for k in annotators}
    for col, v in columns.items():  # numbers must be whole: 0.5 is not a class
        if v.dtype.kind == "f":
            check_labels(v[~skipped[col]] if col in skipped else v, name=col, where=where)
    if "class_names" not in a:
        return encode_with_annotators(columns, annotators, where=where, row=row)
    names = [str(c) for c in a["class_names"]]
    if all(v.dtype.kind in "iubf" for v in columns.values()):
        fix = (f"class_names lists {len(names)} classes ({some(names, 10)}), so labels are indices "
               f"0..{len(names) - 1} into it: fix the entries or add the missing classes to class_names.")
        codes = {}
        for col, v in columns.items():
            split_ids = ids.get(keys[col])
            describe = (lambda i, s=split_ids: f"id {s[i]!r}") if split_ids is not None else None
            if col in skipped:  # an annotator's skipped items stay -1; the rest must be classes
                given = np.flatnonzero(~skipped[col])
                codes[col] = np.full(len(v), -1, dtype=np.int64)
                codes[col][given] = check_labels(v[given], len(names), name=col, where=where, hint=fix,
                                                 row=None if describe is None else (lambda i, d=describe, g=given:
                                                                                    d(int(g[i]))))
            else:
                codes[col] = check_labels(v, len(names), name=col, where=where, row=describe, hint=fix)
        return codes, names
    return encode_with_annotators(columns, annotators, declared=names, where=where, row=row,
                                  declared_in="class_names")


def load_npz(path: str | os.PathLike) -> DatasetSplits:
    """Load arrays from an ``.npz`` file or a folder of ``.npy`` files (keys in the module doc).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    DatasetSplits
        Train split from ``x``/``y``; test split from ``x_test``/``y_test`` if present. With
        ``class_names`` stored, numeric labels are indices into it; without, the classes are the
        distinct label values of all label arrays in sorted order (labels 1..3 become indices 0..2 with
        class names ``"1", "2", "3"``).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; pass an .npz file or a folder of .npy files.")
    a = _read_arrays(path)
    where = str(path)
    if "x" not in a or _first(a, _LABEL_KEYS) is None:
        raise DataError(f"{where}: needs arrays 'x' and 'y' (or 'labels'); found {sorted(a)}. Save with "
                        "np.savez(path, x=inputs, y=labels).")
    parts = {"train": ("x", _LABEL_KEYS, "true_labels", "ids"),
             "test": ("x_test", ("y_test", "labels_test"), "true_labels_test", "ids_test")}
    raw: dict[str, dict] = {}
    keys: dict[str, str] = {}  # label array -> its split
    ids: dict[str, list[str] | None] = {}
    for split, (xk, yks, tk, ik) in parts.items():
        if xk not in a:
            continue
        yk = next((k for k in yks if k in a), None)
        if yk is None:
            raise DataError(f"{where}: has {xk!r} but no {yks[0]!r}; store the test labels too.")
        ids[split] = [str(i) for i in a[ik]] if ik in a else None
        raw[split] = dict(x=_as_inputs(a[xk], where), ids=ids[split])
        keys[yk] = split
        if tk in a:
            keys[tk] = split
    extra = [k for k in a if k.startswith("extra_")]
    keys.update({k: "train" for k in extra})
    codes, class_names = _npz_labels(a, keys, ids, where)
    for k, split in keys.items():
        field_name = ("true_labels" if k.startswith("true_labels") else None if k.startswith("extra_")
                      else "labels")
        if field_name is not None:
            raw[split][field_name] = codes[k]
    raw["train"]["extra_labels"] = {k[len("extra_"):]: codes[k] for k in extra}
    name = path.stem if path.is_file() else path.name
    source = _embeddings_source(a, path)
    data = {s: LabeledData(class_names=class_names, name=f"{name}/{s}", source=source, **r) for s, r in raw.items()}
    return DatasetSplits(train=data["train"], test=data.get("test"))


def _embeddings_source(arrays: dict[str, np.ndarray], path: Path) -> dict:
    """The embedder an embeddings file of ``noisyfit embed`` records (its ``info``), else {}."""
    try:
        info = json.loads(str(arrays["info"])) if "info" in arrays else {}
    except ValueError:
        return {}
    if not isinstance(info, dict) or not isinstance(info.get("embedder"), dict):
        return {}
    return {"embedder": info["embedder"], "image_size": info.get("image_size"), "file": str(path.resolve())}


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
def classes_file(path: str | os.PathLike) -> Path:
    """Where a CSV's declared classes live: ``table.csv`` -> ``table.classes.txt`` (one name per line)."""
    path = Path(path)
    return path.with_name(path.stem + ".classes.txt")


def declared_classes(path: Path) -> list[str] | None:
    """The classes declared in ``<name>.classes.txt`` next to ``path`` (a CSV or an image list), or None."""
    f = classes_file(path)
    if not f.is_file():
        return None
    try:
        names = [line.strip() for line in f.read_text(encoding="utf-8-sig").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{f}: cannot read the class list ({err}); expected UTF-8 text, one class per line.") from err
    if len(set(names)) != len(names):
        dup = sorted({n for n in names if names.count(n) > 1})
        raise DataError(f"{f}: class(es) {dup} listed twice; list each class once.")
    return names


def load_csv(path: str | os.PathLike, *, label_column: str = "label", true_label_column: str = "true_label",
             id_column: str = "id", split_column: str = "split",
             class_names: list[str] | None = None) -> DatasetSplits:
    """Load a CSV feature table.

    Parameters
    ----------
    path : str or path-like
        CSV with a header row.
    label_column : str
        Column with the given labels: any values (``1..3``, ``10/20/30``, ``cat/dog``). The classes are
        the distinct values of the label and true-label columns in sorted order (numbers numerically),
        mapped to indices 0..C-1; the values themselves are the class names.
    true_label_column, id_column : str
        Optional columns with clean labels and example ids (default: ``row0``, ``row1``...).
        Columns named ``extra_<name>`` are further labels of the same classes (annotators, another labelling):
        ``extra_labels[name]``, as an ``.npz``'s ``extra_<name>`` arrays (``noisyfit audit --annotators``).
    split_column : str
        Optional column with ``train``/``test`` per row; without it all rows are training rows.
    class_names : list of str, optional
        The declared classes, in order (default: read from ``<name>.classes.txt`` next to the CSV, one
        per line, when it exists). Labels are then matched to them as text, or taken as indices into
        them when they are integers and the names are not; a label outside them is an error naming its
        line and value.

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
            reader = csv.reader(f)
            rows, lines = [], []
            for r in reader:  # the line each row ends on, for messages (a quoted field may span lines)
                rows.append(r)
                lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError) as err:
        raise DataError(f"{path}: cannot read ({err}); expected a UTF-8 CSV file with a header row.") from err
    if not rows:
        raise DataError(f"{path}: empty file; expected a header row and data rows.")
    header = check_header(path, rows[0])
    keep = [k for k in range(1, len(rows)) if "".join(rows[k]).strip()]  # blank lines are not examples
    body, lines = [rows[k] for k in keep], [lines[k] for k in keep]
    if label_column not in header:
        raise DataError(f"{path}: no label column {label_column!r} (columns: {', '.join(header)}). Rename "
                        "the label column to 'label' or pass label_column=... (--label-column)."
                        + _separator_hint(header))
    if not body:
        raise DataError(f"{path}: no data rows under the header.")
    for k, r in enumerate(body):
        if len(r) != len(header):
            raise DataError(f"{path}: data row {k + 1} has {len(r)} fields but the header has "
                            f"{len(header)}; fix the row (quote fields that contain commas).")
    col = dict(zip(header, map(list, zip(*body))))  # column by column; float() ignores the spaces around a number
    special = {label_column, true_label_column, id_column, split_column}
    extra = [h for h in header if h.startswith("extra_") and h not in special]  # further labels (annotators)
    features = feature_columns(header, label_column=label_column, true_label_column=true_label_column,
                               id_column=id_column, split_column=split_column)
    if not features:
        raise DataError(f"{path}: no feature columns besides {sorted(special & set(header))}.")
    for h in set(header) - set(features):  # labels, ids and splits are read as text: without the spaces around
        col[h] = [c.strip() for c in col[h]]
    x = np.empty((len(body), len(features)), dtype=np.float32)
    for j, h in enumerate(features):
        k, v = parse_column(col[h], x[:, j])
        if k is not None:
            text = v.strip()
            not_a_number = text.lower().lstrip("+-") in ("nan", "inf", "infinity")
            why = ", not a number" if not_a_number else (", beyond float32's range" if _is_float(text) else "")
            what = "is empty" if not text else f"is {text!r}{why}"
            raise DataError(
                f"{path}: column {h!r} must be numeric but data row {k + 1} {what}. Every column "
                f"except {label_column!r}/{true_label_column!r}/{id_column!r}/{split_column!r} and extra_<name> "
                "label columns is a feature: encode it as numbers (e.g. one-hot), fill missing values, or drop "
                f"the column; if it holds further labels (an annotator's), name it 'extra_{h}'.")
    ids = col[id_column] if id_column in col else [f"row{k}" for k in range(len(body))]

    def row(column: str, k: int) -> str:  # the column too when it is not the given labels' (an annotator's)
        return (f"line {lines[k]}" + (f" (id {ids[k]!r})" if id_column in col else "")
                + (f" in column {column!r}" if column != label_column else ""))

    declared = class_names if class_names is not None else declared_classes(path)
    label_cols = {h: col[h] for h in (label_column, true_label_column, *extra) if h in col}
    codes, names = encode_with_annotators(label_cols, extra, declared=declared, where=str(path), row=row,
                                          declared_in=str(classes_file(path)) if class_names is None else "class_names")
    labels, true = codes[label_column], codes.get(true_label_column)
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
                                 ids=[ids[i] for i in idx], name=f"{path.stem}/{s}",
                                 extra_labels={h[len("extra_"):]: np.asarray(codes[h])[idx] for h in extra},
                                 feature_names=list(features))
    if "train" not in out:
        raise DataError(f"{path}: column {split_column!r} marks no row as 'train'.")
    return DatasetSplits(train=out["train"], test=out.get("test"))


def feature_columns(header: list[str], *, label_column: str = "label", true_label_column: str = "true_label",
                    id_column: str = "id", split_column: str = "split") -> list[str]:
    """The feature columns of a table's header, in order: all but the label, true-label, id and split columns and
    the ``extra_<name>`` label columns (the one rule of :func:`load_csv`, ``noisyfit predict`` and a
    predictor given a DataFrame)."""
    special = {label_column, true_label_column, id_column, split_column}
    return [h for h in header if h not in special and not h.startswith("extra_")]


def check_header(path: Path, row: list[str]) -> list[str]:
    """A CSV's header, stripped, refused with the fix when a column has no name or a name twice (the second
    column of a name had silently replaced the first)."""
    header = [h.strip() for h in row]
    unnamed = [i + 1 for i, h in enumerate(header) if not h]
    if unnamed:
        index = (" (a first column without a name is usually a pandas index: write the file with "
                 "df.to_csv(path, index=False))" if unnamed[0] == 1 else "")
        raise DataError(f"{path}: column {unnamed[0]} of the header has no name{index}; drop it, or name it "
                        "('id' if it identifies the rows).")
    seen: dict[str, int] = {}
    for i, h in enumerate(header):
        if h in seen:
            raise DataError(f"{path}: columns {seen[h] + 1} and {i + 1} are both named {h!r}; give each column "
                            "its own name.")
        seen[h] = i
    return header


def _separator_hint(header: list[str]) -> str:
    """A hint when the header is one column holding another separator (a CSV written with ';' or tabs)."""
    if len(header) != 1:
        return ""
    sep = next((s for s in (";", "\t", "|") if s in header[0]), None)
    if sep is None:
        return ""
    shown = "a tab" if sep == "\t" else repr(sep)
    return (f" The header reads as one column: the file seems to separate its columns with {shown}, and noisyfit "
            "reads comma-separated files; convert it, e.g. pandas.read_csv(path, sep=...).to_csv(out, index=False).")


def parse_column(cells: list[str], out: np.ndarray) -> tuple[int | None, str]:
    """Parse a column's text cells into ``out`` (float32); (row, cell) of the first that is not a finite number,
    else (None, ""). One list of Python floats per column, assigned at once (assigning cell by cell into the
    array took seconds on 200,000 rows); "nan" and "inf" parse as numbers but are refused here, as training on
    them ends in a NaN loss."""
    try:
        values = np.array([float(v) for v in cells], dtype=np.float64)
    except ValueError:
        k = next(k for k, v in enumerate(cells) if not _is_float(v))
        return k, cells[k]
    with np.errstate(over="ignore"):  # 1e39 becomes inf in float32: refused below, as nan and inf are
        values = values.astype(np.float32)
    bad = np.flatnonzero(~np.isfinite(values))
    if bad.size:
        return int(bad[0]), cells[int(bad[0])]
    out[:] = values
    return None, ""


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


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
