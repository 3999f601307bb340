"""Per-epoch curves of finished runs side by side (``noisyfit summary RUN... --plot curves.png``).

One panel per figure the runs recorded (``results.json``'s ``epochs`` rows): test accuracy, noisy-validation
accuracy, training loss, and with ``train.track_fit`` the share of mislabelled training examples fitted to their
wrong label (``memorised``). A run's selected epoch is marked on its accuracy curves.
"""

from __future__ import annotations

from pathlib import Path

#: (key in an epoch row, panel title, as a percentage)
PANELS = (("test_acc", "test accuracy (%)", True), ("val_acc", "noisy-validation accuracy (%)", True),
          ("train_loss", "training loss", False), ("memorised", "wrong labels fitted (%)", True))


def plot_curves(runs: list[tuple[str, dict]], path: str | Path) -> list[str]:
    """Write a PNG of the runs' per-epoch curves; returns the keys drawn (panels with data in some run).

    Parameters
    ----------
    runs : list of (label, results) pairs
        ``results`` as in a run's ``results.json`` (its ``epochs`` rows and ``selected`` epoch).
    path : path
        The PNG to write.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from noisyfit.bench.plots import epoch_series

    keys = [p for p in PANELS if any(row.get(p[0]) is not None for _, r in runs for row in r.get("epochs") or ())]
    if not keys:
        raise ValueError("none of these runs recorded per-epoch figures")
    fig = Figure(figsize=(4.2 * len(keys), 3.4), layout="constrained")
    FigureCanvasAgg(fig)
    for i, (key, title, pct) in enumerate(keys):
        ax = fig.add_subplot(1, len(keys), i + 1)
        for label, r in runs:
            x, y = epoch_series(r, key, 100.0 if pct else 1.0)
            if not x:
                continue
            (line,) = ax.plot(x, y, marker="o", markersize=3, label=label)
            chosen = (r.get("selected") or {}).get("epoch")
            if pct and key != "memorised" and chosen is not None and chosen + 1 in x:
                ax.plot([chosen + 1], [y[x.index(chosen + 1)]], marker="*", markersize=12, color=line.get_color(),
                        linestyle="none")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    fig.axes[0].legend(fontsize=7, loc="best")
    fig.suptitle("★ = the epoch each run selected on its noisy validation split", fontsize=8)
    fig.savefig(str(path), dpi=110)
    return [k for k, _, _ in keys]
