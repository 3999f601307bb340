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


def cpu_bf16_kernels() -> bool | None:
    """Whether oneDNN has fast bf16 kernels on this CPU (on x86: AVX-512 or AMX); None if torch cannot tell.

    Without them (an AVX2-only x86 CPU, say), bf16 autocast falls back to reference kernels: on an AVX2
    AMD EPYC one fastcnn training step ran many times slower than in fp32 (benchmarks/precision_speed.py).
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without oneDNN, or a renamed private check
        return None


def emulated_bf16_warning(device: torch.device, precision: str) -> str | None:
    """A warning when ``precision`` is bf16 on a CPU without bf16 kernels, else None.

    Only a warning, never a silent switch to fp32: the arithmetic is part of what a run's numbers mean
    (a bench protocol fixes it), so the user decides."""
    if device.type != "cpu" or precision != "bf16" or cpu_bf16_kernels() is not False:
        return None
    capability = torch.backends.cpu.get_cpu_capability()
    return (f"train.precision=bf16 on a CPU without bf16 kernels (torch sees {capability}, no AVX-512/AMX): bf16 is emulated here and runs many times slower than fp32 "
            "(see benchmarks/PRECISION_SPEED.md). For speed, add the override train.precision=fp32; its "
            "numbers are then not comparable with bf16 runs of the same preset.")
