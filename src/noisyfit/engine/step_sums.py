"""Per-epoch sums of what training steps return, kept on the device so a step never waits for the host.

Reading a CUDA value on the host (``float(loss)``) stalls the queue of kernels; doing it every step costs GPU
throughput. The trainer adds each step's values here instead and reads them once every ``check_every`` steps
(the progress line and the finiteness check of the loss) and at the epoch's end. The sums are float64 scalars
accumulated in step order, exactly as a Python float would be: logged figures do not change.
"""

from __future__ import annotations

import math

import torch


class StepSums:
    """Running float64 sums of each step's outputs, and the losses not yet checked for NaN/inf.

    Parameters
    ----------
    device : torch.device
    initial : dict, optional
        Sums carried over (a run resumed inside an epoch).
    check_every : int
        Steps between host reads.
    """

    def __init__(self, device: torch.device, initial: dict[str, float] | None = None, check_every: int = 25):
        self.device = device
        self.check_every = max(1, int(check_every))
        self._sums = {k: torch.tensor(float(v), dtype=torch.float64, device=device) for k, v in (initial or {}).items()}
        self._losses: list[torch.Tensor] = []
        self._first_step = 0
        self.last_loss = math.nan

    def add(self, out: dict, step: int) -> None:
        """Add one step's outputs (tensors stay on the device; plain numbers are added as they are)."""
        if not self._losses:
            self._first_step = step
        for k, v in out.items():
            value = v.detach().double() if torch.is_tensor(v) else float(v)
            self._sums[k] = self._sums.get(k, torch.zeros((), dtype=torch.float64, device=self.device)) + value
        self._losses.append(out["loss"].detach().float().reshape(()))

    def due(self) -> bool:
        return len(self._losses) >= self.check_every

    def check(self) -> tuple[int, float] | None:
        """One host read: ``(step, value)`` of the first non-finite loss since the last check, else None."""
        if not self._losses:
            return None
        losses = torch.stack(self._losses).cpu()
        first = self._first_step
        self._losses = []
        self.last_loss = float(losses[-1])
        bad = (~torch.isfinite(losses)).nonzero()
        if len(bad):
            k = int(bad[0])
            return first + k, float(losses[k])
        return None

    def values(self) -> dict[str, float]:
        """The sums as host floats (one read)."""
        return {k: float(v) for k, v in self._sums.items()}
