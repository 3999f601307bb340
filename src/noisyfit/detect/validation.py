"""Input checks for label-issue detection: stop early with a message that names the problem and the fix.

``pred_probs`` may be an in-memory array, a memory-mapped one, or a path to an ``.npy`` file (opened
with ``mmap_mode="r"`` so that it is never read into memory whole) or an ``.npz`` file. Every pass
over it goes through :func:`iter_chunks`, so memory stays bounded by ``chunk_size x num_classes``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from noisyfit.data.labeled import DataError
from noisyfit.data.labels import check_labels as _check_labels

#: rows whose sum is further than this from 1 are rejected (float32 softmax rows are off by ~1e-7)
ROW_SUM_TOLERANCE = 1e-3
#: one chunk holds about this many float64 values (32 MB)
CHUNK_VALUES = 1 << 22


class DetectInputError(DataError):
    """Bad labels or pred_probs for detection; the message says what is wrong and how to fix it."""


def default_chunk_size(num_classes: int) -> int:
    """Rows per chunk so that one float64 chunk is about 32 MB (at least 256 rows)."""
    return max(256, CHUNK_VALUES // max(int(num_classes), 1))


def load_pred_probs(source: np.ndarray | str | os.PathLike, *, key: str | None = None) -> np.ndarray:
    """Open ``pred_probs`` without reading a large ``.npy`` into memory.

    Parameters
    ----------
    source : array or path
        An array (returned as is), an ``.npy`` file (memory-mapped, read-only) or an ``.npz`` file
        (its ``pred_probs`` array, or its only array; ``.npz`` members cannot be memory-mapped).
    key : str, optional
        Array name inside an ``.npz``.

    Returns
    -------
    ndarray
        ``[N, C]`` probabilities (possibly a read-only ``np.memmap``).
    """
    if not isinstance(source, (str, os.PathLike)):
        return source if isinstance(source, np.ndarray) else np.asarray(source)
    path = Path(source)
    if not path.is_file():
        raise DetectInputError(f"pred_probs file {path} not found; pass the path of an .npy file written with "
                               "np.save(path, probs) (rows = examples in data order, columns = classes).")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            return np.load(path, mmap_mode="r", allow_pickle=False)
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as z:
                names = list(z.files)
                pick = key or ("pred_probs" if "pred_probs" in names else "probs" if "probs" in names
                               else names[0] if len(names) == 1 else None)
                if pick is None or pick not in names:
                    raise DetectInputError(f"{path}: no array {key or 'pred_probs'!r} among {names}; save it "
                                           "with np.savez(path, pred_probs=probs) or pass the key.")
                return z[pick]
    except (ValueError, OSError, EOFError) as err:
        raise DetectInputError(f"{path}: cannot read pred_probs ({err}); expected a numeric .npy/.npz "
                               "array written by numpy.") from err
    raise DetectInputError(f"{path}: unsupported pred_probs format {suffix!r}; save the [N, C] array with "
                           "np.save('pred_probs.npy', probs).")


def check_labels(labels: Sequence[int] | np.ndarray, num_classes: int | None = None,
                 *, name: str = "labels") -> np.ndarray:
    """Labels as ``int64 [N]``; NaN, non-integers and out-of-range values raise :class:`DetectInputError`.

    The checks are :func:`noisyfit.data.labels.check_labels`'s; the fix for out-of-range values names
    the columns of ``pred_probs``.
    """
    hint = None
    if num_classes is not None:
        hint = (f"pred_probs has {num_classes} columns: labels must be 0..{num_classes - 1}, the column order "
                "of pred_probs.")
    return _check_labels(labels, num_classes, name=name, error=DetectInputError, hint=hint)


def check_shapes(labels: np.ndarray, pred_probs: np.ndarray) -> int:
    """The class count; raises when pred_probs is not ``[len(labels), C >= 2]``."""
    shape = getattr(pred_probs, "shape", None)
    if shape is None or len(shape) != 2:
        raise DetectInputError(f"pred_probs must be a 2-D [N examples, C classes] array, got shape {shape}.")
    if shape[0] != len(labels):
        raise DetectInputError(f"pred_probs has {shape[0]} rows but labels has {len(labels)} entries; row i "
                               "must be the prediction for example i (same examples, same order).")
    if shape[1] < 2:
        raise DetectInputError(f"pred_probs has {shape[1]} column(s); need one column per class (>= 2).")
    return int(shape[1])


def check_chunk(chunk: np.ndarray, start: int) -> None:
    """NaN/inf, negative entries and rows not summing to 1 in one chunk (rows ``start..``)."""
    finite = np.isfinite(chunk)
    if not finite.all():
        row = start + int(np.flatnonzero(~finite.all(axis=1))[0])
        raise DetectInputError(f"pred_probs row {row} contains NaN or inf; the model produced non-finite "
                               "outputs there. Recompute those predictions (check the inputs for NaN) or drop "
                               "the examples.")
    if (chunk < 0).any():
        row = start + int(np.flatnonzero((chunk < 0).any(axis=1))[0])
        raise DetectInputError(f"pred_probs row {row} has negative entries: these look like logits or scores. "
                               "Pass probabilities: scipy.special.softmax(logits, axis=1).")
    sums = chunk.sum(axis=1)
    off = np.abs(sums - 1.0) > ROW_SUM_TOLERANCE
    if off.any():
        k = int(np.flatnonzero(off)[0])
        raise DetectInputError(
            f"pred_probs row {start + k} sums to {sums[k]:.6g}, not 1 ({int(off.sum())} rows in this chunk). "
            "Pass per-class probabilities: softmax of the logits (scipy.special.softmax(logits, axis=1)); "
            "if they are probabilities with rounding drift, renormalise with p / p.sum(1, keepdims=True).")


def check_class_counts(counts: np.ndarray, class_names: Sequence[str] | None = None) -> None:
    """Every class needs at least one example: its confident threshold is the mean over its examples."""
    empty = np.flatnonzero(counts == 0)
    if empty.size:
        k = int(empty[0])
        label = f"class {k}" + (f" ({class_names[k]!r})" if class_names is not None and k < len(class_names) else "")
        raise DetectInputError(
            f"{label} has no examples in labels ({empty.size} empty class(es): {empty[:10].tolist()}); its "
            "confident threshold (mean self-confidence of its examples) is undefined. Drop its column from "
            "pred_probs, renormalise the rows and remap labels to 0..C-2, or add labelled examples of it.")


def iter_chunks(pred_probs: np.ndarray, chunk_size: int | None = None,
                *, validate: bool = False) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, float64 chunk)`` over rows; only one chunk is in memory at a time."""
    n, c = pred_probs.shape
    size = chunk_size or default_chunk_size(c)
    if size < 1:
        raise DetectInputError(f"chunk_size must be >= 1, got {chunk_size}.")
    for start in range(0, n, size):
        chunk = np.asarray(pred_probs[start:start + size], dtype=np.float64)
        if validate:
            check_chunk(chunk, start)
        yield start, chunk
