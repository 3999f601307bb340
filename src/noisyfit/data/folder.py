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

from .image_files import DirectoryOpener, ImageFiles
from .labeled import DataError, DatasetSplits, LabeledData
from .paths import cache_dir
from .stream_source import archive_opener, load_listing, memory_budget_bytes, save_listing, stream_mode

IMAGE_EXTENSIONS = frozenset(
    {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)
SPLIT_NAMES = ("train", "test", "val", "valid", "validation")
# Bump when the cache layout or the decoding changes, so old caches are not reused.
_CACHE_VERSION = 2  # 2: RGB conversion (EXIF rotation, alpha on white) and the size policy
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


def _empty_class_folders(root: Path, listed: list[str]) -> list[str]:
    """Class-level folders of an image folder that hold no image files (``split/class`` under a split level)."""
    if not listed:
        return []
    ids, prefix = _strip_top_folder(sorted(listed))
    base = root / prefix if prefix else root
    split_level = ids[0].split("/", 1)[0] in SPLIT_NAMES
    parents = [base / d for d in sorted(SPLIT_NAMES) if (base / d).is_dir()] if split_level else [base]
    has_images = {i.split("/", 1)[0] for i in ids} | {"/".join(i.split("/", 2)[:2]) for i in ids}
    empty = []
    for parent in parents:
        for d in sorted(p for p in parent.iterdir() if p.is_dir() and not p.name.startswith(".")):
            rel = d.relative_to(base).as_posix()
            if rel not in has_images and rel not in SPLIT_NAMES:
                empty.append(rel)
    return empty


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


def parse_image_size(value) -> tuple[int, int] | None:
    """``data.image_size`` as ``(height, width)``: None (keep / median rule), an int, or ``[h, w]``."""
    if value is None:
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)) and value > 0:
        return int(value), int(value)
    if (isinstance(value, (list, tuple)) and len(value) == 2
            and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v > 0 for v in value)):
        return int(value[0]), int(value[1])
    raise DataError(f"data.image_size={value!r}: expected a positive int (square images, e.g. data.image_size=64), "
                    "[height, width] (e.g. data.image_size=[64,48]), or nothing (uniform folders keep their size, "
                    "a folder of mixed sizes is resized to its median height and width).")


#: EXIF orientations that swap width and height (rotations by 90 / 270 degrees)
_SWAPPING_ORIENTATIONS = {5, 6, 7, 8}
#: decode errors listed by file name in one message before "and N more"
MAX_LISTED_ERRORS = 10


def short_error(err: Exception) -> str:
    from PIL import UnidentifiedImageError

    if isinstance(err, UnidentifiedImageError):
        return "not an image Pillow can read"
    if isinstance(err, FileNotFoundError):
        return "missing"
    if isinstance(err, OSError):
        return (err.strerror or str(err)).lower()
    return f"{type(err).__name__}: {err}"


def _size_of(f) -> tuple[int, int]:
    """``(height, width)`` of an image as it will be decoded (EXIF rotation applied), from its header."""
    from PIL import Image

    with Image.open(f) as im:
        w, h = im.size
        try:
            orientation = im.getexif().get(0x0112)
        except Exception:  # a broken EXIF block: the pixels may still be fine
            orientation = None
    return (w, h) if orientation in _SWAPPING_ORIENTATIONS else (h, w)


def _to_rgb(im):
    """Any Pillow image as RGB: EXIF rotation applied, 16-bit grey scaled to 8 bits, transparency on white."""
    from PIL import Image, ImageOps

    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # a broken EXIF block: keep the stored orientation
        pass
    if im.mode in ("I", "I;16", "I;16L", "I;16B", "I;16N", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if arr.max(initial=0) > 255:  # 16-bit data
            arr = arr / 257.0
        im = Image.fromarray(np.clip(np.round(arr), 0, 255).astype(np.uint8), mode="L")
    has_alpha = im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in im.info
    if has_alpha:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im.convert("RGB")


def decode_image(f, size: tuple[int, int] | None) -> np.ndarray:
    """One image as ``uint8 [H, W, 3]``, resized to ``size = (h, w)`` when given (bicubic, aspect not kept)."""
    from PIL import Image

    with Image.open(f) as im:
        im.load()
        rgb = _to_rgb(im)
    if size is not None and (rgb.height, rgb.width) != size:
        rgb = rgb.resize((size[1], size[0]), Image.Resampling.BICUBIC)
    return np.asarray(rgb, dtype=np.uint8)


def is_image_file(path: Path) -> bool:
    """A file with an image suffix."""
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS


def has_loose_images(root: Path) -> bool:
    """Image files directly in ``root``: new images, not the training layout (root/<class>/<file>)."""
    return any(is_image_file(p) and not p.name.startswith(".") for p in root.iterdir())


def new_image_files(path: Path) -> tuple[Path, list[str]]:
    """New images as `noisyfit predict` and `embed` take them: one image file, or every image file under a folder
    (subfolders included, hidden ones skipped); ``(root, ids)`` with ids the sorted paths relative to ``root``."""
    return (path.parent, [path.name]) if path.is_file() else (path, sorted(_list_directory(path)))


def decode_image_files(paths, size: tuple[int, int]) -> tuple[np.ndarray, int, list[tuple[int, str]]]:
    """Image files as one ``uint8 [N, h, w, 3]`` array at ``size = (h, w)``, each decoded to RGB and resized
    (bicubic) as an image folder is decoded. Returns the images, how many were resized, and ``(position,
    reason)`` of every file that could not be decoded (its row stays zero), for one error naming them all."""
    h, w = size
    x = np.zeros((len(paths), h, w, 3), dtype=np.uint8)
    failed, resized = [], 0
    for k, p in enumerate(paths):
        try:
            with open(p, "rb") as f:
                img = decode_image(f, None)
            if img.shape[:2] != (h, w):
                img, resized = resize_images(img[None], (h, w))[0], resized + 1
            x[k] = img
        except Exception as err:  # Pillow and the OS raise their own types; every file is reported
            failed.append((k, short_error(err)))
    return x, resized, failed


def resize_images(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``uint8 [N, H, W, C]`` images at ``size = (h, w)``, bicubic as in folder decoding."""
    from PIL import Image

    out = np.empty((len(x), size[0], size[1], x.shape[3]), dtype=np.uint8)
    for k, img in enumerate(x):
        im = Image.fromarray(img[..., 0] if x.shape[3] == 1 else img)
        r = np.asarray(im.resize((size[1], size[0]), Image.Resampling.BICUBIC), dtype=np.uint8)
        out[k] = r[..., None] if x.shape[3] == 1 else r
    return out


def _unreadable(source: Path, failed: list[tuple[str, str]], total: int) -> DataError:
    listed = ", ".join(f"{i!r} ({why})" for i, why in failed[:MAX_LISTED_ERRORS])
    more = f" and {len(failed) - MAX_LISTED_ERRORS} more" if len(failed) > MAX_LISTED_ERRORS else ""
    what = "cannot decode image" if len(failed) == 1 else f"cannot decode {len(failed)} of {total} images:"
    return DataError(f"{source}: {what} {listed}{more}. Those files are missing, corrupt, truncated or not images; "
                     "delete them or replace them with valid PNG/JPEG files (every unreadable file is listed "
                     "here, so one pass of fixes is enough).")


def target_size(sizes: Sequence[tuple[int, int]], policy: tuple[int, int] | None) -> tuple[int, int]:
    """The ``(h, w)`` every image is decoded to: the policy's, else the common size, else the median."""
    if policy is not None:
        return policy
    if len(set(sizes)) <= 1:
        return sizes[0]
    hs, ws = zip(*sizes)
    # median: robust to a few giant photos or thumbnails, and the size most images already have
    return int(round(float(np.median(hs)))), int(round(float(np.median(ws))))


def _scan_sizes(split_ids: dict[str, list[str]], open_image: Callable[[str], object], source: Path,
                size: tuple[int, int] | None) -> tuple[tuple[int, int], str | None, dict[str, str]]:
    """Read every image's header (not its pixels): the ``(h, w)`` all images are decoded to, a note when a
    folder of mixed sizes is resized, and ``{id: why}`` of the files that cannot be opened."""
    every = [i for ids in split_ids.values() for i in ids]
    failed: dict[str, str] = {}
    sizes: dict[str, tuple[int, int]] = {}
    for example_id in every:
        try:
            with open_image(example_id) as f:
                sizes[example_id] = _size_of(f)
        except Exception as err:  # Pillow raises many types (OSError, SyntaxError, ValueError, ...)
            failed[example_id] = short_error(err)
    target = target_size(list(sizes.values()), size) if sizes else (1, 1)
    distinct = set(sizes.values())
    note = None
    if size is None and len(distinct) > 1:
        hs, ws = [h for h, _ in distinct], [w for _, w in distinct]
        note = (f"{source}: images come in {len(distinct)} sizes (height {min(hs)}-{max(hs)}, width "
                f"{min(ws)}-{max(ws)} px); each is resized to the median {target[0]}x{target[1]} (height x width). "
                "Set data.image_size to choose (an int for squares, or [height, width]; `noisyfit embed`: "
                "--image-size).")
    return target, note, failed


def _decode_all(split_ids: dict[str, list[str]], open_image: Callable[[str], object], source: Path,
                progress: bool, target: tuple[int, int], failed: dict[str, str]) -> dict[str, np.ndarray]:
    """Decode every image of every split at ``target = (h, w)`` into one ``uint8 [N, H, W, 3]`` array per split.

    ``failed`` holds the files whose header could not be read already; every file that fails either pass is
    reported in one :class:`DataError`, so one round of fixes is enough."""
    every = [i for ids in split_ids.values() for i in ids]
    failed = dict(failed)
    arrays = {}
    done = 0
    # Single-threaded on purpose: a 32x32 JPEG decodes in ~40 us, the whole of CIFAR-10 in ~3 s.
    with _progress(progress and len(every) >= _PROGRESS_MIN, f"decoding {source.name}", len(every)) as advance:
        for split, ids in split_ids.items():
            out = np.empty((len(ids) if not failed else 0, target[0], target[1], 3), dtype=np.uint8)
            for k, example_id in enumerate(ids):
                if example_id not in failed:
                    try:
                        with open_image(example_id) as f:
                            img = decode_image(f, target)
                        if not failed:
                            out[k] = img
                    except Exception as err:
                        failed[example_id] = short_error(err)
                done += 1
                if done % 500 == 0:
                    advance(done)
            arrays[split] = out
    if failed:
        raise _unreadable(source, [(i, failed[i]) for i in every if i in failed], len(every))
    return arrays


# ---------------------------------------------------------------------------------------- cache
def _cache_key(source: Path, names: Iterable[str] | None,
               size: tuple[int, int] | None = None) -> tuple[Path, str]:
    """Cache folder for this source: one per path, one version per (size, mtime, size policy) state."""
    path_hash = hashlib.sha1(str(source).encode()).hexdigest()[:16]
    h = hashlib.sha1(f"v{_CACHE_VERSION}:{size}".encode())
    if names is None:  # archive: its own size and mtime
        st = source.stat()
        h.update(f"{st.st_size}:{st.st_mtime_ns}".encode())
    else:  # directory: a folder's mtime misses edited files, so key on every file's stat
        for n in sorted(names):
            st = (source / n).stat() if (source / n).exists() else None
            h.update(f"{n}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}\n".encode())
    return cache_dir() / "folders" / path_hash, h.hexdigest()[:16]


def _cache_load(base: Path, version: str) -> tuple[dict[str, np.ndarray], dict[str, list[str]], str | None] | None:
    meta_file = base / version / "meta.json"
    if not meta_file.is_file():
        return None
    try:
        meta = json.loads(meta_file.read_text())
        arrays = {s: np.load(base / version / f"{s}.npy") for s in meta["ids"]}
        if any(len(arrays[s]) != len(meta["ids"][s]) for s in arrays):
            return None
        return arrays, meta["ids"], meta.get("note")
    except (OSError, ValueError, KeyError):
        return None  # a damaged cache is simply rebuilt


def _cached_bytes(folder: Path) -> int:
    """The size of the decoded arrays cached in ``folder`` (0 when there are none)."""
    try:
        return sum(f.stat().st_size for f in folder.glob("*.npy"))
    except OSError:
        return 0


def _cache_save(base: Path, version: str, source: Path, arrays: dict[str, np.ndarray],
                ids: dict[str, list[str]], note: str | None = None) -> None:
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
        tmp.write_text(json.dumps({"source": str(source), "ids": ids, "note": note}))
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
    image_size: int | Sequence[int] | None = None,
    stream: bool | str = "auto",
    memory_budget_mb: float | None = None,
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
    image_size : int or (height, width), optional
        Resize every image to this size. None: a folder whose images share one size keeps it; a
        folder of mixed sizes is resized to the median height and the median width of its images
        (bicubic, aspect ratio not kept; a warning says so). Grey, palette, 16-bit and transparent
        images become RGB (transparency composited on white; EXIF rotation applied).
    stream : bool or "auto"
        True: keep the images on disk; ``x`` is then an :class:`~noisyfit.data.image_files.ImageFiles` that
        decodes on demand (the trainer decodes batches in worker processes). "auto": stream when the decoded
        images of all splits would exceed ``memory_budget_mb``. False: decode everything now. Streaming reads
        every image's header up front (sizes, unreadable files), not its pixels; a compressed archive is
        extracted once under :func:`~noisyfit.data.paths.cache_dir`.
    memory_budget_mb : float, optional
        The decoded size above which "auto" streams; default a quarter of this machine's memory.

    Returns
    -------
    dict of str to LabeledData
        One entry per split folder (``train``, ``test``, ``val``...); ``{"train": ...}`` when the
        folder has no split level. Examples are ordered by class index, then file name; ``ids``
        are the file paths relative to the dataset root (e.g. ``train/cat/0001.jpg``).

    Raises
    ------
    DataError
        Missing path, no images, wrong layout, or missing / undecodable files (all of them named in
        one message, up to a limit).
    """
    source = Path(path).expanduser().resolve()
    if not source.exists():
        raise DataError(f"{source}: no such file or folder; pass an image folder or a .tar/.tar.gz of one.")
    is_dir = source.is_dir()
    if not is_dir and not _is_archive(source):
        raise DataError(f"{source}: not a folder or a tar archive; {_LAYOUT_HELP}.")
    src_name = name or source.name.split(".")[0]

    size = parse_image_size(image_size)
    mode = stream_mode(stream)
    listed = _list_directory(source) if is_dir else None
    base, version = _cache_key(source, listed, size) if cache else (None, "")
    # a decoded-array cache serves "auto" only while it fits the budget (the budget may have shrunk since)
    use_arrays = mode == "false" or (mode == "auto" and base is not None
                                     and _cached_bytes(base / version) <= memory_budget_bytes(memory_budget_mb))
    hit = _cache_load(base, version) if base is not None and use_arrays else None
    listing = load_listing(base / version) if base is not None and mode != "false" and hit is None else None
    if hit is not None:
        arrays, split_ids, note = hit
    elif listing is not None:  # streamed before: skip the header pass
        split_ids, note = listing["ids"], listing["note"]
        opener = _stream_opener(source, is_dir)[0]
        arrays = {s: ImageFiles(opener, [listing["prefix"] + i for i in ids], listing["target"])
                  for s, ids in split_ids.items()}
    else:
        # A compressed archive that must stream is extracted without holding it in memory; otherwise it is read
        # once into memory (its compressed bytes), which also serves the header pass.
        blobs, opener = None, None
        if is_dir:
            members = listed
        elif mode == "true":
            opener, members = _stream_opener(source, is_dir)
        else:
            blobs = _read_archive(source, progress)
            members = list(blobs)
        if not members:
            raise DataError(f"{source}: no image files ({', '.join(sorted(IMAGE_EXTENSIONS))}) found; "
                            f"{_LAYOUT_HELP}.")
        ids, prefix = _strip_top_folder(sorted(m for m in members if _is_image(m)))
        split_ids = {s: sorted(v) for s, v in _split_layout(ids, source).items()}
        has_split_level = next(iter(split_ids.values()))[0].split("/", 1)[0] in SPLIT_NAMES
        for example_id in ids:  # layout errors before the slow decoding, not after
            _class_and_file(example_id, has_split_level, source)

        def open_image(example_id: str):
            member = prefix + example_id
            if blobs is not None:
                return io.BytesIO(blobs[member])
            if opener is not None:
                return opener(member)
            return open(source / member, "rb")

        target, note, failed = _scan_sizes(split_ids, open_image, source, size)
        decoded = sum(len(v) for v in split_ids.values()) * target[0] * target[1] * 3
        if mode == "true" or (mode == "auto" and decoded > memory_budget_bytes(memory_budget_mb)):
            if failed:  # a streamed run would meet them mid-training
                raise _unreadable(source, [(i, failed[i]) for i in ids if i in failed], len(ids))
            if opener is None:
                opener = _stream_opener(source, is_dir, blobs)[0]
            del blobs
            arrays = {s: ImageFiles(opener, [prefix + i for i in v], target) for s, v in split_ids.items()}
            if base is not None:
                save_listing(base / version, split_ids, prefix, target, note)
        else:
            arrays = _decode_all(split_ids, open_image, source, progress, target, failed)
            if base is not None:
                _cache_save(base, version, source, arrays, split_ids, note)
    notes = [note] if note else []  # also on a cache hit: the arrays are resized every time they are used
    if is_dir and class_names is None:  # a class folder without images would vanish from the classes unsaid
        empty = _empty_class_folders(source, listed)
        if empty:
            shown = ", ".join(repr(e) for e in empty[:5]) + (f" and {len(empty) - 5} more" if len(empty) > 5 else "")
            more = "s hold" if len(empty) > 1 else " holds"
            # a warning of its own: appended to the size note it ended a 400-character line (a new-user trial)
            notes.append(
                f"{source}: class folder{more} no image files and {'are' if len(empty) > 1 else 'is'} left out of the "
                f"classes: {shown}. Add images to {'them' if len(empty) > 1 else 'it'}, or remove "
                f"{'them' if len(empty) > 1 else 'it'}.")
    if notes:
        import warnings

        from .labels import DataWarning

        for text in notes:
            warnings.warn(DataWarning(text), stacklevel=3)

    return _label_splits(arrays, split_ids, class_names, source, src_name)


def _stream_opener(source: Path, is_dir: bool, blobs: dict[str, bytes] | None = None):
    """Random access to the files of a folder or archive (see :func:`noisyfit.data.stream_source.archive_opener`)."""
    if is_dir:
        return DirectoryOpener(source), None
    st = source.stat()
    key = hashlib.sha1(f"{source}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:16]
    return archive_opener(source, cache_dir() / "extracted" / key, blobs)


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
    image_size: int | Sequence[int] | None = None,
    stream: bool | str = "auto",
    memory_budget_mb: float | None = None,
) -> DatasetSplits:
    """Load an image folder as train/test splits.

    The ``train`` split is the training set (everything, if there are no split folders); the test
    set is ``test``, else ``val``/``valid``/``validation``, else None. Parameters are those of
    :func:`read_image_folder`.
    """
    splits = read_image_folder(path, class_names=class_names, cache=cache, progress=progress, name=name,
                               image_size=image_size, stream=stream, memory_budget_mb=memory_budget_mb)
    if "train" not in splits:
        raise DataError(f"{path}: has split folders {sorted(splits)} but no 'train' folder; rename the "
                        "training split folder to 'train'.")
    test = next((splits[s] for s in ("test", "val", "valid", "validation") if s in splits), None)
    return DatasetSplits(train=splits["train"], test=test)
