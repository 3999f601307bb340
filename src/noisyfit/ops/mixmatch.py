"""DivideMix's modified MixMatch (Li, Socher and Hoi, ICLR 2020), as small pure functions.

* sharpening: ``p^(1/T) / sum_c p_c^(1/T)``;
* co-refinement of a labelled sample's target: ``w * onehot(y) + (1 - w) * mean_views(p)``, sharpened,
  where ``w`` is the clean posterior given by the *other* network's GMM;
* co-guessing of an unlabelled sample's target: the mean of the softmax over two augmented views and
  both networks, sharpened;
* MixUp with ``lam ~ Beta(alpha, alpha)`` and ``lam = max(lam, 1 - lam)``, so each mixed example stays
  closer to its first input (the labelled part stays mostly labelled);
* the semi-supervised loss ``L_x + lambda_u(t) * L_u + KL(uniform || mean prediction)``.
All computations are float32 (the training step runs under bf16 autocast).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def sharpen(p: torch.Tensor, temperature: float) -> torch.Tensor:
    """Temperature sharpening of probability rows: ``p^(1/T)`` renormalised."""
    pt = p.float().pow(1.0 / temperature)
    return pt / pt.sum(dim=1, keepdim=True)


def co_refine(probs_views: list[torch.Tensor], labels: torch.Tensor, w: torch.Tensor,
              temperature: float) -> torch.Tensor:
    """Targets of labelled samples: ``sharpen(w * e_y + (1 - w) * mean(probs_views), T)``.

    Parameters
    ----------
    probs_views : list of tensors [B, C]
        The trained network's softmax on each augmented view (DivideMix: two weak views).
    labels : tensor [B]
        Given labels.
    w : tensor [B]
        Clean posterior of each sample (from the partner network's GMM).
    temperature : float
        Sharpening temperature (0.5 in DivideMix).
    """
    p = torch.stack([v.float() for v in probs_views]).mean(0)
    onehot = F.one_hot(labels, p.shape[1]).float()
    w = w.float().view(-1, 1)
    return sharpen(w * onehot + (1 - w) * p, temperature)


def co_guess(probs: list[torch.Tensor], temperature: float) -> torch.Tensor:
    """Targets of unlabelled samples: the sharpened mean of softmax outputs (views x networks)."""
    return sharpen(torch.stack([p.float() for p in probs]).mean(0), temperature)


def sample_mix_lambda(alpha: float) -> float:
    """``lam ~ Beta(alpha, alpha)``, then ``max(lam, 1 - lam)``.

    Drawn from torch's global generator (the trainer checkpoints it, so resume is exact); the official
    code uses numpy's.
    """
    if alpha <= 0:
        return 1.0
    a = torch.tensor(float(alpha), dtype=torch.float64)
    lam = float(torch.distributions.Beta(a, a).sample())
    return max(lam, 1.0 - lam)


def mixup(inputs: torch.Tensor, targets: torch.Tensor, lam: float,
          perm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``lam * a + (1 - lam) * a[perm]`` for inputs and targets."""
    return lam * inputs + (1 - lam) * inputs[perm], lam * targets + (1 - lam) * targets[perm]


def linear_rampup(current: float, start: float, length: float) -> float:
    """``clip((current - start) / length, 0, 1)`` (DivideMix's ramp of lambda_u, length 16 epochs)."""
    if length <= 0:
        return 1.0 if current >= start else 0.0
    return float(np.clip((current - start) / length, 0.0, 1.0))


def semi_losses(logits_x: torch.Tensor, targets_x: torch.Tensor, logits_u: torch.Tensor,
                targets_u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``L_x`` = mean soft cross-entropy on the labelled part; ``L_u`` = mean squared error of the
    softmax on the unlabelled part (averaged over samples *and* classes, as in DivideMix)."""
    lx = -(targets_x * F.log_softmax(logits_x.float(), dim=1)).sum(1).mean()
    if logits_u.shape[0] == 0:
        lu = logits_x.float().sum() * 0.0
    else:
        lu = ((F.softmax(logits_u.float(), dim=1) - targets_u) ** 2).mean()
    return lx, lu


def uniform_prior_penalty(logits: torch.Tensor) -> torch.Tensor:
    """``KL(uniform || mean softmax)`` over the batch: keeps predictions from collapsing to few classes."""
    mean_p = F.softmax(logits.float(), dim=1).mean(0)
    prior = torch.full_like(mean_p, 1.0 / mean_p.numel())
    return (prior * torch.log(prior / mean_p)).sum()


def negative_entropy(logits: torch.Tensor) -> torch.Tensor:
    """Mean ``sum_c p_c log p_c``: DivideMix's confidence penalty during warm-up under asymmetric noise."""
    logp = F.log_softmax(logits.float(), dim=1)
    return (logp.exp() * logp).sum(1).mean()
