"""DDP through torchrun without wrapping the method's networks.

Methods own several networks (teacher/student, two co-trained nets), so instead of wrapping each in
``DistributedDataParallel`` the trainer averages gradients itself after ``backward`` with one
coalesced all-reduce. Each rank trains on its slice of the same global batch, so the averaged gradient
equals the single-process one up to batch-norm statistics (computed per rank, as in plain DDP).
Backend: gloo on CPU, nccl on CUDA.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors


def env_world() -> tuple[int, int, int]:
    """(rank, world_size, local_rank) from torchrun's environment, (0, 1, 0) otherwise."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_distributed(device: torch.device) -> tuple[int, int]:
    rank, world, _ = env_world()
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return rank, world


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def average_gradients(params: list[torch.nn.Parameter]) -> None:
    if not is_distributed():
        return
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return
    world = dist.get_world_size()
    # one bucket per dtype; flattening avoids one collective per tensor
    by_dtype: dict[torch.dtype, list[torch.Tensor]] = {}
    for g in grads:
        by_dtype.setdefault(g.dtype, []).append(g)
    for group in by_dtype.values():
        flat = _flatten_dense_tensors(group)
        dist.all_reduce(flat)
        flat.div_(world)
        for g, synced in zip(group, _unflatten_dense_tensors(flat, group)):
            g.copy_(synced)


def average_buffers(module: torch.nn.Module, skip: set[str]) -> None:
    """Average floating buffers (batch-norm statistics) across ranks; per-sample state is skipped."""
    if not is_distributed():
        return
    world = dist.get_world_size()
    for name, buf in module.named_buffers():
        if name in skip or not buf.is_floating_point() or buf.numel() == 0:
            continue
        dist.all_reduce(buf)
        buf.div_(world)


def all_gather_cat(t: torch.Tensor) -> torch.Tensor:
    """Concatenate equally-shaped tensors from all ranks along dim 0 (rank order)."""
    if not is_distributed():
        return t
    parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=0)


def all_gather_varlen(t: torch.Tensor) -> torch.Tensor:
    """Concatenate tensors whose first dimension differs between ranks."""
    if not is_distributed():
        return t
    n = torch.tensor([t.shape[0]], device=t.device)
    sizes = all_gather_cat(n).tolist()
    m = max(sizes)
    padded = torch.zeros((m, *t.shape[1:]), dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    gathered = all_gather_cat(padded)
    return torch.cat([gathered[i * m: i * m + s] for i, s in enumerate(sizes)], dim=0)


def sync_per_sample(buffer: torch.Tensor, visited: torch.Tensor) -> None:
    """Make a per-sample buffer identical on all ranks: each rank wrote the rows of its own samples."""
    if not is_distributed():
        return
    idx = all_gather_varlen(visited)
    vals = all_gather_varlen(buffer[visited])
    buffer[idx] = vals


def all_reduce_sum(values: list[float], device) -> list[float]:
    if not is_distributed():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def barrier() -> None:
    if is_distributed():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def sync_method_state(method: torch.nn.Module, visited: list[torch.Tensor], device: torch.device) -> None:
    """At an epoch end under DDP: every per-sample buffer of ``method`` gets the rows each rank wrote for the
    samples it visited (``visited``: this rank's index batches), and batch-norm statistics are averaged. Used by
    the Trainer and by the Lightning adapter; nothing to do in one process."""
    if not is_distributed():
        return
    vis = torch.cat(visited) if visited else torch.zeros(0, dtype=torch.long, device=device)
    names = set(method.per_sample_state)
    for name in method.per_sample_state:
        sync_per_sample(method.get_buffer(name), vis)
    average_buffers(method, skip=names | {"final_probs"})
