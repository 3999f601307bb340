"""Optimiser and learning-rate schedule from config. The schedule is a multiplier of each group's lr,
evaluated at a fractional epoch every iteration, so resume needs no scheduler state."""

from __future__ import annotations

import math

import torch

from noisyfit.config import ConfigError, OptimConfig

SCHEDULES = ("constant", "cosine", "linear", "step", "cosine_restarts", "cosine_periodic")


def build_optimizer(groups: list[dict], cfg: OptimConfig) -> torch.optim.Optimizer:
    for g in groups:
        g.setdefault("lr", cfg.lr)
        g["base_lr"] = g["lr"]
        g.setdefault("weight_decay", cfg.weight_decay)
    name = cfg.name.lower()
    if name == "sgd":
        return torch.optim.SGD(groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0,
                               weight_decay=cfg.weight_decay)
    if name == "adam":
        return torch.optim.Adam(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    raise ConfigError(f"optim.name={cfg.name!r} is unknown; use sgd, adam or adamw")


def lr_factor(cfg: OptimConfig, epoch_float: float, total_epochs: int) -> float:
    """Multiplier of the base lr at a fractional epoch (linear warm-up first, if any)."""
    if cfg.schedule not in SCHEDULES:
        raise ConfigError(f"optim.schedule={cfg.schedule!r} is unknown; use one of {', '.join(SCHEDULES)}")
    floor = cfg.min_lr / cfg.lr if cfg.lr > 0 else 0.0
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


def set_lr(opt: torch.optim.Optimizer, factor: float) -> float:
    for g in opt.param_groups:
        g["lr"] = g["base_lr"] * factor
    return opt.param_groups[0]["lr"]
