"""The Method contract and the method registry.

Methods outside this package (a researcher's own, in their own files) are reached in three ways:

* ``module:Name`` or ``path/to/file.py:Name`` as the method name (``--method mymethods.boot:SoftBootstrap``,
  ``method.name`` in a config): the module is imported (``module`` from ``sys.path``, e.g. with ``PYTHONPATH``;
  a ``.py`` path directly) and ``Name`` is a :class:`Method` subclass in it or a name it registered. The run
  records the spec as its method name, so ``--resume``, ``predict`` and re-running its ``config.yaml`` find the
  method again;
* an installed package that declares an entry point in the group ``noisyfit.methods`` (its module registers its
  methods when imported): then its registered names work like the built-in ones (``--method bootstrap``);
* in Python, importing the module that calls :func:`register_method` before using the name.

A method holds its networks and its per-sample state, and nothing about loops, devices or files:
the Trainer owns those. Per-sample state lives in buffers whose first dimension is the training-set
size; list their names in ``per_sample_state`` so the trainer can gather them across DDP ranks and
save them in checkpoints (buffers are in ``state_dict`` already, as a Method is an ``nn.Module``).
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Protocol

import numpy as np
import torch
import torch.nn as nn

from noisyfit.models.backbones import Backbone, UnknownNameError

if TYPE_CHECKING:  # pragma: no cover
    from noisyfit.data.batches import Batch

_METHODS: dict[str, type["Method"]] = {}


def register_method(name: str):
    """Class decorator: make a :class:`Method` subclass available as ``--method NAME`` (``method.name``).

    The registry is filled by importing the module that defines the class; for a method outside noisyfit see the
    module docstring (``module:Name`` names, the ``noisyfit.methods`` entry-point group)."""
    def wrap(cls):
        cls.name = name
        _METHODS[name] = cls
        return cls

    return wrap


#: entry-point group of installed packages that register methods (loaded with the built-in methods)
ENTRY_POINT_GROUP = "noisyfit.methods"


def list_methods() -> list[str]:
    _import_builtin_methods()
    return sorted(_METHODS)


def get_method_class(name: str) -> type["Method"]:
    """The class of a registered method, or of a ``module:Name`` / ``file.py:Name`` spec (module docstring)."""
    _import_builtin_methods()
    if name in _METHODS:
        return _METHODS[name]
    if ":" in name:
        return _external_method(name)
    raise UnknownNameError(f"unknown method {name!r}; choose one of {', '.join(sorted(_METHODS))}, or name your own "
                           "as module:ClassName or path/to/file.py:ClassName")


def _external_method(spec: str) -> type["Method"]:
    """Import ``module`` (or the file) of ``module:Name`` and return the Method class ``Name`` names."""
    import hashlib
    import importlib
    import importlib.util
    import sys
    from pathlib import Path

    where, _, attr = spec.rpartition(":")
    if not where or not attr:
        raise UnknownNameError(f"method {spec!r}: write module:ClassName or path/to/file.py:ClassName")
    try:
        if where.endswith(".py"):
            path = Path(where).expanduser().resolve()
            if not path.is_file():
                raise UnknownNameError(f"method {spec!r}: no file {path}")
            module_name = "noisyfit_external_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]
            module = sys.modules.get(module_name)
            if module is None:
                loader_spec = importlib.util.spec_from_file_location(module_name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[module_name] = module  # dataclasses and pickling look the module up by name
                try:
                    loader_spec.loader.exec_module(module)
                except BaseException:  # the file's own error, with its traceback; no half-imported module kept
                    del sys.modules[module_name]
                    raise
        else:
            module = importlib.import_module(where)
    except ImportError as err:
        raise UnknownNameError(f"method {spec!r}: cannot import {where!r} ({err}); put its folder on PYTHONPATH, or "
                               "give the path of the .py file") from err
    found = getattr(module, attr, None)
    if isinstance(found, type) and issubclass(found, Method):
        if "name" not in vars(found):  # not registered itself (a parent's name is not its): known by its spec
            found.name = spec
        return found
    if attr in _METHODS:  # a name the module registered
        return _METHODS[attr]
    if found is not None:
        raise UnknownNameError(f"method {spec!r}: {attr!r} in {where} is a {type(found).__name__}, not a subclass of "
                               "noisyfit.methods.base.Method")
    raise UnknownNameError(f"method {spec!r}: {where} has no Method subclass or registered method named {attr!r}")


def absolute_method_spec(name: str) -> str:
    """``mine/boot.py:Boot`` -> ``/abs/mine/boot.py:Boot`` when the file exists relative to the working folder, so
    a run's config finds its method from any folder (``--resume``, ``predict``); anything else unchanged."""
    from noisyfit.data.paths import absolute_if_here

    where, sep, attr = name.rpartition(":")
    if not sep or not where.endswith(".py"):
        return name
    return f"{absolute_if_here(where, is_file=True)}:{attr}"


def _import_builtin_methods() -> None:
    # Every module of this package registers its methods on import; importing them lazily avoids
    # an import cycle with `base` and lets a new method file register itself by existing.
    import importlib
    import pkgutil

    import noisyfit.methods as pkg

    for info in pkgutil.iter_modules(pkg.__path__):
        if info.name != "base" and not info.name.startswith("_"):
            importlib.import_module(f"noisyfit.methods.{info.name}")
    global _entry_points_loaded
    if not _entry_points_loaded:  # installed packages' methods, once per process
        _entry_points_loaded = True
        from importlib.metadata import entry_points

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()  # importing the module registers its methods
            except Exception as err:  # a broken plugin must not take the built-in methods down with it
                import warnings

                warnings.warn(f"the {ENTRY_POINT_GROUP} entry point {ep.name!r} ({ep.value}) failed to load: {err}",
                              stacklevel=3)


_entry_points_loaded = False


class TrainContext(Protocol):
    """What a method may ask of the trainer (selection passes, schedule, DDP), without owning the loop."""

    epoch: int
    num_epochs: int
    rank: int
    world_size: int
    device: torch.device
    labels: torch.Tensor  # given labels of the training set, on the device
    seed: int  # the run's seed (methods that seed their own fits derive from it)

    optimizer: torch.optim.Optimizer  # for schedule-like adjustments only (e.g. Co-teaching's beta1)

    def predict_train(self, fn: Callable[[torch.Tensor], torch.Tensor], *, batch_size: int | None = None,
                      augment: str = "none") -> torch.Tensor:
        """``fn(x)`` over the whole training set (eval mode, no grad), rows in sample order, all ranks."""

    def batch_of(self, index: torch.Tensor) -> "Batch":
        """A Batch of arbitrary training samples (e.g. an extra unlabelled batch drawn by the method)."""

    def all_gather_cat(self, t: torch.Tensor) -> torch.Tensor: ...


class Method(nn.Module):
    """Base class. Subclasses set ``Hyper`` (a dataclass of hyper-parameters with paper defaults).

    Parameters
    ----------
    hyper : dict
        Overrides of the ``Hyper`` defaults; unknown keys raise an error listing the valid ones.
    num_classes, num_samples : int
        Class count and training-set size (per-sample buffers are sized by it).
    make_backbone : callable
        Returns a fresh backbone (called once per network the method needs).
    """

    name: ClassVar[str] = "base"
    #: one line for `noisyfit list`: what the method does, its paper, how many networks it trains
    summary: ClassVar[str] = ""

    @dataclasses.dataclass
    class Hyper:
        pass

    #: names of buffers indexed by training sample (dimension 0), gathered across ranks each epoch
    per_sample_state: ClassVar[tuple[str, ...]] = ()
    #: True when training draws strong views (``batch.strong()``): then ``train.strong_policy`` and
    #: ``train.strong_draw`` change what is measured, and the bench never averages across them
    uses_strong_views: ClassVar[bool] = False
    #: default threshold on clean_scores below which a sample is flagged noisy
    flag_threshold: ClassVar[float] = 0.5
    #: allowed interval of numeric hyper-parameters (``"[0, 1)"``, ``"(0, inf)"``; see noisyfit.ranges), checked
    #: by :meth:`resolve_hyper`; a subclass's entries add to (or replace) its parents'
    hyper_ranges: ClassVar[dict[str, str]] = {}

    def __init__(self, hyper: dict | None, num_classes: int, num_samples: int,
                 make_backbone: Callable[[], Backbone]):
        super().__init__()
        self.hp = self.resolve_hyper(hyper)
        self.num_classes = num_classes
        self.num_samples = num_samples
        self.make_backbone = make_backbone
        # Probabilities of an eval-mode pass over the training set after the last epoch: the default
        # per-sample signal (CE's clean score is the probability of the given label).
        self.register_buffer("final_probs", torch.zeros(0), persistent=True)

    # ---------------------------------------------------------------- hyper-parameters
    @classmethod
    def resolve_hyper(cls, hyper: dict | None) -> Any:
        hyper = dict(hyper or {})
        valid = {f.name for f in dataclasses.fields(cls.Hyper)}
        unknown = sorted(set(hyper) - valid)
        if unknown:
            raise ValueError(f"method {cls.name!r}: unknown hyper-parameter(s) {unknown}; "
                             f"valid: {sorted(valid) or 'none'}")
        # YAML reads "1e-3" as a string: give each value the type of the field's default.
        from noisyfit.config import ConfigError, coerce_value

        defaults = cls.Hyper()
        try:
            hyper = {k: coerce_value(defaults, k, v, f"method {cls.name!r}: method.args") for k, v in hyper.items()}
        except ConfigError as e:
            raise ValueError(str(e)) from None
        hp = cls.Hyper(**hyper)
        cls.check_hyper_ranges(hp)
        return hp

    @classmethod
    def check_hyper_ranges(cls, hp) -> None:
        """A ValueError naming every hyper-parameter outside its ``hyper_ranges`` interval."""
        from noisyfit.ranges import out_of_range

        ranges: dict[str, str] = {}
        for klass in reversed(cls.__mro__):  # parents first, so a subclass overrides
            ranges.update(vars(klass).get("hyper_ranges", {}))
        problems = [p for name, spec in ranges.items() if hasattr(hp, name)
                    for p in [out_of_range(name, getattr(hp, name), spec)] if p]
        if problems:
            raise ValueError(f"method {cls.name!r}: " + "; ".join(problems))

    def hyper_dict(self) -> dict:
        return dataclasses.asdict(self.hp)

    # ---------------------------------------------------------------- the contract
    def attach(self, ctx: TrainContext) -> None:
        """Called once by the trainer before training; methods may keep ``ctx`` (not a module)."""
        object.__setattr__(self, "ctx", ctx)

    def param_groups(self) -> list[dict]:
        """What the optimiser trains. Groups may carry their own lr / weight_decay."""
        return [{"params": [p for p in self.parameters() if p.requires_grad]}]

    def on_epoch_start(self, epoch: int, ctx: TrainContext) -> None:
        """Selection, GMM fits, schedules. Called on every rank before the epoch's first step.

        The default resets the method's :class:`~noisyfit.ops.epoch_record.EpochRecord` submodules (an
        override that keeps records calls ``super().on_epoch_start``)."""
        for record in self._epoch_records().values():
            record.reset()

    def _epoch_records(self) -> dict:
        from noisyfit.ops.epoch_record import EpochRecord

        return {name: m for name, m in self.named_modules() if isinstance(m, EpochRecord)}

    def training_step(self, batch: "Batch", epoch: int) -> dict:
        """Return ``{'loss': scalar tensor, ...floats to log}`` for one batch."""
        raise NotImplementedError

    def after_optimizer_step(self, epoch: int) -> None:
        """Called after every optimiser step (EMA teachers, weight averaging)."""

    def on_epoch_end(self, epoch: int, ctx: TrainContext) -> None:
        """Called after per-sample state has been gathered across ranks."""

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def extra_eval_heads(self) -> dict[str, Callable[[torch.Tensor], torch.Tensor]]:
        """Other predictors to evaluate like ``predict_logits`` (e.g. a code-decoding head, a peer network).

        The trainer logs ``val_acc_<name>`` and ``test_acc_<name>`` for each in every evaluated epoch;
        model selection and ``test_acc`` still use ``predict_logits`` only.
        """
        return {}

    def on_fit_end(self, ctx: TrainContext) -> None:
        """After the last epoch: cache the eval-mode probabilities over the training set."""
        logits = ctx.predict_train(self.predict_logits)
        self.final_probs = torch.softmax(logits.float(), dim=1)

    # ---------------------------------------------------------------- per-sample outputs
    def clean_scores(self, labels: np.ndarray) -> np.ndarray | None:
        """P(the given label is right) per training sample, higher = cleaner. Default: p(given label)."""
        if self.final_probs.numel() == 0:
            return None
        probs = self.final_probs.cpu().numpy()
        return probs[np.arange(len(labels)), labels]

    def noisy_flags(self, labels: np.ndarray) -> np.ndarray | None:
        """Boolean mask of samples the method considers mislabelled. Default: clean score < threshold."""
        scores = self.clean_scores(labels)
        return None if scores is None else scores < self.flag_threshold

    def suggested_labels(self) -> np.ndarray | None:
        """The label the method would give each sample (default: argmax of the final probabilities)."""
        if self.final_probs.numel() == 0:
            return None
        return self.final_probs.argmax(dim=1).cpu().numpy()

    def estimated_noise_rate(self, labels: np.ndarray) -> float | None:
        flags = self.noisy_flags(labels)
        return None if flags is None else float(np.mean(flags))

    def flag_reason(self) -> str:
        """A short human-readable statement of the flagging rule, for audits."""
        return f"p(given label) < {self.flag_threshold}"

    def health(self, epoch: int) -> dict[str, float | np.ndarray]:
        """What the method's mechanism did this epoch, for the record (called after ``on_epoch_end``).

        Whether a method did what its paper says shows here: a selection's size and purity, a
        threshold, a split point. Return plain values; the trainer turns them into per-epoch figures
        under ``health`` in metrics.jsonl and results.json (rank 0, after the DDP gather):

        * a float or int: logged as is (e.g. BKD's tipping epoch, PEMM's minimum centre distance);
        * a boolean array over the training samples (e.g. Co-teaching's selected samples): logged as
          ``<name>_share``, and when the true labels are known, ``<name>_precision`` (the share of
          selected samples whose given label is right) and ``<name>_recall`` (the share of right
          labels selected);
        * a float array over the training samples, higher = cleaner (e.g. CAR's confidence tau):
          logged as ``<name>_auroc`` against the truth when it is known.

        The method never sees the true labels: the trainer scores these values against them.
        Default: nothing.
        """
        return {}

    def per_sample_extras(self) -> dict[str, np.ndarray | None]:
        """Extra per-training-sample arrays written to per_sample.npz (e.g. BKD's groups). Default: none."""
        return {}

    # ---------------------------------------------------------------- checkpoints
    def transient_state(self) -> dict:
        """State an epoch builds up between steps outside buffers and extra state (e.g. a running sum,
        the queue of unlabelled samples), saved in mid-epoch checkpoints. Default: the method's
        :class:`~noisyfit.ops.epoch_record.EpochRecord` submodules, by attribute name."""
        return {name: record.state() for name, record in self._epoch_records().items()}

    def load_transient_state(self, state: dict) -> None:
        """Restore :meth:`transient_state` when a run resumes inside an epoch (``on_epoch_start`` is not
        called again for that epoch). Default: the epoch records (a record missing from an older
        checkpoint is reset)."""
        for name, record in self._epoch_records().items():
            record.load(state.get(name))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # Buffers whose size is only known after training (final_probs) must be resized before loading.
        for name, buf in list(self.named_buffers()):
            if name in state_dict and state_dict[name].shape != buf.shape:
                module, _, leaf = name.rpartition(".")
                owner = self.get_submodule(module) if module else self
                owner._buffers[leaf] = torch.empty_like(state_dict[name], device=buf.device)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
