"""benchmarks/jpeg_gap.py: PSNR by hand, the alignment guard, and the table's paired differences."""

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("jpeg_gap", ROOT / "benchmarks" / "jpeg_gap.py")
jg = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(jg)


def test_psnr_by_hand():
    a = np.zeros((2, 4, 4, 3), dtype=np.uint8)
    b = a.copy()
    b[0] += 1  # MSE 1 -> 10 log10(255^2)
    b[1] += 10  # MSE 100 -> 20 dB less
    got = jg.psnr(a, b)
    assert got[0] == pytest.approx(20 * math.log10(255))
    assert got[1] == pytest.approx(20 * math.log10(255) - 20)


def test_misaligned_pairs_stop_the_script_with_exit_2():
    rng = np.random.default_rng(0)
    x = rng.integers(20, 236, (20, 8, 8, 3), dtype=np.uint8)
    noisy = (x.astype(int) + rng.integers(-13, 14, x.shape)).astype(np.uint8)  # MSE about 60: about 30.3 dB
    good = {s: {"lossless": x, "jpeg": noisy} for s in ("train", "test")}
    assert jg.check_alignment(good)["train"]["images"] == 20
    shifted = {s: {"lossless": x, "jpeg": np.roll(noisy, 1, axis=0)} for s in ("train", "test")}
    with pytest.raises(SystemExit) as e:
        jg.check_alignment(shifted)
    assert e.value.code == 2


def test_table_pairs_runs_by_seed(tmp_path):
    accs = {("lossless", 0): (0.70, 0.69), ("jpeg", 0): (0.68, 0.685), ("lossless", 1): (0.72, 0.70),
            ("jpeg", 1): (0.71, 0.71)}
    for (version, seed), (lo, jp) in accs.items():
        (tmp_path / f"base__{version}__seed{seed}.json").write_text(json.dumps({
            "tag": "base", "train_version": version, "seed": seed, "epochs": 20, "preset": "p", "set": [],
            "test_acc": {"lossless": lo, "jpeg": jp}, "train_seconds_total": 10.0}))
    text = jg.write_table(tmp_path, tmp_path / "t.md")
    # JPEG training minus lossless training, tested on lossless: -2 and -1 points -> -1.50 +- 0.71
    assert "| Δ JPEG − lossless training, tested on lossless | | | -1.50 ± 0.71 (n=2) |" in text
    # tested on JPEG: -0.5 and +1 -> 0.25 +- 1.06
    assert "| Δ JPEG − lossless training, tested on jpeg | | | 0.25 ± 1.06 (n=2) |" in text
    assert "| lossless | 71.00 ± 1.41 (n=2) | 69.50 ± 0.71 (n=2) | -1.50 ± 0.71 (n=2) |" in text
