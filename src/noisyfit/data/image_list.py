"""Image lists: a CSV or JSON file of ``path,label`` rows, the form large photo collections come in.

``list:PATH`` reads, per row (column / key names)::

    path          required: the image file, relative to the list file's folder or absolute
    label         required (or ``--label-column``): the given label, any values (mapped as in noisyfit.data.labels)
    true_label    optional: the clean label, for evaluation
    split         optional: train (default) or test (also val / valid / validation)
    id            optional: the example id in outputs (default: the path as written)

A CSV has a header row; a JSON file holds a list of objects, or one object per line (JSON Lines). Images
are decoded with the folder loader's rules (RGB, EXIF rotation, the ``data.image_size`` policy), and
streamed from disk when ``stream`` says so (see :func:`noisyfit.data.folder.read_image_folder`). A list is
not cached as decoded arrays: lists are how large collections are kept, which stream anyway.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from .folder import SPLIT_NAMES, _decode_all, _scan_sizes, _unreadable, parse_image_size
from .image_files import DirectoryOpener, ImageFiles
from .labeled import DataError, DatasetSplits, LabeledData
from .labels import encode_labels
from .tabular import classes_file, declared_classes
from .stream_source import memory_budget_bytes, stream_mode

_TEST_SPLITS = {"test", "val", "valid", "validation"}


def _read_rows(path: Path) -> tuple[list[dict], Callable[[int], str]]:
    """Rows as dicts, and ``where(i)`` naming row ``i`` for messages."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix.lower() in (".json", ".jsonl", ".ndjson"):
        try:
            stripped = text.lstrip()
            rows = json.loads(text) if stripped.startswith("[") else [json.loads(line) for line in text.splitlines()
                                                                         if line.strip()]
        except json.JSONDecodeError as err:
            raise DataError(f"{path}: not valid JSON ({err}); expected a list of objects like "
                            '[{"path": "img/1.jpg", "label": "cat"}] or one such object per line.') from err
        if not all(isinstance(r, dict) for r in rows):
            raise DataError(f"{path}: every entry must be an object with at least 'path' and 'label'.")
        return rows, (lambda i: f"entry {i + 1}")
    rows = list(csv.DictReader(text.splitlines()))
    return rows, (lambda i: f"line {i + 2}")  # line 1 is the header


def load_image_list(path, *, label_column: str = "label", image_size=None, stream: bool | str = "auto",
                    memory_budget_mb: float | None = None, class_names: Sequence[str] | None = None) -> DatasetSplits:
    """Load a ``path,label`` list (CSV or JSON) of image files as train/test splits.

    Parameters
    ----------
    path : str or path-like
    label_column : str
        The column holding the given labels.
    image_size, stream, memory_budget_mb
        As in :func:`noisyfit.data.folder.read_image_folder`.
    class_names : sequence of str, optional
        The classes in order; default those declared in ``<name>.classes.txt`` next to the list (one per line,
        as for ``csv:``), else the sorted label values. With declared classes a label outside them is an error
        naming its line.

    Raises
    ------
    DataError
        A missing column, an empty list, unreadable or missing image files (all named in one message).
    """
    source = Path(path).expanduser().resolve()
    rows, where = _read_rows(source)
    if not rows:
        raise DataError(f"{source}: the list has no rows; expected a header `path,{label_column}` and one row per image.")
    for col in ("path", label_column):
        if col not in rows[0]:
            raise DataError(f"{source}: no {col!r} column (found {sorted(rows[0])}); an image list needs `path` and "
                            f"`{label_column}` (set another label column with --label-column).")
    root = source.parent
    paths = [str(r.get("path") or "").strip() for r in rows]
    empty = [where(i) for i, p in enumerate(paths) if not p]
    if empty:
        raise DataError(f"{source}: no image path in {', '.join(empty[:5])}; every row needs one.")
    splits = ["test" if str(r.get("split") or "train").strip().lower() in _TEST_SPLITS else "train" for r in rows]
    bad_split = [f"{where(i)}: {r['split']!r}" for i, r in enumerate(rows)
                 if r.get("split") not in (None, "") and str(r["split"]).strip().lower() not in SPLIT_NAMES]
    if bad_split:
        raise DataError(f"{source}: unknown split in {', '.join(bad_split[:5])}; use train or test.")
    has_true = any(r.get("true_label") not in (None, "") for r in rows)
    columns = {"label": [r[label_column] for r in rows]}
    if has_true:
        columns["true_label"] = [r.get("true_label") for r in rows]
    declared = list(class_names) if class_names is not None else declared_classes(source)
    codes, names = encode_labels(columns, declared=declared, where=str(source), row=lambda col, i: where(i),
                                 declared_in="class_names" if class_names is not None else str(classes_file(source)))
    ids = [str(r.get("id") or p) for r, p in zip(rows, paths)]

    split_rows = {s: [i for i, sp in enumerate(splits) if sp == s] for s in ("train", "test")}
    split_ids = {s: [paths[i] for i in v] for s, v in split_rows.items() if v}
    if "train" not in split_ids:
        raise DataError(f"{source}: every row is in the test split; a training set is needed.")
    opener = DirectoryOpener(root)  # an absolute path in a row stays absolute: root / "/abs" is "/abs"
    size = parse_image_size(image_size)
    target, note, failed = _scan_sizes(split_ids, opener, source, size)
    total = sum(len(v) for v in split_ids.values())
    mode = stream_mode(stream)
    if mode == "true" or (mode == "auto" and total * target[0] * target[1] * 3 > memory_budget_bytes(memory_budget_mb)):
        if failed:
            raise _unreadable(source, list(failed.items()), total)
        arrays = {s: ImageFiles(opener, v, target) for s, v in split_ids.items()}
    else:
        arrays = _decode_all(split_ids, opener, source, progress=True, target=target, failed=failed)
    if note:
        import warnings

        from .labels import DataWarning

        warnings.warn(DataWarning(note), stacklevel=3)
    out = {}
    for s, rows_of in split_rows.items():
        if not rows_of:
            continue
        idx = np.array(rows_of)
        out[s] = LabeledData(x=arrays[s], labels=codes["label"][idx], class_names=names,
                             true_labels=codes["true_label"][idx] if has_true else None,
                             ids=[ids[i] for i in rows_of], name=f"{source.stem}/{s}")
    return DatasetSplits(train=out["train"], test=out.get("test"))
