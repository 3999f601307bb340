"""Images/s of noisyfit's training loop against a bare PyTorch loop on the same net, batch and precision.

The bare loop is the floor of what any trainer can do: pre-built float tensors already normalised,
forward, backward, SGD step, nothing else. noisyfit's loop adds the per-sample index, the batched
crop+flip augmentation from uint8 storage, the schedule, the NaN check and the progress bar. Both
train the same fastcnn from the same init on the same synthetic CIFAR-shaped data; the two are run
alternately (several rounds) so that a load change on the shared machine hits both alike.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F

from noisyfit.config import load_config
from noisyfit.data.labeled import DatasetSplits, LabeledData
from noisyfit.engine.machine import git_commit, machine_info
from noisyfit.engine.trainer import Trainer
from noisyfit.models.backbones import create_backbone


def synthetic(n: int, seed: int = 0) -> LabeledData:
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    y = rng.integers(0, 10, n)
    return LabeledData(x, y, [str(i) for i in range(10)], name="synthetic-cifar")


def bare_loop(x: torch.Tensor, y: torch.Tensor, widths, batch: int, precision: str, seed: int, *,
              channels_last: bool = True) -> float:
    torch.manual_seed(seed)
    net = create_backbone("fastcnn", num_classes=10, input_shape=(3, 32, 32), widths=widths)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9, nesterov=True, weight_decay=5e-4)
    xs = x.contiguous(memory_format=fmt)
    n_steps = len(y) // batch
    t0 = time.perf_counter()
    for s in range(n_steps):
        xb, yb = xs[s * batch:(s + 1) * batch], y[s * batch:(s + 1) * batch]
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            loss = F.cross_entropy(net(xb).float(), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return n_steps * batch / (time.perf_counter() - t0)


def noisyfit_loop(data: LabeledData, widths, batch: int, precision: str, seed: int) -> float:
    cfg = load_config(None, [
        "model.backbone=fastcnn", f"model.args.widths={list(widths)}", f"train.batch_size={batch}",
        f"train.precision={precision}", "train.epochs=1", "train.progress=true", "train.tensorboard=false",
        "train.checkpoint=false", "data.val_fraction=0", "optim.lr=0.05", "optim.schedule=linear",
        f"train.seed={seed}", "method.name=ce", "train.device=cpu"])
    trainer = Trainer(cfg, None, splits=DatasetSplits(data, None), command=["benchmarks/throughput.py"])
    trainer.logger.console.quiet = True
    r = trainer.fit()
    return r["epochs"][0]["images_per_second"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10240)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--widths", default="64,256,256")
    ap.add_argument("--precision", default="bf16")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--out")
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    data = synthetic(args.images)
    # the bare loop gets the same images, normalised once up front (its best case)
    x = torch.from_numpy(data.x).permute(0, 3, 1, 2).float().div(255)
    x = (x - x.mean((0, 2, 3), keepdim=True)) / x.std((0, 2, 3), keepdim=True)
    y = torch.from_numpy(data.labels)
    bare, ours = [], []
    bare_loop(x[: 2 * args.batch], y[: 2 * args.batch], widths, args.batch, args.precision, 0)  # warm-up
    for r in range(args.rounds):
        bare.append(bare_loop(x, y, widths, args.batch, args.precision, r))
        ours.append(noisyfit_loop(data, widths, args.batch, args.precision, r))
        print(f"round {r + 1}: bare {bare[-1]:.0f} img/s, noisyfit {ours[-1]:.0f} img/s", flush=True)
    result = {
        "benchmark": "throughput", "command": ["python", *sys.argv], "commit": git_commit(),
        "machine": machine_info(), "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "setup": {"images": args.images, "batch": args.batch, "widths": widths, "precision": args.precision,
                  "rounds": args.rounds, "net": "fastcnn", "optimiser": "SGD nesterov"},
        "bare_images_per_second": bare, "noisyfit_images_per_second": ours,
        "median_bare": statistics.median(bare), "median_noisyfit": statistics.median(ours),
        "ratio_of_medians": statistics.median(ours) / statistics.median(bare),
        "note": "noisyfit includes crop+flip augmentation from uint8 storage; the bare loop has none.",
    }
    print(json.dumps({k: result[k] for k in ("median_bare", "median_noisyfit", "ratio_of_medians")}))
    if args.out:
        from pathlib import Path

        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
