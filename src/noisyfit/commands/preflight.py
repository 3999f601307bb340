"""Checks a command runs before it loads data or trains: the output folder and the method's arguments.

A run folder never loses work: ``--out`` must be empty (or missing) unless ``--resume`` continues the
work in it or ``--overwrite`` replaces it, and it must be a writable folder. Both are checked before
anything slow happens, so a typo costs seconds, not a training run.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

#: what `noisyfit train` writes into its --out folder (removed by --overwrite; other files are left alone)
RUN_FILES = ("config.yaml", "metrics.jsonl", "checkpoint.pt", "best_model.pt", "model.pt", "results.json",
             "per_sample.npz", "tensorboard")
#: what `noisyfit audit` writes into its --out folder
AUDIT_FILES = ("issues.csv", "review.csv", "summary.json", "report.html", "pred_probs.npy", "folds", "run", "embeddings.npz",
               "pred_probs.npz", "cleaned_labels.npz")
#: bookkeeping `noisyfit bench` writes into a run folder before it starts `noisyfit train` there; hidden
#: files (names starting with ".") do not count either
BENCH_FILES = ("bench.log", "bench-sessions.jsonl", "bench-session.live.json")


def _is_rank_zero() -> bool:
    """Under torchrun every rank runs the command; only rank 0 owns the folder checks."""
    return int(os.environ.get("RANK", "0") or 0) == 0


def prepare_out_dir(out: str | os.PathLike, *, resume: bool, overwrite: bool, command: str,
                    owned: tuple[str, ...]) -> Path:
    """Check ``--out`` and make it ready: created, writable, and empty unless ``resume`` / ``overwrite``.

    Parameters
    ----------
    out : path
        The ``--out`` folder.
    resume : bool
        ``--resume``: keep the folder's files, the command continues from them.
    overwrite : bool
        ``--overwrite``: remove the files the command writes (``owned``) first; other files stay.
    command : str
        ``train`` or ``audit``, for messages.
    owned : tuple of str
        Names of the files and folders the command writes into ``out``.

    Raises
    ------
    OutputDirError
        ``out`` is a file, is not empty (and neither flag is given), cannot be created or written,
        or both flags are given.
    """
    from noisyfit.data.labels import some
    from noisyfit.engine.trainer import OutputDirError

    out = Path(out)
    if resume and overwrite:
        raise OutputDirError("--resume and --overwrite contradict each other: --resume continues the work in "
                             f"{out}, --overwrite deletes it and starts again; give one of them.")
    if out.exists() and not out.is_dir():
        raise OutputDirError(f"--out {out} is a file, not a folder; give a folder (it is created when missing) "
                             "that is empty or new.")
    if not _is_rank_zero():
        return out
    if out.is_dir():
        entries = sorted(e.name for e in out.iterdir() if not e.name.startswith(".") and e.name not in BENCH_FILES)
        if entries and not (resume or overwrite):
            unfinished = not {"checkpoint.pt", "results.json"} & set(entries)
            if command == "train" and set(entries) <= set(owned) and unfinished:
                # a run stopped before its first checkpoint (and unfinished): nothing to resume, only to restart
                raise OutputDirError(
                    f"--out {out} holds a run that stopped before its first checkpoint ({some(entries)}); nothing "
                    f"was changed. Start it again with --overwrite (which deletes noisyfit's {command} files in "
                    "it), or choose a new folder.")
            raise OutputDirError(
                f"--out {out} is not empty ({some(entries)}); nothing was changed. Continue the work in it with "
                f"`noisyfit {command} --out {out} --resume`, start it again with --overwrite (which deletes "
                f"noisyfit's {command} files in it), or choose a new folder.")
        if overwrite:
            for name in owned:
                target = out / name
                if target.is_dir() and not target.is_symlink():
                    shutil.rmtree(target)
                elif target.exists() or target.is_symlink():
                    target.unlink()
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / f".write-probe-{os.getpid()}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise OutputDirError(f"--out {out}: cannot write there ({err.strerror or err}); nothing was run. Choose "
                             "a folder you can write to.") from err
    return out


def check_method_args(cfg) -> None:
    """Unknown names, wrong types and values a method refuses in ``method.args``, before any data is loaded.

    Raises
    ------
    ConfigError
        One paragraph: what is wrong, the method's hyper-parameters with their defaults, and the fix.
    """
    from noisyfit.config import ConfigError
    from noisyfit.methods.base import get_method_class

    name = cfg.method.name
    cls = get_method_class(name)  # an unknown method raises its own message
    args = dict(cfg.method.args or {})
    fields = dataclasses.fields(cls.Hyper)
    defaults = cls.Hyper() if all(f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
                                  for f in fields) else None
    listing = ", ".join(f"{f.name}={getattr(defaults, f.name)!r}" if defaults is not None else f.name
                        for f in fields) or "none"
    unknown = sorted(set(args) - {f.name for f in fields})
    if unknown:
        raise ConfigError(f"method.args of method {name!r}: no hyper-parameter {', '.join(map(repr, unknown))}. "
                          f"Its hyper-parameters (with defaults) are: {listing}. Set one with "
                          f"method.args.<name>=<value>, or remove the unknown key from the config (another "
                          "method's preset with --method? reset its arguments: 'method.args={}').")
    try:
        hp = cls.resolve_hyper(args)
        for f in fields:  # optional numbers (default None) are not coerced: a word stays a word
            kind = str(f.type)
            value = getattr(hp, f.name)
            if (f.name in args and defaults is not None and getattr(defaults, f.name) is None and value is not None
                    and ("int" in kind or "float" in kind) and "str" not in kind
                    and (isinstance(value, (str, bool, list, dict)))):
                raise ValueError(f"method.args.{f.name}: {value!r} is not a valid {kind}")
        _construct_until_first_network(cls, args)
    except (ValueError, TypeError) as err:
        reason = str(err).rstrip(".")
        for prefix in (f"method {name!r}: ", f"{name}: "):  # the method's own messages name it already
            reason = reason.removeprefix(prefix)
        given = ", ".join(f"{k}={v!r}" for k, v in args.items())
        raise ConfigError(f"method.args of method {name!r}: {reason} (given: {given}). Its hyper-parameters (with "
                          f"defaults) are: {listing}. Fix the value with method.args.<name>=<value>.") from None


class _FirstNetwork(Exception):
    """Raised by the stand-in backbone factory: the method's own checks have all run by then."""


def _construct_until_first_network(cls, args: dict) -> None:
    """Run a method's constructor up to its first network: the checks of its arguments come before.

    Nothing is built (the backbone factory stops the constructor); only a ValueError raised before that
    point counts, anything else is left for the real run to report.
    """
    def stop():
        raise _FirstNetwork

    try:
        cls(args, 2, 1, stop)
    except _FirstNetwork:
        pass
    except ValueError:
        raise
    except Exception:  # noqa: BLE001 - not an argument check: the real run reports it with its context
        pass
