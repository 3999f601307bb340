"""Audit every finished bench run on one label set and write benchmarks/AUDIT.md.

    python benchmarks/audit_report.py                 # audits runs not audited yet, then the table
    python benchmarks/audit_report.py --table-only    # only regenerate AUDIT.md from the summaries

For each ``benchmarks/results/<suite>/<method>__<label set>__seed<S>.json`` whose run folder is still
on disk, this calls ``noisyfit audit --run <run folder>`` (the method's own per-sample signal and flag
rule: BKD's G4, CAR's tau, the CE/PEMM posterior ...), times it, and keeps the audit's summary.json as
``benchmarks/results/audit/<key>__summary.json`` (issues.csv and report.html stay in the run folder's
``audit/``; they are large). The cleanlab row is read from its bench result: it already *is* an audit
(out-of-fold CE -> cleanlab's ``find_label_issues``). The table puts every detector side by side with
the cost of getting its signal: training time (the bench's measured total) plus the audit's own time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from noisyfit.bench.files import read_suite  # noqa: E402


def pct(v) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def audit_run(run_dir: Path, summary_out: Path) -> dict:
    """``noisyfit audit --run`` on one run folder; returns its summary with the wall time added."""
    out = run_dir / "audit"
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "noisyfit.cli", "audit", "--run", str(run_dir), "--out", str(out),
           "--no-progress", "--overwrite"]  # a re-run replaces the last audit of the run
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    summary = json.loads((out / "summary.json").read_text())
    summary["audit_wall_seconds"] = time.perf_counter() - t0
    summary_out.parent.mkdir(parents=True, exist_ok=True)
    summary_out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def confident_learning_on_run(run_dir: Path, summary_out: Path) -> dict:
    """Confident learning (noisyfit's ``find_label_issues``, cleanlab's default filter) on a run's own
    end-of-training probabilities of its training images: in-sample, so no extra training."""
    import numpy as np

    from noisyfit.detect import estimate_noise, find_label_issues, label_quality_scores
    from noisyfit.metrics import detection_metrics

    t0 = time.perf_counter()
    with np.load(run_dir / "per_sample.npz") as z:
        given, true, probs = z["given"], z["true"], z["probs"].astype(np.float64)
    probs /= probs.sum(axis=1, keepdims=True)
    flags = find_label_issues(given, probs)
    scores = label_quality_scores(given, probs)
    noise = estimate_noise(given, probs)
    det = detection_metrics(given != true, flags=flags, clean_scores=scores,
                            estimated_noise_rate=float(noise.noise_rate))
    suggested = probs.argmax(axis=1)
    det["suggestion_accuracy"] = float((suggested[flags] == true[flags]).mean()) if flags.any() else None
    summary = {"detector": "noisyfit confident learning on the run's in-sample probabilities",
               "rule": "prune_by_noise_rate (cleanlab's default filter), self-confidence ranking",
               "detection": det, "audit_wall_seconds": time.perf_counter() - t0}
    summary_out.write_text(json.dumps(summary, indent=1) + "\n")
    return summary


def row(method: str, seed: int, det: dict, detector: str, rule: str, train_s: float | None, audit_s: float | None) -> str:
    cost = "–" if train_s is None else f"{train_s / 60:.1f}"
    audit = "–" if audit_s is None else f"{audit_s:.0f}"
    sugg = det.get("suggestion_accuracy")
    # no flag: precision is 0/0 (stored as 0), not "every flag wrong"
    precision = "no flags" if det.get("num_flagged") == 0 else pct(det.get("precision"))
    return (f"| {method} | {seed} | {detector} | {precision} | {pct(det.get('recall'))} | "
            f"{pct(det.get('f1'))} | {pct(det.get('auroc'))} | {pct(det.get('estimated_noise_rate'))} | "
            f"{pct(det.get('true_noise_rate'))} | {pct(sugg)} | {cost} | {audit} | {rule} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default="cpu-cifar10n")
    ap.add_argument("--label-set", default="worst")
    ap.add_argument("--table-only", action="store_true", help="do not audit; only rewrite AUDIT.md")
    args = ap.parse_args(argv)
    results = HERE / "results"
    audit_dir = results / "audit"
    lines = []
    for r in read_suite(results / args.suite):
        if r.label_set != args.label_set or r.method == "oracle":
            continue
        key = r.path.stem
        if r.method == "cleanlab":
            det = dict(r.data.get("detection") or {})
            ps = ROOT / r.data["bench"]["run_dir"] / "per_sample.npz"
            if ps.exists():  # suggested label = argmax of the out-of-fold probabilities, as cleanlab's
                import numpy as np

                with np.load(ps) as z:
                    flag, true, sugg = z["flag"], z["true"], z["probs"].argmax(axis=1)
                det["suggestion_accuracy"] = float((sugg[flag] == true[flag]).mean()) if flag.any() else None
            train_s = (r.data.get("compute") or {}).get("train_seconds_total")
            lines.append(row("cleanlab", r.seed, det, "cleanlab `find_label_issues` on 5-fold out-of-fold CE",
                             "prune_by_noise_rate (cleanlab default)", train_s, None))
            continue
        summary_path = audit_dir / f"{args.suite}__{key}__summary.json"
        run_dir = ROOT / r.data["bench"]["run_dir"]
        if not summary_path.exists():
            if args.table_only or not (run_dir / "results.json").exists():
                print(f"skip {key}: not audited yet" + ("" if args.table_only else " and no run folder"))
                continue
            print(f"auditing {key} ...", flush=True)
            audit_run(run_dir, summary_path)
        s = json.loads(summary_path.read_text())
        train_s = (r.data.get("compute") or {}).get("train_seconds_total")
        rule = s.get("rule", "").replace("|", "/")
        # the summaries of the first BKD runs carry the wording of the code of that time, which called the
        # epoch-8 fallback official; it is ours (issue 17). Their numbers stand; the label is corrected here.
        rule = rule.replace("(official fallback)", "(our fallback, not official; the summary's wording said "
                                                   "'official')")
        lines.append(row(r.method, r.seed, s["detection"], s["detector"], rule, train_s, s.get("audit_wall_seconds")))
        cl_path = audit_dir / f"{args.suite}__{key}__confident-learning.json"
        if not cl_path.exists() and not args.table_only and (run_dir / "per_sample.npz").exists():
            confident_learning_on_run(run_dir, cl_path)
        if cl_path.exists():
            c = json.loads(cl_path.read_text())
            lines.append(row(f"{r.method} + CL", r.seed, c["detection"], c["detector"], c["rule"], train_s,
                             c.get("audit_wall_seconds")))

    crowd = audit_dir / "cifar10n-worst__annotators-random123__summary.json"
    out = [f"# Audit: who finds the wrong labels of CIFAR-10N {args.label_set}",
           "",
           "Generated by `python benchmarks/audit_report.py` from the bench results "
           f"(`benchmarks/results/{args.suite}/`) and the audits' summaries (`benchmarks/results/audit/`); "
           "never edit by hand.",
           "",
           "Each method row is `noisyfit audit --run` on that method's finished bench run: the flags are the "
           "method's own rule (its column *rule*), the score its own clean score, scored against the clean "
           "CIFAR-10 labels on the 47,500 training images (the 2,500-image noisy-validation split is not "
           "audited). *suggested* = share of flagged examples whose suggested label is the true one. "
           "*training* = the bench run's measured training time (minutes); *audit* = the audit command's "
           "wall time (seconds; it ran niced next to a benchmark, so read it as an upper bound). "
           "*<method> + CL* rows apply confident learning (cleanlab's default filter, our implementation) to "
           "that run's end-of-training probabilities of its own training images: in-sample, so no extra "
           "training, unlike the cleanlab row's out-of-fold probabilities.",
           "",
           "| method | seed | detector | P | R | F1 | AUROC | est. noise | true noise | suggested | training (min) | "
           "audit (s) | rule |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
           *lines]
    if crowd.exists() and args.label_set == "worst":  # the annotators' audit is of the worst labels
        c = json.loads(crowd.read_text())
        info = c.get("info", {})
        acc = info.get("consensus_accuracy", {})
        out += ["", "## Three annotators instead of one model", "",
                "CIFAR-10N's random1..3 as three annotators (`noisyfit audit cifar10n-worst --annotators "
                f"random1,random2,random3`, backend {info.get('backend', '?')}). Consensus accuracy against the "
                "clean labels:", "", "| consensus | accuracy |", "|---|---|",
                *[f"| {k.replace('_', ' ')} | {100 * v:.2f} |" for k, v in acc.items()], "",
                "| annotator | true accuracy | estimated (Dawid-Skene) | agreement with consensus |",
                "|---|---|---|---|",
                *[f"| {a['annotator']} | {pct(a.get('true_accuracy'))} | {pct(a.get('estimated_accuracy'))} | "
                  f"{pct(a.get('agreement_with_consensus'))} |" for a in info.get("annotators", [])],
                "", f"Auditing the worst labels against the {info.get('consensus', '?').replace('_', '-')} "
                "consensus (flag = consensus differs from the given label):", "",
                "| P | R | F1 | AUROC | est. noise | true noise | suggested | audit (s) |",
                "|---|---|---|---|---|---|---|---|",
                f"| {pct(c['detection']['precision'])} | {pct(c['detection']['recall'])} | "
                f"{pct(c['detection']['f1'])} | {pct(c['detection']['auroc'])} | "
                f"{pct(c['detection']['estimated_noise_rate'])} | {pct(c['detection']['true_noise_rate'])} | "
                f"{pct(c['detection'].get('suggestion_accuracy'))} | {c['seconds']:.0f} |"]
    review = audit_dir / "annotator-review-v2.json"  # version 1 (annotator-review.json) had no alternatives
    review = review if review.exists() else audit_dir / "annotator-review.json"
    if review.exists() and args.label_set == "worst":
        rv = json.loads(review.read_text())
        alt = all("review_alternative_true_share" in r for r in rv["rows"])
        out += ["", "### Labels kept although most annotators did not give them", "",
                "Beside its flags, the annotator audit lists in `review.csv` the items whose given label the "
                "consensus keeps although at most half of their annotators gave it (a 1-1-1 split: a label kept "
                "without a majority). From `benchmarks/annotator_review.py` (labels only, all 50,000 training "
                "images, built-in EM; random1..3 audit each label set, so random1 is also one of its own "
                "annotators): how many items each list holds and the share of them whose given label is wrong. "
                "(CIFAR-10N's worst takes a wrong annotation whenever one exists, so a worst label that a minority "
                "gave is wrong by construction; aggre and random1 are the informative rows.)"
                + (" *Alternative right*: the share of the items to review, and of the wrong ones among them, whose "
                   "suggestion in `review.csv` (the most probable label other than the kept one) is the true label."
                   if alt else ""),
                "", "| label set | consensus | flagged | wrong among flagged | to review | wrong among them | "
                + ("alternative right: all | wrong ones | " if alt else "")
                + "the rest | wrong among the rest |", "|---|---|---|---|---|---|---|---|" + ("---|---|" if alt else ""),
                *[f"| {r['label_set']} | {r['consensus'].replace('_', ' ')} | {r['flagged']:,} | "
                  f"{pct(r['flagged_wrong_share'])} | {r['review']:,} | {pct(r['review_wrong_share'])} | "
                  + (f"{pct(r['review_alternative_true_share'])} | {pct(r['review_wrong_alternative_true_share'])} | "
                     if alt else "")
                  + f"{r['rest']:,} | {pct(r['rest_wrong_share'])} |" for r in rv["rows"]]]
    # one file per label set: worst keeps the name AUDIT.md that the READMEs cite
    path = HERE / ("AUDIT.md" if args.label_set == "worst" else f"AUDIT-{args.label_set}.md")
    path.write_text("\n".join(out) + "\n")
    print(f"wrote {path} ({len(lines)} detector rows)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
