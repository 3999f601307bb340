"""The streamed data path against the in-memory one: images/s on CIFAR-10, and peak memory on a large folder.

Two parts, each a few training runs of one epoch, every run a fresh ``noisyfit train`` process (so its peak
RSS is its own), results in one JSON:

* ``cifar``: CIFAR-10 as the JPEG image folder (``folder:cifar10-jpeg.tar.gz``, clean labels, CE) at the CPU
  protocol's network, batch and precision, ``data.stream=false`` against ``data.stream=true``, alternated
  over ``--rounds`` rounds so a load change on a shared machine hits both alike. Reported: training images/s
  (median over the epoch's steps is not kept per step, so: images over training seconds of the epoch) and
  peak RSS of the training process.
* ``big``: a folder of 60,000 JPEGs at 96x96 px (CIFAR-10 upscaled, written once under ``--work``), one epoch
  of a small network (evaluation batch 256, so activations stay small next to the data): peak memory of the
  streamed path on all 50,000 training images and on 1,000 and 10,000 of them (what the run needs apart from
  the data, and how that grows with it), against the in-memory path on all of them and the decoded size
  (1.66 GB). Memory is measured twice: the training process's own peak RSS, and the peak PSS summed over it
  and its decoding worker processes.

    python benchmarks/streaming.py --part cifar --out benchmarks/results/streaming/cifar.json
    python benchmarks/streaming.py --part big --out benchmarks/results/streaming/big96-tree.json

(``big96.json`` is the first ``big`` measurement: the trainer's RSS only, before the process tree was sampled
and before the channel-statistics fix; kept as it was.)

Run it on an otherwise idle machine: DataLoader workers take cores from training, which is the cost being
measured; another job on the machine would blur it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
CPU_PROTOCOL = ["model.backbone=fastcnn", "model.args.widths=[64,256,256]", "train.batch_size=512",
                "train.eval_batch_size=1024", "train.precision=bf16", "optim.lr=0.2", "optim.schedule=linear",
                "optim.warmup_epochs=1"]
SMALL_NET = ["model.backbone=fastcnn", "model.args.widths=[16,32,32]", "model.args.stem_width=8",
             "train.batch_size=256", "train.eval_batch_size=256", "train.precision=bf16"]


class TreeMemory(threading.Thread):
    """Peak proportional set size (PSS) of a process and all its descendants, sampled every ``every`` s.

    PSS splits each shared page among the processes mapping it, so the sum over the training process and
    its forked decoding workers counts every page once: the whole run's memory, which the training
    process's own peak RSS leaves out."""

    def __init__(self, pid: int, every: float = 0.25):
        super().__init__(daemon=True)
        self.pid, self.every, self.peak_mb, self.max_processes = pid, every, 0.0, 0
        self._done = threading.Event()

    def run(self) -> None:
        import psutil

        while not self._done.is_set():
            try:
                root = psutil.Process(self.pid)
                procs = [root, *root.children(recursive=True)]
            except psutil.Error:
                break
            total = 0
            for proc in procs:
                try:
                    total += proc.memory_full_info().pss
                except psutil.Error:  # a worker that ended between the listing and the read
                    pass
            self.peak_mb = max(self.peak_mb, total / 2**20)
            self.max_processes = max(self.max_processes, len(procs))
            self._done.wait(self.every)

    def stop(self) -> None:
        self._done.set()
        self.join()


def run_train(data: str, overrides: list[str], out: Path, stream: bool, workers: int | None) -> dict:
    """One epoch of CE in a fresh process; its results.json plus the process tree's peak PSS."""
    if (out / "results.json").is_file():
        return json.loads((out / "results.json").read_text())
    cmd = [sys.executable, "-m", "noisyfit.cli", "train", "--dataset", data, "--out", str(out), "--overwrite",
           "method.name=ce", "train.epochs=1", "train.progress=false", "train.tensorboard=false",
           "train.checkpoint=false", f"data.stream={'true' if stream else 'false'}", "data.val_fraction=0.05",
           *([f"data.workers={workers}"] if workers is not None else []), *overrides]
    t0 = time.time()
    proc = subprocess.Popen(cmd, cwd=REPO)
    memory = TreeMemory(proc.pid)
    memory.start()
    code = proc.wait()
    memory.stop()
    if code != 0:
        raise subprocess.CalledProcessError(code, cmd)
    res = json.loads((out / "results.json").read_text())
    res["bench_wall_seconds"] = time.time() - t0
    res["bench_tree_pss_peak_mb"] = memory.peak_mb
    res["bench_tree_max_processes"] = memory.max_processes
    (out / "results.json").write_text(json.dumps(res))
    return res


def summary(res: dict) -> dict:
    c = res["compute"]
    ep = res["epochs"][0]
    return {"images_per_second": c["images_per_second"], "train_seconds": ep["train_seconds"],
            "peak_rss_mb": c["peak_rss_mb"], "wall_seconds": res.get("bench_wall_seconds"),
            "test_acc": res["final"]["test_acc"], "others_cpu_share": ep.get("others_cpu_share"),
            "commit": res.get("commit"), "tree_pss_peak_mb": res.get("bench_tree_pss_peak_mb"),
            "tree_max_processes": res.get("bench_tree_max_processes")}


def part_cifar(args) -> dict:
    archive = Path(args.data_dir) / "cifar10-jpeg.tar.gz"
    rows = []
    for r in range(args.rounds):
        for stream in ((False, True) if r % 2 == 0 else (True, False)):
            out = Path(args.work) / f"cifar-r{r}-{'stream' if stream else 'memory'}"
            res = run_train(f"folder:{archive}", CPU_PROTOCOL, out, stream, args.workers)
            rows.append({"round": r, "stream": stream, **summary(res)})
            print(json.dumps(rows[-1]), flush=True)
    med = {s: float(np.median([x["images_per_second"] for x in rows if x["stream"] == s])) for s in (False, True)}
    return {"rows": rows, "median_images_per_second": {"memory": med[False], "stream": med[True]},
            "stream_over_memory": med[True] / med[False]}


def make_big_folder(root: Path, data_dir: Path, size: int = 96) -> Path:
    """CIFAR-10's 60,000 images upscaled to ``size`` px, as JPEG (quality 90) in root/<split>/<class>/."""
    done = root / ".complete"
    if done.is_file():
        return root
    from PIL import Image

    from noisyfit.data.cifar10_jpeg import load_cifar10_jpeg

    splits = load_cifar10_jpeg(data_dir)
    for split, data in (("train", splits.train), ("test", splits.test)):
        for c in data.class_names:
            (root / split / c).mkdir(parents=True, exist_ok=True)
        for i, (img, y) in enumerate(zip(data.x, data.true_labels if data.true_labels is not None else data.labels)):
            big = Image.fromarray(img).resize((size, size), Image.Resampling.BICUBIC)
            big.save(root / split / data.class_names[y] / f"{i:05d}.jpg", quality=90)
    done.write_text("ok")
    return root


def part_big(args) -> dict:
    root = make_big_folder(Path(args.work) / "big96", Path(args.data_dir))
    n = sum(1 for _ in root.glob("*/*/*.jpg"))
    decoded_mb = n * 96 * 96 * 3 / 2**20
    rows = []
    for stream, subset in ((True, 1000), (True, None), (False, None), (True, 10000)):
        # "-tree": runs whose process tree's memory was sampled too (the first runs measured the trainer only)
        out = Path(args.work) / f"big96-{'stream' if stream else 'memory'}-{subset or 'all'}-tree"
        extra = [f"data.train_subset={subset}"] if subset else []
        res = run_train(f"folder:{root}", SMALL_NET + extra, out, stream, args.workers)
        rows.append({"stream": stream, "train_images": res["data"]["num_train"] + res["data"]["num_val"],
                     **summary(res)})
        print(json.dumps(rows[-1]), flush=True)
    return {"images": n, "decoded_mb": decoded_mb, "rows": rows,
            "note": "peak_rss_mb is the training process's own; tree_pss_peak_mb sums the proportional set size of "
                    "the training process and its decoding workers (shared pages counted once)"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--part", choices=("cifar", "big"), required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--work", default=str(REPO / "runs" / "streaming"))
    p.add_argument("--data-dir", default=str(REPO.parent / "shared" / "data"))
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--workers", type=int, default=None, help="data.workers for streamed runs (default: noisyfit's)")
    args = p.parse_args()
    from noisyfit.engine.machine import git_commit, machine_info

    import torch

    result = {"benchmark": f"streaming-{args.part}", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "commit": git_commit(), "machine": machine_info(torch.device("cpu")), "cpu_count": os.cpu_count(),
              **(part_cifar(args) if args.part == "cifar" else part_big(args))}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
