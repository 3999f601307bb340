"""`MethodContext`: the TrainContext a method is attached to, built around a public TrainingSet.

The Trainer gives every method one (``method.attach(ctx)``); so can any other loop. It holds what a method
may ask between steps: the training set (prediction passes, batches by index, labels), the epoch and the
number of epochs, the seed, the DDP position and, for schedule-like adjustments, the optimiser.

Example: a method in a plain PyTorch loop
-----------------------------------------
>>> import torch
>>> from noisyfit.data.training_set import TrainingSet
>>> from noisyfit.methods import get_method_class
>>> from noisyfit.methods.context import MethodContext
>>> from noisyfit.models.backbones import create_backbone
>>> x, y = torch.randn(256, 8), torch.randint(0, 3, (256,))
>>> ts = TrainingSet.from_tensors(x, y)
>>> make = lambda: create_backbone("mlp", num_classes=3, input_shape=(8,), hidden=[16])
>>> method = get_method_class("elr")({}, 3, len(ts), make)
>>> opt = torch.optim.SGD(method.param_groups(), lr=0.05)  # its groups: some carry their own lr or decay
>>> ctx = MethodContext(ts, num_epochs=2, optimizer=opt)
>>> method.attach(ctx)
>>> ts.model = method                     # eval mode during the method's prediction passes
>>> for epoch in range(2):
...     ctx.epoch = epoch
...     method.on_epoch_start(epoch, ctx)
...     for index in torch.randperm(len(ts)).split(64):
...         loss = method.training_step(ts.batch(index), epoch)["loss"]
...         opt.zero_grad(); loss.backward(); opt.step()
...         method.after_optimizer_step(epoch)
...     method.on_epoch_end(epoch, ctx)
>>> method.on_fit_end(ctx)
>>> method.clean_scores(y.numpy()).shape    # per sample: how likely its given label is right
(256,)
>>> _ = method.eval()                      # then predict new inputs (a method is a module without forward)
>>> with torch.no_grad():
...     method.predict_logits(torch.randn(5, 8)).shape
torch.Size([5, 3])

``get_method_class(name)(args, num_classes, num_samples, make_backbone)``: ``args`` is the method's
``method.args`` (``{}`` for its paper defaults; unknown names are refused), ``make_backbone`` a function
that returns a fresh network (two-network methods call it twice). ``predict_logits`` is the method's
prediction (Co-teaching's first network, DivideMix's two networks averaged...), the one the Trainer's
accuracies use.
"""

from __future__ import annotations

import torch

from noisyfit.data.training_set import TrainingSet


class MethodContext:
    """A method's view of its run (see :class:`noisyfit.methods.base.TrainContext`).

    Parameters
    ----------
    train_set : TrainingSet
    num_epochs : int
        The length of the run (schedules and warm-ups read it).
    seed : int
        The run's seed (methods that seed their own fits, e.g. DivideMix's GMMs, derive from it).
    optimizer : torch.optim.Optimizer, optional
        Only for schedule-like adjustments a method makes (Co-teaching's Adam beta1).
    backward : callable, optional
        ``backward(loss)`` back-propagates one part of a step's loss (with the loop's loss scaling). Where the
        loop offers it, a method whose loss is a sum over networks that share no parameters (DivideMix,
        PLReMix) back-propagates each network's part as soon as it is computed, so only one network's
        graph is held at a time, and returns the step's outputs with ``"backward_done": True``; the loop
        then skips its own backward. Where it is None (the default, and the plain loop above) the loop
        back-propagates the returned loss as usual. The gradients are the same either way.
    """

    def __init__(self, train_set: TrainingSet, *, num_epochs: int, seed: int = 0,
                 optimizer: torch.optim.Optimizer | None = None, backward=None):
        self.train_set = train_set
        self.num_epochs = num_epochs
        self.seed = seed
        self.optimizer = optimizer
        self.backward = backward
        self.epoch = 0

    @property
    def labels(self) -> torch.Tensor:
        return self.train_set.labels

    @property
    def device(self) -> torch.device:
        return self.train_set.device

    @property
    def rank(self) -> int:
        return self.train_set.rank

    @property
    def world_size(self) -> int:
        return self.train_set.world_size

    def predict_train(self, fn, *, batch_size: int | None = None, augment: str = "none") -> torch.Tensor:
        return self.train_set.predict(fn, batch_size=batch_size, augment=augment)

    def batch_of(self, index: torch.Tensor):
        return self.train_set.batch(index)

    def all_gather_cat(self, t: torch.Tensor) -> torch.Tensor:
        from noisyfit.engine import distributed as D

        return D.all_gather_cat(t)  # the tensor itself outside torch.distributed
