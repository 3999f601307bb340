"""The trainer's hooks for the training-recipe options of issue 21 (airbench94's tricks), in one place.

Every option is off by default, and off means the hook does nothing: no computation, no random draw, so a
run without the options is bit-identical to one made before they existed.

============================  ==========================================================================
option                        where it acts
============================  ==========================================================================
``model.args.whiten``         fastcnn's patch-whitening stem: :func:`init_backbone_from_data` sets its
                              filters once from the training images; :func:`start_epoch` freezes its
                              bias after ``model.args.whiten_bias_epochs``
``model.args.dirac``          fastcnn's constructor (identity initialisation)
``optim.bn_bias_lr_scale``    :func:`noisyfit.engine.optim.build_optimizer` (BatchNorm biases' lr)
``optim.schedule=triangle``   :func:`noisyfit.engine.optim.triangle_factor` (airbench94's lr schedule)
``optim.name=muon`` (+ ``muon_*``)  :class:`noisyfit.engine.muon.MuonSGD` (airbench94_muon's optimiser)
``optim.head_lr_scale``       :func:`noisyfit.engine.optim.split_heads` (the head's lr)
``optim.whiten_bias_lr``      :func:`noisyfit.engine.optim.split_whiten_bias` (``decay``: airbench94_muon)
``model.args.head_init_std``  fastcnn's constructor (the head's initial scale; airbench94_muon: 1)
``model.args.bn/logit_scale`` fastcnn's constructor (airbench's BatchNorm; 1/9 output scale, no head bias
                              with ``head_bias: false``)
``train.crop_pad``            the Augmenter's crop translation (airbench94: 2 pixels; protocol: 4)
``method.args.label_smoothing``  CE's loss (a method hyper-parameter: its own bench row, ``ce-ls``)
``train.ema`` (+ ``ema_*``)   :class:`noisyfit.engine.ema.WeightAverage`, built by :func:`setup_recipe`
``train.flip``                the Augmenter's flips (``alternate``: :mod:`noisyfit.data.altflip`);
                              :func:`start_epoch` tells it the epoch
``train.eval_tta``            validation / test accuracy (:mod:`noisyfit.engine.tta`)
============================  ==========================================================================
"""

from __future__ import annotations

import torch
import torch.nn as nn

from noisyfit.config import Config, ConfigError, check_numbers
from noisyfit.engine.ema import WeightAverage
from noisyfit.engine.optim import lr_factor
from noisyfit.engine.tta import tta_views
from noisyfit.models.whitening import WHITEN_IMAGES


def check_settings(cfg: Config) -> None:
    """The settings that need no data: the lr schedule, the crop translation, the TTA views (ConfigError).
    The trainer calls it before it loads any data."""
    check_numbers(cfg)  # a negative lr, zero epochs, a momentum of 3...
    lr_factor(cfg.optim, 0.0, cfg.train.epochs)
    check_optimizer_names(cfg)
    if cfg.train.crop_pad < 0:
        raise ConfigError(f"train.crop_pad={cfg.train.crop_pad} must be >= 0")
    tta_views(cfg.train.eval_tta)


def check_optimizer_names(cfg: Config) -> None:
    """The optimiser's string settings (``optim.whiten_bias_lr``, and with ``optim.name=muon`` its
    Newton-Schulz dtype), ConfigError before any data is loaded."""
    from noisyfit.engine.muon import NS_DTYPES
    from noisyfit.engine.optim import WHITEN_BIAS_LR

    o = cfg.optim
    if o.whiten_bias_lr not in WHITEN_BIAS_LR:
        raise ConfigError(f"optim.whiten_bias_lr={o.whiten_bias_lr!r}: use one of {', '.join(WHITEN_BIAS_LR)}")
    if o.name.lower() == "muon" and o.muon_ns_dtype not in NS_DTYPES:
        raise ConfigError(f"optim.muon_ns_dtype={o.muon_ns_dtype!r}: use one of {', '.join(NS_DTYPES)}")


def setup_recipe(method: nn.Module, cfg: Config, is_image: bool) -> WeightAverage | None:
    """Check the recipe settings before training starts; the weight average (None unless ``train.ema``)."""
    tc = cfg.train
    check_settings(cfg)
    if tc.eval_tta != "none" and not is_image:
        raise ConfigError(f"train.eval_tta={tc.eval_tta!r} mirrors and shifts images; this data set has feature "
                          "rows: use train.eval_tta=none")
    return WeightAverage.from_config(method, tc)


def first_images(train_x, n: int) -> torch.Tensor:
    """The first ``n`` stored training examples, from a tensor or from a store with ``take``."""
    n = min(n, len(train_x))
    if hasattr(train_x, "take"):
        return train_x.take(torch.arange(n))
    return train_x[:n]


def init_backbone_from_data(net: nn.Module, train_x, augmenter, max_images: int = WHITEN_IMAGES) -> None:
    """Call ``net.init_from_data`` on the first ``max_images`` normalised training images (no augmentation)
    when the backbone asks for it (``needs_data_init``); otherwise do nothing at all.

    airbench uses the first 5,000 images of the training set; here the first of the training split (rows in
    data-set order, the noisy-validation hold-out removed). Their labels are never read.
    """
    if not getattr(net, "needs_data_init", False):
        return
    net.init_from_data(augmenter.normalize(first_images(train_x, max_images)))


def start_epoch(method: nn.Module, augmenter, epoch: int) -> None:
    """Tell the backbones (``set_epoch``) and the augmenter (alternating flips) which epoch starts.
    Called for a resumed epoch too, so both depend on the epoch number only."""
    from noisyfit.models.backbones import Backbone

    for m in method.modules():
        if isinstance(m, Backbone):
            m.set_epoch(epoch)
    augmenter.epoch = epoch
