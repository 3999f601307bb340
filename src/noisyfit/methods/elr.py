"""ELR and ELR+: early-learning regularisation with per-sample temporal-ensemble targets.

Liu, S., Niles-Weed, J., Razavian, N. and Fernandez-Granda, C. "Early-Learning Regularization Prevents
Memorization of Noisy Labels." NeurIPS 2020. Official code: shengliu66/ELR (ELR/model/loss.py,
ELR_plus/model/loss.py, ELR_plus/trainer/trainer.py). Spec: methods.md §8.3 [CODE].

**ELR** (``elr``). Every step, for the batch's samples, with p = clip(softmax(z), 1e-4, 1 - 1e-4):
    t_i <- beta * t_i + (1 - beta) * sg(p_i) / sum(sg(p_i))        (targets start at zero)
    L = CE(z, y) + lambda * mean_i log(1 - <t_i, p_i>)
The regulariser's gradient pulls p towards the target, which keeps the early-learning predictions and so
resists memorising wrong labels.

**ELR+** (``elr_plus``). Two networks, each with a weight-averaged (EMA) copy. For network k's step:
MixUp (alpha 1, lam = max(lam, 1 - lam)) of inputs and one-hot labels; the targets are updated from the
*other* network's EMA prediction on the unmixed inputs and mixed with the same lam and permutation
(q = lam t + (1 - lam) t[perm]); L = soft CE(z_mix, y_mix) + r(step) * lambda * mean log(1 - <q, p>),
r a sigmoid ramp over ``coef_step`` iterations (0 = none). With ``label_times_target`` (the code's
CIFAR-100 branch) the CE target is normalise(y_mix * q). EMA decay: sigmoid_rampup(step + 1, ema_step) *
ema_alpha. Test: the mean of the two raw (not EMA) networks' logits (argmax-equivalent to their sum), as
the code's single-GPU test path does (its multi-GPU path pairs net1 with net2's EMA copy).

Hyper-parameters (defaults = official CIFAR-10 configs)
-------------------------------------------------------
ELR:  beta 0.7, lam 3.0 (CIFAR-10 sym; asym 0.9 / 1 [CODE: config_cifar10_asym.json]; CIFAR-100
      0.9 / 7), clip 1e-4, clean_score "prob".
ELR+: beta 0.7, lam 3.0, mixup_alpha 1.0, ema_alpha 0.997, ema_step 40000 (iterations), coef_step 0,
      label_times_target False (True in the CIFAR-100 code), clip 1e-4.
      ema_step and ema_alpha are per iteration, as in the code. On a run much shorter than the official
      78,000 iterations, scale both (the CPU preset does: ema_step 560, ema_alpha 0.987, reasons in the
      preset): an unscaled ema_step keeps the decay near 0, so nothing is averaged; an unscaled
      ema_alpha makes the partner's EMA lag ~4x more epochs than in the paper's run.
Paper protocols (in the presets): ELR: ResNet-34, SGD lr 0.02, momentum 0.9, wd 1e-3, batch 128, 150 epochs,
cosine annealing with warm restarts (T_0 = 10, eta_min = 1e-3). ELR+: PreAct ResNet-18, lr 0.02,
wd 5e-4, batch 128, 200 epochs, lr / 10 at 150.

Clean score: ``clean_score="prob"`` (default) = the final model's eval-mode p(given label) over the training
set (ELR+: from the mean logits of the two networks); ``"target"`` = the mass of the ELR target on the given
label (ELR+: averaged over the two networks' targets). Flags: score < 0.5.

Departures from the official code
---------------------------------
* The trainer's schedule is stepped per iteration (epoch-fractional); ELR's CosineAnnealingWarmRestarts
  is stepped per epoch in the code. The trainer's ``cosine_restarts`` has a fixed period (T_mult = 1, as
  the code's default).
* ELR+: both networks train in every step on the same batch (the code trains net1 for an epoch, then
  net2), so each uses the partner's current EMA. Both networks see the same weak view; each draws its own
  MixUp lam and permutation. The EMA copies average parameters only; their batch-norm statistics come from
  their own train-mode forward passes on the target batches, as in the code.
* MixUp's lambda comes from torch's generator, not numpy's.
* ELR+: the EMA networks start as copies of the trained networks (official: independently initialised
  networks); after the first step the initial EMA weights carry ~0.7% weight.
* Steps run under the trainer's precision (bf16 autocast on the CPU protocol; the official code is fp32).
"""

from __future__ import annotations

import copy
import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from noisyfit.methods.base import Method, register_method
from noisyfit.ops.mixmatch import mixup, sample_mix_lambda

CLEAN_SCORES = ("prob", "target")


def elr_target_update(target: torch.Tensor, probs: torch.Tensor, beta: float) -> torch.Tensor:
    """``beta * target + (1 - beta) * probs / probs.sum(1)`` (probs detached, already clipped)."""
    p = probs.detach().float()
    return beta * target + (1 - beta) * p / p.sum(dim=1, keepdim=True)


def elr_regulariser_per_sample(target: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``log(1 - <t_i, p_i>)`` per sample: decreasing in the agreement of the prediction with its target."""
    return torch.log(1.0 - (target * probs).sum(dim=1))


def elr_regulariser(target: torch.Tensor, probs: torch.Tensor) -> torch.Tensor:
    """``mean_i log(1 - <t_i, p_i>)`` (the official loss's regulariser)."""
    return elr_regulariser_per_sample(target, probs).mean()


def clipped_softmax(logits: torch.Tensor, clip: float) -> torch.Tensor:
    return F.softmax(logits.float(), dim=1).clamp(clip, 1.0 - clip)


def elr_loss(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, *,
             beta: float, lam: float, clip: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One ELR step: update ``targets[index]`` in place, return ``(CE + lam * reg, CE, reg)``.

    ``targets`` is the ``[num_samples, C]`` table of temporal-ensemble targets; the batch's rows are
    updated from the clipped softmax before the regulariser uses them, as in the official loss.
    """
    p, t = elr_step_targets(logits, targets, index, beta=beta, clip=clip)
    ce = F.cross_entropy(logits.float(), labels)
    reg = elr_regulariser(t, p)
    return ce + lam * reg, ce, reg


def elr_step_targets(logits: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, *, beta: float,
                     clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped softmax ``p`` of the batch and its targets ``t``, updated in ``targets[index]`` in place."""
    p = clipped_softmax(logits, clip)
    t = elr_target_update(targets[index], p, beta)
    targets[index] = t
    return p, t


def elr_per_sample(logits: torch.Tensor, labels: torch.Tensor, targets: torch.Tensor, index: torch.Tensor, *,
                   beta: float, clip: float) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`elr_loss`'s step per sample: update ``targets[index]`` in place, return ``(CE_i, reg_i)`` ``[B]``
    with ``reg_i = log(1 - <t_i, p_i>)`` (their means are elr_loss's CE and regulariser up to rounding)."""
    p, t = elr_step_targets(logits, targets, index, beta=beta, clip=clip)
    return F.cross_entropy(logits.float(), labels, reduction="none"), elr_regulariser_per_sample(t, p)


def sigmoid_rampup(current: float, length: float) -> float:
    """``exp(-5 (1 - t)^2)`` with t = clip(current / length, 0, 1); 1 when length is 0 (the ELR code's)."""
    if length == 0:
        return 1.0
    t = float(np.clip(current, 0.0, length)) / length
    return float(np.exp(-5.0 * (1.0 - t) ** 2))


class _ScoreMixin:
    """Clean scores of ELR / ELR+: p(given label) of the final model, or the target's mass on it."""

    def _check_clean_score(self) -> None:
        if self.hp.clean_score not in CLEAN_SCORES:
            raise ValueError(f"method.args.clean_score must be one of {CLEAN_SCORES}, got {self.hp.clean_score!r}")

    def clean_scores(self, labels):
        if self.hp.clean_score == "prob":
            return super().clean_scores(labels)
        t = self.target.float()
        if t.dim() == 3:  # ELR+: one target per network
            t = t.mean(dim=1)
        return t[torch.arange(len(labels)), torch.as_tensor(labels, device=t.device)].cpu().numpy()

    def flag_reason(self):
        what = ("p(given label) of the final model" if self.hp.clean_score == "prob"
                else "ELR target mass on the given label")
        return f"{what} < {self.flag_threshold}"


@register_method("elr")
class ELR(_ScoreMixin, Method):
    """Early-learning regularisation on one network."""

    summary = "Early-Learning Regularization (Liu et al., NeurIPS 2020): keeps predictions near their early-learning targets. 1 network, CE's cost"

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"beta": "[0, 1)", "lam": "[0, inf)", "clip": "(0, 0.5)"}

    @dataclasses.dataclass
    class Hyper:
        beta: float = 0.7
        lam: float = 3.0
        clip: float = 1e-4
        clean_score: str = "prob"

    per_sample_state = ("target",)

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self._check_clean_score()
        self.net = make_backbone()
        self.register_buffer("target", torch.zeros(num_samples, num_classes))

    def training_step(self, batch, epoch):
        loss, ce, reg = elr_loss(self.net(batch.x), batch.y, self.target, batch.index,
                                 beta=self.hp.beta, lam=self.hp.lam, clip=self.hp.clip)
        return {"loss": loss, "ce": ce.detach(), "elr_reg": reg.detach()}

    def predict_logits(self, x):
        return self.net(x)


@register_method("elr_plus")
class ELRPlus(_ScoreMixin, Method):
    """ELR+: two networks with EMA copies, MixUp, targets from the partner's EMA (see module docstring)."""

    summary = 'ELR+ (Liu et al., NeurIPS 2020): ELR with two networks, weight averaging and mixup. 2 networks'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"beta": "[0, 1)", "lam": "[0, inf)", "clip": "(0, 0.5)", "mixup_alpha": "[0, inf)",
                    "ema_alpha": "[0, 1]", "ema_step": "[0, inf)", "coef_step": "[0, inf)"}

    @dataclasses.dataclass
    class Hyper:
        beta: float = 0.7
        lam: float = 3.0
        mixup_alpha: float = 1.0
        ema_alpha: float = 0.997
        ema_step: int = 40000
        coef_step: int = 0
        label_times_target: bool = False
        clip: float = 1e-4
        clean_score: str = "prob"

    per_sample_state = ("target",)

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self._check_clean_score()
        self.nets = nn.ModuleList([make_backbone() for _ in range(2)])
        self.emas = nn.ModuleList([copy.deepcopy(n) for n in self.nets])
        for p in self.emas.parameters():
            p.requires_grad_(False)
        self.register_buffer("target", torch.zeros(num_samples, 2, num_classes))
        self.register_buffer("global_step", torch.zeros((), dtype=torch.long))

    def training_step(self, batch, epoch):
        hp = self.hp
        step = int(self.global_step) + 1  # the code counts from 1 in the ramp of the regulariser
        coef = sigmoid_rampup(step, hp.coef_step) * hp.lam
        onehot = F.one_hot(batch.y, self.num_classes).float()
        total, logs = 0.0, {"ce": 0.0, "elr_reg": 0.0}
        for k in range(2):
            lam = sample_mix_lambda(hp.mixup_alpha)
            perm = torch.randperm(len(batch)).to(batch.index.device)
            mixed_x, mixed_y = mixup(batch.x, onehot, lam, perm)
            logits = self.nets[k](mixed_x)
            with torch.no_grad():
                ema_p = F.softmax(self.emas[1 - k](batch.x).float(), dim=1)
                t = elr_target_update(self.target[batch.index, k], ema_p, hp.beta)
                self.target[batch.index, k] = t
                q = lam * t + (1 - lam) * t[perm]
            if hp.label_times_target:
                mixed_y = mixed_y * q
                mixed_y = mixed_y / mixed_y.sum(dim=1, keepdim=True)
            ce = -(mixed_y * F.log_softmax(logits.float(), dim=1)).sum(1).mean()
            reg = elr_regulariser(q, clipped_softmax(logits, hp.clip))
            total = total + ce + coef * reg
            logs["ce"] += float(ce.detach()) / 2
            logs["elr_reg"] += float(reg.detach()) / 2
        return {"loss": total, **logs}

    @torch.no_grad()
    def after_optimizer_step(self, epoch):
        self.global_step += 1
        step = int(self.global_step)
        # the code: decay = sigmoid_rampup(global_step + 1, ema_step) * ema_alpha, global_step from 1
        decay = sigmoid_rampup(step + 1, self.hp.ema_step) * self.hp.ema_alpha
        for net, ema in zip(self.nets, self.emas):
            for pe, p in zip(ema.parameters(), net.parameters()):
                pe.mul_(decay).add_(p.detach(), alpha=1 - decay)

    def predict_logits(self, x):
        return 0.5 * (self.nets[0](x) + self.nets[1](x))
