"""What ran a result: hardware, software and the code version, recorded in every result file."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch

from noisyfit.engine.precision import cpu_bf16_kernels


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


@functools.lru_cache(maxsize=1)
def process_commit() -> str | None:
    """The commit of the code this process imported: :func:`git_commit` at its first call, kept for the
    process's life (modules are not re-read when the checkout changes under a running process)."""
    return git_commit()


def git_commit(cwd: str | None = None) -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5,
                             cwd=cwd or Path(__file__).resolve().parent)
        sha = out.stdout.strip()
        if not sha:
            return None
        # Untracked files count too when they are code (a new method file changes what ran).
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "pyproject.toml"],
                               capture_output=True, text=True, timeout=5,
                               cwd=_repo_root(cwd)).stdout.strip()
        return sha + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _repo_root(cwd: str | None) -> str:
    start = cwd or str(Path(__file__).resolve().parent)
    out = subprocess.run(["git", "rev-parse", "--show-toplevel"], capture_output=True, text=True, timeout=5,
                         cwd=start)
    return out.stdout.strip() or start


def machine_info(device: torch.device | None = None) -> dict:
    info = {
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        # the vector instructions torch dispatches to (AVX2, AVX512, ...) and whether bf16 has fast kernels:
        # two machines with the same CPU name differed several-fold in speed on these alone (PRECISION_SPEED.md)
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cpu_bf16_kernels": cpu_bf16_kernels(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(device if device is not None and device.type == "cuda" else 0)
        info["cuda"] = torch.version.cuda
    return info


def machine_text(results: dict) -> str:
    """Where a results file's seconds were measured, in one line: CPU, cores, threads, GPU, torch, device (the bench
    report's Machines line, and `noisyfit summary`'s check that runs' times compare)."""
    m = results.get("machine") or {}
    comp = results.get("compute") or {}
    gpu = f", GPU {m['gpu']}" if m.get("gpu") else ""
    return (f"{m.get('cpu', '?')} ({m.get('cpu_count', '?')} CPUs, "
            f"torch threads: {m.get('torch_threads', '?')})"
            f"{gpu}, torch {m.get('torch', '?')}, device {comp.get('device', '?')}")


def peak_memory_mb(device: torch.device) -> dict:
    """Peak resident memory of this process (CPU) and peak allocated tensor memory (CUDA)."""
    out = {}
    try:
        import resource

        # ru_maxrss is in kB on Linux
        out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0
    except (ImportError, OSError):
        import psutil

        out["peak_rss_mb"] = psutil.Process().memory_info().rss / 2**20
    if device.type == "cuda":
        out["cuda_max_allocated_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return out


def _busy_and_total_cpu_seconds() -> tuple[float, float] | None:
    """CPU seconds (busy, all) since boot of the CPUs this process may run on, from ``/proc/stat``.

    Only the per-CPU lines of the process's affinity set count: in a container that sees the host's
    CPUs, the host's other cores would otherwise dilute the share. Linux only; None elsewhere.
    """
    try:
        with open("/proc/stat") as f:
            lines = [ln.split() for ln in f if ln.startswith("cpu")]
        hz = os.sysconf("SC_CLK_TCK")
        allowed = {f"cpu{i}" for i in os.sched_getaffinity(0)}
    except (OSError, ValueError, AttributeError):
        return None
    rows = [ln for ln in lines if ln[0] in allowed] or [ln for ln in lines if ln[0] == "cpu"]
    busy = total = 0
    for ln in rows:
        # user nice system idle iowait irq softirq steal [guest guest_nice]; guest time is already
        # counted in user / nice, so it is left out of both sums
        fields = [int(v) for v in ln[1:9]]
        busy += sum(fields) - sum(fields[3:5])
        total += sum(fields)
    return busy / hz, total / hz


def _own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


class OthersCpuMeter:
    """The share of the machine's CPU time that *other* processes used over an interval.

    A seconds-per-epoch figure means something only if the run had the machine to itself; this is
    recorded with every epoch so that a report can say when it did not. Linux only (``/proc/stat``):
    :meth:`share` returns None elsewhere.
    """

    def __init__(self) -> None:
        self.start()

    def start(self) -> None:
        self._machine = _busy_and_total_cpu_seconds()
        self._own = _own_cpu_seconds()

    def share(self) -> float | None:
        now = _busy_and_total_cpu_seconds()
        if now is None or self._machine is None:
            return None
        return others_share(self._machine, now, self._own, _own_cpu_seconds())


def others_share(machine_before: tuple[float, float], machine_after: tuple[float, float],
                 own_before: float, own_after: float) -> float | None:
    """Busy CPU seconds of other processes over all CPU seconds of the interval, clipped to [0, 1]."""
    busy = machine_after[0] - machine_before[0]
    total = machine_after[1] - machine_before[1]
    if total <= 0:
        return None
    others = busy - (own_after - own_before)
    return min(max(others / total, 0.0), 1.0)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity set), else the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def sharing_hint(others_share: float | None, threads: int, cpus: int) -> str | None:
    """Advice when other processes took a real share of the CPUs this run's threads all want, else None.

    torch splits each op over its intra-op threads and waits for all of them; when a second process
    wants the same cores, a descheduled thread stalls every op. On the 2-core machine this project is
    measured on, two processes with 2 threads each trained 1.7 to 3.5 times slower per process than
    with 1 thread each in a bare loop (benchmarks/results/contention.md), and a long-suite CE run about
    10 times slower (437 s against 45 s per epoch). The remedy is a thread count that fits the share of
    the machine the run actually gets.
    """
    if others_share is None or threads <= 1 or others_share < 0.25:
        return None
    fair = max(1, int(round(cpus * (1.0 - others_share))))
    if fair >= threads:
        return None
    return (f"other processes used {others_share:.0%} of the CPU time while this run trained with "
            f"{threads} threads on {cpus} CPUs; processes whose threads together ask for more cores than "
            f"the machine has can run several times slower each (benchmarks/results/contention.md). "
            f"Give this run {fair} thread(s): train.threads={fair} (or OMP_NUM_THREADS={fair}; "
            f"`noisyfit bench --threads {fair}`).")
