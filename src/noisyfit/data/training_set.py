"""`TrainingSet`: what a method needs of its training samples, with or without noisyfit's Trainer.

Many robust methods look at the whole training set between steps (DivideMix's GMM over per-sample losses,
BKD's scores at the tipping epoch, Co-teaching's selection records) and some fetch extra samples by index
(DivideMix's unlabelled batch). A ``TrainingSet`` gives exactly those two things, plus the given labels:

* ``predict(fn, augment=...)``: ``fn`` over every sample in sample order (no grad, eval mode for ``model``,
  sharded over DDP ranks and gathered), the input normalised and optionally augmented;
* ``batch(index)``: a :class:`~noisyfit.data.batches.Batch` of any samples (views drawn on demand).

Build one from tensors (:meth:`TrainingSet.from_tensors`) or from any map-style ``torch.utils.data.Dataset``
returning ``(x, y)`` (:meth:`TrainingSet.from_dataset`; the sample index is the dataset index). A method is
then driven by a :class:`~noisyfit.methods.context.MethodContext` around it, in a plain PyTorch loop or in
Lightning; the Trainer builds the same objects for its own runs.

Example
-------
>>> import torch
>>> from noisyfit.data.training_set import TrainingSet
>>> ts = TrainingSet.from_tensors(torch.randn(100, 8), torch.randint(0, 3, (100,)))
>>> net = torch.nn.Linear(8, 3)
>>> ts.predict(net).shape
torch.Size([100, 3])
>>> ts.batch(torch.tensor([4, 2])).y.tolist() == ts.labels[[4, 2]].tolist()
True
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable

import numpy as np
import torch

from .augment import Augmenter, channel_stats
from .batches import Batch
from .store import DatasetRows, StreamedStore, TensorStore, store_channel_stats


@torch.no_grad()
def predict_store(store, fn: Callable[[torch.Tensor], torch.Tensor], augmenter: Augmenter, *, batch_size: int,
                  augment: str = "none", model: torch.nn.Module | None = None, autocast=None, rank: int = 0,
                  world_size: int = 1) -> torch.Tensor:
    """``fn`` over the normalised (optionally augmented) examples of a store, rows in order.

    ``model`` (if given) is put in eval mode for the pass and restored after. Each DDP rank predicts a
    contiguous share and the shares are gathered, so every rank gets all rows.
    """
    from noisyfit.engine import distributed as D

    n = len(store)
    per = math.ceil(n / world_size)
    lo, hi = min(rank * per, n), min((rank + 1) * per, n)
    was_training = model.training if model is not None else None
    if model is not None:
        model.eval()
    amp = autocast or contextlib.nullcontext
    outs = []
    try:
        with amp():
            for raw in store.chunks(lo, hi, batch_size):
                outs.append(fn(augmenter.view(raw, augment)).float())
        if outs:
            local = torch.cat(outs)
        else:  # an empty shard still needs the right trailing shape for the gather
            with amp():
                probe = fn(augmenter.view(store.take(torch.zeros(1, dtype=torch.long)), augment)).float()
            local = probe[:0]
    finally:
        if model is not None:
            model.train(was_training)
    return D.all_gather_varlen(local)  # the tensor itself outside torch.distributed


def class_indices(labels, device) -> torch.Tensor:
    """``labels`` as ``long [N]`` class indices on ``device``, else a DataError naming the first bad value (a user's
    trial: float labels were truncated in silence, np.linspace(0, 2, 50) became 0, 0, 0, ...; a label of -1 failed
    only in training, as an IndexError). Floats that are whole numbers are taken. The upper end, num_classes, is
    the method's: not known here."""
    from .labeled import DataError

    labels = torch.as_tensor(labels)
    if labels.ndim != 1:
        hint = " (one-hot? pass labels.argmax(1))" if labels.ndim == 2 else ""
        raise DataError(f"labels must be one class index per example [N], got shape {list(labels.shape)}{hint}")
    bad = (labels < 0) | (labels >= 2**31)  # no data set has 2 billion classes: a value that large is a mistake
    if labels.dtype.is_floating_point:
        bad |= (labels != labels.round()) | ~labels.isfinite()
    if bad.any():
        i = int(bad.nonzero()[0])
        raise DataError(f"labels must be class indices 0, 1, ..., num_classes - 1, got {labels[i].item():g} at "
                        f"position {i}; pass each example's class as a whole number (leave out unlabelled ones)")
    return labels.to(device=device, dtype=torch.long)


class TrainingSet:
    """The training samples of a run: given labels, batches by index and prediction passes in order.

    Parameters
    ----------
    store : TensorStore or StreamedStore
        Where the examples live (:mod:`noisyfit.data.store`).
    labels : tensor
        Given labels, ``long [N]``, on the device the method trains on.
    augmenter : Augmenter
        Normalisation and views (weak / strong) of the stored examples.
    eval_batch_size : int
        Rows per forward pass in :meth:`predict`.
    model : nn.Module, optional
        Put in eval mode during :meth:`predict` (the Trainer passes the method).
    autocast : callable, optional
        A context-manager factory for prediction passes (the Trainer's precision).
    rank, world_size : int
        DDP position (prediction passes are sharded and gathered).
    """

    def __init__(self, store, labels: torch.Tensor, augmenter: Augmenter, *, eval_batch_size: int = 1024,
                 model: torch.nn.Module | None = None, autocast=None, rank: int = 0, world_size: int = 1):
        if len(store) != len(labels):
            from .labeled import DataError

            raise DataError(f"{len(labels)} labels for {len(store)} examples; they must match one to one.")
        self.store, self.labels, self.augmenter = store, labels, augmenter
        self.eval_batch_size, self.model, self.autocast = eval_batch_size, model, autocast
        self.rank, self.world_size = rank, world_size

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_tensors(cls, x: torch.Tensor, labels, *, augmenter: Augmenter | None = None, **kw) -> "TrainingSet":
        """Examples as one tensor: ``uint8 [N, C, H, W]`` images (augmented and normalised with their channel
        statistics unless ``augmenter`` is given) or ``[N, D]`` feature rows (used as they are)."""
        x = torch.as_tensor(x)
        labels = class_indices(labels, x.device)
        image = x.ndim == 4
        if image and x.dtype != torch.uint8:
            from .labeled import DataError

            raise DataError(f"images must be uint8 [N, C, H, W], got {x.dtype}; noisyfit augments and normalises "
                            "them itself (pass feature rows as [N, D] floats).")
        if augmenter is None:
            if image:
                mean, std = channel_stats(x.permute(0, 2, 3, 1).cpu().numpy())
            else:
                mean, std = torch.zeros(1), torch.ones(1)
            augmenter = Augmenter(mean, std, is_image=image, channels_last=False).to(x.device)
        return cls(TensorStore(x if image else x.float()), labels, augmenter, **kw)

    @classmethod
    def from_dataset(cls, dataset, labels=None, *, device: torch.device | str = "cpu", workers: int = 0,
                     augmenter: Augmenter | None = None, **kw) -> "TrainingSet":
        """Any map-style dataset whose items are ``(x, y)``: ``x`` a ``uint8`` image (HWC array, PIL image or CHW
        tensor, before any ToTensor/Normalize) or a 1-D feature row. The sample index of item ``i`` is ``i``.

        ``labels`` default to ``dataset.targets`` when it exists, else to each item's ``y`` (one pass over the
        dataset). ``workers`` > 0 reads batches in DataLoader worker processes.
        """
        device = torch.device(device)
        if labels is None:
            labels = getattr(dataset, "targets", None)
        if labels is None:
            labels = [float(dataset[i][1]) for i in range(len(dataset))]  # int() would truncate 1.5 unseen
        labels = class_indices(np.asarray(labels), device)
        store = StreamedStore(DatasetRows(dataset), device, workers)
        image = len(store.sample_shape) == 3
        if augmenter is None:
            if image:
                mean, std = store_channel_stats(store)
            else:
                mean, std = torch.zeros(1), torch.ones(1)
            augmenter = Augmenter(mean, std, is_image=image, channels_last=False).to(device)
        return cls(store, labels, augmenter, **kw)

    def to(self, device: torch.device | str) -> "TrainingSet":
        """Move the labels, the stored examples (or where streamed batches are sent) and the augmenter."""
        device = torch.device(device)
        self.labels = self.labels.to(device)
        self.store.to(device)
        self.augmenter = self.augmenter.to(device)
        return self

    # ------------------------------------------------------------------ what methods use
    def __len__(self) -> int:
        return len(self.labels)

    @property
    def device(self) -> torch.device:
        return self.labels.device

    @property
    def is_image(self) -> bool:
        return self.augmenter.is_image

    def batch(self, index: torch.Tensor) -> Batch:
        """A Batch of the samples ``index`` (weak / strong / plain views drawn on demand)."""
        index = torch.as_tensor(index, dtype=torch.long, device=self.device)
        return Batch(index=index, y=self.labels[index], raw=self.store.take(index), augmenter=self.augmenter)

    def predict(self, fn: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int | None = None,
                augment: str = "none") -> torch.Tensor:
        """``fn(x)`` for every sample, rows in sample order (no grad; ``augment``: none, weak or strong)."""
        return predict_store(self.store, fn, self.augmenter, batch_size=batch_size or self.eval_batch_size,
                             augment=augment, model=self.model, autocast=self.autocast, rank=self.rank,
                             world_size=self.world_size)
