"""A results table for the console."""

from __future__ import annotations


def print_summary(rows, title: str | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title, caption="acc: test accuracy at the last epoch / at the epoch with the best "
                                       "noisy-validation accuracy; P/R/F1: the method's noisy flags against "
                                       "the true labels; AUROC of its clean scores")
    for col in ("method", "acc last", "acc selected", "P", "R", "F1", "AUROC", "noise est / true", "s/epoch"):
        table.add_column(col, justify="right" if col != "method" else "left")

    def f(v, pct=True):
        return "–" if v is None else (f"{100 * v:.2f}" if pct else f"{v:.3g}")

    for name, r in rows:
        det = r.get("detection") or {}
        noise = ("–" if det.get("estimated_noise_rate") is None
                 else f"{100 * det['estimated_noise_rate']:.1f}% / {100 * det['true_noise_rate']:.1f}%")
        table.add_row(name, f(r["final"]["test_acc"]), f(r["selected"]["test_acc"]), f(det.get("precision")),
                      f(det.get("recall")), f(det.get("f1")), f(det.get("auroc")), noise,
                      f(r["compute"]["seconds_per_epoch"], pct=False))
    Console(width=max(Console().width, 110)).print(table)
