"""Labels as users have them -> class indices ``0..C-1``, and the one validator of class-index arrays.

Two jobs, used by every source and stage:

* :func:`encode_labels` maps the label values of a file (integers of any values, ``1..3`` or
  ``10/20/30``, or strings) to class indices. Without declared classes the classes are the sorted
  distinct values (numbers in numeric order, text in text order) and the class names are the values
  as text, so outputs (issues.csv, the report, results.json) show the user's own labels. With declared
  classes (an ``.npz``'s ``class_names``, a CSV's ``<name>.classes.txt``) a value outside them is an
  error naming its row and value.
* :func:`check_labels` is the validator of arrays that already are class indices (``LabeledData``,
  noise injection, detection): 1-D, no NaN, whole numbers, inside ``[0, C)``; an error names the
  entry, its row when known, and how many entries share the problem.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence

import numpy as np

from .labeled import DataError

#: rows named in one message before "and N more"
MAX_LISTED = 5


class DataWarning(UserWarning):
    """Something in the data is suspicious but not wrong (the CLI prints it as one ``warning:`` line)."""


def some(items: Sequence[str], limit: int = MAX_LISTED) -> str:
    """``"a, b, c"`` or ``"a, b, c and 7 more"``: a list a message can afford."""
    items = list(items)
    shown = ", ".join(items[:limit])
    return shown if len(items) <= limit else f"{shown} and {len(items) - limit} more"


# ------------------------------------------------------------------------------------ validation
def check_labels(labels, num_classes: int | None = None, *, name: str = "labels", where: str = "",
                 row: Callable[[int], str] | None = None, error: type[Exception] = DataError,
                 hint: str | None = None) -> np.ndarray:
    """Class indices as ``int64 [N]``, or ``error`` naming the first bad entry.

    Parameters
    ----------
    labels : array-like
        One class index per example.
    num_classes : int, optional
        Values must lie in ``[0, num_classes)``; None checks only the type and shape.
    name : str
        What the array is called in messages (``labels``, ``true_labels``, ``y``...).
    where : str
        Prefix of messages (a file or data set name).
    row : callable, optional
        ``row(i)`` describes entry ``i`` for a user (``"line 58"``, ``"id 'cat/3.png'"``).
    error : exception class
        Raised type (a :class:`DataError` subclass, e.g. detection's ``DetectInputError``).
    hint : str, optional
        The fix for out-of-range values (default: remap to 0..C-1 or add the missing class names).
    """
    prefix = f"{where}: " if where else ""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise error(f"{prefix}{name} must be 1-D (one class index per example), got shape {arr.shape}.")
    if arr.dtype.kind == "f":
        nan = np.flatnonzero(~np.isfinite(arr))
        if nan.size:
            i = int(nan[0])
            raise error(f"{prefix}{name}[{i}] is {arr[i]}{_at(row, i)} ({_entries(nan.size)}): every example "
                        "needs a class index; drop unlabelled examples first.")
        frac = np.flatnonzero(arr != np.round(arr))
        if frac.size:
            i = int(frac[0])
            raise error(f"{prefix}{name}[{i}] = {arr[i]:g}{_at(row, i)} is not a whole number "
                        f"({_entries(frac.size)}); labels must be integer class indices 0..C-1.")
    elif arr.dtype.kind not in "iub" and arr.size:
        raise error(f"{prefix}{name} has dtype {arr.dtype}; labels must be integer class indices 0..C-1 (map "
                    "names to indices with np.unique(names, return_inverse=True)).")
    arr = arr.astype(np.int64)
    if num_classes is not None and arr.size:
        bad = np.flatnonzero((arr < 0) | (arr >= num_classes))
        if bad.size:
            i = int(bad[0])
            others = ""
            if bad.size > 1:
                rest = [f"{name}[{int(k)}] = {int(arr[k])}{_at(row, int(k))}" for k in bad[1:]]
                others = f"; also {some(rest, MAX_LISTED - 1)}"
            fix = hint or ("Labels must be class indices 0..C-1: remap them, or add the missing class names.")
            raise error(f"{prefix}{name}[{i}] = {int(arr[i])}{_at(row, i)} is outside [0, {num_classes}) "
                        f"({_entries(bad.size)}{others}). {fix}")
    return arr


def _entries(n: int) -> str:
    return "1 such entry" if n == 1 else f"{n} such entries"


def _at(row: Callable[[int], str] | None, i: int) -> str:
    return f" ({row(i)})" if row is not None else ""


# ------------------------------------------------------------------------------------ encoding
def _as_int(v) -> int | None:
    """The integer a label value stands for (``3``, ``"3"``, ``3.0``, ``"3.0"``), else None."""
    if isinstance(v, (bool, np.bool_)):
        return int(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return int(v) if np.isfinite(v) and float(v).is_integer() else None
    text = str(v).strip()
    try:
        return int(text)
    except ValueError:
        pass
    try:
        f = float(text)
    except ValueError:
        return None
    return int(f) if np.isfinite(f) and f.is_integer() else None


def _text(v) -> str:
    i = _as_int(v)
    return str(i) if i is not None else str(v).strip()


def encode_labels(columns: Mapping[str, Sequence], *, declared: Sequence[str] | None = None, where: str = "",
                  row: Callable[[str, int], str] | None = None, declared_in: str = "the class list",
                  warn_rare: bool = True, min_classes: int = 2) -> tuple[dict[str, np.ndarray], list[str]]:
    """Map the label values of one source (all its label columns together) to class indices.

    Parameters
    ----------
    columns : mapping of str to sequence
        Label columns by name (``label``, ``true_label``, ``y_test``...): strings or numbers, one per row.
        All columns share one mapping.
    declared : sequence of str, optional
        The classes the user declared, in order. When every declared name is an integer (``"1", "2"``),
        values are matched to names as text; otherwise integer values are indices into ``declared``
        and other values are matched as text.
    where : str
        The file, for messages.
    row : callable, optional
        ``row(column, i)`` describes row ``i`` of a column for a user (``"line 58"``).
    declared_in : str
        Where the declaration lives, for the fix in messages (``"x.classes.txt"``).
    warn_rare : bool
        Without declared classes, warn (:class:`DataWarning`) about a class of only one or two rows
        among much larger ones: a typo (a stray ``7`` in a 3-class file) becomes its own class.
    min_classes : int
        Fewer classes is an error (2: a classifier needs two; 1 for label sets, where one class may be present or
        absent).

    Returns
    -------
    codes : dict of str to ndarray
        ``int64`` class indices per column.
    class_names : list of str

    Raises
    ------
    DataError
        A value outside the declared classes (the message names the rows and values), a missing value,
        or fewer than 2 classes.
    """
    prefix = f"{where}: " if where else ""
    values = {k: list(v) for k, v in columns.items()}
    for col, vals in values.items():  # empty cells and NaN are unlabelled rows, not a class
        empty = [i for i, v in enumerate(vals) if _empty(v)]
        if empty:
            rows = [_describe(row, col, i) for i in empty]
            raise DataError(f"{prefix}the label column {col!r} is empty in {some(rows)}; every row needs a label "
                            "(drop unlabelled rows first).")
    if declared is None and values and all(_whole_array(v) for v in columns.values()):
        # numeric arrays (an .npz): the same mapping, vectorised
        arrays = {col: np.asarray(v).astype(np.int64) for col, v in columns.items()}
        uniq = np.unique(np.concatenate(list(arrays.values())))
        names = [str(int(u)) for u in uniq]
        codes = {col: np.searchsorted(uniq, a).astype(np.int64) for col, a in arrays.items()}
        if len(names) < min_classes:
            raise DataError(f"{prefix}every row has the label {names[0] if names else '(none)'!r}; a classifier "
                            "needs at least 2 classes.")
        if warn_rare:
            _warn_rare(codes, names, prefix, row)
        return codes, names
    every = [v for vals in values.values() for v in vals]
    if declared is None:
        # each distinct value read once (a CSV of 200,000 rows has a handful of them), then looked up per row
        ints = {v: _as_int(v) for v in set(every)}
        if all(i is not None for i in ints.values()):
            names = [str(i) for i in sorted(set(ints.values()))]
        else:
            names = sorted({_text(v) for v in ints})
        index = {n: k for k, n in enumerate(names)}
        code_of = {v: index[_text(v)] for v in ints}
        codes = {col: np.array([code_of[v] for v in vals], dtype=np.int64) for col, vals in values.items()}
        if warn_rare and codes:
            _warn_rare(codes, names, prefix, row)
    else:
        names = [str(n) for n in declared]
        index = {n: k for k, n in enumerate(names)}
        by_index = (not all(_as_int(n) is not None for n in names)
                    and all(_as_int(v) is not None for v in every))
        codes, bad = {}, []
        for col, vals in values.items():
            out = np.empty(len(vals), dtype=np.int64)
            for i, v in enumerate(vals):
                k = _as_int(v) if by_index else index.get(_text(v))
                if k is None or not 0 <= k < len(names):
                    bad.append(f"{_describe(row, col, i)}: {_text(v)!r}")
                    k = -1
                out[i] = k
            codes[col] = out
        if bad:
            what = (f"class indices 0..{len(names) - 1} of the {len(names)} declared classes" if by_index
                    else f"one of the {len(names)} declared classes ({some(names, 10)})")
            raise DataError(f"{prefix}{len(bad)} label(s) are not {what}: {some(bad)}. Fix those rows, or add the "
                            f"class to {declared_in}.")
    if len(names) < min_classes:
        raise DataError(f"{prefix}every row has the label {names[0] if names else '(none)'!r}; a classifier needs "
                        "at least 2 classes.")
    return codes, names


def encode_with_annotators(columns: Mapping[str, Sequence], annotators: Sequence[str], *, where: str = "",
                           row: Callable[[str, int], str] | None = None, **kw) -> tuple[dict[str, np.ndarray], list[str]]:
    """:func:`encode_labels` for a source whose ``annotators`` columns (``extra_<name>``) may skip items: an empty
    cell, NaN or -1 there is "not annotated" and becomes the code -1 (what the consensus audit reads as missing), not
    an error and not a class; -1 stays a class when the other label columns use it (labels -1/1). A value that
    only annotators use becomes a class of its own, as declared nowhere else, so it is warned about (a crowd
    worker's "Cat" beside "cat" had become a sixth class and a suggested label, in silence: a user trial)."""
    prefix = f"{where}: " if where else ""
    main_values = {_text(v) for col, vals in columns.items() if col not in annotators for v in vals
                   if not _empty(v)}
    minus_one_is_class = "-1" in main_values
    kept: dict[str, np.ndarray] = {}
    trimmed: dict[str, Sequence] = {}
    for col, vals in columns.items():
        if col not in annotators:
            trimmed[col] = vals
            continue
        arr = vals if isinstance(vals, np.ndarray) else np.asarray(list(vals), dtype=object)
        missing = np.array([_empty(v) or (not minus_one_is_class and _as_int(v) == -1) for v in arr], dtype=bool)
        kept[col] = np.flatnonzero(~missing)
        trimmed[col] = arr[kept[col]] if isinstance(vals, np.ndarray) else [arr[i] for i in kept[col]]
    described = None if row is None else (lambda col, i: row(col, int(kept[col][i]) if col in kept else i))
    codes, names = encode_labels(trimmed, where=where, row=described, **kw)
    for col, rows in kept.items():
        full = np.full(len(columns[col]), -1, dtype=np.int64)
        full[rows] = codes[col]
        codes[col] = full
    if kw.get("declared") is None:
        main_codes = {int(c) for col, c_arr in codes.items() if col not in annotators for c in np.unique(c_arr)}
        for col in annotators:
            extra = sorted({int(c) for c in np.unique(codes[col]) if c >= 0} - main_codes)
            if extra:
                n = int(np.isin(codes[col], extra).sum())
                warnings.warn(DataWarning(
                    f"{prefix}annotator column {col!r} has label(s) {some([repr(names[c]) for c in extra])} that no "
                    f"other label column has ({n} row(s)): they became classes of their own, which an audit can "
                    "suggest. If they are misspellings (Cat for cat) fix them; declare the classes (a class list "
                    "file, or class_names) to have such values refused."), stacklevel=3)
    return codes, names


def _empty(v) -> bool:
    return v is None or (isinstance(v, str) and not v.strip()) or (
        isinstance(v, (float, np.floating)) and not np.isfinite(v))


def _whole_array(v) -> bool:
    """A numeric array of whole numbers (no NaN): its values are integers already."""
    if not isinstance(v, np.ndarray) or v.ndim != 1:
        return False
    if v.dtype.kind in "iub":
        return True
    return v.dtype.kind == "f" and bool(np.all(np.isfinite(v))) and bool(np.all(v == np.round(v)))


def _describe(row: Callable[[str, int], str] | None, col: str, i: int) -> str:
    return row(col, i) if row is not None else f"{col}[{i}]"


def _warn_rare(codes: dict[str, np.ndarray], names: list[str], prefix: str,
               row: Callable[[str, int], str] | None) -> None:
    col = next(iter(codes))  # the given labels come first
    counts = np.bincount(codes[col], minlength=len(names))
    if len(names) < 3:
        return
    for k in np.flatnonzero((counts > 0) & (counts <= 2)):
        others = np.delete(counts, k)
        if others.min() >= 10 * counts[k] and others.min() >= 10:
            rows = [_describe(row, col, int(i)) for i in np.flatnonzero(codes[col] == k)]
            warnings.warn(DataWarning(
                f"{prefix}class {names[k]!r} has only {int(counts[k])} row(s) ({some(rows)}) while every other "
                f"class has {int(others.min())} or more; if it is a typo, fix the row(s)."), stacklevel=3)
