"""benchmarks/measurement.py: the speed benchmarks' result files never replace one another."""

import importlib.util
import json
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _measurement():
    spec = importlib.util.spec_from_file_location("measurement", BENCHMARKS / "measurement.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_second_measurement_gets_a_file_of_its_own(tmp_path):
    m = _measurement()
    target = tmp_path / "results" / "amd-epyc__threads1.json"
    first = m.write_new(target, {"v": 1})
    second = m.write_new(target, {"v": 2})
    assert first == target and second != target and second.parent == target.parent
    assert second.name.startswith("amd-epyc__threads1__") and second.suffix == ".json"
    assert json.loads(first.read_text()) == {"v": 1} and json.loads(second.read_text()) == {"v": 2}


def test_provenance_and_the_cpu_part_of_the_name(monkeypatch):
    m = _measurement()
    monkeypatch.setattr(sys, "argv", ["benchmarks/x.py", "--threads", "1"])
    p = m.provenance("x-speed")
    assert p["benchmark"] == "x-speed" and p["command"] == ["python", "benchmarks/x.py", "--threads", "1"]
    assert {"commit", "machine", "created"} <= set(p) and "cpu_capability" in p["machine"]
    assert m.cpu_slug({"cpu": "AMD EPYC 7B13 (64-Core)"}) == "amd-epyc-7b13-64-core"
    assert m.cpu_slug({"cpu": None}) == "cpu"
