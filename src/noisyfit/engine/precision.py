"""The autocast context of a precision setting, shared by the trainer and saved predictors, so a saved
model predicts in exactly the arithmetic its run evaluated in."""

from __future__ import annotations

from contextlib import nullcontext

import torch


def autocast_context(device: torch.device, precision: str):
    """``torch.autocast`` for ``bf16`` / ``fp16``, a no-op context for ``fp32``."""
    if precision == "fp32":
        return nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)
