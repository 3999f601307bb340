"""Where bench outputs live and how their names are read back.

``<results>/<suite>/<method>__<label set>__seed<S>.json``  one run's results (plus a ``bench`` block)
``... .pr.json``            precision-recall points of its clean scores (small; never the npz)
``... .failed.json``        the last failed attempt (exit code, log tail); removed on success
``... .unavailable.json``   a row that could not run here (e.g. cleanlab not installed)
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

_KEY_RE = re.compile(r"^(?P<method>[A-Za-z0-9_\-]+?)__(?P<label_set>[A-Za-z0-9_\-]+?)__seed(?P<seed>\d+)"
                     r"(?P<suffix>(\.[a-z]+)?)\.json$")
NOTE_KINDS = ("failed", "unavailable")


def run_key(method: str, label_set: str, seed: int) -> str:
    """``<method>__<label set>__seed<S>``: the stem of every file of one run."""
    for part in (method, label_set):
        if "." in part or "__" in part or "/" in part:
            raise ValueError(f"bench names may not contain '.', '__' or '/': {part!r}")
    return f"{method}__{label_set}__seed{int(seed)}"


def parse_name(name: str) -> tuple[str, str, int, str] | None:
    """``(method, label_set, seed, suffix)`` of a bench file name (suffix ``""`` for results)."""
    m = _KEY_RE.match(name)
    if m is None:
        return None
    return m["method"], m["label_set"], int(m["seed"]), m["suffix"].lstrip(".")


@dataclass
class StoredRun:
    """One result file of a suite, parsed."""

    suite: str
    method: str
    label_set: str
    seed: int
    path: Path
    data: dict

    def sidecar(self, suffix: str) -> Path:
        return self.path.with_name(self.path.name[: -len(".json")] + f".{suffix}.json")


#: schemas of one run's results: a training run's and the cleanlab row's (files without a schema predate it)
RUN_SCHEMAS = ("noisyfit.results/", "noisyfit.bench.cleanlab/")


def read_suite(suite_dir: Path) -> list[StoredRun]:
    """Every results file in ``suite_dir``, sorted by method, label set and seed."""
    runs = []
    if not suite_dir.is_dir():
        return runs
    for p in sorted(suite_dir.glob("*.json")):
        parsed = parse_name(p.name)
        if parsed is None or parsed[3]:
            continue
        method, label_set, seed, _ = parsed
        try:
            data = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"{p}: not a readable results file ({e}); delete it to re-run that run") from e
        if not str(data.get("schema") or RUN_SCHEMAS[0]).startswith(RUN_SCHEMAS):
            continue  # another benchmark's result that shares the naming (e.g. the two-stage pipeline's)
        if "schema" not in data and not isinstance(data.get("epochs", []), list):
            continue  # schema-less with "epochs" a count, not curves (benchmarks/jpeg_gap.py's files): not a run
        runs.append(StoredRun(suite_dir.name, method, label_set, seed, p, data))
    return runs


def read_notes(suite_dir: Path) -> list[tuple[str, str, int, str, dict]]:
    """``(method, label_set, seed, kind, note)`` for every failed / unavailable note in ``suite_dir``."""
    out = []
    if not suite_dir.is_dir():
        return out
    for p in sorted(suite_dir.glob("*.json")):
        parsed = parse_name(p.name)
        if parsed is not None and parsed[3] in NOTE_KINDS:
            try:
                out.append((*parsed, json.loads(p.read_text())))
            except (OSError, json.JSONDecodeError):
                continue
    return out
