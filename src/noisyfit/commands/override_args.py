"""``key=value`` config overrides anywhere on a command line, not only in one run of positionals.

argparse binds a positional list (``nargs="*"``) once, so ``noisyfit train --dataset d a.b=1 --epochs 3 c.d=2``
rejects ``c.d=2`` as an unrecognized argument. A sub-parser patched here collects such items that come after
options into the list as well.
"""

from __future__ import annotations

import argparse
import re

#: a dotted config key and a value: ``train.epochs=5``, ``method.args.q=0.7``
OVERRIDE = re.compile(r"^[A-Za-z_]\w*(\.\w+)+=")


def accept_overrides_anywhere(parser: argparse.ArgumentParser, dest: str) -> None:
    """Make ``parser`` append every left-over ``key=value`` item to ``namespace.<dest>``."""
    parse = parser.parse_known_args

    def parse_known_args(args=None, namespace=None):
        ns, rest = parse(args, namespace)
        setattr(ns, dest, list(getattr(ns, dest, None) or []) + [r for r in rest if OVERRIDE.match(r)])
        return ns, [r for r in rest if not OVERRIDE.match(r)]

    parser.parse_known_args = parse_known_args
