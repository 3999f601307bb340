"""The PLR contrastive loss as a plug-in, and two methods that use it: CE + PLR and DivideMix + PLR.

Liu, X., Zhou, B., Yue, Z. and Cheng, C. "PLReMix: Combating Noisy Labels with Pseudo-Label Relaxed
Contrastive Representation Learning." WACV 2025 (arXiv:2402.17589). Official code: lxysl/PLReMix.
Spec: methods.md §5. The abstract claims the PLR loss "can be easily integrated into other LNL methods
and boost their performance"; the paper's plug-in recipes could not be read, so how the term is added to
CE and DivideMix here is [RECON], built from PLReMix's own use of it.

:class:`PLRTerm` is the reusable piece: one projection head per network (Linear-ReLU-Linear-L2norm), a
per-sample cache of eval-mode classifier logits (refreshed by the host method at each epoch start), and
* ``plr_loss``: the PLR loss on two strong views of a set of samples, negatives only between samples
  whose top-kappa sets of the *source* network's cached logits, plus the given label, are disjoint
  (kappa follows the schedule ``kappa`` -> -1 at each milestone, never below 1);
* ``warmup_loss``: PLReMix's warm-up InfoNCE (every other sample a negative), temperature 0.1.
A method adds it in three lines: build a ``PLRTerm`` with its networks' feature sizes, call ``store`` in
its per-epoch selection pass, add ``lambda_c * plr_loss(...)`` to its step (see :class:`CEPLR`).

PLR hyper-parameters (:class:`PLRHyper`, defaults = official CIFAR code)
------------------------------------------------------------------------
lambda_c            1.0 (weight of the PLR loss)
plr_temperature     1.0 (the ``PLRLoss`` constructor default in the code; 0.1 is the option the paper may state)
plr_form            "flat" (FlatNCE form, ``--crl flat_plr``); "supcon" = the standard form (``--crl plr``)
kappa               3, lowered by one at each of kappa_milestones = (40, 70) epochs (CIFAR)
warmup_temperature  0.1 (the warm-up InfoNCE: the flat form iff plr_form is "flat", the standard
                    cross-entropy InfoNCE otherwise. Departure: with ``--crl plr`` the official CIFAR
                    warm-up still applies the flat stop-gradient trick; ours is the standard form there,
                    as in the official Clothing1M/WebVision scripts.)
proj_dim            128 (projection size; hidden width = backbone feature size, 512 in the paper)

Methods registered here
-----------------------
``ce_plr``: CE on a weak view + the contrastive term on two strong views; InfoNCE before ``warmup_epochs``
(default 10, PLReMix's CIFAR warm-up), PLR after, with the mask from the network's own cached logits (a
single network has no partner) [RECON]. Clean score: p(given label), as CE.
``dividemix_plr``: DivideMix + PLR on the step's X and U samples (two strong views each), mask from the
partner network's cached logits and the given labels (noisy labels for U too, as in PLReMix), plus the
warm-up InfoNCE added to DivideMix's warm-up CE [RECON: the PLReMix recipe without prototypes, 2-D GMM or
strong-view mixing]. Clean score and mechanism health (each network's clean split per epoch): DivideMix's.

Departures from the official code
---------------------------------
* The loss is computed with masked log-sum-exp rather than ``log(sum(exp * mask))`` (same value, stable).
* The negative mask is exactly "top sets disjoint"; anchors with no negative are dropped (flat form), as
  in the code.
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from noisyfit.methods.base import Method, register_method
from noisyfit.methods.dividemix import DivideMix
from noisyfit.models.heads.projection import ProjectionHead
from noisyfit.ops.contrastive import PLR_FORMS, contrastive_loss, flat_logsumexp, info_nce, plr_negative_mask


@dataclasses.dataclass
class PLRHyper:
    """Hyper-parameters of the PLR term; a method's ``Hyper`` inherits them."""

    lambda_c: float = 1.0
    plr_temperature: float = 1.0
    plr_form: str = "flat"
    kappa: int = 3
    kappa_milestones: tuple = (40, 70)
    warmup_temperature: float = 0.1
    proj_dim: int = 128


#: allowed intervals of PLRHyper's numeric fields (every method with the PLR term declares them)
PLR_RANGES = {"lambda_c": "[0, inf)", "plr_temperature": "(0, inf)", "kappa": "[0, inf)",
              "warmup_temperature": "(0, inf)", "proj_dim": "[1, inf)"}


def kappa_at(kappa: int, milestones, epoch: int) -> int:
    """The official schedule: kappa, then kappa - 1 from the first milestone, kappa - 2 from the second,
    never below 1 (kappa = 0 stays 0: top-1 without the given label)."""
    if kappa <= 0:
        return 0
    return max(kappa - sum(epoch >= m for m in milestones), 1)


class PLRTerm(nn.Module):
    """Projection heads, cached classifier logits and the PLR / warm-up InfoNCE losses.

    Parameters
    ----------
    hp : PLRHyper
        The host method's hyper-parameters (anything with PLRHyper's fields).
    feature_dims : list of int
        Backbone feature size of each network (one projection head each).
    num_samples, num_classes : int
        Size of the logit cache ``cached_logits`` [num_samples, num_networks, num_classes].
    """

    def __init__(self, hp, feature_dims: list[int], num_samples: int, num_classes: int):
        super().__init__()
        if hp.plr_form not in PLR_FORMS:
            raise ValueError(f"method.args.plr_form must be one of {PLR_FORMS}, got {hp.plr_form!r}")
        self.hp = hp
        self.heads = nn.ModuleList([ProjectionHead(d, hp.proj_dim) for d in feature_dims])
        self.register_buffer("cached_logits", torch.zeros(num_samples, len(feature_dims), num_classes))

    def project(self, k: int, net: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """Unit-norm projection of network ``k``'s features."""
        return self.heads[k](net.forward_features(x))

    def store(self, logits: list[torch.Tensor]) -> None:
        """Cache each network's eval-mode logits over the training set (called once per epoch)."""
        for k, z in enumerate(logits):
            self.cached_logits[:, k] = z.float().to(self.cached_logits.device)

    def kappa(self, epoch: int) -> int:
        return kappa_at(self.hp.kappa, self.hp.kappa_milestones, epoch)

    def _two_views(self, k, net, v1, v2):
        q = self.project(k, net, torch.cat([v1, v2]))
        return q[:len(v1)], q[len(v1):]

    def plr_loss(self, k: int, net: nn.Module, index: torch.Tensor, labels: torch.Tensor, v1: torch.Tensor,
                 v2: torch.Tensor, epoch: int, source: int) -> torch.Tensor:
        """PLR loss of network ``k`` on two views of the samples ``index`` (unweighted).

        ``source`` is the network whose cached logits define the top-kappa sets (the partner).
        """
        neg = plr_negative_mask(self.cached_logits[index, source], labels, self.kappa(epoch))
        q1, q2 = self._two_views(k, net, v1, v2)
        with torch.no_grad():
            # For the logs: the flat form's value is 1 by construction, so log the log-sum-exp it
            # differentiates, and how many pairs the partner's top-kappa sets leave as negatives.
            n = len(labels)
            self.last_stats = {
                "plr_negatives": float(neg.float().sum() - neg.diagonal().float().sum()) / max(n * (n - 1), 1),
                "plr_lse": float(flat_logsumexp(q1.float(), q2.float(), neg, temperature=self.hp.plr_temperature))
                if bool(neg.any()) else 0.0}
        return contrastive_loss(q1, q2, neg, temperature=self.hp.plr_temperature, form=self.hp.plr_form)

    def warmup_loss(self, k: int, net: nn.Module, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """PLReMix's warm-up InfoNCE between two views (flat form iff ``plr_form == 'flat'``)."""
        q1, q2 = self._two_views(k, net, v1, v2)
        return info_nce(q1, q2, temperature=self.hp.warmup_temperature, flat=self.hp.plr_form == "flat")


@register_method("ce_plr")
class CEPLR(Method):
    """Cross-entropy plus the PLR contrastive term (see the module docstring)."""

    summary = 'CE + the PLR contrastive loss of PLReMix (Liu et al., WACV 2025) as a plug-in. 1 network'

    uses_strong_views = True

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = PLR_RANGES

    @dataclasses.dataclass
    class Hyper(PLRHyper):
        warmup_epochs: int = 10

    per_sample_state = ("plr.cached_logits",)

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.net = make_backbone()
        self.plr = PLRTerm(self.hp, [self.net.feature_dim], num_samples, num_classes)

    def on_epoch_start(self, epoch, ctx):
        if epoch >= self.hp.warmup_epochs:
            self.plr.store([ctx.predict_train(self.net)])

    def training_step(self, batch, epoch):
        ce = F.cross_entropy(self.net(batch.x).float(), batch.y)
        s1, s2 = batch.strong(), batch.strong()
        if epoch < self.hp.warmup_epochs:
            con = self.plr.warmup_loss(0, self.net, s1, s2)
            loss = ce + con
        else:
            con = self.plr.plr_loss(0, self.net, batch.index, batch.y, s1, s2, epoch, source=0)
            loss = ce + self.hp.lambda_c * con
            return {"loss": loss, "ce": ce.detach(), "contrastive": con.detach(), **self.plr.last_stats}
        return {"loss": loss, "ce": ce.detach(), "contrastive": con.detach()}

    def predict_logits(self, x):
        return self.net(x)


@register_method("dividemix_plr")
class DivideMixPLR(DivideMix):
    """DivideMix with the PLR term on every MixMatch step and InfoNCE in warm-up."""

    summary = 'DivideMix + the PLR contrastive loss (Liu et al., WACV 2025). 2 networks'

    uses_strong_views = True

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = PLR_RANGES

    @dataclasses.dataclass
    class Hyper(DivideMix.Hyper, PLRHyper):
        pass

    per_sample_state = DivideMix.per_sample_state + ("plr.cached_logits",)

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        self.plr = PLRTerm(self.hp, [net.feature_dim for net in self.nets], num_samples, num_classes)

    def fit_selection(self, outs, ctx, epoch):
        super().fit_selection(outs, ctx, epoch)
        self.plr.store(self.logits_from_outputs(outs))

    def warmup_loss(self, k, batch):
        loss, logs = super().warmup_loss(k, batch)
        con = self.plr.warmup_loss(k, self.nets[k], batch.strong(), batch.strong())
        return loss + con, {**logs, "contrastive": con.detach()}

    def extra_loss(self, k, xb, ub, views, epoch):
        (sx1, sx2), su = views.strong()
        v1 = torch.cat([sx1, su[0]]) if su else sx1
        v2 = torch.cat([sx2, su[1]]) if su else sx2
        index = torch.cat([xb.index, ub.index])
        labels = torch.cat([xb.y, ub.y])
        con = self.plr.plr_loss(k, self.nets[k], index, labels, v1, v2, epoch, source=1 - k)
        return self.hp.lambda_c * con, {"contrastive": con.detach(), **self.plr.last_stats}
