"""Hadamard label codes: one ±1 codeword per class, decoding, and the per-bit loss of a code head.

Jump-teaching (Ji et al., arXiv:2405.17137) maps labels into a K-bit code space: class c gets row c of
the Sylvester Hadamard matrix H_K (rows mutually orthogonal, any two differ in exactly K/2 bits), or of
[H_K; -H_K] when K < C <= 2K. Class 0 gets the all-ones row. A network's code head outputs h in
(-1, 1)^K; the per-bit binary cross-entropy between (h+1)/2 and (c+1)/2 is the sample's "loss
distribution", whose variance across bits is Jump-teaching's cleanliness score.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg
import torch


def default_code_bits(num_classes: int) -> int:
    """The official code's K: 32 for up to 32 classes, else the smallest power of two >= C / 2, at least 64.

    32 (CIFAR-10, Clothing1M) and 64 (CIFAR-100, WebVision) are the released configs' values; beyond that
    we take the smallest K with C <= 2K (Food-101N's 128 for 101 classes is larger than needed: 64 works).
    """
    if num_classes <= 32:
        return 32
    k = 64
    while 2 * k < num_classes:
        k *= 2
    return k


def hadamard_codes(num_classes: int, bits: int) -> torch.Tensor:
    """The ``[num_classes, bits]`` codebook of ±1 floats (rows of H_K, then of -H_K).

    Parameters
    ----------
    num_classes : int
        C; needs ``C <= 2 * bits``.
    bits : int
        K, a power of two.

    Returns
    -------
    Tensor
        Row c is class c's codeword; row 0 is all ones.
    """
    if bits < 1 or bits & (bits - 1):
        raise ValueError(f"Hadamard code length must be a power of two, got {bits}")
    if num_classes > 2 * bits:
        raise ValueError(f"{num_classes} classes need at least {num_classes / 2:g} code bits "
                         f"(C <= 2K); got K={bits}. Set method.args.code_bits to a larger power of two.")
    h = scipy.linalg.hadamard(bits).astype(np.float32)
    book = np.concatenate([h, -h], axis=0)[:num_classes]
    return torch.from_numpy(book)


def decode_scores(h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Decoding scores ``sign(h) @ codes.T`` (``[B, C]``): the argmax is the decoded class.

    Hard decoding as in the official evaluation: the score of class c is the number of agreeing bits
    minus the number of disagreeing ones (a zero output counts as neither).
    """
    return torch.sign(h.float()) @ codes.t().to(device=h.device, dtype=torch.float32)


def decode(h: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """The class whose codeword is nearest (in Hamming distance) to ``sign(h)``."""
    return decode_scores(h, codes).argmax(dim=1)


def bitwise_bce(h: torch.Tensor, target_codes: torch.Tensor, *, clamp: float = 1e-4) -> torch.Tensor:
    """Per-bit binary cross-entropy ``[B, K]`` between ``(h+1)/2`` and ``(code+1)/2``, in float32.

    ``h`` is clamped to ``±(1 - clamp)`` first (as the official code does), which bounds every bit's
    loss by ``-log(clamp / 2)`` (about 9.9 for the default). Written out rather than calling
    ``F.binary_cross_entropy`` so it is safe under autocast.
    """
    p = (h.float().clamp(-1.0 + clamp, 1.0 - clamp) + 1.0) * 0.5
    t = (target_codes.float() + 1.0) * 0.5
    return -(t * torch.log(p) + (1.0 - t) * torch.log1p(-p))
