"""What sharing the CPU costs: images/s of fastcnn training, one process or two at once, 2 threads or 1.

Why: on this 2-core machine a long-suite CE run that takes about 30 s per epoch alone took 180 to 450 s
per epoch while a second training process ran next to it, both with torch's default of one thread per
core; restarted with one thread each, the same run took about 45 s per epoch. Each torch op splits its
work over the intra-op threads and waits for all of them; when two processes each want both cores, one
of a process's threads is often descheduled and the other waits for it at every op. The smaller the
batch, the shorter the op and the larger that cost.

Each scenario starts P worker processes at once (P = 1 or 2), each with T torch threads (T = 1 or 2,
set by OMP_NUM_THREADS before torch loads), each training fastcnn 64/256/256 on synthetic CIFAR-shaped
tensors (bare loop: forward, backward, SGD; bf16 autocast as the CPU protocol) for a fixed wall time
after a warm-up; it reports each worker's images/s. The OpenMP wait policy is a dimension too: with
OMP_WAIT_POLICY=passive a thread that waits sleeps at once instead of spinning first. Run it on an
otherwise idle machine (the share of CPU time others used in the 3 s before is recorded):

    python benchmarks/contention.py --out benchmarks/results/contention.json
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

# (processes, threads per process, OMP_WAIT_POLICY: None = the OpenMP runtime's default)
SCENARIOS = ((1, 2, None), (1, 1, None), (2, 2, None), (2, 1, None),
             (1, 2, "passive"), (2, 2, "passive"), (2, 1, "passive"))


def worker(batch: int, seconds: float, warmup_steps: int, widths: list[int]) -> dict:
    import torch
    import torch.nn.functional as F

    from noisyfit.models.backbones import create_backbone

    torch.manual_seed(0)
    net = create_backbone("fastcnn", num_classes=10, input_shape=(3, 32, 32), widths=widths)
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=5e-4)
    x = torch.randn(batch, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(warmup_steps):
        step()
    steps, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        step()
        steps += 1
    elapsed = time.perf_counter() - t0
    return {"threads": torch.get_num_threads(), "steps": steps, "seconds": elapsed,
            "images_per_second": steps * batch / elapsed}


def run_scenario(processes: int, threads: int, wait_policy: str | None, batch: int, seconds: float,
                 warmup_steps: int, widths: list[int]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    env.pop("OMP_WAIT_POLICY", None)
    if wait_policy:
        env["OMP_WAIT_POLICY"] = wait_policy
    cmd = [sys.executable, __file__, "--worker", "--batch", str(batch), "--seconds", str(seconds),
           "--warmup-steps", str(warmup_steps), "--widths", ",".join(map(str, widths))]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True) for _ in range(processes)]
    workers = []
    for p in procs:
        out, _ = p.communicate()
        if p.returncode != 0:
            raise RuntimeError(f"worker failed with exit code {p.returncode}")
        workers.append(json.loads(out.strip().splitlines()[-1]))
    per = [w["images_per_second"] for w in workers]
    return {"processes": processes, "threads": threads, "omp_wait_policy": wait_policy, "batch": batch,
            "workers": workers,
            "images_per_second_each": sum(per) / len(per), "images_per_second_total": sum(per)}


def table(rows: list[dict]) -> str:
    lines = ["| batch | processes × threads | OMP_WAIT_POLICY | images/s per process | images/s in all "
             "| per process vs alone, 2 threads, default policy |", "|---|---|---|---|---|---|"]
    for r in rows:
        alone = next(a for a in rows if a["batch"] == r["batch"] and a["processes"] == 1 and a["threads"] == 2
                     and not a.get("omp_wait_policy"))
        lines.append(f"| {r['batch']} | {r['processes']} × {r['threads']} | {r.get('omp_wait_policy') or 'default'} | "
                     f"{r['images_per_second_each']:.0f} | "
                     f"{r['images_per_second_total']:.0f} | "
                     f"{r['images_per_second_each'] / alone['images_per_second_each']:.2f}× |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", default="128,512", help="batch sizes to measure")
    ap.add_argument("--seconds", type=float, default=20.0, help="timed wall seconds per worker")
    ap.add_argument("--warmup-steps", type=int, default=3)
    ap.add_argument("--widths", default="64,256,256")
    ap.add_argument("--out", help="result JSON (a markdown table is written next to it)")
    args = ap.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    if args.worker:
        print(json.dumps(worker(args.batch, args.seconds, args.warmup_steps, widths)))
        return 0
    from noisyfit.engine.machine import OthersCpuMeter, git_commit, machine_info

    meter = OthersCpuMeter()  # is the machine idle? (the load average lags by minutes)
    time.sleep(3.0)
    idle_check = meter.share()
    result = {"benchmark": "contention", "commit": git_commit(), "machine": machine_info(),
              "others_cpu_share_before": idle_check, "seconds_per_worker": args.seconds,
              "widths": widths, "precision": "bf16", "rows": []}
    for batch in (int(b) for b in args.batches.split(",")):
        for processes, threads, policy in SCENARIOS:
            row = run_scenario(processes, threads, policy, batch, args.seconds, args.warmup_steps, widths)
            result["rows"].append(row)
            print(f"batch {batch}: {processes} process(es) x {threads} thread(s), wait policy "
                  f"{policy or 'default'}: "
                  f"{row['images_per_second_each']:.0f} images/s each", flush=True)
    print(table(result["rows"]))
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=1) + "\n")
        out.with_suffix(".md").write_text(
            "# Sharing the CPU\n\nGenerated by `benchmarks/contention.py`; do not edit by hand. "
            f"fastcnn {'/'.join(map(str, widths))}, bf16, synthetic CIFAR-shaped batches, bare training loop; "
            f"each worker timed for {args.seconds:.0f} s after {args.warmup_steps} warm-up steps, all workers "
            f"of a row at once. Share of the CPU time other processes used in the 3 s before the first row: "
            f"{idle_check if idle_check is None else format(idle_check, '.0%')} "
            f"({result['machine']['cpu_count']} CPUs).\n\n" + table(result["rows"]) + "\n")
        print(f"wrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
