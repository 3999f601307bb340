"""Histogram equalisation of a whole batch at once, equal to kornia's to the bit.

kornia's ``enhance.equalize`` (PIL's algorithm: a 256-bin histogram per image and channel, a lookup table
from its cumulative sum) loops in Python over every image and every channel, with host reads of each
channel's min, max and step. In the CIFAR-10 AutoAugment policy about one strong view in five is
equalised, and on a CPU that loop took about a third of a strong view's time (``benchmarks/STRONG_AUG_SPEED.md``).
:func:`equalize` does the same arithmetic on all images and channels in a few tensor operations:

* the histogram bin of a value v in [0, 255] is ``int(v * 256 / 255)`` (the last bin also takes 255), as
  ``torch.histc(·, 256, 0, 255)`` computes it on the CPU;
* step = (pixels - count of the last non-empty bin) // 255; where it is 0 the channel is left as it is
  (multiplied by 255 and divided back, as kornia does);
* lut = (cumsum + step // 2) // step, shifted right by one bin with a 0 first, clipped to [0, 255],
  indexed by the truncated value.

The float operations are kornia's, in its order, so the results are identical (tests compare them on
random images, images after other AutoAugment operations, flat channels and two-level channels).
:func:`use_batched_equalize` puts it inside a kornia AutoAugment without changing anything else: the
random draws, and so every augmented image, stay as they were.
"""

from __future__ import annotations

import torch


def equalize(x: torch.Tensor) -> torch.Tensor:
    """Equalise each channel of each image of ``x`` (float, [B, C, H, W], values in [0, 1])."""
    b, c, h, w = x.shape
    im = (x * 255.0).reshape(b * c, h * w)
    bins = (im * 256.0 / 255.0).long().clamp_(0, 255)
    hist = torch.zeros(b * c, 256, dtype=im.dtype, device=im.device).scatter_add_(1, bins, torch.ones_like(im))
    # the count of the last non-empty bin (bin 0 when it is the only one)
    last_bin = (hist.ne(0) * torch.arange(256, device=im.device)).argmax(1, keepdim=True)
    step = torch.div(hist.sum(1, keepdim=True) - hist.gather(1, last_bin), 255, rounding_mode="trunc")
    flat = step.eq(0)
    lut = torch.div(hist.cumsum(1) + torch.div(step, 2, rounding_mode="trunc"), torch.where(flat, 1.0, step),
                    rounding_mode="trunc")
    lut = torch.cat([lut.new_zeros(b * c, 1), lut[:, :-1]], 1).clamp_(0, 255)
    out = torch.where(flat, im, lut.gather(1, im.long()))
    return (out / 255.0).reshape(b, c, h, w)


def _equalize_transform(input, params, flags, transform=None):  # kornia's apply_transform signature
    return equalize(input)


def use_batched_equalize(module: torch.nn.Module) -> int:
    """Make every ``RandomEqualize`` inside ``module`` (e.g. a kornia AutoAugment) use :func:`equalize`.

    Only the transform is replaced: which images are equalised is still drawn by kornia, from the same
    random numbers. Returns how many were replaced.
    """
    from kornia.augmentation import RandomEqualize

    count = 0
    for sub in module.modules():
        if isinstance(sub, RandomEqualize):
            sub.apply_transform = _equalize_transform  # an instance attribute: kornia calls self.apply_transform
            count += 1
    return count
