"""Any registered noisyfit method inside a PyTorch Lightning run (optional extra: ``pip install noisyfit[lightning]``).

:class:`NoisyMethodModule` is a ``LightningModule`` around a noisyfit :class:`~noisyfit.methods.base.Method` and
its :class:`~noisyfit.data.training_set.TrainingSet`. Lightning owns the loop, devices, precision, logging and
checkpoint files; the module calls the method's hooks where noisyfit's own Trainer does:

* ``on_train_epoch_start`` -> ``method.on_epoch_start`` (selections, GMM fits, schedules);
* ``training_step`` -> ``method.training_step`` on ``train_set.batch(index)`` (the batch carries sample indices);
* ``on_train_batch_end`` -> ``method.after_optimizer_step`` (EMA teachers);
* ``on_train_epoch_end`` -> per-sample state gathered across DDP ranks, then ``method.on_epoch_end``;
* ``on_train_end`` -> ``method.on_fit_end`` (the final per-sample probabilities behind clean scores and flags).

Batches are the noisyfit epoch order (a seeded permutation per epoch, each rank its slice of every global
batch), so a Lightning run and a native run with the same seed see the same samples in the same steps; the
learning rate follows ``optim``'s schedule per step as in the native trainer. Under Lightning's DDP strategy
each rank trains on its slice and the per-sample buffers are gathered at every epoch end, as in noisyfit's own
DDP (those buffers are kept out of the buffer broadcast of Lightning's DDP wrapper, which would otherwise
overwrite the other ranks' rows with rank 0's); methods whose step leaves some parameters unused need
``strategy=DDPStrategy(find_unused_parameters=True)``.

Example
-------
    import lightning as L
    from noisyfit.data.training_set import TrainingSet
    from noisyfit.integrations.lightning import NoisyMethodModule

    ts = TrainingSet.from_tensors(x, noisy_y)            # or TrainingSet.from_dataset(my_dataset)
    module = NoisyMethodModule.create("coteaching", ts, backbone="mlp", num_epochs=20, batch_size=128,
                                      optim={"name": "adam", "lr": 0.001})
    L.Trainer(max_epochs=20).fit(module)
    flags = module.method.noisy_flags(noisy_y.numpy())   # the method's own verdict per sample
"""

from __future__ import annotations

import dataclasses

import lightning as L
import torch

from noisyfit.config import OptimConfig
from noisyfit.data.batches import epoch_index_batches
from noisyfit.data.training_set import TrainingSet
from noisyfit.engine import distributed as D
from noisyfit.engine.optim import build_optimizer, lr_factor, set_lr
from noisyfit.methods.base import Method, get_method_class
from noisyfit.methods.context import MethodContext


class _EpochIndices(torch.utils.data.IterableDataset):
    """This rank's index batches of the module's current epoch (read when an epoch's iteration starts)."""

    def __init__(self, module: "NoisyMethodModule") -> None:
        self.module = module

    def __iter__(self):
        m = self.module
        return iter(epoch_index_batches(len(m.train_set), batch_size=m.batch_size, seed=m.seed, epoch=m.current_epoch,
                                        rank=m.train_set.rank, world_size=m.train_set.world_size))

    def __len__(self) -> int:
        m = self.module
        return len(epoch_index_batches(len(m.train_set), batch_size=m.batch_size, seed=m.seed, epoch=0,
                                       rank=m.train_set.rank, world_size=m.train_set.world_size))


class NoisyMethodModule(L.LightningModule):
    """A noisyfit method as a LightningModule.

    Parameters
    ----------
    method : Method
        A built method (``get_method_class(name)(hyper, num_classes, len(train_set), make_backbone)``), or use
        :meth:`create`.
    train_set : TrainingSet
        The training samples; the module moves its labels and stored examples with the module's device.
    num_epochs : int
        The run's length as the method sees it (warm-ups, ramps, schedules); give Lightning the same
        ``max_epochs``.
    batch_size : int
        The global batch (split over DDP ranks).
    optim : dict or OptimConfig, optional
        noisyfit's optimiser settings (``name``, ``lr``, ``schedule``, ...; defaults of :class:`OptimConfig`).
    seed : int
        The epoch order's seed, and the seed the method's own fits derive from.
    """

    def __init__(self, method: Method, train_set: TrainingSet, *, num_epochs: int, batch_size: int = 128,
                 optim: dict | OptimConfig | None = None, seed: int = 0):
        super().__init__()
        self.method = method
        self.train_set = train_set
        self.num_epochs, self.batch_size, self.seed = num_epochs, batch_size, seed
        self.optim_cfg = optim if isinstance(optim, OptimConfig) else _optim_config(optim or {})
        self.ctx = MethodContext(train_set, num_epochs=num_epochs, seed=seed)
        self._visited: list[torch.Tensor] = []
        self._steps_per_epoch = 0

    @classmethod
    def create(cls, method: str, train_set: TrainingSet, *, backbone: str = "mlp", backbone_args: dict | None = None,
               hyper: dict | None = None, **kw) -> "NoisyMethodModule":
        """Build the registered method ``method`` with noisyfit backbones for ``train_set``'s inputs."""
        from noisyfit.models.backbones import create_backbone

        num_classes = int(train_set.labels.max()) + 1
        shape = train_set.store.sample_shape

        def make_backbone():
            return create_backbone(backbone, num_classes=num_classes, input_shape=shape, **(backbone_args or {}))

        return cls(get_method_class(method)(hyper, num_classes, len(train_set), make_backbone), train_set, **kw)

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        ts = self.train_set
        ts.rank, ts.world_size = self.global_rank, self.trainer.world_size
        ts.model = self.method
        self.method.attach(self.ctx)
        # Lightning's DDP broadcasts every buffer from rank 0 before each forward, which would overwrite the rows
        # other ranks wrote into per-sample buffers (ELR's targets, ...) before the epoch-end gather sees them;
        # those buffers are kept out of DDP's sync (PyTorch's hook for it) and gathered by on_train_epoch_end.
        own = [f"method.{name}" for name in (*self.method.per_sample_state, "final_probs")]
        torch.nn.parallel.DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(
            self, [name for name, _ in self.named_buffers() if name in own])

    def on_fit_start(self) -> None:
        self.train_set.to(self.device)  # the data follow the module to its device

    def configure_optimizers(self):
        self._optimizer = build_optimizer(self.method.param_groups(), self.optim_cfg, module=self.method)
        self.ctx.optimizer = self._optimizer  # for the methods that adjust it (Co-teaching's Adam beta1)
        return self._optimizer

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        if self.optim_cfg.grad_clip:  # optim.grad_clip, as the native trainer clips (Lightning's own flag still works)
            params = [p for g in optimizer.param_groups for p in g["params"]]
            torch.nn.utils.clip_grad_norm_(params, self.optim_cfg.grad_clip)
        else:
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def train_dataloader(self):
        loader = torch.utils.data.DataLoader(_EpochIndices(self), batch_size=None)
        self._steps_per_epoch = len(loader.dataset)
        return loader

    # ------------------------------------------------------------------ the method's hooks
    def on_train_epoch_start(self) -> None:
        epoch = self.current_epoch
        self.ctx.epoch = epoch
        self._visited = []
        self.method.train()
        self.method.on_epoch_start(epoch, self.ctx)

    def on_train_batch_start(self, batch, batch_idx: int) -> None:
        progress = self.current_epoch + batch_idx / max(self._steps_per_epoch, 1)
        set_lr(self._optimizer, lr_factor(self.optim_cfg, progress, self.num_epochs), progress)

    def training_step(self, index: torch.Tensor, batch_idx: int) -> torch.Tensor:
        index = index.to(self.train_set.device)
        out = self.method.training_step(self.train_set.batch(index), self.current_epoch)
        self._visited.append(index)
        for key, value in out.items():
            self.log("train_loss" if key == "loss" else key, value.detach() if torch.is_tensor(value) else value,
                     on_step=False, on_epoch=True, batch_size=len(index))
        return out["loss"]

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        self.method.after_optimizer_step(self.current_epoch)

    def on_train_epoch_end(self) -> None:
        D.sync_method_state(self.method, self._visited, self.device)
        self.method.on_epoch_end(self.current_epoch, self.ctx)

    def on_train_end(self) -> None:
        self.method.on_fit_end(self.ctx)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of normalised inputs (``train_set.augmenter.normalize`` of raw examples)."""
        return self.method.predict_logits(x)


def _optim_config(values: dict) -> OptimConfig:
    known = {f.name for f in dataclasses.fields(OptimConfig)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ValueError(f"optim: unknown setting(s) {unknown}; valid: {sorted(known)}")
    return OptimConfig(**values)
