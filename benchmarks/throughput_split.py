"""Does a change to the trainer cost images/s? benchmarks/throughput.py on two checkouts, alternately, in one session.

Each round runs ``throughput.py`` (noisyfit's loop against a bare PyTorch loop on the same net, batch and
precision) once with the old checkout's code and once with the new one's, the order swapped every round. The
figure compared is noisyfit's images/s over the bare loop's *within* each run, so the machine's speed and
load cancel; the old and new ratios are then compared.

    git worktree add /tmp/nf-before 08b08cd
    python benchmarks/throughput_split.py --before /tmp/nf-before --out benchmarks/results/throughput-split.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def one(checkout: Path, out: Path, images: int, rounds: int) -> dict:
    env = {**os.environ, "PYTHONPATH": str(checkout / "src")}
    subprocess.run([sys.executable, str(checkout / "benchmarks" / "throughput.py"), "--out", str(out),
                    "--images", str(images), "--rounds", str(rounds)], check=True, env=env, cwd=checkout)
    return json.loads(out.read_text())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--before", required=True, help="a checkout of the code before the change")
    p.add_argument("--after", default=str(REPO), help="the checkout with the change (default: this one)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--images", type=int, default=10240)
    p.add_argument("--inner-rounds", type=int, default=3, help="throughput.py's own rounds per run")
    p.add_argument("--out", required=True)
    args = p.parse_args()
    sides = {"before": Path(args.before).resolve(), "after": Path(args.after).resolve()}
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            for side in (("before", "after") if r % 2 == 0 else ("after", "before")):
                res = one(sides[side], Path(tmp) / f"{side}{r}.json", args.images, args.inner_rounds)
                runs.append({"round": r, "side": side, "commit": res.get("commit"),
                             "median_bare": res["median_bare"], "median_noisyfit": res["median_noisyfit"],
                             "ratio_of_medians": res["ratio_of_medians"]})
                print(json.dumps(runs[-1]), flush=True)
    ratio = {s: statistics.median(x["ratio_of_medians"] for x in runs if x["side"] == s) for s in sides}
    result = {"benchmark": "throughput-split", "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "setup": {"images": args.images, "rounds": args.rounds, "inner_rounds": args.inner_rounds,
                        "net": "fastcnn 64/256/256", "batch": 512, "precision": "bf16"},
              "runs": runs, "median_ratio": ratio, "after_over_before": ratio["after"] / ratio["before"],
              "note": "ratio = noisyfit's images/s over the bare loop's in the same run; after_over_before >= 1 means "
                      "the change costs nothing"}
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"after/before = {result['after_over_before']:.3f}; wrote {args.out}")


if __name__ == "__main__":
    main()
