"""When and how an image source is streamed from disk instead of decoded into memory.

* :func:`stream_mode` reads ``data.stream`` (``auto``, ``true``, ``false``).
* :func:`memory_budget_bytes` is the decoded size above which ``auto`` streams (``data.memory_budget_mb``;
  default a quarter of the machine's RAM, because the in-memory path briefly holds two copies and the
  model, its optimiser and the other splits need room too).
* :func:`archive_opener` gives random access to a tar: an uncompressed tar is read in place by member
  offset; a compressed one (gzip allows no seeking) is extracted once under the cache folder.
* The listing of a streamed folder (ids per split, the decoded size, the mixed-size note) is cached next
  to the decoded-array cache, so a second run skips the header pass.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
from pathlib import Path

from .image_files import DirectoryOpener, TarOpener, tar_members
from .labeled import DataError

STREAM_CHOICES = ("auto", "true", "false")


def stream_mode(value) -> str:
    """``data.stream`` as ``"auto"``, ``"true"`` or ``"false"``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value).strip().lower()
    if text in ("1", "yes", "on"):
        text = "true"
    if text in ("0", "no", "off", "none"):
        text = "false"
    if text not in STREAM_CHOICES:
        raise DataError(f"data.stream={value!r}: use auto (stream when the decoded images would exceed "
                        "data.memory_budget_mb), true (always decode from disk while training) or false "
                        "(always decode everything into memory first).")
    return text


def physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):  # not on Linux/macOS: assume a small machine
        return 8 << 30


def memory_budget_bytes(memory_budget_mb: float | None) -> int:
    if memory_budget_mb is None:
        return physical_memory_bytes() // 4
    if not memory_budget_mb > 0:
        raise DataError(f"data.memory_budget_mb={memory_budget_mb!r} must be a positive number of MiB "
                        "(or unset for a quarter of this machine's memory).")
    return int(float(memory_budget_mb) * (1 << 20))


def archive_opener(source: Path, extract_to: Path, blobs: dict[str, bytes] | None = None):
    """A random-access opener over the images of a tar, and the member names it knows.

    An uncompressed tar is read in place. A compressed one is extracted into ``extract_to`` (from ``blobs``
    when the archive was already read into memory, else in one streaming pass) and opened as a folder;
    a ``.complete`` marker makes an interrupted extraction start over rather than be trusted.
    """
    members = tar_members(source)
    if members is not None:
        return TarOpener(source, members), list(members)
    marker = extract_to / ".complete"
    if marker.is_file():
        names = json.loads(marker.read_text())
        return DirectoryOpener(extract_to), names
    shutil.rmtree(extract_to, ignore_errors=True)
    extract_to.mkdir(parents=True, exist_ok=True)
    names = []

    def write(name: str, data: bytes) -> None:
        target = (extract_to / name).resolve()
        if not str(target).startswith(str(extract_to.resolve()) + os.sep):  # "../" in a member name
            raise DataError(f"{source}: member {name!r} points outside the archive; refusing to extract it.")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        names.append(name)

    from .folder import _is_image

    try:
        if blobs is not None:
            for name, data in blobs.items():
                write(name, data)
        else:
            with tarfile.open(source, mode="r:*") as tf:
                for member in tf:
                    name = member.name.removeprefix("./")
                    if member.isfile() and _is_image(name):
                        fobj = tf.extractfile(member)
                        write(name, fobj.read() if fobj is not None else b"")
    except (tarfile.TarError, EOFError, OSError) as err:
        raise DataError(f"{source}: cannot extract the archive into {extract_to} ({err}); check the free disk "
                        "space there (NOISYFIT_CACHE_DIR moves it) or extract the archive yourself and pass the "
                        "folder.") from err
    marker.write_text(json.dumps(names))
    return DirectoryOpener(extract_to), names


def load_listing(folder: Path) -> dict | None:
    """The cached listing of a streamed source, or None."""
    try:
        meta = json.loads((folder / "stream.json").read_text())
        meta["target"] = tuple(meta["target"])
        return meta
    except (OSError, ValueError, KeyError, TypeError):
        return None


def save_listing(folder: Path, split_ids: dict[str, list[str]], prefix: str, target: tuple[int, int],
                 note: str | None) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".stream.{os.getpid()}.json"
        tmp.write_text(json.dumps({"ids": split_ids, "prefix": prefix, "target": list(target), "note": note}))
        os.replace(tmp, folder / "stream.json")
    except OSError:
        pass  # a cache; a read-only home must not stop loading
