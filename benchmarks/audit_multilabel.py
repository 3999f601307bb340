"""How well does the multi-label audit find wrong label sets when it fits its own classifiers?

Every cell is the command a user types on a CSV of features and label sets, with its defaults::

    noisyfit audit --multi-label TABLE.csv --classifier {logreg,mlp,knn} --seed S --out DIR

(out-of-fold probabilities from classifiers cross-fitted on the CSV's feature columns, then one-vs-rest
confident learning). The tables (written to ``runs/audit-multilabel/data/``, deterministic per seed):

* ``digit-pairs``: images of one or two handwritten digits side by side, built from scikit-learn's 8x8 digits
  (1,797 images, each used once: 599 alone beside a blank half, on a random side, and 1,198 in pairs), so 1,198
  examples x 128 pixel features; the label set is the digits shown (1 or 2 of 10 classes). A small stand-in for
  "which objects are in this photo".
* ``synth-6``: scikit-learn's ``make_multilabel_classification`` (2,000 rows, 20 features, 6 classes, 2 labels
  per row on average, random_state 0): a generative model whose classes overlap, where even the true sets are
  hard to predict (a weak-model regime).

Noise, planted on the true sets with the cell's seed (``true_labels`` is in the CSV, so the flags are scored):
``missing:0.2`` drops each class an example has with probability 0.2 (incomplete annotation, the most common
multi-label noise), ``flip:0.03`` switches each (example, class) entry with probability 0.03 (both directions).

Result per cell: ``benchmarks/results/audit-multilabel/<table>__<noise>__<classifier>__seed<S>.json``;
``--report`` writes ``benchmarks/AUDIT_MULTILABEL.md``. Resumable: a cell with a result file is skipped.

    python benchmarks/audit_multilabel.py               # every cell (24 audits, minutes each at most)
    python benchmarks/audit_multilabel.py --report      # the table from the result files
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
RESULTS = ROOT / "benchmarks" / "results" / "audit-multilabel"
RUNS = ROOT / "runs" / "audit-multilabel"
REPORT = ROOT / "benchmarks" / "AUDIT_MULTILABEL.md"
SCHEMA = "noisyfit.bench.audit-multilabel/1"
TABLES = ("digit-pairs", "synth-6")
NOISES = ("missing:0.2", "flip:0.03")
CLASSIFIERS = ("logreg", "mlp", "knn")


def digit_pairs(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``(features [N, 128], true label matrix [N, 10])``: one or two digits side by side, each image used once."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(d.target))
    singles, paired = order[: len(order) // 3], order[len(order) // 3:]
    blank = np.zeros((8, 8))
    rows, sets = [], []
    for i in singles:
        img = d.images[i]
        rows.append(np.hstack([img, blank] if rng.random() < 0.5 else [blank, img]))
        sets.append({int(d.target[i])})
    for a, b in zip(paired[0::2], paired[1::2]):
        rows.append(np.hstack([d.images[a], d.images[b]]))
        sets.append({int(d.target[a]), int(d.target[b])})
    y = np.zeros((len(sets), 10), dtype=bool)
    for r, s in enumerate(sets):
        y[r, sorted(s)] = True
    return np.stack(rows).reshape(len(rows), -1), y


def plant(y: np.ndarray, noise: str, seed: int) -> np.ndarray:
    """The given label matrix: ``y`` with the noise ``kind:rate`` planted (module docstring)."""
    kind, rate = noise.split(":")
    rng = np.random.default_rng(1000 + seed)
    draw = rng.random(y.shape) < float(rate)
    if kind == "missing":
        return y & ~draw
    if kind == "flip":
        return y ^ draw
    raise SystemExit(f"unknown noise {noise!r}")


def table_csv(table: str, noise: str, seed: int) -> Path:
    """Write (once) the CSV of a cell: id, features f0..., labels, true_labels (class names = digits / c0...)."""
    path = RUNS / "data" / f"{table}__{noise.replace(':', '')}__seed{seed}.csv"
    if path.is_file():
        return path
    if table == "digit-pairs":
        x, y = digit_pairs(0)
        names = [str(k) for k in range(10)]
    elif table == "synth-6":
        from sklearn.datasets import make_multilabel_classification

        x, y = make_multilabel_classification(n_samples=2000, n_features=20, n_classes=6, n_labels=2, random_state=0)
        y = y.astype(bool)
        names = [f"c{k}" for k in range(6)]
    else:
        raise SystemExit(f"unknown table {table!r}")
    given = plant(y, noise, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", *[f"f{j}" for j in range(x.shape[1])], "labels", "true_labels"])
        for i in range(len(x)):
            w.writerow([f"row{i}", *[repr(float(v)) for v in x[i]],
                        "|".join(n for n, b in zip(names, given[i]) if b), "|".join(n for n, b in zip(names, y[i]) if b)])
    tmp.replace(path)
    return path


def cell_name(table: str, noise: str, classifier: str, seed: int) -> str:
    return f"{table}__{noise.replace(':', '')}__{classifier}__seed{seed}"


def run_cell(table: str, noise: str, classifier: str, seed: int, threads: int) -> Path | None:
    name = cell_name(table, noise, classifier, seed)
    result = RESULTS / f"{name}.json"
    if result.is_file():
        print(f"{name}: have results, skip", flush=True)
        return None
    args = ["--multi-label", str(table_csv(table, noise, seed)), "--classifier", classifier,
            *(["--seed", str(seed)] if classifier != "knn" else [])]  # knn draws nothing
    s, command, wall = run_audit(name, args, runs_dir=RUNS, cwd=ROOT, threads=threads)
    if s is None:
        return None
    cf = s.get("cross_fit", {})
    record = {"schema": SCHEMA, **provenance("audit-multilabel"),
              "cell": {"table": table, "noise": noise, "classifier": classifier, "seed": seed},
              "audit_command": command, "detector": s.get("detector"),
              "num_examples": s.get("num_examples"), "num_issues": s.get("num_issues"),
              "num_flagged_entries": s.get("num_flagged_entries"), "detection": s.get("detection"),
              "model_quality": (s.get("info") or {}).get("model_quality"),
              "cross_fit": {k: cf.get(k) for k in ("classifier", "params", "folds", "seed", "dim", "skipped",
                                                   "per_fold", "seconds")},
              "wall_seconds": round(wall, 2), "threads": threads}
    write_result(result, record)
    e = (record["detection"] or {}).get("entries", {})
    print(f"{name}: entries F1 {e.get('f1', float('nan')):.3f} AUROC {e.get('auroc', float('nan')):.3f} "
          f"({wall:.0f} s)", flush=True)
    return result


def report() -> Path:
    rows = [json.loads(p.read_text()) for p in sorted(RESULTS.glob("*.json"))]
    cells: dict[tuple, list[dict]] = {}
    for r in rows:
        c = r["cell"]
        cells.setdefault((c["table"], c["noise"], c["classifier"]), []).append(r)
    order = {t: i for i, t in enumerate(TABLES)} | {n: i for i, n in enumerate(NOISES)} | \
        {d: i for i, d in enumerate(CLASSIFIERS)}
    lines = ["# Multi-label audit with cross-fitted classifiers",
             "",
             "Generated by `python benchmarks/audit_multilabel.py --report` from `benchmarks/results/audit-multilabel/`; "
             "do not edit by hand. Each cell is `noisyfit audit --multi-label TABLE.csv --classifier C --seed S` "
             "with every other setting at its default (5 iteratively stratified folds, logistic regression's C chosen "
             "on inner folds, one-vs-rest confident learning pruning by noise rate); the flags are scored against the "
             "label sets before the planted noise. Mean ± sd over seeds (n = seeds). Tables and noise: the script's "
             "docstring.",
             "",
             "*Entries* are (example, class) pairs: a flagged entry is a class to remove or to add. *Examples*: an "
             "example is flagged when any of its entries is, and is wrong when any entry is.",
             "",
             "| table | noise | classifier | n | entry accuracy of the fit | entries wrong | entries: precision | "
             "recall | F1 | F1 at true k | AUROC | examples wrong | examples: precision | recall | F1 | wall s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for key in sorted(cells, key=lambda k: tuple(order.get(x, 99) for x in k)):
        rs = cells[key]
        ent = [(r.get("detection") or {}).get("entries", {}) for r in rs]
        ex = [(r.get("detection") or {}).get("examples", {}) for r in rs]
        fit = [np.mean([f["entry_accuracy_true"] for f in r["cross_fit"]["per_fold"]]) for r in rs]
        lines.append(f"| {key[0]} | {key[1]} | {key[2]} | {len(rs)} | {mean_sd(fit)} | "
                     + " | ".join(mean_sd([d.get(m) for d in ent]) for m in
                                  ("true_noise_rate", "precision", "recall", "f1", "f1_at_true_k", "auroc"))
                     + " | " + " | ".join(mean_sd([d.get(m) for d in ex]) for m in
                                          ("true_noise_rate", "precision", "recall", "f1"))
                     + f" | {np.median([r['wall_seconds'] for r in rs]):.0f} |")
    machines = sorted({f"{r['machine'].get('cpu')} ({r['machine'].get('cpu_capability', '?')})" for r in rows})
    lines += ["",
              "*entry accuracy of the fit*: the held-out entries the cross-fitted classifiers get right at p = 0.5, "
              "against the true sets (how strong the model is). *F1 at true k* flags the k least likely entries, k = "
              "the true number of wrong entries: it ranks the probabilities, not the thresholds. *wall s*: median wall "
              f"seconds of the command, {rows[0]['threads'] if rows else '?'} thread(s), run niced beside another "
              "benchmark: compare them only within one table (ratios), not as speeds.",
              f"Machines: {', '.join(machines) or '–'}."]
    REPORT.write_text("\n".join(lines) + "\n")
    return REPORT


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--report", action="store_true", help="only write the table from the result files")
    p.add_argument("--tables", nargs="+", default=list(TABLES), choices=TABLES)
    p.add_argument("--noises", nargs="+", default=list(NOISES))
    p.add_argument("--classifiers", nargs="+", default=list(CLASSIFIERS), choices=CLASSIFIERS)
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    if not args.report:
        for seed in args.seeds:  # a whole seed first: every cell gets n=1 before any gets n=2
            for table in args.tables:
                for noise in args.noises:
                    for classifier in args.classifiers:
                        run_cell(table, noise, classifier, seed, args.threads)
    print(f"written: {report()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
