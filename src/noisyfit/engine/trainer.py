"""The Trainer owns the loop: devices, precision, optimiser steps, DDP, evaluation, checkpoints, logs.

A Method (``noisyfit.methods``) only says what one step computes and what per-sample state it keeps.
Each epoch the trainer evaluates test accuracy and accuracy on a held-out *noisy* validation split;
the epoch with the best validation accuracy is the selected model (never chosen by test accuracy).
A checkpoint is written atomically after every epoch; ``resume=True`` continues exactly as an
uninterrupted run would (same seed, CPU: bitwise; GPU: up to non-deterministic kernels).
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from noisyfit import __version__
from noisyfit.config import Config, ConfigError
from noisyfit.data.augment import Augmenter, channel_stats
from noisyfit.data.batches import iterate_batches, num_batches
from noisyfit.data.labeled import DatasetSplits
from noisyfit.data.noise import parse_noise_spec
from noisyfit.data.store import TensorStore, make_store, store_channel_stats
from noisyfit.data.training_set import TrainingSet, predict_store
from noisyfit.engine import distributed as D
from noisyfit.engine.checkpoint import (atomic_write_bytes, load_checkpoint, rng_state,
                                        save_checkpoint, set_rng_state)
from noisyfit.engine.logging import RunLogger
from noisyfit.engine.machine import OthersCpuMeter, peak_memory_mb, process_commit, sharing_hint, usable_cpus
from noisyfit.engine.results import per_sample_outputs, run_results, write_run_outputs
from noisyfit.engine.step_sums import StepSums
from noisyfit.engine.optim import build_optimizer, lr_factor, set_lr
from noisyfit.engine.precision import autocast_context, emulated_bf16_warning
from noisyfit.engine.ema import eval_weights
from noisyfit.engine.recipe import check_settings, init_backbone_from_data, setup_recipe, start_epoch
from noisyfit.engine.tta import with_tta
from noisyfit.engine.run_data import RunData, feature_stats, prepare_run_data, to_device_tensor
from noisyfit.methods.base import Method, get_method_class
from noisyfit.methods.context import MethodContext
from noisyfit.metrics import health_figures
from noisyfit.models.backbones import check_backbone_name, create_backbone



class TrainingError(RuntimeError):
    """Training cannot go on (e.g. a non-finite loss); the message says what to change."""


#: said when images meet the default backbone: a new user's photo folder otherwise trains an MLP on pixels silently.
#: The lr advice: new users' fastcnn on a 600-image folder stayed at chance at the default lr 0.1 and reached 77% at
#: 0.01 (two trials at the prompt, not a benchmark); the 3,000-image mixed-folder benchmark's first epoch at lr
#: 0.05 averaged 1.6x a uniform guess's loss (benchmarks/results/mixed-folder.json)
PIXEL_MLP_WARNING = ("model.backbone=mlp (the default) treats each pixel as a separate number and sees no shapes, so "
                     "it learns little from photos. For images use a convolutional backbone (--backbone fastcnn, or "
                     "preact_resnet18; in Python NoisyClassifier(backbone='fastcnn'); on a few thousand images or "
                     "fewer also a lower learning rate, --lr 0.01); to audit photos, --embedder with a network "
                     "pretrained on photos (README: 'Audit with an embedder').")


#: a first epoch whose mean cross-entropy exceeds this multiple of a uniform guess's (ln C) has diverged
UNSTABLE_LOSS_FACTOR = 3.0


def unstable_loss_warning(row: dict, cfg, num_classes: int) -> str | None:
    """A warning when plain cross-entropy's first epoch averaged far above the loss of a uniform guess, else None.

    A model that predicts nothing scores ln C; an epoch mean several times that means the steps overshot (a
    learning rate too high for this model and data set, no warm-up). A new user's fastcnn on a 600-image folder
    at the default lr 0.1 averaged 7.1 against ln 4 = 1.39 in its first epoch and then never learned; the same
    run at lr 0.01 averaged 2.0 and learned (single runs observed at the prompt, not a benchmark).
    Only for ``ce``: other methods' losses add terms of other scales."""
    loss = row.get("train_loss")
    if cfg.method.name != "ce" or loss is None or num_classes < 2:
        return None
    chance = math.log(num_classes)
    if loss <= UNSTABLE_LOSS_FACTOR * chance:
        return None
    o = cfg.optim
    warm = ("the triangle schedule's ramp" if o.schedule == "triangle"
            else f"{o.warmup_epochs:g} epochs of warm-up" if o.warmup_epochs else "no warm-up")
    return (f"the first epoch's mean training loss, {loss:.2f}, is {loss / chance:.1f}x that of a uniform guess "
            f"(ln {num_classes} = {chance:.2f}): the steps overshoot, so the model may never learn. The learning rate "
            f"is likely too high for this model and data (optim.lr={o.lr:g} with {o.name}, {warm}): try "
            f"--lr {o.lr / 10:g}.")


#: a final accuracy below chance + this share of the distance from chance to 1 counts as near chance (10 classes:
#: under 19%; 2 classes: under 55%, which a good model on 40%-noisy validation labels still clears)
NEAR_CHANCE_MARGIN = 0.1


def weak_model_warning(results: dict, cfg) -> str | None:
    """A warning when a finished run's model is near chance, else None: the selected epoch's test accuracy (else
    its noisy-validation accuracy) under chance + :data:`NEAR_CHANCE_MARGIN` of the way to 1.

    A new user's GCE on a 600-image folder ended at 13% for 10 classes (with "100% noise") and exit 0 in silence:
    its bounded loss never trips :func:`unstable_loss_warning` (observed at the prompt, not a benchmark). Many
    flags alone are not said here: an audit says them (noisyfit.detect.guardrails.run_quality), and
    NoisyClassifier at fit."""
    num_classes = (results.get("data") or {}).get("num_classes") or 0
    # without a validation split nothing is selected: its val_acc is the trainer's -1 placeholder, not an accuracy
    # (read as one, every run without a hold-out was called near chance, a user trial)
    sel = results.get("selected") or {} if (results.get("selected") or {}).get("epoch") is not None else {}
    fin = results.get("final") or {}
    acc, which = next(((v, k) for k, v in (("test", sel.get("test_acc")), ("validation", sel.get("val_acc")),
                                           ("test", fin.get("test_acc")), ("validation", fin.get("val_acc")))
                       if v is not None and v >= 0), (None, None))
    if acc is None or num_classes < 2:
        return None
    chance = 1.0 / num_classes
    if acc >= chance + NEAR_CHANCE_MARGIN * (1.0 - chance):
        return None
    est = (results.get("method") or {}).get("estimated_noise_rate")
    flags = f", and its method ({cfg.method.name}) estimates {est:.0%} of the labels wrong" if est is not None else ""
    o = cfg.optim
    return (f"the model learned little: its {which} accuracy, {acc:.1%}, is near chance ({chance:.1%} for "
            f"{num_classes} classes){flags}. Its predictions and flags are mostly guesses. Try a lower learning "
            f"rate (--lr {o.lr / 10:g}; now {o.lr:g}), more epochs or another backbone, or train on features of a "
            "network pretrained on similar data (README: 'With a pretrained network').")


def checked_step_outputs(out, method: str) -> dict:
    """``training_step``'s outputs if they keep the contract (a dict with a scalar tensor ``loss``, other values
    numbers or scalar tensors), else a TrainingError saying what came back (a researcher's method returning its
    loss tensor, a tuple, ``loss.item()`` or a per-sample loss met AttributeErrors deep in the loop)."""
    contract = ("training_step must return a dict with the scalar loss tensor under 'loss' (before .item(); "
                "reduced to one number) and optional numbers or scalar tensors to log")
    if not isinstance(out, dict):
        raise TrainingError(f"method {method!r}: {contract}; it returned a {type(out).__name__}.")
    loss = out.get("loss")
    if not torch.is_tensor(loss):
        raise TrainingError(f"method {method!r}: {contract}; its 'loss' is "
                            f"{'missing' if 'loss' not in out else 'a ' + type(loss).__name__}.")
    if loss.ndim != 0:
        raise TrainingError(f"method {method!r}: {contract}; its 'loss' has shape {list(loss.shape)} (a per-sample "
                            "loss? take its .mean()).")
    bad = [k for k, v in out.items() if k not in ("loss", "backward_done")
           and not (isinstance(v, (int, float)) or (torch.is_tensor(v) and v.numel() == 1))]
    if bad:
        raise TrainingError(f"method {method!r}: {contract}; these are neither: {', '.join(map(repr, bad))}.")
    return out


#: below this many validation examples (over 2 points per example) the trainer says that epoch selection on them is
#: mostly chance; scikit-learn's digits at the default 5% holds out 67 and stays quiet
SMALL_VALIDATION = 50


def small_validation_warning(val, val_fraction: float) -> str | None:
    """A warning when the noisy-validation split is too small to choose an epoch on, else None.

    With n examples one example moves the validation accuracy by 1/n, and the labels it is scored against are
    themselves noisy: on a 600-image folder the default 5% is 30 images, 3.3 points per image, so the
    "best" epoch is largely chance (a new user's run selected its epoch on 30 images)."""
    if val is None or len(val) >= SMALL_VALIDATION:
        return None
    n = len(val)
    return (f"the validation split has only {n} examples (data.val_fraction={val_fraction:g}); one example moves its "
            f"accuracy by {100 / n:.1f} points, so the epoch chosen on it is largely chance. Hold out more "
            f"(data.val_fraction=0.2) or none (data.val_fraction=0: the last epoch is kept).")


def cleaned_validation_warning(val, noise_info: dict) -> str | None:
    """A warning when the validation labels come from an audit's cleaned file, else None.

    The cleaned file relabels (or drops) what the audit flagged on every row it saw, the rows this run holds out
    included, so its validation accuracy partly measures agreement with the audit's own suggestions, and so does
    the epoch chosen on it (in a new user's trial at the prompt, not a committed result, a retrained run reported
    94.7% validation accuracy and got 7 of 12 new photos right)."""
    if val is None or not str(noise_info.get("spec") or "").startswith("audit-clean"):
        return None
    return ("the labels come from an audit's cleaned file, the validation split's too: its accuracy (and the epoch "
            "chosen on it) partly measures agreement with the audit's relabels, not with the truth. Judge the "
            "retrained model on a test split, or on data the audit did not relabel.")


class OutputDirError(OSError):
    pass


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"train.device={name!r} but CUDA is not available here; use train.device=cpu")
    return dev


def resolve_precision(name: str, device: torch.device) -> str:
    if name not in ("auto", "fp32", "bf16", "fp16"):
        raise ConfigError(f"train.precision={name!r} is unknown; use auto, fp32, bf16 or fp16")
    if name != "auto":
        if name == "fp16" and device.type == "cpu":
            raise ConfigError("train.precision=fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
        return name
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


class Trainer:
    """Train one method on one data set according to a :class:`~noisyfit.config.Config`.

    Parameters
    ----------
    cfg : Config
    out_dir : path or None
        Run folder (config.yaml, metrics.jsonl, checkpoint.pt, results.json, per_sample.npz,
        tensorboard/). None keeps everything in memory (tests, notebooks).
    splits : DatasetSplits, optional
        Data given directly instead of by ``cfg.data.dataset`` name.
    resume : bool
        Continue from ``out_dir/checkpoint.pt``.
    command : list of str, optional
        The command line, recorded in results.json.
    quiet : bool
        No epoch or information lines on the console, only warnings (``NoisyClassifier(verbose=False)``).
    """

    def __init__(self, cfg: Config, out_dir: str | Path | None = None, *, splits: DatasetSplits | None = None,
                 resume: bool = False, command: list[str] | None = None, quiet: bool = False):
        self.cfg = cfg
        self.command = command if command is not None else sys.argv
        self._session_start = time.strftime("%Y-%m-%dT%H:%M:%S%z")
        self.session_commit = process_commit()  # the code this session runs (results name the first session's)
        self.resume = resume
        self._sharing_warned = False
        tc = cfg.train
        if tc.threads:
            torch.set_num_threads(int(tc.threads))
        self.device = resolve_device(tc.device)
        self.precision = resolve_precision(tc.precision, self.device)
        self.rank, self.world_size = D.init_distributed(self.device)
        if self.device.type == "cuda" and self.world_size > 1:
            self.device = torch.device("cuda", D.env_world()[2])
        self.is_main = self.rank == 0
        self.out_dir = Path(out_dir) if out_dir is not None else None
        if self.out_dir is not None and self.is_main:
            _check_writable(self.out_dir)
        if resume and self.out_dir is None:
            raise ConfigError("resume needs an output folder (--out) holding checkpoint.pt")
        get_method_class(cfg.method.name)  # fail on an unknown method before loading data
        check_settings(cfg)  # and on a bad schedule, crop or TTA setting
        check_backbone_name(cfg.model.backbone)  # and on a typo in the backbone or the noise spec
        if cfg.data.noise:
            parse_noise_spec(cfg.data.noise)

        torch.manual_seed(tc.seed)
        np.random.seed(tc.seed % 2**32)
        t_data = time.time()
        self.data: RunData = prepare_run_data(cfg.data, tc.seed, splits)
        self.data_seconds = time.time() - t_data
        self._setup_tensors()
        self._setup_method()
        self.logger = RunLogger(self.out_dir, enabled=self.is_main, tensorboard=tc.tensorboard,
                                progress=tc.progress, quiet=quiet)
        slow_bf16 = emulated_bf16_warning(self.device, self.precision)
        if slow_bf16:
            self.logger.info(f"warning: {slow_bf16}")
        if self.is_image and cfg.model.backbone == "mlp":
            self.logger.info(f"warning: {PIXEL_MLP_WARNING}")
        small_val = small_validation_warning(self.data.val, cfg.data.val_fraction)
        if small_val and not resume:
            self.logger.info(f"warning: {small_val}")
        cleaned_val = cleaned_validation_warning(self.data.val, self.data.noise_info)
        if cleaned_val and not resume:
            self.logger.info(f"warning: {cleaned_val}")
        if not resume:  # what is about to train, before the first epoch line (minutes away on CIFAR on a CPU)
            d = self.data
            self.logger.info(
                f"data: {len(d.train):,} training, {0 if d.val is None else len(d.val):,} validation and "
                f"{0 if d.test is None else len(d.test):,} test examples ({self.data_seconds:.0f} s to load); "
                f"{cfg.method.name} on {cfg.model.backbone}, {tc.epochs} epochs, {self.device.type} {self.precision}")
        self.history: list[dict] = []
        self.best = {"epoch": None, "val_acc": -1.0, "test_acc": None}
        self.start_epoch = 0
        self._partial: dict | None = None  # the cut epoch's state when resuming inside an epoch
        self.train_seconds_total = 0.0
        self.wall_seconds_total = 0.0  # training + evaluation, summed over sessions
        self.sessions: list[dict] = []  # earlier sessions of a resumed run: command, wall time, peak RSS
        if resume:
            self._load_resume()
        # Augmentation streams differ per rank; the init above is identical on every rank.
        if not resume:
            torch.manual_seed(tc.seed * 7919 + 17 + self.rank)

    # ------------------------------------------------------------------ setup
    def _setup_tensors(self) -> None:
        d = self.data
        tr = d.train
        self.is_image = tr.is_image
        if self.is_image:
            workers = self.cfg.data.workers
            prep = lambda ld: make_store(ld.x, self.device, workers=workers)  # noqa: E731
            self.train_x = prep(tr)
            # a streamed set's statistics take one decoding pass (see store_channel_stats)
            mean, std = store_channel_stats(self.train_x) if self.train_x.streamed else channel_stats(tr.x)
            self.input_shape = (tr.x.shape[3], tr.x.shape[1], tr.x.shape[2])
        else:
            # Tabular rows are standardised once with training statistics.
            fmean, fstd = feature_stats(np.asarray(tr.x, dtype=np.float32))
            self.feature_mean, self.feature_std = fmean, fstd
            mean, std = torch.zeros(1), torch.ones(1)
            self.input_shape = (tr.x.shape[1],)
            prep = lambda ld: TensorStore((to_device_tensor(ld, self.device) - fmean.to(self.device))  # noqa: E731
                                          / fstd.to(self.device))
            self.train_x = prep(tr)
        self.augmenter = Augmenter(mean, std, is_image=self.is_image, strong_policy=self.cfg.train.strong_policy,
                                   pad=self.cfg.train.crop_pad,
                                   channels_last=self.cfg.train.channels_last and self.is_image,
                                   strong_draw=self.cfg.train.strong_draw, flip_mode=self.cfg.train.flip,
                                   flip_seed=self.cfg.train.seed).to(self.device)
        self.train_y = torch.from_numpy(tr.labels).to(self.device)
        self.val_x = prep(d.val) if d.val is not None else None
        self.val_y = torch.from_numpy(d.val.labels).to(self.device) if d.val is not None else None
        self.test_x = prep(d.test) if d.test is not None else None
        self.test_y = torch.from_numpy(d.test.labels).to(self.device) if d.test is not None else None
        if d.test is not None and d.test.num_classes != tr.num_classes:
            raise ConfigError(f"test set has {d.test.num_classes} classes, training set {tr.num_classes}")

    def _setup_method(self) -> None:
        cfg = self.cfg
        num_classes = self.data.train.num_classes

        def make_backbone():
            try:
                net = create_backbone(cfg.model.backbone, num_classes=num_classes, input_shape=self.input_shape,
                                      **cfg.model.args)
            except ValueError as err:  # a preset's image network on feature rows, its options on another backbone
                hint = (" The config's model.args belong to another backbone: replace them, e.g. "
                        "'model.args={hidden: [64]}' for mlp, or 'model.args={}' for the defaults."
                        if "has no option" in str(err) else "")
                raise ConfigError(f"{err}.{hint}") from None
            init_backbone_from_data(net, self.train_x, self.augmenter)
            return net

        cls = get_method_class(cfg.method.name)
        if cls.predict_logits is Method.predict_logits:  # inherited unimplemented
            raise ConfigError(f"method {cfg.method.name!r} does not define predict_logits(x): the trainer evaluates "
                              "and predicts with it (see noisyfit.methods.base.Method); nothing was trained.")
        self.method = cls(cfg.method.args, num_classes, len(self.data.train), make_backbone).to(self.device)
        if self.is_image and cfg.train.channels_last:
            self.method = self.method.to(memory_format=torch.channels_last)
        # identical initial weights on every rank
        if self.world_size > 1:
            for p in self.method.parameters():
                torch.distributed.broadcast(p.data, 0)
        self.optimizer = build_optimizer(self.method.param_groups(), cfg.optim, module=self.method)
        self.weight_avg = setup_recipe(self.method, cfg, self.is_image)  # None unless train.ema
        self.params = [p for g in self.optimizer.param_groups for p in g["params"]]
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == "fp16")
        # the method's view of the run: public pieces (noisyfit.data.training_set, noisyfit.methods.context)
        self.train_set = TrainingSet(self.train_x, self.train_y, self.augmenter,
                                     eval_batch_size=cfg.train.eval_batch_size, model=self.method,
                                     autocast=self.autocast, rank=self.rank, world_size=self.world_size)
        self.ctx = MethodContext(self.train_set, num_epochs=cfg.train.epochs, seed=cfg.train.seed,
                                 optimizer=self.optimizer, backward=self._backward_part)
        self.method.attach(self.ctx)

    def autocast(self):
        return autocast_context(self.device, self.precision)

    def _backward_part(self, loss: torch.Tensor) -> None:
        """One part of a step's loss, back-propagated inside the method's step (``MethodContext.backward``)."""
        with torch.autocast(self.device.type, enabled=False):  # as the loop's own backward: outside autocast
            self.scaler.scale(loss).backward()

    # ------------------------------------------------------------------ evaluation
    def predict_over(self, x, fn, *, batch_size=None, augment: str = "none") -> torch.Tensor:
        """Apply ``fn`` to normalised (optionally augmented) inputs in eval mode, sharded over ranks.

        ``x`` is a store (:mod:`noisyfit.data.store`) or a tensor of raw examples."""
        store = x if hasattr(x, "chunks") else TensorStore(x)
        return predict_store(store, fn, self.augmenter, batch_size=batch_size or self.cfg.train.eval_batch_size,
                             augment=augment, model=self.method, autocast=self.autocast, rank=self.rank,
                             world_size=self.world_size)

    def accuracy_on(self, x, y, fn=None) -> float | None:
        if x is None:
            return None
        logits = self.predict_over(x, with_tta(fn or self.method.predict_logits, self.cfg.train.eval_tta))
        return float((logits.argmax(1) == y).float().mean())

    # ------------------------------------------------------------------ loop
    def fit(self, *, stop_after_epoch: int | None = None,
            stop_at_step: tuple[int, int] | None = None) -> dict | None:
        """Train to ``cfg.train.epochs`` (or stop, checkpointed, after ``stop_after_epoch`` epochs, or after
        ``stop_at_step = (epoch, steps)``: that many steps of the 0-based ``epoch``).

        Returns the results dict when training finished, None when stopped early on purpose.
        """
        cfg = self.cfg
        tc = cfg.train
        if self.out_dir is not None and self.is_main and not self.resume:
            cfg.save(self.out_dir / "config.yaml")
        n_steps = num_batches(len(self.train_y), tc.batch_size)
        if n_steps == 0:
            raise ConfigError("the training split is empty")
        if stop_at_step is not None and (self.out_dir is None or not tc.checkpoint or self.world_size > 1):
            raise ConfigError("stopping inside an epoch needs a run folder, train.checkpoint=true and one process")
        wall0 = time.time()
        for epoch in range(self.start_epoch, tc.epochs):
            self.ctx.epoch = epoch
            self.method.train()
            start_epoch(self.method, self.augmenter, epoch)  # whitening bias freeze, alternating flips
            part = self._partial if self._partial is not None and self._partial["epoch"] == epoch else None
            self._partial = None
            # A resumed epoch's clock continues from the work kept in the checkpoint; the time spent writing
            # mid-epoch checkpoints is left out, so seconds per epoch stay comparable with uncut runs.
            t0 = time.time() - (part["train_seconds"] if part else 0.0)
            paused = 0.0
            cpu_meter = OthersCpuMeter()
            if part is None:
                self.method.on_epoch_start(epoch, self.ctx)
                visited: list[torch.Tensor] = []
                n_seen, first_step = 0, 0
            else:  # the epoch's selection already ran before the cut; its results are in the method state
                self.method.load_transient_state(part["method"])
                visited, n_seen, first_step = list(part["visited"]), part["n_seen"], part["step"]
            sums = StepSums(self.device, part["sums"] if part else None)
            last_save = time.time()
            with self.logger.progress(n_steps, "train") as prog:
                task = prog.add_task(f"epoch {epoch + 1}/{tc.epochs}", total=n_steps, completed=first_step, info="")
                # steps done before a cut are neither loaded nor drawn: the batches start at first_step
                for step, batch in enumerate(iterate_batches(
                        self.train_x, self.train_y, self.augmenter, batch_size=tc.batch_size, seed=tc.seed,
                        epoch=epoch, rank=self.rank, world_size=self.world_size, start_step=first_step),
                        start=first_step):
                    done = epoch + step / n_steps  # epochs trained so far, fractional
                    lr = set_lr(self.optimizer, lr_factor(cfg.optim, done, tc.epochs), done)
                    self.optimizer.zero_grad(set_to_none=True)  # before the step: it may back-propagate parts
                    with self.autocast():
                        out = checked_step_outputs(self.method.training_step(batch, epoch), cfg.method.name)
                    backward_done = bool(out.pop("backward_done", False))
                    loss = out["loss"]
                    sums.add(out, step)  # on the device: read on the host every few steps, not every step
                    if sums.due() or step + 1 == n_steps:
                        self._check_losses(sums, epoch, lr)
                        prog.update(task, info=f"loss {sums.last_loss:.4f}")
                    if not backward_done:
                        self.scaler.scale(loss).backward()
                    D.average_gradients(self.params)
                    if cfg.optim.grad_clip:
                        self.scaler.unscale_(self.optimizer)
                        torch.nn.utils.clip_grad_norm_(self.params, cfg.optim.grad_clip)
                    self.scaler.step(self.optimizer)
                    self.scaler.update()
                    self.method.after_optimizer_step(epoch)
                    if self.weight_avg is not None:
                        self.weight_avg.step(self.method, (epoch + (step + 1) / n_steps) / tc.epochs)
                    visited.append(batch.index)
                    n_seen += len(batch)
                    prog.update(task, advance=1)
                    stop_here = stop_at_step is not None and stop_at_step == (epoch, step + 1)
                    if step + 1 < n_steps and (stop_here or self._mid_epoch_checkpoint_due(last_save)):
                        ts = time.time()
                        self._check_losses(sums, epoch, lr)  # never checkpoint a NaN step as good
                        self._save_checkpoint(epoch - 1, partial={
                            "epoch": epoch, "step": step + 1, "sums": sums.values(), "visited": list(visited),
                            "n_seen": n_seen, "train_seconds": ts - t0 - paused,
                            "method": self.method.transient_state()})
                        last_save = time.time()
                        paused += last_save - ts
                        if stop_here:
                            self.logger.info(f"stopped in epoch {epoch + 1} after step {step + 1} as asked; "
                                             "continue with --resume")
                            return None
            self._sync_epoch_state(visited)
            sums = sums.values()
            if self.world_size > 1:  # logged values are means over all ranks, not rank 0's half
                keys = sorted(sums)
                sums = dict(zip(keys, (v / self.world_size for v in
                                       D.all_reduce_sum([sums[k] for k in keys], self.device))))
            self.method.on_epoch_end(epoch, self.ctx)
            health = self._health(epoch)
            train_seconds = time.time() - t0 - paused
            self.train_seconds_total += train_seconds
            others = cpu_meter.share()  # read before evaluation: it describes the timed training
            self._warn_if_sharing(others)
            with eval_weights(self.weight_avg, self.method):  # the averaged weights are the evaluated ones
                row = self._epoch_row(epoch, sums, n_steps, lr, train_seconds, n_seen)
            if health:
                row["health"] = health
            if others is not None:
                row["others_cpu_share"] = others
            if part is not None:
                row["resumed_at_step"] = first_step  # its others' CPU share covers only the steps after
            self.wall_seconds_total += time.time() - t0  # checkpoint writes included
            self.history.append(row)
            self.logger.log_epoch(row)
            unstable = unstable_loss_warning(row, self.cfg, self.data.train.num_classes) if epoch == 0 else None
            if unstable:
                self.logger.info(f"warning: {unstable}")
            if self.out_dir is not None and tc.checkpoint and self.is_main:
                self._save_checkpoint(epoch)
            if stop_after_epoch is not None and epoch + 1 >= stop_after_epoch and epoch + 1 < tc.epochs:
                self.logger.info(f"stopped after epoch {epoch + 1} as asked; continue with --resume")
                return None
        if self.weight_avg is not None:  # the model kept is the average (airbench's last Lookahead step)
            self.weight_avg.copy_to(self.method)
        self.method.on_fit_end(self.ctx)
        results = self._results(time.time() - wall0)
        weak = weak_model_warning(results, self.cfg)
        if weak:
            self.logger.info(f"warning: {weak}")
        if self.out_dir is not None and self.is_main:
            self._write_outputs(results)
        self.logger.close()
        D.barrier()
        return results

    def _warn_if_sharing(self, others: float | None) -> None:
        """Say once per session when other processes fight this run's CPU threads (see sharing_hint)."""
        if self._sharing_warned or self.device.type != "cpu":
            return
        hint = sharing_hint(others, torch.get_num_threads(), usable_cpus())
        if hint:
            self._sharing_warned = True
            self.logger.info(f"warning: {hint}")

    def _check_losses(self, sums: StepSums, epoch: int, lr: float) -> None:
        bad = sums.check()
        if bad is not None:
            step, value = bad
            raise TrainingError(
                f"loss is {value} at epoch {epoch + 1}, step {step + 1} (method {self.cfg.method.name!r}, lr {lr:.3g}, "
                f"precision {self.precision}). Lower optim.lr, try train.precision=fp32, or check the inputs for "
                "NaN/inf. " + (f"The last good checkpoint is kept in {self.out_dir}." if self.out_dir else ""))

    def _mid_epoch_checkpoint_due(self, last_save: float) -> bool:
        """Whether ``train.checkpoint_minutes`` have passed since the last checkpoint (single process only:
        under DDP the per-sample state is gathered across ranks at epoch ends only)."""
        tc = self.cfg.train
        return (tc.checkpoint and tc.checkpoint_minutes > 0 and self.out_dir is not None
                and self.world_size == 1 and time.time() - last_save >= 60.0 * tc.checkpoint_minutes)

    def _sync_epoch_state(self, visited: list[torch.Tensor]) -> None:
        if self.world_size > 1:
            D.sync_method_state(self.method, visited, self.device)

    def _epoch_row(self, epoch, sums, n_steps, lr, train_seconds, n_seen) -> dict:
        tc = self.cfg.train
        row = {"epoch": epoch, "num_epochs": tc.epochs, "lr": lr, "train_seconds": train_seconds,
               "images_per_second": n_seen * self.world_size / max(train_seconds, 1e-9)}
        denom = max(n_steps, 1)
        for k, v in sums.items():
            row["train_" + k if k == "loss" else k] = v / denom
        do_eval = (epoch + 1) % tc.eval_every == 0 or epoch + 1 == tc.epochs
        if do_eval:
            t = time.time()
            row["val_acc"] = self.accuracy_on(self.val_x, self.val_y)
            row["test_acc"] = self.accuracy_on(self.test_x, self.test_y)
            for name, fn in self.method.extra_eval_heads().items():  # e.g. Jump-teaching's code decoding
                row[f"val_acc_{name}"] = self.accuracy_on(self.val_x, self.val_y, fn)
                row[f"test_acc_{name}"] = self.accuracy_on(self.test_x, self.test_y, fn)
            if tc.track_fit:
                row.update(self._fit_figures())
            row["eval_seconds"] = time.time() - t
            if row["val_acc"] is not None and row["val_acc"] > self.best["val_acc"]:
                self.best = {"epoch": epoch, "val_acc": row["val_acc"], "test_acc": row["test_acc"]}
                if self.out_dir is not None and self.is_main and tc.checkpoint:
                    state = self.method.state_dict()
                    atomic_write_bytes(self.out_dir / "best_model.pt", lambda f: torch.save(state, f))
        return row

    def _is_noisy(self) -> np.ndarray | None:
        tr = self.data.train
        return None if tr.true_labels is None else np.asarray(tr.labels != tr.true_labels)

    def _health(self, epoch: int) -> dict:
        """The method's mechanism figures of this epoch, scored against the truth when it is known."""
        values = self.method.health(epoch)
        return health_figures(values, self._is_noisy()) if values else {}

    def _fit_figures(self) -> dict:
        """How the model fits the given training labels: the memorisation curve (``train.track_fit``)."""
        pred = self.predict_over(self.train_x, self.method.predict_logits).argmax(1).cpu().numpy()
        agree = pred == self.data.train.labels
        out = {"fit_given": float(agree.mean())}
        noisy = self._is_noisy()
        if noisy is not None:
            out["fit_clean"] = float(agree[~noisy].mean()) if (~noisy).any() else None
            out["memorised"] = float(agree[noisy].mean()) if noisy.any() else None
            out["fit_true"] = float((pred == self.data.train.true_labels).mean())
        return out

    # ------------------------------------------------------------------ checkpoints
    def _save_checkpoint(self, epoch: int, partial: dict | None = None) -> None:
        """Save after finished epoch ``epoch`` (-1: none yet); ``partial`` = the state of the epoch in progress."""
        state = {
            "epoch": epoch,
            "partial": partial,
            "method": self.method.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "weight_average": None if self.weight_avg is None else self.weight_avg.state_dict(),
            "scaler": self.scaler.state_dict(),
            "rng": rng_state(),
            "history": self.history,
            "best": self.best,
            "train_seconds_total": self.train_seconds_total,
            "wall_seconds_total": self.wall_seconds_total,
            "sessions": self.sessions + [self._this_session()],
            "config": self.cfg.to_dict(),
            "version": __version__,
        }
        save_checkpoint(self.out_dir / "checkpoint.pt", state)

    def _load_resume(self) -> None:
        ck = load_checkpoint(self.out_dir / "checkpoint.pt", map_location=self.device)
        saved, now = comparable_config(ck["config"]), comparable_config(self.cfg.to_dict())
        if saved != now:
            diff = [f"{sec}.{k}" for sec in now for k in now[sec] if saved.get(sec, {}).get(k) != now[sec][k]]
            raise ConfigError(f"--resume: the config differs from the checkpoint's in {diff}; resume with the "
                              f"same config (it is in {self.out_dir / 'config.yaml'})")
        self.method.load_state_dict(ck["method"])
        self.optimizer.load_state_dict(ck["optimizer"])
        if self.weight_avg is not None:
            self.weight_avg.load_state_dict(ck.get("weight_average"))
        self.scaler.load_state_dict(ck["scaler"])
        set_rng_state(ck["rng"])
        self.history = ck["history"]
        self.best = ck["best"]
        self.train_seconds_total = ck["train_seconds_total"]
        self.wall_seconds_total = ck.get("wall_seconds_total", 0.0)
        self.sessions = ck.get("sessions", [])
        self.start_epoch = ck["epoch"] + 1
        self._partial = ck.get("partial")
        self.logger.rewrite_history(self.history)
        where = (f"in epoch {self._partial['epoch'] + 1} after step {self._partial['step']}" if self._partial
                 else f"after epoch {self.start_epoch}")
        self.logger.info(f"resumed from {self.out_dir / 'checkpoint.pt'} {where}")

    # ------------------------------------------------------------------ results (noisyfit.engine.results)
    def per_sample(self) -> dict:
        return per_sample_outputs(self.method, self.data)

    def _results(self, wall_seconds: float) -> dict:
        return run_results(self, wall_seconds)

    def _this_session(self) -> dict:
        return {"command": list(self.command), "started": self._session_start, "commit": self.session_commit,
                **peak_memory_mb(self.device)}

    def _write_outputs(self, results: dict) -> None:
        write_run_outputs(self, results)


#: settings that change how a run is kept and shown, not what it computes: a resume may change them, and a
#: checkpoint written before one of them existed still resumes
OPERATIONAL_KEYS = {("train", "checkpoint_minutes"), ("train", "progress"), ("train", "tensorboard"),
                    # where the images live changes neither the batches nor the pixels (tests/test_streaming.py)
                    ("data", "stream"), ("data", "memory_budget_mb"), ("data", "workers")}


def comparable_config(config: dict) -> dict:
    """``config`` (a ``Config.to_dict()``) as two runs compare it: a key added after ``config`` was stored
    counts as its default (options are added with a default that keeps what earlier runs computed), and
    the operational keys are dropped. Used by resume and by the out-of-fold fold cache."""
    defaults = Config().to_dict()
    config = {sec: {**defaults.get(sec, {}), **d} if isinstance(d, dict) else d for sec, d in config.items()}
    return {sec: {k: v for k, v in d.items() if (sec, k) not in OPERATIONAL_KEYS} if isinstance(d, dict) else d
            for sec, d in config.items()}


def _check_writable(out_dir: Path) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / ".write-probe"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise OutputDirError(f"cannot write to the output folder {out_dir}: {e.strerror or e}. "
                             "Choose a writable folder with --out.") from e
