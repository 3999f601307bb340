"""A results table for the console, and `noisyfit summary RUN [RUN ...]`: finished runs side by side."""

from __future__ import annotations

import json
import sys
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser("summary", help="finished runs side by side: accuracy, detection, noise rate, time per epoch",
                       description="The results table `noisyfit train` prints at its end, for several finished runs "
                                   "(their --out folders), one row each, e.g. `noisyfit summary runs/*`.")
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders (the --out of `noisyfit train`)")
    p.add_argument("--plot", metavar="FILE.png", help="also draw the runs' per-epoch curves (accuracy, loss) into FILE.png")
    p.set_defaults(func=cmd_summary)


def cmd_summary(args) -> int:
    from noisyfit.data.labeled import DataError

    rows, skipped = [], []
    for run in args.runs:
        path = Path(run)
        results = path / "results.json"
        if not results.is_file():
            why = "not found" if not path.exists() else (
                "not finished (continue it with --resume)" if (path / "checkpoint.pt").is_file() else
                "not a run folder")
            skipped.append(f"{run}: {why}")
            continue
        try:
            r = json.loads(results.read_text())
            where = "/".join(path.resolve().parts[-2:])  # short enough for the table: parent/run
            rows.append((f"{(r.get('method') or {}).get('name', '?')} · {where}", r))
        except (OSError, ValueError) as err:
            skipped.append(f"{run}: results.json unreadable ({err})")
    for line in skipped:
        print(f"noisyfit summary: skipped {line}", file=sys.stderr)
    if not rows:
        raise DataError("no finished run among " + ", ".join(args.runs) + "; pass the --out folders of finished "
                        "`noisyfit train` runs.")
    print_summary(rows)
    if args.plot:
        from noisyfit.report.curves import plot_curves

        drawn = plot_curves(rows, args.plot)
        print(f"{args.plot}: per-epoch {', '.join(drawn)} of {len(rows)} run(s)")
    return 0


def print_summary(rows, title: str | None = None) -> None:
    """One row per run. Without a test split in any run, the accuracies are those of the noisy validation split
    (labelled so); without true labels in any run, the flag-quality columns (P/R/F1/AUROC, which need them) give
    way to the method's noise-rate estimate."""
    from rich.console import Console
    from rich.table import Table

    has_test = any(r["final"].get("test_acc") is not None for _, r in rows)
    has_truth = any((r.get("detection") or {}).get("true_noise_rate") is not None for _, r in rows)
    key = "test_acc" if has_test else "val_acc"
    acc = ("acc: test accuracy" if has_test else
           "val acc: accuracy on the held-out noisy-validation split (no test split; its labels are as noisy as the "
           "training labels)")
    flags = ("P/R/F1: the method's noisy flags against the true labels, AUROC of its clean scores and the noise "
             "estimate" if has_truth else "noise est.: the method's estimate of the share of wrong labels (no true "
             "labels to score it against)")
    table = Table(title=title, caption=f"{acc} at the last epoch / at the epoch with the best noisy-validation "
                                       f"accuracy; {flags}: all from the final model (the last epoch), not the "
                                       "selected one")
    a = "acc" if has_test else "val acc"
    quality = ("P", "R", "F1", "AUROC", "noise est / true") if has_truth else ("noise est.",)
    for col in ("method", f"{a} last", f"{a} selected", *quality, "s/epoch"):
        table.add_column(col, justify="right" if col != "method" else "left")

    def f(v, pct=True):
        return "–" if v is None else (f"{100 * v:.2f}" if pct else f"{v:.3g}")

    for name, r in rows:
        det = r.get("detection") or {}
        if has_truth:
            noise = ("–" if det.get("estimated_noise_rate") is None or det.get("true_noise_rate") is None
                     else f"{100 * det['estimated_noise_rate']:.1f}% / {100 * det['true_noise_rate']:.1f}%")
            cells = [f(det.get("precision")), f(det.get("recall")), f(det.get("f1")), f(det.get("auroc")), noise]
        else:
            est = (r.get("method") or {}).get("estimated_noise_rate")
            cells = ["–" if est is None else f"{100 * est:.1f}%"]
        table.add_row(name, f(r["final"].get(key)), f(r["selected"].get(key)), *cells,
                      f(r["compute"]["seconds_per_epoch"], pct=False))
    Console(width=max(Console().width, 110)).print(table)
