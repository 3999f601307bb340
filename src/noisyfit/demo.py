"""`noisyfit demo`: scikit-learn's digits with 40% symmetric noise, CE against a robust loss.

Small enough to finish in well under a minute on 2 CPU cores, and it exercises the whole path:
data, noise injection, noisy validation split, trainer, per-sample clean scores, detection metrics.
"""

from __future__ import annotations

from pathlib import Path

from noisyfit.config import load_config


def demo_config(method: str, seed: int):
    return load_config(None, [
        "data.dataset=digits", "data.noise=sym:0.4", "data.val_fraction=0.1",
        "model.backbone=mlp", "model.args.hidden=[256,256]",
        "train.epochs=30", "train.batch_size=64", "train.progress=false", "train.tensorboard=false",
        "train.device=cpu", "train.precision=fp32",
        "optim.lr=0.05", "optim.schedule=cosine", "optim.weight_decay=5e-4",
        f"train.seed={seed}", f"method.name={method}",
    ])


def run_demo(methods=("ce", "gce"), seed: int = 0, out: str | None = None) -> list[tuple[str, dict]]:
    from noisyfit.engine.trainer import Trainer

    rows = []
    for m in methods:
        cfg = demo_config(m, seed)
        run_dir = Path(out) / m if out else None
        trainer = Trainer(cfg, run_dir, command=["noisyfit", "demo"], quiet=True)
        rows.append((m, trainer.fit()))
    return rows
