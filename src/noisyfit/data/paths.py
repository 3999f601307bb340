"""Where data is read from and where derived files (decoded arrays, downloads) are written.

Reading and writing are kept apart on purpose: the data directory may be a shared, read-only
folder (``../shared/data``), so everything we produce goes under :func:`cache_dir` instead.
"""

from __future__ import annotations

import os
from pathlib import Path

DATA_DIR_ENV = "NOISYFIT_DATA_DIR"
CACHE_DIR_ENV = "NOISYFIT_CACHE_DIR"

# parents: [0]=data, [1]=noisyfit, [2]=src, [3]=repository root.
_REPO_ROOT = Path(__file__).resolve().parents[3]
_SHARED_DATA = Path("..") / "shared" / "data"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path | None:
    """Find the data directory.

    Parameters
    ----------
    data_dir : str or path-like, optional
        An explicit directory; it wins and is returned as given (even if it does not exist, so
        that the caller's error can name it).

    Returns
    -------
    Path or None
        ``data_dir`` if given, else ``$NOISYFIT_DATA_DIR`` if set, else ``../shared/data``
        relative to the working directory or to the repository root when it exists, else None.
    """
    if data_dir is not None and str(data_dir) != "":
        return Path(data_dir).expanduser()
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return Path(env).expanduser()
    for candidate in (Path.cwd() / _SHARED_DATA, _REPO_ROOT / _SHARED_DATA):
        if candidate.is_dir():
            return candidate.resolve()
    return None


def cache_dir() -> Path:
    """Directory for derived files: ``$NOISYFIT_CACHE_DIR`` or ``~/.cache/noisyfit`` (created)."""
    env = os.environ.get(CACHE_DIR_ENV)
    path = Path(env).expanduser() if env else Path.home() / ".cache" / "noisyfit"
    path.mkdir(parents=True, exist_ok=True)
    return path


def absolute_if_here(raw: str, *, is_file: bool = False) -> str:
    """``raw`` as an absolute path when it is relative and exists relative to the working folder (a file, with
    ``is_file``), else ``raw`` unchanged. Run configs record paths this way so other folders find them."""
    path = Path(raw.strip()).expanduser()
    if path.is_absolute() or not (path.is_file() if is_file else path.exists()):
        return raw
    return str(path.resolve())
