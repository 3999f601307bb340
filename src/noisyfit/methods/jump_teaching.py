"""Jump-teaching: one network, selection from an earlier state of itself, a loss distribution in code space.

K. Ji, F. Cheng, Z. Wang, (Q. Zhang,) B. Huang. "Jump-teaching: Ultra Efficient and Robust Learning with
Noisy Label", arXiv:2405.17137; final version "Jump-teaching: Combating Sample Selection Bias via
Temporal Disagreement", AAAI 2026. Official code: github.com/ky-ji/Jump-teaching (read at 40dfd07/8fc4729;
spec: shared/specs/methods.md section 4). Implemented from the spec and the code's behaviour, not copied.

Mechanism [CODE]
* A classifier head z (every cross-entropy uses z / T) and an auxiliary code head h = MLP(feature) in
  (-1, 1)^K, trained against the Hadamard codeword of the given label (``noisyfit.ops.hadamard``).
* The per-bit BCE vector l_i in R^K is the sample's "loss distribution"; a sample is clean when
  Var_k(l_ik) < tau (unbiased variance) or when the classifier's argmax equals its label.
* The jump: the flags used to update on a batch are the ones computed when these samples were last
  seen (about one epoch earlier); the flags computed from the current forward pass are stored for the
  next visit (``noisyfit.ops.jump.JumpSelection``, a per-sample buffer gathered by index under DDP).
* Warm-up epochs: CE(z/T) + mean BCE over all samples, weak view. After warm-up: the input is the
  blend lam * weak + (1 - lam) * strong of the same image, lam ~ Beta(5, 5), lam <- max(lam, 1 - lam),
  and the loss is (|S|/B) * [CE_S(z/T) + BCE_S], S = the batch's stored flags.

Hyper-parameters (official CIFAR defaults)
* ``warmup_epochs`` = 30 (of 200) -- epochs trained on all samples.
* ``tau`` = 1e-3 -- variance threshold of the single-loss criterion.
* ``temperature`` = 2 -- T dividing the classifier logits in every CE.
* ``code_bits`` = None -> 32 for up to 32 classes, 64 up to 128 classes (official: 32 for CIFAR-10 and
  Clothing1M, 64 for CIFAR-100 and WebVision; a power of two with C <= 2K).
* ``blend_alpha`` = 5.0 -- alpha of the Beta(alpha, alpha) weak/strong blend (0: weak view only).
* ``code_dropout`` = 0.5 -- dropout in the code head's MLP.
* ``jump_rate`` = 1.0 -- probability that a batch uses the stale flags (see departures); 1 = the code.
Optimiser (preset, not a hyper-parameter): SGD without momentum, lr 0.2, weight decay 1e-3, cosine to
5e-4 over 200 epochs, batch 128, PreAct ResNet-18 (``configs/jump_teaching/paper-cifar10n.yaml``).

Outputs
* Test accuracy (``predict_logits``) is the classifier head's argmax. The code-decoding accuracy that
  the official CIFAR scripts store (acc2: argmax_c <sign(h), c_c>) comes from ``predict_code_logits``,
  which the trainer evaluates as the extra head ``code`` (``test_acc_code`` / ``val_acc_code`` in every
  epoch row). Tables built from ``test_acc`` use the classifier head.
* ``noisy_flags``: not selected at the sample's last visit (the flags the next epoch would train on).
* ``clean_scores``: from an eval-mode pass over the unaugmented training set after the last epoch,
  ``-Var_k(l_ik)`` plus a bonus of ``max_bit_variance`` when the classifier's argmax equals the given
  label: the selection rule turned into a ranking (rule first, then variance), so ``score > -tau``
  exactly when the rule calls the sample clean on that pass.

Mechanism health (``health``, per epoch; recorded during the epoch's training steps, no extra pass)
* ``selected`` (after warm-up only): mask of the samples whose loss entered an update this epoch, i.e.
  the flags applied (stale with jump rate 1). The trainer logs ``selected_share``,
  ``selected_precision`` (share of right labels among them) and ``selected_recall``. The argmax clause
  of the rule keeps a memorised label, so a share creeping towards 1 with falling precision is the
  sign of memorisation. Samples the epoch did not visit (dropped last batch) count as not selected.
* ``rule_clean`` (every epoch, warm-up included): the rule's fresh decision at each sample's latest
  visit, i.e. the flags the next epoch will apply (the ``jump.flags`` table).

Departures from the paper / official code
* Jump rate r [RECON]: the papers (v4, ICLR 2025) describe a jump rate r; the released code has none.
  We read r as the per-batch probability of training on stale rather than fresh flags; r = 1 (default)
  is the released code.
* Strong view: the shared augmenter's kornia AutoAugment (CIFAR-10 policy) + crop + flip, not the
  official RandAugment-without-geometric-ops + Cutout. The policy is drawn per image
  (``train.strong_draw="image"``); runs stored before that key existed drew one sub-policy per batch.
* When no sample of a batch is selected, the official code skips the optimiser step; our trainer always
  steps, so the loss is a zero that keeps the graph (zero gradients; weight decay, and momentum where the
  optimiser has it, still move the weights). With batch 128+ and a warm-started model this practically
  never happens.
* Model selection: the official CIFAR script trains on all training images and stores the mean
  code-decoding accuracy of the last 9 epochs; the trainer holds out a noisy-validation split and
  selects its best epoch by the classifier head (``final`` in results.json is the last epoch).
* The cosine schedule is evaluated per iteration by the trainer (official: stepped per epoch).
* The official model also computes an unused low-dimensional projection; we omit it.
* |S|/B * mean_S(.) is computed as sum_S(.) / B, which is the same number and makes the DDP gradient
  average equal the single-process gradient.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F

from noisyfit.methods.base import Method, register_method
from noisyfit.models.heads.code import CodeHead
from noisyfit.ops.epoch_record import EpochRecord
from noisyfit.ops.hadamard import bitwise_bce, decode_scores, default_code_bits, hadamard_codes
from noisyfit.ops.jump import JumpSelection

#: the official clamp of the code head's output before the BCE
CODE_CLAMP = 1e-4


def jump_teaching_clean(bit_losses: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                        tau: float) -> torch.Tensor:
    """Jump-teaching's single-loss criterion: ``Var_k(l_ik) < tau`` or ``argmax_c z_ic == label``.

    Parameters
    ----------
    bit_losses : Tensor
        ``[B, K]`` per-bit BCE of the code head against the label's codeword.
    logits : Tensor
        ``[B, C]`` classifier logits (any temperature: only the argmax is used).
    labels : Tensor
        ``[B]`` given labels.
    tau : float
        Variance threshold (unbiased variance over the K bits).

    Returns
    -------
    Tensor
        ``[B]`` bool, True = clean.
    """
    low_variance = bit_losses.float().var(dim=1) < tau
    agrees = logits.argmax(dim=1) == labels
    return low_variance | agrees


def jump_teaching_loss(z: torch.Tensor, h: torch.Tensor, y: torch.Tensor, index: torch.Tensor, codes: torch.Tensor,
                       jump: JumpSelection, *, tau: float, warm: bool, rule=None) -> dict[str, torch.Tensor]:
    """One Jump-teaching step's loss and selection (shared by the method and ``noisyfit.losses``).

    ``z`` tempered classifier logits ``[B, C]``, ``h`` the code head's soft code ``[B, K]``, ``codes`` the
    ``[C, K]`` codebook, ``jump`` the per-sample flag table. The fresh decision of this pass is stored for the
    samples' next visit (in warm-up too, as the code does); after warm-up the loss uses the flags ``jump``
    returns (stale with jump rate 1): ``sum_S (CE_i + mean_k l_ik) / B``, else the mean over the batch.
    ``rule(bit_losses, z, y)`` replaces the clean rule (:func:`jump_teaching_clean` with ``tau``) when given.
    Returns ``loss``, ``used`` (the mask the loss used), ``fresh`` and ``bit_losses``.
    """
    bit_losses = bitwise_bce(h, codes[y], clamp=CODE_CLAMP)  # [B, K]
    with torch.no_grad():
        fresh = jump_teaching_clean(bit_losses, z, y, tau) if rule is None else rule(bit_losses, z, y)
    stale_or_fresh = jump(index, fresh)
    per_sample = F.cross_entropy(z, y, reduction="none") + bit_losses.mean(dim=1)
    if warm:
        used = torch.ones_like(fresh)
        loss = per_sample.mean()
    else:
        used = stale_or_fresh
        # (|S|/B) * (mean_S CE + mean_{S,K} BCE) == sum_S (CE_i + mean_k l_ik) / B; an empty S
        # gives a zero loss that still has a graph (every DDP rank then reduces the same grads).
        loss = (per_sample * used.float()).sum() / len(y)
    return {"loss": loss, "used": used, "fresh": fresh, "bit_losses": bit_losses}


def max_bit_variance(bits: int, clamp: float = CODE_CLAMP) -> float:
    """An upper bound of Var_k(l_ik): each bit loss lies in [0, -log(clamp/2)], so var <= L^2/4 * K/(K-1)."""
    top = -np.log(clamp / 2.0)
    return float(top * top / 4.0 * bits / max(bits - 1, 1))


@register_method("jump_teaching")
class JumpTeaching(Method):
    """Jump-teaching (see the module docstring)."""

    summary = 'Jump-teaching (Ji et al., AAAI 2026): one network selects samples from an earlier state of itself. 1 network'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"warmup_epochs": "[0, inf)", "tau": "[0, inf)", "temperature": "(0, inf)",
                    "code_bits": "[1, inf)", "blend_alpha": "[0, inf)", "code_dropout": "[0, 1)",
                    "jump_rate": "[0, 1]"}

    @dataclasses.dataclass
    class Hyper:
        warmup_epochs: int = 30
        tau: float = 1e-3
        temperature: float = 2.0
        code_bits: int | None = None
        blend_alpha: float = 5.0
        code_dropout: float = 0.5
        jump_rate: float = 1.0

        def __post_init__(self):
            # Overrides given as text on the command line (method.args.tau=1e-3) arrive as strings.
            self.warmup_epochs = int(self.warmup_epochs)
            self.tau, self.temperature = float(self.tau), float(self.temperature)
            self.blend_alpha, self.code_dropout = float(self.blend_alpha), float(self.code_dropout)
            self.jump_rate = float(self.jump_rate)
            self.code_bits = None if self.code_bits is None else int(self.code_bits)
            if self.temperature <= 0:
                raise ValueError(f"jump_teaching: temperature must be > 0, got {self.temperature}")

    # epoch_selected: the flags applied this epoch, for health() (not in checkpoints, see EpochRecord)
    per_sample_state = ("jump.flags", "epoch_selected.values")
    uses_strong_views = True

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.net = make_backbone()
        bits = self.hp.code_bits or default_code_bits(num_classes)
        self.register_buffer("codes", hadamard_codes(num_classes, bits), persistent=False)
        self.code_head = CodeHead(self.net.feature_dim, bits, dropout=self.hp.code_dropout)
        # Never-seen samples start unselected, as in the official code (warm-up covers them).
        self.jump = JumpSelection(num_samples, jump_rate=self.hp.jump_rate, initial=False)
        self.epoch_selected = EpochRecord(num_samples, fill=False, dtype=torch.bool)
        # Per-sample bit-loss variance of the eval pass after the last epoch (clean scores).
        self.register_buffer("final_variance", torch.zeros(0), persistent=True)

    @property
    def bits(self) -> int:
        return self.codes.shape[1]

    # ---------------------------------------------------------------- training
    def _input(self, batch, warm: bool) -> torch.Tensor:
        if warm or self.hp.blend_alpha <= 0:
            return batch.x
        a = torch.tensor(self.hp.blend_alpha)
        lam = float(torch.distributions.Beta(a, a).sample())
        lam = max(lam, 1.0 - lam)  # the weak view always dominates the blend
        return lam * batch.x + (1.0 - lam) * batch.strong()

    def forward_heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(z / T, h)``: tempered classifier logits and the soft code, both float32."""
        feats, z = self.net.features_and_logits(x)
        h = self.code_head(feats)
        return z.float() / self.hp.temperature, h.float()

    def fresh_flags(self, batch, z: torch.Tensor, bit_losses: torch.Tensor) -> torch.Tensor:
        """This step's clean decision for the batch (stored for the samples' next visit)."""
        return jump_teaching_clean(bit_losses, z, batch.y, self.hp.tau)

    def training_step(self, batch, epoch):
        warm = epoch < self.hp.warmup_epochs
        z, h = self.forward_heads(self._input(batch, warm))
        out = jump_teaching_loss(z, h, batch.y, batch.index, self.codes, self.jump, tau=self.hp.tau, warm=warm,
                                 rule=lambda bit_losses, z_, y_: self.fresh_flags(batch, z_, bit_losses))
        loss, used, fresh, bit_losses = out["loss"], out["used"], out["fresh"], out["bit_losses"]
        self.last_selection = used  # the mask this step's loss used (for inspection and tests)
        self.epoch_selected.write(batch.index, used)
        return {"loss": loss, "selected": float(used.float().mean()),
                "fresh_clean": float(fresh.float().mean()),
                "bce": float(bit_losses.detach().mean()),
                "stale_batch": float(self.jump.last_was_stale)}

    def health(self, epoch):
        """The flags applied this epoch (after warm-up) and the rule's latest fresh decisions."""
        out = {"rule_clean": self.jump.flags.cpu().numpy().copy()}
        if epoch >= self.hp.warmup_epochs:  # in warm-up every visited sample trains: nothing to report
            out["selected"] = self.epoch_selected.values.cpu().numpy().copy()
        return out

    # ---------------------------------------------------------------- prediction
    def predict_logits(self, x):
        """Classifier-head logits divided by T (argmax = the official acc1 prediction)."""
        return self.net(x).float() / self.hp.temperature

    def predict_code_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Code-decoding scores ``sign(h) @ codes.T``; their argmax is the official acc2 prediction."""
        return decode_scores(self.code_head(self.net.forward_features(x)), self.codes)

    def extra_eval_heads(self) -> dict:
        return {"code": self.predict_code_logits}

    @torch.no_grad()
    def on_fit_end(self, ctx):
        out = ctx.predict_train(lambda x: torch.cat(self.forward_heads(x), dim=1))
        c = self.num_classes
        z, h = out[:, :c], out[:, c:]
        self.final_probs = torch.softmax(z, dim=1)
        self.final_variance = bitwise_bce(h, self.codes[ctx.labels], clamp=CODE_CLAMP).var(dim=1)

    # ---------------------------------------------------------------- per-sample outputs
    def clean_scores(self, labels: np.ndarray) -> np.ndarray | None:
        """``-Var_k(l_ik)``, plus ``max_bit_variance`` where the classifier agrees with the label."""
        if self.final_variance.numel() == 0:
            return None
        var = self.final_variance.cpu().numpy().astype(np.float64)
        agrees = self.final_probs.argmax(dim=1).cpu().numpy() == np.asarray(labels)
        return -var + agrees * max_bit_variance(self.bits)

    def noisy_flags(self, labels: np.ndarray) -> np.ndarray:
        """Samples not selected at their last visit (they would be left out of the next update)."""
        return ~self.jump.flags.cpu().numpy()

    def flag_reason(self) -> str:
        return (f"at its last training visit, Var over {self.bits} Hadamard bits of the code-head BCE >= "
                f"{self.hp.tau:g} and the classifier's argmax != the given label (Jump-teaching rule)")
