"""Allowed ranges of numeric settings, written as intervals (``"[0, 1)"``, ``"(0, inf)"``).

A value outside its range is refused with one message before any data is loaded (the command line exits 2),
instead of reaching torch as a traceback (a negative lr) or training silently into nonsense (ELR's
``beta=5``). The config's ranges are :data:`SETTING_RANGES`; each method declares its own in
``Method.hyper_ranges``.
"""

from __future__ import annotations

import math
import re

_INTERVAL = re.compile(r"^\s*([\[(])\s*(-?inf|[-+0-9.e]+)\s*,\s*(-?inf|[-+0-9.e]+)\s*([\])])\s*$")

#: ``section.key`` of the run config -> its allowed interval (None values are always allowed)
SETTING_RANGES = {
    "optim.lr": "(0, inf)",
    "optim.momentum": "[0, 1)",
    "optim.weight_decay": "[0, inf)",
    "optim.warmup_epochs": "[0, inf)",
    "optim.min_lr": "[0, inf)",
    "optim.gamma": "(0, inf)",
    "optim.restart_period": "(0, inf)",
    "optim.grad_clip": "(0, inf)",
    "optim.bn_bias_lr_scale": "(0, inf)",
    "optim.head_lr_scale": "(0, inf)",
    "optim.muon_lr": "(0, inf)",
    "optim.muon_momentum": "[0, 1)",
    "optim.muon_ns_steps": "[1, inf)",
    "train.epochs": "[1, inf)",
    "train.batch_size": "[1, inf)",
    "train.eval_batch_size": "[1, inf)",
    "train.eval_every": "[1, inf)",
    "train.threads": "[1, inf)",
    "train.ema_decay": "[0, 1]",
    "train.ema_every": "[1, inf)",
    "train.ema_ramp": "[0, inf)",
    "data.train_subset": "[1, inf)",
    "data.memory_budget_mb": "(0, inf)",
    "data.workers": "[0, inf)",
}


def parse_interval(spec: str) -> tuple[float, float, bool, bool]:
    """``"[0, 1)"`` -> ``(0.0, 1.0, True, False)``: the bounds and whether each is included."""
    m = _INTERVAL.match(spec)
    if m is None:
        raise ValueError(f"not an interval: {spec!r} (write e.g. '[0, 1)' or '(0, inf)')")
    lo, hi = float(m.group(2)), float(m.group(3))
    return lo, hi, m.group(1) == "[", m.group(4) == "]"


def in_interval(value: float, spec: str) -> bool:
    lo, hi, lo_in, hi_in = parse_interval(spec)
    if isinstance(value, float) and math.isnan(value):
        return False
    above = value >= lo if lo_in else value > lo
    below = value <= hi if hi_in else value < hi
    return above and below


def out_of_range(name: str, value, spec: str) -> str | None:
    """The message for ``name=value`` outside ``spec``, or None when it is inside (or None, or not a number)."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if in_interval(value, spec):
        return None
    return f"{name}={value!r} is outside its allowed range {spec}"
