"""Contrastive losses of PLReMix (Liu et al., WACV 2025): the PLR loss and the warm-up InfoNCE.

Two views per sample give L2-normalised projections ``q1, q2`` ([B, d] each); anchors and contrasts
are all 2B rows, the positive of each anchor is the other view of the same sample, and self-pairs are
never used.

* **PLR negatives** (:func:`plr_negative_mask`): for sample i let ``T_i`` be the top-kappa classes of the
  cached logits of the *partner* network, plus the given label (when kappa > 0; kappa = 0 means the top-1
  class alone, as in the official code). Pair (i, j) is a negative only if ``T_i`` and ``T_j`` are
  disjoint; overlapping pairs are ignored (neither positive nor negative). The mask is tiled to both
  views, so j's two views are both negatives of i's two views.
* **Flat form** (FlatNCE, Chen et al. 2021; the official CIFAR default ``flat_plr``): with
  ``v_i = logsumexp_{j in N(i)} (q_i.q_j - q_i.q_i+) / tau``, the loss is ``mean_i exp(v_i - sg(v_i))``.
  Its value is exactly 1 and its gradient is that of ``mean_i v_i``. Anchors without negatives are dropped.
* **SupCon form** (official ``plr``): ``-(tau / base_tau) * mean_i log(exp(q_i.q_i+/tau) / sum_{j in
  {i+} u N(i)} exp(q_i.q_j/tau))``; ``base_tau = 1`` as in the code, so the factor is tau itself.
* **InfoNCE** (:func:`info_nce`, PLReMix's warm-up): every other sample is a negative; flat form by
  default, temperature 0.1 in the official code.
Similarities are computed in float32 (the step runs under bf16 autocast).
"""

from __future__ import annotations

import torch

PLR_FORMS = ("flat", "supcon")


def plr_negative_mask(logits: torch.Tensor, labels: torch.Tensor, kappa: int) -> torch.Tensor:
    """Boolean ``[B, B]`` mask of PLR negatives (True where the top-kappa sets are disjoint).

    Parameters
    ----------
    logits : tensor [B, C]
        Cached classifier logits (of the partner network) of the batch's samples.
    labels : tensor [B]
        Given (possibly noisy) labels; added to each sample's set when ``kappa > 0``.
    kappa : int
        Size of the top set; 0 = the top-1 class only, without the given label (official behaviour).

    Returns
    -------
    tensor [B, B] bool
        ``mask[i, j]`` is True iff ``T_i`` and ``T_j`` share no class. The diagonal is always False.
    """
    b, c = logits.shape
    k = min(max(int(kappa), 1), c)
    member = torch.zeros(b, c, dtype=torch.float32, device=logits.device)
    member.scatter_(1, logits.float().topk(k, dim=1).indices, 1.0)
    if kappa > 0:
        member[torch.arange(b, device=logits.device), labels] = 1.0
    overlap = member @ member.T
    return overlap == 0


def _pair_tensors(q1: torch.Tensor, q2: torch.Tensor, negatives: torch.Tensor):
    """Similarities of the 2B stacked views, the index of each anchor's positive, tiled negatives."""
    if q1.shape != q2.shape:
        raise ValueError(f"the two views differ in shape: {tuple(q1.shape)} vs {tuple(q2.shape)}")
    b = q1.shape[0]
    if negatives.shape != (b, b):
        raise ValueError(f"negative mask must be [{b}, {b}], got {tuple(negatives.shape)}")
    z = torch.cat([q1, q2]).float()
    # autocast would run this matmul in bf16/fp16 even on float32 inputs; keep it (and all that
    # follows from it) in float32, as the module docstring promises
    with torch.autocast(device_type=z.device.type, enabled=False):
        sim = z @ z.T
    pos = (torch.arange(2 * b, device=z.device) + b) % (2 * b)
    neg = negatives.bool().repeat(2, 2)
    # a sample is never its own negative, in either view (also guards a caller's mask)
    same = torch.eye(b, dtype=torch.bool, device=z.device).repeat(2, 2)
    return sim, pos, neg & ~same


def contrastive_loss(q1: torch.Tensor, q2: torch.Tensor, negatives: torch.Tensor, *, temperature: float = 1.0,
                     form: str = "flat", base_temperature: float = 1.0) -> torch.Tensor:
    """Contrastive loss of two views with an explicit negative mask (the PLR loss).

    Parameters
    ----------
    q1, q2 : tensor [B, d]
        L2-normalised projections of two views of the same B samples.
    negatives : tensor [B, B] bool
        Which sample pairs are negatives (e.g. :func:`plr_negative_mask`); other pairs are ignored.
    temperature : float
        tau (1.0 in the official PLR loss).
    form : {"flat", "supcon"}
        FlatNCE form (value 1, gradient of mean logsumexp) or SupCon form.
    base_temperature : float
        SupCon's scale ``tau / base_tau`` (1.0 in the official code).

    Returns
    -------
    tensor
        Scalar loss (connected to the graph even when no anchor has a negative).
    """
    if form not in PLR_FORMS:
        raise ValueError(f"form must be one of {PLR_FORMS}, got {form!r}")
    sim, pos, neg = _pair_tensors(q1, q2, negatives)
    rows = torch.arange(sim.shape[0], device=sim.device)
    s_pos = sim[rows, pos]
    if form == "flat":
        has_neg = neg.any(dim=1)
        if not bool(has_neg.any()):
            # Departure: the official loss averages an empty tensor here (NaN); we return a zero that
            # stays connected to the graph.
            return sim.sum() * 0.0
        logits = (sim - s_pos[:, None]) / temperature
        v = torch.logsumexp(logits.masked_fill(~neg, float("-inf")), dim=1)[has_neg]
        return torch.exp(v - v.detach()).mean()
    keep = neg.clone()
    keep[rows, pos] = True
    logits = sim / temperature
    log_den = torch.logsumexp(logits.masked_fill(~keep, float("-inf")), dim=1)
    return -(temperature / base_temperature) * (logits[rows, pos] - log_den).mean()


def flat_logsumexp(q1: torch.Tensor, q2: torch.Tensor, negatives: torch.Tensor, *,
                   temperature: float = 1.0) -> torch.Tensor:
    """``mean_i v_i``: the log-sum-exp whose gradient the flat form reproduces (for checks and logging)."""
    sim, pos, neg = _pair_tensors(q1, q2, negatives)
    rows = torch.arange(sim.shape[0], device=sim.device)
    has_neg = neg.any(dim=1)
    logits = (sim - sim[rows, pos][:, None]) / temperature
    return torch.logsumexp(logits.masked_fill(~neg, float("-inf")), dim=1)[has_neg].mean()


def info_nce(q1: torch.Tensor, q2: torch.Tensor, *, temperature: float = 0.1, flat: bool = True) -> torch.Tensor:
    """InfoNCE between two views: every other sample (both views) is a negative.

    ``flat=True`` is the FlatNCE form PLReMix uses in warm-up on CIFAR; ``flat=False`` is the standard
    cross-entropy over [positive, negatives] (its Clothing1M / WebVision warm-up).
    """
    b = q1.shape[0]
    everyone = ~torch.eye(b, dtype=torch.bool, device=q1.device)
    if flat:
        return contrastive_loss(q1, q2, everyone, temperature=temperature, form="flat")
    return contrastive_loss(q1, q2, everyone, temperature=temperature, form="supcon",
                            base_temperature=temperature)
