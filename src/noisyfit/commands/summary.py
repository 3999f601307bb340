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
            if not isinstance(r, dict) or not all(isinstance(r.get(k), dict) for k in ("final", "selected")):
                skipped.append(f"{run}: results.json is not a run's results (no final and selected accuracies)")
                continue
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
    for line in setting_differences(rows):
        print(line)
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


#: settings that change neither what a run computes nor how its numbers read (where its files and images are kept,
#: how fast it evaluates): left out of the comparison, with the trainer's own operational keys
_NOT_COMPARED = {("train", "device"), ("train", "threads"), ("train", "channels_last"), ("train", "eval_batch_size"),
                 ("train", "checkpoint"), ("data", "data_dir"), ("data", "download")}


def setting_differences(rows) -> list[str]:
    """What, besides the method, differs between the runs of a summary: a reader comparing two rows should know
    when one trained longer, on other data or another seed. Lines to print under the table, none when the runs
    differ only in their method (and its arguments). Data differences (another data set, label set, noise, subset,
    split) come first, as their accuracies are then not like with like; times measured on different CPUs or
    devices are said too."""
    from noisyfit.engine.trainer import OPERATIONAL_KEYS, comparable_config

    known = [(name, r) for name, r in rows if isinstance(r.get("config"), dict)]
    lines = [f"note: {name} has no stored settings (an older results.json): it is not compared"
             for name, r in rows if not isinstance(r.get("config"), dict)]
    if len(known) < 2:
        return lines
    flat = []
    for _, r in known:
        cfg = comparable_config(r["config"])
        settings = {}
        for sec, d in cfg.items():
            if isinstance(d, dict) and sec != "method":
                for k, v in d.items():
                    if (sec, k) not in OPERATIONAL_KEYS | _NOT_COMPARED:
                        settings.update(_flatten(f"{sec}.{k}", v))
        data = r.get("data") or {}
        # what the run actually read, which a data set's name alone may not pin down (a user's folder changed)
        settings.update({f"data: {k}": data.get(k) for k in ("source", "num_train", "num_test", "num_classes")})
        flat.append(settings)

    def differing(keys):
        out = []
        for key in keys:
            values = [f.get(key, _UNSET) for f in flat]
            if any(v != values[0] for v in values):
                groups: dict[str, list[str]] = {}  # by the whole value: two long ones cut alike still differ
                for (name, _), v in zip(known, values):
                    groups.setdefault(_text(v), []).append(name)
                out.append(f"{key} = " + "; ".join(f"{_short(v)} ({', '.join(names)})" for v, names in groups.items()))
        return out

    keys = sorted({k for f in flat for k in f})
    data_keys = [k for k in keys if k.startswith("data")]
    seed_keys = ["train.seed"]
    other_keys = [k for k in keys if k not in data_keys and k not in seed_keys]
    if diff := differing(data_keys):
        lines.append("note: these runs trained or tested on different data, so their accuracies and flag quality "
                     "are not like with like:")
        lines += [f"  {d}" for d in diff]
    if diff := differing(other_keys):
        lines.append("note: these runs differ in more than the method:")
        lines += [f"  {d}" for d in diff]
    if diff := differing(seed_keys):
        lines.append("note: different seeds; a difference between single runs may be seed noise: " + diff[0])
    from noisyfit.engine.machine import machine_text

    machines = {machine_text(r) for _, r in known}
    if len(machines) > 1:
        lines.append("note: s/epoch measured on different machines or devices (" + "; ".join(sorted(machines)) +
                     "): compare times only within one machine")
    return lines


_UNSET = object()  # a setting one run's config does not have (e.g. a backbone argument left at its default)


def _text(value) -> str:
    if value is _UNSET:
        return "(not set)"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def _short(text: str) -> str:
    return text if len(text) <= 60 else text[:57] + "..."


def _flatten(key: str, value) -> dict:
    """A nested setting as dotted keys (model.args.widths), so that a difference names the setting that differs."""
    if isinstance(value, dict):  # an empty one adds no key: model.args={} is every argument at its default
        return {k: v for sub, inner in value.items() for k, v in _flatten(f"{key}.{sub}", inner).items()}
    return {key: value}
