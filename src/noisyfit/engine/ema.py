"""Weight averaging for evaluation: an exponential moving average of the weights, or airbench's Lookahead.

airbench94 (Jordan 2024) keeps a slow copy of the network: every 5 steps the slow weights move toward the
current ones, ``slow <- decay * slow + (1 - decay) * fast``, and the fast weights are then reset to the slow
ones (Lookahead, Zhang et al. 2019, with an EMA as the slow update); after the last step the network *is* the
slow copy. Its decay grows with training, ``decay(t) = 0.95**5 * (t / T)**3`` (t: steps done, T: all
steps), so the average only starts to lag late in training.

Two modes (``train.ema``):

``"ema"``
    the average is kept on the side and never written back into training; it is the model that is evaluated
    (validation, test, the selected ``best_model.pt``) and, after the last step, the model that is kept.
``"lookahead"``
    airbench's scheme: as ``ema``, and every update also resets the trained weights to the average.

What is averaged: every floating-point parameter of the method (trainable or frozen) and the running mean and
variance of its BatchNorm layers (airbench averages every float entry of its network's state_dict, which is
the same set for its network). Other buffers (per-sample state, counters, a method's own statistics) are left
alone: averaging them, or resetting them under Lookahead, would change what a method does, not just its
weights. The progress ``t / T`` is the trainer's fractional epoch over ``train.epochs`` (the clock of the
learning-rate schedule), so a resumed run updates at the same steps with the same decays.
"""

from __future__ import annotations

from contextlib import contextmanager, nullcontext

import torch
import torch.nn as nn

MODES = ("none", "ema", "lookahead")


def averaged_tensors(module: nn.Module) -> dict[str, torch.Tensor]:
    """The tensors weight averaging covers, by state_dict name (they share storage with the module)."""
    out = {name: p for name, p in module.named_parameters() if p.is_floating_point()}
    for mname, m in module.named_modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            prefix = f"{mname}." if mname else ""
            for b in ("running_mean", "running_var"):
                t = getattr(m, b)
                if t is not None:
                    out[prefix + b] = t
    return out


class WeightAverage:
    """An average of a module's weights, updated after optimiser steps.

    Parameters
    ----------
    module : nn.Module
        The trained module (the method); the average starts as a copy of its weights.
    mode : {"ema", "lookahead"}
    decay : float
        Decay of an update at the end of training (airbench: ``0.95**5`` for an update every 5 steps).
    every : int
        Update every this many optimiser steps (airbench: 5).
    ramp : float
        The decay at progress ``p`` (fraction of training done) is ``decay * p**ramp`` (airbench: 3);
        0 keeps it constant.
    """

    def __init__(self, module: nn.Module, *, mode: str = "ema", decay: float = 0.95 ** 5, every: int = 5,
                 ramp: float = 3.0):
        if mode not in MODES[1:]:
            raise ValueError(f"weight averaging mode must be one of {MODES[1:]}, got {mode!r}")
        if not 0.0 <= decay <= 1.0 or every < 1 or ramp < 0:
            raise ValueError(f"weight averaging needs 0 <= decay <= 1, every >= 1 and ramp >= 0; got decay={decay}, "
                             f"every={every}, ramp={ramp}")
        self.mode, self.decay, self.every, self.ramp = mode, float(decay), int(every), float(ramp)
        self.steps = 0
        self.average = {k: t.detach().clone() for k, t in averaged_tensors(module).items()}

    @classmethod
    def from_config(cls, module: nn.Module, tc) -> "WeightAverage | None":
        """From ``train.ema`` / ``ema_decay`` / ``ema_every`` / ``ema_ramp``; None when ``train.ema`` is none."""
        mode = getattr(tc, "ema", "none")
        if mode not in MODES:
            from noisyfit.config import ConfigError

            raise ConfigError(f"train.ema={mode!r} is unknown; use one of {', '.join(MODES)}")
        if mode == "none":
            return None
        return cls(module, mode=mode, decay=tc.ema_decay, every=tc.ema_every, ramp=tc.ema_ramp)

    def decay_at(self, progress: float) -> float:
        return self.decay * min(max(progress, 0.0), 1.0) ** self.ramp

    @torch.no_grad()
    def step(self, module: nn.Module, progress: float) -> None:
        """Count one optimiser step; every ``every`` steps, move the average toward the current weights
        (and, for Lookahead, reset the weights to the average). ``progress``: fraction of training done."""
        self.steps += 1
        if self.steps % self.every:
            return
        d = self.decay_at(progress)
        current = averaged_tensors(module)
        for k, avg in self.average.items():
            cur = current[k]
            avg.lerp_(cur.to(avg.dtype), 1.0 - d)
            if self.mode == "lookahead":
                cur.copy_(avg)

    @torch.no_grad()
    def copy_to(self, module: nn.Module) -> None:
        """Make the module's weights the average (for good: the end of training)."""
        current = averaged_tensors(module)
        for k, avg in self.average.items():
            current[k].copy_(avg)

    @contextmanager
    def swapped(self, module: nn.Module):
        """The module holds the average inside the block and its own weights again after it."""
        current = averaged_tensors(module)
        kept = {k: t.detach().clone() for k, t in current.items() if k in self.average}
        with torch.no_grad():
            for k, avg in self.average.items():
                current[k].copy_(avg)
        try:
            yield
        finally:
            with torch.no_grad():
                for k, t in kept.items():
                    current[k].copy_(t)

    def state_dict(self) -> dict:
        return {"mode": self.mode, "steps": self.steps, "average": {k: v.clone() for k, v in self.average.items()}}

    def load_state_dict(self, state: dict) -> None:
        if state is None:
            raise ValueError("the checkpoint has no weight average (it was written with train.ema=none)")
        if state["mode"] != self.mode or set(state["average"]) != set(self.average):
            raise ValueError("the checkpoint's weight average does not fit this run's (another mode or network)")
        self.steps = int(state["steps"])
        with torch.no_grad():
            for k, v in state["average"].items():
                self.average[k].copy_(v)


def eval_weights(average: WeightAverage | None, module: nn.Module):
    """Context in which ``module`` holds the weights to evaluate: the average when there is one."""
    return nullcontext() if average is None else average.swapped(module)
