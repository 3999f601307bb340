"""Optimiser and learning-rate schedule from config. The schedule is a multiplier of each group's lr,
evaluated at a fractional epoch every iteration, so resume needs no scheduler state."""

from __future__ import annotations

import math

import torch

from noisyfit.config import ConfigError, OptimConfig

SCHEDULES = ("constant", "cosine", "linear", "step", "cosine_restarts", "cosine_periodic", "triangle")


def _split_off(groups: list[dict], chosen: set[int], **changes) -> list[dict]:
    """Each group's parameters whose id is in ``chosen`` move to a group of their own right after it, with the
    group's settings updated by ``changes`` (values may be functions of the group). A group left empty by the
    move is dropped; one that was empty stays."""
    out = []
    for g in groups:
        params = list(g["params"])
        rest = [p for p in params if id(p) not in chosen]
        mine = [p for p in params if id(p) in chosen]
        if rest or not mine:
            out.append({**g, "params": rest})
        if mine:
            extra = {k: (v(g) if callable(v) else v) for k, v in changes.items()}
            out.append({**g, "params": mine, **extra})
    return out


def split_bn_biases(groups: list[dict], module: torch.nn.Module | None, cfg: OptimConfig) -> list[dict]:
    """airbench94's higher learning rate on BatchNorm biases (``optim.bn_bias_lr_scale``, airbench: 64).

    Each group's BatchNorm biases move to a group of their own, right after it, with the group's lr times
    the scale and its weight decay divided by it: the decay per step (lr x wd, SGD's coupled decay) stays
    what it was, as airbench keeps it. Scale 1 (the default) returns ``groups`` untouched. airbench's
    BatchNorm has no scale parameter; ours has one, and it keeps the base lr.
    """
    scale = float(getattr(cfg, "bn_bias_lr_scale", 1.0))
    if scale == 1.0 or module is None:
        return groups
    if scale <= 0:
        raise ConfigError(f"optim.bn_bias_lr_scale={scale} must be positive")
    biases = {id(m.bias) for m in module.modules()
              if isinstance(m, torch.nn.modules.batchnorm._BatchNorm) and m.bias is not None}
    return _split_off(groups, biases, lr=lambda g: g.get("lr", cfg.lr) * scale,
                      weight_decay=lambda g: g.get("weight_decay", cfg.weight_decay) / scale)


def split_heads(groups: list[dict], module: torch.nn.Module | None, cfg: OptimConfig) -> list[dict]:
    """airbench94_muon's own learning rate for the linear head (``optim.head_lr_scale``): every backbone's
    ``head`` parameters get the group's lr times the scale and its weight decay divided by it (the same decay per
    step). Scale 1 (the default) returns ``groups`` untouched."""
    from noisyfit.models.backbones import Backbone

    scale = float(cfg.head_lr_scale)
    if scale == 1.0 or module is None:
        return groups
    heads = {id(p) for m in module.modules() if isinstance(m, Backbone) for p in m.head.parameters()}
    return _split_off(groups, heads, lr=lambda g: g.get("lr", cfg.lr) * scale,
                      weight_decay=lambda g: g.get("weight_decay", cfg.weight_decay) / scale)


WHITEN_BIAS_LR = ("schedule", "decay")


def split_whiten_bias(groups: list[dict], module: torch.nn.Module | None, cfg: OptimConfig) -> list[dict]:
    """``optim.whiten_bias_lr=decay``: the whitening stem's bias in a group whose lr falls linearly from its
    base to 0 over the epochs the bias trains (airbench94_muon), whatever the run's schedule (:func:`set_lr`
    reads the group's ``lr_decay_epochs``)."""
    from noisyfit.models.whitening import PatchWhitening

    if cfg.whiten_bias_lr not in WHITEN_BIAS_LR:
        raise ConfigError(f"optim.whiten_bias_lr={cfg.whiten_bias_lr!r}: use one of {', '.join(WHITEN_BIAS_LR)}")
    if cfg.whiten_bias_lr == "schedule" or module is None:
        return groups
    stems = [m for m in module.modules() if isinstance(m, PatchWhitening)]
    if not stems:
        raise ConfigError("optim.whiten_bias_lr=decay needs a whitening stem (model.args.whiten=true)")
    out = groups
    for stem in stems:
        out = _split_off(out, {id(stem.conv.bias)}, lr_decay_epochs=float(stem.bias_epochs))
    return out


def muon_groups(groups: list[dict], cfg: OptimConfig) -> list[dict]:
    """``optim.name=muon``: every 4-D tensor (a conv filter bank) moves to a Muon group with ``optim.muon_*``
    and no weight decay (airbench94_muon rescales those weights instead); the rest stays SGD."""
    filters = {id(p) for g in groups for p in g["params"] if p.dim() == 4}
    return _split_off(groups, filters, muon=True, lr=cfg.muon_lr, momentum=cfg.muon_momentum, weight_decay=0.0)


def build_optimizer(groups: list[dict], cfg: OptimConfig, module: torch.nn.Module | None = None
                    ) -> torch.optim.Optimizer:
    """The optimiser over ``groups``; with ``module``, BatchNorm biases get ``optim.bn_bias_lr_scale``
    (:func:`split_bn_biases`), the heads ``optim.head_lr_scale`` (:func:`split_heads`) and the whitening bias
    its own schedule (:func:`split_whiten_bias`)."""
    groups = [{**g, "params": list(g["params"])} for g in groups]  # a generator would be read only once
    groups = split_bn_biases(groups, module, cfg)
    groups = split_heads(groups, module, cfg)
    groups = split_whiten_bias(groups, module, cfg)
    name = cfg.name.lower()
    if name == "muon":
        groups = muon_groups(groups, cfg)
    for g in groups:
        g.setdefault("lr", cfg.lr)
        g["base_lr"] = g["lr"]
        g.setdefault("weight_decay", cfg.weight_decay)
    if name == "muon":
        from noisyfit.engine.muon import NS_DTYPES, MuonSGD

        if cfg.muon_ns_dtype not in NS_DTYPES:
            raise ConfigError(f"optim.muon_ns_dtype={cfg.muon_ns_dtype!r}: use one of {', '.join(NS_DTYPES)}")
        return MuonSGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                       weight_decay=cfg.weight_decay, ns_steps=cfg.muon_ns_steps, ns_dtype=cfg.muon_ns_dtype,
                       normalize=cfg.muon_normalize)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ConfigError(f"optim.name={cfg.name!r} is unknown; use sgd, adam, adamw or muon")


def lr_factor(cfg: OptimConfig, epoch_float: float, total_epochs: int) -> float:
    """Multiplier of the base lr at a fractional epoch (linear warm-up first, if any)."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule={cfg.schedule!r} is unknown; use one of {', '.join(SCHEDULES)}")
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
    if cfg.schedule == "triangle":
        return triangle_factor(cfg, epoch_float, total_epochs)
    if cfg.warmup_epochs > 0 and epoch_float < cfg.warmup_epochs:
        return max(epoch_float / cfg.warmup_epochs, 1e-3)
    t_total = max(total_epochs - cfg.warmup_epochs, 1e-8)
    t = min(max(epoch_float - cfg.warmup_epochs, 0.0) / t_total, 1.0)
    if cfg.schedule == "constant":
        return 1.0
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))
    if cfg.schedule == "linear":
        return floor + (1 - floor) * (1 - t)
    if cfg.schedule == "step":
        return cfg.gamma ** sum(epoch_float >= m for m in cfg.milestones)
    if cfg.schedule == "cosine_periodic":
        # torch's CosineAnnealingLR(T_max=restart_period) run past T_max: a smooth cosine of period
        # 2*T_max (PEMM's official schedule), rather than a jump back to the peak as in SGDR.
        t_abs = epoch_float - cfg.warmup_epochs
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t_abs / cfg.restart_period))
    # cosine_restarts: a periodic cosine of the given period (SGDR without period growth)
    phase = ((epoch_float - cfg.warmup_epochs) % cfg.restart_period) / cfg.restart_period
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * phase))


def triangle_factor(cfg: OptimConfig, epoch_float: float, total_epochs: int) -> float:
    """airbench94's schedule: linear from ``start`` up to 1 at ``peak_at`` of the run, then down to ``end``.

    airbench94 steps it per optimiser step over its 9.9 epochs (start 0.2, peak at 23%, end 0.07); here it is
    evaluated at the fractional epoch like every schedule. It carries its own warm-up, so
    ``optim.warmup_epochs`` must be 0.
    """
    try:
        start, peak_at, end = (float(v) for v in cfg.triangle)
    except (TypeError, ValueError):
        raise ConfigError(f"optim.triangle={cfg.triangle!r} must be [start, peak_at, end]") from None
    if not 0.0 < peak_at < 1.0 or start < 0 or end < 0:
        raise ConfigError(f"optim.triangle={cfg.triangle!r}: peak_at must lie in (0, 1), start and end >= 0")
    if cfg.warmup_epochs:
        raise ConfigError("optim.schedule=triangle has its own warm-up (optim.triangle); set optim.warmup_epochs=0")
    t = min(max(epoch_float / max(total_epochs, 1e-8), 0.0), 1.0)
    if t < peak_at:
        return start + (1.0 - start) * t / peak_at
    return 1.0 + (end - 1.0) * (t - peak_at) / (1.0 - peak_at)


def apply_method_lr_factor(opt: torch.optim.Optimizer, factor: float, owner: str) -> None:
    """A method's own learning-rate plan on top of the run's schedule (Co-teaching's Adam decay).

    Every group's base lr becomes its first base lr times ``factor``; :func:`set_lr` then applies the schedule
    to that each step. The first base lr is kept in the group as ``<owner>_base_lr``, so it is saved with the
    optimiser's state and a resumed run applies the same plan.
    """
    for g in opt.param_groups:
        apply_method_lr_factor_to_group(g, factor, owner)


def apply_method_lr_factor_to_group(group: dict, factor: float, owner: str) -> None:
    """:func:`apply_method_lr_factor` for one parameter group. A group without ``base_lr`` (a user's own optimiser,
    no noisyfit schedule: a method run in the user's loop) gets the factor on its ``lr`` itself."""
    key = "base_lr" if "base_lr" in group else "lr"
    group.setdefault(f"{owner}_base_lr", group[key])
    group[key] = group[f"{owner}_base_lr"] * factor


def set_lr(opt: torch.optim.Optimizer, factor: float, epoch_float: float | None = None) -> float:
    """Every group's lr = its base lr x ``factor``; a group with ``lr_decay_epochs`` (:func:`split_whiten_bias`)
    instead falls linearly to 0 over that many epochs (needs ``epoch_float``). Returns the first group's lr."""
    for g in opt.param_groups:
        span = g.get("lr_decay_epochs")
        if span is not None and epoch_float is not None:
            g["lr"] = g["base_lr"] * max(0.0, 1.0 - epoch_float / span)
        else:
            g["lr"] = g["base_lr"] * factor
    return opt.param_groups[0]["lr"]
