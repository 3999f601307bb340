"""benchmarks/jpeg_gap.py: PSNR by hand, the alignment guard, the table's paired differences, --evaluate."""

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


def test_evaluate_tests_a_finished_run_as_it_was_trained_on_both_versions(tmp_path):
    # A tiny image run trained through the data-set name (as bench runs are), then --evaluate's function on
    # "pairs" whose JPEG version is the lossless one mirrored: the run's mirror TTA must score both the same,
    # and without TTA each must equal what the trained model itself predicts on those images.
    import torch

    from noisyfit.config import load_config
    from noisyfit.data.labeled import DatasetSplits, LabeledData
    from noisyfit.data.tabular import save_npz
    from noisyfit.engine.ema import eval_weights
    from noisyfit.engine.run_data import to_device_tensor
    from noisyfit.engine.trainer import Trainer

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 120)
    x = np.clip(rng.integers(0, 160, (120, 32, 32, 3)) + 40 * y[:, None, None, None], 0, 255).astype(np.uint8)
    names = ["a", "b", "c"]
    data = save_npz(DatasetSplits(LabeledData(x[:90], y[:90], names), LabeledData(x[90:], y[90:], names)),
                    tmp_path / "imgs")
    cfg = load_config(None, [f"data.dataset=npz:{data}", "data.val_fraction=0", "model.backbone=fastcnn",
                             "model.args.widths=[8,8,8]", "model.args.stem_width=8", "train.epochs=2",
                             "train.batch_size=32", "train.precision=fp32", "train.device=cpu",
                             "train.progress=false", "train.tensorboard=false", "train.eval_tta=mirror",
                             "train.ema=ema"])
    trained = Trainer(cfg, tmp_path / "run")
    trained.fit()
    test_x, test_y = x[90:], y[90:]
    pairs = {"test": {"lossless": test_x, "jpeg": np.ascontiguousarray(test_x[:, :, ::-1]), "y": test_y,
                      "class_names": np.array(names)}}
    r = jg.evaluate_run(pairs, tmp_path / "run")
    assert r["eval_tta"] == "mirror" and r["model"]["weights"] == "final" and r["model"]["epoch"] == 1
    assert r["test_images"] == 30
    assert r["test_acc"]["run_tta"]["lossless"] == r["test_acc"]["run_tta"]["jpeg"]  # mirror TTA sees both views
    with torch.no_grad(), eval_weights(trained.weight_avg, trained.method):
        for version in ("lossless", "jpeg"):
            xt = to_device_tensor(jg.labeled(pairs, "test", version), trained.device)
            logits = trained.predict_over(xt, trained.method.predict_logits)
            own = float(np.mean(logits.argmax(1).numpy() == test_y))
            assert r["test_acc"]["no_tta"][version] == own
    with pytest.raises(Exception, match="not found; pass the --out folder of a finished"):
        jg.evaluate_run(pairs, tmp_path / "nothing")
    (tmp_path / "res").mkdir()
    (tmp_path / "res" / "eval__tiny.json").write_text(json.dumps(r))
    assert "| `tiny` |" in jg.write_table(tmp_path / "res", tmp_path / "t.md")


def test_whitening_spectrum_by_hand():
    # the lossless version: random images; the "JPEG" one: the same with one pixel column per image changed.
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (40, 6, 6, 3), dtype=np.uint8)
    same = jg.whitening_spectrum({"train": {"lossless": x, "jpeg": x.copy()}})
    lo, jp = same["versions"]["lossless"], same["versions"]["jpeg"]
    # eigenvalues of E[p p^T] over every 2x2 patch of the channel-normalised images, largest first
    xn = x / 255.0
    xn = (xn - xn.mean((0, 1, 2))) / xn.std((0, 1, 2))
    patches = np.stack([xn[:, i:i + 2, j:j + 2, :].transpose(0, 3, 1, 2).reshape(40, 12)
                        for i in range(5) for j in range(5)], 1).reshape(-1, 12)
    want = np.linalg.eigvalsh(patches.T @ patches / len(patches))[::-1]
    np.testing.assert_allclose(lo["eigenvalues"], want, rtol=1e-6)
    np.testing.assert_allclose(lo["gains"], 1 / np.sqrt(want + 5e-4), rtol=1e-6)
    assert jp["eigenvalues"] == lo["eigenvalues"] and max(same["error_over_signal_jpeg_basis"]) == 0
    changed = x.copy()
    changed[:, :, 0, :] = 128  # a compression that loses the first column: a nonzero error, below the signal
    d = jg.whitening_spectrum({"train": {"lossless": x, "jpeg": changed}})["error_over_signal_jpeg_basis"]
    assert 0 < min(d) and max(d) < 10 and len(d) == 12
    lines = "\n".join(jg._spectrum_lines(same))
    assert "| 1 |" in lines and "| 12 |" in lines and "| 1.00 | 0.00 |" in lines  # gain ratio 1, no error
