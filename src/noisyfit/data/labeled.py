"""`LabeledData`: the one container every source produces and every later stage reads."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np


class DataError(ValueError):
    """Bad input data: the message names the file or field and the fix."""


@dataclass
class LabeledData:
    """Examples with the labels we were given (possibly wrong) and, when known, the true ones.

    Parameters
    ----------
    x : ndarray
        Images as ``uint8`` of shape ``[N, H, W, C]`` (NHWC), or feature rows as ``float32`` ``[N, D]``.
    labels : ndarray
        The given labels, ``int64`` ``[N]`` in ``[0, num_classes)``. These are what a method trains on.
    true_labels : ndarray or None
        The clean labels, when known (synthetic noise, CIFAR-N). Used only for evaluation.
    class_names : list of str
        One name per class; its length defines ``num_classes``.
    ids : list of str or None
        A stable identifier per example (file path inside an archive, CSV row id, ...), for audits.
    name : str
        Human-readable name of the source, e.g. ``"cifar10n-worst/train"``.
    extra_labels : dict
        Further label columns by name (e.g. CIFAR-10N's ``random1..3`` annotators).
    source : dict
        How the inputs were made, when their file says so: an embeddings file of ``noisyfit embed`` gives
        ``{"embedder": <the embedder's settings>, "image_size": [H, W], "file": <the .npz>}``, which a run
        trained on it keeps in its ``model.pt`` so that ``noisyfit predict`` can embed new images the same way.
    feature_names : list of str or None
        The name of each feature column (a CSV's header), when the source has them: a run keeps them in its
        ``model.pt``, so that new rows are matched to the columns by name, not by position.
    """

    x: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    true_labels: np.ndarray | None = None
    ids: list[str] | None = None
    name: str = "data"
    extra_labels: dict[str, np.ndarray] = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    feature_names: list[str] | None = None

    def __post_init__(self) -> None:
        self.labels = np.asarray(self.labels, dtype=np.int64)
        if self.true_labels is not None:
            self.true_labels = np.asarray(self.true_labels, dtype=np.int64)
        self.validate()

    # ------------------------------------------------------------------ properties
    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def is_image(self) -> bool:
        return self.x.ndim == 4

    @property
    def noise_rate(self) -> float | None:
        """Fraction of given labels that differ from the true ones (None if unknown)."""
        if self.true_labels is None:
            return None
        return float(np.mean(self.labels != self.true_labels))

    @property
    def is_noisy(self) -> np.ndarray | None:
        if self.true_labels is None:
            return None
        return self.labels != self.true_labels

    def __len__(self) -> int:
        return len(self.labels)

    # ------------------------------------------------------------------ checks
    def validate(self) -> None:
        """Stop early, naming the field and the fix, on inconsistent data."""
        n = len(self.x)
        if self.x.ndim not in (2, 4):
            raise DataError(
                f"{self.name}: x has shape {self.x.shape}; expected images [N,H,W,C] or features [N,D]."
            )
        if self.is_image and self.x.dtype != np.uint8:
            raise DataError(f"{self.name}: images must be uint8 NHWC, got {self.x.dtype}. Convert with "
                            "np.clip(x, 0, 255).astype(np.uint8) or pass features as [N, D] floats.")
        if len(self.labels) != n:
            raise DataError(
                f"{self.name}: {len(self.labels)} labels for {n} examples; the label count must equal "
                "the example count (check that labels and inputs come from the same file/order)."
            )
        if self.labels.ndim != 1:
            raise DataError(f"{self.name}: labels must be 1-D, got shape {self.labels.shape}.")
        c = self.num_classes
        if c < 2:
            raise DataError(f"{self.name}: need at least 2 classes, got class_names={self.class_names}.")
        from .labels import check_labels

        row = (lambda i: f"id {self.ids[i]!r}") if self.ids is not None and len(self.ids) == n else None
        for field_name, arr in (("labels", self.labels), ("true_labels", self.true_labels)):
            if arr is None or len(arr) == 0:
                continue
            if len(arr) != n:
                raise DataError(f"{self.name}: {field_name} has {len(arr)} entries for {n} examples.")
            check_labels(arr, c, name=field_name, where=self.name, row=row)
        if self.ids is not None and len(self.ids) != n:
            raise DataError(f"{self.name}: {len(self.ids)} ids for {n} examples.")
        if self.feature_names is not None and (self.is_image or len(self.feature_names) != self.x.shape[1]):
            raise DataError(f"{self.name}: {len(self.feature_names)} feature names for inputs of shape "
                            f"{list(self.x.shape)}; give one name per feature column (or none).")
        for key, arr in self.extra_labels.items():
            if len(arr) != n:
                raise DataError(f"{self.name}: extra label column {key!r} has {len(arr)} entries for {n}.")

    # ------------------------------------------------------------------ views
    def subset(self, index: np.ndarray, name: str | None = None) -> "LabeledData":
        index = np.asarray(index)
        return replace(
            self,
            x=self.x[index],
            labels=self.labels[index],
            true_labels=None if self.true_labels is None else self.true_labels[index],
            ids=None if self.ids is None else [self.ids[int(i)] for i in index],
            name=name or self.name,
            extra_labels={k: v[index] for k, v in self.extra_labels.items()},
        )

    def with_labels(self, labels: np.ndarray, name: str | None = None) -> "LabeledData":
        """Same examples, new given labels; the true labels are kept (or taken from the old given ones)."""
        true = self.true_labels if self.true_labels is not None else self.labels
        return replace(self, labels=np.asarray(labels, dtype=np.int64), true_labels=true,
                       name=name or self.name)


@dataclass
class DatasetSplits:
    """A training set (the noisy one) and, when available, a clean test set."""

    train: LabeledData
    test: LabeledData | None = None

    @property
    def num_classes(self) -> int:
        return self.train.num_classes
