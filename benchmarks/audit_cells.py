"""What the audit benchmarks of one command per cell share (audit_tabular.py, audit_multilabel.py): run a
``noisyfit audit`` as a user would, keep its log, write the cell's result file whole or not at all, and print
mean ± sd over seeds in their tables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def run_audit(name: str, audit_args: list[str], *, runs_dir: Path, cwd: Path,
              threads: int) -> tuple[dict | None, list[str], float]:
    """``noisyfit audit AUDIT_ARGS --out RUNS_DIR/NAME`` in a process of its own (``threads`` OpenMP threads), its
    output in ``RUNS_DIR/NAME.log``. Returns ``(summary.json, or None when it failed; the command as a user types
    it; wall seconds)``."""
    out = runs_dir / name
    cmd = [sys.executable, "-m", "noisyfit.cli", "audit", *audit_args, "--out", str(out), "--overwrite",
           "--no-progress"]
    print(f"{name}: running", flush=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    t0 = time.time()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.time() - t0
    runs_dir.mkdir(parents=True, exist_ok=True)
    (runs_dir / f"{name}.log").write_text(proc.stdout + proc.stderr)
    if proc.returncode != 0:
        print(f"{name}: failed (exit {proc.returncode}); log: {runs_dir / (name + '.log')}", flush=True)
        return None, ["noisyfit", *cmd[3:]], wall
    return json.loads((out / "summary.json").read_text()), ["noisyfit", *cmd[3:]], wall


def write_result(path: Path, record: dict) -> Path:
    """``record`` as ``path`` (a temporary file, then a rename: an interrupted write leaves no result)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(record, indent=1) + "\n")
    tmp.replace(path)
    return path


def mean_sd(values: list, scale: float = 100.0) -> str:
    """``"mean ± sd"`` of the values given (None skipped) times ``scale``; ``(n=1)`` for one, ``–`` for none."""
    v = np.asarray([x for x in values if x is not None], dtype=float) * scale
    if v.size == 0:
        return "–"
    if v.size == 1:
        return f"{v[0]:.1f} (n=1)"
    return f"{v.mean():.1f} ± {v.std(ddof=1):.1f}"
