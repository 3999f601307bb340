"""Test-time augmentation: a predictor that averages the logits of fixed views of each input.

The views and weights are airbench94's (Jordan 2024, section 3.7; its ``tta_level`` 1 and 2):

``"mirror"``
    the image and its mirror image, 1/2 each.
``"mirror_translate"``
    the image and its mirror, 1/4 each; the image shifted by one pixel up-left and by one pixel
    down-right (reflect padding), each also mirrored, 1/8 each. Six forward passes per image.

A view is ``(mirror, dy, dx, weight)``: the input shifted so that ``view[i, j] = x[i + dy, j + dx]`` (reflected
at the border), then mirrored left-right if ``mirror``. Logits are averaged, not probabilities, as airbench
does. In noisyfit the setting ``train.eval_tta`` applies to the validation and test accuracies the trainer
records (and so to model selection) and is saved in ``model.pt``, whose predictor averages the same views by
default (:class:`noisyfit.predictor.Predictor`, ``tta``); the per-sample training signals (``final_probs``,
clean scores) are computed without it.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import torch
import torch.nn.functional as F


class View(NamedTuple):
    mirror: bool
    dy: int
    dx: int
    weight: float


TTA_VIEWS: dict[str, tuple[View, ...]] = {
    "none": (View(False, 0, 0, 1.0),),
    "mirror": (View(False, 0, 0, 0.5), View(True, 0, 0, 0.5)),
    "mirror_translate": (
        View(False, 0, 0, 0.25), View(True, 0, 0, 0.25),
        View(False, -1, -1, 0.125), View(True, -1, -1, 0.125),
        View(False, 1, 1, 0.125), View(True, 1, 1, 0.125),
    ),
}


def tta_views(level: str) -> tuple[View, ...]:
    if level not in TTA_VIEWS:
        from noisyfit.config import ConfigError

        raise ConfigError(f"train.eval_tta={level!r} is unknown; use one of {', '.join(TTA_VIEWS)}")
    return TTA_VIEWS[level]


def apply_view(x: torch.Tensor, view: View) -> torch.Tensor:
    """One view of a float NCHW batch (see the module docstring)."""
    out = x
    if view.dy or view.dx:
        p = max(abs(view.dy), abs(view.dx))
        h, w = x.shape[-2:]
        padded = F.pad(x, (p, p, p, p), mode="reflect")
        out = padded[..., p + view.dy:p + view.dy + h, p + view.dx:p + view.dx + w]
    if view.mirror:
        out = out.flip(-1)
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)
    return out


def tta_logits(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor,
               views: tuple[View, ...]) -> torch.Tensor:
    """``sum_v weight_v * fn(view_v(x))`` in float32."""
    if x.dim() != 4:
        raise ValueError(f"test-time augmentation needs image batches [N, C, H, W], got shape {tuple(x.shape)}")
    total = None
    for v in views:
        part = fn(apply_view(x, v)).float() * v.weight
        total = part if total is None else total + part
    return total


def with_tta(fn: Callable[[torch.Tensor], torch.Tensor], level: str) -> Callable[[torch.Tensor], torch.Tensor]:
    """``fn`` itself for ``"none"``; else a predictor averaging ``fn`` over the level's views."""
    views = tta_views(level)
    if level == "none":
        return fn

    def predict(x: torch.Tensor) -> torch.Tensor:
        return tta_logits(fn, x, views)

    return predict
