"""Robust classification losses shared by methods. All return per-sample losses unless reduced."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def soft_cross_entropy(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Per-sample cross-entropy against soft targets ``[B, C]`` (rows sum to 1)."""
    return -(targets * F.log_softmax(logits.float(), dim=1)).sum(dim=1)


def reverse_cross_entropy(logits: torch.Tensor, labels: torch.Tensor, *, clip: float = 1e-4) -> torch.Tensor:
    """RCE of Wang et al. 2019: ``-sum_c p_c log(clip(onehot, clip, 1))_c``.

    With a one-hot target this equals ``-log(clip) * (1 - p_y)`` (= 9.21 * (1 - p_y) for clip 1e-4).
    """
    p = F.softmax(logits.float(), dim=1).clamp(min=1e-7, max=1.0)
    onehot = F.one_hot(labels, p.shape[1]).float().clamp(min=clip, max=1.0)
    return -(p * torch.log(onehot)).sum(dim=1)


def symmetric_cross_entropy(logits, labels, *, alpha: float = 0.1, beta: float = 1.0) -> torch.Tensor:
    """SCE (Wang et al., ICCV 2019): ``alpha * CE + beta * RCE`` per sample.

    Defaults are the CIFAR-10 values of the SCE paper (alpha 0.1, beta 1.0), also PEMM's defaults.
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    return alpha * ce + beta * reverse_cross_entropy(logits, labels)


def generalized_cross_entropy(logits, labels, *, q: float = 0.7) -> torch.Tensor:
    """GCE (Zhang & Sabuncu, NeurIPS 2018): ``(1 - p_y^q) / q`` per sample; q -> 0 is CE, q = 1 is MAE."""
    if not 0.0 < q <= 1.0:
        raise ValueError(f"GCE needs 0 < q <= 1, got q={q}")
    p_y = F.softmax(logits.float(), dim=1).gather(1, labels[:, None]).squeeze(1).clamp(min=1e-7)
    return (1.0 - p_y.pow(q)) / q


def rce_constant(clip: float = 1e-4) -> float:
    """The factor ``-log(clip)`` that RCE puts in front of ``(1 - p_y)``."""
    return -math.log(clip)
