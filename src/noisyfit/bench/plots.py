"""Bench plots (matplotlib, PNG): accuracy vs wall time, test accuracy per epoch, precision-recall.

One figure per suite and label set. Only variant 0 of each cell is drawn (the report's tables show
the other variants); the oracle, trained on clean labels, is drawn dashed in every noisy label
set's accuracy plots as the ceiling.
"""

from __future__ import annotations

import json
from pathlib import Path

from noisyfit.bench.aggregate import Cell
from noisyfit.bench.suites import CLEANLAB, ORACLE


def matplotlib_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _figure(title: str, xlabel: str, ylabel: str):
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.0, 4.6), dpi=100, layout="constrained")
    ax = fig.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return fig, ax


def _colours(names: list[str]) -> dict[str, object]:
    from matplotlib import colormaps

    cmap = colormaps["tab20"]
    # tab20 pairs a dark and a light shade: use the ten dark ones first so neighbours differ.
    order = [2 * i for i in range(10)] + [2 * i + 1 for i in range(10)]
    return {m: cmap(order[i % 20]) for i, m in enumerate(names)}


def _curve(run_data: dict, x_kind: str) -> tuple[list[float], list[float], int | None]:
    """``(x, test accuracy %, index of the selected epoch)`` of one run's evaluated epochs.

    x is the epoch number, or the training + evaluation seconds summed up to that epoch.
    """
    xs, ys, sel = [], [], None
    clock = 0.0
    selected = (run_data.get("selected") or {}).get("epoch")
    for row in run_data.get("epochs") or []:
        clock += float(row.get("train_seconds") or 0.0) + float(row.get("eval_seconds") or 0.0)
        if row.get("test_acc") is None:
            continue
        xs.append(clock if x_kind == "time" else row["epoch"] + 1)
        ys.append(100.0 * row["test_acc"])
        if row["epoch"] == selected:
            sel = len(xs) - 1
    return xs, ys, sel


def _accuracy_plot(suite: str, label_set: str, cells: list[Cell], oracle: Cell | None, x_kind: str,
                   path: Path, colours: dict) -> Path | None:
    what = "test accuracy vs training + evaluation time" if x_kind == "time" else "test accuracy per epoch"
    title = f"{suite} · {label_set}: {what} (o = noisy-val selected)"
    curves = [(cell, i, _curve(run.data, x_kind)) for cell in cells + ([oracle] if oracle is not None else [])
              for i, run in enumerate(cell.runs)]
    curves = [c for c in curves if c[2][0]]
    if not curves:
        return None
    # minutes for CIFAR-scale runs, seconds for smoke-scale ones
    per = 60.0 if x_kind == "time" and max(max(c[2][0]) for c in curves) > 120 else 1.0
    unit = "minutes" if per == 60.0 else "seconds"
    fig, ax = _figure(title, f"{unit} (train + eval, summed over epochs)" if x_kind == "time" else "epoch",
                      "test accuracy (%)")
    for cell, i, (xs, ys, sel) in curves:
        is_oracle = cell is oracle
        if x_kind == "time":
            xs = [x / per for x in xs]
        colour = "black" if is_oracle else colours[cell.method]
        label = None if i else f"{'oracle (clean labels)' if is_oracle else cell.method}, n={cell.n}"
        ax.plot(xs, ys, label=label, color=colour, lw=1.3, alpha=0.85, ls="--" if is_oracle else "-")
        if sel is not None:
            ax.plot([xs[sel]], [ys[sel]], "o", color=colour, ms=4)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


#: the five methods this toolkit was founded on: their panels come first in the per-method figure
SEED_METHODS = ("pemm", "car", "jump_teaching", "plremix", "bkd")


def epoch_series(run_data: dict, key: str, scale: float = 100.0) -> tuple[list[int], list[float]]:
    """``(epoch numbers, key x scale)`` (a share in % by default) over the epochs of a run's results that logged
    ``key``; also used by ``noisyfit summary --plot`` (noisyfit.report.curves)."""
    rows = [r for r in run_data.get("epochs") or [] if r.get(key) is not None]
    return [r["epoch"] + 1 for r in rows], [scale * r[key] for r in rows]


def _versus_ce_plot(suite: str, label_set: str, cells: list[Cell], oracle: Cell | None,
                    path: Path) -> Path | None:
    """Small multiples, one panel per method: its test accuracy per epoch against CE's and the oracle's
    (lowest seed of each), and, where the runs tracked it (``train.track_fit``), the share of mislabelled
    training samples each model predicts as their wrong given label (memorisation), dotted."""
    from matplotlib.figure import Figure

    ce = next((c for c in cells if c.method == "ce"), None)
    others = [c for c in cells if c.method != "ce"]
    others.sort(key=lambda c: (c.method not in SEED_METHODS, SEED_METHODS.index(c.method)
                               if c.method in SEED_METHODS else 0, c.label))
    if ce is None or not others:
        return None
    cols = min(3, len(others))
    rows = -(-len(others) // cols)
    fig = Figure(figsize=(4.2 * cols, 3.1 * rows), dpi=100, layout="constrained")
    fig.suptitle(f"{suite} · {label_set}: test accuracy per epoch (solid) and memorised share of the wrong "
                 "labels (dotted), each method against CE (grey) and the oracle (dashed); lowest seed", fontsize=9)
    for i, cell in enumerate(others):
        ax = fig.add_subplot(rows, cols, i + 1)
        for c, colour, ls in ((oracle, "black", "--"), (ce, "grey", "-"), (cell, "tab:red", "-")):
            if c is None:
                continue
            data = c.runs[0].data
            ax.plot(*epoch_series(data, "test_acc"), color=colour, ls=ls, lw=1.3,
                    label=f"{'oracle' if c is oracle else c.label} (seed {c.runs[0].seed})")
            if c is not oracle:
                xs, ys = epoch_series(data, "memorised")
                if xs:
                    ax.plot(xs, ys, color=colour, ls=":", lw=1.3)
        ax.set_title(cell.label + (" (seed method)" if cell.method in SEED_METHODS else ""), fontsize=9)
        ax.set_ylim(0, 100)
        ax.set_xlabel("epoch", fontsize=8)
        ax.set_ylabel("%", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, loc="lower right")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def _pr_plot(suite: str, label_set: str, cells: list[Cell], path: Path, colours: dict) -> Path | None:
    fig, ax = _figure(f"{suite} · {label_set}: finding the wrong labels "
                      "(lowest seed; x = the method's own flags)",
                      "recall (share of wrong labels found)", "precision (share of flagged that are wrong)")
    drawn, base = 0, None
    for cell in cells:
        sidecar = cell.runs[0].sidecar("pr")
        if not sidecar.is_file():
            continue
        pr = json.loads(sidecar.read_text())
        colour = colours.get(cell.method, "black")
        ax.plot(pr["recall"], pr["precision"], color=colour, lw=1.3,
                marker="o" if len(pr["recall"]) < 3 else None, ms=4,
                label=f"{cell.method} (AUPRC {pr['auprc']:.3f}, seed {cell.runs[0].seed})")
        fp = pr.get("flag_point")
        if fp:
            ax.plot([fp["recall"]], [fp["precision"]], "x", color=colour, ms=6)
        base = pr["positives"] / pr["n"]
        drawn += 1
    if not drawn:
        return None
    ax.axhline(base, color="grey", ls=":", lw=1, label=f"chance (noise rate {100 * base:.1f}%)")
    ax.set_xlim(0, 1.01)
    ax.set_ylim(0, 1.01)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    return path


def suite_plots(suite: str, cells: list[Cell], label_sets: list[str],
                plots_dir: Path) -> list[tuple[str, Path]]:
    """Write the suite's PNGs to ``plots_dir/<suite>/``; return ``(caption, path)`` pairs.

    PNGs of this suite left from an earlier report and not rewritten now are removed, so the folder
    never shows a figure the tables no longer back.
    """
    out_dir = plots_dir / suite
    methods = sorted({c.method for c in cells if c.method not in (ORACLE, CLEANLAB)},
                     key=lambda m: [c.method for c in cells].index(m))
    colours = _colours(methods + [CLEANLAB])
    first = [c for c in cells if c.variant == 0]
    oracle = next((c for c in first if c.method == ORACLE), None)
    written: list[tuple[str, Path]] = []
    for ls in label_sets:
        if oracle is not None and ls == oracle.label_set:
            continue  # the clean labels: the oracle is drawn in every noisy label set's plots instead
        trained = [c for c in first if c.label_set == ls and c.method not in (ORACLE, CLEANLAB)]
        for kind, name, caption in (("time", "acc_vs_time", "test accuracy vs wall time"),
                                    ("epoch", "test_acc_per_epoch", "test accuracy per epoch")):
            p = _accuracy_plot(suite, ls, trained, oracle, kind, out_dir / f"{name}__{ls}.png", colours)
            if p:
                written.append((f"{ls}: {caption}", p))
        p = _versus_ce_plot(suite, ls, [c for c in cells if c.label_set == ls and c.method not in
                                        (ORACLE, CLEANLAB)], oracle, out_dir / f"versus_ce__{ls}.png")
        if p:
            written.append((f"{ls}: each method against CE, per epoch", p))
        p = _pr_plot(suite, ls, [c for c in first if c.label_set == ls], out_dir / f"pr__{ls}.png", colours)
        if p:
            written.append((f"{ls}: detection precision-recall", p))
    keep = {p for _, p in written}
    for old in out_dir.glob("*.png") if out_dir.is_dir() else []:
        if old not in keep:
            old.unlink()
    return written
