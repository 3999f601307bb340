"""PEMM: Potential Energy based Mixture Model.

Zijia Wang, Wenbin Yang, Zhisong Liu and Zhen Jia. "Potential Energy based Mixture Model for Noisy
Label Learning." arXiv:2405.01186, 2024. Official code: Ralph-Finn/PEMM (derived from
HanxunH/SCELoss-Reproduce). Spec: ``shared/specs/methods.md`` section 2; everything below is [CODE]
(read in the official repository) unless marked otherwise.

The backbone's linear head is replaced by a distance classifier (``noisyfit.models.heads.distance``):
``h = dropout(relu(g(x)))``, ``z_c = -||h - mu_c||^2``, ``p = softmax(z)``. The loss is

    L = SCE(z, y~) + pe_weight * L_PE(M) + ga_weight * mean((h - p M)^2)

* ``SCE = alpha * CE + beta * RCE`` (``noisyfit.ops.losses.symmetric_cross_entropy``);
* ``L_PE = mean_c clip(phi(||mu_c||)) + mean_{i<j} clip(phi(||mu_i - mu_j||))`` with
  ``phi(r) = r^-3 - r^-2`` clipped to [-1.5, 1000]: centres settle at norm and mutual distance
  near 1.5, the minimum of phi;
* the "GA" term pulls the (dropped-out) feature toward the posterior-weighted mixture of centres;
  gradients flow into h, p and M.

Hyper-parameters (official defaults)
-----------------------------------
alpha = 0.1, beta = 1.0        SCE weights (README; argparse says alpha 0, the README runs use 0.1).
pe_weight = 2.0, ga_weight = 1.0   hard-coded loss weights.
pe_s = 3.0, pe_t = 2.0         exponents of phi (hard-coded).
pe_clip_min = -1.5, pe_clip_max = 1000.0   clip of each phi term.
dropout = 0.2                  on the feature before the distances.
feature_relu = True            ReLU on the backbone feature.
centre_weight_decay = None     None: the optimiser's weight decay, as the official code (whose
                               separate "fc1" group never matches a name, so all parameters, centres
                               included, get ``--l2_reg``); 0.0 gives the ablation the spec suggests
                               (decay pulls centres toward the origin, against L_PE's repulsion).
Optimiser (presets, not method arguments): SGD, Nesterov momentum 0.9, lr 0.01, gradient-norm clip
5.0, CosineAnnealingLR(T_max=10) stepped per epoch, weight decay 1e-2 (README) / 5e-4 (argparse).

Clean score: the eval-mode posterior of the given label (the base-class default). Flag: the given
label is not the most probable mixture component (argmax of the posterior). Not "posterior < 0.5":
the regularisers keep centres about 1.5 apart and pull features toward the mixture of centres, so
the posterior tends to stay soft (a feature sitting on its centre, with the other 9 centres 1.5
away, gets 1 / (1 + 9 exp(-2.25)) = 0.51) and a 0.5 threshold would over-flag.
Prediction: argmax of the distance logits.

Mechanism health (``health``, per epoch; from the centres, no extra pass): ``centre_dist_min``, the
smallest distance between two class centres (L_PE pushes it towards 1.5; near 0 two classes merged),
and ``centre_norm_mean``, the mean centre norm (also pushed towards 1.5, pulled down by weight decay).

Departures from the official code
---------------------------------
* Dropout is applied in training mode only. The official head uses functional dropout, which stays on
  in ``eval()``, so its test predictions are stochastic (spec 2(d)1).
* The norm of a centre is ``||mu_c||``; the official code uses ``F.pairwise_distance(mu, 0)``, which
  adds 1e-6 to each coordinate first (a difference of at most 1e-6 * sqrt(d) in each norm).
* Distances and L_PE are computed in float32 even under bf16/fp16 autocast (the expansion
  ``||h||^2 + ||mu||^2 - 2 h.mu`` cancels badly in 16-bit).
* The schedule is the trainer's ``cosine_periodic`` (restart_period 10): the official
  CosineAnnealingLR(T_max=10) curve ``0.5 (1 + cos(pi e / 10))`` of period 20, evaluated every
  iteration instead of once per epoch (see the paper preset).
* The 8-layer CIFAR-10 CNN of the SCE paper is not in the backbone registry; the paper preset uses
  the closest registered network (``fastcnn`` with widths 64/128/196, see
  ``configs/pemm/paper-cifar10n.yaml``).
* Model selection is the trainer's (best noisy-validation epoch); the official script reports the best
  test-accuracy epoch.
* The trainer's weak view pads the random crop by reflection (official: zero padding) and drops the
  last partial batch (official: kept).
* The official ``adjust_weight_decay`` group (weight decay 0.01 for "module.fc1") is dead code and is
  not reproduced; ``centre_weight_decay`` is the explicit switch instead.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from noisyfit.methods.base import Method, register_method
from noisyfit.models.heads.distance import DistanceHead, potential_energy
from noisyfit.ops.losses import symmetric_cross_entropy


def alignment_loss(h: torch.Tensor, probs: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """PEMM's "GA" term: ``mean over batch and dims of (h - p^T M)^2`` (gradients into all three)."""
    with torch.autocast(device_type=h.device.type, enabled=False):
        mix = probs.float() @ centres.float()
        return (h.float() - mix).pow(2).mean()


def pemm_loss_terms(h: torch.Tensor, logits: torch.Tensor, y: torch.Tensor, centres: torch.Tensor,
                    hp: "PEMM.Hyper") -> dict[str, torch.Tensor]:
    """PEMM's three loss terms and their weighted sum for one batch: ``h`` the distance head's feature (after its
    ReLU and dropout), ``logits`` its distance logits, ``centres`` its ``[C, d]`` centres (what
    ``DistanceHead.forward_with_features`` and ``.centres`` give). Shared by the method and ``noisyfit.losses``."""
    cls = symmetric_cross_entropy(logits, y, alpha=hp.alpha, beta=hp.beta).mean()
    pe = potential_energy(centres, s=hp.pe_s, t=hp.pe_t, clip_min=hp.pe_clip_min, clip_max=hp.pe_clip_max)
    ga = alignment_loss(h, torch.softmax(logits, dim=1), centres)
    total = cls + hp.pe_weight * pe + hp.ga_weight * ga
    return {"loss": total, "loss_sce": cls, "loss_pe": pe, "loss_ga": ga}


@register_method("pemm")
class PEMM(Method):
    """Distance classifier with potential-energy regularised centres, trained with SCE."""

    summary = 'Potential Energy based Mixture Model (Wang et al. 2024): a distance classifier whose class centres a potential-energy loss keeps apart, with SCE. 1 network'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"alpha": "[0, inf)", "beta": "[0, inf)", "pe_weight": "[0, inf)", "ga_weight": "[0, inf)",
                    "dropout": "[0, 1)", "centre_weight_decay": "[0, inf)"}

    @dataclasses.dataclass
    class Hyper:
        alpha: float = 0.1
        beta: float = 1.0
        pe_weight: float = 2.0
        ga_weight: float = 1.0
        pe_s: float = 3.0
        pe_t: float = 2.0
        pe_clip_min: float = -1.5
        pe_clip_max: float = 1000.0
        dropout: float = 0.2
        feature_relu: bool = True
        centre_weight_decay: float | None = None

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        if not 0.0 <= self.hp.dropout < 1.0:
            raise ValueError(f"pemm: dropout must be in [0, 1), got {self.hp.dropout}")
        self.net = make_backbone()
        # The distance head replaces the backbone's linear head, so ``net(x)`` gives distance logits.
        DistanceHead.replace_head(self.net, num_classes, dropout=self.hp.dropout,
                                  feature_relu=self.hp.feature_relu)

    @property
    def head(self) -> DistanceHead:
        return self.net.head

    @property
    def centres(self) -> torch.Tensor:
        return self.head.centres

    def param_groups(self):
        if self.hp.centre_weight_decay is None:
            return super().param_groups()
        rest = [p for p in self.parameters() if p.requires_grad and p is not self.centres]
        return [{"params": rest}, {"params": [self.centres], "weight_decay": self.hp.centre_weight_decay}]

    def losses(self, x: torch.Tensor, y: torch.Tensor) -> dict[str, torch.Tensor]:
        """The three loss terms and their weighted sum for one batch (training mode)."""
        h, logits = self.head.forward_with_features(self.net.forward_features(x))
        return pemm_loss_terms(h, logits, y, self.centres, self.hp)

    def training_step(self, batch, epoch):
        out = self.losses(batch.x, batch.y)
        with torch.no_grad():
            m = self.centres.float()
            out["centre_norm"] = m.norm(dim=1).mean()
            out["centre_dist_min"] = torch.pdist(m).min() if m.shape[0] > 1 else m.new_zeros(())
        return out

    @torch.no_grad()
    def health(self, epoch):
        """Minimum distance between class centres and their mean norm at the end of the epoch."""
        m = self.centres.detach().float()
        out = {"centre_norm_mean": float(m.norm(dim=1).mean())}
        if m.shape[0] > 1:
            out["centre_dist_min"] = float(torch.pdist(m).min())
        return out

    def predict_logits(self, x):
        return self.net(x)

    def noisy_flags(self, labels):
        if self.final_probs.numel() == 0:
            return None
        return self.final_probs.argmax(dim=1).cpu().numpy() != np.asarray(labels)

    def flag_reason(self) -> str:
        return "given label is not the argmax of the mixture posterior"
