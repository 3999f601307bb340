"""CIFAR-10 / CIFAR-100 in the official "python version" layout, as a folder or the original tar.gz.

Official files (https://www.cs.toronto.edu/~kriz/cifar.html)::

    cifar-10-python.tar.gz  -> cifar-10-batches-py/{data_batch_1..5, test_batch, batches.meta}
    cifar-100-python.tar.gz -> cifar-100-python/{train, test, meta}

Each file is a pickle of a dict with ``data`` (``uint8 [N, 3072]``, channel-major) and
``labels`` (CIFAR-10) or ``fine_labels`` (CIFAR-100). Archives are md5-checked and read in place.
Pickles are loaded with an unpickler that only accepts numpy arrays and plain containers, so a
tampered file cannot run code.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .labeled import DataError, DatasetSplits, LabeledData
from .paths import cache_dir

URL_BASE = "https://www.cs.toronto.edu/~kriz/"


@dataclass(frozen=True)
class CifarSpec:
    """File names, checksum and pickle keys of one official CIFAR release."""

    archive: str
    folder: str
    md5: str
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str
    label_key: str
    names_key: str


CIFAR_SPECS: dict[str, CifarSpec] = {
    "cifar10": CifarSpec(
        archive="cifar-10-python.tar.gz", folder="cifar-10-batches-py",
        md5="c58f30108f718f92721af3b95e74349a",
        train=tuple(f"data_batch_{i}" for i in range(1, 6)), test=("test_batch",),
        meta="batches.meta", label_key="labels", names_key="label_names",
    ),
    "cifar100": CifarSpec(
        archive="cifar-100-python.tar.gz", folder="cifar-100-python",
        md5="eb9058c3a382ffc7106e4002c42a8d85",
        train=("train",), test=("test",), meta="meta", label_key="fine_labels", names_key="fine_label_names",
    ),
}


def _spec(name: str) -> CifarSpec:
    if name not in CIFAR_SPECS:
        raise DataError(f"unknown CIFAR release {name!r}; expected one of {sorted(CIFAR_SPECS)}.")
    return CIFAR_SPECS[name]


def download_dir() -> Path:
    """Where :func:`load_cifar` puts downloads: ``cache_dir()/downloads`` (never the data dir,
    which may be shared and read-only)."""
    return cache_dir() / "downloads"


# ---------------------------------------------------------------------------------------- pickles
def _numpy_attr(module: str, name: str) -> object:
    # Old pickles name numpy.core.*; numpy 2 moved it to numpy._core (and warns on the old name).
    for mod in (module.replace("numpy.core", "numpy._core"), module):
        try:
            return getattr(importlib.import_module(mod), name)
        except (ImportError, AttributeError):
            continue
    raise pickle.UnpicklingError(f"cannot find {module}.{name}")


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickler that only builds numpy arrays/dtypes (plus dicts, lists, str, bytes, numbers)."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),  # protocol 5
        ("numpy", "ndarray"), ("numpy", "dtype"),
        ("_codecs", "encode"),  # how Python 3 writes bytes at protocol 2
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) in self._ALLOWED:
            return _numpy_attr(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} (not a numpy array)")


def _unpickle(data: bytes, where: str) -> dict[str, object]:
    try:
        # latin1: the official files were written by Python 2; this is numpy's advice for them.
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()
    except Exception as err:  # pickle raises a zoo of types on damaged input
        raise DataError(f"{where}: not a readable CIFAR pickle ({err}); replace it with the official "
                        "file (or delete it and use --download (data.download=true)).") from err
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a pickled dict, got {type(obj).__name__}.")
    return {(k.decode() if isinstance(k, bytes) else k): v for k, v in obj.items()}


def _images(batch: dict[str, object], where: str) -> np.ndarray:
    data = np.asarray(batch.get("data"))
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DataError(f"{where}: key 'data' has shape {data.shape}; expected [N, 3072] uint8 "
                        "(the official python version of CIFAR).")
    # Stored channel-major (RRR..GGG..BBB per row); we want NHWC.
    return np.ascontiguousarray(data.astype(np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))


def _labels(batch: dict[str, object], key: str, where: str) -> np.ndarray:
    if key not in batch:
        raise DataError(f"{where}: no {key!r} key (found {sorted(batch)}); is this the right CIFAR release?")
    return np.asarray(batch[key], dtype=np.int64)


def _names(meta: dict[str, object], key: str, where: str) -> list[str]:
    if key not in meta:
        raise DataError(f"{where}: no {key!r} key in the meta file (found {sorted(meta)}).")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in meta[key]]  # type: ignore[union-attr]


# ---------------------------------------------------------------------------------------- files
def file_md5(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex md5 of a file, read in 1 MiB chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _check_md5(path: Path, expected: str) -> None:
    got = file_md5(path)
    if got != expected:
        raise DataError(
            f"{path}: md5 {got} does not match the official {expected}; the archive is incomplete, "
            "corrupt or not the official file. Delete it and download it again with --download "
            "(data.download=true), or use the extracted folder instead."
        )


def find_cifar(name: str, data_dir: str | os.PathLike | None) -> Path | None:
    """Locate an official CIFAR release: the extracted folder first (no decompression), then the
    archive, in ``data_dir`` and then in :func:`download_dir`. Returns None if absent."""
    spec = _spec(name)
    places = [Path(data_dir)] if data_dir is not None else []
    places.append(download_dir())
    for d in places:
        if d.name == spec.folder and d.is_dir():
            return d
        for candidate in (d / spec.folder, d / spec.archive):
            if candidate.exists():
                return candidate
    return None


def _read_files(path: Path, spec: CifarSpec, check_md5: bool) -> dict[str, bytes]:
    """Raw bytes of the train/test/meta files, from the folder or straight out of the archive."""
    wanted = {*spec.train, *spec.test, spec.meta}
    if path.is_dir():
        missing = [f for f in sorted(wanted) if not (path / f).is_file()]
        if missing:
            raise DataError(f"{path}: missing {missing[0]!r} (expected {sorted(wanted)}); the folder is "
                            f"incomplete, extract {spec.archive} again.")
        return {f: (path / f).read_bytes() for f in wanted}
    if check_md5:
        _check_md5(path, spec.md5)
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tf:
            for member in tf:
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in wanted:
                    found[base] = tf.extractfile(member).read()  # type: ignore[union-attr]
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{path}: cannot read the archive ({err}); delete it and download again.") from err
    missing = sorted(wanted - set(found))
    if missing:
        raise DataError(f"{path}: archive has no {missing[0]!r}; is it the official {spec.archive}?")
    return found


def read_cifar(path: str | os.PathLike, name: str = "cifar10", *, check_md5: bool = True) -> DatasetSplits:
    """Read an official CIFAR release from its folder or archive.

    Parameters
    ----------
    path : str or path-like
        ``cifar-10-batches-py`` / ``cifar-100-python`` folder, or the ``.tar.gz``.
    name : {"cifar10", "cifar100"}
        Which release (decides file names and keys).
    check_md5 : bool
        Verify an archive against the official md5 before reading it.

    Returns
    -------
    DatasetSplits
        ``uint8 [N, 32, 32, 3]`` images, labels, class names from the meta file, and ids
        ``train/00000``.. (position in the original order, which CIFAR-N labels follow).
    """
    spec, path = _spec(name), Path(path)
    if not path.exists():
        raise DataError(f"{path}: not found; pass the {spec.folder} folder or {spec.archive}.")
    raw = _read_files(path, spec, check_md5)
    where = lambda f: f"{path}:{f}"  # noqa: E731 - names the file inside an archive too
    class_names = _names(_unpickle(raw[spec.meta], where(spec.meta)), spec.names_key, where(spec.meta))
    splits = {}
    for split, files in (("train", spec.train), ("test", spec.test)):
        batches = [_unpickle(raw[f], where(f)) for f in files]
        x = np.concatenate([_images(b, where(f)) for b, f in zip(batches, files)])
        y = np.concatenate([_labels(b, spec.label_key, where(f)) for b, f in zip(batches, files)])
        splits[split] = LabeledData(x=x, labels=y, class_names=class_names,
                                    ids=[f"{split}/{i:05d}" for i in range(len(y))],
                                    name=f"{name}-python/{split}")
    return DatasetSplits(train=splits["train"], test=splits["test"])


def download_cifar(name: str, dest: str | os.PathLike) -> Path:
    """Download the official archive into ``dest`` and verify its md5.

    Parameters
    ----------
    name : {"cifar10", "cifar100"}
    dest : str or path-like
        Target folder (created). An existing archive with the right md5 is reused.

    Returns
    -------
    Path
        The verified archive.

    Raises
    ------
    DataError
        On network failure or an md5 mismatch (the bad file is removed).
    """
    spec = _spec(name)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / spec.archive
    if target.is_file() and file_md5(target) == spec.md5:
        return target
    url = URL_BASE + spec.archive
    part = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(part, "wb") as out:
            total = int(resp.headers.get("Content-Length") or 0)
            from .folder import _progress  # the same rich bar as image decoding

            with _progress(True, f"downloading {spec.archive}", total) as advance:
                done = 0
                while block := resp.read(1 << 20):
                    out.write(block)
                    done += len(block)
                    advance(done)
    except (urllib.error.URLError, OSError) as err:
        part.unlink(missing_ok=True)
        raise DataError(f"cannot download {url} ({err}); check the network, or download it by hand "
                        f"and put it in the data dir.") from err
    got = file_md5(part)
    if got != spec.md5:
        part.unlink(missing_ok=True)
        raise DataError(f"{url}: downloaded file has md5 {got}, expected {spec.md5}; the download was "
                        "corrupted or the server changed the file. Try again.")
    os.replace(part, target)
    return target


def load_cifar(name: str, data_dir: str | os.PathLike | None = None, *, download: bool = False,
               check_md5: bool = True) -> DatasetSplits:
    """Find (or, with ``download=True``, fetch) and read an official CIFAR release.

    Parameters
    ----------
    name : {"cifar10", "cifar100"}
    data_dir : str or path-like, optional
        Folder holding ``cifar-10-batches-py/`` or ``cifar-10-python.tar.gz`` (CIFAR-100 alike).
    download : bool
        Fetch the archive into :func:`download_dir` when it is not found.
    check_md5 : bool
        Verify archives against the official md5.
    """
    spec = _spec(name)
    path = find_cifar(name, data_dir)
    if path is None:
        if not download:
            raise DataError(
                f"{name}: neither {spec.folder}/ nor {spec.archive} found in "
                f"{data_dir if data_dir is not None else '(no data dir)'} or {download_dir()}. Put the "
                "official python version there, pass --data-dir / set NOISYFIT_DATA_DIR, or use --download "
                "(data.download=true)."
            )
        path = download_cifar(name, download_dir())
    return read_cifar(path, name, check_md5=check_md5)
