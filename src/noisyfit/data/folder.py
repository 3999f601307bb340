"""Image folders: ``root/<split>/<class>/<file>`` (or ``root/<class>/<file>``) as a directory or a tar.

The layout is the one most people keep their own images in. Archives are read in place with
:mod:`tarfile` (one sequential pass, which is what gzip allows), so nothing is extracted to disk.
Decoded pixels are cached as ``.npy`` under :func:`noisyfit.data.paths.cache_dir`, so only the
first load pays for JPEG/PNG decoding.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tarfile
import zlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from .labeled import DataError, DatasetSplits, LabeledData
from .paths import cache_dir

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
# Bump when the cache layout or the decoding changes, so old caches are not reused.
_CACHE_VERSION = 1
# Below this many images a progress bar is only noise.
_PROGRESS_MIN = 1000
_LAYOUT_HELP = "expected root/<split>/<class>/<file> (split = train/test/val) or root/<class>/<file>"


# ---------------------------------------------------------------------------------------- listing
def _is_image(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and os.path.splitext(base)[1].lower() in IMAGE_EXTENSIONS


def _is_archive(path: Path) -> bool:
    return path.is_file() and tarfile.is_tarfile(path)


def _list_directory(root: Path) -> list[str]:
    """Relative POSIX paths of the image files under ``root``, hidden folders skipped."""
    found = []
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        rel = Path(dirpath).relative_to(root).as_posix()
        for f in filenames:
            if _is_image(f):
                found.append(f if rel == "." else f"{rel}/{f}")
    return found


def _read_archive(path: Path, progress: bool) -> dict[str, bytes]:
    """All image members of a tar (any compression) as ``{member name: bytes}``, in one pass."""
    blobs: dict[str, bytes] = {}
    total = path.stat().st_size
    try:
        with open(path, "rb") as raw, tarfile.open(fileobj=raw, mode="r:*") as tf, \
                _progress(progress and total > 5_000_000, f"reading {path.name}", total) as advance:
            for i, member in enumerate(tf):
                name = member.name.removeprefix("./")
                if member.isfile() and _is_image(name):
                    fobj = tf.extractfile(member)
                    blobs[name] = fobj.read() if fobj is not None else b""
                if i % 500 == 0:
                    advance(raw.tell())
    except (tarfile.TarError, EOFError, zlib.error, OSError) as err:
        raise DataError(
            f"{path}: cannot read the archive ({err}). The file is truncated or corrupt; "
            "download or copy it again, or point to the extracted folder instead."
        ) from err
    return blobs


def _strip_top_folder(names: list[str]) -> tuple[list[str], str]:
    """Drop a single wrapping folder (``cifar10-jpeg/train/...``) that many archives carry."""
    tops = {n.split("/", 1)[0] for n in names}
    if len(tops) == 1:
        top = next(iter(tops))
        # A lone split folder (train/<class>/...) is layout, not wrapping; and stripping must
        # leave at least <class>/<file>.
        if top not in SPLIT_NAMES and all(n.count("/") >= 2 for n in names):
            return [n[len(top) + 1:] for n in names], top + "/"
    return names, ""


def _split_layout(ids: list[str], source: Path) -> dict[str, list[str]]:
    """Group example ids (paths relative to the dataset root) by split."""
    tops = {i.split("/", 1)[0] for i in ids}
    if not tops & set(SPLIT_NAMES):
        return {"train": ids}
    others = sorted(t for t in tops if t not in SPLIT_NAMES)
    if others:
        raise DataError(
            f"{source}: has split folders ({', '.join(sorted(tops & set(SPLIT_NAMES)))}) and also "
            f"{others[0]!r}; {_LAYOUT_HELP}. Move or remove {others[0]!r}."
        )
    groups: dict[str, list[str]] = {}
    for i in ids:
        groups.setdefault(i.split("/", 1)[0], []).append(i)
    return groups


def _class_and_file(example_id: str, split_layout: bool, source: Path) -> tuple[str, str]:
    parts = example_id.split("/")
    if split_layout:
        parts = parts[1:]
    if len(parts) < 2:
        raise DataError(f"{source}: image {example_id!r} is not inside a class folder; {_LAYOUT_HELP}.")
    return parts[0], "/".join(parts[1:])


# ---------------------------------------------------------------------------------------- decoding
class _progress:
    """A rich progress bar (or nothing); ``with _progress(...) as advance: advance(completed)``."""

    def __init__(self, show: bool, description: str, total: int) -> None:
        self.show, self.description, self.total = show, description, total

    def __enter__(self) -> Callable[[int], None]:
        from rich.console import Console

        console = Console(stderr=True)
        # Off a terminal (logs, pytest) a live bar only leaves blank lines behind.
        self.show = self.show and console.is_terminal
        if not self.show:
            return lambda _completed: None
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                             TimeElapsedColumn(), console=console, transient=True)
        self._bar.start()
        task = self._bar.add_task(self.description, total=self.total)
        return lambda completed: self._bar.update(task, completed=completed)

    def __exit__(self, *exc: object) -> None:
        if self.show:
            self._bar.stop()


def _decode_one(data: bytes, example_id: str, source: Path) -> np.ndarray:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return np.asarray(im.convert("RGB"), dtype=np.uint8)
    except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(
            f"{source}: cannot decode image {example_id!r} ({type(err).__name__}: {err}). "
            "The file is corrupt or not an image; delete it or replace it with a valid PNG/JPEG."
        ) from err


def _decode_all(ids: Sequence[str], read: Callable[[str], bytes], source: Path,
                progress: bool) -> np.ndarray:
    """Decode every image into one ``uint8 [N, H, W, 3]`` array; all must share one size."""
    # Single-threaded on purpose: a 32x32 JPEG decodes in ~40 us, the whole of CIFAR-10 in ~3 s.
    out: np.ndarray | None = None
    with _progress(progress and len(ids) >= _PROGRESS_MIN, f"decoding {source.name}", len(ids)) as advance:
        for k, example_id in enumerate(ids):
            img = _decode_one(read(example_id), example_id, source)
            if out is None:
                out = np.empty((len(ids), *img.shape), dtype=np.uint8)
            elif img.shape != out.shape[1:]:
                h, w = out.shape[1:3]
                raise DataError(
                    f"{source}: image {example_id!r} is {img.shape[1]}x{img.shape[0]} (WxH) but "
                    f"{ids[0]!r} is {w}x{h}; all images must have the same size. Resize them first, "
                    f"e.g. PIL's Image.resize(({w}, {h})) or `mogrify -resize {w}x{h}! *.png`."
                )
            out[k] = img
            if k % 500 == 0:
                advance(k)
    assert out is not None
    return out


# ---------------------------------------------------------------------------------------- cache
def _cache_key(source: Path, names: Iterable[str] | None) -> tuple[Path, str]:
    """Cache folder for this source: one per path, one version per (size, mtime) state."""
    path_hash = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    h = hashlib.sha1(f"v{_CACHE_VERSION}".encode())
    if names is None:  # archive: its own size and mtime
        st = source.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:  # directory: a folder's mtime misses edited files, so key on every file's stat
        for n in sorted(names):
            st = (source / n).stat() if (source / n).exists() else None
            h.update(f"{n}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}\n".encode())
    return cache_dir() / "folders" / path_hash, h.hexdigest()[:16]


def _cache_load(base: Path, version: str) -> tuple[dict[str, np.ndarray], dict[str, list[str]]] | None:
    meta_file = base / version / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        arrays = {s: np.load(base / version / f"{s}.npy") for s in meta["ids"]}
        if any(len(arrays[s]) != len(meta["ids"][s]) for s in arrays):
            return None
        return arrays, meta["ids"]
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is simply rebuilt


def _cache_save(base: Path, version: str, source: Path, arrays: dict[str, np.ndarray],
                ids: dict[str, list[str]]) -> None:
    try:
        if base.is_dir():  # older states of the same source are dead weight
            for old in base.iterdir():
                if old.name != version:
                    shutil.rmtree(old, ignore_errors=True)
        target = base / version
        target.mkdir(parents=True, exist_ok=True)
        for split, x in arrays.items():
            tmp = target / f".{split}.{os.getpid()}.npy"
            np.save(tmp, x)
            os.replace(tmp, target / f"{split}.npy")
        # meta.json is written last: its presence marks a complete cache entry.
        tmp = target / f".meta.{os.getpid()}.json"
        tmp.write_text(json.dumps({"source": str(source), "ids": ids}))
        os.replace(tmp, target / "meta.json")
    except OSError:
        pass  # caching is an optimisation; a read-only home must not stop loading


# ---------------------------------------------------------------------------------------- public
def read_image_folder(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    cache: bool = True,
    progress: bool = True,
    name: str | None = None,
) -> dict[str, LabeledData]:
    """Read every split of an image folder.

    Parameters
    ----------
    path : str or path-like
        A directory, or a ``.tar`` / ``.tar.gz`` (any compression tarfile reads) of one. A single
        wrapping folder inside (``cifar10-jpeg/train/...``) is detected and skipped.
    class_names : sequence of str, optional
        Class order (label ``i`` is ``class_names[i]``). Default: the sorted class folder names
        of all splits. Every class folder must be listed.
    cache : bool
        Reuse/store decoded arrays under ``cache_dir()/folders``, keyed by path, size and mtime.
    progress : bool
        Show a rich progress bar for large folders.
    name : str, optional
        Source name used in ``LabeledData.name`` (default: the file/folder name without suffix).

    Returns
    -------
    dict of str to LabeledData
        One entry per split folder (``train``, ``test``, ``val``...); ``{"train": ...}`` when the
        folder has no split level. Examples are ordered by class index, then file name; ``ids``
        are the file paths relative to the dataset root (e.g. ``train/cat/0001.jpg``).

    Raises
    ------
    DataError
        Missing path, no images, wrong layout, a missing or undecodable file (named), or images
        of different sizes.
    """
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise DataError(f"{source}: no such file or folder; pass an image folder or a .tar/.tar.gz of one.")
    is_dir = source.is_dir()
    if not is_dir and not _is_archive(source):
        raise DataError(f"{source}: not a folder or a tar archive; {_LAYOUT_HELP}.")
    src_name = name or source.name.split(".")[0]

    listed = _list_directory(source) if is_dir else None
    base, version = _cache_key(source, listed) if cache else (None, "")
    hit = _cache_load(base, version) if base is not None else None
    if hit is not None:
        arrays, split_ids = hit
    else:
        blobs = None if is_dir else _read_archive(source, progress)
        members = listed if is_dir else list(blobs)
        if not members:
            raise DataError(f"{source}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found; "
                            f"{_LAYOUT_HELP}.")
        ids, prefix = _strip_top_folder(sorted(members))
        split_ids = {s: sorted(v) for s, v in _split_layout(ids, source).items()}
        has_split_level = next(iter(split_ids.values()))[0].split("/", 1)[0] in SPLIT_NAMES
        for example_id in ids:  # layout errors before the slow decoding, not after
            _class_and_file(example_id, has_split_level, source)

        def read(example_id: str) -> bytes:
            member = prefix + example_id
            if blobs is not None:
                return blobs[member]
            try:
                return (source / member).read_bytes()
            except OSError as err:
                raise DataError(f"{source}: image {example_id!r} is missing or unreadable ({err}); "
                                "restore the file or remove it from the folder.") from err

        arrays = {s: _decode_all(v, read, source, progress) for s, v in split_ids.items()}
        if base is not None:
            _cache_save(base, version, source, arrays, split_ids)

    return _label_splits(arrays, split_ids, class_names, source, src_name)


def _label_splits(arrays: dict[str, np.ndarray], split_ids: dict[str, list[str]],
                  class_names: Sequence[str] | None, source: Path, src_name: str) -> dict[str, LabeledData]:
    """Turn decoded arrays + ids into LabeledData ordered by (class index, file name)."""
    # _split_layout makes the split level all-or-nothing, so one id tells which layout it is.
    first = next(i for ids in split_ids.values() for i in ids)
    split_layout = first.split("/", 1)[0] in SPLIT_NAMES
    parsed = {s: [_class_and_file(i, split_layout, source) for i in ids] for s, ids in split_ids.items()}
    folders = sorted({c for p in parsed.values() for c, _ in p})
    classes = list(class_names) if class_names is not None else folders
    index = {c: k for k, c in enumerate(classes)}
    unknown = [c for c in folders if c not in index]
    if unknown:
        raise DataError(f"{source}: class folder {unknown[0]!r} is not in the class list {classes}; "
                        "add it to the list or remove the folder.")
    out = {}
    for split, ids in split_ids.items():
        labels = np.array([index[c] for c, _ in parsed[split]], dtype=np.int64)
        files = [f for _, f in parsed[split]]
        order = np.array(sorted(range(len(ids)), key=lambda k: (labels[k], files[k])), dtype=np.int64)
        x = arrays[split]
        if not np.array_equal(order, np.arange(len(ids))):  # skip a 180 MB copy when already ordered
            x = x[order]
        out[split] = LabeledData(x=x, labels=labels[order], class_names=classes,
                                 ids=[ids[k] for k in order], name=f"{src_name}/{split}")
    return out


def load_image_folder(
    path: str | os.PathLike,
    *,
    class_names: Sequence[str] | None = None,
    cache: bool = True,
    progress: bool = True,
    name: str | None = None,
) -> DatasetSplits:
    """Load an image folder as train/test splits.

    The ``train`` split is the training set (everything, if there are no split folders); the test
    set is ``test``, else ``val``/``valid``/``validation``, else None. Parameters are those of
    :func:`read_image_folder`.
    """
    splits = read_image_folder(path, class_names=class_names, cache=cache, progress=progress, name=name)
    if "train" not in splits:
        raise DataError(f"{path}: has split folders {sorted(splits)} but no 'train' folder; rename the "
                        "training split folder to 'train'.")
    test = next((splits[s] for s in ("test", "val", "valid", "validation") if s in splits), None)
    return DatasetSplits(train=splits["train"], test=test)
