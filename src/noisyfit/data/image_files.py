"""Images that stay on disk: an array-like ``[N, H, W, 3] uint8`` that decodes only what is asked for.

:class:`ImageFiles` is what a streamed data set keeps in ``LabeledData.x`` instead of decoded pixels.
It behaves like the NumPy array it stands for where the rest of noisyfit looks (``len``, ``shape``,
``ndim``, ``dtype``; ``x[i]`` decodes one image; ``x[index_array]`` and ``x[a:b]`` are lazy subsets), so
noise injection, subsets, validation splits and audits work on it unchanged, and ``np.asarray(x)``
decodes everything (what asking for an array means; avoid it on a set larger than memory).

Every image is decoded with the same function as the in-memory path (:func:`noisyfit.data.folder.decode_image`),
so a streamed run sees exactly the pixels an in-memory run of the same folder sees.

Files are opened through an *opener* (a small picklable object, so DataLoader worker processes can
carry it): a directory, an uncompressed tar read in place by member offset, or a list of paths.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np


class DirectoryOpener:
    """Open ``root / name`` for each image name."""

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root)

    def __call__(self, name: str):
        return open(self.root / name, "rb")

    def __repr__(self) -> str:
        return f"DirectoryOpener({str(self.root)!r})"


class TarOpener:
    """Read members of an *uncompressed* tar in place: a seek and a read per image, no extraction.

    ``members`` maps a member name to ``(offset of its data, size)``, as :func:`tar_members` lists them.
    Each process opens the archive once (the handle is not pickled, so worker processes open their own).
    """

    def __init__(self, path: str | os.PathLike, members: dict[str, tuple[int, int]]) -> None:
        self.path = Path(path)
        self.members = members
        self._fh = None

    def __getstate__(self) -> dict:
        return {"path": self.path, "members": self.members, "_fh": None}

    def __call__(self, name: str):
        import io

        if self._fh is None:
            self._fh = open(self.path, "rb")
        offset, size = self.members[name]
        # os.pread: no shared file position, so reader threads of one process cannot interleave seeks
        return io.BytesIO(os.pread(self._fh.fileno(), size, offset))

    def __repr__(self) -> str:
        return f"TarOpener({str(self.path)!r}, {len(self.members)} members)"


def tar_members(path: str | os.PathLike) -> dict[str, tuple[int, int]] | None:
    """``{name: (data offset, size)}`` of the regular files of an uncompressed tar, or None if it is compressed."""
    try:
        with tarfile.open(path, mode="r:") as tf:
            return {m.name.removeprefix("./"): (m.offset_data, m.size) for m in tf if m.isfile()}
    except tarfile.ReadError:
        return None  # gzip/bz2/xz: no random access; the caller extracts it once


class ImageFiles:
    """A lazy ``uint8 [N, H, W, 3]`` array of images decoded from files on demand.

    Parameters
    ----------
    opener : callable
        ``opener(name)`` returns a readable binary file object for an image name.
    names : sequence of str
        The image names, one per row (before ``index`` picks rows).
    size : (height, width)
        Every image is decoded to this size (as the in-memory path would).
    index : array of int, optional
        Rows of ``names`` this array shows, in order (subsets and reorderings share the name list).
    """

    ndim = 4
    dtype = np.dtype(np.uint8)

    def __init__(self, opener, names: Sequence[str], size: tuple[int, int], index: np.ndarray | None = None) -> None:
        self.opener = opener
        self.names = names if isinstance(names, np.ndarray) else np.asarray(list(names), dtype=object)
        self.size = (int(size[0]), int(size[1]))
        self.index = np.arange(len(self.names)) if index is None else np.asarray(index, dtype=np.int64)

    # ------------------------------------------------------------------ array-like
    @property
    def shape(self) -> tuple[int, int, int, int]:
        return (len(self.index), self.size[0], self.size[1], 3)

    @property
    def nbytes(self) -> int:
        """What the decoded array would take in memory."""
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, key):
        if isinstance(key, (int, np.integer)):
            return self.read([int(key)])[0]
        if isinstance(key, slice):
            return ImageFiles(self.opener, self.names, self.size, self.index[key])
        key = np.asarray(key)
        if key.dtype == bool:
            key = np.flatnonzero(key)
        if key.ndim != 1:
            raise IndexError(f"ImageFiles takes an int, a slice or a 1-D index array, got shape {key.shape}")
        return ImageFiles(self.opener, self.names, self.size, self.index[key])

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self.read(range(len(self)))
        return out if dtype is None else out.astype(dtype)

    def __repr__(self) -> str:
        return f"ImageFiles({len(self)} images of {self.size[0]}x{self.size[1]} from {self.opener!r})"

    # ------------------------------------------------------------------ decoding
    def name_of(self, i: int) -> str:
        return str(self.names[self.index[i]])

    def decode(self, i: int) -> np.ndarray:
        """Row ``i`` as ``uint8 [H, W, 3]``."""
        from .folder import decode_image

        name = self.name_of(i)
        try:
            with self.opener(name) as f:
                return decode_image(f, self.size)
        except Exception as err:  # the folder was checked at load time; a file changed since
            from .folder import short_error
            from .labeled import DataError

            raise DataError(f"{name}: cannot decode this image any more ({short_error(err)}); it was readable "
                            "when the data set was loaded. Restore the file, or reload the folder.") from err

    def read(self, rows, threads: int = 1) -> np.ndarray:
        """Rows as one ``uint8 [k, H, W, 3]`` array; ``threads`` > 1 decodes in a thread pool (Pillow releases
        the GIL while it decodes and resizes, so threads do run in parallel)."""
        rows = [int(r) for r in rows]
        out = np.empty((len(rows), self.size[0], self.size[1], 3), dtype=np.uint8)
        if threads > 1 and len(rows) > 1:
            with ThreadPoolExecutor(min(threads, len(rows))) as pool:
                for k, img in enumerate(pool.map(self.decode, rows)):
                    out[k] = img
        else:
            for k, r in enumerate(rows):
                out[k] = self.decode(r)
        return out


def is_lazy(x) -> bool:
    return isinstance(x, ImageFiles)
