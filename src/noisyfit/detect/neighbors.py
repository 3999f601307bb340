"""Nearest-neighbour evidence on embeddings: leave-one-out label votes, and who the neighbours are.

Training-free: each example's ``k`` nearest neighbours (cosine distance by default) vote with their *given*
labels, and the vote shares are its probabilities. An example never votes for itself, so the shares are
out-of-sample by construction and go to confident learning like any ``pred_probs``; and a flag can be explained
by the neighbours themselves ("8 of its 10 nearest neighbours are labelled dog"), which a person can check.

The premise, that examples close in a good feature space share their true label so that a k-NN vote exposes
corrupted ones, is SimiFeat's (Zhu, Dong and Liu, "Detecting Corrupted Labels Without Training a Model to
Predict", ICML 2022; Docta's detector). This module is **not** SimiFeat: it has no HOC estimate of the noise
transition matrix, no per-class ranking by it and no rounds over augmented features. It is the plain k-NN vote,
then noisyfit's confident learning (or, for label sets, the vote share of each class).

A precomputed graph can be given instead of features (cleanlab users keep one: its ``knn_graph``): a scipy sparse
matrix whose row i stores the distances to i's neighbours, or ``(indices, distances)`` arrays ``[N, k]``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from noisyfit.detect.validation import DetectInputError, check_labels

METRICS = ("cosine", "euclidean")


@dataclass
class KnnGraph:
    """``indices[i]``: the ``k`` nearest neighbours of example i (never i), nearest first; ``distances[i]``: theirs."""

    indices: np.ndarray
    distances: np.ndarray
    metric: str = "cosine"

    @property
    def k(self) -> int:
        return int(self.indices.shape[1])

    def __len__(self) -> int:
        return len(self.indices)


def knn_graph(features, k: int = 10, *, metric: str = "cosine") -> KnnGraph:
    """The ``k`` nearest neighbours of every row of ``features`` among the others (scikit-learn, exact search)."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=np.float32)
    if x.ndim != 2 or x.shape[1] == 0:
        raise DetectInputError(f"features must be [N, D] rows with D >= 1, got shape {list(x.shape)}")
    if not np.isfinite(x).all():
        raise DetectInputError("features contain NaN or inf; recompute or fill them first.")
    if metric not in METRICS:
        raise DetectInputError(f"metric {metric!r}: choose one of {', '.join(METRICS)}")
    if not 1 <= k < len(x):
        raise DetectInputError(f"k must be between 1 and the number of examples - 1 ({len(x) - 1}), got {k}")
    if metric == "cosine" and (np.linalg.norm(x, axis=1) == 0).any():
        raise DetectInputError("a feature row is all zeros: its cosine distance to anything is undefined; use "
                               "metric='euclidean' or drop the row.")
    nn = NearestNeighbors(n_neighbors=k, metric=metric, algorithm="brute" if metric == "cosine" else "auto").fit(x)
    distances, indices = nn.kneighbors()  # no query: each point's own row is left out (by index, duplicates too)
    return KnnGraph(indices=indices.astype(np.int64), distances=distances.astype(np.float32), metric=metric)


def neighbours_of(features, rows: Sequence[int], k: int = 10, *, metric: str = "cosine") -> KnnGraph:
    """The ``k`` nearest neighbours of the given ``rows`` only (never the row itself): a graph whose row j belongs
    to example ``rows[j]``, for explaining a few flags without the whole N x N search."""
    from sklearn.neighbors import NearestNeighbors

    x = np.asarray(features, dtype=np.float32)
    rows = np.asarray(rows, dtype=np.int64)
    if not 1 <= k < len(x):
        raise DetectInputError(f"k must be between 1 and the number of examples - 1 ({len(x) - 1}), got {k}")
    if len(rows) == 0:
        return KnnGraph(indices=np.zeros((0, k), np.int64), distances=np.zeros((0, k), np.float32), metric=metric)
    nn = NearestNeighbors(n_neighbors=k + 1, metric=metric, algorithm="brute" if metric == "cosine" else "auto").fit(x)
    dist, idx = nn.kneighbors(x[rows])
    keep = idx != rows[:, None]
    # the row itself is among its k + 1 nearest (distance 0) unless k + 1 duplicates tie with it: drop the last then
    keep[keep.all(axis=1), -1] = False
    return KnnGraph(indices=idx[keep].reshape(len(rows), k), distances=dist[keep].reshape(len(rows), k).astype(np.float32),
                    metric=metric)


def as_knn_graph(graph) -> KnnGraph:
    """A :class:`KnnGraph` from a graph, a scipy sparse distance matrix (row i: i's neighbours, the same number per
    row, none of them i) or ``(indices, distances)``."""
    if isinstance(graph, KnnGraph):
        return graph
    if hasattr(graph, "tocsr"):
        m = graph.tocsr()
        per_row = np.diff(m.indptr)
        if len(per_row) == 0 or per_row.min() != per_row.max() or per_row[0] == 0:
            raise DetectInputError("knn graph: every row must store the same number (> 0) of neighbours")
        k = int(per_row[0])
        idx, dist = m.indices.reshape(-1, k), m.data.reshape(-1, k)
        order = np.argsort(dist, axis=1, kind="stable")
        idx, dist = np.take_along_axis(idx, order, 1), np.take_along_axis(dist, order, 1)
        metric = "given"
    else:
        try:
            idx, dist = (np.asarray(a) for a in graph)
        except (TypeError, ValueError):
            raise DetectInputError("knn graph: give a KnnGraph, a scipy sparse matrix or (indices, distances)") from None
        metric = "given"
    if idx.ndim != 2 or idx.shape != dist.shape:
        raise DetectInputError(f"knn graph: indices {list(idx.shape)} and distances {list(dist.shape)} must both be [N, k]")
    n = len(idx)
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        raise DetectInputError(f"knn graph: neighbour indices must be in 0..{n - 1}")
    if (idx == np.arange(n)[:, None]).any():
        raise DetectInputError("knn graph: an example is its own neighbour; its vote would not be out of sample")
    return KnnGraph(indices=idx.astype(np.int64), distances=dist.astype(np.float32), metric=metric)


def neighbor_votes(graph, labels, num_classes: int | None = None) -> np.ndarray:
    """``[N, C]``: the share of each example's neighbours given each class (rows sum to 1)."""
    g = as_knn_graph(graph)
    y = check_labels(labels, num_classes)
    if len(y) != len(g):
        raise DetectInputError(f"{len(y)} labels for a knn graph of {len(g)} examples")
    c = int(num_classes or (y.max() + 1))
    votes = np.zeros((len(g), c), dtype=np.float64)
    np.add.at(votes, (np.repeat(np.arange(len(g)), g.k), y[g.indices].ravel()), 1.0)
    return votes / g.k


def neighbor_class_shares(graph, label_matrix) -> np.ndarray:
    """``[N, K]``: for label sets (a 0/1 matrix), the share of each example's neighbours that have each class."""
    g = as_knn_graph(graph)
    y = np.asarray(label_matrix, dtype=np.float64)
    if y.ndim != 2 or len(y) != len(g):
        raise DetectInputError(f"label matrix of shape {list(y.shape)} for a knn graph of {len(g)} examples")
    return y[g.indices].mean(axis=1)


def explain_votes(graph, labels, rows: Sequence[int], class_names: Sequence[str], *,
                  graph_rows: bool = False) -> dict[int, str]:
    """One sentence per row: how its neighbours are labelled, e.g. ``"8 of its 10 nearest neighbours are labelled
    'dog', 2 'cat' (the given label)"``. ``graph_rows``: the graph's row j belongs to ``rows[j]``
    (:func:`neighbours_of`), not to example j."""
    g = graph if isinstance(graph, KnnGraph) else as_knn_graph(graph)
    y = np.asarray(labels, dtype=np.int64)
    out = {}
    for j, i in enumerate(rows):
        counts = np.bincount(y[g.indices[j if graph_rows else i]], minlength=len(class_names))
        order = [int(c) for c in np.argsort(-counts, kind="stable") if counts[c] > 0]
        parts = [f"{counts[c]} {class_names[c]!r}" + (" (the given label)" if c == y[i] else "") for c in order]
        if y[i] not in order:
            parts.append(f"none {class_names[y[i]]!r} (the given label)")
        head = f"{counts[order[0]]} of its {g.k} nearest neighbours are labelled {class_names[order[0]]!r}"
        out[int(i)] = head + (" (the given label)" if order[0] == y[i] else "") + (
            ", " + ", ".join(parts[1:]) if len(parts) > 1 else "")
    return out
