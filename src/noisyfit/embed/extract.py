"""Embed a whole data set in batches, and the embeddings file (``.npz``) with sample ids and labels.

The file is also a noisyfit data set: its arrays are named as ``npz:PATH`` expects (``x`` = the
embeddings, ``y`` = the given labels, ``ids``, ``class_names``, ``true_labels`` when known), so
``noisyfit audit npz:emb.npz`` and ``noisyfit train --dataset npz:emb.npz`` read it as feature rows.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from noisyfit.data.labeled import LabeledData
from noisyfit.embed.models import Embedder, EmbedderError

EMBEDDINGS_SCHEMA = "noisyfit.embeddings/1"


@dataclass
class Embeddings:
    """Embedding rows with the examples they belong to.

    Attributes
    ----------
    x : ndarray (N, D) float32
        Row i embeds example i of the data set (its training split, in the data set's order).
    labels : ndarray (N,) int
        The given labels.
    class_names : list of str
    ids : list of str
        File path / row id of each example (the row number as text when the data set has no ids).
    true_labels : ndarray (N,) or None
    index : ndarray (N,) int
        Position of each row in the source training set.
    info : dict
        The embedder (file, format, input size, normalisation), the data set, seconds.
    """

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    ids: list[str]
    true_labels: np.ndarray | None = None
    index: np.ndarray | None = None
    info: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.x)
        self.labels = np.asarray(self.labels, dtype=np.int64)
        self.index = np.arange(n) if self.index is None else np.asarray(self.index, dtype=np.int64)
        for name, v in (("labels", self.labels), ("ids", self.ids), ("index", self.index)):
            if len(v) != n:
                raise EmbedderError(f"embeddings: {len(v)} {name} for {n} rows")
        if self.true_labels is not None:
            self.true_labels = np.asarray(self.true_labels, dtype=np.int64)

    def __len__(self) -> int:
        return len(self.x)

    @property
    def dim(self) -> int:
        return int(self.x.shape[1])

    def save(self, path: str | Path, *, test: Embeddings | None = None) -> Path:
        """Write the ``.npz`` (see the module docstring); returns the path written. ``test``: the embeddings of
        the data set's test split, stored as ``x_test``, ``y_test``, ``ids_test`` (``true_labels_test``), the
        names ``npz:PATH`` reads as a test split, so a run trained on the file reports test accuracy."""
        arrays = {"x": np.asarray(self.x, dtype=np.float32), "y": self.labels,
                  "class_names": np.array(self.class_names, dtype=str), "ids": np.array(self.ids, dtype=str),
                  "index": self.index, "schema": np.array(EMBEDDINGS_SCHEMA),
                  "info": np.array(json.dumps(self.info))}
        if self.true_labels is not None:
            arrays["true_labels"] = self.true_labels
        if test is not None:
            if list(test.class_names) != list(self.class_names):
                raise EmbedderError("embeddings: the test split's classes differ from the training split's")
            arrays.update(x_test=np.asarray(test.x, dtype=np.float32), y_test=test.labels,
                          ids_test=np.array(test.ids, dtype=str))
            if test.true_labels is not None:
                arrays["true_labels_test"] = test.true_labels
        return _write_npz(path, arrays)


def _write_npz(path: str | Path, arrays: dict[str, np.ndarray]) -> Path:
    """``arrays`` as ``path`` (``.npz`` added when missing), written whole or not at all (a temporary file, then a
    rename); returns the path written."""
    path = Path(path)
    if path.suffix.lower() != ".npz":
        path = path.with_name(path.name + ".npz")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.partial.npz")
    np.savez(tmp, **arrays)
    tmp.replace(path)
    return path


def save_unlabelled_embeddings(path: str | Path, x: np.ndarray, ids: list[str], info: dict) -> Path:
    """Embeddings of new, unlabelled examples: ``x``, ``ids``, ``info`` and no labels. ``noisyfit predict RUN
    FILE`` reads such a file as raw inputs (its ``x`` and ``ids``); it is not a data set (no ``y``)."""
    return _write_npz(path, {"x": np.asarray(x, dtype=np.float32), "ids": np.array(ids, dtype=str),
                             "schema": np.array(EMBEDDINGS_SCHEMA), "info": np.array(json.dumps(info))})


def load_embeddings(path: str | Path) -> Embeddings:
    """Read an embeddings ``.npz`` written by :meth:`Embeddings.save` / ``noisyfit embed``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise EmbedderError(f"embeddings file {path} not found; write one with `noisyfit embed DATA --model FILE "
                            f"--out {path.name}`.")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError) as err:
        raise EmbedderError(f"{path}: cannot read it as an .npz ({err}).") from err
    missing = [k for k in ("x", "y") if k not in a]
    if missing:
        raise EmbedderError(f"{path}: no {' and '.join(missing)} array(s) (found {sorted(a)}); embeddings files have "
                            "x (the [N, D] embeddings), y (given labels), ids and class_names, as `noisyfit embed` "
                            "writes them.")
    x = np.asarray(a["x"], dtype=np.float32)
    if x.ndim != 2:
        raise EmbedderError(f"{path}: x has shape {list(x.shape)}; embeddings are [N, D] rows.")
    n = len(x)
    y = a["y"]
    if y.dtype.kind not in "iu":
        raise EmbedderError(f"{path}: y holds {y.dtype} values; embeddings files store label indices "
                            "into class_names.")
    names = [str(c) for c in a["class_names"]] if "class_names" in a else [str(k) for k in range(int(y.max()) + 1)]
    ids = [str(i) for i in a["ids"]] if "ids" in a else [str(i) for i in range(n)]
    try:
        info = json.loads(str(a["info"])) if "info" in a else {}
    except ValueError:
        info = {}
    return Embeddings(x=x, labels=y, class_names=names, ids=ids, true_labels=a.get("true_labels"),
                      index=a.get("index"), info=info)


def _is_terminal() -> bool:
    return bool(getattr(sys.stderr, "isatty", lambda: False)())


def embed_data(embedder: Embedder, data: LabeledData, *, progress: bool = True,
               log: Callable[[str], None] | None = None) -> Embeddings:
    """Embed every example of ``data`` in batches of ``embedder.batch_size``.

    Parameters
    ----------
    embedder : Embedder
        From :func:`~noisyfit.embed.load_embedder`.
    data : LabeledData
        Images (uint8 NHWC) or feature rows; the rows keep its order.
    progress : bool
        A live bar on a terminal; otherwise ``log`` gets a line at every tenth of the data.
    log : callable, optional
        Gets the progress lines (e.g. ``print``) when no bar is shown.

    Returns
    -------
    Embeddings
    """
    x = data.x
    t0 = time.time()
    out = embed_rows(embedder, x, data.name, ids=data.ids, progress=progress, log=log)
    seconds = time.time() - t0
    n = len(out)
    ids = list(data.ids) if data.ids is not None else [str(i) for i in range(n)]
    described = {**embedder.describe(), "resolved_path": str(Path(embedder.path).expanduser().resolve())}
    # the size the images were decoded to before the embedder resized them: new images are decoded the same way
    # when a model trained on these embeddings predicts them (noisyfit predict --embedder)
    image_size = [int(x.shape[1]), int(x.shape[2])] if x.ndim == 4 else None
    info = {"embedder": described, "data": data.name, "num_examples": n, "dim": int(out.shape[1]),
            "image_size": image_size, "seconds": seconds}
    return Embeddings(x=out, labels=data.labels, class_names=list(data.class_names), ids=ids,
                      true_labels=data.true_labels, info=info)


def embed_rows(embedder: Embedder, x, name: str = "the data", *, ids=None, progress: bool = True,
               log: Callable[[str], None] | None = None) -> np.ndarray:
    """The embeddings ``float32 [N, D]`` of the examples ``x`` (uint8 images ``[N, H, W, C]`` or feature rows), in
    batches of ``embedder.batch_size``, with the progress of :func:`embed_data`; ``ids`` name a bad row."""
    from noisyfit.detect.progress import progress_bar

    embedder.check_input(x, name)
    embedder.prepare(x)
    n, bs = len(x), embedder.batch_size
    if n == 0:
        raise EmbedderError(f"{name}: no examples to embed")
    bar_on = progress and _is_terminal()
    out: np.ndarray | None = None
    t0, next_line = time.time(), 0.1
    with progress_bar(n, f"embedding {name}", enabled=bar_on) as bar:
        for s in range(0, n, bs):
            e = embedder(np.asarray(x[s:s + bs]))  # a streamed set (ImageFiles) decodes one batch here
            if out is None:
                out = np.empty((n, e.shape[1]), dtype=np.float32)
            elif e.shape[1] != out.shape[1]:
                raise EmbedderError(f"{embedder.path}: batch at row {s} gave {e.shape[1]} values per row, earlier "
                                    f"batches {out.shape[1]}; the model's output size depends on its input.")
            out[s:s + len(e)] = e
            bar.advance(len(e))
            done = s + len(e)
            if log is not None and progress and not bar_on and (done / n >= next_line or done == n):
                secs = time.time() - t0
                log(f"embedded {done}/{n} examples ({100 * done / n:.0f}%, {done / max(secs, 1e-9):.0f}/s, "
                    f"{secs:.1f} s)")
                while next_line <= done / n:
                    next_line += 0.1
    bad = ~np.isfinite(out).all(axis=1)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        which = ids[k] if ids is not None else f"row {k}"
        raise EmbedderError(f"{embedder.path}: non-finite embeddings for {int(bad.sum())} example(s), the first "
                            f"{which!r}; check the normalisation (--mean/--std) and the model.")
    return out
