"""Batched augmentation and normalisation on the training device.

Images stay as one uint8 NCHW tensor on the device (as airbench does); a batch is cut out by index,
augmented as a whole, converted to float and normalised. No data-loader workers are involved.

* weak: random crop with 4-pixel reflect padding + horizontal flip (the CIFAR standard), done by one
  gather so it costs a few ms per 512 images on a CPU;
* strong: the weak crop + flip, then kornia AutoAugment (CIFAR-10 policy) or RandAugment. The policy
  is drawn per image, as in the torchvision pipelines of the official codes: kornia draws one
  sub-policy per call (the whole batch would share it), so images are grouped by their draw and each
  group goes through its sub-policy (AutoAugment: 25 groups at most; RandAugment: n rounds over its
  15 ops). ``strong_draw="batch"`` restores kornia's one draw per batch (faster, less varied).
  Equalisation runs batched (:mod:`noisyfit.data.equalize`), bit-identical to kornia's per-image loop.
Feature rows (tabular data) are passed through unchanged for every view.
All randomness comes from torch's global generator, which the trainer checkpoints, so a resumed run
draws the same augmentations as an uninterrupted one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

STRONG_POLICIES = ("autoaugment", "randaugment")
STRONG_DRAWS = ("image", "batch")
FLIP_MODES = ("random", "alternate")


class Augmenter:
    """Turns stored examples (uint8 images or float rows) into normalised model inputs.

    Parameters
    ----------
    mean, std : tensor
        Per-channel statistics (images, in [0, 1] units) used for normalisation.
    is_image : bool
        Feature rows skip all augmentation.
    pad : int
        Reflect padding for the random crop.
    strong_policy : str
        ``"autoaugment"`` (kornia, CIFAR-10 policy) or ``"randaugment"``.
    channels_last : bool
        Return NHWC-strided tensors (faster convolutions on CPU and recent GPUs).
    strong_draw : str
        ``"image"``: each image draws its own (sub-)policy (the official pipelines); ``"batch"``: one
        draw per batch, kornia's behaviour.
    flip_mode : str
        ``"random"``: each view flips with probability 1/2 (the default); ``"alternate"``: airbench's
        alternating flips (:mod:`noisyfit.data.altflip`) for views that know their sample indices (training
        batches), decided by (sample index, :attr:`epoch`, ``flip_seed``); views without indices (evaluation
        passes) still flip at random. Two views of one sample in one epoch get the same flip.
    flip_seed : int
        Seed of the alternating flips' first orientation.
    """

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, *, is_image: bool, pad: int = 4,
                 flip: bool = True, strong_policy: str = "autoaugment", channels_last: bool = True,
                 strong_draw: str = "image", flip_mode: str = "random", flip_seed: int = 0):
        if flip_mode not in FLIP_MODES:
            raise ValueError(f"flip_mode must be one of {FLIP_MODES}, got {flip_mode!r}")
        self.flip_mode, self.flip_seed = flip_mode, flip_seed
        self.epoch = 0  # set by the trainer each epoch; only alternating flips read it
        if strong_policy not in STRONG_POLICIES:
            raise ValueError(f"strong_policy must be one of {STRONG_POLICIES}, got {strong_policy!r}")
        if strong_draw not in STRONG_DRAWS:
            raise ValueError(f"strong_draw must be one of {STRONG_DRAWS}, got {strong_draw!r}")
        self.strong_draw = strong_draw
        self.mean = mean
        self.std = std
        self.is_image = is_image
        self.pad = pad
        self.flip = flip
        self.strong_policy = strong_policy
        self.channels_last = channels_last
        self._strong = None  # built lazily: kornia import costs ~1 s

    # ------------------------------------------------------------------ helpers
    def to(self, device) -> "Augmenter":
        self.mean = self.mean.to(device)
        self.std = self.std.to(device)
        return self

    def _finish(self, x01: torch.Tensor) -> torch.Tensor:
        x = (x01 - self.mean.view(1, -1, 1, 1)) / self.std.view(1, -1, 1, 1)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Stored examples -> model input, no augmentation (evaluation, selection passes)."""
        if not self.is_image:
            return x.float()
        return self._finish(x.float().div_(255.0))

    # ------------------------------------------------------------------ views
    def crop_flip(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """Random crop (reflect pad) and horizontal flip of a uint8 or float NCHW batch, by one gather.
        ``index``: the samples' indices, for alternating flips."""
        b, c, h, w = x.shape
        dev = x.device
        if self.pad:
            padded = F.pad(x.float(), (self.pad,) * 4, mode="reflect")
            dy = torch.randint(0, 2 * self.pad + 1, (b,)).to(dev)
            dx = torch.randint(0, 2 * self.pad + 1, (b,)).to(dev)
            rows = (dy[:, None] + torch.arange(h, device=dev)[None, :])  # [B, H]
            cols = (dx[:, None] + torch.arange(w, device=dev)[None, :])  # [B, W]
        else:
            padded = x.float()
            rows = torch.arange(h, device=dev).expand(b, h)
            cols = torch.arange(w, device=dev).expand(b, w)
        if self.flip:
            if self.flip_mode == "alternate" and index is not None:
                from noisyfit.data.altflip import alternating_flips

                flip = alternating_flips(index, self.epoch, self.flip_seed).to(dev)
            else:
                flip = (torch.rand(b) < 0.5).to(dev)
            cols = torch.where(flip[:, None], cols.flip(1), cols)
        bi = torch.arange(b, device=dev)[:, None, None, None]
        ci = torch.arange(c, device=dev)[None, :, None, None]
        return padded[bi, ci, rows[:, None, :, None], cols[:, None, None, :]]

    def weak(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if not self.is_image:
            return x.float()
        return self._finish(self.crop_flip(x, index).div_(255.0))

    def strong(self, x: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        if not self.is_image:
            return x.float()
        x01 = self.crop_flip(x, index).div_(255.0)
        op = self._strong_op()
        out = op(x01) if self.strong_draw == "batch" else self._per_image(op, x01)
        return self._finish(out.clamp_(0.0, 1.0))

    def _per_image(self, op, x01: torch.Tensor) -> torch.Tensor:
        """Apply ``op`` with one draw per image: group the images by their draw, one call per group."""
        policies = list(op.children())  # AutoAugment: the sub-policies; RandAugment: the single ops
        rounds = 1 if self.strong_policy == "autoaugment" else int(op.n)
        out = x01
        for _ in range(rounds):
            pick = torch.randint(len(policies), (len(out),)).to(out.device)
            nxt = out.clone()
            for k in pick.unique().tolist():
                rows = (pick == k).nonzero().squeeze(1)
                nxt[rows] = policies[k](out[rows])
            out = nxt
        return out

    def view(self, x: torch.Tensor, kind: str) -> torch.Tensor:
        if kind == "none":
            return self.normalize(x)
        if kind == "weak":
            return self.weak(x)
        if kind == "strong":
            return self.strong(x)
        raise ValueError(f"unknown augmentation {kind!r}; use 'none', 'weak' or 'strong'")

    def _strong_op(self):
        if self._strong is None:
            from kornia.augmentation.auto import AutoAugment, RandAugment

            from noisyfit.data.equalize import use_batched_equalize

            if self.strong_policy == "autoaugment":
                self._strong = AutoAugment(policy="cifar10")
            else:
                self._strong = RandAugment(n=2, m=10)
            # kornia's equalize loops over images and channels in Python; ours gives the same images at once
            use_batched_equalize(self._strong)
        return self._strong


def channel_stats(x_uint8_nhwc) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std (in [0, 1] units) of a uint8 NHWC array, computed in chunks."""
    import numpy as np

    n = len(x_uint8_nhwc)
    # np.asarray: a lazy ImageFiles decodes one chunk at a time; an array is not copied
    return channel_stats_of_chunks(np.asarray(x_uint8_nhwc[i:i + STATS_CHUNK]) for i in range(0, n, STATS_CHUNK))


#: images per chunk of the statistics pass over an in-memory array (a lazy one decodes a chunk at a time)
STATS_CHUNK = 5000
#: pixel values counted per call of np.bincount (it widens its input to 8-byte integers: 8 MB at a time)
_BINCOUNT_SPAN = 1 << 20


def channel_stats_of_chunks(chunks) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`channel_stats` over ``uint8 [n, H, W, C]`` NumPy chunks (images streamed from disk).

    The pixels are counted into one 256-bin histogram per channel, so the sums are exact integers: the
    result does not depend on how the images are chunked (the streamed and in-memory paths agree to the
    bit), and the extra memory is a few MB whatever the image size. (Casting each chunk to float64, as an
    earlier version did, took 16 bytes per pixel value: 2.2 GB for 5,000 images of 96x96 px.)
    """
    import numpy as np

    hist = None
    for x in chunks:
        c = x.shape[-1]
        if hist is None:
            hist = np.zeros((c, 256), dtype=np.int64)
        flat = x.reshape(-1, c)
        for lo in range(0, len(flat), _BINCOUNT_SPAN):
            part = flat[lo:lo + _BINCOUNT_SPAN]
            for ch in range(c):
                hist[ch] += np.bincount(part[:, ch], minlength=256)
    levels = np.arange(256, dtype=np.int64)
    count = hist.sum(1)
    # exact integer sums (at most 255^2 per value: no overflow below 1.4e14 pixels per channel)
    s, s2 = hist @ levels, hist @ (levels * levels)
    mean = s / count / 255.0
    std = np.sqrt(np.maximum(s2 / count / 255.0 ** 2 - mean ** 2, 1e-12))
    return torch.tensor(mean, dtype=torch.float32), torch.tensor(std, dtype=torch.float32)
