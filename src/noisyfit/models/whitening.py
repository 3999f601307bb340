"""A frozen patch-whitening first layer, the stem of airbench94 (Jordan 2024, arXiv:2404.00498, section 3.2).

A ``k x k`` convolution (no padding) whose filters are the eigenvectors of the second-moment matrix of the
training images' ``k x k`` patches, each divided by ``sqrt(eigenvalue + eps)``: applied to a patch, the
first ``C*k*k`` outputs are its coordinates in the eigenbasis with unit second moment, i.e. the patches come
out whitened. The negated filters follow, so that the GELU after the layer passes both signs of every
coordinate (``2*C*k*k`` output channels: 24 for RGB and ``k = 2``). The weights are frozen; the bias starts
at zero and trains only during the first ``bias_epochs`` epochs.

As airbench does, the statistics are the uncentred second moment of the *normalised* images (per-channel
training mean and std, so the patch mean is close to zero), ``eps = 5e-4``, from the first 5,000 training
images. Our departures: the statistics are accumulated in float64 in chunks of images (airbench builds all
patches at once in fp16/fp32 on a GPU); the layer refuses to train before it has been initialised from data
(a random frozen first layer would train silently and badly).
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

#: added to the eigenvalues before the inverse square root (airbench94's value)
WHITEN_EPS = 5e-4
#: training images used for the statistics (airbench94's value: the first 5,000)
WHITEN_IMAGES = 5000


def patch_second_moment(x: torch.Tensor, k: int, chunk: int = 500) -> torch.Tensor:
    """``E[p p^T]`` over every ``k x k`` patch (stride 1, no padding) of a float NCHW batch, in float64.

    A patch is flattened in the layout of a conv weight ``[C, k, k]``, so eigenvectors reshape into filters.
    """
    c = x.shape[1]
    total = torch.zeros(c * k * k, c * k * k, dtype=torch.float64, device=x.device)
    count = 0
    for s in range(0, len(x), chunk):
        xb = x[s:s + chunk].to(torch.float64)
        # [B, C, H', W', k, k] -> [B, H', W', C, k, k] -> rows of C*k*k
        p = xb.unfold(2, k, 1).unfold(3, k, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, c * k * k)
        total += p.T @ p
        count += len(p)
    return total / max(count, 1)


def whitening_filters(moment: torch.Tensor, c: int, k: int, eps: float = WHITEN_EPS) -> torch.Tensor:
    """Filters ``[2*C*k*k, C, k, k]``: eigenvectors (largest eigenvalue first) scaled by ``1/sqrt(lambda+eps)``,
    then the same filters negated."""
    eigenvalues, eigenvectors = torch.linalg.eigh(moment)  # ascending; columns are eigenvectors
    order = torch.arange(len(eigenvalues) - 1, -1, -1, device=moment.device)
    eigenvalues, eigenvectors = eigenvalues[order], eigenvectors[:, order]
    w = (eigenvectors.T / torch.sqrt(eigenvalues.clamp(min=0) + eps)[:, None]).reshape(-1, c, k, k)
    return torch.cat([w, -w])


class PatchWhitening(nn.Module):
    """``GELU(conv_k(x))`` with frozen whitening filters and a bias trained for the first ``bias_epochs``.

    Parameters
    ----------
    in_channels : int
    kernel_size : int
        Patch size ``k`` (airbench: 2). Output: ``2 * in_channels * k * k`` channels, ``H - k + 1`` rows.
    bias_epochs : int
        Epochs (from 0) during which the bias trains; the trainer calls :meth:`set_epoch` each epoch.
    eps : float
        Added to the eigenvalues before the inverse square root (airbench: ``WHITEN_EPS``).
    """

    def __init__(self, in_channels: int, kernel_size: int = 2, bias_epochs: int = 3, eps: float = WHITEN_EPS):
        super().__init__()
        if not eps > 0:
            raise ValueError(f"whitening eps must be positive (airbench: {WHITEN_EPS}), got {eps}")
        self.eps = float(eps)
        self.kernel_size = kernel_size
        self.bias_epochs = int(bias_epochs)
        self.out_channels = 2 * in_channels * kernel_size * kernel_size
        self.conv = nn.Conv2d(in_channels, self.out_channels, kernel_size, padding=0, bias=True)
        self.conv.weight.requires_grad_(False)
        with torch.no_grad():
            self.conv.bias.zero_()
        self.conv.bias.requires_grad_(self.bias_epochs > 0)
        self._ready = False  # set by init_from_data or by loading weights

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set the filters from normalised float NCHW training images (what the network will see)."""
        c, k = self.conv.in_channels, self.kernel_size
        w = whitening_filters(patch_second_moment(x, k), c, k, eps=self.eps)
        self.conv.weight.copy_(w.to(self.conv.weight.dtype))
        self._ready = True

    def set_epoch(self, epoch: int) -> None:
        """Freeze the bias from epoch ``bias_epochs`` on (a frozen parameter gets no gradient, so SGD, its
        momentum and weight decay leave it exactly as it is)."""
        self.conv.bias.requires_grad_(epoch < self.bias_epochs)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + "conv.weight" in state_dict:
            self._ready = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training and not self._ready:
            raise RuntimeError("the whitening stem trains only after init_from_data(training images); the "
                               "trainer does this when it builds the backbone")
        return F.gelu(self.conv(x))
