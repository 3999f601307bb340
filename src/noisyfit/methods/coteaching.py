"""Co-teaching and J-Co-teaching (Co-teaching's selection passed through the jump wrapper).

Co-teaching: B. Han, Q. Yao, X. Yu, G. Niu, M. Xu, W. Hu, I. W. Tsang, M. Sugiyama. "Co-teaching: Robust
Training of Deep Neural Networks with Extremely Noisy Labels", NeurIPS 2018. Official code:
github.com/bhanML/Co-teaching (spec: shared/specs/methods.md section 8.1). J-Co-teaching: the
Jump-teaching paper's (Ji et al., arXiv:2405.17137, Table 4 of the ICLR 2025 version) application of the
jump-manner update to Co-teaching; no official code, built here as ``JumpSelection`` around the same
selector (``noisyfit.ops.jump``), not as a second copy of the method.

Mechanism [CODE]
* Two networks see the same batch. Each ranks the batch by its own CE and keeps the
  ``floor(R(t) * B)`` smallest; each network is updated on the samples its *peer* kept (the exchange).
* Keep rate R(t) = 1 - min(t / T_k * eps, eps) (c = 1), t the 0-based epoch.
* Adam, lr 0.001, beta1 0.9; from ``epoch_decay_start`` to the end the lr decays linearly,
  lr_t = lr * (E - t) / (E - epoch_decay_start), and beta1 drops to 0.1. This method applies that plan
  itself in ``on_epoch_start`` (it scales each optimiser group's base lr and sets beta1), so presets use
  ``optim.schedule: constant``; another schedule would multiply with it.
* J-Co-teaching: the two networks' fresh picks are stored per sample and used at the sample's next
  visit; with jump rate r a batch uses the stored picks with probability r (r = 1 by default).

Hyper-parameters (official defaults)
* ``forget_rate`` eps = 0.2 -- the official code's default (it sets eps to the known noise rate, default
  0.2). Our CIFAR-10N-worst presets set 0.4: the CIFAR-N paper's noise rate of "worst" (40.2%), i.e.
  the oracle knowledge Co-teaching assumes. Set it to your own estimate of the noise rate.
* ``num_gradual`` T_k = 10 -- epochs of the linear ramp of the forget rate.
* ``epoch_decay_start`` = 80 (CIFAR-10 and MNIST; 100 for CIFAR-100); None turns the plan off.
* ``beta1_after_decay`` = 0.1 -- Adam's beta1 from ``epoch_decay_start`` on.
* J-Co-teaching only: ``jump_rate`` = 1.0 (probability that a batch uses stale picks).

Outputs
* ``predict_logits``: network 1 (the official script reports both networks; network 2 is evaluated as
  the extra head ``net2``: ``test_acc_net2`` in the epoch rows).
* ``noisy_flags``: neither network kept the sample (small-loss membership) at its last visit.
* ``clean_scores``: ``-(CE_1 + CE_2) / 2`` of the given label, from an eval-mode pass over the
  unaugmented training set after the last epoch.

Mechanism health (``health``, per epoch; recorded during the epoch's training steps, no extra pass)
* ``selected_by_net1`` / ``selected_by_net2``: masks of the samples each network picked this epoch
  (the picks its *peer* was updated on; for J-Co-teaching the applied, i.e. mostly stale, picks);
  ``selected_by_either``: their union, the samples at least one network trained on. The trainer logs
  ``_share``, ``_precision`` (share of right labels among them) and ``_recall``. Shares count all
  training samples, so the few the epoch did not visit (the trainer's dropped last batch) count as not
  selected.

Departures from the paper / official code
* One optimiser over both networks with loss = loss_1 + loss_2: the networks share no parameter, so each
  gets the gradient of its own loss, as with the code's two Adam instances.
* The loss is the mean CE over the kept samples. The official ``loss_coteaching`` divides that mean by
  the number kept once more; under Adam a constant loss scale changes nothing but the epsilon term.
* The ramp: the official code fills epochs 0..T_k-1 with ``linspace(0, eps, T_k)`` and starts training at
  its epoch 1; we use the paper's R(t) with our 0-based epochs (eps reached at epoch T_k, not T_k - 1).
  The exponent c is fixed to 1 (the paper and the code disagree on where c enters).
* Under DDP each rank ranks its own shard of the global batch (the official code is single-process).
* Inputs: the official CIFAR pipeline has no augmentation and no normalisation (``ToTensor`` only);
  here both networks see the trainer's weak view (reflect-pad crop + flip, normalised).
* Model selection: the official script only logs both networks' test accuracy every epoch; here the
  trainer selects the best noisy-validation epoch of network 1.
* J-Co-teaching [RECON]: the stale picks are used as stored, not re-trimmed to R(t), so the jump version
  lags the forget-rate ramp by one epoch; never-visited samples count as kept (epoch 0 keeps all anyway).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from noisyfit.methods.base import Method, register_method
from noisyfit.ops.epoch_record import EpochRecord
from noisyfit.ops.jump import JumpSelection
from noisyfit.ops.small_loss import coteaching_forget_rate, small_loss_mask


def masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``values`` over ``mask``; a zero (with a graph) when the mask is empty."""
    m = mask.to(values.dtype)
    return (values * m).sum() / m.sum().clamp(min=1.0)


def adam_decay_plan(epoch: int, num_epochs: int, decay_start: int | None,
                    beta1: float = 0.9, beta1_after: float = 0.1) -> tuple[float, float]:
    """Co-teaching's per-epoch (lr factor, beta1): constant, then linear to ``1/(E - start)`` and beta1 0.1.

    Parameters
    ----------
    epoch, num_epochs : int
        0-based epoch t and the run's length E.
    decay_start : int or None
        First epoch of the decay; None (or >= E) keeps (1, beta1) throughout.
    """
    if decay_start is None or epoch < decay_start or decay_start >= num_epochs:
        return 1.0, beta1
    return (num_epochs - epoch) / (num_epochs - decay_start), beta1_after


@register_method("coteaching")
class CoTeaching(Method):
    """Co-teaching (see the module docstring)."""

    summary = 'Co-teaching (Han et al., NeurIPS 2018): two networks teach each other on their small-loss samples. 2 networks'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"num_gradual": "[0, inf)", "epoch_decay_start": "[0, inf)", "beta1_after_decay": "[0, 1)"}

    @dataclasses.dataclass
    class Hyper:
        forget_rate: float = 0.2
        num_gradual: int = 10
        epoch_decay_start: int | None = 80
        beta1_after_decay: float = 0.1

        def __post_init__(self):
            self.forget_rate = float(self.forget_rate)
            self.num_gradual = int(self.num_gradual)
            if self.epoch_decay_start is not None:
                self.epoch_decay_start = int(self.epoch_decay_start)
            self.beta1_after_decay = float(self.beta1_after_decay)
            if not 0.0 <= self.forget_rate < 1.0:
                raise ValueError(f"coteaching: forget_rate must be in [0, 1), got {self.forget_rate}")

    #: column j of ``selection.flags``: network j+1 kept the sample at its last visit; ``epoch_picks``:
    #: the picks applied this epoch, for health() (not in checkpoints, see EpochRecord)
    per_sample_state = ("selection.flags", "epoch_picks.values")

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.net1 = make_backbone()
        self.net2 = make_backbone()  # a second, independent initialisation
        # Plain Co-teaching is the jump wrapper at r = 0: fresh picks are used at once, and stored
        # anyway, which is the small-loss membership the flags report.
        self.selection = JumpSelection(num_samples, jump_rate=self.jump_rate(), initial=True, width=2)
        self.epoch_picks = EpochRecord(num_samples, fill=False, dtype=torch.bool, width=2)
        self.register_buffer("final_loss", torch.zeros(0), persistent=True)

    def jump_rate(self) -> float:
        return 0.0

    # ---------------------------------------------------------------- schedule
    def keep_rate(self, epoch: int) -> float:
        """R(t), the fraction of each batch each network keeps."""
        return 1.0 - coteaching_forget_rate(epoch, self.hp.forget_rate, self.hp.num_gradual)

    def on_epoch_start(self, epoch, ctx):
        super().on_epoch_start(epoch, ctx)  # resets the epoch record
        # Official Adam plan; the original base lr / beta1 are remembered in the group (they are saved
        # with the optimiser state, so a resumed run applies the same plan).
        from noisyfit.engine.optim import apply_method_lr_factor_to_group

        for g in ctx.optimizer.param_groups:
            beta1 = g.setdefault("coteaching_beta1", g["betas"][0] if "betas" in g else 0.9)
            factor, b1 = adam_decay_plan(epoch, ctx.num_epochs, self.hp.epoch_decay_start, beta1,
                                         self.hp.beta1_after_decay)
            if "betas" in g:
                g["betas"] = (b1, g["betas"][1])
            # the lr factor depends on the epoch only; the group keeps its first base lr (saved with the optimiser)
            apply_method_lr_factor_to_group(g, factor, owner="coteaching")

    # ---------------------------------------------------------------- training
    def select(self, losses1: torch.Tensor, losses2: torch.Tensor, keep_rate: float) -> torch.Tensor:
        """Fresh small-loss picks ``[B, 2]``: column j = kept by network j+1 on its own loss."""
        return torch.stack([small_loss_mask(losses1, keep_rate), small_loss_mask(losses2, keep_rate)], dim=1)

    def training_step(self, batch, epoch):
        x, y = batch.x, batch.y
        l1 = F.cross_entropy(self.net1(x).float(), y, reduction="none")
        l2 = F.cross_entropy(self.net2(x).float(), y, reduction="none")
        keep = self.keep_rate(epoch)
        picks = self.selection.select(batch.index, self.select, l1, l2, keep)
        self.epoch_picks.write(batch.index, picks)
        # The exchange: network 1 learns from network 2's picks and vice versa.
        loss1 = masked_mean(l1, picks[:, 1])
        loss2 = masked_mean(l2, picks[:, 0])
        return {"loss": loss1 + loss2, "loss1": float(loss1.detach()), "loss2": float(loss2.detach()),
                "keep_rate": keep, "kept1": float(picks[:, 0].float().mean()),
                "kept2": float(picks[:, 1].float().mean()),
                "pick_agreement": float((picks[:, 0] == picks[:, 1]).float().mean()),
                "stale_batch": float(self.selection.last_was_stale)}

    def health(self, epoch):
        """The picks applied this epoch, per network and their union (see the module docstring)."""
        picks = self.epoch_picks.values.cpu().numpy()
        return {"selected_by_net1": picks[:, 0].copy(), "selected_by_net2": picks[:, 1].copy(),
                "selected_by_either": picks.any(axis=1)}

    # ---------------------------------------------------------------- prediction
    def predict_logits(self, x):
        return self.net1(x)

    def predict_peer_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Network 2's logits (the official script reports both networks' accuracies)."""
        return self.net2(x)

    def extra_eval_heads(self) -> dict:
        return {"net2": self.predict_peer_logits}

    @torch.no_grad()
    def on_fit_end(self, ctx):
        out = ctx.predict_train(lambda x: torch.cat([self.net1(x).float(), self.net2(x).float()], dim=1))
        c = self.num_classes
        z1, z2 = out[:, :c], out[:, c:]
        y = ctx.labels
        self.final_probs = torch.softmax(z1, dim=1)
        ce1 = F.cross_entropy(z1, y, reduction="none")
        self.final_loss = 0.5 * (ce1 + F.cross_entropy(z2, y, reduction="none"))

    # ---------------------------------------------------------------- per-sample outputs
    def clean_scores(self, labels: np.ndarray) -> np.ndarray | None:
        """Minus the two networks' mean CE of the given label after training (higher = cleaner)."""
        if self.final_loss.numel() == 0:
            return None
        return -self.final_loss.cpu().numpy().astype(np.float64)

    def noisy_flags(self, labels: np.ndarray) -> np.ndarray:
        """Neither network kept the sample among its small-loss picks at the sample's last visit."""
        return ~self.selection.flags.any(dim=1).cpu().numpy()

    def flag_reason(self) -> str:
        # The keep rate of the last epoch (the flags' epoch): 1 - eps only once the T_k ramp is over.
        ctx = getattr(self, "ctx", None)
        keep = self.keep_rate(ctx.num_epochs - 1) if ctx is not None else 1 - self.hp.forget_rate
        return (f"at its last training visit, neither network ranked it among the {keep:.0%} "
                f"smallest-loss samples of its batch (Co-teaching, forget rate {self.hp.forget_rate:g})")


@register_method("j_coteaching")
class JCoTeaching(CoTeaching):
    """J-Co-teaching: Co-teaching whose picks are applied at the samples' next visit (the jump)."""

    summary = "J-Co-teaching (Ji et al., Jump-teaching paper): Co-teaching whose picks apply at the samples' next visit. 2 networks"

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"jump_rate": "[0, 1]"}

    @dataclasses.dataclass
    class Hyper(CoTeaching.Hyper):
        jump_rate: float = 1.0

        def __post_init__(self):
            super().__post_init__()
            self.jump_rate = float(self.jump_rate)

    def jump_rate(self) -> float:
        return self.hp.jump_rate

    def flag_reason(self) -> str:
        jump = f"(J-Co-teaching, jump rate {self.hp.jump_rate:g}"
        return super().flag_reason().replace("(Co-teaching", jump)
