"""Issue 21's speed criterion in one run: training seconds per epoch of the airbench-recipe protocol against
the CPU protocol, same arithmetic, same machine, rounds alternated.

The recipe ablation's seconds per epoch come from whole runs, each on whatever machine and load it met, so
a ratio between two rows is only as good as their conditions were alike. Here both presets train
(``noisyfit train``'s Trainer, CE, everything the preset turns on: whitening stem, Lookahead, alternating
flips, batch size...) on the same synthetic CIFAR-shaped images for one short epoch each, alternately for a
few rounds, so a change of load hits both alike. Reported: each preset's training images/s (evaluation
excluded, as the ablation's s/epoch is) and the ratio of the medians, scaled to a 47,500-image epoch.

    python benchmarks/recipe_speed.py --precision fp32     # measure, write the result file, rewrite the table
    python benchmarks/recipe_speed.py --report             # only the table (benchmarks/RECIPE_SPEED.md)
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

from throughput import synthetic  # the throughput benchmark's random CIFAR-shaped images

from noisyfit.config import load_config
from noisyfit.data.labeled import DatasetSplits
from noisyfit.engine.machine import git_commit, machine_info
from noisyfit.engine.trainer import Trainer

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "recipe-speed"
TABLE = ROOT / "benchmarks" / "RECIPE_SPEED.md"
BASE, RECIPE = "ce/cpu-cifar10n", "ce/cpu-cifar10n-airbench"
EPOCH_IMAGES = 47_500  # CIFAR-10's training set less the protocols' 5% noisy-validation hold-out


def images_per_second(preset: str, data, precision: str, threads: int | None, seed: int) -> float:
    """One epoch of ``preset`` (CE) on ``data``: its training images/s as the trainer logs it."""
    over = [f"train.precision={precision}", "train.epochs=1", "train.progress=false", "train.tensorboard=false",
            "train.checkpoint=false", "data.val_fraction=0", f"train.seed={seed}", "train.device=cpu",
            "train.eval_tta=none"]  # evaluation is excluded from the figure anyway; no test split here
    if threads:
        over.append(f"train.threads={threads}")
    cfg = load_config(preset, over)
    trainer = Trainer(cfg, None, splits=DatasetSplits(data, None), command=["benchmarks/recipe_speed.py"],
                      quiet=True)
    return float(trainer.fit()["epochs"][0]["images_per_second"])


def measure(args) -> Path:
    data = synthetic(args.images)
    rates: dict[str, list[float]] = {BASE: [], RECIPE: []}
    for preset in (BASE, RECIPE):  # warm-up: the first steps of each batch shape build their kernels
        images_per_second(preset, synthetic(2048, seed=1), args.precision, args.threads, 0)
    for r in range(args.rounds):
        order = (BASE, RECIPE) if r % 2 == 0 else (RECIPE, BASE)  # neither always goes first
        for preset in order:
            rates[preset].append(images_per_second(preset, data, args.precision, args.threads, r))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{p} {rates[p][-1]:.0f} img/s" for p in rates),
              flush=True)
    med = {p: statistics.median(v) for p, v in rates.items()}
    machine = machine_info()
    result = {"benchmark": "recipe-speed", "command": ["python", *sys.argv], "commit": git_commit(),
              "machine": machine, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "setup": {"images": args.images, "rounds": args.rounds, "precision": args.precision,
                        "threads": args.threads, "base": BASE, "recipe": RECIPE},
              "images_per_second": rates, "median_images_per_second": med,
              "seconds_per_epoch": {p: EPOCH_IMAGES / m for p, m in med.items()},
              "recipe_time_over_base": med[BASE] / med[RECIPE]}
    RESULTS.mkdir(parents=True, exist_ok=True)
    cpu = re.sub(r"[^a-z0-9]+", "-", str(machine.get("cpu", "cpu")).lower()).strip("-")
    out = RESULTS / f"{cpu}__{args.precision}__threads{args.threads or 'all'}.json"
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"recipe / base time per epoch: {result['recipe_time_over_base']:.2f}x -> {out.relative_to(ROOT)}")
    return out


def report() -> None:
    rows = []
    for f in sorted(RESULTS.glob("*.json")):
        r = json.loads(f.read_text())
        m, s, spe = r["machine"], r["setup"], r["seconds_per_epoch"]
        rows.append(f"| {m.get('cpu', '?')} | {m.get('cpu_capability', '?')} | {s['precision']} | "
                    f"{s['threads'] or 'all'} | {s['images']} × {s['rounds']} | {spe[BASE]:.0f} | {spe[RECIPE]:.0f} | "
                    f"{r['recipe_time_over_base']:.2f}× | `{f.name}` |")
    TABLE.write_text("\n".join([
        "# The airbench recipe's training time per epoch against the CPU protocol's (issue 21)", "",
        f"Generated by `python benchmarks/recipe_speed.py --report` from `benchmarks/results/recipe-speed/`. "
        f"CE with the preset `{RECIPE}` (airbench94's recipe without label smoothing: batch 1024, whitening "
        f"stem, Lookahead, alternating flips...) against `{BASE}` (the CPU protocol: batch 512), each trained "
        "one epoch on the same synthetic CIFAR-shaped images, rounds alternated; seconds per epoch = "
        f"{EPOCH_IMAGES:,} images / median training images per second (evaluation excluded, as in "
        "RECIPE_ABLATION.md). Times compare within a row only (one machine, one run; the machine may have "
        "been shared, which alternation spreads over both).", "",
        "| CPU | torch sees | arithmetic | threads | images × rounds | base s/epoch | recipe s/epoch | "
        "recipe / base | file |",
        "|---|---|---|---|---|---:|---:|---:|---|", *rows, ""]))
    print(f"wrote {TABLE.relative_to(ROOT)} ({len(rows)} row(s))")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--precision", default="fp32", choices=["fp32", "bf16"])
    ap.add_argument("--images", type=int, default=6144, help="images per epoch (a multiple of 1024 keeps "
                    "every batch of both presets full)")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--threads", type=int, help="torch threads (default: the trainer's, one per core)")
    ap.add_argument("--report", action="store_true", help="only rewrite the table")
    args = ap.parse_args(argv)
    if not args.report:
        measure(args)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
