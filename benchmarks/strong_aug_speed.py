"""What a strong view (CIFAR-10 AutoAugment, one sub-policy per image) costs on this machine, with kornia's
per-image equalisation against noisyfit's batched one (noisyfit.data.equalize), rounds alternated.

Strong views are made for every labelled and unlabelled sample of PLReMix, DivideMix+PLR, CE+PLR and
Jump-teaching's steps. Both variants draw the same random numbers and give the same images (checked here on
every round, and in tests/test_equalize.py), so only the time differs. For scale the same run times one
fastcnn 64/256/256 training step (forward, backward, SGD) per image in float32, batch 128 (the long suite's).

    python benchmarks/strong_aug_speed.py --threads 1     # measure, write the result file, rewrite the table
    python benchmarks/strong_aug_speed.py --report        # only the table (benchmarks/STRONG_AUG_SPEED.md)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import torch
from measurement import cpu_slug, provenance, write_new

from noisyfit.data.augment import Augmenter
from noisyfit.models.backbones import create_backbone

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "strong-aug-speed"
TABLE = ROOT / "benchmarks" / "STRONG_AUG_SPEED.md"


def augmenters() -> dict[str, Augmenter]:
    from kornia.augmentation.auto import AutoAugment

    stats = dict(mean=torch.full((3,), 0.5), std=torch.full((3,), 0.25), is_image=True)
    kornia_eq = Augmenter(**stats)
    kornia_eq._strong = AutoAugment(policy="cifar10")  # kornia as it comes: equalize loops per image
    return {"kornia equalize": kornia_eq, "batched equalize": Augmenter(**stats)}


def ms_per_image(fn, n: int) -> float:
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1000 / n


def train_step_ms(x: torch.Tensor, batch: int) -> float:
    net = create_backbone("fastcnn", num_classes=10, input_shape=(3, 32, 32), widths=[64, 256, 256])
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    xb = x[:batch].float().div(255).contiguous(memory_format=torch.channels_last)
    y = torch.zeros(batch, dtype=torch.long)

    def step():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(xb), y).backward()
        opt.step()

    step()  # builds the kernels
    return ms_per_image(lambda: [step() for _ in range(3)], 3 * batch)


def measure(args) -> Path:
    if args.threads:
        torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, 32, 32), dtype=torch.uint8, generator=g)
    augs = augmenters()
    for a in augs.values():
        a.strong(x[:16])  # builds kornia's modules
    times: dict[str, list[float]] = {k: [] for k in augs}
    step: list[float] = []
    for r in range(args.rounds):
        order = list(augs) if r % 2 == 0 else list(reversed(augs))
        outs = {}
        for name in order:
            torch.manual_seed(r)
            times[name].append(ms_per_image(lambda: outs.__setitem__(name, augs[name].strong(x)), args.batch))
        if not torch.equal(*outs.values()):
            raise SystemExit("the two variants gave different images: the comparison is void")
        step.append(train_step_ms(x, 128))
        print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items())
              + f" ms/image; train step {step[-1]:.2f} ms/image", flush=True)
    med = {k: statistics.median(v) for k, v in times.items()}
    result = {**provenance("strong-aug-speed"),
              "setup": {"batch": args.batch, "rounds": args.rounds, "threads": args.threads,
                        "policy": "kornia AutoAugment cifar10, one sub-policy per image",
                        "train_step": "fastcnn 64/256/256, fp32, batch 128, channels_last"},
              "ms_per_image": times, "median_ms_per_image": med,
              "train_step_ms_per_image": step, "median_train_step_ms_per_image": statistics.median(step),
              "kornia_over_batched": med["kornia equalize"] / med["batched equalize"]}
    out = write_new(RESULTS / f"{cpu_slug(result['machine'])}__threads{args.threads or 'all'}.json", result)
    print(f"kornia / batched: {result['kornia_over_batched']:.2f}x -> {out.relative_to(ROOT)}")
    return out


def report() -> None:
    rows = []
    for f in sorted(RESULTS.glob("*.json")):
        r = json.loads(f.read_text())
        m, s, med = r["machine"], r["setup"], r["median_ms_per_image"]
        rows.append(f"| {m.get('cpu', '?')} | {m.get('cpu_capability', '?')} | {s['threads'] or 'all'} | "
                    f"{s['batch']} × {s['rounds']} | {med['kornia equalize']:.2f} | {med['batched equalize']:.2f} | "
                    f"{r['kornia_over_batched']:.2f}× | {r['median_train_step_ms_per_image']:.2f} | `{f.name}` |")
    TABLE.write_text("\n".join([
        "# A strong view's cost: kornia's equalisation against the batched one", "",
        "Generated by `python benchmarks/strong_aug_speed.py --report` from `benchmarks/results/strong-aug-speed/`. "
        "Milliseconds per image of one strong view (crop, flip, kornia's CIFAR-10 AutoAugment with a sub-policy "
        "drawn per image) on random uint8 32×32 images, median of alternated rounds; both variants give the same "
        "images from the same draws (checked every round). *train step*: one fastcnn 64/256/256 training step "
        "per image, float32, batch 128, in the same run, for scale. Times compare within a row only (one "
        "machine, one run, possibly shared; alternation spreads a load over both).", "",
        "| CPU | torch sees | threads | images × rounds | kornia equalize ms/img | batched ms/img | "
        "kornia / batched | train step ms/img | file |",
        "|---|---|---|---|---:|---:|---:|---:|---|", *rows, ""]))
    print(f"wrote {TABLE.relative_to(ROOT)} ({len(rows)} row(s))")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--threads", type=int, help="torch threads (default: torch's)")
    ap.add_argument("--report", action="store_true", help="only rewrite the table")
    args = ap.parse_args(argv)
    if not args.report:
        measure(args)
    report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
