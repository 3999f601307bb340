"""What the per-machine speed benchmarks (precision_speed, recipe_speed, strong_aug_speed) share: the
provenance every result file carries, a file name from the CPU, and a write that never replaces a result.

A result file is evidence: measuring again on the same kind of machine writes a second file (its name gets
the time), and the generated tables list both.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path

from noisyfit.engine.machine import git_commit, machine_info


def provenance(benchmark: str) -> dict:
    """The fields every result file starts with: which benchmark, the command, the code, the machine, when."""
    return {"benchmark": benchmark, "command": ["python", *sys.argv], "commit": git_commit(),
            "machine": machine_info(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def cpu_slug(machine: dict) -> str:
    """``"amd-epyc"`` for ``"AMD EPYC"``: the CPU's name as a file-name part."""
    return re.sub(r"[^a-z0-9]+", "-", str(machine.get("cpu") or "cpu").lower()).strip("-")


def write_new(path: Path, result: dict, *, indent: int = 1) -> Path:
    """Write ``result`` to ``path``, or beside it with the time in its name if ``path`` exists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists():
        path = path.with_name(path.stem + time.strftime("__%Y%m%d-%H%M%S") + path.suffix)
    path.write_text(json.dumps(result, indent=indent) + "\n")
    return path
