"""Backbones: a registry and a `create_backbone` factory.

Every backbone is an ``nn.Module`` with
  * ``feature_dim``: size of the penultimate feature,
  * ``forward_features(x) -> [B, feature_dim]``,
  * ``head``: the linear classifier (methods may replace it, e.g. PEMM's distance head),
  * ``forward(x) -> logits`` and ``features_and_logits(x) -> (features, logits)``.
Images come in as normalised float NCHW; feature rows as ``[B, D]``.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

_REGISTRY: dict[str, Callable[..., "Backbone"]] = {}


class UnknownNameError(KeyError):
    """An unknown registry name; the message lists the valid ones."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def register_backbone(name: str):
    def wrap(fn):
        _REGISTRY[name] = fn
        return fn

    return wrap


def list_backbones() -> list[str]:
    return sorted(_REGISTRY)


def check_backbone_name(name: str) -> None:
    """An :class:`UnknownNameError` listing the registered backbones unless ``name`` is one (no network is built)."""
    if name not in _REGISTRY:
        raise UnknownNameError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}")


def create_backbone(name: str, *, num_classes: int, input_shape: Sequence[int], **kwargs) -> "Backbone":
    """Build a registered backbone.

    Parameters
    ----------
    name : str
        One of :func:`list_backbones`.
    num_classes : int
        Width of the linear head.
    input_shape : sequence of int
        ``(C, H, W)`` for images, ``(D,)`` for feature rows.
    **kwargs
        Backbone-specific options (e.g. ``widths`` for ``fastcnn``, ``hidden`` for ``mlp``), and for every
        backbone ``neck``: ``none`` (default) or ``bn`` (:class:`WithNeck`).
    """
    check_backbone_name(name)
    neck = kwargs.pop("neck", "none")
    if neck not in NECKS:
        raise ValueError(f"model.args.neck={neck!r}: use one of {', '.join(NECKS)}")
    if neck != "none":
        return WithNeck(create_backbone(name, num_classes=num_classes, input_shape=input_shape, **kwargs), neck)
    fn = _REGISTRY[name]
    options = [p for p in inspect.signature(fn).parameters if p not in ("num_classes", "input_shape")]
    unknown = sorted(set(kwargs) - set(options))
    if unknown:
        raise ValueError(f"backbone {name!r} has no option(s) {unknown} (model.args); its options: "
                         f"{', '.join(options) or 'none'}")
    return fn(num_classes=num_classes, input_shape=tuple(input_shape), **kwargs)


class Backbone(nn.Module):
    feature_dim: int
    #: True when the backbone needs :meth:`init_from_data` before training (e.g. fastcnn's whitening stem)
    needs_data_init: bool = False

    def __init__(self, feature_dim: int, num_classes: int):
        super().__init__()
        self.feature_dim = feature_dim
        self.num_classes = num_classes
        self.head: nn.Module = nn.Linear(feature_dim, num_classes)

    def init_from_data(self, x: torch.Tensor) -> None:
        """Set data-dependent weights from normalised training inputs; the trainer calls it once, when it
        builds the backbone, if :attr:`needs_data_init`. Default: nothing."""

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch (e.g. to freeze a layer after N epochs)."""

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    def features_and_logits(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.forward_features(x)
        return h, self.head(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(x))


#: ``model.args.neck`` choices, for every backbone
NECKS = ("none", "bn")


class WithNeck(Backbone):
    """A backbone whose features pass through Linear + BatchNorm1d + ReLU before the head (``model.args.neck=bn``).

    The official PEMM code puts such a block between its ResNet and its distance head. A normalised penultimate
    feature matters for heads other than a linear classifier: fastcnn's pooled features are all positive with a
    large shared mean, which cross-entropy ignores but a logit MSE (BKD's compensation loss) or a distance to
    class centres (PEMM) does not (issue 17's Hessian measurement). Ours, as an option; off by default.
    """

    def __init__(self, body: Backbone, kind: str = "bn"):
        super().__init__(body.feature_dim, body.num_classes)
        d = body.feature_dim
        body.head = nn.Identity()  # the wrapper's head replaces it
        self.body = body
        self.neck = nn.Sequential(nn.Linear(d, d), nn.BatchNorm1d(d), nn.ReLU())
        self.needs_data_init = body.needs_data_init

    def init_from_data(self, x: torch.Tensor) -> None:
        self.body.init_from_data(x)

    def set_epoch(self, epoch: int) -> None:
        self.body.set_epoch(epoch)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body.forward_features(x))


def _require_image(name: str, input_shape: tuple[int, ...]) -> int:
    if len(input_shape) != 3:
        raise ValueError(f"backbone {name!r} needs image input (C, H, W), got input_shape={input_shape}; "
                         "use backbone 'mlp' for feature rows")
    return input_shape[0]


# ---------------------------------------------------------------------------------------------------
# Fast CNN (airbench-shaped): stem, then 3 groups of conv-pool-BN-GELU-conv-BN-GELU, global max pool.
class _ConvGroup(nn.Module):
    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)

    def forward(self, x):
        x = F.max_pool2d(self.conv1(x), 2)
        x = F.gelu(self.bn1(x))
        return F.gelu(self.bn2(self.conv2(x)))


#: fastcnn's ``bn`` choices: PyTorch's BatchNorm2d defaults, or airbench94's settings
FASTCNN_BATCHNORMS = ("torch", "airbench")


class FastCNN(Backbone):
    """airbench94-shaped CNN (Jordan 2024, arXiv:2404.00498).

    Widths default to airbench94's 64/256/256; 64/128/128 is the airbench93 size. By default the stem is a
    3x3 conv-BN-GELU of ``stem_width`` channels and every conv keeps PyTorch's default initialisation (the
    protocol's network; the options below leave it unchanged when off).

    Parameters
    ----------
    whiten : bool
        airbench's stem instead: a frozen 2x2 patch-whitening conv (24 channels for RGB, no padding) and a GELU
        (:class:`~noisyfit.models.whitening.PatchWhitening`); its weights come from the training images
        (the trainer calls :meth:`init_from_data` once); ``stem_width`` is then unused.
    whiten_bias_epochs : int
        Epochs during which the whitening bias trains (airbench: 3); frozen afterwards.
    whiten_eps : float
        Added to each eigenvalue before the inverse square root (airbench: 5e-4, the default). Ours, an option:
        a larger value damps the smallest-eigenvalue directions, which on the JPEG copy of CIFAR-10 carry
        mostly compression error (``benchmarks/jpeg_gap.py --spectrum``); not measured on accuracy yet.
    dirac : bool
        airbench's identity initialisation: after the default init, the first ``min(c_out, c_in)`` filters of
        every 3x3 conv become identity maps (``nn.init.dirac_``), so a group's second conv starts as the
        identity. Applied to the groups' convs and to the 3x3 stem (not to the whitening conv, whose weights
        come from data).

    bn : str
        ``"torch"`` (default): PyTorch's BatchNorm2d, learnable scale, momentum 0.1, eps 1e-5. ``"airbench"``:
        airbench94's: the scale fixed at 1 (not trained), running statistics updated with PyTorch momentum
        0.4 (airbench writes it as 0.6, the weight of the old value), eps 1e-12.
    logit_scale : float
        Multiplies the pooled features before the head (airbench94: 1/9). With ``head_bias=False`` the logits
        are exactly scaled by it, as airbench's ``Mul`` after its bias-free linear layer; 1 (default) = off.
        Methods that read the features (projection heads, class centres) see the scaled features too.
    head_bias : bool
        The linear head's bias (airbench94: none).
    head_init_std : float or None
        Rescale the head's initial weights to this standard deviation (airbench94_muon: 1, with
        ``logit_scale`` 1/256); None (default) keeps PyTorch's initialisation. Consumes no random numbers.

    Kept in every case: global max pooling of whatever size is left (airbench: MaxPool2d(3) over the 3x3
    map, the same thing on 32x32 inputs).
    """

    def __init__(self, num_classes: int, in_channels: int, widths: Sequence[int] = (64, 256, 256),
                 stem_width: int = 32, whiten: bool = False, whiten_bias_epochs: int = 3, dirac: bool = False,
                 bn: str = "torch", logit_scale: float = 1.0, head_bias: bool = True, whiten_eps: float = 5e-4,
                 head_init_std: float | None = None):
        super().__init__(widths[-1], num_classes)
        if bn not in FASTCNN_BATCHNORMS:
            raise ValueError(f"fastcnn: bn must be one of {FASTCNN_BATCHNORMS}, got {bn!r}")
        if not logit_scale > 0:
            raise ValueError(f"fastcnn: logit_scale must be positive, got {logit_scale}")
        self.logit_scale = float(logit_scale)
        if not head_bias:
            self.head = nn.Linear(widths[-1], num_classes, bias=False)
        if whiten:
            from noisyfit.models.whitening import PatchWhitening

            self.stem = PatchWhitening(in_channels, 2, whiten_bias_epochs, eps=whiten_eps)
            stem_width = self.stem.out_channels
        else:
            self.stem = nn.Sequential(nn.Conv2d(in_channels, stem_width, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(stem_width), nn.GELU())
        chans = [stem_width, *widths]
        self.groups = nn.Sequential(*[_ConvGroup(a, b) for a, b in zip(chans[:-1], chans[1:])])
        self.needs_data_init = bool(whiten)
        if bn == "airbench":
            for m in self.modules():
                if isinstance(m, nn.BatchNorm2d):
                    m.momentum, m.eps = 0.4, 1e-12
                    m.weight.requires_grad_(False)  # stays at its initial 1
        if head_init_std is not None:
            if not head_init_std > 0:
                raise ValueError(f"fastcnn: head_init_std must be positive, got {head_init_std}")
            with torch.no_grad():
                self.head.weight.mul_(head_init_std / self.head.weight.std())
        if dirac:  # after every default init: consumes no random numbers
            with torch.no_grad():
                for m in self.modules():
                    if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3):
                        w = m.weight
                        nn.init.dirac_(w[:min(w.shape[0], w.shape[1])])

    def init_from_data(self, x: torch.Tensor) -> None:
        """Whitening filters from normalised float NCHW training images (nothing without ``whiten``)."""
        if self.needs_data_init:
            self.stem.init_from_data(x)

    def set_epoch(self, epoch: int) -> None:
        """Called by the trainer at the start of every epoch: the whitening bias trains for its first epochs."""
        if hasattr(self.stem, "set_epoch"):
            self.stem.set_epoch(epoch)

    def forward_features(self, x):
        x = torch.amax(self.groups(self.stem(x)), dim=(2, 3))
        return x * self.logit_scale if self.logit_scale != 1.0 else x


@register_backbone("fastcnn")
def _fastcnn(num_classes, input_shape, widths=(64, 256, 256), stem_width=32, whiten=False, whiten_bias_epochs=3,
             dirac=False, bn="torch", logit_scale=1.0, head_bias=True, whiten_eps=5e-4, head_init_std=None):
    return FastCNN(num_classes, _require_image("fastcnn", input_shape), tuple(widths), stem_width, bool(whiten),
                   int(whiten_bias_epochs), bool(dirac), str(bn), float(logit_scale), bool(head_bias),
                   float(whiten_eps), None if head_init_std is None else float(head_init_std))


# ---------------------------------------------------------------------------------------------------
# PreAct ResNet-18 (He et al. 2016, identity mappings) in the layout of the DivideMix code.
class _PreActBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Conv2d(c_in, c_out, 1, stride, bias=False)

    def forward(self, x):
        out = F.relu(self.bn1(x))
        short = self.shortcut(out) if self.shortcut is not None else x
        out = self.conv1(out)
        out = self.conv2(F.relu(self.bn2(out)))
        return out + short


class _BasicBlock(nn.Module):
    def __init__(self, c_in, c_out, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(Backbone):
    """ResNet with the CIFAR stem (3x3 conv + BN + ReLU, stride 1, no max-pool) and 4x4 average pooling.

    With pre-activation blocks this is the PreActResNet18 of the DivideMix code, which BKD and
    Jump-teaching reuse: a conv-BN-ReLU stem and no BN-ReLU after the last block. With basic blocks it
    is the CIFAR ResNet-34 of ELR / the CIFAR-N baselines.
    """

    def __init__(self, block, num_blocks, num_classes, in_channels):
        super().__init__(512, num_classes)
        self.conv1 = nn.Conv2d(in_channels, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        layers, c_in = [], 64
        for c_out, n, stride in zip((64, 128, 256, 512), num_blocks, (1, 2, 2, 2)):
            for s in [stride] + [1] * (n - 1):
                layers.append(block(c_in, c_out, s))
                c_in = c_out
        self.layers = nn.Sequential(*layers)

    def forward_features(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layers(out)
        return torch.flatten(F.adaptive_avg_pool2d(out, 1), 1)


@register_backbone("preact_resnet18")
def _preact_resnet18(num_classes, input_shape):
    return CifarResNet(_PreActBlock, (2, 2, 2, 2), num_classes, _require_image("preact_resnet18", input_shape))


@register_backbone("resnet34")
def _resnet34(num_classes, input_shape):
    return CifarResNet(_BasicBlock, (3, 4, 6, 3), num_classes, _require_image("resnet34", input_shape))


# ---------------------------------------------------------------------------------------------------
class MLP(Backbone):
    """Multi-layer perceptron for feature rows (ReLU, BatchNorm between layers)."""

    def __init__(self, num_classes: int, input_dim: int, hidden: Sequence[int] = (256, 256),
                 dropout: float = 0.0, batchnorm: bool = True):
        super().__init__(hidden[-1], num_classes)
        layers, d = [], input_dim
        for h in hidden:
            layers += [nn.Linear(d, h), *([nn.BatchNorm1d(h)] if batchnorm else []), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(dropout))
            d = h
        self.body = nn.Sequential(*layers)

    def forward_features(self, x):
        return self.body(x.flatten(1))


@register_backbone("mlp")
def _mlp(num_classes, input_shape, hidden=(256, 256), dropout=0.0, batchnorm=True):
    input_dim = 1
    for s in input_shape:
        input_dim *= s
    return MLP(num_classes, input_dim, tuple(hidden), dropout, batchnorm)
