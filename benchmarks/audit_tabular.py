"""Which audit detector finds wrong labels in feature tables: the default (ELR), CE's own flags, or
out-of-fold CE + confident learning?

The audit's default detector (ELR) was chosen on CIFAR-10N worst images (benchmarks/AUDIT.md). A user trial
on one synthetic table with class-dependent noise saw ELR find fewer wrong labels than ``--oof``; this
measures it on several tables instead of one. Every cell is the command a user types, with its defaults::

    noisyfit audit csv:TABLE --noise SPEC --seed S [--method ce | --oof] --out DIR

Tables (written once to ``runs/audit-tabular/data/``, deterministic):

* ``digits``: scikit-learn's 8x8 digits, 1,797 rows x 64 pixel features, 10 classes (the built-in data set);
* ``breast-cancer``: scikit-learn's Wisconsin breast cancer, 569 rows x 30 features on their raw scales
  (0.05 to 4,254: a table as users have them, not standardised), 2 classes;
* ``synth-4``: ``make_classification`` (4,000 rows, 20 features, 8 informative, 4 classes, two clusters per
  class, class_sep 1.0, random_state 0), a table where the classes overlap.

Noise (planted by ``--noise`` with the run's seed, so the true labels are known): ``sym:0.2`` (flip to a
different class at random) and ``pairflip:0.3`` (class k to k+1: class-dependent).

Two detectors that fit no network read the table's own features as the embeddings of ``--embedder`` (an
``.npz`` of the training split's rows, ids and class names, written once beside the tables):
``embed-logreg`` (5-fold cross-fitted logistic regression, C chosen on inner folds, then confident learning) and
``embed-knn`` (leave-one-out votes of the 10 nearest neighbours, then confident learning). Both see the features
centred and divided by one common scale, as every ``--embedder`` audit does, not standardised per column.

Result per cell: ``benchmarks/results/audit-tabular/<table>__<noise>__<detector>__seed<S>.json`` (the audit
summary's detection scores, detector, rule, and the wall seconds). ``--report`` writes
``benchmarks/AUDIT_TABULAR.md``. Resumable: a cell with a result file is skipped; an interrupted audit
folder is started again (the audits take seconds to a few minutes each).

    python benchmarks/audit_tabular.py               # every cell (54 audits)
    python benchmarks/audit_tabular.py --report      # the table from the result files
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from audit_cells import mean_sd, run_audit, write_result  # noqa: E402
from measurement import provenance  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "audit-tabular"
RUNS = ROOT / "runs" / "audit-tabular"
REPORT = ROOT / "benchmarks" / "AUDIT_TABULAR.md"
SCHEMA = "noisyfit.bench.audit-tabular/1"
TABLES = ("digits", "breast-cancer", "synth-4")
NOISES = ("sym:0.2", "pairflip:0.3")
DETECTORS = {"default": [], "ce": ["--method", "ce"], "oof": ["--oof"],
             "embed-logreg": ["--embedder", "{features}", "--classifier", "logreg"],
             "embed-knn": ["--embedder", "{features}", "--classifier", "knn"]}
WHAT = {"default": "the default: ELR's own flags (p(given) < 0.5 after ELR training)",
        "ce": "`--method ce`: CE's own flags (p(given) < 0.5)",
        "oof": "`--oof`: 5-fold out-of-fold CE + confident learning (prune by noise rate)",
        "embed-logreg": "`--embedder TABLE.npz`: the table's features, 5-fold cross-fitted logistic regression + "
                        "confident learning",
        "embed-knn": "`--embedder TABLE.npz --classifier knn`: votes of the 10 nearest neighbours in the table's "
                     "features + confident learning"}


def _write_csv(path: Path, x: np.ndarray, y: np.ndarray) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([f"f{i}" for i in range(x.shape[1])] + ["label"])
        for row, label in zip(x.tolist(), y.tolist()):
            w.writerow([repr(float(v)) for v in row] + [int(label)])


def table_source(name: str) -> str:
    """The DATA argument of the audit for a table (writing its CSV the first time)."""
    if name == "digits":
        return "digits"
    path = RUNS / "data" / f"{name}.csv"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        if name == "breast-cancer":
            from sklearn.datasets import load_breast_cancer

            d = load_breast_cancer()
            x, y = d.data, d.target
        elif name == "synth-4":
            from sklearn.datasets import make_classification

            x, y = make_classification(n_samples=4000, n_features=20, n_informative=8, n_redundant=4, n_classes=4,
                                       n_clusters_per_class=2, class_sep=1.0, random_state=0)
        else:
            raise SystemExit(f"unknown table {name!r}")
        tmp = path.with_suffix(".tmp")
        _write_csv(tmp, x, y)
        tmp.replace(path)
    return f"csv:{path}"


def features_npz(table: str) -> Path:
    """The table's training rows as an embeddings file (``x``, ``y``, ``ids``, ``class_names``), written once."""
    path = RUNS / "data" / f"{table}.features.npz"
    if not path.is_file():
        from noisyfit.data.sources import load_dataset

        source = table_source(table)
        train = load_dataset(source, None).train  # digits is built in; the tables are CSV files
        path.parent.mkdir(parents=True, exist_ok=True)
        ids = train.ids if train.ids is not None else [str(i) for i in range(len(train))]
        tmp = path.with_name(path.stem + ".tmp.npz")
        np.savez(tmp, x=np.asarray(train.x, dtype=np.float32).reshape(len(train), -1), y=train.labels,
                 ids=np.array(ids, dtype=str), class_names=np.array(train.class_names, dtype=str))
        tmp.replace(path)
    return path


def cell_name(table: str, noise: str, detector: str, seed: int) -> str:
    return f"{table}__{noise.replace(':', '')}__{detector}__seed{seed}"


def run_cell(table: str, noise: str, detector: str, seed: int, threads: int) -> Path | None:
    name = cell_name(table, noise, detector, seed)
    result = RESULTS / f"{name}.json"
    if result.is_file():
        print(f"{name}: have results, skip", flush=True)
        return None
    args = [table_source(table), "--noise", noise, "--seed", str(seed),
            *(a.format(features=features_npz(table)) if "{" in a else a for a in DETECTORS[detector])]
    summary, command, wall = run_audit(name, args, runs_dir=RUNS, cwd=ROOT, threads=threads)
    if summary is None:
        return None
    record = {"schema": SCHEMA, **provenance("audit-tabular"), "cell": {"table": table, "noise": noise,
              "detector": detector, "seed": seed}, "audit_command": command,
              "detector": summary.get("detector"), "rule": summary.get("rule"),
              "num_examples": summary.get("num_examples"), "num_issues": summary.get("num_issues"),
              "estimated_noise_rate": summary.get("estimated_noise_rate"), "detection": summary.get("detection"),
              "model_quality": summary.get("model_quality"), "wall_seconds": round(wall, 2), "threads": threads}
    write_result(result, record)
    d = record["detection"] or {}
    print(f"{name}: F1 {d.get('f1', float('nan')):.3f} AUROC {d.get('auroc', float('nan')):.3f} ({wall:.0f} s)",
          flush=True)
    return result


def report() -> Path:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    lines = ["# Audit detectors on feature tables",
             "",
             "Generated by `python benchmarks/audit_tabular.py --report` from `benchmarks/results/audit-tabular/`; "
             "do not edit by hand. Each cell is `noisyfit audit csv:TABLE --noise SPEC --seed S [detector]` with "
             "every other setting at its default (the whole table audited, no hold-out); the flags are scored "
             "against the labels before the planted noise. Mean ± sd over seeds (n = seeds).",
             "",
             "Detectors: " + "; ".join(f"**{k}** = {v}" for k, v in WHAT.items()) + ".",
             "",
             "| table | noise | detector | n | precision | recall | F1 | F1 at true k | AUROC | est. noise | "
             "true noise | suggested right | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        c = r["cell"]
        cells.setdefault((c["table"], c["noise"], c["detector"]), []).append(r)
    order = {t: i for i, t in enumerate(TABLES)} | {n: i for i, n in enumerate(NOISES)} | \
        {d: i for i, d in enumerate(DETECTORS)}
    for key in sorted(cells, key=lambda k: tuple(order.get(x, 99) for x in k)):
        rs = cells[key]
        det = [r.get("detection") or {} for r in rs]
        walls = [r["wall_seconds"] for r in rs]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | "
                     + " | ".join(mean_sd([d.get(m) for d in det]) for m in
                                  ("precision", "recall", "f1", "f1_at_true_k", "auroc", "estimated_noise_rate",
                                   "true_noise_rate", "suggestion_accuracy"))
                     + f" | {np.median(walls):.0f} |")
    best: dict[tuple, tuple[float, str]] = {}
    for (table, noise, det), rs in cells.items():
        f1 = float(np.mean([(r.get("detection") or {}).get("f1") or 0.0 for r in rs]))
        if (table, noise) not in best or f1 > best[(table, noise)][0]:
            best[(table, noise)] = (f1, det)
    wins = {d: sum(1 for _, w in best.values() if w == d) for d in DETECTORS}
    lines += ["", "Best mean F1 per table and noise: " + ", ".join(f"**{d}** in {n} of {len(best)}"
                                                               for d, n in wins.items() if n) + "."]
    machines = sorted({f"{r['machine'].get('cpu')} ({r['machine'].get('cpu_capability', '?')})" for r in rows})
    lines += ["",
              "*F1 at true k* flags each detector's k lowest scores, k = the true number of wrong labels: it ranks the "
              "scores, not the thresholds. *suggested right*: share of flagged rows whose suggested label is the "
              "true one. *wall s*: median wall seconds of the audit command (training included), "
              f"{rows[0]['threads'] if rows else '?'} thread(s), run niced beside another benchmark: compare them "
              "only within one table (ratios), not as speeds.",
              f"Machines: {', '.join(machines) or '–'}."]
    REPORT.write_text("\n".join(lines) + "\n")
    return REPORT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only write the table from the result files")
    p.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    p.add_argument("--noises", nargs="+", default=list(NOISES))
    p.add_argument("--detectors", nargs="+", default=list(DETECTORS), choices=list(DETECTORS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if not args.report:
        for seed in args.seeds:  # a whole seed first: every cell gets n=1 before any gets n=2
            for table in args.tables:
                for noise in args.noises:
                    for det in args.detectors:
                        run_cell(table, noise, det, seed, args.threads)
    print(f"wrote {report()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
