"""Where a run's examples live while it trains: on the device (:class:`TensorStore`) or on disk
(:class:`StreamedStore`).

Both give the trainer, the methods and evaluation the same three things, so nothing above them knows which
one it has:

* ``take(index)``: the raw examples of any samples, on the device (a method fetching samples by index);
* ``batches(index_batches)``: the raw examples of a sequence of index batches, in order (an epoch);
* ``chunks(lo, hi, size)``: rows ``lo..hi`` in order, in pieces of ``size`` (an evaluation pass).

Raw examples are what augmentation starts from: ``uint8 [B, C, H, W]`` images or ``float32 [B, D]`` rows.
Augmentation and normalisation happen afterwards on the device, in the training process, so the two stores
give bit-identical batches and the random stream of a run does not depend on where its data lives.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch

from .image_files import ImageFiles


def default_workers() -> int:
    return min(4, os.cpu_count() or 1)


class TensorStore:
    """Examples held as one tensor on the device."""

    streamed = False

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def to(self, device: torch.device | str) -> "TensorStore":
        self.x = self.x.to(device)
        return self

    def take(self, index: torch.Tensor) -> torch.Tensor:
        return self.x[index]

    def batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        for idx in index_batches:
            yield self.x[idx]

    def chunks(self, lo: int, hi: int, size: int) -> Iterator[torch.Tensor]:
        for s in range(lo, hi, size):
            yield self.x[s:min(s + size, hi)]


class ImageRows:
    """Rows of an :class:`ImageFiles` as ``uint8 [k, 3, H, W]`` tensors."""

    def __init__(self, images: ImageFiles) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return (3, *self.images.size)

    def read_batch(self, rows: list[int], threads: int = 1) -> torch.Tensor:
        return torch.from_numpy(self.images.read(rows, threads=threads)).permute(0, 3, 1, 2).contiguous()


def example_tensor(x) -> torch.Tensor:
    """One example as a store keeps it: a ``uint8 [C, H, W]`` image (from HWC / HW arrays, PIL images or CHW
    uint8 tensors) or a ``float32 [D]`` row."""
    if not torch.is_tensor(x):
        arr = np.asarray(x)
        if arr.dtype == np.uint8 and arr.ndim in (2, 3):  # HW or HWC, as NumPy and PIL keep images
            arr = arr[:, :, None] if arr.ndim == 2 else arr
            return torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
        x = torch.from_numpy(np.ascontiguousarray(arr))
    if x.dtype == torch.uint8 and x.ndim == 3:
        return x
    if x.ndim == 1:
        return x.float()
    from .labeled import DataError

    raise DataError(f"a dataset example of shape {list(x.shape)} and type {x.dtype} is neither a uint8 image "
                    "(HWC array, PIL image or CHW uint8 tensor) nor a 1-D feature row; return images before any "
                    "ToTensor/Normalize transform (noisyfit augments and normalises on the device).")


class DatasetRows:
    """Rows of a map-style dataset whose items are ``(x, y)`` (or ``x``), as stacked tensors."""

    def __init__(self, dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.read_batch([0]).shape[1:])

    def read_batch(self, rows: list[int], threads: int = 1) -> torch.Tensor:
        items = [self.dataset[r] for r in rows]  # datasets need not be thread-safe: one at a time
        return torch.stack([example_tensor(it[0] if isinstance(it, (tuple, list)) else it) for it in items])


class _BatchDecoder(torch.utils.data.Dataset):
    """Run in a DataLoader worker: one *batch* of rows -> one tensor (decoded and collated in the worker, so the
    training process only receives finished tensors through shared memory)."""

    def __init__(self, rows) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitems__(self, rows: list[int]) -> torch.Tensor:
        return self.rows.read_batch(rows)

    def __getitem__(self, row: int) -> torch.Tensor:
        return self.__getitems__([row])[0]


def _identity(batch):
    return batch


def _forking_is_unsafe() -> bool:
    """Under torch.distributed the training process runs communication threads (gloo's loop and run-loop
    threads, NCCL's watchdog). Forking a process with running threads can leave the child holding a lock no
    thread will ever release. A two-rank CI run of the streamed path hung once at an epoch start with forked
    decoding workers (not reproduced here in 24 runs; this is the known hazard). Under torch.distributed,
    images are therefore decoded by threads of the training process and a user's dataset is read in the
    training process; nothing is forked. (A fork server or spawned workers would avoid the fork too, but
    they re-import the user's script, and each loader start, every epoch and evaluation pass, costs seconds.)"""
    import torch.distributed as dist

    return dist.is_available() and dist.is_initialized()


class StreamedStore:
    """Examples read while training: worker processes decode each batch ahead of its step.

    Parameters
    ----------
    rows : ImageFiles, ImageRows or DatasetRows
        Where the examples come from (their row order is the sample order); an ImageFiles is wrapped.
    device : torch.device
    workers : int, optional
        Decoding processes (None: :func:`default_workers`; 0 decodes in this process; under torch.distributed,
        decoding threads of this process, see :func:`_forking_is_unsafe`). A worker holds one batch
        at a time and ``prefetch`` batches wait per worker, so memory stays bounded whatever the data set size.
    prefetch : int
        Batches decoded ahead per worker.
    """

    streamed = True

    def __init__(self, rows, device: torch.device, workers: int | None = None, prefetch: int = 2):
        self.rows = ImageRows(rows) if isinstance(rows, ImageFiles) else rows
        self.device = torch.device(device)
        self.workers = default_workers() if workers is None else int(workers)
        if self.workers < 0:
            from .labeled import DataError

            raise DataError(f"data.workers={workers}: use 0 (decode in the training process) or more")
        self.prefetch = prefetch

    def __len__(self) -> int:
        return len(self.rows)

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return self.rows.sample_shape

    def to(self, device: torch.device | str) -> "StreamedStore":
        """Where decoded batches are sent (the examples stay on disk)."""
        self.device = torch.device(device)
        return self

    def _to_device(self, x: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return x
        return x.pin_memory().to(self.device, non_blocking=True)

    def take(self, index: torch.Tensor) -> torch.Tensor:
        """Random access (a method's extra samples): decoded here, in threads for images (Pillow releases the
        GIL while decoding)."""
        return self._to_device(self.rows.read_batch(index.detach().cpu().tolist(), threads=max(1, self.workers)))

    def batches(self, index_batches: Sequence[torch.Tensor]) -> Iterator[torch.Tensor]:
        rows = [idx.detach().cpu().tolist() for idx in index_batches]
        if not rows:
            return
        in_process = _forking_is_unsafe()
        if self.workers == 0 or (in_process and not isinstance(self.rows, ImageRows)):
            for r in rows:  # a user's dataset need not be thread-safe: read in order, here
                yield self._to_device(self.rows.read_batch(r))
            return
        if in_process:
            yield from self._thread_batches(rows)
            return
        loader = torch.utils.data.DataLoader(
            _BatchDecoder(self.rows), batch_sampler=rows, collate_fn=_identity,
            num_workers=min(self.workers, len(rows)), prefetch_factor=self.prefetch,
            pin_memory=self.device.type == "cuda",
            # its own generator: creating the loader must not draw from the global RNG, or streaming would
            # change the augmentation stream and a resumed run would differ from an uninterrupted one
            generator=torch.Generator())
        for x in loader:
            yield x.to(self.device, non_blocking=True)

    def _thread_batches(self, rows: list[list[int]]) -> Iterator[torch.Tensor]:
        """Batches decoded ahead by ``workers`` threads of this process, in order (at most ``workers * prefetch``
        batches in flight). Pillow releases the GIL while it decodes and resizes, so the threads run in
        parallel; nothing is forked."""
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(self.workers, thread_name_prefix="noisyfit-decode") as pool:
            ahead = self.workers * self.prefetch
            pending = deque(pool.submit(self.rows.read_batch, r) for r in rows[:ahead])
            nxt = len(pending)
            try:
                while pending:
                    x = pending.popleft().result()
                    if nxt < len(rows):
                        pending.append(pool.submit(self.rows.read_batch, rows[nxt]))
                        nxt += 1
                    yield self._to_device(x)
            finally:  # an abandoned epoch (a stop, an error): queued batches are dropped, not decoded
                for f in pending:
                    f.cancel()

    def chunks(self, lo: int, hi: int, size: int) -> Iterator[torch.Tensor]:
        return self.batches([torch.arange(s, min(s + size, hi)) for s in range(lo, hi, size)])


def make_store(x, device: torch.device, *, workers: int | None = None):
    """The store for a split's examples: streamed for :class:`ImageFiles`, else one tensor on the device
    (``uint8`` NHWC images become NCHW; rows become ``float32``)."""
    if isinstance(x, ImageFiles):
        return StreamedStore(x, device, workers)
    if np.asarray(x).ndim == 4:
        return TensorStore(torch.from_numpy(np.ascontiguousarray(x)).permute(0, 3, 1, 2).contiguous().to(device))
    return TensorStore(torch.from_numpy(np.asarray(x, dtype=np.float32)).to(device))


#: at most this many images (evenly spaced) go into a streamed set's normalisation statistics: exact for sets up
#: to this size, and one extra decoding pass of bounded cost for larger ones
STATS_MAX_IMAGES = 50_000


def store_channel_stats(store, batch: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-channel mean and std of a store's images (as :func:`noisyfit.data.augment.channel_stats`)."""
    from .augment import channel_stats_of_chunks

    n = len(store)
    rows = np.arange(n) if n <= STATS_MAX_IMAGES else np.linspace(0, n - 1, STATS_MAX_IMAGES).round().astype(int)
    index = [torch.from_numpy(rows[s:s + batch]) for s in range(0, len(rows), batch)]
    chunks = (x.permute(0, 2, 3, 1).cpu().numpy() for x in store.batches(index))
    return channel_stats_of_chunks(chunks)
