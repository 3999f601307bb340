"""Muon for convolution filters, Nesterov SGD for everything else: the optimiser of airbench94_muon.

Keller Jordan, "Muon: An optimizer for hidden layers in neural networks" (2024,
https://kellerjordan.github.io/posts/muon/), as used by ``airbench94_muon.py`` in KellerJordan/cifar10-airbench
(94.01% on CIFAR-10 in 8 epochs, where the legacy airbench94 needs 9.9). Written from the blog post and a
reading of that script; no code copied.

A Muon step on a weight ``W`` (a conv filter bank, viewed as ``c_out x (c_in k k)``):

1. momentum ``m <- mu m + g``; with Nesterov the direction is ``g + mu m``, else ``m``;
2. (airbench94_muon) ``W`` is rescaled to Frobenius norm ``sqrt(c_out)`` first, so its scale never drifts and
   needs no weight decay;
3. the direction is replaced by an approximately orthogonal matrix with the same singular vectors
   (:func:`orthogonalize`: a few quintic Newton-Schulz iterations), and ``W <- W - lr * that``.

The update's size therefore does not depend on the gradient's scale: Muon's lr is the same for a summed or a
mean loss, unlike SGD's.

Departure from the script, both options with its behaviour as default: the Newton-Schulz iterations run in
``ns_dtype`` (the script: bfloat16 on a GPU; on a CPU without bf16 kernels ``"fp32"`` is faster, and more
exact). Everything else in a group marked ``muon: False`` is plain SGD with PyTorch's semantics (coupled weight
decay, momentum buffer started at the first gradient, Nesterov), checked against ``torch.optim.SGD`` in the
tests.
"""

from __future__ import annotations

import math

import torch

#: the quintic's coefficients (Jordan 2024): chosen for the steepest slope at zero, so few iterations lift small
#: singular values; the result has singular values roughly in [0.7, 1.2] rather than exactly 1
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_DTYPES = {"bf16": torch.bfloat16, "fp32": torch.float32, "fp64": torch.float64}


def orthogonalize(g: torch.Tensor, steps: int = 3, dtype: torch.dtype = torch.bfloat16,
                  eps: float = 1e-7) -> torch.Tensor:
    """An approximately orthogonal matrix with ``g``'s singular vectors (``U S' V^T`` for ``g = U S V^T``).

    ``g`` is viewed as ``len(g) x rest``. Scaled to Frobenius norm 1 (so every singular value is at most 1),
    then ``steps`` times ``X <- a X + (b A + c A^2) X`` with ``A = X X^T`` (on the wide orientation, so ``A`` is
    the smaller Gram matrix). Each iteration applies the odd polynomial ``a s + b s^3 + c s^5`` to every
    singular value. Returned in ``g``'s shape and dtype.
    """
    a, b, c = NS_COEFFS
    x = g.reshape(len(g), -1).to(dtype)
    x = x / (x.norm() + eps)
    tall = x.shape[0] > x.shape[1]
    if tall:
        x = x.T
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    if tall:
        x = x.T
    return x.reshape(g.shape).to(g.dtype)


class MuonSGD(torch.optim.Optimizer):
    """One optimiser, two rules: groups with ``muon=True`` take Muon steps, the others Nesterov SGD.

    Group keys (defaults from the constructor): ``lr``, ``momentum``, ``nesterov``, ``weight_decay`` (SGD groups
    only; Muon groups keep their norm fixed instead), ``muon``, ``ns_steps``, ``ns_dtype`` (``"bf16"``,
    ``"fp32"``, ``"fp64"``), ``normalize`` (Muon groups: rescale each weight to norm ``sqrt(len(W))`` before
    its step, as airbench94_muon).
    """

    def __init__(self, params, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 muon: bool = False, ns_steps: int = 3, ns_dtype: str = "bf16", normalize: bool = True):
        if ns_dtype not in NS_DTYPES:
            raise ValueError(f"ns_dtype must be one of {sorted(NS_DTYPES)}, got {ns_dtype!r}")
        defaults = dict(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay, muon=muon,
                        ns_steps=ns_steps, ns_dtype=ns_dtype, normalize=normalize)
        super().__init__(params, defaults)
        for group in self.param_groups:
            if group["muon"]:
                for p in group["params"]:
                    if p.dim() < 2:
                        raise ValueError(f"a Muon group holds a tensor of shape {tuple(p.shape)}: Muon updates "
                                         "matrices and filter banks only (put biases and norms in an SGD group)")

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mu, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                d = p.grad
                if not group["muon"] and group["weight_decay"]:
                    d = d.add(p, alpha=group["weight_decay"])
                if mu:
                    state = self.state[p]
                    buf = state.get("momentum_buffer")
                    if buf is None:
                        buf = state["momentum_buffer"] = d.detach().clone()
                    else:
                        buf.mul_(mu).add_(d)
                    d = d.add(buf, alpha=mu) if group["nesterov"] else buf
                if group["muon"]:
                    if group["normalize"]:
                        p.mul_(math.sqrt(len(p)) / p.norm())
                    d = orthogonalize(d, group["ns_steps"], NS_DTYPES[group["ns_dtype"]])
                p.add_(d, alpha=-lr)
        return loss
