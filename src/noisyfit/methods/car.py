"""CAR: Confidence Adaptive Regularization.

Yangdi Lu, Yang Bo and Wenbo He. "Confidence Adaptive Regularization for Deep Learning with Noisy
Labels." arXiv:2108.08212, 2021 (ICLR 2022 submission, withdrawn). Spec: ``shared/specs/methods.md``
section 3 and its addendum (e).

**Read this first.** The CAR paper body (method section, hyper-parameter tables) was not available,
and CAR has no public code. The default (``variant="code"``) therefore follows the loss the *same
three authors* released in code for their next paper, NAL ("Noise Attention Learning: Enhancing Noise
Robustness by Gradient Scaling", NeurIPS 2022, MacLLL/NAL), which uses CAR's vocabulary (indicator
branch, penalty coefficient, auxiliary regularisation, target estimation). That CAR's loss *is* this
loss is an inference that was **not** checked against the CAR PDF. ``variant="recon"`` is the spec's
earlier reconstruction (section 3(b), tagged [RECON]: a design proposal, not a reproduction).

Both variants: a sigmoid indicator branch ``tau = sigmoid(w . h + b)`` beside the classifier on the
backbone feature ``h`` (``noisyfit.models.heads.confidence``), per-sample soft targets ``t_i``
(a ``[N, C]`` buffer, saved in checkpoints) and the confidence-interpolated prediction
``q = tau * p + (1 - tau) * t``. As ``tau -> 0``, ``q -> t`` and the gradient on the logits vanishes
(for a hard target it scales as ``tau p_y / (tau p_y + 1 - tau)``), so samples the branch distrusts
stop being memorised; the ``-log tau`` penalty stops tau from collapsing to 0 everywhere.

variant="code" (default; addendum (e), [CODE] of NAL)
    * ``p = clamp(softmax(z), 1e-12, 1 - 1e-12)``, ``tau`` clamped likewise;
      ``t`` starts as ``clamp(onehot(y~), 1e-4, 1)``;
    * ``q = clamp(tau p + (1 - tau) t, 1e-7, 1)``;
    * ``L = mean(-sum_k t_k log q_k) + lam * mean(-log tau) + beta * mean(-sum_k q_k log t_k)``
      (the last term is a reverse CE on q, the "auxiliary regularisation");
    * target estimation: in epochs ``>= es`` whose number is a multiple of ``update_every``, each
      visited sample with ``tau > delta`` gets ``t <- clamp(m t + (1 - m) softmax(z).detach(), 1e-4, 1)``
      (before its loss is computed, as in the released code).
variant="recon" (section 3(b), [RECON])
    * ``t`` starts as ``onehot(y~)``; ``q = tau p + (1 - tau) t``;
    * ``L = mean(-sum_k t_k log q_k) + lam * mean(-log tau) + beta * mean(log(1 - <p, t>))``
      (the ELR-like auxiliary term; the spec leaves its form unverified);
    * target estimation ``t <- m t + (1 - m) p / sum(p)`` (temporal ensembling as in ELR) every
      iteration from epoch ``es``; optionally only for samples with ``tau < tau0``;
    * the branch's bias starts at +3 (tau about 0.95) so early learning is not damped.

The loss and the target step are module functions (``car_loss_terms``, ``car_target_step``), shared with
:class:`noisyfit.losses.CARLoss`, which runs them in your own training loop.

Epochs are counted from 1 here, as in the released script and in the trainer's progress display:
``es=60`` means that the 60th epoch is the first that estimates targets (trainer epoch index 59).

Hyper-parameters (default = the released CIFAR script; "recon" defaults in brackets)
---------------------------------------------------------------------------------
variant = "code"      "code" | "recon".
lam = 10              penalty coefficient lambda (code choices 0.5 / 10 / 50; 50 for Clothing1M and
                      WebVision) [recon 0.5: the spec's fixed lambda_tau in [0.1, 1]].
beta = 0.0            auxiliary coefficient (0.1 in the "RNAL" variant and for Clothing1M/WebVision)
                      [recon 3.0: lambda_R, ELR's CIFAR-10 value, as the spec says to follow ELR].
m = 0.9               target momentum (choices 0.7 / 0.9 / 0.99).
es = 60               first epoch of target estimation (choices 20 / 60 / 100).
update_every = 10     estimate targets only in epochs divisible by this (the CIFAR script; its other
                      scripts update every iteration, i.e. 1) [recon 1].
delta = 0.0           update only samples with tau > delta (0: all).
tau0 = None           recon option: update only samples with tau < tau0 (None: all).
conf_bias_init = None initial bias of the indicator unit (None: default Linear init) [recon 3.0].
flag_tau = None       tau threshold of the flags; None uses ``(1 + lam / (1 + lam)) / 2``, halfway
                      between 1 and the fixed point ``lam / (1 + lam)`` that tau reaches on a sample
                      whose label the network gives probability 0 (0.955 for lam = 10, 0.667 for
                      lam = 0.5). Where the network gives the label probability p_y, the penalty and
                      the main term balance at ``tau = lam / ((1 + lam)(1 - p_y))``, so tau < 1 only
                      where ``p_y < 1 / (1 + lam)``.
flag_rule = "either"  "tau": tau < flag_tau; "target": the estimated target's argmax is not the given
                      label; "either": one of the two (both are CAR's own evidence of a wrong label).
clean_score = "tau"   per-sample clean score: "tau" (the indicator, as the paper reads it) or "target"
                      (our option, not in the paper or code: the estimated target's normalised mass on
                      the given label). Why: with lam = 10, tau saturates at 1.0 on nearly every sample
                      (see "Observed behaviour"), so it cannot rank; the target keeps the network's
                      running opinion of the label. On CIFAR-10N worst (CPU protocol, seed 0) tau had
                      AUROC 0.534 (benchmarks/results/cpu-cifar10n/car__worst__seed0.json); the target
                      mass scored 0.933 on that run's state in a check whose result file was not kept
                      (unrecorded: read it as an observation). On a schedule as short as the CPU one the
                      EMA also cannot move a target's argmax away from the given label (after k updates
                      the label keeps mass >= m^k), so "target" flags stay empty: flag_rule is unchanged.
Optimiser (presets, not method arguments): ResNet-34, batch 64, SGD lr 0.02, momentum 0.9, weight
decay 1e-3, CosineAnnealingWarmRestarts(T_0=10, eta_min=1e-3), 500 epochs (300 for asymmetric noise).
The CPU preset (``car/cpu-cifar10n``) adds ``optim.grad_clip: 5``, which is in neither the released
NAL code nor CE's CPU preset: CAR and CE there are compared at different clipping (it stays, because
changing it would change an existing suite's CAR rows; compare at equal clipping with
``optim.grad_clip=5`` on CE or ``optim.grad_clip=null`` on CAR).

Presets: ``car/cpu-cifar10n`` (released lam = 10) and the variant ``car/cpu-cifar10n-lam05`` (lam = 0.5,
another released choice). Why the variant: the per-sample loss is minimised at the balance point
``tau* = lam / ((1 + lam)(1 - p_y))`` (capped at 1), which for lam = 10 on 10 classes is 1 for every
``p_y >= 1/11``, i.e. for nearly every sample; the branch's logit then grows until sigmoid rounds to
exactly 1.0 in float32, where its gradient is exactly 0 and tau cannot rank samples any more. With
lam = 0.5, tau* < 1 wherever ``p_y < 2/3``.

Outputs
-------
Clean score: tau of an eval-mode pass over the training set after the last epoch (higher = the
branch trusts the given label more). Flags: see ``flag_rule``. Corrected target:
:meth:`corrected_targets`, the ``[N, C]`` estimated targets (also written to per_sample.npz as
``corrected_target``, with ``tau``); suggested label = their argmax (the given label until
estimation has started).
Prediction: the class head only (the indicator branch is ignored at test time, as released).

Observed behaviour (toy data, not a departure)
----------------------------------------------
With lam = 10 the penalty dominates the first steps (tau starts near 0.5: 10 * log 2 = 6.9), the
unit's weights grow fast and tau reaches exactly 1.0 in float32 (sigmoid of a logit above ~17)
for every sample within the first two epochs (seen on 16x16 digits with fastcnn and on blobs with
a 256-wide MLP); the clamp at 1 - 1e-12 cannot prevent it (1 - 1e-12 rounds to 1
in float32). From then on the branch gets no gradient and training is CE on the (estimated) targets.
Only samples whose label gets p_y < 1 / (1 + lam) = 0.09 pull tau down, and only if the network can
tell them apart from their clean neighbours (tau sees x, not the label). Smaller lam (the released
choice 0.5) keeps tau responsive but damps all learning while p_y is small (the factor
tau p_y / (tau p_y + 1 - tau) is 0.05-0.1 at the start with 10 classes).

Mechanism health (``health``, per epoch; recorded during the epoch's training steps, no extra pass)
-------------------------------------------------------------------------------------------------
``tau_one_share``: share of the samples visited this epoch whose training-pass tau was exactly 1.0 in
float32 (where the branch's gradient is exactly 0: saturation). ``tau``: that tau per sample as a
score, higher = cleaner (the trainer logs ``tau_auroc``); the few samples the epoch did not visit
(the trainer's dropped last batch) get the mean tau of the visited ones. ``target_left_label``: mask
of samples whose estimated target's argmax is no longer the given label (``_share``; its
``_precision`` is the share of those whose given label was right, so lower is better there).

Departures from the released code
---------------------------------
* ``t`` is stored clamped to [1e-4, 1] from the start. The released code keeps exact one-hot rows and
  clamps the whole table at its first update, so a row's first EMA step differs by ``m * 1e-4`` in
  the off-label entries; every loss before ``es`` is identical (it uses the clamped one-hot too).
* The learning rate is set every iteration from the fractional epoch (the released scheduler steps
  once per epoch).
* Losses are computed in float32 under bf16/fp16 autocast.
* ``optim.grad_clip: 5`` in the CPU preset (see "Optimiser" above): not in the released code.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from noisyfit.methods.base import Method, register_method
from noisyfit.models.heads.confidence import ConfidenceHead
from noisyfit.ops.epoch_record import EpochRecord

VARIANTS = ("code", "recon")
FLAG_RULES = ("tau", "target", "either")
CLEAN_SCORES = ("tau", "target")
VARIANT_DEFAULTS = {
    "code": {"lam": 10.0, "beta": 0.0, "update_every": 10, "conf_bias_init": None},
    "recon": {"lam": 0.5, "beta": 3.0, "update_every": 1, "conf_bias_init": 3.0},
}
TARGET_CLAMP = 1e-4  # released code: soft targets and the one-hot label live in [1e-4, 1]
PROB_EPS = 1e-12  # released code: p and tau are clamped to [eps, 1 - eps]
Q_MIN = 1e-7  # released code: q is clamped to [1e-7, 1]


def car_loss_terms(logits: torch.Tensor, tau: torch.Tensor, t: torch.Tensor, variant: str = "code"
                   ) -> dict[str, torch.Tensor]:
    """CAR's main, penalty and auxiliary terms (batch means) for logits ``[B, C]``, confidences ``tau`` ``[B]``
    and targets ``t`` ``[B, C]``, in float32 (see the module docstring for the two variants)."""
    with torch.autocast(device_type=logits.device.type, enabled=False):
        logits, tau, t = logits.float(), tau.float(), t.float()
        p = torch.softmax(logits, dim=1)
        tau_ = tau[:, None]
        if variant == "code":
            p = p.clamp(PROB_EPS, 1.0 - PROB_EPS)
            q = (tau_ * p + (1.0 - tau_) * t).clamp(Q_MIN, 1.0)
            aux = -(q * torch.log(t)).sum(dim=1)  # reverse CE of q against the target
        else:
            q = (tau_ * p + (1.0 - tau_) * t).clamp_min(Q_MIN)
            pc = p.clamp(TARGET_CLAMP, 1.0 - TARGET_CLAMP)
            aux = torch.log((1.0 - (pc * t).sum(dim=1)).clamp_min(Q_MIN))  # ELR-like
        main = -(t * torch.log(q)).sum(dim=1)
        pen = -torch.log(tau)
    return {"loss_main": main.mean(), "loss_penalty": pen.mean(), "loss_aux": aux.mean()}


def car_initial_targets(labels: torch.Tensor, num_classes: int, variant: str = "code") -> torch.Tensor:
    """Targets as the given labels: one-hot, clamped to [1e-4, 1] in the released variant."""
    t = F.one_hot(labels.long(), num_classes).float()
    return t.clamp(TARGET_CLAMP, 1.0) if variant == "code" else t


@torch.no_grad()
def car_target_step(targets: torch.Tensor, index: torch.Tensor, logits: torch.Tensor, tau: torch.Tensor, *,
                    m: float, delta: float = 0.0, tau0: float | None = None, variant: str = "code") -> torch.Tensor:
    """One EMA step of CAR's target estimation on the rows ``index`` of ``targets`` (in place); returns the mask of
    the batch's rows that changed (those with ``tau > delta``, and ``tau < tau0`` when given)."""
    p = torch.softmax(logits.detach().float(), dim=1)
    mask = tau.detach() > delta
    if tau0 is not None:
        mask &= tau.detach() < tau0
    if variant == "recon":
        p = p / p.sum(dim=1, keepdim=True)
    rows = index[mask]
    new = m * targets[rows] + (1.0 - m) * p[mask]
    if variant == "code":
        new = new.clamp(TARGET_CLAMP, 1.0)
    targets[rows] = new
    return mask


@register_method("car")
class CAR(Method):
    """Indicator branch + confidence-interpolated loss + per-sample target estimation."""

    summary = 'Confidence Adaptive Regularization (Lu et al. 2021): a confidence branch that interpolates the loss, then per-sample target estimation. 1 network'

    # epoch_tau: this epoch's training-pass tau per sample, for health() (not in checkpoints; see EpochRecord)
    per_sample_state = ("targets", "epoch_tau.values")

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"lam": "[0, inf)", "beta": "[0, inf)", "m": "[0, 1]", "flag_tau": "[0, 1]"}

    @dataclasses.dataclass
    class Hyper:
        variant: str = "code"
        lam: float | None = None
        beta: float | None = None
        m: float = 0.9
        es: int = 60
        update_every: int | None = None
        delta: float = 0.0
        tau0: float | None = None
        conf_bias_init: float | None = None
        flag_tau: float | None = None
        flag_rule: str = "either"
        clean_score: str = "tau"

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        hp = self.hp
        if hp.variant not in VARIANTS:
            raise ValueError(f"car: variant must be one of {VARIANTS}, got {hp.variant!r}")
        # Fill the variant's defaults so results.json records the values actually used.
        filled = {k: v for k, v in VARIANT_DEFAULTS[hp.variant].items() if getattr(hp, k) is None}
        hp = dataclasses.replace(hp, **filled)
        if hp.flag_tau is None:
            hp = dataclasses.replace(hp, flag_tau=0.5 * (1.0 + hp.lam / (1.0 + hp.lam)))
        if hp.flag_rule not in FLAG_RULES:
            raise ValueError(f"car: flag_rule must be one of {FLAG_RULES}, got {hp.flag_rule!r}")
        if hp.clean_score not in CLEAN_SCORES:
            raise ValueError(f"car: clean_score must be one of {CLEAN_SCORES}, got {hp.clean_score!r}")
        if not 0.0 <= hp.m <= 1.0:
            raise ValueError(f"car: m must be in [0, 1], got {hp.m}")
        if hp.es < 1 or hp.update_every < 1:
            raise ValueError(f"car: es and update_every count epochs from 1; got es={hp.es}, "
                             f"update_every={hp.update_every}")
        self.hp = hp
        self.net = make_backbone()
        self.conf_head = ConfidenceHead(self.net.feature_dim, bias_init=hp.conf_bias_init, eps=PROB_EPS)
        self.register_buffer("targets", torch.zeros(num_samples, num_classes))
        self.register_buffer("final_tau", torch.zeros(0))
        self.epoch_tau = EpochRecord(num_samples, fill=float("nan"), dtype=torch.float32)
        self._init_targets = True

    # ------------------------------------------------------------------ targets
    def attach(self, ctx):
        super().attach(ctx)
        if self._init_targets:
            self.reset_targets(ctx.labels)

    def reset_targets(self, labels: torch.Tensor) -> None:
        """Targets = one-hot of the given labels (clamped to [1e-4, 1] for the released variant)."""
        self.targets.copy_(car_initial_targets(labels.to(self.targets.device), self.num_classes, self.hp.variant))

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        # A loaded checkpoint brings its own targets: attach() must not overwrite them.
        self._init_targets = False
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    def estimation_active(self, epoch: int) -> bool:
        """True in epochs (0-based trainer index) that use estimated targets: epoch + 1 >= es."""
        return epoch + 1 >= self.hp.es

    def updates_targets(self, epoch: int) -> bool:
        """True in epochs (0-based index) that update targets: >= es and a multiple of update_every."""
        return self.estimation_active(epoch) and (epoch + 1) % self.hp.update_every == 0

    @torch.no_grad()
    def update_targets(self, index: torch.Tensor, logits: torch.Tensor, tau: torch.Tensor) -> torch.Tensor:
        """One EMA step on the targets of ``index``; returns the mask of rows that changed."""
        hp = self.hp
        return car_target_step(self.targets, index, logits, tau, m=hp.m, delta=hp.delta, tau0=hp.tau0,
                               variant=hp.variant)

    # ------------------------------------------------------------------ loss
    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(class logits [B, C], tau [B])`` from one backbone pass."""
        h = self.net.forward_features(x)
        return self.net.head(h), self.conf_head(h)

    def loss_terms(self, logits: torch.Tensor, tau: torch.Tensor, t: torch.Tensor) -> dict[str, torch.Tensor]:
        """Main, penalty and auxiliary terms (batch means) for logits, confidences and targets."""
        return car_loss_terms(logits, tau, t, self.hp.variant)

    def training_step(self, batch, epoch):
        logits, tau = self.forward_heads(batch.x)
        self.epoch_tau.write(batch.index, tau.float())
        if self.updates_targets(epoch):
            self.update_targets(batch.index, logits, tau)
        t = self.targets[batch.index]
        terms = self.loss_terms(logits, tau, t)
        loss = terms["loss_main"] + self.hp.lam * terms["loss_penalty"] + self.hp.beta * terms["loss_aux"]
        return {"loss": loss, **terms, "tau_mean": tau.detach().mean()}

    def predict_logits(self, x):
        return self.net(x)

    # ------------------------------------------------------------------ outputs
    def on_fit_end(self, ctx):
        def both(x):
            logits, tau = self.forward_heads(x)
            return torch.cat([logits.float(), tau.float()[:, None]], dim=1)

        out = ctx.predict_train(both)
        self.final_probs = torch.softmax(out[:, :-1], dim=1)
        self.final_tau = out[:, -1].contiguous()

    def clean_scores(self, labels: np.ndarray) -> np.ndarray | None:
        """Higher = cleaner: tau of the final eval-mode pass over the training set (``clean_score="tau"``)
        or the estimated target's normalised mass on the given label (``"target"``)."""
        if self.hp.clean_score == "target":
            t = self.corrected_targets().astype(np.float64)
            mass = t[np.arange(len(t)), np.asarray(labels)]
            return mass / t.sum(axis=1)
        return self.tau_scores()

    def tau_scores(self) -> np.ndarray | None:
        """tau of the final eval-mode pass over the training set, or None before the fit ends."""
        if self.final_tau.numel() == 0:
            return None
        return self.final_tau.cpu().numpy()

    def noisy_flags(self, labels: np.ndarray) -> np.ndarray | None:
        scores = self.tau_scores()
        if scores is None:
            return None
        low_tau = scores < self.hp.flag_tau
        corrected = self.suggested_labels() != np.asarray(labels)
        return {"tau": low_tau, "target": corrected, "either": low_tau | corrected}[self.hp.flag_rule]

    def flag_reason(self) -> str:
        tau = f"indicator confidence tau < {self.hp.flag_tau:.4g}"
        target = "argmax of the estimated target != given label"
        return {"tau": tau, "target": target, "either": f"{tau}, or {target}"}[self.hp.flag_rule]

    def health(self, epoch):
        """Saturation and ranking of this epoch's tau, and targets that left their label (see above)."""
        out: dict = {}
        tau = self.epoch_tau.values.cpu().numpy()
        seen = ~np.isnan(tau)
        if seen.any():
            out["tau_one_share"] = float(np.mean(tau[seen] == np.float32(1.0)))
            out["tau"] = np.where(seen, tau, tau[seen].mean()).astype(np.float64)
        labels = self.ctx.labels.to(self.targets.device)
        out["target_left_label"] = (self.targets.argmax(dim=1) != labels).cpu().numpy()
        return out

    def corrected_targets(self) -> np.ndarray:
        """The estimated per-sample targets ``[N, C]`` (rows of the released variant sum to about 1)."""
        return self.targets.cpu().numpy()

    def per_sample_extras(self) -> dict[str, np.ndarray | None]:
        """Written to per_sample.npz: the estimated soft targets and tau."""
        tau = self.final_tau.cpu().numpy() if self.final_tau.numel() else None
        return {"corrected_target": self.corrected_targets().astype(np.float32), "tau": tau}

    def suggested_labels(self) -> np.ndarray:
        """Argmax of the estimated targets: the corrected label (the given one before ``es``)."""
        return self.targets.argmax(dim=1).cpu().numpy()
