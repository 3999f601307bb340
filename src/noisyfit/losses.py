"""Noise-robust losses as ``nn.Module``s for your own PyTorch training loop.

Each class is a thin wrapper over the function the registered method of the same name uses
(``noisyfit.ops.losses``, ``noisyfit.methods.elr``, ``noisyfit.ops.contrastive``), with the same
paper defaults, so a loss here and ``noisyfit train --method NAME`` compute the same thing.

* :class:`GCELoss` -- generalized cross-entropy (Zhang & Sabuncu, NeurIPS 2018).
* :class:`SCELoss` -- symmetric cross-entropy (Wang et al., ICCV 2019).
* :class:`ELRLoss` -- early-learning regularisation (Liu et al., NeurIPS 2020); keeps per-sample
  targets, so its ``forward`` takes the samples' indices.
* :class:`PLRLoss` -- the pseudo-label relaxed contrastive loss of PLReMix (Liu et al., WACV 2025).
* :class:`PEMMLoss` -- PEMM's loss on a distance head (Wang et al. 2024): SCE on the distance logits, a
  potential energy that keeps the class centres apart, and an alignment of each feature with its posterior's
  mixture of centres; the head is :class:`noisyfit.models.heads.distance.DistanceHead`.
* :class:`JumpTeachingLoss` -- Jump-teaching's loss and selection (Ji et al., AAAI 2026): CE on tempered logits plus
  a code head's per-bit BCE against the label's Hadamard codeword, on the samples selected at their *previous*
  visit; it takes a code from :class:`noisyfit.models.heads.code.CodeHead` and the samples' indices.
* :class:`CARLoss` -- CAR's confidence-interpolated loss with per-sample target estimation (Lu et al. 2021, as
  its authors released it in their NAL code); it takes a confidence ``tau`` per sample from a one-unit sigmoid
  branch of your model (:class:`noisyfit.models.heads.confidence.ConfidenceHead`) and the samples' indices.

Small-loss sample selection (Co-teaching) and the Jump-teaching wrapper are in :mod:`noisyfit.selection`.

A plain loop (``x, y, index`` batches; any model that returns logits)::

    import torch
    from torch.utils.data import DataLoader, TensorDataset
    from noisyfit.losses import ELRLoss

    loader = DataLoader(TensorDataset(x, y, torch.arange(len(y))), batch_size=64, shuffle=True)
    criterion = ELRLoss(num_samples=len(y), num_classes=10)
    for epoch in range(30):
        for xb, yb, ib in loader:
            loss = criterion(model(xb), yb, ib)
            opt.zero_grad(); loss.backward(); opt.step()
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from noisyfit.methods.car import (CAR, VARIANT_DEFAULTS, VARIANTS, car_initial_targets, car_loss_terms,
                                  car_target_step)
from noisyfit.methods.elr import ELR, elr_loss, elr_per_sample
from noisyfit.methods.gce import GeneralizedCrossEntropy
from noisyfit.methods.jump_teaching import JumpTeaching, jump_teaching_loss
from noisyfit.methods.pemm import PEMM, pemm_loss_terms
from noisyfit.methods.plr_plugin import PLRHyper, kappa_at
from noisyfit.methods.sce import SymmetricCrossEntropy
from noisyfit.ops.contrastive import PLR_FORMS, contrastive_loss, plr_negative_mask
from noisyfit.ops.hadamard import default_code_bits, hadamard_codes
from noisyfit.ops.jump import JumpSelection
from noisyfit.ops.losses import generalized_cross_entropy, symmetric_cross_entropy

__all__ = ["GCELoss", "SCELoss", "ELRLoss", "PLRLoss", "CARLoss", "PEMMLoss", "JumpTeachingLoss"]

REDUCTIONS = ("mean", "sum", "none")

# The registered methods' hyper-parameter defaults (the paper defaults), so that both stay one number.
_GCE = GeneralizedCrossEntropy.Hyper()


def _check_method_ranges(who: str, method, **values) -> None:
    """``values`` inside the intervals ``method`` declares for its hyper-parameters (``Method.hyper_ranges``): one
    rule for a loss module and the method that trains with it, else a ValueError naming ``who``."""
    try:
        method.check_hyper_ranges(dataclasses.replace(method.Hyper(), **values))
    except ValueError as err:
        raise ValueError(f"{who}: {str(err).split(': ', 1)[1]}") from None
_SCE = SymmetricCrossEntropy.Hyper()
_ELR = ELR.Hyper()
_PLR = PLRHyper()
_CAR = CAR.Hyper()
_PEMM = PEMM.Hyper()
_JUMP = JumpTeaching.Hyper()


def _check_reduction(reduction: str) -> str:
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")
    return reduction


def check_logits_labels(logits: torch.Tensor, labels: torch.Tensor, who: str,
                        num_classes: int | None = None) -> None:
    """Logits ``[B, C]`` (``C = num_classes`` when given) and integer class indices ``[B]``, else an error saying
    what came (a researcher's trial: GCE computed a loss on the first 5 rows of 8 logits given 5 labels, in
    silence; numpy labels ended in an AttributeError about numpy's dtype)."""
    if not isinstance(labels, torch.Tensor):
        raise TypeError(f"{who}: labels must be a torch tensor of integer class indices, got "
                        f"{type(labels).__name__}; pass torch.as_tensor(labels)")
    if logits.ndim != 2:
        raise ValueError(f"{who}: logits must be [batch, classes], got shape {list(logits.shape)}")
    if labels.ndim != 1 or labels.dtype.is_floating_point or labels.dtype == torch.bool:
        hint = " (one-hot? pass labels.argmax(1))" if labels.ndim == 2 else ""
        raise ValueError(f"{who}: labels must be integer class indices [batch], got {labels.dtype} of shape "
                         f"{list(labels.shape)}{hint}")
    if len(labels) != len(logits):
        raise ValueError(f"{who}: {len(logits)} rows of logits but {len(labels)} labels (arguments swapped, or a "
                         "batch cut?)")
    if num_classes is not None and logits.shape[1] != num_classes:
        raise ValueError(f"{who} was built for {num_classes} classes, got logits with {logits.shape[1]} columns")


def _reduce(per_sample: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return per_sample.mean()
    if reduction == "sum":
        return per_sample.sum()
    return per_sample


class GCELoss(nn.Module):
    """Generalized cross-entropy ``(1 - p_y^q) / q``.

    Zhang, Z. and Sabuncu, M. R. "Generalized Cross Entropy Loss for Training Deep Neural Networks with
    Noisy Labels." NeurIPS 2018. q -> 0 is cross-entropy, q = 1 is the mean absolute error; the paper's
    truncated variant (L_q with a pruning threshold) is not included.

    Parameters
    ----------
    q : float, default 0.7
        The paper's default, also the ``gce`` method's. Must be in (0, 1].
    reduction : {"mean", "sum", "none"}, default "mean"

    Examples
    --------
    >>> criterion = GCELoss()
    >>> for xb, yb in loader:                         # doctest: +SKIP
    ...     loss = criterion(model(xb), yb)
    ...     opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, q: float = _GCE.q, reduction: str = "mean"):
        super().__init__()
        _check_method_ranges("GCELoss", GeneralizedCrossEntropy, q=q)
        self.q = float(q)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``[B, C]`` against integer ``labels`` ``[B]`` (float32)."""
        check_logits_labels(logits, labels, "GCELoss")
        return _reduce(generalized_cross_entropy(logits, labels, q=self.q), self.reduction)

    def extra_repr(self) -> str:
        return f"q={self.q}, reduction={self.reduction!r}"


class SCELoss(nn.Module):
    """Symmetric cross-entropy ``alpha * CE + beta * RCE``, log(0) of the one-hot label clipped to log(1e-4).

    Wang, Y., Ma, X., Chen, Z., Luo, Y., Yi, J. and Bailey, J. "Symmetric Cross Entropy for Robust
    Learning with Noisy Labels." ICCV 2019. With a one-hot label, RCE is ``-log(1e-4) * (1 - p_y)``.

    Parameters
    ----------
    alpha : float, default 0.1
        Weight of CE (the paper's CIFAR-10 value; 6.0 on CIFAR-100).
    beta : float, default 1.0
        Weight of RCE (the paper's CIFAR-10 value; 0.1 on CIFAR-100).
    num_classes : int, optional
        When given, logits with another number of columns are refused (the official ``SCELoss`` takes
        it to build the one-hot labels; here the logits' width is used).
    reduction : {"mean", "sum", "none"}, default "mean"

    Examples
    --------
    >>> criterion = SCELoss(alpha=0.1, beta=1.0, num_classes=10)
    >>> for xb, yb in loader:                         # doctest: +SKIP
    ...     loss = criterion(model(xb), yb)
    ...     opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, alpha: float = _SCE.alpha, beta: float = _SCE.beta, num_classes: int | None = None,
                 reduction: str = "mean"):
        super().__init__()
        _check_method_ranges("SCELoss", SymmetricCrossEntropy, alpha=alpha, beta=beta)
        self.alpha, self.beta = float(alpha), float(beta)
        self.num_classes = None if num_classes is None else int(num_classes)
        self.reduction = _check_reduction(reduction)

    def forward(self, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Loss of ``logits`` ``[B, C]`` against integer ``labels`` ``[B]`` (float32)."""
        check_logits_labels(logits, labels, "SCELoss", self.num_classes)
        per_sample = symmetric_cross_entropy(logits, labels, alpha=self.alpha, beta=self.beta)
        return _reduce(per_sample, self.reduction)

    def extra_repr(self) -> str:
        return (f"alpha={self.alpha}, beta={self.beta}, num_classes={self.num_classes}, "
                f"reduction={self.reduction!r}")


class ELRLoss(nn.Module):
    """Cross-entropy plus early-learning regularisation, with its own per-sample targets.

    Liu, S., Niles-Weed, J., Razavian, N. and Fernandez-Granda, C. "Early-Learning Regularization
    Prevents Memorization of Noisy Labels." NeurIPS 2020. Each call, for the batch's samples, with
    ``p = clip(softmax(z), 1e-4, 1 - 1e-4)``::

        t_i <- beta * t_i + (1 - beta) * sg(p_i) / sum(sg(p_i))      (targets start at zero)
        loss = CE(z, y) + lam * mean_i log(1 - <t_i, p_i>)

    The targets are a temporal ensemble of the model's own early predictions; the regulariser pulls
    the prediction towards them, which resists memorising wrong labels. The ``elr`` method computes the
    same loss (``noisyfit.methods.elr.elr_loss``).

    With gradients off (``torch.no_grad()``, ``torch.inference_mode()``) a call returns the same loss but leaves
    ``target`` as it was, so a validation loss computed with the training criterion does not move the training
    targets. Ours, a safeguard: the official code calls its loss only in training, where every call updates.

    Parameters
    ----------
    num_samples : int
        Training-set size: ``index`` passed to ``forward`` must lie in ``[0, num_samples)``.
    num_classes : int
        C.
    beta : float, default 0.7
        Momentum of the targets (official CIFAR-10 symmetric-noise config; CIFAR-100: 0.9).
    lam : float, default 3.0
        Weight of the regulariser (official CIFAR-10 symmetric-noise config; CIFAR-100: 7).
    clip : float, default 1e-4
        Clipping of the softmax before the target update and the regulariser (official code).
    reduction : {"mean", "sum", "none"}, default "mean"
        "mean" is the official loss (the ``elr`` method's, the same arithmetic). "none" gives each sample's
        ``CE_i + lam * log(1 - <t_i, p_i>)`` (their mean is the official loss up to rounding), e.g. to weight or
        select samples; "sum" their sum. Ours: the official code has only the batch mean.

    Attributes
    ----------
    target : Tensor
        ``[num_samples, num_classes]`` buffer of targets (in ``state_dict``; move it with ``.to(device)``).
        ``target.argmax(1)`` is a label suggestion; ``target[i, y_i]`` a clean score.

    Examples
    --------
    The loader must yield each sample's index in the training set, e.g. with
    ``TensorDataset(x, y, torch.arange(len(y)))``:

    >>> criterion = ELRLoss(num_samples=len(y), num_classes=10)
    >>> for epoch in range(30):                       # doctest: +SKIP
    ...     for xb, yb, ib in loader:
    ...         loss = criterion(model(xb), yb, ib)
    ...         opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, num_samples: int, num_classes: int, beta: float = _ELR.beta, lam: float = _ELR.lam,
                 clip: float = _ELR.clip, reduction: str = "mean"):
        super().__init__()
        _check_method_ranges("ELRLoss", ELR, beta=beta, lam=lam, clip=clip)
        if num_samples < 1 or num_classes < 2:
            raise ValueError(f"ELRLoss needs num_samples >= 1 (the training-set size) and num_classes >= 2, got "
                             f"num_samples={num_samples}, num_classes={num_classes}")
        self.beta, self.lam, self.clip = float(beta), float(lam), float(clip)
        self.reduction = _check_reduction(reduction)
        self.register_buffer("target", torch.zeros(int(num_samples), int(num_classes)))
        #: CE and regulariser of the last call (detached), for logging
        self.last_ce: torch.Tensor | None = None
        self.last_reg: torch.Tensor | None = None

    def forward(self, logits: torch.Tensor, labels: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
        """Update the targets of the samples ``index`` ``[B]`` (only with gradients on) and return the batch's loss
        (see ``reduction``)."""
        num_samples, num_classes = self.target.shape
        check_logits_labels(logits, labels, "ELRLoss", num_classes)
        index = self._checked_index(index, len(labels), num_samples)
        targets = self.target
        if not torch.is_grad_enabled():  # e.g. a validation loss: the helpers update a copy of the batch's rows
            targets, index = self.target[index], torch.arange(len(index), device=index.device)
        if self.reduction == "mean":  # the official arithmetic, shared with the elr method
            loss, ce, reg = elr_loss(logits, labels, targets, index, beta=self.beta, lam=self.lam, clip=self.clip)
            self.last_ce, self.last_reg = ce.detach(), reg.detach()
            return loss
        ce, reg = elr_per_sample(logits, labels, targets, index, beta=self.beta, clip=self.clip)
        self.last_ce, self.last_reg = ce.detach().mean(), reg.detach().mean()
        return _reduce(ce + self.lam * reg, self.reduction)

    def _checked_index(self, index, batch_size: int, num_samples: int) -> torch.Tensor:
        """``index`` as a long tensor on the targets' device, else a ValueError (a user's trial: -1 read and wrote
        the last sample's target in silence, num_samples an IndexError without a hint)."""
        index = torch.as_tensor(index, device=self.target.device)
        if index.shape != (batch_size,) or index.dtype.is_floating_point or index.dtype == torch.bool:
            raise ValueError(f"ELRLoss: index must be the samples' integer indices [batch] ({batch_size} here), "
                             f"got {index.dtype} of shape {list(index.shape)}")
        bad = (index < 0) | (index >= num_samples)
        if bad.any():
            i = int(bad.nonzero()[0])
            raise ValueError(f"ELRLoss: index must lie in [0, num_samples) = [0, {num_samples}), got "
                             f"{int(index[i])} at position {i}; the loader must yield each sample's index in the "
                             "training set, e.g. TensorDataset(x, y, torch.arange(len(y)))")
        return index.long()

    def extra_repr(self) -> str:
        n, c = self.target.shape
        return f"num_samples={n}, num_classes={c}, beta={self.beta}, lam={self.lam}, reduction={self.reduction!r}"


class PLRLoss(nn.Module):
    """Pseudo-label relaxed (PLR) contrastive loss on two views, negatives from disjoint top-kappa sets.

    Liu, X., Zhou, B., Yue, Z. and Cheng, C. "PLReMix: Combating Noisy Labels with Pseudo-Label Relaxed
    Contrastive Representation Learning." WACV 2025 (arXiv:2402.17589). For sample i let ``T_i`` be the
    top-kappa classes of its classifier logits plus its given label; samples i and j are negatives of each
    other only when ``T_i`` and ``T_j`` are disjoint, other pairs are ignored, and the positive of each
    view is the other view of the same sample (``noisyfit.ops.contrastive``). This is the term that the
    ``ce_plr``, ``dividemix_plr`` and ``plremix`` methods add (there with a weight ``lambda_c`` = 1).

    Parameters
    ----------
    kappa : int, default 3
        Size of the top set (official CIFAR code); 0 = the top-1 class alone, without the label.
    kappa_milestones : tuple of int, default (40, 70)
        Epochs at which kappa drops by one (never below 1), the official CIFAR schedule. Pass ``epoch``
        to ``forward`` to apply it; ``()`` keeps kappa fixed.
    temperature : float, default 1.0
        tau of the official ``PLRLoss``.
    form : {"flat", "supcon"}, default "flat"
        FlatNCE form (official default: its value is exactly 1, its gradient that of the mean
        log-sum-exp over negatives) or the SupCon form.

    Examples
    --------
    ``head`` maps features to unit vectors (e.g. ``noisyfit.models.heads.projection.ProjectionHead``);
    ``strong`` is a random augmentation. PLReMix takes the logits from the partner network's eval pass
    cached at each epoch start; with one network, the step's own detached logits are the simplest stand-in.

    >>> plr = PLRLoss()
    >>> for epoch in range(E):                        # doctest: +SKIP
    ...     for xb, yb in loader:
    ...         logits = model(xb)
    ...         q1, q2 = head(features(strong(xb))), head(features(strong(xb)))
    ...         loss = F.cross_entropy(logits, yb) + plr(q1, q2, logits.detach(), yb, epoch=epoch)
    ...         opt.zero_grad(); loss.backward(); opt.step()
    """

    def __init__(self, kappa: int = _PLR.kappa, kappa_milestones: tuple = _PLR.kappa_milestones,
                 temperature: float = _PLR.plr_temperature, form: str = _PLR.plr_form):
        super().__init__()
        if form not in PLR_FORMS:
            raise ValueError(f"form must be one of {PLR_FORMS}, got {form!r}")
        self.kappa, self.kappa_milestones = int(kappa), tuple(int(m) for m in kappa_milestones)
        self.temperature, self.form = float(temperature), form

    def kappa_at(self, epoch: int) -> int:
        """kappa after the schedule's drops up to ``epoch`` (0-based)."""
        return kappa_at(self.kappa, self.kappa_milestones, epoch)

    def negatives(self, logits: torch.Tensor, labels: torch.Tensor, epoch: int = 0) -> torch.Tensor:
        """``[B, B]`` bool: True where the two samples' top-kappa sets (plus labels) are disjoint."""
        return plr_negative_mask(logits.detach(), labels, self.kappa_at(epoch))

    def forward(self, q1: torch.Tensor, q2: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                epoch: int = 0) -> torch.Tensor:
        """Loss of the unit-norm projections ``q1``, ``q2`` ``[B, d]`` of two views of the same samples.

        ``logits`` ``[B, C]`` (not differentiated) and ``labels`` ``[B]`` define the negatives.
        """
        return contrastive_loss(q1, q2, self.negatives(logits, labels, epoch), temperature=self.temperature,
                                form=self.form)

    def extra_repr(self) -> str:
        return (f"kappa={self.kappa}, kappa_milestones={self.kappa_milestones}, "
                f"temperature={self.temperature}, form={self.form!r}")


class CARLoss(nn.Module):
    """CAR's loss for your own loop: a confidence ``tau`` interpolates the prediction with a per-sample target,
    a ``-log tau`` penalty keeps tau from collapsing, and the targets are re-estimated from the predictions.

    Lu, Y., Bo, Y. and He, W. "Confidence Adaptive Regularization for Deep Learning with Noisy Labels."
    arXiv:2108.08212, 2021. The loss is the one the same authors released in their NAL code (the CAR paper's
    method section was not available): read :mod:`noisyfit.methods.car` first, which this class shares its
    functions with (``car_loss_terms``, ``car_target_step``), so it computes what ``--method car`` does. With
    ``q = tau p + (1 - tau) t`` (released variant: ``p`` and ``q`` clamped, ``t`` in ``[1e-4, 1]``)::

        loss = mean(-sum_k t_k log q_k) + lam * mean(-log tau) + beta * mean(-sum_k q_k log t_k)

    A sample's target starts as its given label (one-hot, clamped) at its first visit; in epochs ``>= es`` (counted
    from 1) whose number is a multiple of ``update_every``, each visited sample with ``tau > delta`` moves its
    target towards the prediction: ``t <- m t + (1 - m) softmax(z)``, before its loss is computed.

    Parameters
    ----------
    num_samples, num_classes : int
        Training-set size (``index`` lies in ``[0, num_samples)``) and C.
    lam, beta, m, es, update_every, delta : optional
        As ``--method car`` (the released CIFAR script's values by default: 10, 0, 0.9, 60, 10, 0). With
        ``lam = 10`` on 10 classes tau saturates at 1 for almost every sample (the method's docstring says why);
        ``lam = 0.5``, another released choice, keeps it responsive.
    variant : {"code", "recon"}
        As ``--method car``. The method's ``recon`` variant also starts the branch's bias at +3
        (``ConfidenceHead(d, bias_init=3.0)``): that part is your model's.

    Attributes
    ----------
    targets : Tensor
        ``[num_samples, num_classes]`` estimated targets (in ``state_dict``); ``targets.argmax(1)`` suggests labels.

    Examples
    --------
    >>> head = ConfidenceHead(feature_dim)                         # doctest: +SKIP
    >>> criterion = CARLoss(num_samples=len(y), num_classes=10, lam=0.5)
    >>> for epoch in range(epochs):                                # doctest: +SKIP
    ...     for xb, yb, ib in loader:
    ...         h = features(xb)
    ...         loss = criterion(classifier(h), head(h), yb, ib, epoch)
    """

    def __init__(self, num_samples: int, num_classes: int, *, lam: float | None = None, beta: float | None = None,
                 m: float = _CAR.m, es: int = _CAR.es, update_every: int | None = None, delta: float = _CAR.delta,
                 variant: str = _CAR.variant):
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"CARLoss: variant must be one of {VARIANTS}, got {variant!r}")
        filled = VARIANT_DEFAULTS[variant]  # the method's per-variant defaults
        self.lam = float(filled["lam"] if lam is None else lam)
        self.beta = float(filled["beta"] if beta is None else beta)
        self.update_every = int(filled["update_every"] if update_every is None else update_every)
        if not 0.0 <= m <= 1.0 or es < 1 or self.update_every < 1:
            raise ValueError(f"CARLoss: needs 0 <= m <= 1, es >= 1 and update_every >= 1 (got m={m}, es={es}, "
                             f"update_every={self.update_every})")
        self.m, self.es, self.delta, self.variant = float(m), int(es), float(delta), variant
        self.register_buffer("targets", torch.zeros(int(num_samples), int(num_classes)))
        self.register_buffer("seen", torch.zeros(int(num_samples), dtype=torch.bool))
        #: the three terms of the last call (detached), for logging
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, logits: torch.Tensor, tau: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                epoch: int) -> torch.Tensor:
        """The batch's loss; ``tau`` ``[B]`` in (0, 1), ``epoch`` counted from 0 (as a loop's ``range``)."""
        index = torch.as_tensor(index, device=self.targets.device)
        new = ~self.seen[index]
        if new.any():  # a target starts as the given label, at the sample's first visit
            self.targets[index[new]] = car_initial_targets(labels[new].to(self.targets.device), self.targets.shape[1],
                                                           self.variant)
            self.seen[index[new]] = True
        if epoch + 1 >= self.es and (epoch + 1) % self.update_every == 0:
            car_target_step(self.targets, index, logits, tau, m=self.m, delta=self.delta, variant=self.variant)
        terms = car_loss_terms(logits, tau, self.targets[index], self.variant)
        self.last_terms = {k: v.detach() for k, v in terms.items()}
        return terms["loss_main"] + self.lam * terms["loss_penalty"] + self.beta * terms["loss_aux"]

    def extra_repr(self) -> str:
        n, c = self.targets.shape
        return (f"num_samples={n}, num_classes={c}, lam={self.lam}, beta={self.beta}, m={self.m}, es={self.es}, "
                f"update_every={self.update_every}, variant={self.variant!r}")


class PEMMLoss(nn.Module):
    """PEMM's loss for your own loop: a distance head's logits trained with SCE, plus a potential energy on its
    class centres and an alignment of each feature with its posterior-weighted mixture of centres.

    Wang, Z., Yang, W., Liu, Z. and Jia, Z. "Potential Energy based Mixture Model for Noisy Label Learning."
    arXiv:2405.01186, 2024 (official code Ralph-Finn/PEMM). It computes what ``--method pemm`` does (the same
    function, ``pemm_loss_terms``; its docstring lists the departures from the official code)::

        loss = SCE(z, y) + pe_weight * L_PE(M) + ga_weight * mean((h - softmax(z) M)^2)

    where ``z_c = -||h - mu_c||^2`` are the logits of a
    :class:`~noisyfit.models.heads.distance.DistanceHead` (``h`` its feature after ReLU and dropout, ``M`` its
    centres) and ``L_PE`` pulls the centres' norms and mutual distances towards 1.5. Your model's last linear
    layer becomes the head: ``DistanceHead(feature_dim, num_classes, dropout=0.2)`` (PEMM's dropout), and
    ``head.forward_with_features(features)`` gives ``(h, z)``. The official optimiser settings (SGD with Nesterov
    momentum, lr 0.01, gradient-norm clip 5, a cosine schedule) are the method's presets, not part of the loss.

    Parameters
    ----------
    alpha, beta : float
        SCE's weights of CE and reverse CE (0.1, 1.0).
    pe_weight, ga_weight : float
        Weights of the potential energy and of the alignment term (2.0, 1.0).
    pe_s, pe_t, pe_clip_min, pe_clip_max : float
        The potential ``r^-s - r^-t`` (minimum at ``(s/t)^(1/(s-t))``: 1.5) and the clip of each of its terms
        (3, 2, -1.5, 1000).

    The result is a batch mean (the potential energy is one number per batch, so there is no per-sample
    reduction). ``last_terms`` holds the three terms of the last call (detached), for logging; the flag rule of
    ``--method pemm`` is ``z.argmax(1) != y``.

    Examples
    --------
    >>> head = DistanceHead(256, 10, dropout=0.2)                  # doctest: +SKIP
    >>> criterion = PEMMLoss()
    >>> h, z = head.forward_with_features(body(xb))                # doctest: +SKIP
    >>> loss = criterion(h, z, yb, head.centres)                   # doctest: +SKIP
    """

    def __init__(self, *, alpha: float = _PEMM.alpha, beta: float = _PEMM.beta, pe_weight: float = _PEMM.pe_weight,
                 ga_weight: float = _PEMM.ga_weight, pe_s: float = _PEMM.pe_s, pe_t: float = _PEMM.pe_t,
                 pe_clip_min: float = _PEMM.pe_clip_min, pe_clip_max: float = _PEMM.pe_clip_max):
        super().__init__()
        self.hp = dataclasses.replace(_PEMM, alpha=float(alpha), beta=float(beta), pe_weight=float(pe_weight),
                                      ga_weight=float(ga_weight), pe_s=float(pe_s), pe_t=float(pe_t),
                                      pe_clip_min=float(pe_clip_min), pe_clip_max=float(pe_clip_max))
        _check_method_ranges("PEMMLoss", PEMM, alpha=self.hp.alpha, beta=self.hp.beta, pe_weight=self.hp.pe_weight,
                             ga_weight=self.hp.ga_weight)
        if not self.hp.pe_s > self.hp.pe_t > 0:  # else phi has no minimum: the centres would not settle
            raise ValueError(f"PEMMLoss: needs pe_s > pe_t > 0 (phi then has its minimum at "
                             f"(pe_s / pe_t)^(1 / (pe_s - pe_t))), got pe_s={pe_s}, pe_t={pe_t}")
        if not pe_clip_min < pe_clip_max:
            raise ValueError(f"PEMMLoss: needs pe_clip_min < pe_clip_max, got {pe_clip_min} and {pe_clip_max}")
        #: the three terms of the last call (detached), for logging
        self.last_terms: dict[str, torch.Tensor] = {}

    def forward(self, features: torch.Tensor, logits: torch.Tensor, labels: torch.Tensor,
                centres: torch.Tensor) -> torch.Tensor:
        """The batch's loss from a distance head's ``(features, logits) = head.forward_with_features(f)`` and
        ``head.centres``."""
        if centres.ndim != 2 or features.ndim != 2 or logits.ndim != 2 or features.shape[1] != centres.shape[1] \
                or len(features) != len(logits) or logits.shape[1] != centres.shape[0]:
            raise ValueError(f"PEMMLoss: features [batch, d], logits [batch, C] and centres [C, d] must pair, got "
                             f"{list(features.shape)}, {list(logits.shape)} and {list(centres.shape)}")
        check_logits_labels(logits, labels, "PEMMLoss")
        terms = pemm_loss_terms(features, logits, labels, centres, self.hp)
        self.last_terms = {k: v.detach() for k, v in terms.items() if k != "loss"}
        return terms["loss"]

    def extra_repr(self) -> str:
        hp = self.hp
        return (f"alpha={hp.alpha}, beta={hp.beta}, pe_weight={hp.pe_weight}, ga_weight={hp.ga_weight}, "
                f"pe_s={hp.pe_s}, pe_t={hp.pe_t}")


class JumpTeachingLoss(nn.Module):
    """Jump-teaching for your own loop: one network selects its training samples from an earlier state of itself.

    Ji, K., Cheng, F., Wang, Z., Huang, B. "Jump-teaching: Combating Sample Selection Bias via Temporal
    Disagreement", AAAI 2026 (arXiv:2405.17137; official code ky-ji/Jump-teaching). It computes what
    ``--method jump_teaching`` does (the same function, ``jump_teaching_loss``; the method's docstring lists the
    departures from the official code). Your model gets a second head on its features,
    :class:`~noisyfit.models.heads.code.CodeHead` ``(feature_dim, bits)``, whose soft code ``h`` is trained against
    the given label's Hadamard codeword (``codes``). Per sample, with ``l`` its per-bit BCE::

        clean = Var_k(l_k) < tau  or  argmax(z) == y          (decided now, applied at the next visit)
        loss  = sum over the batch's stored clean samples of (CE(z / T, y) + mean_k l_k) / B

    and in the first ``warmup_epochs`` epochs the plain mean over every sample (the decisions are stored from the
    first visit on). Never-seen samples start unselected, as in the official code. The paper also blends each
    image's weak and strong views after warm-up (``lam ~ Beta(5, 5)``, ``lam = max(lam, 1 - lam)``): that is your
    input pipeline's part.

    Parameters
    ----------
    num_samples, num_classes : int
        Training-set size (``index`` in ``[0, num_samples)``) and C.
    warmup_epochs, tau, temperature, code_bits, jump_rate : optional
        As ``--method jump_teaching`` (30, 1e-3, 2.0, None = 32 bits up to 32 classes, 1.0 = the released code).

    Attributes
    ----------
    codes : Tensor
        ``[C, K]`` ±1 codebook; ``bits`` = K, the ``CodeHead``'s output size.
    jump : JumpSelection
        The per-sample table of decisions (``jump.flags``: True = selected at the sample's last visit, so
        ``~jump.flags`` are the flags of ``--method jump_teaching``).
    last_selection : Tensor
        The mask the last call's loss used.

    Examples
    --------
    >>> crit = JumpTeachingLoss(num_samples=len(y), num_classes=10)
    >>> code_head = CodeHead(feature_dim, crit.bits)               # doctest: +SKIP
    >>> for epoch in range(epochs):                                # doctest: +SKIP
    ...     for xb, yb, ib in loader:
    ...         f = body(xb)
    ...         loss = crit(classifier(f), code_head(f), yb, ib, epoch)
    """

    def __init__(self, num_samples: int, num_classes: int, *, warmup_epochs: int = _JUMP.warmup_epochs,
                 tau: float = _JUMP.tau, temperature: float = _JUMP.temperature, code_bits: int | None = None,
                 jump_rate: float = _JUMP.jump_rate):
        super().__init__()
        _check_method_ranges("JumpTeachingLoss", JumpTeaching, warmup_epochs=warmup_epochs, tau=tau,
                             temperature=temperature, code_bits=code_bits, jump_rate=jump_rate)
        self.warmup_epochs, self.tau, self.temperature = int(warmup_epochs), float(tau), float(temperature)
        bits = int(code_bits) if code_bits is not None else default_code_bits(num_classes)
        self.register_buffer("codes", hadamard_codes(num_classes, bits))
        self.jump = JumpSelection(int(num_samples), jump_rate=float(jump_rate), initial=False)
        self.last_selection = torch.zeros(0, dtype=torch.bool)

    @property
    def bits(self) -> int:
        return self.codes.shape[1]

    def forward(self, logits: torch.Tensor, code: torch.Tensor, labels: torch.Tensor, index: torch.Tensor,
                epoch: int) -> torch.Tensor:
        """The batch's loss: ``logits`` the classifier's (untempered) ``[B, C]``, ``code`` the code head's ``[B, K]``
        in (-1, 1), ``epoch`` counted from 0."""
        check_logits_labels(logits, labels, "JumpTeachingLoss", num_classes=self.codes.shape[0])
        if code.ndim != 2 or code.shape != (len(logits), self.bits):
            raise ValueError(f"JumpTeachingLoss: code must be [batch, {self.bits}] (the CodeHead's output), got "
                             f"{list(code.shape)}")
        index = torch.as_tensor(index, device=self.jump.flags.device)
        out = jump_teaching_loss(logits.float() / self.temperature, code.float(), labels, index, self.codes,
                                 self.jump, tau=self.tau, warm=epoch < self.warmup_epochs)
        self.last_selection = out["used"]
        return out["loss"]

    def extra_repr(self) -> str:
        return (f"num_samples={self.jump.flags.shape[0]}, num_classes={self.codes.shape[0]}, bits={self.bits}, "
                f"warmup_epochs={self.warmup_epochs}, tau={self.tau}, temperature={self.temperature}, "
                f"jump_rate={self.jump.jump_rate}")
