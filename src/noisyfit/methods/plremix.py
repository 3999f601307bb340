"""PLReMix: DivideMix + the PLR contrastive loss + class prototypes and a 2-D GMM selection.

Liu, X., Zhou, B., Yue, Z. and Cheng, C. "PLReMix: Combating Noisy Labels with Pseudo-Label Relaxed
Contrastive Representation Learning." WACV 2025, pp. 6517-6527 (arXiv:2402.17589). Official code:
lxysl/PLReMix, latest commit b0c4ec3 (2024-09-29, "class-aware self-adaptive sample selection").
Spec: methods.md §5, all [CODE] unless tagged.

Each network has a classifier head (logits z) and a projection head (unit q, 128-d), and a buffer of
unit class prototypes P (not trained by gradient); prototype logits s = q P^T / 0.1.
* Selection, per epoch and network, eval mode without augmentation: l_cls = CE(z, y), l_proto = CE(s, y),
  each min-max normalised; a full-covariance 2-component GMM on the 2-D points; clean posterior = the
  component whose mean is nearest the origin. Co-divide as in DivideMix (each network trains on the
  partner's split), and the partner's logits, prototype logits and projections are cached for the epoch.
* Step: DivideMix's SSL loss with targets from two weak views and MixUp of two *strong* (AutoAugment)
  views per sample (AugDesc-WS), plus lambda_c * PLR loss on the same strong views of X u U, negatives from
  the partner's cached top-kappa sets plus the given label (see noisyfit.methods.plr_plugin).
* Warm-up: CE (+ negative entropy for asym noise) + FlatNCE InfoNCE (tau 0.1) between two strong views.
* Prototypes: initialised at the end of warm-up as the normalised class means of each network's own q
  under the noisy labels. After each training epoch, network k's prototypes move towards the normalised
  class means of the *partner's* cached q over a selected subset, labelled by the partner's classifier
  argmax: P_c <- normalise(0.99 P_c + 0.01 normalise(mean q)); classes with no selected sample stay put.
  (As in the code. The two projection heads are trained separately, so their spaces are not aligned:
  after n updates at momentum m, only m^n of network k's prototypes comes from its own space.)
  Selection (latest commit, ``proto_update="adaptive"``): avg = softmax((1 - a) s + a z) with
  a = (1 + cos(pi e / E)) / 2; FreeMatch-style EMA (momentum 0.99, shared by the two networks, advanced
  twice per epoch) of the mean max-probability tau_g and of the mean prediction p_bar; keep i if
  max(avg_i) >= tau_g * p_bar[argmax avg_i] / max(p_bar). ``proto_update="fixed"`` is the initial commit:
  all samples, labelled argmax(0.5 softmax(s) + 0.5 softmax(z)) where its max > 0.8, else argmax z.
* Test: argmax of z_net1 + z_net2.

Hyper-parameters (defaults = official CIFAR-10 code)
----------------------------------------------------
DivideMix ones (see noisyfit.methods.dividemix): warmup_epochs 10, p_threshold 0.5, lambda_u 25 (CLI
default; README: sym 20/50/80/90 % -> 0/25/25/50, asym 40 % -> 0), rampup_epochs 16, alpha 4,
temperature (sharpening) 0.5, conf_penalty False (True for asym noise), mix_views "strong".
PLR ones (see noisyfit.methods.plr_plugin): lambda_c 1, plr_temperature 1.0 (code; 0.1 as an option),
plr_form "flat", kappa 3 with milestones (40, 70), warmup_temperature 0.1, proj_dim 128.
proto_temperature 0.1, proto_momentum 0.99, proto_update "adaptive" ("fixed" = initial commit),
sat_momentum 0.99 (``--semi_m``), fixed_threshold 0.8 (initial commit's pseudo_th).
prototype_source "partner" = the official code: network k's prototypes move towards class means of the
partner's cached projections (and the partner's logits pick the samples and their classes), while
network k's prototype loss and GMM use its own projections. "own" is OUR ablation, not in the paper or
code: every input of network k's update comes from network k itself, so its prototypes live in the
space its prototype loss measures. Why offer it: the two projection heads are trained separately, so
with "partner" the prototypes drift into a space the network's own q is not aligned with (on digits
the prototype / own class-mean cosine was -0.05 to 0.11 with "partner", 0.97-1.00 with "own"), and
the prototype loss becomes a near-random coordinate of the 2-D GMM. Variant preset:
``plremix/cpu-cifar10n-ownproto``.

Mechanism health: DivideMix's (``clean_split_net1/2`` masks and ``clean_prob_net1/2`` after warm-up;
see noisyfit.methods.dividemix), from the 2-D GMM here.

Clean score: the 2-D GMM clean posterior averaged over the two networks, refitted on the final networks;
flags: posterior <= p_threshold.

Departures from the official code
---------------------------------
* Those of DivideMix here (both networks in one step on a shared trainer batch, labelled members of the
  batch plus an equal number of unlabelled draws, seeded GMM, progress by samples seen).
* Prototype initialisation happens at the start of the first post-warm-up epoch (the official code does
  it right after the last warm-up epoch; no training happens in between, so the result is the same) and
  uses the same eval pass as that epoch's selection.
* A class absent from the noisy labels gets a zero prototype at initialisation (the code asserts).
* Training runs under the trainer's precision (bf16 autocast on the CPU protocol); the official CIFAR
  script trains in fp32 and wraps the model in ``torch.compile``.
* The loss-history buffers of the code are not kept (the 2-D GMM uses the current epoch only, as there).
* ``prototype_source="own"`` (off by default) is our ablation of the prototype update, see above.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F

from noisyfit.methods.base import register_method
from noisyfit.methods.dividemix import from_rank0, seed_for
from noisyfit.methods.plr_plugin import DivideMixPLR
from noisyfit.ops.gmm import gmm_split_2d

PROTO_UPDATES = ("adaptive", "fixed")
PROTOTYPE_SOURCES = ("partner", "own")  # partner = official; own = our ablation


def class_means(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised per-class mean of ``features`` and a mask of the classes that have samples."""
    sums = torch.zeros(num_classes, features.shape[1], device=features.device)
    sums.index_add_(0, labels, features.float())
    counts = torch.bincount(labels, minlength=num_classes)
    present = counts > 0
    means = sums / counts.clamp(min=1).unsqueeze(1)
    return F.normalize(means, dim=1), present


def adaptive_selection(proto_logits: torch.Tensor, cls_logits: torch.Tensor, epoch: int, num_epochs: int,
                       time_p: torch.Tensor, p_model: torch.Tensor, momentum: float) -> torch.Tensor:
    """Self-adaptive (FreeMatch-style) sample mask of the latest official commit; updates the EMA state.

    Parameters
    ----------
    proto_logits, cls_logits : tensor [N, C]
        Cached prototype and classifier logits (of the partner network).
    epoch, num_epochs : int
        For the cosine mixing weight a = (1 + cos(pi * epoch / num_epochs)) / 2 of the classifier logits.
    time_p : tensor [] and p_model : tensor [C]
        EMA state (global level and per-class mean prediction), updated in place.
    momentum : float
        EMA momentum (0.99).

    Returns
    -------
    tensor [N] bool
        Samples used to update the prototypes.
    """
    a = 0.5 * (1.0 + math.cos(math.pi * epoch / num_epochs))
    avg = F.softmax((1 - a) * proto_logits.float() + a * cls_logits.float(), dim=1)
    max_p, arg = avg.max(dim=1)
    time_p.mul_(momentum).add_((1 - momentum) * max_p.mean())
    p_model.mul_(momentum).add_((1 - momentum) * avg.mean(dim=0))
    scale = p_model / p_model.max()
    return max_p >= time_p * scale[arg]


def fixed_threshold_labels(proto_logits: torch.Tensor, cls_logits: torch.Tensor, threshold: float) -> torch.Tensor:
    """Initial commit's relabelling: argmax of the 50/50 mix where its max > threshold, else argmax z."""
    soft = 0.5 * F.softmax(proto_logits.float(), 1) + 0.5 * F.softmax(cls_logits.float(), 1)
    top, hard = soft.max(dim=1)
    return torch.where(top > threshold, hard, cls_logits.argmax(dim=1))


@register_method("plremix")
class PLReMix(DivideMixPLR):
    """PLReMix (see the module docstring)."""

    summary = 'PLReMix (Liu et al., WACV 2025): DivideMix + PLR contrastive loss, class prototypes and a 2-D GMM selection. 2 networks, strong cost'

    #: allowed intervals of the numeric hyper-parameters (checked before any data is loaded)
    hyper_ranges = {"proto_temperature": "(0, inf)", "proto_momentum": "[0, 1]", "sat_momentum": "[0, 1]",
                    "fixed_threshold": "[0, 1]"}

    @dataclasses.dataclass
    class Hyper(DivideMixPLR.Hyper):
        mix_views: str = "strong"
        proto_temperature: float = 0.1
        proto_momentum: float = 0.99
        proto_update: str = "adaptive"
        sat_momentum: float = 0.99
        fixed_threshold: float = 0.8
        prototype_source: str = "partner"

    per_sample_state = DivideMixPLR.per_sample_state + ("proto_logits", "proj_cache")

    def __init__(self, hyper, num_classes, num_samples, make_backbone):
        super().__init__(hyper, num_classes, num_samples, make_backbone)
        if self.hp.proto_update not in PROTO_UPDATES:
            raise ValueError(f"method.args.proto_update must be one of {PROTO_UPDATES}, "
                             f"got {self.hp.proto_update!r}")
        if self.hp.prototype_source not in PROTOTYPE_SOURCES:
            raise ValueError(f"method.args.prototype_source must be one of {PROTOTYPE_SOURCES}, "
                             f"got {self.hp.prototype_source!r}")
        n, d = self.num_nets, self.hp.proj_dim
        self.register_buffer("prototypes", torch.zeros(n, num_classes, d))
        self.register_buffer("proto_ready", torch.zeros((), dtype=torch.long))
        self.register_buffer("sat_time_p", torch.tensor(1.0 / num_classes))
        self.register_buffer("sat_p_model", torch.full((num_classes,), 1.0 / num_classes))
        self.register_buffer("proto_logits", torch.zeros(num_samples, n, num_classes))
        self.register_buffer("proj_cache", torch.zeros(num_samples, n, d))

    # ------------------------------------------------------------------ selection
    def selection_outputs(self, x):
        outs = []
        for k, net in enumerate(self.nets):
            h = net.forward_features(x)
            outs += [net.head(h).float(), self.plr.heads[k](h)]
        return torch.cat(outs, dim=1)

    def split_outputs(self, outs: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        c, d = self.num_classes, self.hp.proj_dim
        step = c + d
        return [(outs[:, k * step:k * step + c], outs[:, k * step + c:(k + 1) * step]) for k in range(self.num_nets)]

    def logits_from_outputs(self, outs):
        return [z for z, _ in self.split_outputs(outs)]

    def fit_selection(self, outs, ctx, epoch):
        labels = ctx.labels
        parts = self.split_outputs(outs)
        if int(self.proto_ready) == 0:
            for k, (_, q) in enumerate(parts):
                self.prototypes[k] = class_means(q, labels, self.num_classes)[0]
            self.proto_ready.fill_(1)
        probs = []
        for k, (z, q) in enumerate(parts):
            s = q.float() @ self.prototypes[k].T / self.hp.proto_temperature
            l_cls = F.cross_entropy(z.float(), labels, reduction="none")
            l_proto = F.cross_entropy(s, labels, reduction="none")
            split = gmm_split_2d(l_cls.cpu().numpy(), l_proto.cpu().numpy(), random_state=seed_for(ctx, epoch, k))
            probs.append(torch.from_numpy(split.clean_prob).float())
            self.proto_logits[:, k] = s
            self.proj_cache[:, k] = q.float()
        self.clean_prob.copy_(from_rank0(ctx, torch.stack(probs, dim=1).to(self.clean_prob.device)))
        self.plr.store([z for z, _ in parts])
        self.num_fits += 1

    # ------------------------------------------------------------------ prototypes
    def on_epoch_end(self, epoch, ctx):
        if epoch < self.hp.warmup_epochs:
            return
        # network 0 trained first officially, so its update advances the shared EMA state first
        own = self.hp.prototype_source == "own"
        for k in range(self.num_nets):
            self.update_prototypes(k, k if own else 1 - k, epoch, ctx.num_epochs)

    @torch.no_grad()
    def update_prototypes(self, k: int, source: int, epoch: int, num_epochs: int) -> None:
        """Move network ``k``'s prototypes towards class means of the ``source`` network's cached q."""
        z = self.plr.cached_logits[:, source]
        s = self.proto_logits[:, source]
        q = self.proj_cache[:, source]
        if self.hp.proto_update == "adaptive":
            keep = adaptive_selection(s, z, epoch, num_epochs, self.sat_time_p, self.sat_p_model,
                                      self.hp.sat_momentum)
            feats, labels = q[keep], z.argmax(dim=1)[keep]
        else:
            feats, labels = q, fixed_threshold_labels(s, z, self.hp.fixed_threshold)
        means, present = class_means(feats, labels, self.num_classes)
        m = self.hp.proto_momentum
        moved = torch.where(present[:, None], m * self.prototypes[k] + (1 - m) * means, self.prototypes[k])
        self.prototypes[k] = F.normalize(moved, dim=1)

    def flag_reason(self):
        return (f"clean posterior of the GMM component nearest the origin in the 2-D space of min-max "
                f"normalised (classifier CE, prototype CE), averaged over the two networks, "
                f"<= {self.hp.p_threshold}")
