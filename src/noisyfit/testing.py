"""Check a method against the trainer's contract: for authors of methods outside noisyfit.

>>> from noisyfit.testing import check_method
>>> report = check_method("mymethods/boot.py:SoftBootstrap")   # doctest: +SKIP

:func:`check_method` trains the method on small synthetic data (Gaussian blobs, 30% symmetric noise) twice: once
straight through, once cut inside an epoch and resumed from the checkpoint. It raises ``AssertionError`` naming the
first difference between the two (an epoch figure, a weight or buffer, a per-sample output), which means the method
keeps state between steps outside its buffers (return it from ``transient_state``, see
:class:`noisyfit.methods.base.Method`). It also checks the per-sample outputs every method must give: a clean
score per example, boolean flags, suggested labels among the classes and a noise-rate estimate in [0, 1]. The
built-in methods pass it: ``tests/test_mid_epoch_resume.py`` makes the same comparison
(:func:`assert_same_run`) for each, with its warm-up shortened.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np


def _blobs(n: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around fixed centres; ``seed`` draws the examples."""
    centres = np.random.default_rng(0).normal(0, 3.0, (classes, 8))
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    return (centres[y] + rng.normal(0, 1, (n, 8))).astype(np.float32), y


def same_tensor(a, b) -> bool:
    """Bit-equal tensors (NaN equal to NaN: scores not yet computed), or equal plain values."""
    import torch

    if torch.is_tensor(a):
        if not torch.is_tensor(b) or a.shape != b.shape or a.dtype != b.dtype:
            return False
        if a.is_floating_point():
            return bool(torch.equal(a.isnan(), b.isnan()) and torch.equal(a.nan_to_num(), b.nan_to_num()))
        return bool(torch.equal(a, b))
    return a == b


def assert_same_run(dir_a: str | Path, results_a: dict, dir_b: str | Path, results_b: dict) -> dict:
    """Assert that two finished runs are identical: every per-epoch figure but timings, the health figures,
    every weight and buffer of the last checkpoint, every ``per_sample.npz`` array. Returns the counts compared."""
    import torch

    figures = 0
    for a, b in zip(results_a["epochs"], results_b["epochs"], strict=True):
        for key, value in a.items():
            if isinstance(value, float) and not any(t in key for t in ("seconds", "per_second", "cpu")):
                assert b.get(key) == value, (f"epoch {a['epoch'] + 1}: {key} is {b.get(key)} in the second run, "
                                             f"{value} in the first")
                figures += 1
        assert b.get("health") == a.get("health"), f"epoch {a['epoch'] + 1}: the health figures differ"
    wa = torch.load(Path(dir_a) / "checkpoint.pt", weights_only=False)["method"]
    wb = torch.load(Path(dir_b) / "checkpoint.pt", weights_only=False)["method"]
    assert set(wa) == set(wb), f"state keys differ: {sorted(set(wa) ^ set(wb))}"
    for k in wa:
        assert same_tensor(wa[k], wb[k]), (f"{k} differs: the method keeps state between steps outside its buffers "
                                           "(return it from transient_state)")
    pa, pb = np.load(Path(dir_a) / "per_sample.npz"), np.load(Path(dir_b) / "per_sample.npz")
    for key in pa.files:
        assert np.array_equal(pa[key], pb[key], equal_nan=pa[key].dtype.kind == "f"), f"per_sample {key} differs"
    return {"epoch_figures": figures, "state_tensors": len(wa), "per_sample_arrays": len(pa.files)}


def check_method(method: str, *, overrides: list[str] | tuple[str, ...] = (), epochs: int = 4,
                 cut: tuple[int, int] = (2, 4), workdir: str | Path | None = None) -> dict:
    """Train ``method`` straight through and cut-and-resumed on synthetic data; assert both are identical.

    Parameters
    ----------
    method : str
        A method name as ``--method`` takes it (built-in, registered, or ``path/file.py:Class``).
    overrides : sequence of str
        Config overrides, e.g. a shorter warm-up so that the cut falls where the method's selection state matters
        (``method.args.warmup_epochs=1``).
    epochs : int
        Epochs of each run (720 training examples, batch 64: 11 steps each).
    cut : (epoch, step)
        Where the second run stops: after ``step`` steps of the 0-based ``epoch``.
    workdir : path, optional
        Where the two run folders go (default: a temporary folder, removed afterwards).

    Returns
    -------
    dict
        ``epochs``, ``compared`` (how many epoch figures, weights / buffers and per-sample arrays were compared),
        ``final_test_acc`` and ``estimated_noise_rate`` of the run.
    """
    from noisyfit.config import load_config
    from noisyfit.data.labeled import DatasetSplits, LabeledData
    from noisyfit.engine.trainer import Trainer

    if not 0 <= cut[0] < epochs:
        raise ValueError(f"cut {cut}: its epoch must be one of the run's {epochs} epochs (0-based)")
    x, y = _blobs(800, 3, 1)
    xt, yt = _blobs(300, 3, 2)
    names = ["a", "b", "c"]
    splits = DatasetSplits(LabeledData(x, y, names, name="blobs"), LabeledData(xt, yt, names, name="blobs-test"))
    over = ["model.backbone=mlp", "model.args.hidden=[32]", f"train.epochs={epochs}", "train.batch_size=64",
            "train.progress=false", "train.tensorboard=false", "train.precision=fp32", "train.device=cpu",
            "optim.lr=0.05", "data.noise=sym:0.3", f"method.name={method}",
            # 80 validation examples (the default 5% = 40 warned that its epoch choice is chance) and one thread
            # (a tiny MLP; two threads warned about other processes): warnings about this check, not the method
            "data.val_fraction=0.1", "train.threads=1", *overrides]
    with tempfile.TemporaryDirectory(prefix="noisyfit-check-") as tmp:
        root = Path(workdir) if workdir is not None else Path(tmp)
        full = Trainer(load_config(None, over), root / "straight", splits=splits, quiet=True).fit()
        stopped = Trainer(load_config(None, over), root / "cut", splits=splits, quiet=True).fit(stop_at_step=cut)
        assert stopped is None, f"the run did not stop at {cut}: the epoch has fewer steps"
        resumed = Trainer(load_config(None, over), root / "cut", splits=splits, resume=True, quiet=True).fit()
        compared = assert_same_run(root / "straight", full, root / "cut", resumed)
        pa = np.load(root / "straight" / "per_sample.npz")
        n = len(pa["train_index"])
        for key, what in (("clean_score", "clean_scores"), ("flag", "noisy_flags"), ("suggested", "suggested_labels")):
            assert key in pa.files, f"the method gives no {what} (per_sample {key})"
            assert len(pa[key]) == n, f"{what} has {len(pa[key])} rows for {n} training examples"
        assert pa["flag"].dtype == bool, f"noisy_flags are {pa['flag'].dtype}, not bool"
        s = pa["suggested"]
        assert ((s >= -1) & (s < 3)).all(), "suggested labels outside the classes (-1 = none)"
        rate = (full.get("method") or {}).get("estimated_noise_rate")
        assert rate is None or 0.0 <= rate <= 1.0, f"estimated noise rate {rate} outside [0, 1]"
        return {"method": method, "epochs": epochs, "cut": list(cut),
                "compared": compared,
                "final_test_acc": (full.get("final") or {}).get("test_acc"), "estimated_noise_rate": rate}
