import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

WORKER = Path(__file__).with_name("ddp_worker.py")


def _run(cmd, cwd):
    res = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process(tmp_path):
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    _run([sys.executable, str(WORKER), str(one)], tmp_path)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(WORKER),
          str(two)], tmp_path)
    a = np.load(one / "rank0.npz")
    r0, r1 = np.load(two / "rank0.npz"), np.load(two / "rank1.npz")
    assert int(r0["world"]) == 2
    # Each rank trains on half of every global batch; averaged gradients equal the 1-process ones
    # (no batch norm here), so the weights agree up to float summation order.
    np.testing.assert_allclose(r0["weights"], a["weights"], atol=1e-4)
    np.testing.assert_array_equal(r0["weights"], r1["weights"])
    np.testing.assert_allclose(r0["losses"], a["losses"], rtol=1e-4)
    # Per-sample state written by each rank for its own samples is gathered on every rank.
    for r in (r0, r1):
        np.testing.assert_array_equal(r["seen"], a["seen"])
        np.testing.assert_allclose(r["last_loss"], a["last_loss"], atol=1e-4)
        np.testing.assert_allclose(r["clean"], a["clean"], atol=1e-4)
    assert float(r0["test_acc"]) == pytest.approx(float(a["test_acc"]), abs=1e-6)
