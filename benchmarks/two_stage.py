"""Issue 19, item 6: the two-stage pipeline (detect -> relabel or drop -> retrain CE) on CIFAR-10N worst.

cleanlab's CleanLearning workflow, measured at the CPU protocol against training one method once:

1. detect: ``noisyfit audit DATA --method M --config M/cpu-cifar10n`` (the method's own flags, all
   50,000 training images, no validation split; ELR by default: F1 85 in about 13 minutes in
   benchmarks/AUDIT.md), or ``--detector oof``: the audit's out-of-fold CE + confident learning
   (5 folds x CE's 12 epochs, about 70 minutes);
2. clean: ``noisyfit audit --run ...`` (or ``--pred-probs``) with ``--clean ACTION`` writes
   ``cleaned_labels.npz`` (no training: seconds);
3. retrain: ``noisyfit train --config ce/cpu-cifar10n --noisy-labels cleaned_labels.npz`` (CE's preset:
   the same 5% noisy validation split as the CE rows, minus the dropped images);
4. result: ``benchmarks/results/two-stage/<detector>-<action>__<label set>__seed<S>.json``: test
   accuracy (last and selected epoch), R = (acc - CE) / (oracle - CE) with CE and the oracle from the
   ``cpu-cifar10n`` suite's stored runs (means over seeds; ``--baselines train`` trains both here
   instead), the detector's flags (P/R/F1/AUROC), the cleaning counts, and the cost in seconds (wall
   time of every stage, and the trainers' own training seconds), beside the detector method's own run:
   does the pipeline beat training that single method once?

Run folders go to ``runs/two-stage/`` (not committed). Resumable: a finished stage is skipped, a killed
training resumes from its checkpoint (``--resume``), and the wall seconds of every attempt are summed
(``runs/two-stage/.../timings.json``). Run it alone on the machine (DEVELOPERS.md); with the defaults
about 30 minutes on 2 cores (ELR ~13 min, CE ~15 min).

    python benchmarks/two_stage.py                                  # ELR flags, relabel-or-drop at 0.5
    python benchmarks/two_stage.py --clean drop                     # reuses the ELR detection
    python benchmarks/two_stage.py --detector oof                   # the audit's default detector
    python benchmarks/two_stage.py --dataset digits --noise sym:0.4 --detector gce \\
        --detector-config smoke/protocol --retrain-config smoke/protocol --baselines train \\
        --results /tmp/two-stage                                   # the pipeline on digits, seconds
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-m", "noisyfit.cli"]
SCHEMA = "noisyfit.bench.two-stage/1"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--detector", default="elr", help="a noisyfit method whose own flags detect, or oof (default elr)")
    p.add_argument("--detector-config", default="{method}/cpu-cifar10n", help="preset of the detector method")
    p.add_argument("--clean", default="relabel-or-drop", choices=("relabel-or-drop", "relabel", "drop"))
    p.add_argument("--clean-threshold", type=float, default=None, help="relabel-or-drop threshold (default 0.5)")
    p.add_argument("--retrain-config", default="ce/cpu-cifar10n", help="the retraining (CE) preset")
    p.add_argument("--dataset", default="cifar10n-worst")
    p.add_argument("--noise", help="synthetic noise planted first (for data sets without noisy labels)")
    p.add_argument("--clean-dataset", help="the oracle's data set (default: cifar10 for CIFAR-10N, else DATASET)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--baselines", choices=("suite", "train"), default="suite",
                   help="CE and the oracle: the stored runs of --suite (default), or trained here")
    p.add_argument("--suite", default="cpu-cifar10n")
    p.add_argument("--work", default=str(ROOT / "runs" / "two-stage"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results" / "two-stage"))
    p.add_argument("overrides", nargs="*", help="key=value for every training (detector, retrain, baselines)")
    return p.parse_args(argv)


def label_set_name(args) -> str:
    name = args.dataset.removeprefix("cifar10n-")
    if args.noise:
        name += "-" + args.noise.replace(":", "").replace(".", "")
    return name


def clean_name(args) -> str:
    t = "" if args.clean != "relabel-or-drop" else f"-t{round(100 * (args.clean_threshold or 0.5)):03d}"
    return f"{args.detector}-{args.clean}{t}"


# ---------------------------------------------------------------------------------- running stages
class Stages:
    """Runs noisyfit commands once each: skips finished ones, resumes killed ones, sums their wall seconds."""

    def __init__(self, work: Path):
        self.work = work
        self.timings_file = work / "timings.json"
        self.timings = json.loads(self.timings_file.read_text()) if self.timings_file.is_file() else {}

    def seconds(self, key: str) -> float:
        return float(sum(self.timings.get(key, [])))

    def run(self, key: str, cmd: list[str], out: Path, done: Path, resumable: bool) -> None:
        if done.is_file():
            print(f"[{key}] done earlier ({done.relative_to(self.work)})", flush=True)
            return
        started = out.is_dir() and any(out.iterdir())
        if started:  # a killed attempt: trainings continue from their checkpoint, the rest start again
            cmd = cmd + (["--resume"] if resumable else ["--overwrite"])
        print(f"[{key}] $ {' '.join(cmd)}", flush=True)
        log = self.work / f"{key}.log"
        t = time.time()
        try:
            with open(log, "a") as f:
                rc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=ROOT, check=False).returncode
        finally:  # an interrupted attempt still cost its time
            self.timings.setdefault(key, []).append(round(time.time() - t, 1))
            self.timings_file.write_text(json.dumps(self.timings, indent=1))
        if rc != 0:
            sys.exit(f"[{key}] failed ({rc}); see {log}")
        print(f"[{key}] {self.timings[key][-1]:.0f} s", flush=True)


def _train_flags(args) -> list[str]:
    return ["--seed", str(args.seed), "--no-progress"]


def detect(args, stages: Stages, det_dir: Path) -> None:
    data = [args.dataset] + (["--noise", args.noise] if args.noise else [])
    if args.detector == "oof":
        cmd = [*CLI, "audit", *data, "--config", args.retrain_config]
    else:
        cmd = [*CLI, "audit", *data, "--method", args.detector,
               "--config", args.detector_config.format(method=args.detector)]
    cmd += [*_train_flags(args), "--clean", "none", "--out", str(det_dir), *args.overrides]
    stages.run("detect", cmd, det_dir, det_dir / "summary.json", resumable=True)


def clean(args, stages: Stages, det_dir: Path, clean_dir: Path) -> None:
    if args.detector == "oof":
        data = [args.dataset] + (["--noise", args.noise] if args.noise else [])
        source = [*data, "--pred-probs", str(det_dir / "pred_probs.npy"), "--seed", str(args.seed)]
    else:
        source = ["--run", str(det_dir / "run")]
    threshold = [] if args.clean_threshold is None else ["--clean-threshold", str(args.clean_threshold)]
    cmd = [*CLI, "audit", *source, "--clean", args.clean, *threshold, "--no-progress", "--out", str(clean_dir)]
    stages.run(f"clean-{clean_name(args)}", cmd, clean_dir, clean_dir / "summary.json", resumable=False)


def train(args, stages: Stages, key: str, out: Path, dataset: str, extra: list[str]) -> None:
    cmd = [*CLI, "train", "--config", args.retrain_config, "--dataset", dataset, *extra, *_train_flags(args),
           "--out", str(out), *args.overrides]
    stages.run(key, cmd, out, out / "results.json", resumable=(out / "checkpoint.pt").is_file())


# ---------------------------------------------------------------------------------- reading results
def _acc(results: dict) -> dict:
    return {"last": (results.get("final") or {}).get("test_acc"),
            "selected": (results.get("selected") or {}).get("test_acc")}


def _train_seconds(results: dict) -> float | None:
    return (results.get("compute") or {}).get("train_seconds_total")


def suite_baselines(args) -> tuple[dict, dict, dict | None]:
    """CE and the oracle (means over the suite's seeds) and the suite's best single method on this label set."""
    from noisyfit.bench.aggregate import build_cells, mean_std, recovery_ratio
    from noisyfit.bench.files import read_suite
    from noisyfit.bench.suites import CLEANLAB, ORACLE

    cells = [c for c in build_cells(read_suite(ROOT / "benchmarks" / "results" / args.suite)) if c.variant == 0]
    ls = label_set_name(args)

    def summary(c) -> dict:
        out = {"n": c.n, "train_seconds_mean": mean_std(c.values("compute", "train_seconds_total"))[0]}
        for kind, key in (("last", "final"), ("selected", "selected")):
            out[kind] = mean_std(c.values(key, "test_acc"))[0]
        return out

    ce = next((summary(c) for c in cells if c.method == "ce" and c.label_set == ls), None)
    oracle = next((summary(c) for c in cells if c.method == ORACLE and c.label_set == "clean"), None)
    if ce is None or oracle is None:
        sys.exit(f"suite {args.suite}: no stored CE run on {ls!r} or no oracle run; use --baselines train")
    methods = [(c.method, summary(c)) for c in cells
               if c.label_set == ls and c.method not in ("ce", ORACLE, CLEANLAB)]
    best = None
    if methods:
        name, s = max(methods, key=lambda m: m[1]["last"] or 0.0)
        best = {"method": name, **s, "R_last": recovery_ratio(s["last"], ce["last"], oracle["last"])}
    return ce, oracle, best


def trained_baseline(out: Path) -> dict:
    r = json.loads((out / "results.json").read_text())
    return {"n": 1, **_acc(r), "train_seconds_mean": _train_seconds(r), "run": str(out)}


def verdict(r_pipeline: float | None, seconds: float | None, singles: list[tuple[str, dict | None]]) -> list[str]:
    """One sentence per single-method comparison: R at the last epoch, and the training seconds."""
    out = []
    for what, single in singles:
        if single is None:
            continue
        if r_pipeline is None or single.get("R_last") is None:
            out.append(f"{what}: R undefined (the oracle is not above CE)")
            continue
        better = r_pipeline > single["R_last"]
        cost = single.get("train_seconds") or single.get("train_seconds_mean")
        spent = f", {seconds:.0f} s of training" if seconds is not None else ""
        out.append(f"the two-stage pipeline (R {r_pipeline:.3f}{spent}) {'beats' if better else 'does not beat'} "
                   f"{what} {single['method']} once (R {single['R_last']:.3f}"
                   + (f", {cost:.0f} s of training)" if cost else ")"))
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from noisyfit.bench.aggregate import recovery_ratio

    ls = label_set_name(args)
    work = Path(args.work) / f"{args.detector}__{ls}__seed{args.seed}"
    work.mkdir(parents=True, exist_ok=True)
    stages = Stages(work)
    det_dir, case = work / "detect", work / clean_name(args)
    clean_dir, retrain_dir = case / "clean", case / "retrain"
    case.mkdir(exist_ok=True)

    detect(args, stages, det_dir)
    clean(args, stages, det_dir, clean_dir)
    train(args, stages, f"retrain-{clean_name(args)}", retrain_dir, args.dataset,
          ["--noisy-labels", str(clean_dir / "cleaned_labels.npz")])
    if args.baselines == "train":
        noise = ["--noise", args.noise] if args.noise else []
        oracle_data = args.clean_dataset or ("cifar10" if args.dataset.startswith("cifar10n") else args.dataset)
        train(args, stages, "ce", work / "baselines" / "ce", args.dataset, noise)
        train(args, stages, "oracle", work / "baselines" / "oracle", oracle_data, [])
        ce, oracle = trained_baseline(work / "baselines" / "ce"), trained_baseline(work / "baselines" / "oracle")
        suite_best = None
    else:
        ce, oracle, suite_best = suite_baselines(args)

    retrain = json.loads((retrain_dir / "results.json").read_text())
    detected = json.loads((det_dir / "summary.json").read_text())
    cleaned = json.loads((clean_dir / "summary.json").read_text())
    acc = _acc(retrain)
    r = {k: recovery_ratio(acc[k], ce[k], oracle[k]) for k in ("last", "selected")}
    single = None
    if args.detector != "oof":  # the detector's own run is one training of that method (no validation split)
        own = json.loads((det_dir / "run" / "results.json").read_text())
        single = {"method": args.detector, **_acc(own), "train_seconds": _train_seconds(own),
                  "R_last": recovery_ratio(_acc(own)["last"], ce["last"], oracle["last"]),
                  "note": "the detection run: the method trained once on every training image"}
    # wall: every attempt of every stage, as a user waits; training: the trainers' own seconds, as the bench
    # reports a method's cost (the detection's out-of-fold folds, or the detector method's run)
    cost = {"detect": stages.seconds("detect"), "clean": stages.seconds(f"clean-{clean_name(args)}"),
            "retrain": stages.seconds(f"retrain-{clean_name(args)}")}
    cost["total"] = cost["detect"] + cost["clean"] + cost["retrain"]
    cost["detect_train_seconds"] = (single or {}).get("train_seconds") or (detected.get("out_of_fold") or {}).get(
        "seconds")
    cost["retrain_train_seconds"] = _train_seconds(retrain)
    if cost["detect_train_seconds"] is not None and cost["retrain_train_seconds"] is not None:
        cost["total_train_seconds"] = cost["detect_train_seconds"] + cost["retrain_train_seconds"]
        cost["total_train_over_one_ce"] = (cost["total_train_seconds"] / ce["train_seconds_mean"]
                                           if ce.get("train_seconds_mean") else None)
    data = retrain.get("data") or {}
    from noisyfit.engine.machine import git_commit

    result = {
        "schema": SCHEMA, "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "commit": git_commit(),
        "command": ["python", "benchmarks/two_stage.py", *(argv if argv is not None else sys.argv[1:])],
        "setting": {"dataset": args.dataset, "noise": args.noise, "label_set": ls, "seed": args.seed,
                    "detector": args.detector, "clean": args.clean, "clean_threshold": args.clean_threshold,
                    "retrain_config": args.retrain_config, "overrides": args.overrides},
        "test_acc": acc, "R": r,
        "baselines": {"source": f"suite {args.suite} (stored runs)" if args.baselines == "suite" else "trained here",
                      "ce": ce, "oracle": oracle},
        "single_method": single, "suite_best_single_method": suite_best,
        "verdict": verdict(r["last"], cost.get("total_train_seconds"), [("the suite's best method", suite_best),
                                                       ("the detector method", single)]),
        "detection": {k: detected.get(k) for k in ("detector", "rule", "num_examples", "num_issues",
                                                   "estimated_noise_rate", "detection")},
        "cleaned": cleaned.get("cleaned_labels"),
        "retrain": {"num_train": data.get("num_train"), "num_val": data.get("num_val"),
                    "train_noise_rate": data.get("train_noise_rate"), "noise": data.get("noise"),
                    "run": str(retrain_dir)},
        "cost_seconds": cost,
    }
    out = Path(args.results) / f"{clean_name(args)}__{ls}__seed{args.seed}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(f"test acc {acc['last']:.4f} (CE {ce['last']:.4f}, oracle {oracle['last']:.4f}); R {r['last']}; "
          f"{cost['total']:.0f} s in all")
    for line in result["verdict"]:
        print(" ", line)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
