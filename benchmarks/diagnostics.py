"""Diagnostics behind the closing notes' explanations, measured from the bench's run folders.

    python benchmarks/diagnostics.py [--proxy DIR ...]   -> benchmarks/results/diagnostics.json

* ``bkd_heads``: test accuracy of BKD's teacher alone, student alone and their agreement (the method's
  prediction) at the noisy-validation-selected epoch of the cpu-cifar10n worst run (``best_model.pt``).
* ``car_scores``: AUROC of CAR's two per-sample signals on that run: the indicator tau (its default
  clean score) and the estimated target's mass on the given label (``clean_score=target``), plus how
  saturated tau is (shares of training images at 1.0 in float32, above 0.9999, below the flag threshold).
* ``strong_view_seconds``: seconds per 512 CIFAR-sized images of a strong view, kornia's one draw per
  batch vs one draw per image (one thread; read ratios, not absolute values, on a busy machine).
* ``proxy_runs``: the per-epoch rows of short proxy runs given with ``--proxy`` (their config.yaml says
  how they were run), e.g. BKD on a 10k-image subset.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RUNS = ROOT / "runs" / "bench" / "cpu-cifar10n"


def bkd_heads(run_dir: Path) -> dict:
    from noisyfit.config import load_config
    from noisyfit.engine.trainer import Trainer

    cfg = load_config(run_dir / "config.yaml")
    tr = Trainer(cfg, None)
    tr.method.load_state_dict(torch.load(run_dir / "best_model.pt", map_location="cpu"))
    tr.method.eval()
    heads = {"teacher": tr.method.teacher, "student": tr.method.student, "agreement": tr.method.predict_logits}
    selected = json.loads((run_dir / "results.json").read_text())["selected"]
    return {"run": str(run_dir.relative_to(ROOT)), "selected_epoch": selected["epoch"],
            "test_acc": {k: tr.accuracy_on(tr.test_x, tr.test_y, fn) for k, fn in heads.items()}}


def car_scores(run_dir: Path) -> dict:
    from sklearn.metrics import roc_auc_score

    with np.load(run_dir / "per_sample.npz") as z:
        given, true, tau, t = z["given"], z["true"], z["tau"], z["corrected_target"].astype(np.float64)
    noisy = given != true
    mass = t[np.arange(len(t)), given] / t.sum(axis=1)
    return {"run": str(run_dir.relative_to(ROOT)), "auroc_tau": float(roc_auc_score(noisy, -tau)),
            "auroc_target_mass": float(roc_auc_score(noisy, -mass)),
            "share_tau_equal_1": float(np.mean(tau >= 1.0)), "share_tau_above_0.9999": float(np.mean(tau > 0.9999)),
            "flag_tau": 0.5 * (1 + 10 / 11), "share_tau_below_flag_tau": float(np.mean(tau < 0.5 * (1 + 10 / 11)))}


def strong_view_seconds(reps: int = 5) -> dict:
    from noisyfit.data.augment import Augmenter

    torch.manual_seed(0)
    x = (torch.rand(512, 3, 32, 32) * 255).to(torch.uint8)
    out = {}
    for policy in ("autoaugment", "randaugment"):
        for draw in ("batch", "image"):
            aug = Augmenter(torch.zeros(3), torch.ones(3), is_image=True, strong_policy=policy, strong_draw=draw)
            aug.strong(x)
            t = time.perf_counter()
            for _ in range(reps):
                aug.strong(x)
            out[f"{policy}/{draw}"] = (time.perf_counter() - t) / reps
    return out


def proxy_run(run_dir: Path) -> dict:
    metrics = run_dir / "metrics.jsonl"  # absent when the run failed in its first epoch
    rows = ([json.loads(line) for line in metrics.read_text().splitlines() if line.strip()]
            if metrics.exists() else [])
    keep = ("epoch", "lr", "train_loss", "ce", "comp", "student_conf", "test_acc")
    log = run_dir.parent / f"{run_dir.name}.log"
    tail = log.read_text(errors="replace").strip().splitlines()[-1:] if log.exists() else []
    cfg = run_dir / "config.yaml"
    return {"run": str(run_dir), "config": cfg.read_text() if cfg.exists() else None,
            "epochs": [{k: r[k] for k in keep if k in r} for r in rows], "log_last_line": tail}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--proxy", nargs="*", default=[], help="run folders of proxy runs to include")
    ap.add_argument("--out", default=str(HERE / "results" / "diagnostics.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT / "src"))
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "torch_threads": 1}
    if (RUNS / "bkd/worst/seed0/best_model.pt").exists():
        result["bkd_heads"] = bkd_heads(RUNS / "bkd/worst/seed0")
    if (RUNS / "car/worst/seed0/per_sample.npz").exists():
        result["car_scores"] = car_scores(RUNS / "car/worst/seed0")
    result["strong_view_seconds"] = strong_view_seconds()
    result["proxy_runs"] = [proxy_run(Path(p)) for p in args.proxy]
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k != "proxy_runs"}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
