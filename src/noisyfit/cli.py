"""Command line: ``noisyfit <command>`` (train, noise, demo, ...) and ``noisyfit --version``.

Errors a user can fix (bad data, config, names, paths) are printed as one message with exit code 2,
without a traceback; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import warnings

from noisyfit import __version__


def _user_errors() -> tuple[type[BaseException], ...]:
    from noisyfit.config import ConfigError
    from noisyfit.data.labeled import DataError
    from noisyfit.engine.trainer import OutputDirError, TrainingError
    from noisyfit.models.backbones import UnknownNameError

    return (ConfigError, DataError, TrainingError, OutputDirError, UnknownNameError, FileNotFoundError)


@contextlib.contextmanager
def _data_warnings_as_lines(command: str):
    """Show :class:`~noisyfit.data.labels.DataWarning` as one ``noisyfit CMD: warning: ...`` line each."""
    from noisyfit.data.labels import DataWarning

    with warnings.catch_warnings():
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None):
            if issubclass(category, DataWarning):
                print(f"noisyfit {command}: warning: {message}", file=sys.stderr, flush=True)
            else:
                shown(message, category, filename, lineno, file, line)

        warnings.showwarning = show
        warnings.simplefilter("always", DataWarning)
        yield


# ---------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="noisyfit", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"noisyfit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    # Each module of noisyfit.commands adds one sub-command through its `register(sub)`.
    import importlib
    import pkgutil

    import noisyfit.commands as commands

    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda i: i.name):
        module = importlib.import_module(f"noisyfit.commands.{info.name}")
        if hasattr(module, "register"):
            module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    out = getattr(args, "out", None)
    new_out = out is not None and not os.path.lexists(out)  # a folder this command would create
    try:
        with _data_warnings_as_lines(args.command):
            return args.func(args)
    except _user_errors() as e:
        print(f"noisyfit {args.command}: error: {e}", file=sys.stderr)
        if new_out:  # a refused command leaves no trace: an empty --out it created goes again
            with contextlib.suppress(OSError):
                os.rmdir(out)
        return 2
    except KeyboardInterrupt:
        print("interrupted; the last finished epoch is checkpointed (continue with --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
